"""
Synthetic pose graphs with exact ground truth, for tests and the synchronization benchmark.

A vehicle drives laps of a rounded loop (about 100 keyframes per lap, 2 m apart, a little
height, pitch and roll, a lateral offset per lap). Edges are the sequential ones plus loop
closures, either drawn uniformly among all other pairs up to a given density (the protocol of
the synchronization literature) or between spatial neighbours up to a given mean degree.
Each measurement is the true relative transform perturbed by a rotation of a given angle about a
random axis and a translation of a given length in a random direction; outlier edges get a
uniformly random rotation and a uniformly random translation instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from .graph import PoseGraph
from ..geometry.se3 import compose, inverse, make_transform

_NODES_PER_LAP = 100
_SPACING_M = 2.0
_OUTLIER_BOX_M = 10.0


@dataclass
class SyntheticGraph:
    """
    A pose graph with its ground truth.

    :ivar graph: the graph; node poses are initialized by chaining the sequential edges from
        the true first pose (odometry initialization, outliers included).
    :ivar T_map_gt: ``(N, 4, 4)`` true poses ``T_map_i``; the first one is the identity.
    :ivar outlier: ``(M,)`` bool, True for outlier edges.
    :ivar sigma_rot_rad: nominal rotation noise per axis (radians), the same for every edge.
    :ivar sigma_trans_m: nominal translation noise per axis (metres), the same for every edge.
    """

    graph: PoseGraph
    T_map_gt: np.ndarray
    outlier: np.ndarray
    sigma_rot_rad: float
    sigma_trans_m: float


def loop_trajectory(n_nodes: int, rng: np.random.Generator) -> np.ndarray:
    """
    Keyframe poses along laps of a loop, the first at the identity.

    :param n_nodes: number of keyframes.
    :param rng: random generator (lap offsets and attitude wobble).
    :return: ``(n_nodes, 4, 4)`` poses ``T_map_i`` (x forward, z up).
    """
    per_lap = min(n_nodes, _NODES_PER_LAP)
    radius = max(per_lap * _SPACING_M / (2.0 * np.pi), 3.0)
    k = np.arange(n_nodes)
    s = 2.0 * np.pi * k / per_lap
    lap_offset = rng.uniform(-0.75, 0.75, size=n_nodes // per_lap + 1)[k // per_lap]
    r = radius + lap_offset
    pos = np.stack([r * np.sin(s), 0.6 * radius - 0.6 * r * np.cos(s), 0.5 * np.sin(3.0 * s)],
                   axis=1)
    heading = np.arctan2(0.6 * np.sin(s), np.cos(s))
    angles = np.stack([heading, rng.normal(0.0, 0.03, n_nodes), rng.normal(0.0, 0.03, n_nodes)],
                      axis=1)
    T = make_transform(Rotation.from_euler('ZYX', angles).as_matrix(), pos)
    return compose(inverse(T[0]), T)


def _random_pairs(n_nodes: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` distinct non-sequential pairs ``(i < j)`` drawn uniformly."""
    iu, ju = np.triu_indices(n_nodes, k=2)
    n_pairs = min(n_pairs, len(iu))
    pick = rng.choice(len(iu), n_pairs, replace=False)
    return np.stack([iu[pick], ju[pick]], axis=1)


def _neighbour_pairs(pos: np.ndarray, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """About ``n_pairs`` distinct non-sequential pairs of spatially nearest keyframes."""
    n = len(pos)
    k = min(n, 2 * max(1, int(np.ceil(2 * n_pairs / n))) + 3)
    _, nn = cKDTree(pos).query(pos, k=k)
    i = np.repeat(np.arange(n), k)
    j = nn.reshape(-1)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    pairs = np.unique(np.stack([lo, hi], axis=1)[hi - lo > 1], axis=0)
    if len(pairs) > n_pairs:
        pairs = pairs[np.sort(rng.choice(len(pairs), n_pairs, replace=False))]
    return pairs


def make_synthetic_graph(n_nodes: int, *, density: float | None = None,
                         degree: float | None = None, rot_noise_deg=(2.0, 5.0),
                         trans_noise_m=(0.05, 0.20), outlier_ratio: float = 0.0,
                         outlier_scope: str = 'all', seed: int = 0) -> SyntheticGraph:
    """
    Build a noisy pose graph with outliers and its ground truth.

    Exactly one of ``density`` and ``degree`` is given.

    :param n_nodes: number of keyframes (>= 3).
    :param density: fraction of all node pairs that get an edge; loop closures uniform.
    :param degree: mean edges per node; loop closures between spatial neighbours.
    :param rot_noise_deg: ``(low, high)`` range of the per-edge rotation error angle, degrees.
    :param trans_noise_m: ``(low, high)`` range of the per-edge translation error, metres.
    :param outlier_ratio: fraction of the eligible edges replaced by random transforms.
    :param outlier_scope: ``'all'`` (any edge may be an outlier) or ``'loop'`` (loop closures
        only; the sequential odometry edges stay inliers).
    :param seed: random seed.
    :return: the graph with ground truth.
    """
    if n_nodes < 3:
        raise ValueError(f'n_nodes must be >= 3, got {n_nodes}')
    if (density is None) == (degree is None):
        raise ValueError('give exactly one of density and degree')
    if not 0.0 <= outlier_ratio < 1.0:
        raise ValueError(f'outlier_ratio must be in [0, 1), got {outlier_ratio}')
    if outlier_scope not in ('all', 'loop'):
        raise ValueError(f"outlier_scope must be 'all' or 'loop', got {outlier_scope!r}")
    rng = np.random.default_rng(seed)
    T_gt = loop_trajectory(n_nodes, rng)
    n_pairs = round(density * n_nodes * (n_nodes - 1) / 2) if density is not None \
        else round(degree * n_nodes / 2)
    n_loop = max(0, n_pairs - (n_nodes - 1))
    loops = _random_pairs(n_nodes, n_loop, rng) if density is not None \
        else _neighbour_pairs(T_gt[:, :3, 3], n_loop, rng)
    seq = np.stack([np.arange(n_nodes - 1), np.arange(1, n_nodes)], axis=1)
    pairs = np.concatenate([seq, loops])
    is_loop = np.arange(len(pairs)) >= len(seq)
    i, j = pairs[:, 0], pairs[:, 1]
    m = len(pairs)

    T_ij = compose(inverse(T_gt[i]), T_gt[j])
    axis = rng.normal(size=(m, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.deg2rad(rng.uniform(*rot_noise_deg, size=m))
    direction = rng.normal(size=(m, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    length = rng.uniform(*trans_noise_m, size=m)
    T_ij[:, :3, :3] = T_ij[:, :3, :3] @ Rotation.from_rotvec(axis * angle[:, None]).as_matrix()
    T_ij[:, :3, 3] += direction * length[:, None]

    eligible = np.flatnonzero(is_loop) if outlier_scope == 'loop' else np.arange(m)
    outlier = np.zeros(m, dtype=bool)
    outlier[rng.choice(eligible, round(outlier_ratio * len(eligible)), replace=False)] = True
    n_out = int(outlier.sum())
    T_ij[outlier, :3, :3] = Rotation.random(n_out, rng=rng).as_matrix() if n_out else 0.0
    T_ij[outlier, :3, 3] = rng.uniform(-_OUTLIER_BOX_M, _OUTLIER_BOX_M, size=(n_out, 3))

    # Noise-free graphs still get a finite nominal noise (and information).
    sigma_rot = max(float(np.deg2rad(np.mean(rot_noise_deg)) / np.sqrt(3.0)), 1e-4)
    sigma_trans = max(float(np.mean(trans_noise_m) / np.sqrt(3.0)), 1e-4)
    info = np.diag([sigma_trans ** -2] * 3 + [sigma_rot ** -2] * 3)
    graph = PoseGraph()
    odometry = T_ij[:n_nodes - 1]
    pose = T_gt[0]
    graph.add_node(pose, stamp_ns=0)
    for k in range(n_nodes - 1):
        pose = pose @ odometry[k]
        graph.add_node(pose, stamp_ns=(k + 1) * 100_000_000)
    graph.add_edges(i, j, T_ij, information=info, loop_closure=is_loop)
    return SyntheticGraph(graph, T_gt, outlier, sigma_rot, sigma_trans)
