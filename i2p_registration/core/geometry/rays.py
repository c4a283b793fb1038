"""
Camera rays as Plücker lines: patch grids, rays of a posed camera, and a pose from rays.

A ray through the camera centre ``c`` with unit direction ``d`` is the Plücker pair
``(d, m)`` with moment ``m = c x d``; every point ``p`` on the line has ``p x d = m``. Rays are
expressed in a "world" frame, which may be the LiDAR frame. Camera frames are optical frames.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_points, as_weights
from .projection import pixel_rays
from .se3 import make_transform
from .solvers import PoseEstimate
from ..sensors import CameraModel

# Smallest eigenvalue (of the normalized moment normal matrix) / singular value ratio below
# which rays count as parallel.
_PARALLEL_TOL = 1e-10


def patch_centres(camera: CameraModel, patch_size: int) -> np.ndarray:
    """
    Pixel centres of the non-overlapping ``patch_size`` x ``patch_size`` patch grid.

    Patches start at pixel 0 with stride ``patch_size``; partial patches at the right and
    bottom borders are dropped. The centre of the patch starting at ``x0`` is
    ``x0 + (patch_size - 1) / 2`` (pixel centres at integers).

    :param camera: the camera model (its width and height).
    :param patch_size: patch side in pixels, 1 .. min(width, height).
    :return: ``(M, 2)`` float64 ``(u, v)``, row-major (v outer, u inner), so that row
        ``i * (width // patch_size) + j`` is the patch at grid row ``i``, column ``j``:
        the order of a flattened ``(H // p, W // p)`` feature map.
    """
    p = int(patch_size)
    if p != patch_size or p < 1:
        raise ValueError(f'patch_size must be a positive integer, got {patch_size}')
    nx, ny = camera.width // p, camera.height // p
    if nx == 0 or ny == 0:
        raise ValueError(f'patch_size {p} is larger than the image '
                         f'({camera.width}x{camera.height})')
    offset = 0.5 * (p - 1)
    u = np.arange(nx) * p + offset
    v = np.arange(ny) * p + offset
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu.ravel(), vv.ravel()], axis=-1).astype(np.float64)


def plucker_rays(camera: CameraModel, T_world_cam,
                 uv) -> tuple[np.ndarray, np.ndarray]:
    """
    Plücker rays of pixels of a posed camera, in the world frame.

    :param camera: the camera model (lens distortion is removed).
    :param T_world_cam: ``(4, 4)`` pose of the camera optical frame in the world frame.
    :param uv: ``(M, 2)`` pixels.
    :return: ``directions`` ``(M, 3)`` float64 unit vectors and ``moments`` ``(M, 3)`` float64
        ``c x d`` (metres), ``c`` the camera centre in the world frame.
    """
    T = np.asarray(T_world_cam, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f'T_world_cam must have shape (4, 4), got {T.shape}')
    directions = pixel_rays(uv, camera) @ T[:3, :3].T
    moments = np.cross(T[:3, 3], directions)
    return directions, moments


def camera_from_rays(directions, moments, uv, camera: CameraModel,
                     weights=None) -> PoseEstimate:
    """
    Camera pose from Plücker rays in the world frame and the pixels they belong to.

    The centre ``c`` is the weighted least-squares solution of ``c x d_i = m_i``, i.e.
    ``sum w_i (I - d_i d_i^T) c = sum w_i d_i x m_i``. The rotation is the weighted Procrustes
    (Kabsch without translation) aligning the camera-frame bearings of ``uv`` to ``d_i``.
    Directions need not be unit: each ray is rescaled so that ``|d_i| = 1``. Rays with a
    non-finite or zero direction get weight 0.

    :param directions: ``(M, 3)`` ray directions in the world frame.
    :param moments: ``(M, 3)`` ray moments in the world frame (metres).
    :param uv: ``(M, 2)`` the pixels of the rays.
    :param camera: the camera model that maps ``uv`` to bearings.
    :param weights: ``(M,)`` non-negative weights, or None for all ones.
    :return: estimate with ``T`` = ``T_world_cam``, ``inliers`` None, ``residual_rms`` the
        weighted RMS of ``|c x d_i - m_i|`` (metres). ``ok`` is False with fewer than 2
        non-parallel rays of positive weight.
    """
    d = as_points(directions, 3, 'directions').astype(np.float64, copy=False)
    m = as_points(moments, 3, 'moments').astype(np.float64, copy=False)
    uv = as_points(uv, 2, 'uv')
    if not len(d) == len(m) == len(uv):
        raise ValueError(f'directions, moments and uv must have the same length, '
                         f'got {len(d)}, {len(m)} and {len(uv)}')
    w = as_weights(weights, len(d))
    bearings = pixel_rays(uv, camera)
    norm = np.linalg.norm(d, axis=1)
    valid = (np.all(np.isfinite(d), axis=1) & np.all(np.isfinite(m), axis=1)
             & np.all(np.isfinite(bearings), axis=1) & (norm > 1e-12))
    w = np.where(valid, w, 0.0)
    if np.count_nonzero(w) < 2:
        return PoseEstimate.failure(
            f'needs at least 2 rays with positive weight, got {np.count_nonzero(w)}')
    safe = np.where(valid, norm, 1.0)[:, None]
    d = np.where(valid[:, None], d / safe, 0.0)
    m = np.where(valid[:, None], m / safe, 0.0)
    b = np.where(valid[:, None], bearings, 0.0)
    w = w / w.sum()

    A = np.eye(3) - (w[:, None] * d).T @ d
    eig = np.linalg.eigvalsh(A)
    if not eig[0] > _PARALLEL_TOL:
        return PoseEstimate.failure('rays are parallel: camera centre undetermined')
    c = np.linalg.solve(A, w @ np.cross(d, m))

    U, S, Vt = np.linalg.svd((w[:, None] * b).T @ d)
    if not S[1] > _PARALLEL_TOL * S[0]:
        return PoseEstimate.failure('pixel bearings are parallel: rotation undetermined')
    V = Vt.T
    V[:, 2] *= np.where(np.linalg.det(V @ U.T) < 0.0, -1.0, 1.0)
    R = V @ U.T
    residual = np.cross(c, d) - m
    rms = float(np.sqrt(w @ np.sum(residual * residual, axis=1)))
    return PoseEstimate(make_transform(R, c), True, '', None, rms)
