"""Tests of the batched hypothesis scoring and the coarse-to-fine pose search."""

from i2p_registration.core.geometry import make_transform, so3_exp
from i2p_registration.core.metrics import rre_geodesic, rte
from i2p_registration.core.registration.base import Prior
from i2p_registration.core.registration.image_edges import CannyEdges, cost_pyramid, rectify
from i2p_registration.core.registration.lidar_edges import depth_edges
from i2p_registration.core.registration.refine import edge_residuals
from i2p_registration.core.registration.search import (FieldScorer, get_search, PlanarSearch,
                                                       resolve_device, SixDofSearch)
import numpy as np
import pytest
from test_registration_scene import make_scene
import torch


@pytest.fixture(scope='module')
def features():
    scene = make_scene(seed=1)
    gray, K = rectify(scene.image)
    pyramid = cost_pyramid(gray, K, CannyEdges(), levels=3)
    edges = depth_edges(scene.cloud.points, scene.cloud.ring)
    return scene, pyramid, edges.points, edges.weight.astype(np.float64)


def test_batched_scores_equal_one_hypothesis_at_a_time(features):
    scene, pyramid, points, weights = features
    rng = np.random.default_rng(0)
    T = np.stack([make_transform(so3_exp(rng.normal(0, 0.03, 3)), rng.normal(0, 0.2, 3))
                  @ scene.T_cam_lidar for _ in range(16)])
    scorer = FieldScorer(pyramid[0], points, weights, torch.device('cpu'))
    batched = scorer.score(T)
    field = pyramid[0]
    for k in range(len(T)):
        cost, _, _ = edge_residuals(field, points, weights, T[k], False)
        expected = np.sum(weights * (1.0 - cost / field.truncation)) / weights.sum()
        assert batched[k] == pytest.approx(expected, abs=2e-4)
    assert np.all((batched >= 0) & (batched <= 1)) and np.argmax(batched) >= 0


def test_ground_truth_scores_best(features):
    scene, pyramid, points, weights = features
    offsets = [make_transform(so3_exp([0, 0, a]), [x, 0, 0]) for a in (0, 0.03) for x in (0, 0.4)]
    scores = FieldScorer(pyramid[0], points, weights, torch.device('cpu')).score(
        np.stack([scene.T_cam_lidar @ P for P in offsets]))
    assert np.argmax(scores) == 0 and scores[0] > 0.9


@pytest.mark.parametrize('search', [PlanarSearch(grid=(9, 9, 9)), SixDofSearch(samples=1024)])
def test_search_finds_a_planar_offset(features, search):
    scene, pyramid, points, weights = features
    offset = make_transform(so3_exp([0, 0, np.radians(4.0)]), [0.6, -0.4, 0.0])
    prior = Prior(scene.T_cam_lidar @ offset, translation_range=[1.0, 1.0, 0.1],
                  rotation_range=np.radians([1.0, 1.0, 8.0]))
    T, scores = search.search(pyramid, points, weights, prior)
    assert T.shape == (search.keep, 4, 4) and np.all(np.diff(scores) <= 0)
    assert rre_geodesic(T[0], scene.T_cam_lidar) < 1.5 and rte(T[0], scene.T_cam_lidar) < 0.3


def test_device_resolution_and_factory():
    assert resolve_device('cpu') == torch.device('cpu')
    assert resolve_device('auto').type in ('cpu', 'cuda')
    assert isinstance(get_search('planar'), PlanarSearch)
    with pytest.raises(ValueError, match='unknown search mode'):
        get_search('spiral')
