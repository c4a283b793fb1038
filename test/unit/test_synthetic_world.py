"""Synthetic world: config validation, determinism, street plan, ray casting, textures."""


from i2p_registration.data.streets import Warp
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
from i2p_registration.data.textures import Material, value_noise
from i2p_registration.data.world import World
import numpy as np
import pytest


@pytest.fixture(scope='module')
def small_world():
    return World.generate(load_synth_config(overrides=SMALL_OVERRIDES).world, 7)


def test_config_defaults_and_overrides():
    cfg = load_synth_config(overrides=['lidar.preset=vlp16', 'camera.width=640',
                                       'world.blocks=[5, 4]'])
    assert cfg.lidar.preset == 'vlp16'
    assert cfg.camera.width == 640
    assert cfg.world.blocks == (5, 4)
    assert cfg.camera.height == 375 and cfg.clocks.lidar.rate_hz == 10.0


def test_config_file_matches_code_defaults():
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / 'config' / 'synthetic.yaml'
    assert load_synth_config(path) == load_synth_config()


@pytest.mark.parametrize('override, message', [
    ('world.nonsense=1', 'unknown key'),
    ('world.blocks=[2, 3]', 'at least'),
    ('lidar.preset=hdl128', 'lidar.preset'),
    ('camera.width=-3', 'camera width'),
    ('camera.fx=abc', 'finite number'),
    ('clocks.camera.rate_hz=0', 'rate_hz'),
    ('output.storage=bag', 'storage'),
    ('nosection.x=1', 'unknown key'),
])
def test_config_errors(override, message):
    with pytest.raises(ValueError, match=message):
        load_synth_config(overrides=[override])


def test_same_seed_same_world_other_seed_other_world(small_world):
    cfg = load_synth_config(overrides=SMALL_OVERRIDES).world
    again = World.generate(cfg, 7)
    other = World.generate(cfg, 8)
    assert np.array_equal(small_world.mesh.vertices, again.mesh.vertices)
    assert np.array_equal(small_world.mesh.material, again.mesh.material)
    assert np.array_equal(small_world.object_colors, again.object_colors)
    assert small_world.mesh.vertices.shape != other.mesh.vertices.shape or \
        not np.array_equal(small_world.mesh.vertices, other.mesh.vertices)


def test_world_has_every_kind_of_surface(small_world):
    present = set(np.unique(small_world.mesh.material).tolist())
    assert present == {int(m) for m in Material}
    assert small_world.n_triangles > 5000


def test_warp_round_trip_and_curved_streets():
    warp = Warp(10.0, 320.0, 0.3)
    xy = np.random.default_rng(0).uniform(-200, 200, (100, 2))
    np.testing.assert_allclose(warp.inverse(warp.forward(xy)), xy, atol=1e-12)
    line = warp.forward(np.stack([np.linspace(0, 160, 50), np.zeros(50)], -1))
    assert np.ptp(line[:, 1]) > 5.0        # an east-west street bends


def test_cast_down_hits_road_with_plan_texture(small_world):
    plan = small_world.plan
    # Centre of the second north-south road, mid-block: the dashed centre line region.
    x = plan.road_x[1] + 1.75
    y = 0.5 * (plan.road_y[1] + plan.road_y[2])
    top = small_world.warp.forward(np.array([[x, y, 30.0]]))
    t, hits = small_world.cast(top, np.array([[0.0, 0.0, -1.0]]))
    assert len(hits) == 1 and hits.material[0] == Material.ROAD
    assert t[0] == pytest.approx(30.0, abs=1e-3)
    np.testing.assert_allclose(hits.normals[0], [0, 0, 1], atol=1e-6)
    assert small_world.warp.inverse(hits.points)[0, 1] == pytest.approx(y, abs=1e-3)


def test_hit_uv_interpolates_vertex_texture_coordinates(small_world):
    rng = np.random.default_rng(1)
    d = rng.normal(size=(4000, 3))
    d[:, 2] = -np.abs(d[:, 2]) * 0.3
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    origin = small_world.warp.forward(np.array([small_world.plan.road_x[1], 0.0, 1.7]))
    _, hits = small_world.cast(origin, d)
    box = hits.material == Material.FACADE
    assert box.sum() > 50
    # Facade uv: v is the height above the ground (z) for every hit on a building side.
    side = box & (np.abs(hits.normals[:, 2]) < 1e-6)
    np.testing.assert_allclose(hits.uv[side, 1], hits.points[side, 2], atol=1e-3)


def test_road_markings_and_reflectivity(small_world):
    plan = small_world.plan
    x = np.linspace(plan.road_x[1] - 6, plan.road_x[1] + 6, 400)
    y = np.full_like(x, 0.5 * (plan.road_y[1] + plan.road_y[2]) + 1.0)
    xs = np.tile(x, 8)
    ys = np.repeat(y[0] + np.arange(8) * 0.7, len(x))
    albedo, refl = plan.road(xs, ys)
    marking = albedo.mean(axis=1) > 0.8
    assert marking.any() and (~marking).sum() > 0.8 * len(xs)
    assert refl[marking].min() > 3 * refl[~marking].max()


def test_value_noise_range_and_smoothness():
    x = np.linspace(0, 20, 2001)
    n = value_noise(x, np.zeros_like(x), 2.0, 3)
    assert n.min() >= 0 and n.max() < 1 and np.ptp(n) > 0.3
    assert np.abs(np.diff(n)).max() < 0.02      # continuous at 1 cm steps


def test_default_world_is_detailed():
    # its build time is measured by benchmarks/synthetic.py, not asserted here
    world = World.generate(load_synth_config().world, 0)
    assert world.n_triangles > 20000


def test_negative_seed_rejected():
    with pytest.raises(ValueError, match='seed'):
        World.generate(load_synth_config().world, -1)
