"""Pairwise registration of synthetic structured scans with a known transform."""

from i2p_registration.core.geometry.rotations import geodesic_angle, so3_exp
from i2p_registration.core.geometry.se3 import inverse, make_transform, transform_points
from i2p_registration.core.multiview.pairwise import PairwiseConfig, PairwiseRegistrar
import numpy as np
import pytest


def _plane(origin, u, v, nu, nv, step=0.1):
    a, b = np.meshgrid(np.arange(nu) * step, np.arange(nv) * step)
    return np.asarray(origin) + a.reshape(-1, 1) * np.asarray(u) + b.reshape(-1, 1) * np.asarray(v)


def _scene():
    """Build a floor, two walls, a box and a slanted panel: every direction is constrained."""
    x, y, z = np.eye(3)
    parts = [_plane([-5, -5, 0], x, y, 100, 100), _plane([-5, -5, 0], x, z, 100, 30),
             _plane([-5, -5, 0], y, z, 100, 30), _plane([2, 1, 0], x, z, 10, 20),
             _plane([2, 1, 0], y, z, 15, 20), _plane([2, 1, 2], x, y, 10, 15),
             _plane([-2, 3, 0], [0.7, 0.7, 0], z, 12, 25)]
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope='module')
def pair():
    rng = np.random.default_rng(0)
    target = _scene()
    T_target_source = make_transform(so3_exp(np.array([0.03, -0.02, 0.35])), [0.9, -0.6, 0.1])
    source = transform_points(inverse(T_target_source), target)
    source = source + rng.normal(0.0, 0.005, source.shape).astype(np.float32)
    return source, target, T_target_source


@pytest.mark.parametrize('config, prior', [
    (PairwiseConfig(), None),
    (PairwiseConfig(global_method='fgr'), None),
    (PairwiseConfig(icp_method='gicp'), np.eye(4)),
])
def test_known_transform_is_recovered(pair, config, prior):
    source, target, T_true = pair
    result = PairwiseRegistrar(config).register(source, target, T_init=prior)
    T = result.T_target_source
    assert np.rad2deg(geodesic_angle(T[:3, :3], T_true[:3, :3])) < 0.2
    assert np.linalg.norm(T[:3, 3] - T_true[:3, 3]) < 0.02
    assert result.fitness > 0.9 and result.overlap > 0.9 and 0.5 < result.confidence <= 1.0
    info = result.information
    np.testing.assert_allclose(info, info.T, atol=1e-6 * np.abs(info).max())
    assert np.linalg.eigvalsh(info).min() > 0.0
    # Twist order (rho, phi): the translation block has no lever arm, so it is the smaller.
    assert np.trace(info[:3, :3]) < np.trace(info[3:, 3:])


def test_good_prior_skips_global_step_and_bad_result_has_low_confidence(pair):
    source, target, T_true = pair
    registrar = PairwiseRegistrar()
    assert not registrar.register(source, target, T_init=T_true).used_global
    far = _scene()[:3000] + np.float32([40.0, 0.0, 0.0])
    bad = registrar.register(source, far, T_init=np.eye(4))
    assert bad.used_global and bad.confidence < 0.5


@pytest.mark.parametrize('cloud, message', [
    (np.zeros((0, 3), np.float32), 'empty'),
    (np.full((100, 3), np.nan, np.float32), 'NaN'),
    (np.zeros((100, 2), np.float32), 'shape'),
    (np.zeros((100, 3), np.float32), 'after'),
])
def test_bad_clouds_raise(pair, cloud, message):
    with pytest.raises(ValueError, match=message):
        PairwiseRegistrar().register(cloud, pair[1])


@pytest.fixture(scope='module')
def sparse_lidar_scans():
    """Five scans 1 s apart from a 32-line LiDAR on the synthetic city (the demo's sensor)."""
    from i2p_registration.data.simulator import Simulator
    from i2p_registration.data.synth_config import load_synth_config

    cfg = load_synth_config(overrides={'lidar.preset': 'hdl32', 'lidar.columns': 1000})
    sim = Simulator(cfg, 0)
    stamps = sim.start_ns + 1_000_000_000 * np.arange(5, dtype=np.int64)
    scans = [sim.scan(int(s), k).points for k, s in enumerate(stamps)]
    return scans, sim.T_map_lidar(stamps)


@pytest.mark.parametrize('normal_radius_m, max_pitch_deg', [(3.0, 0.05), (1.0, None)])
def test_far_ground_does_not_pitch_registrations(sparse_lidar_scans, normal_radius_m,
                                                 max_pitch_deg):
    # Far ground rings lie metres apart: normals over one ring tilt and bias the pitch.
    from i2p_registration.core.geometry.rotations import so3_log

    scans, T_map = sparse_lidar_scans
    registrar = PairwiseRegistrar(PairwiseConfig(voxel_size_m=0.4,
                                                 normal_radius_m=normal_radius_m))
    pitch = []
    for k in range(len(scans) - 1):
        T_true = inverse(T_map[k]) @ T_map[k + 1]
        T = registrar.register(scans[k + 1], scans[k], T_true).T_target_source
        pitch.append(np.rad2deg(so3_log((inverse(T_true) @ T)[:3, :3])[1]))
    if max_pitch_deg is not None:
        assert np.max(np.abs(pitch)) < max_pitch_deg, pitch
    else:
        # The neighbourhood of the old default (2.5 voxels) pitches every pair the same way.
        assert np.all(np.array(pitch) < -0.1), pitch


def test_normal_neighbourhood_is_validated():
    with pytest.raises(ValueError, match='normal_radius_m'):
        PairwiseConfig(normal_radius_m=0.0)
    with pytest.raises(ValueError, match='normal_max_neighbours'):
        PairwiseConfig(normal_max_neighbours=2)
