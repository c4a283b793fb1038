"""
An analytic street-like scene for the registration tests: flat boards in front of a wall.

Both sensors are ray cast against the same geometry (vertical rectangular boards of distinct
grey levels, a ground plane, a far wall), so the image edges and the LiDAR depth discontinuities
agree exactly under the ground-truth ``T_cam_lidar``. The LiDAR frame has z up and x forward;
the camera sits 0.3 m above and 0.2 m behind the LiDAR, looking along x.
"""

from dataclasses import dataclass

from i2p_registration.core.geometry import make_transform
from i2p_registration.core.registration.image_edges import CannyEdges, cost_pyramid, rectify
from i2p_registration.core.registration.lidar_edges import depth_edges
from i2p_registration.core.registration.refine import edge_residuals
from i2p_registration.core.sensors import CameraModel, CloudFrame, ImageFrame
import numpy as np

# Camera optical axes (x right, y down, z forward) expressed in the LiDAR frame.
R_CAM_LIDAR = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
CAMERA_IN_LIDAR = np.array([-0.2, 0.05, 0.3])
T_CAM_LIDAR = make_transform(R_CAM_LIDAR, -R_CAM_LIDAR @ CAMERA_IN_LIDAR)
GROUND_Z = -1.7
WALL_X = 45.0
# Lane lines of the striped scene: centres (y, metres) and width.
LANES_Y = (-5.0, -1.75, 1.75, 5.0)
LANE_WIDTH = 0.2


@dataclass
class Scene:
    """Boards as ``(centre (3,), half width, half height, yaw, grey)`` plus the sensors' data."""

    boards: list
    image: ImageFrame
    cloud: CloudFrame
    T_cam_lidar: np.ndarray


def _cast(origin: np.ndarray, directions: np.ndarray, boards: list, stripes: bool = False,
          two_tone: bool = False):
    """Return hit distances ``(N,)`` and grey levels ``(N,)`` of rays in the LiDAR frame."""
    n = len(directions)
    t_best = np.full(n, np.inf)
    grey = np.full(n, 230.0)
    with np.errstate(divide='ignore', invalid='ignore'):
        t_wall = (WALL_X - origin[0]) / directions[:, 0]
        t_ground = (GROUND_Z - origin[2]) / directions[:, 2]
    for t, g in ((t_wall, 200.0), (t_ground, 120.0)):
        hit = (t > 0) & (t < t_best)
        t_best = np.where(hit, t, t_best)
        grey = np.where(hit, g, grey)
    if stripes:
        y = origin[1] + t_best * directions[:, 1]
        on_ground = np.isclose(origin[2] + t_best * directions[:, 2], GROUND_Z)
        painted = np.any([np.abs(y - c) < LANE_WIDTH / 2 for c in LANES_Y], axis=0)
        grey = np.where(on_ground & painted, 240.0, grey)
    for centre, half_w, half_h, yaw, g in boards:
        normal = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        across = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
        with np.errstate(divide='ignore', invalid='ignore'):
            t = ((centre - origin) @ normal) / (directions @ normal)
        p = origin + t[:, None] * directions - centre
        hit = ((t > 0) & (t < t_best) & (np.abs(p @ across) <= half_w)
               & (np.abs(p[:, 2]) <= half_h))
        t_best = np.where(hit, t, t_best)
        # Two-tone boards: the right half painted in the complementary grey.
        tone = np.where(two_tone & (p @ across > 0), 255.0 - g, g)
        grey = np.where(hit, tone, grey)
    return t_best, grey


def make_scene(seed: int = 0, n_boards: int = 14, width: int = 512, height: int = 256,
               rings: int = 32, columns: int = 2048, stripes: bool = False,
               two_tone: bool = False) -> Scene:
    """
    Build a seeded board scene and render both sensors.

    :param seed: scene seed.
    :param n_boards: number of boards.
    :param width: image width (focal length ``width / 2``: a 90 deg field of view).
    :param height: image height.
    :param rings: LiDAR beams from -15 to +10 deg elevation.
    :param columns: LiDAR azimuth steps over 360 deg.
    :param stripes: paint lane lines on the ground (bright in the image and in the LiDAR
        intensity, which is the grey level / 255 everywhere).
    :param two_tone: paint the right half of each board in the complementary grey (a steep
        border in the image and in the intensity).
    """
    rng = np.random.default_rng(seed)
    boards = []
    for i in range(n_boards):
        x = rng.uniform(5.0, 25.0)
        half_h = rng.uniform(0.6, 2.0)
        centre = np.array([x, rng.uniform(-0.7, 0.7) * x, GROUND_Z + half_h + rng.uniform(0, 1)])
        boards.append((centre, rng.uniform(0.3, 1.5), half_h, rng.uniform(-0.6, 0.6) + np.pi,
                       float(20 + (i * 37) % 170)))
    f = width / 2.0
    K = np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
    camera = CameraModel(K, width, height)
    # 2 x 2 supersampling gives anti-aliased, sub-pixel accurate edges.
    ss = (np.arange(2 * width) + 0.5) / 2.0 - 0.5, (np.arange(2 * height) + 0.5) / 2.0 - 0.5
    u, v = np.meshgrid(*ss)
    rays_cam = np.stack([(u - K[0, 2]) / f, (v - K[1, 2]) / f, np.ones_like(u)], -1).reshape(-1, 3)
    _, grey = _cast(CAMERA_IN_LIDAR, rays_cam @ R_CAM_LIDAR, boards, stripes, two_tone)
    grey = grey.reshape(2 * height, 2 * width).reshape(height, 2, width, 2).mean(axis=(1, 3))
    image = np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=2)
    elevation = np.radians(np.linspace(-15.0, 10.0, rings))
    azimuth = np.linspace(-np.pi, np.pi, columns, endpoint=False)
    el, az = np.meshgrid(elevation, azimuth, indexing='ij')
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
    dirs = dirs.reshape(-1, 3)
    t, lidar_grey = _cast(np.zeros(3), dirs, boards, stripes, two_tone)
    hit = np.isfinite(t) & (t < 120.0)
    points = (dirs * t[:, None])[hit].astype(np.float32)
    ring = np.repeat(np.arange(rings), columns)[hit].astype(np.uint16)
    intensity = (lidar_grey[hit] / 255.0).astype(np.float32)
    cloud = CloudFrame(points, 1_000, 'lidar', intensity, ring)
    return Scene(boards, ImageFrame(image, 1_000, 'camera', camera), cloud, T_CAM_LIDAR.copy())


def test_scene_edges_agree_at_ground_truth():
    scene = make_scene(seed=3)
    edges = depth_edges(scene.cloud.points, scene.cloud.ring)
    gray, K = rectify(scene.image)
    field = cost_pyramid(gray, K, CannyEdges(), levels=1)[0]
    points = scene.cloud.points[edges.index].astype(np.float64)
    p = points @ scene.T_cam_lidar[:3, :3].T + scene.T_cam_lidar[:3, 3]
    uv = p[:, :2] / p[:, 2:] * K[0, 0] + K[:2, 2]
    inside = (p[:, 2] > 0.5) & np.all((uv > 2) & (uv < [gray.shape[1] - 3, gray.shape[0] - 3]), 1)
    cost, _, _ = edge_residuals(field, points[inside], np.ones(inside.sum()), scene.T_cam_lidar,
                                False)
    assert len(edges) > 200 and inside.sum() > 100
    # Foreground silhouette points lie on image edges to within the edge blur.
    assert np.median(cost) < 1.5
    assert np.mean(cost < 3.0) > 0.8
