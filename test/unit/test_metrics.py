"""Known answers and error messages of ``core.metrics``."""

from i2p_registration.core.metrics import (
    ErrorSummary, inlier_ratio, registration_recall, relative_error, rre_geodesic, rre_protocol,
    rte, summarize)
import numpy as np
import pytest
from scipy.spatial.transform import Rotation


def transform(rotation=None, translation=(0.0, 0.0, 0.0)):
    T = np.eye(4)
    if rotation is not None:
        T[:3, :3] = rotation.as_matrix()
    T[:3, 3] = translation
    return T


def random_transforms(rng, n, max_angle_deg=180.0, max_shift=10.0):
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.radians(rng.uniform(0.0, max_angle_deg, size=(n, 1)))
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = Rotation.from_rotvec(axes * angles).as_matrix()
    T[:, :3, 3] = rng.uniform(-max_shift, max_shift, size=(n, 3))
    return T


def test_identity_has_zero_error_and_full_recall():
    I4 = np.eye(4)
    assert rte(I4, I4) == 0.0
    assert rre_protocol(I4, I4) == 0.0
    assert rre_geodesic(I4, I4) == 0.0
    summary = summarize(np.stack([I4] * 3), np.stack([I4] * 3))
    assert summary.recall == 1.0 and summary.count == 3


@pytest.mark.parametrize('pred_is_rotated', [False, True])
def test_three_degrees_about_x_is_three_in_both_conventions(pred_is_rotated):
    R = transform(Rotation.from_euler('x', 3.0, degrees=True))
    T_pred, T_gt = (R, np.eye(4)) if pred_is_rotated else (np.eye(4), R)
    assert rre_protocol(T_pred, T_gt) == pytest.approx(3.0, abs=1e-9)
    assert rre_geodesic(T_pred, T_gt) == pytest.approx(3.0, abs=1e-9)
    assert rte(T_pred, T_gt) == pytest.approx(0.0, abs=1e-12)


def test_rotation_about_two_axes_protocol_exceeds_geodesic():
    # Extrinsic 'xzy' with angles (10, 10, 0) deg is Rz(10) @ Rx(10), whose quaternion has
    # w = cos^2(5 deg): a rotation angle of 2 acos(cos^2(5 deg)) = 14.13 deg, against 20.
    T = transform(Rotation.from_euler('xzy', [10.0, 10.0, 0.0], degrees=True))
    expected = np.degrees(2.0 * np.arccos(np.cos(np.radians(5.0)) ** 2))
    assert rre_protocol(np.eye(4), T) == pytest.approx(20.0, abs=1e-9)
    assert rre_geodesic(np.eye(4), T) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(14.1331, abs=1e-4)


def test_protocol_sums_the_absolute_xzy_euler_angles():
    T = transform(Rotation.from_euler('xzy', [10.0, -20.0, 15.0], degrees=True))
    assert rre_protocol(np.eye(4), T) == pytest.approx(45.0, abs=1e-9)
    assert rre_geodesic(np.eye(4), T) < 45.0


def test_translation_only_error_is_the_distance():
    T_gt = transform(translation=(3.0, 4.0, 12.0))
    assert rte(np.eye(4), T_gt) == pytest.approx(13.0, abs=1e-12)
    assert rre_protocol(np.eye(4), T_gt) == 0.0
    assert rre_geodesic(np.eye(4), T_gt) == 0.0


def test_error_is_measured_in_the_predicted_frame():
    R = Rotation.from_euler('zyx', [30.0, -10.0, 5.0], degrees=True)
    T_pred = transform(R, (1.0, 2.0, 2.0))
    T_gt = transform(R)
    rel = relative_error(T_pred, T_gt)
    np.testing.assert_allclose(rel[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rel[:3, 3], -R.inv().apply([1.0, 2.0, 2.0]), atol=1e-12)
    assert rte(T_pred, T_gt) == pytest.approx(3.0, abs=1e-12)
    np.testing.assert_allclose(rel, np.linalg.inv(T_pred) @ T_gt, atol=1e-12)


def test_batched_errors_match_scipy_and_geodesic_never_exceeds_protocol():
    rng = np.random.default_rng(7)
    T_pred, T_gt = random_transforms(rng, 200), random_transforms(rng, 200)
    protocol = rre_protocol(T_pred, T_gt)
    geodesic = rre_geodesic(T_pred, T_gt)
    assert protocol.shape == geodesic.shape == rte(T_pred, T_gt).shape == (200,)
    rel = np.linalg.inv(T_pred) @ T_gt
    rotations = Rotation.from_matrix(rel[:, :3, :3])
    np.testing.assert_allclose(geodesic, np.degrees(rotations.magnitude()), atol=1e-8)
    euler = rotations.as_euler('xzy', degrees=True)
    np.testing.assert_allclose(protocol, np.abs(euler).sum(axis=1), atol=1e-8)
    assert np.all(geodesic <= protocol + 1e-9)
    np.testing.assert_allclose(rte(T_pred, T_gt), np.linalg.norm(rel[:, :3, 3], axis=1),
                               atol=1e-9)


def test_broadcasting_one_ground_truth_against_a_stack():
    rng = np.random.default_rng(3)
    T_pred = random_transforms(rng, 4).reshape(2, 2, 4, 4)
    T_gt = random_transforms(rng, 1)[0]
    assert rte(T_pred, T_gt).shape == (2, 2)
    assert rre_protocol(T_pred, T_gt).shape == (2, 2)
    assert rre_geodesic(T_pred, T_gt).shape == (2, 2)
    assert rre_geodesic(T_pred[1, 0], T_gt) == pytest.approx(rre_geodesic(T_pred, T_gt)[1, 0])


def test_geodesic_keeps_precision_near_zero_and_at_180_degrees():
    tiny = transform(Rotation.from_euler('y', 1e-6, degrees=True))
    assert rre_geodesic(np.eye(4), tiny) == pytest.approx(1e-6, rel=1e-6)
    half_turn = transform(Rotation.from_euler('z', 180.0, degrees=True))
    assert rre_geodesic(np.eye(4), half_turn) == pytest.approx(180.0, abs=1e-9)


def test_float32_transforms_are_accepted():
    T = transform(Rotation.from_euler('x', 3.0, degrees=True)).astype(np.float32)
    assert rre_geodesic(np.eye(4, dtype=np.float32), T) == pytest.approx(3.0, abs=1e-4)


def test_recall_thresholds_are_strict_and_nan_fails():
    rte_m = [2.0, 1.999, 0.5, np.nan, 0.0]
    rre_deg = [1.0, 4.999, 5.0, 1.0, 0.0]
    assert registration_recall(rte_m, rre_deg) == pytest.approx(2 / 5)
    assert registration_recall(rte_m, rre_deg, max_rte=2.5, max_rre=5.5) == pytest.approx(4 / 5)


def test_inlier_ratio_counts_strictly_below_threshold():
    assert inlier_ratio([0.1, 0.5, 1.0, 2.0, np.nan], 1.0) == pytest.approx(0.4)
    batched = inlier_ratio([[0.0, 3.0, 0.2, 0.9], [5.0, 5.0, 5.0, 0.1]], 1.0)
    np.testing.assert_allclose(batched, [0.75, 0.25])
    assert inlier_ratio([], 1.0) == 0.0
    np.testing.assert_array_equal(inlier_ratio(np.zeros((3, 0)), 1.0), np.zeros(3))


def test_summary_per_pair_errors_statistics_and_both_recalls():
    # Pair 0: exact. Pair 1: 1.5 m. Pair 2: 3 m (fails RTE). Pair 3: protocol 6 deg but
    # geodesic 4.25 deg (fails protocol RR only). Pair 4: 4 deg about x (passes both).
    T_gt = random_transforms(np.random.default_rng(11), 5)
    errors = [transform(), transform(translation=(1.5, 0.0, 0.0)),
              transform(translation=(0.0, 3.0, 0.0)),
              transform(Rotation.from_euler('xzy', [3.0, 3.0, 0.0], degrees=True)),
              transform(Rotation.from_euler('x', 4.0, degrees=True))]
    # inv(T_pred) @ T_gt = E  <=>  T_pred = T_gt @ inv(E)
    T_pred = np.stack([gt @ np.linalg.inv(e) for gt, e in zip(T_gt, errors)])
    summary = summarize(T_pred, T_gt)
    assert isinstance(summary, ErrorSummary) and summary.count == 5
    np.testing.assert_allclose(summary.rte, [0.0, 1.5, 3.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(summary.rre_protocol, [0.0, 0.0, 0.0, 6.0, 4.0], atol=1e-7)
    assert summary.rre_geodesic[3] == pytest.approx(
        np.degrees(2.0 * np.arccos(np.cos(np.radians(1.5)) ** 2)), abs=1e-7)
    np.testing.assert_array_equal(summary.recalled, [True, True, False, False, True])
    assert summary.recall == pytest.approx(0.6)
    assert summary.recall_geodesic == pytest.approx(0.8)
    stats = summary.statistics()
    assert stats['rte_median'] == pytest.approx(0.0, abs=1e-9)
    assert stats['rte_mean'] == pytest.approx(0.9, abs=1e-9)
    assert stats['rre_protocol_mean'] == pytest.approx(2.0, abs=1e-7)
    assert stats['recall'] == summary.recall
    assert set(stats) == {'rte_median', 'rte_mean', 'rre_protocol_median', 'rre_protocol_mean',
                          'rre_geodesic_median', 'rre_geodesic_mean', 'recall',
                          'recall_geodesic'}


@pytest.mark.parametrize('T, message', [
    (np.eye(3), r'T_pred must have shape \(\.\.\., 4, 4\), got \(3, 3\)'),
    (np.full((4, 4), np.nan), 'T_pred contains NaN or inf'),
    (np.ones((4, 4)), r'T_pred must have the homogeneous last row \[0, 0, 0, 1\]'),
    (np.diag([2.0, 1.0, 1.0, 1.0]), 'T_pred must hold rotation matrices'),
    (np.diag([-1.0, 1.0, 1.0, 1.0]), r'T_pred must hold rotation matrices \(orthonormal, det'),
])
def test_bad_transforms_are_rejected(T, message):
    with pytest.raises(ValueError, match=message):
        rte(T, np.eye(4))


def test_bad_ground_truth_is_named():
    with pytest.raises(ValueError, match='T_gt must have shape'):
        rre_geodesic(np.eye(4), np.zeros((2, 4, 3)))


def test_summary_rejects_empty_and_mismatched_input():
    with pytest.raises(ValueError, match='cannot summarize zero registrations'):
        summarize(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    with pytest.raises(ValueError, match=r'must both have shape \(N, 4, 4\), got \(2, 4, 4\) '
                                         r'and \(3, 4, 4\)'):
        summarize(np.tile(np.eye(4), (2, 1, 1)), np.tile(np.eye(4), (3, 1, 1)))
    with pytest.raises(ValueError, match=r'must both have shape \(N, 4, 4\)'):
        summarize(np.eye(4), np.eye(4))


def test_recall_and_inlier_ratio_reject_bad_input():
    with pytest.raises(ValueError, match='registration recall of no pairs is undefined'):
        registration_recall([], [])
    with pytest.raises(ValueError, match=r'rte and rre must have the same shape, got \(2,\)'):
        registration_recall([1.0, 1.0], [1.0])
    with pytest.raises(ValueError, match=r'rte must be a 1-D array of per-pair errors'):
        registration_recall([[1.0]], [[1.0]])
    with pytest.raises(ValueError, match='threshold must be positive and finite, got 0'):
        inlier_ratio([1.0], 0.0)
    with pytest.raises(ValueError, match='residuals must have shape'):
        inlier_ratio(1.0, 1.0)
