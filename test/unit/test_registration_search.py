"""Tests of the batched hypothesis scoring, the 6-DoF search and the planar global search."""

import dataclasses

from i2p_registration.core.geometry import make_transform, so3_exp
from i2p_registration.core.metrics import rre_geodesic, rte
from i2p_registration.core.registration.base import Prior, Status
from i2p_registration.core.registration.edge import EdgeRegistrar
from i2p_registration.core.registration.image_edges import CannyEdges, cost_pyramid, rectify
from i2p_registration.core.registration.kernels import get_kernel
from i2p_registration.core.registration.lidar_edges import depth_edges
from i2p_registration.core.registration.occlusion import visible
from i2p_registration.core.registration.refine import edge_residuals, EdgeChannel, EdgeRefiner
from i2p_registration.core.registration.search import (get_search, PlanarSearch, resolve_device,
                                                       SixDofSearch, VisibleScorer)
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


def test_ground_truth_scores_best(features):
    scene, pyramid, points, weights = features
    offsets = [make_transform(so3_exp([0, 0, a]), [x, 0, 0]) for a in (0, 0.03) for x in (0, 0.4)]
    T = np.stack([scene.T_cam_lidar @ P for P in offsets])
    for window in (0, 31):
        scores = VisibleScorer(pyramid[0], points, weights, None, torch.device('cpu'),
                               chance_window=window).score(T)
        # Measured: 0.78 / 0.61 / 0.26 / 0.31 image-wide, 0.45 / 0.27 / -0.10 / -0.04 local
        # (0.4 m along the LiDAR's x, the viewing direction, is the hardest to tell).
        assert np.argmax(scores) == 0 and np.all(scores[1:] < scores[0] - 0.1)


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


def _offsets(T, rng, translation, rotation, count):
    """Return ``count`` hypotheses ``T @ delta`` with random LiDAR-frame offsets."""
    return np.stack([T @ make_transform(so3_exp(rng.uniform(-rotation, rotation, 3)),
                                        rng.uniform(-translation, translation, 3))
                     for _ in range(count)])


def test_visible_score_equals_the_occlusion_test_one_hypothesis_at_a_time(features):
    scene, pyramid, points, weights = features
    field = pyramid[0]
    occluders = scene.cloud.points[::7].astype(np.float64)
    T = _offsets(scene.T_cam_lidar, np.random.default_rng(2), 0.5, np.radians(3.0), 12)
    scores = VisibleScorer(field, points, weights, occluders, torch.device('cpu'),
                           cell=8.0).score(T)
    chance = np.mean(1.0 - field.cost / field.truncation)
    h, w = field.shape
    for k in range(len(T)):
        p = points @ T[k, :3, :3].T + T[k, :3, 3]
        o = occluders @ T[k, :3, :3].T + T[k, :3, 3]
        seen = visible(p, o, field.K, w, h, cell=8.0)
        cost, _, _ = edge_residuals(field, points, weights, T[k], False)
        expected = np.sum((weights * (1.0 - cost / field.truncation - chance))[seen])
        # The batched z-buffer lays its cells from the pixel centres, not the corners: a few
        # points on cell borders may differ.
        assert scores[k] == pytest.approx(expected / weights.sum(), abs=1e-3)


def test_visible_score_leaves_out_hidden_points_and_chance(features):
    scene, pyramid, points, weights = features
    field = pyramid[0]
    # A wall 2 m in front of the LiDAR across the whole view hides every edge point.
    y, z = np.meshgrid(np.linspace(-4, 4, 201), np.linspace(-2, 2, 101))
    wall = np.stack([np.full(y.size, 2.0), y.ravel(), z.ravel()], axis=1)
    T = scene.T_cam_lidar[None]
    cpu = torch.device('cpu')
    open_view = VisibleScorer(field, points, weights, np.zeros((0, 3)), cpu).score(T)[0]
    walled = VisibleScorer(field, points, weights, wall, cpu).score(T)[0]
    assert open_view > 0.4 and walled == pytest.approx(0.0, abs=1e-6)
    # Without the occlusion test, the points in view count; turned away, none are in view.
    unchecked = VisibleScorer(field, points, weights, None, cpu)
    away = scene.T_cam_lidar @ make_transform(so3_exp([0.0, 0.0, np.pi]), [0.0, 0.0, 0.0])
    assert unchecked.score(T)[0] >= open_view > 0.4
    assert unchecked.score(away[None])[0] == 0.0
    # Points dropped at random pixels gain what chance gives: about 0 on average.
    rng = np.random.default_rng(4)
    random = _offsets(scene.T_cam_lidar, rng, 3.0, np.radians(25.0), 64)
    assert abs(np.mean(unchecked.score(random))) < 0.1


def test_local_chance_discounts_regions_dense_with_edges(features):
    scene, pyramid, points, weights = features
    field = pyramid[0]
    # Every pixel of the left half an edge: points there match perfectly, by no merit.
    half = field.shape[1] // 2
    dense = field.cost.copy()
    dense[:, :half] = 0.0
    dense_field = dataclasses.replace(field, cost=dense)
    p = points @ scene.T_cam_lidar[:3, :3].T + scene.T_cam_lidar[:3, 3]
    u = field.K[0, 0] * p[:, 0] / p[:, 2] + field.K[0, 2]
    left = (p[:, 2] > 0.5) & (u >= 20) & (u < half - 20)
    assert left.sum() > 20
    T = scene.T_cam_lidar[None]

    def score(window):
        return VisibleScorer(dense_field, points[left], weights[left], None, torch.device('cpu'),
                             chance_window=window).score(T)[0]

    # Against the image-wide chance level they gain 1 - b each; against the local level of 31
    # pixels, nothing.
    b = np.mean(1.0 - dense / field.truncation)
    assert score(0) == pytest.approx(1.0 - b, abs=1e-4) and 1.0 - b > 0.3
    assert abs(score(31)) < 1e-4


def _planar_offsets(T_cam_lidar: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Return ``count`` hypotheses moved by up to 0.4 m and 2 deg on the ground plane."""
    rng = np.random.default_rng(seed)
    offsets = [make_transform(so3_exp([0.0, 0.0, a]), [x, y, 0.0]) for x, y, a in zip(
        rng.uniform(-0.4, 0.4, count), rng.uniform(-0.4, 0.4, count),
        rng.uniform(-np.radians(2.0), np.radians(2.0), count))]
    return np.stack([T_cam_lidar @ P for P in offsets])


def test_settling_moves_planar_offsets_onto_the_truth(features):
    scene, pyramid, points, weights = features
    T = _planar_offsets(scene.T_cam_lidar, 16, seed=5)
    search = PlanarSearch()
    edges = (EdgeChannel(pyramid, points, weights),)
    settled = search.settle_steps(edges, search.settle_steps(edges, T, level=1), level=0)
    before = np.median([rte(A, scene.T_cam_lidar) for A in T])
    after = np.median([rte(A, scene.T_cam_lidar) for A in settled])
    turned = np.median([rre_geodesic(A, scene.T_cam_lidar) for A in settled])
    # Settling is coarse (a few steps, Huber on the pixel grid); the LM refines from there.
    assert before > 0.3 and after < 0.1 and turned < 0.4
    # Steps stay on the ground plane: z, roll and pitch of the LiDAR motion do not change.
    delta = np.linalg.inv(T) @ settled
    np.testing.assert_allclose(delta[:, 2, 3], 0.0, atol=1e-4)
    np.testing.assert_allclose(delta[:, 2, 2], 1.0, atol=1e-6)


def test_settling_sums_the_pull_of_every_channel(features):
    scene, pyramid, points, weights = features
    T = _planar_offsets(scene.T_cam_lidar, 8, seed=6)
    rng = np.random.default_rng(7)
    search = PlanarSearch()
    edges = EdgeChannel(pyramid, points, weights)
    alone = search.settle_steps((edges,), T)
    # The same points twice pull twice as hard on a system twice as stiff: the same steps.
    np.testing.assert_allclose(search.settle_steps((edges, edges), T), alone, atol=1e-4)
    # Points of no weight pull nothing; a channel of them leaves the steps as they were.
    idle = EdgeChannel(pyramid, rng.uniform(-30, 30, (400, 3)), np.zeros(400))
    np.testing.assert_allclose(search.settle_steps((idle, edges), T), alone, atol=1e-4)
    # With the edge points in the second channel and nothing in the first, it is the second
    # channel that moves the hypotheses onto the truth.
    settled = search.settle_steps((idle, edges), search.settle_steps((idle, edges), T, 1), 0)
    assert np.median([rte(A, scene.T_cam_lidar) for A in T]) > 0.3
    assert np.median([rte(A, scene.T_cam_lidar) for A in settled]) < 0.1


def test_planar_search_relocalizes_from_any_yaw_and_metres_away():
    # The prior faces 150 deg away and stands 5 m off: only a search over the whole ground
    # plane finds the boards, and the refiner's score picks the truth among its starts.
    scene = make_scene(seed=2)
    refiner = EdgeRefiner(get_kernel('huber', 2.0))
    search = PlanarSearch(grid=(13, 13, 72), screen=2048, settle=512, keep=16)
    registrar = EdgeRegistrar(CannyEdges(), refiner, search)
    offset = make_transform(so3_exp([0.0, 0.0, np.radians(150.0)]), [4.0, -3.0, 0.0])
    prior = Prior(scene.T_cam_lidar @ offset, translation_range=[6.0, 6.0, 0.1],
                  rotation_range=[0.02, 0.02, np.pi])
    result = registrar.register(scene.image, scene.cloud, prior)
    assert result.status != Status.FAILED, result.reason
    assert rre_geodesic(result.T_cam_lidar, scene.T_cam_lidar) < 0.3
    assert rte(result.T_cam_lidar, scene.T_cam_lidar) < 0.05 and result.score > 0.9
    # All of the search's hypotheses were refined (its starts), besides the prior.
    assert search.starts == search.keep == 16 and registrar.candidates is None


def test_planar_ranking_counts_more_channels_with_the_edge_points(features):
    scene, pyramid, points, weights = features
    search = PlanarSearch(grid=(5, 5, 9), screen=64, settle=16, keep=16)
    prior = Prior(scene.T_cam_lidar, translation_range=[1.0, 1.0, 0.1],
                  rotation_range=np.radians([1.0, 1.0, 8.0]))
    T, scores = search.search(pyramid, points, weights, prior)
    # The same points once more as a channel of their own: they settle the same (up to
    # float32 rounding) and every score is the same mean.
    twin = EdgeChannel(pyramid, points, weights)
    T_twin, scores_twin = search.search(pyramid, points, weights, prior, more=(twin,))
    np.testing.assert_allclose(T_twin, T, atol=1e-4)
    np.testing.assert_allclose(scores_twin, scores, atol=1e-4)
    # A channel of points that match nothing pulls every score towards chance (0).
    rng = np.random.default_rng(2)
    stray = EdgeChannel(pyramid, rng.uniform(-30, 30, (400, 3)), np.ones(400))
    _, scores_stray = search.search(pyramid, points, weights, prior, more=(stray,))
    assert scores_stray[0] < 0.8 * scores[0]
