"""Tests for i2p_registration.core.geometry.projection (against OpenCV where it applies)."""

import cv2
from i2p_registration.core.geometry.projection import (
    distort, in_image, pixel_rays, pixels_to_normalized, project_lidar_points, project_points,
    undistort, unproject)
from i2p_registration.core.geometry.rotations import so3_exp, so3_log
from i2p_registration.core.geometry.se3 import inverse, make_transform, transform_points
from i2p_registration.core.sensors import CameraModel
import numpy as np
import pytest

K = np.array([[720.0, 0.0, 640.3], [0.0, 715.0, 359.6], [0.0, 0.0, 1.0]])


def plumb_bob_coefficients(rng, n):
    d = np.array([rng.uniform(-0.35, 0.1), rng.uniform(-0.1, 0.15), rng.uniform(-2e-3, 2e-3),
                  rng.uniform(-2e-3, 2e-3), rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05),
                  rng.uniform(-0.02, 0.02), rng.uniform(-0.01, 0.01)])
    return d[:n]


def equidistant_coefficients(rng):
    return np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.02, 0.02),
                     rng.uniform(-0.01, 0.01), rng.uniform(-0.005, 0.005)])


def points_in_view(rng, n, half_tan=0.7):
    z = rng.uniform(0.5, 60.0, n)
    xy = rng.uniform(-half_tan, half_tan, (n, 2)) * z[:, None]
    return np.column_stack([xy, z])


def test_pinhole_known_answer():
    cam = CameraModel(K, 1280, 720)
    uv, front = project_points([[0.0, 0.0, 5.0], [1.0, -0.5, 2.0]], cam)
    np.testing.assert_allclose(uv, [[640.3, 359.6], [640.3 + 360.0, 359.6 - 178.75]], atol=1e-12)
    assert front.tolist() == [True, True]


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('n_coeffs', [4, 5, 8])
def test_plumb_bob_matches_cv2_project_points(seed, n_coeffs):
    rng = np.random.default_rng(seed)
    D = plumb_bob_coefficients(rng, n_coeffs)
    cam = CameraModel(K, 1280, 720, 'plumb_bob', D)
    pts = points_in_view(rng, 500)
    uv, front = project_points(pts.astype(np.float32), cam)
    ref, _ = cv2.projectPoints(pts.astype(np.float32).astype(np.float64), np.zeros(3),
                               np.zeros(3), K, D)
    assert front.all()
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6, rtol=0)


@pytest.mark.parametrize('seed', range(4))
def test_equidistant_matches_cv2_fisheye_project_points(seed):
    rng = np.random.default_rng(100 + seed)
    D = equidistant_coefficients(rng)
    cam = CameraModel(K, 1280, 720, 'equidistant', D)
    pts = points_in_view(rng, 500, half_tan=2.0)
    uv, front = project_points(pts, cam)
    ref, _ = cv2.fisheye.projectPoints(pts.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, D)
    assert front.all()
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6, rtol=0)


def test_project_lidar_points_matches_cv2_with_pose():
    rng = np.random.default_rng(20)
    D = plumb_bob_coefficients(rng, 5)
    cam = CameraModel(K, 1280, 720, 'plumb_bob', D)
    T_cam_lidar = make_transform(so3_exp([1.2, -1.1, 1.3]), [0.05, -0.3, 0.2])
    pts_lidar = transform_points(inverse(T_cam_lidar), points_in_view(rng, 300))
    uv, front = project_lidar_points(pts_lidar.astype(np.float32), T_cam_lidar, cam)
    ref, _ = cv2.projectPoints(pts_lidar.astype(np.float32).astype(np.float64),
                               so3_log(T_cam_lidar[:3, :3]), T_cam_lidar[:3, 3], K, D)
    assert front.all()
    np.testing.assert_allclose(uv, ref.reshape(-1, 2), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r'T_cam_lidar must have shape \(4, 4\)'):
        project_lidar_points(pts_lidar, np.eye(3), cam)


def test_points_behind_or_on_the_camera_plane_are_nan():
    cam = CameraModel(K, 1280, 720, 'plumb_bob', [-0.2, 0.05, 0.0, 0.0])
    pts = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, -2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1e-7],
                    [np.nan, 0.0, 1.0], [0.1, 0.1, 2e-6]])
    uv, front = project_points(pts, cam)
    assert front.tolist() == [True, False, False, False, False, True]
    assert np.all(np.isnan(uv[~front])) and np.all(np.isfinite(uv[front]))


def test_empty_input():
    cam = CameraModel(K, 1280, 720)
    uv, front = project_points(np.zeros((0, 3), np.float32), cam)
    assert uv.shape == (0, 2) and front.shape == (0,) and front.dtype == bool
    assert unproject(np.zeros((0, 2)), np.zeros(0), cam).shape == (0, 3)
    assert pixel_rays(np.zeros((0, 2)), cam).shape == (0, 3)
    assert in_image(np.zeros((0, 2)), cam).shape == (0,)


@pytest.mark.parametrize('model, seed', [('plumb_bob', 0), ('plumb_bob', 1), ('plumb_bob', 2),
                                         ('equidistant', 3), ('equidistant', 4), ('none', 5)])
def test_distort_undistort_round_trip(model, seed):
    rng = np.random.default_rng(seed)
    D = {'plumb_bob': plumb_bob_coefficients(rng, 8), 'equidistant': equidistant_coefficients(rng),
         'none': []}[model]
    xy = rng.uniform(-0.8, 0.8, (2000, 2))
    xy_d = distort(xy, model, D)
    back = undistort(xy_d, model, D)
    np.testing.assert_allclose(back, xy, atol=1e-12, rtol=0)
    np.testing.assert_allclose(distort(back, model, D), xy_d, atol=1e-12, rtol=0)


def test_undistort_matches_cv2_undistort_points():
    rng = np.random.default_rng(21)
    D = plumb_bob_coefficients(rng, 5)
    uv = rng.uniform([0, 0], [1280, 720], (200, 2))
    ref = cv2.undistortPoints(uv.reshape(-1, 1, 2), K, D, criteria=(
        cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-15)).reshape(-1, 2)
    cam = CameraModel(K, 1280, 720, 'plumb_bob', D)
    np.testing.assert_allclose(pixels_to_normalized(uv, cam), ref, atol=1e-9)


def test_equidistant_with_zero_coefficients_is_still_fisheye():
    xy = np.array([[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(distort(xy, 'equidistant', np.zeros(4)), [[np.pi / 4, 0], [0, 0]])
    np.testing.assert_allclose(undistort([[np.pi / 4, 0.0]], 'equidistant', np.zeros(4)),
                               [[1.0, 0.0]], atol=1e-12)


def test_undistort_beyond_90_degrees_is_nan():
    out = undistort([[2.0, 0.0], [0.1, 0.0]], 'equidistant', np.zeros(4))
    assert np.all(np.isnan(out[0]))
    np.testing.assert_allclose(out[1], [np.tan(0.1), 0.0], atol=1e-12)


@pytest.mark.parametrize('model', ['none', 'plumb_bob', 'equidistant'])
def test_unproject_and_pixel_rays_invert_projection(model):
    rng = np.random.default_rng(22)
    D = {'plumb_bob': plumb_bob_coefficients(rng, 8), 'equidistant': equidistant_coefficients(rng),
         'none': []}[model]
    cam = CameraModel(K, 1280, 720, model, D)
    pts = points_in_view(rng, 400)
    uv, _ = project_points(pts, cam)
    np.testing.assert_allclose(unproject(uv, pts[:, 2], cam), pts, atol=1e-9)
    rays = pixel_rays(uv, cam)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(rays, pts / np.linalg.norm(pts, axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(unproject(uv[:3], 2.0, cam)[:, 2], 2.0)


def test_in_image_borders_and_margin():
    cam = CameraModel(K, 1280, 720)
    uv = np.array([[-0.5, 0.0], [-0.51, 0.0], [1279.49, 719.49], [1279.5, 0.0], [0.0, 719.5],
                   [np.nan, 3.0], [640.0, 360.0], [5.0, 5.0]])
    assert in_image(uv, cam).tolist() == [True, False, True, False, False, False, True, True]
    assert in_image(uv, cam, margin=10).tolist() == [False] * 6 + [True, False]


def test_projection_errors():
    cam = CameraModel(K, 1280, 720)
    with pytest.raises(ValueError, match=r'points_cam must have shape \(N, 3\)'):
        project_points(np.zeros((4, 2)), cam)
    with pytest.raises(ValueError, match='camera must be a CameraModel'):
        project_points(np.zeros((4, 3)), K)
    with pytest.raises(ValueError, match='unknown distortion model'):
        distort(np.zeros((1, 2)), 'kannala', [0.0] * 4)
    with pytest.raises(ValueError, match='plumb_bob needs 4, 5 or 8 coefficients, got 3'):
        undistort(np.zeros((1, 2)), 'plumb_bob', [0.0] * 3)
    with pytest.raises(ValueError, match='equidistant needs 4 coefficients'):
        distort(np.zeros((1, 2)), 'equidistant', [0.0] * 5)
    with pytest.raises(ValueError, match=r'depth must be a scalar or have shape \(2,\)'):
        unproject(np.zeros((2, 2)), np.ones(3), cam)
    with pytest.raises(ValueError, match=r'uv must have shape \(N, 2\)'):
        pixel_rays(np.zeros(2), cam)
