"""Tests for the image encoder and the pure-torch point encoder of RayI2PNet."""

from i2p_registration.core.geometry.rays import patch_centres as numpy_patch_centres
from i2p_registration.core.models.image_encoder import ImageEncoder, patch_centres
from i2p_registration.core.models.point_encoder import (farthest_point_sample, gather, knn,
                                                        PointEncoder)
from i2p_registration.core.sensors import CameraModel
import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def test_patch_centres_equal_core_patch_grid():
    camera = CameraModel(np.diag([100.0, 100.0, 1.0]), 70, 45)
    ours = patch_centres(45, 70, 8, dtype=torch.float64).numpy()
    np.testing.assert_array_equal(ours, numpy_patch_centres(camera, 8))
    with pytest.raises(ValueError, match='does not fit'):
        patch_centres(4, 70, 8)


def test_image_encoder_shapes_and_gradients():
    torch.manual_seed(0)
    enc = ImageEncoder((4, 8, 8), (1, 2, 1), 16, patch_size=8)
    image = torch.rand(2, 3, 45, 70, requires_grad=True)
    feats, uv = enc(image)
    assert feats.shape == (2, 5 * 8, 16) and uv.shape == (40, 2)
    feats.square().sum().backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Batch elements are independent (GroupNorm, not BatchNorm).
    one, _ = enc(image[1:].detach())
    torch.testing.assert_close(one[0], feats[1].detach(), atol=1e-5, rtol=1e-5)


def test_image_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match='power of two'):
        ImageEncoder((4, 8), (1, 1), 8, patch_size=6)
    with pytest.raises(ValueError, match='stage widths'):
        ImageEncoder((4, 8), (1, 1), 8, patch_size=8)
    enc = ImageEncoder((4, 8, 8), (1, 1, 1), 8)
    with pytest.raises(ValueError, match='float'):
        enc(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        enc(torch.zeros(3, 16, 16))


def test_farthest_point_sample_matches_brute_force():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(2, 300, 3)) * 10
    idx = farthest_point_sample(torch.as_tensor(pts), 40).numpy()
    for b in range(2):
        sel, d = [0], np.full(300, np.inf)
        for _ in range(39):
            d = np.minimum(d, ((pts[b] - pts[b, sel[-1]]) ** 2).sum(1))
            sel.append(int(d.argmax()))
        np.testing.assert_array_equal(idx[b], sel)
    assert len(np.unique(idx[0])) == 40
    with pytest.raises(ValueError, match='cannot sample'):
        farthest_point_sample(torch.as_tensor(pts), 301)


def test_knn_matches_brute_force_and_chunks(monkeypatch):
    rng = np.random.default_rng(4)
    pts = torch.as_tensor(rng.normal(size=(2, 200, 3)))
    q = torch.as_tensor(rng.normal(size=(2, 30, 3)))
    d, i = knn(q, pts, 5)
    full = torch.cdist(q, pts)
    ref_d, ref_i = full.sort(-1)
    torch.testing.assert_close(d, ref_d[..., :5])
    np.testing.assert_array_equal(i.numpy(), ref_i[..., :5].numpy())
    import i2p_registration.core.models.point_encoder as pe
    monkeypatch.setattr(pe, '_KNN_BLOCK', 700)   # 1 query row per chunk
    d2, i2 = knn(q, pts, 5)
    torch.testing.assert_close(d2, d)
    np.testing.assert_array_equal(i2.numpy(), i.numpy())
    with pytest.raises(ValueError, match='k must be'):
        knn(q, pts, 201)


def test_gather_picks_rows():
    x = torch.arange(24.0).view(2, 4, 3)
    idx = torch.tensor([[[3, 0]], [[1, 1]]])
    out = gather(x, idx)
    assert out.shape == (2, 1, 2, 3)
    torch.testing.assert_close(out[0, 0, 0], x[0, 3])
    torch.testing.assert_close(out[1, 0, 1], x[1, 1])


def test_point_encoder_shapes_gradients_and_superpoints_are_input_points():
    torch.manual_seed(1)
    enc = PointEncoder((64, 16), (8, 8), (16, 32), 24, coord_scale=20.0)
    pts = (torch.randn(2, 256, 3) * 10).requires_grad_(True)
    xyz, feats = enc(pts)
    assert xyz.shape == (2, 16, 3) and feats.shape == (2, 16, 24)
    same = (xyz.detach()[:, :, None] == pts.detach()[:, None]).all(-1)
    assert same.any(-1).all()
    feats.square().sum().backward()
    assert torch.isfinite(pts.grad).all() and pts.grad.abs().sum() > 0
    for name, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    with pytest.raises(ValueError, match='at least 64 points'):
        enc(torch.randn(1, 50, 3))
    with pytest.raises(ValueError, match='must decrease'):
        PointEncoder((16, 64), (8, 8), (16, 32), 24)


def test_point_encoder_is_invariant_to_point_order_up_to_sampling_start():
    torch.manual_seed(2)
    enc = PointEncoder((32,), (8,), (16,), 8)
    pts = torch.randn(1, 128, 3) * 5
    perm = torch.cat([torch.zeros(1, dtype=torch.long), torch.randperm(127) + 1])
    xyz_a, f_a = enc(pts)
    xyz_b, f_b = enc(pts[:, perm])
    order_a, order_b = xyz_a[0, :, 0].argsort(), xyz_b[0, :, 0].argsort()
    torch.testing.assert_close(xyz_a[0, order_a], xyz_b[0, order_b])
    torch.testing.assert_close(f_a[0, order_a], f_b[0, order_b], atol=1e-5, rtol=1e-5)
