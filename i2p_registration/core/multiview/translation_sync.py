"""
Translation synchronization by weighted sparse linear least squares, gauge fixed.

With the rotations known, each edge says ``t_j - t_i = R_i t_ij`` (positions ``t_i`` of the
keyframes in the map frame, metres). The weighted least-squares solution solves the normal
equations ``(B^T W B) t = B^T W b`` with the incidence matrix ``B``; they share one ``N x N``
scalar Laplacian for x, y and z. One node (the anchor) is held at a given position, which
removes the translational gauge freedom and makes the reduced Laplacian positive definite
whenever the weighted graph is connected.
"""

from __future__ import annotations

import numpy as np

from .graph import connected_components_of
from .linalg import laplacian_least_squares, LaplacianSystem


def synchronize_translations(n_nodes: int, i, j, R, t_ij, weights, anchor: int = 0,
                             t_anchor=None, system: LaplacianSystem | None = None
                             ) -> np.ndarray:
    """
    Weighted least-squares keyframe positions given their rotations.

    :param n_nodes: number of nodes ``N``.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param R: ``(N, 3, 3)`` rotations ``R_map_i``.
    :param t_ij: ``(M, 3)`` measured translations of ``T_i_j`` (metres, frame ``i``).
    :param weights: ``(M,)`` non-negative edge weights; zero-weight edges are ignored.
    :param anchor: the node whose position is held fixed.
    :param t_anchor: ``(3,)`` its position in metres (the origin when ``None``).
    :param system: a :class:`~.linalg.LaplacianSystem` of these edges and anchor, reused
        across calls; ``None`` builds one solve.
    :return: ``(N, 3)`` positions ``t_map_i`` in metres.
    :raises ValueError: when the positive-weight edges do not connect all nodes.
    """
    w = np.asarray(weights, dtype=np.float64)
    active = w > 0.0
    i = np.asarray(i, dtype=np.int64)[active]
    j = np.asarray(j, dtype=np.int64)[active]
    if not 0 <= anchor < n_nodes:
        raise ValueError(f'anchor {anchor} is not a node of a graph with {n_nodes} nodes')
    known = system is not None and system.connected and bool(active.all())
    if not known and connected_components_of(n_nodes, i, j)[0] != 1:
        raise ValueError('translation synchronization needs a connected graph of '
                         'positive-weight edges')
    if system is not None:
        b = np.einsum('mab,mb->ma', np.asarray(R)[system.i], np.asarray(t_ij, dtype=np.float64))
        return system.solve(b, w, t_anchor)
    b = np.einsum('mab,mb->ma', np.asarray(R)[i], np.asarray(t_ij, dtype=np.float64)[active])
    return laplacian_least_squares(n_nodes, i, j, b, w[active], anchor, t_anchor)
