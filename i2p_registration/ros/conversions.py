"""
Conversions between ROS 2 messages and the numpy types of ``core``.

This module and :mod:`i2p_registration.ros.message_parsing` are the only places that convert
messages. Reading messages (point clouds of any layout, images of every listed encoding,
CameraInfo, transforms, stamps) lives in ``message_parsing``, which needs no ROS so the offline
bag tools share it; its functions are re-exported here. This module adds what builds rclpy
messages: ``numpy_to_cloud``, ``numpy_to_image``, ``numpy_to_compressed``,
``model_to_camera_info``, ``matrix_to_transform``, ``ns_to_stamp`` and ``make_header``.
Neither ``cv_bridge`` nor ``sensor_msgs_py`` is needed.
"""

from __future__ import annotations

import array
import sys

from builtin_interfaces.msg import Time
import cv2
from geometry_msgs.msg import TransformStamped
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from .message_parsing import (camera_info_to_model, cloud_dtype, cloud_to_frame,  # noqa: F401
                              cloud_to_numpy, cloud_to_structured, CloudFields,
                              compressed_to_numpy, FIELD_TYPES, image_to_frame, image_to_numpy,
                              stamp_to_ns, transform_to_matrix)
from ..core.geometry.rotations import matrix_to_quat
from ..core.sensors import CameraModel

_NS_PER_S = 1_000_000_000
_INT32_MAX = 2 ** 31 - 1


# The PointCloud2 layout written by numpy_to_cloud: PCL's PointXYZ (16 bytes) and PointXYZIRT-like
# (32 bytes) alignment, which Velodyne and most LiDAR drivers publish.
_OUT_OFFSETS = {'x': 0, 'y': 4, 'z': 8, 'intensity': 16, 'ring': 20, 'time': 24}
_OUT_TYPES = {'x': PointField.FLOAT32, 'y': PointField.FLOAT32, 'z': PointField.FLOAT32,
              'intensity': PointField.FLOAT32, 'ring': PointField.UINT16,
              'time': PointField.FLOAT32}

_FROM_RGB = {'bgr8': cv2.COLOR_RGB2BGR, 'rgba8': cv2.COLOR_RGB2RGBA, 'bgra8': cv2.COLOR_RGB2BGRA,
             'mono8': cv2.COLOR_RGB2GRAY}


# --- time and header -------------------------------------------------------------------------


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
                      'formats': [FIELD_TYPES[_OUT_TYPES[k]] for k in present],
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


# --- camera calibration ----------------------------------------------------------------------


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
