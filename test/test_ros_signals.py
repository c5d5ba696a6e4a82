"""Every node stops cleanly on Ctrl-C as a terminal and `ros2 launch` deliver it (two SIGINTs), on
one SIGINT and on SIGTERM: exit code 0, no traceback. Bad start-up parameters stop a node with one
line naming the parameter and exit code 1; the policy node refuses untrained weights unless asked."""
import signal
import subprocess
import sys
import time

import pytest

from policy_xai.resources import config_path
from policy_xai.ros.graph import graph
from policy_xai.ros.runner import ros_env

from ros_harness import Probe, fresh_domain

ALLOW = {"policy_node": {"allow_untrained": True}}


def start(name, dom, tmp_path, extra=(), params_file=""):
    n = [x for x in graph("sim", params_file=params_file, overrides=ALLOW) if x.name == name][0]
    log = open(tmp_path / f"{name}.log", "wb")
    cmd = [sys.executable, "-m", "policy_xai.ros.entry", name, *n.ros_args(), *extra]
    env = dict(ros_env(dom), PYTHONFAULTHANDLER="1")  # SIGABRT dumps every thread's stack (a hung stop)
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_all(procs, timeout):
    """name -> exit code; a process still running after `timeout` s gets SIGABRT (its Python stacks go to
    its log) and then SIGKILL, and its code is None."""
    end = time.monotonic() + timeout
    codes = {}
    for n, p in procs.items():
        try:
            codes[n] = p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
            codes[n] = None
    return codes


def wait_running(probe, name, proc, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"{name} exited early with {proc.returncode}"
        if probe.diagnostics(name) is not None:
            return
        time.sleep(0.1)
    raise AssertionError(f"no /diagnostics from {name} within {timeout} s")


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGINT,), (signal.SIGTERM,),
                                     (signal.SIGINT, signal.SIGINT, signal.SIGTERM)],
                         ids=["ctrl-c-under-launch", "sigint", "sigterm", "sigint-sigint-sigterm"])
def test_every_node_stops_cleanly(signals, tmp_path):
    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("diagnostics")
    names = ["sim_node", "policy_node", "attribution_node", "visualization_node"]
    procs = {n: start(n, dom, tmp_path) for n in names}
    try:
        for n, p in procs.items():
            wait_running(probe, n, p)
        for s in signals:  # a terminal's Ctrl-C to the process group, then launch's own signal
            for p in procs.values():
                p.send_signal(s)
            time.sleep(0.05)
        codes = wait_all(procs, 30)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        probe.close()
    logs = {n: (tmp_path / f"{n}.log").read_text(errors="replace") for n in names}
    assert codes == {n: 0 for n in names}, logs
    for n, text in logs.items():
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, f"{n}:\n{text}"


def test_signal_during_start_up_exits_cleanly(tmp_path):
    """Ctrl-C while torch / MuJoCo are still importing: exit code 0 and no traceback either."""
    dom = fresh_domain()
    p = start("attribution_node", dom, tmp_path)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    assert p.wait(60) == 0
    text = (tmp_path / "attribution_node.log").read_text(errors="replace")
    assert "Traceback" not in text, text


def run_to_exit(name, tmp_path, extra=(), params_file="", timeout=60):
    p = start(name, fresh_domain(), tmp_path, extra, params_file)
    try:
        rc = p.wait(timeout)
    finally:
        if p.poll() is None:
            p.kill()
    return rc, (tmp_path / f"{name}.log").read_text(errors="replace")


def test_robot_policy_node_refuses_untrained_weights(tmp_path):
    n = [x for x in graph("robot") if x.name == "policy_node"][0]
    log = tmp_path / "policy_node.log"
    with open(log, "wb") as f:
        p = subprocess.run([sys.executable, "-m", "policy_xai.ros.entry", "policy_node", *n.ros_args()],
                           env=ros_env(fresh_domain()), stdout=f, stderr=subprocess.STDOUT, timeout=60)
    text = log.read_text()
    assert p.returncode == 1, text
    fatal = [ln for ln in text.splitlines() if "fatal" in ln]
    assert len(fatal) == 1 and "'weights'" in fatal[0] and "allow_untrained" in fatal[0], text
    assert "Traceback" not in text
    assert str(config_path("baxter.yaml")) in n.ros_args()


@pytest.mark.parametrize("node,param,value,words", [
    ("attribution_node", "precision", "bogus", ["precision", "bfloat16"]),
    ("attribution_node", "dt", "abc", ["dt"]),
    ("attribution_node", "dt", "-1.0", ["dt", ">="]),
    ("attribution_node", "method", "nope", ["method", "dtd"]),
    ("policy_node", "stale_action", "brake", ["stale_action", "zero", "hold"]),
    ("policy_node", "torque_limits", "[1.0, 2.0]", ["torque_limits", "7 joints"]),
    ("visualization_node", "normalize", "fixed", ["fixed_scale"]),
    ("sim_node", "task", "fly", ["task", "reach"]),
])
def test_bad_start_up_parameter_is_one_line(node, param, value, words, tmp_path):
    rc, text = run_to_exit(node, tmp_path, ["-p", f"{param}:={value}"])
    assert rc == 1, text
    fatal = [ln for ln in text.splitlines() if "fatal" in ln]
    assert len(fatal) == 1, text
    for w in words:
        assert w in fatal[0], fatal[0]
    assert "Traceback" not in text


HANGING_NODE = """
import os, signal, sys, threading, time
from rclpy.node import Node
from policy_xai.ros import common, entry

class Stuck(Node):
    stop_deadline_s = 1.0
    def __init__(self):
        super().__init__("stuck_node")
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    def close(self):
        time.sleep(600)  # a stop that never finishes

entry.install_signal_handlers()
sys.exit(common.main(Stuck, args=[]))
"""


def test_a_hanging_stop_ends_with_the_stacks_and_code_1(tmp_path):
    """A node whose stop never finishes (a DDS or executor deadlock) does not outlive its deadline: every
    thread's stack on stderr (the stuck frame named) and exit code 1, not a process launch must SIGKILL."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", HANGING_NODE], env=ros_env(fresh_domain()), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "Timeout" in p.stderr and "in close" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 60
