"""
Rotations in 3D: axis-angle (SO(3) exp/log), quaternions, the 6D representation, projection.

All functions take and return float64 numpy arrays and work on batches: a leading ``...`` in a
shape stands for any number of batch dimensions. Rotation matrices act on column vectors
(``x' = R @ x``). Quaternions are in ROS order ``(x, y, z, w)``, unit norm, with the canonical
sign ``w >= 0``.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float64, skew

# Below this angle (radians) the Rodrigues coefficients use their Taylor series.
_SMALL_ANGLE = 1e-4
# Within this angle (radians) of pi, so3_log returns the canonical sign of the axis.
_PI_SIGN_TOL = 1e-12


def _vee_antisym(R: np.ndarray) -> np.ndarray:
    """``vee((R - R^T) / 2)``, equal to ``sin(theta) * axis`` for a rotation, ``(..., 3)``."""
    v = np.empty(R.shape[:-2] + (3,), dtype=R.dtype)
    v[..., 0] = R[..., 2, 1] - R[..., 1, 2]
    v[..., 1] = R[..., 0, 2] - R[..., 2, 0]
    v[..., 2] = R[..., 1, 0] - R[..., 0, 1]
    return 0.5 * v


def so3_exp(phi) -> np.ndarray:
    """
    Rotation matrices from rotation vectors (Rodrigues' formula).

    :param phi: ``(..., 3)`` rotation vectors, axis times angle in radians.
    :return: ``(..., 3, 3)`` rotation matrices ``exp([phi]_x)``; exact to rounding also for
        angles down to 0 (Taylor series below 1e-4 rad).
    """
    phi = as_float64(phi, (3,), 'phi')
    theta2 = np.sum(phi * phi, axis=-1)
    theta = np.sqrt(theta2)
    small = theta < _SMALL_ANGLE
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0 - theta2 / 6.0 + theta2 ** 2 / 120.0, np.sin(safe) / safe)
    # 2 sin^2(theta / 2) avoids the cancellation in 1 - cos(theta).
    b = np.where(small, 0.5 - theta2 / 24.0 + theta2 ** 2 / 720.0,
                 2.0 * np.sin(0.5 * safe) ** 2 / safe ** 2)
    K = skew(phi)
    return np.eye(3) + a[..., None, None] * K + b[..., None, None] * (K @ K)


def so3_log(R) -> np.ndarray:
    """
    Rotation vectors of rotation matrices (inverse of :func:`so3_exp`).

    Accurate over the whole range: near 0 the axis comes from the antisymmetric part, near pi
    (where ``sin(theta)`` vanishes) from the symmetric part ``(R + R^T) / 2``. For a 180-degree
    rotation both ``+pi * axis`` and ``-pi * axis`` are valid; within 1e-12 rad of pi the one
    whose largest-magnitude component is positive is returned.

    :param R: ``(..., 3, 3)`` rotation matrices (orthonormalize with :func:`project_to_so3`
        first if they may be far from SO(3)).
    :return: ``(..., 3)`` rotation vectors with angle (norm) in ``[0, pi]``.
    """
    R = as_float64(R, (3, 3), 'R')
    v = _vee_antisym(R)
    s = np.linalg.norm(v, axis=-1)
    c = np.clip(0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0), -1.0, 1.0)
    theta = np.arctan2(s, c)
    factor = np.where(s > 0.0, theta / np.where(s > 0.0, s, 1.0), 1.0)
    phi = factor[..., None] * v

    near_pi = c < 0.0
    if np.any(near_pi):
        Rn, cn, vn = R[near_pi], c[near_pi], v[near_pi]
        # (R + R^T) / 2 = cos(theta) I + (1 - cos(theta)) a a^T.
        aat = (0.5 * (Rn + np.swapaxes(Rn, -1, -2)) - cn[:, None, None] * np.eye(3)) \
            / (1.0 - cn)[:, None, None]
        diag = np.clip(np.diagonal(aat, axis1=-2, axis2=-1), 0.0, None)
        k = np.argmax(diag, axis=-1)
        rows = np.arange(len(k))
        axis = aat[rows, :, k] / np.sqrt(diag[rows, k])[:, None]
        axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
        # v = sin(theta) * a fixes the sign, except within rounding of pi, where v is noise and
        # the canonical a[k] > 0 is kept (the two answers differ by less than 2e-12 rad).
        axis *= np.where(np.sum(axis * vn, axis=-1) < -_PI_SIGN_TOL, -1.0, 1.0)[:, None]
        phi[near_pi] = theta[near_pi][:, None] * axis
    return phi


def quat_to_matrix(q) -> np.ndarray:
    """
    Rotation matrices from quaternions in ROS order ``(x, y, z, w)``.

    :param q: ``(..., 4)`` quaternions; normalized here, so any non-zero scale is accepted.
    :return: ``(..., 3, 3)`` rotation matrices.
    :raises ValueError: on a wrong shape or a (near) zero-norm quaternion.
    """
    q = as_float64(q, (4,), 'q')
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(~(norm > 1e-12)):
        raise ValueError('quaternion has zero (or non-finite) norm; expected a unit (x, y, z, w)')
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quat(R) -> np.ndarray:
    """
    Convert rotation matrices to unit quaternions ``(x, y, z, w)`` with ``w >= 0``.

    Uses the largest of the four quaternion-component candidates (Shepperd's method), so it is
    accurate near 180 degrees too. Where ``w`` is exactly 0 the largest-magnitude vector
    component is made positive.

    :param R: ``(..., 3, 3)`` rotation matrices.
    :return: ``(..., 4)`` unit quaternions in ROS order.
    """
    R = as_float64(R, (3, 3), 'R')
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # Row i is 4 * q_i * q for i = x, y, z, w; row i is best conditioned where q_i is largest.
    candidates = np.stack([
        np.stack([1 + r00 - r11 - r22, r01 + r10, r02 + r20, r21 - r12], -1),
        np.stack([r01 + r10, 1 - r00 + r11 - r22, r12 + r21, r02 - r20], -1),
        np.stack([r02 + r20, r12 + r21, 1 - r00 - r11 + r22, r10 - r01], -1),
        np.stack([r21 - r12, r02 - r20, r10 - r01, 1 + r00 + r11 + r22], -1),
    ], -2)
    diag = np.diagonal(candidates, axis1=-2, axis2=-1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w = q[..., 3]
    biggest = np.take_along_axis(q[..., :3], np.argmax(np.abs(q[..., :3]), -1)[..., None], -1)
    key = np.where(w != 0.0, w, biggest[..., 0])
    return np.where((key < 0.0)[..., None], -q, q)


def rot6d_to_matrix(d6) -> np.ndarray:
    """
    Rotation matrices from the continuous 6D representation (Zhou et al., CVPR 2019).

    The 6D vector holds the first two COLUMNS of the rotation matrix, ``(R[:, 0], R[:, 1])``.
    They are orthonormalized by Gram-Schmidt (``b1 = a1 / |a1|``,
    ``b2 = normalize(a2 - (b1 . a2) b1)``) and completed with ``b3 = b1 x b2``, so any 6D vector
    with two non-parallel halves maps to a proper rotation.

    :param d6: ``(..., 6)``.
    :return: ``(..., 3, 3)`` rotation matrices with columns ``(b1, b2, b3)``.
    :raises ValueError: on a wrong shape, a zero first column or parallel columns.
    """
    d6 = as_float64(d6, (6,), 'd6')
    a1, a2 = d6[..., :3], d6[..., 3:]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)
    if np.any(~(n1 > 1e-12)):
        raise ValueError('6D rotation has a zero (or non-finite) first column')
    b1 = a1 / n1
    u2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    n2 = np.linalg.norm(u2, axis=-1, keepdims=True)
    if np.any(~(n2 > 1e-12 * np.maximum(np.linalg.norm(a2, axis=-1, keepdims=True), 1e-300))):
        raise ValueError('6D rotation has parallel (or zero) columns; expected two independent')
    b2 = u2 / n2
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)


def matrix_to_rot6d(R) -> np.ndarray:
    """
    Return the 6D representation ``(R[:, 0], R[:, 1])`` of rotation matrices.

    :param R: ``(..., 3, 3)``.
    :return: ``(..., 6)``: the first column followed by the second column.
    """
    R = as_float64(R, (3, 3), 'R')
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def project_to_so3(M) -> np.ndarray:
    """
    Find the nearest rotation matrices (Frobenius norm) to arbitrary 3x3 matrices.

    ``R = U diag(1, 1, det(U V^T)) V^T`` from the SVD ``M = U S V^T``; the determinant fix
    turns a reflection into the closest proper rotation.

    :param M: ``(..., 3, 3)`` finite matrices.
    :return: ``(..., 3, 3)`` rotation matrices (det = +1).
    """
    M = as_float64(M, (3, 3), 'M')
    if not np.all(np.isfinite(M)):
        raise ValueError('M contains NaN or inf')
    U, _, Vt = np.linalg.svd(M)
    U = U.copy()
    U[..., :, 2] *= np.where(np.linalg.det(U @ Vt) < 0.0, -1.0, 1.0)[..., None]
    return U @ Vt


def geodesic_angle(R_a, R_b) -> np.ndarray:
    """
    Compute the angle of ``R_a^T R_b``: the geodesic distance on SO(3), in radians.

    Computed as ``atan2(|sin|, cos)`` of the relative rotation, accurate near 0 and near pi
    (an arccos of the trace loses half the digits near 0).

    :param R_a: ``(..., 3, 3)`` rotation matrices.
    :param R_b: ``(..., 3, 3)`` rotation matrices, broadcast against ``R_a``.
    :return: ``(...)`` angles in ``[0, pi]`` (a numpy scalar for single matrices).
    """
    R_a = as_float64(R_a, (3, 3), 'R_a')
    R_b = as_float64(R_b, (3, 3), 'R_b')
    R = np.swapaxes(R_a, -1, -2) @ R_b
    s = np.linalg.norm(_vee_antisym(R), axis=-1)
    c = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    return np.arctan2(s, c)[()]
