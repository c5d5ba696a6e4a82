"""launch_testing test of `ros2 launch policy_xai replay.launch.py weights:=models/reach.safetensors
[graph:=explain]` with a bag played into it, for both of its graphs:

- graph:=replay (default): a recording of the policy's decisions (/policy_xai/observation/{image,config},
  /policy_xai/torques; replay_bags.decision_bag) is explained again by the attribution and
  visualisation nodes, which must reproduce the recorded torques;
- graph:=explain: a robot recording (camera image + /joint_states; policy_xai.bags.write_synthetic_bag)
  goes through the policy node as well.

The bag is played by play_when_ready.py (the project's play_into: it starts publishing once the nodes
are up and matched; before that, it waits until this test's probe and the nodes' publishers have
matched each other) as a process of the same launch. Every process must exit
with code 0. Run by test/test_launch.py with the `launch_test` command against a colcon install.
"""
import os
import sys
import tempfile
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
import launch_probe  # noqa: E402
import replay_bags  # noqa: E402
from launch_probe import Probe, stamp_ns  # noqa: E402
from policy_xai.ros.interfaces import topic_name  # noqa: E402

REPO = Path(HERE).parents[1]
WEIGHTS = str(REPO / "models" / "reach.safetensors")
STEPS = 40
OUTPUTS = ("ratios", "relevance_image", "heatmap")  # what the probe must get from the first step on
GRAPH_NODES = {"replay": ["attribution_node", "visualization_node"],
               "explain": ["policy_node", "attribution_node", "visualization_node"]}


@pytest.mark.launch_test
@launch_testing.parametrize("graph", ["replay", "explain"])
def generate_test_description(graph):
    tmp = tempfile.mkdtemp(prefix=f"replay_{graph}_", dir=os.environ.get("POLICY_XAI_LAUNCH_TMP") or None)
    make = replay_bags.decision_bag if graph == "replay" else replay_bags.robot_bag
    bag, stamps = make(os.path.join(tmp, "bag"), WEIGHTS, STEPS)
    player = ExecuteProcess(cmd=[sys.executable, os.path.join(HERE, "play_when_ready.py"), str(bag), "--graph", graph,
                                 "--nodes", *GRAPH_NODES[graph], "--go", launch_probe.GO_TOPIC,
                                 "--listener", launch_probe.NAME,
                                 "--outputs", *(topic_name(k) for k in OUTPUTS)],
                            name="play_when_ready", output="screen")
    path = os.path.join(get_package_share_directory("policy_xai"), "launch", "replay.launch.py")
    args = {"weights": WEIGHTS, "graph": graph}
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=args.items()),
        player,
        launch_testing.actions.ReadyToTest(),
    ]), {"player": player, "stamps": stamps}


class TestReplay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.probe = Probe(["torques", *OUTPUTS, "diagnostics"])

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()

    def test_bag_explained(self, proc_info, player, stamps, graph):
        self.probe.wait_matched(OUTPUTS)
        self.probe.go()  # the player starts now
        proc_info.assertWaitForShutdown(process=player, timeout=180)
        launch_probe.check_installed_from(self, proc_info)
        names = " ".join(p.process_details["name"] for p in proc_info.processes() if p.process_details)
        self.assertEqual("policy_node" in names, graph == "explain", names)
        recorded = set(stamps)
        try:
            ratios = self.probe.wait_for("ratios", STEPS // 2, timeout=30, pred=lambda m: stamp_ns(m) in recorded)
        except AssertionError as e:
            got = sorted(stamps.index(stamp_ns(m)) for m in self.probe.get("ratios") if stamp_ns(m) in recorded)
            raise AssertionError(f"{e}; steps explained: {got}; publishers matched: {self.probe.matched()}; "
                                 f"attribution_node: {self.probe.status('attribution_node')}") from None
        for msg in ratios:
            self.assertEqual(msg.name[0], "image")
            self.assertAlmostEqual(sum(msg.position), 1.0, places=4)
        self.assertTrue({stamp_ns(m) for m in self.probe.get("ratios")} <= recorded)
        rel = self.probe.wait_for("relevance_image", 1, pred=lambda m: stamp_ns(m) in recorded)[-1]
        self.assertEqual((rel.encoding, rel.width, rel.height), ("32FC1", 64, 64))
        heat = self.probe.wait_for("heatmap", 2, timeout=30, pred=lambda m: stamp_ns(m) in recorded)[-1]
        self.assertEqual(heat.encoding, "rgb8")
        self.assertGreaterEqual(heat.width, 64)
        # replay: the player's recorded decisions; explain: the policy node acting on the recorded observations
        self.probe.wait_for("torques", STEPS // 2, timeout=30, pred=lambda m: stamp_ns(m) in recorded)
        _, message, values = self.probe.wait_for_status(
            "attribution_node", lambda level, msg, v: int(v.get("explained", "0")) >= STEPS // 2, timeout=30)
        self.assertEqual(values.get("torque_mismatches"), "0", (message, values))
        self.probe.wait_for_status("visualization_node", lambda level, msg, v: int(v.get("heatmaps", "0")) > 0,
                                   timeout=30)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
