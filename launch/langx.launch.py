"""Launch langx_node on a robot with a full ROS 2 install (launch and launch_ros).

    ros2 launch langx_ros langx.launch.py camera:=/camera/color params_file:=/path/to/langx.yaml

This file cannot run where ROS 2 comes from PyPI wheels (no launch/launch_ros there): use
`langx_node --ros-args --params-file config/langx.yaml -r image:=... ` instead (README).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("langx_ros"), "config", "langx.yaml")
    camera = LaunchConfiguration("camera")
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=default_params, description="langx_node parameter file"),
            DeclareLaunchArgument("camera", default_value="/camera", description="camera namespace (image, camera_info)"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of langx_node"),
            Node(
                package="langx_ros",
                executable="langx_node",
                name="langx_node",
                namespace=LaunchConfiguration("namespace"),
                parameters=[LaunchConfiguration("params_file")],
                remappings=[
                    ("image", PathJoinSubstitution([camera, "image_raw"])),
                    ("camera_info", PathJoinSubstitution([camera, "camera_info"])),
                ],
                output="screen",
            ),
        ]
    )
