"""
Latency and accuracy of the learned ``ray`` registration (issue 7 targets).

Figures:

- latency per stage (``preprocess``, ``network``, ``rays``, ``score``, ``total``) of one
  registration by the ``small`` and ``paper`` presets at the network input of 160x512 pixels
  and 40960 points, batch of 1 under ``torch.inference_mode()``, median over repetitions, on
  the CPU and, where torch sees one, on CUDA (float16 autocast). The input is the first frame
  of a test-split synthetic world (1242x375 image, HDL-64E scan). Latency does not depend on
  the weights: without a checkpoint the networks are freshly initialized (seeded);
- with ``--checkpoint`` (an ``i2p-train`` checkpoint, e.g. the shipped ``models/`` one):
  ``same_frame`` and ``random_frame`` pairs of a test-split world, ``ray`` (the network alone)
  and ``ray+edge`` (then edge refinement): registration recall, median RTE and RRE. Targets:
  ``same_frame`` ray+edge RR >= 90 % with median RTE <= 0.10 m and RRE <= 0.5 deg,
  ``random_frame`` RR >= 80 %. Without a checkpoint these figures are not measured and the
  result file says so.

Run: ``python benchmarks/registration_ray.py [--quick] [--checkpoint PATH] [--synthetic ROOT]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import common
from i2p_registration.core.models.ray_net import make_config, RayI2PNet
from i2p_registration.core.registration.factory import get_registrar
from i2p_registration.core.registration.ray import RayRegistrar
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.splits import split_seed
from i2p_registration.data.synth_config import SynthConfig
from i2p_registration.training import evaluate
import numpy as np
import torch

SEED = 0


def _frame():
    """Return the image and scan of the first frame of test world 0."""
    sim = Simulator(SynthConfig(), split_seed('test', 0))
    stamp = int(sim.start_ns)
    image, _ = sim.image(stamp, 0)
    return image, sim.scan(stamp, 0)


def latency_figures(repeat: int, paper_repeat: int) -> tuple[list[dict], dict]:
    image, cloud = _frame()
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    figures, config = [], {'image': list(image.image.shape), 'scan_points': len(cloud),
                           'torch_threads': torch.get_num_threads(), 'devices': devices}
    for preset in ('small', 'paper'):
        torch.manual_seed(SEED)
        model = RayI2PNet(make_config(preset))
        config[f'{preset}_parameters'] = int(sum(p.numel() for p in model.parameters()))
        for device in devices:
            registrar = RayRegistrar(model, device, image_hw=(160, 512), n_points=40960)
            # The paper preset is slow on a small CPU: fewer calls, one warm-up.
            n, warmup = (paper_repeat, 1) if preset == 'paper' and device == 'cpu' \
                else (repeat, 2)
            runs = [registrar.register(image, cloud) for _ in range(n + warmup)][warmup:]
            for stage in ('preprocess', 'network', 'rays', 'score', 'total'):
                value = float(np.median([r.timings.get(stage, np.nan) for r in runs]))
                figures.append(common.figure(
                    f'latency_{preset}_{device}_{stage}_ms', value, 'ms', 'lower', None,
                    f'160x512, 40960 points, batch 1, median of {n}'
                    + (', float16 autocast' if device == 'cuda' else '')))
    return figures, config


def _write_world(folder: str, frames: int) -> str:
    """Write the first test-split world (KITTI layout) with ``i2p-synth``; return its root."""
    synth = os.path.join(os.path.dirname(sys.executable), 'i2p-synth')
    subprocess.run([synth, '--split', 'test', '--format', 'kitti', '--out', folder,
                    '--frames', str(frames), '--quiet', '--preview', '0'], check=True)
    return os.path.join(folder, 'kitti')


def accuracy_figures(checkpoint: str, root: str, pairs: int) -> list[dict]:
    figures = []
    targets = {('same_frame', 'ray+edge'): (0.9, 0.10, 0.5), ('random_frame', 'ray+edge'):
               (0.8, None, None)}
    for method in ('ray', 'ray+edge'):
        registrar = get_registrar(method, device='auto', checkpoint=checkpoint)
        for protocol in ('same_frame', 'random_frame'):
            rows = evaluate.run_protocol(registrar, root, '00', protocol, pairs, SEED)
            s = evaluate.summarize(rows)
            rr, rte_t, rre_t = targets.get((protocol, method), (None, None, None))
            base = f'{len(rows)} pairs, seed {SEED}'
            name = f"{protocol}_{method.replace('+', '_')}"
            figures += [
                common.figure(f'{name}_recall', s['recall'], 'fraction', 'higher', rr, base),
                common.figure(f'{name}_rte_median', s['rte_m_median'], 'm', 'lower', rte_t,
                              base),
                common.figure(f'{name}_rre_protocol_median', s['rre_protocol_deg_median'],
                              'deg', 'lower', rre_t, base),
            ]
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions and pairs')
    parser.add_argument('--checkpoint', help='i2p-train checkpoint for the accuracy figures')
    parser.add_argument('--synthetic', help='test world folder in KITTI layout (default: '
                        'written to a temporary folder with i2p-synth)')
    parser.add_argument('--pairs', type=int, help='pairs per protocol (default 200, quick 10)')
    args = parser.parse_args(argv)
    repeat, paper_repeat = (3, 1) if args.quick else (10, 3)
    pairs = args.pairs or (10 if args.quick else 200)
    figures, config = latency_figures(repeat, paper_repeat)
    config.update({'seed': SEED, 'quick': args.quick, 'latency_repeat': repeat,
                   'paper_cpu_repeat': paper_repeat})
    if args.checkpoint:
        with tempfile.TemporaryDirectory(prefix='i2p_bench_world_') as folder:
            root = args.synthetic or _write_world(folder, max(pairs, 30))
            figures += accuracy_figures(args.checkpoint, root, pairs)
        config.update({'checkpoint': args.checkpoint, 'pairs': pairs,
                       'synthetic': args.synthetic or 'test split world 0 (i2p-synth)'})
    else:
        config['accuracy'] = ('not measured: no checkpoint given (--checkpoint); no trained '
                              'model is shipped yet')
    common.print_figures(figures, common.write_results('registration_ray', config, figures))
    return 0


if __name__ == '__main__':
    sys.exit(main())
