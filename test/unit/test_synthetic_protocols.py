"""Pair protocols, standard input sizes and seed splits."""

from i2p_registration.core.geometry.projection import project_points
from i2p_registration.core.geometry.se3 import inverse, transform_points
from i2p_registration.core.sensors import CameraModel
from i2p_registration.data.input_size import InputSize, prepare_points, scale_and_crop
from i2p_registration.data.kitti import KittiOdometry, write_kitti_sequence
from i2p_registration.data.protocols import (make_protocol, Nearby, PairDataset, RandomFrame,
                                             SameFrame)
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.splits import split_of_seed, split_seed, split_seeds, SPLITS
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
import numpy as np
import pytest
from scipy.spatial.transform import Rotation


@pytest.fixture(scope='module')
def kitti(tmp_path_factory):
    root = tmp_path_factory.mktemp('pairs')
    cfg = load_synth_config(overrides={**SMALL_OVERRIDES, 'output.duration_s': 0.6})
    write_kitti_sequence(Simulator(cfg, 13), root, '00')
    return KittiOdometry(root, '00')


def perturbations(protocol, n=300):
    return np.stack([protocol.perturbation(np.random.default_rng([5, k])) for k in range(n)])


def test_same_frame_perturbation_range():
    P = perturbations(SameFrame())
    np.testing.assert_allclose(P[:, 2, :3], np.tile([0, 0, 1.0], (len(P), 1)), atol=1e-12)
    np.testing.assert_allclose(P[:, :2, 2], 0, atol=1e-12)
    yaw = np.arctan2(P[:, 1, 0], P[:, 0, 0])
    t = P[:, :3, 3]
    assert np.all(np.abs(t[:, :2]) <= 10) and np.all(t[:, 2] == 0)
    assert np.abs(t[:, :2]).max() > 9.5 and np.abs(yaw).max() > 3.0
    assert np.mean(np.abs(yaw) > np.pi / 2) == pytest.approx(0.5, abs=0.1)   # uniform in +-pi


def test_nearby_perturbation_range():
    P = perturbations(Nearby())
    euler = Rotation.from_matrix(P[:, :3, :3]).as_euler('xyz', degrees=True)
    assert np.all(np.abs(euler) <= 5 + 1e-9) and np.abs(euler).max() > 4.8
    assert np.all(np.abs(P[:, :3, 3]) <= 0.5) and np.abs(P[:, :3, 3]).max() > 0.48
    P2 = perturbations(Nearby(max_rotation_deg=1.0, max_translation=0.1))
    assert np.abs(Rotation.from_matrix(P2[:, :3, :3]).as_euler('xyz', degrees=True)).max() <= 1
    assert np.abs(P2[:, :3, 3]).max() <= 0.1


def test_same_frame_pairs_have_exact_ground_truth(kitti):
    ds = PairDataset(kitti, 'same_frame', seed=3)
    for k in (0, 2):
        s = ds[k]
        assert s.image_index == s.scan_index == k and s.protocol == 'same_frame'
        original = kitti.read_scan(k).points
        np.testing.assert_allclose(transform_points(s.T_cam_lidar, s.points),
                                   transform_points(kitti.T_cam_lidar, original), atol=1e-4)
        np.testing.assert_allclose(s.T_init, kitti.T_cam_lidar)
        assert np.linalg.norm(s.perturbation[:3, 3]) > 0


def test_random_frame_pairs_other_scans_within_10m(kitti):
    ds = PairDataset(kitti, RandomFrame(), seed=1)
    pos = kitti.positions()
    for k in range(len(ds)):
        s = ds[k]
        i, j = s.image_index, s.scan_index
        assert i != j and np.linalg.norm(pos[i] - pos[j]) <= 10.0
        expected = inverse(kitti.pose_cam(i)) @ kitti.pose_lidar(j)
        np.testing.assert_allclose(s.T_cam_lidar @ s.perturbation, expected, atol=1e-9)
        np.testing.assert_allclose(transform_points(s.T_cam_lidar, s.points),
                                   transform_points(expected, kitti.read_scan(j).points),
                                   atol=1e-4)
    with pytest.raises(ValueError, match='no other frame'):
        PairDataset(kitti, RandomFrame(max_distance=1e-3))[0]


def test_pairs_are_seeded(kitti):
    a = PairDataset(kitti, 'random_frame', seed=4)
    b = PairDataset(kitti, 'random_frame', seed=4)
    c = PairDataset(kitti, 'random_frame', seed=5)
    assert np.array_equal(a[1].perturbation, b[1].perturbation)
    assert a[1].scan_index == b[1].scan_index
    assert not np.array_equal(a[1].perturbation, c[1].perturbation)


def test_standard_input_size(kitti):
    ds = PairDataset(kitti, 'nearby', seed=0, input_size=InputSize())
    s = ds[0]
    assert s.image.shape == (160, 512, 3) and s.image.dtype == np.uint8
    assert s.camera.size == (512, 160)
    assert s.points.shape == (40960, 3) and s.points.dtype == np.float32
    assert s.intensity.shape == (40960,)


def test_scale_and_crop_keeps_projection_consistent():
    K = np.array([[721.5, 0, 609.6], [0, 721.5, 172.9], [0, 0, 1]])
    cam = CameraModel(K, 1242, 375)
    yy, xx = np.mgrid[0:375, 0:1242]
    image = np.stack([xx % 256, yy % 256, (xx // 256) * 40], -1).astype(np.uint8)
    out, cam2 = scale_and_crop(image, cam, InputSize())
    assert out.shape == (160, 512, 3) and cam2.size == (512, 160)
    pts = np.random.default_rng(0).uniform([-5, -1, 8], [5, 1, 30], (200, 3))
    uv, _ = project_points(pts, cam)
    uv2, _ = project_points(pts, cam2)
    s = 621 / 1242
    x0, y0 = (621 - 512) // 2, (188 - 160) // 2
    np.testing.assert_allclose(uv2[:, 0], (uv[:, 0] + 0.5) * s - 0.5 - x0, atol=1e-9)
    np.testing.assert_allclose(uv2[:, 1], (uv[:, 1] + 0.5) * 188 / 375 - 0.5 - y0, atol=1e-9)
    rand, _ = scale_and_crop(image, cam, InputSize(random_crop=True), np.random.default_rng(1))
    assert rand.shape == (160, 512, 3)


def test_prepare_points_voxelizes_then_samples_exactly():
    rng = np.random.default_rng(0)
    pts = np.concatenate([rng.uniform(0, 0.09, (50, 3)), rng.uniform(5, 5.09, (50, 3))])
    out, val = prepare_points(pts, np.arange(100.0), InputSize(voxel_size=0.1, n_points=6), rng)
    assert out.shape == (6, 3) and val.shape == (6,)
    assert len(np.unique(out, axis=0)) == 2          # two voxels, repeated up to 6 points
    out, _ = prepare_points(pts, None, InputSize(voxel_size=None, n_points=40), rng)
    assert len(np.unique(out, axis=0)) == 40


def test_protocol_factory():
    assert isinstance(make_protocol('nearby', max_rotation_deg=2.0), Nearby)
    with pytest.raises(ValueError, match='unknown pair protocol'):
        make_protocol('same')


def test_splits_are_disjoint_and_recoverable():
    seeds = {s: set(split_seeds(s, 2000)) for s in SPLITS}
    assert not seeds['train'] & seeds['test'] and not seeds['train'] & seeds['val']
    assert not seeds['val'] & seeds['test']
    for name, values in seeds.items():
        assert all(split_of_seed(v) == name for v in values)
    first_1000 = [split_of_seed(s) for s in range(1000)]
    assert first_1000.count('train') == 800 and first_1000.count('test') == 100
    assert split_seed('test', 0) == 9 and split_seeds('train', 3, start=7) == [7, 10, 11]
    with pytest.raises(ValueError, match='unknown split'):
        split_seed('holdout', 0)


def test_pairs_carry_the_scan_lines_of_the_unperturbed_scan(kitti):
    # The KITTI layout stores no ring; the lines come from the sensor-frame scan, because the
    # perturbation tilts the points against the lasers (64 lines of the HDL-64E preset).
    sample = PairDataset(kitti, 'nearby', seed=1)[0]
    assert sample.ring is not None and len(sample.ring) == len(sample.points)
    original = kitti.read_scan(0).points
    elevation = np.degrees(np.arctan2(original[:, 2], np.hypot(original[:, 0], original[:, 1])))
    assert len(np.unique(sample.ring)) == 64
    spread = [np.ptp(elevation[sample.ring == line]) for line in np.unique(sample.ring)]
    assert max(spread) < 0.1
    resized = PairDataset(kitti, 'nearby', seed=1, input_size=InputSize(n_points=500))[0]
    assert resized.ring is None


class _Recorder:
    """A registrar that returns a fixed correction of its prior and records its input."""

    name = 'recorder'

    def __init__(self, needs_sensor_frame):
        self.needs_sensor_frame = needs_sensor_frame
        self.calls = []

    def register(self, image, cloud, prior):
        from i2p_registration.core.registration.base import RegistrationResult, Status
        self.calls.append((cloud.points.copy(), prior.T_cam_lidar.copy()))
        return RegistrationResult(prior.T_cam_lidar, np.eye(6), 1.0, 1.0, Status.OK, '',
                                  self.name, {})


def test_sensor_frame_methods_get_the_scan_unperturbed_and_the_prior_moved(kitti):
    from i2p_registration.training.evaluate import run_protocol
    root = str(kitti.root)
    moved, sensor = _Recorder(False), _Recorder(True)
    rows_moved = run_protocol(moved, root, '00', 'nearby', 2, 4)
    rows_sensor = run_protocol(sensor, root, '00', 'nearby', 2, 4)
    dataset = PairDataset(kitti, 'nearby', seed=4)
    for k in range(2):
        sample = dataset[k]
        points, prior = sensor.calls[k]
        np.testing.assert_allclose(points, kitti.read_scan(k).points, atol=1e-4)
        np.testing.assert_allclose(prior, sample.T_init @ sample.perturbation, atol=1e-12)
        np.testing.assert_allclose(moved.calls[k][0], sample.points)
        # Returning the prior is the same (wrong) answer in both forms: equal errors.
        assert rows_sensor[k]['rte_m'] == pytest.approx(rows_moved[k]['rte_m'], abs=1e-9)
        assert rows_sensor[k]['rre_geodesic_deg'] == pytest.approx(
            rows_moved[k]['rre_geodesic_deg'], abs=1e-6)
        assert rows_sensor[k]['rte_m'] > 0.01
