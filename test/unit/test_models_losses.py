"""Tests for the RayI2PNet losses: known answers at the truth, focus radius, balance, gradients."""

from i2p_registration.core.geometry.rotations import so3_exp
from i2p_registration.core.geometry.se3 import make_transform
from i2p_registration.core.models.image_encoder import patch_centres
from i2p_registration.core.models.losses import (focus_loss, overlap_loss, pose_loss,
                                                 ray_loss, RayI2PLoss)
from i2p_registration.core.models.pose_regression import pose_to_T_cam_lidar
from i2p_registration.core.models.ray_head import ray_targets
from i2p_registration.core.models.rigid import invert_transform
import numpy as np
import pytest
import torch

torch.set_num_threads(1)

K = torch.tensor([[[100.0, 0.0, 31.5], [0.0, 100.0, 15.5], [0.0, 0.0, 1.0]]],
                 dtype=torch.float64)
OPTICAL = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)   # LiDAR x -> camera z


def test_ray_and_pose_losses_vanish_at_the_truth_and_grow_with_error():
    T = torch.as_tensor(make_transform(OPTICAL, [0.1, 0.2, 0.3]))[None]
    uv = patch_centres(32, 64, 8, dtype=torch.float64)
    d, m = ray_targets(T, K, uv)
    assert ray_loss(d, m, d, m, 20.0) == 0
    assert ray_loss(d, m + 2.0, d, m, 20.0).item() == pytest.approx(3 * 2.0 / 20.0)
    R = invert_transform(T)[:, :3, :3]
    t = invert_transform(T)[:, :3, 3]
    rot, trans = pose_loss(R, t, R, t, 10.0)
    assert rot.item() == pytest.approx(0.0, abs=1e-7) and trans == 0
    R_off = torch.as_tensor(so3_exp([0.0, 0.0, 0.1]))[None] @ R
    rot, trans = pose_loss(R_off, t + 1.0, R, t, 10.0)
    assert rot.item() == pytest.approx(0.1, abs=1e-9) and trans.item() == pytest.approx(0.3)


def test_focus_loss_counts_attention_within_sigma_pixels():
    T = torch.as_tensor(make_transform(OPTICAL, [0, 0, 0]))[None]
    uv = torch.tensor([[3.5, 3.5], [40.0, 20.0]], dtype=torch.float64)
    # Superpoint 0 projects onto patch 0, superpoint 1 30 px away, superpoint 2 behind.
    cam = torch.tensor([[0.035 - 0.315, 0.035 - 0.155, 1.0], [0.335 - 0.315, 0.035 - 0.155, 1.0],
                        [0.0, 0.0, -1.0]], dtype=torch.float64) * 10
    lidar = (invert_transform(T)[0, :3, :3] @ cam.T).T[None]
    attention = torch.tensor([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]], dtype=torch.float64)
    loss = focus_loss(attention, uv, lidar, T, K, sigma=8.0)
    assert loss.item() == pytest.approx(-np.log(0.5))   # only patch 0 has a near superpoint
    loss = focus_loss(attention, uv, lidar, T, K, sigma=32.0)
    # Patch 0 reaches superpoints 0 and 1 (30 px), patch 1 superpoint 1 (17.7 px) only.
    assert loss.item() == pytest.approx(-(np.log(0.8) + np.log(0.1)) / 2)
    none = focus_loss(attention, uv + 100.0, lidar, T, K, sigma=8.0)
    assert none.item() == 0


def test_overlap_loss_is_class_balanced():
    labels = torch.tensor([[True, False, False, False]])
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    assert overlap_loss(logits, labels).item() == pytest.approx(np.log(2))
    good = overlap_loss(torch.tensor([[5.0, -5.0, -5.0, -5.0]]), labels)
    bad = overlap_loss(torch.tensor([[-5.0, -5.0, -5.0, -5.0]]), labels)
    assert good < 0.01 and bad > 2.0   # missing the one positive costs as much as half the set


def test_total_loss_terms_and_gradients():
    torch.manual_seed(0)
    T = torch.as_tensor(make_transform(OPTICAL, [0.5, -0.2, 1.0]))[None].float()
    uv = patch_centres(32, 64, 8)
    Kf = K.float()
    d, m = ray_targets(T, Kf, uv)
    d = (d + 0.1 * torch.randn_like(d)).requires_grad_(True)
    T_lc = invert_transform(T)
    R = T_lc[:, :3, :3].clone().requires_grad_(True)
    t = (T_lc[:, :3, 3] + 0.5).requires_grad_(True)
    superpoints = torch.randn(1, 20, 3) * 5
    logits = torch.randn(1, 20, requires_grad=True)
    attention = torch.rand(1, 32, 20).softmax(-1).requires_grad_(True)
    outputs = {'ray_directions': d, 'ray_moments': m, 'patch_uv': uv, 'R_lidar_cam': R,
               't_lidar_cam': t, 'superpoints': superpoints, 'overlap_logits': logits,
               'attention': attention, 'T_cam_lidar': pose_to_T_cam_lidar(R, t)}
    terms = RayI2PLoss(32.0, 20.0, 10.0)(outputs, T, Kf, (32, 64))
    assert set(terms) == {'ray', 'rotation', 'translation', 'focus', 'overlap', 'total'}
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms['translation'].item() == pytest.approx(0.15, rel=1e-5)
    terms['total'].backward()
    for x in (d, R, t, logits, attention):
        assert x.grad is not None and torch.isfinite(x.grad).all()
