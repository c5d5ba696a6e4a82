"""launch_testing test of `ros2 launch policy_xai robot.launch.py weights:=models/reach.safetensors`
against a fake Baxter (fake_baxter.py: /joint_states with every joint of the robot, a 160x120 rgb8
camera image; config/baxter.yaml resizes it to the policy input): the policy drives the right arm,
the torques come back on /effort_controller/commands within config/baxter.yaml's torque limits, and
the attribution and visualisation nodes explain the decisions. The fake Baxter publishes under a real
Baxter's names (/robot/joint_states, /cameras/right_hand_camera/image): the launch file's
joint_states_topic:= and image_topic:= arguments (the topics with the ROBOT role) rename them in
every node.

Run by test/test_launch.py with the `launch_test` command against a colcon install of the package.
Every process must exit with code 0 when launch stops it with SIGINT.
"""
import math
import os
import re
import sys
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fake_baxter import RIGHT_ARM  # noqa: E402
from launch_probe import check_ratios_explain_decisions, Probe, check_installed_from, output_of  # noqa: E402

REPO = Path(HERE).parents[1]
WEIGHTS = str(REPO / "models" / "reach.safetensors")
LIMITS = [20.0, 20.0, 20.0, 20.0, 8.0, 8.0, 8.0]  # config/baxter.yaml torque_limits
CAMERA = (160, 120)
# a real Baxter's topic names, given to the launch file as <key>_topic:= (policy_xai.ros.graph.topic_arguments)
ROBOT_TOPICS = {"joint_states_topic": "/robot/joint_states", "image_topic": "/cameras/right_hand_camera/image"}


@pytest.mark.launch_test
def generate_test_description():
    robot = ExecuteProcess(cmd=[sys.executable, os.path.join(HERE, "fake_baxter.py"), "--width", str(CAMERA[0]),
                                "--height", str(CAMERA[1]), "--joint-topic", ROBOT_TOPICS["joint_states_topic"],
                                "--image-topic", ROBOT_TOPICS["image_topic"]], name="fake_baxter", output="screen")
    path = os.path.join(get_package_share_directory("policy_xai"), "launch", "robot.launch.py")
    return LaunchDescription([
        robot,
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                 launch_arguments={"weights": WEIGHTS, **ROBOT_TOPICS}.items()),
        launch_testing.actions.ReadyToTest(),
    ]), {"robot": robot}


class TestRobotGraph(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(["commands", "obs_image", "obs_config", "torques", "ratios", "relevance_image",
                           "heatmap", "markers", "diagnostics"])

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()

    def test_nodes_run_from_the_install(self, proc_info):
        check_installed_from(self, proc_info)

    def test_policy_drives_the_right_arm_within_the_limits(self):
        cmds = self.probe.wait_for("commands", 5, pred=lambda m: any(x != 0.0 for x in m.data))
        for m in cmds:
            self.assertEqual(len(m.data), 7)
            for x, lim in zip(m.data, LIMITS):
                self.assertTrue(math.isfinite(x) and abs(x) <= lim + 1e-9, (list(m.data), LIMITS))
        tau = self.probe.wait_for("torques", 3)[-1]
        self.assertEqual(list(tau.name), RIGHT_ARM)
        for x, lim in zip(tau.effort, LIMITS):
            self.assertLessEqual(abs(x), lim + 1e-9)

    def test_the_camera_image_is_resized_to_the_policy_input(self):
        obs = self.probe.wait_for("obs_image", 1)[-1]
        self.assertEqual((obs.encoding, obs.width, obs.height), ("rgb8", 64, 64))
        cfg = self.probe.wait_for("obs_config", 1)[-1]
        self.assertEqual(list(cfg.name[:7]), [f"joint_position/{n}" for n in RIGHT_ARM])

    def test_decisions_are_explained(self):
        check_ratios_explain_decisions(self, self.probe)
        rel = self.probe.wait_for("relevance_image", 1)[-1]
        self.assertEqual((rel.encoding, rel.width, rel.height), ("32FC1", 64, 64))

    def test_heatmap_and_markers_for_rviz(self):
        heat = self.probe.wait_for("heatmap", 2)[-1]
        self.assertEqual((heat.encoding, heat.width, heat.height), ("rgb8", 128, 128))  # heatmap_scale: 2
        markers = self.probe.wait_for("markers", 1)[-1]
        self.assertGreaterEqual(len(markers.markers), 7)

    def test_diagnostics(self):
        _, message, values = self.probe.wait_for_status(
            "policy_node", lambda level, msg, v: level == 0 and int(v.get("decisions", "0")) > 0)
        self.assertEqual(values.get("spec"), "small")
        _, message, values = self.probe.wait_for_status(
            "attribution_node", lambda level, msg, v: int(v.get("explained", "0")) > 0)
        self.assertEqual(values.get("torque_mismatches"), "0", (message, values))
        self.probe.wait_for_status("visualization_node", lambda level, msg, v: int(v.get("heatmaps", "0")) > 0)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)

    def test_the_fake_robot_received_the_commands(self, proc_output, robot):
        text = output_of(proc_output, robot.process_details["name"])
        m = re.search(r"received (\d+) commands \((\d+) malformed", text)
        self.assertIsNotNone(m, text)
        self.assertGreater(int(m.group(1)), 0, text)
        self.assertEqual(int(m.group(2)), 0, text)
