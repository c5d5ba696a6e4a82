"""Policy + attribution + visualisation against a real Baxter-style arm (graph "robot",
parameters from config/baxter.yaml: joint names, limits, rates). Remap the robot's topics with
`--ros-args -r` or edit the graph's remappings in policy_xai/ros/graph.py.

    ros2 launch policy_xai robot.launch.py weights:=models/reach.safetensors [rviz:=true]

weights:= is required: without it the policy node refuses to start (a random network would command
the arm); allow_untrained:=true overrides that, for tests against a fake robot only.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _graph_launch import describe  # noqa: E402


def generate_launch_description():
    return describe("robot")
