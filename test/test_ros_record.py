"""The simulated graph (MuJoCo sim_node included) recorded by the raw recorder to MCAP, read back with
rosbags and rclpy, and replayed by the bag player into a fresh attribution node."""
import signal
import time

import pytest

from policy_xai.ros import interfaces as itf
from policy_xai.ros.graph import NodeLaunch, graph
from policy_xai.ros.runner import GraphRunner

from ros_harness import Probe, fresh_domain

DECISION_TOPICS = ["/policy_xai/observation/image", "/policy_xai/observation/config", "/policy_xai/torques"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("rec")
    bag = base / "bag"
    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("heatmap", "joint_states", "diagnostics")
    rec = NodeLaunch("recorder", itf.NODES["recorder"].module, "policy_xai_recorder", None, {"output": str(bag)})
    runner = GraphRunner([rec, *graph("sim", overrides={"sim_node": {"episode_steps": 30}})], domain_id=dom,
                         log_dir=base / "logs")
    runner.start(["recorder"])
    runner.start(["sim_node", "policy_node", "attribution_node", "visualization_node"])
    try:
        probe.wait_for("heatmap", 3, timeout=90)
        time.sleep(3.0)
        assert not runner.dead(), runner.report()
    finally:
        runner.stop(["sim_node", "policy_node", "attribution_node", "visualization_node"])
        runner["recorder"].stop(sig=signal.SIGTERM)  # SIGTERM must close the bag too
        probe.close()
    return bag, runner, probe


def test_sim_node_publishes_the_arm(recorded):
    bag, runner, probe = recorded
    js = probe.get("joint_states")
    assert len(js) > 20
    assert list(js[-1].name)[:2] == ["right_s0", "right_s1"] and len(js[-1].velocity) == 7
    diag = [probe.diagnostics("sim_node")]
    assert diag[0] is not None and diag[0][2]["task"] == "reach"


def test_bag_reads_back_with_rosbags(recorded):
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader

    bag, runner, _ = recorded
    assert (bag / "metadata.yaml").is_file() and list(bag.glob("*.mcap"))
    assert "closed" in runner["recorder"].tail(3)
    with AnyReader([bag]) as r:
        topics = {c.topic: c for c in r.connections}
        for t in ["/camera/image_raw", "/joint_states", "/effort_controller/commands", "/policy_xai/relevance/image",
                  "/policy_xai/relevance/ratios", "/policy_xai/heatmap", "/diagnostics", *DECISION_TOPICS]:
            assert t in topics and topics[t].msgcount > 0, t
        torque_stamps, ratio_stamps = set(), []
        wanted = [topics["/policy_xai/torques"], topics["/policy_xai/relevance/ratios"]]
        for conn, t, raw in r.messages(connections=wanted):
            m = r.deserialize(raw, conn.msgtype)
            stamp = (m.header.stamp.sec, m.header.stamp.nanosec)
            if conn.topic == "/policy_xai/torques":
                torque_stamps.add(stamp)
            else:
                ratio_stamps.append(stamp)
                assert abs(sum(m.position) - 1.0) < 1e-5
        # (the recorder discovers topics one by one: compare from the first recorded decision on)
        ratio_stamps = [s for s in ratio_stamps if s >= min(torque_stamps)]
        assert ratio_stamps and all(s in torque_stamps for s in ratio_stamps)
        # the raw bytes are exact CDR: rclpy deserialises them too
        cls = itf.message_class("sensor_msgs/msg/Image")
        conn, t, raw = next(r.messages(connections=[topics["/camera/image_raw"]]))
        img = deserialize_message(bytes(raw), cls)
        assert (img.encoding, img.height, img.width) == ("rgb8", 64, 64)
        assert abs(t - (img.header.stamp.sec * 10**9 + img.header.stamp.nanosec)) < 5 * 10**9  # receive time


def test_player_replays_decisions_into_attribution(recorded, tmp_path):
    from policy_xai.ros.player import BagPlayer

    bag, _, _ = recorded
    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("ratios", "relevance_image")
    runner = GraphRunner(graph("replay", nodes=["attribution_node"]), domain_id=dom, log_dir=tmp_path)
    runner.start()
    player = BagPlayer(bag, topics=DECISION_TOPICS, rate=2.0)
    try:
        with pytest.raises(ValueError, match="not in the bag"):
            BagPlayer(bag, topics=["/nope"])
        deadline = time.time() + 60
        while not probe.get("ratios") and time.time() < deadline:  # replay until the node is up
            player.play(probe.node, should_stop=lambda: bool(probe.get("ratios")) or time.time() > deadline,
                        wait_for_subscribers=0.5)
        got = probe.wait_for("ratios", 1, timeout=5)
        assert player.published > 0
        with AnyStamps(bag) as stamps:
            assert all((m.header.stamp.sec, m.header.stamp.nanosec) in stamps for m in got)
    finally:
        player.close()
        runner.stop()
        probe.close()


class AnyStamps:
    """Stamps of the recorded torques."""

    def __init__(self, bag):
        from rosbags.highlevel import AnyReader

        self.reader = AnyReader([bag])

    def __enter__(self):
        self.reader.open()
        conns = [c for c in self.reader.connections if c.topic == "/policy_xai/torques"]
        out = set()
        for conn, _, raw in self.reader.messages(connections=conns):
            m = self.reader.deserialize(raw, conn.msgtype)
            out.add((m.header.stamp.sec, m.header.stamp.nanosec))
        return out

    def __exit__(self, *exc):
        self.reader.close()


def test_run_keeps_the_graph_going_when_a_node_dies_and_says_so(tmp_path, capsys):
    """`policy-xai run`: the visualisation node is killed (SIGKILL) mid-run. The other nodes keep
    running and recording, the summary is written and names the dead node, its exit code and its last
    log lines, and the command ends with a non-zero exit code."""
    import json
    import os
    import threading

    from policy_xai.cli import build_parser
    from policy_xai.ros import bagtools

    out = tmp_path / "run"
    dom = 200 + (os.getpid() % 15) * 2  # (this helper's DDS tests use domains 200-230)
    args = build_parser().parse_args(["run", "--duration", "8", "--out", str(out), "--domain-id", str(dom),
                                      "--no-video"])
    killed = {}

    def on_up(runner):
        def kill():
            killed["t"] = time.time_ns()
            runner["visualization_node"].kill()

        threading.Timer(2.0, kill).start()

    args.on_up = on_up
    rc = args.func(args)
    err = capsys.readouterr().err
    assert rc == 1 and "error: visualization_node exited during the run with code -9 (SIGKILL)" in err
    s = json.loads((out / "summary.json").read_text())
    (dead,) = s["dead_nodes"]
    assert dead["node"] == "visualization_node" and dead["exit_code"] == -9 and dead["signal"] == "SIGKILL"
    assert dead["phase"] == "the run" and dead["last_log_lines"] and dead["log"].endswith("visualization_node.log")
    assert s["ran_s"] >= 7.5  # the run went on to its end
    assert all(s["exit_codes"][n] == 0 for n in ("recorder", "sim_node", "policy_node", "attribution_node")), s
    run = bagtools.read_run(out / "bag")
    t_kill = killed["t"]
    late_relevance = [t for t in run["times"]["/policy_xai/relevance/image"] if t > t_kill + 2e9]
    late_heatmaps = [t for t in run["times"]["/policy_xai/heatmap"] if t > t_kill + 1e9]
    assert len(late_relevance) > 20 and not late_heatmaps  # explained on (>= 1 s of it at 20 Hz), no more heatmaps
    assert (out / "ratios.png").is_file()
