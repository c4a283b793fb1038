"""
Conversions between ROS 2 messages and the numpy types of ``core``.

This module is the only place that converts messages. Message objects are rclpy's Python
messages (``sensor_msgs``, ``geometry_msgs``, ``builtin_interfaces``); neither ``cv_bridge`` nor
``sensor_msgs_py`` is needed.

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

import array
from dataclasses import dataclass
import sys

from builtin_interfaces.msg import Time
import cv2
from geometry_msgs.msg import Transform, TransformStamped
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from ..core.geometry.rotations import matrix_to_quat, quat_to_matrix
from ..core.sensors import CameraModel, CloudFrame, ImageFrame

_NS_PER_S = 1_000_000_000
_INT32_MAX = 2 ** 31 - 1

# PointField datatype -> numpy type character (byte order added per message).
_FIELD_TYPES = {
    PointField.INT8: 'i1', PointField.UINT8: 'u1', PointField.INT16: 'i2',
    PointField.UINT16: 'u2', PointField.INT32: 'i4', PointField.UINT32: 'u4',
    PointField.FLOAT32: 'f4', PointField.FLOAT64: 'f8',
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

# The PointCloud2 layout written by numpy_to_cloud: PCL's PointXYZ (16 bytes) and PointXYZIRT-like
# (32 bytes) alignment, which Velodyne and most LiDAR drivers publish.
_OUT_OFFSETS = {'x': 0, 'y': 4, 'z': 8, 'intensity': 16, 'ring': 20, 'time': 24}
_OUT_TYPES = {'x': PointField.FLOAT32, 'y': PointField.FLOAT32, 'z': PointField.FLOAT32,
              'intensity': PointField.FLOAT32, 'ring': PointField.UINT16,
              'time': PointField.FLOAT32}

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
_FROM_RGB = {'bgr8': cv2.COLOR_RGB2BGR, 'rgba8': cv2.COLOR_RGB2RGBA, 'bgra8': cv2.COLOR_RGB2BGRA,
             'mono8': cv2.COLOR_RGB2GRAY}

_DISTORTION_FROM_ROS = {'plumb_bob': 'plumb_bob', 'rational_polynomial': 'plumb_bob',
                        'equidistant': 'equidistant'}


# --- time and header -------------------------------------------------------------------------

def stamp_to_ns(stamp: Time) -> int:
    """Return the nanoseconds since the epoch of a ``builtin_interfaces/Time`` message."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """
    Build a ``builtin_interfaces/Time`` for ``ns`` nanoseconds since the epoch.

    :raises ValueError: for negative times or times beyond the int32 seconds of the message.
    """
    ns = int(ns)
    if ns < 0:
        raise ValueError(f'stamp must be >= 0 ns, got {ns}')
    sec, nanosec = divmod(ns, _NS_PER_S)
    if sec > _INT32_MAX:
        raise ValueError(f'stamp {ns} ns exceeds the int32 seconds of builtin_interfaces/Time')
    return Time(sec=sec, nanosec=nanosec)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    """Build a ``std_msgs/Header`` stamped ``stamp_ns`` (int nanoseconds) in ``frame_id``."""
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=str(frame_id))


def _byte_array(values: np.ndarray) -> array.array:
    """
    Copy the bytes of an array into a ``uint8[]`` message field value, in one copy.

    rclpy stores an ``array.array('B')`` as is but checks any other sequence byte by byte.
    """
    out = array.array('B')
    out.frombytes(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
    return out


# --- point clouds ----------------------------------------------------------------------------

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


def cloud_dtype(msg: PointCloud2) -> np.dtype:
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
        kind = _FIELD_TYPES.get(f.datatype)
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
        kind = _FIELD_TYPES.get(field.datatype)
        if kind is None:
            raise ValueError(f'unsupported PointField datatype {field.datatype} of field '
                             f'{field.name!r}; expected one of {sorted(_FIELD_TYPES)}')
        names.append(out_name)
        formats.append(order + kind)
        offsets.append(field.offset)
    return np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                     'itemsize': msg.point_step})


def cloud_to_structured(msg: PointCloud2) -> np.ndarray:
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


def cloud_to_numpy(msg: PointCloud2, extra_fields: bool = True) -> CloudFields:
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


def cloud_to_frame(msg: PointCloud2) -> tuple[CloudFrame, int]:
    """Convert ``msg`` to a :class:`CloudFrame`; also return the number of dropped points."""
    fields = cloud_to_numpy(msg)
    frame = CloudFrame(fields.xyz, stamp_to_ns(msg.header.stamp), msg.header.frame_id,
                       fields.intensity, fields.ring, fields.time)
    return frame, fields.n_invalid_dropped


def numpy_to_cloud(points: np.ndarray, stamp_ns: int, frame_id: str,
                   intensity: np.ndarray | None = None, ring: np.ndarray | None = None,
                   time: np.ndarray | None = None) -> PointCloud2:
    """
    Build an unorganized ``sensor_msgs/PointCloud2`` (height 1) of ``(N, 3)`` points.

    Layout (native byte order): x, y, z float32 at offsets 0, 4, 8; then, where given,
    intensity float32 at 16, ring uint16 at 20, time float32 at 24. ``point_step`` is 16 for
    x, y, z only and 32 otherwise (PCL's PointXYZ / PointXYZIRT alignment); padding is zero.
    ``is_dense`` is True when every coordinate is finite.

    :param points: ``(N, 3)`` x, y, z in metres in ``frame_id``.
    :param stamp_ns: header stamp, int nanoseconds.
    :param intensity: optional ``(N,)`` intensities.
    :param ring: optional ``(N,)`` laser indices (0..65535).
    :param time: optional ``(N,)`` seconds relative to ``stamp_ns``.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {points.shape}')
    n = points.shape[0]
    columns = {'intensity': intensity, 'ring': ring, 'time': time}
    present = ['x', 'y', 'z'] + [k for k, v in columns.items() if v is not None]
    for name in present[3:]:
        if np.shape(columns[name]) != (n,):
            raise ValueError(f'{name} must have shape ({n},), got {np.shape(columns[name])}')
    point_step = 16 if len(present) == 3 else 32
    dtype = np.dtype({'names': present,
                      'formats': [_FIELD_TYPES[_OUT_TYPES[k]] for k in present],
                      'offsets': [_OUT_OFFSETS[k] for k in present], 'itemsize': point_step})
    data = np.zeros(n, dtype)
    for i, axis in enumerate('xyz'):
        data[axis] = points[:, i]
    for name in present[3:]:
        data[name] = columns[name]
    return PointCloud2(
        header=make_header(stamp_ns, frame_id), height=1, width=n,
        fields=[PointField(name=k, offset=_OUT_OFFSETS[k], datatype=_OUT_TYPES[k], count=1)
                for k in present],
        is_bigendian=sys.byteorder == 'big', point_step=point_step, row_step=point_step * n,
        data=_byte_array(data), is_dense=bool(np.isfinite(points).all()))


# --- images ----------------------------------------------------------------------------------

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


def _pixels(msg: Image) -> np.ndarray:
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


def image_to_numpy(msg: Image, copy: bool = False) -> np.ndarray:
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


def compressed_to_numpy(msg: CompressedImage) -> np.ndarray:
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


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'image must be an (H, W, 3) uint8 RGB array, got {rgb.shape} '
                         f'{rgb.dtype}')
    return rgb


def numpy_to_image(rgb: np.ndarray, stamp_ns: int, frame_id: str,
                   encoding: str = 'rgb8') -> Image:
    """
    Build a ``sensor_msgs/Image`` (unpadded rows) of an ``(H, W, 3)`` uint8 RGB array.

    :param encoding: 'rgb8', 'bgr8', 'rgba8', 'bgra8' (alpha 255) or 'mono8' (OpenCV's
        RGB-to-grey weights).
    """
    rgb = _check_rgb(rgb)
    if encoding != 'rgb8' and encoding not in _FROM_RGB:
        raise ValueError(f'unsupported image encoding {encoding!r} for numpy_to_image; '
                         f'supported: rgb8, {", ".join(_FROM_RGB)}')
    pixels = rgb if encoding == 'rgb8' else cv2.cvtColor(rgb, _FROM_RGB[encoding])
    pixels = np.ascontiguousarray(pixels)
    height, width = rgb.shape[:2]
    return Image(header=make_header(stamp_ns, frame_id), height=height, width=width,
                 encoding=encoding, is_bigendian=0, step=pixels.strides[0],
                 data=_byte_array(pixels))


def numpy_to_compressed(rgb: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = 'jpeg',
                        quality: int = 95) -> CompressedImage:
    """
    Encode an ``(H, W, 3)`` uint8 RGB array as a ``sensor_msgs/CompressedImage``.

    :param fmt: 'jpeg' or 'png'; the message format is image_transport's
        'rgb8; jpeg compressed bgr8' (or 'png').
    :param quality: JPEG quality 0..100 (ignored for PNG).
    """
    rgb = _check_rgb(rgb)
    if fmt not in ('jpeg', 'png'):
        raise ValueError(f"compressed format must be 'jpeg' or 'png', got {fmt!r}")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == 'jpeg' else []
    ok, encoded = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', bgr, params)
    if not ok:
        raise ValueError(f'OpenCV could not encode a {rgb.shape} image as {fmt}')
    return CompressedImage(header=make_header(stamp_ns, frame_id),
                           format=f'rgb8; {fmt} compressed bgr8', data=_byte_array(encoded))


def image_to_frame(msg: Image | CompressedImage, camera: CameraModel) -> ImageFrame:
    """
    Convert an Image or CompressedImage and its calibration ``camera`` to an :class:`ImageFrame`.

    :raises ValueError: when the image size differs from the camera (CameraInfo) size, or as
        :func:`image_to_numpy` / :func:`compressed_to_numpy`.
    """
    rgb = compressed_to_numpy(msg) if isinstance(msg, CompressedImage) else image_to_numpy(msg)
    if (rgb.shape[1], rgb.shape[0]) != camera.size:
        raise ValueError(f'image size {rgb.shape[1]}x{rgb.shape[0]} differs from the CameraInfo '
                         f'size {camera.width}x{camera.height}')
    return ImageFrame(rgb, stamp_to_ns(msg.header.stamp), msg.header.frame_id, camera)


# --- camera calibration ----------------------------------------------------------------------

def camera_info_to_model(msg: CameraInfo) -> CameraModel:
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


def model_to_camera_info(model: CameraModel, stamp_ns: int, frame_id: str) -> CameraInfo:
    """
    Build a ``sensor_msgs/CameraInfo`` of ``model``: K, R = identity, P = [K | 0], D.

    'none' is written as 'plumb_bob' with an empty D, 8-coefficient plumb_bob as
    'rational_polynomial' (the ROS name of that model).
    """
    if model.distortion_model == 'none':
        name = 'plumb_bob'
    elif model.distortion_model == 'plumb_bob' and model.D.size == 8:
        name = 'rational_polynomial'
    else:
        name = model.distortion_model
    P = np.hstack([model.K, np.zeros((3, 1))])
    return CameraInfo(header=make_header(stamp_ns, frame_id), height=model.height,
                      width=model.width, distortion_model=name,
                      d=[float(v) for v in model.D] if model.distortion_model != 'none' else [],
                      k=model.K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1))


# --- transforms ------------------------------------------------------------------------------

def transform_to_matrix(msg: TransformStamped | Transform) -> np.ndarray:
    """
    Convert a Transform or TransformStamped to the ``(4, 4)`` float64 ``T_parent_child``.

    ``X_parent = T @ X_child`` with parent ``header.frame_id`` and child ``child_frame_id``; the
    quaternion is normalized.

    :raises ValueError: on a zero or non-finite quaternion or a non-finite translation.
    """
    tf = msg.transform if isinstance(msg, TransformStamped) else msg
    t, q = tf.translation, tf.rotation
    translation = np.array([t.x, t.y, t.z], dtype=np.float64)
    if not np.isfinite(translation).all():
        raise ValueError(f'transform translation is not finite: {translation}')
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix([q.x, q.y, q.z, q.w])
    T[:3, 3] = translation
    return T


def matrix_to_transform(T: np.ndarray, stamp_ns: int, parent: str,
                        child: str) -> TransformStamped:
    """
    Build a ``geometry_msgs/TransformStamped`` of a ``(4, 4)`` homogeneous ``T_parent_child``.

    :raises ValueError: when ``T`` is not a finite rigid transform (rotation orthonormal with
        determinant +1 to 1e-6, last row ``[0, 0, 0, 1]``).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f'T must have shape (4, 4), got {T.shape}')
    if not np.isfinite(T).all() or not np.allclose(T[3], [0, 0, 0, 1], atol=0):
        raise ValueError('T must be finite with last row [0, 0, 0, 1]')
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
        raise ValueError('the rotation part of T is not a rotation matrix (R^T R != I or det < 0)')
    msg = TransformStamped(header=make_header(stamp_ns, parent), child_frame_id=str(child))
    tf = msg.transform
    tf.translation.x, tf.translation.y, tf.translation.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quat(R)
    tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w = (float(v) for v in q)
    return msg
