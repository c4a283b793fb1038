"""
The sensor rig in the world: vehicle trajectory, camera, LiDAR, extrinsics and clocks.

Frames: ``map`` = world; ``base_link`` on the vehicle (x forward, y left, z up); the LiDAR frame
(KITTI velodyne axes) at ``T_base_lidar``; the camera optical frame (x right, y down, z forward)
at ``T_base_cam = T_base_lidar @ inv(T_cam_lidar)``. Every random draw comes from a generator
keyed by ``(seed, purpose[, frame index])``, so a frame looks the same whatever else is generated.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from .camera_sim import camera_model_from_config, CameraSimulator
from .clocks import sensor_stamps, StreamStamps
from .lidar_sim import LidarSimulator
from .synth_config import SynthConfig
from .trajectory import Trajectory
from .world import World
from ..core.geometry.rotations import project_to_so3
from ..core.geometry.se3 import inverse, make_transform
from ..core.sensors import CameraModel, CloudFrame, ImageFrame

# Keys of the per-purpose random generators (second element of the generator seed).
RNG_WORLD, RNG_ROUTE, RNG_CLOCKS, RNG_ODOM, RNG_IMAGE, RNG_SCAN = 1, 2, 3, 4, 10, 11


def extrinsics_from_config(cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(T_base_lidar, T_cam_lidar)`` as 4x4 float64 from the vehicle section."""
    v = cfg.vehicle
    R = Rotation.from_euler('xyz', np.radians(v.lidar_rpy_deg)).as_matrix()
    T_base_lidar = make_transform(R, np.asarray(v.lidar_xyz, dtype=np.float64))
    M = np.asarray(v.T_cam_lidar, dtype=np.float64).reshape(3, 4)
    det = np.linalg.det(M[:, :3])
    if not 0.9 < det < 1.1:
        raise ValueError(f'vehicle.T_cam_lidar rotation is not a rotation (det {det:.3f})')
    return T_base_lidar, make_transform(project_to_so3(M[:, :3]), M[:, 3])


class Simulator:
    """
    Generates the world of a seed and simulates the sensors along the vehicle's loop.

    :param config: the generator configuration.
    :param seed: world seed (>= 0); every output is a function of ``(config, seed)``.
    """

    def __init__(self, config: SynthConfig, seed: int):
        self.config = config
        self.seed = int(seed)
        self.world = World.generate(config.world, self.seed)
        self.trajectory = Trajectory.from_world(self.world, config.vehicle,
                                                self.rng(RNG_ROUTE), config.world.lane_width)
        self.camera: CameraModel = camera_model_from_config(config.camera)
        self.T_base_lidar, self.T_cam_lidar = extrinsics_from_config(config)
        self.T_base_cam = self.T_base_lidar @ inverse(self.T_cam_lidar)
        self.start_ns = int(round(config.clocks.start_time_s * 1e9))
        self.lidar_period_s = 1.0 / config.clocks.lidar.rate_hz
        self._camera_sim: CameraSimulator | None = None
        self._lidar_sim: LidarSimulator | None = None

    def rng(self, purpose: int, index: int | None = None) -> np.random.Generator:
        """Return the generator of one purpose (and frame index) of this seed."""
        key = [self.seed, purpose] + ([] if index is None else [int(index)])
        return np.random.default_rng(key)

    @property
    def camera_sim(self) -> CameraSimulator:
        """Get the camera simulator (built on first use: it caches per-pixel rays)."""
        if self._camera_sim is None:
            self._camera_sim = CameraSimulator(self.world, self.camera, self.config.camera)
        return self._camera_sim

    @property
    def lidar_sim(self) -> LidarSimulator:
        """Get the LiDAR simulator (built on first use)."""
        if self._lidar_sim is None:
            self._lidar_sim = LidarSimulator(self.world, self.config.lidar, self.lidar_period_s)
        return self._lidar_sim

    def stamps(self, duration_s: float | None = None) -> dict[str, StreamStamps]:
        """Non-synchronized ticks of the ``lidar``, ``camera`` and ``odom`` streams."""
        duration = self.config.output.duration_s if duration_s is None else duration_s
        return sensor_stamps(self.config.clocks, duration, self.rng(RNG_CLOCKS))

    def seconds(self, stamp_ns) -> np.ndarray:
        """Seconds since the sequence start of int64 nanosecond stamps."""
        return (np.asarray(stamp_ns, dtype=np.int64) - self.start_ns) * 1e-9

    def T_map_base(self, stamp_ns) -> np.ndarray:
        """``(..., 4, 4)`` true pose of base_link in the map frame at the stamps."""
        return self.trajectory.T_world_base(self.seconds(stamp_ns))

    def T_map_lidar(self, stamp_ns) -> np.ndarray:
        """``(..., 4, 4)`` true pose of the LiDAR frame in the map frame at the stamps."""
        return self.T_map_base(stamp_ns) @ self.T_base_lidar

    def T_map_camera(self, stamp_ns) -> np.ndarray:
        """``(..., 4, 4)`` true pose of the camera optical frame in the map frame at the stamps."""
        return self.T_map_base(stamp_ns) @ self.T_base_cam

    def image(self, stamp_ns: int, index: int) -> tuple[ImageFrame, np.ndarray]:
        """
        Render the camera at ``stamp_ns``; ``index`` keys the sensor noise.

        :return: the :class:`ImageFrame` (frame id from ``frames.camera``) and the ``(H, W)``
            float32 z-depth image in metres (inf = sky).
        """
        image, depth = self.camera_sim.render(self.T_map_camera(stamp_ns),
                                              self.rng(RNG_IMAGE, index))
        return ImageFrame(image, stamp_ns, self.config.frames.camera, self.camera), depth

    def scan(self, stamp_ns: int, index: int) -> CloudFrame:
        """
        Simulate the sweep that starts at ``stamp_ns``; ``index`` keys the noise.

        :return: a :class:`CloudFrame` in the LiDAR frame with intensity, ring and time.
        """
        if self.config.lidar.motion_distortion:
            t = self.seconds(stamp_ns) + self.lidar_sim.column_time
            pose = self.trajectory.T_world_base(t) @ self.T_base_lidar
        else:
            pose = self.T_map_lidar(stamp_ns)
        s = self.lidar_sim.scan(pose, self.rng(RNG_SCAN, index))
        return CloudFrame(s.points, stamp_ns, self.config.frames.lidar, s.intensity, s.ring,
                          s.time)
