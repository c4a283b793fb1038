"""Tests for the patch / superpoint attention, positional embeddings and overlap detection."""

from i2p_registration.core.geometry.projection import project_points
from i2p_registration.core.geometry.se3 import transform_points
from i2p_registration.core.models.attention import (attention_map, MultiHeadAttention,
                                                    PatchPointAttention, PositionalEmbedding)
from i2p_registration.core.models.overlap import frustum_labels, OverlapDetector, visible_mask
from i2p_registration.core.sensors import CameraModel
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def test_multi_head_attention_equals_explicit_softmax_and_respects_mask():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 3:] = False
    out, w = mha(x, mem, mask, need_weights=True)
    assert out.shape == (2, 5, 16) and w.shape == (2, 5, 7)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 5))
    assert w[0, :, 3:].abs().max() == 0
    # The SDPA output equals attention computed by hand, per head.
    q = mha._split(mha.q(x))
    k, v = (mha._split(t) for t in mha.kv(mem).chunk(2, dim=-1))
    logits = (q @ k.transpose(-1, -2)) / 2.0
    logits = logits.masked_fill(~mask[:, None, None], float('-inf'))
    ref = mha.out((logits.softmax(-1) @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w, attention_map(q, k, mask))
    # Masked keys cannot change the output.
    mem2 = mem.clone()
    mem2[0, 3:] += 100.0
    torch.testing.assert_close(mha(x, mem2, mask)[0][0], out[0])
    with pytest.raises(ValueError, match='divisible'):
        MultiHeadAttention(10, 4)


def test_patch_point_attention_shapes_map_and_gradients():
    torch.manual_seed(1)
    net = PatchPointAttention(16, 2, layers=2)
    patches = torch.randn(2, 6, 16, requires_grad=True)
    points = torch.randn(2, 9, 16, requires_grad=True)
    mask = torch.rand(2, 9) > 0.4
    mask[:, 0] = True
    fused, w = net(patches, points, mask, need_weights=True)
    assert fused.shape == (2, 6, 16) and w.shape == (2, 6, 9)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 6))
    assert w[~mask[:, None, :].expand_as(w)].abs().max() == 0
    (fused.square().sum() + w.square().sum()).backward()
    assert torch.isfinite(patches.grad).all() and torch.isfinite(points.grad).all()
    assert points.grad[~mask].abs().max() == 0 and points.grad[mask].abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    fused2, none = net(patches, points, mask)
    assert none is None
    torch.testing.assert_close(fused2, fused)


def test_positional_embedding_scales_coordinates():
    torch.manual_seed(2)
    emb = PositionalEmbedding(3, 8, scale=50.0)
    x = torch.randn(4, 3) * 50
    ref = emb.mlp(x / 50.0)
    torch.testing.assert_close(emb(x), ref)
    assert emb(x).shape == (4, 8)


def test_frustum_labels_equal_numpy_projection():
    rng = np.random.default_rng(5)
    K = np.array([[100.0, 0, 63.5], [0, 100.0, 31.5], [0, 0, 1]])
    camera = CameraModel(K, 128, 64)
    T = np.eye(4)
    T[:3, :3] = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]])   # LiDAR x forward -> camera z
    pts = rng.uniform(-20, 20, size=(500, 3))
    labels = frustum_labels(torch.as_tensor(pts)[None], torch.as_tensor(T)[None],
                            torch.as_tensor(K)[None], (64, 128))[0].numpy()
    uv, front = project_points(transform_points(T, pts), camera)
    inside = front & (uv[:, 0] >= -0.5) & (uv[:, 0] < 127.5) & (uv[:, 1] >= -0.5) \
        & (uv[:, 1] < 63.5)
    np.testing.assert_array_equal(labels, inside)
    assert 10 < labels.sum() < 400


def test_visible_mask_keeps_at_least_min_visible():
    logits = torch.tensor([[-3.0, -1.0, -2.0, -5.0], [1.0, 2.0, -1.0, 0.5]])
    mask = visible_mask(logits, 0.0, min_visible=2)
    np.testing.assert_array_equal(mask.numpy(), [[False, True, True, False],
                                                 [True, True, False, True]])
    assert visible_mask(logits, 0.0, min_visible=10).all()


def test_overlap_detector_shapes_and_gradients():
    torch.manual_seed(3)
    det = OverlapDetector(16, 2)
    points, patches = torch.randn(2, 9, 16, requires_grad=True), torch.randn(2, 6, 16)
    logits = det(points, patches)
    assert logits.shape == (2, 9)
    logits.sum().backward()
    assert torch.isfinite(points.grad).all()
    for name, p in det.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
