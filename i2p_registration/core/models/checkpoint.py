"""
RayI2PNet checkpoints: weights plus the config, data description, git revision and metrics.

Checkpoints hold only tensors and plain Python values and are read with
``torch.load(weights_only=True)``, so a file that needs arbitrary unpickling (code execution)
is refused. A checkpoint whose config differs from the expected one is a ``ValueError`` that
names the differing fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import pickle

import torch

from .ray_net import RayI2PConfig, RayI2PNet

FORMAT = 'i2p_registration.ray_i2p/1'
_REQUIRED = ('format', 'config', 'state_dict', 'data', 'git_revision', 'metrics')


@dataclass
class Checkpoint:
    """
    A loaded checkpoint.

    :param config: the network architecture.
    :param state_dict: the weights.
    :param data: the training data description (world seeds, protocol, ...): plain values.
    :param git_revision: the source revision the weights were trained with.
    :param metrics: plain-valued metrics (e.g. validation RR, epoch).
    :param extra: other plain values or tensors (optimizer state, epoch, seed).
    """

    config: RayI2PConfig
    state_dict: dict
    data: dict
    git_revision: str
    metrics: dict
    extra: dict = field(default_factory=dict)


def save_checkpoint(path, model: RayI2PNet, data: dict, git_revision: str,
                    metrics: dict | None = None, extra: dict | None = None) -> Path:
    """
    Write a checkpoint of ``model`` (its config and weights) to ``path``.

    :param data: training data description (plain values only).
    :param git_revision: revision of the source tree (e.g. ``git rev-parse HEAD``).
    :param metrics: plain-valued metrics, or None.
    :param extra: more plain values or tensors (optimizer state, epoch, seed), or None.
    :return: the path written.
    """
    if not git_revision:
        raise ValueError('a checkpoint needs the git revision of the code that trained it')
    state = {'format': FORMAT, 'config': model.config.to_dict(),
             'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()},
             'data': dict(data), 'git_revision': str(git_revision),
             'metrics': dict(metrics or {}), 'extra': dict(extra or {})}
    path = Path(path)
    torch.save(state, path)
    return path


def load_checkpoint(path, map_location='cpu') -> Checkpoint:
    """
    Read a checkpoint with ``torch.load(weights_only=True)``.

    :raises ValueError: the file is not a weights-only checkpoint of this format (a pickle that
        would run code is refused without running it), or entries are missing.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f'refusing to load {path}: not a weights-only checkpoint '
                         f'({str(err).splitlines()[0]})') from err
    if not isinstance(state, dict) or state.get('format') != FORMAT:
        raise ValueError(f'{path} is not a RayI2PNet checkpoint (format {FORMAT!r})')
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f'checkpoint {path} lacks {missing}')
    return Checkpoint(RayI2PConfig.from_dict(state['config']), state['state_dict'],
                      state['data'], state['git_revision'], state['metrics'],
                      state.get('extra', {}))


def config_differences(a: RayI2PConfig, b: RayI2PConfig) -> dict[str, tuple]:
    """Return ``{field: (a value, b value)}`` for the fields where two configs differ."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def load_model(path, config: RayI2PConfig | None = None,
               device='cpu') -> tuple[RayI2PNet, Checkpoint]:
    """
    Build the network of a checkpoint and load its weights.

    :param config: the expected architecture, or None to take the checkpoint's.
    :param device: where the model goes.
    :return: the model in eval mode on ``device`` and the checkpoint.
    :raises ValueError: the checkpoint's config differs from ``config`` (the message lists the
        fields), or its weights do not fit the network.
    """
    ckpt = load_checkpoint(path)
    if config is not None:
        diff = config_differences(ckpt.config, config)
        if diff:
            detail = ', '.join(f'{k}: checkpoint {a!r} != expected {b!r}'
                               for k, (a, b) in diff.items())
            raise ValueError(f'checkpoint {path} was trained with a different config ({detail})')
    model = RayI2PNet(ckpt.config)
    try:
        model.load_state_dict(ckpt.state_dict)
    except RuntimeError as err:
        raise ValueError(f'checkpoint {path} weights do not fit RayI2PNet({ckpt.config}): '
                         f'{err}') from err
    return model.to(device).eval(), ckpt
