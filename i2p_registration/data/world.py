"""
The synthetic world: one triangle mesh with materials, ray casting and surface appearance.

World frame = the ``map`` frame: x east, y north, z up, ground at z = 0. Rays are cast with
Open3D's ``RaycastingScene`` in one call per batch; appearance is evaluated for all hits at once.
"""

from __future__ import annotations

from dataclasses import dataclass
import time

import numpy as np
import open3d as o3d

from .meshes import MeshPart
from .streets import build_scene, Warp
from .synth_config import WorldConfig
from .textures import facade, generic, Material, StreetPlan


@dataclass
class Hits:
    """
    The rays of a batch that hit a surface (misses are left out).

    :param index: ``(K,)`` int64 index of each hit ray in the batch.
    :param t: ``(K,)`` float64 distance along the (unit) ray, metres.
    :param points: ``(K, 3)`` float64 hit points, world frame.
    :param normals: ``(K, 3)`` float64 unit surface normals turned towards the ray origin.
    :param material: ``(K,)`` uint8 :class:`~.textures.Material` ids.
    :param obj: ``(K,)`` int32 object ids.
    :param uv: ``(K, 2)`` float64 texture coordinates, metres.
    """

    index: np.ndarray
    t: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    material: np.ndarray
    obj: np.ndarray
    uv: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])


class World:
    """
    A generated street scene, ready for ray casting.

    :param mesh: the scene triangles in world coordinates.
    :param plan: street plan used by the road and sidewalk textures.
    :param warp: the plan-to-world bend (its inverse gives plan coordinates of hits).
    :param object_colors: ``(M, 3)`` float32 RGB in [0, 1] per object id.
    :param object_params: ``(M, 8)`` float32 per-object texture parameters.
    :param seed: the world seed (recorded with outputs).
    """

    def __init__(self, mesh: MeshPart, plan: StreetPlan, warp: Warp, object_colors: np.ndarray,
                 object_params: np.ndarray, seed: int):
        self.mesh = mesh
        self.plan = plan
        self.warp = warp
        self.object_colors = object_colors
        self.object_params = object_params
        self.seed = int(seed)
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(
            o3d.core.Tensor(np.ascontiguousarray(mesh.vertices, dtype=np.float32)),
            o3d.core.Tensor(np.ascontiguousarray(mesh.triangles, dtype=np.uint32)))
        # Open3D builds its BVH on the first query: do it now, so it counts as building.
        self._scene.cast_rays(o3d.core.Tensor(np.array([[0, 0, 1e4, 0, 0, 1]], np.float32)))
        self.build_time_s = 0.0

    @staticmethod
    def generate(config: WorldConfig, seed: int) -> 'World':
        """
        Build the world of ``seed`` (same seed and config -> the same world).

        :param config: world section of the generator config.
        :param seed: non-negative integer world seed.
        """
        if int(seed) < 0:
            raise ValueError(f'world seed must be >= 0, got {seed}')
        t0 = time.perf_counter()
        rng = np.random.default_rng([int(seed), 1])
        mesh, plan, warp, colors, params = build_scene(config, rng)
        world = World(mesh, plan, warp, colors, params, seed)
        world.build_time_s = time.perf_counter() - t0
        return world

    @property
    def n_triangles(self) -> int:
        """Count the triangles in the scene."""
        return int(len(self.mesh.triangles))

    @property
    def bounds(self) -> np.ndarray:
        """``(2, 3)`` min and max corner of the scene, metres."""
        return np.stack([self.mesh.vertices.min(axis=0), self.mesh.vertices.max(axis=0)])

    @staticmethod
    def _rays(origins, directions) -> np.ndarray:
        d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        o = np.broadcast_to(np.asarray(origins, dtype=np.float64), d.shape)
        return np.ascontiguousarray(np.concatenate([o, d], axis=1), dtype=np.float32)

    def cast(self, origins, directions) -> tuple[np.ndarray, Hits]:
        """
        Cast rays and return the first hits.

        :param origins: ``(3,)`` or ``(N, 3)`` ray origins, world frame, metres.
        :param directions: ``(N, 3)`` unit directions, world frame.
        :return: ``t`` ``(N,)`` float64 hit distance (inf where the ray hits nothing) and the
            :class:`Hits` of the rays that hit.
        """
        rays = self._rays(origins, directions)
        res = self._scene.cast_rays(o3d.core.Tensor(rays))
        t = res['t_hit'].numpy().astype(np.float64)
        index = np.flatnonzero(np.isfinite(t))
        prim = res['primitive_ids'].numpy()[index].astype(np.int64)
        bary = res['primitive_uvs'].numpy()[index].astype(np.float64)
        normals = res['primitive_normals'].numpy()[index].astype(np.float64)
        d = rays[index, 3:].astype(np.float64)
        o = np.broadcast_to(np.asarray(origins, dtype=np.float64), (len(rays), 3))[index]
        th = t[index]
        points = o + th[:, None] * d
        flip = np.sum(normals * d, axis=1) > 0
        normals[flip] *= -1
        tri = self.mesh.triangles[prim]
        w = np.stack([1 - bary[:, 0] - bary[:, 1], bary[:, 0], bary[:, 1]], axis=1)
        uv = np.einsum('kj,kjc->kc', w, self.mesh.uv[tri].astype(np.float64))
        return t, Hits(index, th, points, normals, self.mesh.material[prim], self.mesh.obj[prim],
                       uv)

    def occluded(self, origins, directions, t_far: float = np.inf) -> np.ndarray:
        """
        Whether anything lies along each ray closer than ``t_far`` metres.

        :param origins: ``(N, 3)`` origins (world frame).
        :param directions: ``(N, 3)`` unit directions.
        :return: ``(N,)`` bool.
        """
        rays = self._rays(origins, directions)
        if len(rays) == 0:
            return np.zeros(0, bool)
        hit = self._scene.test_occlusions(o3d.core.Tensor(rays), tnear=0.0, tfar=float(t_far))
        return hit.numpy().astype(bool)

    def appearance(self, hits: Hits) -> tuple[np.ndarray, np.ndarray]:
        """
        Albedo and LiDAR reflectivity at the hits.

        :return: ``(K, 3)`` float64 RGB albedo in [0, 1] and ``(K,)`` float32 reflectivity in
            [0, 1].
        """
        k = len(hits)
        albedo = np.zeros((k, 3))
        refl = np.zeros(k, np.float32)
        mat = hits.material
        plan_xy = None
        flat = (mat == Material.ROAD) | (mat == Material.SIDEWALK)
        if flat.any():
            plan_xy = self.warp.inverse(hits.points[flat, :2])
            x, y = plan_xy[:, 0], plan_xy[:, 1]
            road = mat[flat] == Material.ROAD
            a = np.zeros((len(x), 3))
            r = np.zeros(len(x), np.float32)
            if road.any():
                a[road], r[road] = self.plan.road(x[road], y[road])
            if (~road).any():
                a[~road], r[~road] = self.plan.sidewalk(x[~road], y[~road])
            albedo[flat], refl[flat] = a, r
        fac = mat == Material.FACADE
        if fac.any():
            ob = hits.obj[fac]
            albedo[fac], refl[fac] = facade(hits.uv[fac, 0], hits.uv[fac, 1],
                                            self.object_colors[ob].astype(np.float64),
                                            self.object_params[ob].astype(np.float64))
        rest = ~flat & ~fac
        if rest.any():
            albedo[rest], refl[rest] = generic(mat[rest], hits.uv[rest, 0], hits.uv[rest, 1],
                                               self.object_colors[hits.obj[rest]].astype(
                                                   np.float64))
        return np.clip(albedo, 0.0, 1.0), np.clip(refl, 0.0, 1.0)
