"""
The registration node's calibration mode, compressed input and simulated time (bag replay).

Uses the node process, probe and test registrars of ``test_registration_node.py``.
"""

import time

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from i2p_registration.core.geometry.rotations import geodesic_angle  # noqa: E402, I100
from i2p_registration.ros.conversions import (model_to_camera_info,  # noqa: E402
                                              ns_to_stamp, numpy_to_compressed,
                                              transform_to_matrix)
from i2p_registration.ros.tf_publisher import TF_STATIC_QOS  # noqa: E402
import numpy as np  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CompressedImage  # noqa: E402
from test_registration_node import (CAMERA, CAMERA_FRAME, LIDAR_FRAME, Probe,  # noqa: E402
                                    read_log, start_node, stop_node, T_LIDAR_CAM, WAIT_S)
from tf2_msgs.msg import TFMessage  # noqa: E402


class CompressedProbe(Probe):
    """Publishes JPEG images on ``image_raw/compressed`` instead of raw ones."""

    def __init__(self, context):
        super().__init__(context)
        self.compressed_pub = self.node.create_publisher(CompressedImage,
                                                         'image_raw/compressed', 10)

    def publish_image(self, stamp_ns, code=0, camera=CAMERA):
        rgb = np.full((camera.height, camera.width, 3), 90, np.uint8)
        self.info_pub.publish(model_to_camera_info(camera, stamp_ns, CAMERA_FRAME))
        self.compressed_pub.publish(numpy_to_compressed(rgb, stamp_ns, CAMERA_FRAME))


class SimTimeProbe(Probe):
    """Stamps with a simulated clock published on /clock, which can jump back."""

    def __init__(self, context):
        super().__init__(context)
        self.sim_start_ns = 1_000_000_000_000
        self.wall_start_ns = time.time_ns()

    def now_ns(self):
        now = self.sim_start_ns + time.time_ns() - self.wall_start_ns
        self.clock_pub.publish(Clock(clock=ns_to_stamp(now)))
        return now

    def jump_back(self, seconds: float) -> None:
        self.sim_start_ns -= int(seconds * 1e9)
        self.now_ns()


def test_calibration_mode_publishes_the_converged_average_on_tf_static(rclpy_context, tmp_path):
    probe = CompressedProbe(rclpy_context)
    process = start_node(tmp_path, 'noisy', 'output.mode:=calibration',
                         'topics.use_compressed:=true', 'calibration.window:=20',
                         'calibration.min_inliers:=8', 'processing.max_rate:=20.0')
    try:
        probe.wait_for(lambda: probe.tf_static, 'a converged /tf_static', process,
                       timeout=2 * WAIT_S)
        probe.feed(10)
        late = []
        probe.node.create_subscription(TFMessage, '/tf_static', late.append, TF_STATIC_QOS)
        probe.wait_for(lambda: late, 'the latched /tf_static for a late subscriber', process,
                       feed=False)
        probe.wait_for(lambda: probe.last_values().get('calibration_converged') == 'true',
                       'diagnostics reporting the converged calibration', process, feed=False)
        values = probe.last_values()
    finally:
        assert stop_node(process) == 0, read_log(process)
        probe.close()
    assert not probe.tf, 'calibration mode published on /tf'
    transform = late[-1].transforms[-1]
    assert transform.header.frame_id == LIDAR_FRAME
    assert transform.child_frame_id == CAMERA_FRAME + '_registered'
    T = transform_to_matrix(transform)
    # Noise 2 mm / 0.5 mrad per sample, every fifth sample 0.5 m off: the average ignores those.
    assert np.linalg.norm(T[:3, 3] - T_LIDAR_CAM[:3, 3]) < 0.004
    assert geodesic_angle(T[:3, :3], T_LIDAR_CAM[:3, :3]) < 0.002
    assert values['mode'] == 'calibration'


def test_sim_time_clock_jump_back_resets_and_recovers(rclpy_context, tmp_path):
    probe = SimTimeProbe(rclpy_context)
    process = start_node(tmp_path, 'scripted', 'use_sim_time:=true')
    try:
        probe.wait_for(lambda: len(probe.tf) >= 3, 'TF in simulated time', process,
                       timeout=2 * WAIT_S)
        assert max(probe.tf_stamps()) < 2_000_000_000_000, 'TF not stamped in simulated time'
        before = int(probe.last_values().get('buffer_resets', 0))
        probe.jump_back(30.0)
        jump_target = probe.sim_start_ns
        probe.wait_for(lambda: int(probe.last_values().get('buffer_resets', 0)) > before
                       and 'time jumped by -' in probe.last_values()['last_input_error'],
                       'diagnostics reporting the clock jump', process)
        probe.wait_for(lambda: any(s > jump_target for s in probe.tf_stamps()
                                   if s < jump_target + 29_000_000_000),
                       'TF on the new timeline', process)
    finally:
        assert stop_node(process) == 0, read_log(process)
        probe.close()
