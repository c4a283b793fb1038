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
held fixed (gauge). The sparse normal equations are assembled with numpy index arrays and
solved by a sparse LU factorization, or for large graphs by conjugate gradients preconditioned
with the two ``N x N`` weighted Laplacians of the translation and rotation blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .linalg import SpdSolver
from .rotation_sync import scalar_laplacian
from ..geometry.rotations import so3_exp, so3_log

_IDX6 = np.arange(6)


@dataclass(frozen=True)
class RefinementConfig:
    """
    Parameters of the robust Levenberg-Marquardt refinement.

    :ivar cauchy_scale: Cauchy kernel scale ``c`` on the whitened residual norm.
    :ivar max_iterations: Levenberg-Marquardt iteration cap.
    :ivar initial_damping: initial damping ``lambda`` relative to the diagonal of the normal
        matrix.
    :ivar tol: stop when the relative cost decrease falls below it.
    :ivar direct_max_nodes: graphs up to this many nodes use the sparse LU factorization;
        larger ones preconditioned conjugate gradients.
    """

    cauchy_scale: float = 4.0
    max_iterations: int = 10
    initial_damping: float = 1e-4
    tol: float = 1e-6
    direct_max_nodes: int = 5000

    def __post_init__(self) -> None:
        """Validate the values."""
        if not self.cauchy_scale > 0.0 or self.max_iterations < 0:
            raise ValueError('cauchy_scale must be > 0 and max_iterations >= 0')


def _skew(v: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` cross-product matrices of ``(..., 3)`` vectors."""
    o = np.zeros(v.shape[:-1])
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([np.stack([o, -z, y], -1), np.stack([z, o, -x], -1),
                     np.stack([-y, x, o], -1)], -2)


def _residuals(R, t, i, j, R_ij, t_ij) -> np.ndarray:
    """``(M, 6)`` residuals ``(e_t, e_r)``."""
    e_t = np.einsum('mba,mb->ma', R[i], t[j] - t[i]) - t_ij
    e_r = so3_log(np.swapaxes(R_ij, 1, 2) @ np.swapaxes(R[i], 1, 2) @ R[j])
    return np.concatenate([e_t, e_r], axis=1)


def _cost(e, info, c2) -> tuple[float, np.ndarray, np.ndarray]:
    """Robust cost, per-edge squared whitened norms and Cauchy weights."""
    s = np.einsum('ma,mab,mb->m', e, info, e)
    return float(np.sum(c2 * np.log1p(s / c2))), s, 1.0 / (1.0 + s / c2)


def _jacobians(R, t, i, j, e) -> tuple[np.ndarray, np.ndarray]:
    """``(M, 6, 6)`` Jacobians of the residuals with respect to the increments of i and j."""
    m = len(i)
    Rti = np.swapaxes(R[i], 1, 2)
    # Inverse right Jacobian of SO(3) to first order: I + [e_r]_x / 2.
    A = (np.eye(3) + 0.5 * _skew(e[:, 3:])) @ np.swapaxes(R[j], 1, 2)
    J_i = np.zeros((m, 6, 6))
    J_j = np.zeros((m, 6, 6))
    J_i[:, :3, :3] = -Rti
    J_i[:, :3, 3:] = Rti @ _skew(t[j] - t[i])
    J_i[:, 3:, 3:] = -A
    J_j[:, :3, :3] = Rti
    J_j[:, 3:, 3:] = A
    return J_i, J_j


def _assemble(n, i, j, J_i, J_j, omega, e) -> tuple[sp.csc_matrix, np.ndarray]:
    """Sparse ``6N x 6N`` normal matrix and ``(6N,)`` gradient, with numpy index arrays."""
    OJ_i = omega @ J_i
    OJ_j = omega @ J_j
    Ji_t = np.swapaxes(J_i, 1, 2)
    Jj_t = np.swapaxes(J_j, 1, 2)
    blocks = np.concatenate([Ji_t @ OJ_i, Jj_t @ OJ_j, Ji_t @ OJ_j, Jj_t @ OJ_i])
    br = np.concatenate([i, j, i, j])
    bc = np.concatenate([i, j, j, i])
    rows = (6 * br[:, None, None] + _IDX6[None, :, None]) + np.zeros((1, 1, 6), dtype=np.int64)
    cols = (6 * bc[:, None, None] + _IDX6[None, None, :]) + np.zeros((1, 6, 1), dtype=np.int64)
    H = sp.csc_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())), shape=(6 * n, 6 * n))
    oe = np.einsum('mab,mb->ma', omega, e)
    g_i = np.einsum('mba,mb->ma', J_i, oe)
    g_j = np.einsum('mba,mb->ma', J_j, oe)
    g = np.zeros((n, 6))
    for k in range(6):
        g[:, k] = np.bincount(i, g_i[:, k], n) + np.bincount(j, g_j[:, k], n)
    return H, g.reshape(-1)


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

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x.reshape(self._n, 6)
        out = np.empty_like(x)
        out[:, :3] = self._lu[0].solve(x[:, :3])
        out[:, 3:] = self._lu[1].solve(x[:, 3:])
        return out.reshape(-1)


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
    for _ in range(cfg.max_iterations):
        J_i, J_j = _jacobians(R, t, i, j, e)
        H, g = _assemble(n, i, j, J_i, J_j, w[:, None, None] * info, e)
        H = H[6:, 6:]
        g = g[6:]
        step_ok = False
        while lam < 1e8:
            A = H + lam * sp.diags(H.diagonal())
            if direct:
                delta = SpdSolver(A).solve(-g)
            else:
                M = _LaplacianPreconditioner(n, i, j, w, info, lam)
                delta, _ = spla.cg(A.tocsr(), -g, rtol=1e-4, maxiter=100,
                                   M=spla.LinearOperator(A.shape, matvec=M, dtype=np.float64))
            d = delta.reshape(n - 1, 6)
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
