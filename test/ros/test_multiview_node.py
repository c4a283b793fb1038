"""
The multiview node in its own process, fed a synthetic drive with a loop by this test process.

The drive (``SMALL_OVERRIDES`` world with 30-40 m blocks, seed 3, a 64-beam LiDAR with 360
columns) goes once around the loop and 6 s further, so its end revisits its start. Scans every
0.4 s of drive time (3.2 m at 8 m/s) with noisy odometry every 0.1 s are published at 10 Hz wall
time with their simulated stamps; the node processes them in order (its queue holds them all).
Ground truth is the simulator's LiDAR pose at each keyframe stamp. The node process runs with
single-threaded BLAS / OpenMP: on a small shared machine, thread oversubscription made a
synchronization 10x slower.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402, I100
from geometry_msgs.msg import PoseArray  # noqa: E402
from i2p_registration.core.geometry.se3 import inverse  # noqa: E402
from i2p_registration.core.multiview.evaluation import align_gauge  # noqa: E402
from i2p_registration.core.multiview.map_files import read_tum  # noqa: E402
from i2p_registration.data.odometry import simulate_odometry  # noqa: E402
from i2p_registration.data.simulator import RNG_ODOM, Simulator  # noqa: E402
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES  # noqa: E402
from i2p_registration.nodes.multiview_node import MULTIVIEW_KEYS  # noqa: E402
from i2p_registration.ros.conversions import (cloud_to_frame, matrix_to_transform,  # noqa: E402
                                              numpy_to_cloud, stamp_to_ns,
                                              transform_to_matrix)
from i2p_registration.ros.tf_publisher import TF_QOS, TF_STATIC_QOS  # noqa: E402
from nav_msgs.msg import Odometry, Path  # noqa: E402
import numpy as np  # noqa: E402
import open3d as o3d  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE = '/multiview_sync_node'
SEED = 3
SCAN_PERIOD_S, ODOM_PERIOD_S, EXTRA_S = 0.4, 0.1, 6.0
START_TIMEOUT_S = 30.0
WAIT_S = 60.0
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
NODE_PARAMS = ('keyframes.min_distance:=5.0', 'candidates.loop_radius:=8.0',
               'input.queue_size:=500', 'map.publish_period:=0.5')


class Drive:
    """Scans, odometry and ground truth of the synthetic drive (the last scans held back)."""

    def __init__(self):
        cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'lidar.preset': 'hdl64',
                                           'lidar.columns': 360,
                                           'world.block_size': [30.0, 40.0]})
        self.sim = sim = Simulator(cfg, SEED)
        duration = sim.trajectory.lap_time + EXTRA_S
        self.scan_stamps = sim.start_ns + np.round(
            np.arange(0.0, duration, SCAN_PERIOD_S) * 1e9).astype(np.int64)
        self.odom_stamps = sim.start_ns + np.round(
            np.arange(0.0, duration + 3.0, ODOM_PERIOD_S) * 1e9).astype(np.int64)
        odom = simulate_odometry(sim.trajectory, sim.seconds(self.odom_stamps), self.odom_stamps,
                                 cfg.odometry, sim.rng(RNG_ODOM))
        self.T_odom_base = odom.T_odom_base
        self.frames = cfg.frames

    def scan(self, k: int, stamp_ns: int | None = None) -> np.ndarray:
        stamp = int(self.scan_stamps[k]) if stamp_ns is None else stamp_ns
        return self.sim.scan(stamp, k).points

    def ground_truth(self, stamps_ns) -> np.ndarray:
        return np.stack([self.sim.T_map_lidar(int(s)) for s in stamps_ns])


@pytest.fixture(scope='module')
def drive():
    return Drive()


class Probe:
    """Feeds the node and records what it publishes (one rclpy node in the test process)."""

    def __init__(self, context):
        self.node = n = rclpy.create_node('multiview_test_probe', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(n)
        self.cloud_pub = n.create_publisher(PointCloud2, 'points', 10)
        self.odom_pub = n.create_publisher(Odometry, 'odom', 100)
        self.tf_static_pub = n.create_publisher(TFMessage, '/tf_static', TF_STATIC_QOS)
        self.tf, self.paths, self.keyframes, self.maps, self.diagnostics = [], [], [], [], []
        n.create_subscription(TFMessage, '/tf', self.tf.append, TF_QOS)
        n.create_subscription(Path, NODE + '/path', self.paths.append, LATCHED)
        n.create_subscription(PoseArray, NODE + '/keyframes', self.keyframes.append, LATCHED)
        n.create_subscription(PointCloud2, NODE + '/map', self.maps.append, LATCHED)
        n.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.odom_sent = 0

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith('multiview_sync_node'):
                level = status.level[0] if isinstance(status.level, bytes) else status.level
                self.diagnostics.append((level, status.message,
                                         {kv.key: kv.value for kv in status.values}))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.02, max(end - time.monotonic(), 0)))

    def value(self, key: str, default: str = '') -> str:
        return self.diagnostics[-1][2].get(key, default) if self.diagnostics else default

    def wait_for(self, predicate, what: str, process, timeout: float = WAIT_S) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if process.poll() is not None:
                pytest.fail(f'node exited with {process.returncode} while waiting for {what}:\n'
                            f'{read_log(process)}')
            if predicate():
                return
            self.spin(0.05)
        pytest.fail(f'{what} not seen within {timeout} s; last diagnostics: '
                    f'{self.diagnostics[-1:]}\nnode log:\n{read_log(process)}')

    def call(self, service: str, process) -> Trigger.Response:
        client = self.node.create_client(Trigger, NODE + '/' + service)
        self.wait_for(lambda: client.service_is_ready(), f'the {service} service', process,
                      timeout=START_TIMEOUT_S)
        future = client.call_async(Trigger.Request())
        self.wait_for(future.done, f'the {service} response', process)
        return future.result()

    def publish_static(self, drive: Drive) -> None:
        self.tf_static_pub.publish(TFMessage(transforms=[matrix_to_transform(
            drive.sim.T_base_lidar, int(drive.scan_stamps[0]), drive.frames.base_link,
            drive.frames.lidar)]))

    def publish_odometry_until(self, drive: Drive, stamp_ns: int) -> None:
        """Publish every odometry sample up to ``stamp_ns`` plus one period."""
        while self.odom_sent < len(drive.odom_stamps) \
                and drive.odom_stamps[self.odom_sent] <= stamp_ns + ODOM_PERIOD_S * 1e9:
            k = self.odom_sent
            tf = matrix_to_transform(drive.T_odom_base[k], int(drive.odom_stamps[k]),
                                     drive.frames.odom, drive.frames.base_link)
            msg = Odometry(header=tf.header, child_frame_id=drive.frames.base_link)
            t, q = tf.transform.translation, tf.transform.rotation
            msg.pose.pose.position.x, msg.pose.pose.position.y = t.x, t.y
            msg.pose.pose.position.z = t.z
            msg.pose.pose.orientation = q
            self.odom_pub.publish(msg)
            self.odom_sent += 1

    def publish_scan(self, drive: Drive, points: np.ndarray, stamp_ns: int,
                     odometry: bool = True) -> None:
        if odometry:
            self.publish_odometry_until(drive, stamp_ns)
        self.cloud_pub.publish(numpy_to_cloud(points, stamp_ns, drive.frames.lidar))
        self.spin(0.1)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


def read_log(process) -> str:
    if not process.log.closed:
        process.log.flush()
    with open(process.log.name) as log:
        return log.read()[-6000:]


def start_node(tmp_path, *params: str) -> subprocess.Popen:
    """Start ``python -m i2p_registration.nodes.multiview_node`` with ``-p`` ``params``."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, env.get('PYTHONPATH')]))
    args = [sys.executable, '-m', 'i2p_registration.nodes.multiview_node', '--ros-args']
    for param in params:
        args += ['-p', param]
    log = open(tmp_path / f'multiview_{time.monotonic_ns()}.log', 'w')
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                               cwd=REPO_ROOT)
    process.log = log
    return process


def stop_node(process) -> int:
    """Interrupt the node like Ctrl-C (kill it if it does not stop); return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    process.log.close()
    return process.returncode


@pytest.fixture
def probe(rclpy_context):
    p = Probe(rclpy_context)
    yield p
    p.close()


def path_poses(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``(K,)`` stamps and ``(K, 4, 4)`` poses of a Path."""
    stamps, poses = [], []
    for pose in path.poses:
        p, q = pose.pose.position, pose.pose.orientation
        tf = matrix_to_transform(np.eye(4), 0, 'a', 'b')
        tf.transform.translation.x, tf.transform.translation.y = p.x, p.y
        tf.transform.translation.z = p.z
        tf.transform.rotation = q
        stamps.append(stamp_to_ns(pose.header.stamp))
        poses.append(transform_to_matrix(tf))
    return np.asarray(stamps, dtype=np.int64), np.asarray(poses).reshape(-1, 4, 4)


def keyframe_rmse(poses: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """RMSE of keyframe positions: first keyframe aligned (it defines map), best-fit aligned."""
    first = T_gt[0] @ inverse(poses[0]) @ poses
    rmse_first = float(np.sqrt(np.mean(np.sum((first[:, :3, 3] - T_gt[:, :3, 3]) ** 2, 1))))
    fit = align_gauge(poses, T_gt)
    rmse_fit = float(np.sqrt(np.mean(np.sum((fit[:, :3, 3] - T_gt[:, :3, 3]) ** 2, 1))))
    return rmse_first, rmse_fit


def test_drive_with_loop_odometry_bad_input_save_and_reset(probe, drive, tmp_path):
    save_dir = tmp_path / 'maps'
    process = start_node(tmp_path, *NODE_PARAMS, 'odometry.source:=odom',
                         f'output.save_directory:={save_dir}')
    n_scans = len(drive.scan_stamps)
    try:
        probe.wait_for(lambda: probe.diagnostics, 'the first diagnostics', process,
                       timeout=START_TIMEOUT_S)
        probe.publish_static(drive)
        probe.spin(0.3)
        for k in range(n_scans):
            probe.publish_scan(drive, drive.scan(k), int(drive.scan_stamps[k]))
        probe.wait_for(lambda: probe.value('scans_processed') == str(n_scans)
                       and probe.maps and probe.value('queue_depth') == '0',
                       f'all {n_scans} scans processed and a map', process)
        probe.spin(1.2)
        values = dict(probe.diagnostics[-1][2])
        path, keyframes, tf_count = probe.paths[-1], probe.keyframes[-1], len(probe.tf)
        the_map = probe.maps[-1]

        # Bad input: empty, all-NaN and too sparse clouds, a stamp back in time, a scan that
        # does not register. None may change the graph.
        last = int(drive.scan_stamps[-1])
        lidar = drive.frames.lidar
        probe.cloud_pub.publish(numpy_to_cloud(np.zeros((0, 3), np.float32), last, lidar))
        probe.cloud_pub.publish(numpy_to_cloud(np.full((500, 3), np.nan, np.float32), last,
                                               lidar))
        probe.wait_for(lambda: 'no finite points' in probe.value('last_input_error'),
                       'the all-NaN cloud reported', process)
        assert int(probe.value('input_errors')) == 2
        probe.publish_scan(drive, drive.scan(n_scans - 1)[:50], last + 10_000_000)
        probe.wait_for(lambda: 'need at least 100' in probe.value('last_refusal_reason'),
                       'the sparse cloud refused', process)
        probe.publish_scan(drive, drive.scan(n_scans - 5), int(drive.scan_stamps[-5]))
        probe.wait_for(lambda: 'time jumped back' in probe.value('last_refusal_reason'),
                       'the stamp going back refused', process)
        rng = np.random.default_rng(SEED)
        junk = rng.uniform([-40, -40, -2], [40, 40, 10], (5000, 3)).astype(np.float32)
        junk_stamp = last + 1_200_000_000
        probe.publish_scan(drive, junk, junk_stamp)
        probe.wait_for(lambda: 'keyframe refused' in probe.value('last_refusal_reason'),
                       'the unregistrable scan refused', process)
        probe.spin(1.2)
        bad_values = dict(probe.diagnostics[-1][2])
        bad_level = max(level for level, _, v in probe.diagnostics
                        if v['refused_scans'] != values['refused_scans'])
        path_after_bad = probe.paths[-1]

        # Good scans after the bad ones are mapped again.
        for step in (1, 2):
            recovered = last + step * int(SCAN_PERIOD_S * 1e9)
            probe.publish_scan(drive, drive.scan(n_scans + step, recovered), recovered)
        probe.wait_for(lambda: probe.value('scans_processed') == str(n_scans + 5)
                       and probe.value('consecutive_refusals') == '0',
                       'good scans mapped after the bad input', process)
        saved = probe.call('save_map', process)
        saved_path = probe.paths[-1]
        reset = probe.call('reset', process)
        probe.wait_for(lambda: probe.paths[-1].poses == [] and probe.value('keyframes') == '0',
                       'an empty path after the reset', process)
        reset_values = dict(probe.diagnostics[-1][2])
    finally:
        assert stop_node(process) == 0, read_log(process)

    assert set(MULTIVIEW_KEYS) <= set(values), set(MULTIVIEW_KEYS) - set(values)
    assert values['refused_scans'] == '0', values
    assert values['odometry_source'] == 'odom'
    n_kf = int(values['keyframes'])
    assert 25 <= n_kf < n_scans, values
    assert int(values['loop_closures']) >= 5, values
    assert int(values['edges']) >= n_kf - 1 + int(values['loop_closures'])
    assert float(values['translation_residual_median_m']) < 0.05, values
    assert float(values['last_solve_ms']) > 0, values

    # TF map -> odom at the scan stamps.
    transforms = [t for m in probe.tf[:tf_count] for t in m.transforms]
    assert len(transforms) >= n_scans
    assert {(t.header.frame_id, t.child_frame_id) for t in transforms} == {('map', 'odom')}
    assert {stamp_to_ns(t.header.stamp) for t in transforms} <= set(drive.scan_stamps.tolist())

    # The path: one pose per keyframe, in the map frame, below 0.2 m RMSE against the truth.
    stamps, poses = path_poses(path)
    assert path.header.frame_id == 'map' and len(stamps) == n_kf
    assert set(stamps.tolist()) <= set(drive.scan_stamps.tolist())
    rmse_first, rmse_fit = keyframe_rmse(poses, drive.ground_truth(stamps))
    print(f'keyframes {n_kf}, loop closures {values["loop_closures"]}, path RMSE '
          f'{rmse_first:.3f} m (first keyframe aligned), {rmse_fit:.3f} m (best fit)')
    assert rmse_first < 0.2 and rmse_fit < 0.2
    # Odometry alone drifts far more on this drive, so the graph did the work.
    T_odom = np.stack([drive.T_odom_base[np.searchsorted(drive.odom_stamps, s)] for s in stamps])
    assert keyframe_rmse(T_odom @ drive.sim.T_base_lidar, drive.ground_truth(stamps))[1] \
        > 2 * rmse_fit
    assert len(keyframes.poses) == n_kf and keyframes.header.frame_id == 'map'
    assert keyframes.poses[-1] == path.poses[-1].pose

    # The map: a voxel cloud in the map frame covering the loop.
    map_frame, _ = cloud_to_frame(the_map)
    assert the_map.header.frame_id == 'map' and len(map_frame) > 10000
    extent = map_frame.points.max(0) - map_frame.points.min(0)
    assert extent[0] > 30 and extent[1] > 30

    # Bad input: reported, graph unchanged.
    assert int(bad_values['input_errors']) == 2
    assert int(bad_values['refused_scans']) == 3
    assert int(bad_values['time_jumps']) == 1 and int(bad_values['registration_failures']) == 1
    assert bad_values['keyframes'] == values['keyframes'] and bad_values['edges'] \
        == values['edges']
    assert path_after_bad.poses == path.poses
    assert bad_level >= 1

    # save_map: readable PCD and TUM that match the published keyframes.
    assert saved.success, saved.message
    cloud = o3d.io.read_point_cloud(str(save_dir / 'map.pcd'))
    assert len(cloud.points) > 10000
    tum_stamps, tum_poses = read_tum(save_dir / 'keyframes.tum')
    lines = (save_dir / 'keyframes.tum').read_text().splitlines()
    assert len(lines) == n_kf + 1 and all(len(line.split()) == 8 for line in lines)
    saved_stamps, saved_poses = path_poses(saved_path)
    np.testing.assert_array_equal(tum_stamps, saved_stamps)
    np.testing.assert_allclose(tum_poses, saved_poses, atol=1e-6)

    # reset: an empty graph.
    assert reset.success, reset.message
    assert reset_values['resets'] == '1' and reset_values['edges'] == '0'


def test_lidar_only_publishes_map_to_lidar_and_saves_ply(probe, drive, tmp_path):
    save_dir = tmp_path / 'maps'
    n_scans = 16
    process = start_node(tmp_path, *NODE_PARAMS, f'output.save_directory:={save_dir}',
                         'output.map_format:=ply')
    try:
        probe.wait_for(lambda: probe.diagnostics, 'the first diagnostics', process,
                       timeout=START_TIMEOUT_S)
        for k in range(n_scans):
            probe.publish_scan(drive, drive.scan(k), int(drive.scan_stamps[k]), odometry=False)
        probe.wait_for(lambda: probe.value('scans_processed') == str(n_scans),
                       f'all {n_scans} scans processed', process)
        probe.spin(0.3)
        values = dict(probe.diagnostics[-1][2])
        saved = probe.call('save_map', process)
    finally:
        assert stop_node(process) == 0, read_log(process)
    assert values['odometry_source'] == 'none' and values['refused_scans'] == '0', values
    transforms = [t for m in probe.tf for t in m.transforms]
    assert len(transforms) == n_scans
    assert {(t.header.frame_id, t.child_frame_id) for t in transforms} == {('map', 'lidar')}
    # The first scan defines the map frame.
    np.testing.assert_allclose(transform_to_matrix(transforms[0]), np.eye(4), atol=1e-9)
    stamps, poses = path_poses(probe.paths[-1])
    assert len(stamps) == int(values['keyframes']) >= 6
    rmse_first, rmse_fit = keyframe_rmse(poses, drive.ground_truth(stamps))
    print(f'LiDAR only: keyframes {len(stamps)}, path RMSE {rmse_first:.3f} m')
    assert rmse_first < 0.2
    # Every scan's TF agrees with the truth relative to the first scan.
    T_gt = drive.ground_truth(drive.scan_stamps[:n_scans])
    T_tf = np.stack([transform_to_matrix(t) for t in transforms])
    errors = np.linalg.norm((inverse(T_gt[0]) @ T_gt)[:, :3, 3] - T_tf[:, :3, 3], axis=1)
    assert errors.max() < 0.3, errors
    assert saved.success, saved.message
    assert len(o3d.io.read_point_cloud(str(save_dir / 'map.ply')).points) > 5000


def test_invalid_parameters_refuse_to_start(tmp_path):
    process = start_node(tmp_path, 'map.voxel_size:=0.5', 'pairwise.voxel_size:=0.4')
    try:
        process.wait(timeout=START_TIMEOUT_S)
    finally:
        stop_node(process)
    assert process.returncode == 1
    assert 'map.voxel_size (0.5) must not exceed pairwise.voxel_size' in read_log(process)
