"""
Camera projection: lens distortion, projecting points to pixels and pixels back to rays.

Frames: points are in the camera optical frame (x right, y down, z forward) unless the name says
otherwise. Pixels follow OpenCV: ``(u, v)`` with ``(0, 0)`` the centre of the top-left pixel.
"Normalized" coordinates are ``(x / z, y / z)``; distortion maps undistorted normalized
coordinates to distorted ones, exactly as ``cv2.projectPoints`` (``'plumb_bob'``, the rational
model k1, k2, p1, p2[, k3[, k4, k5, k6]]) and ``cv2.fisheye.projectPoints`` (``'equidistant'``,
k1..k4) do, so projections agree with OpenCV to rounding.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float64, as_points
from .se3 import transform_points
from ..sensors import CameraModel, DISTORTION_MODELS

# Points with z at or below this depth (metres) are "not in front" of the camera.
MIN_DEPTH = 1e-6
# Undistortion stops when the distortion residual is below this (normalized units) ...
UNDISTORT_TOL = 1e-12
# ... and marks a point as failed (NaN) when it is still above this after the last iteration.
_UNDISTORT_FAIL = 1e-9
_UNDISTORT_ITERATIONS = 50


def _coefficients(model: str, D) -> np.ndarray:
    """Validate coefficients: 8 rational-model values for plumb_bob, 4 for equidistant."""
    if model not in DISTORTION_MODELS:
        raise ValueError(f'unknown distortion model {model!r}, '
                         f'expected one of {DISTORTION_MODELS}')
    D = np.asarray(D if D is not None else [], dtype=np.float64).reshape(-1)
    if model == 'plumb_bob':
        if D.size not in (4, 5, 8):
            raise ValueError(f'plumb_bob needs 4, 5 or 8 coefficients, got {D.size}')
        return np.concatenate([D, np.zeros(8 - D.size)])
    if model == 'equidistant' and D.size != 4:
        raise ValueError(f'equidistant needs 4 coefficients, got {D.size}')
    if model == 'none' and np.any(D != 0):
        raise ValueError('distortion model "none" takes no non-zero coefficients')
    return D


def _plumb_bob(x: np.ndarray, y: np.ndarray, d: np.ndarray, jacobian: bool = False):
    """Evaluate the rational model at ``(x, y)``; with ``jacobian`` also J11, J12 = J21, J22."""
    k1, k2, p1, p2, k3, k4, k5, k6 = d
    r2 = x * x + y * y
    num = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    den = 1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))
    radial = num / den
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    if not jacobian:
        return xd, yd
    dnum = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)
    dden = k4 + r2 * (2.0 * k5 + 3.0 * k6 * r2)
    dradial = (dnum * den - num * dden) / (den * den)
    j11 = radial + 2.0 * x * x * dradial + 2.0 * p1 * y + 6.0 * p2 * x
    j12 = 2.0 * x * y * dradial + 2.0 * p1 * x + 2.0 * p2 * y
    j22 = radial + 2.0 * y * y * dradial + 6.0 * p1 * y + 2.0 * p2 * x
    return xd, yd, (j11, j12, j22)


def _theta_d(theta: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Equidistant distorted angle ``theta (1 + k1 theta^2 + ... + k4 theta^8)``."""
    t2 = theta * theta
    return theta * (1.0 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))


def distort(xy_normalized, model: str, D) -> np.ndarray:
    """
    Apply lens distortion to undistorted normalized image coordinates.

    :param xy_normalized: ``(..., 2)`` undistorted ``(x / z, y / z)``.
    :param model: ``'none'``, ``'plumb_bob'`` or ``'equidistant'``.
    :param D: coefficients of that model (see :class:`~i2p_registration.core.sensors.CameraModel`).
    :return: ``(..., 2)`` float64 distorted normalized coordinates.
    """
    xy = as_float64(xy_normalized, (2,), 'xy_normalized')
    d = _coefficients(model, D)
    if model == 'none':
        return xy.copy()
    x, y = xy[..., 0], xy[..., 1]
    if model == 'plumb_bob':
        return np.stack(_plumb_bob(x, y, d), axis=-1)
    r = np.hypot(x, y)
    safe = np.where(r > 0.0, r, 1.0)
    scale = np.where(r > 0.0, _theta_d(np.arctan(safe), d) / safe, 1.0)
    return xy * scale[..., None]


def _undistort_plumb_bob(xd: np.ndarray, yd: np.ndarray, d: np.ndarray):
    """Newton's method on the 2x2 system, started at the distorted point."""
    x, y = xd.copy(), yd.copy()
    for _ in range(_UNDISTORT_ITERATIONS):
        fx, fy, (j11, j12, j22) = _plumb_bob(x, y, d, jacobian=True)
        ex, ey = fx - xd, fy - yd
        if not np.nanmax(np.abs(ex) + np.abs(ey), initial=0.0) > UNDISTORT_TOL:
            break
        det = j11 * j22 - j12 * j12
        det = np.where(np.abs(det) > 1e-300, det, np.nan)
        x = x - (j22 * ex - j12 * ey) / det
        y = y - (j11 * ey - j12 * ex) / det
    fx, fy = _plumb_bob(x, y, d)
    bad = ~(np.abs(fx - xd) + np.abs(fy - yd) <= _UNDISTORT_FAIL)
    return np.where(bad, np.nan, x), np.where(bad, np.nan, y)


def _undistort_equidistant(xy: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Newton's method on the 1D angle equation ``theta_d(theta) = |xy|``, theta in [0, pi/2)."""
    rd = np.hypot(xy[..., 0], xy[..., 1])
    theta = np.minimum(rd, 1.5)
    for _ in range(_UNDISTORT_ITERATIONS):
        err = _theta_d(theta, d) - rd
        if not np.nanmax(np.abs(err), initial=0.0) > UNDISTORT_TOL:
            break
        t2 = theta * theta
        deriv = 1.0 + t2 * (3 * d[0] + t2 * (5 * d[1] + t2 * (7 * d[2] + t2 * 9 * d[3])))
        theta = theta - err / np.where(np.abs(deriv) > 1e-300, deriv, np.nan)
    bad = ~((np.abs(_theta_d(theta, d) - rd) <= _UNDISTORT_FAIL)
            & (theta >= 0.0) & (theta < 0.5 * np.pi))
    safe_rd = np.where(rd > 0.0, rd, 1.0)
    scale = np.where(rd > 0.0, np.tan(np.where(bad, 0.0, theta)) / safe_rd, 1.0)
    return np.where(bad[..., None], np.nan, xy * scale[..., None])


def undistort(xy_distorted, model: str, D) -> np.ndarray:
    """
    Remove lens distortion from distorted normalized image coordinates (inverse of distort).

    Newton iterations until the distortion residual is below ``UNDISTORT_TOL`` (1e-12). Points
    for which no undistorted preimage is found (residual still above 1e-9, or beyond 90 degrees
    from the axis for ``'equidistant'``) come back as NaN.

    :param xy_distorted: ``(..., 2)`` distorted normalized coordinates.
    :param model: ``'none'``, ``'plumb_bob'`` or ``'equidistant'``.
    :param D: coefficients of that model.
    :return: ``(..., 2)`` float64 undistorted normalized coordinates ``(x / z, y / z)``.
    """
    xy = as_float64(xy_distorted, (2,), 'xy_distorted')
    d = _coefficients(model, D)
    if model == 'none':
        return xy.copy()
    if model == 'plumb_bob':
        return np.stack(_undistort_plumb_bob(xy[..., 0], xy[..., 1], d), axis=-1)
    return _undistort_equidistant(xy, d)


def _check_camera(camera) -> CameraModel:
    if not isinstance(camera, CameraModel):
        raise ValueError(f'camera must be a CameraModel, got {type(camera).__name__}')
    return camera


def project_points(points_cam, camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """
    Project points in the camera optical frame to pixels, with the camera's lens distortion.

    Agrees with ``cv2.projectPoints`` / ``cv2.fisheye.projectPoints`` (identity pose) for the
    points in front; the full ``K`` (including skew) is applied.

    :param points_cam: ``(N, 3)`` points in the camera optical frame, metres (any float dtype).
    :param camera: the camera model.
    :return: ``uv`` ``(N, 2)`` float64 pixels, NaN where not in front; ``in_front`` ``(N,)`` bool,
        true where ``z > MIN_DEPTH`` (1e-6 m) and the point is finite.
    """
    camera = _check_camera(camera)
    p = as_points(points_cam, 3, 'points_cam').astype(np.float64, copy=False)
    z = p[:, 2]
    in_front = (z > MIN_DEPTH) & np.all(np.isfinite(p), axis=1)
    safe_z = np.where(in_front, z, 1.0)
    xy = distort(p[:, :2] / safe_z[:, None], camera.distortion_model, camera.D)
    K = camera.K
    u = K[0, 0] * xy[:, 0] + K[0, 1] * xy[:, 1] + K[0, 2]
    v = K[1, 1] * xy[:, 1] + K[1, 2]
    uv = np.stack([u, v], axis=-1)
    uv[~in_front] = np.nan
    return uv, in_front


def project_lidar_points(points_lidar, T_cam_lidar,
                         camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """
    Project LiDAR points into the image: :func:`project_points` after ``T_cam_lidar``.

    :param points_lidar: ``(N, 3)`` points in the LiDAR frame, metres.
    :param T_cam_lidar: ``(4, 4)`` transform from the LiDAR frame into the camera optical frame.
    :param camera: the camera model.
    :return: ``uv`` ``(N, 2)`` float64 pixels (NaN where not in front), ``in_front`` ``(N,)`` bool.
    """
    T = np.asarray(T_cam_lidar, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f'T_cam_lidar must have shape (4, 4), got {T.shape}')
    pts = as_points(points_lidar, 3, 'points_lidar').astype(np.float64, copy=False)
    return project_points(transform_points(T, pts), camera)


def in_image(uv, camera: CameraModel, margin: float = 0.0) -> np.ndarray:
    """
    Which pixels lie inside the image, optionally shrunk by a margin.

    The image covers ``[-0.5, width - 0.5) x [-0.5, height - 0.5)`` (pixel centres at integers).

    :param uv: ``(N, 2)`` pixels; NaN counts as outside.
    :param camera: the camera model (its width and height).
    :param margin: pixels to stay away from every border (negative grows the image).
    :return: ``(N,)`` bool.
    """
    camera = _check_camera(camera)
    uv = as_points(uv, 2, 'uv')
    u, v = uv[:, 0], uv[:, 1]
    lo = -0.5 + margin
    return ((u >= lo) & (u < camera.width - 0.5 - margin)
            & (v >= lo) & (v < camera.height - 0.5 - margin))


def pixels_to_normalized(uv, camera: CameraModel) -> np.ndarray:
    """
    Undistorted normalized coordinates ``(x / z, y / z)`` of pixels: inverse ``K``, undistort.

    :param uv: ``(N, 2)`` pixels.
    :param camera: the camera model.
    :return: ``(N, 2)`` float64 (NaN where undistortion fails, see :func:`undistort`).
    """
    camera = _check_camera(camera)
    uv = as_points(uv, 2, 'uv').astype(np.float64, copy=False)
    K = camera.K
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    x = (uv[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return undistort(np.stack([x, y], axis=-1), camera.distortion_model, camera.D)


def unproject(uv, depth, camera: CameraModel) -> np.ndarray:
    """
    Lift pixels with known depth back to 3D points (inverse of :func:`project_points`).

    :param uv: ``(N, 2)`` pixels.
    :param depth: ``(N,)`` depths along the optical axis (z, metres), or a scalar for all.
    :param camera: the camera model; distortion is removed by :func:`undistort`.
    :return: ``(N, 3)`` float64 points in the camera optical frame (NaN where undistortion fails).
    """
    xy = pixels_to_normalized(uv, camera)
    z = np.asarray(depth, dtype=np.float64)
    if z.ndim == 0:
        z = np.full(len(xy), float(z))
    if z.shape != (len(xy),):
        raise ValueError(f'depth must be a scalar or have shape ({len(xy)},), got {z.shape}')
    return np.concatenate([xy * z[:, None], z[:, None]], axis=-1)


def pixel_rays(uv, camera: CameraModel) -> np.ndarray:
    """
    Compute unit bearing vectors of pixels in the camera optical frame (distortion removed).

    :param uv: ``(N, 2)`` pixels.
    :param camera: the camera model.
    :return: ``(N, 3)`` float64 unit vectors with ``z > 0`` (NaN where undistortion fails).
    """
    xy = pixels_to_normalized(uv, camera)
    rays = np.concatenate([xy, np.ones((len(xy), 1))], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)
