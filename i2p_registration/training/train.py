r"""
``i2p-train``: train the ray registration network on image / point-cloud pairs.

Examples::

    i2p-train --preset small --train out/synth_3 --val out/synth_8 --epochs 30
    i2p-train --synth-train 8 --synth-val 1 --synth-set output.duration_s=30 --threads 1
    torchrun --nproc_per_node 2 -m i2p_registration.training.train --train ROOT:00 ...
    i2p-train --resume out/train/<run>/last.pt          # continue an interrupted run

Data: KITTI-layout sequences (``ROOT[:SEQ]``: real KITTI or ``i2p-synth`` output) and synthetic
worlds generated on demand by seed (train / validation splits of
:mod:`i2p_registration.data.splits`), paired by the protocols of
:mod:`i2p_registration.data.protocols`. Pairs, crops and batch order are functions of
``(seed, epoch)``, and the checkpoints hold the model, optimizer, scheduler, AMP scaler and RNG
states, so a resumed run continues exactly where it stopped. Mixed precision on CUDA;
DistributedDataParallel under ``torchrun`` (NCCL on CUDA, gloo on the CPU). The run folder
(default ``out/train/<run>``, outside git) gets ``last.pt``, ``best.pt``, ``epoch_NNN.pt``,
``steps.csv``, ``epochs.csv`` and, when the ``tensorboard`` package is installed, TensorBoard
events.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from pathlib import Path
import random
import subprocess
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
import yaml

from .datasets import (batch_inputs, collate_pairs, ensure_synthetic_sequence,
                       PairTensorDataset, parse_source)
from ..core.metrics import registration_recall, rre_geodesic, rre_protocol, rte
from ..core.models.checkpoint import load_model, save_checkpoint
from ..core.models.losses import LossWeights, RayI2PLoss
from ..core.models.ray_net import count_parameters, make_config, PRESETS, RayI2PNet
from ..data.input_size import InputSize
from ..data.progress import Progress
from ..data.splits import split_seeds

TERMS = ('total', 'ray', 'rotation', 'translation', 'focus', 'overlap')


def git_revision(root: str | Path | None = None) -> str:
    """Return ``git rev-parse HEAD`` of the source tree (``-dirty`` with local changes)."""
    root = Path(root or Path(__file__).resolve().parents[2])
    try:
        rev = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return rev + ('-dirty' if dirty else '')


def rng_state() -> dict:
    """Return the torch, CUDA, numpy and Python RNG states as checkpointable values."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {'torch': torch.get_rng_state(),
            'cuda': torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            'numpy': [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                      float(gauss)],
            'python': random.getstate()}


def set_rng_state(state: dict) -> None:
    """Restore the states of :func:`rng_state`."""
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))


def lr_factor(step: int, total: int, warmup: int, final: float = 0.05) -> float:
    """Return the learning-rate factor: linear warm-up, then cosine decay to ``final``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _parse_sets(items: list[str], what: str) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep:
            raise ValueError(f'{what} expects KEY=VALUE, got {item!r}')
        out[key.strip()] = yaml.safe_load(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line interface."""
    p = argparse.ArgumentParser(prog='i2p-train', description=__doc__.strip().split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--train', action='append', default=[], metavar='ROOT[:SEQ]',
                   help='KITTI-layout training sequence (repeatable)')
    p.add_argument('--val', action='append', default=[], metavar='ROOT[:SEQ]',
                   help='KITTI-layout validation sequence (repeatable)')
    p.add_argument('--synth-train', type=int, default=0, metavar='N',
                   help='also train on the first N synthetic train-split worlds')
    p.add_argument('--synth-val', type=int, default=0, metavar='N',
                   help='also validate on the first N synthetic validation-split worlds')
    p.add_argument('--synth-root', default='out/synth_cache',
                   help='where generated worlds are written (world_<seed>)')
    p.add_argument('--synth-set', action='append', default=[], metavar='SECTION.KEY=VALUE',
                   help='synthetic generator override (repeatable)')
    p.add_argument('--protocol', default='same_frame',
                   help='comma-separated pair protocols (same_frame, random_frame, nearby)')
    p.add_argument('--val-protocol', help='validation protocols (default: --protocol)')
    p.add_argument('--max-pairs', type=int, help='training pairs per epoch (default all)')
    p.add_argument('--val-pairs', type=int, default=64, help='validation pairs')
    p.add_argument('--image-hw', type=int, nargs=2, default=(160, 512))
    p.add_argument('--image-scale', type=float, default=0.5,
                   help='image scale before the crop (0.5 for full-size KITTI images)')
    p.add_argument('--points', type=int, default=40960)
    p.add_argument('--voxel', type=float, default=0.1, help='voxel size, metres (0: none)')
    p.add_argument('--preset', default='small', choices=sorted(PRESETS))
    p.add_argument('--model-set', action='append', default=[], metavar='FIELD=VALUE',
                   help='override a RayI2PConfig field, e.g. channels=32 (repeatable)')
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--stop-after', type=int, metavar='N',
                   help='stop after N epochs of this invocation (the schedule keeps --epochs)')
    p.add_argument('--batch-size', type=int, default=4, help='pairs per process and step')
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--weight-decay', type=float, default=1e-4)
    p.add_argument('--warmup', type=int, default=200, help='warm-up steps')
    p.add_argument('--clip', type=float, default=5.0, help='gradient norm clip')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=0, help='data loader processes')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch decides)')
    p.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    p.add_argument('--no-amp', action='store_true', help='full precision on CUDA too')
    p.add_argument('--run-dir', help='run folder (default out/train/<preset>_<time>_s<seed>)')
    p.add_argument('--resume', metavar='CHECKPOINT',
                   help="continue from a checkpoint ('auto': <run-dir>/last.pt if present)")
    p.add_argument('--save-every', type=int, default=1, help='epoch_NNN.pt every N epochs')
    p.add_argument('--log-every', type=int, default=10, help='steps between steps.csv rows')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p


class _Distributed:
    """Process-group membership from the ``torchrun`` environment (one process otherwise)."""

    def __init__(self, device: str):
        self.world = int(os.environ.get('WORLD_SIZE', '1'))
        self.rank = int(os.environ.get('RANK', '0'))
        local = int(os.environ.get('LOCAL_RANK', '0'))
        cuda = device == 'cuda' or (device == 'auto' and torch.cuda.is_available())
        if device == 'cuda' and not torch.cuda.is_available():
            raise ValueError('--device cuda requested but torch sees no CUDA device')
        self.device = torch.device(f'cuda:{local}' if cuda else 'cpu')
        if cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group('nccl' if cuda else 'gloo', rank=self.rank,
                                    world_size=self.world)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _sources(args, ddp: _Distributed) -> tuple[list, list]:
    overrides = _parse_sets(args.synth_set, '--synth-set')
    train = [parse_source(s) for s in args.train]
    val = [parse_source(s) for s in args.val]
    for split, count, out in (('train', args.synth_train, train), ('val', args.synth_val, val)):
        for seed in split_seeds(split, count):
            root = Path(args.synth_root) / f'world_{seed}'
            if ddp.main:
                ensure_synthetic_sequence(seed, root, overrides)
            out.append((str(root), '00'))
    ddp.barrier()
    if not train:
        raise ValueError('no training data: give --train ROOT[:SEQ] or --synth-train N')
    return train, val


class _Log:
    """CSV files (and TensorBoard when installed) in the run folder; rank 0 only."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.run_dir, self.enabled, self.tb = run_dir, enabled, None
        self.note = ''
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(run_dir / 'tensorboard'))
        except ImportError:
            self.note = ('TensorBoard log off: torch.utils.tensorboard needs the tensorboard '
                         'package; steps.csv and epochs.csv hold the same numbers')

    def row(self, name: str, values: dict) -> None:
        if not self.enabled:
            return
        path = self.run_dir / name
        new = not path.exists()
        with open(path, 'a', newline='', encoding='utf-8') as f:
            writer = csv.DictWriter(f, fieldnames=list(values))
            if new:
                writer.writeheader()
            writer.writerow(values)
        if self.tb is not None:
            step = values.get('step', values.get('epoch'))
            for k, v in values.items():
                if k not in ('step', 'epoch') and isinstance(v, float):
                    self.tb.add_scalar(f'{name[:-4]}/{k}', v, step)
            self.tb.flush()


def _forward_loss(model, criterion, inputs: dict, amp: bool) -> tuple[dict, dict]:
    image = inputs['image']
    with torch.autocast(image.device.type, dtype=torch.float16, enabled=amp):
        out = model(image, inputs['points'], inputs['K'], inputs['D'], need_attention=True)
    # The losses are geometry (projections, angles): always in float32.
    out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
    terms = criterion(out, inputs['T_cam_lidar'], inputs['K'], tuple(image.shape[-2:]),
                      inputs['D'])
    return out, terms


@torch.no_grad()
def validate(model: RayI2PNet, loader, criterion, device, amp: bool,
             progress: Progress | None = None) -> dict:
    """
    Evaluate mean loss terms and pose errors of the regressed ``T_cam_lidar``.

    :return: ``val_<term>`` means, ``val_rte_median_m``, ``val_rre_geodesic_median_deg``,
        ``val_rre_protocol_median_deg`` and ``val_rr`` (RTE < 2 m and RRE < 5 deg).
    """
    model.eval()
    sums, n, T_pred, T_gt = dict.fromkeys(TERMS, 0.0), 0, [], []
    for i, batch in enumerate(loader):
        inputs = batch_inputs(batch, device)
        out, terms = _forward_loss(model, criterion, inputs, amp)
        b = inputs['image'].shape[0]
        for k in TERMS:
            sums[k] += float(terms[k]) * b
        n += b
        T_pred.append(out['T_cam_lidar'].double().cpu().numpy())
        T_gt.append(inputs['T_cam_lidar'].double().cpu().numpy())
        if progress is not None:
            progress(i + 1)
    T_pred, T_gt = np.concatenate(T_pred), np.concatenate(T_gt)
    e_t, e_p, e_g = rte(T_pred, T_gt), rre_protocol(T_pred, T_gt), rre_geodesic(T_pred, T_gt)
    metrics = {f'val_{k}': v / n for k, v in sums.items()}
    metrics.update(val_rte_median_m=float(np.median(e_t)),
                   val_rre_geodesic_median_deg=float(np.median(e_g)),
                   val_rre_protocol_median_deg=float(np.median(e_p)),
                   val_rr=registration_recall(e_t, e_p))
    return metrics


def _save(path: Path, model, data: dict, revision: str, metrics: dict, extra: dict) -> None:
    tmp = path.with_suffix('.tmp')
    save_checkpoint(tmp, model, data, revision, metrics, extra)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Train; returns the process exit status (2 for bad arguments or checkpoints)."""
    args = build_parser().parse_args(argv)
    try:
        return _train(args)
    except ValueError as err:
        print(f'i2p-train: error: {err}', file=sys.stderr)
        return 2


def _train(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError('--epochs and --batch-size must be >= 1')
    config = make_config(args.preset, **_parse_sets(args.model_set, '--model-set'))
    run_dir = Path(args.run_dir or (Path(args.resume).parent if args.resume
                                    and args.resume != 'auto' else
                                    Path('out/train') / f'{args.preset}_'
                                    f'{time.strftime("%Y%m%d-%H%M%S")}_s{args.seed}'))
    ddp = _Distributed(args.device)
    try:
        return _run(args, config, run_dir, ddp)
    finally:
        ddp.close()


def _run(args, config, run_dir: Path, ddp: _Distributed) -> int:
    device, amp = ddp.device, ddp.device.type == 'cuda' and not args.no_amp
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    train_src, val_src = _sources(args, ddp)
    size = {'image_hw': tuple(args.image_hw), 'image_scale': args.image_scale,
            'voxel_size': args.voxel or None, 'n_points': args.points}
    protocols = args.protocol.split(',')
    train_set = PairTensorDataset(train_src, protocols, args.seed,
                                  InputSize(random_crop=True, **size), args.max_pairs)
    val_set = (PairTensorDataset(val_src, (args.val_protocol or args.protocol).split(','),
                                 args.seed + 1, InputSize(**size), args.val_pairs)
               if val_src else None)
    sampler = DistributedSampler(train_set, ddp.world, ddp.rank, shuffle=True, seed=args.seed,
                                 drop_last=True)
    loader = DataLoader(train_set, args.batch_size, sampler=sampler, drop_last=True,
                        num_workers=args.workers, collate_fn=collate_pairs)
    if len(loader) == 0:
        raise ValueError(f'{len(train_set)} training pairs make no batch of {args.batch_size} '
                         f'per process ({ddp.world} processes)')
    val_loader = (DataLoader(val_set, args.batch_size, num_workers=args.workers,
                             collate_fn=collate_pairs) if val_set is not None else None)

    model = RayI2PNet(config).to(device)
    criterion = RayI2PLoss(config.sigma, config.moment_scale, config.translation_scale,
                           LossWeights())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                  weight_decay=args.weight_decay)
    total_steps = args.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, min(args.warmup, total_steps // 10 + 1)))
    scaler = torch.amp.GradScaler('cuda', enabled=amp)
    start_epoch, step, best, history = 0, 0, float('inf'), []
    resume = args.resume
    if resume == 'auto':
        resume = run_dir / 'last.pt' if (run_dir / 'last.pt').exists() else None
    if resume:
        # load_model names every config field that differs from the requested one.
        loaded, ckpt = load_model(resume, config, device)
        model.load_state_dict(loaded.state_dict())
        extra = ckpt.extra
        if not {'optimizer', 'scheduler', 'scaler', 'rng', 'epoch'} <= set(extra):
            raise ValueError(f'{resume} holds weights but no training state (optimizer, '
                             f'scheduler, RNG, epoch): it cannot be resumed')
        optimizer.load_state_dict(extra['optimizer'])
        scheduler.load_state_dict(extra['scheduler'])
        scaler.load_state_dict(extra['scaler'])
        set_rng_state(extra['rng'])
        start_epoch, step = int(extra['epoch']), int(extra['step'])
        best, history = float(extra['best']), list(extra['history'])
        if extra['args'].get('epochs') != args.epochs and ddp.main:
            print(f'i2p-train: note: the schedule was made for {extra["args"]["epochs"]} '
                  f'epochs, continuing to {args.epochs}', file=sys.stderr)
    net = (DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda'
                                   else None) if ddp.world > 1 else model)

    data = {'train': train_set.description(),
            'val': val_set.description() if val_set is not None else None,
            'synthetic_overrides': _parse_sets(args.synth_set, '--synth-set')}
    revision = git_revision()
    log = _Log(run_dir, ddp.main)
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        print(f'i2p-train: {count_parameters(model)} parameters, {len(train_set)} training '
              f'pairs, {ddp.world} process(es) on {device}, AMP {"on" if amp else "off"}, '
              f'run folder {run_dir}', file=sys.stderr)
        if log.note:
            print(f'i2p-train: {log.note}', file=sys.stderr)
    stream = None if args.quiet or not ddp.main else sys.stderr
    last_epoch = args.epochs if args.stop_after is None else min(args.epochs,
                                                                 start_epoch + args.stop_after)
    started = time.perf_counter()
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        net.train()
        sums, count = dict.fromkeys(TERMS, 0.0), 0
        progress = Progress(len(loader), f'epoch {epoch + 1}/{args.epochs}', stream)
        for i, batch in enumerate(loader):
            inputs = batch_inputs(batch, device)
            _, terms = _forward_loss(net, criterion, inputs, amp)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(terms['total']).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            values = {k: float(terms[k].detach()) for k in TERMS}
            for k in TERMS:
                sums[k] += values[k]
            count += 1
            if step % args.log_every == 0 or i + 1 == len(loader):
                log.row('steps.csv', {'step': step, 'epoch': epoch + 1,
                                      'lr': optimizer.param_groups[0]['lr'], **values,
                                      'wall_s': round(time.perf_counter() - started, 1)})
            progress.label = f'epoch {epoch + 1}/{args.epochs} loss {sums["total"] / count:.3f}'
            progress(i + 1)
        metrics = {'epoch': epoch + 1, 'step': step, 'lr': optimizer.param_groups[0]['lr'],
                   **{f'train_{k}': v / count for k, v in sums.items()}}
        if val_loader is not None and ddp.main:
            metrics.update(validate(model, val_loader, criterion, device, amp,
                                    Progress(len(val_loader), '  validation', stream)))
        metrics['epoch_s'] = time.perf_counter() - t0
        history.append(metrics)
        if ddp.main:
            log.row('epochs.csv', metrics)
            score = metrics.get('val_total', metrics['train_total'])
            best = min(best, score)
            extra = {'epoch': epoch + 1, 'step': step, 'optimizer': optimizer.state_dict(),
                     'scheduler': scheduler.state_dict(), 'scaler': scaler.state_dict(),
                     'rng': rng_state(), 'best': best, 'history': history,
                     'args': {k: list(v) if isinstance(v, tuple) else v
                              for k, v in vars(args).items()}}
            _save(run_dir / 'last.pt', model, data, revision, metrics, extra)
            if (epoch + 1) % args.save_every == 0 or epoch + 1 == args.epochs:
                _save(run_dir / f'epoch_{epoch + 1:03d}.pt', model, data, revision, metrics,
                      extra)
            if score <= best:
                _save(run_dir / 'best.pt', model, data, revision, metrics, extra)
            summary = ', '.join(f'{k} {v:.4g}' for k, v in metrics.items()
                                if k.startswith(('train_total', 'val_total', 'val_r')))
            print(f'i2p-train: epoch {epoch + 1}: {summary}', file=sys.stderr)
        ddp.barrier()
    return 0


if __name__ == '__main__':
    sys.exit(main())
