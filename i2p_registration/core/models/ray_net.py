"""
RayI2PNet: matching-free image-to-point-cloud registration by ray-bundle prediction.

Image -> patch features (stride ``patch_size``); points -> superpoints; positional embeddings
(patch bearings from the intrinsics, superpoint coordinates); an overlap detector whose
prediction masks the ``layers`` alternating patch self-attention / patch -> point cross-attention
layers; a Plücker ray per patch in the LiDAR frame; ray-guided pose regression to
``T_cam_lidar``. After RayI2P ("Learning rays for image-to-point cloud registration", ICLR 2026).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

from .attention import PatchPointAttention, PositionalEmbedding
from .image_encoder import ImageEncoder
from .overlap import OverlapDetector, visible_mask
from .point_encoder import PointEncoder
from .pose_regression import pose_to_T_cam_lidar, PoseRegression, reference_rays
from .ray_head import RayHead


@dataclass(frozen=True)
class RayI2PConfig:
    """
    Architecture of :class:`RayI2PNet` (plain values only: it is stored in checkpoints).

    :param channels: model width of patches, superpoints and attention.
    :param heads: attention heads.
    :param layers: (self, cross) attention pairs, L.
    :param sigma: focus-loss radius, pixels.
    :param patch_size: image patch side = encoder output stride, pixels (power of two).
    :param image_widths: image encoder stage widths (``log2(patch_size)`` entries).
    :param image_blocks: residual blocks per image stage.
    :param point_samples: superpoints per point-encoder stage (decreasing).
    :param point_neighbours: kNN size per point-encoder stage.
    :param point_widths: point-encoder stage widths.
    :param mlp_ratio: feed-forward width ratio of the attention layers.
    :param pose_hidden: pose regression width.
    :param coord_scale: metres, unit of point coordinates in features and embeddings.
    :param moment_scale: metres per unit of the predicted ray moments.
    :param translation_scale: metres per unit of the regressed translation.
    :param overlap_threshold: logit above which a superpoint counts as visible.
    :param min_visible: superpoints always kept visible (the highest logits).
    """

    channels: int = 64
    heads: int = 4
    layers: int = 2
    sigma: float = 32.0
    patch_size: int = 8
    image_widths: tuple[int, ...] = (16, 32, 64)
    image_blocks: tuple[int, ...] = (1, 1, 1)
    point_samples: tuple[int, ...] = (1024, 256, 128)
    point_neighbours: tuple[int, ...] = (16, 16, 16)
    point_widths: tuple[int, ...] = (32, 64, 64)
    mlp_ratio: int = 2
    pose_hidden: int = 128
    coord_scale: float = 50.0
    moment_scale: float = 20.0
    translation_scale: float = 10.0
    overlap_threshold: float = 0.0
    min_visible: int = 16

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        if self.channels % self.heads:
            raise ValueError(f'channels {self.channels} must be divisible by heads {self.heads}')
        if min(self.channels, self.heads, self.layers, self.mlp_ratio, self.pose_hidden,
               self.min_visible) < 1:
            raise ValueError('channels, heads, layers, mlp_ratio, pose_hidden and min_visible '
                             'must be >= 1')
        if min(self.sigma, self.coord_scale, self.moment_scale, self.translation_scale) <= 0:
            raise ValueError('sigma (px) and the scales (m) must be > 0')

    def to_dict(self) -> dict:
        """Return the config as plain Python values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> 'RayI2PConfig':
        """Build a config from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown RayI2PConfig keys {unknown}, expected some of '
                             f'{sorted(known)}')
        return cls(**values)


PRESETS = {
    'small': RayI2PConfig(),
    'paper': RayI2PConfig(channels=512, heads=4, layers=2, sigma=32.0, patch_size=8,
                          image_widths=(64, 128, 256), image_blocks=(2, 2, 2),
                          point_samples=(2048, 512, 256), point_neighbours=(32, 16, 16),
                          point_widths=(128, 256, 512), mlp_ratio=4, pose_hidden=512,
                          min_visible=32),
}


def make_config(preset: str = 'small', **overrides) -> RayI2PConfig:
    """Return the preset ``small`` or ``paper`` with fields replaced by ``overrides``."""
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}, expected one of {sorted(PRESETS)}')
    return replace(PRESETS[preset], **overrides)


class RayI2PNet(nn.Module):
    """
    The registration network; see the module docstring. Device-agnostic: move it with ``.to``.

    :param config: the architecture.
    """

    def __init__(self, config: RayI2PConfig):
        super().__init__()
        c = config
        self.config = c
        self.image_encoder = ImageEncoder(c.image_widths, c.image_blocks, c.channels,
                                          c.patch_size)
        self.point_encoder = PointEncoder(c.point_samples, c.point_neighbours, c.point_widths,
                                          c.channels, c.coord_scale)
        self.patch_embedding = PositionalEmbedding(3, c.channels)
        self.point_embedding = PositionalEmbedding(3, c.channels, c.coord_scale)
        self.overlap = OverlapDetector(c.channels, c.heads, c.mlp_ratio)
        self.attention = PatchPointAttention(c.channels, c.heads, c.layers, c.mlp_ratio)
        self.ray_head = RayHead(c.channels, c.moment_scale)
        self.pose = PoseRegression(c.channels, c.pose_hidden, c.moment_scale,
                                   c.translation_scale)

    def forward(self, image: torch.Tensor, points: torch.Tensor, K: torch.Tensor,
                D: torch.Tensor | None = None,
                need_attention: bool = False) -> dict[str, torch.Tensor]:
        """
        Predict rays and the pose of a batch of image / point-cloud pairs.

        :param image: ``(B, 3, H, W)`` float RGB in [0, 1].
        :param points: ``(B, N, 3)`` float metres in the LiDAR frame.
        :param K: ``(B, 3, 3)`` intrinsics of the image (after any resize / crop), pixels.
        :param D: optional plumb_bob coefficients ``(B, k)``.
        :param need_attention: also return the cross-attention map (for the focus loss).
        :return: dict with ``patch_uv`` ``(M, 2)`` px, ``bearings`` ``(B, M, 3)`` camera frame,
            ``superpoints`` ``(B, S, 3)`` m, ``overlap_logits`` ``(B, S)``, ``visible``
            ``(B, S)`` bool, ``ray_directions`` / ``ray_moments`` ``(B, M, 3)`` (LiDAR frame,
            m), ``R_lidar_cam`` ``(B, 3, 3)``, ``t_lidar_cam`` ``(B, 3)`` m, ``rot6d``
            ``(B, 6)``, ``pose_weights`` ``(B, M)``, ``T_cam_lidar`` ``(B, 4, 4)`` and, when
            asked, ``attention`` ``(B, M, S)``.
        """
        if K.shape != (image.shape[0], 3, 3) or points.shape[0] != image.shape[0]:
            raise ValueError(f'image (B, 3, H, W), points (B, N, 3) and K (B, 3, 3) must '
                             f'share B, got {tuple(image.shape)}, {tuple(points.shape)}, '
                             f'{tuple(K.shape)}')
        patches, uv = self.image_encoder(image)
        bearings = reference_rays(uv, K.to(uv), D)
        patches = patches + self.patch_embedding(bearings)
        xyz, point_feats = self.point_encoder(points)
        point_feats = point_feats + self.point_embedding(xyz)
        logits = self.overlap(point_feats, patches)
        visible = visible_mask(logits.detach(), self.config.overlap_threshold,
                               self.config.min_visible)
        fused, attention = self.attention(patches, point_feats, visible, need_attention)
        d, m = self.ray_head(fused)
        pose = self.pose(fused, d, m, bearings)
        out = {'patch_uv': uv, 'bearings': bearings, 'superpoints': xyz,
               'overlap_logits': logits, 'visible': visible, 'ray_directions': d,
               'ray_moments': m, 'R_lidar_cam': pose['R_lidar_cam'],
               't_lidar_cam': pose['t_lidar_cam'], 'rot6d': pose['rot6d'],
               'pose_weights': pose['weights'],
               'T_cam_lidar': pose_to_T_cam_lidar(pose['R_lidar_cam'], pose['t_lidar_cam'])}
        if need_attention:
            out['attention'] = attention
        return out


def count_parameters(model: nn.Module) -> int:
    """Return the number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
