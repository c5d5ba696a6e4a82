"""The test side of the launch tests: an rclpy node inside the `launch_test` process that records what
the launched nodes publish, on the topics and with the QoS that policy_xai.ros.interfaces declares.

Not a test file (no `test_` prefix): test/test_launch.py runs only test/launch_testing/test_*.py.
"""
from __future__ import annotations

import os
import re
import threading
import time
from collections import defaultdict

NAME = "policy_xai_launch_probe"
GO_TOPIC = "/policy_xai_launch_test/go"  # std_msgs/Empty, latched: "the probe is listening" (play_when_ready.py)


def install_prefix() -> str:
    """The install prefix of policy_xai as the ament index of this process sees it (the colcon install
    test/test_launch.py built, when run from there)."""
    from ament_index_python.packages import get_package_prefix

    return get_package_prefix("policy_xai")


def check_installed_from(test_case, proc_info, nodes=()) -> None:
    """Every node process of the launch runs an executable of the colcon install, and this process
    imports policy_xai from there too (not from the source tree's editable install); each name in
    `nodes` is among the launched processes."""
    import policy_xai

    prefix = os.path.realpath(install_prefix())
    expected = os.environ.get("POLICY_XAI_TEST_INSTALL")
    if expected:
        test_case.assertEqual(prefix, os.path.realpath(os.path.join(expected, "policy_xai")))
    test_case.assertTrue(os.path.realpath(policy_xai.__file__).startswith(prefix + os.sep),
                         f"policy_xai imported from {policy_xai.__file__}, not from {prefix}")
    nodes_run = [p for p in proc_info.processes() if p.process_details
                 and "/lib/policy_xai/" in p.process_details["cmd"][0]]
    test_case.assertTrue(nodes_run, "no policy_xai node process was launched")
    for p in nodes_run:
        exe = os.path.realpath(p.process_details["cmd"][0])
        test_case.assertTrue(exe.startswith(prefix + os.sep), f"{p.process_details['name']} runs {exe}")
    names = " ".join(p.process_details["name"] for p in proc_info.processes() if p.process_details)
    for n in nodes:
        test_case.assertIn(n, names)


class Probe:
    """Subscribes to the given topic keys (interfaces.TOPIC) and keeps every message, spun in a
    background thread of this process (launch_testing runs the tests in a thread of its own)."""

    def __init__(self, keys, depth: int = 200):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from policy_xai.ros import interfaces as itf
        from policy_xai.ros.common import qos

        self.rclpy = rclpy
        self.context = Context()
        # launch owns SIGINT in this process; rclpy must not install its handlers from a test thread
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(NAME, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.msgs = defaultdict(list)
        self.subs = {}
        for key in keys:
            t = itf.TOPIC[key]

            def keep(msg, key=key):
                with self.lock:
                    self.msgs[key].append(msg)

            self.subs[key] = self.node.create_subscription(itf.message_class(t.type), t.name, keep,
                                                           qos(t.qos, depth))
        self._go = None
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context is going down
                return

    def get(self, key) -> list:
        with self.lock:
            return list(self.msgs[key])

    def wait_for(self, key, n: int = 1, timeout: float = 60.0, pred=None) -> list:
        """The messages on `key` (those for which pred holds) once there are n of them."""
        from policy_xai.ros.interfaces import topic_name

        end = time.monotonic() + timeout
        while True:
            got = [m for m in self.get(key) if pred is None or pred(m)]
            if len(got) >= n or time.monotonic() > end:
                break
            time.sleep(0.05)
        if len(got) < n:
            raise AssertionError(f"{topic_name(key)}: {len(got)} matching messages of {len(self.get(key))} "
                                 f"within {timeout} s, wanted {n}")
        return got

    def status(self, node_name: str):
        """The newest /diagnostics status of a node: (level, message, {key: value}), or None."""
        for msg in reversed(self.get("diagnostics")):
            for st in msg.status:
                if st.name.rsplit("/", 1)[-1] == node_name:
                    level = st.level[0] if isinstance(st.level, (bytes, bytearray)) else int(st.level)
                    return level, st.message, {kv.key: kv.value for kv in st.values}
        return None

    def wait_for_status(self, node_name: str, pred, timeout: float = 60.0):
        """The newest status of `node_name` once pred(level, message, values) holds."""
        end = time.monotonic() + timeout
        st = None
        while time.monotonic() < end:
            st = self.status(node_name)
            if st is not None and pred(*st):
                return st
            time.sleep(0.1)
        raise AssertionError(f"/diagnostics of {node_name}: the newest status within {timeout} s was {st}")

    def matched(self) -> dict:
        """Publishers each subscription has matched, as DDS sees it from this (the reader's) side."""
        return {k: s.get_publisher_count() for k, s in self.subs.items()}

    def wait_matched(self, keys, timeout: float = 120.0) -> None:
        """Until the subscriptions on `keys` have each matched a publisher: from then on this process
        receives what the launched nodes publish there."""
        end = time.monotonic() + timeout
        while not all(self.matched()[k] > 0 for k in keys):
            if time.monotonic() > end:
                raise AssertionError(f"publishers matched per subscription after {timeout} s: {self.matched()}")
            time.sleep(0.1)

    def go(self) -> None:
        """Tell play_when_ready.py (--go) that this probe is listening: a latched std_msgs/Empty."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from std_msgs.msg import Empty

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._go = self.node.create_publisher(Empty, GO_TOPIC, latched)
        self._go.publish(Empty())

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def output_of(proc_output, name_part: str) -> str:
    """Everything a launched process (name containing name_part) wrote, stdout and stderr."""
    return "".join(o.text.decode(errors="replace") for o in proc_output
                   if name_part in o.process_name)


def error_lines(text: str, word: str) -> list:
    """Lines of `text` that report an error (error / fatal / refus...) and name `word`."""
    pat = re.compile(r"(error|fatal|refus)", re.IGNORECASE)
    return [line for line in text.splitlines() if pat.search(line) and word in line]


def check_ratios_explain_decisions(test, probe, n: int = 3) -> None:
    """The ratios start with 'image', sum to 1 and carry the stamp of a published decision. (The
    probe's torque and ratio subscriptions match on their own time: compare from its first torque on.)"""
    first = stamp_ns(probe.wait_for("torques", 1)[0])
    ratios = probe.wait_for("ratios", n, pred=lambda m: stamp_ns(m) > first)
    for msg in ratios:
        test.assertEqual(msg.name[0], "image")
        test.assertAlmostEqual(sum(msg.position), 1.0, places=4)
    last = stamp_ns(ratios[-1])
    test.assertTrue(probe.wait_for("torques", 1, timeout=10, pred=lambda m: stamp_ns(m) == last))
