"""
The registration node: non-synchronized camera and LiDAR in; TF, pose, diagnostics, overlay out.

Threading. Subscription callbacks run in the executor and only convert a message and push the
frame into the :class:`~i2p_registration.core.buffering.StreamPairer`; the callback that makes a
pair ready hands the newest pair to one worker thread, replacing (and counting as dropped) any pair
still waiting. The worker runs the registrar and publishes, so the executor never waits for a
registration.

Outputs, stamped with the image stamp:

- ``localization`` mode: ``<parent> -> <child>`` on ``/tf``, the camera pose in the cloud frame
  (``inverse(T_cam_lidar)``); ``calibration`` mode: the robust running average of the same
  transform on ``/tf_static`` once converged, again whenever it moves. ``<parent>`` is
  ``output.parent_frame`` or the cloud's frame (the map frame with ``topics.map``); the transform
  is always relative to the cloud's frame, so ``output.parent_frame`` only renames that frame
  (e.g. for clouds with an empty ``frame_id``). ``<child>`` is ``output.child_frame`` or
  ``<camera frame>_registered``.
- ``~/pose``: ``PoseWithCovarianceStamped`` of the same transform, covariance in the parent frame
  (``core/pose_covariance.py``).
- ``/diagnostics`` at 1 Hz (steady clock) and ``~/overlay`` (when subscribed to and
  ``output.overlay``).

A failed registration, or one with status ``low_confidence`` or a score below
``registration.min_score``, publishes no TF and no pose; diagnostics give the reason.

The prior handed to the registrar comes from the ``prior.*`` parameters (camera pose in the cloud
frame, ``PriorConfig`` in ``core/config.py``). With ``topics.map`` the newest map cloud is used
whatever its stamp (pairing policy ``latest`` without ``max_dt``).
"""

from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from i2p_registration.core.buffering import (LatestPolicy, make_stream_pairer, PushResult,
                                             StreamPairer, TimeBuffer)
from i2p_registration.core.calibration_average import CalibrationAverager
from i2p_registration.core.config import CalibrationConfig, PriorConfig, RegistrationNodeConfig
from i2p_registration.core.geometry.se3 import inverse
from i2p_registration.core.latency import PercentileTracker, RateTracker
from i2p_registration.core.pose_covariance import covariance_in_parent_frame
from i2p_registration.core.registration.base import (Prior, publication_status, Registrar,
                                                     RegistrationResult, Status)
from i2p_registration.ros.conversions import (camera_info_to_model, cloud_to_frame,
                                              image_to_frame, matrix_to_transform,
                                              numpy_to_image)
from i2p_registration.ros.diagnostics import make_diagnostic_array, registration_level
from i2p_registration.ros.overlay import render_overlay
from i2p_registration.ros.parameters import declare_config_parameters
from i2p_registration.ros.spin import run_node
from i2p_registration.ros.tf_publisher import TransformPublisher
import numpy as np
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

NODE_NAME = 'i2p_registration_node'
DIAGNOSTICS_PERIOD_S = 1.0
RATE_WINDOW_S = 5.0


def make_default_registrar(config: RegistrationNodeConfig) -> Registrar:
    """
    Build the registrar that ``registration.*`` describes, with the registration factory.

    Also limits this process's CPU threads to ``registration.threads``.

    :raises ValueError: when the method cannot be built (unknown, unavailable device...).
    """
    # Imported here: the factory imports torch (seconds), which an injected registrar never needs.
    from i2p_registration.core.registration.factory import registrar_from_config
    return registrar_from_config(config.registration)


def _device_of(registrar: Registrar) -> str:
    """Return the compute device of a registrar (its own or its search's), 'cpu' if none."""
    for owner in (registrar, getattr(registrar, 'search', None)):
        device = getattr(owner, 'device', None)
        if device is not None:
            return str(device)
    return 'cpu'


def _sensor_qos(config: RegistrationNodeConfig) -> QoSProfile:
    reliability = (ReliabilityPolicy.RELIABLE if config.qos.reliability == 'reliable'
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(depth=config.qos.depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


def _make_prior(config: PriorConfig) -> Prior:
    return Prior(inverse(config.T_lidar_cam), config.translation_range, config.rotation_range)


def _make_averager(c: CalibrationConfig) -> CalibrationAverager:
    return CalibrationAverager(c.window, c.min_inliers, c.max_translation, c.max_rotation,
                               c.converged_translation, c.converged_rotation,
                               c.update_translation, c.update_rotation)


class RegistrationNode(Node):
    """
    Camera-to-LiDAR registration on live or replayed topics (see the module docstring).

    :param registrar: the registration method; None builds it from ``registration.*`` with the
        registration factory (tests and benchmarks inject their own here).
    :param node_name: the node's name (the parameters file key).
    :param kwargs: passed to ``rclpy.node.Node`` (context, namespace, parameter_overrides...).
    :raises ValueError: when a parameter override is invalid or the registrar cannot be built.
    """

    def __init__(self, registrar: Registrar | None = None, node_name: str = NODE_NAME,
                 **kwargs):
        self._pending = None
        self._stop = False
        self._wake = threading.Condition()
        self._worker = None
        super().__init__(node_name, **kwargs)
        (config,), self._validator = declare_config_parameters(
            self, [RegistrationNodeConfig], on_change=self._on_parameters)
        self._config: RegistrationNodeConfig = config
        self._injected = registrar is not None
        self._registrar = registrar if registrar is not None else make_default_registrar(config)
        self._prior = _make_prior(config.prior)
        self._averager = _make_averager(config.calibration)
        self._pairer = self._make_pairer(config)
        self._camera = None
        self._lock = threading.Lock()
        self._stats = {'dropped_pairs': 0, 'input_errors': 0, 'last_input_error': '',
                       'registrations': 0, 'published': 0, 'last_score': float('nan'),
                       'last_status': 'none', 'last_method': self._registrar.name,
                       'consecutive_failures': 0, 'last_failure_reason': '',
                       'calibration_converged': False, 'clock_resets': 0}
        self._reported_input_errors = 0
        self._rates = {k: RateTracker(RATE_WINDOW_S) for k in ('image', 'cloud', 'camera_info')}
        self._image_lag_ms = PercentileTracker()
        self._pair_dt_ms = PercentileTracker()
        self._latency_ms = PercentileTracker()
        self._overhead_ms = PercentileTracker()

        self._tf = TransformPublisher(self)
        self._pose_pub = self.create_publisher(PoseWithCovarianceStamped, '~/pose', 10)
        self._overlay_pub = self.create_publisher(Image, '~/overlay', 2)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        qos = _sensor_qos(config)
        topics = config.topics
        if topics.use_compressed:
            self.create_subscription(CompressedImage, topics.image + '/compressed',
                                     self._on_image, qos)
        else:
            self.create_subscription(Image, topics.image, self._on_image, qos)
        self.create_subscription(CameraInfo, topics.camera_info, self._on_camera_info, qos)
        self.create_subscription(PointCloud2, topics.map or topics.points, self._on_cloud, qos)
        self._diag_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        jump_back = Duration(nanoseconds=-config.buffering.jump_back_threshold_ns)
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=jump_back, on_clock_change=True),
            post_callback=self._on_clock_jump)

        self._worker = threading.Thread(target=self._work, name='registration_worker',
                                        daemon=True)
        self._worker.start()
        via = 'tf2_ros' if self._tf.uses_tf2_ros else 'tf2_msgs'
        self.get_logger().info(
            f'registering {self._resolve(topics.image)} with '
            f'{self._resolve(topics.map or topics.points)} by {self._registrar.name} in '
            f'{config.output.mode} mode (TF via {via})')

    # --- parameters ------------------------------------------------------------------------

    def _make_pairer(self, config: RegistrationNodeConfig) -> StreamPairer:
        if not config.topics.map:
            return make_stream_pairer(config.buffering)
        b = config.buffering

        def buffer() -> TimeBuffer:
            return TimeBuffer(b.max_count, b.max_age_ns, b.jump_back_threshold_ns)

        return StreamPairer(LatestPolicy(None), buffer(), buffer())

    def _on_parameters(self, configs: list) -> None:
        (config,) = configs
        with self._lock:
            if config.buffering != self._config.buffering:
                self._pairer = self._make_pairer(config)
            if config.calibration != self._config.calibration:
                self._averager = _make_averager(config.calibration)
            self._prior = _make_prior(config.prior)
            rebuild = not self._injected and config.registration != self._config.registration
            self._config = config
        if rebuild:
            # Built outside the lock; the worker picks the new registrar up at its next pair.
            self._registrar = make_default_registrar(config)

    def _resolve(self, topic: str) -> str:
        return self.resolve_topic_name(topic)

    # --- callbacks: convert and push only --------------------------------------------------

    def _input_error(self, source: str, reason: str) -> None:
        with self._lock:
            self._stats['input_errors'] += 1
            self._stats['last_input_error'] = f'{source}: {reason}'
        self.get_logger().warn(f'{source}: {reason}', throttle_duration_sec=1.0)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._rates['camera_info'].tick(time.monotonic())
        try:
            self._camera = camera_info_to_model(msg)
        except ValueError as error:
            self._input_error('camera_info', str(error))

    def _on_image(self, msg: Image | CompressedImage) -> None:
        received = time.perf_counter()
        self._rates['image'].tick(time.monotonic())
        camera = self._camera
        if camera is None:
            self._input_error('image', 'no valid CameraInfo received yet')
            return
        try:
            frame = image_to_frame(msg, camera)
        except ValueError as error:
            self._input_error('image', str(error))
            return
        self._image_lag_ms.add((self.get_clock().now().nanoseconds - frame.stamp_ns) * 1e-6)
        with self._lock:
            pairer = self._pairer
        self._note_push('image', pairer.add_image(frame), frame.stamp_ns, pairer)
        self._offer_pairs(pairer, received)

    def _on_cloud(self, msg: PointCloud2) -> None:
        received = time.perf_counter()
        self._rates['cloud'].tick(time.monotonic())
        try:
            frame, n_dropped = cloud_to_frame(msg)
        except ValueError as error:
            self._input_error('points', str(error))
            return
        if len(frame) == 0:
            total = msg.width * msg.height
            self._input_error('points', 'empty cloud: no points' if total == 0 else
                              f'no finite points: all {total} points are NaN or inf')
            return
        with self._lock:
            pairer = self._pairer
        self._note_push('points', pairer.add_cloud(frame), frame.stamp_ns, pairer)
        self._offer_pairs(pairer, received)

    def _note_push(self, source: str, result: PushResult, stamp_ns: int,
                   pairer: StreamPairer) -> None:
        if result is PushResult.RESET:
            self._input_error(source, f'stamp {stamp_ns * 1e-9:.3f} s jumped back: '
                              'buffers reset')
        elif result is PushResult.DROPPED_LATE:
            self._input_error(source, f'stamp {stamp_ns * 1e-9:.3f} s went backwards beyond '
                              'buffering.max_age: dropped')

    def _offer_pairs(self, pairer: StreamPairer, received: float) -> None:
        pairs = pairer.pop_ready_pairs()
        if not pairs:
            return
        for pair in pairs:
            self._pair_dt_ms.add(pair.dt_ns * 1e-6)
        with self._wake:
            stale = len(pairs) - 1 + (self._pending is not None)
            self._pending = (pairs[-1], received)
            self._wake.notify()
        if stale:
            with self._lock:
                self._stats['dropped_pairs'] += stale

    def _on_clock_jump(self, jump) -> None:
        if jump.clock_change == 0 and jump.delta.nanoseconds >= 0:
            return
        with self._lock:
            self._pairer.reset()
            self._stats['clock_resets'] += 1
        with self._wake:
            self._pending = None
        self._image_lag_ms.clear()
        self._input_error('clock', f'time jumped by {jump.delta.nanoseconds * 1e-9:.3f} s: '
                          'buffers reset')

    # --- worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        last_start = -float('inf')
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending is not None or self._stop)
                if self._stop:
                    return
                max_rate = self._config.processing.max_rate
                delay = last_start + 1.0 / max_rate - time.perf_counter() if max_rate else 0.0
                if delay > 0 and self._wake.wait_for(lambda: self._stop, timeout=delay):
                    return
                job, self._pending = self._pending, None
            if job is None:
                continue
            last_start = time.perf_counter()
            try:
                self._process(*job)
            except Exception as error:  # noqa: B902 (the worker must survive any one frame)
                self.get_logger().error(f'registration worker: {type(error).__name__}: {error}')
                with self._lock:
                    self._stats['last_failure_reason'] = f'node error: {error}'

    def _process(self, pair, received: float) -> None:
        start = time.perf_counter()
        try:
            result = self._registrar.register(pair.image, pair.cloud, self._prior)
        except Exception as error:  # noqa: B902 (a method bug must not stop the node)
            result = RegistrationResult.failure(self._registrar.name,
                                                f'{type(error).__name__}: {error}')
        registrar_s = time.perf_counter() - start
        config = self._config
        status, reason = publication_status(result, self._prior, config.registration.min_score)
        image = pair.image
        parent = config.output.parent_frame or pair.cloud.frame_id
        child = config.output.child_frame or f'{image.frame_id}_registered'
        published = False
        if status == Status.OK:
            published = self._publish(result, image.stamp_ns, parent, child, config)
            if not published:
                status, reason = Status.FAILED, 'estimate is not a rigid transform'
        if published:
            self._overhead_ms.add((time.perf_counter() - received - registrar_s) * 1e3)
        self._latency_ms.add(registrar_s * 1e3)
        with self._lock:
            s = self._stats
            s['registrations'] += 1
            s['published'] += int(published)
            s['last_score'] = float(result.score)
            s['last_status'] = status.value
            s['last_method'] = result.method
            s['consecutive_failures'] = 0 if published else s['consecutive_failures'] + 1
            if not published:
                s['last_failure_reason'] = reason or status.value
        if config.output.overlay and self._overlay_pub.get_subscription_count() > 0 \
                and np.isfinite(result.T_cam_lidar).all():
            rgb = render_overlay(image, pair.cloud, result.T_cam_lidar)
            self._overlay_pub.publish(numpy_to_image(rgb, image.stamp_ns, image.frame_id))

    def _publish(self, result: RegistrationResult, stamp_ns: int, parent: str, child: str,
                 config: RegistrationNodeConfig) -> bool:
        """Publish TF and pose of an accepted result; return False for a non-rigid estimate."""
        T_parent_child = inverse(result.T_cam_lidar)
        try:
            transform = matrix_to_transform(T_parent_child, stamp_ns, parent, child)
        except ValueError:
            return False
        if config.output.mode == 'localization':
            self._tf.send([transform])
        else:
            with self._lock:
                averager = self._averager
            estimate = averager.add(result.T_cam_lidar)
            with self._lock:
                self._stats['calibration_converged'] = estimate.converged
            if averager.should_publish(estimate):
                self._tf.send_static([matrix_to_transform(inverse(estimate.T_cam_lidar),
                                                          stamp_ns, parent, child)])
                averager.mark_published(estimate)
        pose = PoseWithCovarianceStamped()
        pose.header = transform.header
        t, q = transform.transform.translation, transform.transform.rotation
        pose.pose.pose.position.x, pose.pose.pose.position.y = t.x, t.y
        pose.pose.pose.position.z = t.z
        pose.pose.pose.orientation = q
        covariance = result.covariance
        if covariance.shape == (6, 6) and np.isfinite(covariance).all():
            pose.pose.covariance = covariance_in_parent_frame(covariance,
                                                              T_parent_child).reshape(-1)
        else:
            pose.pose.covariance = np.full(36, -1.0)
        self._pose_pub.publish(pose)
        return True

    # --- diagnostics -----------------------------------------------------------------------

    def diagnostic_values(self) -> dict:
        """Return a snapshot of every diagnostics key (``ros/diagnostics.py``)."""
        now = time.monotonic()
        with self._lock:
            s = dict(self._stats)
            stats = self._pairer.stats
        with self._wake:
            pending = int(self._pending is not None)
        return {
            'image_rate_hz': self._rates['image'].rate(now),
            'cloud_rate_hz': self._rates['cloud'].rate(now),
            'camera_info_rate_hz': self._rates['camera_info'].rate(now),
            'image_lag_p50_ms': self._image_lag_ms.percentile(50),
            'pairing_dt_last_ms': self._pair_dt_ms.last(),
            'pairing_dt_p50_ms': self._pair_dt_ms.percentile(50),
            'queue_depth': stats.images_buffered + stats.clouds_buffered + pending,
            'images_buffered': stats.images_buffered,
            'clouds_buffered': stats.clouds_buffered,
            'dropped_images': stats.images.dropped,
            'dropped_clouds': stats.clouds.dropped,
            'dropped_pairs': s['dropped_pairs'],
            'unmatched_images': stats.unmatched,
            'buffer_resets': stats.resets + s['clock_resets'],
            'input_errors': s['input_errors'],
            'last_input_error': s['last_input_error'],
            'registrations': s['registrations'],
            'published': s['published'],
            'latency_p50_ms': self._latency_ms.percentile(50),
            'latency_p95_ms': self._latency_ms.percentile(95),
            'node_overhead_p50_ms': self._overhead_ms.percentile(50),
            'node_overhead_p95_ms': self._overhead_ms.percentile(95),
            'last_score': s['last_score'],
            'last_status': s['last_status'],
            'last_method': s['last_method'],
            'consecutive_failures': s['consecutive_failures'],
            'device': _device_of(self._registrar),
            'mode': self._config.output.mode,
            'calibration_converged': s['calibration_converged'],
            'last_failure_reason': s['last_failure_reason'],
        }

    def _publish_diagnostics(self) -> None:
        values = self.diagnostic_values()
        level, message = registration_level(
            values, values['input_errors'] - self._reported_input_errors)
        self._reported_input_errors = values['input_errors']
        self._diag_pub.publish(make_diagnostic_array(
            self.get_clock().now().nanoseconds, f'{self.get_name()}: registration',
            self.get_fully_qualified_name(), level, message, values))

    def destroy_node(self) -> None:
        """Stop the worker thread, then destroy the node."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        super().destroy_node()


def main(args=None, registrar: Registrar | None = None) -> int:
    """
    Run the registration node until Ctrl-C or shutdown.

    :param args: ROS command-line arguments (default: ``sys.argv``).
    :param registrar: optional registrar to use instead of the one built from the parameters.
    :return: 0 on a clean shutdown, 1 when the node could not start (invalid parameters).
    """
    return run_node(lambda: RegistrationNode(registrar=registrar), NODE_NAME, args)


if __name__ == '__main__':
    raise SystemExit(main())
