"""
Multiview pose-graph synchronization of LiDAR keyframes (ROS-free).

Keyframes (:mod:`.keyframes`) and candidate edges (:mod:`.candidates`) build a
:class:`~.graph.PoseGraph`; pairwise registration (:mod:`.pairwise`, Open3D, imported on
demand) measures the edges; :class:`~.synchronization.TransformationSynchronizer` computes
globally consistent poses (spectral rotations, least-squares translations, IRLS, pruning,
robust SE(3) refinement), from zero or incrementally.
"""

from .candidates import candidate_edges, CandidateConfig
from .graph import PoseGraph
from .keyframes import KeyframeConfig, KeyframeSelector
from .refinement import refine_poses, RefinementConfig
from .synchronization import (SynchronizationConfig, SynchronizationResult,
                              TransformationSynchronizer)

__all__ = [
    'CandidateConfig', 'KeyframeConfig', 'KeyframeSelector', 'PoseGraph', 'RefinementConfig',
    'SynchronizationConfig', 'SynchronizationResult', 'TransformationSynchronizer',
    'candidate_edges', 'refine_poses',
]
