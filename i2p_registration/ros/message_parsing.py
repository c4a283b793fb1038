"""
Read ROS 2 messages into the numpy types of ``core``, without importing ROS.

The functions take any object with the fields of the message (rclpy's Python messages, or the
messages ``rosbags`` deserializes from a bag), so live nodes (through
:mod:`i2p_registration.ros.conversions`, which also builds messages) and the offline bag tools
read messages with the same code.

Point clouds (``sensor_msgs/PointCloud2``) of any field layout are read through one numpy
structured dtype laid over the message buffer, so the per-point view costs no copy; x, y, z come
out as a contiguous ``(N, 3)`` float32 copy. Recognized fields, first match wins:

- ``x``, ``y``, ``z`` (required): any numeric type, metres;
- intensity: ``intensity`` | ``reflectivity`` | ``i``, any numeric type, returned as float32;
- ring: ``ring`` | ``line``, any numeric type, returned as uint16;
- time: ``time`` | ``t`` | ``timestamp`` | ``offset_time``, returned as float32 seconds relative
  to the header stamp. Integer types are nanoseconds (Ouster ``t``, Livox ``offset_time``),
  floating types seconds (Velodyne ``time``); a float64 time with values above 1e6 s is absolute
  (Hesai, Robosense ``timestamp``) and the header stamp is subtracted.

Points with a non-finite x, y or z are dropped and counted whatever ``is_dense`` claims. Other
fields are ignored, also those of a datatype that ROS does not define.

Images (``sensor_msgs/Image``, ``CompressedImage``) become ``(H, W, 3)`` uint8 RGB.
Single-channel 16-bit and float images (``mono16``, ``16UC1``, ``32FC1``) are scaled to 8 bits
by a min-max rule: ``round((v - min) * 255 / (max - min))`` over the finite values, with
non-finite pixels and constant images mapped to 0 (contrast is what registration needs; the
absolute level of a depth or thermal image has no meaning in 8 bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
from i2p_registration.core.geometry.rotations import quat_to_matrix
from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame
import numpy as np

_NS_PER_S = 1_000_000_000


# PointField datatype (INT8 = 1 ... FLOAT64 = 8, fixed by the message definition) -> numpy type
# character (byte order added per message).
FIELD_TYPES = {
    1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 8: 'f8',
}


# Output name -> accepted message field names, in order of preference.
_FIELD_NAMES = {
    'x': ('x',), 'y': ('y',), 'z': ('z',),
    'intensity': ('intensity', 'reflectivity', 'i'),
    'ring': ('ring', 'line'),
    'time': ('time', 't', 'timestamp', 'offset_time'),
}


# A float64 per-point time above this many seconds is an absolute (epoch) time.
_ABSOLUTE_TIME_S = 1e6


# Image encoding -> (channels, numpy type character) of the raw pixel data.
_IMAGE_LAYOUTS = {
    'rgb8': (3, 'u1'), 'bgr8': (3, 'u1'), 'rgba8': (4, 'u1'), 'bgra8': (4, 'u1'),
    'mono8': (1, 'u1'), '8UC1': (1, 'u1'), 'mono16': (1, 'u2'), '16UC1': (1, 'u2'),
    '32FC1': (1, 'f4'),
    'bayer_rggb8': (1, 'u1'), 'bayer_bggr8': (1, 'u1'),
    'bayer_gbrg8': (1, 'u1'), 'bayer_grbg8': (1, 'u1'),
}


# ROS names a Bayer pattern by its first two rows, OpenCV by pixels 2 and 3 of the second row:
# ROS rggb is OpenCV BG (OpenCV >= 5 also has the alias COLOR_BayerRGGB2RGB).
_TO_RGB = {
    'bgr8': cv2.COLOR_BGR2RGB, 'rgba8': cv2.COLOR_RGBA2RGB, 'bgra8': cv2.COLOR_BGRA2RGB,
    'bayer_rggb8': cv2.COLOR_BayerBG2RGB, 'bayer_bggr8': cv2.COLOR_BayerRG2RGB,
    'bayer_gbrg8': cv2.COLOR_BayerGR2RGB, 'bayer_grbg8': cv2.COLOR_BayerGB2RGB,
}


_DISTORTION_FROM_ROS = {'plumb_bob': 'plumb_bob', 'rational_polynomial': 'plumb_bob',
                        'equidistant': 'equidistant'}


def stamp_to_ns(stamp) -> int:
    """Return the nanoseconds since the epoch of a ``builtin_interfaces/Time`` message."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


@dataclass(frozen=True)
class CloudFields:
    """
    The fields of one PointCloud2 after dropping the points with non-finite coordinates.

    :param xyz: ``(N, 3)`` float32 contiguous, metres, in the message's frame.
    :param intensity: ``(N,)`` float32, or None when the cloud has no intensity field.
    :param ring: ``(N,)`` uint16 laser index, or None.
    :param time: ``(N,)`` float32 seconds relative to the header stamp, or None.
    :param n_invalid_dropped: number of points dropped for a NaN or inf coordinate.
    """

    xyz: np.ndarray
    intensity: np.ndarray | None
    ring: np.ndarray | None
    time: np.ndarray | None
    n_invalid_dropped: int


def cloud_dtype(msg) -> np.dtype:
    """
    Return the numpy structured dtype of one point of ``msg``, recognized fields only.

    Field names are the output names (``x``, ``y``, ``z``, ``intensity``, ``ring``, ``time``);
    the item size is ``point_step``, so padding and unrecognized fields are skipped.

    :raises ValueError: on missing x, y or z, an unsupported datatype of a recognized field, or
        a ``point_step`` smaller than the extent of the fields.
    """
    order = '>' if msg.is_bigendian else '<'
    by_name = {}
    for f in msg.fields:
        by_name.setdefault(f.name, f)
        kind = FIELD_TYPES.get(f.datatype)
        end = None if kind is None else f.offset + np.dtype(kind).itemsize * max(f.count, 1)
        if end is not None and end > msg.point_step:
            raise ValueError(f'point_step {msg.point_step} is smaller than the extent of field '
                             f'{f.name!r} (offset {f.offset}, {max(f.count, 1)} x {kind})')
    names, formats, offsets = [], [], []
    for out_name, candidates in _FIELD_NAMES.items():
        field = next((by_name[c] for c in candidates if c in by_name), None)
        if field is None:
            if out_name in ('x', 'y', 'z'):
                raise ValueError(f'PointCloud2 has no {out_name!r} field (fields: '
                                 f'{[f.name for f in msg.fields]})')
            continue
        kind = FIELD_TYPES.get(field.datatype)
        if kind is None:
            raise ValueError(f'unsupported PointField datatype {field.datatype} of field '
                             f'{field.name!r}; expected one of {sorted(FIELD_TYPES)}')
        names.append(out_name)
        formats.append(order + kind)
        offsets.append(field.offset)
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                     'itemsize': msg.point_step})


def cloud_to_structured(msg) -> np.ndarray:
    """
    View the points of ``msg`` as a ``(height * width,)`` array of :func:`cloud_dtype`.

    It is a zero-copy view of ``msg.data`` (it keeps the message buffer alive) unless rows are
    padded (``row_step > width * point_step``), which needs one copy. Values keep the message's
    byte order; organized clouds are flattened row by row.

    :raises ValueError: on an inconsistent layout (see :func:`cloud_dtype`), a ``row_step``
        smaller than ``width * point_step`` or a data length other than ``row_step * height``.
    """
    dtype = cloud_dtype(msg)
    height, width, row_step = int(msg.height), int(msg.width), int(msg.row_step)
    if row_step < width * msg.point_step:
        raise ValueError(f'row_step {row_step} is smaller than width * point_step '
                         f'({width} * {msg.point_step})')
    if len(msg.data) != row_step * height:
        raise ValueError(f'PointCloud2 data has {len(msg.data)} bytes, expected row_step * height'
                         f' = {row_step} * {height} = {row_step * height}')
    if height * width == 0:
        return np.zeros(0, dtype)
    grid = np.ndarray((height, width), dtype, buffer=msg.data, strides=(row_step, msg.point_step))
    return grid.reshape(-1)


def _time_seconds(values: np.ndarray, stamp_ns: int) -> np.ndarray:
    """Convert per-point times of any numeric type to float32 seconds after the stamp."""
    if values.dtype.kind in 'iu':
        return (values * 1e-9).astype(np.float32)
    if values.dtype.itemsize == 8 and values.size and np.nanmax(np.abs(values)) > _ABSOLUTE_TIME_S:
        return (values - stamp_ns * 1e-9).astype(np.float32)
    return values.astype(np.float32)


def cloud_to_numpy(msg, extra_fields: bool = True) -> CloudFields:
    """
    Read the finite points of ``msg`` and their recognized fields (see the module docstring).

    :param msg: a ``sensor_msgs/PointCloud2`` of any layout (organized, padded, big-endian).
    :param extra_fields: False skips intensity, ring and time (they are returned as None).
    :return: the fields in the message's frame, points with a non-finite coordinate dropped.
    :raises ValueError: on an inconsistent layout (see :func:`cloud_to_structured`).
    """
    points = cloud_to_structured(msg)
    names = points.dtype.names
    xyz = np.stack([points['x'], points['y'], points['z']], axis=1).astype(np.float32, copy=False)
    extras = {}
    if extra_fields:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        extras = {
            'intensity': points['intensity'].astype(np.float32) if 'intensity' in names else None,
            'ring': points['ring'].astype(np.uint16) if 'ring' in names else None,
            'time': _time_seconds(points['time'], stamp_ns) if 'time' in names else None,
        }
    n_dropped = 0
    if not np.isfinite(xyz).all():
        keep = np.isfinite(xyz).all(axis=1)
        n_dropped = int(keep.size - np.count_nonzero(keep))
        xyz = xyz[keep]
        extras = {k: None if v is None else v[keep] for k, v in extras.items()}
    return CloudFields(xyz, extras.get('intensity'), extras.get('ring'), extras.get('time'),
                       n_dropped)


def cloud_to_frame(msg) -> tuple[CloudFrame, int]:
    """Convert ``msg`` to a :class:`CloudFrame`; also return the number of dropped points."""
    fields = cloud_to_numpy(msg)
    frame = CloudFrame(fields.xyz, stamp_to_ns(msg.header.stamp), msg.header.frame_id,
                       fields.intensity, fields.ring, fields.time)
    return frame, fields.n_invalid_dropped


def _gray_to_uint8(gray: np.ndarray) -> np.ndarray:
    """Scale a single-channel image to uint8 by the min-max rule of the module docstring."""
    values = gray.astype(np.float64)
    finite = np.isfinite(values)
    out = np.zeros(gray.shape, np.uint8)
    if not finite.any():
        return out
    lo, hi = values[finite].min(), values[finite].max()
    if hi > lo:
        scaled = np.floor((values - lo) * (255.0 / (hi - lo)) + 0.5)
        np.copyto(out, scaled, casting='unsafe', where=finite)
    return out


def _pixels(msg) -> np.ndarray:
    """View the pixels of ``msg`` as an ``(H, W)`` or ``(H, W, C)`` array over its buffer."""
    encoding = msg.encoding
    if encoding not in _IMAGE_LAYOUTS:
        raise ValueError(f'unsupported image encoding {encoding!r}; supported: '
                         f'{", ".join(_IMAGE_LAYOUTS)}')
    channels, kind = _IMAGE_LAYOUTS[encoding]
    dtype = np.dtype(('>' if msg.is_bigendian else '<') + kind)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f'image is empty ({width}x{height})')
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ValueError(f'image step {step} is smaller than width * bytes per pixel '
                         f'({width} * {channels * dtype.itemsize}) for {encoding!r}')
    if len(msg.data) != step * height:
        raise ValueError(f'image data has {len(msg.data)} bytes, expected step * height = '
                         f'{step} * {height} = {step * height}')
    if channels == 1:
        return np.ndarray((height, width), dtype, buffer=msg.data, strides=(step, dtype.itemsize))
    return np.ndarray((height, width, channels), dtype, buffer=msg.data,
                      strides=(step, channels * dtype.itemsize, dtype.itemsize))


def image_to_numpy(msg, copy: bool = False) -> np.ndarray:
    """
    Convert a ``sensor_msgs/Image`` to an ``(H, W, 3)`` uint8 RGB array.

    Encodings: rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, mono16, 16UC1, 32FC1 (min-max scaled,
    see the module docstring), bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8 (OpenCV
    demosaicing). Row padding (``step > width * bytes per pixel``) and ``is_bigendian`` are
    honoured.

    :param copy: for unpadded rgb8 the result is a view of ``msg.data`` unless ``copy`` is True;
        every other case returns a new array.
    :raises ValueError: on an unsupported encoding, an empty image, a too small ``step`` or a
        data length other than ``step * height``.
    """
    pixels = _pixels(msg)
    encoding = msg.encoding
    if encoding == 'rgb8':
        return pixels.copy() if copy else np.ascontiguousarray(pixels)
    if pixels.dtype != np.uint8:
        pixels = _gray_to_uint8(pixels)
    if pixels.ndim == 2 and not encoding.startswith('bayer_'):
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    # OpenCV reads row-padded numpy arrays in place when pixels within a row are contiguous.
    return cv2.cvtColor(pixels, _TO_RGB[encoding])


def compressed_to_numpy(msg) -> np.ndarray:
    """
    Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to an ``(H, W, 3)`` uint8 RGB array.

    The format string ('jpeg', 'png', 'rgb8; jpeg compressed bgr8', ...) is only checked not to
    be compressedDepth: the data's own header tells OpenCV how to decode it. Grey images become
    three equal channels; 16-bit PNGs follow the min-max rule (grey) or
    ``round(v * 255 / 65535)`` (colour).

    :raises ValueError: on a compressedDepth format or data that does not decode.
    """
    if 'compresseddepth' in msg.format.lower():
        raise ValueError(f'unsupported CompressedImage format {msg.format!r} (compressedDepth '
                         'carries a depth quantization header)')
    raw = np.frombuffer(msg.data, np.uint8)
    decoded = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED) if raw.size else None
    if decoded is None:
        raise ValueError(f'undecodable compressed image data ({raw.size} bytes, format '
                         f'{msg.format!r})')
    if decoded.ndim == 2:
        gray = decoded if decoded.dtype == np.uint8 else _gray_to_uint8(decoded)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
    if decoded.dtype == np.uint16:
        decoded = ((decoded.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    code = cv2.COLOR_BGRA2RGB if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(decoded, code)


def image_to_frame(msg, camera: CameraModel) -> ImageFrame:
    """
    Convert an Image or CompressedImage and its calibration ``camera`` to an :class:`ImageFrame`.

    :raises ValueError: when the image size differs from the camera (CameraInfo) size, or as
        :func:`image_to_numpy` / :func:`compressed_to_numpy`.
    """
    # CompressedImage is the image message with a format field
    rgb = compressed_to_numpy(msg) if hasattr(msg, 'format') else image_to_numpy(msg)
    if (rgb.shape[1], rgb.shape[0]) != camera.size:
        raise ValueError(f'image size {rgb.shape[1]}x{rgb.shape[0]} differs from the CameraInfo '
                         f'size {camera.width}x{camera.height}')
    return ImageFrame(rgb, stamp_to_ns(msg.header.stamp), msg.header.frame_id, camera)


def camera_info_to_model(msg) -> CameraModel:
    """
    Convert a ``sensor_msgs/CameraInfo`` to a :class:`CameraModel`.

    Distortion: empty D -> 'none'; 'plumb_bob' (4, 5 or 8 coefficients) and
    'rational_polynomial' (8: k1, k2, p1, p2, k3, k4, k5, k6) -> 'plumb_bob'; 'equidistant'
    (4) -> 'equidistant'. K is read as is (the unrectified camera); ROI cropping and binning are
    applied, binning with the pixel-centre convention of :meth:`CameraModel.scaled`.

    :raises ValueError: on an all-zero K (uncalibrated camera), an unknown distortion model or
        a coefficient count the model does not take.
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
        raise ValueError(f'unsupported distortion model {msg.distortion_model!r}; expected one of '
                         f'{sorted(_DISTORTION_FROM_ROS)} or an empty D')
    camera = CameraModel(K, int(msg.width), int(msg.height), model, D)
    roi = msg.roi
    if roi.width and roi.height and (roi.width, roi.height) != camera.size:
        camera = camera.cropped(roi.x_offset, roi.y_offset, roi.width, roi.height)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    if bx > 1 or by > 1:
        camera = camera.scaled(1.0 / bx, 1.0 / by)
    return camera


def transform_to_matrix(msg) -> np.ndarray:
    """
    Convert a Transform or TransformStamped to the ``(4, 4)`` float64 ``T_parent_child``.

    ``X_parent = T @ X_child`` with parent ``header.frame_id`` and child ``child_frame_id``; the
    quaternion is normalized.

    :raises ValueError: on a zero or non-finite quaternion or a non-finite translation.
    """
    tf = getattr(msg, 'transform', msg)
    t, q = tf.translation, tf.rotation
    translation = np.array([t.x, t.y, t.z], dtype=np.float64)
    if not np.isfinite(translation).all():
        raise ValueError(f'transform translation is not finite: {translation}')
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix([q.x, q.y, q.z, q.w])
    T[:3, 3] = translation
    return T
