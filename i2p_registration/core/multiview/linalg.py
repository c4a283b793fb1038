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


def _bincount(index: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Weighted ``bincount`` that stays float64 also for empty input."""
    return np.bincount(index, weights, size).astype(np.float64, copy=False)


class LaplacianSystem:
    """
    Repeated weighted Laplacian least squares on one edge set, with changing weights.

    Solves the same problem as :func:`laplacian_least_squares`, but analyses the edge set once:
    the scatter map of the reduced Laplacian (anchor removed) and, for sparse graphs, a
    minimum-degree node order, so each solve is a ``bincount`` and a factorization without
    ordering or pivoting (measured on 1000 keyframes with 5000 edges: 3.5 ms against 6.7 ms
    per solve). Edges may have zero weight; the positive-weight edges must connect the graph.

    :param n_nodes: number of nodes ``N``.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param anchor: the node held fixed.
    """

    def __init__(self, n_nodes: int, i, j, anchor: int = 0) -> None:
        """Analyse the edge set."""
        self.n = n_nodes
        self.anchor = anchor
        self.i = np.asarray(i, dtype=np.int64)
        self.j = np.asarray(j, dtype=np.int64)
        m = n_nodes - 1
        self._m = m
        index = np.arange(n_nodes) - (np.arange(n_nodes) > anchor)
        inner = (self.i != anchor) & (self.j != anchor) & (self.i != self.j)
        self._inner = inner
        ii, jj = index[self.i[inner]], index[self.j[inner]]
        pattern = sp.csr_matrix((np.ones(len(ii)), (ii, jj)), shape=(m, m))
        pattern = pattern + pattern.T
        self._dense = m <= 64 or (m <= _DENSE_MAX_N
                                  and pattern.nnz + m > _DENSE_FILL * m * m)
        if self._dense or m == 0:
            pos = np.arange(m)
        else:
            P = (pattern + sp.identity(m) * (pattern.nnz + 1.0)).tocsc()
            pos = spla.splu(P, permc_spec='MMD_AT_PLUS_A').perm_c.astype(np.int64)
        # Reduced row of each node (the anchor maps to a dropped slot m).
        self._row = np.where(np.arange(n_nodes) == anchor, m, np.append(pos, m)[index])
        r_i, r_j = self._row[self.i[inner]], self._row[self.j[inner]]
        if self._dense:
            self._off = np.concatenate([r_i * m + r_j, r_j * m + r_i])
            self._diag = np.arange(m) * (m + 1)
        else:
            keys = np.concatenate([r_j * m + r_i, r_i * m + r_j, np.arange(m) * (m + 1)])
            uniq, inverse = np.unique(keys, return_inverse=True)
            self._indices = (uniq % m).astype(np.int32)
            self._indptr = np.searchsorted(uniq // m, np.arange(m + 1)).astype(np.int32)
            self._off = inverse[:2 * len(r_i)]
            self._diag = inverse[2 * len(r_i):]
            self._nnz = len(uniq)

    def solve(self, b, weights, x_anchor=None) -> np.ndarray:
        """
        Node values ``x`` minimizing ``sum_e w_e |x_j - x_i - b_e|^2``, the anchor fixed.

        :param b: ``(M, d)`` measured differences ``x_j - x_i``.
        :param weights: ``(M,)`` non-negative edge weights.
        :param x_anchor: ``(d,)`` the anchor's value (zeros when ``None``).
        :return: ``(N, d)`` node values.
        """
        n, m = self.n, self._m
        w = np.asarray(weights, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        d = b.shape[1]
        x_fix = np.zeros(d) if x_anchor is None else np.asarray(x_anchor, dtype=np.float64)
        i, j = self.i, self.j
        wb = w[:, None] * b
        rows = np.concatenate([self._row[j], self._row[i]])
        rhs = np.stack([_bincount(rows, np.concatenate([wb[:, k], -wb[:, k]]), m + 1)
                        for k in range(d)], axis=1)
        at_j, at_i = j == self.anchor, i == self.anchor
        to_anchor = _bincount(
            np.concatenate([self._row[i[at_j]], self._row[j[at_i]]]),
            np.concatenate([w[at_j], w[at_i]]), m + 1)
        rhs = rhs[:m] + to_anchor[:m, None] * x_fix
        deg = _bincount(rows, np.concatenate([w, w]), m + 1)[:m]
        w_in = w[self._inner]
        x = np.empty((n, d))
        x[self.anchor] = x_fix
        if m == 0:
            return x
        if self._dense:
            A = _bincount(self._off, -np.concatenate([w_in, w_in]), m * m).reshape(m, m)
            A.flat[self._diag] += deg
            sol = sla.cho_solve(sla.cho_factor(A, lower=True, overwrite_a=True,
                                               check_finite=False), rhs, check_finite=False)
        else:
            data = _bincount(self._off, -np.concatenate([w_in, w_in]), self._nnz)
            data[self._diag] += deg
            A = sp.csc_matrix((data, self._indices, self._indptr), shape=(m, m))
            lu = spla.splu(A, permc_spec='NATURAL', diag_pivot_thresh=0.0,
                           options={'SymmetricMode': True})
            sol = lu.solve(np.asfortranarray(rhs))
        free = self._row < m
        x[free] = sol[self._row[free]]
        return x
