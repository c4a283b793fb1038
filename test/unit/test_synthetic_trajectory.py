"""Synthetic vehicle trajectory and sensor clocks."""

from i2p_registration.data.clocks import sensor_stamps, stream_stamps
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES, StreamClock
import numpy as np
import pytest


@pytest.fixture(scope='module')
def sim():
    return Simulator(load_synth_config(overrides=SMALL_OVERRIDES), 5)


def test_loop_closes_and_repeats(sim):
    traj = sim.trajectory
    t = np.linspace(0, traj.lap_time, 50)
    np.testing.assert_allclose(traj.T_world_base(t), traj.T_world_base(t + traj.lap_time),
                               atol=1e-9)
    start, end = traj.T_world_base(0.0), traj.T_world_base(traj.lap_time - 1e-6)
    assert np.linalg.norm(start[:3, 3] - end[:3, 3]) < 0.01
    assert traj.lap_length > 150


def test_speed_and_curve_limits(sim):
    cfg = sim.config.vehicle
    traj = sim.trajectory
    t = np.linspace(0, traj.lap_time, 4000)
    v, yaw_rate = traj.velocity(t)
    assert v.max() <= cfg.speed + 1e-9 and v.min() > 0.3 * cfg.speed
    assert np.max(np.abs(v * yaw_rate)) <= cfg.max_lateral_accel * 1.05
    # Heading is smooth: finite-difference yaw rate agrees with the model and stays bounded.
    x, y, yaw = traj.pose2d(t)
    assert np.max(np.abs(np.diff(np.unwrap(yaw)))) < 0.05
    step = np.hypot(np.diff(x), np.diff(y))
    assert np.max(step / np.diff(t)) <= cfg.speed * 1.01
    assert abs(np.unwrap(yaw)[-1] - yaw[0]) == pytest.approx(2 * np.pi, abs=0.1)


def test_vehicle_drives_in_a_lane(sim):
    traj = sim.trajectory
    x, y, _ = traj.pose2d(np.linspace(0, traj.lap_time, 500))
    plan = sim.world.warp.inverse(np.stack([x, y], -1))
    dx = np.min(np.abs(plan[:, :1] - sim.world.plan.road_x[None]), axis=1)
    dy = np.min(np.abs(plan[:, 1:] - sim.world.plan.road_y[None]), axis=1)
    # Within the curbs with room for the car's half width (right turns cut into the corner).
    on_road = np.minimum(dx, dy) < sim.config.world.road_half_width - 1.0
    assert on_road.all()
    straight = np.abs(dx - dy) > 15          # away from intersections: keeps the lane centre
    lane = sim.config.world.lane_width / 2
    np.testing.assert_allclose(np.minimum(dx, dy)[straight], lane, atol=0.3)


def test_sensor_frames_are_kitti_like(sim):
    T = np.linalg.inv(sim.T_map_camera(sim.start_ns)) @ sim.T_map_lidar(sim.start_ns)
    np.testing.assert_allclose(T, sim.T_cam_lidar, atol=1e-9)
    # Camera optical z (forward) = vehicle x, optical y (down) = -vehicle z.
    R_base_cam = sim.T_base_cam[:3, :3]
    assert R_base_cam[:, 2] @ [1, 0, 0] > 0.99 and R_base_cam[:, 1] @ [0, 0, -1] > 0.99
    assert sim.T_base_cam[2, 3] == pytest.approx(1.73 - 0.054 * 1.0, abs=0.02)
    assert sim.T_base_cam[0, 3] - sim.T_base_lidar[0, 3] == pytest.approx(0.27, abs=0.03)


def test_stream_rates_offsets_drops_and_jitter():
    rng = np.random.default_rng(0)
    clock = StreamClock(20.0, 0.002, 0.1, 0.0)
    s = stream_stamps(clock, 10**18, 200.0, 0.013, rng)
    dt = np.diff(s.stamps_ns) * 1e-9
    assert np.median(dt) == pytest.approx(0.05, abs=1e-3)
    assert (s.stamps_ns[0] - 10**18) * 1e-9 == pytest.approx(0.013 + 0.05 * s.index[0], abs=0.01)
    assert 1 - len(s) / 4000 == pytest.approx(0.1, abs=0.02)
    resid = (s.stamps_ns - 10**18) * 1e-9 - 0.013 - s.index * 0.05
    assert resid.std() == pytest.approx(0.002, rel=0.1)
    assert np.all(dt > 0)


def test_streams_are_not_in_lock_step():
    cfg = load_synth_config(overrides={'clocks.camera.rate_hz': 10.0}).clocks
    streams = sensor_stamps(cfg, 30.0, np.random.default_rng(1))
    cam, lid = streams['camera'].stamps_ns, streams['lidar'].stamps_ns
    assert streams['camera'].offset_s != streams['lidar'].offset_s
    # Offset of each image to its nearest scan varies (jitter) and is not zero.
    nearest = lid[np.clip(np.searchsorted(lid, cam), 0, len(lid) - 1)]
    gap = (cam - nearest) * 1e-9
    assert np.std(gap) > 1e-3 or np.abs(np.median(gap)) > 5e-3
    assert len(np.intersect1d(cam, lid)) == 0


def test_default_clock_rates(sim):
    streams = sim.stamps(20.0)
    for name, rate in (('lidar', 10.0), ('camera', 15.0), ('odom', 50.0)):
        s = streams[name].stamps_ns
        assert len(s) / 20.0 == pytest.approx(rate, rel=0.05)
        assert (s[0] - sim.start_ns) * 1e-9 < 0.1 + 1.0 / rate
