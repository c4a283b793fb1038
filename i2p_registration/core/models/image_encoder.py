"""
ResNet-style image encoder: one feature per ``patch_size`` x ``patch_size`` image patch.

The encoder halves the resolution ``log2(patch_size)`` times (output stride = patch size), and
its ``(H // p, W // p)`` feature grid is flattened row-major, the order of
:func:`i2p_registration.core.geometry.rays.patch_centres`: patch ``(i, j)`` has its centre at
pixel ``(j p + (p - 1) / 2, i p + (p - 1) / 2)`` (pixel centres at integers).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

# ImageNet statistics: inputs are RGB in [0, 1].
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def group_norm(channels: int) -> nn.GroupNorm:
    """Return a GroupNorm with up to 8 groups (batch-size independent, unlike BatchNorm)."""
    return nn.GroupNorm(math.gcd(8, channels), channels)


def patch_centres(height: int, width: int, patch_size: int, device=None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """
    Compute pixel centres ``(M, 2)`` ``(u, v)`` of the patch grid of an image, row-major.

    Partial patches at the right and bottom borders are dropped; ``M = (H // p) * (W // p)``.
    """
    p = int(patch_size)
    ny, nx = height // p, width // p
    if p < 1 or nx == 0 or ny == 0:
        raise ValueError(f'patch_size {patch_size} does not fit the image ({width}x{height})')
    u = torch.arange(nx, device=device, dtype=dtype) * p + 0.5 * (p - 1)
    v = torch.arange(ny, device=device, dtype=dtype) * p + 0.5 * (p - 1)
    vv, uu = torch.meshgrid(v, u, indexing='ij')
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=-1)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.norm1 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                group_norm(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C_in, H, W)`` to ``(B, C_out, H / stride, W / stride)``."""
        y = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(y)) + self.shortcut(x))


class ImageEncoder(nn.Module):
    """
    Image to patch features, output stride ``patch_size``.

    :param widths: channels of the ``log2(patch_size)`` stages (each starts by halving).
    :param blocks: residual blocks per stage (>= 1).
    :param out_channels: channels of the patch features.
    :param patch_size: a power of two >= 2.
    """

    def __init__(self, widths: Sequence[int], blocks: Sequence[int], out_channels: int,
                 patch_size: int = 8):
        super().__init__()
        stages = int(round(math.log2(patch_size))) if patch_size >= 2 else 0
        if patch_size < 2 or 2 ** stages != patch_size:
            raise ValueError(f'patch_size must be a power of two >= 2, got {patch_size}')
        if len(widths) != stages or len(blocks) != stages or min(blocks) < 1:
            raise ValueError(f'patch_size {patch_size} needs {stages} stage widths and block '
                             f'counts >= 1, got widths {tuple(widths)}, blocks {tuple(blocks)}')
        self.patch_size = patch_size
        layers, c = [], 3
        for w, n in zip(widths, blocks):
            layers.append(ResidualBlock(c, w, stride=2))
            layers.extend(ResidualBlock(w, w) for _ in range(n - 1))
            c = w
        self.stages = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, out_channels, 1)
        self.register_buffer('mean', torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Encode images into patch features.

        :param image: ``(B, 3, H, W)`` float RGB in [0, 1], H and W >= ``patch_size``.
        :return: ``features`` ``(B, M, C)`` row-major over the ``(H // p, W // p)`` grid and
            ``uv`` ``(M, 2)`` patch centres in pixels (dtype and device of the image).
        """
        if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise ValueError(f'image must be a float (B, 3, H, W) tensor in [0, 1], got '
                             f'{image.dtype} {tuple(image.shape)}')
        H, W = image.shape[-2:]
        p = self.patch_size
        uv = patch_centres(H, W, p, image.device, image.dtype)
        x = self.head(self.stages((image - self.mean) / self.std))
        x = x[:, :, :H // p, :W // p]
        return x.flatten(2).transpose(1, 2), uv
