"""
The standard network input sizes of the I2P literature (CorrI2P, VP2P, GraphI2P).

- Image: scaled (KITTI: by 0.5, to 621 x 188) and cropped to 160 x 512 pixels, centred (test)
  or at a random position (training); the camera model follows the same resize and crop.
- Scan: voxel-downsampled (one point per voxel) and sampled to exactly 40960 points, without
  replacement when there are enough points and by repeating random points otherwise (the
  samplers of :mod:`i2p_registration.core.preprocess`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..core.preprocess import random_sample, voxel_downsample
from ..core.sensors import CameraModel


@dataclass(frozen=True)
class InputSize:
    """
    Input size options; ``None`` disables a step.

    :param image_hw: crop size ``(height, width)`` in pixels.
    :param image_scale: scale applied before cropping (raised if the crop would not fit).
    :param random_crop: random crop position instead of the centre.
    :param voxel_size: voxel edge in metres for downsampling.
    :param n_points: exact number of points returned.
    """

    image_hw: tuple[int, int] | None = (160, 512)
    image_scale: float = 0.5
    random_crop: bool = False
    voxel_size: float | None = 0.1
    n_points: int | None = 40960

    def __post_init__(self):
        if self.image_hw is not None and min(self.image_hw) <= 0:
            raise ValueError(f'image_hw must be positive, got {self.image_hw}')
        if self.image_scale <= 0:
            raise ValueError(f'image_scale must be > 0, got {self.image_scale}')
        if self.voxel_size is not None and self.voxel_size <= 0:
            raise ValueError(f'voxel_size must be > 0 m, got {self.voxel_size}')
        if self.n_points is not None and self.n_points <= 0:
            raise ValueError(f'n_points must be > 0, got {self.n_points}')


def scale_and_crop(image: np.ndarray, camera: CameraModel, size: InputSize,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, CameraModel]:
    """
    Resize then crop an image to ``size.image_hw``, with the matching camera model.

    :param image: ``(H, W, 3)`` uint8.
    :param camera: its camera model.
    :param size: the options (``image_hw`` None returns the inputs unchanged).
    :param rng: generator for ``random_crop``.
    :return: ``(h, w, 3)`` uint8 image and its :class:`CameraModel`.
    """
    if size.image_hw is None:
        return image, camera
    th, tw = size.image_hw
    h, w = image.shape[:2]
    s = max(size.image_scale, th / h, tw / w)
    nw, nh = max(int(round(w * s)), tw), max(int(round(h * s)), th)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    cam = camera.resized(nw, nh)
    if size.random_crop:
        if rng is None:
            raise ValueError('random_crop needs a random generator')
        x0, y0 = int(rng.integers(nw - tw + 1)), int(rng.integers(nh - th + 1))
    else:
        x0, y0 = (nw - tw) // 2, (nh - th) // 2
    return (np.ascontiguousarray(resized[y0:y0 + th, x0:x0 + tw]),
            cam.cropped(x0, y0, tw, th))


def prepare_points(points: np.ndarray, intensity: np.ndarray | None, size: InputSize,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """
    Voxel-downsample then sample to ``size.n_points``.

    :param points: ``(N, 3)`` metres.
    :param intensity: optional ``(N,)``.
    :return: ``(n_points, 3)`` float32 and ``(n_points,)`` float32 (or ``None``).
    """
    pts = np.asarray(points, dtype=np.float32)
    val = None if intensity is None else np.asarray(intensity, dtype=np.float32)
    if size.voxel_size is not None:
        keep = voxel_downsample(pts, size.voxel_size)
        pts, val = pts[keep], None if val is None else val[keep]
    if size.n_points is not None:
        idx = random_sample(len(pts), size.n_points, rng)
        pts, val = pts[idx], None if val is None else val[idx]
    return pts, val
