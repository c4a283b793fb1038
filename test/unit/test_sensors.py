"""Tests of the sensor containers: camera model algebra and frame validation."""

from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame
import numpy as np
import pytest

K = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])


def pinhole(K, points):
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def test_scaled_camera_follows_the_resize_pixel_centre_convention():
    camera = CameraModel(K, 1242, 375)
    points = np.random.default_rng(0).uniform([-5, -2, 4], [5, 2, 40], size=(50, 3))
    uv = pinhole(camera.K, points)
    half = camera.scaled(0.5, 0.25)
    assert half.size == (621, 94)
    np.testing.assert_allclose(pinhole(half.K, points)[:, 0], (uv[:, 0] + 0.5) * 0.5 - 0.5,
                               atol=1e-9)
    np.testing.assert_allclose(pinhole(half.K, points)[:, 1], (uv[:, 1] + 0.5) * 0.25 - 0.5,
                               atol=1e-9)
    np.testing.assert_allclose(camera.resized(1242, 375).K, K, atol=1e-12)
    np.testing.assert_allclose(camera.resized(512, 160).scaled(1242 / 512, 375 / 160).K, K,
                               atol=1e-9)


def test_cropped_camera_shifts_the_principal_point():
    camera = CameraModel(K, 1242, 375, 'plumb_bob', [0.1, -0.05, 0.001, 0.002, 0.0])
    crop = camera.cropped(100, 50, 512, 160)
    points = np.random.default_rng(1).uniform([-5, -2, 4], [5, 2, 40], size=(20, 3))
    np.testing.assert_allclose(pinhole(crop.K, points), pinhole(K, points) - [100, 50],
                               atol=1e-9)
    assert crop.size == (512, 160)
    np.testing.assert_array_equal(crop.D, camera.D)
    assert crop.is_distorted and not CameraModel(K, 10, 10).is_distorted
    assert not CameraModel(K, 10, 10, 'plumb_bob', [0, 0, 0, 0]).is_distorted
    assert CameraModel(K, 10, 10, 'equidistant', [0, 0, 0, 0]).is_distorted


@pytest.mark.parametrize('kwargs, message', [
    ({'K': np.zeros((3, 3))}, 'all-zero K'),
    ({'K': np.eye(2)}, '3x3'),
    ({'K': np.diag([1.0, np.nan, 1.0])}, 'NaN'),
    ({'width': 0}, 'positive'),
    ({'distortion_model': 'fisheye62'}, 'unknown distortion model'),
    ({'distortion_model': 'plumb_bob', 'D': [0.1, 0.2, 0.3]}, '4, 5 or 8'),
    ({'distortion_model': 'equidistant', 'D': [0.1] * 5}, 'needs 4'),
    ({'D': [0.1, 0, 0, 0]}, 'no non-zero'),
])
def test_camera_model_rejects_bad_calibration(kwargs, message):
    args = {'K': K, 'width': 1242, 'height': 375, **kwargs}
    with pytest.raises(ValueError, match=message):
        CameraModel(**args)


def test_image_frame_validates_against_its_camera():
    camera = CameraModel(K, 8, 4)
    frame = ImageFrame(np.zeros((4, 8, 3), np.uint8), np.int64(12), 'cam', camera)
    assert type(frame.stamp_ns) is int and frame.stamp_ns == 12
    with pytest.raises(ValueError, match='differs from the camera model size 8x4'):
        ImageFrame(np.zeros((4, 9, 3), np.uint8), 0, 'cam', camera)
    with pytest.raises(ValueError, match='uint8 RGB'):
        ImageFrame(np.zeros((4, 8, 3), np.float32), 0, 'cam', camera)
    with pytest.raises(ValueError, match='empty'):
        ImageFrame(np.zeros((0, 8, 3), np.uint8), 0, 'cam', camera)


def test_cloud_frame_stores_float32_and_selects_fields_together():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(10, 3))
    cloud = CloudFrame(points, 5, 'lidar', intensity=np.arange(10, dtype=np.float32),
                       ring=np.arange(10, dtype=np.uint16))
    assert cloud.points.dtype == np.float32 and len(cloud) == 10
    np.testing.assert_array_equal(cloud.points, points.astype(np.float32))
    picked = cloud.select(cloud.intensity >= 7)
    assert len(picked) == 3 and picked.time is None
    np.testing.assert_array_equal(picked.ring, [7, 8, 9])
    np.testing.assert_array_equal(picked.points, cloud.points[7:])
    with pytest.raises(ValueError, match=r'intensity must have shape \(10,\)'):
        CloudFrame(points, 0, 'lidar', intensity=np.zeros(9))
    with pytest.raises(ValueError, match=r'\(N, 3\)'):
        CloudFrame(np.zeros((4, 4)), 0, 'lidar')
