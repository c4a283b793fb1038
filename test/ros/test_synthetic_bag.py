"""Every message of a synthetic bag deserializes with rclpy (the real ROS 2 message types)."""

import importlib

from i2p_registration.data.bag_writer import write_bag
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

rclpy_serialization = pytest.importorskip(
    'rclpy.serialization', reason='rclpy is not installed (run make setup)')


def ros_type(msgtype: str):
    """Return the rclpy message class of ``pkg/msg/Name`` (skips where the package is missing)."""
    pkg, _, name = msgtype.split('/')
    try:
        return getattr(importlib.import_module(f'{pkg}.msg'), name)
    except ImportError:
        pytest.skip(f'ROS message package {pkg} is not installed')


@pytest.mark.parametrize('image_format', ['raw', 'jpeg'])
def test_every_bag_message_deserializes_with_rclpy(tmp_path, image_format):
    cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'output.duration_s': 0.25})
    sim = Simulator(cfg, 4)
    write_bag(sim, tmp_path, image_format=image_format)
    seen = set()
    with Reader(tmp_path / 'bag') as reader:
        for conn, _, raw in reader.messages():
            msg = rclpy_serialization.deserialize_message(bytes(raw), ros_type(conn.msgtype))
            seen.add(conn.topic)
            if conn.msgtype == 'sensor_msgs/msg/PointCloud2':
                assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'intensity', 'ring',
                                                        'time']
                assert msg.width * msg.point_step == len(msg.data)
                xyz = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(-1, 22)[:, :12]
                assert np.isfinite(xyz.copy().view(np.float32)).all()
            if conn.msgtype == 'tf2_msgs/msg/TFMessage':
                assert all(t.header.frame_id in ('odom', 'base_link') for t in msg.transforms)
            if conn.msgtype == 'sensor_msgs/msg/Image':
                assert msg.encoding == 'rgb8' and len(msg.data) == msg.step * msg.height
    image_topic = '/camera/image_raw' + ('' if image_format == 'raw' else '/compressed')
    assert seen == {image_topic, '/camera/camera_info', '/points', '/odom', '/tf', '/tf_static'}
