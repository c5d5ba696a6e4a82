"""Explanations of a bag played with `ros2 bag play BAG` or (no ROS install) `policy-xai play BAG`.

graph:=replay (default): attribution + visualisation over the policy's decision topics
(/policy_xai/observation/*, /policy_xai/torques) recorded from the live pipeline.
graph:=explain: policy + attribution + visualisation over a robot recording that has only the camera
image and /joint_states (play it without its /effort_controller/commands topic).

    ros2 launch policy_xai replay.launch.py weights:=models/reach.safetensors method:=dtd [graph:=explain]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _graph_launch import describe  # noqa: E402

from launch.actions import DeclareLaunchArgument  # noqa: E402


def generate_launch_description():
    return describe(None, [DeclareLaunchArgument(
        "graph", default_value="replay", description="replay (decision topics) or explain (camera + joint states)")])
