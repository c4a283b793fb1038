"""
Hierarchical point encoder in pure torch: farthest-point sampling, kNN and set abstraction.

PointNet++-style: each stage samples superpoints by farthest-point sampling, groups their k
nearest points (``torch.cdist`` + ``topk``, chunked to bound memory) and max-pools a shared MLP
over ``(offset, feature)`` pairs. Points are ``(B, N, 3)`` metres in the LiDAR frame.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# Largest query x point distance block held in memory by knn (elements).
_KNN_BLOCK = 1 << 23


def farthest_point_sample(points: torch.Tensor, n_samples: int) -> torch.Tensor:
    """
    Select ``n_samples`` indices by farthest-point sampling, starting from point 0.

    :param points: ``(B, N, 3)``.
    :param n_samples: 1 .. N.
    :return: ``(B, n_samples)`` int64 indices; each new index maximizes the distance to the
        already selected points (deterministic: ties go to the lowest index).
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must have shape (B, N, 3), got {tuple(points.shape)}')
    B, N, _ = points.shape
    if not 1 <= n_samples <= N:
        raise ValueError(f'cannot sample {n_samples} of {N} points')
    # Planar (B, 3, N) layout: three contiguous rows are several times faster than (N, 3).
    x, y, z = points.detach().transpose(1, 2).contiguous().unbind(1)
    idx = torch.zeros(B, n_samples, dtype=torch.long, device=points.device)
    dist = torch.full((B, N), float('inf'), dtype=x.dtype, device=x.device)
    far = torch.zeros(B, 1, dtype=torch.long, device=x.device)
    for i in range(n_samples):
        idx[:, i:i + 1] = far
        d = (x - x.gather(1, far)).square_()
        d += (y - y.gather(1, far)).square_()
        d += (z - z.gather(1, far)).square_()
        torch.minimum(dist, d, out=dist)
        far = dist.argmax(-1, keepdim=True)
    return idx


def knn(query: torch.Tensor, points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Find the ``k`` nearest points of each query point (Euclidean).

    :param query: ``(B, S, 3)``.
    :param points: ``(B, N, 3)``, N >= k.
    :return: ``distances`` ``(B, S, k)`` ascending (metres) and ``indices`` ``(B, S, k)``.
    """
    if query.dim() != 3 or points.dim() != 3 or query.shape[0] != points.shape[0]:
        raise ValueError(f'query (B, S, 3) and points (B, N, 3) must share B, got '
                         f'{tuple(query.shape)} and {tuple(points.shape)}')
    if not 1 <= k <= points.shape[1]:
        raise ValueError(f'k must be in 1..{points.shape[1]}, got {k}')
    chunk = max(1, _KNN_BLOCK // max(1, points.shape[0] * points.shape[1]))
    dists, idxs = [], []
    for q in query.split(chunk, dim=1):
        d, i = torch.cdist(q, points).topk(k, dim=-1, largest=False, sorted=True)
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists, dim=1), torch.cat(idxs, dim=1)


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """
    Gather rows of ``x`` ``(B, N, C)`` by indices ``(B, ...)`` into ``(B, ..., C)``.

    Differentiable with respect to ``x``.
    """
    B, C = x.shape[0], x.shape[-1]
    flat = idx.reshape(B, -1, 1).expand(-1, -1, C)
    return x.gather(1, flat).reshape(*idx.shape, C)


def mlp(channels: Sequence[int]) -> nn.Sequential:
    """Return Linear + LayerNorm + ReLU layers for the widths ``channels`` (>= 2 entries)."""
    layers = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [nn.Linear(c_in, c_out), nn.LayerNorm(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """
    One PointNet++ set-abstraction stage (FPS + kNN grouping + shared MLP + max pool).

    :param in_channels: point feature channels.
    :param out_channels: superpoint feature channels.
    :param n_samples: superpoints kept.
    :param k: neighbours grouped per superpoint.
    :param radius: metres that relative offsets are divided by (keeps MLP inputs near 1).
    """

    def __init__(self, in_channels: int, out_channels: int, n_samples: int, k: int,
                 radius: float):
        super().__init__()
        self.n_samples, self.k, self.radius = n_samples, k, radius
        self.mlp = mlp([in_channels + 3, out_channels, out_channels])

    def forward(self, xyz: torch.Tensor,
                features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``(B, N, 3)``, ``(B, N, C_in)`` to ``(B, S, 3)``, ``(B, S, C_out)``."""
        centres = gather(xyz, farthest_point_sample(xyz, self.n_samples))
        _, neighbours = knn(centres, xyz, self.k)
        offsets = (gather(xyz, neighbours) - centres[:, :, None]) / self.radius
        h = self.mlp(torch.cat([offsets, gather(features, neighbours)], dim=-1))
        return centres, h.max(dim=2).values


class PointEncoder(nn.Module):
    """
    Points to superpoints: a stack of set-abstraction stages and a linear projection.

    :param samples: superpoints per stage, decreasing.
    :param neighbours: k per stage.
    :param widths: channels per stage.
    :param out_channels: channels of the superpoint features.
    :param coord_scale: metres; input coordinates are divided by it as initial features, and
        stage ``i`` divides offsets by ``coord_scale * 2 ** i / 16``.
    """

    def __init__(self, samples: Sequence[int], neighbours: Sequence[int],
                 widths: Sequence[int], out_channels: int, coord_scale: float = 50.0):
        super().__init__()
        if not len(samples) == len(neighbours) == len(widths) >= 1:
            raise ValueError('samples, neighbours and widths need one entry per stage')
        if list(samples) != sorted(samples, reverse=True):
            raise ValueError(f'superpoints per stage must decrease, got {tuple(samples)}')
        self.coord_scale = coord_scale
        stages, c = [], 3
        for i, (s, k, w) in enumerate(zip(samples, neighbours, widths)):
            stages.append(SetAbstraction(c, w, s, k, coord_scale * 2 ** i / 16))
            c = w
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(c, out_channels)

    @property
    def min_points(self) -> int:
        """Return the fewest input points the encoder accepts."""
        return max(self.stages[0].n_samples, self.stages[0].k)

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Encode a point cloud.

        :param points: ``(B, N, 3)`` float metres (LiDAR frame), N >= ``min_points``.
        :return: superpoint coordinates ``(B, S, 3)`` (a subset of the points) and features
            ``(B, S, C)``.
        """
        if points.dim() != 3 or points.shape[-1] != 3 or not points.is_floating_point():
            raise ValueError(f'points must be a float (B, N, 3) tensor, got {tuple(points.shape)}')
        if points.shape[1] < self.min_points:
            raise ValueError(f'the point encoder needs at least {self.min_points} points, '
                             f'got {points.shape[1]}')
        xyz, features = points, points / self.coord_scale
        for stage in self.stages:
            xyz, features = stage(xyz, features)
        return xyz, self.head(features)
