"""Residuals of relative measurements against absolute pose estimates."""

from __future__ import annotations

import numpy as np

from ..geometry.rotations import geodesic_angle


def edge_residuals(R, t, i, j, R_ij, t_ij) -> tuple[np.ndarray, np.ndarray]:
    """
    Rotation and translation residuals of every edge.

    :param R: ``(N, 3, 3)`` rotations ``R_map_i``.
    :param t: ``(N, 3)`` positions ``t_map_i`` (metres).
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param R_ij: ``(M, 3, 3)`` measured relative rotations.
    :param t_ij: ``(M, 3)`` measured relative translations (metres, frame ``i``).
    :return: ``(M,)`` angles of ``R_ij^T R_i^T R_j`` in radians and ``(M,)`` lengths
        ``|R_i^T (t_j - t_i) - t_ij|`` in metres.
    """
    angle = np.atleast_1d(geodesic_angle(R[i] @ R_ij, R[j]))
    predicted = np.einsum('mba,mb->ma', R[i], t[j] - t[i])
    return angle, np.linalg.norm(predicted - t_ij, axis=1)


def normalized_residuals(angle, dist, sigma_rot_rad: float, sigma_trans_m: float) -> np.ndarray:
    """
    Residuals in units of the nominal noise: ``sqrt((angle / s_r)^2 + (dist / s_t)^2)``.

    :param angle: ``(M,)`` rotation residuals in radians.
    :param dist: ``(M,)`` translation residuals in metres.
    :param sigma_rot_rad: nominal rotation noise per axis (radians).
    :param sigma_trans_m: nominal translation noise per axis (metres).
    :return: ``(M,)`` dimensionless residuals (about ``chi(6)`` distributed for inliers).
    """
    return np.hypot(np.asarray(angle) / sigma_rot_rad, np.asarray(dist) / sigma_trans_m)
