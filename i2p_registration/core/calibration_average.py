"""
A robust running average of a static extrinsic ``T_cam_lidar`` from per-frame registrations.

Each accepted registration adds one sample to a window of the last ``window`` samples. The
average lives on SO(3) x R^3: the rotation is the Karcher (geodesic) mean, the translation the
arithmetic mean, both over the inliers only. Inliers are found by iterating from the medoid (the
sample with the smallest summed distance to the others, robust to up to half outliers): samples
further than ``max_translation`` metres or ``max_rotation`` radians from the current mean are
rejected, the mean is recomputed over the rest, until the inlier set stops changing.

Convergence: at least ``min_inliers`` inliers and a standard error of the mean (the inlier
spread divided by the square root of their number) below ``converged_translation`` metres and
``converged_rotation`` radians on every axis. A converged estimate is worth (re)publishing when
nothing was published yet or it moved from the last published one by more than
``update_translation`` or ``update_rotation``.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from i2p_registration.core.geometry.rotations import geodesic_angle, so3_exp, so3_log
import numpy as np

_MAX_ITERATIONS = 20


@dataclass(frozen=True)
class CalibrationEstimate:
    """
    The current average.

    :param T_cam_lidar: ``(4, 4)`` float64 mean of the inliers.
    :param n_samples: samples in the window.
    :param n_inliers: samples that agree with the mean.
    :param translation_sem: ``(3,)`` standard error of the mean translation, metres.
    :param rotation_sem: ``(3,)`` standard error of the mean rotation (tangent space), radians.
    :param converged: whether the convergence test of the module docstring passes.
    """

    T_cam_lidar: np.ndarray
    n_samples: int
    n_inliers: int
    translation_sem: np.ndarray
    rotation_sem: np.ndarray
    converged: bool


def _rotation_mean(rotations: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Return the Karcher mean of ``(N, 3, 3)`` rotations, iterated from ``start``."""
    mean = start
    for _ in range(_MAX_ITERATIONS):
        step = np.mean([so3_log(mean.T @ R) for R in rotations], axis=0)
        mean = mean @ so3_exp(step)
        if np.linalg.norm(step) < 1e-12:
            break
    return mean


class CalibrationAverager:
    """
    Window of ``T_cam_lidar`` samples and their robust average (see the module docstring).

    :param window: samples kept, newest first out (> 0).
    :param min_inliers: inliers needed to converge (1 .. window).
    :param max_translation: inlier bound on the translation distance to the mean, metres.
    :param max_rotation: inlier bound on the rotation angle to the mean, radians.
    :param converged_translation: largest standard error of the mean translation, metres.
    :param converged_rotation: largest standard error of the mean rotation, radians.
    :param update_translation: republish when the estimate moved further than this, metres.
    :param update_rotation: republish when the estimate turned more than this, radians.
    """

    def __init__(self, window: int = 30, min_inliers: int = 10, max_translation: float = 0.2,
                 max_rotation: float = 0.05, converged_translation: float = 0.01,
                 converged_rotation: float = 0.002, update_translation: float = 0.01,
                 update_rotation: float = 0.002):
        if int(window) < 1 or not 1 <= int(min_inliers) <= int(window):
            raise ValueError(f'need window >= 1 and 1 <= min_inliers <= window, got window='
                             f'{window}, min_inliers={min_inliers}')
        bounds = {'max_translation': max_translation, 'max_rotation': max_rotation,
                  'converged_translation': converged_translation,
                  'converged_rotation': converged_rotation,
                  'update_translation': update_translation, 'update_rotation': update_rotation}
        for name, value in bounds.items():
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be finite and > 0, got {value}')
        self.window = int(window)
        self.min_inliers = int(min_inliers)
        self.max_translation = float(max_translation)
        self.max_rotation = float(max_rotation)
        self.converged_translation = float(converged_translation)
        self.converged_rotation = float(converged_rotation)
        self.update_translation = float(update_translation)
        self.update_rotation = float(update_rotation)
        self._samples: collections.deque = collections.deque(maxlen=self.window)
        self._published: np.ndarray | None = None

    def add(self, T_cam_lidar: np.ndarray) -> CalibrationEstimate:
        """Add one ``(4, 4)`` finite rigid sample; return the new average."""
        T = np.asarray(T_cam_lidar, dtype=np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f'T_cam_lidar must be a finite (4, 4) transform, got shape '
                             f'{T.shape}')
        self._samples.append(T.copy())
        return self.estimate()

    def estimate(self) -> CalibrationEstimate | None:
        """Return the robust average of the window, or None while it is empty."""
        if not self._samples:
            return None
        Ts = np.stack(self._samples)
        R, t = Ts[:, :3, :3], Ts[:, :3, 3]
        angles = geodesic_angle(R[:, None], R[None, :])
        dists = np.linalg.norm(t[:, None] - t[None, :], axis=-1)
        cost = (dists / self.max_translation + angles / self.max_rotation).sum(axis=1)
        medoid = int(np.argmin(cost))
        mean_R, mean_t = R[medoid], t[medoid]
        inliers = np.zeros(len(Ts), dtype=bool)
        for _ in range(_MAX_ITERATIONS):
            new = ((np.linalg.norm(t - mean_t, axis=1) <= self.max_translation)
                   & (geodesic_angle(R, mean_R) <= self.max_rotation))
            if not new.any():
                new[medoid] = True
            if np.array_equal(new, inliers):
                break
            inliers = new
            mean_R = _rotation_mean(R[inliers], mean_R)
            mean_t = t[inliers].mean(axis=0)
        n = int(inliers.sum())
        if n > 1:
            phis = np.array([so3_log(mean_R.T @ Ri) for Ri in R[inliers]])
            t_sem = t[inliers].std(axis=0, ddof=1) / np.sqrt(n)
            r_sem = phis.std(axis=0, ddof=1) / np.sqrt(n)
        else:
            t_sem = r_sem = np.full(3, np.inf)
        converged = bool(n >= self.min_inliers and np.all(t_sem <= self.converged_translation)
                         and np.all(r_sem <= self.converged_rotation))
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = mean_R, mean_t
        return CalibrationEstimate(T, len(Ts), n, t_sem, r_sem, converged)

    def should_publish(self, estimate: CalibrationEstimate | None) -> bool:
        """Tell whether ``estimate`` is converged and new or moved since the last publication."""
        if estimate is None or not estimate.converged:
            return False
        if self._published is None:
            return True
        moved = np.linalg.norm(estimate.T_cam_lidar[:3, 3] - self._published[:3, 3])
        turned = float(geodesic_angle(estimate.T_cam_lidar[:3, :3], self._published[:3, :3]))
        return moved > self.update_translation or turned > self.update_rotation

    def mark_published(self, estimate: CalibrationEstimate) -> None:
        """Remember ``estimate`` as the one last published."""
        self._published = estimate.T_cam_lidar.copy()

    def reset(self) -> None:
        """Forget every sample and the last publication (e.g. after a clock jump)."""
        self._samples.clear()
        self._published = None

    def __len__(self) -> int:
        return len(self._samples)
