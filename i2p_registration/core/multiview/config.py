"""
Typed configuration of the multiview node; a leaf's dotted path is its ROS parameter name.

Same pattern as :mod:`i2p_registration.core.config`: frozen sections of typed leaves whose
metadata carries the description and the allowed values, so the ROS layer declares and validates
every parameter from :meth:`MultiviewNodeConfig.parameter_specs`. :func:`.mapper.make_mapper`
turns the sections into the explicit arguments of the mapper. Durations are seconds and angles
radians, as ROS users expect; the ``*_ns`` properties give the int nanoseconds used in ``core``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from i2p_registration.core.config import _param, _Section, NodeConfig, seconds_to_ns


@dataclass(frozen=True)
class MultiviewTopicsConfig(_Section):
    """Input topics (relative names resolve in the node's namespace)."""

    points: str = _param('points', 'LiDAR scan topic (sensor_msgs/PointCloud2)',
                         allow_empty=False, read_only=True)
    odom: str = _param('odom', 'odometry topic (nav_msgs/Odometry), used when '
                       'odometry.source is odom', allow_empty=False, read_only=True)


@dataclass(frozen=True)
class MultiviewQosConfig(_Section):
    """Quality of service of the scan subscription."""

    reliability: str = _param('best_effort', 'reliability of the scan subscription; '
                              'best_effort also receives from reliable publishers',
                              choices=('best_effort', 'reliable'), read_only=True)
    depth: int = _param(10, 'history depth of the scan subscription [messages]',
                        min_value=1, max_value=1000, read_only=True)


@dataclass(frozen=True)
class OdometryPriorConfig(_Section):
    """Where the motion prior between scans comes from."""

    source: str = _param('none', 'none: LiDAR only, every scan is tracked against the last '
                         'keyframe and map -> <lidar frame> is published; odom: '
                         'nav_msgs/Odometry on topics.odom; tf: the frames.odom -> '
                         'frames.base_link transforms on /tf. With odometry, map -> odom is '
                         'published and base_link -> <lidar frame> is read from /tf_static',
                         choices=('none', 'odom', 'tf'), read_only=True)
    max_extrapolation: float = _param(0.1, 'a scan newer than the newest odometry sample by at '
                                      'most this uses that sample extrapolated; later ones '
                                      'are refused [s]', min_value=0.0, max_value=10.0)
    max_wait: float = _param(0.2, 'a scan newer than every odometry sample waits this long for '
                             'odometry to catch up [s]', min_value=0.0, max_value=10.0)
    buffer_duration: float = _param(30.0, 'odometry history kept [s]',
                                    min_value=0.1, max_value=3600.0)

    @property
    def max_extrapolation_ns(self) -> int:
        """``max_extrapolation`` in nanoseconds."""
        return seconds_to_ns(self.max_extrapolation)

    @property
    def max_wait_ns(self) -> int:
        """``max_wait`` in nanoseconds."""
        return seconds_to_ns(self.max_wait)

    @property
    def buffer_duration_ns(self) -> int:
        """``buffer_duration`` in nanoseconds."""
        return seconds_to_ns(self.buffer_duration)


@dataclass(frozen=True)
class MultiviewFramesConfig(_Section):
    """TF frame names (REP-105)."""

    map: str = _param(  # noqa: A003 (the REP-105 frame name; the ROS parameter is frames.map)
        'map', 'the map frame: parent of the published transform, frame of ~/path, '
        '~/keyframes and ~/map', allow_empty=False)
    odom: str = _param('odom', 'odometry frame: with odometry.source tf, the parent of the '
                       'odometry transforms; with odom, used when the messages leave it empty',
                       allow_empty=False)
    base_link: str = _param('base_link', 'vehicle frame: with odometry.source tf, the child of '
                            'the odometry transforms; with odom, used when the messages leave '
                            'it empty', allow_empty=False)
    lidar: str = _param('', "LiDAR frame; empty: the scans' header frame_id")


@dataclass(frozen=True)
class MultiviewInputConfig(_Section):
    """Checks on incoming scans."""

    min_points: int = _param(100, 'scans with fewer finite points are refused',
                             min_value=1, max_value=10_000_000)
    reset_on_time_jump: bool = _param(False, 'start a new map when a scan is older than the '
                                      'last one by more than input.jump_back_threshold (bag '
                                      'replayed in a loop); false: such scans are refused')
    jump_back_threshold: float = _param(1.0, 'backwards stamp step that counts as a time jump '
                                        '[s]', min_value=0.001, max_value=3600.0)
    queue_size: int = _param(10, 'scans waiting for the worker; the oldest is dropped beyond',
                             min_value=1, max_value=10000)

    @property
    def jump_back_threshold_ns(self) -> int:
        """``jump_back_threshold`` in nanoseconds."""
        return seconds_to_ns(self.jump_back_threshold)


@dataclass(frozen=True)
class KeyframesConfig(_Section):
    """Keyframe selection; any threshold exceeded makes a keyframe."""

    min_distance: float = _param(2.0, 'travel since the last keyframe [m]',
                                 min_value=0.01, max_value=1000.0)
    min_rotation: float = _param(0.2618, 'rotation since the last keyframe [rad]',
                                 min_value=0.001, max_value=3.1416)
    max_interval: float = _param(0.0, 'time since the last keyframe [s]; 0: no time rule',
                                 min_value=0.0, max_value=3600.0)

    @property
    def max_interval_ns(self) -> int:
        """``max_interval`` in nanoseconds."""
        return seconds_to_ns(self.max_interval)


@dataclass(frozen=True)
class CandidatesConfig(_Section):
    """Edges of a new keyframe: sequential neighbours and loop closures by proximity."""

    sequential: int = _param(1, 'preceding keyframes registered against', min_value=1,
                             max_value=100)
    loop_radius: float = _param(10.0, 'loop-closure candidates lie within this distance in '
                                'the current estimates [m]', min_value=0.01, max_value=1000.0)
    min_index_gap: int = _param(10, 'loop-closure candidates are at least this many keyframes '
                                'older', min_value=1, max_value=100000)
    max_loop_closures: int = _param(3, 'loop-closure candidates per keyframe, nearest first',
                                    min_value=0, max_value=100)


@dataclass(frozen=True)
class PairwiseSectionConfig(_Section):
    """Pairwise scan registration (Open3D)."""

    voxel_size: float = _param(0.4, 'downsampling voxel of registration [m]; the FPFH radius and '
                               'the ICP distance scale with it', min_value=0.01, max_value=10.0)
    normal_radius: float = _param(3.0, 'neighbourhood radius of the normals [m]; it must span '
                                  'several laser lines on the ground (3 m for 32 and 64 lines, '
                                  'about 5 m for 16)', min_value=0.05, max_value=50.0)
    icp_method: str = _param('point_to_plane', 'local refinement',
                             choices=('point_to_plane', 'gicp'))
    global_method: str = _param('ransac', 'global step when the prior is poor: FPFH + RANSAC '
                                'or Fast Global Registration', choices=('ransac', 'fgr'))
    min_prior_fitness: float = _param(0.5, 'ICP from the prior is trusted at or above this '
                                      'fitness; below, the global step runs too',
                                      min_value=0.0, max_value=1.0)
    max_correspondence_factor: float = _param(2.0, 'ICP correspondence distance [voxels]',
                                              min_value=0.1, max_value=100.0)
    icp_iterations: int = _param(50, 'ICP iteration cap', min_value=1, max_value=10000)
    ransac_iterations: int = _param(100000, 'RANSAC iteration cap', min_value=1,
                                    max_value=100_000_000)
    min_confidence: float = _param(0.3, 'edges with a lower local confidence are discarded; a '
                                   'keyframe whose sequential edge is discarded is refused',
                                   min_value=0.0, max_value=1.0)
    seed: int = _param(0, 'seed of the RANSAC generator', min_value=0, max_value=2 ** 31 - 1)


@dataclass(frozen=True)
class SynchronizationSectionConfig(_Section):
    """Transformation synchronization of the keyframe graph."""

    sigma_rotation: float = _param(0.0349, 'nominal rotation noise of an edge per axis [rad]',
                                   min_value=1e-6, max_value=3.1416)
    sigma_translation: float = _param(0.07, 'nominal translation noise of an edge per axis '
                                      '[m]', min_value=1e-6, max_value=100.0)
    cauchy_scale: float = _param(4.0, 'Cauchy kernel scale of IRLS on normalized residuals',
                                 min_value=1e-3, max_value=1000.0)
    prune_threshold: float = _param(0.25, 'edges whose final IRLS weight is below are pruned '
                                    '(a spanning tree is always kept)',
                                    min_value=0.0, max_value=0.99)
    refine: bool = _param(True, 'robust joint SE(3) refinement after synchronization')


@dataclass(frozen=True)
class MapConfig(_Section):
    """The accumulated map."""

    voxel_size: float = _param(0.2, 'voxel of the stored keyframe clouds and of ~/map [m] (at '
                               'most pairwise.voxel_size)', min_value=0.01, max_value=10.0)
    publish_period: float = _param(2.0, 'shortest time between two ~/map messages [s]',
                                   min_value=0.0, max_value=3600.0)


@dataclass(frozen=True)
class MultiviewOutputConfig(_Section):
    """What is published and saved."""

    publish_tf: bool = _param(True, 'publish map -> odom (or map -> <lidar frame>) on /tf')
    save_directory: str = _param('~/i2p_maps', 'folder of ~/save_map (created; ~ expanded)',
                                 allow_empty=False)
    map_format: str = _param('pcd', 'file format of the saved map', choices=('pcd', 'ply'))


@dataclass(frozen=True)
class MultiviewNodeConfig(NodeConfig):
    """Parameters of the multiview node."""

    topics: MultiviewTopicsConfig = field(default_factory=MultiviewTopicsConfig)
    qos: MultiviewQosConfig = field(default_factory=MultiviewQosConfig)
    odometry: OdometryPriorConfig = field(default_factory=OdometryPriorConfig)
    frames: MultiviewFramesConfig = field(default_factory=MultiviewFramesConfig)
    input: MultiviewInputConfig = field(  # noqa: A003 (the ROS parameters are input.*)
        default_factory=MultiviewInputConfig)
    keyframes: KeyframesConfig = field(default_factory=KeyframesConfig)
    candidates: CandidatesConfig = field(default_factory=CandidatesConfig)
    pairwise: PairwiseSectionConfig = field(default_factory=PairwiseSectionConfig)
    synchronization: SynchronizationSectionConfig = field(
        default_factory=SynchronizationSectionConfig)
    map: MapConfig = field(default_factory=MapConfig)  # noqa: A003 (the ROS parameters map.*)
    output: MultiviewOutputConfig = field(default_factory=MultiviewOutputConfig)

    def __post_init__(self):
        if self.map.voxel_size > self.pairwise.voxel_size:
            raise ValueError(f'parameter map.voxel_size ({self.map.voxel_size}) must not exceed '
                             f'pairwise.voxel_size ({self.pairwise.voxel_size}): keyframe '
                             'clouds are stored at the map voxel and registered from there')
