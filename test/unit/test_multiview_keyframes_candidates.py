"""Keyframe selection and candidate edges."""

from i2p_registration.core.geometry.rotations import so3_exp
from i2p_registration.core.geometry.se3 import make_transform
from i2p_registration.core.multiview.candidates import candidate_edges, CandidateConfig
from i2p_registration.core.multiview.keyframes import KeyframeConfig, KeyframeSelector
import numpy as np
import pytest


def _pose(x=0.0, yaw=0.0):
    return make_transform(so3_exp(np.array([0.0, 0.0, yaw])), [x, 0.0, 0.0])


def test_keyframes_by_distance_rotation_and_time():
    sel = KeyframeSelector(KeyframeConfig(min_distance_m=1.0, min_rotation_rad=0.2,
                                          max_interval_ns=1_000_000_000))
    assert sel.should_add(_pose(), 0)
    sel.accept(_pose(), 0)
    assert not sel.should_add(_pose(0.9, 0.19), 999_999_999)
    assert sel.should_add(_pose(1.0), 10)
    assert sel.should_add(_pose(0.0, 0.2), 10)
    assert sel.should_add(_pose(), 1_000_000_000)


def test_keyframe_time_going_back_raises_until_reset():
    sel = KeyframeSelector()
    sel.accept(_pose(), 100)
    with pytest.raises(ValueError, match='older than the last keyframe'):
        sel.should_add(_pose(5.0), 50)
    sel.reset()
    assert sel.should_add(_pose(), 50)


def test_keyframe_config_validation():
    with pytest.raises(ValueError, match='positive'):
        KeyframeConfig(min_distance_m=0.0)
    with pytest.raises(ValueError, match='max_interval_ns'):
        KeyframeConfig(max_interval_ns=-1)


def test_candidates_sequential_and_nearest_loop_closures_bounded():
    # A 20-keyframe loop on a circle; keyframe 19 is back next to 0, 1 and 18.
    s = 2 * np.pi * np.arange(20) / 20
    poses = np.stack([make_transform(np.eye(3), [10 * np.cos(a), 10 * np.sin(a), 0.0])
                      for a in s])
    poses[19, :3, 3] = poses[0, :3, 3] + [0.5, 0.0, 0.0]
    cfg = CandidateConfig(sequential=2, loop_radius_m=4.0, min_index_gap=5,
                          max_loop_closures=2)
    partners, loop = candidate_edges(poses, 19, cfg)
    np.testing.assert_array_equal(partners, [18, 17, 0, 1])
    np.testing.assert_array_equal(loop, [False, False, True, True])
    partners, loop = candidate_edges(poses, 0, cfg)
    assert len(partners) == 0
    with pytest.raises(ValueError, match='new_index'):
        candidate_edges(poses, 20, cfg)
