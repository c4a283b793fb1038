"""
Odometry poses by time, and chains of static transforms: the motion prior of the mapper.

:class:`PoseHistory` keeps ``(stamp, T_odom_base)`` samples and returns the pose at any stamp
inside them (translation linear, rotation along the geodesic) or a little after the newest
(constant-velocity extrapolation). :func:`chain_transform` composes static transforms given as
``child -> (parent, T_parent_child)``, as ``/tf_static`` delivers them.
"""

from __future__ import annotations

import bisect

import numpy as np

from .graph import check_transforms
from ..geometry.rotations import project_to_so3, so3_exp, so3_log


def interpolate_pose(T_a, T_b, alpha: float) -> np.ndarray:
    """
    Return the pose a fraction ``alpha`` of the way from ``T_a`` to ``T_b``.

    Translation linear, rotation ``R_a exp(alpha log(R_a^T R_b))``; ``alpha`` outside
    ``[0, 1]`` extrapolates.

    :param T_a: ``(4, 4)`` pose at ``alpha = 0``.
    :param T_b: ``(4, 4)`` pose at ``alpha = 1``.
    :param alpha: the fraction.
    :return: ``(4, 4)`` float64 pose.
    """
    T_a = np.asarray(T_a, dtype=np.float64)
    T_b = np.asarray(T_b, dtype=np.float64)
    T = np.eye(4)
    T[:3, :3] = project_to_so3(T_a[:3, :3] @ so3_exp(alpha * so3_log(T_a[:3, :3].T @ T_b[:3, :3])))
    T[:3, 3] = (1.0 - alpha) * T_a[:3, 3] + alpha * T_b[:3, 3]
    return T


class PoseHistory:
    """
    Time-ordered pose samples of one moving frame in one fixed frame (e.g. ``T_odom_base``).

    :param max_age_ns: samples older than the newest by more than this are forgotten.
    :param max_extrapolation_ns: :meth:`lookup` answers up to this long after the newest sample.
    """

    def __init__(self, max_age_ns: int, max_extrapolation_ns: int = 0) -> None:
        """Create an empty history."""
        if max_age_ns <= 0 or max_extrapolation_ns < 0:
            raise ValueError('max_age_ns must be > 0 and max_extrapolation_ns >= 0, got '
                             f'{max_age_ns} and {max_extrapolation_ns}')
        self.max_age_ns = int(max_age_ns)
        self.max_extrapolation_ns = int(max_extrapolation_ns)
        self._stamps: list[int] = []
        self._poses: list[np.ndarray] = []

    def __len__(self) -> int:
        """Return the number of samples kept."""
        return len(self._stamps)

    @property
    def newest_ns(self) -> int | None:
        """Return the stamp of the newest sample, None when empty."""
        return self._stamps[-1] if self._stamps else None

    def clear(self) -> None:
        """Forget every sample."""
        self._stamps.clear()
        self._poses.clear()

    def add(self, stamp_ns: int, T) -> bool:
        """
        Append a sample; a stamp older than the newest one clears the history first.

        :param stamp_ns: int64 nanoseconds.
        :param T: ``(4, 4)`` rigid transform.
        :return: False when the history was cleared because time went backwards.
        :raises ValueError: on an invalid transform (nothing is changed).
        """
        T = check_transforms(T, 'T')
        if T.shape != (4, 4):
            raise ValueError(f'T must have shape (4, 4), got {T.shape}')
        stamp_ns = int(stamp_ns)
        in_order = not self._stamps or stamp_ns >= self._stamps[-1]
        if not in_order:
            self.clear()
        if self._stamps and stamp_ns == self._stamps[-1]:
            self._poses[-1] = T
        else:
            self._stamps.append(stamp_ns)
            self._poses.append(T)
        cut = bisect.bisect_left(self._stamps, stamp_ns - self.max_age_ns)
        if cut:
            del self._stamps[:cut]
            del self._poses[:cut]
        return in_order

    def lookup(self, stamp_ns: int) -> np.ndarray | None:
        """
        Return the ``(4, 4)`` pose at ``stamp_ns``, or None when the samples do not cover it.

        Inside the samples: interpolated. After the newest by at most ``max_extrapolation_ns``:
        extrapolated from the last two samples at constant velocity (the newest one alone when
        there is a single sample). Before the oldest or later than that: None.
        """
        stamps = self._stamps
        stamp_ns = int(stamp_ns)
        if not stamps or stamp_ns < stamps[0] \
                or stamp_ns > stamps[-1] + self.max_extrapolation_ns:
            return None
        k = bisect.bisect_left(stamps, stamp_ns)
        if k < len(stamps) and stamps[k] == stamp_ns:
            return self._poses[k].copy()
        if k == len(stamps):
            if len(stamps) == 1:
                return self._poses[0].copy()
            k -= 1
        a, b = k - 1, k
        alpha = (stamp_ns - stamps[a]) / (stamps[b] - stamps[a])
        return interpolate_pose(self._poses[a], self._poses[b], alpha)


def chain_transform(static: dict, parent: str, child: str) -> np.ndarray | None:
    """
    Compose static transforms from ``child`` up to ``parent``.

    :param static: ``{child frame: (parent frame, (4, 4) T_parent_child)}``.
    :param parent: the frame to reach.
    :param child: the frame to start from.
    :return: ``(4, 4)`` ``T_parent_child`` (identity when the frames are equal), or None when
        ``parent`` is not an ancestor of ``child`` in ``static``.
    """
    T = np.eye(4)
    frame = child
    seen = set()
    while frame != parent:
        if frame in seen or frame not in static:
            return None
        seen.add(frame)
        frame, T_up = static[frame]
        T = np.asarray(T_up, dtype=np.float64) @ T
    T[:3, :3] = project_to_so3(T[:3, :3])
    return T
