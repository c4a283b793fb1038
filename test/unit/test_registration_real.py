"""Refinement on the real camera + LiDAR samples (skipped where ../shared/data/real is absent)."""

import os

from i2p_registration.core.metrics import rre_geodesic, rte
from i2p_registration.core.registration.base import Prior, Status
from i2p_registration.core.registration.factory import get_registrar
from i2p_registration.core.registration.lidar_edges import depth_edges
from i2p_registration.training.evaluate import load_real_sample, perturbation
import numpy as np


def _trials(folder, count, seed=0, search=None):
    image, cloud, T_gt = load_real_sample(folder)
    registrar = get_registrar('edge', refine=True, device='cpu', search=search)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        T_start = T_gt @ perturbation(rng, 2.0, 0.2)
        out.append((registrar.register(image, cloud, Prior(T_start, 0.2, np.radians(2.0))),
                    T_gt))
    return out


def test_real_sample_loads_with_distortion(real_data_dir):
    image, cloud, T = load_real_sample(os.path.join(real_data_dir, 'pjlab_scene3'))
    assert image.camera.distortion_model == 'plumb_bob' and image.camera.D.size == 5
    assert len(cloud) == 85546 and cloud.ring is not None
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])


def test_real_results_are_well_formed(real_data_dir):
    for result, T_gt in _trials(os.path.join(real_data_dir, 'pjlab_manual'), 4):
        if result.status == Status.FAILED:
            assert result.reason and np.all(np.isnan(result.T_cam_lidar))
        else:
            assert np.isfinite(rte(result.T_cam_lidar, T_gt))
            assert 0.0 <= result.score <= 1.0 and np.all(np.isfinite(result.covariance))


def test_real_refinement_meets_the_issue_bounds(real_data_dir):
    # Issue 4: from +-2 deg / +-0.2 m, 20 seeded trials, median geodesic rotation error <= 0.5 deg
    # and translation error <= 10 cm on at least one sample (pjlab_manual: 0.2 deg / 8.9 cm in
    # benchmarks/results/registration_edge.json); failed trials count as infinitely wrong.
    trials = _trials(os.path.join(real_data_dir, 'pjlab_manual'), 20, search='6dof')
    rot = [rre_geodesic(r.T_cam_lidar, T) if r.status != Status.FAILED else np.inf
           for r, T in trials]
    trans = [rte(r.T_cam_lidar, T) if r.status != Status.FAILED else np.inf for r, T in trials]
    assert np.median(rot) <= 0.5 and np.median(trans) <= 0.10


def test_real_scan_without_ring_field_finds_the_same_lines(real_data_dir):
    image, cloud, T = load_real_sample(os.path.join(real_data_dir, 'pjlab_scene3'))
    with_ring = depth_edges(cloud.points, cloud.ring)
    without = depth_edges(cloud.points)
    assert abs(len(without) - len(with_ring)) < 0.1 * len(with_ring)
