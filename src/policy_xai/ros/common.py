"""What every policy_xai node shares: QoS profiles, declared parameters, topic helpers, /diagnostics,
error reporting that never crashes the node, and the main() that spins and shuts down cleanly."""
from __future__ import annotations

import signal
import sys
import time
import traceback
from typing import Any, Callable, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from . import interfaces as itf


def qos(name: str, depth: Optional[int] = None) -> QoSProfile:
    if name == itf.SENSOR_DATA:
        p = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth or qos_profile_sensor_data.depth,
                       reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
    elif name == itf.RELIABLE:
        p = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth or 10,
                       reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
    elif name == itf.LATCHED:
        p = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth or 1,
                       reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    else:
        raise ValueError(f"unknown QoS profile {name!r}")
    return p


def subscriber_qos(name: str, depth: Optional[int] = None) -> QoSProfile:
    """QoS a subscriber uses for a topic declared with publisher QoS `name`: best effort (matches
    reliable and best-effort publishers alike) for sensor data, else the same profile."""
    return qos(name, depth)


class XaiNode(Node):
    """A node whose parameters, topics and diagnostics come from interfaces.NODES[name]."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.info = itf.NODES[name]
        for k, v in {**self.info.parameters, **itf.COMMON_PARAMETERS}.items():
            # dynamic typing: `-p rate:=20` (an int) is as good as 20.0; the nodes cast on use
            self.declare_parameter(k, v, ParameterDescriptor(dynamic_typing=True))
        self.errors: dict[str, int] = {}
        self.last_error = ""
        self.last_error_time = -1e9
        self._last_log: dict[tuple, float] = {}
        self._published: dict[str, Any] = {}  # topic -> publisher, for the matched counts in /diagnostics
        from diagnostic_msgs.msg import DiagnosticArray

        self._diag_pub = self.create_publisher(DiagnosticArray, itf.topic_name("diagnostics"), qos(itf.RELIABLE))
        self._diag_timer = self.create_timer(float(self.p("diagnostics_period")), self._publish_diagnostics)

    # ---- parameters and topics ------------------------------------------------------------------
    def p(self, name: str) -> Any:
        return self.get_parameter(name).value

    def pub(self, key: str, depth: Optional[int] = None):
        t = itf.TOPIC[key]
        pub = self.create_publisher(itf.message_class(t.type), t.name, qos(t.qos, depth))
        self._published[pub.topic_name] = pub
        return pub

    def matched(self) -> dict[str, int]:
        """Subscriptions matched by each of this node's topic publishers, as DDS sees it from this side
        (`matched<topic>` in /diagnostics). The graph seen from another process (`ros2 topic info`)
        can list a subscription before this publisher has matched it; a tool that must not lose the
        first messages waits for these counts."""
        return {name: pub.get_subscription_count() for name, pub in self._published.items()}

    def sub(self, key: str, callback: Callable, depth: Optional[int] = None, **kwargs):
        t = itf.TOPIC[key]
        return self.create_subscription(itf.message_class(t.type), t.name, callback,
                                        subscriber_qos(t.qos, depth), **kwargs)

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # ---- errors ---------------------------------------------------------------------------------
    def report_error(self, kind: str, message: str, throttle: float = 2.0) -> None:
        """Count an error, keep it for /diagnostics and log it (at most every `throttle` s per kind)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = f"{kind}: {message}"
        now = time.monotonic()
        self.last_error_time = now
        key = (kind, message[:40])  # different problems of one kind are each logged
        if now - self._last_log.get(key, -1e9) >= throttle:
            self._last_log[key] = now
            self.get_logger().error(f"{kind}: {message} (x{self.errors[kind]})")

    def recent_error(self, window: float = 5.0) -> bool:
        return time.monotonic() - self.last_error_time < window

    def guarded(self, kind: str, fn: Callable) -> Callable:
        """Wrap a callback so any exception is reported instead of killing the node."""

        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - a running node must survive bad input
                msg = str(e) or type(e).__name__
                if not isinstance(e, ValueError):
                    msg += " | " + traceback.format_exc(limit=3).replace("\n", " ")
                self.report_error(kind, msg)
                return None

        return wrapper

    # ---- diagnostics ----------------------------------------------------------------------------
    def diagnostics(self) -> tuple[int, str, dict]:
        """(level 0 OK / 1 WARN / 2 ERROR, message, key -> value) for /diagnostics. Override."""
        return 0, "ok", {}

    def _publish_diagnostics(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

        from .convert import mapping_to_key_values

        try:
            level, message, values = self.diagnostics()
        except Exception as e:  # noqa: BLE001
            level, message, values = 2, f"diagnostics failed: {e}", {}
        values = dict(values)
        values.update({f"matched{k}": n for k, n in self.matched().items()})
        if self.errors:
            values.update({f"errors/{k}": v for k, v in self.errors.items()})
            values["last_error"] = self.last_error
        st = DiagnosticStatus(level=bytes([level]), name=f"policy_xai: {self.get_fully_qualified_name()}",
                              message=message, hardware_id="policy_xai")
        st.values = mapping_to_key_values(values)
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [st]
        self._diag_pub.publish(arr)


def freeze_gc(node: Optional[Node] = None, settle: float = 5.0) -> None:
    """Keep the cyclic garbage collector off the latency path: collect once and move everything that
    exists after start-up (torch, rclpy, MuJoCo modules: ~200k objects) to the permanent generation,
    so later full collections only traverse what the running node creates. Without this each process
    pays a ~100-250 ms full collection a few seconds into the run, stalling its callbacks. `node`: freeze
    once more (no collection) after `settle` s, when lazily built state (first explanation, robot
    model, plot) exists too."""
    import gc

    gc.collect()
    gc.freeze()
    if node is not None and settle > 0:
        timer = None

        def again():
            gc.freeze()
            timer.cancel()

        timer = node.create_timer(settle, again)


def main(node_factory: Callable[[], Node], args=None, multithreaded: bool = False) -> int:
    """Init rclpy, spin the node until SIGINT/SIGTERM, shut down cleanly."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    stop = {"flag": False}

    def on_term(signum, frame):  # SIGTERM: same as Ctrl-C
        stop["flag"] = True
        rclpy.try_shutdown()

    signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        node = node_factory()
        freeze_gc(node)
        ex = MultiThreadedExecutor(num_threads=3) if multithreaded else SingleThreadedExecutor()
        ex.add_node(node)
        try:
            ex.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as e:  # noqa: BLE001 - startup failure: one clear line
        print(f"[{getattr(node_factory, '__name__', 'node')}] fatal: {e}", file=sys.stderr)
        code = 1
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
        # stopping already: rclpy's shutdown restores the handlers it found at init (the defaults),
        # so a SIGTERM/SIGINT sent while the interpreter tears down (seconds on a loaded machine)
        # would kill the process by signal after a clean stop; ignore them from here on
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return code
