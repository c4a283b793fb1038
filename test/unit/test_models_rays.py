"""Tests for the ray head, Plücker round trips, 6D rotations and ray-guided pose regression."""

from i2p_registration.core.geometry.rays import camera_from_rays
from i2p_registration.core.geometry.rotations import so3_exp
from i2p_registration.core.geometry.se3 import inverse, make_transform
from i2p_registration.core.geometry.torch_ops import matrix_to_rot6d, rot6d_to_matrix
from i2p_registration.core.models.image_encoder import patch_centres
from i2p_registration.core.models.pose_regression import (PoseRegression, reference_rays,
                                                          solve_pose_from_rays)
from i2p_registration.core.models.ray_head import plucker_from_raw, ray_targets, RayHead
from i2p_registration.core.models.rigid import invert_transform
from i2p_registration.core.sensors import CameraModel
import numpy as np
import torch

torch.set_num_threads(1)

K = np.array([[180.0, 0.0, 127.5], [0.0, 180.0, 39.5], [0.0, 0.0, 1.0]])
HW = (80, 256)


def random_T_cam_lidar(rng):
    R = so3_exp(rng.normal(size=3) * 0.8)
    return make_transform(R, rng.uniform(-10, 10, 3))


def test_plucker_from_raw_gives_valid_rays():
    torch.manual_seed(0)
    d, m = plucker_from_raw(torch.randn(5, 7, 6), moment_scale=20.0)
    torch.testing.assert_close(torch.linalg.norm(d, dim=-1), torch.ones(5, 7))
    assert (d * m).sum(-1).abs().max() < 1e-4 * m.abs().max()


def test_plucker_round_trip_camera_rays_camera_with_core_solver():
    rng = np.random.default_rng(1)
    camera = CameraModel(K, HW[1], HW[0])
    uv = patch_centres(*HW, 8, dtype=torch.float64)
    for _ in range(3):
        T = random_T_cam_lidar(rng)
        d, m = ray_targets(torch.as_tensor(T)[None], torch.as_tensor(K)[None], uv)
        assert d.shape == m.shape == (1, 320, 3)
        # Every ray passes through the camera centre in the LiDAR frame.
        centre = inverse(T)[:3, 3]
        np.testing.assert_allclose(np.cross(centre, d[0].numpy()), m[0].numpy(), atol=1e-9)
        est = camera_from_rays(d[0].numpy(), m[0].numpy(), uv.numpy(), camera)
        assert est.ok
        np.testing.assert_allclose(est.T, inverse(T), atol=1e-8)
        T_solved, ok = solve_pose_from_rays(d, m, uv, torch.as_tensor(K)[None], HW)
        assert ok.all()
        np.testing.assert_allclose(T_solved[0].numpy(), T, atol=1e-8)


def test_solve_pose_from_rays_reports_failure_per_batch_element():
    d = torch.zeros(1, 4, 3)
    d[..., 2] = 1.0
    T, ok = solve_pose_from_rays(d, torch.zeros(1, 4, 3), torch.rand(4, 2) * 50,
                                 torch.as_tensor(K)[None], HW)
    assert not ok[0] and torch.isnan(T).all()


def test_rot6d_is_continuous_along_a_full_turn_unlike_the_rotation_vector():
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    angles = np.linspace(0, 2 * np.pi, 721)
    R = torch.as_tensor(so3_exp(angles[:, None] * axis))
    d6 = matrix_to_rot6d(R)
    step = angles[1] - angles[0]
    # Lipschitz: a rotation step of delta moves the 6D vector by at most sqrt(2) delta.
    assert torch.linalg.norm(d6[1:] - d6[:-1], dim=-1).max() <= np.sqrt(2) * step + 1e-9
    torch.testing.assert_close(rot6d_to_matrix(d6), R)
    # The rotation vector (axis-angle in [0, pi]) jumps when the angle passes pi.
    from scipy.spatial.transform import Rotation
    rv = Rotation.from_matrix(R.numpy()).as_rotvec()
    assert np.linalg.norm(np.diff(rv, axis=0), axis=1).max() > 5.0
    # Perturbed 6D inputs map to nearby rotations (Gram-Schmidt is smooth off degeneracy).
    noise = 1e-3 * torch.randn(721, 6, generator=torch.Generator().manual_seed(2),
                               dtype=torch.float64)
    assert (rot6d_to_matrix(d6 + noise) - R).abs().max() < 1e-2


def test_ray_head_and_pose_regression_shapes_and_gradients():
    torch.manual_seed(3)
    feats = torch.randn(2, 40, 16, requires_grad=True)
    head = RayHead(16, moment_scale=20.0)
    d, m = head(feats)
    uv = patch_centres(40, 64, 8)
    b = reference_rays(uv, torch.as_tensor(K, dtype=torch.float32)[None].expand(2, 3, 3))
    torch.testing.assert_close(torch.linalg.norm(b, dim=-1), torch.ones(2, 40))
    pose = PoseRegression(16, 32)
    out = pose(feats, d, m, b)
    R = out['R_lidar_cam']
    assert R.shape == (2, 3, 3) and out['t_lidar_cam'].shape == (2, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out['weights'].sum(-1), torch.ones(2))
    (R.sum() + out['t_lidar_cam'].sum() + m.sum()).backward()
    assert torch.isfinite(feats.grad).all() and feats.grad.abs().sum() > 0
    for module in (head, pose):
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_invert_transform_closed_form():
    rng = np.random.default_rng(4)
    T = torch.as_tensor(np.stack([random_T_cam_lidar(rng) for _ in range(4)]))
    eye = torch.eye(4, dtype=T.dtype).expand(4, 4, 4)
    torch.testing.assert_close(invert_transform(T) @ T, eye)
    torch.testing.assert_close(T @ invert_transform(T), eye)
