"""
Image side of edge alignment: rectified working image, edge maps, distance-transform cost pyramid.

The image is first resampled once into a pinhole "working" camera (lens distortion removed,
width capped), so that everything downstream (search, refinement, Jacobians) is plain pinhole
maths. Each pyramid level halves the resolution of the one before and holds the truncated,
smoothed distance (in that level's pixels) to the nearest image edge and its gradient.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
import functools

import cv2
from i2p_registration.core.geometry import distort
from i2p_registration.core.sensors import CameraModel, ImageFrame
import numpy as np

EDGE_DETECTORS = ('canny', 'canny_all', 'gradient')


@dataclass(frozen=True)
class CostField:
    """
    One pyramid level: distance to the nearest edge, truncated and smoothed.

    :param cost: ``(H, W)`` float32 pixels of this level, in ``[0, truncation]``.
    :param grad: ``(2, H, W)`` float32 d cost / d u and d cost / d v (per pixel of this level).
    :param K: ``(3, 3)`` float64 pinhole camera matrix of this level (no distortion).
    :param truncation: the largest cost, pixels of this level.
    :param scale: size of one pixel of this level in working-image pixels (1, 2, 4, ...).
    """

    cost: np.ndarray
    grad: np.ndarray
    K: np.ndarray
    truncation: float
    scale: float

    @property
    def shape(self) -> tuple[int, int]:
        """Return ``(height, width)`` in pixels."""
        return self.cost.shape

    @functools.cached_property
    def _layers(self) -> np.ndarray:
        """Return ``(H * W, 3)``: cost, d/du, d/dv per pixel, gathered together."""
        return np.ascontiguousarray(
            np.concatenate([self.cost[None], self.grad]).reshape(3, -1).T)

    def sample(self, uv: np.ndarray,
               gradient: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """
        Bilinearly interpolate the cost and its gradient at sub-pixel positions.

        :param uv: ``(N, 2)`` float pixels of this level; outside the image the cost is the
            truncation and the gradient zero.
        :param gradient: also sample the gradient.
        :return: ``cost`` ``(N,)`` and ``grad`` ``(N, 2)`` (None without ``gradient``),
            float64.
        """
        h, w = self.cost.shape
        u, v = uv[:, 0], uv[:, 1]
        inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
        u = np.where(inside, u, 0.0)
        v = np.where(inside, v, 0.0)
        u0 = np.minimum(np.floor(u).astype(np.int64), w - 2)
        v0 = np.minimum(np.floor(v).astype(np.int64), h - 2)
        fu, fv = u - u0, v - v0
        # Flat indices of the four neighbours; one gather of all layers per neighbour.
        i00 = v0 * w + u0
        corners = ((i00, (1 - fu) * (1 - fv)), (i00 + 1, fu * (1 - fv)),
                   (i00 + w, (1 - fu) * fv), (i00 + w + 1, fu * fv))
        layers = self._layers if gradient else self.cost.reshape(-1, 1)
        a = sum(layers[i] * f[:, None] for i, f in corners)
        cost = np.where(inside, a[:, 0], self.truncation)
        return cost, np.where(inside[:, None], a[:, 1:], 0.0) if gradient else None


class EdgeDetector(abc.ABC):
    """Binary edge map of a grayscale image; alternatives chosen by :func:`get_edge_detector`."""

    @abc.abstractmethod
    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Return a ``(H, W)`` bool edge map of a ``(H, W)`` uint8 image."""

    def detect_oriented(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Return the edge maps of all orientations, of object sides and of object tops.

        Sides (silhouettes that cross the LiDAR's scan lines) are the map of :meth:`detect`;
        tops (silhouettes between scan lines) are edges along the image rows; markings on the
        ground match edges of any orientation. A detector that does not tell orientations
        apart returns its one map three times.
        """
        edges = self.detect(gray)
        return edges, edges, edges


class CannyEdges(EdgeDetector):
    """
    Canny edges with thresholds set from the image's own gradient statistics.

    :param high_quantile: the high hysteresis threshold is this quantile of the Sobel magnitude
        (the low one is half of it); adapts to contrast without tuning.
    :param blur_sigma: Gaussian blur before detection, pixels.
    :param max_gradient_angle: keep only edges whose gradient direction lies within this
        angle (radians) of the image rows, i.e. edges running within it of the image columns
        (None: all edges). LiDAR depth edges are found along the laser lines, which a camera
        roughly level with the LiDAR sees as image rows: they are silhouettes that cross the
        rows, so image edges along the rows (lane markings, the horizon, kerbs, rails) can
        only be false matches. Matching orientations this way is what makes the ground truth
        the best pose on real street scenes (see ``benchmarks/registration_edge.py``).
    """

    def __init__(self, high_quantile: float = 0.9, blur_sigma: float = 1.0,
                 max_gradient_angle: float | None = None):
        if not 0.0 < high_quantile < 1.0:
            raise ValueError(f'high_quantile must be in (0, 1), got {high_quantile}')
        if max_gradient_angle is not None and not 0.0 < max_gradient_angle <= np.pi / 2:
            raise ValueError(f'max_gradient_angle must be in (0, pi / 2], got '
                             f'{max_gradient_angle}')
        self.high_quantile, self.blur_sigma = high_quantile, blur_sigma
        self.max_gradient_angle = max_gradient_angle

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Return the Canny edge map (bool ``(H, W)``)."""
        return self.detect_oriented(gray)[1]

    def detect_oriented(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """
        Return all Canny edges, those within ``max_gradient_angle`` of the columns and of the rows.

        One Canny pass; the side map is :meth:`detect`'s, the top map holds the edges whose
        gradient lies within the same angle of the image columns (edges along the rows). Without
        ``max_gradient_angle`` all three are the whole map.
        """
        img = cv2.GaussianBlur(gray, (0, 0), self.blur_sigma) if self.blur_sigma > 0 else gray
        gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
        high = max(float(np.quantile(cv2.magnitude(gx, gy), self.high_quantile)), 1.0)
        edges = cv2.Canny(np.ascontiguousarray(img), 0.5 * high, high, L2gradient=True) > 0
        if self.max_gradient_angle is None or self.max_gradient_angle >= np.pi / 2:
            return edges, edges, edges
        slope = np.tan(self.max_gradient_angle)
        return (edges, edges & (np.abs(gy) <= slope * np.abs(gx)),
                edges & (np.abs(gx) <= slope * np.abs(gy)))


class GradientEdges(EdgeDetector):
    """
    Pixels whose Sobel gradient magnitude is in the top ``fraction`` of the image.

    :param fraction: share of pixels marked as edges, in ``(0, 1)``.
    :param blur_sigma: Gaussian blur before the gradient, pixels.
    """

    def __init__(self, fraction: float = 0.1, blur_sigma: float = 1.0):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f'fraction must be in (0, 1), got {fraction}')
        self.fraction, self.blur_sigma = fraction, blur_sigma

    def detect(self, gray: np.ndarray) -> np.ndarray:
        """Return the thresholded gradient-magnitude map (bool ``(H, W)``)."""
        img = cv2.GaussianBlur(gray, (0, 0), self.blur_sigma) if self.blur_sigma > 0 else gray
        mag = _sobel_magnitude(img)
        threshold = max(float(np.quantile(mag, 1.0 - self.fraction)), 1e-6)
        return mag >= threshold


def get_edge_detector(name: str) -> EdgeDetector:
    """
    Return the detector called ``name`` with the settings the edge method uses.

    ``'canny'`` keeps the edges that LiDAR scan-line discontinuities can match (gradient within
    30 degrees of the image rows, see :class:`CannyEdges`); ``'canny_all'`` keeps every Canny
    edge; ``'gradient'`` thresholds the gradient magnitude.
    """
    if name == 'canny':
        return CannyEdges(max_gradient_angle=np.radians(30.0))
    if name == 'canny_all':
        return CannyEdges()
    if name == 'gradient':
        return GradientEdges()
    raise ValueError(f'unknown edge detector {name!r}, expected one of {EDGE_DETECTORS}')


def _sobel_magnitude(gray: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def _camera_key(camera: CameraModel, max_width: int) -> tuple:
    return (camera.K.tobytes(), camera.D.tobytes(), camera.distortion_model, camera.width,
            camera.height, int(max_width))


@functools.lru_cache(maxsize=8)
def _rectify_maps(key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(map_u, map_v, K_work)`` resampling a camera into its pinhole working camera."""
    K_bytes, D_bytes, model, width, height, max_width = key
    K = np.frombuffer(K_bytes).reshape(3, 3)
    D = np.frombuffer(D_bytes)
    scale = min(1.0, max_width / width)
    w, h = int(round(width * scale)), int(round(height * scale))
    K_work = np.array([[K[0, 0] * scale, 0.0, (K[0, 2] + 0.5) * scale - 0.5],
                       [0.0, K[1, 1] * scale, (K[1, 2] + 0.5) * scale - 0.5],
                       [0.0, 0.0, 1.0]])
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    xy = np.stack([(u - K_work[0, 2]) / K_work[0, 0], (v - K_work[1, 2]) / K_work[1, 1]], -1)
    xy_d = distort(xy, model, D)
    map_u = K[0, 0] * xy_d[..., 0] + K[0, 1] * xy_d[..., 1] + K[0, 2]
    map_v = K[1, 1] * xy_d[..., 1] + K[1, 2]
    return map_u.astype(np.float32), map_v.astype(np.float32), K_work


def rectify(image: ImageFrame, max_width: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """
    Resample an image into its pinhole working camera: distortion removed, width capped.

    The working camera keeps the focal lengths and principal point of ``image.camera`` (scaled
    when the width exceeds ``max_width``) and has no skew and no distortion; the resampling maps
    are computed once per camera model and cached.

    :param image: the camera image.
    :param max_width: largest working width in pixels.
    :return: ``gray`` ``(h, w)`` uint8 and ``K_work`` ``(3, 3)`` float64.
    """
    camera = image.camera
    gray = cv2.cvtColor(image.image, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, max_width / camera.width)
    if not camera.is_distorted and camera.K[0, 1] == 0.0:
        if scale == 1.0:
            return gray, camera.K.copy()
        w, h = int(round(camera.width * scale)), int(round(camera.height * scale))
        return (cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA),
                _rectify_maps(_camera_key(camera, max_width))[2])
    map_u, map_v, K_work = _rectify_maps(_camera_key(camera, max_width))
    if scale < 0.75:
        # Anti-alias before point sampling at a lower resolution.
        gray = cv2.GaussianBlur(gray, (0, 0), 0.5 / scale)
    return cv2.remap(gray, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), K_work


def cost_field(edges: np.ndarray, K: np.ndarray, truncation: float, blur_sigma: float,
               scale: float) -> CostField:
    """
    Build the cost field of one level from its edge map.

    :param edges: ``(H, W)`` bool edge map.
    :param K: ``(3, 3)`` pinhole matrix of this level.
    :param truncation: largest distance kept, pixels of this level.
    :param blur_sigma: Gaussian smoothing of the truncated distance, pixels (0: none); it
        rounds the kink of the distance at the edges so that the gradient is continuous.
    :param scale: size of one pixel of this level in working pixels.
    """
    if not edges.any():
        dist = np.full(edges.shape, truncation, dtype=np.float32)
    else:
        src = np.where(edges, 0, 255).astype(np.uint8)
        dist = cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        dist = np.minimum(dist, truncation)
    if blur_sigma > 0:
        dist = cv2.GaussianBlur(dist, (0, 0), blur_sigma)
    grad = np.stack([cv2.Sobel(dist, cv2.CV_32F, 1, 0, ksize=1, scale=0.5),
                     cv2.Sobel(dist, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)])
    return CostField(dist.astype(np.float32), grad, np.asarray(K, dtype=np.float64),
                     float(truncation), float(scale))


def cost_pyramid(gray: np.ndarray, K: np.ndarray, detector: EdgeDetector, levels: int = 3,
                 truncation: float = 10.0, blur_sigma: float = 1.0) -> list[CostField]:
    """
    Build the cost pyramid of a working image, finest level first.

    Edges are detected once, at the working resolution; level ``k`` marks a pixel as edge when
    any of the ``2^k x 2^k`` working pixels it covers is one (so every level sees the same
    edges, just coarser, and no region loses its edges) and truncates its distance at
    ``truncation`` pixels of that level: a capture range of ``truncation * 2^k`` working pixels.

    :param gray: ``(H, W)`` uint8 working image.
    :param K: ``(3, 3)`` its pinhole matrix.
    :param detector: edge detector.
    :param levels: number of levels (>= 1).
    :param truncation: distance truncation in pixels of each level.
    :param blur_sigma: smoothing of each level's distance, pixels of that level.
    :return: ``levels`` cost fields, level 0 the finest.
    """
    return edge_pyramid(detector.detect(gray), K, levels, truncation, blur_sigma)


def edge_pyramid(edges: np.ndarray, K: np.ndarray, levels: int = 3, truncation: float = 10.0,
                 blur_sigma: float = 1.0) -> list[CostField]:
    """Build the cost pyramid of an edge map (see :func:`cost_pyramid`), finest level first."""
    if levels < 1:
        raise ValueError(f'levels must be >= 1, got {levels}')
    K = np.asarray(K, dtype=np.float64)
    h, w = edges.shape
    pyramid = []
    for level in range(levels):
        s = 2 ** level
        if s > 1:
            # Coarse pixel i covers working pixels s i .. s i + s - 1: u_c = (u + 0.5) / s - 0.5.
            hc, wc = -(-h // s), -(-w // s)
            padded = np.zeros((hc * s, wc * s), dtype=bool)
            padded[:h, :w] = edges
            level_edges = padded.reshape(hc, s, wc, s).any(axis=(1, 3))
            K_level = K.copy()
            K_level[:2, :] /= s
            K_level[0, 2] += 0.5 / s - 0.5
            K_level[1, 2] += 0.5 / s - 0.5
        else:
            level_edges, K_level = edges, K
        pyramid.append(cost_field(level_edges, K_level, truncation, blur_sigma, float(s)))
    return pyramid
