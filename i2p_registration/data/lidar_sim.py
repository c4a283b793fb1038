"""
Spinning LiDAR simulator.

The sensor frame is KITTI's velodyne frame (x forward, y left, z up). One sweep has ``columns``
firing columns; column ``c`` fires at ``c * period / columns`` seconds after the scan stamp at
azimuth ``pi - 2 pi c / columns`` (the head turns clockwise seen from above, starting and ending
behind the vehicle, facing forward at mid-sweep, as on KITTI's HDL-64E). Each column fires every
beam. Points are ordered column by column, beams by ring; ring 0 is the lowest beam (the
``velodyne_pointcloud`` convention). Points are reported in the sensor frame at their firing
time: with motion distortion each column is cast from the pose at its own firing time, without
it every column is cast from the pose at the stamp (a perfectly de-skewed scan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synth_config import LidarConfig
from .world import World


def _hdl64() -> np.ndarray:
    # Two blocks of 32 lasers: upper +2.0 .. -8.33 deg (1/3 deg apart), lower -8.83 .. -24.9 deg.
    return np.concatenate([np.linspace(2.0, -8.33, 32), np.linspace(-8.83, -24.9, 32)])


PRESET_ANGLES_DEG = {
    'hdl64': _hdl64(),
    'hdl32': np.linspace(10.67, -30.67, 32),
    'vlp16': np.linspace(15.0, -15.0, 16),
}


def vertical_angles(cfg: LidarConfig) -> np.ndarray:
    """Beam elevations in degrees, ascending (index = ring), from the preset or explicit list."""
    angles = np.asarray(cfg.vertical_angles_deg if cfg.vertical_angles_deg
                        else PRESET_ANGLES_DEG[cfg.preset], dtype=np.float64)
    return np.sort(angles)


@dataclass
class LidarScan:
    """
    One simulated sweep in the sensor frame.

    :param points: ``(N, 3)`` float32 metres.
    :param intensity: ``(N,)`` float32 in [0, 1].
    :param ring: ``(N,)`` uint16 beam index (0 = lowest).
    :param time: ``(N,)`` float32 seconds after the scan stamp.
    """

    points: np.ndarray
    intensity: np.ndarray
    ring: np.ndarray
    time: np.ndarray


class LidarSimulator:
    """
    Casts LiDAR sweeps into a :class:`World`.

    :param world: the scene.
    :param cfg: beams, resolution, range limits and noise.
    :param period_s: sweep period in seconds (1 / rate).
    """

    def __init__(self, world: World, cfg: LidarConfig, period_s: float):
        if period_s <= 0:
            raise ValueError(f'period_s must be > 0, got {period_s}')
        self.world = world
        self.cfg = cfg
        self.period_s = float(period_s)
        self.elevations_deg = vertical_angles(cfg)
        c = np.arange(cfg.columns)
        self.column_time = c * self.period_s / cfg.columns               # (C,) s
        az = np.pi - 2 * np.pi * c / cfg.columns
        el = np.radians(self.elevations_deg)
        # (C, B, 3) unit directions in the sensor frame.
        self.directions = np.stack([np.cos(el)[None] * np.cos(az)[:, None],
                                    np.cos(el)[None] * np.sin(az)[:, None],
                                    np.broadcast_to(np.sin(el)[None], (len(c), len(el)))], -1)

    @property
    def n_beams(self) -> int:
        """Count the beams (rings)."""
        return int(len(self.elevations_deg))

    def scan(self, T_world_lidar: np.ndarray, rng: np.random.Generator | None = None) -> LidarScan:
        """
        Simulate one sweep.

        :param T_world_lidar: ``(4, 4)`` sensor pose at the stamp, or ``(C, 4, 4)`` pose at each
            column's firing time (motion distortion).
        :param rng: generator for range noise, dropouts and intensity noise (none when ``None``).
        :return: the :class:`LidarScan`.
        """
        cfg = self.cfg
        T = np.asarray(T_world_lidar, dtype=np.float64)
        n_col, n_beam = self.directions.shape[:2]
        if T.shape == (4, 4):
            dirs = np.einsum('nj,ij->ni', self.directions.reshape(-1, 3), T[:3, :3])
            origins = T[:3, 3]
        elif T.shape == (n_col, 4, 4):
            dirs = np.einsum('cij,cbj->cbi', T[:, :3, :3], self.directions).reshape(-1, 3)
            origins = np.repeat(T[:, :3, 3], n_beam, axis=0)
        else:
            raise ValueError(f'T_world_lidar must be (4, 4) or ({n_col}, 4, 4), got {T.shape}')
        t, hits = self.world.cast(origins, dirs)
        keep = (hits.t >= cfg.min_range) & (hits.t <= cfg.max_range)
        idx = hits.index[keep]
        rng_t = hits.t[keep]
        _, refl = self.world.appearance(hits)
        refl = refl[keep]
        cos_inc = np.abs(np.sum(hits.normals[keep] * dirs[idx], axis=1))
        intensity = refl * (0.25 + 0.75 * cos_inc)
        if rng is not None:
            rng_t = rng_t + rng.normal(0.0, cfg.range_noise_std, len(rng_t)) \
                if cfg.range_noise_std > 0 else rng_t
            intensity = intensity + rng.normal(0.0, cfg.intensity_noise_std, len(idx)) \
                if cfg.intensity_noise_std > 0 else intensity
            alive = rng.uniform(size=len(idx)) >= cfg.dropout
            idx, rng_t, intensity = idx[alive], rng_t[alive], intensity[alive]
        local = self.directions.reshape(-1, 3)[idx]
        col, beam = np.divmod(idx, n_beam)
        return LidarScan((local * rng_t[:, None]).astype(np.float32),
                         np.clip(intensity, 0.0, 1.0).astype(np.float32),
                         beam.astype(np.uint16), self.column_time[col].astype(np.float32))
