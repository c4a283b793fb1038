"""Synthetic camera and LiDAR: ground-truth consistency, beams, rings, times, noise."""

from i2p_registration.core.geometry.projection import in_image, project_lidar_points
from i2p_registration.core.geometry.se3 import transform_points
from i2p_registration.data.lidar_sim import PRESET_ANGLES_DEG, vertical_angles
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
import numpy as np
import pytest

NOISE_FREE = {'lidar.range_noise_std': 0.0, 'lidar.dropout': 0.0,
              'lidar.intensity_noise_std': 0.0, 'camera.noise_std': 0.0}


def make_sim(seed=3, **overrides):
    return Simulator(load_synth_config(overrides={**SMALL_OVERRIDES, **overrides}), seed)


@pytest.fixture(scope='module')
def clean_sim():
    return make_sim(**NOISE_FREE)


def depth_agreement(sim, stamp):
    """Fraction of camera-visible scan points whose projected depth matches the depth image."""
    _, depth = sim.image(stamp, 0)
    cloud = sim.scan(stamp, 0)
    uv, front = project_lidar_points(cloud.points, sim.T_cam_lidar, sim.camera)
    vis = front & in_image(uv, sim.camera, margin=0.5)
    # Points the LiDAR sees but the camera cannot (parallax occlusion) are not "visible": decide
    # that by casting from the camera centre in the world, independently of the depth image.
    p_map = transform_points(sim.T_map_lidar(stamp), cloud.points[vis].astype(np.float64))
    centre = sim.T_map_camera(stamp)[:3, 3]
    dist = np.linalg.norm(p_map - centre, axis=1)
    t, _ = sim.world.cast(centre, (p_map - centre) / dist[:, None])
    seen = t > dist - np.maximum(0.05, 0.005 * dist)
    z = transform_points(sim.T_cam_lidar, cloud.points[vis].astype(np.float64))[seen, 2]
    u, v = uv[vis][seen].T
    u0 = np.clip(np.floor(u).astype(int), 0, sim.camera.width - 2)
    v0 = np.clip(np.floor(v).astype(int), 0, sim.camera.height - 2)
    fu, fv = u - u0, v - v0
    with np.errstate(divide='ignore'):
        inv = 1.0 / depth.astype(np.float64)
    q = [inv[v0, u0], inv[v0, u0 + 1], inv[v0 + 1, u0], inv[v0 + 1, u0 + 1]]
    # Inverse depth is affine in pixel coordinates on a plane: bilinear interpolation is exact
    # there; at depth edges the point may land on any of the four pixels around it.
    bilinear = (q[0] * (1 - fu) + q[1] * fu) * (1 - fv) + (q[2] * (1 - fu) + q[3] * fu) * fv
    ok = np.abs(bilinear * z - 1) <= 0.01
    for qq in q:
        ok |= np.abs(qq * z - 1) <= 0.01
    return ok.mean(), len(z), seen.mean()


@pytest.mark.parametrize('overrides', [
    {},
    {'camera.distortion_model': 'plumb_bob', 'camera.D': [-0.25, 0.08, 0.001, -0.001, 0.0],
     'lidar.preset': 'hdl32'},
])
def test_ground_truth_consistency(overrides):
    sim = make_sim(**NOISE_FREE, **overrides)
    for k, t in enumerate((1.0, 13.0)):
        stamp = sim.start_ns + int(t * 1e9)
        frac, n, seen = depth_agreement(sim, stamp)
        assert n > 1000
        assert seen > 0.95
        assert frac >= 0.99, f'only {frac:.4f} of {n} visible points agree (frame {k})'


def test_wrong_extrinsic_breaks_consistency(clean_sim):
    sim = make_sim(**NOISE_FREE)
    T = sim.T_cam_lidar.copy()
    sim.T_cam_lidar = T @ np.array([[1, 0, 0, 0.0], [0, 1, 0, 0.3], [0, 0, 1, 0], [0, 0, 0, 1]])
    frac, _, _ = depth_agreement(sim, sim.start_ns + int(1e9))
    assert frac < 0.9


@pytest.mark.parametrize('preset, beams, top, bottom', [
    ('hdl64', 64, 2.0, -24.9), ('hdl32', 32, 10.67, -30.67), ('vlp16', 16, 15.0, -15.0)])
def test_lidar_presets(preset, beams, top, bottom):
    angles = vertical_angles(load_synth_config(overrides=[f'lidar.preset={preset}']).lidar)
    assert len(angles) == beams
    assert angles.max() == pytest.approx(top) and angles.min() == pytest.approx(bottom)
    assert np.all(np.diff(angles) > 0)


def test_hdl64_two_blocks():
    a = np.sort(PRESET_ANGLES_DEG['hdl64'])[::-1]
    np.testing.assert_allclose(np.diff(a[:32]), -1 / 3, atol=2e-3)     # upper block
    assert np.all(np.abs(np.diff(a[32:]) + 0.518) < 0.01)              # lower block
    assert a[31] - a[32] == pytest.approx(0.5, abs=0.01)


def test_scan_rings_angles_and_times(clean_sim):
    cloud = clean_sim.scan(clean_sim.start_ns, 0)
    elev = np.degrees(np.arctan2(cloud.points[:, 2],
                                 np.hypot(cloud.points[:, 0], cloud.points[:, 1])))
    angles = clean_sim.lidar_sim.elevations_deg
    assert cloud.ring.dtype == np.uint16 and cloud.ring.max() < 64
    np.testing.assert_allclose(elev, angles[cloud.ring], atol=1e-3)
    assert len(np.unique(cloud.ring)) >= 60
    period = clean_sim.lidar_period_s
    assert cloud.time.min() >= 0 and cloud.time.max() < period
    assert np.all(np.diff(cloud.time) >= 0)                  # column by column
    # Azimuth follows the firing time: behind at the start, forward at mid-sweep, clockwise.
    az = np.arctan2(cloud.points[:, 1], cloud.points[:, 0])
    expected = np.pi - 2 * np.pi * cloud.time / period
    err = np.angle(np.exp(1j * (az - expected)))
    assert np.abs(err).max() < 2 * np.pi / clean_sim.config.lidar.columns
    assert 0 <= cloud.intensity.min() and cloud.intensity.max() <= 1
    r = np.linalg.norm(cloud.points, axis=1)
    assert r.min() >= clean_sim.config.lidar.min_range
    assert r.max() <= clean_sim.config.lidar.max_range


def test_scan_noise_and_dropout():
    sim = make_sim(**{'lidar.dropout': 0.2, 'lidar.range_noise_std': 0.05})
    ref = make_sim(**NOISE_FREE)
    noisy, clean = sim.scan(sim.start_ns, 0), ref.scan(ref.start_ns, 0)
    assert len(noisy) / len(clean) == pytest.approx(0.8, abs=0.02)
    assert np.array_equal(noisy.points, sim.scan(sim.start_ns, 0).points)   # seeded


def _surface_error(sim, origins, points_map):
    """|hit distance - point distance| of rays from ``origins`` through ``points_map``."""
    d = points_map - origins
    dist = np.linalg.norm(d, axis=1)
    t, _ = sim.world.cast(origins, d / dist[:, None])
    return np.abs(np.where(np.isfinite(t), t, 1e3) - dist)


def test_motion_distortion_follows_the_vehicle_during_the_sweep():
    still = make_sim(**NOISE_FREE)
    moving = make_sim(**NOISE_FREE, **{'lidar.motion_distortion': True})
    stamp = still.start_ns + int(2e9)
    a, b = still.scan(stamp, 0), moving.scan(stamp, 0)
    np.testing.assert_array_equal(a.points[a.time == 0], b.points[b.time == 0])
    # Each point lies on the world surface when mapped with the pose at its own firing time ...
    pose = moving.T_map_lidar(stamp + np.rint(b.time.astype(np.float64) * 1e9).astype(np.int64))
    p_true = np.einsum('nij,nj->ni', pose[:, :3, :3], b.points.astype(np.float64)) + pose[:, :3, 3]
    assert np.median(_surface_error(moving, pose[:, :3, 3], p_true)) < 1e-3
    # ... but not when the whole sweep is mapped with the pose at the stamp (it is distorted).
    T0 = moving.T_map_lidar(stamp)
    late = b.time > 0.08
    p_naive = transform_points(T0, b.points[late].astype(np.float64))
    err = _surface_error(moving, np.broadcast_to(T0[:3, 3], p_naive.shape), p_naive)
    assert np.mean(err > 0.05) > 0.2


def test_camera_image_and_depth(clean_sim):
    frame, depth = clean_sim.image(clean_sim.start_ns, 0)
    h, w = clean_sim.camera.height, clean_sim.camera.width
    assert frame.image.shape == (h, w, 3) and frame.image.dtype == np.uint8
    assert depth.shape == (h, w) and depth.dtype == np.float32
    sky = ~np.isfinite(depth)
    assert sky[0].mean() > 0.05 and sky[0].mean() > sky[h // 2].mean() and not sky[-1].any()
    assert frame.image[sky][:, 2].mean() > frame.image[sky][:, 0].mean()   # sky is blue
    assert frame.frame_id == 'camera_optical' and frame.camera == clean_sim.camera


def test_camera_noise_is_seeded_and_sized():
    sim = make_sim()
    quiet = make_sim(**{'camera.noise_std': 0.0})
    a, _ = sim.image(sim.start_ns, 4)
    b, _ = sim.image(sim.start_ns, 4)
    c, _ = quiet.image(quiet.start_ns, 4)
    assert np.array_equal(a.image, b.image)
    diff = a.image.astype(float) - c.image.astype(float)
    inner = (c.image > 10).all(-1) & (c.image < 245).all(-1)
    assert diff[inner].std() == pytest.approx(2.0, abs=0.3)
