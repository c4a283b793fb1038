"""
``i2p-replay`` on generated rosbag2 files, without ROS.

Results against the ground truth, and the specific message of each bad bag (compressed images,
no camera_info, an unknown message type, a file cut short, in MCAP and sqlite3).
One short drive (1.2 s, small sensors) is generated per module; the bad bags are rewritten
from it with ``rosbags``.
"""

from dataclasses import replace
import json
import os
from pathlib import Path
import re
import shutil

from i2p_registration.core.config import RegistrationNodeConfig
from i2p_registration.core.geometry.se3 import inverse
from i2p_registration.data.bag_reader import BagInput, BagReadError
from i2p_registration.data.ground_truth import read_ground_truth_csv
from i2p_registration.tools import replay
from i2p_registration.tools.report import paired_scans, score_registrations
import numpy as np
import pytest
import yaml

SEED = 5
DURATION_S = 1.2
SENSORS = ['camera.width=414', 'camera.height=125', 'camera.fx=240.51', 'camera.fy=240.51',
           'camera.cx=203.19', 'camera.cy=57.62', 'lidar.preset=hdl32', 'lidar.columns=720',
           'clocks.camera.rate_hz=20.0']
MAX_PAIRS = 4


@pytest.fixture(autouse=True)
def thread_limits(monkeypatch):
    """Record ``replay.main``'s CPU thread limit instead of applying it to the test process."""
    from i2p_registration.core import threads
    calls = []
    monkeypatch.setattr(threads, 'set_cpu_threads', calls.append)
    return calls


def _generate(out: Path, image_format: str, storage: str) -> Path:
    from i2p_registration.data.bag_writer import write_bag
    from i2p_registration.data.simulator import Simulator
    from i2p_registration.data.synth_config import load_synth_config

    write_bag(Simulator(load_synth_config(None, SENSORS), SEED), out, storage=storage,
              image_format=image_format, duration_s=DURATION_S)
    return out


@pytest.fixture(scope='module')
def drive(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp('drive'), 'raw', 'mcap')


@pytest.fixture(scope='module')
def compressed_drive(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp('drive_jpeg'), 'jpeg', 'sqlite3')


@pytest.fixture(scope='module')
def registrar():
    from i2p_registration.core.registration.factory import registrar_from_config
    # The node's registrar, from its whole config section; threads=0 leaves this test
    # process's thread count alone.
    return registrar_from_config(replace(RegistrationNodeConfig().registration, threads=0))


def _rewrite(source: Path, target: Path, drop=(), extra_unknown: str | None = None) -> Path:
    """Copy a bag without the topics ``drop``, optionally with a topic of an unknown type."""
    from rosbags.rosbag2 import Reader, Writer
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_KILTED)
    writer = Writer(target, version=9)
    writer.open()
    conns = {}
    with Reader(source) as reader:
        for conn in reader.connections:
            if conn.topic not in drop:
                conns[conn.id] = writer.add_connection(conn.topic, conn.msgtype,
                                                       typestore=store)
        unknown = None
        if extra_unknown:
            unknown = writer.add_connection(extra_unknown, 'acme_msgs/msg/Widget', msgdef='',
                                            rihs01='RIHS01_' + '0' * 64)
        for conn, log_ns, raw in reader.messages():
            if conn.id in conns:
                writer.write(conns[conn.id], log_ns, raw)
                if unknown is not None:
                    writer.write(unknown, log_ns, b'\x00\x01\x00\x00\x07\x00\x00\x00')
    writer.close()
    return target


def test_replay_matches_the_ground_truth(drive, registrar, tmp_path):
    config = RegistrationNodeConfig()
    result = replay.replay(drive / 'bag', registrar, config, progress_stream=None)
    s = result.summary
    assert (s['image_topic'], s['camera_info_topic'], s['points_topic']) == \
        ('/camera/image_raw', '/camera/camera_info', '/points')
    assert (s['lidar_frame'], s['camera_frame']) == ('lidar', 'camera_optical')
    assert s['stopped'] == '' and s['input_errors'] == 0
    assert s['skipped_topics'] == {'/odom': 'not used (nav_msgs/msg/Odometry)',
                                   '/tf': 'not used (tf2_msgs/msg/TFMessage)'}
    gt = read_ground_truth_csv(drive / 'ground_truth.csv')
    # The prior read from /tf_static is the simulator's extrinsic.
    T_cam_lidar = np.array(__import__('yaml').safe_load(
        (drive / 'synthetic.yaml').read_text())['T_cam_lidar'])
    np.testing.assert_allclose(np.array(s['prior_T_lidar_cam']), inverse(T_cam_lidar),
                               atol=1e-6)
    # Every image after the first CameraInfo is paired with its nearest scan (max_dt 0.1 s).
    images = gt.select('camera').stamp_ns
    scans = np.sort(gt.select('lidar').stamp_ns)
    rows = result.rows
    image_ns = np.array([r['image_stamp_ns'] for r in rows])
    np.testing.assert_array_equal(image_ns, images[s['images_without_camera_info']:][
        paired_scans(images[s['images_without_camera_info']:], scans, 10**8) >= 0])
    np.testing.assert_array_equal([r['cloud_stamp_ns'] for r in rows],
                                  scans[paired_scans(image_ns, scans, 10**8)])
    # Acceptance is the method's business (it varies while the method is being improved); the
    # estimates from the nominal prior are within the registration-recall bounds of the truth.
    assert all(r['published'] == (r['status'] == 'ok') for r in rows)
    estimated = [r for r in rows if np.isfinite(r['x'])]
    assert len(estimated) >= len(rows) // 2, [r['reason'] for r in rows]
    score = score_registrations(np.array([r['image_stamp_ns'] for r in estimated]),
                                np.array([_pose(r) for r in estimated]), gt)
    assert np.median(score['rte_m']) < 2.0 and np.median(score['rre_deg']) < 5.0, score
    accepted = [r for r in rows if r['published']]
    T = np.array([_pose(r) for r in accepted]).reshape(-1, 4, 4)

    paths = replay.write_outputs(result, tmp_path / 'out')
    back = replay.read_registrations_csv(paths['csv'])
    assert [r['image_stamp_ns'] for r in back] == list(image_ns)
    tum = np.loadtxt(paths['tum']).reshape(-1, 8)
    assert len(tum) == len(accepted)
    np.testing.assert_allclose(tum[:, 1:4], np.reshape(
        [[r['x'], r['y'], r['z']] for r in accepted], (-1, 3)), atol=1e-8)
    from i2p_registration.tools.report import read_outputs
    tf = read_outputs(paths['bag'])['tf']
    assert [(t[1], t[2], t[3]) for t in tf] == [
        (r['image_stamp_ns'], 'lidar', 'camera_optical_registered') for r in accepted]
    np.testing.assert_allclose(np.array([t[4] for t in tf]).reshape(-1, 4, 4), T, atol=1e-6)


def _pose(row):
    from i2p_registration.core.geometry.rotations import quat_to_matrix
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix([row['qx'], row['qy'], row['qz'], row['qw']])
    T[:3, 3] = row['x'], row['y'], row['z']
    return T


def test_compressed_images_from_sqlite3(compressed_drive, registrar):
    result = replay.replay(compressed_drive / 'bag', registrar, RegistrationNodeConfig(),
                           max_pairs=MAX_PAIRS, progress_stream=None)
    assert result.summary['image_topic'] == '/camera/image_raw/compressed'
    assert result.summary['image_type'] == 'sensor_msgs/msg/CompressedImage'
    assert len(result.rows) >= MAX_PAIRS and result.summary['input_errors'] == 0


def test_missing_camera_info_names_the_topic(drive, tmp_path, capsys):
    bag = _rewrite(drive / 'bag', tmp_path / 'no_info', drop={'/camera/camera_info'})
    code = replay.main([str(bag), '--out', str(tmp_path / 'out'), '--quiet'])
    err = capsys.readouterr().err
    assert code == 2
    assert 'no sensor_msgs/msg/CameraInfo topic' in err and '/camera/image_raw' in err, err
    assert '--camera-info-topic' in err
    with pytest.raises(replay.ReplayError, match='camera_info topic /nope is not in'):
        replay.select_topics(BagInput.from_path(bag), camera_info='/nope')


def test_unknown_message_type_is_skipped_and_reported(drive, registrar, tmp_path, capsys,
                                                      thread_limits):
    bag = _rewrite(drive / 'bag', tmp_path / 'unknown', extra_unknown='/widget')
    result = replay.replay(bag, registrar, RegistrationNodeConfig(), max_pairs=MAX_PAIRS,
                           progress_stream=None)
    assert result.summary['skipped_topics']['/widget'] == \
        'unknown message type acme_msgs/msg/Widget'
    assert len(result.rows) >= MAX_PAIRS
    code = replay.main([str(bag), '--out', str(tmp_path / 'out'), '--quiet',
                        '--max-pairs', '1'])
    assert code == 0
    assert 'skipped /widget: unknown message type acme_msgs/msg/Widget' in \
        capsys.readouterr().err
    # The replay limits its CPU threads as the node does (registration.threads).
    assert thread_limits == [RegistrationNodeConfig().registration.threads] == [1]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_truncated_bag_processes_what_is_readable(drive, compressed_drive, registrar, tmp_path,
                                                  storage, capsys):
    source = (drive if storage == 'mcap' else compressed_drive) / 'bag'
    target = tmp_path / 'cut'
    shutil.copytree(source, target)
    (data,) = [p for p in target.iterdir() if p.suffix in ('.mcap', '.db3')]
    size = data.stat().st_size
    with open(data, 'r+b') as f:
        f.truncate(size // 2)
    code = replay.main([str(target), '--out', str(tmp_path / 'out'), '--quiet'])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads((tmp_path / 'out' / 'summary.json').read_text())
    assert 'reading stopped after message' in summary['stopped'], summary['stopped']
    if storage == 'sqlite3':
        # sqlite refuses the cut database as a whole (its B-tree pages lie past the cut): the
        # rows still in its pages are salvaged, and the summary says how many and where.
        found = re.search(r'salvaged (\d+) messages from the readable pages of bag\.db3 '
                          r'\((\d+) of (\d+) pages\); reading stopped after message \1 '
                          r'\(id \d+, log time [\d.]+ s\)', summary['stopped'])
        assert found, summary['stopped']
        total = sum(t['message_count'] for t in yaml.safe_load((source / 'metadata.yaml')
                    .read_text())['rosbag2_bagfile_information']['topics_with_message_count'])
        used = summary['images'] + summary['clouds'] + summary['camera_info']
        assert used <= int(found[1]) < total
        assert 'cut messages skipped' in summary['stopped'], summary['stopped']
    assert 'processed what was readable' in err
    assert 0 < summary['pairs']
    assert 0 < summary['images'] < int(DURATION_S * 20)
    assert os.path.exists(tmp_path / 'out' / 'bag' / 'metadata.yaml')


def test_a_damaged_sqlite3_bag_continues_from_its_pages(compressed_drive, tmp_path):
    """Where rosbags stops inside a .db3 (a broken overflow chain), the rest is salvaged."""
    from i2p_registration.data.sqlite_salvage import SqliteSalvage

    target = tmp_path / 'damaged'
    shutil.copytree(compressed_drive / 'bag', target)
    with SqliteSalvage(target / 'bag.db3') as salvage:
        ids = salvage.message_ids
        victim = [i for i in ids if len(salvage.overflow_pages(i)) >= 2][len(ids) // 40]
        page, page_size = salvage.overflow_pages(victim)[0], salvage.page_size
        expected = [(m.timestamp, m.data) for m in salvage.messages() if m.id != victim]
    with open(target / 'bag.db3', 'r+b') as f:
        f.seek((page - 1) * page_size)
        f.write(b'\x00\x00\x00\x00')  # the chain ends too early
    bag = BagInput.from_path(target)
    got = [(log_ns, raw) for _, _, log_ns, raw in bag.messages(set(bag.topics))]
    assert 'rosbags stopped after message' in bag.stopped, bag.stopped
    assert '1 damaged messages skipped' in bag.stopped, bag.stopped
    assert sorted(got) == sorted(expected)


def test_a_cut_sqlite3_bag_without_its_topics_rows(compressed_drive, tmp_path):
    """The topic ids come from metadata.yaml only where its order is known to be theirs."""
    from i2p_registration.data.sqlite_salvage import SqliteSalvage

    target = tmp_path / 'lost'
    shutil.copytree(compressed_drive / 'bag', target)
    data = target / 'bag.db3'
    with SqliteSalvage(data) as salvage:
        topics_page, page_size = salvage.tables['topics'], salvage.page_size
    with open(data, 'r+b') as f:
        f.seek((topics_page - 1) * page_size)
        f.write(bytes(page_size))  # the topics rows are lost
        f.truncate(data.stat().st_size // 2)
    bag = BagInput.from_path(target)
    assert '/camera/camera_info' in bag.topics
    assert sum(1 for _ in bag.messages(set(bag.topics))) > 0
    assert 'topic ids taken from the order of metadata.yaml (rosbags numbers' in bag.stopped
    (target / 'metadata.yaml').unlink()
    with pytest.raises(BagReadError, match='the topics table is lost and there is no '
                       'metadata.yaml'):
        BagInput.from_path(target)


def test_multiview_keyframes_follow_the_true_lidar_path(drive, tmp_path):
    from i2p_registration.core.multiview.config import MultiviewNodeConfig
    from i2p_registration.core.multiview.mapper import make_mapper
    from i2p_registration.core.registration.base import RegistrationResult
    from i2p_registration.tools.report import keyframe_ape

    class NoRegistration:
        """Only the scans matter here."""

        def register(self, image, cloud, prior):
            return RegistrationResult.failure('none', 'not asked')

    result = replay.replay(drive / 'bag', NoRegistration(), RegistrationNodeConfig(),
                           progress_stream=None, mapper=make_mapper(MultiviewNodeConfig()))
    keyframes = result.keyframes
    assert result.summary['keyframes'] == len(keyframes.stamps_ns) >= 2
    lidar = read_ground_truth_csv(drive / 'ground_truth.csv').select('lidar')
    index = {int(s): i for i, s in enumerate(lidar.stamp_ns)}
    true_xyz = lidar.T_map_sensor[[index[int(s)] for s in keyframes.stamps_ns]][:, :3, 3]
    assert keyframe_ape(keyframes.poses[:, :3, 3], true_xyz) < 0.3
    paths = replay.write_outputs(result, tmp_path / 'out')
    assert np.loadtxt(paths['keyframes']).reshape(-1, 8).shape[0] == len(keyframes.stamps_ns)
