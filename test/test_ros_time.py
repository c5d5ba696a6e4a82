"""Clocks that jump, with real processes: simulated time over short episodes and a bag played in a
loop (its stamps restart every pass). The policy node used to pair nothing after the first restart
and command zero torque for good; now it keeps acting and reports the jumps on /diagnostics. Also:
a malformed command zeroes the simulated arm's torque from the next step on."""
import subprocess
import sys
import time

import numpy as np

from policy_xai import bags
from policy_xai.ros.graph import graph
from policy_xai.ros.runner import GraphRunner, ros_env
from policy_xai.spec import load_spec

from ros_harness import Probe, fresh_domain

SPEC = load_spec("small")


def stamp(m):
    return m.header.stamp.sec * 10**9 + m.header.stamp.nanosec


def test_simulated_time_over_short_episodes(tmp_path):
    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("torques", "joint_states", "clock", "diagnostics")
    nodes = graph("sim", overrides={"sim_node": {"publish_clock": True, "episode_steps": 8}},
                  nodes=["sim_node", "policy_node"])
    runner = GraphRunner(nodes, domain_id=dom, log_dir=tmp_path)
    runner.start()
    try:
        probe.wait_for("torques", 1, timeout=60)
        probe.clear("torques", "joint_states")
        got = probe.wait_for("torques", 40, timeout=20)  # 40 steps = 5 episodes of 8
        js = probe.get("joint_states")
        # diagnostics come about once a second: wait for one published after the 3rd episode ended
        end = time.monotonic() + 5
        diag = probe.diagnostics("sim_node")
        while time.monotonic() < end and not (diag and int(diag[2].get("episodes_done", 0)) >= 3):
            time.sleep(0.1)
            diag = probe.diagnostics("sim_node")
    finally:
        runner.stop()
        probe.close()
    assert int(diag[2]["episodes_done"]) >= 3, diag
    stamps = [stamp(m) for m in js]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "the simulated clock never runs backwards"
    assert all(np.any(np.asarray(m.effort) != 0) for m in got[-10:]), "the policy keeps acting"
    assert all(runner[n].returncode == 0 for n in runner.procs), runner.report()


def test_policy_keeps_acting_on_a_looped_bag(tmp_path):
    bag = bags.write_synthetic_bag(tmp_path / "bag", SPEC, steps=10)  # 0.5 s per pass
    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("torques", "diagnostics")
    runner = GraphRunner(graph("explain", params_file="", overrides={"policy_node": {"allow_untrained": True}},
                               nodes=["policy_node"]), domain_id=dom, log_dir=tmp_path / "logs")
    runner.start()
    player = None
    try:
        end = time.monotonic() + 60
        while probe.diagnostics("policy_node") is None and time.monotonic() < end:
            time.sleep(0.2)
        player = subprocess.Popen([sys.executable, "-m", "policy_xai.cli", "play", str(bag), "--loop",
                                   "--domain-id", str(dom)], env=ros_env(dom), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT)
        got = probe.wait_for("torques", 35, timeout=30)  # > 3 passes of 10 steps
        probe.clear("diagnostics")
        diag = probe.wait_for("diagnostics", 1, timeout=5, pred=lambda m: any(
            s.name.endswith("/policy_node") and any(kv.key == "time_jumps_backward" and int(kv.value) >= 2
                                                     for kv in s.values) for s in m.status))
    finally:
        if player is not None:
            player.terminate()
            player.wait(10)
        runner.stop()
        probe.close()
    stamps = [stamp(m) for m in got]
    assert sum(b < a for a, b in zip(stamps, stamps[1:])) >= 2, "the bag's stamps restarted at least twice"
    assert diag


def test_malformed_command_zeroes_the_torque_at_once(tmp_path):
    from policy_xai.ros import convert as cv

    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("joint_states", "diagnostics")
    pub = probe.publisher("commands")
    runner = GraphRunner(graph("sim", nodes=["sim_node"], overrides={"sim_node": {"command_timeout": 5.0}}),
                         domain_id=dom, log_dir=tmp_path)
    runner.start()
    try:
        probe.wait_for("joint_states", 1, timeout=60)
        for _ in range(10):
            pub.publish(cv.float_array_msg(np.full(7, 3.0)))
            time.sleep(0.05)
        probe.wait_for("joint_states", 1, timeout=5, pred=lambda m: len(m.effort) and np.any(np.asarray(m.effort) != 0))
        pub.publish(cv.float_array_msg(np.full(3, 3.0)))  # wrong joint count
        t = time.time_ns()
        probe.clear("joint_states")
        # wait until at least three states stamped later than two control steps after it arrived
        probe.wait_for("joint_states", 3, timeout=5, pred=lambda m: stamp(m) > t + 150_000_000)
        got = probe.get("joint_states")
    finally:
        runner.stop()
        probe.close()
    # within two control steps (0.1 s) of the malformed command, well before command_timeout (5 s)
    late = [m for m in got if stamp(m) > t + 150_000_000]
    assert late and all(np.all(np.asarray(m.effort) == 0) for m in late), [list(m.effort) for m in got]
