"""
The registration node with its real default method (``edge``) on a simulated frame pair.

Started as ``python -m i2p_registration.nodes.registration_node`` (what the console script runs)
with the prior parameters set 2.4 cm and 0.6 deg off the simulator's extrinsic; fed one
full-size pair of the synthetic world (1242x375 camera, about 125k-point scan 32 ms earlier),
republished 1 s later each round, through the large-message Fast DDS profile. Asserts the TF
frames and stamp, the estimate against the pair's ground truth (camera at the image stamp in the
LiDAR frame at the scan stamp) and a positive-definite pose covariance.
"""

import os
import subprocess
import sys

import pytest

pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')

from i2p_registration.core.geometry.rotations import geodesic_angle  # noqa: E402, I100
from i2p_registration.core.geometry.se3 import inverse, se3_exp  # noqa: E402
from i2p_registration.ros.conversions import (model_to_camera_info,  # noqa: E402
                                              numpy_to_cloud, numpy_to_image, stamp_to_ns,
                                              transform_to_matrix)
import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from test_registration_node import (Probe, read_log, REPO_ROOT, START_TIMEOUT_S,  # noqa: E402
                                    stop_node)

SEED = 3
PRIOR_OFFSET = se3_exp([0.02, -0.01, 0.015, 0.005, -0.008, 0.004])
# Bounds on the edge method's error on this pair from this prior: the refinement bounds of the
# registration-engine issue on real data (10 cm, 0.5 deg). Measured: 3.2 cm, 0.21 deg.
MAX_TRANSLATION_M = 0.10
MAX_ROTATION_DEG = 0.5
TF_TIMEOUT_S = 60.0


@pytest.fixture(scope='module')
def world():
    simulator = pytest.importorskip('i2p_registration.data.simulator')
    synth_config = pytest.importorskip('i2p_registration.data.synth_config')
    sim = simulator.Simulator(synth_config.SynthConfig(), SEED)
    stamps = sim.stamps(1.0)
    image, _ = sim.image(int(stamps['camera'].stamps_ns[0]), 0)
    cloud = sim.scan(int(stamps['lidar'].stamps_ns[0]), 0)
    T_pair = inverse(sim.T_map_camera(image.stamp_ns)) @ sim.T_map_lidar(cloud.stamp_ns)
    return sim.T_cam_lidar, T_pair, image, cloud


def _prior_parameters(T_cam_lidar):
    T_lidar_cam = inverse(PRIOR_OFFSET @ T_cam_lidar)
    rpy = Rotation.from_matrix(T_lidar_cam[:3, :3]).as_euler('xyz')
    values = list(T_lidar_cam[:3, 3]) + list(rpy)
    names = ('x', 'y', 'z', 'roll', 'pitch', 'yaw')
    return [f'prior.{n}:={float(v)!r}' for n, v in zip(names, values)]


def test_edge_method_from_a_nearby_prior(rclpy_context, tmp_path, world):
    T_cam_lidar, T_pair, image, cloud = world
    probe = Probe(rclpy_context)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO_ROOT, env.get('PYTHONPATH')]))
    args = [sys.executable, '-m', 'i2p_registration.nodes.registration_node', '--ros-args']
    for param in _prior_parameters(T_cam_lidar):
        args += ['-p', param]
    log = open(tmp_path / 'node_edge.log', 'w')
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                               cwd=REPO_ROOT)
    process.log = log
    image_stamps = []
    try:
        probe.wait_for(lambda: probe.diagnostics, 'the first diagnostics', process,
                       timeout=START_TIMEOUT_S, feed=False)

        def feed_once():
            shift = len(image_stamps) * 1_000_000_000
            image_stamps.append(image.stamp_ns + shift)
            probe.info_pub.publish(model_to_camera_info(image.camera, image_stamps[-1],
                                                        image.frame_id))
            probe.cloud_pub.publish(numpy_to_cloud(
                cloud.points, cloud.stamp_ns + shift, cloud.frame_id, cloud.intensity,
                cloud.ring, cloud.time))
            probe.spin(0.05)
            probe.image_pub.publish(numpy_to_image(image.image, image_stamps[-1],
                                                   image.frame_id))
            probe.spin(1.5)
            return bool(probe.tf)

        probe.wait_for(feed_once, 'TF from the edge method', process, timeout=TF_TIMEOUT_S,
                       feed=False)
        probe.spin(0.5)
    finally:
        assert stop_node(process) == 0, read_log(process)
        probe.close()
    transform = probe.tf[0].transforms[0]
    assert transform.header.frame_id == cloud.frame_id
    assert transform.child_frame_id == image.frame_id + '_registered'
    assert stamp_to_ns(transform.header.stamp) in image_stamps
    error = transform_to_matrix(transform) @ T_pair
    assert np.linalg.norm(error[:3, 3]) < MAX_TRANSLATION_M
    assert np.degrees(geodesic_angle(error[:3, :3], np.eye(3))) < MAX_ROTATION_DEG
    covariance = np.asarray(probe.poses[0].pose.covariance).reshape(6, 6)
    assert np.linalg.eigvalsh(covariance).min() > 0, 'pose covariance is not positive definite'
