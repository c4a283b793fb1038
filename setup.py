"""ament_python build of i2p_registration (also a plain pip-installable package)."""

from glob import glob
import os

from setuptools import find_packages, setup

package_name = 'i2p_registration'


def data_files_under(folder):
    """List (install dir, files) pairs for every file below `folder`, keeping sub-folders."""
    pairs = []
    for root, _, files in os.walk(folder):
        if files:
            pairs.append((os.path.join('share', package_name, root),
                          [os.path.join(root, f) for f in sorted(files)]))
    return pairs


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
        ('share/' + package_name + '/launch', glob('launch/*.launch.py')),
        *data_files_under('config'),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='i2p_registration developers',
    maintainer_email='i2p-registration@example.com',
    description=('Online camera-to-LiDAR localization and multiview LiDAR pose-graph '
                 'synchronization.'),
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'i2p-demo = i2p_registration.tools.demo:main',
            'i2p-eval = i2p_registration.training.evaluate:main',
            'i2p-export = i2p_registration.training.export:main',
            'i2p-play = i2p_registration.tools.play:main',
            'i2p-replay = i2p_registration.tools.replay:main',
            'i2p-synth = i2p_registration.tools.synth:main',
            'i2p-train = i2p_registration.training.train:main',
            'multiview_node = i2p_registration.nodes.multiview_node:main',
            'registration_node = i2p_registration.nodes.registration_node:main',
        ],
    },
)
