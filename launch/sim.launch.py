"""MuJoCo arm + policy + attribution + visualisation (graph "sim" of policy_xai.ros.graph).

    ros2 launch policy_xai sim.launch.py [task:=reach|reach2d|peg|door] [method:=rap] [rviz:=true]
        [weights:=models/x.safetensors] [spec:=paper] [device:=cuda] [robot_state_publisher:=true]

By default the policy is the shipped trained policy of the task (models/<task>.safetensors); spec:=
without weights:= runs untrained weights of that spec.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _graph_launch import describe  # noqa: E402

from launch.actions import DeclareLaunchArgument  # noqa: E402
from launch.conditions import IfCondition  # noqa: E402
from launch.substitutions import LaunchConfiguration  # noqa: E402
from launch_ros.actions import Node  # noqa: E402


def generate_launch_description():
    from policy_xai.resources import share_path

    ld = describe("sim", [DeclareLaunchArgument("robot_state_publisher", default_value="false"),
                          DeclareLaunchArgument("task", default_value="",
                                                description="simulation task (default: config/sim.yaml's, reach); "
                                                            "the shipped policy of the task is loaded")])
    urdf = share_path("urdf", "baxter_right_arm.urdf").read_text()
    ld.add_action(Node(package="robot_state_publisher", executable="robot_state_publisher",
                       parameters=[{"robot_description": urdf}],
                       condition=IfCondition(LaunchConfiguration("robot_state_publisher"))))
    return ld
