"""
The multiview node: LiDAR scans (and optionally odometry) in; keyframe graph, map and TF out.

Threading. Callbacks run in the executor and only convert: a scan becomes a
:class:`~i2p_registration.core.sensors.CloudFrame` pushed into a bounded queue (the oldest is
dropped and counted when it is full); odometry and static transforms go into their histories.
One worker thread takes the scans in order and runs
:class:`~i2p_registration.core.multiview.mapper.MultiviewMapper` (keyframing, candidate edges,
pairwise registration, incremental transformation synchronization), then publishes.

Motion prior (``odometry.source``):

- ``none``: LiDAR only; every scan is registered against the last keyframe. TF
  ``<frames.map> -> <lidar frame>`` at each scan stamp.
- ``odom``: ``nav_msgs/Odometry`` on ``topics.odom`` (``odom -> base_link``), interpolated at
  the scan stamp (a scan newer than every sample waits up to ``odometry.max_wait`` for it).
- ``tf``: the ``frames.odom -> frames.base_link`` transforms on ``/tf``, read as
  ``tf2_msgs/TFMessage`` directly (``tf2_ros`` is not needed; only that one direct transform is
  used, not a chain).

With odometry, ``base_link -> <lidar frame>`` comes from the chain of
  ``/tf_static`` transforms and TF ``<frames.map> -> <odom frame>`` (REP-105) is published at each
  scan stamp. The first keyframe's odometry pose is its map pose, so map and odom coincide at
  the start.

Outputs: ``~/path`` (``nav_msgs/Path``) and ``~/keyframes`` (``PoseArray``) of the keyframe LiDAR
poses in the map frame after every new keyframe; ``~/map`` (``PointCloud2`` voxel map in the map
frame), at most every ``map.publish_period`` and only when it changed; the three are reliable
and transient local, so late subscribers get the last one. ``/diagnostics`` at 1 Hz.
Services (``std_srvs/Trigger``): ``~/save_map`` writes ``map.pcd`` (or ``.ply``) and
``keyframes.tum`` to ``output.save_directory``; ``~/reset`` starts a new map.

Bad input (a cloud that does not convert, empty or all-NaN clouds, stamps going back, scans
without odometry, a registration below ``pairwise.min_confidence``) is refused, counted and named
in diagnostics; it never changes the graph. Scans refused again and again (``ERROR`` after five
in a row) usually mean the scene changed too much since the last keyframe: ``~/reset`` starts
over.

Parameters: ``frames.*``, ``output.*``, ``map.publish_period``, ``input.queue_size`` and
``odometry.max_wait`` / ``max_extrapolation`` apply at once; the other writable ones (the
mapper's) at the next ``~/reset``; ``topics.*``, ``qos.*`` and ``odometry.source`` need a
restart.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Pose, PoseArray, PoseStamped, Transform
from i2p_registration.core.latency import RateTracker
from i2p_registration.core.multiview.config import MultiviewNodeConfig
from i2p_registration.core.multiview.mapper import KeyframeSnapshot, make_mapper, ScanOutcome
from i2p_registration.core.multiview.pose_history import chain_transform, PoseHistory
from i2p_registration.core.sensors import CloudFrame
from i2p_registration.ros.conversions import (cloud_to_frame, make_header, matrix_to_transform,
                                              numpy_to_cloud, stamp_to_ns, transform_to_matrix)
from i2p_registration.ros.diagnostics import ERROR, make_diagnostic_array, OK, WARN
from i2p_registration.ros.parameters import declare_config_parameters
from i2p_registration.ros.spin import run_node
from i2p_registration.ros.tf_publisher import TF_QOS, TF_STATIC_QOS, TransformPublisher
from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

NODE_NAME = 'multiview_sync_node'
DIAGNOSTICS_PERIOD_S = 1.0
RATE_WINDOW_S = 5.0
RESET_TIMEOUT_S = 30.0
ODOMETRY_POLL_S = 0.005
# Refused scans in a row that make the status an ERROR.
ERROR_AFTER_REFUSALS = 5
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)

# Every key the multiview node reports, in the order written.
MULTIVIEW_KEYS = (
    'odometry_source', 'scan_rate_hz', 'odometry_rate_hz', 'scans_received', 'queue_depth',
    'dropped_scans', 'input_errors', 'last_input_error', 'scans_processed', 'refused_scans',
    'registration_failures', 'time_jumps', 'consecutive_refusals', 'last_refusal_reason',
    'keyframes', 'edges', 'loop_closures', 'pruned_edges', 'discarded_edges',
    'odometry_confirmed_edges', 'prediction_confirmed_edges', 'last_solve_ms',
    'rotation_residual_median_deg', 'rotation_residual_max_deg',
    'translation_residual_median_m', 'translation_residual_max_m', 'map_points', 'resets',
)


def _sensor_qos(config: MultiviewNodeConfig) -> QoSProfile:
    reliability = (ReliabilityPolicy.RELIABLE if config.qos.reliability == 'reliable'
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(depth=config.qos.depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


def _pose_msg(T, stamp_ns: int, frame: str) -> Pose:
    """Return the ``geometry_msgs/Pose`` of a ``(4, 4)`` pose (via the one TF conversion)."""
    tf = matrix_to_transform(T, stamp_ns, frame, frame).transform
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (tf.translation.x, tf.translation.y,
                                                         tf.translation.z)
    pose.orientation = tf.rotation
    return pose


def _pose_to_matrix(pose: Pose):
    """Return the ``(4, 4)`` matrix of a ``geometry_msgs/Pose``."""
    tf = Transform()
    tf.translation.x, tf.translation.y, tf.translation.z = (pose.position.x, pose.position.y,
                                                            pose.position.z)
    tf.rotation = pose.orientation
    return transform_to_matrix(tf)


def multiview_level(values: dict, new_problems: int) -> tuple[int, str]:
    """
    Return the level and the one-line message of the multiview status.

    ERROR: ``ERROR_AFTER_REFUSALS`` scans in a row refused. WARN: no scans in the rate window,
    bad input or refused scans since the last report, or no keyframe yet. OK otherwise.

    :param values: the snapshot, with the keys of :data:`MULTIVIEW_KEYS`.
    :param new_problems: input errors plus refused scans since the last report.
    """
    if values['consecutive_refusals'] >= ERROR_AFTER_REFUSALS:
        return ERROR, (f'{values["consecutive_refusals"]} scans in a row refused: '
                       f'{values["last_refusal_reason"]}')
    if values['scan_rate_hz'] == 0 and values['keyframes'] == 0:
        return WARN, 'no scans received recently'
    if new_problems:
        last = values['last_refusal_reason'] or values['last_input_error']
        return WARN, f'{new_problems} bad or refused scan(s): {last}'
    if values['keyframes'] == 0:
        return WARN, 'waiting for the first keyframe'
    return OK, 'mapping'


class MultiviewNode(Node):
    """
    Multiview pose-graph mapping of LiDAR scans (see the module docstring).

    :param node_name: the node's name (the parameters file key).
    :param kwargs: passed to ``rclpy.node.Node`` (context, namespace, parameter_overrides...).
    :raises ValueError: when a parameter override is invalid.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        self._stop = False
        self._wake = threading.Condition()
        self._queue: collections.deque = collections.deque()
        self._reset_requested = False
        self._reset_done = threading.Event()
        self._worker = None
        super().__init__(node_name, **kwargs)
        (config,), self._validator = declare_config_parameters(
            self, [MultiviewNodeConfig], on_change=self._on_parameters)
        self._config: MultiviewNodeConfig = config
        self._mapper = make_mapper(config)
        self._lock = threading.Lock()
        self._odometry = PoseHistory(config.odometry.buffer_duration_ns,
                                     config.odometry.max_extrapolation_ns)
        self._odom_frames = (config.frames.odom, config.frames.base_link)
        self._static: dict = {}
        self._snapshot: KeyframeSnapshot = self._mapper.snapshot()
        self._mapper_stats = dataclasses.replace(self._mapper.stats)
        self._counters = {'scans_received': 0, 'dropped_scans': 0, 'input_errors': 0,
                          'last_input_error': '', 'scans_processed': 0,
                          'consecutive_refusals': 0, 'map_points': 0}
        self._reported_problems = 0
        self._last_map_time = -float('inf')
        self._rates = {k: RateTracker(RATE_WINDOW_S) for k in ('scan', 'odometry')}

        self._tf = TransformPublisher(self)
        self._path_pub = self.create_publisher(Path, '~/path', LATCHED_QOS)
        self._keyframes_pub = self.create_publisher(PoseArray, '~/keyframes', LATCHED_QOS)
        self._map_pub = self.create_publisher(PointCloud2, '~/map', LATCHED_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_subscription(PointCloud2, config.topics.points, self._on_cloud,
                                 _sensor_qos(config))
        source = config.odometry.source
        if source == 'odom':
            odom_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT,
                                  durability=DurabilityPolicy.VOLATILE,
                                  history=HistoryPolicy.KEEP_LAST)
            self.create_subscription(Odometry, config.topics.odom, self._on_odometry, odom_qos)
        elif source == 'tf':
            self.create_subscription(TFMessage, '/tf', self._on_tf, TF_QOS)
        if source != 'none':
            self.create_subscription(TFMessage, '/tf_static', self._on_tf_static, TF_STATIC_QOS)
        self.create_service(Trigger, '~/save_map', self._on_save_map)
        self.create_service(Trigger, '~/reset', self._on_reset)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._work, name='multiview_worker', daemon=True)
        self._worker.start()
        prior = 'LiDAR only' if source == 'none' else f'odometry from {source}'
        self.get_logger().info(
            f'mapping {self.resolve_topic_name(config.topics.points)} ({prior}); TF '
            f'{config.frames.map} -> {"<lidar frame>" if source == "none" else "odom"}')

    # --- parameters ------------------------------------------------------------------------

    def _on_parameters(self, configs: list) -> None:
        (config,) = configs
        with self._lock:
            self._config = config
            self._odometry.max_extrapolation_ns = config.odometry.max_extrapolation_ns

    # --- callbacks: convert and push only --------------------------------------------------

    def _input_error(self, source: str, reason: str) -> None:
        with self._lock:
            self._counters['input_errors'] += 1
            self._counters['last_input_error'] = f'{source}: {reason}'
        self.get_logger().warning(f'{source}: {reason}', throttle_duration_sec=1.0)

    def _on_cloud(self, msg: PointCloud2) -> None:
        self._rates['scan'].tick(time.monotonic())
        with self._lock:
            self._counters['scans_received'] += 1
        try:
            frame, _ = cloud_to_frame(msg)
        except ValueError as error:
            self._input_error('points', str(error))
            return
        if len(frame) == 0:
            total = msg.width * msg.height
            self._input_error('points', 'empty cloud: no points' if total == 0 else
                              f'no finite points: all {total} points are NaN or inf')
            return
        with self._wake:
            if len(self._queue) >= self._config.input.queue_size:
                self._queue.popleft()
                with self._lock:
                    self._counters['dropped_scans'] += 1
            self._queue.append(frame)
            self._wake.notify()

    def _on_odometry(self, msg: Odometry) -> None:
        self._rates['odometry'].tick(time.monotonic())
        try:
            T = _pose_to_matrix(msg.pose.pose)
        except ValueError as error:
            self._input_error('odom', str(error))
            return
        frames = (msg.header.frame_id or self._config.frames.odom,
                  msg.child_frame_id or self._config.frames.base_link)
        with self._lock:
            self._odom_frames = frames
            self._add_odometry(stamp_to_ns(msg.header.stamp), T)

    def _on_tf(self, msg: TFMessage) -> None:
        frames = self._config.frames
        for transform in msg.transforms:
            if transform.header.frame_id.lstrip('/') != frames.odom \
                    or transform.child_frame_id.lstrip('/') != frames.base_link:
                continue
            self._rates['odometry'].tick(time.monotonic())
            try:
                T = transform_to_matrix(transform)
            except ValueError as error:
                self._input_error('tf', str(error))
                continue
            with self._lock:
                self._add_odometry(stamp_to_ns(transform.header.stamp), T)

    def _add_odometry(self, stamp_ns: int, T) -> None:
        """Add one odometry sample (caller holds the lock)."""
        try:
            in_order = self._odometry.add(stamp_ns, T)
        except ValueError as error:
            self._counters['input_errors'] += 1
            self._counters['last_input_error'] = f'odometry: {error}'
            return
        if not in_order:
            self._counters['input_errors'] += 1
            self._counters['last_input_error'] = 'odometry: stamp jumped back: history cleared'

    def _on_tf_static(self, msg: TFMessage) -> None:
        with self._lock:
            for transform in msg.transforms:
                try:
                    T = transform_to_matrix(transform)
                except ValueError as error:
                    self._counters['input_errors'] += 1
                    self._counters['last_input_error'] = f'tf_static: {error}'
                    continue
                self._static[transform.child_frame_id.lstrip('/')] = (
                    transform.header.frame_id.lstrip('/'), T)

    # --- services --------------------------------------------------------------------------

    def _on_save_map(self, request, response):
        snapshot = self._snapshot
        config = self._config.output
        try:
            map_path, tum_path = snapshot.save(config.save_directory, config.map_format)
        except (ValueError, OSError) as error:
            response.success, response.message = False, f'map not saved: {error}'
            return response
        response.success = True
        response.message = (f'wrote {map_path} ({len(snapshot.map_points())} points) and '
                            f'{tum_path} ({len(snapshot.stamps_ns)} keyframes)')
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request, response):
        with self._wake:
            self._reset_done.clear()
            self._reset_requested = True
            self._queue.clear()
            self._wake.notify()
        response.success = self._reset_done.wait(RESET_TIMEOUT_S)
        response.message = 'new map started' if response.success else \
            f'the worker did not reset within {RESET_TIMEOUT_S} s'
        return response

    # --- worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        map_due = float('inf')
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._stop or self._reset_requested,
                                    timeout=max(map_due - time.monotonic(), 0.0)
                                    if map_due < float('inf') else None)
                if self._stop:
                    return
                reset, self._reset_requested = self._reset_requested, False
                frame = self._queue.popleft() if self._queue and not reset else None
            try:
                if reset:
                    self._reset()
                    map_due = time.monotonic()
                elif frame is not None and self._process_counted(frame):
                    map_due = min(map_due, self._last_map_time + self._config.map.publish_period)
                if time.monotonic() >= map_due:
                    self._publish_map()
                    map_due = float('inf')
            except Exception as error:  # noqa: B902 (the worker must survive any one scan)
                self.get_logger().error(f'multiview worker: {type(error).__name__}: {error}')
                with self._lock:
                    self._counters['input_errors'] += 1
                    self._counters['last_input_error'] = \
                        f'node error: {type(error).__name__}: {error}'

            finally:
                if reset:
                    self._reset_done.set()

    def _reset(self) -> None:
        config = self._config
        mapper = make_mapper(config)
        mapper.stats = dataclasses.replace(self._mapper.stats, resets=self._mapper.stats.resets
                                           + 1)
        self._mapper = mapper
        with self._lock:
            self._snapshot = mapper.snapshot()
            self._mapper_stats = dataclasses.replace(mapper.stats)
            self._odometry = PoseHistory(config.odometry.buffer_duration_ns,
                                         config.odometry.max_extrapolation_ns)
            self._counters['consecutive_refusals'] = 0
        self._publish_keyframes(mapper.snapshot(), self.get_clock().now().nanoseconds)
        self.get_logger().info('reset: new map started')

    def _odometry_prior(self, frame: CloudFrame):
        """
        Return ``T_odom_lidar`` at the scan stamp, or the reason it is unknown.

        Odometry and scans come on different topics, so a scan may arrive before the odometry
        sample after its stamp: it waits up to ``odometry.max_wait`` for that sample.
        """
        deadline = time.monotonic() + self._config.odometry.max_wait
        while True:
            with self._lock:
                newest = self._odometry.newest_ns
            if newest is not None and newest >= frame.stamp_ns \
                    or time.monotonic() >= deadline or self._stop:
                break
            time.sleep(ODOMETRY_POLL_S)
        with self._lock:
            T_odom_base = self._odometry.lookup(frame.stamp_ns)
            n_samples = len(self._odometry)
            base = self._odom_frames[1]
            lidar = self._config.frames.lidar or frame.frame_id
            T_base_lidar = chain_transform(self._static, base, lidar)
        if T_base_lidar is None:
            return f'no transform {base} -> {lidar} on /tf_static'
        if T_odom_base is None:
            return (f'no odometry at the scan stamp {frame.stamp_ns * 1e-9:.3f} s '
                    f'({n_samples} samples kept)')
        return T_odom_base @ T_base_lidar

    def _process_counted(self, frame: CloudFrame) -> bool:
        """Run :meth:`_process` and count the scan as processed whatever happens."""
        try:
            return self._process(frame)
        finally:
            with self._lock:
                self._counters['scans_processed'] += 1

    def _process(self, frame: CloudFrame) -> bool:
        """Run the mapper on one scan and publish; return True when the keyframes changed."""
        config = self._config
        prior = None if config.odometry.source == 'none' else self._odometry_prior(frame)
        if isinstance(prior, str):
            outcome = self._mapper.refuse(prior)
        else:
            outcome = self._mapper.add_scan(frame.points, frame.stamp_ns, prior)
        snapshot = self._mapper.snapshot()
        changed = snapshot.version != self._snapshot.version
        with self._lock:
            c = self._counters
            refused = outcome.status == 'refused'
            c['consecutive_refusals'] = c['consecutive_refusals'] + 1 if refused else 0
            self._mapper_stats = dataclasses.replace(self._mapper.stats)
            self._snapshot = snapshot
            odom_frame = self._odom_frames[0]
        if refused:
            self.get_logger().warning(f'scan {frame.stamp_ns * 1e-9:.3f} s refused: '
                                      f'{outcome.reason}', throttle_duration_sec=1.0)
        self._publish_tf(outcome, frame, odom_frame, config)
        if changed:
            self._publish_keyframes(snapshot, frame.stamp_ns)
        return changed

    # --- publishing ------------------------------------------------------------------------

    def _publish_tf(self, outcome: ScanOutcome, frame: CloudFrame, odom_frame: str,
                    config: MultiviewNodeConfig) -> None:
        if not config.output.publish_tf:
            return
        if config.odometry.source == 'none':
            T, child = outcome.T_map_scan, config.frames.lidar or frame.frame_id
        else:
            T, child = self._mapper.T_map_odom(), odom_frame
        if T is None:
            return
        self._tf.send([matrix_to_transform(T, frame.stamp_ns, config.frames.map, child)])

    def _publish_keyframes(self, snapshot: KeyframeSnapshot, stamp_ns: int) -> None:
        map_frame = self._config.frames.map
        header = make_header(stamp_ns, map_frame)
        path = Path(header=header)
        poses = []
        for stamp, T in zip(snapshot.stamps_ns, snapshot.poses):
            pose = _pose_msg(T, int(stamp), map_frame)
            poses.append(pose)
            path.poses.append(PoseStamped(header=make_header(int(stamp), map_frame), pose=pose))
        self._path_pub.publish(path)
        self._keyframes_pub.publish(PoseArray(header=header, poses=poses))

    def _publish_map(self) -> None:
        snapshot = self._snapshot
        points = snapshot.map_points()
        stamp = int(snapshot.stamps_ns[-1]) if len(snapshot.stamps_ns) else \
            self.get_clock().now().nanoseconds
        self._map_pub.publish(numpy_to_cloud(points, stamp, self._config.frames.map))
        self._last_map_time = time.monotonic()
        with self._lock:
            self._counters['map_points'] = len(points)

    # --- diagnostics -----------------------------------------------------------------------

    def diagnostic_values(self) -> dict:
        """Return a snapshot of every diagnostics key (:data:`MULTIVIEW_KEYS`)."""
        now = time.monotonic()
        with self._lock:
            c = dict(self._counters)
            s = self._mapper_stats
            snapshot = self._snapshot
        with self._wake:
            depth = len(self._queue)
        return {
            'odometry_source': self._config.odometry.source,
            'scan_rate_hz': self._rates['scan'].rate(now),
            'odometry_rate_hz': self._rates['odometry'].rate(now),
            'scans_received': c['scans_received'],
            'queue_depth': depth,
            'dropped_scans': c['dropped_scans'],
            'input_errors': c['input_errors'],
            'last_input_error': c['last_input_error'],
            'scans_processed': c['scans_processed'],
            'refused_scans': s.refused,
            'registration_failures': s.registration_failures,
            'time_jumps': s.time_jumps,
            'consecutive_refusals': c['consecutive_refusals'],
            'last_refusal_reason': s.last_reason,
            'keyframes': len(snapshot.stamps_ns),
            'edges': snapshot.n_edges,
            'loop_closures': snapshot.n_loop_closures,
            'pruned_edges': s.pruned_edges,
            'discarded_edges': s.discarded_edges,
            'odometry_confirmed_edges': s.odometry_confirmed,
            'prediction_confirmed_edges': s.prediction_confirmed,
            'last_solve_ms': s.solve_time_ms,
            'rotation_residual_median_deg': s.rotation_residual_deg[0],
            'rotation_residual_max_deg': s.rotation_residual_deg[1],
            'translation_residual_median_m': s.translation_residual_m[0],
            'translation_residual_max_m': s.translation_residual_m[1],
            'map_points': c['map_points'],
            'resets': s.resets,
        }

    def _publish_diagnostics(self) -> None:
        values = self.diagnostic_values()
        problems = values['input_errors'] + values['refused_scans']
        level, message = multiview_level(values, problems - self._reported_problems)
        self._reported_problems = problems
        self._diag_pub.publish(make_diagnostic_array(
            self.get_clock().now().nanoseconds, f'{self.get_name()}: multiview',
            self.get_fully_qualified_name(), level, message, values))

    def destroy_node(self) -> None:
        """Stop the worker thread, then destroy the node."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args=None) -> int:
    """
    Run the multiview node until Ctrl-C or shutdown.

    :param args: ROS command-line arguments (default: ``sys.argv``).
    :return: 0 on a clean shutdown, 1 when the node could not start (invalid parameters).
    """
    return run_node(MultiviewNode, NODE_NAME, args)


if __name__ == '__main__':
    raise SystemExit(main())
