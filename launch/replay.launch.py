"""Attribution + visualisation over the policy's decision topics played from a bag, with
`ros2 bag play BAG` or (no ROS install) `policy-xai play BAG`.

    ros2 launch policy_xai replay.launch.py weights:=models/reach.safetensors method:=dtd
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from _graph_launch import describe  # noqa: E402


def generate_launch_description():
    return describe("replay")
