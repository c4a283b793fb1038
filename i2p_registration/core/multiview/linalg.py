"""
Factorizations of the symmetric positive definite systems of the synchronization.

Pose graphs of long trajectories, whose loop closures join spatial neighbours, have a narrow
band once their nodes are ordered by reverse Cuthill-McKee (measured on 1000 keyframes on 10
laps: 36-41 nodes); LAPACK's banded Cholesky then beats SuperLU's sparse LU by far, so
:func:`fill_reducing_order` chooses between the two layouts on the node graph, and
:class:`SpdSolver`, :class:`LaplacianSystem` and the refinement follow it.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, reverse_cuthill_mckee
import scipy.sparse.linalg as spla

# Above this fill fraction a dense Cholesky factorization beats SuperLU (measured: 200 x 200 at
# 30 % fill, 0.2 ms dense vs 5 ms sparse); below it, and for large systems, SuperLU wins.
_DENSE_FILL = 0.05
_DENSE_MAX_N = 2000
# A banded Cholesky factorization (LAPACK) in reverse Cuthill-McKee order is chosen without
# further analysis when it costs at most this many flops (about 2 ms), as much as the symbolic
# analysis of the sparse alternative ...
_BAND_FLOPS = 5e7
# ... and otherwise when it needs at most this many times the flops of a sparse factorization
# in minimum-degree order: SuperLU's supernodal machinery costs far more per flop than LAPACK's
# blocked band kernels on these systems (measured on 1000 keyframes on 10 laps, node bandwidth
# 36-41: N x N 0.2 ms banded against 3.5 ms sparse, 6N x 6N 13 ms against 31 ms, for 3 to 4
# times the flops).
_BAND_FLOP_RATIO = 8.0


def _band_order(pattern: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray, int]:
    """Node graph without diagonal, reverse Cuthill-McKee positions and resulting bandwidth."""
    m = pattern.shape[0]
    coo = sp.coo_matrix(pattern)
    off = coo.row != coo.col
    rows, cols = coo.row[off], coo.col[off]
    graph = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(m, m))
    graph = graph + graph.T
    perm = reverse_cuthill_mckee(graph, symmetric_mode=True)
    pos = np.empty(m, dtype=np.int64)
    pos[perm] = np.arange(m)
    return graph, pos, int(np.max(np.abs(pos[rows] - pos[cols]), initial=0))


def fill_reducing_order(pattern: sp.spmatrix, block: int = 1) -> tuple[str, np.ndarray]:
    """
    Choose between a banded and a sparse factorization of a matrix of ``block x block`` blocks.

    The banded layout orders the nodes by reverse Cuthill-McKee, the sparse one by minimum
    degree on ``A^T + A``; the choice compares their flop counts (both scale with
    ``block^3``), analysed on the node graph only.

    :param pattern: ``(m, m)`` symmetric sparsity pattern of the node graph (the diagonal is
        ignored).
    :param block: size of the square block each node stands for.
    :return: ``'banded'`` or ``'sparse'`` and the ``(m,)`` position of each node in the order.
    """
    m = pattern.shape[0]
    graph, pos, band = _band_order(pattern)
    band_flops = block ** 3 * m * (band + 1.0) ** 2
    if band_flops <= _BAND_FLOPS:
        return 'banded', pos
    # A dominant diagonal keeps SuperLU from pivoting, so its factor shows the fill of the order.
    P = (graph + sp.identity(m) * (graph.nnz + 1.0)).tocsc()
    lu = spla.splu(P, permc_spec='MMD_AT_PLUS_A')
    counts = np.diff(lu.L.indptr).astype(np.float64)
    if band_flops <= _BAND_FLOP_RATIO * block ** 3 * float(np.sum(counts * counts)):
        return 'banded', pos
    return 'sparse', lu.perm_c.astype(np.int64)


def band_storage(rows: np.ndarray, cols: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """
    Scatter map of matrix entries into LAPACK's lower band storage, column by column.

    Entry ``(r, c)`` with ``r >= c`` lives at ``ab[r - c, c]`` of the ``(band + 1, size)``
    Fortran-ordered array ``ab``, flat index ``c (band + 1) + r - c`` (see
    :func:`band_array`); entries above the diagonal map to one extra slot past the end.

    :param rows: ``(K,)`` row of each entry (already in the band order).
    :param cols: ``(K,)`` column of each entry.
    :param size: matrix dimension.
    :return: ``(K,)`` flat indices (``(band + 1) * size`` for dropped entries) and the
        bandwidth ``band``.
    """
    lower = rows >= cols
    band = int(np.max(np.where(lower, rows - cols, 0), initial=0))
    return np.where(lower, cols * (band + 1) + rows - cols, (band + 1) * size), band


def band_array(scatter: np.ndarray, values: np.ndarray, band: int, size: int) -> np.ndarray:
    """
    Assemble the ``(band + 1, size)`` Fortran-ordered lower band of :func:`band_storage`.

    :param scatter: ``(K,)`` flat indices from :func:`band_storage`.
    :param values: ``(K,)`` entry values; repeated indices add up.
    :param band: the bandwidth.
    :param size: matrix dimension.
    :return: the band, ready for :func:`band_cholesky` without a copy.
    """
    n = (band + 1) * size
    return np.bincount(scatter, values, n + 1)[:n].reshape(size, band + 1).T


def band_cholesky(ab: np.ndarray) -> np.ndarray:
    """
    Cholesky factor of a symmetric positive definite band matrix (LAPACK ``dpbtrf``).

    :param ab: ``(band + 1, n)`` lower band storage, overwritten when Fortran-ordered.
    :return: the factor in the same storage.
    :raises numpy.linalg.LinAlgError: when the matrix is not positive definite.
    """
    factor, info = sla.lapack.dpbtrf(ab, lower=1, overwrite_ab=1)
    if info != 0:
        raise np.linalg.LinAlgError(f'band matrix not positive definite (dpbtrf info {info})')
    return factor


def band_solve(factor: np.ndarray, b: np.ndarray, overwrite_b: bool = False) -> np.ndarray:
    """
    Solve with a :func:`band_cholesky` factor (LAPACK ``dpbtrs``).

    :param factor: the factor.
    :param b: ``(n,)`` or ``(n, k)`` right-hand sides.
    :param overwrite_b: whether ``b`` may be overwritten (saves a copy when Fortran-ordered).
    :return: the solutions, shaped like ``b``.
    """
    x, info = sla.lapack.dpbtrs(factor, b, lower=1, overwrite_b=int(overwrite_b))
    if info != 0:
        raise ValueError(f'dpbtrs argument {-info} is invalid')
    return x


class SpdSolver:
    """
    Solves ``A x = b`` for a sparse symmetric positive definite ``A``, factorized once.

    Dense Cholesky when ``A`` is small or dense enough; otherwise banded Cholesky or sparse LU
    in minimum-degree order, by the caller's analysis or, without one, banded only when the
    reverse Cuthill-McKee band is cheap.

    :param A: ``(n, n)`` sparse symmetric positive definite matrix.
    :param order: a layout from :func:`fill_reducing_order`, node positions expanded to the
        rows of ``A`` (``'banded'``: row ``k`` of ``A`` becomes row ``pos[k]`` of the band;
        ``'sparse'``: SuperLU orders ``A`` itself), or ``None``.
    """

    def __init__(self, A: sp.spmatrix, order: tuple[str, np.ndarray] | None = None) -> None:
        """Factorize ``A``."""
        n = A.shape[0]
        self._pos = None
        if self.dense_suits(A):
            self.kind = 'dense'
        elif order is not None:
            self.kind, self._pos = order
        else:
            _, self._pos, band = _band_order(A)
            self.kind = 'banded' if n * (band + 1.0) ** 2 <= _BAND_FLOPS else 'sparse'
        if self.kind == 'dense':
            self._factor = sla.cho_factor(A.toarray(), lower=True, check_finite=False)
        elif self.kind == 'banded':
            coo = sp.coo_matrix(A)
            scatter, band = band_storage(self._pos[coo.row], self._pos[coo.col], n)
            self._factor = band_cholesky(band_array(scatter, coo.data, band, n))
        else:
            # Minimum degree on A^T + A suits symmetric matrices and gives less fill than the
            # default COLAMD.
            self._factor = spla.splu(sp.csc_matrix(A), permc_spec='MMD_AT_PLUS_A')

    @staticmethod
    def dense_suits(A: sp.spmatrix) -> bool:
        """Whether ``A`` is small or dense enough for a dense factorization (no ``order``)."""
        n = A.shape[0]
        return n <= 64 or (n <= _DENSE_MAX_N and A.nnz > _DENSE_FILL * n * n)

    def solve(self, b: np.ndarray) -> np.ndarray:
        """Return the solution for right-hand sides ``b`` of shape ``(n,)`` or ``(n, k)``."""
        if self.kind == 'dense':
            return sla.cho_solve(self._factor, b, check_finite=False)
        if self.kind == 'banded':
            # A Fortran-ordered copy in the band order, solved in place.
            permuted = np.empty(np.shape(b), order='F')
            permuted[self._pos] = b
            return band_solve(self._factor, permuted, overwrite_b=True)[self._pos]
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
    the node order and the scatter map of the reduced Laplacian (anchor removed), so each solve
    is a ``bincount`` and a factorization without ordering or pivoting. Three layouts:

    - dense Cholesky when the reduced matrix is small or dense enough;
    - banded Cholesky in reverse Cuthill-McKee order when the band is narrow: long trajectories
      with loop closures to spatial neighbours have a bandwidth of a few tens of nodes
      (measured on 1000 keyframes on 10 laps, 5000 edges: 0.2 ms per factorization);
    - sparse LU without pivoting in minimum-degree order otherwise (3.5 ms on that graph).

    Edges may have zero weight; the positive-weight edges must connect the graph.

    :param n_nodes: number of nodes ``N``.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param anchor: the node held fixed.
    :ivar kind: ``'dense'``, ``'banded'`` or ``'sparse'``.
    :ivar connected: whether all the edges together connect the graph (then weights that are
        all positive do too).
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
        if m <= 64 or (m <= _DENSE_MAX_N and pattern.nnz + m > _DENSE_FILL * m * m):
            self.kind = 'dense'
            pos = np.arange(m)
        else:
            self.kind, pos = fill_reducing_order(pattern)
        # Reduced row of each node (the anchor maps to a dropped slot m).
        self._row = np.where(np.arange(n_nodes) == anchor, m, np.append(pos, m)[index])
        self._free = self._row < m
        # Rows of the edge ends (j then i; the anchor's to slot m), and the edges to the anchor
        # with the row of their other end.
        self._ends = np.concatenate([self._row[self.j], self._row[self.i]])
        at_j, at_i = self.j == anchor, self.i == anchor
        self._anchor_edges = np.concatenate([np.flatnonzero(at_j), np.flatnonzero(at_i)])
        self._anchor_rows = np.concatenate([self._row[self.i[at_j]], self._row[self.j[at_i]]])
        self._rhs_index = {}
        # Whether all edges together connect the graph (then any all-positive weights do).
        self.connected = connected_components(
            sp.coo_matrix((np.ones(len(self.i)), (self.i, self.j)), shape=(n_nodes, n_nodes)),
            directed=False)[0] == 1
        r_i, r_j = self._row[self.i[inner]], self._row[self.j[inner]]
        if self.kind == 'dense':
            self._off = np.concatenate([r_i * m + r_j, r_j * m + r_i])
            self._diag = np.arange(m) * (m + 1)
        elif self.kind == 'banded':
            self._off, self._band = band_storage(np.maximum(r_i, r_j), np.minimum(r_i, r_j), m)
        else:
            keys = np.concatenate([r_j * m + r_i, r_i * m + r_j, np.arange(m) * (m + 1)])
            uniq, inverse = np.unique(keys, return_inverse=True)
            self._indices = (uniq % m).astype(np.int32)
            self._indptr = np.searchsorted(uniq // m, np.arange(m + 1)).astype(np.int32)
            self._off = inverse[:2 * len(r_i)]
            self._diag = inverse[2 * len(r_i):]
            self._size = len(uniq)

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
        if d not in self._rhs_index:
            # Entry (row, k) of the right-hand side, for every edge end: one bincount for all.
            self._rhs_index[d] = (self._ends[:, None] * d + np.arange(d)).ravel()
        wb = w[:, None] * b
        rhs = _bincount(self._rhs_index[d], np.concatenate([wb, -wb]).ravel(),
                        (m + 1) * d).reshape(m + 1, d)[:m]
        to_anchor = _bincount(self._anchor_rows, w[self._anchor_edges], m + 1)
        rhs += to_anchor[:m, None] * x_fix
        deg = _bincount(self._ends, np.concatenate([w, w]), m + 1)[:m]
        w_in = w[self._inner]
        x = np.empty((n, d))
        x[self.anchor] = x_fix
        if m == 0:
            return x
        if self.kind == 'dense':
            A = _bincount(self._off, -np.concatenate([w_in, w_in]), m * m).reshape(m, m)
            A.flat[self._diag] += deg
            sol = sla.cho_solve(sla.cho_factor(A, lower=True, overwrite_a=True,
                                               check_finite=False), rhs, check_finite=False)
        elif self.kind == 'banded':
            ab = band_array(self._off, -w_in, self._band, m)
            ab[0] += deg
            sol = band_solve(band_cholesky(ab), rhs)
        else:
            data = _bincount(self._off, -np.concatenate([w_in, w_in]), self._size)
            data[self._diag] += deg
            A = sp.csc_matrix((data, self._indices, self._indptr), shape=(m, m))
            lu = spla.splu(A, permc_spec='NATURAL', diag_pivot_thresh=0.0,
                           options={'SymmetricMode': True})
            sol = lu.solve(np.asfortranarray(rhs))
        x[self._free] = sol[self._row[self._free]]
        return x
