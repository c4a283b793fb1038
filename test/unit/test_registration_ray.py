"""Tests for the ray registrar: preprocessing, well-formed results, failures, factory, i2p-eval."""

import json

from i2p_registration.core.models.checkpoint import save_checkpoint
from i2p_registration.core.models.ray_net import make_config, RayI2PNet
from i2p_registration.core.registration.base import RefinedRegistrar, Status
from i2p_registration.core.registration.factory import get_registrar
from i2p_registration.core.registration.ray import fit_image, load_ray_registrar, RayRegistrar
from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame
from i2p_registration.data.kitti import KittiOdometry, write_kitti_sequence
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
from i2p_registration.training import evaluate
import numpy as np
import pytest
import torch

torch.set_num_threads(1)

TINY = {'channels': 16, 'heads': 2, 'layers': 1, 'image_widths': (8, 8, 16),
        'point_samples': (64, 16), 'point_neighbours': (8, 8), 'point_widths': (16, 16),
        'pose_hidden': 32, 'min_visible': 4}
DATA = {'train': {'input_size': {'image_hw': [64, 128], 'n_points': 1024, 'voxel_size': 0.2},
                  'focal_px': 150.0}}


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Return a tiny synthetic sequence (3 frames) and a tiny untrained network checkpoint."""
    root = tmp_path_factory.mktemp('ray_world')
    cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'output.duration_s': 0.35})
    write_kitti_sequence(Simulator(cfg, 19), root / 'kitti', '00')
    torch.manual_seed(0)
    path = save_checkpoint(root / 'net.pt', RayI2PNet(make_config('small', **TINY)), DATA,
                           'abc1234')
    return KittiOdometry(root / 'kitti', '00'), path


def test_fit_image_keeps_the_camera_consistent():
    K = np.array([[400.0, 0.0, 300.0], [0.0, 410.0, 95.0], [0.0, 0.0, 1.0]])
    camera = CameraModel(K, 621, 188)
    image = np.zeros((188, 621, 3), np.uint8)
    image[100, 200] = 255
    out, cam = fit_image(image, camera, (64, 128), 0.35)
    assert out.shape == (64, 128, 3) and cam.size == (128, 64)
    s = 0.35                                     # 621 * 0.35 >= 128 and 188 * 0.35 >= 64
    x0, y0 = (round(621 * s) - 128) // 2, (round(188 * s) - 64) // 2
    X = np.array([1.5, 0.4, 10.0])
    uv, uv_fit = K @ X / X[2], cam.K @ X / X[2]
    # Resize (OpenCV pixel-centre convention: (u + 0.5) s - 0.5), then the crop offset.
    np.testing.assert_allclose(uv_fit[:2], (uv[:2] + 0.5) * [217 / 621, 66 / 188] - 0.5
                               - [x0, y0], atol=1e-9)
    big, cam_big = fit_image(image, camera, (376, 1242), 0.5)   # upscaled until the crop fits
    assert big.shape == (376, 1242, 3) and cam_big.K[0, 0] > 2 * K[0, 0] * 0.99
    with pytest.raises(ValueError, match='positive'):
        fit_image(image, camera, (64, 128), 0.0)


def test_untrained_network_gives_a_well_formed_result(world):
    source, path = world
    registrar = load_ray_registrar(path, 'cpu', seed=3)
    assert (registrar.image_hw, registrar.n_points, registrar.focal_px) == ((64, 128), 1024,
                                                                            150.0)
    image, cloud = source.read_image(1), source.read_scan(1)
    result = registrar.register(image, cloud)
    assert result.method == 'ray' and result.status in (Status.OK, Status.LOW_CONFIDENCE)
    T = result.T_cam_lidar
    assert T.shape == (4, 4) and T.dtype == np.float64 and np.all(np.isfinite(T))
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])
    cov = result.covariance
    assert cov.shape == (6, 6) and np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    assert np.all(np.diag(cov)[:3] >= 0.1 ** 2 - 1e-12)         # the floor, metres squared
    assert 0.0 <= result.score <= 1.0 and 0.0 <= result.inlier_ratio <= 1.0
    assert (result.status == Status.OK) == (result.score >= registrar.min_score)
    assert list(result.timings) == ['preprocess', 'network', 'rays', 'score', 'total']
    # Batch of one under inference_mode, repeatable (seeded point sampling).
    again = registrar.register(image, cloud)
    np.testing.assert_array_equal(again.T_cam_lidar, T)
    assert again.score == result.score
    # The pose is the network's regressed pose for the preprocessed inputs.
    inputs, _ = registrar._inputs(image, cloud)
    with torch.inference_mode():
        out = registrar.model(inputs['image'], inputs['points'], inputs['K'])
    np.testing.assert_allclose(out['T_cam_lidar'][0].double().numpy(), T, atol=1e-6)
    assert inputs['image'].shape == (1, 3, 64, 128) and inputs['points'].shape == (1, 1024, 3)
    K = inputs['K'][0].double().numpy()
    assert np.sqrt(K[0, 0] * K[1, 1]) == pytest.approx(150.0, rel=0.01)    # as in training


def test_bad_input_fails_with_a_reason(world):
    source, path = world
    registrar = load_ray_registrar(path, 'cpu')
    image = source.read_image(0)
    few = CloudFrame(np.random.default_rng(0).uniform(-20, 20, (30, 3)).astype(np.float32), 0,
                     'lidar')
    result = registrar.register(image, few)
    assert result.status == Status.FAILED and 'the network needs at least 64' in result.reason
    assert np.all(np.isnan(result.T_cam_lidar)) and np.all(np.isnan(result.covariance))
    empty = registrar.register(image, CloudFrame(np.zeros((0, 3), np.float32), 0, 'lidar'))
    assert empty.status == Status.FAILED and 'empty cloud' in empty.reason
    fisheye = CameraModel(image.camera.K, image.camera.width, image.camera.height,
                          'equidistant', [0.01, 0.0, 0.0, 0.0])
    result = registrar.register(ImageFrame(image.image, 0, 'cam', fisheye), source.read_scan(0))
    assert result.status == Status.FAILED and 'rectify' in result.reason
    with pytest.raises(ValueError, match='below the 64 points'):
        RayRegistrar(registrar.model, n_points=10)


def test_checkpoint_with_another_config_is_a_clear_error(world):
    _, path = world
    with pytest.raises(ValueError, match=r'different config \(channels: checkpoint 16 != '
                                         r'expected 64'):
        load_ray_registrar(path, 'cpu', make_config('small', **{**TINY, 'channels': 64}))


def test_factory_and_i2p_eval_run_the_ray_methods(world, tmp_path):
    source, path = world
    assert isinstance(get_registrar('ray', device='cpu', checkpoint=str(path)), RayRegistrar)
    refined = get_registrar('ray+edge', device='cpu', checkpoint=str(path))
    assert isinstance(refined, RefinedRegistrar) and refined.name == 'ray+edge'
    with pytest.raises(ValueError, match='needs a network checkpoint'):
        get_registrar('ray', device='cpu')
    result = refined.register(source.read_image(2), source.read_scan(2))
    assert result.method == 'ray+edge' and 'ray.network' in result.timings
    if result.status != Status.FAILED:
        assert np.all(np.isfinite(result.T_cam_lidar))
    output = tmp_path / 'eval.json'
    assert evaluate.main(['--kitti', str(source.root), '--protocol', 'same_frame', '--count',
                          '2', '--method', 'ray', '--checkpoint', str(path), '--device', 'cpu',
                          '--output', str(output)]) == 0
    report = json.loads(output.read_text())
    assert report['method'] == 'ray' and report['checkpoint'] == str(path)
    assert report['summary']['pairs'] == 2
    assert all(np.isfinite(r['rte_m']) for r in report['pairs'])
