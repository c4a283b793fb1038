"""
Procedural surface appearance: albedo (RGB) and LiDAR reflectivity at ray hits.

Textures are functions of a hit's material, its object's parameters and 2D texture coordinates in
metres, evaluated for all hits at once. Road and sidewalk use street-plan coordinates (the world
before its warp) so lane markings, crossings and paving follow the curved streets; every other
surface uses the coordinates interpolated from its mesh vertices (along-face, height).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Material(IntEnum):
    """Surface classes of the synthetic world."""

    ROAD = 0
    SIDEWALK = 1
    CURB = 2
    FACADE = 3
    ROOF = 4
    POLE = 5
    LAMP = 6
    SIGN = 7
    TRUNK = 8
    CROWN = 9
    CAR_BODY = 10
    CAR_GLASS = 11
    WHEEL = 12
    WALL = 13


# Base reflectivity (0..1) per material; markings, windows and sign faces modify it.
REFLECTIVITY = np.array([0.12, 0.30, 0.35, 0.28, 0.15, 0.40, 0.50, 0.90, 0.20, 0.30, 0.45,
                         0.08, 0.05, 0.32], dtype=np.float32)
BASE_ALBEDO = np.array([
    [0.30, 0.30, 0.31], [0.62, 0.60, 0.56], [0.70, 0.69, 0.66], [0.70, 0.62, 0.52],
    [0.30, 0.27, 0.26], [0.45, 0.47, 0.48], [0.90, 0.90, 0.82], [0.80, 0.10, 0.10],
    [0.35, 0.25, 0.17], [0.22, 0.42, 0.16], [0.60, 0.10, 0.10], [0.10, 0.12, 0.15],
    [0.06, 0.06, 0.06], [0.62, 0.36, 0.28]], dtype=np.float32)

# Materials whose colour is the material's own, not the object's.
_BASE_COLORED = np.array([Material.CURB, Material.ROOF, Material.LAMP, Material.TRUNK,
                          Material.CAR_GLASS, Material.WHEEL])

# Facade object parameters (columns of the world's object parameter table).
FACADE_PARAMS = ('window_w', 'window_h', 'spacing', 'floor_h', 'sill', 'shop', 'door_u',
                 'height')
N_PARAMS = len(FACADE_PARAMS)


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice hash to uniform [0, 1) (wrap-around uint64 arithmetic)."""
    h = (ix.astype(np.uint64) * np.uint64(0x9E3779B1)
         ^ iy.astype(np.uint64) * np.uint64(0x85EBCA77)
         ^ np.uint64(seed * 0xC2B2AE3D & 0xFFFFFFFF))
    h &= np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(12)
    h = (h * np.uint64(0x297A2D39)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    return h.astype(np.float64) / 2.0 ** 32


def value_noise(x, y, scale: float, seed: int = 0) -> np.ndarray:
    """
    Smooth value noise in [0, 1) on a lattice of ``scale`` metres (bilinear, smoothstep).

    :param x: ``(N,)`` coordinates in metres.
    :param y: ``(N,)`` coordinates in metres.
    :param scale: lattice spacing, metres.
    :param seed: selects an independent noise field.
    :return: ``(N,)`` float64.
    """
    gx, gy = np.asarray(x) / scale, np.asarray(y) / scale
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = gx - ix, gy - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _nearest_offset(v: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Signed offset of each ``v`` from the nearest value in sorted ``lines``."""
    i = np.clip(np.searchsorted(lines, v), 1, len(lines) - 1)
    lo, hi = lines[i - 1], lines[i]
    return np.where(v - lo < hi - v, v - lo, v - hi)


class StreetPlan:
    """
    Where the roads are in street-plan coordinates, for markings and paving.

    :param road_x: ``(nx + 1,)`` sorted x of the north-south road centre lines, metres.
    :param road_y: ``(ny + 1,)`` sorted y of the east-west road centre lines, metres.
    :param park: ``(nx, ny)`` bool, blocks that are parks.
    :param lane_width: driving lane width, metres.
    :param half_width: road centre line to curb, metres.
    :param sidewalk_width: curb to the inner edge of the sidewalk, metres.
    """

    def __init__(self, road_x, road_y, park, lane_width: float, half_width: float,
                 sidewalk_width: float):
        self.road_x = np.asarray(road_x, dtype=np.float64)
        self.road_y = np.asarray(road_y, dtype=np.float64)
        self.park = np.asarray(park, dtype=bool)
        self.lane_width = float(lane_width)
        self.half_width = float(half_width)
        self.sidewalk_width = float(sidewalk_width)

    def road(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Albedo ``(N, 3)`` and reflectivity ``(N,)`` of the road surface at plan ``(x, y)``."""
        hw, lane = self.half_width, self.lane_width
        dx, dy = _nearest_offset(x, self.road_x), _nearest_offset(y, self.road_y)
        ax, ay = np.abs(dx), np.abs(dy)
        on_ns, on_ew = ax < hw, ay < hw
        shade = 0.85 + 0.2 * value_noise(x, y, 3.0, 1) + 0.08 * value_noise(x, y, 0.4, 2)
        albedo = BASE_ALBEDO[Material.ROAD][None] * shade[:, None]
        refl = np.full(len(x), REFLECTIVITY[Material.ROAD], np.float32)
        mark = np.zeros(len(x), bool)
        ns = on_ns & ~on_ew
        ew = on_ew & ~on_ns
        # Dashed centre lines (3 m on, 3 m off) and solid lines between lane and parking lane.
        mark |= ns & (ax < 0.08) & (np.mod(y, 6.0) < 3.0)
        mark |= ew & (ay < 0.08) & (np.mod(x, 6.0) < 3.0)
        mark |= ns & (np.abs(ax - lane) < 0.06)
        mark |= ew & (np.abs(ay - lane) < 0.06)
        # Zebra crossings just outside each intersection, and stop lines on the incoming lane.
        zebra_ns = ns & (ay > hw + 0.5) & (ay < hw + 3.5) & (np.mod(x, 1.0) < 0.5)
        zebra_ew = ew & (ax > hw + 0.5) & (ax < hw + 3.5) & (np.mod(y, 1.0) < 0.5)
        stop_ns = ns & (ay > hw + 4.0) & (ay < hw + 4.45) & (dx * dy < 0) & (ax < lane)
        stop_ew = ew & (ax > hw + 4.0) & (ax < hw + 4.45) & (dx * dy > 0) & (ay < lane)
        mark |= zebra_ns | zebra_ew | stop_ns | stop_ew
        albedo[mark] = 0.85
        refl[mark] = 0.75
        # Outside the outermost roads is meadow (intersection corners inside the grid: asphalt).
        off = ((x < self.road_x[0] - hw) | (x > self.road_x[-1] + hw)
               | (y < self.road_y[0] - hw) | (y > self.road_y[-1] + hw))
        if off.any():
            grass, _ = self._grass(x[off], y[off])
            albedo[off] = grass
            refl[off] = REFLECTIVITY[Material.CROWN]
        return albedo, refl

    def _grass(self, x, y):
        n = value_noise(x, y, 1.5, 3)
        albedo = np.stack([0.20 + 0.1 * n, 0.38 + 0.12 * n, 0.12 + 0.05 * n], -1)
        return albedo, np.full(len(x), REFLECTIVITY[Material.CROWN], np.float32)

    def sidewalk(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Albedo and reflectivity of block tops: paving near the curb, grass or yard inside."""
        dx, dy = _nearest_offset(x, self.road_x), _nearest_offset(y, self.road_y)
        inset = np.minimum(np.abs(dx), np.abs(dy)) - self.half_width
        paving = inset < self.sidewalk_width
        joint = (np.mod(x, 1.5) < 0.05) | (np.mod(y, 1.5) < 0.05)
        shade = 0.9 + 0.15 * value_noise(x, y, 1.5, 4)
        albedo = BASE_ALBEDO[Material.SIDEWALK][None] * shade[:, None]
        albedo[paving & joint] *= 0.7
        refl = np.full(len(x), REFLECTIVITY[Material.SIDEWALK], np.float32)
        bx = np.clip(np.searchsorted(self.road_x, x) - 1, 0, self.park.shape[0] - 1)
        by = np.clip(np.searchsorted(self.road_y, y) - 1, 0, self.park.shape[1] - 1)
        park = ~paving & self.park[bx, by]
        if park.any():
            albedo[park], refl[park] = self._grass(x[park], y[park])
        yard = ~paving & ~park
        albedo[yard] = albedo[yard] * np.array([0.75, 0.72, 0.65])
        return albedo, refl


def facade(u, v, color, params) -> tuple[np.ndarray, np.ndarray]:
    """
    Shade building facades: wall colour with dirt, windows on a floor grid, shop fronts and a door.

    :param u: ``(N,)`` metres along the wall.
    :param v: ``(N,)`` metres above the ground.
    :param color: ``(N, 3)`` wall colour of each hit's building.
    :param params: ``(N, 8)`` building parameters in the order of :data:`FACADE_PARAMS`.
    :return: albedo ``(N, 3)``, reflectivity ``(N,)``.
    """
    ww, wh, sp, fh, sill, shop, door_u, height = params.T
    dirt = 0.85 + 0.2 * value_noise(u, v, 2.0, 5)
    albedo = color * dirt[:, None]
    refl = np.full(len(u), REFLECTIVITY[Material.FACADE], np.float32)
    fu = np.mod(u, sp) - (sp - ww) / 2
    fv = np.mod(v, fh) - sill
    upper = (v > fh) & (v < height - 0.8)
    window = upper & (fu > 0) & (fu < ww) & (fv > 0) & (fv < wh)
    frame = upper & (fu > -0.12) & (fu < ww + 0.12) & (fv > -0.12) & (fv < wh + 0.12) & ~window
    shopfront = (shop > 0.5) & (v > 0.4) & (v < fh - 0.5) & (np.mod(u, sp) > 0.35)
    door = (np.abs(u - door_u) < 0.6) & (v < 2.2)
    cornice = (v > height - 0.5)
    glass = (window | shopfront) & ~door
    tint = 0.85 + 0.3 * value_noise(np.floor(u / sp), np.floor(v / fh), 1.0, 6)
    albedo[frame] = 0.85
    albedo[cornice] *= 0.75
    albedo[glass] = np.array([0.12, 0.16, 0.22]) * tint[glass, None]
    albedo[door] = np.array([0.25, 0.16, 0.10])
    refl[glass] = 0.05
    return albedo, refl


def generic(material: np.ndarray, u, v, color) -> tuple[np.ndarray, np.ndarray]:
    """
    Everything else: the object's colour with material-specific detail.

    :param material: ``(N,)`` material ids.
    :param u: ``(N,)`` texture coordinate, metres.
    :param v: ``(N,)`` texture coordinate, metres.
    :param color: ``(N, 3)`` object colours.
    :return: albedo ``(N, 3)``, reflectivity ``(N,)``.
    """
    base = np.isin(material, _BASE_COLORED)
    color = np.where(base[:, None], BASE_ALBEDO[material], color)
    albedo = color * (0.9 + 0.2 * value_noise(u, v, 0.7, 7))[:, None]
    refl = REFLECTIVITY[material].copy()
    brick = material == Material.WALL
    mortar = brick & ((np.mod(v, 0.25) < 0.025)
                      | (np.mod(u + 0.125 * (np.mod(np.floor(v / 0.25), 2)), 0.5) < 0.025))
    albedo[mortar] = 0.75
    sign = material == Material.SIGN
    border = sign & ((u < 0.07) | (u > 0.63) | (v < 0.07) | (v > 0.63))
    albedo[border] = 0.95
    return albedo, refl
