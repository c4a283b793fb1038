"""geometry."""

from ._checks import skew
from .projection import (distort, in_image, MIN_DEPTH, pixel_rays, pixels_to_normalized,
                         project_lidar_points, project_points, undistort, unproject)
from .rays import camera_from_rays, patch_centres, plucker_rays
from .rotations import (geodesic_angle, matrix_to_quat, matrix_to_rot6d, project_to_so3,
                        quat_to_matrix, rot6d_to_matrix, so3_exp, so3_log)
from .se3 import compose, inverse, make_transform, se3_exp, se3_log, transform_points
from .solvers import pnp_ransac, PoseEstimate, weighted_procrustes

__all__ = [
    'MIN_DEPTH', 'PoseEstimate', 'camera_from_rays', 'compose', 'distort', 'geodesic_angle',
    'in_image', 'inverse', 'make_transform', 'matrix_to_quat', 'matrix_to_rot6d',
    'patch_centres', 'pixel_rays', 'pixels_to_normalized', 'plucker_rays', 'pnp_ransac',
    'project_lidar_points', 'project_points', 'project_to_so3', 'quat_to_matrix',
    'rot6d_to_matrix', 'se3_exp', 'se3_log', 'skew', 'so3_exp', 'so3_log', 'transform_points',
    'undistort', 'unproject', 'weighted_procrustes',
]
