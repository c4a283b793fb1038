"""Tests of the robust kernels and the SE(3) Levenberg-Marquardt solver."""

from i2p_registration.core.geometry import make_transform, se3_exp, so3_exp
from i2p_registration.core.metrics import rre_geodesic, rte
from i2p_registration.core.registration.base import RegistrationFailure
from i2p_registration.core.registration.kernels import get_kernel
from i2p_registration.core.registration.lm import levenberg_marquardt
import numpy as np
import pytest


def test_kernel_weights_and_costs():
    r = np.array([0.0, 1.0, 2.0, 8.0])
    huber, cauchy, none = get_kernel('huber', 2.0), get_kernel('cauchy', 2.0), get_kernel('none')
    np.testing.assert_allclose(huber.weight(r), [1, 1, 1, 0.25])
    np.testing.assert_allclose(huber.rho(r), [0, 0.5, 2.0, 2.0 * (8 - 1)])
    np.testing.assert_allclose(cauchy.weight(r), [1, 0.8, 0.5, 1 / 17])
    np.testing.assert_allclose(cauchy.rho(r), 2.0 * np.log1p((r / 2) ** 2))
    np.testing.assert_allclose(none.weight(r), 1.0)
    # IRLS weight is rho'(r) / r: check by finite differences.
    for k in (huber, cauchy):
        d = (k.rho(r[1:] + 1e-6) - k.rho(r[1:] - 1e-6)) / 2e-6
        np.testing.assert_allclose(d / r[1:], k.weight(r[1:]), rtol=1e-5)
    with pytest.raises(ValueError, match='unknown robust kernel'):
        get_kernel('tukey')
    with pytest.raises(ValueError, match='positive'):
        get_kernel('huber', 0.0)


def _point_problem(src, dst, weights=None):
    """Point-to-point residuals of T @ src - dst with the analytic left Jacobian."""
    w = np.ones(3 * len(src)) if weights is None else np.repeat(weights, 3)

    def linearize(T, jac):
        p = src @ T[:3, :3].T + T[:3, 3]
        r = (p - dst).reshape(-1)
        if not jac:
            return r, None, w
        J = np.zeros((len(src), 3, 6))
        J[:, :, :3] = np.eye(3)
        px = np.zeros((len(src), 3, 3))
        px[:, 0, 1], px[:, 0, 2], px[:, 1, 2] = -p[:, 2], p[:, 1], -p[:, 0]
        px[:, 1, 0], px[:, 2, 0], px[:, 2, 1] = p[:, 2], -p[:, 1], p[:, 0]
        J[:, :, 3:] = -px
        return r, J.reshape(-1, 6), w
    return linearize


def test_lm_recovers_a_known_transform_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(-5, 5, (50, 3))
    T_true = make_transform(so3_exp([0.3, -0.2, 0.5]), [1.0, -2.0, 0.5])
    dst = src @ T_true[:3, :3].T + T_true[:3, 3]
    result = levenberg_marquardt(np.eye(4), _point_problem(src, dst), get_kernel('none'))
    assert result.converged
    assert rre_geodesic(result.T, T_true) < 1e-6 and rte(result.T, T_true) < 1e-8


def test_robust_kernel_rejects_outliers_that_bias_least_squares():
    rng = np.random.default_rng(1)
    src = rng.uniform(-5, 5, (200, 3))
    T_true = make_transform(so3_exp([0.05, 0.02, -0.1]), [0.3, 0.1, -0.2])
    dst = src @ T_true[:3, :3].T + T_true[:3, 3] + rng.normal(0, 0.01, src.shape)
    dst[:40] += rng.uniform(-3, 3, (40, 3))       # 20 % gross outliers
    errors = {}
    for name in ('none', 'huber', 'cauchy'):
        res = levenberg_marquardt(np.eye(4), _point_problem(src, dst), get_kernel(name, 0.05),
                                  max_iterations=100)
        errors[name] = rte(res.T, T_true)
    assert errors['cauchy'] < 0.01 and errors['huber'] < 0.05
    assert errors['none'] > 5 * errors['cauchy']


def test_lm_covariance_shrinks_with_more_points():
    rng = np.random.default_rng(2)
    traces = []
    for n in (100, 400):
        src = rng.uniform(-5, 5, (n, 3))
        dst = src + rng.normal(0, 0.05, src.shape)
        res = levenberg_marquardt(np.eye(4), _point_problem(src, dst), get_kernel('none'))
        traces.append(np.trace(res.covariance[:3, :3]))
        # The translation covariance of n points with noise 0.05 per axis is about 0.05^2 / n.
        assert np.trace(res.covariance[:3, :3]) == pytest.approx(3 * 0.05 ** 2 / n, rel=0.3)
    assert traces[1] < 0.35 * traces[0]


def test_lm_prior_pulls_towards_the_prior():
    rng = np.random.default_rng(3)
    src = rng.uniform(-5, 5, (30, 3))
    T_true = se3_exp([0.5, 0, 0, 0, 0, 0])
    dst = src @ T_true[:3, :3].T + T_true[:3, 3]
    strong = np.eye(6) * 1e6
    res = levenberg_marquardt(np.eye(4), _point_problem(src, dst), get_kernel('none'),
                              T_prior=np.eye(4), prior_information=strong)
    assert rte(res.T, np.eye(4)) < 0.01
    with pytest.raises(ValueError, match='both'):
        levenberg_marquardt(np.eye(4), _point_problem(src, dst), get_kernel('none'),
                            T_prior=np.eye(4))


def test_lm_singular_system_raises_registration_failure():
    def flat(T, jac):
        return np.ones(10), (np.zeros((10, 6)) if jac else None), np.ones(10)
    with pytest.raises(RegistrationFailure, match='singular'):
        levenberg_marquardt(np.eye(4), flat, get_kernel('huber'))
