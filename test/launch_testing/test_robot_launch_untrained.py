"""launch_testing test of `ros2 launch policy_xai robot.launch.py` WITHOUT weights:=, against the fake
Baxter: the policy node must refuse to start (an untrained network would drive a real arm with
arbitrary torques), exit non-zero with an error line that names `weights`, and no torque command may
reach the robot. The other processes (attribution and visualisation nodes, the fake robot) stop
cleanly with exit code 0. (`allow_untrained:=true` is the explicit opt-in for tests.)

Run by test/test_launch.py with the `launch_test` command against a colcon install of the package.
"""
import os
import re
import sys
import unittest

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
from launch_probe import Probe, error_lines, output_of  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    robot = ExecuteProcess(cmd=[sys.executable, os.path.join(HERE, "fake_baxter.py")], name="fake_baxter",
                           output="screen")
    path = os.path.join(get_package_share_directory("policy_xai"), "launch", "robot.launch.py")
    return LaunchDescription([
        robot,
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path)),
        launch_testing.actions.ReadyToTest(),
    ]), {"robot": robot}


class TestRobotGraphWithoutWeights(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(["commands"])

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()

    def test_policy_node_refuses_to_start(self, proc_info, proc_output):
        proc_info.assertWaitForShutdown(process="policy_node", timeout=90)
        text = output_of(proc_output, "policy_node")
        self.assertTrue(error_lines(text, "weights"), f"no error line naming 'weights' in:\n{text}")
        self.assertEqual(self.probe.get("commands"), [], "a torque command was sent")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        policy = [p for p in proc_info.processes() if "policy_node" in p.process_details["name"]]
        self.assertEqual(len(policy), 1)
        self.assertNotEqual(proc_info[policy[0]].returncode, 0, "the policy node ran without weights")
        for p in proc_info.processes():
            if p not in policy:
                launch_testing.asserts.assertExitCodes(proc_info, process=p)

    def test_no_command_reached_the_robot(self, proc_output, robot):
        text = output_of(proc_output, robot.process_details["name"])
        m = re.search(r"received (\d+) commands", text)
        self.assertIsNotNone(m, text)
        self.assertEqual(int(m.group(1)), 0, text)
