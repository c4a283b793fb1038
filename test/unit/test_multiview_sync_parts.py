"""Rotation and translation synchronization, pruning and robust weights on known graphs."""

from i2p_registration.core.geometry.rotations import geodesic_angle, so3_exp
from i2p_registration.core.multiview import linalg
from i2p_registration.core.multiview.graph import connected_components_of
from i2p_registration.core.multiview.linalg import (fill_reducing_order, laplacian_least_squares,
                                                    LaplacianSystem, SpdSolver)
from i2p_registration.core.multiview.pruning import maximum_spanning_tree, prune_edges
from i2p_registration.core.multiview.robust import cauchy_weights, harmonic_mean
from i2p_registration.core.multiview.rotation_sync import (
    connection_laplacian, rotation_errors, rotation_gauss_newton_step, RotationGaussNewton,
    scalar_laplacian, SpectralRotationSync)
from i2p_registration.core.multiview.synthetic import make_synthetic_graph
from i2p_registration.core.multiview.translation_sync import synchronize_translations
import numpy as np
import pytest
import scipy.sparse as sp


def _noise_free(n=30, seed=0):
    sg = make_synthetic_graph(n, density=0.3, rot_noise_deg=(0, 0), trans_noise_m=(0, 0),
                              seed=seed)
    T = sg.graph.transforms
    return sg, sg.graph.edges[:, 0], sg.graph.edges[:, 1], T[:, :3, :3], T[:, :3, 3]


def _aligned_error_deg(R, R_ref):
    G = R_ref[0] @ R[0].T
    return np.rad2deg(geodesic_angle(G @ R, R_ref)).max()


def test_connection_laplacian_annihilates_true_rotations():
    sg, i, j, R_ij, _ = _noise_free()
    L = connection_laplacian(sg.graph.n_nodes, i, j, R_ij, np.ones(len(i)))
    X = np.swapaxes(sg.T_map_gt[:, :3, :3], 1, 2).reshape(-1, 3)
    assert np.abs(L @ X).max() < 1e-12
    assert abs(L - L.T).max() < 1e-15


def test_spectral_cold_and_warm_recover_noise_free_rotations():
    sg, i, j, R_ij, _ = _noise_free()
    n = sg.graph.n_nodes
    R_gt = sg.T_map_gt[:, :3, :3]
    solver = SpectralRotationSync()
    R = solver.solve(n, i, j, R_ij, np.ones(len(i)))
    assert _aligned_error_deg(R, R_gt) < 1e-9
    rng = np.random.default_rng(1)
    R_init = R_gt @ so3_exp(rng.normal(0.0, 0.05, (n, 3)))
    R_warm = solver.solve(n, i, j, R_ij, np.ones(len(i)), R_init=R_init)
    # LOBPCG stagnates near 1e-5 deg on exactly consistent data (a zero eigenvalue); the
    # synchronizer's Gauss-Newton steps polish that away (see test_multiview_synchronization).
    assert _aligned_error_deg(R_warm, R_gt) < 1e-3


def test_gauss_newton_step_converges_and_holds_the_anchor():
    sg, i, j, R_ij, _ = _noise_free()
    R_gt = sg.T_map_gt[:, :3, :3]
    rng = np.random.default_rng(2)
    R = R_gt @ so3_exp(rng.normal(0.0, 0.1, (len(R_gt), 3)))
    R[0] = R_gt[0]
    for _ in range(4):
        R = rotation_gauss_newton_step(R, i, j, R_ij, np.ones(len(i)))
    np.testing.assert_allclose(R[0], R_gt[0], atol=1e-15)
    assert np.rad2deg(geodesic_angle(R, R_gt)).max() < 1e-9


def test_translations_noise_free_with_anchor():
    sg, i, j, _, t_ij = _noise_free()
    n = sg.graph.n_nodes
    R_gt, t_gt = sg.T_map_gt[:, :3, :3], sg.T_map_gt[:, :3, 3]
    anchor = np.array([1.0, 2.0, 3.0])
    t = synchronize_translations(n, i, j, R_gt, t_ij, np.ones(len(i)), 0, anchor)
    np.testing.assert_allclose(t, t_gt + anchor, atol=1e-10)
    t = synchronize_translations(n, i, j, R_gt, t_ij, np.ones(len(i)), 5, t_gt[5])
    np.testing.assert_allclose(t, t_gt, atol=1e-10)


def test_translations_reject_disconnected_weights():
    sg, i, j, _, t_ij = _noise_free(n=10)
    w = np.where(i == 0, 0.0, 1.0) * np.where(j == 0, 0.0, 1.0)
    with pytest.raises(ValueError, match='connected'):
        synchronize_translations(10, i, j, sg.T_map_gt[:, :3, :3], t_ij, w)


def test_cauchy_and_harmonic_mean():
    np.testing.assert_allclose(cauchy_weights([0.0, 2.0, 6.0], 2.0), [1.0, 0.5, 0.1])
    np.testing.assert_allclose(harmonic_mean([1.0, 0.5, 0.0, 0.0], [1.0, 0.25, 1.0, 0.0]),
                               [1.0, 1.0 / 3.0, 0.0, 0.0])
    with pytest.raises(ValueError, match='positive'):
        cauchy_weights([1.0], 0.0)


def test_spanning_tree_is_maximum_and_handles_parallel_edges():
    # Triangle 0-1-2 plus a parallel 0-1 edge; the heaviest two distinct pairs win.
    i = np.array([0, 1, 0, 0])
    j = np.array([1, 2, 2, 1])
    w = np.array([0.1, 0.9, 0.8, 0.5])
    np.testing.assert_array_equal(maximum_spanning_tree(3, i, j, w), [False, True, True, False])


def test_pruning_never_disconnects():
    # A chain whose bridges all have weight 0 next to a dense, well-weighted cluster.
    rng = np.random.default_rng(3)
    i = np.array([0, 1, 2, 3, 4, 5, 5, 6])
    j = np.array([1, 2, 3, 4, 5, 6, 7, 7])
    w = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9])
    keep = prune_edges(8, i, j, w, threshold=0.5)
    np.testing.assert_array_equal(keep, [True] * 8)
    assert connected_components_of(8, i[keep], j[keep])[0] == 1
    w = rng.uniform(0.0, 0.2, 8)
    keep = prune_edges(8, i, j, w, threshold=0.5)
    assert connected_components_of(8, i[keep], j[keep])[0] == 1
    assert keep.sum() == 7


@pytest.mark.parametrize('n, anchor', [(2, 0), (12, 3), (40, 0), (150, 7)])
def test_laplacian_system_matches_one_shot_least_squares(n, anchor):
    kwargs = {'degree': 6.0} if n >= 40 else {'density': 1.0}
    sg = make_synthetic_graph(max(n, 3), seed=n, **kwargs)
    i, j = sg.graph.edges[:, 0], sg.graph.edges[:, 1]
    keep = (i < n) & (j < n)
    i, j = i[keep], j[keep]
    rng = np.random.default_rng(n)
    b = rng.normal(size=(len(i), 3))
    w = rng.uniform(0.1, 1.0, len(i))
    w[(np.arange(len(i)) % 5 == 1) & (j - i > 1)] = 0.0  # zero weights stay in the pattern
    system = LaplacianSystem(n, i, j, anchor)
    active = w > 0.0
    for x_fix in (None, [1.0, -2.0, 0.5]):
        expected = laplacian_least_squares(n, i[active], j[active], b[active], w[active],
                                           anchor, x_fix)
        np.testing.assert_allclose(system.solve(b, w, x_fix), expected, atol=1e-10)
    R = sg.T_map_gt[:n, :3, :3]
    np.testing.assert_allclose(
        synchronize_translations(n, i, j, R, b, w, anchor, system=system),
        synchronize_translations(n, i, j, R, b, w, anchor), atol=1e-10)


def _force_sparse(monkeypatch):
    """Make fill_reducing_order always choose the sparse (minimum-degree) layout."""
    monkeypatch.setattr(linalg, '_BAND_FLOPS', 0.0)
    monkeypatch.setattr(linalg, '_BAND_FLOP_RATIO', 0.0)


def _dense_laplacian_solution(n, i, j, b, w, anchor, x_fix):
    L = scalar_laplacian(n, i, j, w).toarray()
    rhs = np.zeros((n, b.shape[1]))
    np.add.at(rhs, j, w[:, None] * b)
    np.subtract.at(rhs, i, w[:, None] * b)
    free = np.arange(n) != anchor
    x = np.empty_like(rhs)
    x[anchor] = x_fix
    x[free] = np.linalg.solve(L[np.ix_(free, free)], rhs[free] - L[free, anchor][:, None] * x_fix)
    return x


@pytest.mark.parametrize('layout', ['banded', 'sparse'])
def test_laplacian_system_layouts_match_dense_least_squares(layout, monkeypatch):
    # A trajectory with neighbour loop closures has a narrow band: banded by default.
    if layout == 'sparse':
        _force_sparse(monkeypatch)
    n, anchor = 300, 5
    sg = make_synthetic_graph(n, degree=8.0, seed=3)
    i, j = sg.graph.edges[:, 0], sg.graph.edges[:, 1]
    system = LaplacianSystem(n, i, j, anchor)
    assert system.kind == layout and system.connected
    rng = np.random.default_rng(3)
    b = rng.normal(size=(len(i), 3))
    w = rng.uniform(0.1, 1.0, len(i))
    w[(np.arange(len(i)) % 4 == 1) & (j - i > 1)] = 0.0
    x_fix = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(system.solve(b, w, x_fix),
                               _dense_laplacian_solution(n, i, j, b, w, anchor, x_fix),
                               atol=1e-9)
    np.testing.assert_allclose(system.solve(b[:, :1], w), _dense_laplacian_solution(
        n, i, j, b[:, :1], w, anchor, np.zeros(1)), atol=1e-9)


def test_fill_reducing_order_chooses_band_for_narrow_graphs_only():
    def pattern(n, a, b):
        return sp.csr_matrix((np.ones(len(a)), (a, b)), shape=(n, n))

    chain = np.arange(399)
    kind, pos = fill_reducing_order(pattern(400, chain, chain + 1), block=6)
    assert kind == 'banded' and np.abs(np.diff(pos[chain])).max() == 1
    sg = make_synthetic_graph(1000, degree=10.0, seed=0)
    assert fill_reducing_order(pattern(1000, *sg.graph.edges.T), block=6)[0] == 'banded'
    # A random graph has no narrow band: minimum degree wins.
    rng = np.random.default_rng(0)
    a = np.repeat(np.arange(2000), 3)
    b = rng.integers(0, 2000, len(a))
    kind, pos = fill_reducing_order(pattern(2000, a[a != b], b[a != b]))
    assert kind == 'sparse' and np.array_equal(np.sort(pos), np.arange(2000))


@pytest.mark.parametrize('block', [1, 3])
def test_spd_solver_band_layout_matches_dense_solve(block):
    sg = make_synthetic_graph(400, degree=8.0, seed=5)
    i, j = sg.graph.edges[:, 0], sg.graph.edges[:, 1]
    rng = np.random.default_rng(block)
    w = rng.uniform(0.1, 1.0, len(i))
    A = sp.kron(scalar_laplacian(400, i, j, w), sp.identity(block)) \
        + 0.01 * sp.identity(400 * block)
    A = (A + sp.random(400 * block, 400 * block, 0.001, random_state=1) * 1e-3).tocsr()
    A = (A + A.T) / 2
    kind, pos = fill_reducing_order(A if block == 1 else scalar_laplacian(400, i, j, w), block)
    assert kind == 'banded'
    pos = (block * pos[:, None] + np.arange(block)).ravel()
    b = rng.normal(size=(400 * block, 2))
    expected = np.linalg.solve(A.toarray(), b)
    for solver in (SpdSolver(A), SpdSolver(A, (kind, pos))):
        np.testing.assert_allclose(solver.solve(b), expected, atol=1e-8)
        np.testing.assert_allclose(solver.solve(b[:, 0]), expected[:, 0], atol=1e-8)
    assert SpdSolver(A, (kind, pos)).kind == 'banded'


def test_rotation_gauss_newton_on_quaternions_matches_matrix_steps():
    # Outlier edges give residuals up to 180 degrees, where the logarithm needs care.
    sg = make_synthetic_graph(200, degree=8.0, outlier_ratio=0.3, seed=6)
    i, j = sg.graph.edges[:, 0], sg.graph.edges[:, 1]
    R_ij = sg.graph.transforms[:, :3, :3]
    R = sg.graph.poses[:, :3, :3]
    system = LaplacianSystem(200, i, j, 0)
    steps = RotationGaussNewton(R_ij, system)
    steps.start(R)
    eps = rotation_errors(R, i, j, R_ij)
    assert np.linalg.norm(eps, axis=1).max() > 3.0
    np.testing.assert_allclose(steps.errors(), eps, atol=1e-9)
    rng = np.random.default_rng(6)
    for _ in range(4):
        w = rng.uniform(0.0, 1.0, len(i))
        w[system.i == 0] = 1.0
        steps.step(w)
        R = rotation_gauss_newton_step(R, i, j, R_ij, w, system=system)
        assert np.rad2deg(geodesic_angle(steps.rotations(), R)).max() < 1e-8
    np.testing.assert_array_equal(steps.rotations()[0], sg.graph.poses[0, :3, :3])
