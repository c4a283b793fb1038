"""
Bring up registration, multiview synchronization and RViz.

Includes ``registration.launch.py`` (all its arguments pass through), starts
``multiview_sync_node`` (``multiview:=false`` to leave it out; parameters from
``multiview_params_file``, default ``config/multiview.yaml`` when the package has it) and RViz with
``config/i2p.rviz`` (``rviz:=false`` to leave it out).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    """Return the launch description of the full pipeline with RViz."""
    share = get_package_share_directory('i2p_registration')
    multiview_params = os.path.join(share, 'config', 'multiview.yaml')
    use_sim_time = {'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                   value_type=bool)}
    return LaunchDescription([
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock (bag replay)'),
        DeclareLaunchArgument('namespace', default_value='', description='nodes namespace'),
        DeclareLaunchArgument('points', default_value='points',
                              description='LiDAR scan topic for both nodes'),
        DeclareLaunchArgument('multiview', default_value='true',
                              description='start multiview_sync_node'),
        DeclareLaunchArgument('multiview_params_file', default_value=multiview_params,
                              description='parameters file of multiview_sync_node'),
        DeclareLaunchArgument('rviz', default_value='true', description='start RViz'),
        DeclareLaunchArgument('rviz_config',
                              default_value=os.path.join(share, 'config', 'i2p.rviz'),
                              description='RViz configuration'),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, 'launch',
                                                       'registration.launch.py')),
            launch_arguments={'use_sim_time': LaunchConfiguration('use_sim_time'),
                              'namespace': LaunchConfiguration('namespace'),
                              'points': LaunchConfiguration('points')}.items()),
        Node(package='i2p_registration', executable='multiview_node',
             name='multiview_sync_node', namespace=LaunchConfiguration('namespace'),
             output='screen', condition=IfCondition(LaunchConfiguration('multiview')),
             parameters=([multiview_params] if os.path.exists(multiview_params) else [])
             + [use_sim_time],
             remappings=[('points', LaunchConfiguration('points'))]),
        Node(package='rviz2', executable='rviz2', name='rviz2', output='screen',
             arguments=['-d', LaunchConfiguration('rviz_config')],
             parameters=[use_sim_time], condition=IfCondition(LaunchConfiguration('rviz'))),
    ])
