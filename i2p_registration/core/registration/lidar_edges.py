"""
LiDAR side of edge alignment: depth-discontinuity (and optional intensity) edge points.

A point is a depth edge when, along its scan line, one neighbour is much farther away while the
other continues its surface: the point is the near (occluding) side of a silhouette, which is
where the image shows an edge. Scan lines come from the ``ring`` field when present, from the
point order of an ordered scan otherwise, and else from clustering the elevation angles of
rectified (multi-beam) scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A scan counts as ordered when this share of consecutive points are azimuth neighbours.
_ORDERED_SHARE = 0.8


@dataclass(frozen=True)
class LidarEdges:
    """
    Edge points of one scan.

    :param index: ``(M,)`` int64 indices into the scan's points.
    :param weight: ``(M,)`` float32 in ``(0, 1]``, the discontinuity strength.
    :param depth: ``(M,)`` bool, True for depth edges, False for intensity edges.
    :param points: ``(M, 3)`` float64 edge positions, metres: a depth edge point is moved half
        way in direction towards its far neighbour at its own range (the silhouette lies
        between the two beams, not on the near one); intensity edges stay in place.
    """

    index: np.ndarray
    weight: np.ndarray
    depth: np.ndarray
    points: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])


def scan_lines(points: np.ndarray, ring: np.ndarray | None = None,
               min_elevation_gap: float = np.radians(0.1)) -> np.ndarray:
    """
    Assign every point to a scan line (one laser of a spinning LiDAR).

    :param points: ``(N, 3)`` metres in the LiDAR frame (z up).
    :param ring: optional ``(N,)`` laser index; used as is when given.
    :param min_elevation_gap: without ring and without scan order, elevation angles (radians)
        are sorted and split where consecutive ones differ by more than this.
    :return: ``(N,)`` int64 line ids (arbitrary but equal within a line).
    """
    if ring is not None:
        return np.asarray(ring).astype(np.int64)
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    azimuth = np.arctan2(p[:, 1], p[:, 0])
    step = np.angle(np.exp(1j * np.diff(azimuth)))
    if np.mean(np.abs(step) < np.radians(1.0)) >= _ORDERED_SHARE:
        # Ordered scan (e.g. KITTI .bin): a new line starts where the azimuth jumps back.
        direction = np.sign(np.median(step))
        return np.concatenate([[0], np.cumsum(direction * step < -np.radians(1.0))])
    elevation = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
    order = np.argsort(elevation, kind='stable')
    line = np.empty(n, dtype=np.int64)
    line[order] = np.concatenate([[0], np.cumsum(np.diff(elevation[order]) > min_elevation_gap)])
    return line


def depth_edges(points: np.ndarray, ring: np.ndarray | None = None,
                intensity: np.ndarray | None = None, min_jump: float = 0.3,
                relative_jump: float = 0.05, max_azimuth_gap: float = np.radians(1.0),
                jump_cap: float = 2.0, intensity_threshold: float = 0.0,
                intensity_weight: float = 0.5, min_range: float = 1.0) -> LidarEdges:
    """
    Find depth-discontinuity edge points (and, optionally, intensity edges) along scan lines.

    A point ``i`` with line neighbours ``a`` and ``b`` (azimuth gaps below ``max_azimuth_gap``)
    is a depth edge when ``r_b - r_i > max(min_jump, relative_jump * r_i)`` while
    ``|r_a - r_i| < (r_b - r_i) / 3`` (the other side is continuous, which rejects surfaces
    seen at grazing angles), or the same with ``a`` and ``b`` swapped. Its weight is
    ``sqrt(min(jump, jump_cap) / jump_cap)``.

    :param points: ``(N, 3)`` metres in the LiDAR frame (z up).
    :param ring: optional ``(N,)`` laser index.
    :param intensity: optional ``(N,)`` intensities; with ``intensity_threshold > 0`` points of
        continuous surfaces whose two neighbours differ by more than that (after scaling
        intensities by their 99th percentile) are intensity edges of weight
        ``intensity_weight``.
    :param min_jump: smallest range jump, metres.
    :param relative_jump: smallest range jump as a fraction of the point's range.
    :param max_azimuth_gap: largest azimuth step between neighbours, radians.
    :param jump_cap: jump in metres that gets the full weight 1.
    :param intensity_threshold: relative intensity step of an intensity edge (0: none).
    :param intensity_weight: weight of intensity edges in ``(0, 1]``.
    :param min_range: points nearer than this (metres; the vehicle itself) are ignored.
    :return: the edge points.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {p.shape}')
    empty = LidarEdges(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool),
                       np.zeros((0, 3)))
    if len(p) < 3:
        return empty
    line = scan_lines(p, ring)
    r = np.linalg.norm(p, axis=1)
    azimuth = np.arctan2(p[:, 1], p[:, 0])
    order = np.lexsort((azimuth, line))
    line_s, az_s, r_s = line[order], azimuth[order], r[order]
    neighbour = (line_s[1:] == line_s[:-1]) & (np.diff(az_s) < max_azimuth_gap)
    neighbour &= (r_s[1:] >= min_range) & (r_s[:-1] >= min_range)
    has_prev = np.concatenate([[False], neighbour])
    has_next = np.concatenate([neighbour, [False]])
    d_prev = np.where(has_prev, np.roll(r_s, 1) - r_s, np.nan)
    d_next = np.where(has_next, np.roll(r_s, -1) - r_s, np.nan)
    threshold = np.maximum(min_jump, relative_jump * r_s)
    with np.errstate(invalid='ignore'):
        edge_next = (d_next > threshold) & (np.abs(d_prev) < d_next / 3.0)
        edge_prev = (d_prev > threshold) & (np.abs(d_next) < d_prev / 3.0)
    jump = np.where(edge_next, d_next, np.where(edge_prev, d_prev, 0.0))
    is_depth = edge_next | edge_prev
    weight = np.sqrt(np.minimum(jump, jump_cap) / jump_cap)
    is_intensity = np.zeros_like(is_depth)
    if intensity is not None and intensity_threshold > 0:
        i_s = np.asarray(intensity, dtype=np.float64)[order]
        i_s = i_s / max(float(np.percentile(i_s, 99)), 1e-9)
        with np.errstate(invalid='ignore'):
            smooth = (np.abs(d_prev) < min_jump) & (np.abs(d_next) < min_jump)
            step = np.abs(np.roll(i_s, -1) - np.roll(i_s, 1))
        is_intensity = smooth & (step > intensity_threshold) & ~is_depth
        weight = np.where(is_intensity, intensity_weight, weight)
    keep = is_depth | is_intensity
    p_s = p[order]
    far = np.where(edge_next[:, None], np.roll(p_s, -1, axis=0), np.roll(p_s, 1, axis=0))
    direction = p_s / r_s[:, None] + far / np.linalg.norm(far, axis=1, keepdims=True)
    moved = direction / np.linalg.norm(direction, axis=1, keepdims=True) * r_s[:, None]
    points = np.where(is_depth[:, None], moved, p_s)
    return LidarEdges(order[keep].astype(np.int64), weight[keep].astype(np.float32),
                      is_depth[keep], points[keep])
