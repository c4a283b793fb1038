"""Keyframe selection by travelled distance, rotation and elapsed time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import check_transforms
from ..geometry.rotations import geodesic_angle


@dataclass(frozen=True)
class KeyframeConfig:
    """
    Thresholds for taking a new keyframe; any one exceeded triggers it.

    :ivar min_distance_m: translation since the last keyframe (metres).
    :ivar min_rotation_rad: rotation angle since the last keyframe (radians).
    :ivar max_interval_ns: time since the last keyframe (int64 ns); 0 disables the time rule.
    """

    min_distance_m: float = 1.0
    min_rotation_rad: float = float(np.deg2rad(10.0))
    max_interval_ns: int = 0

    def __post_init__(self) -> None:
        """Validate the thresholds."""
        if not self.min_distance_m > 0.0 or not self.min_rotation_rad > 0.0:
            raise ValueError('min_distance_m and min_rotation_rad must be positive, got '
                             f'{self.min_distance_m} and {self.min_rotation_rad}')
        if self.max_interval_ns < 0:
            raise ValueError(f'max_interval_ns must be >= 0, got {self.max_interval_ns}')


class KeyframeSelector:
    """
    Decides which scans become keyframes, from their pose prior (odometry) and stamp.

    :param config: the thresholds.
    """

    def __init__(self, config: KeyframeConfig | None = None) -> None:
        """Create a selector that accepts the first scan it sees."""
        self.config = config or KeyframeConfig()
        self._last_pose: np.ndarray | None = None
        self._last_stamp: int | None = None

    def reset(self) -> None:
        """Forget the last keyframe (e.g. after the clock jumped backwards)."""
        self._last_pose = None
        self._last_stamp = None

    def should_add(self, T_odom_scan, stamp_ns: int) -> bool:
        """
        Whether a scan with this pose prior and stamp should become a keyframe.

        :param T_odom_scan: ``(4, 4)`` pose prior of the scan (any fixed frame, e.g. odom).
        :param stamp_ns: scan stamp, int64 nanoseconds.
        :return: True for the first scan and whenever a threshold is exceeded.
        :raises ValueError: on an invalid transform or a stamp older than the last keyframe.
        """
        T = check_transforms(T_odom_scan, 'T_odom_scan')
        if self._last_pose is None:
            return True
        if stamp_ns < self._last_stamp:
            raise ValueError(f'stamp {stamp_ns} ns is older than the last keyframe '
                             f'({self._last_stamp} ns); reset() after a time jump')
        cfg = self.config
        moved = np.linalg.norm(T[:3, 3] - self._last_pose[:3, 3]) >= cfg.min_distance_m
        turned = geodesic_angle(self._last_pose[:3, :3], T[:3, :3]) >= cfg.min_rotation_rad
        waited = cfg.max_interval_ns > 0 and stamp_ns - self._last_stamp >= cfg.max_interval_ns
        return bool(moved or turned or waited)

    def accept(self, T_odom_scan, stamp_ns: int) -> None:
        """
        Record that a scan became a keyframe.

        :param T_odom_scan: ``(4, 4)`` its pose prior.
        :param stamp_ns: its stamp, int64 nanoseconds.
        """
        self._last_pose = check_transforms(T_odom_scan, 'T_odom_scan')
        self._last_stamp = int(stamp_ns)
