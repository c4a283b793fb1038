"""The package builds and installs with colcon exactly as it will in a ROS 2 workspace."""

import configparser
import filecmp
import os
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_PART_OF_THE_PACKAGE = ('.git', '.venv', 'build', 'install', 'log', 'out', '__pycache__',
                           '*.egg-info', '.pytest_cache')


@pytest.fixture(scope='module')
def colcon_install(tmp_path_factory):
    colcon = shutil.which('colcon', path=os.path.dirname(sys.executable) + os.pathsep
                          + os.environ.get('PATH', ''))
    if colcon is None:
        pytest.skip('colcon is not installed (make setup installs colcon-common-extensions)')
    workspace = tmp_path_factory.mktemp('colcon_ws')
    shutil.copytree(REPO_ROOT, workspace / 'src' / 'i2p_registration',
                    ignore=shutil.ignore_patterns(*NOT_PART_OF_THE_PACKAGE))
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    proc = subprocess.run([colcon, 'build', '--event-handlers', 'console_direct-'],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return workspace / 'install' / 'i2p_registration'


def _share(prefix):
    return prefix / 'share' / 'i2p_registration'


def test_package_xml_and_ament_index_marker_are_installed(colcon_install):
    assert filecmp.cmp(_share(colcon_install) / 'package.xml',
                       os.path.join(REPO_ROOT, 'package.xml'), shallow=False)
    marker = (colcon_install / 'share' / 'ament_index' / 'resource_index' / 'packages'
              / 'i2p_registration')
    assert marker.is_file()


def test_config_and_launch_files_are_installed(colcon_install):
    expected = []
    for root, _, files in os.walk(os.path.join(REPO_ROOT, 'config')):
        expected += [os.path.relpath(os.path.join(root, f), REPO_ROOT) for f in files]
    expected += [os.path.join('launch', f) for f in os.listdir(os.path.join(REPO_ROOT, 'launch'))
                 if f.endswith('.launch.py')]
    assert 'config/fastdds_localhost_large.xml' in expected
    for rel in expected:
        installed = _share(colcon_install) / rel
        assert installed.is_file(), f'{rel} is not installed under share/i2p_registration'
        assert filecmp.cmp(installed, os.path.join(REPO_ROOT, rel), shallow=False)


def test_console_scripts_land_where_ros2_run_looks(colcon_install):
    egg_info = next((colcon_install / 'lib').glob('python3*/site-packages/i2p_registration-*'))
    entry_points = configparser.ConfigParser()
    entry_points.read(egg_info / 'entry_points.txt')
    scripts = (list(entry_points['console_scripts'])
               if entry_points.has_section('console_scripts') else [])
    lib_dir = colcon_install / 'lib' / 'i2p_registration'
    for name in scripts:
        assert os.access(lib_dir / name, os.X_OK), f'{name} is not in {lib_dir}'


def test_installed_package_imports_from_the_install_prefix(colcon_install):
    site = next((colcon_install / 'lib').glob('python3*/site-packages'))
    probe = ('import i2p_registration.core.sensors as s, numpy as np; '
             'print(s.__file__); '
             'print(s.CameraModel(np.diag([500.0, 500.0, 1.0]), 640, 480).size)')
    env = dict(os.environ, PYTHONPATH=str(site))
    proc = subprocess.run([sys.executable, '-c', probe], cwd=str(site), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    location, size = proc.stdout.split()[:1] + [' '.join(proc.stdout.split()[1:])]
    assert location.startswith(str(site))
    assert size == '(640, 480)'
