"""launch_testing test of `ros2 launch policy_xai sim.launch.py`: the MuJoCo arm, the policy, the
attribution and the visualisation node from the package's install, over real DDS.

Run by test/test_launch.py (the README test run) with the `launch_test` command against a colcon
install of the package: `launch_test test/launch_testing/test_sim_launch.py` in a shell that sourced
that install's setup.bash. Every process must exit with code 0 when launch stops it with SIGINT.
"""
import math
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
from launch_probe import check_ratios_explain_decisions, Probe, check_installed_from  # noqa: E402

NODES = ("sim_node", "policy_node", "attribution_node", "visualization_node")


@pytest.mark.launch_test
def generate_test_description():
    path = os.path.join(get_package_share_directory("policy_xai"), "launch", "sim.launch.py")
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path)),
        launch_testing.actions.ReadyToTest(),
    ])


class TestSimGraph(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(["joint_states", "torques", "ratios", "relevance_image", "heatmap", "diagnostics"])

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()

    def test_nodes_run_from_the_install(self, proc_info):
        check_installed_from(self, proc_info, NODES)

    def test_torques_follow_the_simulated_arm(self):
        js = self.probe.wait_for("joint_states", 1)[0]
        tau = self.probe.wait_for("torques", 3)[-1]
        self.assertEqual(len(tau.name), 7)
        self.assertEqual(len(tau.effort), 7)
        self.assertTrue(set(tau.name) <= set(js.name), (tau.name, js.name))
        self.assertTrue(all(math.isfinite(x) for x in tau.effort))

    def test_ratios_sum_to_one_with_the_decision_stamp(self):
        check_ratios_explain_decisions(self, self.probe)

    def test_relevance_and_heatmap_images(self):
        rel = self.probe.wait_for("relevance_image", 1)[-1]
        self.assertEqual((rel.encoding, rel.width, rel.height), ("32FC1", 64, 64))
        heat = self.probe.wait_for("heatmap", 2)[-1]
        self.assertEqual(heat.encoding, "rgb8")
        self.assertGreaterEqual(heat.width, 64)
        self.assertEqual(len(heat.data), heat.step * heat.height)

    def test_the_shipped_trained_policy_is_the_default(self):
        """sim.launch.py without weights:= runs models/reach.safetensors (it ran untrained weights, whose
        image ratio is ~0.01), explained by the default occlusion_net with the installed explainer file
        (image ratio ~0.26 on reach: the image's share of the torque change, measured per torque)."""
        level, message, values = self.probe.wait_for_status(
            "policy_node", lambda level, msg, values: "untrained" in values)
        self.assertEqual(values["untrained"], "False", values)
        level, message, values = self.probe.wait_for_status(
            "attribution_node", lambda level, msg, values: "method" in values)
        self.assertEqual(values["method"], "occlusion_net", values)
        ratios = self.probe.wait_for("ratios", 10)
        image = [m.position[list(m.name).index("image")] for m in ratios[-10:]]
        self.assertGreater(sum(image) / len(image), 0.1, image)

    def test_every_node_reports_on_diagnostics(self):
        for n in NODES:
            self.probe.wait_for_status(n, lambda level, msg, values: True, timeout=60)
        level, message, values = self.probe.wait_for_status(
            "attribution_node", lambda level, msg, values: int(values.get("explained", "0")) > 0)
        self.assertEqual(values.get("torque_mismatches"), "0", (level, message, values))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
