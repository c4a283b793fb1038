"""
Robust Levenberg-Marquardt over SE(3) with left increments.

The unknown is a transform ``T`` (here ``T_cam_lidar``); a step ``xi = (rho, phi)`` updates it as
``T <- se3_exp(xi) @ T``, i.e. a perturbation in the target (camera) frame. The problem supplies
residuals ``r`` ``(M,)``, their Jacobians ``d r / d xi`` ``(M, 6)`` at ``xi = 0`` and fixed
per-residual weights ``w``; the cost is ``sum(w * rho(r))`` with a robust kernel ``rho``, minimized
by iteratively reweighted Gauss-Newton with Marquardt damping ``(H + lambda diag(H))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from i2p_registration.core.geometry import inverse, se3_exp, se3_log
from i2p_registration.core.registration.base import RegistrationFailure
from i2p_registration.core.registration.kernels import RobustKernel
import numpy as np

# linearize(T, with_jacobian) -> (r (M,), J (M, 6) or None, w (M,))
Linearize = Callable[[np.ndarray, bool], tuple[np.ndarray, np.ndarray | None, np.ndarray]]


@dataclass
class LMResult:
    """
    Outcome of one Levenberg-Marquardt run.

    :param T: ``(4, 4)`` final transform.
    :param hessian: ``(6, 6)`` Gauss-Newton matrix ``J^T W J`` at ``T`` (robust weights
        included), in the units of the residuals per twist unit.
    :param covariance: ``(6, 6)`` ``s^2 H^-1`` with the residual variance
        ``s^2 = sum(w r^2) / (sum(w) - 6)``, the covariance of the left increment.
    :param cost: final robust cost.
    :param iterations: accepted plus rejected steps.
    :param converged: True when a stopping tolerance was met (not the iteration limit).
    """

    T: np.ndarray
    hessian: np.ndarray
    covariance: np.ndarray
    cost: float
    iterations: int
    converged: bool


def _normal_equations(r, J, w, kernel, prior):
    weight = w * kernel.weight(r)
    Jw = J * weight[:, None]
    H, g = Jw.T @ J, Jw.T @ r
    if prior is not None:
        H = H + prior[1]
        g = g + prior[1] @ prior[2]
    return H, g, weight


def _prior_state(T, T_prior, information):
    """Return ``(cost, information, error)`` of the pose prior at ``T``, or None."""
    if T_prior is None:
        return None
    error = se3_log(T @ inverse(T_prior))
    return 0.5 * float(error @ information @ error), information, error


def levenberg_marquardt(T0: np.ndarray, linearize: Linearize, kernel: RobustKernel,
                        max_iterations: int = 30, step_tolerance: float = 1e-6,
                        cost_tolerance: float = 1e-5, initial_lambda: float = 1e-4,
                        max_lambda: float = 1e6, T_prior: np.ndarray | None = None,
                        prior_information: np.ndarray | None = None) -> LMResult:
    """
    Minimize ``sum(w * rho(r(T)))`` from ``T0``.

    Stops (converged) when the step norm falls below ``step_tolerance`` (metres and radians
    together), when an accepted step lowers the cost by less than ``cost_tolerance`` relative,
    or when no damping up to ``max_lambda`` lowers the cost any more (a minimum); stops without
    convergence after ``max_iterations`` steps.

    :param T0: ``(4, 4)`` initial transform.
    :param linearize: the problem, see ``Linearize``; the set of residuals must not change with
        ``T`` (use a fixed point set; points leaving the image keep a constant residual).
    :param kernel: robust kernel applied to ``r``.
    :param T_prior: optional ``(4, 4)`` pose prior: adds ``e^T I e / 2`` with the left error
        ``e = se3_log(T @ inv(T_prior))`` (its Jacobian taken as the identity, exact at the
        prior and accurate for the small corrections a refinement makes).
    :param prior_information: ``(6, 6)`` information matrix ``I`` of the prior, in the
        residuals' unit squared per twist unit squared.
    :raises RegistrationFailure: when the normal equations are singular or not finite.
    """
    if (T_prior is None) != (prior_information is None):
        raise ValueError('give both T_prior and prior_information, or neither')

    def total_cost(T_, r_, w_):
        prior = _prior_state(T_, T_prior, prior_information)
        return float(np.sum(w_ * kernel.rho(r_))) + (prior[0] if prior else 0.0), prior

    T = np.asarray(T0, dtype=np.float64).copy()
    r, J, w = linearize(T, True)
    cost, prior = total_cost(T, r, w)
    lam = initial_lambda
    converged = False
    iterations = 0
    H, g, weight = _normal_equations(r, J, w, kernel, prior)
    while iterations < max_iterations:
        diag = np.diag(H)
        if not np.all(np.isfinite(H)) or not np.all(np.isfinite(g)) or np.any(diag <= 0):
            raise RegistrationFailure('singular LM system: the edge points constrain no '
                                      'pose change (zero cost gradient)')
        iterations += 1
        step = np.linalg.solve(H + lam * np.diag(diag), -g)
        T_new = se3_exp(step) @ T
        # Linearized at once: most steps are accepted, and then the Jacobian is needed there.
        r_new, J_new, w_new = linearize(T_new, True)
        cost_new, prior_new = total_cost(T_new, r_new, w_new)
        if cost_new < cost:
            relative = (cost - cost_new) / max(cost, 1e-300)
            T, cost, prior = T_new, cost_new, prior_new
            r, J, w = r_new, J_new, w_new
            H, g, weight = _normal_equations(r, J, w, kernel, prior)
            lam = max(lam / 10.0, 1e-9)
            if np.linalg.norm(step) < step_tolerance or relative < cost_tolerance:
                converged = True
                break
        else:
            if np.linalg.norm(step) < step_tolerance:
                converged = True
                break
            lam *= 10.0
            if lam > max_lambda:
                converged = True
                break
    dof = max(float(np.sum(weight)) - 6.0, 1.0)
    variance = float(np.sum(weight * r * r)) / dof
    return LMResult(T, H, variance * _safe_inverse(H), cost, iterations, converged)


def _safe_inverse(H: np.ndarray) -> np.ndarray:
    """Return the inverse of a symmetric PSD matrix; unconstrained directions get 1e12."""
    values, vectors = np.linalg.eigh(0.5 * (H + H.T))
    floor = max(float(values.max()), 1e-300) * 1e-12
    inv_values = np.where(values > floor, 1.0 / np.maximum(values, floor), 1e12)
    return (vectors * inv_values) @ vectors.T
