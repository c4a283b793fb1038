"""Tests for i2p_registration.core.geometry.solvers."""

from i2p_registration.core.geometry.projection import unproject
from i2p_registration.core.geometry.rotations import geodesic_angle, so3_exp
from i2p_registration.core.geometry.se3 import inverse, make_transform, transform_points
from i2p_registration.core.geometry.solvers import pnp_ransac, PoseEstimate, weighted_procrustes
from i2p_registration.core.sensors import CameraModel
import numpy as np
import pytest

K = np.array([[600.0, 0.0, 319.5], [0.0, 610.0, 239.5], [0.0, 0.0, 1.0]])
T_CAM_WORLD = make_transform(so3_exp([1.4, -0.3, 0.2]), [0.4, -1.2, 3.0])
# A fisheye whose principal point sits in the top-left quarter: the far image corner is about
# 89 degrees off-axis, where undistorted (ideal pinhole) pixels stretch by a factor of ~300.
OFF_CENTRE_FISHEYE = CameraModel([[300.0, 0.0, 159.75], [0.0, 305.0, 119.75], [0.0, 0.0, 1.0]],
                                 640, 480, 'equidistant', [0.05, -0.01, 0.002, 0.0])


def test_pose_estimate_is_frozen_and_validated():
    est = PoseEstimate(np.eye(4), True, '', [True, False], 0.5)
    assert est.T.dtype == np.float64 and est.inliers.dtype == bool
    with pytest.raises(ValueError, match='read-only'):
        est.T[0, 0] = 2.0
    with pytest.raises(AttributeError):
        est.ok = False
    with pytest.raises(ValueError, match=r'T must have shape \(4, 4\), got \(3, 3\)'):
        PoseEstimate(np.eye(3), True)
    failed = PoseEstimate.failure('no luck')
    assert not failed.ok and failed.reason == 'no luck' and failed.residual_rms == np.inf
    assert np.all(np.isnan(failed.T))


def test_weighted_procrustes_exact():
    rng = np.random.default_rng(40)
    src = rng.uniform(-10, 10, (50, 3)).astype(np.float32)
    T = make_transform(so3_exp([2.0, -1.0, 0.5]), [3.0, -4.0, 5.0])
    dst = transform_points(T, src.astype(np.float64))
    est = weighted_procrustes(src, dst)
    assert est.ok and est.inliers is None
    np.testing.assert_allclose(est.T, T, atol=1e-12)
    assert est.residual_rms < 1e-12


def test_weighted_procrustes_zero_weights_ignore_outliers():
    rng = np.random.default_rng(41)
    src = rng.normal(size=(40, 3))
    T = make_transform(so3_exp([0.0, np.pi, 0.0]), [1.0, 2.0, 3.0])
    dst = transform_points(T, src)
    dst[:10] += rng.normal(scale=5.0, size=(10, 3))
    w = np.r_[np.zeros(10), rng.uniform(0.1, 1.0, 30)]
    est = weighted_procrustes(src, dst, w)
    np.testing.assert_allclose(est.T, T, atol=1e-12)
    unweighted = weighted_procrustes(src, dst)
    assert unweighted.ok and unweighted.residual_rms > 1.0


def test_weighted_procrustes_noise_and_reflection():
    rng = np.random.default_rng(42)
    src = rng.normal(size=(200, 3))
    T = make_transform(so3_exp([0.3, 0.2, -0.1]), [0.0, 1.0, 0.0])
    dst = transform_points(T, src) + rng.normal(scale=0.01, size=(200, 3))
    est = weighted_procrustes(src, dst)
    assert geodesic_angle(est.T[:3, :3], T[:3, :3]) < 3e-3
    assert est.residual_rms == pytest.approx(0.01 * np.sqrt(3), rel=0.15)
    # a mirrored cloud has no rotation onto it: the answer is still a proper rotation
    mirrored = weighted_procrustes(src, src * [1.0, 1.0, -1.0])
    assert mirrored.ok and np.linalg.det(mirrored.T[:3, :3]) == pytest.approx(1.0, abs=1e-12)


def test_weighted_procrustes_degenerate():
    line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
    est = weighted_procrustes(line, line + 1.0)
    assert not est.ok and 'collinear' in est.reason and np.all(np.isnan(est.T))
    two = weighted_procrustes(np.eye(3)[:2], np.eye(3)[:2])
    assert not two.ok and 'at least 3 points' in two.reason
    tri = np.eye(3)
    assert not weighted_procrustes(tri, tri, [1.0, 1.0, 0.0]).ok
    assert not weighted_procrustes(np.zeros((0, 3)), np.zeros((0, 3))).ok
    assert not weighted_procrustes(np.ones((4, 3)), np.ones((4, 3))).ok


def test_weighted_procrustes_errors():
    with pytest.raises(ValueError, match='src and dst must have the same shape'):
        weighted_procrustes(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r'src must have shape \(N, 3\)'):
        weighted_procrustes(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match='must be finite'):
        weighted_procrustes(np.full((4, 3), np.nan), np.zeros((4, 3)))


def make_pnp_problem(camera, seed, n=200, outlier_ratio=0.3, noise_px=0.5):
    rng = np.random.default_rng(seed)
    z = rng.uniform(2.0, 30.0, n)
    uv_true = rng.uniform([20, 20], [camera.width - 20, camera.height - 20], (n, 2))
    # lift the pixels to 3D with the true camera, then express the points in the world frame
    pts_world = transform_points(inverse(T_CAM_WORLD), unproject(uv_true, z, camera))
    uv = uv_true + rng.normal(scale=noise_px, size=(n, 2))
    outlier = rng.random(n) < outlier_ratio
    uv[outlier] = rng.uniform([0, 0], [camera.width, camera.height], (outlier.sum(), 2))
    far = np.linalg.norm(uv - uv_true, axis=1) > 10.0
    return pts_world, uv, outlier & far, ~outlier


@pytest.mark.parametrize('camera', [
    CameraModel(K, 640, 480, 'plumb_bob', [-0.3, 0.1, 1e-3, -1e-3, 0.0]),
    CameraModel(K, 640, 480, 'equidistant', [0.05, -0.01, 0.002, 0.0]),
    OFF_CENTRE_FISHEYE,
    CameraModel(K, 640, 480),
], ids=['plumb_bob', 'equidistant', 'off_centre_fisheye', 'none'])
def test_pnp_ransac_recovers_pose_with_outliers(camera):
    pts, uv, outliers, inliers_true = make_pnp_problem(camera, seed=43)
    assert outliers.mean() > 0.25
    est = pnp_ransac(pts.astype(np.float32), uv, camera)
    assert est.ok, est.reason
    assert np.degrees(geodesic_angle(est.T[:3, :3], T_CAM_WORLD[:3, :3])) < 0.1
    assert np.linalg.norm(est.T[:3, 3] - T_CAM_WORLD[:3, 3]) < 0.05
    assert not np.any(est.inliers[outliers])
    assert np.all(est.inliers[inliers_true])
    assert 0.3 < est.residual_rms < 1.0
    again = pnp_ransac(pts.astype(np.float32), uv, camera)
    np.testing.assert_array_equal(again.T, est.T)


def test_pnp_ransac_failures():
    camera = CameraModel(K, 640, 480)
    pts, uv, _, _ = make_pnp_problem(camera, seed=44, n=20, outlier_ratio=0.0)
    few = pnp_ransac(pts[:3], uv[:3], camera)
    assert not few.ok and 'at least 4 correspondences, got 3' in few.reason
    assert few.inliers.tolist() == [False] * 3 and np.all(np.isnan(few.T))
    rng = np.random.default_rng(45)
    garbage = pnp_ransac(rng.normal(size=(30, 3)) * 0.0 + [0.0, 0.0, 1.0],
                         rng.uniform(0, 480, (30, 2)), camera)
    assert not garbage.ok and 'RANSAC found no pose' in garbage.reason


def test_pnp_ransac_errors():
    camera = CameraModel(K, 640, 480)
    with pytest.raises(ValueError, match='same length, got 5 and 4'):
        pnp_ransac(np.zeros((5, 3)), np.zeros((4, 2)), camera)
    with pytest.raises(ValueError, match=r'uv must have shape \(N, 2\)'):
        pnp_ransac(np.zeros((5, 3)), np.zeros((5, 3)), camera)
    with pytest.raises(ValueError, match='reprojection_px must be positive'):
        pnp_ransac(np.zeros((5, 3)), np.zeros((5, 2)), camera, reprojection_px=0.0)
    with pytest.raises(ValueError, match=r'confidence must be in \(0, 1\)'):
        pnp_ransac(np.zeros((5, 3)), np.zeros((5, 2)), camera, confidence=1.0)
