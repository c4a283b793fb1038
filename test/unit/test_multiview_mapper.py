"""The online multiview mapper, its voxel map and files, and its odometry history (no ROS)."""

from i2p_registration.core.geometry.rotations import geodesic_angle, so3_exp
from i2p_registration.core.geometry.se3 import inverse, make_transform
from i2p_registration.core.multiview.config import MultiviewNodeConfig
from i2p_registration.core.multiview.evaluation import align_gauge
from i2p_registration.core.multiview.map_files import (read_tum, voxel_downsample,
                                                       write_point_cloud, write_tum)
from i2p_registration.core.multiview.mapper import make_mapper
from i2p_registration.core.multiview.pose_history import chain_transform, PoseHistory
from i2p_registration.data.odometry import simulate_odometry
from i2p_registration.data.simulator import RNG_ODOM, Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
import numpy as np
import open3d as o3d
import pytest

SEED = 3
N_SCANS = 14
SCAN_PERIOD_NS = 400_000_000
FLAT = {'keyframes.min_distance': 5.0}


class Segment:
    """The first 5.2 s of a synthetic drive: 14 scans 3.2 m apart, odometry, ground truth."""

    def __init__(self):
        cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'lidar.preset': 'hdl64',
                                           'lidar.columns': 360,
                                           'world.block_size': [30.0, 40.0]})
        sim = Simulator(cfg, SEED)
        self.stamps = sim.start_ns + SCAN_PERIOD_NS * np.arange(N_SCANS + 1, dtype=np.int64)
        self.scans = [sim.scan(int(s), k).points for k, s in enumerate(self.stamps)]
        odom = simulate_odometry(sim.trajectory, sim.seconds(self.stamps), self.stamps,
                                 cfg.odometry, sim.rng(RNG_ODOM))
        self.T_odom_lidar = odom.T_odom_base @ sim.T_base_lidar
        self.truth = dict(zip(self.stamps.tolist(), sim.T_map_lidar(self.stamps)))


@pytest.fixture(scope='module')
def segment():
    return Segment()


def _mapper(**flat):
    return make_mapper(MultiviewNodeConfig.from_flat({**FLAT, **flat}))


def _rmse(snapshot, segment) -> float:
    truth = np.stack([segment.truth[int(s)] for s in snapshot.stamps_ns])
    aligned = align_gauge(snapshot.poses, truth)
    return float(np.sqrt(np.mean(np.sum((aligned[:, :3, 3] - truth[:, :3, 3]) ** 2, axis=1))))


@pytest.fixture(scope='module')
def mapped(segment):
    """Return a mapper fed the first ``N_SCANS`` scans with odometry, and the outcomes."""
    mapper = _mapper(**{'odometry.source': 'odom'})
    outcomes = [mapper.add_scan(segment.scans[k], segment.stamps[k], segment.T_odom_lidar[k])
                for k in range(N_SCANS)]
    return mapper, outcomes


# --- voxel map and files -------------------------------------------------------------------

def test_voxel_downsample_keeps_one_centroid_per_voxel():
    points = np.array([[0.1, 0.1, 0.1], [0.3, 0.3, 0.3], [1.2, 0.1, 0.1], [-0.1, 0.0, 0.0]])
    out = voxel_downsample(points, 0.5)
    expected = np.array([[-0.1, 0.0, 0.0], [0.2, 0.2, 0.2], [1.2, 0.1, 0.1]], np.float32)
    np.testing.assert_allclose(out[np.lexsort(out.T[::-1])], expected, atol=1e-6)
    assert out.dtype == np.float32 and voxel_downsample(np.zeros((0, 3)), 1.0).shape == (0, 3)
    with pytest.raises(ValueError, match='NaN'):
        voxel_downsample(np.full((2, 3), np.nan), 0.5)
    with pytest.raises(ValueError, match='positive'):
        voxel_downsample(points, 0.0)


@pytest.mark.parametrize('extent', [50.0, 1e15])
def test_voxel_downsample_orders_voxels_lexicographically(extent):
    # Packed integer keys (small extents) and row-wise keys (extents too wide to pack) give the
    # same centroids in the same (x, y, z) voxel order.
    rng = np.random.default_rng(SEED)
    points = rng.uniform(-extent, extent, (3000, 3))
    points[1500:] = points[:1500] + rng.uniform(0.0, 0.05, (1500, 3))   # shared voxels
    out = voxel_downsample(points, 0.2)
    keys = np.floor(points / 0.2).astype(np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    expected = np.stack([np.bincount(inverse, points[:, k]) for k in range(3)], axis=1)
    expected /= np.bincount(inverse)[:, None]
    assert len(out) == len(unique) < 3000
    np.testing.assert_allclose(out, expected.astype(np.float32), rtol=1e-6)


def test_map_and_tum_files_round_trip(tmp_path):
    rng = np.random.default_rng(SEED)
    points = rng.uniform(-10, 10, (500, 3)).astype(np.float32)
    for ext in ('pcd', 'ply'):
        write_point_cloud(tmp_path / f'map.{ext}', points)
        read = np.asarray(o3d.io.read_point_cloud(str(tmp_path / f'map.{ext}')).points)
        np.testing.assert_allclose(read, points, atol=1e-5)
    with pytest.raises(ValueError, match='.pcd or .ply'):
        write_point_cloud(tmp_path / 'map.xyz', points)
    stamps = np.array([1_700_000_000_123_456_789, 1_700_000_001_000_000_001], np.int64)
    poses = np.stack([make_transform(so3_exp(rng.normal(0, 1, 3)), rng.normal(0, 5, 3))
                      for _ in stamps])
    write_tum(tmp_path / 'poses.tum', stamps, poses)
    first = (tmp_path / 'poses.tum').read_text().splitlines()[0].split()
    assert first[0] == '1700000000.123456789' and len(first) == 8
    read_stamps, read_poses = read_tum(tmp_path / 'poses.tum')
    np.testing.assert_array_equal(read_stamps, stamps)
    np.testing.assert_allclose(read_poses, poses, atol=1e-8)


# --- odometry history ----------------------------------------------------------------------

def test_pose_history_interpolates_extrapolates_and_clears_on_jump_back():
    history = PoseHistory(max_age_ns=10_000, max_extrapolation_ns=100)
    T0 = make_transform(np.eye(3), [0.0, 0.0, 0.0])
    T1 = make_transform(so3_exp([0.0, 0.0, 0.4]), [2.0, 0.0, 0.0])
    assert history.add(1000, T0) and history.add(2000, T1)
    mid = history.lookup(1500)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0.0, 0.0])
    assert geodesic_angle(mid[:3, :3], so3_exp([0.0, 0.0, 0.2])) < 1e-12
    ahead = history.lookup(2100)
    np.testing.assert_allclose(ahead[:3, 3], [2.2, 0.0, 0.0])
    assert history.lookup(999) is None and history.lookup(2101) is None
    np.testing.assert_allclose(history.lookup(2000), T1)
    assert not history.add(1500, T0), 'a stamp going back must clear the history'
    assert len(history) == 1 and history.lookup(1900) is None
    history.add(20_000, T1)
    assert len(history) == 1, 'samples older than max_age_ns are dropped'
    with pytest.raises(ValueError, match='rotation'):
        history.add(30_000, np.diag([1.0, 2.0, 1.0, 1.0]))
    assert history.newest_ns == 20_000


def test_static_chain_composes_and_reports_missing_links():
    T_base_mount = make_transform(so3_exp([0.0, 0.0, 0.5]), [1.0, 0.0, 1.5])
    T_mount_lidar = make_transform(so3_exp([0.1, 0.0, 0.0]), [0.0, 0.2, 0.1])
    static = {'mount': ('base_link', T_base_mount), 'lidar': ('mount', T_mount_lidar)}
    np.testing.assert_allclose(chain_transform(static, 'base_link', 'lidar'),
                               T_base_mount @ T_mount_lidar, atol=1e-12)
    np.testing.assert_array_equal(chain_transform(static, 'lidar', 'lidar'), np.eye(4))
    assert chain_transform(static, 'odom', 'lidar') is None
    assert chain_transform({'a': ('b', np.eye(4)), 'b': ('a', np.eye(4))}, 'c', 'a') is None


# --- the mapper ----------------------------------------------------------------------------

def test_mapper_with_odometry_builds_an_accurate_connected_graph(mapped, segment):
    mapper, outcomes = mapped
    statuses = [o.status for o in outcomes]
    assert statuses[0] == 'keyframe' and 'refused' not in statuses
    # 3.2 m between scans and keyframes every 5 m: about every other scan.
    assert 5 <= statuses.count('keyframe') <= 9 and statuses.count('tracked') >= 5
    graph = mapper.graph
    assert graph.n_nodes == statuses.count('keyframe') and graph.is_connected()
    assert graph.n_edges == graph.n_nodes - 1
    snapshot = mapper.snapshot()
    assert _rmse(snapshot, segment) < 0.05
    # The first keyframe's map pose is its odometry pose: map and odom start together.
    np.testing.assert_allclose(snapshot.poses[0], segment.T_odom_lidar[0], atol=1e-9)
    assert geodesic_angle(mapper.T_map_odom()[:3, :3], np.eye(3)) < np.deg2rad(2.0)
    assert mapper.stats.solve_time_ms > 0 and mapper.stats.translation_residual_m[0] < 0.05
    points = snapshot.map_points()
    # At most one point per map voxel (float32 round-off may move a centroid across a face).
    assert len(points) > 5000 and len(voxel_downsample(points, 0.2)) > 0.999 * len(points)


def test_bad_input_is_refused_and_leaves_the_graph_unchanged(mapped, segment):
    mapper, _ = mapped
    before, snapshot = mapper.graph, mapper.snapshot()
    stats = (mapper.stats.refused, mapper.stats.bad_input)
    k = N_SCANS
    last = int(segment.stamps[N_SCANS - 1])
    good, T = segment.scans[k], segment.T_odom_lidar[k]
    rng = np.random.default_rng(SEED)
    junk = rng.uniform([-40, -40, -2], [40, 40, 10], (5000, 3)).astype(np.float32)
    cases = [
        (np.zeros((0, 3), np.float32), last + 1, T, 'empty scan'),
        (np.full((300, 3), np.nan, np.float32), last + 1, T, '0 finite points of 300'),
        (good[:50], last + 1, T, 'need at least 100'),
        (good[:, :2], last + 1, T, 'shape'),
        (good, last + 1, None, 'no odometry'),
        (good, last + 1, np.diag([2.0, 1.0, 1.0, 1.0]), 'rotation'),
        (good, int(segment.stamps[3]), T, 'time jumped back'),
        (junk, int(segment.stamps[k]) + SCAN_PERIOD_NS, segment.T_odom_lidar[k] @ make_transform(
            np.eye(3), [4.0, 0.0, 0.0]), 'keyframe refused'),
    ]
    for points, stamp, T_odom, reason in cases:
        outcome = mapper.add_scan(points, stamp, T_odom)
        assert outcome.status == 'refused' and reason in outcome.reason, (reason, outcome)
        assert mapper.stats.last_reason == outcome.reason
    after = mapper.graph
    for name in ('poses', 'stamps', 'edges', 'transforms', 'confidence', 'information'):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name), err_msg=name)
    assert mapper.snapshot().version == snapshot.version
    assert mapper.stats.refused == stats[0] + len(cases)
    assert mapper.stats.bad_input == stats[1] + 6
    assert mapper.stats.time_jumps >= 1 and mapper.stats.registration_failures >= 1
    # A good scan after the bad ones is mapped.
    assert mapper.add_scan(good, segment.stamps[k], T).status in ('keyframe', 'tracked')


def test_time_jump_starts_a_new_map_when_configured(segment):
    mapper = _mapper(**{'odometry.source': 'odom', 'input.reset_on_time_jump': True})
    for k in range(4):
        mapper.add_scan(segment.scans[k], segment.stamps[k], segment.T_odom_lidar[k])
    assert mapper.n_keyframes >= 2
    back = int(segment.stamps[0]) - 5_000_000_000
    outcome = mapper.add_scan(segment.scans[0], back, segment.T_odom_lidar[0])
    assert outcome.status == 'keyframe' and mapper.n_keyframes == 1
    assert mapper.stats.resets == 1 and mapper.stats.time_jumps == 1
    assert mapper.snapshot().stamps_ns.tolist() == [back]
    # A small step back is refused even so.
    assert mapper.add_scan(segment.scans[1], back - 1000, segment.T_odom_lidar[1]).status \
        == 'refused'


def test_lidar_only_tracking_follows_the_truth(segment):
    mapper = _mapper()
    outcomes = [mapper.add_scan(segment.scans[k], segment.stamps[k]) for k in range(8)]
    assert [o.status for o in outcomes].count('refused') == 0
    assert mapper.T_map_odom() is None
    np.testing.assert_array_equal(outcomes[0].T_map_scan, np.eye(4))
    T0 = segment.truth[int(segment.stamps[0])]
    for k, outcome in enumerate(outcomes):
        truth = inverse(T0) @ segment.truth[int(segment.stamps[k])]
        assert np.linalg.norm(outcome.T_map_scan[:3, 3] - truth[:3, 3]) < 0.15, k
    assert _rmse(mapper.snapshot(), segment) < 0.05


def test_snapshot_saves_map_and_poses_and_reset_empties(mapped, tmp_path):
    mapper, _ = mapped
    snapshot = mapper.snapshot()
    map_path, tum_path = snapshot.save(tmp_path / 'out', 'ply')
    assert map_path.endswith('map.ply') and tum_path.endswith('keyframes.tum')
    assert len(o3d.io.read_point_cloud(map_path).points) == len(snapshot.map_points())
    stamps, poses = read_tum(tum_path)
    np.testing.assert_array_equal(stamps, snapshot.stamps_ns)
    np.testing.assert_allclose(poses, snapshot.poses, atol=1e-8)
    with pytest.raises(ValueError, match="'pcd' or 'ply'"):
        snapshot.save(tmp_path, 'las')
    fresh = _mapper()
    with pytest.raises(ValueError, match='empty'):
        fresh.snapshot().save(tmp_path)
    n = mapper.n_keyframes
    mapper.reset()
    assert mapper.n_keyframes == 0 and mapper.stats.resets == 1
    assert len(snapshot.stamps_ns) == n, 'a snapshot must not change after a reset'


class _FixedRegistration:
    """A pairwise registrar that returns the odometry's motion moved by ``offset``."""

    def __init__(self, mapper, T_odom_lidar, confidence, offset):
        self.config, self.mapper = mapper.registrar.config, mapper
        self.T_odom_lidar, self.confidence, self.offset = T_odom_lidar, confidence, offset

    def register(self, source, target, T_init):
        from i2p_registration.core.multiview.pairwise import PairwiseResult
        T = inverse(self.T_odom_lidar[0]) @ self.T_odom_lidar[2] @ self.offset
        return PairwiseResult(T, self.confidence, 0.5, 0.5, 0.1, np.eye(6) * 100.0, False)


@pytest.mark.parametrize('confidence, offset_m, accepted', [
    (0.2, 0.1, True),     # below min_confidence 0.3, confirmed by odometry
    (0.2, 1.0, False),    # disagrees with odometry by 1 m
    (0.1, 0.0, False),    # below half of min_confidence
    (0.5, 1.0, True),     # confident registrations need no confirmation
])
def test_odometry_confirms_a_weak_sequential_registration(segment, confidence, offset_m,
                                                          accepted):
    mapper = _mapper(**{'odometry.source': 'odom', 'pairwise.min_confidence': 0.3})
    assert mapper.add_scan(segment.scans[0], segment.stamps[0],
                           segment.T_odom_lidar[0]).status == 'keyframe'
    offset = make_transform(np.eye(3), [offset_m, 0.0, 0.0])
    mapper.registrar = _FixedRegistration(mapper, segment.T_odom_lidar, confidence, offset)
    outcome = mapper.add_scan(segment.scans[2], segment.stamps[2], segment.T_odom_lidar[2])
    assert (outcome.status == 'keyframe') == accepted, outcome
    assert mapper.stats.odometry_confirmed == int(accepted and confidence < 0.3)
    if not accepted:
        assert 'has confidence' in outcome.reason and mapper.n_keyframes == 1
    if offset_m == 1.0 and not accepted:
        assert 'differs from the odometry by 1.00 m' in outcome.reason


class _PredictionOffsetRegistration:
    """A pairwise registrar that returns its start pose (the prediction) moved by ``offset``."""

    def __init__(self, config, confidence, offset):
        self.config, self.confidence, self.offset = config, confidence, offset

    def register(self, source, target, T_init):
        from i2p_registration.core.multiview.pairwise import PairwiseResult
        return PairwiseResult(T_init @ self.offset, self.confidence, 0.5, 0.5, 0.1,
                              np.eye(6) * 100.0, False)


@pytest.mark.parametrize('confidence, offset_m, accepted', [
    (0.2, 0.1, True),     # below min_confidence 0.3, confirmed by the motion prediction
    (0.2, 2.0, False),    # disagrees with the prediction by 2 m
    (0.1, 0.0, False),    # below half of min_confidence
])
def test_prediction_confirms_a_weak_lidar_only_tracking_registration(segment, confidence,
                                                                     offset_m, accepted):
    mapper = _mapper(**{'pairwise.min_confidence': 0.3})
    for k in range(3):
        assert mapper.add_scan(segment.scans[k], segment.stamps[k]).status != 'refused'
    before = mapper.n_keyframes
    offset = make_transform(np.eye(3), [offset_m, 0.0, 0.0])
    mapper.registrar = _PredictionOffsetRegistration(mapper.registrar.config, confidence, offset)
    outcome = mapper.add_scan(segment.scans[4], segment.stamps[4])
    assert (outcome.status != 'refused') == accepted, outcome
    assert mapper.stats.prediction_confirmed == int(accepted)
    if not accepted:
        assert 'tracking failed' in outcome.reason and mapper.n_keyframes == before
    if offset_m == 2.0:
        assert 'differs from the prediction by 2.00 m' in outcome.reason
