"""
Occlusion test for projected LiDAR points: a z-buffer on a coarse image grid.

The LiDAR sees around objects that hide things from the camera (the two sensors are apart), so an
edge point only counts when no other point of the scan lies clearly in front of it in the same
coarse cell of the image.
"""

from __future__ import annotations

import numpy as np


def visible(points_cam: np.ndarray, occluders_cam: np.ndarray, K: np.ndarray, width: int,
            height: int, cell: float = 8.0, relative_tolerance: float = 0.1,
            absolute_tolerance: float = 0.3) -> np.ndarray:
    """
    Mark points that are in front of the camera, inside the image and not hidden.

    A point of depth ``z`` is hidden when its cell (``cell`` x ``cell`` pixels) holds an occluder
    of depth ``z_min`` with ``z > z_min * (1 + relative_tolerance) + absolute_tolerance``.

    :param points_cam: ``(N, 3)`` query points in the camera optical frame, metres.
    :param occluders_cam: ``(M, 3)`` points that may hide them (usually the whole scan,
        subsampled), same frame; the query points are added to them.
    :param K: ``(3, 3)`` pinhole camera matrix (no distortion).
    :param width: image width in pixels.
    :param height: image height in pixels.
    :param cell: z-buffer cell size in pixels.
    :param relative_tolerance: depth margin as a fraction of the occluder depth.
    :param absolute_tolerance: depth margin in metres.
    :return: ``(N,)`` bool.
    """
    gw, gh = int(np.ceil(width / cell)), int(np.ceil(height / cell))

    def cells(p):
        z = p[:, 2]
        ok = z > 0.1
        zs = np.where(ok, z, 1.0)
        u = K[0, 0] * p[:, 0] / zs + K[0, 1] * p[:, 1] / zs + K[0, 2]
        v = K[1, 1] * p[:, 1] / zs + K[1, 2]
        ok &= (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
        index = (np.floor((v + 0.5) / cell).astype(np.int64) * gw
                 + np.floor((u + 0.5) / cell).astype(np.int64))
        return np.where(ok, index, -1), z

    q_index, q_z = cells(np.asarray(points_cam, dtype=np.float64))
    o_index, o_z = cells(np.asarray(occluders_cam, dtype=np.float64))
    zbuffer = np.full(gw * gh, np.inf)
    for index, z in ((o_index, o_z), (q_index, q_z)):
        ok = index >= 0
        np.minimum.at(zbuffer, index[ok], z[ok])
    inside = q_index >= 0
    z_min = zbuffer[np.where(inside, q_index, 0)]
    return inside & (q_z <= z_min * (1.0 + relative_tolerance) + absolute_tolerance)
