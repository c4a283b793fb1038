"""
Differentiable torch versions of the geometry operations a network needs.

Same names, conventions and shapes as the numpy modules (rotations act on column vectors,
quaternions ``(x, y, z, w)``, 6D = first two columns, ``T_a_b`` maps b into a, optical camera
frames). Results follow the input's device and dtype; nothing here raises on degenerate values
(that would synchronize the device): numerically risky spots are guarded instead, so gradients
stay finite. Intrinsics are tensors: ``K`` ``(..., 3, 3)`` and optional plumb_bob coefficients
``D`` ``(..., k)`` with k in {0, 4, 5, 8}.
"""

from __future__ import annotations

import torch

# Below this angle (radians) the Rodrigues coefficients use their Taylor series.
_SMALL_ANGLE = 1e-4
# Points with z at or below this depth (metres) are "not in front" (as in projection.py).
MIN_DEPTH = 1e-6
# Newton iterations of the (unrolled, hence differentiable) plumb_bob undistortion.
UNDISTORT_ITERATIONS = 20


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([torch.stack([o, -z, y], -1),
                        torch.stack([z, o, -x], -1),
                        torch.stack([-y, x, o], -1)], -2)


def _check_last(x: torch.Tensor, trailing: tuple[int, ...], name: str) -> None:
    n = len(trailing)
    if x.dim() < n or tuple(x.shape[x.dim() - n:]) != trailing:
        want = ', '.join(['...'] + [str(d) for d in trailing])
        raise ValueError(f'{name} must have shape ({want}), got {tuple(x.shape)}')


def so3_exp(phi: torch.Tensor) -> torch.Tensor:
    """
    Rotation matrices from rotation vectors (Rodrigues), differentiable also at 0.

    :param phi: ``(..., 3)`` axis times angle, radians.
    :return: ``(..., 3, 3)`` rotation matrices.
    """
    _check_last(phi, (3,), 'phi')
    theta2 = (phi * phi).sum(-1)
    small = theta2 < _SMALL_ANGLE ** 2
    # sqrt has an infinite derivative at 0: keep the small branch free of it.
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1.0 - theta2 / 6.0 + theta2 ** 2 / 120.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0 + theta2 ** 2 / 720.0,
                    2.0 * torch.sin(0.5 * theta) ** 2 / (theta * theta))
    K = _skew(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return eye + a[..., None, None] * K + b[..., None, None] * (K @ K)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """
    Rotation matrices from quaternions ``(x, y, z, w)`` (normalized here).

    :param q: ``(..., 4)``; a zero quaternion gives the identity rather than an error.
    :return: ``(..., 3, 3)``.
    """
    _check_last(q, (4,), 'q')
    x, y, z, w = (q / torch.linalg.norm(q, dim=-1, keepdim=True).clamp_min(1e-12)).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """
    Rotation matrices from the 6D representation (first two columns, Gram-Schmidt).

    :param d6: ``(..., 6)``: ``(R[:, 0], R[:, 1])`` up to scale and skew.
    :return: ``(..., 3, 3)`` with columns ``(b1, b2, b1 x b2)``; norms are clamped at 1e-12
        so degenerate input gives a finite (meaningless) result instead of NaN.
    """
    _check_last(d6, (6,), 'd6')
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / torch.linalg.norm(a1, dim=-1, keepdim=True).clamp_min(1e-12)
    u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = u2 / torch.linalg.norm(u2, dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.stack([b1, b2, torch.linalg.cross(b1, b2, dim=-1)], dim=-1)


def matrix_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """Return the 6D representation ``(R[:, 0], R[:, 1])`` of rotations ``(..., 3, 3)``."""
    _check_last(R, (3, 3), 'R')
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """
    Map points ``(..., N, 3)`` by transforms ``(..., 4, 4)`` (``T_a_b``: b into a).

    Computed in the promoted dtype of ``T`` and ``points``; returned in the dtype of ``points``.
    """
    _check_last(T, (4, 4), 'T')
    if points.dim() < 2 or points.shape[-1] != 3:
        raise ValueError(f'points must have shape (..., N, 3), got {tuple(points.shape)}')
    dtype = torch.promote_types(T.dtype, points.dtype)
    T, p = T.to(dtype), points.to(dtype)
    out = p @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]
    return out.to(points.dtype)


def _coefficients(D: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """Plumb_bob coefficients padded to 8, or None for a pinhole camera."""
    if D is None or D.shape[-1] == 0:
        return None
    if D.shape[-1] not in (4, 5, 8):
        raise ValueError(f'plumb_bob needs 4, 5 or 8 coefficients, got {D.shape[-1]}')
    return torch.nn.functional.pad(D.to(like), (0, 8 - D.shape[-1]))


def _plumb_bob(x: torch.Tensor, y: torch.Tensor, d: torch.Tensor, jacobian: bool = False):
    k1, k2, p1, p2, k3, k4, k5, k6 = (c[..., None] for c in d.unbind(-1))
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


def project_points(points_cam: torch.Tensor, K: torch.Tensor,
                   D: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Project points in the camera optical frame to pixels (pinhole or plumb_bob).

    :param points_cam: ``(..., N, 3)`` metres.
    :param K: ``(..., 3, 3)`` camera matrices, batch broadcast against the points.
    :param D: ``(..., k)`` plumb_bob coefficients (k in 4, 5, 8), or None / k = 0 for pinhole.
    :return: ``uv`` ``(..., N, 2)`` pixels, NaN where not in front (mask before reducing:
        the gradient of the finite entries is finite), and ``in_front`` ``(..., N)`` bool
        (``z > MIN_DEPTH`` and finite).
    """
    if points_cam.dim() < 2 or points_cam.shape[-1] != 3:
        raise ValueError(f'points_cam must have shape (..., N, 3), got {tuple(points_cam.shape)}')
    _check_last(K, (3, 3), 'K')
    K = K.to(points_cam)
    in_front = (points_cam[..., 2] > MIN_DEPTH) & torch.isfinite(points_cam).all(-1)
    unit_z = torch.zeros_like(points_cam)
    unit_z[..., 2] = 1.0
    p = torch.where(in_front[..., None], points_cam, unit_z)
    x, y = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
    d = _coefficients(D, points_cam)
    if d is not None:
        x, y = _plumb_bob(x, y, d)
    u = K[..., None, 0, 0] * x + K[..., None, 0, 1] * y + K[..., None, 0, 2]
    v = K[..., None, 1, 1] * y + K[..., None, 1, 2]
    uv = torch.stack([u, v], dim=-1)
    return torch.where(in_front[..., None], uv, torch.full_like(uv, float('nan'))), in_front


def pixel_rays(uv: torch.Tensor, K: torch.Tensor, D: torch.Tensor | None = None) -> torch.Tensor:
    """
    Compute unit bearing vectors of pixels in the camera optical frame.

    :param uv: ``(..., M, 2)`` pixels.
    :param K: ``(..., 3, 3)``.
    :param D: optional plumb_bob coefficients ``(..., k)``; undistorted by ``UNDISTORT_ITERATIONS``
        unrolled Newton steps (no convergence check, unlike the numpy version).
    :return: ``(..., M, 3)`` unit vectors.
    """
    if uv.dim() < 2 or uv.shape[-1] != 2:
        raise ValueError(f'uv must have shape (..., M, 2), got {tuple(uv.shape)}')
    _check_last(K, (3, 3), 'K')
    K = K.to(uv)
    y = (uv[..., 1] - K[..., None, 1, 2]) / K[..., None, 1, 1]
    x = (uv[..., 0] - K[..., None, 0, 2] - K[..., None, 0, 1] * y) / K[..., None, 0, 0]
    d = _coefficients(D, uv)
    if d is not None:
        xd, yd = x, y
        for _ in range(UNDISTORT_ITERATIONS):
            fx, fy, (j11, j12, j22) = _plumb_bob(x, y, d, jacobian=True)
            ex, ey = fx - xd, fy - yd
            det = j11 * j22 - j12 * j12
            x = x - (j22 * ex - j12 * ey) / det
            y = y - (j11 * ey - j12 * ex) / det
    rays = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    return rays / torch.linalg.norm(rays, dim=-1, keepdim=True)


def plucker_rays(K: torch.Tensor, T_world_cam: torch.Tensor, uv: torch.Tensor,
                 D: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Plücker rays ``(directions, moments)`` of pixels of a posed camera, in the world frame.

    :param K: ``(..., 3, 3)`` camera matrices.
    :param T_world_cam: ``(..., 4, 4)`` camera poses in the world frame.
    :param uv: ``(..., M, 2)`` pixels.
    :param D: optional plumb_bob coefficients ``(..., k)``.
    :return: ``directions`` ``(..., M, 3)`` unit, ``moments`` ``(..., M, 3)`` = ``c x d``.
    """
    _check_last(T_world_cam, (4, 4), 'T_world_cam')
    T = T_world_cam.to(uv)
    directions = pixel_rays(uv, K, D) @ T[..., :3, :3].transpose(-1, -2)
    centre = T[..., None, :3, 3].expand_as(directions)
    return directions, torch.linalg.cross(centre, directions, dim=-1)


def geodesic_angle(R_a: torch.Tensor, R_b: torch.Tensor) -> torch.Tensor:
    """
    Rotation angle of ``R_a^T R_b`` in radians, ``(...)``; atan2-based, finite gradients.

    At exactly equal rotations (and exactly pi) the gradient is taken as 0 (the angle has a
    kink there).
    """
    _check_last(R_a, (3, 3), 'R_a')
    _check_last(R_b, (3, 3), 'R_b')
    R = R_a.transpose(-1, -2) @ R_b
    v = 0.5 * torch.stack([R[..., 2, 1] - R[..., 1, 2],
                           R[..., 0, 2] - R[..., 2, 0],
                           R[..., 1, 0] - R[..., 0, 1]], -1)
    s2 = (v * v).sum(-1)
    positive = s2 > 0
    s = torch.where(positive, torch.sqrt(torch.where(positive, s2, torch.ones_like(s2))),
                    torch.zeros_like(s2))
    c = 0.5 * (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0)
    return torch.atan2(s, c)
