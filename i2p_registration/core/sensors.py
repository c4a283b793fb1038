"""
Sensor data containers shared by every layer: camera model, image frame, cloud frame.

Conventions (see DESIGN.md): times are int64 nanoseconds, points are float32 ``(N, 3)`` in the
sensor frame named by ``frame_id``, images are uint8 ``(H, W, 3)`` RGB, camera frames are optical
frames (x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

DISTORTION_MODELS = ('none', 'plumb_bob', 'equidistant')


def _as_matrix3(K) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f'K must be a 3x3 camera matrix, got shape {K.shape}')
    if not np.all(np.isfinite(K)):
        raise ValueError('K contains NaN or inf')
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f'K must have positive focal lengths fx, fy, got {K[0, 0]}, {K[1, 1]}'
                         + (' (all-zero K: the camera is not calibrated)' if not K.any() else ''))
    return K


@dataclass(frozen=True)
class CameraModel:
    """
    A calibrated camera: intrinsics, lens distortion and image size.

    :param K: ``(3, 3)`` float64 camera matrix in pixels.
    :param width: image width in pixels (> 0).
    :param height: image height in pixels (> 0).
    :param distortion_model: ``'none'``, ``'plumb_bob'`` (OpenCV k1, k2, p1, p2[, k3[, k4, k5,
        k6]]) or ``'equidistant'`` (OpenCV fisheye k1..k4).
    :param D: distortion coefficients of that model (empty for ``'none'``).
    """

    K: np.ndarray
    width: int
    height: int
    distortion_model: str = 'none'
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        object.__setattr__(self, 'K', _as_matrix3(self.K))
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f'image size must be positive, got {self.width}x{self.height}')
        object.__setattr__(self, 'width', int(self.width))
        object.__setattr__(self, 'height', int(self.height))
        if self.distortion_model not in DISTORTION_MODELS:
            raise ValueError(f'unknown distortion model {self.distortion_model!r}, '
                             f'expected one of {DISTORTION_MODELS}')
        D = np.asarray(self.D, dtype=np.float64).reshape(-1)
        if self.distortion_model == 'plumb_bob' and D.size not in (4, 5, 8):
            raise ValueError(f'plumb_bob needs 4, 5 or 8 coefficients, got {D.size}')
        if self.distortion_model == 'equidistant' and D.size != 4:
            raise ValueError(f'equidistant needs 4 coefficients, got {D.size}')
        if self.distortion_model == 'none' and np.any(D != 0):
            raise ValueError('distortion model "none" takes no non-zero coefficients')
        if not np.all(np.isfinite(D)):
            raise ValueError('distortion coefficients contain NaN or inf')
        object.__setattr__(self, 'D', D)

    @property
    def size(self) -> tuple[int, int]:
        """Image size as ``(width, height)`` in pixels."""
        return self.width, self.height

    @property
    def is_distorted(self) -> bool:
        """Whether the lens is not a plain pinhole (any fisheye, or non-zero coefficients)."""
        return self.distortion_model == 'equidistant' or bool(np.any(self.D != 0))

    def scaled(self, sx: float, sy: float | None = None) -> 'CameraModel':
        """
        Return the same camera for an image resized by ``sx`` horizontally and ``sy`` vertically.

        Pixel centres follow OpenCV's ``cv2.resize`` convention (pixel ``u`` maps to
        ``(u + 0.5) * s - 0.5``). Distortion coefficients are unchanged (they act on normalized
        coordinates).
        """
        sy = sx if sy is None else sy
        if sx <= 0 or sy <= 0:
            raise ValueError(f'scale factors must be positive, got {sx}, {sy}')
        K = self.K.copy()
        K[0, :] *= sx
        K[1, :] *= sy
        K[0, 2] += 0.5 * sx - 0.5
        K[1, 2] += 0.5 * sy - 0.5
        return replace(self, K=K, width=int(round(self.width * sx)),
                       height=int(round(self.height * sy)))

    def resized(self, width: int, height: int) -> 'CameraModel':
        """Return the same camera for an image resized to ``width`` x ``height`` pixels."""
        return self.scaled(width / self.width, height / self.height)

    def cropped(self, x0: int, y0: int, width: int, height: int) -> 'CameraModel':
        """Return the camera of the ``width`` x ``height`` window starting at ``(x0, y0)``."""
        if width <= 0 or height <= 0:
            raise ValueError(f'crop size must be positive, got {width}x{height}')
        K = self.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        return replace(self, K=K, width=int(width), height=int(height))


@dataclass
class ImageFrame:
    """
    One camera image.

    :param image: ``(H, W, 3)`` uint8 RGB.
    :param stamp_ns: acquisition time, int64 nanoseconds.
    :param frame_id: the camera's optical frame.
    :param camera: its calibration; the size must equal the image size.
    """

    image: np.ndarray
    stamp_ns: int
    frame_id: str
    camera: CameraModel

    def __post_init__(self):
        img = self.image
        if (not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3
                or img.dtype != np.uint8):
            shape = getattr(img, 'shape', None)
            raise ValueError(f'image must be an (H, W, 3) uint8 RGB array, got {shape} '
                             f'{getattr(img, "dtype", type(img))}')
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f'image is empty ({img.shape[1]}x{img.shape[0]})')
        if (img.shape[1], img.shape[0]) != self.camera.size:
            raise ValueError(f'image size {img.shape[1]}x{img.shape[0]} differs from the camera '
                             f'model size {self.camera.width}x{self.camera.height}')
        self.stamp_ns = int(self.stamp_ns)


@dataclass
class CloudFrame:
    """
    One LiDAR scan (or an accumulated map cloud).

    :param points: ``(N, 3)`` float32 x, y, z in metres in ``frame_id``; finite.
    :param stamp_ns: scan time (start of sweep by ROS convention), int64 nanoseconds.
    :param frame_id: the LiDAR (or map) frame.
    :param intensity: optional ``(N,)`` float32.
    :param ring: optional ``(N,)`` uint16 laser index.
    :param time: optional ``(N,)`` float32 seconds of each point relative to ``stamp_ns``.
    """

    points: np.ndarray
    stamp_ns: int
    frame_id: str
    intensity: np.ndarray | None = None
    ring: np.ndarray | None = None
    time: np.ndarray | None = None

    def __post_init__(self):
        pts = self.points
        if not isinstance(pts, np.ndarray) or pts.ndim != 2 or pts.shape[1] != 3:
            shape = getattr(pts, 'shape', type(pts))
            raise ValueError(f'points must be an (N, 3) array, got {shape}')
        if pts.dtype != np.float32:
            self.points = pts = pts.astype(np.float32)
        n = pts.shape[0]
        for name in ('intensity', 'ring', 'time'):
            value = getattr(self, name)
            if value is not None and np.shape(value) != (n,):
                raise ValueError(f'{name} must have shape ({n},) to match the points, '
                                 f'got {np.shape(value)}')
        self.stamp_ns = int(self.stamp_ns)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def select(self, index) -> 'CloudFrame':
        """Return a new frame with the points (and per-point fields) picked by a mask or index."""
        def pick(a):
            return None if a is None else a[index]
        return CloudFrame(self.points[index], self.stamp_ns, self.frame_id,
                          pick(self.intensity), pick(self.ring), pick(self.time))
