"""The registration node's ROS helpers, in-process: parameters, diagnostics, overlay, RViz."""

import os

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from i2p_registration.core.config import RegistrationNodeConfig  # noqa: E402, I100
from i2p_registration.core.geometry.se3 import inverse  # noqa: E402
from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame  # noqa: E402
from i2p_registration.ros.diagnostics import (ERROR, make_diagnostic_array,  # noqa: E402
                                              OK, REGISTRATION_KEYS, registration_level, WARN)
from i2p_registration.ros.overlay import render_overlay  # noqa: E402
from i2p_registration.ros.parameters import declare_config_parameters  # noqa: E402
import numpy as np  # noqa: E402
from rcl_interfaces.msg import ParameterType  # noqa: E402
import rclpy  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
import yaml  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TYPES = [RegistrationNodeConfig]


def _node(context, overrides=()):
    return rclpy.create_node('parameters_test', context=context,
                             parameter_overrides=list(overrides))


def test_every_parameter_is_declared_with_its_descriptor(rclpy_context):
    node = _node(rclpy_context)
    try:
        (config,), _ = declare_config_parameters(node, TYPES)
        assert config == RegistrationNodeConfig()
        max_dt = node.describe_parameter('buffering.max_dt')
        assert max_dt.type == ParameterType.PARAMETER_DOUBLE
        assert (max_dt.floating_point_range[0].from_value,
                max_dt.floating_point_range[0].to_value) == (0.0, 10.0)
        specs = {s.name: s for t in TYPES for s in t.parameter_specs()}
        assert max_dt.description == specs['buffering.max_dt'].description
        depth = node.describe_parameter('qos.depth')
        assert depth.read_only and depth.integer_range[0].to_value == 1000
        policy = node.describe_parameter('buffering.policy')
        assert "'nearest'" in policy.additional_constraints
        assert all(node.has_parameter(name) for name in specs)
        assert node.get_parameter('prior.yaw').value == pytest.approx(-np.pi / 2, abs=1e-6)
    finally:
        node.destroy_node()


def test_changes_are_validated_and_applied(rclpy_context):
    node = _node(rclpy_context)
    seen = []
    try:
        _, validator = declare_config_parameters(node, TYPES, on_change=seen.append)
        refused = node.set_parameters([Parameter('buffering.policy', value='closest')])[0]
        assert not refused.successful and "'closest' is not allowed" in refused.reason
        refused = node.set_parameters([Parameter('registration.min_score', value=2.0)])[0]
        assert not refused.successful
        assert not seen, 'a refused change reached on_change'
        accepted = node.set_parameters([Parameter('buffering.max_dt', value=0.05)])[0]
        assert accepted.successful, accepted.reason
        assert seen[-1][0].buffering.max_dt == 0.05
        assert validator.configs()[0].buffering.max_dt == 0.05
    finally:
        node.destroy_node()


def test_invalid_overrides_are_refused_at_start_up(rclpy_context):
    node = _node(rclpy_context, [Parameter('output.mode', value='mapping')])
    try:
        with pytest.raises(ValueError, match="'mapping' is not allowed"):
            declare_config_parameters(node, TYPES)
    finally:
        node.destroy_node()


def test_inconsistent_parameters_are_refused(rclpy_context):
    def check(configs):
        if configs[0].output.overlay and configs[0].processing.max_rate > 50.0:
            raise ValueError('overlay needs processing.max_rate <= 50')

    node = _node(rclpy_context)
    try:
        declare_config_parameters(node, TYPES, check=check)
        # a constraint of the config section itself (calibration.window is 30)
        refused = node.set_parameters([Parameter('calibration.min_inliers', value=31)])[0]
        assert not refused.successful and 'must not exceed' in refused.reason
        # a constraint of the node's check
        refused = node.set_parameters([Parameter('processing.max_rate', value=60.0)])[0]
        assert not refused.successful and 'overlay needs' in refused.reason
        accepted = node.set_parameters([Parameter('calibration.min_inliers', value=30)])[0]
        assert accepted.successful, accepted.reason
    finally:
        node.destroy_node()


def _values(**changes):
    values = dict.fromkeys(REGISTRATION_KEYS, 0)
    values.update(image_rate_hz=20.0, cloud_rate_hz=10.0, camera_info_rate_hz=20.0,
                  registrations=5, last_status='ok', last_failure_reason='',
                  last_input_error='')
    values.update(changes)
    return values


def test_diagnostic_levels():
    assert registration_level(_values(), 0) == (OK, 'registering')
    failing = _values(consecutive_failures=5, last_status='failed',
                      last_failure_reason='no edges')
    level, message = registration_level(failing, 0)
    assert level == ERROR and 'no edges' in message
    level, message = registration_level(_values(cloud_rate_hz=0.0), 0)
    assert level == WARN and message == 'no clouds received recently'
    level, message = registration_level(_values(last_input_error='points: empty cloud'), 2)
    assert level == WARN and 'empty cloud' in message
    level, _ = registration_level(_values(last_status='low_confidence'), 0)
    assert level == WARN
    array = make_diagnostic_array(1_500_000_000, 'n: registration', '/n', OK, 'ok',
                                  {'a': 1.23456, 'b': True, 'c': float('nan')})
    assert [(kv.key, kv.value) for kv in array.status[0].values] == [
        ('a', '1.235'), ('b', 'true'), ('c', 'nan')]
    assert (array.header.stamp.sec, array.header.stamp.nanosec) == (1, 500_000_000)


def test_overlay_draws_points_by_depth():
    camera = CameraModel(np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]]), 100, 80)
    image = ImageFrame(np.zeros((80, 100, 3), np.uint8), 1, 'cam', camera)
    T_lidar_cam = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1.0]])
    # Ahead 2 m on the optical axis (near: red), 45 m ahead and 10 m left (far: blue), behind.
    points = np.array([[2.0, 0, 0], [45.0, 4.5, 0], [-5.0, 0, 0]], np.float32)
    cloud = CloudFrame(points, 1, 'lidar')
    out = render_overlay(image, cloud, inverse(T_lidar_cam), max_depth=50.0, radius=0)
    near, far = out[40, 50], out[40, 40]
    assert near[0] > 100 and near[2] < 50, near
    assert far[2] > 100 and far[0] < 50, far
    assert np.count_nonzero(out.any(axis=2)) == 2, 'the point behind the camera was drawn'
    assert not image.image.any(), 'the input image was modified'
    with pytest.raises(ValueError):
        render_overlay(image, cloud, np.eye(4), max_depth=0.0)


def test_rviz_config_shows_the_node_outputs():
    with open(os.path.join(REPO_ROOT, 'config', 'i2p.rviz')) as stream:
        config = yaml.safe_load(stream)
    displays = {d['Name']: d for d in config['Visualization Manager']['Displays']}
    assert displays['Overlay']['Topic']['Value'] == '/i2p_registration_node/overlay'
    assert displays['Camera pose']['Topic']['Value'] == '/i2p_registration_node/pose'
    assert displays['Scan']['Class'] == 'rviz_default_plugins/PointCloud2'
    assert {'TF', 'Map', 'Path'} <= set(displays)
