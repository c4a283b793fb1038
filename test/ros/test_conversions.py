"""
Tests of ``i2p_registration.ros.conversions`` against real rclpy message objects.

Messages under test are built here byte by byte (``struct`` per point, raw rows per image), not
with the functions under test, so layout bugs cannot cancel out.
"""

import array
import struct

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from builtin_interfaces.msg import Time  # noqa: E402, I100
import cv2  # noqa: E402
from geometry_msgs.msg import Transform  # noqa: E402
from i2p_registration.core.geometry.rotations import so3_exp  # noqa: E402
from i2p_registration.core.sensors import CameraModel  # noqa: E402
from i2p_registration.ros import conversions as conv  # noqa: E402
import numpy as np  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402

F32, F64 = PointField.FLOAT32, PointField.FLOAT64
I8, U8, I16, U16 = PointField.INT8, PointField.UINT8, PointField.INT16, PointField.UINT16
I32, U32 = PointField.INT32, PointField.UINT32
_STRUCT = {I8: 'b', U8: 'B', I16: 'h', U16: 'H', I32: 'i', U32: 'I', F32: 'f', F64: 'd'}
_NUMPY = {I8: np.int8, U8: np.uint8, I16: np.int16, U16: np.uint16, I32: np.int32,
          U32: np.uint32, F32: np.float32, F64: np.float64}
STAMP_NS = 1_700_000_000_123_456_789

# name -> (fields as (name, datatype, offset), point_step); modelled on real drivers.
LAYOUTS = {
    'velodyne': ([('x', F32, 0), ('y', F32, 4), ('z', F32, 8), ('intensity', F32, 16),
                  ('ring', U16, 20), ('time', F32, 24)], 32),
    'packed_unaligned': ([('x', F32, 0), ('y', F32, 4), ('z', F32, 8), ('intensity', F32, 12),
                          ('ring', U16, 16), ('time', F32, 18)], 22),
    'ouster': ([('x', F32, 0), ('y', F32, 4), ('z', F32, 8), ('intensity', F32, 16),
                ('t', U32, 20), ('reflectivity', U16, 24), ('ring', U16, 26),
                ('ambient', U16, 28), ('range', U32, 32)], 48),
    'livox': ([('x', F32, 0), ('y', F32, 4), ('z', F32, 8), ('reflectivity', U8, 12),
               ('tag', U8, 13), ('line', U8, 14), ('offset_time', U32, 16)], 20),
    'double_absolute_time': ([('x', F64, 0), ('y', F64, 8), ('z', F64, 16), ('i', I16, 24),
                              ('line', I32, 28), ('timestamp', F64, 32)], 40),
    'int_fields': ([('x', F32, 0), ('y', F32, 4), ('z', F32, 8), ('intensity', I8, 12),
                    ('ring', I32, 13), ('time', F64, 17)], 25),
    'reordered_mixed': ([('intensity', U16, 0), ('z', F64, 2), ('x', F32, 10), ('y', F32, 14),
                         ('t', I32, 18)], 24),
    'xyz_only': ([('x', F32, 0), ('y', F32, 4), ('z', F32, 8)], 12),
    'unknown_extra_field': ([('x', F32, 0), ('y', F32, 4), ('z', F32, 8),
                             ('foo', 42, 12)], 16),
}
INTENSITY_NAMES = ('intensity', 'reflectivity', 'i')
RING_NAMES = ('ring', 'line')
TIME_NAMES = ('time', 't', 'timestamp', 'offset_time')


def field_values(rng, name, datatype, n):
    """Seeded values for one field, of its exact type."""
    if datatype == F32 or datatype == F64:
        if name in ('timestamp',):
            return STAMP_NS * 1e-9 + rng.uniform(0, 0.1, n)
        scale = 0.1 if name in ('time',) else 20.0
        return (rng.standard_normal(n) * scale).astype(_NUMPY[datatype])
    if datatype not in _NUMPY:
        return np.zeros(n, np.uint32)
    info = np.iinfo(_NUMPY[datatype])
    high = 100_000_000 if name in ('t', 'offset_time') else info.max
    low = 0 if name in ('t', 'offset_time') else info.min
    return rng.integers(low, min(high, info.max), n, endpoint=True).astype(_NUMPY[datatype])


def build_cloud(layout, values, height, width, bigendian, row_pad=0, is_dense=True):
    """Pack a PointCloud2 point by point with ``struct``."""
    fields, point_step = LAYOUTS[layout]
    row_step = width * point_step + row_pad
    data = bytearray(row_step * height)
    order = '>' if bigendian else '<'
    for name, datatype, offset in fields:
        fmt = order + (_STRUCT.get(datatype) or 'I')
        column = values[name].reshape(-1)
        for k in range(height * width):
            r, c = divmod(k, width)
            struct.pack_into(fmt, data, r * row_step + c * point_step + offset, column[k].item())
    msg = PointCloud2(height=height, width=width, is_bigendian=bigendian, point_step=point_step,
                      row_step=row_step, data=bytes(data), is_dense=is_dense)
    msg.fields = [PointField(name=n, datatype=d, offset=o, count=1) for n, d, o in fields]
    msg.header.stamp = conv.ns_to_stamp(STAMP_NS)
    msg.header.frame_id = 'lidar'
    return msg


def layout_values(layout, n, seed):
    rng = np.random.default_rng(seed)
    return {name: field_values(rng, name, dt, n) for name, dt, _ in LAYOUTS[layout][0]}


def expected_fields(values):
    """Apply the documented conversion to each recognized field."""
    xyz = np.stack([values[a].astype(np.float32) for a in 'xyz'], axis=1)

    def first(names):
        return next((values[n] for n in names if n in values), None)
    intensity, ring, time = first(INTENSITY_NAMES), first(RING_NAMES), first(TIME_NAMES)
    if time is not None:
        if time.dtype.kind in 'iu':
            time = time * 1e-9
        elif time.dtype == np.float64 and np.abs(time).max() > 1e6:
            time = time - STAMP_NS * 1e-9
        time = time.astype(np.float32)
    return (xyz, None if intensity is None else intensity.astype(np.float32),
            None if ring is None else ring.astype(np.uint16), time)


def assert_same(actual, expected):
    if expected is None:
        assert actual is None
    else:
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert np.array_equal(actual, expected)


# --- point clouds ----------------------------------------------------------------------------

@pytest.mark.parametrize('layout', sorted(LAYOUTS))
@pytest.mark.parametrize('bigendian', [False, True], ids=['le', 'be'])
@pytest.mark.parametrize('shape', [(1, 97), (6, 11)], ids=['unorganized', 'organized_padded'])
def test_cloud_layouts_exact(layout, bigendian, shape):
    height, width = shape
    row_pad = 0 if height == 1 else 13
    values = layout_values(layout, height * width, seed=sorted(LAYOUTS).index(layout))
    msg = build_cloud(layout, values, height, width, bigendian, row_pad)
    fields = conv.cloud_to_numpy(msg)
    xyz, intensity, ring, time = expected_fields(values)
    assert_same(fields.xyz, xyz)
    assert fields.xyz.flags['C_CONTIGUOUS']
    assert_same(fields.intensity, intensity)
    assert_same(fields.ring, ring)
    assert_same(fields.time, time)
    assert fields.n_invalid_dropped == 0
    only_xyz = conv.cloud_to_numpy(msg, extra_fields=False)
    assert_same(only_xyz.xyz, xyz)
    assert only_xyz.intensity is None and only_xyz.ring is None and only_xyz.time is None


def test_time_rules():
    values = layout_values('ouster', 50, seed=3)
    time = conv.cloud_to_numpy(build_cloud('ouster', values, 1, 50, False)).time
    assert np.array_equal(time, (values['t'] * 1e-9).astype(np.float32))
    assert 0 <= time.min() and time.max() <= 0.1
    values = layout_values('double_absolute_time', 50, seed=4)
    time = conv.cloud_to_numpy(build_cloud('double_absolute_time', values, 1, 50, False)).time
    assert 0 <= time.min() and time.max() <= 0.1 + 1e-6


@pytest.mark.parametrize('is_dense', [False, True], ids=['dense_false', 'dense_lies'])
def test_non_finite_points_dropped_and_counted(is_dense):
    n = 200
    values = layout_values('velodyne', n, seed=5)
    bad = np.array([0, 7, 8, 100, 199])
    values['x'][bad[:2]] = np.nan
    values['y'][bad[2]] = np.inf
    values['z'][bad[3:]] = -np.inf
    values['intensity'][10] = np.nan  # a NaN outside x, y, z keeps its point
    msg = build_cloud('velodyne', values, 1, n, False, is_dense=is_dense)
    frame, n_dropped = conv.cloud_to_frame(msg)
    keep = np.ones(n, bool)
    keep[bad] = False
    xyz, intensity, ring, time = expected_fields(values)
    assert n_dropped == 5 and len(frame) == n - 5
    assert np.array_equal(frame.points, xyz[keep])
    assert np.array_equal(frame.intensity, intensity[keep], equal_nan=True)
    assert np.array_equal(frame.ring, ring[keep]) and np.array_equal(frame.time, time[keep])
    assert frame.stamp_ns == STAMP_NS and frame.frame_id == 'lidar'


@pytest.mark.parametrize('bigendian', [False, True], ids=['le', 'be'])
@pytest.mark.parametrize('shape', [(1, 64), (4, 16)], ids=['unorganized', 'organized'])
def test_structured_view_is_zero_copy(bigendian, shape):
    values = layout_values('velodyne', shape[0] * shape[1], seed=6)
    msg = build_cloud('velodyne', values, *shape, bigendian)
    view = conv.cloud_to_structured(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    xyz = conv.cloud_to_numpy(msg).xyz
    msg.data[0:4] = array.array('B', struct.pack('>f' if bigendian else '<f', 1234.5))
    assert view['x'][0] == np.float32(1234.5)
    assert xyz[0, 0] == values['x'][0], 'xyz must be a copy, not a view of the message'


def test_structured_view_of_a_received_message_is_zero_copy():
    values = layout_values('velodyne', 64, seed=7)
    sent = build_cloud('velodyne', values, 1, 64, False)
    received = deserialize_message(serialize_message(sent), PointCloud2)
    view = conv.cloud_to_structured(received)
    assert np.shares_memory(view, np.frombuffer(received.data, np.uint8))
    assert np.array_equal(view['time'], values['time'])


def test_padded_rows_are_copied_once():
    values = layout_values('velodyne', 4 * 16, seed=8)
    msg = build_cloud('velodyne', values, 4, 16, False, row_pad=8)
    view = conv.cloud_to_structured(msg)
    assert view.shape == (64,)
    assert not np.shares_memory(view, np.frombuffer(msg.data, np.uint8))
    assert np.array_equal(view['ring'], values['ring'])


def test_empty_cloud():
    msg = build_cloud('velodyne', layout_values('velodyne', 0, seed=0), 1, 0, False)
    fields = conv.cloud_to_numpy(msg)
    assert fields.xyz.shape == (0, 3) and fields.xyz.dtype == np.float32
    assert fields.ring.shape == (0,) and fields.n_invalid_dropped == 0


@pytest.mark.parametrize('extras', [(), ('intensity',), ('ring', 'time'),
                                    ('intensity', 'ring', 'time')], ids=str)
def test_numpy_to_cloud_round_trip(extras):
    rng = np.random.default_rng(9)
    n = 257
    points = rng.standard_normal((n, 3)).astype(np.float32)
    columns = {'intensity': rng.random(n, dtype=np.float32),
               'ring': rng.integers(0, 128, n).astype(np.uint16),
               'time': rng.random(n, dtype=np.float32)}
    given = {k: columns[k] for k in extras}
    msg = conv.numpy_to_cloud(points, STAMP_NS, 'velodyne', **given)
    assert msg.height == 1 and msg.width == n and msg.is_dense
    assert msg.point_step == (16 if not extras else 32) and msg.row_step == n * msg.point_step
    layout = {f.name: (f.offset, f.datatype, f.count) for f in msg.fields}
    want = {'x': (0, F32, 1), 'y': (4, F32, 1), 'z': (8, F32, 1), 'intensity': (16, F32, 1),
            'ring': (20, U16, 1), 'time': (24, F32, 1)}
    assert layout == {k: want[k] for k in ['x', 'y', 'z', *extras]}
    assert conv.stamp_to_ns(msg.header.stamp) == STAMP_NS and msg.header.frame_id == 'velodyne'
    first = bytes(msg.data[:msg.point_step])
    assert first[:12] == struct.pack('<3f', *points[0].tolist())
    fields = conv.cloud_to_numpy(msg)
    assert_same(fields.xyz, points)
    for name in ('intensity', 'ring', 'time'):
        assert_same(getattr(fields, name), given.get(name))


def _velodyne_msg(n=10):
    return build_cloud('velodyne', layout_values('velodyne', n, seed=1), 1, n, False)


def _cloud_missing_x():
    msg = _velodyne_msg()
    msg.fields = [f for f in msg.fields if f.name != 'x']
    return msg


def _cloud_bad(**changes):
    msg = _velodyne_msg()
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


def _cloud_bad_datatype():
    msg = _velodyne_msg()
    msg.fields[1].datatype = 11
    return msg


def _cloud_field_outside():
    msg = _velodyne_msg()
    msg.fields[5].offset = 30
    return msg


@pytest.mark.parametrize('make, match', [
    (lambda: _cloud_bad(data=bytes(319)), r'319 bytes, expected row_step \* height'),
    (lambda: _cloud_bad(row_step=300, data=bytes(300)), r'row_step 300 is smaller than width'),
    (lambda: _cloud_bad(point_step=24, row_step=240, data=bytes(240)),
     r'point_step 24 is smaller than the extent of field'),
    (_cloud_field_outside, r"point_step 32 is smaller than the extent of field 'time'"),
    (_cloud_missing_x, r"no 'x' field"),
    (_cloud_bad_datatype, r"unsupported PointField datatype 11 of field 'y'"),
], ids=['data_length', 'row_step', 'point_step', 'field_extent', 'missing_x', 'datatype'])
def test_cloud_bad_input(make, match):
    with pytest.raises(ValueError, match=match):
        conv.cloud_to_numpy(make())


def test_numpy_to_cloud_bad_input():
    with pytest.raises(ValueError, match=r'points must have shape \(N, 3\)'):
        conv.numpy_to_cloud(np.zeros((4, 2)), 0, 'lidar')
    with pytest.raises(ValueError, match=r'ring must have shape \(4,\)'):
        conv.numpy_to_cloud(np.zeros((4, 3)), 0, 'lidar', ring=np.zeros(3))


# --- images ----------------------------------------------------------------------------------

def build_image(encoding, pixels, row_pad=0, bigendian=False):
    """Build an Image of ``pixels`` rows (in that byte order) followed by ``row_pad`` bytes."""
    pixels = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<'))
    rows = [pixels[r].tobytes() + b'\x07' * row_pad for r in range(pixels.shape[0])]
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                 is_bigendian=bigendian, step=len(rows[0]), data=b''.join(rows))


def min_max_uint8(gray):
    """Apply the documented 16-bit / float scaling rule, written out independently."""
    gray = gray.astype(np.float64)
    finite = np.isfinite(gray)
    lo, hi = gray[finite].min(), gray[finite].max()
    out = np.zeros(gray.shape, np.uint8)
    out[finite] = np.floor((gray[finite] - lo) * 255.0 / (hi - lo) + 0.5)
    return np.repeat(out[..., None], 3, axis=2)


def image_case(encoding, rng, height=9, width=13):
    """``(pixels of that encoding, expected RGB)`` for a seeded image."""
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (height, width, 1), dtype=np.uint8)
    if encoding == 'rgb8':
        return rgb, rgb
    if encoding == 'bgr8':
        return rgb[..., ::-1].copy(), rgb
    if encoding == 'rgba8':
        return np.concatenate([rgb, alpha], axis=2), rgb
    if encoding == 'bgra8':
        return np.concatenate([rgb[..., ::-1], alpha], axis=2), rgb
    if encoding in ('mono8', '8UC1'):
        gray = rgb[..., 0]
        return gray, np.repeat(gray[..., None], 3, axis=2)
    if encoding in ('mono16', '16UC1'):
        gray = rng.integers(100, 60000, (height, width), dtype=np.uint16)
        return gray, min_max_uint8(gray)
    gray = rng.uniform(-3.0, 40.0, (height, width)).astype(np.float32)
    gray[1, 2], gray[3, 4], gray[5, 6] = np.nan, np.inf, -np.inf
    return gray, min_max_uint8(gray)


ENCODINGS = ['rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', '8UC1', 'mono16', '16UC1', '32FC1']


@pytest.mark.parametrize('encoding', ENCODINGS)
@pytest.mark.parametrize('row_pad', [0, 5], ids=['unpadded', 'padded'])
@pytest.mark.parametrize('bigendian', [False, True], ids=['le', 'be'])
def test_image_encodings_exact(encoding, row_pad, bigendian):
    rng = np.random.default_rng(ENCODINGS.index(encoding))
    pixels, expected = image_case(encoding, rng)
    rgb = conv.image_to_numpy(build_image(encoding, pixels, row_pad, bigendian))
    assert rgb.dtype == np.uint8 and rgb.shape == expected.shape and rgb.flags['C_CONTIGUOUS']
    assert np.array_equal(rgb, expected)


def test_sixteen_bit_scaling_endpoints():
    gray = np.array([[100, 200, 300], [400, 500, 1100]], np.uint16)
    rgb = conv.image_to_numpy(build_image('mono16', gray))
    assert rgb[..., 0].tolist() == [[0, 26, 51], [77, 102, 255]]
    constant = conv.image_to_numpy(build_image('16UC1', np.full((2, 3), 7, np.uint16)))
    assert not constant.any()


def test_rgb8_view_and_copy():
    rgb = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    msg = build_image('rgb8', rgb)
    buffer = np.frombuffer(msg.data, np.uint8)
    assert np.shares_memory(conv.image_to_numpy(msg), buffer)
    copied = conv.image_to_numpy(msg, copy=True)
    assert not np.shares_memory(copied, buffer) and np.array_equal(copied, rgb)


BAYER = {  # ROS encoding -> channel sampled at (row % 2, col % 2)
    'bayer_rggb8': [[0, 1], [1, 2]], 'bayer_bggr8': [[2, 1], [1, 0]],
    'bayer_gbrg8': [[1, 2], [0, 1]], 'bayer_grbg8': [[1, 0], [2, 1]],
}


def mosaic(rgb, pattern):
    out = np.empty(rgb.shape[:2], np.uint8)
    for dr in range(2):
        for dc in range(2):
            out[dr::2, dc::2] = rgb[dr::2, dc::2, BAYER[pattern][dr][dc]]
    return out


@pytest.mark.parametrize('pattern', sorted(BAYER))
@pytest.mark.parametrize('row_pad', [0, 3], ids=['unpadded', 'padded'])
def test_bayer_demosaic_matches_ros_pattern(pattern, row_pad):
    flat = np.empty((12, 16, 3), np.uint8)
    flat[...] = (200, 100, 30)
    rgb = conv.image_to_numpy(build_image(pattern, mosaic(flat, pattern), row_pad))
    assert np.array_equal(rgb[2:-2, 2:-2], flat[2:-2, 2:-2])
    # Every interior pixel keeps the channel its Bayer cell sampled, exactly.
    seeded = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    rgb = conv.image_to_numpy(build_image(pattern, mosaic(seeded, pattern), row_pad))
    for dr in range(2):
        for dc in range(2):
            ch = BAYER[pattern][dr][dc]
            assert np.array_equal(rgb[2 + dr:-2:2, 2 + dc:-2:2, ch],
                                  seeded[2 + dr:-2:2, 2 + dc:-2:2, ch])


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
def test_numpy_to_image_round_trip(encoding):
    rgb = np.random.default_rng(3).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    msg = conv.numpy_to_image(rgb, STAMP_NS, 'camera', encoding)
    assert msg.encoding == encoding and msg.step == 5 * len(encoding.rstrip('8'))
    assert conv.stamp_to_ns(msg.header.stamp) == STAMP_NS and msg.header.frame_id == 'camera'
    assert np.array_equal(conv.image_to_numpy(msg), rgb)


def test_numpy_to_image_mono8():
    rgb = np.random.default_rng(4).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    back = conv.image_to_numpy(conv.numpy_to_image(rgb, 0, 'camera', 'mono8'))
    assert np.array_equal(back[..., 1], cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert np.array_equal(back[..., 0], back[..., 2])


def smooth_rgb(height=48, width=64):
    v, u = np.mgrid[0:height, 0:width]
    return np.stack([u * 255 // width, v * 255 // height, (u + v) * 127 // (height + width)],
                    axis=2).astype(np.uint8)


@pytest.mark.parametrize('fmt', ['png', 'jpeg'])
def test_compressed_round_trip(fmt):
    rgb = smooth_rgb()
    msg = conv.numpy_to_compressed(rgb, STAMP_NS, 'camera', fmt)
    assert msg.format == f'rgb8; {fmt} compressed bgr8'
    back = conv.compressed_to_numpy(msg)
    if fmt == 'png':
        assert np.array_equal(back, rgb)
    else:
        assert back.shape == rgb.shape and np.abs(back.astype(int) - rgb).mean() < 2.0


@pytest.mark.parametrize('fmt', ['png', 'PNG', 'bgr8; png compressed bgr8', 'jpeg', 'jpg', ''])
def test_compressed_format_strings_are_lenient(fmt):
    rgb = smooth_rgb(8, 8)
    ok, png = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    back = conv.compressed_to_numpy(CompressedImage(format=fmt, data=png.tobytes()))
    assert np.array_equal(back, rgb)


def test_compressed_grey_and_sixteen_bit():
    gray = smooth_rgb()[..., 0]
    ok, png = cv2.imencode('.png', gray)
    msg = CompressedImage(format='mono8; png compressed', data=png.tobytes())
    back = conv.compressed_to_numpy(msg)
    assert np.array_equal(back, np.repeat(gray[..., None], 3, axis=2))
    gray16 = np.random.default_rng(5).integers(10, 5000, (6, 9), dtype=np.uint16)
    ok, png = cv2.imencode('.png', gray16)
    back = conv.compressed_to_numpy(CompressedImage(format='png', data=png.tobytes()))
    assert np.array_equal(back, min_max_uint8(gray16))


def test_image_to_frame():
    rgb = smooth_rgb(6, 8)
    camera = CameraModel(np.array([[10.0, 0, 4], [0, 10, 3], [0, 0, 1]]), 8, 6)
    frame = conv.image_to_frame(conv.numpy_to_image(rgb, STAMP_NS, 'cam', 'bgr8'), camera)
    assert np.array_equal(frame.image, rgb) and frame.stamp_ns == STAMP_NS
    assert frame.frame_id == 'cam' and frame.camera is camera
    frame = conv.image_to_frame(conv.numpy_to_compressed(rgb, 5, 'cam', 'png'), camera)
    assert np.array_equal(frame.image, rgb) and frame.stamp_ns == 5


def _image(encoding='rgb8', **changes):
    msg = build_image(encoding, np.zeros((4, 6, 3) if encoding == 'rgb8' else (4, 6), np.uint8))
    for key, value in changes.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize('call, match', [
    (lambda: conv.image_to_numpy(_image(encoding='yuv422')),
     r"unsupported image encoding 'yuv422'"),
    (lambda: conv.image_to_numpy(_image(step=17, data=bytes(68))),
     r'image step 17 is smaller than width \* bytes per pixel \(6 \* 3\)'),
    (lambda: conv.image_to_numpy(_image(data=bytes(71))), r'71 bytes, expected step \* height'),
    (lambda: conv.image_to_numpy(_image(height=0, data=b'')), r'image is empty'),
    (lambda: conv.image_to_frame(_image(), CameraModel(np.diag([5.0, 5, 1]), 7, 4)),
     r'image size 6x4 differs from the CameraInfo size 7x4'),
    (lambda: conv.compressed_to_numpy(CompressedImage(format='jpeg', data=b'not a jpeg')),
     r'undecodable compressed image'),
    (lambda: conv.compressed_to_numpy(CompressedImage(format='jpeg', data=b'')),
     r'undecodable compressed image'),
    (lambda: conv.compressed_to_numpy(CompressedImage(format='16UC1; compressedDepth png',
                                                      data=b'1234')),
     r'unsupported CompressedImage format .*compressedDepth'),
    (lambda: conv.numpy_to_image(np.zeros((2, 2, 3), np.float32), 0, 'c'),
     r'\(H, W, 3\) uint8 RGB'),
    (lambda: conv.numpy_to_image(np.zeros((2, 2, 3), np.uint8), 0, 'c', 'yuv422'),
     r"unsupported image encoding 'yuv422'"),
    (lambda: conv.numpy_to_compressed(np.zeros((2, 2, 3), np.uint8), 0, 'c', 'webp'),
     r"'jpeg' or 'png'"),
], ids=['encoding', 'step', 'data_length', 'empty', 'camera_size', 'undecodable',
        'empty_compressed', 'compressed_depth', 'numpy_dtype', 'numpy_encoding', 'fmt'])
def test_image_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --- camera calibration ----------------------------------------------------------------------

K = np.array([[700.0, 0.0, 640.5], [0.0, 705.0, 360.25], [0.0, 0.0, 1.0]])


def camera_info(model, D, K=K, width=1280, height=720):
    return CameraInfo(width=width, height=height, distortion_model=model, d=list(D),
                      k=np.asarray(K, float).reshape(-1))


@pytest.mark.parametrize('ros_model, D, model', [
    ('plumb_bob', [0.1, -0.2, 0.001, 0.002, 0.05], 'plumb_bob'),
    ('plumb_bob', [0.1, -0.2, 0.001, 0.002], 'plumb_bob'),
    ('rational_polynomial', [0.1, -0.2, 0.001, 0.002, 0.05, 0.01, 0.02, 0.03], 'plumb_bob'),
    ('equidistant', [0.01, -0.02, 0.003, -0.004], 'equidistant'),
    ('plumb_bob', [], 'none'),
    ('', [], 'none'),
])
def test_camera_info_to_model_and_back(ros_model, D, model):
    camera = conv.camera_info_to_model(camera_info(ros_model, D))
    assert camera.distortion_model == model and camera.size == (1280, 720)
    assert np.array_equal(camera.K, K) and np.array_equal(camera.D, np.array(D, float))
    msg = conv.model_to_camera_info(camera, STAMP_NS, 'camera_optical')
    assert np.array_equal(np.reshape(msg.p, (3, 4)), np.hstack([K, np.zeros((3, 1))]))
    assert np.array_equal(np.reshape(msg.r, (3, 3)), np.eye(3))
    assert msg.distortion_model == (ros_model or 'plumb_bob')
    assert msg.header.frame_id == 'camera_optical'
    assert conv.stamp_to_ns(msg.header.stamp) == STAMP_NS
    again = conv.camera_info_to_model(msg)
    assert again.distortion_model == model and np.array_equal(again.D, camera.D)
    assert np.array_equal(again.K, K) and again.size == camera.size


def test_camera_info_roi_and_binning():
    msg = camera_info('plumb_bob', [])
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = 40, 20, 640, 480
    camera = conv.camera_info_to_model(msg)
    assert camera.size == (640, 480) and np.allclose(camera.K[:2, 2], [600.5, 340.25])
    msg = camera_info('plumb_bob', [])
    msg.binning_x = msg.binning_y = 2
    camera = conv.camera_info_to_model(msg)
    assert camera.size == (640, 360)
    assert np.allclose(camera.K[:2, :], [[350.0, 0, 320.0], [0, 352.5, 179.875]])


@pytest.mark.parametrize('msg, match', [
    (camera_info('plumb_bob', [0.1] * 5, K=np.zeros((3, 3))), r'all-zero K'),
    (camera_info('kannala', [0.1] * 4), r"unsupported distortion model 'kannala'"),
    (camera_info('equidistant', [0.1] * 5), r'equidistant needs 4 coefficients'),
    (camera_info('plumb_bob', [0.1] * 5, width=0), r'image size must be positive'),
], ids=['zero_K', 'model', 'coefficients', 'size'])
def test_camera_info_bad_input(msg, match):
    with pytest.raises(ValueError, match=match):
        conv.camera_info_to_model(msg)


# --- transforms and stamps -------------------------------------------------------------------

def random_transform(rng):
    T = np.eye(4)
    T[:3, :3] = so3_exp(rng.standard_normal(3))
    T[:3, 3] = rng.standard_normal(3) * 10
    return T


def test_transform_round_trip():
    rng = np.random.default_rng(11)
    for k in range(50):
        T = random_transform(rng)
        if k == 0:
            T[:3, :3] = so3_exp([np.pi, 0, 0])
        msg = conv.matrix_to_transform(T, STAMP_NS, 'lidar', 'camera_optical')
        assert msg.header.frame_id == 'lidar' and msg.child_frame_id == 'camera_optical'
        assert conv.stamp_to_ns(msg.header.stamp) == STAMP_NS
        assert np.abs(conv.transform_to_matrix(msg) - T).max() < 1e-12
        assert np.abs(conv.transform_to_matrix(msg.transform) - T).max() < 1e-12


def test_transform_known_quaternion():
    tf = Transform()
    tf.translation.x, tf.translation.y, tf.translation.z = 1.0, 2.0, 3.0
    tf.rotation.z, tf.rotation.w = np.sin(np.pi / 4), np.cos(np.pi / 4)  # 90 deg about z
    T = conv.transform_to_matrix(tf)
    assert np.allclose(T, [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], atol=1e-15)


def zero_rotation():
    tf = Transform()
    tf.rotation.w = 0.0
    return tf


@pytest.mark.parametrize('call, match', [
    (lambda: conv.transform_to_matrix(zero_rotation()), r'zero'),
    (lambda: conv.matrix_to_transform(np.eye(3), 0, 'a', 'b'), r'shape \(4, 4\)'),
    (lambda: conv.matrix_to_transform(np.diag([1.0, 1, 2, 1]), 0, 'a', 'b'), r'rotation'),
    (lambda: conv.matrix_to_transform(np.diag([1.0, 1, -1, 1]), 0, 'a', 'b'), r'rotation'),
    (lambda: conv.matrix_to_transform(np.full((4, 4), np.nan), 0, 'a', 'b'), r'finite'),
    (lambda: conv.ns_to_stamp(-1), r'stamp must be >= 0'),
    (lambda: conv.ns_to_stamp(2 ** 31 * 10 ** 9), r'int32 seconds'),
], ids=['zero_quaternion', 'shape', 'scaled', 'reflection', 'nan', 'negative', 'overflow'])
def test_transform_and_stamp_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize('ns', [0, 1, 999_999_999, 1_000_000_000, STAMP_NS,
                                (2 ** 31 - 1) * 10 ** 9 + 999_999_999])
def test_stamp_round_trip(ns):
    stamp = conv.ns_to_stamp(ns)
    assert isinstance(stamp, Time) and 0 <= stamp.nanosec < 10 ** 9
    assert conv.stamp_to_ns(stamp) == ns
