"""
Image-to-point-cloud pair protocols of the I2P literature, seeded.

A protocol picks the scan for an image and a random perturbation ``P`` (4x4) of the scan. The
returned points are ``P @ X_lidar`` (points in a perturbed LiDAR frame ``L'``), and the ground
truth of the pair is ``T_cam_lidar' = T_cam_i_lidar_j @ inv(P)``, where ``T_cam_i_lidar_j`` maps
scan ``j``'s LiDAR frame into image ``i``'s camera frame (from the calibration and, for different
frames, the poses).

- ``same_frame``: image and scan of one frame; ``P`` = rotation about the LiDAR up axis (z)
  uniform in [-pi, pi] and a ground-plane (x, y) translation uniform in [-10, 10] m per axis, as
  the CorrI2P / VP2P evaluation (which rotates about the camera's vertical axis after mapping the
  scan into the camera frame: the same up axis, expressed in the LiDAR frame here).
- ``random_frame``: the scan of a different frame whose camera position lies within 10 m of the
  image's (uniform among those), plus the same perturbation: the non-synchronized setting of
  GraphI2P.
- ``nearby``: the frame's own scan, small perturbations for refinement and calibration: each
  Euler angle (roll, pitch, yaw about the LiDAR axes) uniform in [-5, 5] deg and each translation
  component uniform in [-0.5, 0.5] m.

Sample ``k`` of a :class:`PairDataset` uses the generator ``default_rng([seed, k])``: the pairs
are the same in every run and in any order of access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from .input_size import InputSize, prepare_points, scale_and_crop
from ..core.geometry.se3 import inverse, make_transform, transform_points
from ..core.registration.lidar_edges import scan_lines, ScanLineError
from ..core.sensors import CameraModel


@dataclass
class PairSample:
    """
    One image / point-cloud pair with its ground truth.

    :param image: ``(H, W, 3)`` uint8 RGB.
    :param points: ``(N, 3)`` float32 metres in the perturbed LiDAR frame.
    :param intensity: ``(N,)`` float32 or ``None``.
    :param camera: the image's camera model (after any resize / crop).
    :param T_cam_lidar: ``(4, 4)`` ground truth: maps ``points`` into the camera optical frame.
    :param T_init: ``(4, 4)`` the pair's transform before the perturbation (the prior that a
        refinement or calibration method starts from).
    :param perturbation: ``(4, 4)`` ``P`` applied to the scan.
    :param image_index: frame of the image.
    :param scan_index: frame of the scan.
    :param protocol: protocol name.
    :param seed: the dataset seed (sample ``k`` used ``default_rng([seed, k])``).
    :param ring: ``(N,)`` laser line of every point (the scan's ring field, else the lines
        recovered from the unperturbed scan), ``None`` when unknown or when ``input_size``
        resampled the points.
    """

    image: np.ndarray
    points: np.ndarray
    intensity: np.ndarray | None
    camera: CameraModel
    T_cam_lidar: np.ndarray
    T_init: np.ndarray
    perturbation: np.ndarray
    image_index: int
    scan_index: int
    protocol: str
    seed: int
    ring: np.ndarray | None = None


class FrameSource(Protocol):
    """What a protocol needs of a dataset (e.g. :class:`~.kitti.KittiOdometry`)."""

    T_cam_lidar: np.ndarray

    def __len__(self) -> int:
        """Return the number of frames."""

    def read_image(self, index: int):
        """Read the :class:`~i2p_registration.core.sensors.ImageFrame` of a frame."""

    def read_scan(self, index: int):
        """Read the :class:`~i2p_registration.core.sensors.CloudFrame` of a frame (LiDAR frame)."""

    def pose_cam(self, index: int) -> np.ndarray | None:
        """``(4, 4)`` camera pose in the sequence's world frame."""

    def pose_lidar(self, index: int) -> np.ndarray | None:
        """``(4, 4)`` LiDAR pose in the sequence's world frame."""

    def positions(self) -> np.ndarray | None:
        """``(N, 3)`` camera positions of all frames."""


def ground_plane_perturbation(rng: np.random.Generator, max_translation: float = 10.0,
                              max_rotation: float = np.pi) -> np.ndarray:
    """
    Draw a ground-plane perturbation.

    Yaw about z uniform in ``[-max_rotation, max_rotation]`` rad, x and y uniform in
    ``[-max_translation, max_translation]`` m, z = 0.
    """
    yaw = rng.uniform(-max_rotation, max_rotation)
    t = np.array([rng.uniform(-max_translation, max_translation),
                  rng.uniform(-max_translation, max_translation), 0.0])
    return make_transform(Rotation.from_euler('z', yaw).as_matrix(), t)


def small_perturbation(rng: np.random.Generator, max_rotation_deg: float = 5.0,
                       max_translation: float = 0.5) -> np.ndarray:
    """
    Draw a small perturbation about every axis.

    Roll, pitch, yaw each uniform in ``[-max_rotation_deg, max_rotation_deg]`` (extrinsic
    x-y-z Euler angles) and each translation component uniform in ``[-max_translation,
    max_translation]`` m.
    """
    angles = rng.uniform(-max_rotation_deg, max_rotation_deg, 3)
    t = rng.uniform(-max_translation, max_translation, 3)
    return make_transform(Rotation.from_euler('xyz', angles, degrees=True).as_matrix(), t)


class PairProtocol:
    """Base of the protocols: which scan goes with an image, and how the scan is perturbed."""

    name = ''

    def scan_for(self, source: FrameSource, image_index: int, rng: np.random.Generator) -> int:
        """Index of the scan paired with image ``image_index``."""
        return image_index

    def perturbation(self, rng: np.random.Generator) -> np.ndarray:
        """Draw the ``(4, 4)`` perturbation ``P`` applied to the scan's points."""
        raise NotImplementedError


class SameFrame(PairProtocol):
    """Image and scan of one frame, ground-plane perturbation (+-10 m, +-pi)."""

    name = 'same_frame'

    def __init__(self, max_translation: float = 10.0, max_rotation: float = np.pi):
        if max_translation < 0 or max_rotation < 0:
            raise ValueError('perturbation bounds must be >= 0')
        self.max_translation, self.max_rotation = max_translation, max_rotation

    def perturbation(self, rng):
        """Ground-plane perturbation: yaw and (x, y) translation."""
        return ground_plane_perturbation(rng, self.max_translation, self.max_rotation)


class RandomFrame(SameFrame):
    """Scan of a different frame within ``max_distance`` m, ground-plane perturbation."""

    name = 'random_frame'

    def __init__(self, max_distance: float = 10.0, max_translation: float = 10.0,
                 max_rotation: float = np.pi):
        super().__init__(max_translation, max_rotation)
        if max_distance <= 0:
            raise ValueError(f'max_distance must be > 0 m, got {max_distance}')
        self.max_distance = max_distance
        self._positions = None

    def scan_for(self, source, image_index, rng):
        """Choose uniformly another frame whose camera is within ``max_distance`` metres."""
        if self._positions is None:
            self._positions = source.positions()
            if self._positions is None:
                raise ValueError('random_frame needs poses for every frame')
        d = np.linalg.norm(self._positions - self._positions[image_index], axis=1)
        candidates = np.flatnonzero(d <= self.max_distance)
        candidates = candidates[candidates != image_index]
        if len(candidates) == 0:
            raise ValueError(f'no other frame within {self.max_distance} m of frame '
                             f'{image_index}')
        return int(rng.choice(candidates))


class Nearby(PairProtocol):
    """The frame's own scan, small perturbation (default +-5 deg, +-0.5 m per axis)."""

    name = 'nearby'

    def __init__(self, max_rotation_deg: float = 5.0, max_translation: float = 0.5):
        if max_rotation_deg < 0 or max_translation < 0:
            raise ValueError('perturbation bounds must be >= 0')
        self.max_rotation_deg, self.max_translation = max_rotation_deg, max_translation

    def perturbation(self, rng):
        """Small rotation and translation about every axis."""
        return small_perturbation(rng, self.max_rotation_deg, self.max_translation)


PROTOCOLS = {p.name: p for p in (SameFrame, RandomFrame, Nearby)}


def make_protocol(name: str, **options) -> PairProtocol:
    """Make the protocol ``name`` (``same_frame``, ``random_frame``, ``nearby``) with options."""
    if name not in PROTOCOLS:
        raise ValueError(f'unknown pair protocol {name!r}, expected one of {sorted(PROTOCOLS)}')
    return PROTOCOLS[name](**options)


class PairDataset:
    """
    Seeded image / point-cloud pairs drawn from a sequence by a protocol.

    :param source: the frames (e.g. :class:`~.kitti.KittiOdometry`).
    :param protocol: a :class:`PairProtocol` or its name.
    :param seed: dataset seed; sample ``k`` is a function of ``(seed, k)`` only.
    :param input_size: resize / crop / sampling options (``None``: full image and scan).
    :param indices: image frames to use (default: all).
    """

    def __init__(self, source: FrameSource, protocol: PairProtocol | str, seed: int = 0,
                 input_size: InputSize | None = None, indices=None):
        self.source = source
        self.protocol = make_protocol(protocol) if isinstance(protocol, str) else protocol
        self.seed = int(seed)
        self.input_size = input_size
        self.indices = np.arange(len(source)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return int(len(self.indices))

    def _T_cam_lidar(self, i: int, j: int) -> np.ndarray:
        if i == j:
            return np.asarray(self.source.T_cam_lidar, dtype=np.float64)
        return inverse(self.source.pose_cam(i)) @ self.source.pose_lidar(j)

    def __getitem__(self, k: int) -> PairSample:
        if not 0 <= k < len(self):
            raise IndexError(f'sample {k} out of range (0..{len(self) - 1})')
        rng = np.random.default_rng([self.seed, int(k)])
        i = int(self.indices[k])
        j = self.protocol.scan_for(self.source, i, rng)
        P = self.protocol.perturbation(rng)
        image = self.source.read_image(i)
        cloud = self.source.read_scan(j)
        T_init = self._T_cam_lidar(i, j)
        points = transform_points(P, cloud.points).astype(np.float32)
        img, cam, intensity = image.image, image.camera, cloud.intensity
        if self.input_size is not None:
            img, cam = scale_and_crop(img, cam, self.input_size, rng)
            points, intensity = prepare_points(points, intensity, self.input_size, rng)
            ring = None
        else:
            ring = _scan_lines(cloud)
        return PairSample(img, points, intensity, cam, T_init @ inverse(P), T_init, P, i, j,
                          self.protocol.name, self.seed, ring)


def _scan_lines(cloud) -> np.ndarray | None:
    """
    Return the laser line of every point of an unperturbed scan, or ``None``.

    A perturbation tilts the scan against its lasers, after which its lines can no longer be
    told from the elevation angles; a sensor driver publishes them as the ring field.
    """
    if cloud.ring is not None:
        return np.asarray(cloud.ring)
    try:
        return scan_lines(cloud.points)
    except ScanLineError:
        return None
