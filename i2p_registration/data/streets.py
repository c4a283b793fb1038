"""
Procedural street network and scene content.

The plan is a grid of city blocks with randomly sized rows and columns; roads run along the grid
lines, so every four neighbouring intersections form a loop. A smooth lateral warp
``y' = y + A sin(2 pi x / wavelength + phase)`` then bends the east-west streets into curves (the
north-south streets stay straight, the intersections become skewed). Blocks are raised slabs with
rounded curbs; along their edges stand buildings with textured facades, street lights, traffic
signs, trees and parked cars; some blocks are parks with a wall and trees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .meshes import blobs, boxes, fan_polygon, MeshPart, prisms, wall_strip
from .synth_config import WorldConfig
from .textures import Material, N_PARAMS, StreetPlan

FACADE_PALETTE = np.array([[0.78, 0.70, 0.58], [0.62, 0.34, 0.26], [0.70, 0.70, 0.68],
                           [0.88, 0.86, 0.80], [0.85, 0.78, 0.55], [0.55, 0.60, 0.66],
                           [0.74, 0.56, 0.42]])
CAR_PALETTE = np.array([[0.75, 0.05, 0.05], [0.08, 0.10, 0.35], [0.85, 0.85, 0.85],
                        [0.10, 0.10, 0.10], [0.45, 0.47, 0.50], [0.10, 0.35, 0.15],
                        [0.85, 0.70, 0.10]])
SIGN_PALETTE = np.array([[0.80, 0.08, 0.08], [0.10, 0.25, 0.70], [0.95, 0.80, 0.10]])


@dataclass(frozen=True)
class Warp:
    """The plan-to-world bend of the streets: ``y' = y + A sin(2 pi x / wavelength + phase)``."""

    amplitude: float
    wavelength: float
    phase: float

    def _offset(self, x: np.ndarray) -> np.ndarray:
        return self.amplitude * np.sin(2 * np.pi * x / self.wavelength + self.phase)

    def forward(self, xy: np.ndarray) -> np.ndarray:
        """Plan ``(..., 2+)`` coordinates to world (z and further columns unchanged)."""
        out = np.array(xy, dtype=np.float64, copy=True)
        out[..., 1] += self._offset(out[..., 0])
        return out

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        """World ``(..., 2+)`` coordinates back to plan coordinates (exact)."""
        out = np.array(xy, dtype=np.float64, copy=True)
        out[..., 1] -= self._offset(out[..., 0])
        return out


class _Objects:
    """Growing table of per-object colour and parameters."""

    def __init__(self):
        self.colors = [np.zeros((1, 3))]
        self.params = [np.zeros((1, N_PARAMS))]
        self.count = 1                         # object 0: ground, curbs, slabs

    def add(self, colors: np.ndarray, params: np.ndarray | None = None) -> np.ndarray:
        colors = np.asarray(colors, dtype=np.float64).reshape(-1, 3)
        n = len(colors)
        self.colors.append(colors)
        self.params.append(np.zeros((n, N_PARAMS)) if params is None else params)
        ids = np.arange(self.count, self.count + n)
        self.count += n
        return ids


def rounded_rect(x0, x1, y0, y1, r: float, step: float) -> np.ndarray:
    """Counter-clockwise ring of a rectangle with rounded corners, straight parts subdivided."""
    corners = [((x1 - r, y0 + r), -np.pi / 2), ((x1 - r, y1 - r), 0.0),
               ((x0 + r, y1 - r), np.pi / 2), ((x0 + r, y0 + r), np.pi)]
    ring = []
    for k, ((cx, cy), a0) in enumerate(corners):
        a = a0 + np.linspace(0, np.pi / 2, 7)
        arc = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], -1)
        nxt_c, nxt_a = corners[(k + 1) % 4]
        end = arc[-1]
        start_next = np.array([nxt_c[0] + r * np.cos(nxt_a), nxt_c[1] + r * np.sin(nxt_a)])
        n = max(int(np.linalg.norm(start_next - end) / step), 1)
        line = end + (start_next - end) * (np.arange(1, n) / n)[:, None]
        ring += [arc, line]
    return np.concatenate(ring)


def _edges(x0, x1, y0, y1):
    """Block edges counter-clockwise: start points, directions, inward normals, lengths."""
    starts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    dirs = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    normals = np.array([[0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
    lengths = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    return starts, dirs, normals, lengths


def _slots(rng, lo: float, hi: float, size: tuple[float, float], gap_p: float,
           gap: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive intervals of random size in ``[lo, hi]``: starts and lengths."""
    if hi - lo < size[0]:
        return np.zeros(0), np.zeros(0)
    k = int((hi - lo) / size[0]) + 2
    lengths = rng.uniform(*size, k)
    gaps = np.where(rng.uniform(size=k) < gap_p, rng.uniform(*gap, k), 0.3)
    starts = lo + np.concatenate([[0.0], np.cumsum(lengths + gaps)[:-1]])
    keep = starts + lengths <= hi
    return starts[keep], lengths[keep]


class _Scene:
    """Collects instances per primitive kind, then builds every kind in one batched call."""

    def __init__(self, cfg: WorldConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        self.objects = _Objects()
        self.parts: list[MeshPart] = []
        self.box = {k: [] for k in ('c', 's', 'yaw', 'mat', 'top', 'obj')}
        self.prism = {k: [] for k in ('c', 'r', 'h', 'mat', 'obj')}
        self.blob = {k: [] for k in ('c', 'r', 'mat', 'obj')}

    def add_boxes(self, c, s, yaw, mat, obj, top=None):
        n = len(c)
        if n == 0:
            return
        self.box['c'].append(np.asarray(c, float).reshape(n, 3))
        self.box['s'].append(np.asarray(s, float).reshape(n, 3))
        self.box['yaw'].append(np.broadcast_to(yaw, (n,)).astype(float))
        self.box['mat'].append(np.broadcast_to(mat, (n,)).astype(np.uint8))
        self.box['top'].append(np.broadcast_to(mat if top is None else top, (n,)).astype(np.uint8))
        self.box['obj'].append(np.broadcast_to(obj, (n,)).astype(np.int32))

    def add_prisms(self, c, r, h, mat, obj):
        n = len(c)
        if n == 0:
            return
        for key, val, dt in (('c', c, float), ('r', r, float), ('h', h, float),
                             ('mat', mat, np.uint8), ('obj', obj, np.int32)):
            shape = (n, 3) if key == 'c' else (n,)
            self.prism[key].append(np.broadcast_to(np.asarray(val, dt), shape))

    def build(self) -> MeshPart:
        parts = list(self.parts)
        if self.box['c']:
            b = {k: np.concatenate(v) for k, v in self.box.items()}
            parts.append(boxes(b['c'], b['s'], b['yaw'], b['mat'], b['obj'], b['top']))
        if self.prism['c']:
            p = {k: np.concatenate(v) for k, v in self.prism.items()}
            parts.append(prisms(p['c'], p['r'], p['h'], p['mat'], p['obj']))
        if self.blob['c']:
            q = {k: np.concatenate(v) for k, v in self.blob.items()}
            parts.append(blobs(q['c'], q['r'], q['mat'], q['obj'], self.rng))
        return MeshPart.concat(parts)

    # ---- content along one block edge -------------------------------------------------------

    def buildings(self, start, d, n, length, lo, base_height, max_depth):
        cfg, rng = self.cfg, self.rng
        s0, f = _slots(rng, lo, length - lo, cfg.building_frontage, 0.3, (1.5, 5.0))
        m = len(s0)
        if m == 0:
            return
        depth = np.minimum(rng.uniform(*cfg.building_depth, m), max_depth)
        setback = cfg.sidewalk_width + rng.choice([0.0, 0.0, 0.5, 1.5], m)
        h = np.clip(base_height * rng.uniform(0.7, 1.3, m), *cfg.building_height)
        centre = start + (s0 + f / 2)[:, None] * d + (setback + depth / 2)[:, None] * n
        color = FACADE_PALETTE[rng.integers(len(FACADE_PALETTE), size=m)]
        color = np.clip(color * rng.uniform(0.9, 1.1, (m, 3)), 0, 1)
        floor_h = rng.uniform(2.9, 3.6, m)
        params = np.stack([rng.uniform(0.8, 1.6, m), rng.uniform(1.1, 1.7, m),
                           rng.uniform(2.4, 3.6, m), floor_h, rng.uniform(0.6, 0.9, m),
                           (rng.uniform(size=m) < 0.4).astype(float), rng.uniform(1.0, 6.0, m),
                           h], -1)
        ids = self.objects.add(color, params)
        yaw = np.arctan2(d[1], d[0])
        c3 = np.concatenate([centre, np.zeros((m, 1))], axis=1)
        self.add_boxes(c3, np.stack([f, depth, h], -1), yaw, Material.FACADE, ids, Material.ROOF)

    def street_furniture(self, start, d, n, length, corner):
        cfg, rng = self.cfg, self.rng
        ch = cfg.curb_height
        yaw_d = np.arctan2(d[1], d[0])
        yaw_n = np.arctan2(n[1], n[0])
        # Street lights: pole, arm over the road, lamp head.
        s = np.arange(corner + 3.0, length - corner - 3.0, cfg.pole_spacing)
        if len(s):
            p = start + s[:, None] * d + 0.5 * n
            h = rng.uniform(6.0, 8.0, len(s))
            ids = self.objects.add(np.tile([0.45, 0.47, 0.48], (len(s), 1)))
            self.add_prisms(np.c_[p, np.full(len(s), ch)], 0.09, h, Material.POLE, ids)
            arm = p - 0.9 * n
            self.add_boxes(np.c_[arm, h + ch - 0.12], np.tile([1.8, 0.1, 0.1], (len(s), 1)),
                           yaw_n, Material.POLE, ids)
            lamp = p - 1.7 * n
            self.add_boxes(np.c_[lamp, h + ch - 0.35], np.tile([0.6, 0.3, 0.18], (len(s), 1)),
                           yaw_n, Material.LAMP, ids)
        # A traffic sign near the corner that the curb-side traffic approaches.
        if rng.uniform() < 0.6:
            p = start + (corner + 1.5 + rng.uniform(0, 2)) * d + 0.4 * n
            ids = self.objects.add(SIGN_PALETTE[rng.integers(len(SIGN_PALETTE))][None])
            self.add_prisms(np.r_[p, ch][None], 0.04, 2.6, Material.POLE, ids)
            self.add_boxes(np.r_[p + 0.06 * d, ch + 2.0][None], [[0.04, 0.7, 0.7]], yaw_d,
                           Material.SIGN, ids)
        # Parked cars in the parking lane.
        s0, L = _slots(rng, corner + 4.0, length - corner - 4.0, (5.8, 7.0), 0.0, (0, 0))
        occupied = rng.uniform(size=len(s0)) < cfg.parked_car_probability
        s0, L = s0[occupied], L[occupied]
        if len(s0):
            self.cars(start + (s0 + L / 2)[:, None] * d - (cfg.parking_width / 2) * n,
                      yaw_d + np.pi * (rng.uniform(size=len(s0)) < 0.5))

    def cars(self, centre, yaw):
        rng = self.rng
        m = len(centre)
        length = rng.uniform(3.9, 4.8, m)
        width = rng.uniform(1.7, 1.9, m)
        color = CAR_PALETTE[rng.integers(len(CAR_PALETTE), size=m)]
        ids = self.objects.add(color)
        fwd = np.stack([np.cos(yaw), np.sin(yaw)], -1)
        left = np.stack([-np.sin(yaw), np.cos(yaw)], -1)
        z = np.zeros((m, 1))
        self.add_boxes(np.c_[centre, z + 0.3], np.stack([length, width, np.full(m, 0.75)], -1),
                       yaw, Material.CAR_BODY, ids)
        cabin = centre - (0.08 * length)[:, None] * fwd
        self.add_boxes(np.c_[cabin, z + 1.05],
                       np.stack([0.52 * length, width - 0.15, np.full(m, 0.5)], -1), yaw,
                       Material.CAR_GLASS, ids, Material.CAR_BODY)
        for sl, sw in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            w = centre + (sl * 0.33 * length)[:, None] * fwd + (sw * 0.45 * width)[:, None] * left
            self.add_boxes(np.c_[w, z], np.tile([0.64, 0.24, 0.62], (m, 1)), yaw,
                           Material.WHEEL, ids)

    def trees(self, xy, z0):
        rng = self.rng
        m = len(xy)
        if m == 0:
            return
        trunk_h = rng.uniform(2.0, 3.5, m)
        crown = np.stack([rng.uniform(1.6, 3.0, m)] * 2 + [rng.uniform(1.8, 3.2, m)], -1)
        green = np.stack([rng.uniform(0.15, 0.3, m), rng.uniform(0.32, 0.5, m),
                          rng.uniform(0.08, 0.18, m)], -1)
        ids = self.objects.add(green)
        self.add_prisms(np.c_[xy, np.full(m, z0)], rng.uniform(0.12, 0.22, m), trunk_h + 0.5,
                        Material.TRUNK, ids)
        centre = np.c_[xy, z0 + trunk_h + 0.8 * crown[:, 2]]
        crown_mat = np.full(m, Material.CROWN, np.uint8)
        for key, val in (('c', centre), ('r', crown), ('mat', crown_mat),
                         ('obj', ids.astype(np.int32))):
            self.blob[key].append(val)


def road_lines(cfg: WorldConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """
    Plan positions of the road centre lines: ``(nx + 1,)`` x values and ``(ny + 1,)`` y values.

    The grid is centred on the plan origin; block sizes (curb to curb) are drawn per column / row.
    """
    hw2 = 2 * cfg.road_half_width
    out = []
    for n in cfg.blocks:
        sizes = rng.uniform(*cfg.block_size, n)
        lines = np.concatenate([[0.0], np.cumsum(sizes + hw2)])
        out.append(lines - lines[-1] / 2)
    return out[0], out[1]


def build_scene(cfg: WorldConfig, rng: np.random.Generator):
    """
    Generate the whole scene.

    :param cfg: world configuration.
    :param rng: the world's random generator (everything drawn from it, in a fixed order).
    :return: ``(mesh, plan, warp, object_colors (M, 3), object_params (M, 8))``; the mesh is in
        world coordinates (after the warp), z up, ground at z = 0.
    """
    road_x, road_y = road_lines(cfg, rng)
    nx, ny = cfg.blocks
    hw, sw, rc, ch = cfg.road_half_width, cfg.sidewalk_width, cfg.corner_radius, cfg.curb_height
    park = rng.uniform(size=(nx, ny)) < cfg.park_probability
    warp = Warp(cfg.warp_amplitude, cfg.warp_wavelength, float(rng.uniform(0, 2 * np.pi)))
    scene = _Scene(cfg, rng)
    margin = 80.0
    gx = (road_x[0] - margin, road_x[-1] + margin)
    gy = (road_y[0] - margin - cfg.warp_amplitude, road_y[-1] + margin + cfg.warp_amplitude)
    ground = np.array([[gx[0], gy[0]], [gx[1], gy[0]], [gx[1], gy[1]], [gx[0], gy[1]]])
    scene.parts.append(MeshPart(np.c_[ground, np.zeros(4)], np.array([[0, 1, 2], [0, 2, 3]]),
                                ground.astype(np.float32), np.zeros(2, np.uint8),
                                np.zeros(2, np.int32)))
    for bx in range(nx):
        for by in range(ny):
            x0, x1 = road_x[bx] + hw, road_x[bx + 1] - hw
            y0, y1 = road_y[by] + hw, road_y[by + 1] - hw
            ring = rounded_rect(x0, x1, y0, y1, rc, 4.0)
            scene.parts.append(fan_polygon(ring, ch, Material.SIDEWALK, 0))
            scene.parts.append(wall_strip(ring, 0.0, ch, Material.CURB, 0))
            starts, dirs, normals, lengths = _edges(x0, x1, y0, y1)
            base_h = rng.uniform(*cfg.building_height)
            for e in range(4):
                start, d, n, length = starts[e], dirs[e], normals[e], lengths[e]
                other = lengths[(e + 1) % 4]
                max_depth = max(other / 2 - sw - 1.0, 3.0)
                if not park[bx, by]:
                    lo = sw if e % 2 == 0 else sw + cfg.building_depth[1]
                    scene.buildings(start, d, n, length, lo, base_h, max_depth)
                    if rng.uniform() < 0.6:
                        s = np.arange(rc + 2.0, length - rc - 2.0, cfg.tree_spacing)
                        s = s + rng.uniform(-1, 1, len(s))
                        scene.trees(start + s[:, None] * d + 1.3 * n, ch)
                else:
                    mid = length / 2
                    seg = np.array([[sw, mid - 2.0], [mid + 2.0, length - sw]])
                    lengths_w = seg[:, 1] - seg[:, 0]
                    c = start + seg.mean(axis=1)[:, None] * d + (sw + 0.3) * n
                    ids = scene.objects.add(np.tile([0.62, 0.36, 0.28], (2, 1)))
                    scene.add_boxes(np.c_[c, np.full(2, ch)],
                                    np.stack([lengths_w, np.full(2, 0.3),
                                              np.full(2, rng.uniform(1.0, 2.0))], -1),
                                    np.arctan2(d[1], d[0]), Material.WALL, ids)
                scene.street_furniture(start, d, n, length, rc)
            if park[bx, by]:
                area = (x1 - x0 - 2 * sw - 4) * (y1 - y0 - 2 * sw - 4)
                k = int(area / 180)
                xy = np.stack([rng.uniform(x0 + sw + 2, x1 - sw - 2, k),
                               rng.uniform(y0 + sw + 2, y1 - sw - 2, k)], -1)
                scene.trees(xy, ch)
    mesh = scene.build()
    mesh.vertices = warp.forward(mesh.vertices)
    plan = StreetPlan(road_x, road_y, park, cfg.lane_width, hw, sw)
    colors = np.concatenate(scene.objects.colors).astype(np.float32)
    params = np.concatenate(scene.objects.params).astype(np.float32)
    return mesh, plan, warp, colors, params
