"""
Voxelized point maps and the files a saved map is made of.

:func:`voxel_downsample` keeps one point per voxel (the centroid of the points inside it).
:func:`write_point_cloud` writes a map as PCD or PLY (Open3D, binary), :func:`write_tum` and
:func:`read_tum` keyframe poses in the TUM trajectory format
(``seconds tx ty tz qx qy qz qw`` per line).
"""

from __future__ import annotations

import os

import numpy as np

from ..geometry.rotations import matrix_to_quat, quat_to_matrix
from ..preprocess import voxel_keys

MAP_FORMATS = ('pcd', 'ply')


def voxel_downsample(points, voxel_size: float) -> np.ndarray:
    """
    Keep one point per cubic voxel: the centroid of the points that fall into it.

    :param points: ``(N, 3)`` points (metres); must be finite.
    :param voxel_size: voxel edge (metres, > 0).
    :return: ``(K, 3)`` float32 centroids, ``K <= N``, ordered by voxel index.
    :raises ValueError: on a wrong shape, non-finite points or a non-positive voxel.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {pts.shape}')
    if not voxel_size > 0.0:
        raise ValueError(f'voxel_size must be positive, got {voxel_size}')
    if not np.all(np.isfinite(pts)):
        raise ValueError('points contain NaN or inf')
    if len(pts) == 0:
        return np.zeros((0, 3), np.float32)
    _, inverse, counts = np.unique(voxel_keys(pts, voxel_size), return_inverse=True,
                                   return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.stack([np.bincount(inverse, pts[:, k], len(counts)) for k in range(3)], axis=1)
    return (sums / counts[:, None]).astype(np.float32)


def write_point_cloud(path: str | os.PathLike, points) -> None:
    """
    Write ``(N, 3)`` points as a binary PCD or PLY file, chosen by the file extension.

    :raises ValueError: on another extension or a wrong shape.
    :raises OSError: when the file cannot be written.
    """
    import open3d as o3d

    ext = os.path.splitext(str(path))[1].lower().lstrip('.')
    if ext not in MAP_FORMATS:
        raise ValueError(f'map file must end in .pcd or .ply, got {path!s}')
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {pts.shape}')
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    if not o3d.io.write_point_cloud(str(path), cloud, write_ascii=False):
        raise OSError(f'open3d could not write {path!s}')


def write_tum(path: str | os.PathLike, stamps_ns, poses) -> None:
    """
    Write poses in the TUM format: ``seconds tx ty tz qx qy qz qw`` per line.

    :param stamps_ns: ``(K,)`` int64 nanoseconds.
    :param poses: ``(K, 4, 4)`` poses ``T_map_frame``.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
    T = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    if len(stamps) != len(T):
        raise ValueError(f'{len(stamps)} stamps for {len(T)} poses')
    q = matrix_to_quat(T[:, :3, :3]).reshape(-1, 4)
    with open(path, 'w', encoding='utf-8') as stream:
        for stamp, t, quat in zip(stamps, T[:, :3, 3], q):
            sec, nsec = divmod(int(stamp), 1_000_000_000)
            stream.write(f'{sec}.{nsec:09d} ' + ' '.join(f'{v:.9f}' for v in (*t, *quat)) + '\n')


def read_tum(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """
    Read a TUM trajectory file (``#`` comments and blank lines skipped).

    :return: ``(K,)`` int64 stamps in nanoseconds and ``(K, 4, 4)`` poses.
    :raises ValueError: on a line without 8 numbers.
    """
    stamps, rows = [], []
    with open(path, encoding='utf-8') as stream:
        for number, line in enumerate(stream, 1):
            fields = line.split()
            if not fields or fields[0].startswith('#'):
                continue
            if len(fields) != 8:
                raise ValueError(f'{path!s}:{number}: expected 8 numbers, got {len(fields)}')
            sec, _, frac = fields[0].partition('.')
            stamps.append(int(sec) * 1_000_000_000 + int((frac + '000000000')[:9]))
            rows.append([float(v) for v in fields[1:]])
    values = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    T = np.tile(np.eye(4), (len(values), 1, 1))
    if len(values):
        T[:, :3, :3] = quat_to_matrix(values[:, 3:])
        T[:, :3, 3] = values[:, :3]
    return np.asarray(stamps, dtype=np.int64), T
