"""
Transformation synchronization of a pose graph.

Spectral rotations, least-squares translations, IRLS re-weighting, pruning that keeps the graph
connected, optional refinement.

The pipeline follows Gojcic et al. (CVPR 2020), whose synchronization code was never published:

1. rotations by spectral relaxation (:mod:`.rotation_sync`), then IRLS on the rotation residuals
   alone (on sparse graphs also from the graph's current poses, the lower robust cost wins);
   each re-weighted solve is one Gauss-Newton step on SO(3) from the current estimate
   (``rotation_step='gauss_newton'``, default; on quaternions, see
   :class:`~.rotation_sync.RotationGaussNewton`) or the warm-started eigensolver
   (``'spectral'``, as in the paper). Measured on 1000 keyframes over 10 laps, the connection
   Laplacian has no usable spectral gap, so warm LOBPCG needs 40-60 iterations per re-weighting
   (0.1-0.2 s) while a Gauss-Newton step is one sparse N x N solve (below 1 ms);
2. translations by weighted least squares (:mod:`.translation_sync`);
3. joint IRLS: Cauchy weights of the residuals normalized by the nominal noise, combined with the
   local confidence by harmonic mean; the kernel scale starts at the median residual (robust
   while the estimate is still poor) and shrinks to the configured scale;
4. pruning: edges whose final weight is below a threshold are dropped, except a maximum spanning
   tree of the weights, so the graph never disconnects; a last solve on the kept edges;
5. optionally, robust joint SE(3) refinement (:mod:`.refinement`) from the synchronized poses,
   on the kept edges plus pruned ones whose residual is moderate there (the Cauchy kernel
   weighs those).

The gauge is fixed by the anchor node 0, which keeps its pose from the graph.

:class:`TransformationSynchronizer` also works incrementally: :meth:`~TransformationSynchronizer.
update` warm-starts from its previous solution when the graph only grew (new keyframes and
edges appended), which skips the cold eigensolve and most iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time

import numpy as np

from .graph import PoseGraph
from .linalg import LaplacianSystem
from .pruning import prune_edges
from .refinement import refine_poses, RefinementConfig
from .residuals import edge_residuals, normalized_residuals
from .robust import cauchy_weights, harmonic_mean
from .rotation_sync import (rotation_errors, rotation_gauss_newton_step, RotationGaussNewton,
                            SpectralRotationSync)
from .translation_sync import synchronize_translations
from ..geometry.rotations import geodesic_angle
from ..threads import single_threaded_blas


@dataclass(frozen=True)
class SynchronizationConfig:
    """
    Parameters of the synchronization.

    :ivar sigma_rot_rad: nominal rotation noise of an edge, per axis (radians).
    :ivar sigma_trans_m: nominal translation noise of an edge, per axis (metres).
    :ivar rotation_step: how IRLS re-solves the rotations: ``'gauss_newton'`` (one step on
        SO(3) with the scalar Laplacian from the current estimate) or ``'spectral'`` (the
        warm-started eigensolver, as in Gojcic et al.; slow on long sparse graphs).
    :ivar cauchy_scale: final Cauchy kernel scale on the normalized residual (dimensionless).
    :ivar anneal: factor by which the kernel scale shrinks per IRLS iteration.
    :ivar max_rotation_iterations: IRLS iterations of the rotation-only stage.
    :ivar max_iterations: IRLS iterations of the joint stage.
    :ivar weight_tol: IRLS stops when no edge weight changes by more than this.
    :ivar prune_threshold: edges with a final weight below it are pruned (spanning tree kept).
    :ivar multi_start_max_degree: on a cold solve of a graph whose mean degree (edges per
        node, ``2M / N``) is at most this, the rotation IRLS also runs from the graph's current
        poses, and whichever of the two starts ends at the lower robust rotation cost wins
        (0 disables it). Dense graphs (uniform loop closures) never needed it in measurement,
        so they skip the second run.
    :ivar refine: whether to run the robust joint SE(3) refinement.
    :ivar refine_readmit: pruned edges whose normalized residual at the synchronized poses is
        below this also enter the refinement, where the Cauchy kernel weighs them (measured:
        pruned inliers sit at 4-20 nominal sigmas there, outliers above 38, so inliers that
        the decoupled synchronization misjudged are not lost); 0 refines on kept edges only.
    :ivar refinement: parameters of that refinement.
    """

    sigma_rot_rad: float = float(np.deg2rad(2.0))
    sigma_trans_m: float = 0.07
    rotation_step: str = 'gauss_newton'
    cauchy_scale: float = 4.0
    anneal: float = 0.5
    max_rotation_iterations: int = 20
    max_iterations: int = 30
    weight_tol: float = 1e-3
    prune_threshold: float = 0.25
    multi_start_max_degree: float = 24.0
    refine: bool = True
    refine_readmit: float = 25.0
    refinement: RefinementConfig = field(default_factory=RefinementConfig)

    def __post_init__(self) -> None:
        """Validate the values."""
        for name in ('sigma_rot_rad', 'sigma_trans_m', 'cauchy_scale', 'weight_tol'):
            if not getattr(self, name) > 0.0:
                raise ValueError(f'{name} must be positive, got {getattr(self, name)}')
        if self.rotation_step not in ('gauss_newton', 'spectral'):
            raise ValueError(f"rotation_step must be 'gauss_newton' or 'spectral', "
                             f'got {self.rotation_step!r}')
        if not 0.0 < self.anneal <= 1.0:
            raise ValueError(f'anneal must be in (0, 1], got {self.anneal}')
        if not self.multi_start_max_degree >= 0.0 or not self.refine_readmit >= 0.0:
            raise ValueError('multi_start_max_degree and refine_readmit must be >= 0, got '
                             f'{self.multi_start_max_degree}, {self.refine_readmit}')
        if not 0.0 <= self.prune_threshold < 1.0:
            raise ValueError(f'prune_threshold must be in [0, 1), got {self.prune_threshold}')


@dataclass
class SynchronizationResult:
    """
    Output of a synchronization.

    :ivar poses: ``(N, 4, 4)`` synchronized poses ``T_map_i`` (refined when configured).
    :ivar poses_synchronized: ``(N, 4, 4)`` poses after pruning, before refinement.
    :ivar poses_spectral: ``(N, 4, 4)`` poses of the first, unweighted solve (spectral
        rotations and least-squares translations with the local confidences only).
    :ivar weights: ``(M,)`` final IRLS edge weights in ``[0, 1]``.
    :ivar kept: ``(M,)`` bool, edges kept by the pruning.
    :ivar rotation_residual_rad: ``(M,)`` rotation residual of each edge at ``poses``.
    :ivar translation_residual_m: ``(M,)`` translation residual of each edge at ``poses``.
    :ivar iterations: IRLS iterations run (rotation stage plus joint stage).
    :ivar warm_started: whether the solve started from a previous solution.
    :ivar timings_s: wall time per stage in seconds.
    """

    poses: np.ndarray
    poses_synchronized: np.ndarray
    poses_spectral: np.ndarray
    weights: np.ndarray
    kept: np.ndarray
    rotation_residual_rad: np.ndarray
    translation_residual_m: np.ndarray
    iterations: int
    warm_started: bool
    timings_s: dict

    @property
    def pruned(self) -> np.ndarray:
        """``(M,)`` bool, edges removed by the pruning."""
        return ~self.kept


@dataclass
class _Edges:
    """Edge arrays of a graph snapshot."""

    i: np.ndarray
    j: np.ndarray
    R: np.ndarray
    t: np.ndarray
    confidence: np.ndarray
    information: np.ndarray


def _poses(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.zeros((len(R), 4, 4))
    T[:, :3, :3] = R
    T[:, :3, 3] = t
    T[:, 3, 3] = 1.0
    return T


class TransformationSynchronizer:
    """
    Synchronizes pose graphs; keeps its last solution to warm-start incremental updates.

    :param config: the parameters.
    """

    def __init__(self, config: SynchronizationConfig | None = None) -> None:
        """Create a synchronizer without a previous solution."""
        self.config = config or SynchronizationConfig()
        self._rotations = SpectralRotationSync()
        self._previous: tuple | None = None

    def reset(self) -> None:
        """Forget the previous solution (the next call solves from zero)."""
        self._previous = None

    def solve(self, graph: PoseGraph) -> SynchronizationResult:
        """
        Synchronize from zero (cold start), ignoring any previous solution.

        :param graph: a connected pose graph; node 0's pose fixes the gauge. It is not modified.
        :return: the result; apply it with ``graph.set_poses(result.poses)``.
        :raises ValueError: on an empty or disconnected graph.
        """
        return self._run(graph, warm=None)

    def update(self, graph: PoseGraph) -> SynchronizationResult:
        """
        Synchronize, warm-started from the previous solution when the graph only grew.

        Falls back to :meth:`solve` when there is no previous solution or when earlier nodes or
        edges changed.

        :param graph: a connected pose graph; node 0's pose fixes the gauge. It is not modified.
        :return: the result.
        :raises ValueError: on an empty or disconnected graph.
        """
        return self._run(graph, warm=self._warm_start(graph))

    def _warm_start(self, graph: PoseGraph):
        """Previous rotations, positions and weights extended to the new nodes and edges."""
        if self._previous is None:
            return None
        edges_prev, R_prev, t_prev, w_prev = self._previous
        n_old, m_old = len(R_prev), len(edges_prev)
        if graph.n_nodes < n_old or graph.n_edges < m_old \
                or not np.array_equal(graph.edges[:m_old], edges_prev):
            return None
        R = np.concatenate([R_prev, graph.poses[n_old:, :3, :3]])
        t = np.concatenate([t_prev, graph.poses[n_old:, :3, 3]])
        # Each new node takes the pose predicted by the edge to an already placed node that most
        # other such edges agree with (within 10 degrees), so one outlier edge cannot misplace
        # it; nodes without such an edge keep the graph's current estimate.
        placed = np.arange(graph.n_nodes) < n_old
        ii, jj = graph.edges[:, 0], graph.edges[:, 1]
        T_ij = graph.transforms
        for node in range(n_old, graph.n_nodes):
            fwd = np.flatnonzero((jj == node) & placed[ii])
            bwd = np.flatnonzero((ii == node) & placed[jj])
            if len(fwd) + len(bwd) == 0:
                continue
            T_src = np.concatenate([_poses(R[ii[fwd]], t[ii[fwd]]) @ T_ij[fwd],
                                    _poses(R[jj[bwd]], t[jj[bwd]]) @ np.linalg.inv(T_ij[bwd])])
            Rc = T_src[:, :3, :3]
            cos = (np.einsum('aij,bij->ab', Rc, Rc) - 1.0) / 2.0
            best = int(np.argmax(np.count_nonzero(cos > np.cos(np.deg2rad(10.0)), axis=1)))
            R[node], t[node] = Rc[best], T_src[best, :3, 3]
            placed[node] = True
        w = np.concatenate([w_prev, np.full(graph.n_edges - m_old, np.nan)])
        return R, t, w

    def _rotation_step(self, R: np.ndarray, ed: _Edges, w: np.ndarray, gauge,
                       system: LaplacianSystem | None = None) -> np.ndarray:
        """Re-solve the rotations with new weights from the current ones."""
        if self.config.rotation_step == 'spectral':
            return gauge(self._rotations.solve(len(R), ed.i, ed.j, ed.R, w, R_init=R))
        return rotation_gauss_newton_step(R, ed.i, ed.j, ed.R, w, system=system)

    def _irls(self, residual_fn, solve_fn, weight_fn, max_iterations: int
              ) -> tuple[np.ndarray, int]:
        """
        Run iteratively re-weighted least squares with an annealed Cauchy scale.

        The scale starts at the median residual (robust while the estimate is still poor) and
        shrinks by ``anneal`` per iteration down to ``cauchy_scale``; the loop stops once the
        scale is there and no weight moves by more than ``weight_tol``.

        :param residual_fn: returns the ``(M,)`` normalized residuals of the current estimate.
        :param solve_fn: re-solves the estimate with given ``(M,)`` weights.
        :param weight_fn: maps residuals and a scale to ``(M,)`` weights.
        :param max_iterations: iteration cap.
        :return: the last weights and the number of iterations run.
        """
        cfg = self.config
        scale = np.inf
        w = None
        for k in range(1, max_iterations + 1):
            r = residual_fn()
            scale = max(cfg.cauchy_scale, min(scale * cfg.anneal, float(np.median(r))))
            w_new = weight_fn(r, scale)
            settled = w is not None and np.abs(w_new - w).max() < cfg.weight_tol
            w = w_new
            if settled and scale == cfg.cauchy_scale:
                return w, k
            solve_fn(w)
        return w, max_iterations

    def _run(self, graph: PoseGraph, warm) -> SynchronizationResult:
        """Run the full pipeline, BLAS on one thread."""
        with single_threaded_blas():
            return self._pipeline(graph, warm)

    def _pipeline(self, graph: PoseGraph, warm) -> SynchronizationResult:
        """Run the full pipeline."""
        cfg = self.config
        n = graph.n_nodes
        if n == 0:
            raise ValueError('cannot synchronize an empty graph')
        if not graph.is_connected():
            raise ValueError(f'the pose graph is disconnected ({graph.n_components()} '
                             f'components); every keyframe needs a path of edges to node 0')
        T = graph.transforms
        ed = _Edges(graph.edges[:, 0], graph.edges[:, 1], T[:, :3, :3], T[:, :3, 3],
                    graph.confidence, graph.information)
        T_anchor = graph.poses[0]
        timings = {}
        start = time.perf_counter()

        def gauge(R: np.ndarray) -> np.ndarray:
            return T_anchor[:3, :3] @ R[0].T @ R

        # One analysis of the edge set serves every Laplacian solve of this synchronization.
        system = LaplacianSystem(n, ed.i, ed.j, 0)

        def translations(R: np.ndarray, w: np.ndarray) -> np.ndarray:
            return synchronize_translations(n, ed.i, ed.j, R, ed.t, w, 0, T_anchor[:3, 3],
                                            system=system)

        def residuals(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return edge_residuals(R, t, ed.i, ed.j, ed.R, ed.t)

        def weights(r: np.ndarray, scale: float) -> np.ndarray:
            return harmonic_mean(cauchy_weights(r, scale), ed.confidence)

        if warm is None:
            R = gauge(self._rotations.solve(n, ed.i, ed.j, ed.R, ed.confidence))
            t = translations(R, ed.confidence)
            w = ed.confidence.copy()
        else:
            R, t, w = warm
            fresh = np.isnan(w)
            angle, dist = residuals(R, t)
            r = normalized_residuals(angle, dist, cfg.sigma_rot_rad, cfg.sigma_trans_m)
            w[fresh] = weights(r, max(cfg.cauchy_scale, float(np.median(r))))[fresh]
        poses_spectral = _poses(R, t)
        timings['spectral'] = time.perf_counter() - start

        # Rotation-only IRLS first: rotation residuals do not depend on the (still unweighted)
        # translations, so outliers are down-weighted before they can bend the positions.
        # Gauss-Newton steps run on quaternions, where the residual rotation vectors of the
        # current rotations give both the IRLS residuals (their norms) and the right-hand side
        # of the next step.
        state = {'R': R, 't': t}
        gauss_newton = RotationGaussNewton(ed.R, system) \
            if cfg.rotation_step == 'gauss_newton' else None

        def rotation_residuals() -> np.ndarray:
            if gauss_newton is not None:
                eps = gauss_newton.errors()
            else:
                eps = rotation_errors(state['R'], ed.i, ed.j, ed.R)
            return np.linalg.norm(eps, axis=1) / cfg.sigma_rot_rad

        def solve_rotations(w_new: np.ndarray) -> None:
            if gauss_newton is not None:
                gauss_newton.step(w_new)
            else:
                state['R'] = self._rotation_step(state['R'], ed, w_new, gauge, system)

        def rotation_irls(R_start: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, float]:
            state['R'] = R_start
            if gauss_newton is not None:
                gauss_newton.start(R_start)
            w_rot, k = self._irls(rotation_residuals, solve_rotations, weights,
                                  cfg.max_rotation_iterations)
            r = rotation_residuals() / cfg.cauchy_scale
            cost = float(np.sum(ed.confidence * np.log1p(r * r)))
            if gauss_newton is not None:
                state['R'] = gauss_newton.rotations()
            return state['R'], w_rot, k, cost

        R, w, it_rot, cost = rotation_irls(R)
        if warm is None and n > 2 and 2 * len(ed.i) <= cfg.multi_start_max_degree * n:
            # On long, sparse graphs the spectral start can lead IRLS into a twisted local
            # minimum (measured: 1000 keyframes on 10 laps, 20 % outlier loop closures, one seed
            # in three ends 7 deg off); the graph's own poses (odometry or the previous
            # estimates) often do not. The start whose IRLS ends at the lower robust cost wins.
            R_alt, w_alt, it_alt, cost_alt = rotation_irls(gauge(graph.poses[:, :3, :3]))
            it_rot += it_alt
            if cost_alt < cost:
                R, w = R_alt, w_alt
        state['R'] = R
        timings['rotation_irls'] = time.perf_counter() - start - timings['spectral']

        # Then the translations, re-weighted with the joint residual (rotations held): a
        # translation solve is one N x N factorization, far cheaper than an eigensolve.
        mark = time.perf_counter()
        state['t'] = translations(state['R'], w)

        # The rotations are held in this stage, so their residuals are computed once.
        angle = np.atleast_1d(geodesic_angle(state['R'][ed.i] @ ed.R, state['R'][ed.j]))
        R_i_t = np.swapaxes(state['R'][ed.i], 1, 2)

        def joint_residuals() -> np.ndarray:
            t_cur = state['t']
            dist = np.linalg.norm(np.einsum('mab,mb->ma', R_i_t, t_cur[ed.j] - t_cur[ed.i])
                                  - ed.t, axis=1)
            return normalized_residuals(angle, dist, cfg.sigma_rot_rad, cfg.sigma_trans_m)

        def solve_translations(w_new: np.ndarray) -> None:
            state['t'] = translations(state['R'], w_new)

        w, it_joint = self._irls(joint_residuals, solve_translations, weights,
                                 cfg.max_iterations)
        iterations = it_rot + it_joint
        R, t = state['R'], state['t']
        timings['joint_irls'] = time.perf_counter() - mark

        mark = time.perf_counter()
        kept = prune_edges(n, ed.i, ed.j, w, cfg.prune_threshold)
        w_kept = np.where(kept, w, 0.0)
        if not kept.all():
            R = self._rotation_step(R, ed, w_kept, gauge, system)
            t = translations(R, w_kept)
        poses_sync = _poses(R, t)
        timings['pruning'] = time.perf_counter() - mark

        mark = time.perf_counter()
        poses = poses_sync
        if cfg.refine:
            info = ed.information * ed.confidence[:, None, None]
            used = kept
            if cfg.refine_readmit > 0.0 and not kept.all():
                angle, dist = residuals(R, t)
                r = normalized_residuals(angle, dist, cfg.sigma_rot_rad, cfg.sigma_trans_m)
                used = kept | (r < cfg.refine_readmit)
            poses = refine_poses(poses_sync, ed.i[used], ed.j[used], T[used], info[used],
                                 cfg.refinement)
        timings['refinement'] = time.perf_counter() - mark
        timings['total'] = time.perf_counter() - start

        angle, dist = residuals(poses[:, :3, :3], poses[:, :3, 3])
        self._previous = (graph.edges, poses_sync[:, :3, :3].copy(), poses_sync[:, :3, 3].copy(),
                          w.copy())
        return SynchronizationResult(poses, poses_sync, poses_spectral, w, kept, angle, dist,
                                     iterations, warm is not None, timings)
