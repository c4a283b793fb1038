"""
Write a simulated drive as a rosbag2 (MCAP or sqlite3) with ``rosbags`` (no ROS needed).

Output folder::

    <out>/bag/                        rosbag2 (metadata.yaml + .mcap or .db3)
    <out>/ground_truth.csv            true sensor and base_link poses per image and scan
    <out>/ground_truth_base_link.tum  true base_link trajectory at the odometry rate
    <out>/synthetic.yaml              seed, config, calibration and frame names

Topics (names from the config): image (``sensor_msgs/Image`` rgb8, or ``CompressedImage`` on
``<image>/compressed``), camera_info, points (``PointCloud2``: x, y, z, intensity float32, ring
uint16, time float32 seconds after the stamp; 22-byte points as ``velodyne_pointcloud``), odom
(``nav_msgs/Odometry`` with noise), ``/tf`` (odom -> base_link from that odometry) and
``/tf_static`` (base_link -> LiDAR and camera, transient local, reliable, depth 1).
Messages are logged at stamp + the stream's latency (a scan is published after its sweep), in
log-time order. Nothing time-dependent enters the files: same seed and config -> same bytes.
"""

from __future__ import annotations

from dataclasses import asdict
import os
from pathlib import Path

import cv2
import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, \
    QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
import yaml

from .ground_truth import write_ground_truth_csv
from .odometry import simulate_odometry
from .progress import Progress
from .simulator import RNG_ODOM, Simulator
from ..core.geometry.rotations import matrix_to_quat
from ..core.multiview.map_files import write_tum

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
T = TYPESTORE.types

POINT_DTYPE = np.dtype({'names': ['x', 'y', 'z', 'intensity', 'ring', 'time'],
                        'formats': ['<f4', '<f4', '<f4', '<f4', '<u2', '<f4'],
                        'offsets': [0, 4, 8, 12, 16, 18], 'itemsize': 22})

_INFINITE = QosTime(9223372036, 854775807)
_ZERO = QosTime(0, 0)


def _qos(reliable: bool, transient_local: bool = False, depth: int = 10) -> Qos:
    return Qos(QosHistory.KEEP_LAST, depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               _INFINITE, _INFINITE, QosLiveliness.AUTOMATIC, _INFINITE, False)


def _header(stamp_ns: int, frame_id: str):
    sec, nsec = divmod(int(stamp_ns), 10**9)
    return T['std_msgs/msg/Header'](T['builtin_interfaces/msg/Time'](sec, nsec), frame_id)


def _transform_msg(stamp_ns: int, parent: str, child: str, M: np.ndarray):
    q = matrix_to_quat(M[:3, :3])
    return T['geometry_msgs/msg/TransformStamped'](
        _header(stamp_ns, parent), child,
        T['geometry_msgs/msg/Transform'](T['geometry_msgs/msg/Vector3'](*M[:3, 3]),
                                         T['geometry_msgs/msg/Quaternion'](*q)))


def image_message(image: np.ndarray, stamp_ns: int, frame_id: str, image_format: str = 'raw',
                  jpeg_quality: int = 90):
    """``sensor_msgs/Image`` (rgb8) or ``CompressedImage`` (jpeg / png) of an RGB image."""
    h, w = image.shape[:2]
    if image_format == 'raw':
        return T['sensor_msgs/msg/Image'](_header(stamp_ns, frame_id), h, w, 'rgb8', 0, 3 * w,
                                          np.ascontiguousarray(image).reshape(-1))
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if image_format == 'jpeg':
        ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    elif image_format == 'png':
        ok, buf = cv2.imencode('.png', bgr)
    else:
        raise ValueError(f"image_format must be 'raw', 'jpeg' or 'png', got {image_format!r}")
    if not ok:
        raise ValueError(f'cv2 could not encode the image as {image_format}')
    return T['sensor_msgs/msg/CompressedImage'](_header(stamp_ns, frame_id),
                                                f'rgb8; {image_format} compressed bgr8',
                                                buf.reshape(-1).astype(np.uint8))


def camera_info_message(camera, stamp_ns: int, frame_id: str):
    """``sensor_msgs/CameraInfo`` of a :class:`CameraModel` (plumb_bob, zeros when undistorted)."""
    D = camera.D if camera.distortion_model == 'plumb_bob' else np.zeros(5)
    P = np.hstack([camera.K, np.zeros((3, 1))])
    return T['sensor_msgs/msg/CameraInfo'](
        _header(stamp_ns, frame_id), camera.height, camera.width, 'plumb_bob',
        np.asarray(D, dtype=np.float64), camera.K.reshape(-1).astype(np.float64),
        np.eye(3).reshape(-1), P.reshape(-1), 0, 0,
        T['sensor_msgs/msg/RegionOfInterest'](0, 0, 0, 0, False))


def pointcloud_message(cloud, frame_id: str | None = None):
    """``sensor_msgs/PointCloud2`` (x, y, z, intensity, ring, time) of a :class:`CloudFrame`."""
    n = len(cloud)
    data = np.zeros(n, dtype=POINT_DTYPE)
    data['x'], data['y'], data['z'] = cloud.points.T
    data['intensity'] = cloud.intensity if cloud.intensity is not None else 0.0
    data['ring'] = cloud.ring if cloud.ring is not None else 0
    data['time'] = cloud.time if cloud.time is not None else 0.0
    PF = T['sensor_msgs/msg/PointField']
    fields = [PF('x', 0, 7, 1), PF('y', 4, 7, 1), PF('z', 8, 7, 1), PF('intensity', 12, 7, 1),
              PF('ring', 16, 4, 1), PF('time', 18, 7, 1)]
    return T['sensor_msgs/msg/PointCloud2'](
        _header(cloud.stamp_ns, frame_id or cloud.frame_id), 1, n, fields, False,
        POINT_DTYPE.itemsize, POINT_DTYPE.itemsize * n, data.view(np.uint8).reshape(-1), True)


def odometry_message(stamp_ns: int, odom_frame: str, base_frame: str, M: np.ndarray,
                     speed: float, yaw_rate: float):
    """``nav_msgs/Odometry`` with a diagonal covariance."""
    q = matrix_to_quat(M[:3, :3])
    pose = T['geometry_msgs/msg/Pose'](T['geometry_msgs/msg/Point'](*M[:3, 3]),
                                       T['geometry_msgs/msg/Quaternion'](*q))
    cov = np.diag([0.05, 0.05, 1e-4, 1e-4, 1e-4, 0.01]).reshape(-1)
    twist = T['geometry_msgs/msg/Twist'](T['geometry_msgs/msg/Vector3'](float(speed), 0.0, 0.0),
                                         T['geometry_msgs/msg/Vector3'](0.0, 0.0, float(yaw_rate)))
    tcov = np.diag([0.01, 0.01, 1e-4, 1e-4, 1e-4, 1e-3]).reshape(-1)
    return T['nav_msgs/msg/Odometry'](
        _header(stamp_ns, odom_frame), base_frame,
        T['geometry_msgs/msg/PoseWithCovariance'](pose, cov),
        T['geometry_msgs/msg/TwistWithCovariance'](twist, tcov))


# Event kinds in the order they are written when log times tie.
_ODOM, _CAMERA, _LIDAR = 0, 1, 2


def write_bag(sim: Simulator, out_dir: str | os.PathLike, storage: str | None = None,
              image_format: str | None = None, duration_s: float | None = None,
              progress: Progress | None = None) -> dict:
    """
    Simulate the configured drive and write the bag and ground-truth files.

    :param sim: the simulator.
    :param out_dir: output folder (created; its ``bag/`` must not exist yet).
    :param storage: ``'mcap'`` or ``'sqlite3'`` (default: ``output.storage``).
    :param image_format: ``'raw'``, ``'jpeg'`` or ``'png'`` (default: ``output.image_format``).
    :param duration_s: length of the drive (default: ``output.duration_s``).
    :param progress: called with ``(done, total)`` after each image or scan.
    :return: summary dict (paths, message counts, duration).
    """
    cfg = sim.config
    storage = storage or cfg.output.storage
    image_format = image_format or cfg.output.image_format
    if storage not in ('mcap', 'sqlite3'):
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    if image_format not in ('raw', 'jpeg', 'png'):
        raise ValueError(f"image_format must be 'raw', 'jpeg' or 'png', got {image_format!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fr, tp, clk = cfg.frames, cfg.topics, cfg.clocks
    streams = sim.stamps(duration_s)
    cam, lid, odo = streams['camera'].stamps_ns, streams['lidar'].stamps_ns, \
        streams['odom'].stamps_ns
    odom = simulate_odometry(sim.trajectory, sim.seconds(odo), odo, cfg.odometry,
                             sim.rng(RNG_ODOM))

    def lat(clock):
        return int(round(clock.latency_s * 1e9))
    log = np.concatenate([odo + lat(clk.odom), cam + lat(clk.camera), lid + lat(clk.lidar)])
    kind = np.concatenate([np.full(len(odo), _ODOM), np.full(len(cam), _CAMERA),
                           np.full(len(lid), _LIDAR)])
    index = np.concatenate([np.arange(len(odo)), np.arange(len(cam)), np.arange(len(lid))])
    order = np.lexsort((index, kind, log))

    writer = Writer(out / 'bag', version=9, storage_plugin=StoragePlugin.MCAP
                    if storage == 'mcap' else StoragePlugin.SQLITE3)
    writer.set_custom_data('i2p_registration.synthetic_seed', str(sim.seed))
    writer.open()
    image_topic = tp.image if image_format == 'raw' else tp.image.rstrip('/') + '/compressed'
    image_type = 'sensor_msgs/msg/Image' if image_format == 'raw' \
        else 'sensor_msgs/msg/CompressedImage'
    sensor_qos, reliable = _qos(False, depth=5), _qos(True, depth=100)
    conns = {
        'image': writer.add_connection(image_topic, image_type, typestore=TYPESTORE,
                                       offered_qos_profiles=[sensor_qos]),
        'info': writer.add_connection(tp.camera_info, 'sensor_msgs/msg/CameraInfo',
                                      typestore=TYPESTORE, offered_qos_profiles=[sensor_qos]),
        'points': writer.add_connection(tp.points, 'sensor_msgs/msg/PointCloud2',
                                        typestore=TYPESTORE, offered_qos_profiles=[sensor_qos]),
        'odom': writer.add_connection(tp.odom, 'nav_msgs/msg/Odometry', typestore=TYPESTORE,
                                      offered_qos_profiles=[reliable]),
        'tf': writer.add_connection(tp.tf, 'tf2_msgs/msg/TFMessage', typestore=TYPESTORE,
                                    offered_qos_profiles=[reliable]),
        'tf_static': writer.add_connection(tp.tf_static, 'tf2_msgs/msg/TFMessage',
                                           typestore=TYPESTORE,
                                           offered_qos_profiles=[_qos(True, True, 1)]),
    }

    def put(name, msg, log_ns):
        writer.write(conns[name], int(log_ns), TYPESTORE.serialize_cdr(msg, msg.__msgtype__))

    first = int(log[order[0]])
    static = T['tf2_msgs/msg/TFMessage']([
        _transform_msg(first, fr.base_link, fr.lidar, sim.T_base_lidar),
        _transform_msg(first, fr.base_link, fr.camera, sim.T_base_cam)])
    put('tf_static', static, first)
    gt_rows = []
    total = len(cam) + len(lid)
    done = 0
    try:
        for k in order:
            i, log_ns = int(index[k]), int(log[k])
            if kind[k] == _ODOM:
                M = odom.T_odom_base[i]
                put('odom', odometry_message(odo[i], fr.odom, fr.base_link, M, odom.speed[i],
                                             odom.yaw_rate[i]), log_ns)
                put('tf', T['tf2_msgs/msg/TFMessage']([
                    _transform_msg(odo[i], fr.odom, fr.base_link, M)]), log_ns)
                continue
            stamp = int(cam[i] if kind[k] == _CAMERA else lid[i])
            if kind[k] == _CAMERA:
                frame, _ = sim.image(stamp, i)
                put('image', image_message(frame.image, stamp, fr.camera, image_format,
                                           cfg.output.jpeg_quality), log_ns)
                put('info', camera_info_message(sim.camera, stamp, fr.camera), log_ns)
                gt_rows.append(('camera', stamp, i, fr.camera, sim.T_map_camera(stamp)))
            else:
                put('points', pointcloud_message(sim.scan(stamp, i)), log_ns)
                gt_rows.append(('lidar', stamp, i, fr.lidar, sim.T_map_lidar(stamp)))
            done += 1
            if progress is not None:
                progress(done, total)
    finally:
        writer.close()
    rows = sorted(gt_rows, key=lambda r: (r[1], r[0]))
    write_ground_truth_csv(out / 'ground_truth.csv', [
        {'stream': s, 'stamp_ns': t, 'index': i, 'frame_id': f, 'T_map_sensor': M,
         'T_map_base': sim.T_map_base(t)} for s, t, i, f, M in rows])
    write_tum(out / 'ground_truth_base_link.tum', odo, sim.T_map_base(odo))
    meta = {'seed': sim.seed, 'frames': asdict(fr), 'camera': {
        'K': sim.camera.K.tolist(), 'width': sim.camera.width, 'height': sim.camera.height,
        'distortion_model': sim.camera.distortion_model, 'D': sim.camera.D.tolist()},
        'T_cam_lidar': sim.T_cam_lidar.tolist(), 'T_base_lidar': sim.T_base_lidar.tolist(),
        'T_base_cam': sim.T_base_cam.tolist(), 'T_map_odom': sim.T_map_base(odo[0]).tolist(),
        'config': cfg.to_dict()}
    with open(out / 'synthetic.yaml', 'w', encoding='utf-8') as f:
        yaml.safe_dump(meta, f, sort_keys=True)
    return {'format': 'rosbag2', 'storage': storage, 'path': str(out / 'bag'),
            'images': int(len(cam)), 'scans': int(len(lid)), 'odometry': int(len(odo)),
            'duration_s': float((max(cam[-1], lid[-1]) - min(cam[0], lid[0])) * 1e-9)}
