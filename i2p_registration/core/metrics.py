"""
Registration accuracy metrics: RTE, RRE (protocol and geodesic), registration recall, inliers.

Transforms are ``(..., 4, 4)`` float homogeneous matrices that map points of one frame into
another (``T_cam_lidar``); predicted and ground-truth stacks broadcast against each other. The
error of an estimate is the relative transform ``inv(T_pred) @ T_gt`` (identity when exact):

- RTE (metres): the norm of its translation;
- protocol RRE (degrees): the sum of the absolute Euler angles of its rotation from scipy's
  ``Rotation.from_matrix(R).as_euler('xzy', degrees=True)``, as the I2P literature reports it;
- geodesic RRE (degrees): its rotation angle, never larger than the protocol RRE;
- registration recall (RR): the fraction of pairs with RTE < 2 m and RRE < 5 deg (strict).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

RR_MAX_RTE_M = 2.0
RR_MAX_RRE_DEG = 5.0
_RIGID_ATOL = 1e-5


def _as_transforms(T, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim < 2 or T.shape[-2:] != (4, 4):
        raise ValueError(f'{name} must have shape (..., 4, 4), got {T.shape}')
    if not np.all(np.isfinite(T)):
        raise ValueError(f'{name} contains NaN or inf')
    if not np.allclose(T[..., 3, :], [0.0, 0.0, 0.0, 1.0], atol=_RIGID_ATOL):
        raise ValueError(f'{name} must have the homogeneous last row [0, 0, 0, 1]')
    R = T[..., :3, :3]
    gram = np.swapaxes(R, -1, -2) @ R
    if not np.allclose(gram, np.eye(3), atol=_RIGID_ATOL) or np.any(np.linalg.det(R) <= 0):
        raise ValueError(f'{name} must hold rotation matrices (orthonormal, det +1) in its '
                         'top-left 3x3 block')
    return T


def relative_error(T_pred, T_gt) -> np.ndarray:
    """
    Return the error transform ``inv(T_pred) @ T_gt``, ``(..., 4, 4)`` float64.

    :param T_pred: ``(..., 4, 4)`` estimated rigid transforms.
    :param T_gt: ``(..., 4, 4)`` ground-truth rigid transforms of the same frames (broadcast).
    """
    T_pred = _as_transforms(T_pred, 'T_pred')
    T_gt = _as_transforms(T_gt, 'T_gt')
    R_inv = np.swapaxes(T_pred[..., :3, :3], -1, -2)
    inv = np.zeros_like(T_pred)
    inv[..., :3, :3] = R_inv
    inv[..., :3, 3] = -(R_inv @ T_pred[..., :3, 3:4])[..., 0]
    inv[..., 3, 3] = 1.0
    return inv @ T_gt


def rte(T_pred, T_gt) -> np.ndarray:
    """Return the relative translation error in metres, shape ``(...)``."""
    return np.linalg.norm(relative_error(T_pred, T_gt)[..., :3, 3], axis=-1)


def _rotation_protocol_deg(R: np.ndarray) -> np.ndarray:
    flat = R.reshape(-1, 3, 3)
    angles = Rotation.from_matrix(flat).as_euler('xzy', degrees=True)
    return np.abs(angles).sum(axis=-1).reshape(R.shape[:-2])


def _rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    # atan2 of sin and cos keeps full precision near 0 and 180 deg, where arccos does not.
    sin = 0.5 * np.linalg.norm(np.stack([R[..., 2, 1] - R[..., 1, 2],
                                         R[..., 0, 2] - R[..., 2, 0],
                                         R[..., 1, 0] - R[..., 0, 1]], axis=-1), axis=-1)
    cos = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    return np.degrees(np.arctan2(sin, cos))


def rre_protocol(T_pred, T_gt) -> np.ndarray:
    """
    Return the protocol relative rotation error in degrees, shape ``(...)``.

    The sum of the absolute ``'xzy'`` Euler angles of ``inv(T_pred) @ T_gt`` (scipy convention),
    the number the I2P literature reports as RRE.
    """
    return _rotation_protocol_deg(relative_error(T_pred, T_gt)[..., :3, :3])


def rre_geodesic(T_pred, T_gt) -> np.ndarray:
    """Return the rotation angle of ``inv(T_pred) @ T_gt`` in degrees [0, 180], shape ``(...)``."""
    return _rotation_angle_deg(relative_error(T_pred, T_gt)[..., :3, :3])


def _errors_1d(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f'{name} must be a 1-D array of per-pair errors, got {values.shape}')
    return values


def registration_recall(rte_m, rre_deg, max_rte: float = RR_MAX_RTE_M,
                        max_rre: float = RR_MAX_RRE_DEG) -> float:
    """
    Return the fraction of pairs with ``rte_m < max_rte`` and ``rre_deg < max_rre``.

    :param rte_m: ``(N,)`` translation errors in metres; NaN (a failed registration) never counts.
    :param rre_deg: ``(N,)`` rotation errors in degrees.
    :param max_rte: threshold in metres (exclusive).
    :param max_rre: threshold in degrees (exclusive).
    """
    rte_m = _errors_1d(rte_m, 'rte')
    rre_deg = _errors_1d(rre_deg, 'rre')
    if rte_m.shape != rre_deg.shape:
        raise ValueError(f'rte and rre must have the same shape, got {rte_m.shape} and '
                         f'{rre_deg.shape}')
    if rte_m.size == 0:
        raise ValueError('registration recall of no pairs is undefined')
    return float(np.mean((rte_m < max_rte) & (rre_deg < max_rre)))


def inlier_ratio(residuals, threshold: float) -> np.ndarray | float:
    """
    Return the fraction of residuals below ``threshold`` (strict) along the last axis.

    :param residuals: ``(..., N)`` non-negative residuals (metres or pixels); NaN is an outlier.
    :param threshold: inlier bound in the residuals' unit (> 0).
    :return: a float for ``(N,)`` input, else a ``(...)`` array; 0 where N is 0.
    """
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.ndim == 0:
        raise ValueError('residuals must have shape (..., N), got a scalar')
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f'threshold must be positive and finite, got {threshold}')
    count = residuals.shape[-1]
    inliers = np.sum(residuals < threshold, axis=-1)
    ratio = inliers / count if count else np.zeros(residuals.shape[:-1])
    return float(ratio) if residuals.ndim == 1 else ratio


@dataclass(frozen=True)
class ErrorSummary:
    """
    Per-pair errors of ``N`` registrations and their statistics.

    :param rte: ``(N,)`` metres.
    :param rre_protocol: ``(N,)`` degrees (sum of absolute ``'xzy'`` Euler angles).
    :param rre_geodesic: ``(N,)`` degrees.
    :param recalled: ``(N,)`` bool, RTE < ``max_rte`` and protocol RRE < ``max_rre``.
    :param recall: fraction of recalled pairs (protocol RRE, as the literature reports).
    :param recall_geodesic: the same with the geodesic RRE.
    """

    rte: np.ndarray
    rre_protocol: np.ndarray
    rre_geodesic: np.ndarray
    recalled: np.ndarray
    recall: float
    recall_geodesic: float
    max_rte: float
    max_rre: float

    @property
    def count(self) -> int:
        """Return the number of pairs."""
        return int(self.rte.shape[0])

    def statistics(self) -> dict[str, float]:
        """Return medians and means of each error and the recalls, keyed like ``rte_median``."""
        out = {}
        for name in ('rte', 'rre_protocol', 'rre_geodesic'):
            values = getattr(self, name)
            out[f'{name}_median'] = float(np.median(values))
            out[f'{name}_mean'] = float(np.mean(values))
        out['recall'] = self.recall
        out['recall_geodesic'] = self.recall_geodesic
        return out


def summarize(T_preds, T_gts, max_rte: float = RR_MAX_RTE_M,
              max_rre: float = RR_MAX_RRE_DEG) -> ErrorSummary:
    """
    Summarize ``N`` registrations against their ground truth.

    :param T_preds: ``(N, 4, 4)`` estimated rigid transforms (N >= 1).
    :param T_gts: ``(N, 4, 4)`` ground-truth rigid transforms.
    :param max_rte: recall threshold in metres (exclusive).
    :param max_rre: recall threshold in degrees (exclusive).
    """
    T_preds = np.asarray(T_preds, dtype=np.float64)
    T_gts = np.asarray(T_gts, dtype=np.float64)
    if T_preds.ndim != 3 or T_preds.shape != T_gts.shape:
        raise ValueError(f'T_preds and T_gts must both have shape (N, 4, 4), got {T_preds.shape} '
                         f'and {T_gts.shape}')
    if T_preds.shape[0] == 0:
        raise ValueError('cannot summarize zero registrations')
    rel = relative_error(T_preds, T_gts)
    t_err = np.linalg.norm(rel[:, :3, 3], axis=-1)
    r_protocol = _rotation_protocol_deg(rel[:, :3, :3])
    r_geodesic = _rotation_angle_deg(rel[:, :3, :3])
    recalled = (t_err < max_rte) & (r_protocol < max_rre)
    return ErrorSummary(t_err, r_protocol, r_geodesic, recalled, float(np.mean(recalled)),
                        registration_recall(t_err, r_geodesic, max_rte, max_rre),
                        float(max_rte), float(max_rre))
