"""Tests for i2p-train: datasets, a short seeded run, checkpoints, logs and exact resumption."""

import csv

from i2p_registration.core.models.checkpoint import load_checkpoint, save_checkpoint
from i2p_registration.core.models.ray_net import RayI2PNet
from i2p_registration.data.input_size import InputSize
from i2p_registration.data.kitti import write_kitti_sequence
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
from i2p_registration.training.datasets import (batch_inputs, collate_pairs, PairTensorDataset,
                                                parse_source)
from i2p_registration.training.train import lr_factor, main, rng_state, set_rng_state
import numpy as np
import pytest
import torch

torch.set_num_threads(1)

TINY = ['channels=16', 'heads=2', 'layers=1', 'image_widths=[8,8,16]', 'point_samples=[64,16]',
        'point_neighbours=[8,8]', 'point_widths=[16,16]', 'pose_hidden=32', 'min_visible=4']
SIZE = ['--image-hw', '64', '128', '--image-scale', '0.35', '--points', '1024']


@pytest.fixture(scope='module')
def worlds(tmp_path_factory):
    """Return a tiny training world (8 frames, seed 1) and a validation world (3 frames, 8)."""
    root = tmp_path_factory.mktemp('train_worlds')
    for seed, duration in ((1, 0.75), (8, 0.35)):
        cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'output.duration_s': duration})
        write_kitti_sequence(Simulator(cfg, seed), root / f'w{seed}', '00')
    return str(root / 'w1'), str(root / 'w8')


def train_args(worlds, run_dir, *extra):
    args = ['--train', worlds[0], *SIZE, '--epochs', '3', '--batch-size', '2', '--lr', '3e-3',
            '--warmup', '2', '--threads', '1', '--run-dir', str(run_dir), '--log-every', '1',
            '--quiet']
    for item in TINY:
        args += ['--model-set', item]
    return args + list(extra)


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_pair_dataset_batches_and_epochs(worlds):
    assert parse_source(worlds[0]) == (worlds[0], '00')
    assert parse_source(worlds[0] + ':07') == (worlds[0], '07')
    size = InputSize(image_hw=(64, 128), image_scale=0.35, n_points=1024, random_crop=True)
    ds = PairTensorDataset([parse_source(worlds[0])], ['same_frame', 'nearby'], 3, size)
    assert len(ds) == 16
    batch = collate_pairs([ds[0], ds[9]])
    shapes = {k: tuple(v.shape) for k, v in batch.items()}
    assert shapes == {'image': (2, 3, 64, 128), 'points': (2, 1024, 3), 'K': (2, 3, 3),
                      'D': (2, 8), 'T_cam_lidar': (2, 4, 4), 'index': (2,)}
    assert batch['image'].dtype == torch.uint8
    inputs = batch_inputs(batch, 'cpu')
    assert inputs['D'] is None and 0.0 <= inputs['image'].min() < inputs['image'].max() <= 1.0
    R = batch['T_cam_lidar'][:, :3, :3].double()
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3).double(),
                               atol=1e-5, rtol=0)
    # Pairs depend on (seed, epoch, index) only: the same in any order, new in a new epoch.
    first = ds[5]['T_cam_lidar']
    torch.testing.assert_close(ds[5]['T_cam_lidar'], first, atol=0, rtol=0)
    ds.set_epoch(1)
    assert not torch.allclose(ds[5]['T_cam_lidar'], first)
    ds.set_epoch(0)
    torch.testing.assert_close(ds[5]['T_cam_lidar'], first, atol=0, rtol=0)
    desc = ds.description()
    assert desc['sources'][0]['world_seed'] == 1 and desc['sources'][0]['split'] == 'train'
    assert desc['input_size']['image_hw'] == [64, 128] and desc['pairs'] == 16
    assert 100 < desc['focal_px'] < 400
    assert len(PairTensorDataset([parse_source(worlds[0])], ['same_frame'], 3, size, 3)) == 3


def test_schedule_and_rng_state_round_trip():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10) == pytest.approx(0.05)
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3))
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3))
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
    np.testing.assert_array_equal(a[1], b[1])


def test_short_run_learns_writes_checkpoints_and_logs(worlds, tmp_path, capsys):
    run = tmp_path / 'run'
    assert main(train_args(worlds, run, '--val', worlds[1])) == 0
    err = capsys.readouterr().err
    assert 'TensorBoard log off' in err or (run / 'tensorboard').is_dir()
    epochs = read_csv(run / 'epochs.csv')
    assert [int(r['epoch']) for r in epochs] == [1, 2, 3]
    losses = [float(r['train_total']) for r in epochs]
    assert losses[-1] < 0.85 * losses[0]
    for key in ('val_total', 'val_rte_median_m', 'val_rre_geodesic_median_deg', 'val_rr'):
        assert np.isfinite(float(epochs[-1][key]))
    steps = read_csv(run / 'steps.csv')
    assert [int(r['step']) for r in steps] == list(range(1, 13))
    assert sorted(p.name for p in run.glob('*.pt')) == [
        'best.pt', 'epoch_001.pt', 'epoch_002.pt', 'epoch_003.pt', 'last.pt']
    ckpt = load_checkpoint(run / 'last.pt')
    assert ckpt.config.channels == 16 and ckpt.git_revision not in ('', 'unknown')
    assert ckpt.data['train']['sources'][0]['world_seed'] == 1
    assert ckpt.data['val']['sources'][0]['split'] == 'val'
    assert ckpt.metrics['epoch'] == 3 and ckpt.extra['epoch'] == 3
    assert ckpt.metrics['val_total'] == pytest.approx(float(epochs[-1]['val_total']))
    assert len(ckpt.extra['history']) == 3 and ckpt.extra['args']['seed'] == 0


def test_resume_continues_exactly(worlds, tmp_path):
    straight, split = tmp_path / 'straight', tmp_path / 'split'
    assert main(train_args(worlds, straight)) == 0
    assert main(train_args(worlds, split, '--stop-after', '1')) == 0
    assert load_checkpoint(split / 'last.pt').extra['epoch'] == 1
    assert main(train_args(worlds, split, '--resume', str(split / 'last.pt'))) == 0
    a, b = load_checkpoint(straight / 'last.pt'), load_checkpoint(split / 'last.pt')
    assert b.extra['epoch'] == 3 and b.extra['step'] == 12
    for k, v in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v, atol=0, rtol=0, msg=k)
    assert [r['train_total'] for r in read_csv(split / 'epochs.csv')] == \
        [r['train_total'] for r in read_csv(straight / 'epochs.csv')]
    assert [int(r['step']) for r in read_csv(split / 'steps.csv')] == list(range(1, 13))


def test_resume_with_another_config_is_a_clear_error(worlds, tmp_path, capsys):
    run = tmp_path / 'run'
    assert main(train_args(worlds, run, '--epochs', '1', '--max-pairs', '2')) == 0
    capsys.readouterr()
    args = train_args(worlds, run, '--epochs', '2', '--resume', 'auto', '--model-set',
                      'channels=32')
    assert main(args) == 2
    assert 'different config (channels: checkpoint 16 != expected 32)' in capsys.readouterr().err
    weights_only = tmp_path / 'weights.pt'
    ckpt = load_checkpoint(run / 'last.pt')
    net = RayI2PNet(ckpt.config)
    net.load_state_dict(ckpt.state_dict)
    save_checkpoint(weights_only, net, ckpt.data, ckpt.git_revision)
    assert main(train_args(worlds, run, '--resume', str(weights_only))) == 2
    assert 'no training state' in capsys.readouterr().err
    assert main(train_args(worlds, tmp_path / 'none', '--batch-size', '0')) == 2
    assert 'must be >= 1' in capsys.readouterr().err
