"""The robust running extrinsic: outlier rejection, convergence, republishing, bad input."""

from i2p_registration.core.calibration_average import CalibrationAverager
from i2p_registration.core.geometry.rotations import geodesic_angle
from i2p_registration.core.geometry.se3 import se3_exp
import numpy as np
import pytest

SEED = 7
T_TRUE = se3_exp([0.1, -0.3, 0.05, 1.2, -0.4, 0.3])


def _noisy(rng, n, t_sigma=0.003, r_sigma=0.001):
    xi = np.column_stack([rng.normal(0, t_sigma, (n, 3)), rng.normal(0, r_sigma, (n, 3))])
    return [se3_exp(x) @ T_TRUE for x in xi]


def test_converges_to_the_truth_despite_outliers():
    rng = np.random.default_rng(SEED)
    averager = CalibrationAverager(window=40, min_inliers=10)
    samples = _noisy(rng, 40)
    for i in range(0, 40, 4):  # 25 % gross outliers
        samples[i] = se3_exp(rng.normal(0, 0.5, 6)) @ T_TRUE
    for T in samples:
        estimate = averager.add(T)
    assert estimate.converged
    assert estimate.n_samples == 40 and estimate.n_inliers == 30
    assert np.linalg.norm(estimate.T_cam_lidar[:3, 3] - T_TRUE[:3, 3]) < 0.003
    assert geodesic_angle(estimate.T_cam_lidar[:3, :3], T_TRUE[:3, :3]) < 0.001
    assert np.all(estimate.translation_sem < 0.002) and np.all(estimate.rotation_sem < 0.001)


def test_not_converged_with_few_or_scattered_samples():
    rng = np.random.default_rng(SEED)
    averager = CalibrationAverager(window=30, min_inliers=10)
    for T in _noisy(rng, 5):
        estimate = averager.add(T)
    assert not estimate.converged and estimate.n_inliers == 5
    scattered = CalibrationAverager(window=30, min_inliers=10, converged_translation=0.001)
    for T in _noisy(rng, 30, t_sigma=0.05):
        estimate = scattered.add(T)
    assert not estimate.converged, 'a 5 cm spread passed a 1 mm standard error test'
    assert not scattered.should_publish(estimate)


def test_publishes_once_then_again_only_when_it_moves():
    rng = np.random.default_rng(SEED)
    averager = CalibrationAverager(window=20, min_inliers=5, update_translation=0.02)
    for T in _noisy(rng, 20):
        estimate = averager.add(T)
    assert averager.should_publish(estimate)
    averager.mark_published(estimate)
    assert not averager.should_publish(averager.add(_noisy(rng, 1)[0]))
    moved = se3_exp([0.1, 0, 0, 0, 0, 0]) @ T_TRUE
    for T in [se3_exp(x) @ moved for x in rng.normal(0, 0.001, (20, 6))]:
        estimate = averager.add(T)
    assert np.linalg.norm(estimate.T_cam_lidar[:3, 3] - moved[:3, 3]) < 0.003
    assert averager.should_publish(estimate)
    averager.reset()
    assert len(averager) == 0 and averager.estimate() is None


def test_single_sample_is_its_own_mean():
    averager = CalibrationAverager(window=5, min_inliers=1)
    estimate = averager.add(T_TRUE)
    np.testing.assert_allclose(estimate.T_cam_lidar, T_TRUE, atol=1e-12)
    assert not estimate.converged, 'one sample has no spread to test'


@pytest.mark.parametrize('kwargs', [{'window': 0}, {'window': 5, 'min_inliers': 6},
                                    {'max_rotation': 0.0}, {'update_translation': np.nan}])
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        CalibrationAverager(**kwargs)


def test_bad_sample_raises():
    with pytest.raises(ValueError, match='finite'):
        CalibrationAverager().add(np.full((4, 4), np.nan))
