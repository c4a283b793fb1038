"""TransformationSynchronizer and refinement: exact recovery, gauge, outliers, increments."""

from i2p_registration.core.geometry.rotations import so3_exp
from i2p_registration.core.geometry.se3 import make_transform
from i2p_registration.core.multiview import linalg
from i2p_registration.core.multiview.evaluation import pose_errors, precision_recall
from i2p_registration.core.multiview.graph import PoseGraph
from i2p_registration.core.multiview.refinement import (_NormalEquations, refine_poses,
                                                        RefinementConfig)
from i2p_registration.core.multiview.synchronization import (SynchronizationConfig,
                                                             TransformationSynchronizer)
from i2p_registration.core.multiview.synthetic import make_synthetic_graph
import numpy as np
import pytest


def _config(sg, **kwargs):
    return SynchronizationConfig(sigma_rot_rad=sg.sigma_rot_rad, sigma_trans_m=sg.sigma_trans_m,
                                 **kwargs)


def _subgraph(sg, n):
    """Return the first n keyframes of a synthetic graph and the edges among them."""
    g = sg.graph
    keep = (g.edges < n).all(axis=1)
    sub = PoseGraph()
    for T in g.poses[:n]:
        sub.add_node(T)
    sub.add_edges(g.edges[keep, 0], g.edges[keep, 1], g.transforms[keep], g.confidence[keep],
                  g.information[keep], g.loop_closure[keep])
    return sub


@pytest.mark.parametrize('rotation_step', ['gauss_newton', 'spectral'])
def test_noise_free_graph_is_recovered_to_numerical_precision(rotation_step):
    sg = make_synthetic_graph(40, density=0.3, rot_noise_deg=(0, 0), trans_noise_m=(0, 0),
                              seed=4)
    res = TransformationSynchronizer(_config(sg, rotation_step=rotation_step)).solve(sg.graph)
    # The graph's node 0 is the true first pose, so no gauge alignment is needed.
    np.testing.assert_allclose(res.poses, sg.T_map_gt, atol=1e-9)
    assert res.kept.all()
    assert np.abs(res.rotation_residual_rad).max() < 1e-9


def test_gauge_is_node_zero_pose():
    sg = make_synthetic_graph(20, density=0.4, seed=5)
    g = sg.graph
    T_shift = make_transform(so3_exp(np.array([0.3, -0.2, 1.0])), [5.0, -3.0, 2.0])
    g.set_poses(T_shift @ g.poses)
    res = TransformationSynchronizer(_config(sg)).solve(g)
    np.testing.assert_allclose(res.poses[0], g.poses[0], atol=1e-12)
    # Same relative geometry as in the original frame, up to noise.
    rot, trans = pose_errors(res.poses, sg.T_map_gt)
    assert rot.mean() < 1.5 and trans.mean() < 0.1


@pytest.mark.parametrize('scope', ['all', 'loop'])
def test_outlier_edges_are_pruned_and_accuracy_kept(scope):
    sg = make_synthetic_graph(50, density=0.3, outlier_ratio=0.4, outlier_scope=scope, seed=6)
    res = TransformationSynchronizer(_config(sg)).solve(sg.graph)
    precision, recall = precision_recall(res.pruned, sg.outlier)
    assert recall == 1.0 and precision > 0.9
    rot, trans = pose_errors(res.poses, sg.T_map_gt)
    assert rot.mean() < 0.9 and trans.mean() < 0.08
    assert res.weights[sg.outlier].max() < 0.25 < np.median(res.weights[~sg.outlier])


def test_refinement_improves_on_synchronization():
    sg = make_synthetic_graph(50, density=0.3, outlier_ratio=0.2, seed=7)
    res = TransformationSynchronizer(_config(sg)).solve(sg.graph)
    before = pose_errors(res.poses_synchronized, sg.T_map_gt)
    after = pose_errors(res.poses, sg.T_map_gt)
    assert after[0].mean() < 0.8 * before[0].mean()
    assert after[1].mean() < 0.8 * before[1].mean()


def test_refinement_direct_and_conjugate_gradient_agree():
    sg = make_synthetic_graph(30, density=0.3, seed=8)
    g = sg.graph
    res = TransformationSynchronizer(_config(sg, refine=False)).solve(g)
    args = (res.poses, g.edges[:, 0], g.edges[:, 1], g.transforms, g.information)
    direct = refine_poses(*args, RefinementConfig(direct_max_nodes=10_000))
    pcg = refine_poses(*args, RefinementConfig(direct_max_nodes=0, max_iterations=30))
    np.testing.assert_allclose(pcg, direct, atol=1e-4)
    np.testing.assert_allclose(direct[0], res.poses[0], atol=1e-15)


def test_incremental_update_equals_full_solve():
    sg = make_synthetic_graph(60, density=0.25, outlier_ratio=0.2, seed=9)
    g = sg.graph
    grown = _subgraph(sg, 55)
    sync = TransformationSynchronizer(_config(sg))
    sync.update(grown)
    # Five new keyframes and all their edges are appended, as the node would do online.
    for T in g.poses[55:]:
        grown.add_node(T)
    new = (g.edges >= 55).any(axis=1)
    grown.add_edges(g.edges[new, 0], g.edges[new, 1], g.transforms[new], g.confidence[new],
                    g.information[new], g.loop_closure[new])
    incremental = sync.update(grown)
    assert incremental.warm_started
    full = TransformationSynchronizer(_config(sg)).solve(grown)
    assert not full.warm_started
    rot, trans = pose_errors(incremental.poses, full.poses)
    assert rot.max() < 1e-3 and trans.max() < 1e-3
    np.testing.assert_array_equal(incremental.kept, full.kept)
    assert incremental.iterations < full.iterations


def test_update_after_changed_history_solves_from_zero():
    sg = make_synthetic_graph(30, density=0.3, seed=10)
    sync = TransformationSynchronizer(_config(sg))
    sync.update(sg.graph)
    other = make_synthetic_graph(30, density=0.3, seed=11)
    assert not sync.update(other.graph).warm_started


def test_disconnected_or_empty_graph_raises_and_is_untouched():
    sg = make_synthetic_graph(10, density=0.5, seed=12)
    g = sg.graph
    g.add_node(np.eye(4))
    poses = g.poses
    with pytest.raises(ValueError, match='disconnected'):
        TransformationSynchronizer(_config(sg)).solve(g)
    np.testing.assert_array_equal(g.poses, poses)
    with pytest.raises(ValueError, match='empty'):
        TransformationSynchronizer().solve(PoseGraph())


def test_config_validation():
    with pytest.raises(ValueError, match='rotation_step'):
        SynchronizationConfig(rotation_step='dense')
    with pytest.raises(ValueError, match='prune_threshold'):
        SynchronizationConfig(prune_threshold=1.0)
    with pytest.raises(ValueError, match='sigma_rot_rad'):
        SynchronizationConfig(sigma_rot_rad=0.0)
    with pytest.raises(ValueError, match='multi_start_max_degree'):
        SynchronizationConfig(multi_start_max_degree=-1.0)


def test_synthetic_graph_and_gauge_alignment():
    sg = make_synthetic_graph(50, density=0.3, outlier_ratio=0.2, outlier_scope='loop', seed=13)
    g = sg.graph
    assert g.n_edges == round(0.3 * 50 * 49 / 2)
    assert not sg.outlier[~g.loop_closure].any()
    assert sg.outlier.sum() == round(0.2 * g.loop_closure.sum())
    T_shift = make_transform(so3_exp(np.array([1.0, 2.0, -0.5])), [10.0, 0.0, -4.0])
    rot, trans = pose_errors(T_shift @ sg.T_map_gt, sg.T_map_gt)
    assert rot.max() < 1e-10 and trans.max() < 1e-10


def test_refinement_sparse_factorization_agrees_with_conjugate_gradients():
    # 150 keyframes with neighbour loop closures: a 894 x 894 sparse system, factorized in the
    # precomputed node order (the default) or solved by conjugate gradients.
    sg = make_synthetic_graph(150, degree=8.0, seed=14)
    g = sg.graph
    res = TransformationSynchronizer(_config(sg, refine=False)).solve(g)
    args = (res.poses, g.edges[:, 0], g.edges[:, 1], g.transforms, g.information)
    fresh = refine_poses(*args, RefinementConfig(tol=1e-12, max_iterations=30,
                                                 reuse_factorization=False))
    sparse = refine_poses(*args, RefinementConfig(tol=1e-12, max_iterations=30))
    np.testing.assert_allclose(sparse, fresh, atol=1e-6)
    # Conjugate gradients stop at a relative residual of 1e-4 on this long, ill-conditioned
    # chain, so they agree less tightly.
    pcg = refine_poses(*args, RefinementConfig(direct_max_nodes=0, tol=1e-12,
                                               max_iterations=30))
    np.testing.assert_allclose(pcg, sparse, atol=3e-3)
    before = pose_errors(res.poses, sg.T_map_gt)
    after = pose_errors(sparse, sg.T_map_gt)
    assert after[0].mean() < before[0].mean() and after[1].mean() < before[1].mean()


def test_refinement_band_and_sparse_factorizations_agree(monkeypatch):
    # Neighbour loop closures keep the normal matrix in a narrow band (the default layout);
    # the minimum-degree sparse factorization must give the same steps.
    sg = make_synthetic_graph(150, degree=8.0, seed=14, outlier_ratio=0.1)
    g = sg.graph
    res = TransformationSynchronizer(_config(sg, refine=False)).solve(g)
    i, j = g.edges[res.kept, 0], g.edges[res.kept, 1]
    args = (res.poses, i, j, g.transforms[res.kept], g.information[res.kept])
    assert _NormalEquations(150, i, j, 'auto').kind == 'banded'
    cfg = RefinementConfig(tol=1e-12, max_iterations=30)
    banded = refine_poses(*args, cfg)
    monkeypatch.setattr(linalg, '_BAND_FLOPS', 0.0)
    monkeypatch.setattr(linalg, '_BAND_FLOP_RATIO', 0.0)
    assert _NormalEquations(150, i, j, 'auto').kind == 'sparse'
    np.testing.assert_allclose(refine_poses(*args, cfg), banded, atol=1e-9)


def test_refinement_noise_free_stays_exact_and_validates_config():
    sg = make_synthetic_graph(25, density=0.4, rot_noise_deg=(0, 0), trans_noise_m=(0, 0),
                              seed=15)
    g = sg.graph
    out = refine_poses(sg.T_map_gt, g.edges[:, 0], g.edges[:, 1], g.transforms, g.information)
    np.testing.assert_allclose(out, sg.T_map_gt, atol=1e-12)
    with pytest.raises(ValueError, match='initial_damping'):
        RefinementConfig(initial_damping=0.0)


def test_pruned_inliers_with_moderate_residuals_return_in_the_refinement():
    sg = make_synthetic_graph(50, density=0.3, outlier_ratio=0.4, seed=0)
    without = TransformationSynchronizer(_config(sg, refine_readmit=0.0)).solve(sg.graph)
    with_readmit = TransformationSynchronizer(_config(sg)).solve(sg.graph)
    # Eight inliers are pruned at the synchronized poses (long loop closures); the outliers
    # stay out because their residuals are far above the re-admission bound.
    assert np.count_nonzero(with_readmit.pruned & ~sg.outlier) >= 4
    np.testing.assert_array_equal(with_readmit.kept, without.kept)
    assert pose_errors(with_readmit.poses, sg.T_map_gt)[1].mean() \
        < pose_errors(without.poses, sg.T_map_gt)[1].mean() - 0.003


def test_second_rotation_start_escapes_the_twisted_spectral_minimum():
    # 1000 keyframes on 10 laps, 20 % outlier loop closures: from the spectral start the IRLS
    # ends about 7 degrees off; from the graph's (odometry) poses it ends at a lower robust cost.
    sg = make_synthetic_graph(1000, degree=10.0, outlier_ratio=0.2, outlier_scope='loop',
                              seed=1)
    single = TransformationSynchronizer(_config(sg, multi_start_max_degree=0.0, refine=False))
    multi = TransformationSynchronizer(_config(sg, refine=False))
    rot_single = pose_errors(single.solve(sg.graph).poses, sg.T_map_gt)[0].mean()
    rot_multi = pose_errors(multi.solve(sg.graph).poses, sg.T_map_gt)[0].mean()
    assert rot_multi < 3.0 < 5.0 < rot_single


def test_synchronization_runs_blas_on_one_thread(monkeypatch):
    # Small factorizations on several BLAS threads crawl when other processes load the cores.
    from threadpoolctl import threadpool_info, threadpool_limits
    from i2p_registration.core.multiview import synchronization

    seen = []
    solve = synchronization.TransformationSynchronizer._pipeline

    def spy(self, graph, warm):
        seen.append([i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'])
        return solve(self, graph, warm)

    monkeypatch.setattr(synchronization.TransformationSynchronizer, '_pipeline', spy)
    sg = make_synthetic_graph(20, density=0.3, seed=2)
    with threadpool_limits(limits=2, user_api='blas'):
        TransformationSynchronizer(_config(sg)).solve(sg.graph)
        assert all(i['num_threads'] == 2 for i in threadpool_info() if i['user_api'] == 'blas')
    assert seen and seen[0] and all(n == 1 for n in seen[0]), seen
