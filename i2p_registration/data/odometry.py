"""
Noisy vehicle odometry, as a wheel or LiDAR odometry would report it.

The true planar motion between consecutive odometry ticks, expressed in base_link, is corrupted
(scale error, lateral slip and heading noise that grow with the distance of each step, plus a
constant heading bias per metre) and integrated. The ``odom`` frame is the base_link pose at the
first tick, so ``T_odom_base`` starts at identity and drifts away from the truth over time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synth_config import OdometryConfig
from .trajectory import Trajectory
from ..core.geometry.se3 import make_transform


@dataclass
class OdometryTrack:
    """
    Integrated noisy odometry.

    :param stamps_ns: ``(K,)`` int64 tick times.
    :param T_odom_base: ``(K, 4, 4)`` estimated base_link poses in the odom frame.
    :param speed: ``(K,)`` measured forward speed, m/s.
    :param yaw_rate: ``(K,)`` measured yaw rate, rad/s.
    """

    stamps_ns: np.ndarray
    T_odom_base: np.ndarray
    speed: np.ndarray
    yaw_rate: np.ndarray


def _planar(x, y, yaw) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.zeros(np.shape(yaw) + (3, 3))
    R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1], R[..., 2, 2] = c, -s, s, c, 1.0
    return make_transform(R, np.stack([x, y, np.zeros_like(x)], -1))


def simulate_odometry(trajectory: Trajectory, times_s: np.ndarray, stamps_ns: np.ndarray,
                      cfg: OdometryConfig, rng: np.random.Generator) -> OdometryTrack:
    """
    Odometry at the given ticks.

    :param trajectory: the true vehicle motion.
    :param times_s: ``(K,)`` tick times in seconds since the trajectory start.
    :param stamps_ns: ``(K,)`` the same ticks as int64 nanosecond stamps.
    :param cfg: noise levels.
    :param rng: the odometry's generator.
    """
    x, y, yaw = trajectory.pose2d(times_s)
    c, s = np.cos(yaw[:-1]), np.sin(yaw[:-1])
    ddx, ddy = np.diff(x), np.diff(y)
    fwd = c * ddx + s * ddy                  # step in the previous base_link frame
    lat = -s * ddx + c * ddy
    dyaw = np.diff(yaw)
    dist = np.abs(fwd)
    n = rng.standard_normal((3, len(fwd)))
    fwd_m = fwd * (1 + cfg.scale_noise * n[0])
    lat_m = lat + cfg.lateral_noise * np.sqrt(dist) * n[1]
    dyaw_m = dyaw + cfg.yaw_noise_per_m * np.sqrt(dist) * n[2] + cfg.yaw_bias_per_m * dist
    yaw_o = np.concatenate([[0.0], np.cumsum(dyaw_m)])
    co, so = np.cos(yaw_o[:-1]), np.sin(yaw_o[:-1])
    xo = np.concatenate([[0.0], np.cumsum(co * fwd_m - so * lat_m)])
    yo = np.concatenate([[0.0], np.cumsum(so * fwd_m + co * lat_m)])
    v, w = trajectory.velocity(times_s)
    n2 = rng.standard_normal((2, len(v)))
    return OdometryTrack(np.asarray(stamps_ns, dtype=np.int64), _planar(xo, yo, yaw_o),
                         v * (1 + cfg.scale_noise * n2[0]),
                         w + cfg.yaw_noise_per_m * n2[1])
