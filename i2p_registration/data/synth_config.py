"""
Typed configuration of the synthetic world and sensor simulator.

The sections mirror ``config/synthetic.yaml``: ``world``, ``camera``, ``lidar``, ``vehicle``,
``clocks``, ``odometry``, ``frames``, ``topics`` and ``output``. Every section is a frozen
dataclass with the defaults of that file; :func:`load_synth_config` reads YAML (or a dict),
applies ``section.key=value`` overrides and raises ``ValueError`` on unknown keys or bad values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
import math
from pathlib import Path
from typing import Any

import yaml

# KITTI odometry sequence 00: left colour camera (P2) intrinsics and velodyne -> camera 0 (Tr).
KITTI_K = (721.5377, 721.5377, 609.5593, 172.854)
KITTI_TR = (4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02,
            -7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02,
            9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01)


def _range(value, name: str, positive: bool = True) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if lo > hi or (positive and lo <= 0):
        raise ValueError(f'{name} must be a [min, max] range with 0 < min <= max, got {value}')
    return lo, hi


@dataclass(frozen=True)
class WorldConfig:
    """Street grid and scene content (metres unless stated)."""

    blocks: tuple[int, int] = (4, 3)
    block_size: tuple[float, float] = (60.0, 95.0)
    lane_width: float = 3.5
    parking_width: float = 2.5
    sidewalk_width: float = 3.0
    curb_height: float = 0.15
    corner_radius: float = 6.0
    warp_amplitude: float = 10.0
    warp_wavelength: float = 320.0
    park_probability: float = 0.2
    building_height: tuple[float, float] = (6.0, 28.0)
    building_frontage: tuple[float, float] = (8.0, 24.0)
    building_depth: tuple[float, float] = (8.0, 16.0)
    tree_spacing: float = 11.0
    pole_spacing: float = 28.0
    parked_car_probability: float = 0.45

    def __post_init__(self):
        nx, ny = (int(b) for b in self.blocks)
        if nx < 3 or ny < 3:
            raise ValueError(f'world.blocks must be at least [3, 3] (the route uses inner '
                             f'streets), got {list(self.blocks)}')
        lo, _ = _range(self.block_size, 'world.block_size')
        for name in ('building_height', 'building_frontage', 'building_depth'):
            _range(getattr(self, name), f'world.{name}')
        for name in ('lane_width', 'parking_width', 'sidewalk_width', 'curb_height',
                     'corner_radius', 'warp_wavelength', 'tree_spacing', 'pole_spacing'):
            if getattr(self, name) <= 0:
                raise ValueError(f'world.{name} must be > 0, got {getattr(self, name)}')
        if lo < 2 * (self.sidewalk_width + self.corner_radius) + 4:
            raise ValueError(f'world.block_size min {lo} m is too small for sidewalks and corners')
        if not 0 <= self.warp_amplitude < self.warp_wavelength / 8:
            raise ValueError('world.warp_amplitude must be in [0, warp_wavelength / 8)')
        for name in ('park_probability', 'parked_car_probability'):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f'world.{name} must be a probability, got {getattr(self, name)}')
        object.__setattr__(self, 'blocks', (nx, ny))

    @property
    def road_half_width(self) -> float:
        """Centre line to curb: one driving lane plus one parking lane, metres."""
        return self.lane_width + self.parking_width


@dataclass(frozen=True)
class CameraConfig:
    """Pinhole camera (KITTI colour camera 2 by default) and image formation."""

    width: int = 1242
    height: int = 375
    fx: float = KITTI_K[0]
    fy: float = KITTI_K[1]
    cx: float = KITTI_K[2]
    cy: float = KITTI_K[3]
    distortion_model: str = 'none'
    D: tuple[float, ...] = ()
    noise_std: float = 2.0
    sun_azimuth_deg: float = 35.0
    sun_elevation_deg: float = 50.0
    ambient: float = 0.4
    shadows: bool = True

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0 or self.fx <= 0 or self.fy <= 0:
            raise ValueError('camera width, height, fx and fy must be > 0')
        if self.distortion_model not in ('none', 'plumb_bob'):
            raise ValueError(f"camera.distortion_model must be 'none' or 'plumb_bob', "
                             f'got {self.distortion_model!r}')
        if not 0 <= self.ambient <= 1 or self.noise_std < 0:
            raise ValueError('camera.ambient must be in [0, 1] and noise_std >= 0')
        if not 0 < self.sun_elevation_deg <= 90:
            raise ValueError('camera.sun_elevation_deg must be in (0, 90]')


LIDAR_PRESETS = ('hdl64', 'hdl32', 'vlp16')


@dataclass(frozen=True)
class LidarConfig:
    """Spinning LiDAR: beams, resolution, range and noise."""

    preset: str = 'hdl64'
    vertical_angles_deg: tuple[float, ...] = ()
    columns: int = 2000
    max_range: float = 120.0
    min_range: float = 1.0
    range_noise_std: float = 0.02
    dropout: float = 0.01
    intensity_noise_std: float = 0.02
    motion_distortion: bool = False

    def __post_init__(self):
        if not self.vertical_angles_deg and self.preset not in LIDAR_PRESETS:
            raise ValueError(f'lidar.preset must be one of {LIDAR_PRESETS} (or give '
                             f'vertical_angles_deg), got {self.preset!r}')
        if any(not -90 < a < 90 for a in self.vertical_angles_deg):
            raise ValueError('lidar.vertical_angles_deg must lie in (-90, 90) degrees')
        if self.columns < 8:
            raise ValueError(f'lidar.columns must be >= 8, got {self.columns}')
        if not 0 <= self.min_range < self.max_range:
            raise ValueError('lidar needs 0 <= min_range < max_range')
        if not 0 <= self.dropout < 1 or self.range_noise_std < 0 or self.intensity_noise_std < 0:
            raise ValueError('lidar.dropout must be in [0, 1) and noise std values >= 0')


@dataclass(frozen=True)
class VehicleConfig:
    """
    Driving behaviour and sensor mounting.

    ``T_base_lidar`` is given as ``xyz`` (m) and ``rpy_deg``; ``T_cam_lidar`` as the 12 row-major
    numbers of a 3x4 matrix like KITTI's ``Tr`` (the rotation is re-orthonormalized).
    """

    speed: float = 8.0
    max_lateral_accel: float = 2.0
    max_accel: float = 1.5
    turn_radius: float = 9.0
    lidar_xyz: tuple[float, float, float] = (1.0, 0.0, 1.73)
    lidar_rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    T_cam_lidar: tuple[float, ...] = KITTI_TR

    def __post_init__(self):
        if self.speed <= 0 or self.max_lateral_accel <= 0 or self.max_accel <= 0:
            raise ValueError('vehicle speed and acceleration limits must be > 0')
        if self.turn_radius <= 0:
            raise ValueError('vehicle.turn_radius must be > 0')
        if len(self.T_cam_lidar) != 12 or len(self.lidar_xyz) != 3 or len(self.lidar_rpy_deg) != 3:
            raise ValueError('vehicle.T_cam_lidar needs 12 numbers (3x4 rows), lidar_xyz and '
                             'lidar_rpy_deg 3 each')


@dataclass(frozen=True)
class StreamClock:
    """One sensor stream's clock: rate, jitter, dropped frames and transport latency."""

    rate_hz: float = 10.0
    jitter_std_s: float = 0.0
    drop_probability: float = 0.0
    latency_s: float = 0.0

    def __post_init__(self):
        if self.rate_hz <= 0 or self.jitter_std_s < 0 or self.latency_s < 0:
            raise ValueError('clock rate_hz must be > 0, jitter_std_s and latency_s >= 0')
        if self.jitter_std_s > 0.2 / self.rate_hz:
            raise ValueError('clock jitter_std_s must be at most 0.2 periods')
        if not 0 <= self.drop_probability < 0.5:
            raise ValueError('clock drop_probability must be in [0, 0.5)')


@dataclass(frozen=True)
class ClocksConfig:
    """Independent, non-synchronized clocks of the LiDAR, camera and odometry streams."""

    start_time_s: float = 1_700_000_000.0
    max_start_offset_s: float = 0.1
    lidar: StreamClock = StreamClock(10.0, 0.0005, 0.005, 0.105)
    camera: StreamClock = StreamClock(15.0, 0.002, 0.02, 0.02)
    odom: StreamClock = StreamClock(50.0, 0.0, 0.0, 0.002)

    def __post_init__(self):
        if self.start_time_s < 0 or self.max_start_offset_s < 0:
            raise ValueError('clocks.start_time_s and max_start_offset_s must be >= 0')


@dataclass(frozen=True)
class OdometryConfig:
    """Wheel-odometry-like noise: relative errors that grow with distance travelled."""

    scale_noise: float = 0.01
    lateral_noise: float = 0.005
    yaw_noise_per_m: float = 0.0005
    yaw_bias_per_m: float = 0.0002

    def __post_init__(self):
        if min(self.scale_noise, self.lateral_noise, self.yaw_noise_per_m) < 0:
            raise ValueError('odometry noise values must be >= 0')


@dataclass(frozen=True)
class FramesConfig:
    """TF frame names (REP-105 for map / odom / base_link)."""

    map: str = 'map'  # noqa: A003 (the REP-105 frame name)
    odom: str = 'odom'
    base_link: str = 'base_link'
    lidar: str = 'lidar'
    camera: str = 'camera_optical'


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names of the rosbag2 output."""

    image: str = '/camera/image_raw'
    camera_info: str = '/camera/camera_info'
    points: str = '/points'
    odom: str = '/odom'
    tf: str = '/tf'
    tf_static: str = '/tf_static'


@dataclass(frozen=True)
class OutputConfig:
    """Sequence length and file formats."""

    duration_s: float = 20.0
    storage: str = 'mcap'
    image_format: str = 'raw'
    jpeg_quality: int = 90

    def __post_init__(self):
        if self.duration_s <= 0:
            raise ValueError(f'output.duration_s must be > 0, got {self.duration_s}')
        if self.storage not in ('mcap', 'sqlite3'):
            raise ValueError(f"output.storage must be 'mcap' or 'sqlite3', got {self.storage!r}")
        if self.image_format not in ('raw', 'jpeg', 'png'):
            raise ValueError(f"output.image_format must be 'raw', 'jpeg' or 'png', "
                             f'got {self.image_format!r}')


@dataclass(frozen=True)
class SynthConfig:
    """The whole generator configuration (see ``config/synthetic.yaml``)."""

    world: WorldConfig = field(default_factory=WorldConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    vehicle: VehicleConfig = field(default_factory=VehicleConfig)
    clocks: ClocksConfig = field(default_factory=ClocksConfig)
    odometry: OdometryConfig = field(default_factory=OdometryConfig)
    frames: FramesConfig = field(default_factory=FramesConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (lists instead of tuples), e.g. to record next to outputs."""
        return _plain(asdict(self))


# A small, fast world and reduced sensors (half-resolution camera, 1000 LiDAR columns) for tests
# and quick runs; the code paths are those of the full configuration.
SMALL_OVERRIDES = {
    'world.blocks': [3, 3],
    'world.block_size': [45.0, 60.0],
    'camera.width': 621, 'camera.height': 188,
    'camera.fx': KITTI_K[0] / 2, 'camera.fy': KITTI_K[1] / 2,
    'camera.cx': KITTI_K[2] / 2, 'camera.cy': KITTI_K[3] / 2,
    'lidar.columns': 1000,
    'output.duration_s': 2.0,
}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _convert(value, template, name: str):
    """Convert a YAML value to the type of the default ``template``."""
    if isinstance(template, bool):
        if not isinstance(value, bool):
            raise ValueError(f'{name} must be true or false, got {value!r}')
        return value
    if isinstance(template, int) and not isinstance(template, bool):
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError(f'{name} must be an integer, got {value!r}')
        return int(value)
    if isinstance(template, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f'{name} must be a finite number, got {value!r}')
        return float(value)
    if isinstance(template, str):
        if not isinstance(value, str):
            raise ValueError(f'{name} must be a string, got {value!r}')
        return value
    if isinstance(template, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f'{name} must be a list, got {value!r}')
        if template and len(value) != len(template):
            raise ValueError(f'{name} must have {len(template)} entries, got {len(value)}')
        item = template[0] if template else 0.0
        return tuple(_convert(v, item, f'{name}[{i}]') for i, v in enumerate(value))
    return value


def _build(default, data: dict, name: str):
    """Replace keys of the section instance ``default`` by those of ``data``, validated."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f'{name} must be a mapping, got {type(data).__name__}')
    known = {f.name for f in fields(default)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'unknown key(s) {unknown} in {name}; expected some of {sorted(known)}')
    kwargs = {}
    for key, value in data.items():
        template = getattr(default, key)
        if hasattr(template, '__dataclass_fields__'):
            kwargs[key] = _build(template, value, f'{name}.{key}')
        else:
            kwargs[key] = _convert(value, template, f'{name}.{key}')
    return replace(default, **kwargs)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split('.')
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f'override {dotted!r}: {key!r} is not a section')
    node[keys[-1]] = value


def load_synth_config(source: str | Path | dict | None = None,
                      overrides: list[str] | dict | None = None) -> SynthConfig:
    """
    Read a generator configuration.

    :param source: a YAML file path, an already parsed dict, or ``None`` for the defaults. A
        file may hold the sections at top level or under a ``synthetic:`` key.
    :param overrides: ``['section.key=value', ...]`` (values parsed as YAML) or a dict of
        dotted keys to values, applied on top of ``source``.
    :return: the validated :class:`SynthConfig`.
    :raises ValueError: unknown sections or keys, wrong types, out-of-range values.
    """
    if source is None:
        data = {}
    elif isinstance(source, dict):
        data = _plain(source)
    else:
        with open(source, 'r', encoding='utf-8') as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, dict):
            raise ValueError(f'{source}: expected a mapping of config sections')
    if 'synthetic' in data and len(data) == 1:
        data = data['synthetic'] or {}
    data = _plain(data)
    items = overrides.items() if isinstance(overrides, dict) else []
    if isinstance(overrides, (list, tuple)):
        parsed = []
        for item in overrides:
            if '=' not in item:
                raise ValueError(f"override {item!r} must look like 'section.key=value'")
            key, text = item.split('=', 1)
            parsed.append((key.strip(), yaml.safe_load(text)))
        items = parsed
    for key, value in items:
        _set_dotted(data, key, value)
    return _build(SynthConfig(), data, 'config')
