"""
A PointCloud2 and an Image cross a process boundary over DDS and convert bit for bit.

The publisher (``transport_publisher.py``) runs as a separate Python process with the
environment of ``conftest.py`` (localhost discovery, the large-message Fast DDS profile, this
run's domain id), publishing a 120k-point cloud (3.8 MB) and a 1920x1200 rgb8 image (6.9 MB).
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from i2p_registration.ros.conversions import cloud_to_numpy, image_to_numpy  # noqa: E402, I100
from i2p_registration.ros.conversions import stamp_to_ns  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
PUBLISHER = os.path.join(HERE, 'transport_publisher.py')
SEED = 20240607
RECEIVE_TIMEOUT_S = 30.0


def _load_publisher_module():
    spec = importlib.util.spec_from_file_location('i2p_test_transport_publisher', PUBLISHER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def test_cloud_and_image_cross_processes_bit_exact(rclpy_context, tmp_path):
    shared = _load_publisher_module()
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, env.get('PYTHONPATH')]))
    log_path = tmp_path / 'publisher.log'
    received = {}
    node = rclpy.create_node('transport_test_subscriber', context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    node.create_subscription(PointCloud2, shared.CLOUD_TOPIC,
                             lambda m: received.setdefault('cloud', m), qos)
    node.create_subscription(Image, shared.IMAGE_TOPIC,
                             lambda m: received.setdefault('image', m), qos)
    with open(log_path, 'w') as log:
        process = subprocess.Popen(
            [sys.executable, PUBLISHER, '--seed', str(SEED), '--duration', '60'],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(received) < 2 and time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f'publisher exited with {process.returncode}:\n{log_path.read_text()}')
            executor.spin_once(timeout_sec=0.1)
        if len(received) < 2:
            missing = {'cloud', 'image'} - set(received)
            pytest.fail(f'no {sorted(missing)} received within {RECEIVE_TIMEOUT_S} s '
                        f'(ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID")}); publisher log:\n'
                        f'{log_path.read_text()}')
    finally:
        _stop(process)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()

    expected = shared.make_test_data(SEED)
    cloud, image = received['cloud'], received['image']
    assert stamp_to_ns(cloud.header.stamp) == shared.STAMP_NS
    assert cloud.header.frame_id == 'lidar' and cloud.width == shared.N_POINTS
    fields = cloud_to_numpy(cloud)
    assert fields.n_invalid_dropped == 0
    for name, actual in [('points', fields.xyz), ('intensity', fields.intensity),
                         ('ring', fields.ring), ('time', fields.time)]:
        assert actual.dtype == expected[name].dtype, name
        assert np.array_equal(actual, expected[name]), f'{name} differs after transport'
    assert stamp_to_ns(image.header.stamp) == shared.STAMP_NS
    assert image.header.frame_id == 'camera_optical'
    rgb = image_to_numpy(image)
    assert rgb.shape == (1200, 1920, 3)
    assert np.array_equal(rgb, expected['rgb']), 'image differs after transport'
