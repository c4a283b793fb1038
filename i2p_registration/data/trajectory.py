"""
Vehicle trajectory: a closed loop around city blocks, driven in the right-hand lane.

The route is the rectangle of inner streets around a seeded range of blocks, with filleted
corners (turn radius from the config), offset into the right lane, bent by the world's warp and
lightly smoothed so the heading and curvature are continuous. The speed is the configured cruise
speed, reduced in curves to respect the lateral acceleration limit, with bounded acceleration.
Driving past one lap repeats the loop, so the same places are revisited (loop closures).

``base_link`` (REP-103: x forward, y left, z up) sits on the ground (z = 0) under the vehicle.
"""

from __future__ import annotations

import numpy as np

from .streets import rounded_rect
from .synth_config import VehicleConfig
from .world import World
from ..core.geometry.se3 import make_transform

_STEP = 0.25   # path sampling, metres


def _resample_closed(ring: np.ndarray, step: float) -> np.ndarray:
    """Resample a closed polyline at (about) ``step`` spacing; the first point is not repeated."""
    closed = np.concatenate([ring, ring[:1]])
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    n = int(s[-1] / step)
    q = np.linspace(0.0, s[-1], n, endpoint=False)
    return np.stack([np.interp(q, s, closed[:, 0]), np.interp(q, s, closed[:, 1])], -1)


def _smooth_closed(xy: np.ndarray, sigma_samples: float) -> np.ndarray:
    """Circular Gaussian smoothing of a closed path."""
    half = int(3 * sigma_samples)
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma_samples) ** 2)
    k /= k.sum()
    padded = np.concatenate([xy[-half:], xy, xy[:half]])
    return np.stack([np.convolve(padded[:, i], k, mode='valid') for i in range(2)], -1)


class Trajectory:
    """
    Time-parameterized planar vehicle motion on a closed loop.

    :param xy: ``(S + 1, 2)`` world positions along the loop (last = first), metres.
    :param yaw: ``(S + 1,)`` unwrapped heading, radians.
    :param s: ``(S + 1,)`` arc length, metres.
    :param times: ``(S + 1,)`` time at each sample within one lap, seconds (starts at 0).
    :param speed: ``(S + 1,)`` forward speed, m/s.
    :param curvature: ``(S + 1,)`` signed curvature, 1/m (positive = turning left).
    """

    def __init__(self, xy, yaw, s, times, speed, curvature):
        self.xy, self.yaw, self.s = xy, yaw, s
        self.times, self.speed, self.curvature = times, speed, curvature

    @property
    def lap_length(self) -> float:
        """Length of one loop, metres."""
        return float(self.s[-1])

    @property
    def lap_time(self) -> float:
        """Duration of one loop, seconds."""
        return float(self.times[-1])

    @staticmethod
    def from_world(world: World, cfg: VehicleConfig, rng: np.random.Generator,
                   lane_width: float) -> 'Trajectory':
        """
        Plan the loop for ``world``.

        :param world: the scene (its street plan and warp).
        :param cfg: vehicle section (speed, acceleration limits, turn radius).
        :param rng: generator for the choice of blocks, direction and starting street.
        :param lane_width: width of the driving lane, metres (the vehicle keeps its centre).
        """
        X, Y = world.plan.road_x, world.plan.road_y
        i0, i1 = np.sort(rng.choice(np.arange(1, len(X) - 1), 2, replace=len(X) - 2 < 2))
        j0, j1 = np.sort(rng.choice(np.arange(1, len(Y) - 1), 2, replace=len(Y) - 2 < 2))
        if i0 == i1 or j0 == j1:
            i0, i1, j0, j1 = 1, len(X) - 2, 1, len(Y) - 2
        if i0 == i1 or j0 == j1:
            raise ValueError('the world needs at least two inner streets each way for a loop')
        counter_clockwise = bool(rng.uniform() < 0.5)
        o = lane_width / 2 if counter_clockwise else -lane_width / 2
        r = max(cfg.turn_radius, abs(o) + 1.0)
        ring = rounded_rect(X[i0] - o, X[i1] + o, Y[j0] - o, Y[j1] + o, r, _STEP)
        if not counter_clockwise:
            ring = ring[::-1]
        plan = _resample_closed(ring, _STEP)
        start = int(rng.integers(len(plan)))
        plan = np.roll(plan, -start, axis=0)
        xy = _smooth_closed(world.warp.forward(plan), 2.0 / _STEP)
        closed = np.concatenate([xy, xy[:1]])
        seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        d = np.gradient(np.concatenate([xy[-1:], closed]), axis=0)[1:]
        yaw = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        curvature = np.gradient(yaw, s)
        v = np.minimum(cfg.speed, np.sqrt(cfg.max_lateral_accel / np.maximum(np.abs(curvature),
                                                                             1e-9)))
        for _ in range(2):                  # twice round the loop: the limits wrap around
            for i in range(1, len(v)):      # forward: bounded acceleration
                v[i] = min(v[i], np.sqrt(v[i - 1] ** 2 + 2 * cfg.max_accel * seg[i - 1]))
            v[0] = v[-1] = min(v[0], v[-1])
            for i in range(len(v) - 2, -1, -1):   # backward: bounded braking
                v[i] = min(v[i], np.sqrt(v[i + 1] ** 2 + 2 * cfg.max_accel * seg[i]))
            v[0] = v[-1] = min(v[0], v[-1])
        times = np.concatenate([[0.0], np.cumsum(2 * seg / (v[:-1] + v[1:]))])
        return Trajectory(closed, yaw, s, times, v, curvature)

    def _arc(self, t_s) -> np.ndarray:
        t = np.mod(np.asarray(t_s, dtype=np.float64), self.lap_time)
        return np.interp(t, self.times, self.s)

    def pose2d(self, t_s) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Planar pose ``(x, y, yaw)`` of base_link at times ``t_s`` (seconds since the start)."""
        s = self._arc(t_s)
        return (np.interp(s, self.s, self.xy[:, 0]), np.interp(s, self.s, self.xy[:, 1]),
                np.interp(s, self.s, self.yaw))

    def T_world_base(self, t_s) -> np.ndarray:
        """``(..., 4, 4)`` pose of base_link in the world (map) frame at times ``t_s`` seconds."""
        x, y, yaw = self.pose2d(t_s)
        c, s = np.cos(yaw), np.sin(yaw)
        R = np.zeros(np.shape(yaw) + (3, 3))
        R[..., 0, 0], R[..., 0, 1], R[..., 1, 0], R[..., 1, 1] = c, -s, s, c
        R[..., 2, 2] = 1.0
        return make_transform(R, np.stack([x, y, np.zeros_like(x)], -1))

    def velocity(self, t_s) -> tuple[np.ndarray, np.ndarray]:
        """Forward speed (m/s) and yaw rate (rad/s) at times ``t_s`` seconds."""
        s = self._arc(t_s)
        v = np.interp(s, self.s, self.speed)
        return v, v * np.interp(s, self.s, self.curvature)
