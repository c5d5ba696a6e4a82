"""launch_testing test of `ros2 launch policy_xai user_policy.launch.py`: the MuJoCo arm driven by a
user's model (an untrained robomimic_bc from its factory, allow_untrained:=true) through the shipped
config/user_policy_sim.yaml, acting and explaining in one user_policy_node, with the heatmap, from
the package's install over real DDS.

Run by test/test_launch.py with the `launch_test` command against a colcon install of the package.
Every process must exit with code 0 when launch stops it with SIGINT.
"""
import os
import sys
import unittest

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from launch_probe import Probe, check_installed_from, stamp_ns  # noqa: E402

NODES = ("sim_node", "user_policy_node", "visualization_node")
JOINTS = ["right_s0", "right_s1", "right_e0", "right_e1", "right_w0", "right_w1", "right_w2"]


@pytest.mark.launch_test
def generate_test_description():
    path = os.path.join(get_package_share_directory("policy_xai"), "launch", "user_policy.launch.py")
    args = {"model": "policy_xai.attribution.graph.models:robomimic_bc",
            "model_kwargs": '{"width": 8, "image_size": 64, "low_dim": {"joint_state": 14}, "tanh": false}',
            "allow_untrained": "true"}
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=args.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestUserPolicyGraph(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(["torques", "actions", "ratios", "relevance_image", "heatmap", "diagnostics"])

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()

    def test_nodes_run_from_the_install(self, proc_info):
        check_installed_from(self, proc_info, NODES)

    def test_the_users_model_drives_the_arm_and_is_explained(self):
        first = stamp_ns(self.probe.wait_for("torques", 1)[0])
        self.assertEqual(list(self.probe.wait_for("actions", 1)[-1].name), JOINTS)
        ratios = self.probe.wait_for("ratios", 3, pred=lambda m: stamp_ns(m) > first)
        for m in ratios:
            self.assertEqual(list(m.name), ["agentview_image", "joint_state/position", "joint_state/velocity"])
            self.assertAlmostEqual(sum(m.position), 1.0, places=4)
        last = stamp_ns(ratios[-1])
        self.assertTrue(self.probe.wait_for("torques", 1, timeout=10, pred=lambda m: stamp_ns(m) == last))
        rel = self.probe.wait_for("relevance_image", 1)[-1]
        self.assertEqual((rel.encoding, rel.width, rel.height), ("32FC1", 64, 64))
        heat = self.probe.wait_for("heatmap", 2)[-1]
        self.assertEqual(heat.encoding, "rgb8")

    def test_every_node_reports_on_diagnostics(self):
        for n in NODES:
            self.probe.wait_for_status(n, lambda level, msg, values: True, timeout=60)
        level, message, values = self.probe.wait_for_status(
            "user_policy_node", lambda level, msg, values: int(values.get("explained", "0")) > 0)
        self.assertEqual(values.get("action_mismatches"), "0", (level, message, values))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
