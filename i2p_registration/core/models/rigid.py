"""
Rigid transforms as batched torch tensors: compose from ``(R, t)`` and invert in closed form.

``T_a_b`` ``(..., 4, 4)`` maps points from frame b into frame a (see DESIGN.md).
"""

from __future__ import annotations

import torch


def make_transform(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """
    Build homogeneous transforms from rotations and translations.

    :param R: ``(..., 3, 3)`` rotation matrices.
    :param t: ``(..., 3)`` translations (metres).
    :return: ``(..., 4, 4)`` with ``[[R, t], [0, 1]]``, dtype and device of ``R``.
    """
    if R.shape[-2:] != (3, 3) or t.shape[-1] != 3 or R.shape[:-2] != t.shape[:-1]:
        raise ValueError(f'R must be (..., 3, 3) and t (..., 3) with the same batch shape, '
                         f'got {tuple(R.shape)} and {tuple(t.shape)}')
    bottom = torch.zeros(*R.shape[:-2], 1, 4, dtype=R.dtype, device=R.device)
    bottom[..., 0, 3] = 1.0
    top = torch.cat([R, t.to(R)[..., None]], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def invert_transform(T: torch.Tensor) -> torch.Tensor:
    """
    Invert rigid transforms ``(..., 4, 4)`` in closed form: ``[[R^T, -R^T t], [0, 1]]``.

    ``invert_transform(T_a_b)`` is ``T_b_a``.
    """
    if T.shape[-2:] != (4, 4):
        raise ValueError(f'T must have shape (..., 4, 4), got {tuple(T.shape)}')
    Rt = T[..., :3, :3].transpose(-1, -2)
    return make_transform(Rt, -(Rt @ T[..., :3, 3:])[..., 0])
