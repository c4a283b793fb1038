"""
The pose covariance a ``geometry_msgs/PoseWithCovariance`` expects, from a registration's.

A :class:`~i2p_registration.core.registration.base.RegistrationResult` gives the 6x6 covariance
of ``xi = (rho, phi)`` in the camera optical frame, the body frame of the camera pose
``T_parent_cam`` (a sign flip of ``xi``, which leaves a covariance unchanged). ROS reads a pose
covariance as position errors and fixed-axis rotation errors in the parent (header) frame:
``t_true = t + dt``, ``R_true = exp(dphi) R``. To first order ``dt = R rho`` and ``dphi = R phi``
for ``T_true = T exp(xi)``, so the ROS covariance is ``B cov B^T`` with
``B = blockdiag(R, R)`` and ``R`` the rotation of ``T_parent_cam``. Ordering stays
(x, y, z, rotx, roty, rotz).
"""

from __future__ import annotations

import numpy as np


def covariance_in_parent_frame(covariance_body: np.ndarray, T_parent_child: np.ndarray
                               ) -> np.ndarray:
    """
    Rotate a body-frame ``(6, 6)`` pose covariance into the parent frame (module docstring).

    :param covariance_body: ``(6, 6)`` covariance of ``(rho, phi)`` in the child frame,
        metres and radians.
    :param T_parent_child: ``(4, 4)`` pose of the child in the parent frame.
    :return: ``(6, 6)`` float64 symmetric covariance in the parent frame.
    """
    cov = np.asarray(covariance_body, dtype=np.float64)
    T = np.asarray(T_parent_child, dtype=np.float64)
    if cov.shape != (6, 6):
        raise ValueError(f'covariance_body must have shape (6, 6), got {cov.shape}')
    if T.shape != (4, 4):
        raise ValueError(f'T_parent_child must have shape (4, 4), got {T.shape}')
    B = np.zeros((6, 6))
    B[:3, :3] = B[3:, 3:] = T[:3, :3]
    out = B @ cov @ B.T
    return 0.5 * (out + out.T)


def is_positive_definite(covariance: np.ndarray) -> bool:
    """Tell whether a square matrix is finite, symmetric (1e-9 relative) and positive definite."""
    cov = np.asarray(covariance, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.isfinite(cov).all():
        return False
    scale = max(float(np.abs(cov).max()), 1e-300)
    if not np.allclose(cov, cov.T, atol=1e-9 * scale, rtol=0):
        return False
    return bool(np.linalg.eigvalsh(0.5 * (cov + cov.T)).min() > 0)
