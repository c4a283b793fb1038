r"""
``i2p-replay``: register the camera to the LiDAR along a recorded rosbag2, offline, without ROS.

Reads a rosbag2 (MCAP or sqlite3) with ``rosbags``, finds the image (``sensor_msgs/Image`` or
``CompressedImage``), ``CameraInfo`` and ``PointCloud2`` topics by type (or takes them from the
command line), pairs images with scans by the node's buffering policy (``buffering.*`` of a
node parameters file, ``config/registration.yaml`` defaults) and runs the node's Registrar on
every pair, from a prior given as ``--prior x y z roll pitch yaw`` (camera pose in the LiDAR
frame, the node's ``prior.*``) or read from the bag's ``/tf_static`` (LiDAR -> camera chain).

Output folder (``--multiview`` adds ``<out>/multiview/map.pcd`` and ``keyframes.tum``)::

    <out>/bag/              rosbag2 (MCAP) with /tf: <lidar frame> -> <camera frame>_registered
                            at each image stamp, accepted registrations only (as the node)
    <out>/registrations.csv every pair: stamps, status, published, score, the estimate (also
                            when not accepted, NaN when failed), per-stage timings
    <out>/trajectory.tum    accepted camera poses in the LiDAR frame (TUM: s tx ty tz qx qy qz qw)
    <out>/summary.json      counts, topics, skipped topics, where a truncated bag stopped

Examples::

    i2p-replay out/synth_0/bag
    i2p-replay drive.mcap --image-topic /cam/image/compressed --prior 0 0 0 -1.5708 0 -1.5708
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
import json
import os
from pathlib import Path
import sys
import time

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from ..core.buffering import make_stream_pairer
from ..core.config import load_ros_params_yaml, PriorConfig, RegistrationNodeConfig
from ..core.geometry.rotations import matrix_to_quat
from ..core.geometry.se3 import inverse
from ..core.registration.base import Prior, publication_status, RegistrationResult, Status
from ..data import bag_messages as bm
from ..data.bag_reader import BagInput
from ..data.progress import Progress

NODE_NAME = 'i2p_registration_node'
IMAGE_TYPES = (bm.IMAGE_TYPE, bm.COMPRESSED_TYPE)


class ReplayError(Exception):
    """A bag or an option that replay cannot work with; the message says what and where."""


# --- topic selection -------------------------------------------------------------------------

@dataclass
class Selection:
    """The topics replay reads and those it skips (``{topic: reason}``)."""

    image: str
    image_type: str
    camera_info: str
    points: str
    tf_static: str | None
    skipped: dict[str, str]


def _namespace(topic: str) -> str:
    return topic.rstrip('/').rsplit('/', 1)[0]


def select_topics(bag: BagInput, image: str | None = None, camera_info: str | None = None,
                  points: str | None = None) -> Selection:
    """
    Choose the image, camera_info and points topics: the ones given, else found by type.

    :raises ReplayError: naming the topic that is missing, ambiguous or of the wrong type.
    """
    def one(given, types, what):
        if given:
            if given not in bag.topics:
                raise ReplayError(f'{what} topic {given} is not in {bag.path} (topics: '
                                  f'{", ".join(sorted(bag.topics))})')
            if bag.topics[given] not in types:
                raise ReplayError(f'{what} topic {given} has type {bag.topics[given]}, expected '
                                  f'{" or ".join(types)}')
            return given
        found = sorted(t for t, m in bag.topics.items() if m in types)
        if not found:
            return None
        raw = [t for t in found if bag.topics[t] == types[0]]
        return (raw or found)[0]

    image = one(image, IMAGE_TYPES, 'image')
    if image is None:
        raise ReplayError(f'no image topic (sensor_msgs/msg/Image or CompressedImage) in '
                          f'{bag.path}; give --image-topic')
    points = one(points, (bm.CLOUD_TYPE,), 'points')
    if points is None:
        raise ReplayError(f'no sensor_msgs/msg/PointCloud2 topic in {bag.path}; give '
                          '--points-topic')
    if camera_info is None:
        infos = sorted(t for t, m in bag.topics.items() if m == bm.CAMERA_INFO_TYPE)
        near = [t for t in infos if _namespace(t) in (_namespace(image),
                                                      _namespace(_namespace(image)))]
        if not (near or infos):
            raise ReplayError(
                f'no sensor_msgs/msg/CameraInfo topic in {bag.path} for the image topic {image}'
                f' (expected e.g. {_namespace(image.removesuffix("/compressed"))}/camera_info);'
                ' replay needs the camera calibration: give --camera-info-topic')
        camera_info = (near or infos)[0]
    else:
        camera_info = one(camera_info, (bm.CAMERA_INFO_TYPE,), 'camera_info')
    tf_static = '/tf_static' if bag.topics.get('/tf_static') == bm.TF_TYPE else None
    used = {image, camera_info, points, tf_static}
    skipped = {}
    for topic, msgtype in sorted(bag.topics.items()):
        if topic in used:
            if not bag.known(msgtype):
                raise ReplayError(f'topic {topic} has the unknown message type {msgtype} (no '
                                  'definition in the bag or in ROS 2 Kilted)')
            continue
        skipped[topic] = f'unknown message type {msgtype}' if not bag.known(msgtype) \
            else f'not used ({msgtype})'
    return Selection(image, bag.topics[image], camera_info, points, tf_static, skipped)


# --- replay ----------------------------------------------------------------------------------

def prior_from_tf_static(bag: BagInput, topic: str, lidar_frame: str | None,
                         camera_frame: str | None) -> tuple[np.ndarray, str, str]:
    """
    Return ``T_lidar_cam`` from the bag's static transforms and the two frame names used.

    Frames default to the ``frame_id`` of the first point cloud and the first CameraInfo.

    :raises ReplayError: when there is no chain between the frames.
    """
    messages = []
    for _, msgtype, _, raw in bag.messages({topic}):
        messages.append(bag.deserialize(raw, msgtype))
    transforms = bm.static_transforms(messages)
    try:
        return bm.chain(transforms, lidar_frame, camera_frame), lidar_frame, camera_frame
    except ValueError as error:
        raise ReplayError(f'no prior: {error} on {topic}; give --prior x y z roll pitch yaw '
                          'or --lidar-frame / --camera-frame') from error


@dataclass
class ReplayResult:
    """What a replay did: per-pair rows and the counts of ``summary.json``."""

    rows: list[dict]
    summary: dict
    keyframes: object = None


def _first_frame_ids(bag: BagInput, sel: Selection) -> tuple[str | None, str | None]:
    lidar = camera = None
    for topic, msgtype, _, raw in bag.messages({sel.points, sel.camera_info}):
        msg = bag.deserialize(raw, msgtype)
        if topic == sel.points and lidar is None:
            lidar = msg.header.frame_id
        if topic == sel.camera_info and camera is None:
            camera = msg.header.frame_id
        if lidar and camera:
            break
    return lidar, camera


def _row(pair, result: RegistrationResult, accepted: bool) -> dict:
    finite = bool(np.isfinite(result.T_cam_lidar).all())
    T = inverse(result.T_cam_lidar) if finite else np.full((4, 4), np.nan)
    q = matrix_to_quat(T[:3, :3]) if finite else np.full(4, np.nan)
    row = {'image_stamp_ns': pair.image.stamp_ns, 'cloud_stamp_ns': pair.cloud.stamp_ns,
           'dt_ms': pair.dt_ns * 1e-6, 'status': result.status.value if accepted
           or result.status != Status.OK else 'low_confidence', 'published': accepted,
           'score': result.score, 'inlier_ratio': result.inlier_ratio,
           'x': T[0, 3], 'y': T[1, 3], 'z': T[2, 3], 'qx': q[0], 'qy': q[1], 'qz': q[2],
           'qw': q[3], 'reason': result.reason}
    row.update({f'{stage}_ms': ms for stage, ms in result.timings.items()})
    return row


def replay(bag_path: str | os.PathLike, registrar, config: RegistrationNodeConfig,
           prior: np.ndarray | None = None, image_topic: str | None = None,
           camera_info_topic: str | None = None, points_topic: str | None = None,
           lidar_frame: str | None = None, camera_frame: str | None = None,
           max_pairs: int | None = None, progress_stream=sys.stderr,
           mapper=None) -> ReplayResult:
    """
    Register every image-scan pair of a bag (see the module docstring).

    :param registrar: a :class:`~i2p_registration.core.registration.base.Registrar`.
    :param config: node configuration: ``buffering.*``, ``prior.*`` ranges and ``min_score``.
    :param prior: ``(4, 4)`` ``T_lidar_cam`` guess, or None to read it from ``/tf_static``.
    :param max_pairs: stop after this many registrations (None: all).
    :param mapper: optional multiview mapper (``core/multiview/mapper.py``, LiDAR only) fed
        with every scan; its keyframes end up in ``ReplayResult.keyframes``.
    :raises ReplayError: for a bag or topics that cannot be replayed.
    """
    bag = BagInput.from_path(bag_path)
    sel = select_topics(bag, image_topic, camera_info_topic, points_topic)
    if prior is None:
        if sel.tf_static is None:
            raise ReplayError(f'no prior: {bag.path} has no /tf_static; give --prior x y z roll '
                              'pitch yaw')
        if not (lidar_frame and camera_frame):
            found = _first_frame_ids(BagInput.from_path(bag_path), sel)
            lidar_frame, camera_frame = lidar_frame or found[0], camera_frame or found[1]
        prior, lidar_frame, camera_frame = prior_from_tf_static(
            BagInput.from_path(bag_path), sel.tf_static, lidar_frame, camera_frame)
    p = config.prior
    registration_prior = Prior(inverse(prior), p.translation_range, p.rotation_range)
    pairer = make_stream_pairer(config.buffering)
    total = sum(bag.counts.get(t, 0) for t in (sel.image, sel.points)) or None
    bar = Progress(total or 1, 'i2p-replay', progress_stream)
    counts = {'images': 0, 'clouds': 0, 'camera_info': 0, 'images_without_camera_info': 0,
              'input_errors': 0}
    camera, rows = None, []
    errors: list[str] = []
    started = time.perf_counter()
    done = 0
    for topic, msgtype, _, raw in bag.messages({sel.image, sel.camera_info, sel.points}):
        try:
            msg = bag.deserialize(raw, msgtype)
            if topic == sel.camera_info:
                counts['camera_info'] += 1
                camera = bm.camera_info_to_model(msg)
                continue
            done += 1
            if topic == sel.image:
                counts['images'] += 1
                if camera is None:
                    counts['images_without_camera_info'] += 1
                    continue
                pairer.add_image(bm.image_to_frame(msg, camera))
            else:
                counts['clouds'] += 1
                cloud, _ = bm.cloud_to_frame(msg)
                if len(cloud):
                    pairer.add_cloud(cloud)
                    if mapper is not None:
                        mapper.add_scan(cloud.points, cloud.stamp_ns)
        except (ValueError, KeyError) as error:
            counts['input_errors'] += 1
            errors.append(f'{topic}: {error}')
            continue
        for pair in pairer.pop_ready_pairs():
            result = registrar.register(pair.image, pair.cloud, registration_prior)
            accepted = publication_status(result, registration_prior,
                                          config.registration.min_score)[0] == Status.OK
            rows.append(_row(pair, result, accepted))
        bar(done, total or done + 1)
        if max_pairs is not None and len(rows) >= max_pairs:
            break
    if total is None:
        bar(done, done)
    if counts['camera_info'] == 0 and bag.stopped:
        raise ReplayError(f'{bag.path}: nothing readable ({bag.stopped})')
    if counts['camera_info'] == 0:
        raise ReplayError(f'the camera_info topic {sel.camera_info} has no readable message; '
                          'replay needs the camera calibration')
    stats = pairer.stats
    summary = {
        'bag': str(bag.path), 'image_topic': sel.image, 'image_type': sel.image_type,
        'camera_info_topic': sel.camera_info, 'points_topic': sel.points,
        'lidar_frame': lidar_frame, 'camera_frame': camera_frame,
        'prior_T_lidar_cam': np.asarray(prior).tolist(), 'skipped_topics': sel.skipped,
        'stopped': bag.stopped, **counts, 'pairs': len(rows),
        'published': sum(r['published'] for r in rows), 'unmatched_images': stats.unmatched,
        'dropped_images': stats.images.dropped, 'dropped_clouds': stats.clouds.dropped,
        'first_errors': errors[:5], 'seconds': round(time.perf_counter() - started, 2),
        'buffering': {k: v for k, v in config.to_flat().items() if k.startswith('buffering.')},
    }
    keyframes = None
    if mapper is not None:
        keyframes = mapper.snapshot()
        summary['keyframes'] = len(keyframes.stamps_ns)
    return ReplayResult(rows, summary, keyframes)


# --- writing ---------------------------------------------------------------------------------

def write_outputs(result: ReplayResult, out: Path, child_suffix: str = '_registered') -> dict:
    """Write the bag with /tf, registrations.csv, trajectory.tum and summary.json to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows, summary = result.rows, result.summary
    columns = list(dict.fromkeys(k for r in rows for k in r)) or ['image_stamp_ns']
    with open(out / 'registrations.csv', 'w', newline='', encoding='utf-8') as f:
        writer = csv.DictWriter(f, columns, lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
    accepted = [r for r in rows if r['published']]
    with open(out / 'trajectory.tum', 'w', encoding='utf-8') as f:
        for r in accepted:
            sec, nsec = divmod(int(r['image_stamp_ns']), 1_000_000_000)
            f.write(f'{sec}.{nsec:09d} ' + ' '.join(
                f'{r[k]:.9f}' for k in ('x', 'y', 'z', 'qx', 'qy', 'qz', 'qw')) + '\n')
    bag_dir = out / 'bag'
    if bag_dir.exists():
        raise ReplayError(f'{bag_dir} exists; choose another --out or remove it')
    store = get_typestore(Stores.ROS2_KILTED)
    T = store.types
    parent = summary['lidar_frame'] or 'lidar'
    child = (summary['camera_frame'] or 'camera') + child_suffix
    writer = Writer(bag_dir, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    try:
        conn = writer.add_connection('/tf', bm.TF_TYPE, typestore=store)
        for r in accepted:
            sec, nsec = divmod(int(r['image_stamp_ns']), 1_000_000_000)
            header = T['std_msgs/msg/Header'](T['builtin_interfaces/msg/Time'](sec, nsec),
                                              parent)
            tf = T['geometry_msgs/msg/TransformStamped'](header, child, T[
                'geometry_msgs/msg/Transform'](
                T['geometry_msgs/msg/Vector3'](r['x'], r['y'], r['z']),
                T['geometry_msgs/msg/Quaternion'](r['qx'], r['qy'], r['qz'], r['qw'])))
            msg = T[bm.TF_TYPE]([tf])
            writer.write(conn, int(r['image_stamp_ns']), store.serialize_cdr(msg, bm.TF_TYPE))
    finally:
        writer.close()
    paths = {}
    if result.keyframes is not None and len(result.keyframes.stamps_ns):
        paths['map'], paths['keyframes'] = result.keyframes.save(out / 'multiview')
    with open(out / 'summary.json', 'w', encoding='utf-8') as f:
        json.dump(summary, f, indent=2, default=float)
        f.write('\n')
    return {'bag': str(bag_dir), 'csv': str(out / 'registrations.csv'),
            'tum': str(out / 'trajectory.tum'), 'summary': str(out / 'summary.json'), **paths}


def read_registrations_csv(path: str | os.PathLike) -> list[dict]:
    """Read a ``registrations.csv`` back: numbers as int / float, ``published`` as bool."""
    rows = []
    with open(path, encoding='utf-8') as f:
        for row in csv.DictReader(f):
            out = {}
            for key, value in row.items():
                if key in ('image_stamp_ns', 'cloud_stamp_ns'):
                    out[key] = int(value)
                elif key == 'published':
                    out[key] = value == 'True'
                elif key in ('status', 'reason'):
                    out[key] = value
                else:
                    out[key] = float(value) if value else float('nan')
            rows.append(out)
    return rows


# --- command line ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """Build the command-line interface."""
    p = argparse.ArgumentParser(prog='i2p-replay', description=__doc__.strip().split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.strip().split('\n')[2:]))
    p.add_argument('bag', help='rosbag2 folder, or one .mcap / .db3 file')
    p.add_argument('--out', help='output folder (default <bag>_replay)')
    p.add_argument('--image-topic', help='Image or CompressedImage topic (default: by type)')
    p.add_argument('--camera-info-topic', help='CameraInfo topic (default: by type)')
    p.add_argument('--points-topic', help='PointCloud2 topic (default: by type)')
    p.add_argument('--lidar-frame', help='LiDAR frame of the /tf_static prior (default: header)')
    p.add_argument('--camera-frame', help='camera frame of the /tf_static prior (default: header)')
    p.add_argument('--prior', nargs=6, type=float, metavar=('X', 'Y', 'Z', 'ROLL', 'PITCH', 'YAW'),
                   help='camera pose in the LiDAR frame [m, rad] (default: from /tf_static)')
    p.add_argument('--params', help='node parameters file (default: the node defaults = '
                   'config/registration.yaml)')
    p.add_argument('--method', help='registration.method (default from the parameters)')
    p.add_argument('--device', help='registration.device: auto, cpu or cuda')
    p.add_argument('--max-pairs', type=int, help='stop after N registrations')
    p.add_argument('--multiview', action='store_true',
                   help='also build the multiview keyframe map of the scans (LiDAR only): '
                   '<out>/multiview/map.pcd and keyframes.tum')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def _config(args) -> RegistrationNodeConfig:
    flat = load_ros_params_yaml(args.params, NODE_NAME) if args.params else {}
    if args.method:
        flat['registration.method'] = args.method
    if args.device:
        flat['registration.device'] = args.device
    return RegistrationNodeConfig.from_flat(flat)


def main(argv: list[str] | None = None) -> int:
    """Run the replay; return the exit status (0 ok, 2 bad bag or options)."""
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
        prior = None
        if args.prior:
            names = ('x', 'y', 'z', 'roll', 'pitch', 'yaw')
            prior = PriorConfig(**dict(zip(names, args.prior))).T_lidar_cam
        from ..core.registration.factory import registrar_from_config
        registrar = registrar_from_config(config.registration)
        mapper = None
        if args.multiview:
            from ..core.multiview.config import MultiviewNodeConfig
            from ..core.multiview.mapper import make_mapper
            mapper = make_mapper(MultiviewNodeConfig())
        result = replay(args.bag, registrar, config, prior, args.image_topic,
                        args.camera_info_topic, args.points_topic, args.lidar_frame,
                        args.camera_frame, args.max_pairs,
                        None if args.quiet else sys.stderr, mapper)
        out = Path(args.out or str(Path(args.bag)).rstrip('/') + '_replay')
        paths = write_outputs(result, out)
    except (ReplayError, ValueError, OSError) as error:
        print(f'i2p-replay: error: {error}', file=sys.stderr)
        return 2
    s = result.summary
    for topic, reason in s['skipped_topics'].items():
        if reason.startswith('unknown'):
            print(f'i2p-replay: skipped {topic}: {reason}', file=sys.stderr)
    if s['stopped']:
        print(f'i2p-replay: warning: {s["stopped"]}; processed what was readable',
              file=sys.stderr)
    if s['images_without_camera_info']:
        print(f'i2p-replay: warning: {s["images_without_camera_info"]} image(s) on '
              f'{s["image_topic"]} came before any CameraInfo on {s["camera_info_topic"]}',
              file=sys.stderr)
    print(f'i2p-replay: {s["pairs"]} pairs, {s["published"]} accepted; wrote {paths["bag"]}, '
          f'{paths["csv"]}, {paths["tum"]}' + (f', {paths["keyframes"]} ({s["keyframes"]} '
                                               'keyframes)' if 'keyframes' in paths else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())


__all__ = ['main', 'replay', 'ReplayError', 'select_topics', 'write_outputs']
