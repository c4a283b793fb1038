"""
Robust joint SE(3) refinement of a pose graph: Levenberg-Marquardt with a Cauchy kernel.

Residual of edge ``(i, j)`` with measurement ``T_i_j = (R_ij, t_ij)``, twist order
``(rho, phi)``::

    e_t = R_i^T (t_j - t_i) - t_ij            (metres, frame i)
    e_r = log(R_ij^T R_i^T R_j)               (radians)

weighted by the edge information ``Lambda`` (6x6) and the Cauchy kernel
``rho(s) = c^2 log(1 + s / c^2)`` of ``s = e^T Lambda e``. Each pose is updated as
``t_i <- t_i + delta_rho_i``, ``R_i <- exp(delta_phi_i) R_i`` (increments in the map frame, so a
rotation increment turns a keyframe about its own origin, not about the map origin). Node 0 is
held fixed (gauge).

The normal equations keep one sparsity pattern for the whole solve, so it is analysed once:
the scatter map of every ``6 x 6`` block into the matrix, and for sparse graphs a node order
computed on the ``N x N`` node graph (36 times smaller than the matrix) and expanded to the
``6 x 6`` blocks (:func:`~.linalg.fill_reducing_order`). Each iteration then assembles with a
single ``bincount`` and factorizes:

- dense Cholesky (LAPACK) when the reduced matrix is small or dense (uniformly drawn loop
  closures fill it almost completely);
- banded Cholesky (LAPACK) in reverse Cuthill-McKee order when the node graph has a narrow
  band, as trajectories with loop closures to spatial neighbours do (measured on 1000
  keyframes on 10 laps with 4000 edges, the 6000 x 6000 matrix: 11-13 ms);
- sparse LU without pivoting in minimum-degree order otherwise (31 ms on that matrix);
- conjugate gradients preconditioned with the two ``N x N`` weighted Laplacians of the
  translation and rotation blocks beyond ``direct_max_nodes``.

The factorization of an accepted step is kept: the next iteration first tries conjugate
gradients preconditioned with it (the matrix changes little between iterations near the
optimum) and factorizes again only when they do not converge in a few iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .linalg import band_cholesky, band_solve, fill_reducing_order, SpdSolver
from .rotation_sync import scalar_laplacian
from ..geometry import skew, so3_exp, so3_log

_IDX6 = np.arange(6)
# The reduced normal matrix is factorized densely up to this size, or up to _DENSE_MAX_DIM when
# its block pattern is at least _DENSE_FILL full (measured: 1194 x 1194 at 18 % fill, dense
# Cholesky 20-35 ms against 180-270 ms for SuperLU).
_DENSE_ALWAYS_DIM = 600
_DENSE_MAX_DIM = 3000
_DENSE_FILL = 0.1
# Conjugate-gradient iterations allowed with a previous factorization as preconditioner before
# the matrix is factorized again.
_REUSE_MAX_CG = 8
# Relative residual of those inexact steps (each still has to lower the robust cost).
_REUSE_RTOL = 1e-3


@dataclass(frozen=True)
class RefinementConfig:
    """
    Parameters of the robust Levenberg-Marquardt refinement.

    :ivar cauchy_scale: Cauchy kernel scale ``c`` on the whitened residual norm.
    :ivar max_iterations: Levenberg-Marquardt iteration cap.
    :ivar initial_damping: initial damping ``lambda`` relative to the diagonal of the normal
        matrix.
    :ivar tol: stop when the relative cost decrease of an accepted step falls below it.
    :ivar direct_max_nodes: graphs up to this many nodes use a factorization (dense Cholesky
        or sparse LU); larger ones preconditioned conjugate gradients.
    :ivar reuse_factorization: whether later iterations first try conjugate gradients
        preconditioned with the last factorization before factorizing again.
    """

    cauchy_scale: float = 4.0
    max_iterations: int = 10
    initial_damping: float = 1e-8
    tol: float = 1e-3
    direct_max_nodes: int = 5000
    reuse_factorization: bool = True

    def __post_init__(self) -> None:
        """Validate the values."""
        if not self.cauchy_scale > 0.0 or self.max_iterations < 0:
            raise ValueError('cauchy_scale must be > 0 and max_iterations >= 0')
        if not self.initial_damping > 0.0 or not self.tol >= 0.0:
            raise ValueError('initial_damping must be > 0 and tol >= 0')


def _residuals(R, t, i, j, R_ij, t_ij) -> np.ndarray:
    """``(M, 6)`` residuals ``(e_t, e_r)``."""
    e_t = np.einsum('mba,mb->ma', R[i], t[j] - t[i]) - t_ij
    e_r = so3_log(np.swapaxes(R_ij, 1, 2) @ np.swapaxes(R[i], 1, 2) @ R[j])
    return np.concatenate([e_t, e_r], axis=1)


def _cost(e, info, c2) -> tuple[float, np.ndarray, np.ndarray]:
    """Robust cost, per-edge squared whitened norms and Cauchy weights."""
    s = np.einsum('ma,mab,mb->m', e, info, e)
    return float(np.sum(c2 * np.log1p(s / c2))), s, 1.0 / (1.0 + s / c2)


def _linearize(R, t, i, j, e, omega) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Per-edge blocks of the normal matrix and of the gradient.

    With ``J_j = blockdiag(R_i^T, A)``, ``A = (I + [e_r]_x / 2) R_j^T`` (the inverse right
    Jacobian of SO(3) to first order), the Jacobian of node ``i`` is ``J_i = -J_j U`` with
    ``U = [[I, -S], [0, I]]``, ``S = [t_j - t_i]_x``. So ``H_jj = J_j^T Omega J_j``,
    ``H_ij = -U^T H_jj`` and ``H_ii = U^T H_jj U``: only ``3 x 3`` products.

    :return: ``(M, 3, 6, 6)`` blocks ``(H_ii, H_jj, H_ij)`` and the ``(M, 6)`` gradients of
        nodes i and j.
    """
    Rti = np.swapaxes(R[i], 1, 2)
    A = (np.eye(3) + 0.5 * skew(e[:, 3:])) @ np.swapaxes(R[j], 1, 2)
    S = skew(t[j] - t[i])
    K = (Rti, A)
    KT = (R[i], np.swapaxes(A, 1, 2))
    m = len(i)
    out = np.empty((m, 3, 6, 6))
    B = out[:, 1]
    for a in range(2):
        for b in range(2):
            B[:, 3 * a:3 * a + 3, 3 * b:3 * b + 3] = \
                KT[a] @ (omega[:, 3 * a:3 * a + 3, 3 * b:3 * b + 3] @ K[b])
    # C = U^T B: the bottom rows gain S times the top rows.
    C = B.copy()
    C[:, 3:, :] += S @ B[:, :3, :]
    out[:, 2] = -C
    # H_ii = C U: the right columns gain -(left columns) S.
    Hii = out[:, 0]
    Hii[:] = C
    Hii[:, :, 3:] -= C[:, :, :3] @ S
    oe = np.einsum('mab,mb->ma', omega, e)
    g_j = np.empty((m, 6))
    g_j[:, :3] = np.einsum('mab,mb->ma', KT[0], oe[:, :3])
    g_j[:, 3:] = np.einsum('mab,mb->ma', KT[1], oe[:, 3:])
    g_i = -g_j
    g_i[:, 3:] -= np.einsum('mab,mb->ma', S, g_j[:, :3])
    return out, g_i, g_j


class _NormalEquations:
    """
    Fixed sparsity pattern of the reduced ``6(N-1) x 6(N-1)`` normal matrix (node 0 removed).

    Built once per refinement: where every entry of every edge block lands (one ``bincount``
    assembles the matrix), the node order (band- or fill-reducing), and the positions of the
    diagonal. ``kind`` is ``'dense'``, ``'banded'`` (the matrix is LAPACK's lower band storage,
    ``(band + 1, dim)``), ``'sparse'`` (CSC) or ``'cg'`` (CSC).

    :param n: number of nodes.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param mode: ``'auto'`` (dense, banded or sparse by size, fill and band) or ``'cg'``.
    """

    def __init__(self, n: int, i: np.ndarray, j: np.ndarray, mode: str) -> None:
        """Analyse the pattern."""
        nf = n - 1
        self.n, self.dim = n, 6 * nf
        m = len(i)
        # Block instances: (i, i), (j, j), (i, j), (j, i) of every edge, in that order.
        br = np.concatenate([i, j, i, j])
        bc = np.concatenate([i, j, j, i])
        valid = (br != 0) & (bc != 0)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        off = (lo != 0) & (lo != hi)
        pairs = np.unique(lo[off] * n + hi[off])
        fill = (2 * len(pairs) + nf) / max(nf * nf, 1)
        self.pos = np.arange(-1, nf)
        if mode == 'cg':
            self.kind = 'cg'
        elif self.dim <= _DENSE_ALWAYS_DIM or (self.dim <= _DENSE_MAX_DIM and fill > _DENSE_FILL):
            self.kind = 'dense'
        else:
            a, b = pairs // n - 1, pairs % n - 1
            self.kind, pos = fill_reducing_order(
                sp.csr_matrix((np.ones(len(a)), (a, b)), shape=(nf, nf)), block=6)
            self.pos = np.concatenate([[-1], pos])
        p_r = self.pos[br]
        p_c = self.pos[bc]
        # Invalid instances (touching node 0) go to one extra slot that is dropped.
        sink = None
        self._lower = None
        if self.kind == 'dense':
            # Cholesky reads the lower triangle only: of the blocks (i, j) and (j, i) only the
            # one below the diagonal is scattered (the other instance goes to the sink).
            below = self.pos[i] > self.pos[j]
            self._lower = ~below
            valid = valid & np.concatenate([np.ones(2 * m, dtype=bool), below, ~below])
            rows = 6 * p_r[:, None, None] + _IDX6[None, :, None]
            cols = 6 * p_c[:, None, None] + _IDX6[None, None, :]
            scatter = rows * self.dim + cols
            sink = self.dim * self.dim
            self.diag = np.arange(self.dim) * (self.dim + 1)
        else:
            # Compressed sparse columns: the matrix of 'sparse' and 'cg', and the one conjugate
            # gradients multiply with in 'banded' (its band holds mostly zeros).
            keys = np.where(valid, p_c * nf + p_r, -1)
            uniq, inverse = np.unique(keys[valid], return_inverse=True)
            ucol, urow = uniq // nf, uniq % nf
            per_col = np.bincount(ucol, minlength=nf)
            start = np.cumsum(per_col) - per_col
            rank = np.arange(len(uniq)) - start[ucol]
            base = 36 * start[ucol] + 6 * rank
            stride = 6 * per_col[ucol]
            nnz = 36 * len(uniq)
            entry = base[:, None, None] + _IDX6[None, :, None] + stride[:, None, None] \
                * _IDX6[None, None, :]
            self.indices = np.empty(nnz, dtype=np.int32)
            self.indices[entry.ravel()] = np.broadcast_to(
                6 * urow[:, None, None] + _IDX6[None, :, None], entry.shape).ravel()
            col_start = 36 * (np.cumsum(per_col) - per_col)
            self.indptr = np.append((col_start[:, None] + 6 * per_col[:, None] * _IDX6).ravel(),
                                    nnz).astype(np.int32)
        if self.kind in ('sparse', 'cg'):
            scatter = np.full((4 * m, 6, 6), nnz, dtype=np.int64)
            scatter[valid] = entry[inverse]
            sink = nnz
            diag_blocks = np.flatnonzero(ucol == urow)
            self.diag = (base[diag_blocks, None] + (1 + stride[diag_blocks, None]) * _IDX6).ravel()
        elif self.kind == 'banded':
            # Lower band storage: entry (r, c), r >= c, at [r - c, c]. Of the two off-diagonal
            # instances of an edge only the one below the diagonal is kept (as for 'dense'),
            # and of the diagonal blocks their lower triangles.
            below = self.pos[i] > self.pos[j]
            self._lower = ~below
            valid = valid & np.concatenate([np.ones(2 * m, dtype=bool), below, ~below])
            gap = p_r - p_c
            self.band = 6 * int(np.max(np.where(valid, gap, 0), initial=0)) + 5
            width = self.band + 1
            sink = width * self.dim
            # Entry (r, c) of the band sits at flat index c (band + 1) + r - c (band_storage).
            within = _IDX6[None, :] * width + _IDX6[:, None] - _IDX6[None, :]
            scatter = (6 * p_c * width + 6 * gap)[:, None, None] + within
            upper_r, upper_c = np.triu_indices(6, 1)
            scatter[np.flatnonzero(gap == 0)[:, None], upper_r, upper_c] = sink
            self.diag = None
            row = self.indices.astype(np.int64)
            col = np.repeat(np.arange(self.dim), np.diff(self.indptr))
            self._gather = np.minimum(row, col) * width + np.abs(row - col)
        scatter = np.where(valid[:, None, None], scatter, sink)
        if self._lower is not None:
            # Merge the two off-diagonal groups: each edge keeps its lower-triangle instance.
            scatter = np.concatenate([scatter[:2 * m], np.where(
                self._lower[:, None, None], scatter[3 * m:], scatter[2 * m:3 * m])])
        self._scatter = scatter.ravel()
        self._size = sink
        self._m = m
        # Gradient rows of nodes i and j in the reduced layout (node 0 to a dropped slot).
        self._gi = np.where(i[:, None] != 0, 6 * self.pos[i][:, None] + _IDX6, self.dim)
        self._gj = np.where(j[:, None] != 0, 6 * self.pos[j][:, None] + _IDX6, self.dim)

    def assemble(self, blocks: np.ndarray, g_i: np.ndarray, g_j: np.ndarray):
        """Return the reduced normal matrix (dense array or CSC) and gradient."""
        m = self._m
        if self._lower is None:
            values = np.concatenate([blocks[:, 0], blocks[:, 1], blocks[:, 2],
                                     np.swapaxes(blocks[:, 2], 1, 2)]).reshape(4 * m * 36)
            data = np.bincount(self._scatter, values, self._size + 1)[:self._size]
        else:
            # One off-diagonal instance per edge: (i, j) when below the diagonal, else (j, i).
            off = np.where(self._lower[:, None, None], np.swapaxes(blocks[:, 2], 1, 2),
                           blocks[:, 2])
            values = np.concatenate([blocks[:, 0], blocks[:, 1], off]).reshape(3 * m * 36)
            data = np.bincount(self._scatter, values, self._size + 1)[:self._size]
        g = np.bincount(np.concatenate([self._gi.ravel(), self._gj.ravel()]),
                        np.concatenate([g_i.ravel(), g_j.ravel()]), self.dim + 1)[:self.dim]
        if self.kind == 'dense':
            return data.reshape(self.dim, self.dim), g
        if self.kind == 'banded':
            return data.reshape(self.dim, self.band + 1).T, g
        H = sp.csc_matrix((data, self.indices, self.indptr), shape=(self.dim, self.dim))
        H.has_sorted_indices = True
        return H, g

    def damped(self, H, lam: float):
        """``H + lam diag(H)`` (a copy)."""
        if self.kind == 'banded':
            A = H.copy(order='F')
            A[0] *= 1.0 + lam
            return A
        if self.kind == 'dense':
            A = H.copy()
            A.flat[self.diag] *= 1.0 + lam
            return A
        data = H.data.copy()
        data[self.diag] *= 1.0 + lam
        A = sp.csc_matrix((data, H.indices, H.indptr), shape=H.shape)
        A.has_sorted_indices = True
        return A

    def matvec(self, H, lam: float):
        """Product with ``H + lam diag(H)`` without forming it (dense ``H``: lower triangle)."""
        if self.kind == 'banded':
            d = lam * H[0]
            full = self.to_csc(H)
            return lambda x: full @ x + d * x
        d = lam * (H.flat[self.diag] if self.kind == 'dense' else H.data[self.diag])
        if self.kind == 'dense':
            # The transpose is a Fortran-ordered view holding the upper triangle: no copy.
            return lambda x: sla.blas.dsymv(1.0, H.T, x, lower=0) + d * x
        return lambda x: H @ x + d * x

    def to_csc(self, H: np.ndarray) -> sp.csc_matrix:
        """Return the full symmetric matrix of a band ``H`` (``'banded'`` only) in CSC form."""
        full = sp.csc_matrix((H.T.ravel()[self._gather], self.indices, self.indptr),
                             shape=(self.dim, self.dim))
        full.has_sorted_indices = True
        return full

    def to_nodes(self, x: np.ndarray) -> np.ndarray:
        """``(N - 1, 6)`` increments of nodes 1..N-1 from the reduced solution vector."""
        return x.reshape(-1, 6)[self.pos[1:]]


class _Factorization:
    """A factorization of a damped normal matrix, usable as solver and as preconditioner."""

    def __init__(self, A, kind: str, sparse_copy=None) -> None:
        """
        Factorize ``A`` of layout ``kind``.

        ``sparse_copy`` returns ``A`` in CSC form: a band that LAPACK finds not numerically
        positive definite is factorized by pivoting sparse LU instead.
        """
        self.kind = kind
        if kind == 'dense':
            # The transpose of the (C-ordered, lower-filled) matrix is a Fortran-ordered view
            # of its upper triangle, factorized in place without a copy.
            self._factor = sla.cho_factor(A.T, lower=False, overwrite_a=True,
                                          check_finite=False)
            return
        if kind == 'banded':
            try:
                self._factor = band_cholesky(A)
                return
            except np.linalg.LinAlgError:
                # dpbtrf has overwritten A: the copy is built anew.
                self.kind = 'sparse'
                self._factor = spla.splu(sparse_copy(), permc_spec='MMD_AT_PLUS_A')
                return
        try:
            # The node order already reduces fill; diagonal pivots keep it (A is SPD).
            self._factor = spla.splu(A, permc_spec='NATURAL', diag_pivot_thresh=0.0,
                                     options={'SymmetricMode': True})
        except RuntimeError:
            self._factor = spla.splu(A, permc_spec='MMD_AT_PLUS_A')

    def solve(self, b: np.ndarray) -> np.ndarray:
        if self.kind == 'dense':
            return sla.cho_solve(self._factor, b, check_finite=False)
        if self.kind == 'banded':
            return band_solve(self._factor, b)
        return self._factor.solve(b)


class _LaplacianPreconditioner:
    """
    Approximate inverse of the normal matrix from two scalar weighted Laplacians.

    In map-frame increments the translation block of the normal matrix is exactly
    ``L_t kron I_3`` for isotropic translation information, and the rotation block is close to
    ``L_r kron I_3``; their inverses (one sparse LU each, ``N x N``) precondition CG well.
    """

    def __init__(self, n, i, j, w, info, damping) -> None:
        lam_t = w * np.trace(info[:, :3, :3], axis1=1, axis2=2) / 3.0
        lam_r = w * np.trace(info[:, 3:, 3:], axis1=1, axis2=2) / 3.0
        free = np.arange(1, n)
        self._n = n - 1
        self._lu = []
        for lam in (lam_t, lam_r):
            L = scalar_laplacian(n, i, j, lam).tocsc()[free][:, free]
            L = L + damping * sp.diags(L.diagonal())
            self._lu.append(SpdSolver(L))

    def solve(self, x: np.ndarray) -> np.ndarray:
        x = x.reshape(self._n, 6)
        out = np.empty_like(x)
        out[:, :3] = self._lu[0].solve(x[:, :3])
        out[:, 3:] = self._lu[1].solve(x[:, 3:])
        return out.reshape(-1)


def _pcg(matvec, b: np.ndarray, precondition, rtol: float, maxiter: int
         ) -> tuple[np.ndarray, bool]:
    """Preconditioned conjugate gradients from zero; returns the solution and convergence."""
    x = np.zeros_like(b)
    r = b.copy()
    z = precondition(r)
    p = z.copy()
    rz = r @ z
    stop = rtol * np.linalg.norm(b)
    for _ in range(maxiter):
        Ap = matvec(p)
        alpha = rz / (p @ Ap)
        x += alpha * p
        r -= alpha * Ap
        if np.linalg.norm(r) <= stop:
            return x, True
        z = precondition(r)
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, False


def refine_poses(poses, i, j, T_i_j, information, config: RefinementConfig | None = None
                 ) -> np.ndarray:
    """
    Robust Levenberg-Marquardt refinement of keyframe poses, node 0 held fixed.

    :param poses: ``(N, 4, 4)`` initial poses ``T_map_i``.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :param T_i_j: ``(M, 4, 4)`` measured relative transforms.
    :param information: ``(M, 6, 6)`` information matrices, twist order ``(rho, phi)``.
    :param config: the parameters (defaults when ``None``).
    :return: ``(N, 4, 4)`` refined poses.
    """
    cfg = config or RefinementConfig()
    poses = np.asarray(poses, dtype=np.float64)
    n = len(poses)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    T_i_j = np.asarray(T_i_j, dtype=np.float64)
    info = np.asarray(information, dtype=np.float64)
    if n < 2 or len(i) == 0 or cfg.max_iterations == 0:
        return poses.copy()
    R_ij, t_ij = T_i_j[:, :3, :3], T_i_j[:, :3, 3]
    R, t = poses[:, :3, :3].copy(), poses[:, :3, 3].copy()
    c2 = cfg.cauchy_scale ** 2
    e = _residuals(R, t, i, j, R_ij, t_ij)
    cost, _, w = _cost(e, info, c2)
    lam = cfg.initial_damping
    direct = n <= cfg.direct_max_nodes
    system = _NormalEquations(n, i, j, 'auto' if direct else 'cg')
    factor = None
    for _ in range(cfg.max_iterations):
        blocks, g_i, g_j = _linearize(R, t, i, j, e, w[:, None, None] * info)
        H, g = system.assemble(blocks, g_i, g_j)
        step_ok = False
        while lam < 1e8:
            delta = None
            if not direct:
                M = _LaplacianPreconditioner(n, i, j, w, info, lam)
                delta, _ = _pcg(system.matvec(H, lam), -g, M.solve, 1e-4, 100)
            elif factor is not None and cfg.reuse_factorization:
                delta, converged = _pcg(system.matvec(H, lam), -g, factor.solve, _REUSE_RTOL,
                                        _REUSE_MAX_CG)
                if not converged:
                    delta = None
            if delta is None:
                factor = _Factorization(system.damped(H, lam), system.kind,
                                        lambda: system.to_csc(system.damped(H, lam)))
                delta = factor.solve(-g)
            d = system.to_nodes(delta)
            R_new = R.copy()
            t_new = t.copy()
            t_new[1:] += d[:, :3]
            R_new[1:] = so3_exp(d[:, 3:]) @ R[1:]
            e_new = _residuals(R_new, t_new, i, j, R_ij, t_ij)
            cost_new, _, w_new = _cost(e_new, info, c2)
            if cost_new <= cost:
                step_ok = True
                break
            lam *= 10.0
            factor = None
        if not step_ok:
            break
        decrease = (cost - cost_new) / max(cost, 1e-300)
        R, t, e, cost, w = R_new, t_new, e_new, cost_new, w_new
        lam = max(lam / 10.0, 1e-12)
        if decrease < cfg.tol:
            break
    out = poses.copy()
    out[:, :3, :3] = R
    out[:, :3, 3] = t
    return out
