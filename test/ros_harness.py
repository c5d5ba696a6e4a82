"""Test-side ROS 2 helpers: a probe node (records what arrives, per topic) and a feeder thread
(publishes camera images and joint states like a robot), both in the test process over real DDS."""
from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

import numpy as np

from policy_xai.ros.runner import ros_env

_next_domain = [60 + (os.getpid() % 40) * 2]


def fresh_domain() -> int:
    """A domain id not used by another test of this session (and unlikely to clash with others)."""
    _next_domain[0] += 1
    return _next_domain[0]


class Probe:
    """An rclpy context + node on `domain_id`, spun in a background thread."""

    def __init__(self, domain_id: int):
        os.environ.update(ros_env(domain_id))
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = Context()
        from rclpy.signals import SignalHandlerOptions

        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(f"probe_{domain_id}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.msgs = defaultdict(list)  # key -> [(receive time ns, msg)]
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while not self._stop and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutting down
                if self._stop:
                    return

    def listen(self, *keys):
        from policy_xai.ros import interfaces as itf
        from policy_xai.ros.common import qos

        for k in keys:
            t = itf.TOPIC[k]

            def cb(m, k=k):
                with self.lock:
                    self.msgs[k].append((time.time_ns(), m))

            self.node.create_subscription(itf.message_class(t.type), t.name, cb, qos(t.qos, 50))

    def publisher(self, key):
        from policy_xai.ros import interfaces as itf
        from policy_xai.ros.common import qos

        t = itf.TOPIC[key]
        return self.node.create_publisher(itf.message_class(t.type), t.name, qos(t.qos))

    def get(self, key):
        with self.lock:
            return [m for _, m in self.msgs[key]]

    def clear(self, *keys):
        with self.lock:
            for k in keys or list(self.msgs):
                self.msgs[k] = []

    def wait_for(self, key, n=1, timeout=20.0, pred=None):
        end = time.time() + timeout
        while time.time() < end:
            got = [m for m in self.get(key) if pred is None or pred(m)]
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{key}: got {len(self.get(key))} messages, wanted {n} within {timeout} s")

    def diagnostics(self, node_name):
        """Latest diagnostics (level, message, values) of a node."""
        for m in reversed(self.get("diagnostics")):
            for st in m.status:
                if st.name.endswith("/" + node_name):
                    return st.level[0] if isinstance(st.level, bytes) else st.level, st.message, \
                        {kv.key: kv.value for kv in st.values}
        return None

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


class Feeder:
    """Publishes a random camera image and joint state with the same stamp at `rate` Hz; remembers
    what it sent by stamp. Stamps are spaced exactly one period apart, as a robot's clock stamps its
    samples, even when this thread is late (the GIL is busy in the test): a burst of late sends must not
    put two samples within the policy node's pairing tolerance."""

    def __init__(self, probe: Probe, joints, size=(64, 64), rate=20.0, seed=0):
        from policy_xai.ros import convert as cv

        self.cv, self.probe = cv, probe
        self.joints, self.size, self.period = list(joints), size, 1.0 / rate
        self.period_ns = int(1e9 / rate)
        self.last_stamp = 0
        self.pub_img = probe.publisher("image")
        self.pub_js = probe.publisher("joint_states")
        self.rng = np.random.default_rng(seed)
        self.sent = {}  # stamp -> (rgb, q, v)
        self.running = False
        self.thread = None

    def send_one(self, rgb=None, q=None, v=None, names=None, stamp=None):
        h, w = self.size
        rgb = self.rng.integers(0, 256, (h, w, 3), dtype=np.uint8) if rgb is None else rgb
        q = self.rng.normal(0, 0.4, len(self.joints)) if q is None else q
        v = self.rng.normal(0, 0.2, len(self.joints)) if v is None else v
        if stamp is None:
            stamp = max(time.time_ns(), self.last_stamp + self.period_ns)
        self.last_stamp = max(self.last_stamp, stamp)
        self.pub_js.publish(self.cv.joint_state_msg(stamp, names or self.joints, q, v))
        self.pub_img.publish(self.cv.image_msg(rgb, stamp, "camera"))
        self.sent[stamp] = (rgb, np.asarray(q), np.asarray(v))
        return stamp

    def _run(self):
        nxt = time.monotonic()
        while self.running:
            self.send_one()
            nxt = max(nxt + self.period, time.monotonic())  # late: skip the missed slots, no burst
            time.sleep(max(0.0, nxt - time.monotonic()))

    def start(self):
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.running = False
        if self.thread:
            self.thread.join(2)
