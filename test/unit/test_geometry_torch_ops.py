"""Tests for i2p_registration.core.geometry.torch_ops against the numpy versions."""

from i2p_registration.core.geometry import projection, rays, rotations, se3
from i2p_registration.core.geometry import torch_ops as T_ops
from i2p_registration.core.sensors import CameraModel
import numpy as np
import pytest
import torch

K = np.array([[600.0, 0.5, 319.5], [0.0, 610.0, 239.5], [0.0, 0.0, 1.0]])
D8 = np.array([-0.28, 0.09, 1e-3, -5e-4, -0.01, 0.01, -0.005, 0.002])


def t64(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def random_rotvecs(rng, n):
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi, n - 4), [0.0, 1e-12, 9e-5, 1.1e-4]])
    return axis * angles[:, None]


def test_rotations_equal_numpy():
    rng = np.random.default_rng(50)
    phi = random_rotvecs(rng, 300)
    np.testing.assert_allclose(T_ops.so3_exp(t64(phi)).numpy(), rotations.so3_exp(phi),
                               atol=1e-9, rtol=0)
    q = rng.normal(size=(300, 4))
    np.testing.assert_allclose(T_ops.quat_to_matrix(t64(q)).numpy(), rotations.quat_to_matrix(q),
                               atol=1e-9, rtol=0)
    d6 = rng.normal(size=(300, 6))
    np.testing.assert_allclose(T_ops.rot6d_to_matrix(t64(d6)).numpy(),
                               rotations.rot6d_to_matrix(d6), atol=1e-9, rtol=0)
    R = rotations.so3_exp(phi)
    np.testing.assert_allclose(T_ops.matrix_to_rot6d(t64(R)).numpy(),
                               rotations.matrix_to_rot6d(R), atol=1e-9, rtol=0)
    R_b = rotations.so3_exp(random_rotvecs(rng, 300))
    np.testing.assert_allclose(T_ops.geodesic_angle(t64(R), t64(R_b)).numpy(),
                               rotations.geodesic_angle(R, R_b), atol=1e-9, rtol=0)


def test_transform_points_equals_numpy_and_keeps_dtype():
    rng = np.random.default_rng(51)
    T = se3.se3_exp(rng.normal(size=(4, 6)))
    pts = rng.normal(size=(4, 50, 3)) * 10
    out = T_ops.transform_points(t64(T), t64(pts))
    np.testing.assert_allclose(out.numpy(), se3.transform_points(T, pts), atol=1e-9, rtol=0)
    out32 = T_ops.transform_points(t64(T[0]), torch.as_tensor(pts[0], dtype=torch.float32))
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.numpy(), se3.transform_points(T[0], pts[0]), atol=1e-4)


@pytest.mark.parametrize('D', [None, D8[:4], D8[:5], D8])
def test_project_points_equals_numpy(D):
    rng = np.random.default_rng(52)
    cam = CameraModel(K, 640, 480, 'none' if D is None else 'plumb_bob',
                      np.zeros(0) if D is None else D)
    pts = np.column_stack([rng.uniform(-5, 5, (200, 2)), rng.uniform(-2, 30, 200)])
    uv_np, front_np = projection.project_points(pts, cam)
    uv, front = T_ops.project_points(t64(pts), t64(K), None if D is None else t64(D))
    assert front.numpy().tolist() == front_np.tolist()
    assert 0 < front_np.sum() < 200
    np.testing.assert_allclose(uv.numpy(), uv_np, atol=1e-9, rtol=0)


def test_project_points_batched_intrinsics_and_finite_gradients():
    pts = t64([[[0.1, 0.2, 2.0], [0.0, 0.0, -1.0]], [[0.3, -0.2, 5.0], [1.0, 1.0, 0.0]]])
    pts.requires_grad_(True)
    Ks = t64(np.stack([K, K * [[2.0], [2.0], [1.0]]]))
    uv, front = T_ops.project_points(pts, Ks, t64(np.stack([D8[:5], D8[:5] * 0.5])))
    assert front.tolist() == [[True, False], [True, False]]
    assert torch.isnan(uv[~front]).all()
    cam = CameraModel(K * [[2.0], [2.0], [1.0]], 640, 480, 'plumb_bob', D8[:5] * 0.5)
    np.testing.assert_allclose(uv[1, 0].detach().numpy(),
                               projection.project_points(pts[1, :1].detach().numpy(), cam)[0][0],
                               atol=1e-9)
    uv[front].sum().backward()
    assert torch.isfinite(pts.grad).all()
    assert pts.grad[~front].abs().sum() == 0


@pytest.mark.parametrize('D', [None, D8[:5]])
def test_plucker_rays_equal_numpy(D):
    cam = CameraModel(K, 640, 480, 'none' if D is None else 'plumb_bob',
                      np.zeros(0) if D is None else D)
    T_world_cam = se3.se3_exp([3.0, -1.0, 2.0, 0.3, -2.0, 1.0])
    uv = rays.patch_centres(cam, 32)
    d_np, m_np = rays.plucker_rays(cam, T_world_cam, uv)
    d, m = T_ops.plucker_rays(t64(K), t64(T_world_cam), t64(uv), None if D is None else t64(D))
    np.testing.assert_allclose(d.numpy(), d_np, atol=1e-9, rtol=0)
    np.testing.assert_allclose(m.numpy(), m_np, atol=1e-9, rtol=0)
    bearings = T_ops.pixel_rays(t64(uv), t64(K), None if D is None else t64(D))
    np.testing.assert_allclose(bearings.numpy(), projection.pixel_rays(uv, cam), atol=1e-9)


def test_gradcheck_so3_exp_and_rot6d():
    rng = np.random.default_rng(53)
    for phi in (rng.normal(size=(4, 3)), rng.normal(size=(2, 3)) * 1e-5, np.zeros((1, 3))):
        assert torch.autograd.gradcheck(T_ops.so3_exp, (t64(phi).requires_grad_(),))
    d6 = t64(rng.normal(size=(4, 6))).requires_grad_()
    assert torch.autograd.gradcheck(T_ops.rot6d_to_matrix, (d6,))


def test_gradients_finite_at_singular_points():
    phi = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    T_ops.so3_exp(phi).sum().backward()
    # d/dphi of sum(R) at 0 is the sum of the generator contributions: (0, 0, 0)
    assert torch.isfinite(phi.grad).all()
    np.testing.assert_allclose(phi.grad.numpy(), 0.0, atol=1e-15)
    R = torch.eye(3, dtype=torch.float64, requires_grad=True)
    angle = T_ops.geodesic_angle(R, torch.eye(3, dtype=torch.float64))
    angle.backward()
    assert angle.item() == 0.0 and torch.isfinite(R.grad).all()
    q = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    T_ops.quat_to_matrix(q).sum().backward()
    assert torch.isfinite(q.grad).all()


def test_dtype_and_shape_checks():
    out = T_ops.so3_exp(torch.zeros(2, 3, dtype=torch.float32))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 3)
    with pytest.raises(ValueError, match=r'phi must have shape \(\.\.\., 3\), got \(4,\)'):
        T_ops.so3_exp(torch.zeros(4))
    with pytest.raises(ValueError, match='plumb_bob needs 4, 5 or 8 coefficients, got 3'):
        T_ops.project_points(torch.ones(1, 3), t64(K), torch.zeros(3))
    with pytest.raises(ValueError, match=r'points_cam must have shape \(\.\.\., N, 3\)'):
        T_ops.project_points(torch.ones(3), t64(K))
