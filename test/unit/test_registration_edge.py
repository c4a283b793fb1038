"""Tests of the edge method: known answers, robustness, covariance, bad inputs, the factory."""

import cv2
from i2p_registration.core.geometry import make_transform, so3_exp
from i2p_registration.core.metrics import rre_geodesic, rte
from i2p_registration.core.registration.base import (Prior, publication_status,
                                                     RegistrationResult, Status)
from i2p_registration.core.registration.edge import EdgeRegistrar
from i2p_registration.core.registration.factory import get_registrar
from i2p_registration.core.registration.image_edges import (CannyEdges, cost_field, CostField,
                                                            get_edge_detector)
from i2p_registration.core.registration.kernels import get_kernel
from i2p_registration.core.registration.lidar_edges import (cross_line_edges, depth_edges,
                                                            scan_lines, ScanGeometry,
                                                            ScanLineError)
from i2p_registration.core.registration.refine import EdgeChannel, EdgeRefiner
from i2p_registration.core.registration.search import PoseSearch, SixDofSearch
from i2p_registration.core.sensors import CloudFrame, ImageFrame
import numpy as np
import pytest
from test_registration_scene import GROUND_Z, LANE_WIDTH, LANES_Y, make_scene, T_CAM_LIDAR

K = np.array([[400.0, 0, 319.5], [0, 400.0, 239.5], [0, 0, 1]])


def _segments_scene(seed=0, n_segments=40, per_segment=60):
    """Return 3D points on random segments (LiDAR frame) and a field of their GT projection."""
    rng = np.random.default_rng(seed)
    a = np.stack([rng.uniform(6, 25, n_segments), rng.uniform(-8, 8, n_segments),
                  rng.uniform(-1.5, 2, n_segments)], 1)
    b = a + rng.normal(0, 1.5, (n_segments, 3))
    t = np.linspace(0, 1, per_segment)[None, :, None]
    points = (a[:, None] + (b - a)[:, None] * t).reshape(-1, 3)
    # Rasterize the ground-truth projections 4x finer, then pool: edges to a quarter pixel.
    p = points @ T_CAM_LIDAR[:3, :3].T + T_CAM_LIDAR[:3, 3]
    dense = np.concatenate([a[:, None] + (b - a)[:, None] * np.linspace(0, 1, 2000)[None, :, None]
                            ]).reshape(-1, 3) @ T_CAM_LIDAR[:3, :3].T + T_CAM_LIDAR[:3, 3]
    uv = dense[:, :2] / dense[:, 2:] @ K[:2, :2].T + K[:2, 2]
    edges = np.zeros((480, 640), bool)
    ok = (dense[:, 2] > 0.5) & np.all((uv >= 0) & (uv < [639.5, 479.5]), 1)
    iu = np.round(uv[ok]).astype(int)
    edges[iu[:, 1], iu[:, 0]] = True
    keep = (p[:, 2] > 0.5)
    return points[keep], cost_field(edges, K, 10.0, 0.7, 1.0)


def _perturbed(rng, deg, metres):
    P = make_transform(so3_exp(np.radians(rng.uniform(-deg, deg, 3))),
                       rng.uniform(-metres, metres, 3))
    return P @ T_CAM_LIDAR


def test_refiner_recovers_the_pose_from_noise_free_edges():
    points, field = _segments_scene()
    refiner = EdgeRefiner(get_kernel('huber', 2.0), occlusion_cell=0, max_iterations=60)
    rng = np.random.default_rng(0)
    for _ in range(3):
        T0 = _perturbed(rng, 1.0, 0.1)
        out = refiner.refine([field], points, np.ones(len(points)), points[:0], T0)
        assert out.converged
        # From 1 deg / 10 cm to the rasterization limit of the edge map (about a tenth of a
        # pixel, 0.015 deg at f = 400 px).
        assert rre_geodesic(out.T, T_CAM_LIDAR) < 0.1
        assert rte(out.T, T_CAM_LIDAR) < 0.025


def _segments_and_outliers():
    """Return the segment points with 600 outliers, their field and a start 1 deg / 10 cm off."""
    points, field = _segments_scene(seed=1)
    rng = np.random.default_rng(1)
    outliers = np.stack([rng.uniform(6, 25, 600), rng.uniform(-8, 8, 600),
                         rng.uniform(-1.5, 2, 600)], 1)
    return np.concatenate([points, outliers]), field, _perturbed(rng, 1.0, 0.1)


def test_robust_kernels_withstand_outlier_edge_points():
    mixed, field, T0 = _segments_and_outliers()
    errors = {}
    for name in ('none', 'huber', 'cauchy'):
        refiner = EdgeRefiner(get_kernel(name, 1.0), occlusion_cell=0, max_iterations=60)
        out = refiner.refine([field], mixed, np.ones(len(mixed)), mixed[:0], T0)
        errors[name] = (rre_geodesic(out.T, T_CAM_LIDAR), rte(out.T, T_CAM_LIDAR))
    assert errors['cauchy'][0] < 0.1 and errors['cauchy'][1] < 0.02
    assert errors['huber'][0] < 0.2
    assert errors['none'][0] > errors['cauchy'][0]


def test_covariance_shrinks_with_more_points():
    points, field = _segments_scene(seed=2)
    refiner = EdgeRefiner(get_kernel('huber', 2.0), occlusion_cell=0)
    T0 = _perturbed(np.random.default_rng(2), 0.5, 0.05)
    single = refiner.refine([field], points, np.ones(len(points)), points[:0], T0)
    double = refiner.refine([field], np.concatenate([points, points]),
                            np.ones(2 * len(points)), points[:0], T0)
    ratio = np.diag(double.covariance) / np.diag(single.covariance)
    np.testing.assert_allclose(ratio, 0.5, rtol=0.1)
    assert np.all(np.linalg.eigvalsh(single.covariance) > 0)


@pytest.fixture(scope='module')
def scene():
    return make_scene(seed=0)


def test_register_refines_the_board_scene(scene):
    registrar = EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)))
    rng = np.random.default_rng(5)
    rot, trans = [], []
    for _ in range(4):
        P = make_transform(so3_exp(np.radians(rng.uniform(-3, 3, 3))), rng.uniform(-0.3, 0.3, 3))
        result = registrar.register(scene.image, scene.cloud, Prior(scene.T_cam_lidar @ P))
        assert result.status != Status.FAILED, result.reason
        rot.append(rre_geodesic(result.T_cam_lidar, scene.T_cam_lidar))
        trans.append(rte(result.T_cam_lidar, scene.T_cam_lidar))
        assert result.score > 0.8 and 0.0 <= result.inlier_ratio <= 1.0
        assert set(result.timings) >= {'image_features', 'lidar_features', 'refine', 'total'}
        assert result.covariance.shape == (6, 6) and np.all(np.isfinite(result.covariance))
    assert np.median(rot) < 0.4 and np.median(trans) < 0.08


class _MisleadingSearch(SixDofSearch):
    """A search whose every hypothesis is one fixed wrong pose."""

    def __init__(self, wrong):
        super().__init__()
        self.wrong = wrong

    def search(self, pyramid, points, weights, prior, occluders=None, more=()):
        return np.repeat(self.wrong[None], 4, axis=0), np.ones(4)


def test_the_prior_is_refined_besides_the_search_candidates(scene):
    # A search that only proposes a pose 8 deg / 0.4 m off (refined alone, it diverges) cannot
    # drag the result away from a prior near the truth: the prior is a start too, and the
    # better refined score wins.
    wrong = scene.T_cam_lidar @ make_transform(so3_exp(np.radians([0.0, 0.0, 8.0])),
                                               [0.4, 0.0, 0.0])
    near = scene.T_cam_lidar @ make_transform(so3_exp(np.radians([0.5, -0.5, 0.5])),
                                              [0.05, -0.05, 0.05])
    refiner = EdgeRefiner(get_kernel('huber', 2.0))
    from_wrong = EdgeRegistrar(CannyEdges(), refiner).register(
        scene.image, scene.cloud, Prior(wrong, 0.5, np.radians(10.0)))
    assert from_wrong.status == Status.FAILED and 'diverged' in from_wrong.reason
    registrar = EdgeRegistrar(CannyEdges(), refiner, _MisleadingSearch(wrong))
    result = registrar.register(scene.image, scene.cloud, Prior(near, 0.5, np.radians(10.0)))
    assert result.status == Status.OK, result.reason
    assert rre_geodesic(result.T_cam_lidar, scene.T_cam_lidar) < 0.3
    assert rte(result.T_cam_lidar, scene.T_cam_lidar) < 0.05
    assert result.score > 0.8
    # Without a refiner the search's best hypothesis is the result as it stands.
    searched = EdgeRegistrar(CannyEdges(), None, _MisleadingSearch(wrong)).register(
        scene.image, scene.cloud, Prior(near, 0.5, np.radians(10.0)))
    np.testing.assert_allclose(searched.T_cam_lidar, wrong)
    with pytest.raises(ValueError, match='candidates must be >= 0'):
        EdgeRegistrar(CannyEdges(), refiner, candidates=-1)


def test_depth_edges_are_foreground_silhouettes(scene):
    edges = depth_edges(scene.cloud.points, scene.cloud.ring)
    r = np.linalg.norm(scene.cloud.points[edges.index], axis=1)
    # Boards stand 5-25 m away in front of a wall at 45 m: every depth edge is on a board.
    assert len(edges) > 100 and r.max() < 30.0
    assert np.all((edges.weight > 0) & (edges.weight <= 1))
    np.testing.assert_allclose(np.linalg.norm(edges.points, axis=1), r, rtol=1e-6)


def _failed(result: RegistrationResult, words: str):
    assert result.status == Status.FAILED
    assert words in result.reason
    assert np.all(np.isnan(result.T_cam_lidar)) and np.all(np.isnan(result.covariance))
    assert not result.ok and 'total' in result.timings


def test_bad_inputs_fail_with_a_reason(scene):
    registrar = EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)))
    prior = Prior(scene.T_cam_lidar)
    empty = CloudFrame(np.zeros((0, 3), np.float32), 0, 'lidar')
    _failed(registrar.register(scene.image, empty, prior), 'empty cloud')
    nan_points = scene.cloud.points.copy()
    nan_points[5] = np.nan
    _failed(registrar.register(scene.image, CloudFrame(nan_points, 0, 'lidar'), prior), 'NaN')
    _failed(registrar.register(scene.image, scene.cloud, None), 'needs a prior')
    _failed(registrar.register(scene.image, scene.cloud, Prior(np.full((4, 4), np.nan))), 'NaN')
    backwards = scene.T_cam_lidar @ make_transform(so3_exp([0, 0, np.pi]), np.zeros(3))
    _failed(registrar.register(scene.image, scene.cloud, Prior(backwards)), 'in the camera view')
    blank = ImageFrame(np.full_like(scene.image.image, 90), 0, 'camera', scene.image.camera)
    _failed(registrar.register(blank, scene.cloud, prior), 'no edges in the image')
    flat = CloudFrame(np.array([[10.0, y, 0.0] for y in np.linspace(-2, 2, 50)], np.float32),
                      0, 'lidar')
    _failed(registrar.register(scene.image, flat, prior), 'no depth edges')


def test_edges_out_of_reach_make_a_singular_system(scene):
    corner = np.zeros_like(scene.image.image)
    corner[:6, :6] = 255       # the only image edge, far from every projected LiDAR edge
    image = ImageFrame(corner, 0, 'camera', scene.image.camera)
    registrar = EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)),
                              pyramid_levels=1)
    _failed(registrar.register(image, scene.cloud, Prior(scene.T_cam_lidar)), 'singular')


def test_wrong_types_are_programming_errors(scene):
    registrar = EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)))
    with pytest.raises(ValueError, match='ImageFrame'):
        registrar.register(scene.image.image, scene.cloud, None)
    with pytest.raises(ValueError, match='Prior'):
        registrar.register(scene.image, scene.cloud, np.eye(4))
    with pytest.raises(ValueError, match='EdgeDetector'):
        EdgeRegistrar('canny')
    with pytest.raises(ValueError, match='search, a refiner'):
        EdgeRegistrar(CannyEdges())


def test_factory_builds_from_config_names():
    registrar = get_registrar('edge', refine=True, device='cpu')
    assert isinstance(registrar, EdgeRegistrar) and registrar.search is not None
    assert registrar.refiner is not None and registrar.name == 'edge'
    assert get_registrar('edge', refine=True, device='auto', search=None).search is None
    with pytest.raises(ValueError, match='unknown or unavailable'):
        get_registrar('ray')
    with pytest.raises(ValueError, match='device'):
        get_registrar('edge', device='tpu')


def _pole_scan(columns=720, rings=8, order='rings'):
    """Return a ring-less scan: a wall at 30 m with a 0.3 m pole at 10 m and a gap (no return)."""
    elevation = np.radians(np.linspace(-5.0, 5.0, rings))
    azimuth = np.radians(np.linspace(-30.0, 30.0, columns))
    el, az = np.meshgrid(elevation, azimuth, indexing='ij')
    if order == 'columns':
        el, az = el.T, az.T
    el, az = el.reshape(-1), az.reshape(-1)
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
    r = np.full(len(dirs), 30.0)
    pole = np.abs(np.tan(az) * 10.0 - 1.0) < 0.15
    r[pole] = 10.0 / np.cos(az[pole])
    missing = np.abs(np.degrees(az) + 15.0) < 2.0        # a hole in the wall (sky)
    return (dirs * r[:, None])[~missing].astype(np.float32), pole[~missing]


@pytest.mark.parametrize('order', ['rings', 'columns'])
def test_depth_edges_find_thin_poles_and_hole_borders_without_ring(order):
    points, pole = _pole_scan(order=order)
    edges = depth_edges(points)
    r = np.linalg.norm(points[edges.index], axis=1)
    # Both sides of the pole on every ring (the pole is 0.3 m wide: a few beams), and the wall
    # points next to the hole, which count as silhouettes against an infinitely far background.
    assert np.sum(r < 15.0) == 2 * 8
    assert np.sum(r > 15.0) == 2 * 8
    assert np.all(pole[edges.index[r < 15.0]])


def test_scan_lines_of_tilted_and_unordered_scans():
    points, _ = _pole_scan(order='columns')
    tilt = make_transform(so3_exp(np.radians([3.0, -2.0, 1.0])), np.zeros(3))
    tilted = points @ tilt[:3, :3].T.astype(np.float32)
    edges = depth_edges(tilted)
    # Lines are clustered per 2 deg azimuth sector there, and end at the sector borders: most,
    # not all, silhouettes survive.
    assert len(edges) >= 8 and np.sum(np.linalg.norm(edges.points, axis=1) < 15.0) >= 8
    rng = np.random.default_rng(0)
    with pytest.raises(ScanLineError, match='ring field'):
        scan_lines(rng.normal(size=(3000, 3)) * 10.0)


def test_ringless_unordered_scan_fails_with_a_reason(scene):
    registrar = EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)))
    rng = np.random.default_rng(0)
    noise = CloudFrame((rng.normal(size=(4000, 3)) * 10.0).astype(np.float32), 0, 'lidar')
    _failed(registrar.register(scene.image, noise, Prior(scene.T_cam_lidar)), 'ring field')


def test_oriented_canny_keeps_edges_that_cross_the_rows():
    image = np.zeros((100, 100), np.uint8)
    image[:, 50:] = 200          # a vertical edge (gradient along the rows)
    image[70:, :] = 100          # a horizontal edge (gradient along the columns)
    all_edges = CannyEdges().detect(image)
    oriented = CannyEdges(max_gradient_angle=np.radians(30.0)).detect(image)
    assert all_edges[30, :].sum() >= 1 and all_edges[:, 20].sum() >= 1
    assert oriented[30, 45:55].any() and not oriented[65:75, 20].any()
    assert get_edge_detector('canny').max_gradient_angle == pytest.approx(np.radians(30.0))


def _median_errors(scene, intensity_threshold, trials=6, marking_weight=0.0):
    registrar = EdgeRegistrar(get_edge_detector('canny'), EdgeRefiner(get_kernel('huber', 2.0)),
                              intensity_threshold=intensity_threshold,
                              marking_weight=marking_weight)
    rng = np.random.default_rng(11)
    rot, trans = [], []
    for _ in range(trials):
        P = make_transform(so3_exp(np.radians(rng.uniform(-2, 2, 3))), rng.uniform(-0.4, 0.4, 3))
        result = registrar.register(scene.image, scene.cloud, Prior(scene.T_cam_lidar @ P))
        assert result.status != Status.FAILED, result.reason
        rot.append(rre_geodesic(result.T_cam_lidar, scene.T_cam_lidar))
        trans.append(rte(result.T_cam_lidar, scene.T_cam_lidar))
    return np.median(rot), np.median(trans)


def test_intensity_edges_come_from_steep_paint_borders():
    # Two-tone boards: a vertical paint border in the middle of each board, no depth step.
    scene = make_scene(seed=3, two_tone=True)
    edges = depth_edges(scene.cloud.points, scene.cloud.ring, scene.cloud.intensity,
                        intensity_threshold=0.3)
    painted = scene.cloud.points[edges.index[~edges.depth]]
    assert len(painted) > 50
    # Each lies on a board's centre line (the border), 5-25 m away, above the ground.
    centres = np.array([b[0] for b in scene.boards])
    gap = np.linalg.norm(painted[:, None, :2] - centres[None, :, :2], axis=2).min(axis=1)
    assert np.mean(gap < 0.1) > 0.9 and np.all(painted[:, 2] > -1.6)
    # The paint borders are image edges too: without their LiDAR counterparts they only
    # mislead the silhouettes (measured 0.51 deg / 0.18 m against 0.35 deg / 0.11 m).
    rot_on, trans_on = _median_errors(scene, 0.3)
    rot_off, trans_off = _median_errors(scene, 0.0)
    assert rot_on < 0.8 * rot_off and trans_on < 0.8 * trans_off


def test_ground_markings_are_flat_intensity_edges_matched_in_every_orientation():
    # Lane lines project to slanted image edges that the oriented edge map drops: as steep
    # intensity edges they would pull the pose (without the steepness test 4 of 6 of these
    # refinements diverged). They are markings instead, matched against the edges of every
    # orientation.
    scene = make_scene(seed=3, stripes=True)
    args = (scene.cloud.points, scene.cloud.ring, scene.cloud.intensity)
    steep = depth_edges(*args, intensity_threshold=0.3)
    assert np.count_nonzero(~steep.depth) == 0 and not steep.flat.any()
    edges = depth_edges(*args, intensity_threshold=0.3, flat_intensity=True)
    np.testing.assert_array_equal(edges.index[~edges.flat], steep.index)
    markings = edges.points[edges.flat]
    assert len(markings) > 300 and not edges.depth[edges.flat].any()
    # On the ground, on the borders of the painted lanes.
    np.testing.assert_allclose(markings[:, 2], GROUND_Z, atol=0.01)
    border = np.abs(np.abs(markings[:, 1:2] - np.array(LANES_Y)) - LANE_WIDTH / 2).min(axis=1)
    assert np.mean(border < 0.1) > 0.9
    # Without markings the paint changes nothing; with them the rotation error halves.
    # Measured (median of 6, start 2 deg / 0.4 m off): 0.46 deg / 1.3 cm without, 0.21 deg /
    # 1.7 cm at weight 1.
    rot_off, trans_off = _median_errors(scene, 0.3)
    assert (rot_off, trans_off) == _median_errors(scene, 0.0)
    rot_on, trans_on = _median_errors(scene, 0.3, marking_weight=1.0)
    assert rot_on < 0.6 * rot_off and trans_on < 0.03
    # The search gets them as a channel of their own, against all edges.
    search = _RecordingSearch(samples=64, refine_samples=16)
    registrar = EdgeRegistrar(CannyEdges(max_gradient_angle=np.radians(30.0)),
                              EdgeRefiner(get_kernel('huber', 2.0)), search,
                              intensity_threshold=0.3, marking_weight=1.0)
    registrar.register(scene.image, scene.cloud, Prior(scene.T_cam_lidar))
    (channel,) = search.more
    assert len(channel.points) > 100 and np.all(channel.weights == 0.5)
    np.testing.assert_allclose(channel.points[:, 2], GROUND_Z, atol=0.01)
    # A scan of one intensity shows no markings: it gets no channel (and no cost pyramid is
    # built for one).
    cloud = scene.cloud
    uniform = CloudFrame(cloud.points, cloud.stamp_ns, cloud.frame_id,
                         np.full_like(cloud.intensity, 0.5), cloud.ring)
    result = registrar.register(scene.image, uniform, Prior(scene.T_cam_lidar))
    assert result.status == Status.OK and search.more == ()


class _RecordingSearch(SixDofSearch):
    """The default search, keeping the point weights it was given."""

    def search(self, pyramid, points, weights, prior, occluders=None, more=()):
        self.weights, self.more = weights.copy(), more
        return super().search(pyramid, points, weights, prior, occluders, more)


class _GivenSearch(PoseSearch):
    """A search that returns the hypotheses it was given."""

    def __init__(self, T):
        super().__init__(keep=len(T), starts=len(T))
        self.T = np.asarray(T)

    def search(self, pyramid, points, weights, prior, occluders=None, more=()):
        return self.T, np.zeros(len(self.T))


class _CountingRefiner(EdgeRefiner):
    """The refiner, keeping the levels of each call."""

    def refine(self, *args, levels=None, **kwargs):
        self.calls.append(None if levels is None else list(levels))
        return super().refine(*args, levels=levels, **kwargs)


def test_starts_that_meet_on_the_coarsest_level_are_refined_once():
    scene = make_scene(seed=1)
    prior = Prior(scene.T_cam_lidar @ make_transform(so3_exp(np.radians([1.0, -1.0, 0.5])),
                                                     [0.2, -0.1, 0.1]))
    results = []
    for hypotheses in ([], [prior.T_cam_lidar] * 3):
        refiner = _CountingRefiner(get_kernel('huber', 2.0))
        refiner.calls = []
        search = _GivenSearch(hypotheses) if hypotheses else None
        registrar = EdgeRegistrar(CannyEdges(), refiner, search)
        results.append(registrar.register(scene.image, scene.cloud, prior))
        # Every start runs the coarsest level (2); only the first goes on to the finer ones.
        assert refiner.calls == [[2], [1, 0]] + [[2]] * len(hypotheses), refiner.calls
    # Four copies of one start give what the one start gives, closer than the start (1.5 deg).
    np.testing.assert_array_equal(results[1].T_cam_lidar, results[0].T_cam_lidar)
    assert rre_geodesic(results[0].T_cam_lidar, scene.T_cam_lidar) < 0.75


def test_intensity_edges_refine_but_do_not_search():
    scene = make_scene(seed=3, two_tone=True)
    search = _RecordingSearch(samples=64, refine_samples=16)
    registrar = EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)), search,
                              intensity_threshold=0.3)
    result = registrar.register(scene.image, scene.cloud, Prior(scene.T_cam_lidar))
    assert result.status == Status.OK, result.reason
    edges = depth_edges(scene.cloud.points, scene.cloud.ring, scene.cloud.intensity,
                        intensity_threshold=0.3)
    n_intensity = int(np.sum(~edges.depth))
    assert n_intensity > 20
    # Every intensity edge point in view weighs 0 in the search; depth edges keep their weight.
    zero = int(np.sum(search.weights == 0))
    assert 0 < zero <= n_intensity
    assert np.all(search.weights[search.weights > 0] >= np.min(edges.weight[edges.depth]))


def test_intensity_edge_parameters_are_validated():
    with pytest.raises(ValueError, match='intensity_threshold'):
        EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)),
                      intensity_threshold=-0.1)
    with pytest.raises(ValueError, match='intensity_weight'):
        EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)), intensity_weight=0.0)
    # 0.3 by default (registration.intensity_threshold), passed through the factory.
    assert get_registrar('edge', device='cpu').intensity_threshold == 0.3
    assert get_registrar('edge', device='cpu', intensity_threshold=0.0).intensity_threshold == 0.0
    with pytest.raises(ValueError, match='marking_weight'):
        EdgeRegistrar(CannyEdges(), EdgeRefiner(get_kernel('huber', 2.0)), marking_weight=-1.0)
    # Markings need intensity edges and a refinement.
    assert get_registrar('edge', device='cpu').use_markings
    assert not get_registrar('edge', device='cpu', intensity_threshold=0.0).use_markings
    assert not get_registrar('edge', device='cpu', refine=False).use_markings


def _board_scan(rings=16, columns=1440, sky_above=False):
    """Return a ring-less scan of a 10 m board (top at 0.9 deg elevation) before a 30 m wall."""
    elevation = np.radians(np.linspace(-4.0, 5.0, rings))          # 0.6 deg apart
    azimuth = np.radians(np.linspace(-30.0, 30.0, columns))
    el, az = (a.reshape(-1) for a in np.meshgrid(elevation, azimuth, indexing='ij'))
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
    board = (np.abs(np.degrees(az)) < 10.0) & (np.degrees(el) < 0.9)
    r = np.where(board, 10.0 / (np.cos(az) * np.cos(el)), 30.0)
    # The sky: no returns above the board and beside it, the wall further out.
    keep = ~(sky_above & (np.degrees(el) > 0.9) & (np.abs(np.degrees(az)) < 15.0))
    return (dirs * r[:, None])[keep].astype(np.float32), board[keep], np.degrees(elevation)


@pytest.mark.parametrize('sky_above', [False, True])
def test_cross_line_edges_find_the_top_of_a_board(sky_above):
    points, board, elevations = _board_scan(sky_above=sky_above)
    edges = cross_line_edges(points)
    r = np.linalg.norm(points[edges.index], axis=1)
    on_board = edges.index[r < 15.0]
    # Every board column's highest return (at 0.8 deg) is a top edge; nothing else on the board.
    top = elevations[elevations < 0.9].max()
    assert np.all(board[on_board]) and len(on_board) == np.sum(
        board & np.isclose(np.degrees(np.arcsin(points[:, 2] / np.linalg.norm(points, axis=1))),
                           top, atol=1e-3))
    # Moved half way towards the next line up, at the board's range; full weight (2 m jump or
    # the sky).
    moved = edges.points[r < 15.0]
    elevation = np.degrees(np.arcsin(moved[:, 2] / np.linalg.norm(moved, axis=1)))
    np.testing.assert_allclose(elevation, top + 0.3, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), r[r < 15.0], rtol=1e-6)
    assert np.all(edges.weight[r < 15.0] == 1.0)
    # The wall's borders with the board are sides, not tops; beside the board, under the sky,
    # its highest returns are tops.
    wall = points[edges.index[r > 15.0]]
    if not sky_above:
        assert len(wall) == 0
    else:
        wall_azimuth = np.degrees(np.abs(np.arctan2(wall[:, 1], wall[:, 0])))
        assert len(wall) > 200 and np.all((wall_azimuth > 10.0) & (wall_azimuth < 15.0))


def test_cross_line_edges_skip_the_ground():
    # Flat ground seen by 16 lines: the lines recede by more than the jump threshold, but the
    # line below is as much nearer (a surface seen at a grazing angle, not a silhouette).
    elevation = np.radians(np.linspace(-15.0, -2.0, 16))
    azimuth = np.radians(np.linspace(-30.0, 30.0, 720))
    el, az = (a.reshape(-1) for a in np.meshgrid(elevation, azimuth, indexing='ij'))
    r = 1.7 / np.sin(-el)
    points = np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el)],
                      1)
    assert len(cross_line_edges(points.astype(np.float32))) == 0


def test_sides_and_tops_split_the_canny_edges_by_orientation():
    image = np.zeros((100, 100), np.uint8)
    image[:, 50:] = 200          # a vertical edge
    image[70:, :] = 100          # a horizontal edge
    cv2.line(image, (5, 5), (40, 40), 250, 2)   # a diagonal one: in neither map
    edges, sides, tops = CannyEdges(max_gradient_angle=np.radians(30.0)).detect_oriented(image)
    assert sides[30, 45:55].any() and not sides[65:75, 20].any()
    assert tops[65:75, 20].any() and not tops[30, 45:55].any()
    assert not (sides | tops)[18:28, 18:28].any() and edges[18:28, 18:28].any()
    np.testing.assert_array_equal(edges & ~(sides | tops), edges & ~sides & ~tops)
    assert np.all(edges[sides | tops])
    np.testing.assert_array_equal(
        sides, CannyEdges(max_gradient_angle=np.radians(30.0)).detect(image))
    every = CannyEdges().detect_oriented(image)
    np.testing.assert_array_equal(every[0], every[1])
    np.testing.assert_array_equal(every[0], every[2])
    np.testing.assert_array_equal(every[0], edges)


def _line_segments(rng, n, vertical):
    """Return points on ``n`` vertical (or horizontal) 2 m segments and their edge field."""
    start = np.stack([rng.uniform(6, 25, n), rng.uniform(-8, 8, n), rng.uniform(-1.5, 1, n)], 1)
    step = np.array([0.0, 0.0, 2.0]) if vertical else np.array([0.0, 2.0, 0.0])
    # The image edges run on beyond the points: no segment end tells where the points belong.
    dense = start[:, None] + step * np.linspace(-1, 2, 6000)[None, :, None]
    p = dense.reshape(-1, 3) @ T_CAM_LIDAR[:3, :3].T + T_CAM_LIDAR[:3, 3]
    uv = p[:, :2] / p[:, 2:] @ K[:2, :2].T + K[:2, 2]
    edges = np.zeros((480, 640), bool)
    ok = (p[:, 2] > 0.5) & np.all((uv >= 0) & (uv < [639.5, 479.5]), 1)
    iu = np.round(uv[ok]).astype(int)
    edges[iu[:, 1], iu[:, 0]] = True
    points = dense[:, 2000:4000:40].reshape(-1, 3)
    return points, cost_field(edges, K, 10.0, 0.7, 1.0)


def test_tops_fix_the_pitch_that_sides_leave_open():
    # Vertical silhouettes (sides) say nothing about a small pitch or height change: their
    # points slide along their image edges. Horizontal ones (tops) pin both.
    rng = np.random.default_rng(4)
    sides, side_field = _line_segments(rng, 30, vertical=True)
    tops, top_field = _line_segments(rng, 30, vertical=False)
    refiner = EdgeRefiner(get_kernel('huber', 2.0), occlusion_cell=0, max_iterations=60)
    pitch = make_transform(so3_exp(np.array([np.radians(0.8), 0.0, 0.0])), [0.0, 0.05, 0.0])
    T0 = pitch @ T_CAM_LIDAR
    alone = refiner.refine([side_field], sides, np.ones(len(sides)), sides[:0], T0)
    both = refiner.refine([side_field], sides, np.ones(len(sides)), sides[:0], T0,
                          more=(EdgeChannel([top_field], tops, np.ones(len(tops))),))
    # Measured: sides alone end 0.43 deg / 22 cm away (from 0.8 deg / 5 cm), with tops 0.07 deg /
    # 1.4 cm (the rasterized edges' limit).
    assert rre_geodesic(alone.T, T_CAM_LIDAR) > 0.3 and rte(alone.T, T_CAM_LIDAR) > 0.1
    assert rre_geodesic(both.T, T_CAM_LIDAR) < 0.1 and rte(both.T, T_CAM_LIDAR) < 0.02
    with pytest.raises(ValueError, match='levels'):
        refiner.refine([side_field], sides, np.ones(len(sides)), sides[:0], T0,
                       more=(EdgeChannel([top_field, top_field], tops, np.ones(len(tops))),))


def test_a_final_cauchy_pass_stops_the_outliers_pull():
    mixed, field, T0 = _segments_and_outliers()
    errors = {}
    for name, final in (('huber', None), ('huber+cauchy', get_kernel('cauchy', 2.0))):
        refiner = EdgeRefiner(get_kernel('huber', 2.0), occlusion_cell=0, max_iterations=60,
                              final_kernel=final)
        out = refiner.refine([field], mixed, np.ones(len(mixed)), mixed[:0], T0)
        errors[name] = (rre_geodesic(out.T, T_CAM_LIDAR), rte(out.T, T_CAM_LIDAR))
    # Measured: 0.056 deg / 2.1 cm with Huber alone, 0.041 deg / 1.1 cm with the Cauchy pass.
    assert errors['huber+cauchy'][0] < 0.8 * errors['huber'][0]
    assert errors['huber+cauchy'][1] < 0.6 * errors['huber'][1]


def test_tops_weigh_less_on_sparser_lidars():
    registrar = get_registrar('edge', device='cpu')
    weights = {}
    for spacing in (0.2, 0.35, 0.7, 1.4):
        elevation = np.radians(np.arange(16) * spacing - 10.0)
        azimuth = np.radians(np.linspace(-30.0, 30.0, 360))
        el, az = (a.reshape(-1) for a in np.meshgrid(elevation, azimuth, indexing='ij'))
        points = 20.0 * np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], 1)
        weights[spacing] = registrar.top_weight_of(ScanGeometry.of(points))
    # Inverse variance of the half-way placement, full weight up to 0.35 deg apart.
    assert weights[0.2] == registrar.top_weight == 0.5
    assert weights[0.35] == pytest.approx(0.5, rel=1e-6)
    assert weights[0.7] == pytest.approx(0.5 / 4, rel=1e-3)
    assert weights[1.4] == pytest.approx(0.5 / 16, rel=1e-3)


def test_estimates_outside_the_prior_ranges_are_not_published(scene):
    prior = Prior(scene.T_cam_lidar, 0.5, np.radians(5.0))
    near = scene.T_cam_lidar @ make_transform(so3_exp(np.radians([0.0, 4.9, 0.0])),
                                              [0.49, 0.0, 0.0])
    far = scene.T_cam_lidar @ make_transform(so3_exp(np.radians([0.0, 0.0, 6.0])),
                                             [0.0, 0.55, 0.0])
    assert prior.outside(near) == ''
    assert prior.outside(far) == ('0.55 m along LiDAR y (range 0.50), '
                                  '6.0 deg about LiDAR z (range 5.0)')

    def result(T, score=0.9, status=Status.OK):
        return RegistrationResult(T, np.eye(6), score, 0.9, status, '', 'test')
    assert publication_status(result(near), prior, 0.4) == (Status.OK, '')
    status, reason = publication_status(result(far), prior, 0.4)
    assert status == Status.LOW_CONFIDENCE
    assert reason.startswith("estimate outside the prior's ranges: 0.55 m along LiDAR y")
    # Without a prior there is nothing to compare with; the score and finiteness still count.
    assert publication_status(result(far), None, 0.4) == (Status.OK, '')
    assert publication_status(result(near, score=0.3), prior, 0.4) == (
        Status.LOW_CONFIDENCE, 'score 0.300 below registration.min_score 0.400')
    assert publication_status(result(np.full((4, 4), np.nan)), prior, 0.4) == (
        Status.FAILED, 'estimate is not finite')
    failed = RegistrationResult.failure('test', 'no edges')
    assert publication_status(failed, prior, 0.4) == (Status.FAILED, 'no edges')


def test_cost_field_sampling_is_bilinear_and_truncates_outside():
    from scipy.ndimage import map_coordinates
    rng = np.random.default_rng(5)
    h, w = 30, 50
    cost = rng.uniform(0, 8, (h, w)).astype(np.float32)
    grad = rng.normal(size=(2, h, w)).astype(np.float32)
    field = CostField(cost, grad, K, 8.0, 1.0)
    uv = np.concatenate([rng.uniform([0, 0], [w - 1, h - 1], (200, 2)),
                         [[0, 0], [w - 1, h - 1], [w - 1, 0], [-0.1, 5], [5, h - 0.9], [60, 3]]])
    c, g = field.sample(uv)
    inside = np.arange(len(uv)) < 203
    rows_cols = uv[inside, ::-1].T
    np.testing.assert_allclose(c[inside], map_coordinates(cost, rows_cols, order=1), atol=1e-5)
    for k in range(2):
        np.testing.assert_allclose(g[inside, k], map_coordinates(grad[k], rows_cols, order=1),
                                   atol=1e-5)
    assert np.all(c[~inside] == 8.0) and np.all(g[~inside] == 0.0)
    np.testing.assert_array_equal(field.sample(uv, gradient=False)[0], c)
