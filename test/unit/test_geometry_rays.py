"""Tests for i2p_registration.core.geometry.rays."""

from i2p_registration.core.geometry.projection import project_points
from i2p_registration.core.geometry.rays import camera_from_rays, patch_centres, plucker_rays
from i2p_registration.core.geometry.rotations import geodesic_angle, so3_exp
from i2p_registration.core.geometry.se3 import inverse, make_transform, transform_points
from i2p_registration.core.sensors import CameraModel
import numpy as np
import pytest

K = np.array([[600.0, 0.0, 319.5], [0.0, 610.0, 239.5], [0.0, 0.0, 1.0]])
CAMERAS = {
    'none': CameraModel(K, 640, 480),
    'plumb_bob': CameraModel(K, 640, 480, 'plumb_bob', [-0.28, 0.09, 1e-3, -5e-4, -0.01]),
    'equidistant': CameraModel(K, 640, 480, 'equidistant', [0.02, -0.01, 0.003, -0.001]),
}
T_WORLD_CAM = make_transform(so3_exp([-1.3, 0.4, 2.2]), [12.0, -3.5, 1.7])


def test_patch_centres_known_grid():
    cam = CameraModel(K, 70, 48)
    c = patch_centres(cam, 16)
    assert c.shape == (4 * 3, 2) and c.dtype == np.float64
    np.testing.assert_array_equal(c[0], [7.5, 7.5])
    np.testing.assert_array_equal(c[1], [23.5, 7.5])
    np.testing.assert_array_equal(c[4], [7.5, 23.5])
    np.testing.assert_array_equal(c[-1], [55.5, 39.5])
    np.testing.assert_array_equal(patch_centres(cam, 1)[:3], [[0, 0], [1, 0], [2, 0]])


def test_patch_centres_errors():
    cam = CameraModel(K, 70, 48)
    with pytest.raises(ValueError, match='patch_size must be a positive integer'):
        patch_centres(cam, 0)
    with pytest.raises(ValueError, match='patch_size must be a positive integer'):
        patch_centres(cam, 2.5)
    with pytest.raises(ValueError, match='larger than the image'):
        patch_centres(cam, 49)


@pytest.mark.parametrize('model', list(CAMERAS))
def test_plucker_rays_pass_through_the_pixels(model):
    cam = CAMERAS[model]
    uv = patch_centres(cam, 32)
    d, m = plucker_rays(cam, T_WORLD_CAM, uv)
    c = T_WORLD_CAM[:3, 3]
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(m, np.cross(c, d), atol=1e-15)
    np.testing.assert_allclose(np.sum(d * m, axis=1), 0.0, atol=1e-12)
    # A point 7 m along each ray lies on the line (p x d = m) and projects back onto its pixel.
    p_world = c + 7.0 * d
    np.testing.assert_allclose(np.cross(p_world, d), m, atol=1e-12)
    uv_back, front = project_points(transform_points(inverse(T_WORLD_CAM), p_world), cam)
    assert front.all()
    np.testing.assert_allclose(uv_back, uv, atol=1e-9)


def test_plucker_rays_shape_errors():
    with pytest.raises(ValueError, match=r'T_world_cam must have shape \(4, 4\)'):
        plucker_rays(CAMERAS['none'], np.eye(3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r'uv must have shape \(N, 2\)'):
        plucker_rays(CAMERAS['none'], np.eye(4), np.zeros((2, 3)))


@pytest.mark.parametrize('model', list(CAMERAS))
def test_camera_from_rays_exact(model):
    cam = CAMERAS[model]
    uv = patch_centres(cam, 32)
    d, m = plucker_rays(cam, T_WORLD_CAM, uv)
    est = camera_from_rays(d, m, uv, cam)
    assert est.ok and est.reason == '' and est.inliers is None
    np.testing.assert_allclose(est.T, T_WORLD_CAM, atol=1e-9)
    assert est.residual_rms < 1e-12


def test_camera_from_rays_accepts_unnormalized_directions_and_zero_weights():
    cam = CAMERAS['plumb_bob']
    rng = np.random.default_rng(30)
    uv = patch_centres(cam, 16)
    d, m = plucker_rays(cam, T_WORLD_CAM, uv)
    scale = rng.uniform(0.1, 10.0, (len(d), 1))
    d, m = d * scale, m * scale
    bad = rng.random(len(d)) < 0.3
    d[bad] = rng.normal(size=(bad.sum(), 3))
    weights = np.where(bad, 0.0, rng.uniform(0.5, 2.0, len(d)))
    est = camera_from_rays(d, m, uv, cam, weights)
    assert est.ok
    np.testing.assert_allclose(est.T, T_WORLD_CAM, atol=1e-9)


def test_camera_from_rays_under_noise():
    cam = CAMERAS['plumb_bob']
    rng = np.random.default_rng(31)
    uv = patch_centres(cam, 16)
    d, m = plucker_rays(cam, T_WORLD_CAM, uv)
    d_noisy = d + rng.normal(scale=2e-3, size=d.shape)
    m_noisy = m + rng.normal(scale=2e-2, size=m.shape)
    est = camera_from_rays(d_noisy, m_noisy, uv, cam)
    assert est.ok
    assert np.degrees(geodesic_angle(est.T[:3, :3], T_WORLD_CAM[:3, :3])) < 0.1
    assert np.linalg.norm(est.T[:3, 3] - T_WORLD_CAM[:3, 3]) < 0.05
    assert 0.005 < est.residual_rms < 0.1


def test_camera_from_rays_degenerate_cases():
    cam = CAMERAS['none']
    uv = np.array([[100.0, 100.0], [300.0, 200.0], [500.0, 400.0]])
    d, m = plucker_rays(cam, T_WORLD_CAM, uv)

    same = camera_from_rays(np.repeat(d[:1], 3, 0), np.repeat(m[:1], 3, 0), uv[[0, 0, 0]], cam)
    assert not same.ok and 'parallel' in same.reason
    assert np.all(np.isnan(same.T)) and same.residual_rms == np.inf

    # the same line, once in each direction: still parallel
    opposite = camera_from_rays(np.stack([d[0], -d[0]]), np.stack([m[0], -m[0]]), uv[:2], cam)
    assert not opposite.ok and 'parallel' in opposite.reason

    one = camera_from_rays(d[:1], m[:1], uv[:1], cam)
    assert not one.ok and 'at least 2 rays' in one.reason

    zero = camera_from_rays(d, m, uv, cam, weights=np.zeros(3))
    assert not zero.ok and 'got 0' in zero.reason

    empty = camera_from_rays(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 2)), cam)
    assert not empty.ok

    two = camera_from_rays(d[:2], m[:2], uv[:2], cam)
    assert two.ok
    np.testing.assert_allclose(two.T, T_WORLD_CAM, atol=1e-9)


def test_camera_from_rays_errors():
    cam = CAMERAS['none']
    with pytest.raises(ValueError, match='must have the same length, got 3, 3 and 2'):
        camera_from_rays(np.ones((3, 3)), np.ones((3, 3)), np.ones((2, 2)), cam)
    with pytest.raises(ValueError, match=r'moments must have shape \(N, 3\)'):
        camera_from_rays(np.ones((3, 3)), np.ones((3, 6)), np.ones((3, 2)), cam)
    with pytest.raises(ValueError, match=r'weights must have shape \(3,\)'):
        camera_from_rays(np.ones((3, 3)), np.ones((3, 3)), np.ones((3, 2)), cam, np.ones(4))
    with pytest.raises(ValueError, match='finite and non-negative'):
        camera_from_rays(np.ones((3, 3)), np.ones((3, 3)), np.ones((3, 2)), cam, -np.ones(3))
