"""The multiview node configuration: specs, validation and the shipped parameters file."""

import os

from i2p_registration.core.config import load_ros_params_yaml
from i2p_registration.core.multiview.config import MultiviewNodeConfig
from i2p_registration.core.multiview.mapper import make_mapper
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARAMS_FILE = os.path.join(REPO_ROOT, 'config', 'multiview.yaml')
NODE_NAME = 'multiview_sync_node'


def test_every_spec_is_complete_and_its_default_valid():
    specs = MultiviewNodeConfig.parameter_specs()
    assert [s.name for s in specs] == list(MultiviewNodeConfig().to_flat())
    assert len({s.name for s in specs}) == len(specs) >= 40
    for spec in specs:
        assert type(spec.default) is spec.type, spec.name
        assert spec.description, spec.name
        assert spec.validate(spec.default) == spec.default
    read_only = {s.name for s in specs if s.read_only}
    assert read_only == {'topics.points', 'topics.odom', 'qos.reliability', 'qos.depth',
                         'odometry.source'}


def test_shipped_parameters_file_equals_the_defaults():
    flat = load_ros_params_yaml(PARAMS_FILE, NODE_NAME)
    defaults = MultiviewNodeConfig().to_flat()
    assert sorted(flat) == sorted(defaults)
    for name, value in flat.items():
        # ROS refuses an integer for a double parameter: the file must write 1.0, not 1.
        assert type(value) is type(defaults[name]), name
    assert MultiviewNodeConfig.from_flat(flat) == MultiviewNodeConfig()


def test_invalid_values_are_refused_with_the_parameter_name():
    with pytest.raises(ValueError, match="'odometry.source': 'gps' is not allowed"):
        MultiviewNodeConfig.from_flat({'odometry.source': 'gps'})
    with pytest.raises(ValueError, match='pairwise.min_confidence'):
        MultiviewNodeConfig.from_flat({'pairwise.min_confidence': 1.5})
    with pytest.raises(ValueError, match='did you mean keyframes.min_distance'):
        MultiviewNodeConfig.from_flat({'keyframes.min_distanc': 1.0})
    with pytest.raises(ValueError, match='map.voxel_size .0.5. must not exceed'):
        MultiviewNodeConfig.from_flat({'map.voxel_size': 0.5})


def test_factory_passes_the_sections_on():
    config = MultiviewNodeConfig.from_flat({
        'odometry.source': 'tf', 'keyframes.min_distance': 3.0, 'keyframes.max_interval': 2.5,
        'candidates.max_loop_closures': 2, 'pairwise.voxel_size': 0.5,
        'pairwise.icp_method': 'gicp', 'synchronization.refine': False, 'map.voxel_size': 0.25,
        'input.reset_on_time_jump': True})
    mapper = make_mapper(config)
    assert mapper.use_odometry and mapper.reset_on_time_jump
    assert mapper.selector.config.min_distance_m == 3.0
    assert mapper.selector.config.max_interval_ns == 2_500_000_000
    assert mapper.candidates.max_loop_closures == 2
    assert (mapper.registrar.config.voxel_size_m, mapper.registrar.config.icp_method) \
        == (0.5, 'gicp')
    assert mapper.synchronizer.config.refine is False and mapper.voxel_size_m == 0.25
    assert not make_mapper(MultiviewNodeConfig()).use_odometry
