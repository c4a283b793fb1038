"""
Closed-form and robust pose solvers: weighted Procrustes (3D-3D) and PnP with RANSAC (3D-2D).

Every solver returns a :class:`PoseEstimate`. Degenerate input (too few points, collinear points,
zero weights, a failed RANSAC) is not an exception: the estimate has ``ok=False`` and a
``reason``. Wrong shapes and invalid arguments raise ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ._checks import as_points, as_weights
from .projection import pixels_to_normalized, project_points
from .se3 import make_transform, se3_exp, transform_points
from ..sensors import CameraModel

# Relative size of the second singular value below which a point set counts as collinear.
_RANK_TOL = 1e-10
_PNP_REFINE_ROUNDS = 3
_LM_ITERATIONS = 30
_LM_STEP = 1e-6


@dataclass(frozen=True, eq=False)
class PoseEstimate:
    """
    The result of a pose solver.

    :param T: ``(4, 4)`` float64 transform named by the solver (e.g. ``T_cam_world``); all NaN
        when ``ok`` is False, so that a failed estimate can never pass for a pose.
    :param ok: whether the estimate is valid.
    :param reason: why it is not (empty when ``ok``).
    :param inliers: ``(N,)`` bool per input correspondence, or None when the solver has no
        notion of inliers.
    :param residual_rms: root mean square residual of the fit, in the solver's units (inf when
        not ``ok``).
    """

    T: np.ndarray
    ok: bool
    reason: str = ''
    inliers: np.ndarray | None = None
    residual_rms: float = float('inf')

    def __post_init__(self):
        T = np.array(self.T, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f'T must have shape (4, 4), got {T.shape}')
        T.flags.writeable = False
        object.__setattr__(self, 'T', T)
        if self.inliers is not None:
            inliers = np.array(self.inliers, dtype=bool)
            if inliers.ndim != 1:
                raise ValueError(f'inliers must have shape (N,), got {inliers.shape}')
            inliers.flags.writeable = False
            object.__setattr__(self, 'inliers', inliers)
        object.__setattr__(self, 'ok', bool(self.ok))
        object.__setattr__(self, 'residual_rms', float(self.residual_rms))

    @classmethod
    def failure(cls, reason: str, inliers: np.ndarray | None = None) -> 'PoseEstimate':
        """Make a failed estimate: NaN transform, ``ok=False``, the given reason."""
        return cls(np.full((4, 4), np.nan), False, reason, inliers, float('inf'))


def weighted_procrustes(src, dst, weights=None) -> PoseEstimate:
    """
    Find the rigid transform that best maps ``src`` onto ``dst`` (Kabsch, no scale).

    Minimizes ``sum_i w_i |R src_i + t - dst_i|^2``; the SVD determinant fix keeps ``R`` a
    proper rotation (no reflection).

    :param src: ``(N, 3)`` points in frame s.
    :param dst: ``(N, 3)`` corresponding points in frame d.
    :param weights: ``(N,)`` non-negative weights, or None for all ones.
    :return: estimate with ``T`` = ``T_d_s`` (``dst ~ R src + t``), ``residual_rms`` the weighted
        RMS point distance (metres), ``inliers`` None. ``ok`` is False with fewer than 3 points
        of positive weight, or collinear / coincident points.
    """
    src = as_points(src, 3, 'src').astype(np.float64, copy=False)
    dst = as_points(dst, 3, 'dst').astype(np.float64, copy=False)
    if src.shape != dst.shape:
        raise ValueError(f'src and dst must have the same shape, got {src.shape} and {dst.shape}')
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError('src and dst must be finite')
    w = as_weights(weights, len(src))
    if np.count_nonzero(w) < 3:
        return PoseEstimate.failure(
            f'needs at least 3 points with positive weight, got {np.count_nonzero(w)}')
    w = w / w.sum()
    src_mean = w @ src
    dst_mean = w @ dst
    H = (src - src_mean).T @ (w[:, None] * (dst - dst_mean))
    U, S, Vt = np.linalg.svd(H)
    if not S[1] > _RANK_TOL * S[0]:
        return PoseEstimate.failure('points are collinear or coincident: rotation undetermined')
    V = Vt.T
    V[:, 2] *= np.where(np.linalg.det(V @ U.T) < 0.0, -1.0, 1.0)
    R = V @ U.T
    T = make_transform(R, dst_mean - R @ src_mean)
    residual = transform_points(T, src) - dst
    rms = float(np.sqrt(w @ np.sum(residual * residual, axis=1)))
    return PoseEstimate(T, True, '', None, rms)


def _reprojection_residuals(T_cam_world: np.ndarray, points: np.ndarray, uv: np.ndarray,
                            camera: CameraModel) -> np.ndarray:
    """Pixel offsets ``(N, 2)`` projected minus observed in the real image; NaN behind it."""
    proj, _ = project_points(transform_points(T_cam_world, points), camera)
    return proj - uv


def _rvec_tvec_to_T(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
    return make_transform(R, np.asarray(tvec, dtype=np.float64).reshape(3))


def _refine_lm(T: np.ndarray, points: np.ndarray, uv: np.ndarray,
               camera: CameraModel) -> np.ndarray:
    """
    Levenberg-Marquardt on the reprojection error in the real (distorted) image.

    The pose is updated on the left, ``se3_exp(delta) @ T``; the Jacobian is taken by central
    differences, whose error only slows convergence (6 parameters, few hundred points).
    """
    def cost_of(T_):
        r_ = _reprojection_residuals(T_, points, uv, camera).ravel()
        return r_, (float(r_ @ r_) if np.all(np.isfinite(r_)) else np.inf)

    r, cost = cost_of(T)
    if not np.isfinite(cost):
        return T
    lam = 1e-3
    for _ in range(_LM_ITERATIONS):
        J = np.empty((r.size, 6))
        for k in range(6):
            e = np.zeros(6)
            e[k] = _LM_STEP
            J[:, k] = (cost_of(se3_exp(e) @ T)[0] - cost_of(se3_exp(-e) @ T)[0]) / (2 * _LM_STEP)
        if not np.all(np.isfinite(J)):
            break
        H, g = J.T @ J, J.T @ r
        while lam < 1e10:
            delta = np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-12), -g)
            T_new = se3_exp(delta) @ T
            r_new, cost_new = cost_of(T_new)
            if cost_new <= cost:
                break
            lam *= 10.0
        else:
            break
        converged = cost - cost_new <= 1e-14 * cost or np.max(np.abs(delta)) < 1e-13
        T, r, cost, lam = T_new, r_new, cost_new, max(lam * 0.1, 1e-9)
        if converged:
            break
    return T


def pnp_ransac(points_3d, uv, camera: CameraModel, reprojection_px: float = 3.0,
               iterations: int = 1000, confidence: float = 0.999, seed: int = 0) -> PoseEstimate:
    """
    Camera pose from 3D-2D correspondences with outliers (OpenCV RANSAC + LM refinement).

    The pixels are first undistorted and re-expressed as ideal pinhole pixels with the same
    ``K``, so every distortion model (``equidistant`` included) goes through the same pinhole
    solver: ``cv2.solvePnPRansac`` (EPnP minimal sets) gives the initial pose and inliers.
    Levenberg-Marquardt then refines the pose on the inliers by the reprojection error in the
    real (distorted) image, where the threshold is defined (ideal pinhole pixels stretch without
    bound towards 90 degrees off-axis, which would let a fisheye's border points dominate), and
    the inliers are re-selected until they no longer change. OpenCV's global RNG is seeded with
    ``seed`` (``cv2.setRNGSeed``) so results are repeatable.

    :param points_3d: ``(N, 3)`` points in the world (or LiDAR) frame, metres.
    :param uv: ``(N, 2)`` their observed pixels.
    :param camera: the camera model.
    :param reprojection_px: inlier threshold in pixels (> 0).
    :param iterations: maximum RANSAC iterations (>= 1).
    :param confidence: RANSAC confidence in (0, 1).
    :param seed: seed for OpenCV's RNG.
    :return: estimate with ``T`` = ``T_cam_world``, ``inliers`` ``(N,)`` bool and
        ``residual_rms`` the RMS reprojection error of the inliers in pixels. ``ok`` is False
        with fewer than 4 usable correspondences or fewer than 4 final inliers.
    """
    pts = as_points(points_3d, 3, 'points_3d').astype(np.float64, copy=False)
    uv = as_points(uv, 2, 'uv').astype(np.float64, copy=False)
    if len(pts) != len(uv):
        raise ValueError(f'points_3d and uv must have the same length, '
                         f'got {len(pts)} and {len(uv)}')
    if not reprojection_px > 0:
        raise ValueError(f'reprojection_px must be positive, got {reprojection_px}')
    if int(iterations) < 1:
        raise ValueError(f'iterations must be at least 1, got {iterations}')
    if not 0.0 < confidence < 1.0:
        raise ValueError(f'confidence must be in (0, 1), got {confidence}')
    n = len(pts)
    inliers = np.zeros(n, dtype=bool)
    if n < 4:
        return PoseEstimate.failure(f'PnP needs at least 4 correspondences, got {n}', inliers)

    xy = pixels_to_normalized(uv, camera)
    K = camera.K
    ideal = np.stack([K[0, 0] * xy[:, 0] + K[0, 1] * xy[:, 1] + K[0, 2],
                      K[1, 1] * xy[:, 1] + K[1, 2]], axis=-1)
    usable = np.all(np.isfinite(ideal), axis=1) & np.all(np.isfinite(pts), axis=1)
    if np.count_nonzero(usable) < 4:
        return PoseEstimate.failure(
            f'PnP needs at least 4 finite, undistortable correspondences, '
            f'got {np.count_nonzero(usable)}', inliers)
    index = np.flatnonzero(usable)
    cv2.setRNGSeed(int(seed))
    try:
        found, rvec, tvec, ransac_idx = cv2.solvePnPRansac(
            np.ascontiguousarray(pts[index]), np.ascontiguousarray(ideal[index]), K, None,
            iterationsCount=int(iterations), reprojectionError=float(reprojection_px),
            confidence=float(confidence))
    except cv2.error as exc:
        return PoseEstimate.failure(f'cv2.solvePnPRansac failed: {exc}', inliers)
    if not found or ransac_idx is None or len(ransac_idx) < 4:
        return PoseEstimate.failure('RANSAC found no pose with at least 4 inliers', inliers)

    T = _rvec_tvec_to_T(rvec, tvec)
    current = np.zeros(n, dtype=bool)
    current[index[ransac_idx.reshape(-1)]] = True
    for _ in range(_PNP_REFINE_ROUNDS):
        T = _refine_lm(T, pts[current], uv[current], camera)
        err = np.linalg.norm(_reprojection_residuals(T, pts, uv, camera), axis=1)
        updated = usable & (err <= reprojection_px)
        if np.count_nonzero(updated) < 4:
            return PoseEstimate.failure(
                f'only {np.count_nonzero(updated)} inliers after refinement (need 4)', updated)
        if np.array_equal(updated, current):
            break
        current = updated
    rms = float(np.sqrt(np.mean(err[updated] ** 2)))
    return PoseEstimate(T, True, '', updated, rms)
