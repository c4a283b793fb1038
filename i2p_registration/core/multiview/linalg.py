"""Factorizations of the symmetric positive definite systems of the synchronization."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

# Above this fill fraction a dense Cholesky factorization beats SuperLU (measured: 200 x 200 at
# 30 % fill, 0.2 ms dense vs 5 ms sparse); below it, and for large systems, SuperLU wins.
_DENSE_FILL = 0.05
_DENSE_MAX_N = 2000


class SpdSolver:
    """
    Solves ``A x = b`` for a sparse symmetric positive definite ``A``, factorized once.

    :param A: ``(n, n)`` sparse symmetric positive definite matrix.
    """

    def __init__(self, A: sp.spmatrix) -> None:
        """Factorize ``A``: dense Cholesky when small or dense enough, else sparse LU."""
        n = A.shape[0]
        self._dense = n <= 64 or (n <= _DENSE_MAX_N and A.nnz > _DENSE_FILL * n * n)
        if self._dense:
            self._factor = sla.cho_factor(A.toarray(), lower=True, check_finite=False)
        else:
            # Minimum degree on A^T + A suits symmetric matrices and gives less fill than the
            # default COLAMD.
            self._factor = spla.splu(sp.csc_matrix(A), permc_spec='MMD_AT_PLUS_A')

    def solve(self, b: np.ndarray) -> np.ndarray:
        """Return the solution for right-hand sides ``b`` of shape ``(n,)`` or ``(n, k)``."""
        if self._dense:
            return sla.cho_solve(self._factor, b, check_finite=False)
        # SuperLU copies C-ordered right-hand sides slowly; Fortran order is much faster.
        return self._factor.solve(np.asfortranarray(b))


def laplacian_least_squares(n_nodes: int, i, j, b, weights, anchor: int = 0,
                            x_anchor=None) -> np.ndarray:
    """
    Node values ``x`` minimizing ``sum_e w_e |x_j - x_i - b_e|^2`` with ``x_anchor`` fixed.

    The normal equations are the weighted graph Laplacian with the anchor's row and column
    removed (positive definite when the positive-weight edges connect the graph); one
    factorization serves all columns of ``b``.

    :param n_nodes: number of nodes ``N``.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param b: ``(M, d)`` measured differences ``x_j - x_i``.
    :param weights: ``(M,)`` positive edge weights (callers drop zero-weight edges).
    :param anchor: the node held fixed.
    :param x_anchor: ``(d,)`` its value (zeros when ``None``).
    :return: ``(N, d)`` node values.
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = b.shape[1]
    x_fix = np.zeros(d) if x_anchor is None else np.asarray(x_anchor, dtype=np.float64)
    wb = w[:, None] * b
    rhs = np.stack([np.bincount(j, wb[:, k], n_nodes) - np.bincount(i, wb[:, k], n_nodes)
                    for k in range(d)], axis=1)
    deg = np.bincount(i, w, n_nodes) + np.bincount(j, w, n_nodes)
    # Edges to the anchor move to the right-hand side; the rest form the reduced Laplacian.
    to_anchor = np.bincount(i[j == anchor], w[j == anchor], n_nodes) \
        + np.bincount(j[i == anchor], w[i == anchor], n_nodes)
    rhs += to_anchor[:, None] * x_fix
    inner = (i != anchor) & (j != anchor)
    index = np.arange(n_nodes) - (np.arange(n_nodes) > anchor)
    ii, jj, ww = index[i[inner]], index[j[inner]], w[inner]
    free = np.arange(n_nodes) != anchor
    m = n_nodes - 1
    A = sp.csr_matrix((np.concatenate([-ww, -ww, deg[free]]),
                       (np.concatenate([ii, jj, np.arange(m)]),
                        np.concatenate([jj, ii, np.arange(m)]))), shape=(m, m))
    x = np.empty((n_nodes, d))
    x[anchor] = x_fix
    if m:
        x[free] = SpdSolver(A).solve(rhs[free])
    return x
