"""
``i2p-demo`` (``make demo``): a synthetic drive through the nodes, recorded, scored and reported.

1. Generates a synthetic drive as a rosbag2 (default 60 s, one lap of a city loop and back to
   its start: LiDAR 10 Hz, camera 20 Hz on its own offset clock; half-KITTI camera and a 32-beam
   LiDAR so that it fits the time budget, ``--full-size`` for the KITTI sizes). A drive already
   generated with the same settings is reused.
2. Starts the registration node (and the multiview node where the package has one) as separate
   processes over real rclpy, with ``use_sim_time``, the drive's nominal extrinsic as prior,
   the drive's wheel odometry as the multiview node's motion prior (``--odometry none``: LiDAR
   only), localhost-only discovery, the package's Fast DDS profile, its own ``ROS_DOMAIN_ID`` and a
   temporary ``ROS_LOG_DIR``.
3. Plays the drive in real time with ``i2p-play`` (another process) and records the nodes'
   outputs (``/tf``, ``/tf_static``, ``~/pose``, ``~/overlay``, ``/diagnostics``, multiview
   path, keyframes and map) as received bytes into ``<out>/output_bag``.
4. Scores them against the ground truth and writes ``<out>/report.md``, its PNG figures and
   ``<out>/metrics.json`` (``tools/report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from scipy.spatial.transform import Rotation
import yaml

from . import report
from ..core.geometry.se3 import inverse
from ..data import bag_messages as bm
from ..data.ground_truth import read_ground_truth_csv

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_NAME = 'i2p_registration_node'
# Sensor settings of the demo drive: half the KITTI image (same field of view), HDL-32.
DEMO_SENSORS = ['camera.width=621', 'camera.height=188', 'camera.fx=360.77', 'camera.fy=360.77',
                'camera.cx=304.78', 'camera.cy=86.43', 'lidar.preset=hdl32',
                'lidar.columns=1000']
CAMERA_RATE = ['clocks.camera.rate_hz=20.0', 'clocks.lidar.rate_hz=10.0']
RECORDED = {  # topic: (type, transient local)
    '/tf': ('tf2_msgs/msg/TFMessage', False),
    '/tf_static': ('tf2_msgs/msg/TFMessage', True),
    f'/{NODE_NAME}/pose': ('geometry_msgs/msg/PoseWithCovarianceStamped', False),
    f'/{NODE_NAME}/overlay': ('sensor_msgs/msg/Image', False),
    '/diagnostics': ('diagnostic_msgs/msg/DiagnosticArray', False),
}
MULTIVIEW_SUFFIXES = ('/path', '/keyframes', '/map')


def log(text: str, quiet: bool = False) -> None:
    """Print one progress line of the demo."""
    if not quiet:
        print(f'i2p-demo: {text}', file=sys.stderr, flush=True)


# --- environment -----------------------------------------------------------------------------

def fastdds_profile() -> str:
    """Return the path of the package's Fast DDS profile for large messages."""
    path = REPO_ROOT / 'config' / 'fastdds_localhost_large.xml'
    if path.exists():
        return str(path)
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory('i2p_registration'), 'config',
                        'fastdds_localhost_large.xml')


def set_ros_environment(log_dir: str, domain_id: int | None) -> int:
    """Set the ROS environment of this process and its children; return the domain id."""
    domain = domain_id if domain_id is not None else random.SystemRandom().randint(101, 215)
    os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = fastdds_profile()
    os.environ['ROS_DOMAIN_ID'] = str(domain)
    os.environ['ROS_LOG_DIR'] = log_dir
    os.environ.setdefault('HOME', log_dir)
    os.environ['PYTHONUNBUFFERED'] = '1'
    os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                             os.environ.get('PYTHONPATH')]))
    return domain


# --- the drive -------------------------------------------------------------------------------

def generate_drive(out: Path, seed: int, duration_s: float, full_size: bool,
                   quiet: bool) -> dict:
    """
    Write the synthetic drive into ``out`` (``bag/``, ground truth, ``synthetic.yaml``).

    :return: the drive description (also ``out/drive.json``); an existing drive with the same
        description is reused.
    """
    overrides = ([] if full_size else DEMO_SENSORS) + CAMERA_RATE
    want = {'seed': seed, 'duration_s': duration_s, 'overrides': overrides}
    stamp = out / 'drive.json'
    if stamp.exists() and (out / 'bag').exists():
        if json.loads(stamp.read_text()).get('settings') == want:
            log(f'reusing the drive in {out}', quiet)
            return json.loads(stamp.read_text())
    shutil.rmtree(out, ignore_errors=True)
    from ..data.bag_writer import write_bag
    from ..data.progress import Progress
    from ..data.simulator import Simulator
    from ..data.synth_config import load_synth_config

    config = load_synth_config(None, overrides)
    log(f'generating a {duration_s:g} s drive (seed {seed}) into {out}', quiet)
    sim = Simulator(config, seed)
    summary = write_bag(sim, out, storage='mcap', image_format='raw', duration_s=duration_s,
                        progress=Progress(1, 'i2p-demo: drive', None if quiet else sys.stderr))
    drive = {'settings': want, 'summary': summary, 'lap_length_m': sim.trajectory.lap_length}
    stamp.write_text(json.dumps(drive, indent=2))
    return drive


def prior_parameters(T_cam_lidar: np.ndarray) -> list[str]:
    """Return the node's ``prior.*`` parameter overrides of an extrinsic ``T_cam_lidar``."""
    T_lidar_cam = inverse(np.asarray(T_cam_lidar))
    rpy = Rotation.from_matrix(T_lidar_cam[:3, :3]).as_euler('xyz')
    values = list(T_lidar_cam[:3, 3]) + list(rpy)
    return [f'prior.{n}:={float(v)!r}' for n, v in
            zip(('x', 'y', 'z', 'roll', 'pitch', 'yaw'), values)]


# --- processes -------------------------------------------------------------------------------

def start(argv: list[str], log_path: Path) -> subprocess.Popen:
    """Start a child process with its output in ``log_path``."""
    stream = open(log_path, 'w')
    process = subprocess.Popen(argv, stdout=stream, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                               start_new_session=True)
    process.log = stream
    return process


def stop(process: subprocess.Popen, timeout_s: float = 10.0) -> int:
    """Interrupt a child like Ctrl-C, kill it if it does not stop; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)
    process.log.close()
    return process.returncode


class Recorder:
    """
    Subscribes to the nodes' outputs with ``raw=True`` and writes the bytes into a rosbag2.

    Log times are the simulated time (``/clock``, interpolated between clock messages), so
    ``log time - header stamp`` is the latency from the sensor stamp to the output. A message
    that arrives before the first ``/clock`` (its subscription can match after the nodes'
    first outputs) waits, and is written at that first clock's time.
    """

    def __init__(self, context, bag: Path):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import get_typestore, Stores
        from rosgraph_msgs.msg import Clock

        self._rclpy = rclpy
        self.store = get_typestore(Stores.ROS2_KILTED)
        self.node = rclpy.create_node('i2p_demo_recorder', context=context)
        self.writer = Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.counts: dict[str, int] = {}
        self._connections = {}
        self._clock = (0, time.perf_counter())
        self._before_clock: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.node.create_subscription(Clock, '/clock', self._on_clock, 10)
        for topic, (msgtype, latched) in RECORDED.items():
            self.subscribe(topic, msgtype, latched)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def subscribe(self, topic: str, msgtype: str, latched: bool = False) -> None:
        """Record ``topic`` (a ``pkg/msg/Name`` type rosbags and rclpy both know)."""
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from .play import message_class

        cls = message_class(msgtype)
        if cls is None or msgtype not in self.store.types or topic in self._connections:
            return
        qos = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                         else DurabilityPolicy.VOLATILE)
        self._connections[topic] = self.writer.add_connection(topic, msgtype,
                                                              typestore=self.store)
        self.node.create_subscription(cls, topic, lambda raw, t=topic: self._write(t, raw),
                                      qos, raw=True)

    def discover(self) -> None:
        """Record the multiview node's outputs once they appear in the graph."""
        for topic, types in self.node.get_topic_names_and_types():
            if topic not in self._connections and topic.endswith(MULTIVIEW_SUFFIXES) \
                    and 'multiview' in topic:
                self.subscribe(topic, types[0])

    def now_ns(self) -> int:
        """Return the simulated time now, interpolated from the last ``/clock``."""
        clock_ns, wall = self._clock
        return clock_ns + int((time.perf_counter() - wall) * 1e9) if clock_ns else 0

    def _on_clock(self, msg) -> None:
        clock_ns = msg.clock.sec * 1_000_000_000 + msg.clock.nanosec
        with self._lock:
            self._clock = (clock_ns, time.perf_counter())
            if clock_ns and self._before_clock and not self._stop:
                for topic, raw in self._before_clock:
                    self._record(topic, raw, clock_ns)
                self._before_clock.clear()

    def _write(self, topic: str, raw: bytes) -> None:
        with self._lock:
            if self._stop:
                return
            # Counted on arrival: the demo waits for the nodes' first diagnostics, which come
            # before the player starts the clock.
            self.counts[topic] = self.counts.get(topic, 0) + 1
            now = self.now_ns()
            if now == 0:
                self._before_clock.append((topic, bytes(raw)))
                return
            self._record(topic, raw, now)

    def _record(self, topic: str, raw: bytes, log_ns: int) -> None:
        self.writer.write(self._connections[topic], log_ns, bytes(raw))

    def _spin(self) -> None:
        while not self._stop and self._rclpy.ok(context=self.executor.context):
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: B902 (shutdown races end the loop)
                return

    def close(self) -> None:
        """Stop spinning and close the bag (messages that never saw a clock get log time 0)."""
        with self._lock:
            self._stop = True
            for topic, raw in self._before_clock:
                self._record(topic, raw, 0)
            self._before_clock.clear()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.writer.close()


def multiview_node_available() -> bool:
    """Whether the package has the multiview node (``nodes/multiview_node.py``)."""
    return (Path(__file__).resolve().parents[1] / 'nodes' / 'multiview_node.py').exists()


def _check_alive(nodes: dict, out: Path) -> None:
    """Raise ``RuntimeError`` naming the node process that exited and its log."""
    for name, process in nodes.items():
        if process.poll() is not None:
            tail = (out / f'{name}.log').read_text(errors='replace').strip().splitlines()[-3:]
            raise RuntimeError(f'{name} exited with code {process.returncode} (see '
                               f'{out / (name + ".log")}): ' + ' | '.join(tail))


def run_nodes(drive_dir: Path, out: Path, args, meta: dict) -> dict:
    """Start the nodes, play the drive into them, record; return the run description."""
    import rclpy

    py = sys.executable
    reg_argv = [py, '-m', 'i2p_registration.nodes.registration_node', '--ros-args',
                '-p', 'use_sim_time:=true', '-p', 'topics.image:=/camera/image_raw',
                '-p', 'topics.camera_info:=/camera/camera_info', '-p', 'topics.points:=/points',
                '-p', f'registration.method:={args.method}',
                '-p', f'registration.device:={args.device}']
    for p in prior_parameters(np.array(meta['T_cam_lidar'])):
        reg_argv += ['-p', p]
    nodes = {'registration_node': start(reg_argv, out / 'registration_node.log')}
    if multiview_node_available():
        mv_argv = [py, '-m', 'i2p_registration.nodes.multiview_node', '--ros-args',
                   '-p', 'use_sim_time:=true', '-p', 'topics.points:=/points',
                   '-p', f'odometry.source:={args.odometry}']
        if args.odometry == 'odom':
            mv_argv += ['-p', 'topics.odom:=/odom']
        nodes['multiview_node'] = start(mv_argv, out / 'multiview_node.log')
    context = rclpy.context.Context()
    rclpy.init(context=context)
    recorder = Recorder(context, out / 'output_bag')
    player = None
    run = {'nodes': list(nodes)}
    try:
        deadline = time.monotonic() + 120.0
        log(f'starting {", ".join(nodes)}', args.quiet)
        names = {'registration_node': NODE_NAME, 'multiview_node': 'multiview_sync_node'}
        while not {names[n] for n in nodes} <= set(recorder.node.get_node_names()) \
                or not recorder.counts.get('/diagnostics'):
            _check_alive(nodes, out)
            if time.monotonic() > deadline:
                raise RuntimeError(f'{list(nodes)} did not start in 120 s; see the logs in '
                                   f'{out}')
            time.sleep(0.2)
        play_argv = [py, '-m', 'i2p_registration.tools.play', str(drive_dir / 'bag'),
                     '--rate', str(args.rate), '--wait-for', '/points', '/camera/image_raw',
                     '--delay', '1.0', '--quiet']
        duration = meta['duration_s'] / args.rate
        log(f'playing the {meta["duration_s"]:.0f} s drive in real time', args.quiet)
        player = start(play_argv, out / 'play.log')
        started = time.monotonic()
        last = 0.0
        while player.poll() is None:
            _check_alive(nodes, out)
            recorder.discover()
            time.sleep(0.25)
            if time.monotonic() - last > 2.0 and not args.quiet:
                last = time.monotonic()
                tf = recorder.counts.get('/tf', 0)
                print(f'\ri2p-demo: playing {min(last - started, duration):5.1f} / '
                      f'{duration:.0f} s, {tf} TF messages recorded', end='', file=sys.stderr,
                      flush=True)
            if time.monotonic() - started > duration + 120.0:
                raise RuntimeError('i2p-play did not finish in time')
        run['play_seconds'] = time.monotonic() - started
        if not args.quiet:
            print('', file=sys.stderr)
        if player.returncode != 0:
            raise RuntimeError(f'i2p-play failed; see {out / "play.log"}')
        time.sleep(2.5)  # the last registration and one more diagnostics message
    finally:
        if player is not None:
            stop(player)
        run['exit_codes'] = {name: stop(p) for name, p in nodes.items()}
        recorder.close()
        context.try_shutdown()
    run['recorded'] = dict(recorder.counts)
    return run


# --- scoring and report ----------------------------------------------------------------------

def map_points(bag: Path, gt, lidar_frame: str, n_scans: int = 16,
               voxel: float = 0.5) -> np.ndarray:
    """Return ``(N, 2)`` map x, y of a few scans of the drive placed by their true poses."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import get_typestore, Stores

    store = get_typestore(Stores.ROS2_KILTED)
    lidar = gt.select('lidar')
    pose = {int(s): T for s, T in zip(lidar.stamp_ns, lidar.T_map_sensor)}
    keep = set(np.linspace(0, len(lidar.stamp_ns) - 1, n_scans).astype(int).tolist())
    points = []
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.msgtype == bm.CLOUD_TYPE]
        for k, (conn, _, raw) in enumerate(reader.messages(connections=conns)):
            if k not in keep:
                continue
            cloud, _ = bm.cloud_to_frame(store.deserialize_cdr(raw, conn.msgtype))
            T = pose.get(cloud.stamp_ns)
            if T is not None:
                xyz = cloud.points[::4].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
                points.append(xyz[(xyz[:, 2] > 0.5)])
    if not points:
        return np.zeros((0, 2))
    xy = np.vstack(points)[:, :2]
    return np.unique(np.floor(xy / voxel), axis=0) * voxel + voxel / 2


def score_and_report(out: Path, drive_dir: Path, run: dict, quiet: bool) -> dict:
    """Score the output bag, draw the figures, write ``report.md`` and ``metrics.json``."""
    gt = read_ground_truth_csv(drive_dir / 'ground_truth.csv')
    meta = yaml.safe_load((drive_dir / 'synthetic.yaml').read_text())
    lidar_frame = meta['frames']['lidar']
    outputs = report.read_outputs(out / 'output_bag')
    metrics, series = report.compute_metrics(outputs, gt, run.get('play_seconds', 0.0),
                                             lidar_frame)
    metrics['run'] = run
    figures = {}
    cam = gt.select('camera')
    t0 = int(min(gt.stamp_ns))
    scan_pose = {int(s): T for s, T in zip(gt.select('lidar').stamp_ns,
                                           gt.select('lidar').T_map_sensor)}
    reg_xy = np.array([(scan_pose[int(s)] @ T)[:2, 3] if int(s) in scan_pose else (np.nan,) * 2
                       for s, T in zip(series['scan_stamp_ns'], series['T_lidar_cam'])])
    reg_xy = reg_xy.reshape(-1, 2)
    ok = (series['rte_m'] < 2.0) & (series['rre_deg'] < 5.0)
    keyframes = series['keyframes_xyz'][:, :2] if 'keyframes_xyz' in series else None
    report.draw_top_view(str(out / 'top_view.png'), cam.T_map_base[:, :2, 3], reg_xy, ok,
                         map_points(drive_dir / 'bag', gt, lidar_frame), keyframes)
    figures['top_view'] = 'top_view.png'
    t_s = (series['stamps_ns'] - t0) * 1e-9
    report.draw_errors(str(out / 'errors.png'), t_s, series['rte_m'], series['rre_deg'])
    figures['errors'] = 'errors.png'
    report.draw_latency(str(out / 'latency.png'), series['latency'])
    figures['latency'] = 'latency.png'
    overlays = outputs['overlays']
    error_at = {int(s): (r, q) for s, r, q in zip(series['stamps_ns'], series['rte_m'],
                                                  series['rre_deg'])}
    for k, i in enumerate(np.unique(np.linspace(0, len(overlays) - 1, 3).astype(int))
                          if overlays else []):
        stamp, rgb = overlays[i]
        r, q = error_at.get(int(stamp), (np.nan, np.nan))
        caption = f't = {(stamp - t0) * 1e-9:.1f} s'
        caption += f', RTE {r:.2f} m, RRE {q:.2f} deg' if np.isfinite(r) else ' (not accepted)'
        report.save_overlay(str(out / f'overlay_{k + 1}.png'), rgb, caption)
        figures[f'overlay_{k + 1}'] = f'overlay_{k + 1}.png'
    path = report.write_report(out, metrics, figures)
    log(f'report: {path}', quiet)
    return metrics


# --- command line ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """Build the command-line interface."""
    p = argparse.ArgumentParser(prog='i2p-demo', description=__doc__.strip().split('\n')[0])
    p.add_argument('--duration', type=float, default=60.0, help='seconds of drive (default 60)')
    p.add_argument('--seed', type=int, default=0, help='world seed (default 0)')
    p.add_argument('--method', default='edge', help='registration.method (default edge)')
    p.add_argument('--device', default='auto', help='registration.device: auto, cpu, cuda')
    p.add_argument('--rate', type=float, default=1.0, help='playback speed (default 1.0)')
    p.add_argument('--out', default='out/demo', help='output folder (default out/demo)')
    p.add_argument('--full-size', action='store_true',
                   help='KITTI-size camera and 64-beam LiDAR (slower to generate)')
    p.add_argument('--odometry', choices=('odom', 'none'), default='odom',
                   help="motion prior of the multiview node: the drive's wheel odometry "
                        '(/odom, default) or none (LiDAR only)')
    p.add_argument('--domain-id', type=int, help='ROS_DOMAIN_ID (default: random per run)')
    p.add_argument('--quiet', action='store_true', help='no progress output')
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return the exit status (0: report written)."""
    args = build_parser().parse_args(argv)
    if args.duration <= 0 or args.rate <= 0:
        print('i2p-demo: error: --duration and --rate must be > 0', file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in ['output_bag', *[f.name for f in out.glob('*.png')]]:
        shutil.rmtree(out / old, ignore_errors=True) if (out / old).is_dir() \
            else (out / old).unlink(missing_ok=True)
    log_dir = tempfile.mkdtemp(prefix='i2p_demo_roslog_')
    started = time.monotonic()
    try:
        domain = set_ros_environment(log_dir, args.domain_id)
        drive_dir = out / 'drive'
        drive = generate_drive(drive_dir, args.seed, args.duration, args.full_size, args.quiet)
        meta = yaml.safe_load((drive_dir / 'synthetic.yaml').read_text())
        meta['duration_s'] = drive['summary']['duration_s']
        run = run_nodes(drive_dir, out, args, meta)
        run.update({'seed': args.seed, 'duration_s': meta['duration_s'], 'method': args.method,
                    'device': args.device, 'rate': args.rate, 'ros_domain_id': domain,
                    'multiview_odometry': args.odometry,
                    'note': '' if 'multiview_node' in run['nodes'] else
                    'The multiview node does not exist yet: registration node only.'})
        metrics = score_and_report(out, drive_dir, run, args.quiet)
    except (RuntimeError, OSError, ValueError) as error:
        print(f'i2p-demo: error: {error}', file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    log(f'RR {100 * metrics["registration_recall"]:.1f} %, median RTE '
        f'{report._fmt(metrics["median_rte_m"])} m, TF {metrics["tf_rate_hz"]:.1f} Hz; '
        f'{time.monotonic() - started:.0f} s in all', args.quiet)
    print(out / 'report.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
