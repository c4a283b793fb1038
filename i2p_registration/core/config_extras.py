"""
Parameters of the registration node that ``config.py`` does not have yet: the prior, calibration.

They use the mechanism of :mod:`i2p_registration.core.config` (typed leaves with descriptions and
allowed values; dotted names are the ROS parameter names) in a second configuration type,
:class:`RegistrationNodeExtras`, so ``RegistrationNodeConfig`` and ``config/registration.yaml``
stay as they are. The node declares the parameters of both types.

The prior is the nominal camera pose in the cloud frame, ``T_lidar_cam``, given as x, y, z
(metres) and roll, pitch, yaw (radians, fixed axes: ``R = Rz(yaw) Ry(pitch) Rx(roll)``), the
numbers ``static_transform_publisher`` takes. The defaults are the usual forward-looking camera
optical frame at the LiDAR origin (yaw = roll = -pi/2: optical z along LiDAR x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
import math

from i2p_registration.core.config import _param, _Section, NodeConfig
from i2p_registration.core.geometry.rotations import so3_exp
from i2p_registration.core.geometry.se3 import inverse
from i2p_registration.core.registration.base import Prior
import numpy as np

_HALF_PI = round(math.pi / 2, 6)


@dataclass(frozen=True)
class PriorConfig(_Section):
    """The initial guess of the camera pose in the cloud frame (``T_lidar_cam``)."""

    x: float = _param(0.0, 'prior camera position along the cloud frame x [m]',
                      min_value=-1000.0, max_value=1000.0)
    y: float = _param(0.0, 'prior camera position along the cloud frame y [m]',
                      min_value=-1000.0, max_value=1000.0)
    z: float = _param(0.0, 'prior camera position along the cloud frame z [m]',
                      min_value=-1000.0, max_value=1000.0)
    roll: float = _param(-_HALF_PI, 'prior camera roll about the cloud frame x [rad]',
                         min_value=-7.0, max_value=7.0)
    pitch: float = _param(0.0, 'prior camera pitch about the cloud frame y [rad]',
                          min_value=-7.0, max_value=7.0)
    yaw: float = _param(-_HALF_PI, 'prior camera yaw about the cloud frame z [rad]',
                        min_value=-7.0, max_value=7.0)
    translation_range: float = _param(0.5, 'half-width of the search around the prior on '
                                      'each axis [m]', min_value=0.0, max_value=100.0)
    rotation_range: float = _param(0.0873, 'half-width of the search around the prior on each '
                                   'axis [rad]', min_value=0.0, max_value=3.1416)


@dataclass(frozen=True)
class CalibrationConfig(_Section):
    """The running extrinsic of ``output.mode: calibration``."""

    window: int = _param(30, 'registrations averaged', min_value=1, max_value=10000)
    min_inliers: int = _param(10, 'agreeing registrations needed before publishing',
                              min_value=1, max_value=10000)
    max_translation: float = _param(0.2, 'inlier bound: distance to the mean [m]',
                                    min_value=1e-6, max_value=100.0)
    max_rotation: float = _param(0.05, 'inlier bound: angle to the mean [rad]',
                                 min_value=1e-6, max_value=3.1416)
    converged_translation: float = _param(0.01, 'largest standard error of the mean '
                                          'translation to publish [m]',
                                          min_value=1e-6, max_value=100.0)
    converged_rotation: float = _param(0.002, 'largest standard error of the mean rotation to '
                                       'publish [rad]', min_value=1e-6, max_value=3.1416)
    update_translation: float = _param(0.01, 'republish when the estimate moved more than this '
                                       '[m]', min_value=1e-6, max_value=100.0)
    update_rotation: float = _param(0.002, 'republish when the estimate turned more than this '
                                    '[rad]', min_value=1e-6, max_value=3.1416)


@dataclass(frozen=True)
class RegistrationNodeExtras(NodeConfig):
    """The registration node's parameters outside ``RegistrationNodeConfig``."""

    prior: PriorConfig = field(default_factory=PriorConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


def transform_from_xyz_rpy(x: float, y: float, z: float, roll: float, pitch: float,
                           yaw: float) -> np.ndarray:
    """
    Return the ``(4, 4)`` float64 transform of a translation and fixed-axis roll, pitch, yaw.

    ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (radians), translation in metres.
    """
    T = np.eye(4)
    T[:3, :3] = (so3_exp([0.0, 0.0, yaw]) @ so3_exp([0.0, pitch, 0.0])
                 @ so3_exp([roll, 0.0, 0.0]))
    T[:3, 3] = (x, y, z)
    return T


def prior_from_config(config: PriorConfig) -> Prior:
    """Build the registration :class:`Prior` (``T_cam_lidar``) from the ``prior`` section."""
    T_lidar_cam = transform_from_xyz_rpy(config.x, config.y, config.z, config.roll,
                                         config.pitch, config.yaw)
    return Prior(inverse(T_lidar_cam), config.translation_range, config.rotation_range)
