"""
Training data of the ray network: pair protocols over KITTI-layout sequences, as torch tensors.

A source is a KITTI-odometry layout folder (real KITTI, or a synthetic world written by
``i2p-synth`` / :func:`ensure_synthetic_sequence`) and a sequence name. Every (source, protocol)
gives one :class:`~i2p_registration.data.protocols.PairDataset`; :class:`PairTensorDataset`
concatenates them and returns tensors that :func:`collate_pairs` stacks into a batch.

Pairs are a function of ``(seed, epoch, index)`` only (:meth:`PairTensorDataset.set_epoch`), so
a resumed run draws the same pairs as an uninterrupted one, in any worker process.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
import yaml

from ..data.input_size import InputSize
from ..data.kitti import KittiOdometry, write_kitti_sequence
from ..data.protocols import PairDataset
from ..data.simulator import Simulator
from ..data.splits import split_of_seed
from ..data.synth_config import load_synth_config

# Plumb_bob coefficients are padded to this length so that every sample stacks.
N_DISTORTION = 8


def parse_source(text: str) -> tuple[str, str]:
    """
    Split ``ROOT[:SEQUENCE]`` into a KITTI-layout root and a sequence name (default ``00``).

    A root that holds no ``sequences/`` folder but a ``kitti/`` one (the ``i2p-synth`` output
    folder) is followed into ``kitti/``.
    """
    root, sep, sequence = text.rpartition(':')
    if not sep or '/' in sequence:
        root, sequence = text, ''
    path = Path(root)
    if not (path / 'sequences').is_dir() and (path / 'kitti' / 'sequences').is_dir():
        path = path / 'kitti'
    return str(path), sequence or '00'


def ensure_synthetic_sequence(seed: int, root: str | Path, overrides: dict | None = None,
                              sequence: str = '00') -> Path:
    """
    Write the synthetic world ``seed`` in KITTI layout under ``root`` unless it is there.

    :param seed: world seed (its split follows from its last digit).
    :param root: KITTI-layout root to hold ``sequences/<sequence>``.
    :param overrides: generator config overrides (dotted keys), e.g. ``output.duration_s``.
    :return: ``root``.
    """
    root = Path(root)
    meta = root / 'sequences' / sequence / 'synthetic.yaml'
    if not meta.exists():
        config = load_synth_config(overrides=dict(overrides or {}))
        write_kitti_sequence(Simulator(config, int(seed)), root, sequence)
    return root


def describe_source(source: KittiOdometry) -> dict:
    """
    Describe a sequence in plain values for checkpoints: root, sequence, frames, image size.

    Synthetic sequences (with ``synthetic.yaml``) also give their world seed and split.
    """
    out = {'root': str(source.root), 'sequence': source.sequence, 'frames': len(source),
           'image_size': list(source.camera.size)}
    meta = source.seq_dir / 'synthetic.yaml'
    if meta.exists():
        with open(meta, 'r', encoding='utf-8') as f:
            seed = int(yaml.safe_load(f)['seed'])
        out.update(world_seed=seed, split=split_of_seed(seed))
    return out


def _mix(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


class PairTensorDataset(Dataset):
    """
    Pairs of several sequences and protocols as tensors for the network.

    :param sources: ``(root, sequence)`` KITTI-layout sequences.
    :param protocols: pair protocol names (``same_frame``, ``random_frame``, ``nearby``).
    :param seed: dataset seed.
    :param input_size: image crop / point sampling (:class:`InputSize`).
    :param max_pairs: use at most this many pairs (evenly spaced over all), or None for all.
    """

    def __init__(self, sources: list[tuple[str, str]], protocols: list[str], seed: int,
                 input_size: InputSize, max_pairs: int | None = None):
        if not sources or not protocols:
            raise ValueError('a pair dataset needs at least one source and one protocol')
        if input_size.image_hw is None or input_size.n_points is None:
            raise ValueError('training batches need a fixed image_hw and n_points')
        self.seed, self.input_size = int(seed), input_size
        self.sequences = [KittiOdometry(root, seq) for root, seq in sources]
        self.parts = [PairDataset(src, name, self.seed, input_size)
                      for src in self.sequences for name in protocols]
        self.protocols = list(protocols)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        total = int(self.offsets[-1])
        if total == 0:
            raise ValueError(f'the sources {sources} hold no frames')
        count = total if max_pairs is None else min(int(max_pairs), total)
        self.index = np.linspace(0, total - 1, count).round().astype(np.int64)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the pairs of ``epoch`` (perturbations and crops change from epoch to epoch)."""
        self.epoch = int(epoch)
        for part in self.parts:
            part.seed = _mix(self.seed, self.epoch)

    def __len__(self) -> int:
        return int(len(self.index))

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        """
        Return pair ``k`` of the current epoch.

        :return: ``image`` ``(3, H, W)`` uint8 RGB, ``points`` ``(N, 3)`` float32 metres (perturbed
            LiDAR frame), ``K`` ``(3, 3)`` float32 pixels, ``D`` ``(8,)`` plumb_bob coefficients
            (zeros for a pinhole), ``T_cam_lidar`` ``(4, 4)`` float32 ground truth, ``index``.
        """
        flat = int(self.index[k])
        part = int(np.searchsorted(self.offsets, flat, side='right')) - 1
        sample = self.parts[part][flat - int(self.offsets[part])]
        camera = sample.camera
        if camera.distortion_model == 'equidistant':
            raise ValueError('fisheye (equidistant) images are not supported for training')
        D = np.zeros(N_DISTORTION, dtype=np.float32)
        D[:camera.D.size] = camera.D
        return {'image': torch.from_numpy(sample.image).permute(2, 0, 1).contiguous(),
                'points': torch.from_numpy(np.ascontiguousarray(sample.points)),
                'K': torch.from_numpy(camera.K.astype(np.float32)),
                'D': torch.from_numpy(D),
                'T_cam_lidar': torch.from_numpy(sample.T_cam_lidar.astype(np.float32)),
                'index': torch.tensor(k)}

    def description(self) -> dict:
        """Describe the data in plain values (sources, protocols, seed, input size)."""
        size = {k: list(v) if isinstance(v, tuple) else v
                for k, v in asdict(self.input_size).items()}
        return {'sources': [describe_source(s) for s in self.sequences],
                'protocols': self.protocols, 'seed': self.seed, 'pairs': len(self),
                'input_size': size, 'focal_px': self.focal_px()}

    def focal_px(self) -> float:
        """Return the median focal length of the network input images, pixels."""
        focals = []
        for part in self.parts[::len(self.protocols)]:
            sample = part[0]
            focals.append(float(np.sqrt(sample.camera.K[0, 0] * sample.camera.K[1, 1])))
        return float(np.median(focals))


def collate_pairs(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack the samples of :class:`PairTensorDataset` into a batch (leading dimension B)."""
    return {key: torch.stack([s[key] for s in samples]) for key in samples[0]}


def batch_inputs(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict:
    """
    Move a batch to ``device`` as network inputs.

    :return: ``image`` ``(B, 3, H, W)`` float in [0, 1], ``points``, ``K``, ``D`` (None when
        every camera is a pinhole) and ``T_cam_lidar``, all float32.
    """
    D = batch['D'].to(device)
    return {'image': batch['image'].to(device).float().div_(255.0),
            'points': batch['points'].to(device), 'K': batch['K'].to(device),
            'D': D if bool(D.any()) else None,
            'T_cam_lidar': batch['T_cam_lidar'].to(device)}
