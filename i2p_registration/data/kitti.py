"""
KITTI odometry layout: writer for synthetic sequences and the ``KittiOdometry`` loader.

Layout (as the KITTI odometry benchmark)::

    <root>/sequences/NN/image_2/000000.png   colour image of camera 2
    <root>/sequences/NN/velodyne/000000.bin  float32 x, y, z, reflectance (velodyne frame)
    <root>/sequences/NN/calib.txt            P0..P3 (3x4 rectified projections), Tr (velo -> cam 0)
    <root>/sequences/NN/times.txt            seconds since the first frame
    <root>/poses/NN.txt                      T_cam0start_cam0_i, 3x4 row-major per frame

Synthetic sequences render one camera and call it camera 2; camera 0 is the same rectified frame
(no stereo baseline), so ``P0 = P1 = P2 = P3 = [K | 0]`` and ``Tr`` is the exact ``T_cam_lidar``.
Frames are synchronized as on KITTI: frame ``i`` is the LiDAR sweep stamped ``t_i`` and the image
rendered at ``t_i``. The loader reads real KITTI too: ``T_cam2_cam0`` comes from ``P2``'s fourth
column (``t = K^-1 P2[:, 3]``) and ``T_cam2_velo = T_cam2_cam0 @ Tr``.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path

import cv2
import numpy as np
import yaml

from .progress import Progress
from .simulator import Simulator
from ..core.geometry.se3 import inverse, make_transform
from ..core.sensors import CameraModel, CloudFrame, ImageFrame


def _fmt_row(values) -> str:
    return ' '.join(f'{v:.12e}' for v in np.asarray(values, dtype=np.float64).ravel())


def read_calib(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parse a KITTI ``calib.txt``: name -> ``(3, 4)`` float64 matrix (``P0``.., ``Tr``)."""
    out = {}
    with open(path, 'r', encoding='utf-8') as f:
        for line in f:
            if ':' not in line:
                continue
            name, values = line.split(':', 1)
            numbers = np.array(values.split(), dtype=np.float64)
            if numbers.size != 12:
                raise ValueError(f'{path}: {name} has {numbers.size} numbers, expected 12')
            out[name.strip()] = numbers.reshape(3, 4)
    for key in ('P2', 'Tr'):
        if key not in out:
            raise ValueError(f'{path}: missing {key}')
    return out


def read_poses(path: str | os.PathLike) -> np.ndarray:
    """KITTI ``poses/NN.txt`` as ``(N, 4, 4)`` float64 ``T_cam0start_cam0_i``."""
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError(f'{path}: expected 12 numbers per line, got {rows.shape[1]}')
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3, :] = rows.reshape(-1, 3, 4)
    return T


@dataclass
class KittiFrame:
    """
    One frame of a KITTI odometry sequence.

    :param index: frame number.
    :param image: camera image (frame ``camera_2``), stamp = ``times.txt`` in ns.
    :param cloud: the velodyne scan (frame ``velodyne``), intensity = reflectance.
    :param T_cam_lidar: ``(4, 4)`` velodyne -> camera 2 optical frame.
    :param T_world_cam: ``(4, 4)`` camera 2 pose in the first camera-0 frame, or ``None``
        where the sequence has no poses.
    """

    index: int
    image: ImageFrame
    cloud: CloudFrame
    T_cam_lidar: np.ndarray
    T_world_cam: np.ndarray | None


class KittiOdometry:
    """
    Reader of one KITTI odometry sequence (real or synthetic).

    :param root: dataset root (holding ``sequences/`` and ``poses/``).
    :param sequence: sequence name, e.g. ``'00'``.
    :param camera: image folder number (2 = left colour camera).
    """

    def __init__(self, root: str | os.PathLike, sequence: str = '00', camera: int = 2):
        self.root = Path(root)
        self.sequence = str(sequence)
        self.seq_dir = self.root / 'sequences' / self.sequence
        self.image_dir = self.seq_dir / f'image_{camera}'
        self.velo_dir = self.seq_dir / 'velodyne'
        if not self.seq_dir.is_dir():
            raise ValueError(f'no KITTI sequence folder at {self.seq_dir}')
        calib = read_calib(self.seq_dir / 'calib.txt')
        P = calib[f'P{camera}']
        K = P[:, :3]
        self.T_cam_cam0 = make_transform(np.eye(3), np.linalg.solve(K, P[:, 3]))
        self.T_cam0_lidar = np.vstack([calib['Tr'], [0.0, 0.0, 0.0, 1.0]])
        self.T_cam_lidar = self.T_cam_cam0 @ self.T_cam0_lidar
        self.K = K / K[2, 2]
        self.times = np.loadtxt(self.seq_dir / 'times.txt', dtype=np.float64, ndmin=1)
        pose_file = self.root / 'poses' / f'{self.sequence}.txt'
        self.poses_cam0 = read_poses(pose_file) if pose_file.exists() else None
        if self.poses_cam0 is not None and len(self.poses_cam0) != len(self.times):
            raise ValueError(f'{pose_file}: {len(self.poses_cam0)} poses for '
                             f'{len(self.times)} frames')
        self._camera: CameraModel | None = None

    def __len__(self) -> int:
        return int(len(self.times))

    @property
    def camera(self) -> CameraModel:
        """Camera model from ``P{camera}`` and the size of the first image."""
        if self._camera is None:
            h, w = self._read_image(0).shape[:2]
            self._camera = CameraModel(self.K, w, h)
        return self._camera

    def stamp_ns(self, index: int) -> int:
        """Frame time in int64 nanoseconds since the sequence start."""
        return int(round(float(self.times[index]) * 1e9))

    def pose_cam(self, index: int) -> np.ndarray | None:
        """``(4, 4)`` pose of the camera in the first camera-0 frame (``None`` without poses)."""
        if self.poses_cam0 is None:
            return None
        return self.poses_cam0[index] @ inverse(self.T_cam_cam0)

    def pose_lidar(self, index: int) -> np.ndarray | None:
        """``(4, 4)`` pose of the velodyne in the first camera-0 frame (``None`` without poses)."""
        if self.poses_cam0 is None:
            return None
        return self.poses_cam0[index] @ self.T_cam0_lidar

    def positions(self) -> np.ndarray | None:
        """``(N, 3)`` camera positions of all frames (``None`` without poses)."""
        if self.poses_cam0 is None:
            return None
        return (self.poses_cam0 @ inverse(self.T_cam_cam0))[:, :3, 3]

    def _read_image(self, index: int) -> np.ndarray:
        path = self.image_dir / f'{index:06d}.png'
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f'cannot read image {path}')
        return np.ascontiguousarray(bgr[:, :, ::-1])

    def read_scan(self, index: int) -> CloudFrame:
        """Read the velodyne scan of a frame (``velodyne`` frame, intensity = reflectance)."""
        path = self.velo_dir / f'{index:06d}.bin'
        data = np.fromfile(path, dtype=np.float32)
        if data.size % 4:
            raise ValueError(f'{path}: size is not a multiple of 4 float32 values')
        data = data.reshape(-1, 4)
        return CloudFrame(np.ascontiguousarray(data[:, :3]), self.stamp_ns(index), 'velodyne',
                          np.ascontiguousarray(data[:, 3]))

    def read_image(self, index: int) -> ImageFrame:
        """Read the camera image of a frame (``camera_2`` optical frame)."""
        return ImageFrame(self._read_image(index), self.stamp_ns(index), 'camera_2', self.camera)

    def __getitem__(self, index: int) -> KittiFrame:
        if not -len(self) <= index < len(self):
            raise IndexError(f'frame {index} out of range (0..{len(self) - 1})')
        index = int(index) % len(self)
        return KittiFrame(index, self.read_image(index), self.read_scan(index),
                          self.T_cam_lidar.copy(), self.pose_cam(index))


def write_kitti_sequence(sim: Simulator, root: str | os.PathLike, sequence: str = '00',
                         n_frames: int | None = None, progress: Progress | None = None) -> dict:
    """
    Render a synchronized sequence into the KITTI odometry layout.

    Frames are the LiDAR ticks of the configured duration (or the first ``n_frames``); each
    frame's image is rendered at the scan stamp. Also writes ``synthetic.yaml`` beside
    ``calib.txt`` with the seed, the config and the absolute start stamp.

    :param sim: the simulator (world, rig, config, seed).
    :param root: dataset root; ``sequences/NN`` and ``poses/NN.txt`` are created below it.
    :param sequence: sequence name.
    :param n_frames: limit on the number of frames.
    :param progress: called with ``(done, total)`` after each frame.
    :return: summary dict (frames, points, paths).
    """
    stamps = sim.stamps()['lidar'].stamps_ns
    if n_frames is not None:
        stamps = stamps[:int(n_frames)]
    if len(stamps) == 0:
        raise ValueError('the sequence has no frames (duration too short?)')
    root = Path(root)
    seq = root / 'sequences' / sequence
    (seq / 'image_2').mkdir(parents=True, exist_ok=True)
    (seq / 'velodyne').mkdir(parents=True, exist_ok=True)
    (root / 'poses').mkdir(parents=True, exist_ok=True)
    P = np.hstack([sim.camera.K, np.zeros((3, 1))])
    with open(seq / 'calib.txt', 'w', encoding='utf-8') as f:
        for k in range(4):
            f.write(f'P{k}: {_fmt_row(P)}\n')
        f.write(f'Tr: {_fmt_row(sim.T_cam_lidar[:3])}\n')
    times = (stamps - stamps[0]) * 1e-9
    np.savetxt(seq / 'times.txt', times, fmt='%.6e')
    T_map_cam = sim.T_map_camera(stamps)
    poses = inverse(T_map_cam[0]) @ T_map_cam
    np.savetxt(root / 'poses' / f'{sequence}.txt', poses[:, :3, :].reshape(-1, 12), fmt='%.12e')
    meta = {'seed': sim.seed, 'start_stamp_ns': int(stamps[0]), 'frames': int(len(stamps)),
            'camera': 'image_2 (camera 0 == camera 2, no baseline)',
            'config': sim.config.to_dict()}
    with open(seq / 'synthetic.yaml', 'w', encoding='utf-8') as f:
        yaml.safe_dump(meta, f, sort_keys=True)
    n_points = 0
    for i, stamp in enumerate(stamps):
        image, _ = sim.image(int(stamp), i)
        cloud = sim.scan(int(stamp), i)
        cv2.imwrite(str(seq / 'image_2' / f'{i:06d}.png'), image.image[:, :, ::-1])
        np.hstack([cloud.points, cloud.intensity[:, None]]).astype(np.float32).tofile(
            seq / 'velodyne' / f'{i:06d}.bin')
        n_points += len(cloud)
        if progress is not None:
            progress(i + 1, len(stamps))
    return {'format': 'kitti', 'path': str(seq), 'frames': int(len(stamps)),
            'mean_points': n_points / len(stamps), 'duration_s': float(times[-1])}
