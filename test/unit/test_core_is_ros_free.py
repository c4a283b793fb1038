"""`i2p_registration.core` must import and work on a machine without any ROS package."""

import subprocess
import sys
import textwrap

BLOCK_ROS_AND_IMPORT_CORE = textwrap.dedent("""
    import importlib
    import importlib.abc
    import pkgutil
    import sys

    class BlockRos(importlib.abc.MetaPathFinder):
        blocked = []

        def find_spec(self, name, path=None, target=None):
            top = name.split('.')[0]
            if top in ('rclpy', 'rosidl_runtime_py', 'tf2_ros', 'cv_bridge') \\
                    or top.endswith('_msgs') or top.endswith('_srvs'):
                self.blocked.append(name)
                raise ImportError(f'{name} is blocked: core must not import ROS')
            return None

    finder = BlockRos()
    sys.meta_path.insert(0, finder)
    import i2p_registration.core as core
    names = [m.name for m in pkgutil.walk_packages(core.__path__, 'i2p_registration.core.')]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules
                    if m.split('.')[0] == 'rclpy' or m.split('.')[0].endswith('_msgs'))
    print(' '.join(names), '|', 'blocked:', finder.blocked, 'leaked:', leaked)
""")


def test_core_imports_with_every_ros_module_blocked():
    proc = subprocess.run([sys.executable, '-c', BLOCK_ROS_AND_IMPORT_CORE],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names, _, rest = proc.stdout.strip().partition(' | ')
    assert 'i2p_registration.core.sensors' in names.split(), proc.stdout
    assert rest == 'blocked: [] leaked: []', proc.stdout


def test_the_blocker_catches_a_ros_import():
    probe = BLOCK_ROS_AND_IMPORT_CORE + '\nimport sensor_msgs.msg\n'
    proc = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert 'is blocked: core must not import ROS' in proc.stderr
