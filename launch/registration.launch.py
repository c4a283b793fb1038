"""
Start the camera-to-LiDAR registration node.

Arguments: ``params_file`` (default: the package's ``config/registration.yaml``), ``namespace``,
``use_sim_time`` (true for bag replay with /clock), the input topics ``image``, ``camera_info``,
``points`` (remapped onto the node's ``image_raw``, ``camera_info`` and ``points``), and
``fastdds_profile``: a Fast DDS XML profile to export as ``FASTDDS_DEFAULT_PROFILES_FILE``
(empty: keep the environment; the package's ``config/fastdds_localhost_large.xml`` is needed for
clouds above about 512 KB on one machine, see the README).

Example (one line)::

    ros2 launch i2p_registration registration.launch.py use_sim_time:=true
        image:=/camera/image_raw camera_info:=/camera/camera_info points:=/velodyne_points
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    """Return the launch description of the registration node."""
    share = get_package_share_directory('i2p_registration')
    arguments = [
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'registration.yaml'),
                              description='parameters file of i2p_registration_node'),
        DeclareLaunchArgument('namespace', default_value='', description='node namespace'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (bag replay)'),
        DeclareLaunchArgument('image', default_value='image_raw',
                              description='camera image topic (sensor_msgs/Image)'),
        DeclareLaunchArgument('camera_info', default_value='camera_info',
                              description='camera calibration topic'),
        DeclareLaunchArgument('points', default_value='points',
                              description='LiDAR scan topic (sensor_msgs/PointCloud2)'),
        DeclareLaunchArgument('fastdds_profile', default_value='',
                              description='Fast DDS profile XML to export; empty: unchanged'),
    ]
    profile = LaunchConfiguration('fastdds_profile')
    node = Node(
        package='i2p_registration', executable='registration_node',
        name='i2p_registration_node', namespace=LaunchConfiguration('namespace'),
        output='screen', emulate_tty=True,
        parameters=[LaunchConfiguration('params_file'),
                    {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                    value_type=bool)}],
        remappings=[('image_raw', LaunchConfiguration('image')),
                    ('image_raw/compressed',
                     [LaunchConfiguration('image'), '/compressed']),
                    ('camera_info', LaunchConfiguration('camera_info')),
                    ('points', LaunchConfiguration('points'))])
    return LaunchDescription(arguments + [
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', profile,
                               condition=IfCondition(PythonExpression(["'", profile, "' != ''"]))),
        node,
    ])
