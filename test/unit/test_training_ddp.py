"""A 2-process CPU DistributedDataParallel step of i2p-train (gloo on 127.0.0.1)."""

import os
import socket
import subprocess
import sys

from i2p_registration.core.models.checkpoint import load_checkpoint
from i2p_registration.core.models.losses import LossWeights, RayI2PLoss
from i2p_registration.core.models.ray_net import make_config, RayI2PNet
from i2p_registration.data.input_size import InputSize
from i2p_registration.data.kitti import write_kitti_sequence
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
from i2p_registration.training.datasets import batch_inputs, PairTensorDataset
import torch

torch.set_num_threads(1)

TINY = {'channels': 16, 'heads': 2, 'layers': 1, 'image_widths': [8, 8, 16],
        'point_samples': [64, 16], 'point_neighbours': [8, 8], 'point_widths': [16, 16],
        'pose_hidden': 32, 'min_visible': 4}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_gloo_step_averages_gradients(tmp_path):
    cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'output.duration_s': 0.25})
    write_kitti_sequence(Simulator(cfg, 2), tmp_path / 'w2', '00', n_frames=2)
    run = tmp_path / 'run'
    argv = ['--train', str(tmp_path / 'w2'), '--image-hw', '64', '128', '--image-scale', '0.35',
            '--points', '1024', '--epochs', '1', '--batch-size', '1', '--lr', '1e-3',
            '--seed', '5', '--threads', '1', '--device', 'cpu', '--run-dir', str(run), '--quiet']
    for k, v in TINY.items():
        argv += ['--model-set', f'{k}={v}']
    port = free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port),
               'RANK': str(rank), 'LOCAL_RANK': str(rank), 'WORLD_SIZE': '2',
               'GLOO_SOCKET_IFNAME': 'lo', 'OMP_NUM_THREADS': '1'}
        code = ('import sys; from i2p_registration.training.train import main; '
                f'sys.exit(main({argv!r}))')
        procs.append(subprocess.Popen([sys.executable, '-c', code], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert '2 process(es) on cpu' in outputs[0]
    ckpt = load_checkpoint(run / 'last.pt')
    assert ckpt.extra['step'] == 1       # two pairs, one per process: one synchronized step

    # Reference: the same initial weights, the gradient averaged over the two single-pair losses
    # (what DDP all-reduces), clipped, and one AdamW step at the full learning rate.
    torch.manual_seed(5)
    config = make_config('small', **TINY)
    model = RayI2PNet(config)
    size = InputSize(image_hw=(64, 128), image_scale=0.35, n_points=1024, random_crop=True)
    pairs = PairTensorDataset([(str(tmp_path / 'w2'), '00')], ['same_frame'], 5, size)
    criterion = RayI2PLoss(config.sigma, config.moment_scale, config.translation_scale,
                           LossWeights())
    grads = []
    for k in range(2):
        model.zero_grad()
        x = batch_inputs({key: v[None] for key, v in pairs[k].items()}, 'cpu')
        out = model(x['image'], x['points'], x['K'], x['D'], need_attention=True)
        criterion(out, x['T_cam_lidar'], x['K'], (64, 128), x['D'])['total'].backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for p, g0, g1 in zip(model.parameters(), *grads):
        p.grad = (g0 + g1) / 2
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    optimizer.step()
    moved = 0
    for name, ref in model.state_dict().items():
        torch.testing.assert_close(ckpt.state_dict[name], ref, atol=2e-6, rtol=0, msg=name)
        moved += int(ref.dtype.is_floating_point)
    assert moved > 10
