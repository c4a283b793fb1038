"""
The ``~/overlay`` image: the camera image with the scan projected by an estimate.

Points are drawn as small discs coloured by depth in the camera frame (near red, far blue, the
OpenCV ``JET`` map), nearest drawn last so they stay visible.
"""

from __future__ import annotations

import cv2
from i2p_registration.core.geometry.projection import in_image, project_lidar_points
from i2p_registration.core.sensors import CloudFrame, ImageFrame
import numpy as np


def render_overlay(image: ImageFrame, cloud: CloudFrame, T_cam_lidar: np.ndarray,
                   max_depth: float = 50.0, max_points: int = 30000, radius: int = 1
                   ) -> np.ndarray:
    """
    Draw ``cloud`` projected by ``T_cam_lidar`` onto a copy of ``image``.

    :param image: the camera frame (its calibration projects the points).
    :param cloud: ``(N, 3)`` points in the LiDAR frame, metres.
    :param T_cam_lidar: ``(4, 4)`` LiDAR-to-camera-optical transform.
    :param max_depth: depth in metres mapped to the far end of the colour map (> 0).
    :param max_points: at most this many points are drawn (evenly strided), to bound the cost.
    :param radius: disc radius in pixels (0: single pixels).
    :return: ``(H, W, 3)`` uint8 RGB.
    """
    if not max_depth > 0 or int(max_points) < 1 or int(radius) < 0:
        raise ValueError(f'need max_depth > 0, max_points >= 1 and radius >= 0, got '
                         f'{max_depth}, {max_points}, {radius}')
    canvas = image.image.copy()
    points = cloud.points
    if len(points) > max_points:
        points = points[::int(np.ceil(len(points) / max_points))]
    if len(points) == 0:
        return canvas
    T = np.asarray(T_cam_lidar, dtype=np.float64)
    uv, in_front = project_lidar_points(points, T, image.camera)
    visible = in_front & in_image(uv, image.camera)
    if not visible.any():
        return canvas
    depth = (points[visible].astype(np.float64) @ T[2, :3]) + T[2, 3]
    uv = np.rint(uv[visible]).astype(np.int32)
    level = np.clip(255.0 * (1.0 - depth / max_depth), 0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(level.reshape(-1, 1), cv2.COLORMAP_JET)[:, 0, ::-1]
    order = np.argsort(-depth)
    uv, colours = uv[order], colours[order]
    height, width = canvas.shape[:2]
    for du in range(-radius, radius + 1):
        for dv in range(-radius, radius + 1):
            if du * du + dv * dv <= radius * radius:
                u = np.clip(uv[:, 0] + du, 0, width - 1)
                v = np.clip(uv[:, 1] + dv, 0, height - 1)
                canvas[v, u] = colours
    return canvas
