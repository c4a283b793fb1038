"""
Publisher process of ``test_two_process_transport.py``; also the shared seeded test data.

Run as a script it publishes one seeded PointCloud2 on ``/transport_test/cloud`` and one seeded
rgb8 Image on ``/transport_test/image`` (reliable QoS) every 0.2 s until it is stopped, for at
most ``--duration`` seconds. The test imports :func:`make_test_data` to check what it receives.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

CLOUD_TOPIC = '/transport_test/cloud'
IMAGE_TOPIC = '/transport_test/image'
N_POINTS = 120_000
IMAGE_SIZE = (1200, 1920)  # rows, columns
STAMP_NS = 1_700_000_000_000_000_000


def make_test_data(seed: int) -> dict:
    """
    Generate the seeded cloud fields and image that the publisher sends.

    :return: ``points`` (N, 3) float32, ``intensity`` (N,) float32, ``ring`` (N,) uint16,
        ``time`` (N,) float32 seconds, ``rgb`` (1200, 1920, 3) uint8.
    """
    rng = np.random.default_rng(seed)
    return {
        'points': (rng.standard_normal((N_POINTS, 3)) * 30).astype(np.float32),
        'intensity': rng.random(N_POINTS, dtype=np.float32) * 255,
        'ring': rng.integers(0, 128, N_POINTS).astype(np.uint16),
        'time': rng.random(N_POINTS, dtype=np.float32) * 0.1,
        'rgb': rng.integers(0, 256, (*IMAGE_SIZE, 3), dtype=np.uint8),
    }


def main() -> None:
    """Publish the seeded cloud and image until stopped or ``--duration`` has passed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--seed', type=int, required=True)
    parser.add_argument('--duration', type=float, default=60.0)
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    from i2p_registration.ros.conversions import numpy_to_cloud, numpy_to_image

    data = make_test_data(args.seed)
    cloud = numpy_to_cloud(data['points'], STAMP_NS, 'lidar', intensity=data['intensity'],
                           ring=data['ring'], time=data['time'])
    image = numpy_to_image(data['rgb'], STAMP_NS, 'camera_optical')
    rclpy.init()
    node = rclpy.create_node('transport_test_publisher')
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE)
    cloud_pub = node.create_publisher(PointCloud2, CLOUD_TOPIC, qos)
    image_pub = node.create_publisher(Image, IMAGE_TOPIC, qos)
    print('publishing', flush=True)
    deadline = time.monotonic() + args.duration
    try:
        while time.monotonic() < deadline:
            cloud_pub.publish(cloud)
            image_pub.publish(image)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
