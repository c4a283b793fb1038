"""
The pose graph of LiDAR keyframes: absolute pose estimates and relative measurements.

Node ``i`` carries the estimate ``T_map_i`` (``(4, 4)`` float64, maps points from keyframe ``i``
into the map frame) and its stamp (int64 ns). Edge ``e = (i, j)`` carries the measured relative
transform ``T_i_j`` (maps points from keyframe ``j`` into keyframe ``i``, as returned by
registering cloud ``j`` onto cloud ``i``), so a consistent graph has
``T_map_j == T_map_i @ T_i_j``. Each edge also has a local confidence in ``(0, 1]`` (from the
pairwise registration) and a ``(6, 6)`` information matrix in twist order ``(rho, phi)``
(translation first) of the residual expressed in frame ``i``.

Every mutating method validates its whole input before touching the graph, so a rejected call
leaves the graph exactly as it was.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# Tolerance on ||R^T R - I|| and |det R - 1| for accepting a rotation block.
_ROTATION_TOL = 1e-6


def check_transforms(T, name: str = 'T') -> np.ndarray:
    """
    Validate rigid transforms and return them as float64.

    :param T: ``(..., 4, 4)`` homogeneous transforms.
    :param name: the argument name used in error messages.
    :return: ``(..., 4, 4)`` float64 copy.
    :raises ValueError: on a wrong shape, NaN/inf, a bottom row other than ``(0, 0, 0, 1)`` or a
        rotation block that is not orthonormal with determinant +1.
    """
    T = np.array(T, dtype=np.float64)
    if T.ndim < 2 or T.shape[-2:] != (4, 4):
        raise ValueError(f'{name} must have shape (..., 4, 4), got {T.shape}')
    if not np.all(np.isfinite(T)):
        raise ValueError(f'{name} contains NaN or inf')
    if not np.allclose(T[..., 3, :], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ValueError(f'{name} must have bottom row (0, 0, 0, 1)')
    R = T[..., :3, :3]
    orth = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max(initial=0.0)
    det = np.abs(np.linalg.det(R) - 1.0).max(initial=0.0) if R.size else 0.0
    if orth > _ROTATION_TOL or det > _ROTATION_TOL:
        raise ValueError(f'{name} rotation block is not a rotation (orthonormality error '
                         f'{orth:.2e}, |det - 1| = {det:.2e})')
    return T


class PoseGraph:
    """
    Keyframe poses ``T_map_i`` and relative measurements ``T_i_j`` with confidences.

    Nodes are numbered ``0 .. n_nodes - 1`` in the order they were added; edges likewise.
    Array properties return copies, so callers cannot corrupt the graph by writing into them.
    """

    def __init__(self) -> None:
        """Create an empty graph."""
        self._poses = np.zeros((0, 4, 4))
        self._stamps = np.zeros(0, dtype=np.int64)
        self._i = np.zeros(0, dtype=np.int64)
        self._j = np.zeros(0, dtype=np.int64)
        self._T = np.zeros((0, 4, 4))
        self._confidence = np.zeros(0)
        self._information = np.zeros((0, 6, 6))
        self._loop = np.zeros(0, dtype=bool)

    @property
    def n_nodes(self) -> int:
        """Return the number of nodes."""
        return len(self._poses)

    @property
    def n_edges(self) -> int:
        """Return the number of edges."""
        return len(self._i)

    @property
    def poses(self) -> np.ndarray:
        """``(N, 4, 4)`` current estimates ``T_map_i``."""
        return self._poses.copy()

    @property
    def stamps(self) -> np.ndarray:
        """``(N,)`` int64 node stamps in nanoseconds."""
        return self._stamps.copy()

    @property
    def edges(self) -> np.ndarray:
        """``(M, 2)`` int64 node indices ``(i, j)`` of the edges."""
        return np.stack([self._i, self._j], axis=1)

    @property
    def transforms(self) -> np.ndarray:
        """``(M, 4, 4)`` measured relative transforms ``T_i_j``."""
        return self._T.copy()

    @property
    def confidence(self) -> np.ndarray:
        """``(M,)`` local confidences in ``(0, 1]``."""
        return self._confidence.copy()

    @property
    def information(self) -> np.ndarray:
        """``(M, 6, 6)`` information matrices, twist order ``(rho, phi)``, in frame ``i``."""
        return self._information.copy()

    @property
    def loop_closure(self) -> np.ndarray:
        """``(M,)`` bool: True for loop-closure edges, False for sequential (odometry) ones."""
        return self._loop.copy()

    def add_node(self, T_map_node, stamp_ns: int = 0) -> int:
        """
        Append a node with its initial pose estimate.

        :param T_map_node: ``(4, 4)`` initial estimate of the keyframe pose in the map frame.
        :param stamp_ns: the keyframe stamp, int64 nanoseconds.
        :return: the index of the new node.
        :raises ValueError: on an invalid transform.
        """
        T = check_transforms(T_map_node, 'T_map_node')
        if T.shape != (4, 4):
            raise ValueError(f'T_map_node must have shape (4, 4), got {T.shape}')
        self._poses = np.concatenate([self._poses, T[None]])
        self._stamps = np.append(self._stamps, np.int64(stamp_ns))
        return self.n_nodes - 1

    def add_edge(self, i: int, j: int, T_i_j, confidence: float = 1.0, information=None,
                 loop_closure: bool = False) -> int:
        """
        Append one relative measurement ``T_i_j`` between existing nodes.

        :param i: index of the reference node (the registration target).
        :param j: index of the other node (the registration source).
        :param T_i_j: ``(4, 4)`` measured transform from frame ``j`` into frame ``i``.
        :param confidence: local confidence in ``(0, 1]``.
        :param information: ``(6, 6)`` symmetric positive semi-definite information matrix,
            twist order ``(rho, phi)``; identity when ``None``.
        :param loop_closure: whether the edge is a loop closure (else sequential).
        :return: the index of the new edge.
        :raises ValueError: on unknown nodes, a self loop or invalid values.
        """
        info = None if information is None else np.asarray(information, dtype=np.float64)[None]
        self.add_edges([i], [j], np.asarray(T_i_j, dtype=np.float64)[None], [confidence],
                       info, [loop_closure])
        return self.n_edges - 1

    def add_edges(self, i, j, T_i_j, confidence=None, information=None,
                  loop_closure=None) -> np.ndarray:
        """
        Append a batch of relative measurements (all validated before any is added).

        :param i: ``(K,)`` reference node indices.
        :param j: ``(K,)`` other node indices.
        :param T_i_j: ``(K, 4, 4)`` measured transforms from frame ``j`` into frame ``i``.
        :param confidence: ``(K,)`` local confidences in ``(0, 1]``; ones when ``None``.
        :param information: ``(K, 6, 6)`` or ``(6, 6)`` information matrices, twist order
            ``(rho, phi)``; identity when ``None``.
        :param loop_closure: ``(K,)`` bool; False when ``None``.
        :return: ``(K,)`` indices of the new edges.
        :raises ValueError: on unknown nodes, self loops or invalid values.
        """
        i = np.asarray(i).reshape(-1)
        j = np.asarray(j).reshape(-1)
        k = len(i)
        if j.shape != (k,):
            raise ValueError(f'i and j must have the same length, got {k} and {len(j)}')
        for name, idx in (('i', i), ('j', j)):
            if k and not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f'{name} must hold integer node indices, got {idx.dtype}')
            bad = (idx < 0) | (idx >= self.n_nodes)
            if np.any(bad):
                raise ValueError(f'edge {name} refers to unknown node {int(idx[bad][0])}; the '
                                 f'graph has nodes 0..{self.n_nodes - 1}')
        if np.any(i == j):
            raise ValueError(f'self loop on node {int(i[i == j][0])}: an edge needs two nodes')
        T = check_transforms(T_i_j, 'T_i_j')
        if T.shape != (k, 4, 4):
            raise ValueError(f'T_i_j must have shape ({k}, 4, 4), got {T.shape}')
        conf = np.ones(k) if confidence is None else np.asarray(confidence, dtype=np.float64)
        if conf.shape != (k,):
            raise ValueError(f'confidence must have shape ({k},), got {conf.shape}')
        if not np.all((conf > 0.0) & (conf <= 1.0)):
            raise ValueError('confidence must be in (0, 1]')
        info = np.broadcast_to(np.eye(6), (k, 6, 6)) if information is None else \
            np.asarray(information, dtype=np.float64)
        if info.shape == (6, 6):
            info = np.broadcast_to(info, (k, 6, 6))
        if info.shape != (k, 6, 6):
            raise ValueError(f'information must have shape ({k}, 6, 6) or (6, 6), '
                             f'got {info.shape}')
        if not np.all(np.isfinite(info)) or not np.allclose(info, np.swapaxes(info, 1, 2)):
            raise ValueError('information must be finite and symmetric')
        if k and np.linalg.eigvalsh(info).min() < -1e-9 * max(1.0, np.abs(info).max()):
            raise ValueError('information must be positive semi-definite')
        loop = np.zeros(k, dtype=bool) if loop_closure is None else \
            np.asarray(loop_closure, dtype=bool).reshape(-1)
        if loop.shape != (k,):
            raise ValueError(f'loop_closure must have shape ({k},), got {loop.shape}')
        first = self.n_edges
        self._i = np.concatenate([self._i, i.astype(np.int64)])
        self._j = np.concatenate([self._j, j.astype(np.int64)])
        self._T = np.concatenate([self._T, T])
        self._confidence = np.concatenate([self._confidence, conf])
        self._information = np.concatenate([self._information, info])
        self._loop = np.concatenate([self._loop, loop])
        return np.arange(first, self.n_edges)

    def set_poses(self, poses) -> None:
        """
        Replace all pose estimates (e.g. with a synchronization result).

        :param poses: ``(N, 4, 4)`` estimates ``T_map_i`` for every node.
        :raises ValueError: on a wrong count or invalid transforms.
        """
        T = check_transforms(poses, 'poses')
        if T.shape != (self.n_nodes, 4, 4):
            raise ValueError(f'poses must have shape ({self.n_nodes}, 4, 4), got {T.shape}')
        self._poses = T

    def n_components(self) -> int:
        """Count the connected components (an isolated node counts as one)."""
        return connected_components_of(self.n_nodes, self._i, self._j)[0]

    def is_connected(self) -> bool:
        """Whether every node is reachable from every other through edges."""
        return self.n_nodes > 0 and self.n_components() == 1

    def copy(self) -> PoseGraph:
        """Return an independent deep copy."""
        other = PoseGraph()
        other.__dict__.update({k: v.copy() for k, v in self.__dict__.items()})
        return other


def connected_components_of(n_nodes: int, i: np.ndarray, j: np.ndarray) -> tuple[int, np.ndarray]:
    """
    Label the connected components of an undirected graph given by edge index arrays.

    :param n_nodes: number of nodes.
    :param i: ``(M,)`` first node of each edge.
    :param j: ``(M,)`` second node of each edge.
    :return: the number of components and the ``(n_nodes,)`` component label of each node.
    """
    adjacency = coo_matrix((np.ones(len(i)), (i, j)), shape=(n_nodes, n_nodes))
    return connected_components(adjacency, directed=False)
