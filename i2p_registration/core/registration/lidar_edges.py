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
    :param flat: ``(M,)`` bool, True for intensity edges that no neighbouring line confirms as
        a steep border (markings on the ground, see ``flat_intensity`` of
        :func:`depth_edges`).
    """

    index: np.ndarray
    weight: np.ndarray
    depth: np.ndarray
    points: np.ndarray
    flat: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @classmethod
    def none(cls) -> 'LidarEdges':
        """Return an empty set of edge points."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool),
                   np.zeros((0, 3)), np.zeros(0, bool))


def _as_points(points: np.ndarray) -> np.ndarray:
    """Return ``points`` as ``(N, 3)`` float64, or raise ``ValueError`` naming the shape."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f'points must have shape (N, 3), got {p.shape}')
    return p


class ScanLineError(ValueError):
    """The scan lines of a cloud without a ``ring`` field cannot be recovered."""


@dataclass(frozen=True)
class ScanGeometry:
    """
    A scan seen as lines of a spinning LiDAR, shared by the edge finders of one scan.

    :param line: ``(N,)`` int64 line ids ``0..L-1`` ranked by elevation (adjacent ids: adjacent
        lasers).
    :param line_elevation: ``(L,)`` median elevation of each line, radians.
    :param sectored: the lines were clustered per azimuth sector (a tilted scan without ring).
    :param range_: ``(N,)`` distances from the sensor, metres.
    :param azimuth: ``(N,)`` radians.
    :param elevation: ``(N,)`` radians.
    :param order: ``(N,)`` indices sorting the points by line, then azimuth.
    :param column: median azimuth step between neighbours of a line, radians.
    """

    line: np.ndarray
    line_elevation: np.ndarray
    sectored: bool
    range_: np.ndarray
    azimuth: np.ndarray
    elevation: np.ndarray
    order: np.ndarray
    column: float

    @classmethod
    def of(cls, points: np.ndarray, ring: np.ndarray | None = None) -> 'ScanGeometry':
        """
        Return the geometry of a scan (``(N, 3)`` points, N >= 1, optional ring field).

        :raises ScanLineError: see :func:`scan_lines`.
        """
        p = np.asarray(points, dtype=np.float64)
        line, sectored = scan_lines(p, ring, _sectored=True)
        azimuth = np.arctan2(p[:, 1], p[:, 0])
        elevation = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
        line, line_elevation = _rank_lines(elevation, line)
        order = np.lexsort((azimuth, line))
        line_s = line[order]
        steps = np.diff(azimuth[order])[line_s[1:] == line_s[:-1]]
        column = float(np.median(steps)) if steps.size else np.radians(0.2)
        return cls(line, line_elevation, bool(sectored), np.linalg.norm(p, axis=1), azimuth,
                   elevation, order, column)


def scan_lines(points: np.ndarray, ring: np.ndarray | None = None,
               min_elevation_gap: float = np.radians(0.1), min_points_per_line: int = 20,
               max_elevation_step: float = np.radians(0.3),
               sector_width: float = np.radians(2.0),
               max_line_span: float = np.radians(1.0), _sectored: bool = False) -> np.ndarray:
    """
    Assign every point to a scan line (one laser of a spinning LiDAR).

    Without a ring field: a scan stored line after line (e.g. KITTI ``.bin``: consecutive points
    are azimuth neighbours at nearly the same elevation) starts a new line where the azimuth
    jumps back; any other order (e.g. column after column) is split into lines by clustering
    the elevation angles, which needs a rectified (multi-beam, fixed elevation per laser)
    scan; when the whole cloud does not split into laser lines (its frame is tilted against the
    lasers' axis by a few degrees), it is clustered per ``sector_width`` of azimuth.

    :param points: ``(N, 3)`` metres in the LiDAR frame (z up).
    :param ring: optional ``(N,)`` laser index; used as is when given.
    :param min_elevation_gap: elevation clustering splits sorted elevation angles (radians)
        where consecutive ones differ by more than this.
    :param min_points_per_line: fewest points per line on average for the clustering to count
        as having found laser lines.
    :param max_elevation_step: largest elevation change (radians) between consecutive points
        of a line-ordered scan.
    :param sector_width: azimuth sector (radians) of the clustering of tilted scans.
    :param max_line_span: largest elevation span (radians) of a clustered line (95th
        percentile): wider clusters are merged lasers, not lines.
    :return: ``(N,)`` int64 line ids (arbitrary but equal within a line).
    :raises ScanLineError: without a ring field, when neither the point order nor the
        elevation angles reveal the lines (e.g. an unrectified scan in arbitrary order).
    """
    if ring is not None:
        line = np.asarray(ring).astype(np.int64)
        return (line, False) if _sectored else line
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    if n < 2:
        return (np.zeros(n, dtype=np.int64), False) if _sectored else np.zeros(n, np.int64)
    azimuth = np.arctan2(p[:, 1], p[:, 0])
    elevation = np.arctan2(p[:, 2], np.hypot(p[:, 0], p[:, 1]))
    step = np.angle(np.exp(1j * np.diff(azimuth)))
    along = ((np.abs(step) < np.radians(1.0)) & (np.abs(step) > 1e-6)
             & (np.abs(np.diff(elevation)) < max_elevation_step))
    if np.mean(along) >= _ORDERED_SHARE:
        # Line-ordered scan: a new line starts where the azimuth jumps back.
        direction = np.sign(np.median(step[along]))
        line = np.concatenate([[0], np.cumsum(direction * step < -np.radians(1.0))])
        return (line, False) if _sectored else line
    line, span = _elevation_clusters(elevation, np.zeros(n, dtype=np.int64), min_elevation_gap)
    lines = int(line.max()) + 1
    if lines >= 2 and n / lines >= min_points_per_line and span <= max_line_span:
        return (line, False) if _sectored else line
    # A tilted scan (its frame rotated against the lasers' axis): the laser cones are level
    # again within narrow azimuth sectors, so cluster per sector (lines end at sector borders).
    sector = np.floor((azimuth + np.pi) / sector_width).astype(np.int64)
    line, span = _elevation_clusters(elevation, sector, min_elevation_gap)
    lines = int(line.max()) + 1
    sectors = len(np.unique(sector))
    if lines / sectors >= 2 and n / lines >= 3 and span <= max_line_span:
        return (line, True) if _sectored else line
    raise ScanLineError(
        f'cannot recover the scan lines of a cloud without a ring field: the points are not '
        f'stored line by line and their elevations form {lines} clusters for {n} points (not a '
        f'multi-beam scan with fixed laser elevations); publish the ring field')


def _elevation_clusters(elevation, group, gap):
    """Return cluster ids of elevations split at ``gap`` per ``group``, and their span."""
    order = np.lexsort((elevation, group))
    e, g = elevation[order], group[order]
    start = np.concatenate([[True], (np.diff(e) > gap) | (np.diff(g) != 0)])
    line = np.empty(len(e), dtype=np.int64)
    line[order] = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    last = np.concatenate([first[1:], [len(e)]]) - 1
    # The 95th percentile of the clusters' elevation spans: one merged cluster is no line.
    return line, float(np.percentile(e[last] - e[first], 95))


def depth_edges(points: np.ndarray, ring: np.ndarray | None = None,
                intensity: np.ndarray | None = None, min_jump: float = 0.3,
                relative_jump: float = 0.05, max_azimuth_gap: float = np.radians(1.0),
                jump_cap: float = 2.0, intensity_threshold: float = 0.0,
                intensity_weight: float = 0.5, min_range: float = 1.0,
                min_support: int = 0, support_lines: int = 2,
                support_columns: float = 3.0,
                max_hole: float = np.radians(10.0),
                intensity_support: int = 1, flat_intensity: bool = False,
                geometry: ScanGeometry | None = None) -> LidarEdges:
    """
    Find depth-discontinuity edge points (and, optionally, intensity edges) along scan lines.

    A point ``i`` with line neighbours ``a`` and ``b`` (azimuth gaps below ``max_azimuth_gap``)
    is a depth edge towards ``b`` when ``r_b - r_i > max(min_jump, relative_jump * r_i)`` while
    ``r_a - r_i > -(r_b - r_i) / 3`` (``a`` is not much nearer: this rejects surfaces seen at
    grazing angles). Thin objects (poles, posts: both neighbours far behind) are an edge
    towards both sides and give two edge points. Its weight is
    ``sqrt(min(jump, jump_cap) / jump_cap)``.

    Clutter (vegetation, ground returns) gives isolated discontinuities; the silhouettes that
    the image shows (poles, cars, walls) continue across the laser lines. With
    ``min_support > 0`` an edge point is kept only when at least that many of the
    ``support_lines`` lines above and below hold a depth edge of the same side within
    ``support_columns`` azimuth steps and a similar range.

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
    :param min_support: neighbouring lines that must confirm a depth edge (0: no filter).
    :param support_lines: how many lines above and below are searched for confirmation.
    :param support_columns: azimuth tolerance of a confirmation, in median azimuth steps.
    :param max_hole: azimuth gaps between ``max_azimuth_gap`` and this (radians) are holes
        (missing returns: sky, out of range), which count as infinitely far neighbours.
    :param intensity_support: neighbouring lines that must hold an intensity edge at the same
        azimuth (within ``support_columns`` steps) and range, above or below it (a steep
        border), as with ``min_support``. This keeps the borders of windows, signs and posts
        and drops markings on the ground, which project to slanted image edges that an
        orientation-filtered edge map does not hold (without it, 4 of 6 refinements of a test
        scene with lane lines diverged). 0: no filter.
    :param flat_intensity: also return the intensity edges that ``intensity_support`` drops,
        flagged ``flat``: paint on the ground and other borders that cross the lines at a
        slant. They need an edge map of all orientations.
    :param geometry: the scan's :class:`ScanGeometry` when already computed (else from
        ``points`` and ``ring``).
    :return: the edge points.
    """
    p = _as_points(points)
    if len(p) < 3:
        return LidarEdges.none()
    g = geometry if geometry is not None else ScanGeometry.of(p, ring)
    if g.sectored:
        # Sector clusters split and merge lasers near the sensor (a translated frame changes
        # their elevations with range): their gaps are no holes.
        max_hole = 0.0
    order, column = g.order, g.column
    line_s, az_s, r_s = g.line[order], g.azimuth[order], g.range_[order]
    same_line = line_s[1:] == line_s[:-1]
    gap = np.diff(az_s)
    near_enough = (r_s[1:] >= min_range) & (r_s[:-1] >= min_range)
    neighbour = same_line & (gap < max_azimuth_gap) & near_enough
    # A hole in a line (no return: sky, beyond the range) is a neighbour infinitely far away.
    hole = same_line & (gap >= max_azimuth_gap) & (gap < max_hole) & near_enough
    far_away = 10.0 * jump_cap + min_jump
    d_prev = np.where(np.concatenate([[False], neighbour]), np.roll(r_s, 1) - r_s,
                      np.where(np.concatenate([[False], hole]), far_away, np.nan))
    d_next = np.where(np.concatenate([neighbour, [False]]), np.roll(r_s, -1) - r_s,
                      np.where(np.concatenate([hole, [False]]), far_away, np.nan))
    threshold = np.maximum(min_jump, relative_jump * r_s)
    with np.errstate(invalid='ignore'):
        edge_next = (d_next > threshold) & (d_prev > -d_next / 3.0)
        edge_prev = (d_prev > threshold) & (d_next > -d_prev / 3.0)
    if min_support > 0:
        tolerance = support_columns * max(column, 1e-4)
        edge_next, edge_prev = (
            _supported(line_s, az_s, r_s, edge_next, tolerance, support_lines, min_support),
            _supported(line_s, az_s, r_s, edge_prev, tolerance, support_lines, min_support))
    p_s = p[order]
    index, weight, is_depth, moved, is_flat = [], [], [], [], []
    for is_edge, jump, shift in ((edge_next, d_next, -1), (edge_prev, d_prev, 1)):
        far = np.roll(p_s, shift, axis=0)[is_edge]
        near = p_s[is_edge]
        # Beside a hole the silhouette lies half a column step beyond the last return.
        into_hole = jump[is_edge] >= far_away
        turn = -shift * column
        c, s_ = np.cos(turn), np.sin(turn)
        rotated = np.stack([c * near[:, 0] - s_ * near[:, 1], s_ * near[:, 0] + c * near[:, 1],
                            near[:, 2]], axis=1)
        far = np.where(into_hole[:, None], rotated, far)
        direction = (near / r_s[is_edge, None]
                     + far / np.linalg.norm(far, axis=1, keepdims=True))
        moved.append(direction / np.linalg.norm(direction, axis=1, keepdims=True)
                     * r_s[is_edge, None])
        index.append(order[is_edge])
        weight.append(np.sqrt(np.minimum(jump[is_edge], jump_cap) / jump_cap))
        is_depth.append(np.ones(int(is_edge.sum()), dtype=bool))
        is_flat.append(np.zeros(int(is_edge.sum()), dtype=bool))
    if intensity is not None and intensity_threshold > 0:
        i_s = np.asarray(intensity, dtype=np.float64)[order]
        i_s = i_s / max(float(np.percentile(i_s, 99)), 1e-9)
        with np.errstate(invalid='ignore'):
            smooth = (np.abs(d_prev) < min_jump) & (np.abs(d_next) < min_jump)
            step = np.abs(np.roll(i_s, -1) - np.roll(i_s, 1))
        is_intensity = smooth & (step > intensity_threshold) & ~(edge_next | edge_prev)
        steep = is_intensity
        if intensity_support > 0:
            steep = _supported(line_s, az_s, r_s, is_intensity,
                               support_columns * max(column, 1e-4), support_lines,
                               intensity_support, p_s)
        kept = is_intensity if flat_intensity else steep
        index.append(order[kept])
        weight.append(np.full(int(kept.sum()), intensity_weight))
        is_depth.append(np.zeros(int(kept.sum()), dtype=bool))
        moved.append(p_s[kept])
        is_flat.append(~steep[kept])
    index = np.concatenate(index)
    if index.size == 0:
        return LidarEdges.none()
    return LidarEdges(index.astype(np.int64), np.concatenate(weight).astype(np.float32),
                      np.concatenate(is_depth), np.concatenate(moved),
                      np.concatenate(is_flat))


def cross_line_edges(points: np.ndarray, ring: np.ndarray | None = None,
                     min_jump: float = 0.3, relative_jump: float = 0.2,
                     jump_cap: float = 2.0, min_range: float = 1.0,
                     geometry: ScanGeometry | None = None) -> LidarEdges:
    """
    Find depth-discontinuity edge points between adjacent scan lines (tops and bottoms).

    :func:`depth_edges` finds silhouettes along the scan lines: the sides of objects, which the
    image shows as edges along its columns; they say little about the camera's pitch and height.
    This finds them across the lines, at the same azimuth: a point whose neighbour on the next
    line up (or down) is much farther away, or missing (sky), while the neighbour on the other
    side continues its surface, is the top (or bottom) of an object, which the image shows as an
    edge along its rows. The point is moved half way to the neighbour line's elevation at its
    own range (the silhouette lies between the two beams).

    The range jump must exceed ``relative_jump`` of the range, four times more than along the
    lines: the ground and a raised kerb or pavement beside it recede between adjacent lines by
    about ``r^2 / h`` times the line spacing (0.75 m at 13 m for a 64-line LiDAR), a fold of one
    surface rather than a silhouette, where half-way placement would put the edge metres too
    far. Scans whose lines were recovered per azimuth sector (tilted, no ring field) give none.

    :param points: ``(N, 3)`` metres in the LiDAR frame (z up).
    :param ring: optional ``(N,)`` laser index.
    :param min_jump: smallest range jump, metres.
    :param relative_jump: smallest range jump as a fraction of the point's range.
    :param jump_cap: jump in metres that gets the full weight 1.
    :param min_range: points nearer than this (metres) are ignored.
    :param geometry: the scan's :class:`ScanGeometry` when already computed.
    :return: the edge points (all depth edges).
    """
    p = _as_points(points)
    if len(p) < 3:
        return LidarEdges.none()
    g = geometry if geometry is not None else ScanGeometry.of(p, ring)
    lines = len(g.line_elevation)
    if g.sectored or lines < 3:
        return LidarEdges.none()
    # A range image: rows are lines, columns azimuth bins one median azimuth step wide; a cell
    # holds the first return of its line in azimuth order.
    columns = int(np.ceil(2 * np.pi / max(g.column, 1e-4)))
    order = g.order[g.range_[g.order] >= min_range]
    col = np.minimum(((g.azimuth[order] + np.pi) / max(g.column, 1e-4)).astype(np.int64),
                     columns - 1)
    cell = g.line[order] * columns + col
    first = np.concatenate([[True], cell[1:] != cell[:-1]])
    occupant = np.full(lines * columns, -1, dtype=np.int64)
    occupant[cell[first]] = order[first]
    occupant = occupant.reshape(lines, columns)
    rng = np.where(occupant >= 0, g.range_[np.maximum(occupant, 0)], np.nan)
    far_away = 10.0 * jump_cap + min_jump
    index, weight, moved = [], [], []
    for d in (1, -1):
        # Neighbour row (line + d) and the row on the other side (line - d); NaN off the scan.
        beyond = np.full_like(rng, np.nan)
        behind = np.full_like(rng, np.nan)
        if d == 1:
            beyond[:-1], behind[1:] = rng[1:], rng[:-1]
        else:
            beyond[1:], behind[:-1] = rng[:-1], rng[1:]
        has_row = np.ones((lines, 1), dtype=bool)
        has_row[-1 if d == 1 else 0] = False
        # No return in the neighbour row within a column either side: sky or out of range.
        hole = (has_row & np.isnan(beyond) & np.isnan(np.roll(beyond, 1, axis=1))
                & np.isnan(np.roll(beyond, -1, axis=1)))
        jump = np.where(hole, far_away, beyond - rng)
        with np.errstate(invalid='ignore'):
            edge = ((jump > np.maximum(min_jump, relative_jump * rng))
                    & (behind - rng > -jump / 3.0))
        rows, cols = np.nonzero(edge)
        i = occupant[rows, cols]
        e = g.elevation[i] + 0.5 * (g.line_elevation[rows + d] - g.line_elevation[rows])
        a = g.azimuth[i]
        moved.append(g.range_[i, None] * np.stack(
            [np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=1))
        index.append(i)
        weight.append(np.sqrt(np.minimum(jump[rows, cols], jump_cap) / jump_cap))
    index = np.concatenate(index)
    if index.size == 0:
        return LidarEdges.none()
    return LidarEdges(index.astype(np.int64), np.concatenate(weight).astype(np.float32),
                      np.ones(index.size, dtype=bool), np.concatenate(moved),
                      np.zeros(index.size, dtype=bool))


def _rank_lines(elevation: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """
    Renumber line ids ``0..L-1`` by their median elevation (adjacent ids: adjacent lasers).

    :return: the new ids ``(N,)`` and each line's median elevation ``(L,)``, ascending.
    """
    ids, inverse = np.unique(line, return_inverse=True)
    order = np.argsort(inverse, kind='stable')
    bounds = np.searchsorted(inverse[order], np.arange(len(ids) + 1))
    median = np.array([np.median(elevation[order[a:b]]) for a, b in zip(bounds[:-1], bounds[1:])])
    by_elevation = np.argsort(median, kind='stable')
    rank = np.empty(len(ids), dtype=np.int64)
    rank[by_elevation] = np.arange(len(ids))
    return rank[inverse.reshape(-1)], median[by_elevation]


def _supported(line, azimuth, r, edge, tolerance, lines, needed, points=None):
    """
    Return ``edge`` where enough nearby lines hold an edge of the same side (sorted input).

    With ``points`` (``(N, 3)``, same order), a confirming edge must also lie above or below
    the edge point rather than beside it (height difference at least the horizontal one): the
    border between them is steep.
    """
    if not edge.any():
        return edge
    # Codes sort by (line, azimuth): azimuth + pi lies in [0, 2 pi] < 8.
    code = line * 8.0 + (azimuth + np.pi)
    keys, ranges = code[edge], r[edge]
    ord_ = np.argsort(keys, kind='stable')
    keys, ranges = keys[ord_], ranges[ord_]
    q_code, q_r = code[edge], r[edge]
    if points is not None:
        q_p = points[edge]
        k_p = q_p[ord_]
    support = np.zeros(len(q_code), dtype=np.int64)
    for d in range(-lines, lines + 1):
        if d == 0:
            continue
        lo = np.searchsorted(keys, q_code + 8.0 * d - tolerance)
        hi = np.searchsorted(keys, q_code + 8.0 * d + tolerance)
        found = np.zeros(len(q_code), dtype=bool)
        for k in range(3):
            # The first few candidates in the window (range must agree within 10 % + 0.3 m).
            j = np.minimum(lo + k, len(keys) - 1)
            ok = (lo + k < hi) & (np.abs(ranges[j] - q_r) < 0.1 * q_r + 0.3)
            if points is not None:
                d = k_p[j] - q_p
                ok &= np.abs(d[:, 2]) >= np.hypot(d[:, 0], d[:, 1])
            found |= ok
        support += found
    out = edge.copy()
    out[edge] = support >= needed
    return out
