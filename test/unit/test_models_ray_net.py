"""Tests for the whole RayI2PNet: presets, shapes, gradients, determinism, overfitting pairs."""

from i2p_registration.core.geometry.torch_ops import geodesic_angle
from i2p_registration.core.models.losses import RayI2PLoss
from i2p_registration.core.models.pose_regression import solve_pose_from_rays
from i2p_registration.core.models.ray_net import (count_parameters, make_config, PRESETS,
                                                  RayI2PConfig, RayI2PNet)
from i2p_registration.data.input_size import InputSize
from i2p_registration.data.kitti import KittiOdometry, write_kitti_sequence
from i2p_registration.data.protocols import PairDataset
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
import pytest
import torch

torch.set_num_threads(1)

TINY = {'channels': 16, 'heads': 2, 'layers': 1, 'image_widths': (8, 8, 16),
        'image_blocks': (1, 1, 1), 'point_samples': (64, 16), 'point_neighbours': (8, 8),
        'point_widths': (16, 16), 'pose_hidden': 32, 'min_visible': 4}


def tiny_inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 3, 32, 64, generator=g)
    points = torch.randn(batch, 256, 3, generator=g) * 10
    K = torch.tensor([[50.0, 0.0, 31.5], [0.0, 50.0, 15.5], [0.0, 0.0, 1.0]]).expand(batch, 3, 3)
    return image, points, K


def test_presets_are_the_documented_architectures():
    paper = PRESETS['paper']
    assert (paper.channels, paper.heads, paper.layers, paper.sigma, paper.patch_size) == \
        (512, 4, 2, 32.0, 8)
    small = RayI2PNet(make_config('small'))
    assert 1e5 < count_parameters(small) < 2e6      # trainable on a 2-core CPU
    assert make_config('small', layers=3).layers == 3
    with pytest.raises(ValueError, match='unknown preset'):
        make_config('huge')
    with pytest.raises(ValueError, match='divisible'):
        make_config('small', heads=5)
    with pytest.raises(ValueError, match='unknown RayI2PConfig keys'):
        RayI2PConfig.from_dict({**make_config().to_dict(), 'colour': 'red'})
    cfg = make_config('paper')
    assert RayI2PConfig.from_dict(cfg.to_dict()) == cfg


def test_forward_shapes_gradients_and_determinism():
    torch.manual_seed(0)
    net = RayI2PNet(make_config('small', **TINY))
    image, points, K = tiny_inputs()
    image.requires_grad_(True)
    out = net(image, points, K, need_attention=True)
    M, S = 4 * 8, 16
    shapes = {'patch_uv': (M, 2), 'bearings': (2, M, 3), 'superpoints': (2, S, 3),
              'overlap_logits': (2, S), 'visible': (2, S), 'ray_directions': (2, M, 3),
              'ray_moments': (2, M, 3), 'R_lidar_cam': (2, 3, 3), 't_lidar_cam': (2, 3),
              'rot6d': (2, 6), 'pose_weights': (2, M), 'T_cam_lidar': (2, 4, 4),
              'attention': (2, M, S)}
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    assert (out['visible'].sum(-1) >= 4).all()
    T = torch.eye(4).expand(2, 4, 4).clone()
    T[:, :3, :3] = torch.tensor([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
    loss = RayI2PLoss(32.0, 20.0, 10.0)(out, T, K, (32, 64))
    loss['total'].backward()
    assert torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    again = net(image.detach(), points, K, need_attention=True)
    for k in shapes:
        torch.testing.assert_close(again[k], out[k].detach())
    with torch.inference_mode():
        plain = net(image.detach(), points, K)
    assert 'attention' not in plain
    torch.testing.assert_close(plain['T_cam_lidar'], out['T_cam_lidar'].detach())
    with pytest.raises(ValueError, match='must share B'):
        net(image, points[:1], K)


@pytest.fixture(scope='module')
def synthetic_pairs(tmp_path_factory):
    """Three same_frame pairs of a small synthetic world, as network input tensors."""
    root = tmp_path_factory.mktemp('ray_net_pairs')
    cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'output.duration_s': 0.35})
    write_kitti_sequence(Simulator(cfg, 13), root, '00')
    size = InputSize(image_hw=(64, 128), image_scale=0.35, n_points=1024)
    ds = PairDataset(KittiOdometry(root, '00'), 'same_frame', seed=0, input_size=size)
    samples = [ds[k] for k in range(len(ds))]
    image = torch.stack([torch.from_numpy(s.image).permute(2, 0, 1).float() / 255
                         for s in samples])
    points = torch.stack([torch.from_numpy(s.points) for s in samples])
    K = torch.stack([torch.from_numpy(s.camera.K).float() for s in samples])
    T = torch.stack([torch.from_numpy(s.T_cam_lidar).float() for s in samples])
    return image, points, K, T


def pose_errors(out, T):
    rot = torch.rad2deg(geodesic_angle(out['T_cam_lidar'][:, :3, :3], T[:, :3, :3]))
    centre = torch.linalg.inv(T)[:, :3, 3]
    return rot.detach(), torch.linalg.norm(out['t_lidar_cam'].detach() - centre, dim=-1)


def test_tiny_model_overfits_synthetic_pairs(synthetic_pairs):
    image, points, K, T = synthetic_pairs
    torch.manual_seed(0)
    cfg = make_config('small', channels=32, heads=2, layers=1, image_widths=(8, 16, 32),
                      point_samples=(256, 64, 32), point_neighbours=(16, 8, 8),
                      point_widths=(16, 32, 32), pose_hidden=64, min_visible=4)
    net = RayI2PNet(cfg)
    criterion = RayI2PLoss(cfg.sigma, cfg.moment_scale, cfg.translation_scale)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for step in range(160):
        out = net(image, points, K, need_attention=True)
        terms = criterion(out, T, K, (64, 128))
        if step == 0:
            rot0, trans0 = pose_errors(out, T)
        losses.append(terms['total'].item())
        optimizer.zero_grad()
        terms['total'].backward()
        optimizer.step()
    out = net(image, points, K)
    rot, trans = pose_errors(out, T)
    assert sum(losses[-10:]) / 10 < losses[0] / 10
    assert rot.mean() < rot0.mean() / 5 and rot.max() < 10.0          # degrees
    assert trans.mean() < trans0.mean() / 3 and trans.max() < 2.0     # metres
    # The predicted rays determine the pose through the classical solver too.
    T_rays, ok = solve_pose_from_rays(out['ray_directions'], out['ray_moments'],
                                      out['patch_uv'], K, (64, 128), out['pose_weights'])
    assert ok.all()
    rot_rays = torch.rad2deg(geodesic_angle(T_rays[:, :3, :3], T[:, :3, :3].double()))
    assert rot_rays.max() < 20.0
