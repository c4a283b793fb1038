"""
Overlap detection: which superpoints lie inside the camera frustum.

The frustum depends on the unknown pose, so the detector first lets every superpoint attend to
the image patches, then classifies it. Its hard, detached prediction masks the patch -> point
attention; at least ``min_visible`` superpoints always stay visible.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import TransformerLayer
from ..geometry.torch_ops import project_points, transform_points


def frustum_labels(points: torch.Tensor, T_cam_lidar: torch.Tensor, K: torch.Tensor,
                   image_hw: tuple[int, int], D: torch.Tensor | None = None) -> torch.Tensor:
    """
    Label points that project inside the image (in front of the camera).

    :param points: ``(B, S, 3)`` metres in the LiDAR frame.
    :param T_cam_lidar: ``(B, 4, 4)`` maps LiDAR points into the camera optical frame.
    :param K: ``(B, 3, 3)``; ``D`` optional plumb_bob coefficients ``(B, k)``.
    :param image_hw: ``(height, width)`` pixels; inside means ``-0.5 <= u < W - 0.5`` etc.
    :return: ``(B, S)`` bool.
    """
    uv, in_front = project_points(transform_points(T_cam_lidar, points), K, D)
    H, W = image_hw
    u, v = uv[..., 0], uv[..., 1]
    inside = (u >= -0.5) & (u < W - 0.5) & (v >= -0.5) & (v < H - 0.5)
    return in_front & inside


def visible_mask(logits: torch.Tensor, threshold: float = 0.0,
                 min_visible: int = 1) -> torch.Tensor:
    """
    Turn overlap logits ``(B, S)`` into a bool mask of visible superpoints.

    Visible: ``logit > threshold`` or among the top ``min_visible`` logits of the row (so no
    row is empty and attention over the mask is always defined).
    """
    k = max(1, min(min_visible, logits.shape[-1]))
    index = logits.topk(k, dim=-1).indices
    # A tensor source (not a Python bool) keeps the mask traceable for TorchScript export.
    top = torch.zeros_like(logits, dtype=torch.bool).scatter(
        -1, index, torch.ones_like(index, dtype=torch.bool))
    return (logits > threshold) | top


class OverlapDetector(nn.Module):
    """
    Per-superpoint in-frustum classifier: cross-attention superpoints -> patches, then an MLP.

    :param channels: model width.
    :param heads: attention heads.
    :param mlp_ratio: feed-forward width ratio.
    """

    def __init__(self, channels: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.attention = TransformerLayer(channels, heads, mlp_ratio, cross=True)
        self.classifier = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(inplace=True),
                                        nn.Linear(channels, 1))

    def forward(self, points: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Map superpoint ``(B, S, C)`` and patch ``(B, M, C)`` features to logits ``(B, S)``."""
        h, _ = self.attention(points, patches)
        return self.classifier(h)[..., 0]
