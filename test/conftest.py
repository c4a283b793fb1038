"""
Test-session setup shared by every test.

Anything that starts ROS here must stay on this machine and not see other runs, so the ROS
environment is fixed once for the whole pytest session, before any test imports rclpy, and is
inherited by the node processes that tests start:

- ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: DDS discovery stays on this host;
- ``FASTDDS_DEFAULT_PROFILES_FILE``: the package's profile for large messages
  (``config/fastdds_localhost_large.xml``: 8 MB shared memory, UDP on 127.0.0.1);
- ``ROS_DOMAIN_ID``: one per run, so parallel runs do not talk to each other;
- ``ROS_LOG_DIR``: a temporary folder, removed at the end.
"""

import os
import random
import shutil
import tempfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASTDDS_PROFILE = os.path.join(REPO_ROOT, 'config', 'fastdds_localhost_large.xml')
REAL_DATA_DIR = os.path.abspath(os.path.join(REPO_ROOT, '..', 'shared', 'data', 'real'))

_LOG_DIR = tempfile.mkdtemp(prefix='i2p_test_roslog_')
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = FASTDDS_PROFILE
os.environ['ROS_LOG_DIR'] = _LOG_DIR
# Domain ids 1..100 (0 is everybody's default); drawn from the OS, not from a seeded generator.
os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 100))
os.environ.setdefault('HOME', _LOG_DIR)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_LOG_DIR, ignore_errors=True)


@pytest.fixture
def rclpy_context():
    """Give one test a fresh rclpy context, shut down afterwards."""
    rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (run make setup)')
    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def real_data_dir():
    """Return the folder of real camera + LiDAR samples; skip the test where it is absent."""
    if not os.path.isdir(REAL_DATA_DIR):
        pytest.skip(f'real sensor samples not found at {REAL_DATA_DIR}')
    return REAL_DATA_DIR
