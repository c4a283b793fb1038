"""
Ground-truth pose files written next to generated bags.

- ``ground_truth.csv``: one row per camera image and LiDAR scan in the bag:
  ``stamp_ns,stream,index,frame_id,x,y,z,qx,qy,qz,qw,base_x,base_y,base_z,base_qx,base_qy,
  base_qz,base_qw`` = the true pose of the message's sensor frame and of base_link in ``map``
  at the message stamp (quaternions in ROS x, y, z, w order).
- ``ground_truth_base_link.tum``: base_link in ``map`` at every odometry tick, TUM format
  (``seconds tx ty tz qx qy qz qw``; seconds printed exactly from the integer nanoseconds).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import os

import numpy as np

from ..core.geometry.rotations import matrix_to_quat, quat_to_matrix
from ..core.geometry.se3 import make_transform

CSV_HEADER = ['stamp_ns', 'stream', 'index', 'frame_id', 'x', 'y', 'z', 'qx', 'qy', 'qz', 'qw',
              'base_x', 'base_y', 'base_z', 'base_qx', 'base_qy', 'base_qz', 'base_qw']


def _pose7(T: np.ndarray) -> np.ndarray:
    """``(K, 4, 4)`` -> ``(K, 7)`` translation + quaternion (x, y, z, w)."""
    return np.concatenate([T[:, :3, 3], matrix_to_quat(T[:, :3, :3])], axis=1)


def _fmt(v: float) -> str:
    return f'{v:.9f}'


def write_ground_truth_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    """
    Write sensor ground truth.

    :param rows: dicts with ``stamp_ns`` (int), ``stream`` (str), ``index`` (int), ``frame_id``
        (str), ``T_map_sensor`` and ``T_map_base`` (``(4, 4)``), in the order to write.
    """
    sensor = _pose7(np.array([r['T_map_sensor'] for r in rows]).reshape(-1, 4, 4))
    base = _pose7(np.array([r['T_map_base'] for r in rows]).reshape(-1, 4, 4))
    with open(path, 'w', encoding='utf-8', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(CSV_HEADER)
        for r, s, b in zip(rows, sensor, base):
            w.writerow([int(r['stamp_ns']), r['stream'], int(r['index']), r['frame_id']]
                       + [_fmt(v) for v in s] + [_fmt(v) for v in b])


@dataclass
class GroundTruth:
    """
    Rows of a ``ground_truth.csv``.

    :param stamp_ns: ``(K,)`` int64.
    :param stream: ``(K,)`` str, ``'camera'`` or ``'lidar'``.
    :param index: ``(K,)`` int64 message number within its stream.
    :param frame_id: ``(K,)`` str sensor frame.
    :param T_map_sensor: ``(K, 4, 4)``.
    :param T_map_base: ``(K, 4, 4)``.
    """

    stamp_ns: np.ndarray
    stream: np.ndarray
    index: np.ndarray
    frame_id: np.ndarray
    T_map_sensor: np.ndarray
    T_map_base: np.ndarray

    def select(self, stream: str) -> 'GroundTruth':
        """Only the rows of one stream."""
        m = self.stream == stream
        return GroundTruth(self.stamp_ns[m], self.stream[m], self.index[m], self.frame_id[m],
                           self.T_map_sensor[m], self.T_map_base[m])


def read_ground_truth_csv(path: str | os.PathLike) -> GroundTruth:
    """Read a ``ground_truth.csv`` written by :func:`write_ground_truth_csv`."""
    with open(path, 'r', encoding='utf-8') as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != CSV_HEADER:
            raise ValueError(f'{path}: unexpected header {header}')
        rows = list(reader)
    num = np.array([[float(v) for v in r[4:]] for r in rows]).reshape(-1, 14)

    def to_T(p):
        return make_transform(quat_to_matrix(p[:, 3:]), p[:, :3])
    return GroundTruth(np.array([int(r[0]) for r in rows], dtype=np.int64),
                       np.array([r[1] for r in rows]), np.array([int(r[2]) for r in rows]),
                       np.array([r[3] for r in rows]), to_T(num[:, :7]), to_T(num[:, 7:]))
