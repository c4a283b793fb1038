"""
Messages read from a rosbag2 by ``rosbags`` -> the numpy types of ``core``, without ROS.

``rosbags`` deserializes CDR into plain Python objects with the field names of rclpy's messages
(``msg.header.stamp.sec``, ``msg.fields``, ``msg.data`` as a uint8 numpy array...), so the rules
are those of ``i2p_registration/ros/conversions.py`` (the node's converter): PointCloud2 fields
x, y, z (required), intensity | reflectivity | i, ring | line, time | t | timestamp |
offset_time through one structured dtype over the buffer, non-finite points dropped; images to
``(H, W, 3)`` uint8 RGB (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, mono16, 16UC1, 32FC1 min-max
scaled, Bayer) and JPEG / PNG CompressedImage; CameraInfo to :class:`CameraModel`.

The functions only read attributes, so they take rclpy messages as well (duck typing).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..core.geometry.rotations import quat_to_matrix
from ..core.sensors import CameraModel, CloudFrame, ImageFrame

_NS_PER_S = 1_000_000_000
# sensor_msgs/PointField datatype constants (fixed by the message definition) -> numpy type.
_FIELD_TYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8'}
_FIELD_NAMES = {
    'x': ('x',), 'y': ('y',), 'z': ('z',),
    'intensity': ('intensity', 'reflectivity', 'i'),
    'ring': ('ring', 'line'),
    'time': ('time', 't', 'timestamp', 'offset_time'),
}
_ABSOLUTE_TIME_S = 1e6
_IMAGE_LAYOUTS = {
    'rgb8': (3, 'u1'), 'bgr8': (3, 'u1'), 'rgba8': (4, 'u1'), 'bgra8': (4, 'u1'),
    'mono8': (1, 'u1'), '8UC1': (1, 'u1'), 'mono16': (1, 'u2'), '16UC1': (1, 'u2'),
    '32FC1': (1, 'f4'),
    'bayer_rggb8': (1, 'u1'), 'bayer_bggr8': (1, 'u1'),
    'bayer_gbrg8': (1, 'u1'), 'bayer_grbg8': (1, 'u1'),
}
_TO_RGB = {
    'bgr8': cv2.COLOR_BGR2RGB, 'rgba8': cv2.COLOR_RGBA2RGB, 'bgra8': cv2.COLOR_BGRA2RGB,
    'bayer_rggb8': cv2.COLOR_BayerBG2RGB, 'bayer_bggr8': cv2.COLOR_BayerRG2RGB,
    'bayer_gbrg8': cv2.COLOR_BayerGR2RGB, 'bayer_grbg8': cv2.COLOR_BayerGB2RGB,
}
_DISTORTION_FROM_ROS = {'plumb_bob': 'plumb_bob', 'rational_polynomial': 'plumb_bob',
                        'equidistant': 'equidistant'}

IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
CLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'
TF_TYPE = 'tf2_msgs/msg/TFMessage'


def stamp_to_ns(stamp) -> int:
    """Return the int nanoseconds since the epoch of a ``builtin_interfaces/Time``."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def _buffer(data) -> np.ndarray:
    """Return the bytes of a ``uint8[]`` field (numpy array, bytes or array.array) as uint8."""
    return data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)


# --- point clouds ----------------------------------------------------------------------------

def cloud_to_frame(msg) -> tuple[CloudFrame, int]:
    """
    Convert a ``sensor_msgs/PointCloud2`` to a :class:`CloudFrame` in the message's frame.

    :return: the frame (x, y, z float32 metres; intensity, ring, time when present; time in
        float32 seconds after the stamp) and the number of points dropped as non-finite.
    :raises ValueError: on missing x, y or z, an unsupported datatype of a recognized field or a
        data length other than ``row_step * height``.
    """
    order = '>' if msg.is_bigendian else '<'
    by_name = {}
    for f in msg.fields:
        by_name.setdefault(f.name, f)
    names, formats, offsets = [], [], []
    for out_name, candidates in _FIELD_NAMES.items():
        field = next((by_name[c] for c in candidates if c in by_name), None)
        if field is None:
            if out_name in 'xyz':
                raise ValueError(f'PointCloud2 has no {out_name!r} field (fields: '
                                 f'{[f.name for f in msg.fields]})')
            continue
        if field.datatype not in _FIELD_TYPES:
            raise ValueError(f'unsupported PointField datatype {field.datatype} of field '
                             f'{field.name!r}')
        names.append(out_name)
        formats.append(order + _FIELD_TYPES[field.datatype])
        offsets.append(field.offset)
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': int(msg.point_step)})
    height, width, row_step = int(msg.height), int(msg.width), int(msg.row_step)
    data = _buffer(msg.data)
    if row_step < width * msg.point_step or data.size != row_step * height:
        raise ValueError(f'PointCloud2 data has {data.size} bytes, expected row_step * height = '
                         f'{row_step} * {height} with row_step >= width * point_step')
    stamp_ns = stamp_to_ns(msg.header.stamp)
    if height * width == 0:
        points = np.zeros(0, dtype)
    else:
        points = np.ndarray((height, width), dtype, buffer=data,
                            strides=(row_step, int(msg.point_step))).reshape(-1)
    xyz = np.stack([points['x'], points['y'], points['z']], axis=1).astype(np.float32)
    extras = {'intensity': None, 'ring': None, 'time': None}
    if 'intensity' in names:
        extras['intensity'] = points['intensity'].astype(np.float32)
    if 'ring' in names:
        extras['ring'] = points['ring'].astype(np.uint16)
    if 'time' in names:
        t = points['time']
        if t.dtype.kind in 'iu':
            t = t * 1e-9
        elif t.dtype.itemsize == 8 and t.size and np.nanmax(np.abs(t)) > _ABSOLUTE_TIME_S:
            t = t - stamp_ns * 1e-9
        extras['time'] = t.astype(np.float32)
    keep = np.isfinite(xyz).all(axis=1)
    n_dropped = int(keep.size - np.count_nonzero(keep))
    if n_dropped:
        xyz = xyz[keep]
        extras = {k: None if v is None else v[keep] for k, v in extras.items()}
    return CloudFrame(xyz, stamp_ns, msg.header.frame_id, extras['intensity'], extras['ring'],
                      extras['time']), n_dropped


# --- images ----------------------------------------------------------------------------------

def _gray_to_uint8(gray: np.ndarray) -> np.ndarray:
    values = gray.astype(np.float64)
    finite = np.isfinite(values)
    out = np.zeros(gray.shape, np.uint8)
    if finite.any():
        lo, hi = values[finite].min(), values[finite].max()
        if hi > lo:
            scaled = np.floor((values - lo) * (255.0 / (hi - lo)) + 0.5)
            np.copyto(out, scaled, casting='unsafe', where=finite)
    return out


def image_to_numpy(msg) -> np.ndarray:
    """
    Convert a ``sensor_msgs/Image`` to an ``(H, W, 3)`` uint8 RGB array.

    :raises ValueError: on an unsupported encoding, an empty image or an inconsistent size.
    """
    if msg.encoding not in _IMAGE_LAYOUTS:
        raise ValueError(f'unsupported image encoding {msg.encoding!r}; supported: '
                         f'{", ".join(_IMAGE_LAYOUTS)}')
    channels, kind = _IMAGE_LAYOUTS[msg.encoding]
    dtype = np.dtype(('>' if msg.is_bigendian else '<') + kind)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = _buffer(msg.data)
    if height == 0 or width == 0 or step < width * channels * dtype.itemsize \
            or data.size != step * height:
        raise ValueError(f'image {width}x{height} step {step} does not fit its {data.size} '
                         f'bytes of {msg.encoding!r}')
    shape = (height, width) if channels == 1 else (height, width, channels)
    strides = (step, dtype.itemsize) if channels == 1 else \
        (step, channels * dtype.itemsize, dtype.itemsize)
    pixels = np.ndarray(shape, dtype, buffer=data, strides=strides)
    if msg.encoding == 'rgb8':
        return np.ascontiguousarray(pixels)
    if pixels.dtype != np.uint8:
        pixels = _gray_to_uint8(pixels)
    if pixels.ndim == 2 and not msg.encoding.startswith('bayer_'):
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(pixels, _TO_RGB[msg.encoding])


def compressed_to_numpy(msg) -> np.ndarray:
    """
    Decode a JPEG or PNG ``sensor_msgs/CompressedImage`` to an ``(H, W, 3)`` uint8 RGB array.

    :raises ValueError: on a compressedDepth format or data that does not decode.
    """
    if 'compresseddepth' in msg.format.lower():
        raise ValueError(f'unsupported CompressedImage format {msg.format!r}')
    raw = _buffer(msg.data)
    decoded = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if decoded is None:
        raise ValueError(f'undecodable compressed image ({raw.size} bytes, format '
                         f'{msg.format!r})')
    if decoded.ndim == 2:
        gray = decoded if decoded.dtype == np.uint8 else _gray_to_uint8(decoded)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    if decoded.dtype == np.uint16:
        decoded = ((decoded.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB if decoded.shape[2] == 4
                        else cv2.COLOR_BGR2RGB)


def image_to_frame(msg, msgtype: str, camera: CameraModel) -> ImageFrame:
    """
    Convert an Image or CompressedImage (``msgtype``) and its calibration to an ImageFrame.

    :raises ValueError: when the image size differs from the CameraInfo size, or on bad data.
    """
    rgb = compressed_to_numpy(msg) if msgtype == COMPRESSED_TYPE else image_to_numpy(msg)
    if (rgb.shape[1], rgb.shape[0]) != camera.size:
        raise ValueError(f'image size {rgb.shape[1]}x{rgb.shape[0]} differs from the CameraInfo '
                         f'size {camera.width}x{camera.height}')
    return ImageFrame(rgb, stamp_to_ns(msg.header.stamp), msg.header.frame_id, camera)


def camera_info_to_model(msg) -> CameraModel:
    """
    Convert a ``sensor_msgs/CameraInfo`` to a :class:`CameraModel` (ROI and binning applied).

    :raises ValueError: on an all-zero K, an unknown distortion model or a wrong D size.
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not K.any():
        raise ValueError('CameraInfo has an all-zero K: the camera is not calibrated')
    D = np.asarray(msg.d, dtype=np.float64)
    if D.size == 0:
        model = 'none'
    elif msg.distortion_model in _DISTORTION_FROM_ROS:
        model = _DISTORTION_FROM_ROS[msg.distortion_model]
    else:
        raise ValueError(f'unsupported distortion model {msg.distortion_model!r}')
    camera = CameraModel(K, int(msg.width), int(msg.height), model, D)
    roi = msg.roi
    if roi.width and roi.height and (roi.width, roi.height) != camera.size:
        camera = camera.cropped(roi.x_offset, roi.y_offset, roi.width, roi.height)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    if bx > 1 or by > 1:
        camera = camera.scaled(1.0 / bx, 1.0 / by)
    return camera


# --- transforms ------------------------------------------------------------------------------

def transform_to_matrix(msg) -> np.ndarray:
    """
    Return the ``(4, 4)`` float64 ``T_parent_child`` of a TransformStamped (or Transform).

    :raises ValueError: on a non-finite translation or a zero quaternion.
    """
    tf = getattr(msg, 'transform', msg)
    t, q = tf.translation, tf.rotation
    T = np.eye(4)
    T[:3, 3] = (t.x, t.y, t.z)
    if not np.isfinite(T).all():
        raise ValueError(f'transform translation is not finite: {T[:3, 3]}')
    T[:3, :3] = quat_to_matrix([q.x, q.y, q.z, q.w])
    return T


def static_transforms(messages) -> dict[tuple[str, str], np.ndarray]:
    """
    Collect the transforms of ``tf2_msgs/TFMessage`` messages as ``{(parent, child): T}``.

    Later messages replace earlier ones for the same frame pair.
    """
    out = {}
    for msg in messages:
        for tf in msg.transforms:
            out[(tf.header.frame_id, tf.child_frame_id)] = transform_to_matrix(tf)
    return out


def chain(transforms: dict[tuple[str, str], np.ndarray], parent: str, child: str) -> np.ndarray:
    """
    Return ``T_parent_child`` through a tree of transforms (``{(parent, child): T}``).

    :raises ValueError: when the two frames are not connected.
    """
    edges = {}
    for (a, b), T in transforms.items():
        edges.setdefault(a, []).append((b, T))
        edges.setdefault(b, []).append((a, np.linalg.inv(T)))
    stack, seen = [(parent, np.eye(4))], {parent}
    while stack:
        frame, T = stack.pop()
        if frame == child:
            return T
        for nxt, T_step in edges.get(frame, []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, T @ T_step))
    raise ValueError(f'no transform chain from {parent!r} to {child!r} in '
                     f'{sorted(transforms)}')
