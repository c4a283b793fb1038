"""
The registration node in its own process, fed synthetic frames by this test process.

The node process runs this file as a script (``python test_registration_node.py <registrar>
--ros-args ...``), which starts ``registration_node.main`` with one of the test registrars below
injected: the registration method is not under test here, the node's plumbing is. Frames are
a small camera (160x120) at 20 Hz stamped with the wall time, and a 3000-point scan at 10 Hz
stamped 18 ms after every second image (clocks offset).
The scripted registrar reads its instruction from the red value of the image's first pixel:
0 ok with the ground truth, 1 failed, 2 low confidence, 3 ok but scoring below
``registration.min_score``.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402, I100
from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from i2p_registration.core.geometry.se3 import inverse  # noqa: E402
from i2p_registration.core.registration.base import (Registrar,  # noqa: E402
                                                     RegistrationResult, Status)
from i2p_registration.core.sensors import CameraModel  # noqa: E402
from i2p_registration.ros.conversions import (model_to_camera_info,  # noqa: E402
                                              numpy_to_cloud, numpy_to_image, stamp_to_ns,
                                              transform_to_matrix)
from i2p_registration.ros.diagnostics import REGISTRATION_KEYS  # noqa: E402
from i2p_registration.ros.tf_publisher import TF_QOS, TF_STATIC_QOS  # noqa: E402
import numpy as np  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

HERE = os.path.abspath(__file__)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
NODE = '/i2p_registration_node'
SEED = 20260521
START_TIMEOUT_S = 30.0
WAIT_S = 15.0
CLOUD_OFFSET_NS = 18_000_000
CAMERA_FRAME, LIDAR_FRAME = 'camera_optical', 'lidar'
CAMERA = CameraModel(np.array([[120.0, 0.0, 80.0], [0.0, 120.0, 60.0], [0.0, 0.0, 1.0]]),
                     160, 120)
# Ground truth: the camera 0.3 m left of, 0.1 m below the LiDAR, looking along LiDAR x.
T_LIDAR_CAM = np.array([[0.0, 0.0, 1.0, 0.05], [-1.0, 0.0, 0.0, 0.3],
                        [0.0, -1.0, 0.0, -0.1], [0.0, 0.0, 0.0, 1.0]])
T_CAM_LIDAR = inverse(T_LIDAR_CAM)
COVARIANCE = np.diag([0.01, 0.02, 0.03, 1e-4, 2e-4, 3e-4])


# --- registrars run inside the node process ----------------------------------------------------

class ScriptedRegistrar(Registrar):
    """Return the ground truth or a scripted failure, chosen by the image's first red pixel."""

    name = 'scripted'

    def _register(self, image, cloud, prior, timer):
        code = int(image.image[0, 0, 0])
        if code == 1:
            return RegistrationResult.failure(self.name, 'scripted failure')
        status = Status.LOW_CONFIDENCE if code == 2 else Status.OK
        score = {0: 0.9, 2: 0.2, 3: 0.1}.get(code, 0.9)
        return RegistrationResult(T_CAM_LIDAR.copy(), COVARIANCE.copy(), score, 0.8, status,
                                  'scripted low confidence' if code == 2 else '', self.name)


class SlowRegistrar(ScriptedRegistrar):
    """The scripted registrar, 1.5 s per call (sleeping releases the GIL like native code)."""

    name = 'slow'

    def _register(self, image, cloud, prior, timer):
        time.sleep(1.5)
        return super()._register(image, cloud, prior, timer)


class NoisyRegistrar(ScriptedRegistrar):
    """Ground truth with seeded noise (2 mm, 0.5 mrad) and every fifth result an outlier."""

    name = 'noisy'

    def __init__(self):
        self.rng = np.random.default_rng(SEED)
        self.calls = 0

    def _register(self, image, cloud, prior, timer):
        from i2p_registration.core.geometry.se3 import se3_exp
        self.calls += 1
        xi = np.concatenate([self.rng.normal(0, 0.002, 3), self.rng.normal(0, 5e-4, 3)])
        if self.calls % 5 == 0:
            xi[:3] += 0.5
        T = se3_exp(xi) @ T_CAM_LIDAR
        return RegistrationResult(T, COVARIANCE.copy(), 0.9, 0.8, Status.OK, '', self.name)


REGISTRARS = {'scripted': ScriptedRegistrar, 'slow': SlowRegistrar, 'noisy': NoisyRegistrar}


# --- the test side -----------------------------------------------------------------------------

def make_cloud_points(seed: int = SEED, n: int = 3000) -> np.ndarray:
    """Return ``(n, 3)`` float32 points 2..30 m ahead of the LiDAR."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(2, 30, n), rng.uniform(-10, 10, n),
                            rng.uniform(-2, 3, n)]).astype(np.float32)


class Probe:
    """Feeds the node and records what it publishes (one rclpy node in the test process)."""

    def __init__(self, context, prefix: str = ''):
        self.node = rclpy.create_node('registration_test_probe', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        n = self.node
        self.image_pub = n.create_publisher(Image, prefix + 'image_raw', 10)
        self.info_pub = n.create_publisher(CameraInfo, prefix + 'camera_info', 10)
        self.cloud_pub = n.create_publisher(PointCloud2, prefix + 'points', 10)
        self.clock_pub = n.create_publisher(Clock, '/clock', 10)
        self.tf, self.tf_static, self.poses, self.diagnostics, self.overlays = [], [], [], [], []
        n.create_subscription(TFMessage, '/tf', self.tf.append, TF_QOS)
        n.create_subscription(TFMessage, '/tf_static', self.tf_static.append, TF_STATIC_QOS)
        n.create_subscription(PoseWithCovarianceStamped, NODE + '/pose', self.poses.append, 10)
        n.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        n.create_subscription(Image, NODE + '/overlay', self.overlays.append, 10)
        self.points = make_cloud_points()
        self.k = 0
        self.image_stamps = []

    def _on_diagnostics(self, msg):
        for status in msg.status:
            if status.name.startswith('i2p_registration_node'):
                values = {kv.key: kv.value for kv in status.values}
                level = status.level[0] if isinstance(status.level, bytes) else status.level
                self.diagnostics.append((time.monotonic(), level, status.message, values))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.02, max(end - time.monotonic(), 0)))

    def wait_for(self, predicate, what: str, process, timeout: float = WAIT_S, feed=True):
        """Feed good frames (when ``feed``) until ``predicate()``; fail naming ``what``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if process.poll() is not None:
                pytest.fail(f'node exited with {process.returncode} while waiting for {what}:\n'
                            f'{read_log(process)}')
            if predicate():
                return
            self.feed(1) if feed else self.spin(0.05)
        pytest.fail(f'{what} not seen within {timeout} s; last diagnostics: '
                    f'{self.diagnostics[-1:]}\nnode log:\n{read_log(process)}')

    def now_ns(self) -> int:
        """Return a fresh stamp: the wall time, as a live camera driver stamps."""
        return time.time_ns()

    def publish_image(self, stamp_ns: int, code: int = 0, camera: CameraModel = CAMERA) -> Image:
        rgb = np.full((camera.height, camera.width, 3), 90, np.uint8)
        rgb[0, 0, 0] = code
        self.info_pub.publish(model_to_camera_info(camera, stamp_ns, CAMERA_FRAME))
        msg = numpy_to_image(rgb, stamp_ns, CAMERA_FRAME)
        self.image_pub.publish(msg)
        return msg

    def publish_cloud(self, stamp_ns: int) -> None:
        self.cloud_pub.publish(numpy_to_cloud(self.points, stamp_ns, LIDAR_FRAME))

    def feed(self, ticks: int, code: int = 0, period_s: float = 0.05) -> list:
        """Publish ``ticks`` camera frames at 20 Hz and a scan every second one; return stamps."""
        stamps = []
        for _ in range(ticks):
            start = time.monotonic()
            stamp = self.now_ns()
            self.publish_image(stamp, code)
            if self.k % 2 == 0:
                self.publish_cloud(stamp + CLOUD_OFFSET_NS)
            self.image_stamps.append(stamp)
            stamps.append(stamp)
            self.k += 1
            self.spin(max(period_s - (time.monotonic() - start), 0.001))
        return stamps

    def last_values(self) -> dict:
        return self.diagnostics[-1][3] if self.diagnostics else {}

    def tf_stamps(self) -> set:
        return {stamp_to_ns(t.header.stamp) for m in self.tf for t in m.transforms}

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


def read_log(process) -> str:
    if not process.log.closed:
        process.log.flush()
    with open(process.log.name) as log:
        return log.read()[-6000:]


def start_node(tmp_path, registrar: str, *params: str) -> subprocess.Popen:
    """Start the node with ``registrar`` injected and ``-p`` ``params``; output goes to a log."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, env.get('PYTHONPATH')]))
    args = [sys.executable, HERE, registrar, '--ros-args']
    for param in params:
        args += ['-p', param]
    log = open(tmp_path / f'node_{registrar}_{time.monotonic_ns()}.log', 'w')
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


def _wait_started(probe, process):
    probe.wait_for(lambda: probe.diagnostics, 'the first diagnostics', process,
                   timeout=START_TIMEOUT_S, feed=False)


def test_good_frames_give_tf_pose_diagnostics_and_overlay(probe, tmp_path):
    process = start_node(tmp_path, 'scripted')
    try:
        _wait_started(probe, process)
        probe.wait_for(lambda: len(probe.tf) >= 5 and probe.poses and probe.overlays
                       and probe.last_values().get('published', '0') != '0',
                       'five TF messages, a pose, an overlay and published > 0', process)
        probe.feed(25)
        probe.spin(1.5)
    finally:
        assert stop_node(process) == 0, read_log(process)
    transforms = [t for m in probe.tf for t in m.transforms]
    for t in transforms:
        assert t.header.frame_id == LIDAR_FRAME
        assert t.child_frame_id == CAMERA_FRAME + '_registered'
        assert stamp_to_ns(t.header.stamp) in probe.image_stamps
        np.testing.assert_allclose(transform_to_matrix(t), T_LIDAR_CAM, atol=1e-9)
    # Newest pair only: fewer registrations than images is fine, but most images get a TF.
    assert len(transforms) >= 10
    pose = probe.poses[-1]
    assert pose.header.frame_id == LIDAR_FRAME
    assert stamp_to_ns(pose.header.stamp) in probe.image_stamps
    covariance = np.asarray(pose.pose.covariance).reshape(6, 6)
    assert np.linalg.eigvalsh(covariance).min() > 0, 'pose covariance is not positive definite'
    # Rotated into the LiDAR frame: same eigenvalues, camera z (variance 0.03) along LiDAR x.
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(covariance)),
                               np.sort(np.diag(COVARIANCE)), rtol=1e-9)
    assert covariance[0, 0] == pytest.approx(0.03)
    overlay = probe.overlays[-1]
    assert (overlay.width, overlay.height) == (CAMERA.width, CAMERA.height)
    assert len(set(bytes(overlay.data))) > 2, 'the overlay has no projected points drawn'
    level_values = [d for d in probe.diagnostics if d[3]['published'] != '0']
    assert level_values, 'no diagnostics after the first registration'
    _, level, message, values = level_values[-1]
    assert set(REGISTRATION_KEYS) <= set(values), set(REGISTRATION_KEYS) - set(values)
    assert level == 0, message
    assert values['last_status'] == 'ok' and values['last_method'] == 'scripted'
    assert float(values['image_rate_hz']) > 5 and float(values['cloud_rate_hz']) > 2
    assert abs(float(values['pairing_dt_p50_ms'])) <= 100
    assert values['device'] == 'cpu' and values['mode'] == 'localization'


BAD_INPUTS = [
    ('empty cloud', 'points: empty cloud'),
    ('all-NaN cloud', 'points: no finite points'),
    ('wrong point_step', 'points: row_step'),
    ('truncated data', 'points: PointCloud2 data has'),
    ('unknown image encoding', "image: unsupported image encoding 'yuv_weird'"),
    ('zero K', 'camera_info: CameraInfo has an all-zero K'),
    ('CameraInfo size not matching the image', 'differs from the CameraInfo size'),
    ('0x0 image', 'image is empty'),
    ('stamps going backwards', 'jumped back: buffers reset'),
    ('failed registration', 'scripted failure'),
    ('low-confidence registration', 'scripted low confidence'),
    ('score below min_score', 'below registration.min_score'),
]


def _send_bad(probe, kind: str) -> list:
    """Publish one bad input of ``kind``; return the stamps it carries (not on the good grid)."""
    stamp = probe.now_ns()
    if kind in ('empty cloud', 'all-NaN cloud', 'wrong point_step', 'truncated data'):
        points = {'empty cloud': np.zeros((0, 3), np.float32),
                  'all-NaN cloud': np.full((50, 3), np.nan, np.float32)}.get(kind, probe.points)
        msg = numpy_to_cloud(points, stamp, LIDAR_FRAME)
        if kind == 'wrong point_step':
            msg.point_step = 20
        if kind == 'truncated data':
            msg.data = msg.data[:-7]
        probe.cloud_pub.publish(msg)
    elif kind in ('unknown image encoding', '0x0 image'):
        msg = numpy_to_image(np.zeros((120, 160, 3), np.uint8), stamp, CAMERA_FRAME)
        if kind == '0x0 image':
            msg = Image(header=msg.header, height=0, width=0, encoding='rgb8', step=0)
        msg.encoding = 'yuv_weird' if kind == 'unknown image encoding' else msg.encoding
        probe.image_pub.publish(msg)
    elif kind == 'zero K':
        info = model_to_camera_info(CAMERA, stamp, CAMERA_FRAME)
        info.k = [0.0] * 9
        probe.info_pub.publish(info)
    elif kind == 'CameraInfo size not matching the image':
        big = CameraModel(CAMERA.K, 320, 240)
        probe.info_pub.publish(model_to_camera_info(big, stamp, CAMERA_FRAME))
        probe.spin(0.3)
        probe.image_pub.publish(numpy_to_image(np.zeros((120, 160, 3), np.uint8), stamp,
                                               CAMERA_FRAME))
    elif kind == 'stamps going backwards':
        stamp = probe.now_ns() - 5_000_000_000
        probe.publish_image(stamp)
    else:
        code = {'failed registration': 1, 'low-confidence registration': 2,
                'score below min_score': 3}[kind]
        return probe.feed(4, code=code)
    return [stamp]


def test_bad_inputs_are_reported_and_the_node_recovers(probe, tmp_path):
    process = start_node(tmp_path, 'scripted')
    bad_stamps = []
    try:
        _wait_started(probe, process)
        probe.wait_for(lambda: probe.tf, 'the first TF', process)
        for kind, reason in BAD_INPUTS:
            errors = int(probe.last_values().get('input_errors', 0))
            bad_stamps += _send_bad(probe, kind)
            if kind in ('failed registration', 'low-confidence registration',
                        'score below min_score'):
                probe.wait_for(lambda: reason in probe.last_values()['last_failure_reason'],
                               f'diagnostics reporting {kind!r}', process, feed=False)
                continue
            probe.spin(0.3)
            probe.wait_for(lambda: reason in probe.last_values()['last_input_error']
                           and int(probe.last_values()['input_errors']) > errors,
                           f'diagnostics reporting {kind!r} ({reason!r})', process)
            assert probe.diagnostics[-1][1] in (1, 2), f'{kind}: level not WARN or ERROR'
        # A burst at 10x the camera rate, then good frames publish TF again.
        probe.feed(20, period_s=0.005)
        tf_before = len(probe.tf)
        probe.wait_for(lambda: len(probe.tf) > tf_before + 3, 'TF after the bad inputs', process)
        probe.spin(1.5)
        values = probe.last_values()
    finally:
        assert stop_node(process) == 0, read_log(process)
    assert not probe.tf_stamps() & set(bad_stamps), 'TF published for a bad frame'
    pose_stamps = {stamp_to_ns(p.header.stamp) for p in probe.poses}
    assert not pose_stamps & set(bad_stamps), 'pose published for a bad frame'
    assert int(values['input_errors']) >= 9
    assert int(values['buffer_resets']) >= 1
    assert int(values['dropped_pairs']) + int(values['dropped_images']) \
        + int(values['unmatched_images']) > 0, 'the burst dropped nothing'


def _set_parameter(probe, name: str, value: ParameterValue):
    client = probe.node.create_client(SetParameters, NODE + '/set_parameters')
    assert client.wait_for_service(timeout_sec=WAIT_S), 'no set_parameters service'
    future = client.call_async(SetParameters.Request(
        parameters=[Parameter(name=name, value=value)]))
    end = time.monotonic() + WAIT_S
    while not future.done() and time.monotonic() < end:
        probe.spin(0.05)
    assert future.done(), f'set_parameters {name} timed out'
    return future.result().results[0]


def test_parameters_are_validated_in_set_calls_and_at_start_up(probe, tmp_path):
    process = start_node(tmp_path, 'scripted')
    try:
        _wait_started(probe, process)
        double = ParameterType.PARAMETER_DOUBLE
        string = ParameterType.PARAMETER_STRING
        out_of_range = _set_parameter(probe, 'registration.min_score',
                                      ParameterValue(type=double, double_value=1.5))
        assert not out_of_range.successful
        assert 'registration.min_score' in out_of_range.reason
        bad_choice = _set_parameter(probe, 'buffering.policy',
                                    ParameterValue(type=string, string_value='closest'))
        assert not bad_choice.successful and "'closest' is not allowed" in bad_choice.reason
        read_only = _set_parameter(probe, 'topics.image',
                                   ParameterValue(type=string, string_value='other'))
        assert not read_only.successful
        good = _set_parameter(probe, 'registration.min_score',
                              ParameterValue(type=double, double_value=0.95))
        assert good.successful, good.reason
        # The new threshold applies: the scripted score 0.9 is now too low to publish.
        probe.wait_for(lambda: 'below registration.min_score 0.950'
                       in probe.last_values().get('last_failure_reason', ''),
                       'the new min_score applied', process)
    finally:
        assert stop_node(process) == 0, read_log(process)
    refused = start_node(tmp_path, 'scripted', 'buffering.policy:=closest')
    try:
        refused.wait(timeout=START_TIMEOUT_S)
    finally:
        stop_node(refused)
    assert refused.returncode == 1
    assert "'closest' is not allowed" in read_log(refused)


def test_slow_registration_does_not_block_the_executor(probe, tmp_path):
    process = start_node(tmp_path, 'slow', 'processing.max_rate:=0.0')
    try:
        _wait_started(probe, process)
        probe.wait_for(lambda: probe.tf, 'the first TF from the slow registrar', process,
                       timeout=START_TIMEOUT_S)
        first = len(probe.diagnostics)
        probe.feed(64)  # 3.2 s at 20 Hz while registrations take 1.5 s each
        probe.spin(1.0)
        values = probe.last_values()
        times = [d[0] for d in probe.diagnostics[first:]]
    finally:
        assert stop_node(process) == 0, read_log(process)
    assert float(values['latency_p50_ms']) >= 1400
    # Callbacks kept up: images were received at (almost) the camera rate, soon after their
    # stamps, and the 1 Hz diagnostics timer kept its period.
    assert float(values['image_rate_hz']) > 12, values
    assert float(values['image_lag_p50_ms']) < 500, values
    assert len(times) >= 3 and max(np.diff(times)) < 1.9, times
    assert int(values['dropped_pairs']) > 0, 'stale pairs were not dropped'


if __name__ == '__main__':
    from i2p_registration.nodes import registration_node
    sys.exit(registration_node.main(sys.argv, registrar=REGISTRARS[sys.argv[1]]()))
