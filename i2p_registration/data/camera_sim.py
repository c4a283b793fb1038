"""
Camera simulator: ray-cast RGB image and z-depth image of the world.

Image formation: albedo x (ambient + (1 - ambient) x Lambert(sun) x sun visibility), a sky
gradient where rays escape, then Gaussian sensor noise, quantized to uint8 RGB. Pixel ``(u, v)``
is the ray through the pixel centre, lens distortion included (OpenCV convention via
:func:`~i2p_registration.core.geometry.projection.pixel_rays`).
"""

from __future__ import annotations

import numpy as np

from .synth_config import CameraConfig
from .world import World
from ..core.geometry.projection import pixel_rays
from ..core.sensors import CameraModel

SKY_HORIZON = np.array([0.86, 0.89, 0.93])
SKY_ZENITH = np.array([0.36, 0.55, 0.85])


def camera_model_from_config(cfg: CameraConfig) -> CameraModel:
    """Build the :class:`CameraModel` of a camera config section."""
    K = np.array([[cfg.fx, 0.0, cfg.cx], [0.0, cfg.fy, cfg.cy], [0.0, 0.0, 1.0]])
    return CameraModel(K, cfg.width, cfg.height, cfg.distortion_model, np.asarray(cfg.D, float))


def sun_direction(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Compute the unit vector towards the sun in the world frame (azimuth from +x towards +y)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


class CameraSimulator:
    """
    Renders images of a :class:`World` from camera poses.

    :param world: the scene.
    :param camera: intrinsics and image size (and optional plumb_bob distortion).
    :param cfg: image formation settings (sun, ambient, noise, shadows).
    """

    def __init__(self, world: World, camera: CameraModel, cfg: CameraConfig):
        self.world = world
        self.camera = camera
        self.cfg = cfg
        self.sun = sun_direction(cfg.sun_azimuth_deg, cfg.sun_elevation_deg)
        u, v = np.meshgrid(np.arange(camera.width, dtype=np.float64),
                           np.arange(camera.height, dtype=np.float64))
        self.bearings = pixel_rays(np.stack([u.ravel(), v.ravel()], -1), camera)

    def render(self, T_world_cam: np.ndarray,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """
        Render one frame.

        :param T_world_cam: ``(4, 4)`` pose of the camera optical frame in the world frame.
        :param rng: generator for the sensor noise (no noise when ``None``).
        :return: ``image`` ``(H, W, 3)`` uint8 RGB and ``depth`` ``(H, W)`` float32 z-depth in
            the optical frame, metres (inf where the ray hits nothing).
        """
        T = np.asarray(T_world_cam, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f'T_world_cam must be 4x4, got {T.shape}')
        h, w = self.camera.height, self.camera.width
        # einsum, not '@': OpenBLAS is slow on (N, 3) x (3, 3) products with busy cores.
        dirs = np.einsum('nj,ij->ni', self.bearings, T[:3, :3])
        origin = T[:3, 3]
        t, hits = self.world.cast(origin, dirs)
        depth = (t * self.bearings[:, 2]).astype(np.float32)
        rgb = np.empty((h * w, 3))
        sky = np.ones(h * w, bool)
        sky[hits.index] = False
        elev = np.clip(dirs[sky, 2], 0.0, 1.0) ** 0.6
        rgb[sky] = SKY_HORIZON[None] * (1 - elev[:, None]) + SKY_ZENITH[None] * elev[:, None]
        if len(hits):
            albedo, _ = self.world.appearance(hits)
            lambert = np.clip(np.einsum('nj,j->n', hits.normals, self.sun), 0.0, 1.0)
            if self.cfg.shadows:
                lit = lambert > 0
                shadowed = self.world.occluded(hits.points[lit] + 0.02 * hits.normals[lit],
                                               np.broadcast_to(self.sun, (int(lit.sum()), 3)))
                lambert[np.flatnonzero(lit)[shadowed]] = 0.0
            a = self.cfg.ambient
            rgb[hits.index] = albedo * (a + (1 - a) * lambert)[:, None]
        img = rgb * 255.0
        if rng is not None and self.cfg.noise_std > 0:
            img += self.cfg.noise_std * rng.standard_normal(img.shape, dtype=np.float32)
        image = np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(h, w, 3)
        return image, depth.reshape(h, w)
