"""
Speed of the message conversions in ``i2p_registration.ros.conversions``.

Measures the median time to convert a 131072-point PointCloud2 (x, y, z, intensity float32,
ring uint16, time float32; point_step 32) to an ``(N, 3)`` float32 array and to all its fields,
and a 1920x1200 Image to an RGB array, against two ways of reading points in the same run:

- a per-point ``struct.unpack_from`` loop with a NaN check per point, as the older
  ``sensor_msgs(_py).point_cloud2.read_points`` did, collected into a float32 array;
- a numpy structured dtype over the buffer (``np.ndarray(buffer=msg.data)``), field selection
  and ``structured_to_unstructured``, as current ``sensor_msgs_py.read_points_numpy`` does.

Usage: ``python benchmarks/conversions.py [--quick]``; writes benchmarks/results/conversions.json.
"""

import argparse
import math
import struct
import sys

from common import figure, median_ms, write_results
from i2p_registration.ros.conversions import cloud_to_numpy, cloud_to_structured
from i2p_registration.ros.conversions import image_to_numpy, numpy_to_cloud, numpy_to_image
import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured
from sensor_msgs.msg import PointField

N_POINTS = 131072
IMAGE_SHAPE = (1200, 1920, 3)
SEED = 0

_STRUCT_TYPES = {PointField.INT8: ('b', 1), PointField.UINT8: ('B', 1),
                 PointField.INT16: ('h', 2), PointField.UINT16: ('H', 2),
                 PointField.INT32: ('i', 4), PointField.UINT32: ('I', 4),
                 PointField.FLOAT32: ('f', 4), PointField.FLOAT64: ('d', 8)}
_NUMPY_TYPES = {PointField.INT8: np.int8, PointField.UINT8: np.uint8,
                PointField.INT16: np.int16, PointField.UINT16: np.uint16,
                PointField.INT32: np.int32, PointField.UINT32: np.uint32,
                PointField.FLOAT32: np.float32, PointField.FLOAT64: np.float64}


def struct_loop_xyz(msg, n_points):
    """Read x, y, z of the first ``n_points`` points the way the old read_points did."""
    fmt = '>' if msg.is_bigendian else '<'
    offset = 0
    for field in sorted((f for f in msg.fields if f.name in 'xyz'), key=lambda f: f.offset):
        fmt += 'x' * (field.offset - offset)
        code, size = _STRUCT_TYPES[field.datatype]
        fmt += code * field.count
        offset = field.offset + size * field.count
    unpack_from = struct.Struct(fmt).unpack_from
    data, point_step, isnan = msg.data, msg.point_step, math.isnan
    points = []
    for k in range(n_points):
        p = unpack_from(data, k * point_step)
        if not any(isnan(v) for v in p):
            points.append(p)
    return np.array(points, dtype=np.float32)


def structured_frombuffer_xyz(msg):
    """Read x, y, z as sensor_msgs_py.read_points_numpy does (a strided view in numpy >= 1.25)."""
    names, offsets, formats = [], [], []
    for field in msg.fields:
        names.append(field.name)
        offsets.append(field.offset)
        formats.append(np.dtype(_NUMPY_TYPES[field.datatype]).str)
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': msg.point_step})
    points = np.ndarray(shape=(msg.width * msg.height,), dtype=dtype, buffer=msg.data)
    points = points[['x', 'y', 'z']]
    if bool(sys.byteorder != 'little') != bool(msg.is_bigendian):
        points = points.byteswap(inplace=True)
    if not msg.is_dense:
        points = points[~(np.isnan(points['x']) | np.isnan(points['y']) | np.isnan(points['z']))]
    return structured_to_unstructured(points)


def main():
    """Run the measurements and write benchmarks/results/conversions.json."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--quick', action='store_true', help='fewer repetitions (make bench)')
    args = parser.parse_args()
    repeat = 30 if args.quick else 300
    loop_points = 8192 if args.quick else N_POINTS
    loop_repeat = 3 if args.quick else 5

    rng = np.random.default_rng(SEED)
    points = (rng.standard_normal((N_POINTS, 3)) * 20).astype(np.float32)
    cloud = numpy_to_cloud(points, 1_700_000_000_000_000_000, 'lidar',
                           intensity=rng.random(N_POINTS, dtype=np.float32),
                           ring=rng.integers(0, 128, N_POINTS).astype(np.uint16),
                           time=rng.random(N_POINTS, dtype=np.float32) * 0.1)
    rgb = rng.integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)
    image = numpy_to_image(rgb, 0, 'camera')
    image_bgr = numpy_to_image(rgb, 0, 'camera', 'bgr8')

    assert np.array_equal(cloud_to_numpy(cloud, extra_fields=False).xyz, points)
    assert np.array_equal(structured_frombuffer_xyz(cloud), points)
    assert np.array_equal(struct_loop_xyz(cloud, 1000), points[:1000])
    assert np.array_equal(image_to_numpy(image), rgb)
    assert np.array_equal(image_to_numpy(image_bgr), rgb)

    xyz_ms = median_ms(lambda: cloud_to_numpy(cloud, extra_fields=False), repeat)
    fields_ms = median_ms(lambda: cloud_to_numpy(cloud), repeat)
    view_ms = median_ms(lambda: cloud_to_structured(cloud), repeat)
    theirs_view_ms = median_ms(lambda: structured_frombuffer_xyz(cloud), repeat)
    theirs_ms = median_ms(lambda: np.ascontiguousarray(structured_frombuffer_xyz(cloud)), repeat)
    loop_ms = median_ms(lambda: struct_loop_xyz(cloud, loop_points), loop_repeat, warmup=1)
    loop_ms *= N_POINTS / loop_points
    image_ms = median_ms(lambda: image_to_numpy(image), repeat)
    image_copy_ms = median_ms(lambda: image_to_numpy(image, copy=True), repeat)
    image_bgr_ms = median_ms(lambda: image_to_numpy(image_bgr), repeat)
    to_cloud_ms = median_ms(
        lambda: numpy_to_cloud(points, 0, 'lidar', intensity=points[:, 0],
                               ring=np.zeros(N_POINTS, np.uint16), time=points[:, 1]),
        max(repeat // 10, 5))
    to_image_ms = median_ms(lambda: numpy_to_image(rgb, 0, 'camera'), max(repeat // 10, 5))

    scaled = (f'timed on the first {loop_points} points and scaled x{N_POINTS // loop_points}'
              if loop_points < N_POINTS else 'timed on all points')
    their_text = ('sensor_msgs_py-style frombuffer + structured_to_unstructured '
                  f'{theirs_ms:.3f} ms to a contiguous (N, 3) float32 array '
                  f'({theirs_view_ms:.3f} ms for the strided view it returns, before '
                  'np.ascontiguousarray)')
    figures = [
        figure('cloud_to_xyz_ms', xyz_ms, 'ms', 'lower', 2.0,
               f'per-point struct loop {loop_ms:.1f} ms; {their_text}'),
        figure('cloud_to_fields_ms', fields_ms, 'ms', 'lower', None,
               'x, y, z, intensity, ring, time, all contiguous'),
        figure('image_to_rgb_ms', image_ms, 'ms', 'lower', None,
               f'rgb8 1920x1200, unpadded: a view of msg.data; copy=True {image_copy_ms:.3f} ms'),
        figure('image_bgr8_to_rgb_ms', image_bgr_ms, 'ms', 'lower', None,
               'bgr8 1920x1200 to a new RGB array (cv2.cvtColor)'),
        figure('speedup_vs_struct_loop', loop_ms / xyz_ms, 'x', 'higher', 50.0,
               f'per-point struct.unpack_from loop with NaN check, {loop_ms:.1f} ms ({scaled})'),
        figure('ratio_vs_structured_frombuffer', xyz_ms / theirs_ms, 'ratio', 'lower', 1.0,
               their_text),
        figure('ratio_structured_view_vs_frombuffer_view', view_ms / theirs_view_ms, 'ratio',
               'lower', None,
               f'zero-copy views: cloud_to_structured {view_ms:.4f} ms vs '
               f'sensor_msgs_py-style view {theirs_view_ms:.4f} ms'),
        figure('numpy_to_cloud_ms', to_cloud_ms, 'ms', 'lower', None,
               'x, y, z, intensity, ring, time into a point_step 32 PointCloud2'),
        figure('numpy_to_image_ms', to_image_ms, 'ms', 'lower', None, 'rgb8 1920x1200'),
    ]
    config = {'n_points': N_POINTS, 'point_step': cloud.point_step,
              'image': f'{IMAGE_SHAPE[1]}x{IMAGE_SHAPE[0]} rgb8', 'repeat': repeat,
              'struct_loop_points': loop_points, 'struct_loop_repeat': loop_repeat,
              'statistic': 'median', 'seed': SEED, 'quick': args.quick,
              'numpy': np.__version__, 'python': sys.version.split()[0]}
    path = write_results('conversions', config, figures)
    for f in figures:
        print(f"{f['name']:45s} {f['value']:10.4f} {f['unit']:6s} target {f['target']} "
              f"meets {f['meets']}")
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
