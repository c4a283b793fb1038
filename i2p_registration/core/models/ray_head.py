"""
Ray head: one 6D Plücker ray per image patch, in the LiDAR frame.

A ray through the camera centre ``c`` with unit direction ``d`` is ``(d, m)``, ``m = c x d``
(metres). The head predicts ``(d, m / moment_scale)`` and projects the moment onto the plane
orthogonal to ``d``, so that every output is a valid Plücker line.
"""

from __future__ import annotations

import torch
from torch import nn

from .rigid import invert_transform
from ..geometry.torch_ops import plucker_rays


def plucker_from_raw(raw: torch.Tensor,
                     moment_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Turn raw 6-vectors ``(..., 6)`` into valid Plücker rays.

    :param raw: ``(..., 6)``: unnormalized direction, then moment / ``moment_scale``.
    :param moment_scale: metres per unit of the raw moment.
    :return: ``directions`` ``(..., 3)`` unit and ``moments`` ``(..., 3)`` metres, orthogonal
        to the directions.
    """
    if raw.shape[-1] != 6:
        raise ValueError(f'raw rays must have shape (..., 6), got {tuple(raw.shape)}')
    d = raw[..., :3] / torch.linalg.norm(raw[..., :3], dim=-1, keepdim=True).clamp_min(1e-6)
    m = raw[..., 3:] * moment_scale
    return d, m - (m * d).sum(-1, keepdim=True) * d


def ray_targets(T_cam_lidar: torch.Tensor, K: torch.Tensor, uv: torch.Tensor,
                D: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Compute the ground-truth Plücker rays of patch centres in the LiDAR frame.

    :param T_cam_lidar: ``(B, 4, 4)`` maps LiDAR points into the camera optical frame.
    :param K: ``(B, 3, 3)``; ``D`` optional plumb_bob coefficients ``(B, k)``.
    :param uv: ``(M, 2)`` or ``(B, M, 2)`` pixels.
    :return: ``directions`` ``(B, M, 3)`` unit and ``moments`` ``(B, M, 3)`` metres.
    """
    if uv.dim() == 2:
        uv = uv.expand(T_cam_lidar.shape[0], -1, -1)
    return plucker_rays(K, invert_transform(T_cam_lidar).to(uv), uv, D)


class RayHead(nn.Module):
    """
    MLP from fused patch features ``(B, M, C)`` to Plücker rays in the LiDAR frame.

    :param channels: input width.
    :param moment_scale: metres per unit of the raw moment (about the scene radius).
    """

    def __init__(self, channels: int, moment_scale: float = 20.0):
        super().__init__()
        self.moment_scale = moment_scale
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                                 nn.Linear(channels, 6))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``directions`` ``(B, M, 3)`` (unit) and ``moments`` ``(B, M, 3)`` (metres)."""
        return plucker_from_raw(self.mlp(features), self.moment_scale)
