"""Policy + attribution + visualisation against a real Baxter-style arm (graph "robot",
parameters from config/baxter.yaml: joint names, limits, rates). The robot's topics (camera image,
joint states, torque commands: the topics with the ROBOT role in policy_xai/topics.py) are renamed in
every node with image_topic:=, joint_states_topic:= and commands_topic:=.

    ros2 launch policy_xai robot.launch.py weights:=models/reach.safetensors [rviz:=true]
        [image_topic:=/cameras/right_hand_camera/image] [joint_states_topic:=/robot/joint_states]

weights:= is required: without it the policy node refuses to start (a random network would command
the arm); allow_untrained:=true overrides that, for tests against a fake robot only.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _graph_launch import describe  # noqa: E402


def generate_launch_description():
    return describe("robot")
