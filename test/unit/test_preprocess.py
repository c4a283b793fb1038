"""Tests of core/preprocess.py: masks, voxel and fixed-N sampling, spherical, log-normal."""

from i2p_registration.core import preprocess
from i2p_registration.core.geometry import make_transform
from i2p_registration.core.sensors import CameraModel
import numpy as np
import pytest


def _cloud(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-30, 30, (n, 3)).astype(np.float32)


def test_range_mask_bounds():
    pts = np.array([[0.5, 0, 0], [3, 4, 0], [60, 0, 0]], np.float32)
    assert preprocess.range_mask(pts, 1.0, 50.0).tolist() == [False, True, False]
    with pytest.raises(ValueError, match='min_range < max_range'):
        preprocess.range_mask(pts, 5.0, 1.0)


def test_frustum_mask_matches_projection_and_margin():
    camera = CameraModel(np.array([[100.0, 0, 49.5], [0, 100.0, 29.5], [0, 0, 1]]), 100, 60)
    T = make_transform(np.eye(3), np.zeros(3))
    pts = np.array([[0, 0, 10], [0, 0, -10], [0.52, 0, 1], [0.4, 0, 1]], np.float32)
    # u = 100 x / z + 49.5: 101.5 is outside, 89.5 inside; the margin brings 101.5 in.
    assert preprocess.frustum_mask(pts, T, camera).tolist() == [True, False, False, True]
    grown = preprocess.frustum_mask(pts, T, camera, margin_px=3)
    assert grown.tolist() == [True, False, True, True]


def test_frustum_mask_rejects_points_folded_in_by_distortion():
    K = np.array([[100.0, 0, 49.5], [0, 100.0, 29.5], [0, 0, 1]])
    camera = CameraModel(K, 100, 60, 'plumb_bob', [-0.5, 0.2, 0, 0, 0])
    # At 80 deg off-axis this strong barrel distortion maps the point back near the centre.
    far_off_axis = np.array([[np.tan(np.radians(80)), 0.0, 1.0]], np.float32)
    assert not preprocess.frustum_mask(far_off_axis, np.eye(4), camera)[0]


def test_voxel_downsample_one_point_per_voxel():
    pts = np.array([[0.1, 0.1, 0.1], [0.2, 0.3, 0.1], [1.5, 0, 0], [-0.1, 0, 0]], np.float32)
    assert preprocess.voxel_downsample(pts, 1.0).tolist() == [0, 2, 3]
    big = _cloud()
    idx = preprocess.voxel_downsample(big, 5.0)
    keys = np.floor(big[idx] / 5.0)
    assert len(np.unique(keys, axis=0)) == len(idx) == len(np.unique(np.floor(big / 5.0), axis=0))


def test_random_sample_exact_count_and_seeded():
    a = preprocess.random_sample(100, 40, rng=7)
    assert len(np.unique(a)) == 40 and a.max() < 100
    assert np.array_equal(a, preprocess.random_sample(100, 40, rng=7))
    padded = preprocess.random_sample(10, 25, rng=1)
    assert len(padded) == 25 and set(padded.tolist()) == set(range(10))


def test_farthest_point_sample_spreads_points():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.01, (200, 3))
    corners = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5]])
    pts = np.concatenate([cluster, corners]).astype(np.float32)
    idx = preprocess.farthest_point_sample(pts, 4, start=0)
    assert idx[0] == 0 and set(idx[1:].tolist()) == {200, 201, 202}


def test_spherical_round_trip():
    pts = _cloud(1000).astype(np.float64)
    sph = preprocess.to_spherical(pts)
    np.testing.assert_allclose(preprocess.from_spherical(sph), pts, atol=1e-9)
    assert np.all(np.abs(sph[:, 1]) <= np.pi / 2)
    np.testing.assert_allclose(sph[:, 2], np.linalg.norm(pts, axis=1))


def test_fit_lognormal_is_the_closed_form_mle():
    rng = np.random.default_rng(3)
    r = rng.lognormal(mean=2.5, sigma=0.6, size=20000)
    mu, sigma = preprocess.fit_lognormal(r)
    assert mu == pytest.approx(np.mean(np.log(r)), abs=1e-12)
    assert sigma == pytest.approx(np.std(np.log(r)), abs=1e-12)   # the 1/N (MLE) variance
    assert mu == pytest.approx(2.5, abs=0.02) and sigma == pytest.approx(0.6, abs=0.02)
    # The MLE maximizes the likelihood: moving either parameter lowers it.

    def loglik(m, s):
        return np.sum(-np.log(s) - 0.5 * ((np.log(r) - m) / s) ** 2)
    best = loglik(mu, sigma)
    assert all(loglik(mu + dm, sigma + ds) < best for dm, ds in [(0.01, 0), (0, 0.01),
                                                                 (-0.01, 0), (0, -0.01)])


def test_lognormal_sampling_reaches_the_target_distribution():
    rng = np.random.default_rng(4)
    # A uniform-in-range cloud is far from log-normal; the sample must follow the target.
    r = rng.uniform(2.0, 80.0, 60000)
    idx = preprocess.lognormal_sample(r, 5000, mu=2.3, sigma=0.5, rng=5)
    mu, sigma = preprocess.fit_lognormal(r[idx])
    assert len(np.unique(idx)) == 5000
    assert mu == pytest.approx(2.3, abs=0.05) and sigma == pytest.approx(0.5, abs=0.05)


def test_samplers_share_one_interface():
    pts = _cloud(3000) + np.float32(31.0)
    fitted = preprocess.LogNormalSampler.fitted(pts, pts * 2)
    for sampler in (preprocess.get_sampler('random'), preprocess.get_sampler('farthest'),
                    preprocess.get_sampler('lognormal'), fitted):
        idx = sampler.sample(pts, 500, rng=0)
        assert len(idx) == 500 and len(np.unique(idx)) == 500 and idx.max() < len(pts)
    with pytest.raises(ValueError, match='unknown sampler'):
        preprocess.get_sampler('grid')
