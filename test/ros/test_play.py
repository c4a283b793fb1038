"""
``i2p-play`` in its own process publishes a bag's recorded bytes with their QoS and ``/clock``.

A small rosbag2 is written with ``rosbags``: ``/chatter`` (std_msgs/String, best effort,
depth 7) and ``/points`` (PointCloud2, reliable) every 50 ms for 0.5 s, and one ``/tf_static``
message (recorded as volatile: the player must still make it transient local). The test
subscribes with ``raw=True`` and compares bytes, the publishers' QoS and the ``/clock`` times.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from i2p_registration.tools.play import parse_remaps, qos_profile  # noqa: E402, I100
from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy)  # noqa: E402
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,  # noqa: E402
                                QosReliability, QosTime)
from rosbags.rosbag2 import Writer  # noqa: E402
from rosbags.typesys import get_typestore, Stores  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_NS = 1_700_000_000_000_000_000
N_MESSAGES = 10
PERIOD_NS = 50_000_000
TIMEOUT_S = 30.0


def _qos(reliable: bool, depth: int) -> Qos:
    inf = QosTime(9223372036, 854775807)
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.VOLATILE, inf, inf, QosLiveliness.AUTOMATIC, inf, False)


def _write_bag(path):
    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    recorded = {'/chatter': [], '/points': [], '/tf_static': []}
    writer = Writer(path, version=9)
    writer.open()
    chatter = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=store,
                                    offered_qos_profiles=[_qos(False, 7)])
    points = writer.add_connection('/points', 'sensor_msgs/msg/PointCloud2', typestore=store,
                                   offered_qos_profiles=[_qos(True, 5)])
    static = writer.add_connection('/tf_static', 'tf2_msgs/msg/TFMessage', typestore=store,
                                   offered_qos_profiles=[_qos(True, 1)])

    def header(ns):
        return T['std_msgs/msg/Header'](T['builtin_interfaces/msg/Time'](*divmod(ns, 10**9)),
                                        'lidar')

    tf = T['geometry_msgs/msg/TransformStamped'](header(START_NS), 'camera', T[
        'geometry_msgs/msg/Transform'](T['geometry_msgs/msg/Vector3'](0.1, 0.2, 0.3),
                                       T['geometry_msgs/msg/Quaternion'](0.0, 0.0, 0.0, 1.0)))
    raw = store.serialize_cdr(T['tf2_msgs/msg/TFMessage']([tf]), 'tf2_msgs/msg/TFMessage')
    writer.write(static, START_NS, raw)
    recorded['/tf_static'].append(bytes(raw))
    field = T['sensor_msgs/msg/PointField']
    for i in range(N_MESSAGES):
        ns = START_NS + (i + 1) * PERIOD_NS
        raw = store.serialize_cdr(T['std_msgs/msg/String'](f'message {i}'), 'std_msgs/msg/String')
        writer.write(chatter, ns, raw)
        recorded['/chatter'].append(bytes(raw))
        xyz = np.full((100, 3), i, np.float32)
        cloud = T['sensor_msgs/msg/PointCloud2'](
            header(ns), 1, 100, [field('x', 0, 7, 1), field('y', 4, 7, 1), field('z', 8, 7, 1)],
            False, 12, 1200, xyz.view(np.uint8).reshape(-1), True)
        raw = store.serialize_cdr(cloud, 'sensor_msgs/msg/PointCloud2')
        writer.write(points, ns + 1000, raw)
        recorded['/points'].append(bytes(raw))
    writer.close()
    return recorded


def _unpadded(received, recorded):
    """Strip the zero bytes DDS adds to reach a multiple of 4 bytes, where the sizes allow."""
    out = []
    for got, want in zip(received, recorded):
        pad = len(got) - len(want)
        out.append(got[:len(want)] if 0 <= pad < 4 and not any(got[len(want):]) else got)
    return out + received[len(recorded):]


def test_qos_profile_and_remaps():
    best_effort = qos_profile('/chatter', [_qos(False, 7)])
    assert best_effort.reliability == ReliabilityPolicy.BEST_EFFORT and best_effort.depth == 7
    assert best_effort.durability == DurabilityPolicy.VOLATILE
    static = qos_profile('/tf_static', [_qos(False, 1)])
    assert static.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert static.reliability == ReliabilityPolicy.RELIABLE
    assert qos_profile('/x', []).reliability == ReliabilityPolicy.RELIABLE
    assert parse_remaps(['/a:=/b', 'c:=/d/e']) == {'/a': '/b', 'c': '/d/e'}
    with pytest.raises(ValueError, match='FROM:=TO'):
        parse_remaps(['/a=/b'])


def test_play_publishes_recorded_bytes_qos_and_clock(rclpy_context, tmp_path):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String
    from tf2_msgs.msg import TFMessage

    recorded = _write_bag(tmp_path / 'bag')
    node = rclpy.create_node('play_probe', context=rclpy_context)
    executor = rclpy.executors.SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    got = {'/chatter': [], '/lidar/points': [], '/clock': [], 'arrival': []}

    def keep(topic):
        def callback(raw):
            got[topic].append(bytes(raw))
            if topic == '/chatter':
                got['arrival'].append(time.perf_counter())
        return callback

    node.create_subscription(String, '/chatter', keep('/chatter'),
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT),
                             raw=True)
    node.create_subscription(PointCloud2, '/lidar/points', keep('/lidar/points'),
                             QoSProfile(depth=50), raw=True)
    node.create_subscription(Clock, '/clock', lambda m: got['/clock'].append(m), 10)
    log = open(tmp_path / 'play.log', 'w')
    process = subprocess.Popen(
        [sys.executable, '-m', 'i2p_registration.tools.play', str(tmp_path / 'bag'),
         '--rate', '0.5', '--remap', '/points:=/lidar/points',
         '--wait-for', '/chatter', '/lidar/points', '--delay', '0.5',
         '--linger', '3.0', '--quiet'],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    qos_seen = {}
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
            for topic in ('/chatter', '/lidar/points', '/tf_static'):
                if topic not in qos_seen:
                    infos = node.get_publishers_info_by_topic(topic)
                    if infos:
                        qos_seen[topic] = infos[0].qos_profile
            if '/tf_static' in qos_seen and 'static' not in got:
                # A late subscriber: only transient local durability delivers the message.
                got['static'] = []
                node.create_subscription(
                    TFMessage, '/tf_static', lambda raw: got['static'].append(bytes(raw)),
                    QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL), raw=True)
        assert process.poll() is not None, 'i2p-play did not finish'
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()
        executor.shutdown()
        node.destroy_node()
    output = (tmp_path / 'play.log').read_text()
    assert process.returncode == 0, output
    assert _unpadded(got['/chatter'], recorded['/chatter']) == recorded['/chatter'], output
    assert _unpadded(got['/lidar/points'], recorded['/points']) == recorded['/points']
    assert _unpadded(got['static'], recorded['/tf_static']) == recorded['/tf_static']
    assert qos_seen['/chatter'].reliability == ReliabilityPolicy.BEST_EFFORT
    assert qos_seen['/lidar/points'].reliability == ReliabilityPolicy.RELIABLE
    assert qos_seen['/tf_static'].durability == DurabilityPolicy.TRANSIENT_LOCAL
    # Recorded 50 ms apart, played at half speed: 9 gaps of 100 ms.
    span = got['arrival'][-1] - got['arrival'][0]
    assert 0.6 < span < 1.6, span
    clock_ns = [m.clock.sec * 10**9 + m.clock.nanosec for m in got['/clock']]
    assert len(clock_ns) > 20
    assert all(b >= a for a, b in zip(clock_ns, clock_ns[1:]))
    assert START_NS <= clock_ns[0] and clock_ns[-1] <= START_NS + (N_MESSAGES + 1) * PERIOD_NS
