"""Tests for i2p_registration.core.geometry.rotations."""

from i2p_registration.core.geometry import skew
from i2p_registration.core.geometry.rotations import (
    geodesic_angle, matrix_to_quat, matrix_to_rot6d, project_to_so3, quat_to_matrix,
    rot6d_to_matrix, so3_exp, so3_log)
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

AXES_180 = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 1, 1), (-1, 2, 0.5), (0, -1, -1)]


def random_rotvecs(rng, n, max_angle=np.pi):
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return axis * rng.uniform(0.0, max_angle, size=(n, 1))


def assert_rotation(R, atol=1e-12):
    eye = np.broadcast_to(np.eye(3), R.shape)
    np.testing.assert_allclose(np.swapaxes(R, -1, -2) @ R, eye, atol=atol)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=atol)


def test_so3_exp_matches_scipy_and_is_orthonormal():
    phi = random_rotvecs(np.random.default_rng(0), 500)
    R = so3_exp(phi)
    np.testing.assert_allclose(R, Rotation.from_rotvec(phi).as_matrix(), atol=1e-14)
    assert_rotation(R)


def test_so3_exp_known_answer_90_deg_about_z():
    R = so3_exp([0.0, 0.0, np.pi / 2])
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)


def test_so3_exp_log_round_trip():
    phi = random_rotvecs(np.random.default_rng(1), 1000, max_angle=np.pi - 1e-3)
    np.testing.assert_allclose(so3_log(so3_exp(phi)), phi, atol=1e-12)
    R = so3_exp(phi)
    np.testing.assert_allclose(so3_exp(so3_log(R)), R, atol=1e-12)


def test_so3_log_identity_is_exactly_zero():
    assert np.array_equal(so3_log(np.eye(3)), np.zeros(3))


@pytest.mark.parametrize('angle', [1e-12, 1e-9, 1e-6, 1e-4, 1.00001e-4])
def test_so3_tiny_angles_keep_relative_accuracy(angle):
    phi = angle * np.array([0.6, -0.48, 0.64])
    R = so3_exp(phi)
    np.testing.assert_allclose(R, Rotation.from_rotvec(phi).as_matrix(), atol=1e-17)
    np.testing.assert_allclose(so3_log(R), phi, rtol=1e-9, atol=0)


@pytest.mark.parametrize('axis', AXES_180)
def test_so3_log_exactly_180_degrees(axis):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    R = so3_exp(np.pi * a)
    phi = so3_log(R)
    assert np.linalg.norm(phi) == pytest.approx(np.pi, abs=1e-12)
    # +pi a and -pi a are the same rotation; the largest-magnitude component comes out positive.
    sign = np.sign(a[np.argmax(np.abs(a))])
    np.testing.assert_allclose(phi, sign * np.pi * a, atol=1e-12)
    np.testing.assert_allclose(so3_exp(phi), R, atol=1e-12)


def test_so3_log_exact_180_matrices_from_integers():
    for R in (np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1]),
              np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]])):
        phi = so3_log(R)
        assert np.linalg.norm(phi) == pytest.approx(np.pi, abs=1e-15)
        np.testing.assert_allclose(so3_exp(phi), R, atol=1e-15)


@pytest.mark.parametrize('eps', [1e-3, 1e-6, 1e-9])
def test_so3_log_just_below_180_keeps_the_sign(eps):
    a = np.array([2.0, -1.0, 2.0]) / 3.0
    for phi in ((np.pi - eps) * a, -(np.pi - eps) * a):
        np.testing.assert_allclose(so3_log(so3_exp(phi)), phi, atol=1e-9)


def test_so3_batch_shapes():
    phi = random_rotvecs(np.random.default_rng(2), 10).reshape(2, 5, 3)
    R = so3_exp(phi)
    assert R.shape == (2, 5, 3, 3)
    assert so3_log(R).shape == (2, 5, 3)
    np.testing.assert_allclose(so3_log(R), phi, atol=1e-12)


def test_so3_shape_errors():
    with pytest.raises(ValueError, match=r'phi must have shape \(\.\.\., 3\), got \(4,\)'):
        so3_exp(np.zeros(4))
    with pytest.raises(ValueError, match=r'R must have shape \(\.\.\., 3, 3\)'):
        so3_log(np.eye(4))


def test_quat_known_answer_90_deg_about_z():
    q = matrix_to_quat(so3_exp([0.0, 0.0, np.pi / 2]))
    np.testing.assert_allclose(q, [0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-15)
    R = quat_to_matrix([0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)])
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-15)


def test_quat_round_trip_and_canonical_sign():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(1000, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    canonical = np.where(q[:, 3:] < 0, -q, q)
    R = quat_to_matrix(q)
    assert_rotation(R)
    np.testing.assert_allclose(R, Rotation.from_quat(q).as_matrix(), atol=1e-14)
    out = matrix_to_quat(R)
    np.testing.assert_allclose(out, canonical, atol=1e-12)
    assert np.all(out[:, 3] >= 0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-15)


def test_quat_to_matrix_normalizes():
    np.testing.assert_allclose(quat_to_matrix([0.0, 0.0, 3.0, 3.0]),
                               so3_exp([0.0, 0.0, np.pi / 2]), atol=1e-15)


@pytest.mark.parametrize('axis', AXES_180)
def test_quat_180_degrees(axis):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    R = so3_exp(np.pi * a)
    q = matrix_to_quat(R)
    assert abs(q[3]) < 1e-15
    np.testing.assert_allclose(abs(q[:3] @ a), 1.0, atol=1e-12)
    np.testing.assert_allclose(quat_to_matrix(q), R, atol=1e-12)
    np.testing.assert_allclose(matrix_to_quat(np.diag([1.0, -1.0, -1.0])), [1, 0, 0, 0])
    np.testing.assert_allclose(matrix_to_quat(np.diag([-1.0, -1.0, 1.0])), [0, 0, 1, 0])


def test_quat_errors():
    with pytest.raises(ValueError, match='zero'):
        quat_to_matrix([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r'q must have shape \(\.\.\., 4\)'):
        quat_to_matrix([0.0, 0.0, 1.0])


def test_rot6d_round_trip_uses_columns():
    R = so3_exp(random_rotvecs(np.random.default_rng(4), 200))
    d6 = matrix_to_rot6d(R)
    np.testing.assert_array_equal(d6[:, :3], R[:, :, 0])
    np.testing.assert_array_equal(d6[:, 3:], R[:, :, 1])
    np.testing.assert_allclose(rot6d_to_matrix(d6), R, atol=1e-14)


def test_rot6d_gram_schmidt_of_arbitrary_vectors():
    rng = np.random.default_rng(5)
    d6 = rng.normal(size=(300, 6)) * 3.0
    R = rot6d_to_matrix(d6)
    assert_rotation(R)
    a1 = d6[:, :3] / np.linalg.norm(d6[:, :3], axis=1, keepdims=True)
    np.testing.assert_allclose(R[:, :, 0], a1, atol=1e-14)
    # the second column stays in the plane of the two inputs, on the side of a2
    assert np.all(np.sum(R[:, :, 1] * d6[:, 3:], axis=1) > 0)
    np.testing.assert_allclose(np.sum(R[:, :, 2] * d6[:, 3:], axis=1), 0.0, atol=1e-12)


def test_rot6d_degenerate_raises():
    with pytest.raises(ValueError, match='parallel'):
        rot6d_to_matrix([1.0, 2.0, 3.0, 2.0, 4.0, 6.0])
    with pytest.raises(ValueError, match='zero'):
        rot6d_to_matrix([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r'd6 must have shape \(\.\.\., 6\)'):
        rot6d_to_matrix(np.zeros(9))


def test_project_to_so3():
    rng = np.random.default_rng(6)
    R = so3_exp(random_rotvecs(rng, 100))
    np.testing.assert_allclose(project_to_so3(R), R, atol=1e-14)
    noisy = R + 1e-3 * rng.normal(size=R.shape)
    P = project_to_so3(noisy)
    assert_rotation(P)
    assert np.all(geodesic_angle(P, R) < 5e-3)
    # a reflection-like matrix: the determinant fix flips the weakest direction
    np.testing.assert_allclose(project_to_so3(np.diag([2.0, 1.0, -0.5])), np.eye(3), atol=1e-15)
    with pytest.raises(ValueError, match='NaN or inf'):
        project_to_so3(np.full((3, 3), np.nan))


def test_geodesic_angle_known_and_accurate_at_extremes():
    rng = np.random.default_rng(7)
    phi = random_rotvecs(rng, 200)
    R_a = so3_exp(random_rotvecs(rng, 200))
    angles = geodesic_angle(R_a, R_a @ so3_exp(phi))
    np.testing.assert_allclose(angles, np.linalg.norm(phi, axis=1), atol=1e-12)
    for angle in (1e-12, 1e-8, np.pi - 1e-9, np.pi):
        got = geodesic_angle(np.eye(3), so3_exp([0.0, angle, 0.0]))
        assert got == pytest.approx(angle, rel=1e-9, abs=1e-15)
    assert geodesic_angle(np.eye(3), np.eye(3)) == 0.0
    assert np.shape(geodesic_angle(np.eye(3), so3_exp(phi))) == (200,)


@pytest.mark.parametrize('shape', [(3,), (7, 3), (2, 4, 3)])
def test_skew_is_the_cross_product_matrix(shape):
    rng = np.random.default_rng(3)
    v, w = rng.normal(size=shape), rng.normal(size=shape)
    K = skew(v)
    assert K.shape == shape[:-1] + (3, 3)
    np.testing.assert_allclose((K @ w[..., None])[..., 0], np.cross(v, w), atol=1e-15)
    np.testing.assert_array_equal(K, -np.swapaxes(K, -1, -2))
