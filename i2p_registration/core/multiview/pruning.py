"""Edge pruning that never disconnects the pose graph."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree


def maximum_spanning_tree(n_nodes: int, i, j, weights) -> np.ndarray:
    """
    Select the edges of a maximum-weight spanning forest.

    Parallel edges (several edges between one pair of nodes) are allowed: only the heaviest of
    each pair can be in the tree.

    :param n_nodes: number of nodes.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param weights: ``(M,)`` non-negative edge weights.
    :return: ``(M,)`` bool mask of the tree edges (``n_nodes - components`` of them).
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    order = np.argsort(-w, kind='stable')
    keys, first = np.unique(lo[order] * n_nodes + hi[order], return_index=True)
    best = order[first]
    # minimum_spanning_tree ignores zero entries, so costs are kept strictly positive.
    cost = 1.0 + w.max(initial=0.0) - w[best]
    tree = minimum_spanning_tree(coo_matrix((cost, (lo[best], hi[best])),
                                            shape=(n_nodes, n_nodes)).tocsr()).tocoo()
    rows = np.minimum(tree.row, tree.col).astype(np.int64)
    cols = np.maximum(tree.row, tree.col).astype(np.int64)
    mask = np.zeros(len(w), dtype=bool)
    mask[best[np.searchsorted(keys, rows * n_nodes + cols)]] = True
    return mask


def prune_edges(n_nodes: int, i, j, weights, threshold: float) -> np.ndarray:
    """
    Edges to keep: weight at least ``threshold``, plus a maximum spanning tree.

    The tree keeps every connected component of the input connected, whatever the weights.

    :param n_nodes: number of nodes.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param weights: ``(M,)`` edge weights in ``[0, 1]``.
    :param threshold: edges below it are pruned unless they are in the tree.
    :return: ``(M,)`` bool mask of kept edges.
    """
    w = np.asarray(weights, dtype=np.float64)
    return (w >= threshold) | maximum_spanning_tree(n_nodes, i, j, w)
