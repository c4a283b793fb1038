"""Body-frame registration covariance rotated into the parent frame of a ROS pose."""

from i2p_registration.core.geometry.se3 import se3_exp
from i2p_registration.core.pose_covariance import (covariance_in_parent_frame,
                                                   is_positive_definite)
import numpy as np
import pytest

SEED = 11


def test_matches_a_monte_carlo_of_the_perturbed_pose():
    rng = np.random.default_rng(SEED)
    T = se3_exp([1.0, 2.0, -0.5, 0.3, -1.1, 0.7])
    A = rng.normal(size=(6, 6)) * 1e-3
    cov = A @ A.T + np.eye(6) * 1e-8
    samples = rng.multivariate_normal(np.zeros(6), cov, 20000)
    errors = []
    for xi in samples:
        T_true = T @ se3_exp(xi)
        dt = T_true[:3, 3] - T[:3, 3]
        dR = T_true[:3, :3] @ T[:3, :3].T
        dphi = np.array([dR[2, 1] - dR[1, 2], dR[0, 2] - dR[2, 0], dR[1, 0] - dR[0, 1]]) / 2
        errors.append(np.concatenate([dt, dphi]))
    empirical = np.cov(np.array(errors).T)
    np.testing.assert_allclose(covariance_in_parent_frame(cov, T), empirical,
                               atol=0.05 * np.abs(cov).max())


def test_identity_keeps_the_covariance_and_pd_is_preserved():
    cov = np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    np.testing.assert_allclose(covariance_in_parent_frame(cov, np.eye(4)), cov)
    rotated = covariance_in_parent_frame(cov, se3_exp([0, 0, 0, 0.1, 0.2, 0.3]))
    assert is_positive_definite(rotated)
    np.testing.assert_allclose(np.linalg.eigvalsh(rotated), np.arange(1.0, 7.0))


def test_is_positive_definite_rejects_bad_matrices():
    assert not is_positive_definite(np.diag([1.0, -1.0]))
    assert not is_positive_definite(np.full((6, 6), np.nan))
    assert not is_positive_definite(np.array([[1.0, 0.5], [0.0, 1.0]]))
    assert not is_positive_definite(np.ones(3))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match='covariance_body'):
        covariance_in_parent_frame(np.eye(5), np.eye(4))
    with pytest.raises(ValueError, match='T_parent_child'):
        covariance_in_parent_frame(np.eye(6), np.eye(3))
