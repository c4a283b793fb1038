"""The prior and calibration parameters of the registration node."""

from i2p_registration.core.config import RegistrationNodeConfig
from i2p_registration.core.config_extras import (prior_from_config, PriorConfig,
                                                 RegistrationNodeExtras, transform_from_xyz_rpy)
from i2p_registration.core.geometry.se3 import transform_points
import numpy as np
import pytest


def test_default_prior_is_the_forward_looking_optical_frame():
    prior = prior_from_config(PriorConfig())
    # A point 10 m ahead of the LiDAR is 10 m along the optical axis; LiDAR left is image left.
    ahead_left_up = transform_points(prior.T_cam_lidar, np.array([[10.0, 1.0, 2.0]]))[0]
    np.testing.assert_allclose(ahead_left_up, [-1.0, -2.0, 10.0], atol=1e-5)
    np.testing.assert_allclose(prior.translation_range, 0.5)


def test_xyz_rpy_is_fixed_axis_zyx():
    T = transform_from_xyz_rpy(1.0, 2.0, 3.0, 0.0, 0.0, np.pi / 2)
    np.testing.assert_allclose(T[:3, :3] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [1.0, 2.0, 3.0])
    roll_then_yaw = transform_from_xyz_rpy(0, 0, 0, np.pi / 2, 0, np.pi / 2)[:3, :3]
    np.testing.assert_allclose(roll_then_yaw @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-12)


def test_names_do_not_clash_with_the_node_config_and_validate():
    extras = {s.name for s in RegistrationNodeExtras.parameter_specs()}
    assert not extras & {s.name for s in RegistrationNodeConfig.parameter_specs()}
    config = RegistrationNodeExtras.from_flat({'prior.x': 1, 'calibration.window': 50})
    assert config.prior.x == 1.0 and config.calibration.window == 50
    with pytest.raises(ValueError, match='prior.rotation_range'):
        RegistrationNodeExtras.from_flat({'prior.rotation_range': 4.0})
