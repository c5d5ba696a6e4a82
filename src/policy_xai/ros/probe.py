"""A probe subscription in this process that tells when the live graph's first heatmap arrives
(`policy-xai run` waits for it before the measured run starts)."""
from __future__ import annotations

import os
import time
from typing import Callable


class HeatmapProbe:
    """A subscription to the heatmap topic on DDS domain `domain`, in an rclpy context of its own
    (created at the first poll: rclpy is imported only then). Close it when done."""

    def __init__(self, domain: int):
        self.domain = int(domain)
        self._state = None

    def _open(self):
        from .runner import ros_env

        os.environ.update(ros_env(self.domain))
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from . import interfaces as itf
        from .common import qos

        ctx = Context()
        rclpy.init(context=ctx, domain_id=self.domain, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("policy_xai_run_probe", context=ctx)
        got = []
        t = itf.TOPIC["heatmap"]
        node.create_subscription(itf.message_class(t.type), t.name, lambda m: got.append(1), qos(t.qos))
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        return ctx, node, ex, got

    def poll(self, timeout: float = 0.1) -> bool:
        """Spin once (up to `timeout` s): True once a heatmap has arrived (the probe is then closed)."""
        if self._state is None:
            self._state = self._open()
        _, _, ex, got = self._state
        ex.spin_once(timeout_sec=timeout)
        if got:
            self.close()
            return True
        return False

    def close(self) -> None:
        st, self._state = self._state, None
        if st is not None:
            import rclpy

            ctx, node, ex, _ = st
            ex.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=ctx)


def wait_for_heatmaps(domain: int, timeout: float, stop: Callable[[], bool] = lambda: False) -> bool:
    """Poll a HeatmapProbe until the first heatmap arrives (True), the timeout passes or `stop()`
    says so (a node died: its heatmaps may never come) (False). The probe is closed on return.
    (Startup = Python + torch + MuJoCo imports in every process, ~2-10 s on 2 busy cores.)"""
    probe = HeatmapProbe(domain)
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if stop():
                return False
            if probe.poll():
                return True
            time.sleep(0.5)
        return False
    finally:
        probe.close()
