"""Tests for i2p_registration.core.geometry.se3."""

from i2p_registration.core.geometry.rotations import so3_exp
from i2p_registration.core.geometry.se3 import (
    compose, inverse, make_transform, se3_exp, se3_log, transform_points)
import numpy as np
import pytest
from scipy.linalg import expm


def random_transforms(rng, n, max_angle=np.pi):
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    phi = axis * rng.uniform(0.0, max_angle, size=(n, 1))
    return make_transform(so3_exp(phi), rng.uniform(-20.0, 20.0, size=(n, 3)))


def twist_matrix(xi):
    rho, phi = xi[:3], xi[3:]
    X = np.zeros((4, 4))
    X[:3, :3] = [[0, -phi[2], phi[1]], [phi[2], 0, -phi[0]], [-phi[1], phi[0], 0]]
    X[:3, 3] = rho
    return X


def test_make_transform_layout_and_broadcast():
    R = so3_exp([0.1, 0.2, 0.3])
    T = make_transform(R, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(T[:3, :3], R)
    np.testing.assert_array_equal(T[:3, 3], [1, 2, 3])
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    assert T.dtype == np.float64
    assert make_transform(R, np.zeros((5, 3))).shape == (5, 4, 4)


def test_inverse_compose_identity():
    rng = np.random.default_rng(10)
    T = random_transforms(rng, 500)
    eye = np.broadcast_to(np.eye(4), T.shape)
    np.testing.assert_allclose(compose(T, inverse(T)), eye, atol=1e-12)
    np.testing.assert_allclose(compose(inverse(T), T), eye, atol=1e-12)
    np.testing.assert_allclose(inverse(T), np.linalg.inv(T), atol=1e-12)
    np.testing.assert_allclose(inverse(inverse(T)), T, atol=1e-12)


def test_compose_chains_frames():
    rng = np.random.default_rng(11)
    T_a_b, T_b_c, T_c_d = random_transforms(rng, 3)
    T_a_d = compose(T_a_b, T_b_c, T_c_d)
    np.testing.assert_allclose(T_a_d, T_a_b @ T_b_c @ T_c_d, atol=1e-12)
    p_d = rng.normal(size=(7, 3))
    p_a = transform_points(T_a_b, transform_points(T_b_c, transform_points(T_c_d, p_d)))
    np.testing.assert_allclose(transform_points(T_a_d, p_d), p_a, atol=1e-12)
    np.testing.assert_array_equal(compose(T_a_b), T_a_b)
    with pytest.raises(ValueError, match='at least one transform'):
        compose()
    with pytest.raises(ValueError, match=r'Ts\[1\] must have shape'):
        compose(T_a_b, np.eye(3))


def test_transform_points_float32_in_float32_out():
    rng = np.random.default_rng(12)
    T = random_transforms(rng, 1)[0]
    pts = rng.uniform(-50, 50, size=(1000, 3)).astype(np.float32)
    out = transform_points(T, pts)
    assert out.dtype == np.float32 and out.shape == (1000, 3)
    exact = pts.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
    np.testing.assert_array_equal(out, exact.astype(np.float32))
    assert transform_points(T, pts.astype(np.float64)).dtype == np.float64
    assert transform_points(T, np.ones((2, 3), dtype=int)).dtype == np.float64


def test_transform_points_empty_and_batched():
    T = random_transforms(np.random.default_rng(13), 4)
    empty = transform_points(T[0], np.zeros((0, 3), np.float32))
    assert empty.shape == (0, 3) and empty.dtype == np.float32
    pts = np.arange(4 * 5 * 3, dtype=float).reshape(4, 5, 3)
    out = transform_points(T, pts)
    for i in range(4):
        np.testing.assert_allclose(out[i], transform_points(T[i], pts[i]), atol=1e-12)
    with pytest.raises(ValueError, match=r'points must have shape \(N, 3\)'):
        transform_points(T[0], np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r'T must have shape \(\.\.\., 4, 4\)'):
        transform_points(np.eye(3), np.zeros((5, 3)))


def test_se3_exp_ordering_translation_first():
    np.testing.assert_allclose(se3_exp([1.0, 2.0, 3.0, 0.0, 0.0, 0.0]),
                               make_transform(np.eye(3), [1, 2, 3]), atol=0)
    T = se3_exp([0.0, 0.0, 0.0, 0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(T[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)
    np.testing.assert_allclose(T[:3, 3], 0.0, atol=0)


def test_se3_exp_matches_matrix_exponential():
    rng = np.random.default_rng(14)
    for xi in np.concatenate([rng.normal(size=(20, 6)),
                              rng.normal(size=(5, 6)) * [1, 1, 1, 1e-3, 1e-3, 1e-3]]):
        np.testing.assert_allclose(se3_exp(xi), expm(twist_matrix(xi)), atol=1e-12)


def test_se3_exp_log_round_trip():
    rng = np.random.default_rng(15)
    axis = rng.normal(size=(1000, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angles = np.concatenate([rng.uniform(0, np.pi - 1e-3, 990), [0.0, 1e-12, 1e-9, 1e-6, 1e-3,
                                                                 9.99e-3, 1e-2, 1.01e-2, 0.5, 2]])
    xi = np.concatenate([rng.uniform(-10, 10, (1000, 3)), axis * angles[:, None]], axis=1)
    T = se3_exp(xi)
    np.testing.assert_allclose(se3_log(T), xi, atol=1e-11)
    np.testing.assert_allclose(se3_exp(se3_log(T)), T, atol=1e-12)


@pytest.mark.parametrize('axis', [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (3, -1, 2)])
def test_se3_log_at_180_degrees(axis):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    T = make_transform(so3_exp(np.pi * a), [1.0, -2.0, 0.5])
    xi = se3_log(T)
    assert np.all(np.isfinite(xi))
    assert np.linalg.norm(xi[3:]) == pytest.approx(np.pi, abs=1e-12)
    np.testing.assert_allclose(se3_exp(xi), T, atol=1e-12)


def test_se3_tiny_rotation_is_accurate():
    xi = np.array([0.3, -0.2, 5.0, 1e-12, -2e-12, 3e-12])
    T = se3_exp(xi)
    np.testing.assert_allclose(T, expm(twist_matrix(xi)), atol=1e-15)
    np.testing.assert_allclose(se3_log(T), xi, rtol=1e-9, atol=1e-20)
    np.testing.assert_array_equal(se3_log(np.eye(4)), np.zeros(6))


def test_se3_shape_errors():
    with pytest.raises(ValueError, match=r'xi must have shape \(\.\.\., 6\)'):
        se3_exp(np.zeros(3))
    with pytest.raises(ValueError, match=r'T must have shape \(\.\.\., 4, 4\)'):
        se3_log(np.eye(3))
    assert se3_log(random_transforms(np.random.default_rng(16), 6).reshape(2, 3, 4, 4)).shape \
        == (2, 3, 6)
