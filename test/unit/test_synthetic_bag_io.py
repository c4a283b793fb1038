"""Synthetic rosbag2 output read back with rosbags (no ROS needed)."""

import hashlib

from i2p_registration.core.geometry.rotations import quat_to_matrix
from i2p_registration.data.bag_writer import POINT_DTYPE, TYPESTORE, write_bag
from i2p_registration.data.ground_truth import read_ground_truth_csv
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
import numpy as np
import pytest
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader

OVERRIDES = {**SMALL_OVERRIDES, 'output.duration_s': 0.45}


def make_sim(**extra):
    return Simulator(load_synth_config(overrides={**OVERRIDES, **extra}), 21)


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob('*') if p.is_file()):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp('bag')
    sim = make_sim()
    summary = write_bag(sim, out)
    with Reader(out / 'bag') as reader:
        msgs = [(c.topic, c.msgtype, t, TYPESTORE.deserialize_cdr(raw, c.msgtype))
                for c, t, raw in reader.messages()]
        conns = {c.topic: c for c in reader.connections}
    return out, sim, summary, msgs, conns


def test_topics_types_and_counts(bag):
    _, _, summary, msgs, conns = bag
    assert {t: c.msgtype for t, c in conns.items()} == {
        '/camera/image_raw': 'sensor_msgs/msg/Image',
        '/camera/camera_info': 'sensor_msgs/msg/CameraInfo',
        '/points': 'sensor_msgs/msg/PointCloud2', '/odom': 'nav_msgs/msg/Odometry',
        '/tf': 'tf2_msgs/msg/TFMessage', '/tf_static': 'tf2_msgs/msg/TFMessage'}
    count = {t: sum(m[0] == t for m in msgs) for t in conns}
    assert count['/camera/image_raw'] == count['/camera/camera_info'] == summary['images']
    assert count['/points'] == summary['scans'] >= 3
    assert count['/odom'] == count['/tf'] == summary['odometry']
    assert count['/tf_static'] == 1
    log_times = [m[2] for m in msgs]
    assert log_times == sorted(log_times)


def test_tf_static_is_transient_local_and_exact(bag):
    _, sim, _, msgs, conns = bag
    qos = conns['/tf_static'].ext.offered_qos_profiles[0]
    assert qos.durability == QosDurability.TRANSIENT_LOCAL
    assert qos.reliability == QosReliability.RELIABLE and qos.depth == 1
    static = [m[3] for m in msgs if m[0] == '/tf_static'][0]
    by_child = {tf.child_frame_id: tf for tf in static.transforms}
    assert set(by_child) == {'lidar', 'camera_optical'}
    for child, expected in (('lidar', sim.T_base_lidar), ('camera_optical', sim.T_base_cam)):
        tf = by_child[child]
        assert tf.header.frame_id == 'base_link'
        r = tf.transform.rotation
        np.testing.assert_allclose(quat_to_matrix([r.x, r.y, r.z, r.w]), expected[:3, :3],
                                   atol=1e-12)
        t = tf.transform.translation
        np.testing.assert_allclose([t.x, t.y, t.z], expected[:3, 3], atol=1e-12)


def test_points_layout_and_ground_truth(bag):
    out, sim, _, msgs, _ = bag
    gt = read_ground_truth_csv(out / 'ground_truth.csv')
    lidar_gt = gt.select('lidar')
    clouds = [m[3] for m in msgs if m[0] == '/points']
    assert [f.name for f in clouds[0].fields] == ['x', 'y', 'z', 'intensity', 'ring', 'time']
    for k, msg in enumerate(clouds):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert msg.header.frame_id == 'lidar' and msg.point_step == 22
        pts = np.frombuffer(msg.data.tobytes(), dtype=POINT_DTYPE)
        ref = sim.scan(stamp, k)
        np.testing.assert_array_equal(pts['x'], ref.points[:, 0])
        np.testing.assert_array_equal(pts['ring'], ref.ring)
        np.testing.assert_array_equal(pts['time'], ref.time)
        assert lidar_gt.stamp_ns[k] == stamp
        np.testing.assert_allclose(lidar_gt.T_map_sensor[k], sim.T_map_lidar(stamp), atol=1e-8)


def test_images_camera_info_and_clocks(bag):
    out, sim, _, msgs, _ = bag
    images = [m for m in msgs if m[0] == '/camera/image_raw']
    infos = [m[3] for m in msgs if m[0] == '/camera/camera_info']
    img = images[0][3]
    assert (img.encoding, img.height, img.width) == ('rgb8', sim.camera.height, sim.camera.width)
    stamp = img.header.stamp.sec * 10**9 + img.header.stamp.nanosec
    frame, _ = sim.image(stamp, 0)
    np.testing.assert_array_equal(img.data.reshape(frame.image.shape), frame.image)
    np.testing.assert_allclose(infos[0].k.reshape(3, 3), sim.camera.K)
    assert infos[0].header.stamp == img.header.stamp
    # Logged after the stamp by the stream latency (scans: after the sweep).
    assert images[0][2] - stamp == int(sim.config.clocks.camera.latency_s * 1e9)
    cam_gt = read_ground_truth_csv(out / 'ground_truth.csv').select('camera')
    np.testing.assert_allclose(cam_gt.T_map_sensor[0], sim.T_map_camera(stamp), atol=1e-8)
    lidar_stamps = read_ground_truth_csv(out / 'ground_truth.csv').select('lidar').stamp_ns
    assert len(np.intersect1d(cam_gt.stamp_ns, lidar_stamps)) == 0


def test_odometry_is_noisy_but_close(bag):
    out, sim, _, msgs, _ = bag
    odom = [m[3] for m in msgs if m[0] == '/odom']
    first, last = odom[0], odom[-1]
    assert first.header.frame_id == 'odom' and first.child_frame_id == 'base_link'
    assert first.pose.pose.position.x == 0.0 and first.pose.pose.orientation.w == 1.0
    stamps = [o.header.stamp.sec * 10**9 + o.header.stamp.nanosec for o in (first, last)]
    T0, T1 = sim.T_map_base(stamps[0]), sim.T_map_base(stamps[1])
    true_rel = np.linalg.inv(T0) @ T1
    p = last.pose.pose.position
    err = np.linalg.norm(true_rel[:3, 3] - [p.x, p.y, p.z])
    travelled = np.linalg.norm(true_rel[:3, 3])
    assert travelled > 1.0 and 0 < err < 0.05 * travelled + 0.05


def test_byte_identical_for_same_seed(bag, tmp_path):
    out = bag[0]
    write_bag(make_sim(), tmp_path / 'again')
    assert digest(tmp_path / 'again') == digest(out)


def test_sqlite3_and_compressed_images(tmp_path):
    sim = make_sim(**{'output.duration_s': 0.15})
    write_bag(sim, tmp_path, storage='sqlite3', image_format='jpeg')
    assert list((tmp_path / 'bag').glob('*.db3'))
    with Reader(tmp_path / 'bag') as reader:
        conns = {c.topic: c for c in reader.connections}
        assert conns['/camera/image_raw/compressed'].msgtype == 'sensor_msgs/msg/CompressedImage'
        msg = next(TYPESTORE.deserialize_cdr(raw, c.msgtype) for c, _, raw in reader.messages()
                   if c.topic == '/camera/image_raw/compressed')
    assert msg.format.startswith('rgb8; jpeg')
    assert bytes(msg.data[:2]) == b'\xff\xd8'


def test_bad_storage_rejected(tmp_path):
    with pytest.raises(ValueError, match='storage'):
        write_bag(make_sim(), tmp_path, storage='rosbag1')
