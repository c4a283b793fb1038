"""
launch_testing: ``registration.launch.py`` starts the node; fed simulated frames, it publishes TF.

The synthetic world (``i2p_registration.data``) renders one camera frame and the scan 32 ms before
it, with exact ground truth; they are republished 1 s later each round. The node runs the
configured method (``edge``) from a prior 2.4 cm and 0.6 deg off the extrinsic. The test waits
for diagnostics and for TF, checks the TF frames, and checks the estimate against the pair's
ground truth (the same bounds as ``test/ros/test_registration_node_edge.py``). Needs a ROS 2
installation with this package built (``colcon build``; ``colcon test`` runs it); where
``launch_testing`` is missing the module is skipped.
"""

import os
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch_testing is not installed: it comes with a ROS 2 '
    'installation and is not on PyPI')

from ament_index_python.packages import get_package_share_directory  # noqa: E402, I100
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from i2p_registration.core.geometry.rotations import geodesic_angle  # noqa: E402
from i2p_registration.core.geometry.se3 import inverse, se3_exp  # noqa: E402
from i2p_registration.ros.conversions import (model_to_camera_info,  # noqa: E402
                                              numpy_to_cloud, numpy_to_image,
                                              transform_to_matrix)
import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

SEED = 3
PRIOR_OFFSET = se3_exp([0.02, -0.01, 0.015, 0.005, -0.008, 0.004])
TIMEOUT_S = 90.0
MAX_TRANSLATION_M = 0.10
MAX_ROTATION_DEG = 0.5


def _simulator():
    from i2p_registration.data.simulator import Simulator
    from i2p_registration.data.synth_config import SynthConfig
    return Simulator(SynthConfig(), SEED)


def _params_file(T_cam_lidar: np.ndarray) -> str:
    T_lidar_cam = inverse(PRIOR_OFFSET @ T_cam_lidar)
    roll, pitch, yaw = Rotation.from_matrix(T_lidar_cam[:3, :3]).as_euler('xyz')
    x, y, z = T_lidar_cam[:3, 3]
    handle, path = tempfile.mkstemp(prefix='i2p_registration_launch_test_', suffix='.yaml')
    with os.fdopen(handle, 'w') as stream:
        stream.write('i2p_registration_node:\n  ros__parameters:\n    prior:\n')
        names = ('x', 'y', 'z', 'roll', 'pitch', 'yaw')
        for name, value in zip(names, (x, y, z, roll, pitch, yaw)):
            stream.write(f'      {name}: {float(value)!r}\n')
        stream.write('    processing:\n      max_rate: 2.0\n')
    return path


@pytest.mark.launch_test
def generate_test_description():
    """Launch registration.launch.py with a prior near the simulator's extrinsic."""
    share = get_package_share_directory('i2p_registration')
    params = _params_file(_simulator().T_cam_lidar)
    registration = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'registration.launch.py')),
        launch_arguments={'params_file': params}.items())
    return launch.LaunchDescription([registration, launch_testing.actions.ReadyToTest()]), {}


class TestRegistrationFromLaunch(unittest.TestCase):
    """Feed the launched node and wait for its diagnostics and TF."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('registration_launch_test')
        sim = _simulator()
        stamps = sim.stamps(1.0)
        cls.image, _ = sim.image(int(stamps['camera'].stamps_ns[0]), 0)
        cls.cloud = sim.scan(int(stamps['lidar'].stamps_ns[0]), 0)
        cls.T_pair = (inverse(sim.T_map_camera(cls.image.stamp_ns))
                      @ sim.T_map_lidar(cls.cloud.stamp_ns))

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_tf_and_diagnostics(self):
        node = self.node
        received = {'tf': [], 'diagnostics': []}
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        node.create_subscription(TFMessage, '/tf', received['tf'].append, reliable)
        node.create_subscription(DiagnosticArray, '/diagnostics', received['diagnostics'].append,
                                 10)
        images = node.create_publisher(Image, 'image_raw', 10)
        infos = node.create_publisher(CameraInfo, 'camera_info', 10)
        clouds = node.create_publisher(PointCloud2, 'points', 10)
        image, cloud = self.image, self.cloud
        end = time.monotonic() + TIMEOUT_S
        loop = 0
        while not received['tf'] and time.monotonic() < end:
            shift = loop * 1_000_000_000  # replay the pair 1 s later each round
            infos.publish(model_to_camera_info(image.camera, image.stamp_ns + shift,
                                               image.frame_id))
            clouds.publish(numpy_to_cloud(cloud.points, cloud.stamp_ns + shift, cloud.frame_id,
                                          cloud.intensity, cloud.ring, cloud.time))
            rclpy.spin_once(node, timeout_sec=0.05)
            images.publish(numpy_to_image(image.image, image.stamp_ns + shift, image.frame_id))
            deadline = time.monotonic() + 1.5
            while not received['tf'] and time.monotonic() < deadline:
                rclpy.spin_once(node, timeout_sec=0.05)
            loop += 1
        deadline = time.monotonic() + 5.0
        while not received['diagnostics'] and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        self.assertTrue(received['diagnostics'], 'no diagnostics from the node')
        keys = {kv.key for status in received['diagnostics'][-1].status for kv in status.values}
        self.assertIn('last_status', keys)
        self.assertTrue(received['tf'], f'no TF within {TIMEOUT_S} s')
        transform = received['tf'][0].transforms[0]
        self.assertEqual(transform.header.frame_id, cloud.frame_id)
        self.assertEqual(transform.child_frame_id, image.frame_id + '_registered')
        error = transform_to_matrix(transform) @ self.T_pair
        self.assertLess(np.linalg.norm(error[:3, 3]), MAX_TRANSLATION_M)
        self.assertLess(np.degrees(geodesic_angle(error[:3, :3], np.eye(3))), MAX_ROTATION_DEG)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """The node exits cleanly when the launch shuts down."""

    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
