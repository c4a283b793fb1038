"""KITTI-layout writer and the KittiOdometry loader on a generated sequence."""

import hashlib

from i2p_registration.core.geometry.se3 import inverse
from i2p_registration.data.kitti import KittiOdometry, read_calib, write_kitti_sequence
from i2p_registration.data.simulator import Simulator
from i2p_registration.data.synth_config import load_synth_config, SMALL_OVERRIDES
import numpy as np
import pytest

OVERRIDES = {**SMALL_OVERRIDES, 'output.duration_s': 0.35}


def tree_digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope='module')
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp('kitti')
    sim = Simulator(load_synth_config(overrides=OVERRIDES), 11)
    summary = write_kitti_sequence(sim, root, '04')
    return root, sim, summary


def test_layout(generated):
    root, _, summary = generated
    seq = root / 'sequences' / '04'
    n = summary['frames']
    assert n >= 3
    assert len(list((seq / 'image_2').glob('*.png'))) == n
    assert len(list((seq / 'velodyne').glob('*.bin'))) == n
    assert (root / 'poses' / '04.txt').is_file() and (seq / 'synthetic.yaml').is_file()
    calib = read_calib(seq / 'calib.txt')
    assert set(calib) == {'P0', 'P1', 'P2', 'P3', 'Tr'}
    np.testing.assert_array_equal(calib['P0'], calib['P2'])


def test_loader_reads_matching_frames_and_poses(generated):
    root, sim, summary = generated
    ds = KittiOdometry(root, '04')
    assert len(ds) == summary['frames']
    stamps = sim.stamps()['lidar'].stamps_ns[:len(ds)]
    np.testing.assert_allclose(ds.T_cam_lidar, sim.T_cam_lidar, atol=1e-11)
    np.testing.assert_allclose(ds.camera.K, sim.camera.K, atol=1e-9)
    assert ds.camera.size == sim.camera.size
    T_map_cam = sim.T_map_camera(stamps)
    for i in range(len(ds)):
        frame = ds[i]
        expected = inverse(T_map_cam[0]) @ T_map_cam[i]
        np.testing.assert_allclose(frame.T_world_cam, expected, atol=1e-9)
        np.testing.assert_allclose(ds.pose_lidar(i), inverse(T_map_cam[0]) @ sim.T_map_lidar(
            stamps[i]), atol=1e-9)
        assert frame.image.stamp_ns == pytest.approx(stamps[i] - stamps[0], abs=1000)
        cloud = sim.scan(int(stamps[i]), i)
        np.testing.assert_array_equal(frame.cloud.points, cloud.points)
        np.testing.assert_array_equal(frame.cloud.intensity, cloud.intensity)
        image, _ = sim.image(int(stamps[i]), i)
        np.testing.assert_array_equal(frame.image.image, image.image)
    assert ds.positions().shape == (len(ds), 3)


def test_loader_handles_real_kitti_stereo_offset(tmp_path):
    seq = tmp_path / 'sequences' / '00'
    (seq / 'image_2').mkdir(parents=True)
    K = np.array([[700.0, 0, 600], [0, 700, 180], [0, 0, 1]])
    P0 = np.hstack([K, np.zeros((3, 1))])
    P2 = np.hstack([K, K @ np.array([[0.06], [-0.001], [0.002]])])
    Tr = np.hstack([np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0.0]]), [[0.0], [-0.08], [-0.27]]])
    rows = [f'{k}: ' + ' '.join(map(str, m.ravel())) for k, m in
            (('P0', P0), ('P1', P0), ('P2', P2), ('P3', P2), ('Tr', Tr))]
    (seq / 'calib.txt').write_text('\n'.join(rows) + '\n')
    (seq / 'times.txt').write_text('0.0\n0.1\n')
    ds = KittiOdometry(tmp_path, '00')
    np.testing.assert_allclose(ds.T_cam_cam0[:3, 3], [0.06, -0.001, 0.002], atol=1e-12)
    np.testing.assert_allclose(ds.T_cam_lidar[:3, 3], Tr[:, 3] + [0.06, -0.001, 0.002])
    assert ds.poses_cam0 is None and ds.pose_cam(0) is None and len(ds) == 2


def test_same_seed_gives_byte_identical_sequence(generated, tmp_path):
    root, _, _ = generated
    sim = Simulator(load_synth_config(overrides=OVERRIDES), 11)
    write_kitti_sequence(sim, tmp_path, '04')
    assert tree_digest(tmp_path) == tree_digest(root)


def test_missing_sequence_is_reported(tmp_path):
    with pytest.raises(ValueError, match='no KITTI sequence'):
        KittiOdometry(tmp_path, '07')
