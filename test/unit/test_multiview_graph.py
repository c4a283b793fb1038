"""PoseGraph: validation, rejected input leaves the graph intact, connectivity."""

from i2p_registration.core.geometry.rotations import so3_exp
from i2p_registration.core.geometry.se3 import make_transform
from i2p_registration.core.multiview.graph import PoseGraph
import numpy as np
import pytest


def _graph(n=4):
    g = PoseGraph()
    for k in range(n):
        g.add_node(make_transform(so3_exp(np.array([0.0, 0.0, 0.1 * k])), [k, 0.0, 0.0]),
                   stamp_ns=k * 10)
    for k in range(n - 1):
        g.add_edge(k, k + 1, make_transform(so3_exp(np.array([0.0, 0.0, 0.1])), [1.0, 0, 0]))
    return g


def _snapshot(g):
    return (g.poses, g.edges, g.transforms, g.confidence, g.information, g.loop_closure)


def test_nodes_and_edges_are_stored():
    g = _graph()
    assert (g.n_nodes, g.n_edges) == (4, 3)
    np.testing.assert_array_equal(g.edges, [[0, 1], [1, 2], [2, 3]])
    np.testing.assert_array_equal(g.stamps, [0, 10, 20, 30])
    np.testing.assert_allclose(g.information, np.broadcast_to(np.eye(6), (3, 6, 6)))
    idx = g.add_edges([0, 1], [2, 3], np.stack([np.eye(4)] * 2), [0.5, 1.0],
                      loop_closure=[True, True])
    np.testing.assert_array_equal(idx, [3, 4])
    np.testing.assert_array_equal(g.loop_closure, [False, False, False, True, True])
    assert g.confidence[3] == 0.5


def test_properties_are_copies():
    g = _graph()
    g.poses[0, 0, 3] = 99.0
    g.transforms[0, 0, 3] = 99.0
    assert g.poses[0, 0, 3] == 0.0 and g.transforms[0, 0, 3] == 1.0


@pytest.mark.parametrize('i, j, T, extra, message', [
    (0, 7, np.eye(4), {}, 'unknown node 7'),
    (-1, 1, np.eye(4), {}, 'unknown node -1'),
    (2, 2, np.eye(4), {}, 'self loop'),
    (0, 1, np.full((4, 4), np.nan), {}, 'NaN'),
    (0, 1, np.diag([2.0, 1.0, 1.0, 1.0]), {}, 'not a rotation'),
    (0, 1, np.eye(3), {}, 'shape'),
    (0, 1, np.eye(4), {'confidence': 0.0}, 'confidence'),
    (0, 1, np.eye(4), {'confidence': 1.5}, 'confidence'),
    (0, 1, np.eye(4), {'information': -np.eye(6)}, 'positive semi-definite'),
    (0, 1, np.eye(4), {'information': np.triu(np.ones((6, 6)))}, 'symmetric'),
])
def test_bad_edges_raise_and_leave_graph_intact(i, j, T, extra, message):
    g = _graph()
    before = _snapshot(g)
    with pytest.raises(ValueError, match=message):
        g.add_edge(i, j, T, **extra)
    for a, b in zip(before, _snapshot(g)):
        np.testing.assert_array_equal(a, b)


def test_batch_with_one_bad_edge_adds_nothing():
    g = _graph()
    T = np.stack([np.eye(4), np.eye(4)])
    with pytest.raises(ValueError, match='unknown node 9'):
        g.add_edges([0, 1], [2, 9], T)
    assert g.n_edges == 3


def test_bad_nodes_and_poses_raise():
    g = _graph()
    with pytest.raises(ValueError, match='NaN'):
        g.add_node(np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match='bottom row'):
        g.add_node(np.ones((4, 4)))
    with pytest.raises(ValueError, match=r'shape \(4, 4, 4\)'):
        g.set_poses(np.stack([np.eye(4)] * 3))
    assert g.n_nodes == 4


def test_connectivity():
    g = _graph()
    assert g.is_connected()
    g.add_node(np.eye(4))
    assert not g.is_connected() and g.n_components() == 2
    assert not PoseGraph().is_connected()


def test_copy_is_independent():
    g = _graph()
    h = g.copy()
    h.add_node(np.eye(4))
    h.add_edge(3, 4, np.eye(4))
    assert (g.n_nodes, g.n_edges) == (4, 3) and (h.n_nodes, h.n_edges) == (5, 4)
