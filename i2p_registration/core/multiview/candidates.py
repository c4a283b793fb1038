"""Candidate edges for a new keyframe: sequential neighbours and loop closures by proximity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CandidateConfig:
    """
    How many and which edges a new keyframe gets.

    :ivar sequential: number of immediately preceding keyframes to link (odometry edges).
    :ivar loop_radius_m: loop-closure candidates lie within this distance of the new keyframe
        in the current estimates (metres).
    :ivar min_index_gap: loop-closure candidates are at least this many keyframes older (so
        they come from an earlier pass, not the current one).
    :ivar max_loop_closures: at most this many loop-closure candidates per new keyframe,
        nearest first.
    """

    sequential: int = 1
    loop_radius_m: float = 10.0
    min_index_gap: int = 10
    max_loop_closures: int = 3

    def __post_init__(self) -> None:
        """Validate the values."""
        if self.sequential < 1 or self.min_index_gap < 1 or self.max_loop_closures < 0:
            raise ValueError('sequential and min_index_gap must be >= 1, '
                             'max_loop_closures >= 0')
        if not self.loop_radius_m > 0.0:
            raise ValueError(f'loop_radius_m must be positive, got {self.loop_radius_m}')


def candidate_edges(poses, new_index: int, config: CandidateConfig | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """
    Candidate partners of a new keyframe.

    :param poses: ``(N, 4, 4)`` current estimates ``T_map_i`` of all keyframes, the new one
        included (its estimate from odometry or the previous keyframe).
    :param new_index: index of the new keyframe in ``poses``.
    :param config: the selection rules.
    :return: ``(K,)`` int64 indices of older keyframes to register against (sequential ones
        first, newest first; then loop closures, nearest first) and ``(K,)`` bool, True for
        loop closures.
    """
    cfg = config or CandidateConfig()
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f'poses must have shape (N, 4, 4), got {poses.shape}')
    if not 0 <= new_index < len(poses):
        raise ValueError(f'new_index {new_index} outside 0..{len(poses) - 1}')
    seq = np.arange(new_index - 1, max(new_index - 1 - cfg.sequential, -1), -1)
    older = np.arange(max(new_index - cfg.min_index_gap + 1, 0))
    older = older[older < new_index - cfg.sequential]
    dist = np.linalg.norm(poses[older, :3, 3] - poses[new_index, :3, 3], axis=1)
    near = older[dist <= cfg.loop_radius_m]
    near = near[np.argsort(dist[dist <= cfg.loop_radius_m], kind='stable')]
    loops = near[:cfg.max_loop_closures]
    partners = np.concatenate([seq, loops]).astype(np.int64)
    return partners, np.arange(len(partners)) >= len(seq)
