"""The prior and calibration parameters of the registration node."""

from i2p_registration.core.config import (CalibrationConfig, PriorConfig, RegistrationNodeConfig,
                                          transform_from_xyz_rpy)
from i2p_registration.core.geometry.se3 import inverse, transform_points
import numpy as np
import pytest


def test_default_prior_is_the_forward_looking_optical_frame():
    T_cam_lidar = inverse(PriorConfig().T_lidar_cam)
    # A point 10 m ahead of the LiDAR is 10 m along the optical axis; LiDAR left is image left.
    ahead_left_up = transform_points(T_cam_lidar, np.array([[10.0, 1.0, 2.0]]))[0]
    np.testing.assert_allclose(ahead_left_up, [-1.0, -2.0, 10.0], atol=1e-5)


def test_xyz_rpy_is_fixed_axis_zyx():
    T = transform_from_xyz_rpy(1.0, 2.0, 3.0, 0.0, 0.0, np.pi / 2)
    np.testing.assert_allclose(T[:3, :3] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [1.0, 2.0, 3.0])
    roll_then_yaw = transform_from_xyz_rpy(0, 0, 0, np.pi / 2, 0, np.pi / 2)[:3, :3]
    np.testing.assert_allclose(roll_then_yaw @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-12)


def test_prior_and_calibration_are_node_parameters_and_validate():
    config = RegistrationNodeConfig.from_flat({'prior.x': 1, 'calibration.window': 50})
    assert config.prior.x == 1.0 and config.calibration.window == 50
    with pytest.raises(ValueError, match='prior.rotation_range'):
        RegistrationNodeConfig.from_flat({'prior.rotation_range': 4.0})
    with pytest.raises(ValueError, match=r'calibration.min_inliers \(31\) must not exceed '
                                         r'calibration.window \(30\)'):
        RegistrationNodeConfig.from_flat({'calibration.min_inliers': 31})
    assert CalibrationConfig(window=5, min_inliers=5).min_inliers == 5
