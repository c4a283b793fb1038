"""Preview images: scan projected into the camera image, and a top view of world and route."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .simulator import Simulator
from ..core.geometry.projection import in_image, project_lidar_points
from ..core.geometry.se3 import transform_points
from ..core.sensors import CameraModel


def depth_colors(depth: np.ndarray, max_depth: float = 60.0) -> np.ndarray:
    """``(N, 3)`` uint8 RGB colours of depths (near red -> far blue, jet colour map)."""
    level = np.clip(255 - depth / max_depth * 255, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(level.reshape(-1, 1), cv2.COLORMAP_JET).reshape(-1, 3)[:, ::-1]


def overlay(image: np.ndarray, points: np.ndarray, T_cam_lidar: np.ndarray,
            camera: CameraModel, radius: int = 1) -> np.ndarray:
    """
    Draw LiDAR points projected by ``T_cam_lidar`` on an image, coloured by depth.

    :param image: ``(H, W, 3)`` uint8 RGB.
    :param points: ``(N, 3)`` points in the LiDAR frame.
    :param T_cam_lidar: ``(4, 4)`` LiDAR -> camera optical frame.
    :param camera: the image's camera model.
    :param radius: half size of each drawn dot in pixels (squares of side ``2 radius + 1``).
    :return: ``(H, W, 3)`` uint8 RGB copy.
    """
    out = image.copy()
    uv, front = project_lidar_points(points, T_cam_lidar, camera)
    vis = front & in_image(uv, camera)
    z = transform_points(T_cam_lidar, points[vis].astype(np.float64))[:, 2]
    order = np.argsort(-z)                       # far first, near points drawn on top
    px = np.floor(uv[vis][order] + 0.5).astype(np.int64)
    colors = depth_colors(z[order])
    for dy in range(-radius, radius + 1):        # a few offsets, each vectorized over points
        for dx in range(-radius, radius + 1):
            u = np.clip(px[:, 0] + dx, 0, camera.width - 1)
            v = np.clip(px[:, 1] + dy, 0, camera.height - 1)
            out[v, u] = colors
    return out


def top_view(sim: Simulator, metres_per_pixel: float = 0.5) -> np.ndarray:
    """
    Orthographic top view of the world (ray cast from above) with the vehicle's loop.

    :return: ``(H, W, 3)`` uint8 RGB, north up; the route in red, its start as a green dot.
    """
    lo, hi = sim.world.bounds
    w = int((hi[0] - lo[0]) / metres_per_pixel)
    h = int((hi[1] - lo[1]) / metres_per_pixel)
    xs = lo[0] + (np.arange(w) + 0.5) * metres_per_pixel
    ys = hi[1] - (np.arange(h) + 0.5) * metres_per_pixel
    gx, gy = np.meshgrid(xs, ys)
    origins = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, hi[2] + 10.0)], -1)
    t, hits = sim.world.cast(origins, np.broadcast_to([0.0, 0.0, -1.0], origins.shape))
    rgb = np.full((h * w, 3), 0.9)
    albedo, _ = sim.world.appearance(hits)
    height = np.clip(hits.points[:, 2] / 30.0, 0, 1)
    rgb[hits.index] = albedo * (0.5 + 0.5 * height)[:, None]
    img = np.ascontiguousarray((rgb.reshape(h, w, 3) * 255).astype(np.uint8))
    x, y, _ = sim.trajectory.pose2d(np.linspace(0, sim.trajectory.lap_time, 2000))
    px = np.stack([(x - lo[0]) / metres_per_pixel, (hi[1] - y) / metres_per_pixel], -1)
    cv2.polylines(img, [np.round(px).astype(np.int32)], True, (220, 30, 30), 2)
    cv2.circle(img, tuple(int(v) for v in np.round(px[0])), 6, (30, 200, 30), -1)
    return img


def write_previews(sim: Simulator, out_dir: str | os.PathLike, count: int = 3) -> list[str]:
    """
    Write ``top_view.png`` and ``count`` overlays (evenly spread over the drive).

    :return: the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    top = out / 'top_view.png'
    cv2.imwrite(str(top), top_view(sim)[:, :, ::-1])
    paths.append(str(top))
    stamps = sim.stamps()['lidar'].stamps_ns
    for k in np.linspace(0, len(stamps) - 1, count).astype(int) if len(stamps) else []:
        stamp = int(stamps[k])
        frame, _ = sim.image(stamp, int(k))
        cloud = sim.scan(stamp, int(k))
        path = out / f'overlay_{int(k):06d}.png'
        cv2.imwrite(str(path), overlay(frame.image, cloud.points, sim.T_cam_lidar,
                                       sim.camera)[:, :, ::-1])
        paths.append(str(path))
    return paths
