"""
Ray-guided pose regression: from per-patch rays to the camera pose in the LiDAR frame.

Every patch contributes a token built from its fused feature, its predicted LiDAR-frame ray
``(d, m)`` and its reference ray (the bearing ``b`` of the patch centre in the camera frame,
from the intrinsics; moment 0). The token also carries ``d b^T``, ``d d^T`` and ``d x m``:
their weighted means are the cross-covariance and normal equations of the classical solver,
so the pooled vector holds what a closed-form solution needs. A softmax-weighted mean and a
max over patches give the pose vector; heads regress the rotation ``R_lidar_cam`` in the 6D
representation and the camera centre ``t_lidar_cam`` (metres). The classical
:func:`~i2p_registration.core.geometry.rays.camera_from_rays` is :func:`solve_pose_from_rays`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .rigid import invert_transform, make_transform
from ..geometry.rays import camera_from_rays
from ..geometry.se3 import inverse
from ..geometry.torch_ops import pixel_rays, rot6d_to_matrix
from ..sensors import CameraModel

# Token geometry: d, m, b, d b^T, upper triangle of d d^T, d x m.
GEOMETRY_CHANNELS = 3 + 3 + 3 + 9 + 6 + 3


def reference_rays(uv: torch.Tensor, K: torch.Tensor,
                   D: torch.Tensor | None = None) -> torch.Tensor:
    """
    Compute the reference rays: unit bearings ``(B, M, 3)`` of pixels in the camera frame.

    :param uv: ``(M, 2)`` or ``(B, M, 2)`` pixels.
    :param K: ``(B, 3, 3)``; ``D`` optional plumb_bob coefficients ``(B, k)``.
    """
    if uv.dim() == 2:
        uv = uv.expand(K.shape[0], -1, -1)
    return pixel_rays(uv, K, D)


def ray_geometry(d: torch.Tensor, m: torch.Tensor, b: torch.Tensor,
                 moment_scale: float) -> torch.Tensor:
    """
    Build the geometric part of the patch tokens, ``(B, M, GEOMETRY_CHANNELS)``.

    :param d: ``(B, M, 3)`` predicted directions (LiDAR frame).
    :param m: ``(B, M, 3)`` predicted moments, metres.
    :param b: ``(B, M, 3)`` reference bearings (camera frame).
    :param moment_scale: metres per unit, applied to ``m``.
    """
    m = m / moment_scale
    iu = torch.triu_indices(3, 3, device=d.device)
    dd = (d[..., :, None] * d[..., None, :])[..., iu[0], iu[1]]
    db = (d[..., :, None] * b[..., None, :]).flatten(-2)
    return torch.cat([d, m, b, db, dd, torch.linalg.cross(d, m, dim=-1)], dim=-1)


class PoseRegression(nn.Module):
    """
    Pooled ray tokens -> ``R_lidar_cam`` (6D) and camera centre ``t_lidar_cam``.

    :param channels: fused patch feature width.
    :param hidden: token and head width.
    :param moment_scale: metres per unit of the moments in the tokens.
    :param translation_scale: metres per unit of the translation output.
    """

    def __init__(self, channels: int, hidden: int, moment_scale: float = 20.0,
                 translation_scale: float = 10.0):
        super().__init__()
        self.moment_scale, self.translation_scale = moment_scale, translation_scale
        self.token = nn.Sequential(nn.Linear(channels + GEOMETRY_CHANNELS, hidden),
                                   nn.ReLU(inplace=True), nn.Linear(hidden, hidden))
        self.weight = nn.Linear(hidden, 1)
        self.head = nn.Sequential(nn.Linear(2 * hidden + GEOMETRY_CHANNELS, hidden),
                                  nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                                  nn.ReLU(inplace=True))
        self.rotation = nn.Linear(hidden, 6)
        self.translation = nn.Linear(hidden, 3)
        with torch.no_grad():
            # Start at the identity rotation and a zero translation.
            self.rotation.weight.mul_(0.1)
            self.rotation.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
            self.translation.weight.mul_(0.1)
            self.translation.bias.zero_()

    def forward(self, features: torch.Tensor, d: torch.Tensor, m: torch.Tensor,
                b: torch.Tensor) -> dict[str, torch.Tensor]:
        """
        Regress the camera pose in the LiDAR frame.

        :param features: ``(B, M, C)`` fused patch features.
        :param d: ``(B, M, 3)`` predicted ray directions, LiDAR frame.
        :param m: ``(B, M, 3)`` predicted ray moments, metres, LiDAR frame.
        :param b: ``(B, M, 3)`` reference bearings, camera frame.
        :return: ``R_lidar_cam`` ``(B, 3, 3)``, ``t_lidar_cam`` ``(B, 3)`` metres,
            ``rot6d`` ``(B, 6)`` (raw), ``weights`` ``(B, M)`` patch weights (sum to 1).
        """
        geometry = ray_geometry(d, m, b, self.moment_scale)
        tokens = self.token(torch.cat([features, geometry], dim=-1))
        weights = self.weight(tokens)[..., 0].softmax(-1)
        pooled = torch.cat([(weights[..., None] * tokens).sum(1), tokens.max(1).values,
                            (weights[..., None] * geometry).sum(1)], dim=-1)
        h = self.head(pooled)
        rot6d = self.rotation(h)
        return {'R_lidar_cam': rot6d_to_matrix(rot6d), 'rot6d': rot6d,
                't_lidar_cam': self.translation(h) * self.translation_scale,
                'weights': weights}


def pose_to_T_cam_lidar(R_lidar_cam: torch.Tensor, t_lidar_cam: torch.Tensor) -> torch.Tensor:
    """Return ``T_cam_lidar`` ``(B, 4, 4)`` from the camera pose in the LiDAR frame."""
    return invert_transform(make_transform(R_lidar_cam, t_lidar_cam))


def solve_pose_from_rays(d: torch.Tensor, m: torch.Tensor, uv: torch.Tensor, K: torch.Tensor,
                         image_hw: tuple[int, int], weights: torch.Tensor | None = None,
                         D: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Solve the pose with the classical camera-from-rays solver (not differentiable).

    :param d: ``(B, M, 3)`` ray directions, LiDAR frame.
    :param m: ``(B, M, 3)`` ray moments, metres, LiDAR frame.
    :param uv: ``(M, 2)`` or ``(B, M, 2)`` patch centres, pixels.
    :param K: ``(B, 3, 3)``; ``D`` optional plumb_bob coefficients ``(B, k)``.
    :param image_hw: ``(height, width)`` pixels.
    :param weights: ``(B, M)`` non-negative ray weights, or None.
    :return: ``T_cam_lidar`` ``(B, 4, 4)`` float64 (NaN where the solver failed) and ``ok``
        ``(B,)`` bool, on the device of ``d``.
    """
    B = d.shape[0]
    if uv.dim() == 2:
        uv = uv.expand(B, -1, -1)
    H, W = image_hw
    out, ok = np.full((B, 4, 4), np.nan), np.zeros(B, dtype=bool)
    for i in range(B):
        coeffs = np.zeros(0) if D is None else D[i].detach().cpu().double().numpy()
        camera = CameraModel(K[i].detach().cpu().double().numpy(), W, H,
                             'plumb_bob' if coeffs.size else 'none', coeffs)
        est = camera_from_rays(d[i].detach().cpu().double().numpy(),
                               m[i].detach().cpu().double().numpy(),
                               uv[i].detach().cpu().double().numpy(), camera,
                               None if weights is None
                               else weights[i].detach().cpu().double().numpy())
        if est.ok:
            out[i] = inverse(est.T)
            ok[i] = True
    return (torch.as_tensor(out, device=d.device),
            torch.as_tensor(ok, device=d.device))
