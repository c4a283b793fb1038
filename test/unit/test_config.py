"""Typed node configuration, flat ROS parameter names and parameters files (``core.config``)."""

import dataclasses
import math
import os

from i2p_registration.core.config import (
    BufferingConfig, load_ros_params_yaml, parameter_specs, ParameterSpec,
    RegistrationNodeConfig, seconds_to_ns, TopicsConfig)
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARAMS_FILE = os.path.join(REPO_ROOT, 'config', 'registration.yaml')
NODE_NAME = 'i2p_registration_node'

EXPECTED_NAMES = [
    'topics.image', 'topics.camera_info', 'topics.points', 'topics.map', 'topics.use_compressed',
    'qos.reliability', 'qos.depth',
    'buffering.policy', 'buffering.max_dt', 'buffering.offset', 'buffering.max_count',
    'buffering.max_age', 'buffering.jump_back_threshold',
    'processing.max_rate',
    'registration.method', 'registration.refine', 'registration.device',
    'registration.checkpoint', 'registration.min_score',
    'registration.intensity_threshold', 'registration.top_weight',
    'registration.marking_weight', 'registration.threads',
    'output.mode', 'output.parent_frame', 'output.child_frame', 'output.overlay',
    'prior.x', 'prior.y', 'prior.z', 'prior.roll', 'prior.pitch', 'prior.yaw',
    'prior.translation_range', 'prior.rotation_range',
    'calibration.window', 'calibration.min_inliers', 'calibration.max_translation',
    'calibration.max_rotation', 'calibration.converged_translation',
    'calibration.converged_rotation', 'calibration.update_translation',
    'calibration.update_rotation',
]


def write(tmp_path, text):
    path = tmp_path / 'params.yaml'
    path.write_text(text)
    return str(path)


def test_parameter_names_are_the_dotted_field_paths():
    assert [spec.name for spec in parameter_specs()] == EXPECTED_NAMES
    assert list(RegistrationNodeConfig().to_flat()) == EXPECTED_NAMES
    assert RegistrationNodeConfig.parameter_specs() == parameter_specs(RegistrationNodeConfig)


def test_every_spec_is_complete_and_its_default_valid():
    defaults = RegistrationNodeConfig().to_flat()
    for spec in parameter_specs():
        assert spec.type in (bool, int, float, str), spec.name
        assert type(spec.default) is spec.type, spec.name
        assert spec.default == defaults[spec.name]
        assert spec.validate(spec.default) == spec.default
        assert len(spec.description) > 10, spec.name
        if spec.choices is not None:
            assert spec.default in spec.choices
        if spec.type in (int, float):
            assert spec.min_value is not None and spec.max_value is not None, spec.name
    read_only = {spec.name for spec in parameter_specs() if spec.read_only}
    assert {'topics.image', 'qos.depth', 'registration.method'} <= read_only
    assert 'buffering.max_dt' not in read_only


def test_defaults_round_trip_through_the_flat_form():
    config = RegistrationNodeConfig()
    assert RegistrationNodeConfig.from_flat(config.to_flat()) == config
    assert RegistrationNodeConfig.from_flat({}) == config


def test_overrides_are_applied_and_ints_become_floats():
    config = RegistrationNodeConfig.from_flat({
        'buffering.max_dt': 1, 'buffering.policy': 'fixed_offset', 'buffering.offset': -0.25,
        'qos.depth': 10, 'topics.use_compressed': True, 'output.child_frame': 'cam_est'})
    assert config.buffering.max_dt == 1.0 and type(config.buffering.max_dt) is float
    assert (config.buffering.policy, config.buffering.offset) == ('fixed_offset', -0.25)
    assert config.qos.depth == 10 and config.topics.use_compressed is True
    assert config.output.child_frame == 'cam_est'
    assert config.topics == TopicsConfig(use_compressed=True)
    assert RegistrationNodeConfig.from_flat(config.to_flat()) == config


def test_durations_convert_to_integer_nanoseconds():
    buffering = BufferingConfig(max_dt=0.1, offset=-0.2, max_age=1.5, jump_back_threshold=2.0)
    assert (buffering.max_dt_ns, buffering.offset_ns) == (100_000_000, -200_000_000)
    assert buffering.max_age_ns == 1_500_000_000
    assert buffering.jump_back_threshold_ns == 2_000_000_000
    assert seconds_to_ns(0.3) == 300_000_000 and isinstance(seconds_to_ns(0.3), int)


def test_configs_are_frozen():
    config = RegistrationNodeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.buffering.max_dt = 0.5


def test_ros_builtin_parameters_are_skipped():
    config = RegistrationNodeConfig.from_flat({
        'use_sim_time': True, 'start_type_description_service': False,
        'qos_overrides./points.subscription.depth': 3})
    assert config == RegistrationNodeConfig()


@pytest.mark.parametrize('flat, message', [
    ({'buffering.max_td': 0.1},
     r"unknown parameter 'buffering\.max_td'; did you mean buffering\.max_dt"),
    ({'topics': {'image': 'x'}}, r"unknown parameter 'topics'"),
    ({'no_such_thing': 1}, r"^unknown parameter 'no_such_thing'$"),
    ({'buffering.max_dt': '0.1'},
     r"parameter 'buffering\.max_dt': expected float, got '0\.1' of type str"),
    ({'qos.depth': True}, r"parameter 'qos\.depth': expected int, got True of type bool"),
    ({'qos.depth': 2.0}, r"parameter 'qos\.depth': expected int, got 2\.0 of type float"),
    ({'registration.refine': 1},
     r"parameter 'registration\.refine': expected bool, got 1 of type int"),
    ({'topics.image': 5}, r"parameter 'topics\.image': expected str, got 5 of type int"),
    ({'buffering.max_dt': -0.1},
     r"parameter 'buffering\.max_dt': -0\.1 is out of range, expected in \[0\.0, 10\.0\]"),
    ({'buffering.max_dt': math.nan}, r"parameter 'buffering\.max_dt': nan is out of range"),
    ({'qos.depth': 0}, r"parameter 'qos\.depth': 0 is out of range, expected in \[1, 1000\]"),
    ({'processing.max_rate': 1e4}, r"'processing\.max_rate': 10000\.0 is out of range"),
    ({'buffering.policy': 'closest'},
     r"parameter 'buffering\.policy': 'closest' is not allowed, expected one of 'nearest', "
     r"'latest', 'fixed_offset'"),
    ({'registration.device': 'cuda:0'}, r"'registration\.device': 'cuda:0' is not allowed"),
    ({'output.mode': 'mapping'}, r"'output\.mode': 'mapping' is not allowed"),
    ({'topics.points': ''}, r"parameter 'topics\.points': must not be empty"),
])
def test_bad_flat_values_name_the_parameter_value_and_what_is_allowed(flat, message):
    with pytest.raises(ValueError, match=message):
        RegistrationNodeConfig.from_flat(flat)


def test_sections_made_directly_are_validated_too():
    with pytest.raises(ValueError, match=r"parameter 'max_dt': -1\.0 is out of range"):
        BufferingConfig(max_dt=-1.0)
    with pytest.raises(ValueError, match=r"parameter 'image': must not be empty"):
        TopicsConfig(image='')
    assert type(BufferingConfig(max_age=2).max_age) is float


def test_spec_constraints_in_words():
    spec = ParameterSpec('x', float, 1.0, 'a value', min_value=0.0)
    assert spec.constraints() == '>= 0.0'
    assert ParameterSpec('x', int, 1, 'a', max_value=3).constraints() == '<= 3'
    assert ParameterSpec('x', str, 'a', 'a', allow_empty=False).constraints() == 'non-empty'
    assert ParameterSpec('x', bool, True, 'a').constraints() == ''
    with pytest.raises(ValueError, match=r"parameter 'x': -1\.0 is out of range, expected >= 0"):
        spec.validate(-1.0)


def test_shipped_parameters_file_equals_the_defaults():
    flat = load_ros_params_yaml(PARAMS_FILE, NODE_NAME)
    assert sorted(flat) == sorted(EXPECTED_NAMES)
    for spec in parameter_specs():
        # ROS refuses an integer for a double parameter: the file must write 1.0, not 1.
        assert type(flat[spec.name]) is spec.type, spec.name
    assert RegistrationNodeConfig.from_flat(flat) == RegistrationNodeConfig()


def test_shipped_parameters_file_comments_every_group():
    lines = [line.rstrip() for line in open(PARAMS_FILE, encoding='utf-8') if line.strip()]
    sections = sorted({name.split('.')[0] for name in EXPECTED_NAMES})
    for section in sections:
        index = lines.index(f'    {section}:')
        assert lines[index - 1].lstrip().startswith('#'), section


def test_wildcard_entries_apply_first_and_node_entries_override(tmp_path):
    path = write(tmp_path, '\n'.join([
        'i2p_registration_node:',
        '  ros__parameters:',
        '    buffering: {max_dt: 0.3}',
        '/**:',
        '  ros__parameters:',
        '    use_sim_time: true',
        '    buffering: {max_dt: 0.2}',
        '    qos.depth: 7',
        'other_node:',
        '  ros__parameters: {qos: {depth: 9}}',
    ]))
    flat = load_ros_params_yaml(path, NODE_NAME)
    assert flat == {'use_sim_time': True, 'buffering.max_dt': 0.3, 'qos.depth': 7}
    config = RegistrationNodeConfig.from_flat(flat)
    assert (config.buffering.max_dt, config.qos.depth) == (0.3, 7)


@pytest.mark.parametrize('key, node, matches', [
    ('registration_node', 'registration_node', True),
    ('/registration_node', 'registration_node', True),
    ('/robot/registration_node', 'registration_node', False),
    ('/robot/registration_node', '/robot/registration_node', True),
    ('/**/registration_node', '/robot/cam/registration_node', True),
    ('/**/registration_node', 'registration_node', True),
    ('/robot/*', '/robot/registration_node', True),
    ('/robot/*', '/robot/cam/registration_node', False),
    ('/**', '/robot/registration_node', True),
    ('registration_*', 'registration_node', True),
])
def test_node_keys_match_like_ros(tmp_path, key, node, matches):
    path = write(tmp_path, f'{key}:\n  ros__parameters:\n    qos: {{depth: 3}}\n')
    if matches:
        assert load_ros_params_yaml(path, node) == {'qos.depth': 3}
    else:
        with pytest.raises(ValueError, match=r"no parameters for node '/.*registration_node'; "
                                             r'node keys in the file: \['):
            load_ros_params_yaml(path, node)


@pytest.mark.parametrize('text, message', [
    ('- a\n- b\n', 'not a ROS parameters file'),
    ('i2p_registration_node:\n  qos: {depth: 3}\n',
     "entry 'i2p_registration_node' has no ros__parameters mapping"),
    ('i2p_registration_node:\n  ros__parameters:\n    1: 2\n',
     'parameter names must be strings'),
])
def test_malformed_parameters_files_are_rejected(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_ros_params_yaml(write(tmp_path, text), NODE_NAME)
