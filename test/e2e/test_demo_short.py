"""
A short ``i2p-demo`` (a 3 s drive) end to end: nodes as processes over rclpy, report, metrics.

The demo runs once per module as ``python -m i2p_registration.tools.demo`` in the test's ROS
environment (conftest) with its own domain id. The tests recompute the headline numbers from the
output bag independently of ``tools/report.py`` and compare ``i2p-replay`` on the same drive
with the live registrations.
"""

from dataclasses import replace
import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import yaml

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from i2p_registration.core.geometry.se3 import inverse  # noqa: E402, I100
from i2p_registration.core.metrics import rre_protocol, rte  # noqa: E402
from i2p_registration.data.ground_truth import read_ground_truth_csv  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DURATION_S = 3.0
# Played at a quarter of real time: the registrar takes 0.2-1.2 s per pair on the two shared
# cores here, and a few seconds of drive must give the node several pairs to register.
RATE = 0.25
TIMEOUT_S = 300


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo')
    done = subprocess.run(
        [sys.executable, '-m', 'i2p_registration.tools.demo', '--duration', str(DURATION_S),
         '--seed', '0', '--out', str(out), '--device', 'cpu', '--rate', str(RATE),
         '--quiet'],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith('report.md')
    return out, json.loads((out / 'metrics.json').read_text())


def _registrations(bag):
    """Return ``[(log ns, image stamp ns, parent, child, T_lidar_cam)]`` from the output bag."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import get_typestore, Stores
    from scipy.spatial.transform import Rotation

    store = get_typestore(Stores.ROS2_KILTED)
    out = []
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == '/tf']
        for _, log_ns, raw in reader.messages(connections=conns):
            for tf in store.deserialize_cdr(raw, 'tf2_msgs/msg/TFMessage').transforms:
                if not tf.child_frame_id.endswith('_registered'):
                    continue
                t, q = tf.transform.translation, tf.transform.rotation
                T = np.eye(4)
                T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
                T[:3, 3] = t.x, t.y, t.z
                out.append((log_ns, tf.header.stamp.sec * 10**9 + tf.header.stamp.nanosec,
                            tf.header.frame_id, tf.child_frame_id, T))
    return out


def _errors(drive, stamps, T_lidar_cam):
    """RTE [m] and protocol RRE [deg] against the pairs of the nearest scans (max_dt 0.1 s)."""
    gt = read_ground_truth_csv(drive / 'ground_truth.csv')
    cam = {int(s): T for s, T in zip(gt.select('camera').stamp_ns,
                                     gt.select('camera').T_map_sensor)}
    lidar = gt.select('lidar')
    errors = []
    for stamp, T in zip(stamps, T_lidar_cam):
        d = np.abs(lidar.stamp_ns - stamp)
        best = min(np.flatnonzero(d == d.min()), key=lambda i: lidar.stamp_ns[i])
        T_gt = inverse(cam[int(stamp)]) @ lidar.T_map_sensor[best]
        errors.append((float(rte(inverse(T), T_gt)), float(rre_protocol(inverse(T), T_gt))))
    return np.array(errors).reshape(-1, 2)


def test_report_files_and_nodes(demo):
    out, metrics = demo
    report = (out / 'report.md').read_text()
    for name in ('top_view.png', 'errors.png', 'latency.png', 'overlay_1.png'):
        assert (out / name).stat().st_size > 1000, name
        assert f']({name})' in report
    assert 'Registration recall' in report and 'Keyframe APE' in report
    run = metrics['run']
    assert all(code == 0 for code in run['exit_codes'].values()), run
    assert 'registration_node' in run['nodes']
    multiview = (REPO_ROOT / 'i2p_registration' / 'nodes' / 'multiview_node.py').exists()
    assert ('multiview_node' in run['nodes']) == multiview
    assert run['recorded'].get('/diagnostics', 0) >= 2


def test_metrics_match_a_recomputation_from_the_output_bag(demo):
    out, metrics = demo
    regs = _registrations(out / 'output_bag')
    assert len(regs) == metrics['registrations_published'], metrics
    assert metrics['registrations_attempted'] >= 4, metrics
    if not regs:
        assert metrics['registration_recall'] == 0.0 and metrics['median_rte_m'] is None
        pytest.xfail('the edge method accepted no registration on this drive')
    assert {(r[2], r[3]) for r in regs} == {('lidar', 'camera_optical_registered')}
    stamps = np.array([r[1] for r in regs])
    errors = _errors(out / 'drive', stamps, [r[4] for r in regs])
    within = (errors[:, 0] < 2.0) & (errors[:, 1] < 5.0)
    assert metrics['registration_recall'] == pytest.approx(float(np.mean(within)))
    assert metrics['registration_recall_of_attempts'] == pytest.approx(
        float(np.sum(within)) / metrics['registrations_attempted'])
    assert metrics['median_rte_m'] == pytest.approx(np.median(errors[:, 0]))
    assert metrics['median_rre_deg'] == pytest.approx(np.median(errors[:, 1]))
    span_s = (stamps.max() - stamps.min()) * 1e-9
    if len(stamps) > 1:
        assert metrics['tf_rate_hz'] == pytest.approx((len(stamps) - 1) / span_s)
    assert metrics['registrations_published'] <= metrics['registrations_attempted']
    # Outputs are stamped with image stamps, after them.
    assert all(r[0] >= r[1] for r in regs)


def test_tf_rate_follows_the_lidar(demo):
    # A pair becomes ready when its scan arrives, and the worker takes the newest pair: one
    # registration per scan while the registrar keeps up. At a quarter of real time it does
    # here (a scan every 0.4 s of wall time, about 0.2 s per registration), so TF comes at the
    # LiDAR rate (measured 9.98 Hz of drive time, twice); it never exceeds the camera rate.
    out, metrics = demo
    clocks = yaml.safe_load((out / 'drive' / 'synthetic.yaml').read_text())['config']['clocks']
    lidar_hz, camera_hz = clocks['lidar']['rate_hz'], clocks['camera']['rate_hz']
    assert 0.5 * lidar_hz <= metrics['tf_rate_hz'] <= camera_hz, metrics['tf_rate_hz']


def test_registration_recall_from_the_nominal_prior(demo):
    # Recall counts every attempted registration: a refused one is not a success.
    metrics = demo[1]
    assert metrics['registrations_attempted'] >= 4, metrics
    assert metrics['registration_recall_of_attempts'] >= 0.9


def test_multiview_path_error(demo):
    metrics = demo[1]
    if 'multiview_node' not in metrics['run']['nodes']:
        pytest.skip('the package has no multiview node yet')
    assert metrics['keyframes'] >= 2
    assert metrics['keyframe_ape_m'] is not None and metrics['keyframe_ape_m'] <= 0.3


def test_replay_gives_the_live_results(demo):
    from i2p_registration.core.config import RegistrationNodeConfig
    from i2p_registration.core.registration.base import RegistrationResult
    from i2p_registration.core.registration.factory import registrar_from_config
    from i2p_registration.tools.replay import replay

    out, _ = demo
    live = {r[1]: r[4] for r in _registrations(out / 'output_bag')}
    if not live:
        pytest.xfail('the edge method accepted no registration on this drive')
    config = RegistrationNodeConfig()
    # The node's registrar, from its whole config section; threads=0 leaves this test
    # process's thread count alone.
    registrar = registrar_from_config(replace(config.registration, threads=0))

    class LiveStampsOnly:
        """Register only the images the live node published (the others cost time only)."""

        def register(self, image, cloud, prior):
            if image.stamp_ns not in live:
                return RegistrationResult.failure('skip', 'not registered live')
            return registrar.register(image, cloud, prior)

    result = replay(out / 'drive' / 'bag', LiveStampsOnly(), config, progress_stream=None)
    rows = {row['image_stamp_ns']: row for row in result.rows if row['published']}
    # The node's prior comes from x y z roll pitch yaw parameters, replay's from /tf_static
    # quaternions: the same pose up to rounding, which can tip a borderline acceptance.
    common = set(rows) & set(live)
    assert len(common) >= max(1, len(live) // 2), (sorted(rows), sorted(live))
    for stamp in common:
        T, row = live[stamp], rows[stamp]
        np.testing.assert_allclose([row['x'], row['y'], row['z']], T[:3, 3], atol=0.05)
