"""
Attention between image patches and superpoints, on ``scaled_dot_product_attention``.

Pre-norm transformer layers: self-attention over patches alternates with cross-attention from
patches (queries) to superpoints (keys / values). Superpoints outside the predicted camera
frustum are masked out of the keys. The head-averaged cross-attention map is computed
explicitly only when asked for (the focus loss needs it; inference does not).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class PositionalEmbedding(nn.Module):
    """
    Learnable positional embedding: a two-layer MLP of coordinates divided by ``scale``.

    :param in_dim: coordinate dimension (3 for bearings or points in metres).
    :param channels: embedding channels.
    :param scale: the coordinates' unit (1 for unit bearings, e.g. 50 m for LiDAR points).
    """

    def __init__(self, in_dim: int, channels: int, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(in_dim, channels), nn.ReLU(inplace=True),
                                 nn.Linear(channels, channels))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Map ``(..., in_dim)`` coordinates to ``(..., channels)``."""
        return self.mlp(coords / self.scale)


def key_mask_to_attn_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Turn a ``(B, S)`` bool key mask (True = attend) into an SDPA mask ``(B, 1, 1, S)``."""
    return None if key_mask is None else key_mask[:, None, None, :]


def attention_map(q: torch.Tensor, k: torch.Tensor,
                  key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """
    Compute the head-averaged softmax attention map.

    :param q: ``(B, h, M, d)`` queries.
    :param k: ``(B, h, S, d)`` keys.
    :param key_mask: ``(B, S)`` bool, True where a key may be attended (at least one per row).
    :return: ``(B, M, S)``, rows sum to 1, zero at masked keys.
    """
    logits = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], float('-inf'))
    return logits.softmax(-1).mean(1)


class MultiHeadAttention(nn.Module):
    """
    Multi-head attention with ``F.scaled_dot_product_attention``.

    :param channels: model width, divisible by ``heads``.
    :param heads: attention heads.
    """

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f'channels {channels} must be divisible by heads {heads}')
        self.heads = heads
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)
        self.out = nn.Linear(channels, channels)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        return x.view(B, L, self.heads, C // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                key_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Attend from ``x`` ``(B, M, C)`` to ``memory`` ``(B, S, C)``.

        :param key_mask: ``(B, S)`` bool, True where a key may be attended (at least one).
        :param need_weights: also return the head-averaged map ``(B, M, S)``.
        :return: ``(B, M, C)`` and the map or None.
        """
        q = self._split(self.q(x))
        k, v = (self._split(t) for t in self.kv(memory).chunk(2, dim=-1))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask_to_attn_mask(key_mask))
        weights = attention_map(q, k, key_mask) if need_weights else None
        return self.out(y.transpose(1, 2).flatten(2)), weights


class TransformerLayer(nn.Module):
    """
    Pre-norm attention layer with a feed-forward block.

    :param channels: model width.
    :param heads: attention heads.
    :param mlp_ratio: hidden width of the feed-forward block / ``channels``.
    :param cross: cross-attention to a memory (with its own LayerNorm) instead of self-attention.
    """

    def __init__(self, channels: int, heads: int, mlp_ratio: int = 2, cross: bool = False):
        super().__init__()
        self.norm_x = nn.LayerNorm(channels)
        self.norm_memory = nn.LayerNorm(channels) if cross else None
        self.attention = MultiHeadAttention(channels, heads)
        self.norm_ff = nn.LayerNorm(channels)
        self.ff = nn.Sequential(nn.Linear(channels, mlp_ratio * channels), nn.GELU(),
                                nn.Linear(mlp_ratio * channels, channels))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update ``x`` ``(B, M, C)`` from itself or (cross) ``memory`` ``(B, S, C)``; see MHA."""
        if (memory is None) != (self.norm_memory is None):
            raise ValueError('a cross-attention layer needs a memory, a self-attention one none')
        h = self.norm_x(x)
        mem = h if memory is None else self.norm_memory(memory)
        y, weights = self.attention(h, mem, key_mask, need_weights)
        x = x + y
        return x + self.ff(self.norm_ff(x)), weights


class PatchPointAttention(nn.Module):
    """
    ``layers`` x (self-attention over patches, cross-attention patches -> superpoints).

    :param channels: model width.
    :param heads: attention heads.
    :param layers: number of (self, cross) pairs, the paper's L.
    :param mlp_ratio: feed-forward width ratio.
    """

    def __init__(self, channels: int, heads: int, layers: int, mlp_ratio: int = 2):
        super().__init__()
        self.self_layers = nn.ModuleList(
            TransformerLayer(channels, heads, mlp_ratio) for _ in range(layers))
        self.cross_layers = nn.ModuleList(
            TransformerLayer(channels, heads, mlp_ratio, cross=True) for _ in range(layers))

    def forward(self, patches: torch.Tensor, points: torch.Tensor,
                point_mask: torch.Tensor | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Fuse superpoint information into the patch features.

        :param patches: ``(B, M, C)`` patch features with positional embeddings.
        :param points: ``(B, S, C)`` superpoint features with positional embeddings.
        :param point_mask: ``(B, S)`` bool, superpoints that may be attended (>= 1 per row).
        :param need_weights: also return the cross-attention map averaged over heads and
            layers, ``(B, M, S)`` (rows sum to 1).
        :return: fused patches ``(B, M, C)`` and the map or None.
        """
        maps = []
        for self_layer, cross_layer in zip(self.self_layers, self.cross_layers):
            patches, _ = self_layer(patches)
            patches, w = cross_layer(patches, points, point_mask, need_weights)
            maps.append(w)
        return patches, (torch.stack(maps).mean(0) if need_weights else None)
