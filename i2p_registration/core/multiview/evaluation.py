"""Accuracy of estimated keyframe poses against ground truth, after gauge alignment."""

from __future__ import annotations

import numpy as np

from ..geometry.rotations import geodesic_angle, project_to_so3


def align_gauge(T_est, T_ref) -> np.ndarray:
    """
    Express estimated poses in the reference map frame by the best global rigid transform.

    Synchronization fixes poses only up to one global rigid transform. The rotation is the
    chordal mean ``proj(sum_i R_ref_i R_est_i^T)``, the translation the mean offset after it.

    :param T_est: ``(N, 4, 4)`` estimated poses ``T_map'_i``.
    :param T_ref: ``(N, 4, 4)`` reference poses ``T_map_i``.
    :return: ``(N, 4, 4)`` estimates mapped into the reference map frame.
    """
    T_est = np.asarray(T_est, dtype=np.float64)
    T_ref = np.asarray(T_ref, dtype=np.float64)
    if T_est.shape != T_ref.shape or T_est.shape[1:] != (4, 4):
        raise ValueError(f'T_est and T_ref must both be (N, 4, 4), got {T_est.shape} '
                         f'and {T_ref.shape}')
    R_g = project_to_so3(np.einsum('nab,ncb->ac', T_ref[:, :3, :3], T_est[:, :3, :3]))
    t_g = np.mean(T_ref[:, :3, 3] - T_est[:, :3, 3] @ R_g.T, axis=0)
    out = T_est.copy()
    out[:, :3, :3] = R_g @ T_est[:, :3, :3]
    out[:, :3, 3] = T_est[:, :3, 3] @ R_g.T + t_g
    return out


def pose_errors(T_est, T_ref) -> tuple[np.ndarray, np.ndarray]:
    """
    Per-node absolute rotation and translation errors after gauge alignment.

    :param T_est: ``(N, 4, 4)`` estimated poses.
    :param T_ref: ``(N, 4, 4)`` reference poses.
    :return: ``(N,)`` rotation errors in degrees (geodesic) and ``(N,)`` translation errors in
        metres.
    """
    aligned = align_gauge(T_est, T_ref)
    rot = np.rad2deg(geodesic_angle(aligned[:, :3, :3], np.asarray(T_ref)[:, :3, :3]))
    trans = np.linalg.norm(aligned[:, :3, 3] - np.asarray(T_ref)[:, :3, 3], axis=1)
    return np.atleast_1d(rot), trans


def precision_recall(flagged, truth) -> tuple[float, float]:
    """
    Precision and recall of flagged outlier edges.

    :param flagged: ``(M,)`` bool, edges a method rejected.
    :param truth: ``(M,)`` bool, the true outliers.
    :return: ``(precision, recall)``; precision is 1 when nothing is flagged, recall is 1 when
        there are no outliers.
    """
    flagged = np.asarray(flagged, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    hits = np.count_nonzero(flagged & truth)
    precision = hits / np.count_nonzero(flagged) if flagged.any() else 1.0
    recall = hits / np.count_nonzero(truth) if truth.any() else 1.0
    return float(precision), float(recall)
