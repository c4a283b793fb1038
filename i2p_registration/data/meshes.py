"""
Batched triangle-mesh primitives with per-triangle material and object ids.

Every primitive builder takes arrays of ``M`` instances and returns a :class:`MeshPart` of all of
them at once (no Python loop over instances). Vertices carry 2D texture coordinates in metres in
the surface's own frame (along-face, up-face), which the procedural textures use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Box faces: the four sides (front -x, right +y... in local order), then top and bottom.
BOX_SIDE, BOX_TOP, BOX_BOTTOM = 0, 1, 2


@dataclass
class MeshPart:
    """
    A triangle soup with attributes.

    :param vertices: ``(V, 3)`` float64 metres (world frame, z up).
    :param triangles: ``(T, 3)`` int64 vertex indices.
    :param uv: ``(V, 2)`` float32 texture coordinates in metres.
    :param material: ``(T,)`` uint8 material ids.
    :param obj: ``(T,)`` int32 object ids (index into the world's object table).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    uv: np.ndarray
    material: np.ndarray
    obj: np.ndarray

    @staticmethod
    def empty() -> 'MeshPart':
        """Make a part with no triangles."""
        return MeshPart(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 2), np.float32),
                        np.zeros(0, np.uint8), np.zeros(0, np.int32))

    @staticmethod
    def concat(parts: list['MeshPart']) -> 'MeshPart':
        """One part holding all ``parts`` (triangle indices re-based)."""
        parts = [p for p in parts if len(p.triangles)]
        if not parts:
            return MeshPart.empty()
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
        return MeshPart(
            np.concatenate([p.vertices for p in parts]),
            np.concatenate([p.triangles + o for p, o in zip(parts, offsets)]),
            np.concatenate([p.uv for p in parts]).astype(np.float32),
            np.concatenate([p.material for p in parts]).astype(np.uint8),
            np.concatenate([p.obj for p in parts]).astype(np.int32))


def _per_instance(value, m: int, dtype) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=dtype), (m,)).copy()


def _yaw_rotate(local: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rotate ``(M, K, 3)`` local points about z by ``(M,)`` yaws."""
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    out = local.copy()
    out[..., 0] = c * local[..., 0] - s * local[..., 1]
    out[..., 1] = s * local[..., 0] + c * local[..., 1]
    return out


# Unit box corners in local coordinates (x in [-.5, .5], y in [-.5, .5], z in [0, 1]), four per
# face, counter-clockwise seen from outside; per face the axes (u, v) that span it.
_BOX_FACES = np.array([
    [[-.5, -.5, 0], [.5, -.5, 0], [.5, -.5, 1], [-.5, -.5, 1]],    # -y side
    [[.5, -.5, 0], [.5, .5, 0], [.5, .5, 1], [.5, -.5, 1]],        # +x side
    [[.5, .5, 0], [-.5, .5, 0], [-.5, .5, 1], [.5, .5, 1]],        # +y side
    [[-.5, .5, 0], [-.5, -.5, 0], [-.5, -.5, 1], [-.5, .5, 1]],    # -x side
    [[-.5, -.5, 1], [.5, -.5, 1], [.5, .5, 1], [-.5, .5, 1]],      # top
    [[-.5, .5, 0], [.5, .5, 0], [.5, -.5, 0], [-.5, -.5, 0]],      # bottom
])
_FACE_KIND = np.array([BOX_SIDE] * 4 + [BOX_TOP, BOX_BOTTOM])
_QUAD_TRIS = np.array([[0, 1, 2], [0, 2, 3]])


def boxes(base_centers, sizes, yaws, materials, objs, top_material=None,
          faces: tuple[int, ...] = (0, 1, 2, 3, 4, 5)) -> MeshPart:
    """
    Oriented boxes standing on their base.

    :param base_centers: ``(M, 3)`` centre of each bottom face, metres.
    :param sizes: ``(M, 3)`` length (along the yaw direction), width, height in metres.
    :param yaws: ``(M,)`` heading of the length axis about z, radians.
    :param materials: side material id, scalar or ``(M,)``.
    :param objs: object id, scalar or ``(M,)``.
    :param top_material: material of top and bottom faces (default: ``materials``).
    :param faces: which faces to emit (0-3 sides, 4 top, 5 bottom).
    :return: the boxes; side uv = (metres along the face, metres above the base), top/bottom
        uv = local (x, y) metres.
    """
    c = np.asarray(base_centers, dtype=np.float64).reshape(-1, 3)
    m = len(c)
    size = np.asarray(sizes, dtype=np.float64).reshape(m, 3)
    yaw = _per_instance(yaws, m, np.float64)
    mat = _per_instance(materials, m, np.uint8)
    top = mat if top_material is None else _per_instance(top_material, m, np.uint8)
    ob = _per_instance(objs, m, np.int32)
    sel = np.asarray(faces)
    template = _BOX_FACES[sel].reshape(-1, 3)                     # (F*4, 3)
    local = template[None] * size[:, None, :]                      # (M, F*4, 3)
    verts = _yaw_rotate(local, yaw) + c[:, None, :]
    # uv: sides -> along-face distance and height; top/bottom -> local x, y.
    nf = len(sel)
    loc = local.reshape(m, nf, 4, 3)
    uv = np.empty((m, nf, 4, 2))
    kinds = _FACE_KIND[sel]
    corner0 = loc[:, :, :1, :]
    along = np.linalg.norm((loc - corner0)[..., :2], axis=-1)
    uv[..., 0] = np.where((kinds == BOX_SIDE)[None, :, None], along, loc[..., 0])
    uv[..., 1] = np.where((kinds == BOX_SIDE)[None, :, None], loc[..., 2], loc[..., 1])
    tris = (_QUAD_TRIS[None, :, :] + 4 * np.arange(nf)[:, None, None]).reshape(-1, 3)
    tris = (tris[None] + (nf * 4) * np.arange(m)[:, None, None]).reshape(-1, 3)
    face_mat = np.where((kinds == BOX_SIDE)[None, :], mat[:, None], top[:, None])  # (M, F)
    return MeshPart(verts.reshape(-1, 3), tris, uv.reshape(-1, 2).astype(np.float32),
                    np.repeat(face_mat.reshape(-1), 2), np.repeat(ob, 2 * nf))


def prisms(base_centers, radii, heights, materials, objs, sides: int = 6) -> MeshPart:
    """
    Build upright regular prisms with a top cap: poles, trunks.

    :param base_centers: ``(M, 3)`` bottom centres, metres.
    :param radii: ``(M,)`` circumradius, metres.
    :param heights: ``(M,)`` heights, metres.
    :param materials: material id, scalar or ``(M,)``.
    :param objs: object id, scalar or ``(M,)``.
    :param sides: number of side faces.
    :return: the prisms; side uv = (arc length, height).
    """
    c = np.asarray(base_centers, dtype=np.float64).reshape(-1, 3)
    m = len(c)
    r = _per_instance(radii, m, np.float64)
    h = _per_instance(heights, m, np.float64)
    ang = 2 * np.pi * np.arange(sides + 1) / sides
    ring = np.stack([np.cos(ang), np.sin(ang)], axis=-1)           # (S+1, 2)
    # Vertices: bottom ring (S+1), top ring (S+1), top centre.
    verts = np.zeros((m, 2 * (sides + 1) + 1, 3))
    verts[:, :sides + 1, :2] = ring[None] * r[:, None, None]
    verts[:, sides + 1:2 * sides + 2, :2] = ring[None] * r[:, None, None]
    verts[:, sides + 1:2 * sides + 2, 2] = h[:, None]
    verts[:, -1, 2] = h
    verts += c[:, None, :]
    uv = np.zeros((m, 2 * sides + 3, 2))
    arc = ang[None] * r[:, None]
    uv[:, :sides + 1, 0] = arc
    uv[:, sides + 1:2 * sides + 2, 0] = arc
    uv[:, sides + 1:2 * sides + 2, 1] = h[:, None]
    k = np.arange(sides)
    b0, b1, t0, t1 = k, k + 1, k + sides + 1, k + sides + 2
    side = np.concatenate([np.stack([b0, b1, t1], -1), np.stack([b0, t1, t0], -1)])
    cap = np.stack([t0, t1, np.full(sides, 2 * sides + 2)], -1)
    tri = np.concatenate([side, cap])
    nv = verts.shape[1]
    tris = (tri[None] + nv * np.arange(m)[:, None, None]).reshape(-1, 3)
    nt = len(tri)
    return MeshPart(verts.reshape(-1, 3), tris, uv.reshape(-1, 2).astype(np.float32),
                    np.repeat(_per_instance(materials, m, np.uint8), nt),
                    np.repeat(_per_instance(objs, m, np.int32), nt))


def _icosphere() -> tuple[np.ndarray, np.ndarray]:
    """Build the unit icosphere with one subdivision: 42 vertices, 80 triangles."""
    p = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, p, 0], [1, p, 0], [-1, -p, 0], [1, -p, 0], [0, -1, p], [0, 1, p],
                  [0, -1, -p], [0, 1, -p], [p, 0, -1], [p, 0, 1], [-p, 0, -1], [-p, 0, 1]],
                 dtype=np.float64)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9],
                  [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2],
                  [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
                  [8, 6, 7], [9, 8, 1]])
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    uniq, inv = np.unique(edges, axis=0, return_inverse=True)
    mid = (v[uniq[:, 0]] + v[uniq[:, 1]]) / 2
    verts = np.concatenate([v, mid])
    verts /= np.linalg.norm(verts, axis=1, keepdims=True)
    e = inv.reshape(3, -1).T + len(v)                               # (20, 3): ab, bc, ca
    a, b, c = f.T
    ab, bc, ca = e.T
    tris = np.concatenate([np.stack([a, ab, ca], -1), np.stack([b, bc, ab], -1),
                           np.stack([c, ca, bc], -1), np.stack([ab, bc, ca], -1)])
    return verts, tris


_ICO_V, _ICO_T = _icosphere()


def blobs(centers, radii, materials, objs, rng: np.random.Generator,
          roughness: float = 0.15) -> MeshPart:
    """
    Irregular ellipsoids (tree crowns, bushes): icospheres with jittered radius.

    :param centers: ``(M, 3)`` centres, metres.
    :param radii: ``(M, 3)`` semi-axes, metres.
    :param materials: material id, scalar or ``(M,)``.
    :param objs: object id, scalar or ``(M,)``.
    :param rng: random generator for the jitter.
    :param roughness: relative radial jitter.
    :return: the blobs; uv = local (x, y) + z, metres.
    """
    c = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    m = len(c)
    r = np.asarray(radii, dtype=np.float64).reshape(m, 3)
    scale = 1 + roughness * rng.uniform(-1, 1, size=(m, len(_ICO_V), 1))
    verts = _ICO_V[None] * scale * r[:, None, :] + c[:, None, :]
    local = verts - c[:, None, :]
    uv = np.stack([local[..., 0] + local[..., 2], local[..., 1] + local[..., 2]], -1)
    tris = (_ICO_T[None] + len(_ICO_V) * np.arange(m)[:, None, None]).reshape(-1, 3)
    nt = len(_ICO_T)
    return MeshPart(verts.reshape(-1, 3), tris, uv.reshape(-1, 2).astype(np.float32),
                    np.repeat(_per_instance(materials, m, np.uint8), nt),
                    np.repeat(_per_instance(objs, m, np.int32), nt))


def fan_polygon(ring_xy, z: float, material: int, obj: int) -> MeshPart:
    """
    Build a flat star-shaped polygon at height ``z`` triangulated as a fan from its centroid.

    :param ring_xy: ``(K, 2)`` boundary vertices in order (not repeated at the end), metres.
    :return: the polygon; uv = (x, y) metres.
    """
    ring = np.asarray(ring_xy, dtype=np.float64)
    k = len(ring)
    centre = ring.mean(axis=0)
    xy = np.concatenate([ring, centre[None]])
    verts = np.concatenate([xy, np.full((k + 1, 1), z)], axis=1)
    i = np.arange(k)
    tris = np.stack([i, (i + 1) % k, np.full(k, k)], -1)
    return MeshPart(verts, tris, xy.astype(np.float32), np.full(k, material, np.uint8),
                    np.full(k, obj, np.int32))


def wall_strip(ring_xy, z0: float, z1: float, material: int, obj: int,
               closed: bool = True) -> MeshPart:
    """
    Vertical quads along a polyline from height ``z0`` to ``z1`` (curbs, walls).

    :param ring_xy: ``(K, 2)`` polyline vertices, metres.
    :param closed: join the last vertex back to the first.
    :return: the strip; uv = (distance along the polyline, height above ``z0``).
    """
    ring = np.asarray(ring_xy, dtype=np.float64)
    if closed:
        ring = np.concatenate([ring, ring[:1]])
    k = len(ring)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(ring, axis=0), axis=1))])
    bottom = np.concatenate([ring, np.full((k, 1), z0)], axis=1)
    top = np.concatenate([ring, np.full((k, 1), z1)], axis=1)
    verts = np.concatenate([bottom, top])
    uv = np.concatenate([np.stack([s, np.zeros(k)], -1), np.stack([s, np.full(k, z1 - z0)], -1)])
    i = np.arange(k - 1)
    tris = np.concatenate([np.stack([i, i + 1, i + 1 + k], -1),
                           np.stack([i, i + 1 + k, i + k], -1)])
    n = len(tris)
    return MeshPart(verts, tris, uv.astype(np.float32), np.full(n, material, np.uint8),
                    np.full(n, obj, np.int32))
