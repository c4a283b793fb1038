"""Refinement on the real camera + LiDAR samples (skipped where ../shared/data/real is absent)."""

import os

from i2p_registration.core.metrics import rre_geodesic, rte
from i2p_registration.core.registration.base import Prior, Status
from i2p_registration.core.registration.factory import get_registrar
from i2p_registration.training.evaluate import load_real_sample, perturbation
import numpy as np
import pytest


def _trials(folder, count, seed=0):
    image, cloud, T_gt = load_real_sample(folder)
    registrar = get_registrar('edge', refine=True, device='cpu', search=None)
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


@pytest.mark.xfail(strict=True, reason='issue 4 target not met yet: from +-2 deg / +-0.2 m the '
                   'refinement reaches about 1.2 deg / 0.5 m median on pjlab_manual (benchmarks/'
                   'results/registration_edge.json)')
def test_real_refinement_meets_the_issue_bounds(real_data_dir):
    trials = _trials(os.path.join(real_data_dir, 'pjlab_manual'), 20)
    rot = [rre_geodesic(r.T_cam_lidar, T) if r.status != Status.FAILED else np.inf
           for r, T in trials]
    trans = [rte(r.T_cam_lidar, T) if r.status != Status.FAILED else np.inf for r, T in trials]
    assert np.median(rot) <= 0.5 and np.median(trans) <= 0.10
