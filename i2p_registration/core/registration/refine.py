"""
Edge-alignment refinement: robust LM on distance-transform residuals, coarse to fine.

The residual of an edge point ``X`` (LiDAR frame) is the cost field (distance to the nearest image
edge, pixels of the pyramid level) at its projection ``pi(K (T X))``, bilinearly interpolated. The
analytic Jacobian for a left increment ``xi = (rho, phi)`` in the camera frame is

    d r / d xi = grad C(u, v) . d(u, v) / d p . [I, -[p]_x],   p = T X,

so with ``a = (d(u, v) / d p)^T grad C`` the row is ``(a, p x a)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from i2p_registration.core.geometry import geodesic_angle, inverse
from i2p_registration.core.registration.base import RegistrationFailure
from i2p_registration.core.registration.image_edges import CostField
from i2p_registration.core.registration.kernels import RobustKernel
from i2p_registration.core.registration.lm import levenberg_marquardt, LMResult
from i2p_registration.core.registration.occlusion import visible
import numpy as np

_MIN_DEPTH = 0.5


def edge_residuals(field: CostField, points: np.ndarray, weights: np.ndarray, T: np.ndarray,
                   with_jacobian: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """
    Distance-transform residuals of LiDAR edge points and their analytic Jacobians.

    :param field: the cost field of one pyramid level (its pinhole ``K``).
    :param points: ``(M, 3)`` float64 edge points in the LiDAR frame, metres.
    :param weights: ``(M,)`` edge strengths.
    :param T: ``(4, 4)`` ``T_cam_lidar``.
    :param with_jacobian: also return ``J``.
    :return: ``r`` ``(M,)`` pixels of the level (the truncation for points behind the camera or
        outside the image), ``J`` ``(M, 6)`` d r / d xi (left increment, camera frame) or None,
        and the weights.
    """
    p = points @ T[:3, :3].T + T[:3, 3]
    front = p[:, 2] > _MIN_DEPTH
    z = np.where(front, p[:, 2], 1.0)
    K = field.K
    uv = np.stack([K[0, 0] * p[:, 0] / z + K[0, 2], K[1, 1] * p[:, 1] / z + K[1, 2]], axis=1)
    cost, grad = field.sample(uv)
    cost = np.where(front, cost, field.truncation)
    if not with_jacobian:
        return cost, None, weights
    grad = np.where(front[:, None], grad, 0.0)
    gu, gv = grad[:, 0] * K[0, 0] / z, grad[:, 1] * K[1, 1] / z
    a = np.stack([gu, gv, -(gu * p[:, 0] + gv * p[:, 1]) / z], axis=1)
    return cost, np.concatenate([a, np.cross(p, a)], axis=1), weights


@dataclass
class RefineOutcome:
    """
    Result of a coarse-to-fine refinement.

    :param lm: the LM result of the finest level (its covariance is in working pixels).
    :param visible: ``(M,)`` bool, edge points used at the finest level.
    :param residuals: ``(M,)`` finest-level residuals at the final pose, working pixels.
    """

    lm: LMResult
    visible: np.ndarray
    residuals: np.ndarray


class EdgeRefiner:
    """
    Coarse-to-fine robust LM of ``T_cam_lidar`` on a cost pyramid.

    :param kernel: robust kernel on the residuals (pixels of each level).
    :param max_iterations: LM steps per level.
    :param min_points: fewest visible edge points to refine with.
    :param max_translation: largest accepted correction from the start pose, metres;
        beyond it the refinement diverged.
    :param max_rotation: largest accepted correction, radians.
    :param occlusion_cell: z-buffer cell in working pixels (0 disables the occlusion test).
    :param prior_weight: strength of the pose prior: a correction as large as the prior's
        range costs as much as moving every visible edge point by ``sqrt(prior_weight)``
        pixels. It keeps the one-sided edge cost from pulling the scan into image regions
        dense with edges (0 disables it).
    :param max_prior_rotation: priors with a wider rotation range (radians) get no prior term:
        they bound a global search rather than describe a Gaussian guess, and the term's
        linearization holds only for small corrections.
    :param cost_tolerance: an accepted LM step that lowers the cost by less than this share
        ends a level as converged (1e-4: the last steps of a level then move the points by
        hundredths of a pixel).
    """

    def __init__(self, kernel: RobustKernel, max_iterations: int = 30, min_points: int = 20,
                 max_translation: float = 1.0, max_rotation: float = np.radians(10.0),
                 occlusion_cell: float = 4.0, prior_weight: float = 0.0,
                 max_prior_rotation: float = np.radians(10.0), cost_tolerance: float = 1e-4):
        if not isinstance(kernel, RobustKernel):
            raise ValueError(f'kernel must be a RobustKernel, got {type(kernel).__name__}')
        if max_iterations < 1 or min_points < 6:
            raise ValueError('need max_iterations >= 1 and min_points >= 6')
        self.kernel = kernel
        self.max_iterations = int(max_iterations)
        self.min_points = int(min_points)
        self.max_translation = float(max_translation)
        self.max_rotation = float(max_rotation)
        self.occlusion_cell = float(occlusion_cell)
        self.prior_weight = float(prior_weight)
        self.max_prior_rotation = float(max_prior_rotation)
        self.cost_tolerance = float(cost_tolerance)

    def visible(self, field: CostField, points: np.ndarray, occluders: np.ndarray,
                T: np.ndarray) -> np.ndarray:
        """Return ``(M,)`` bool: edge points in view and not hidden at ``T`` on ``field``."""
        p = points @ T[:3, :3].T + T[:3, 3]
        h, w = field.shape
        if self.occlusion_cell <= 0:
            return visible(p, p[:0], field.K, w, h, cell=1.0, relative_tolerance=np.inf)
        o = occluders @ T[:3, :3].T + T[:3, 3]
        return visible(p, o, field.K, w, h, cell=max(self.occlusion_cell / field.scale, 1.0))

    def refine(self, pyramid: list[CostField], points: np.ndarray, weights: np.ndarray,
               occluders: np.ndarray, T0: np.ndarray, T_prior: np.ndarray | None = None,
               prior_ranges: np.ndarray | None = None) -> RefineOutcome:
        """
        Refine ``T0`` from the coarsest pyramid level to the finest.

        The visible point set is fixed per level (chosen at the level's start pose), so that the
        cost stays comparable between LM steps.

        :param pyramid: cost fields, finest first.
        :param points: ``(M, 3)`` float64 edge points, LiDAR frame.
        :param weights: ``(M,)`` edge strengths.
        :param occluders: ``(K, 3)`` float64 scan points for the z-buffer, LiDAR frame.
        :param T0: ``(4, 4)`` start ``T_cam_lidar``.
        :param T_prior: ``(4, 4)`` pose prior (default ``T0``).
        :param prior_ranges: ``(6,)`` prior half-ranges (metres, radians) in the order of the
            twist (translation first); None: no prior term.
        :raises RegistrationFailure: too few visible points, a singular system, or divergence.
        """
        T = np.asarray(T0, dtype=np.float64)
        lm = None
        for field in reversed(pyramid):
            mask = self.visible(field, points, occluders, T)
            if mask.sum() < self.min_points:
                raise RegistrationFailure(f'too few edge points in view: {int(mask.sum())} < '
                                          f'{self.min_points}')
            pts, wts = points[mask], weights[mask]
            information = None
            ranges = None if prior_ranges is None else np.asarray(prior_ranges, np.float64)
            if ranges is not None and self.prior_weight > 0 and np.all(
                    ranges[3:] <= self.max_prior_rotation):
                ranges = np.maximum(ranges, 1e-6)
                information = np.diag(self.prior_weight * wts.sum() / ranges ** 2)
            anchor = None if information is None else (T0 if T_prior is None else T_prior)
            lm = levenberg_marquardt(
                T, lambda T_, jac: edge_residuals(field, pts, wts, T_, jac), self.kernel,
                self.max_iterations, cost_tolerance=self.cost_tolerance, T_prior=anchor,
                prior_information=information)
            T = lm.T
            self._check_divergence(T0, T)
        residuals, _, _ = edge_residuals(pyramid[0], points, weights, T, False)
        return RefineOutcome(lm, mask, residuals)

    def _check_divergence(self, T0: np.ndarray, T: np.ndarray) -> None:
        delta = inverse(T0) @ T
        moved = float(np.linalg.norm(delta[:3, 3]))
        turned = float(geodesic_angle(T0[:3, :3], T[:3, :3]))
        if not np.all(np.isfinite(T)):
            raise RegistrationFailure('refinement diverged: the estimate is not finite')
        if moved > self.max_translation or turned > self.max_rotation:
            raise RegistrationFailure(
                f'refinement diverged: moved {moved:.2f} m and {np.degrees(turned):.1f} deg '
                f'from its start, beyond {self.max_translation:.2f} m / '
                f'{np.degrees(self.max_rotation):.1f} deg')
