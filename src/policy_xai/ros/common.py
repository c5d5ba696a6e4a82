"""What every policy_xai node shares: QoS profiles, declared parameters, topic helpers, /diagnostics,
error reporting that never crashes the node, and the main() that spins and shuts down cleanly."""
from __future__ import annotations

import faulthandler
import os
import sys
import time
import traceback
from typing import Any, Callable, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType,
                                SetParametersResult)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter
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
    """A node whose parameters, topics and diagnostics come from interfaces.NODES[name].

    Parameters are declared typed (their declared type, range, allowed values and description are
    what `ros2 param describe` shows), validated at start-up (a bad value stops the node with one line
    naming the parameter) and on every `ros2 param set` (rejected with the reason before anything
    changes); start-up-only parameters are read-only. A node applies accepted run-time changes in
    `apply_parameters(changed)` and may veto combinations in `check_parameters(new)`."""

    def __init__(self, name: str, **kwargs):
        super().__init__(name, **kwargs)
        self.info = itf.NODES[name]
        self._values: dict[str, Any] = {}
        for k, prm in self.info.all_params.items():
            self._declare(k, prm)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.errors: dict[str, int] = {}
        self.last_error = ""
        self.last_error_time = -1e9
        self._last_log: dict[tuple, float] = {}
        self._published: dict[str, Any] = {}  # topic -> publisher, for the matched counts in /diagnostics
        from diagnostic_msgs.msg import DiagnosticArray

        self._diag_pub = self.create_publisher(DiagnosticArray, itf.topic_name("diagnostics"), qos(itf.RELIABLE))
        self._diag_timer = self.create_timer(float(self.p("diagnostics_period")), self._publish_diagnostics)

    # ---- parameters ---------------------------------------------------------------------------
    _TYPES = {"bool": ParameterType.PARAMETER_BOOL, "int": ParameterType.PARAMETER_INTEGER,
              "float": ParameterType.PARAMETER_DOUBLE, "str": ParameterType.PARAMETER_STRING,
              "str_list": ParameterType.PARAMETER_STRING_ARRAY}

    def _declare(self, name: str, prm: "itf.Param") -> None:
        kind = prm.type
        over = self._parameter_overrides.get(name)
        if over is not None:  # YAML / -p give 20 for 20.0 and 2.0 for 2: same number, the declared type
            v = over.value
            if kind == "float" and isinstance(v, int) and not isinstance(v, bool):
                self._parameter_overrides[name] = Parameter(name, value=float(v))
            elif kind == "int" and isinstance(v, float) and v.is_integer():
                self._parameter_overrides[name] = Parameter(name, value=int(v))
        d = ParameterDescriptor(description=prm.description, additional_constraints=prm.constraints(),
                                read_only=not prm.runtime)
        if kind == "float_list":  # '' (none) or a list of numbers: checked by validate()
            d.dynamic_typing = True
        else:
            d.type = self._TYPES[kind]
        if kind == "float" and prm.lo is not None and prm.hi is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(prm.lo), to_value=float(prm.hi))]
        elif kind == "int" and prm.lo is not None and prm.hi is not None:
            d.integer_range = [IntegerRange(from_value=int(prm.lo), to_value=int(prm.hi), step=1)]
        default = prm.default
        try:
            value = self.declare_parameter(name, default, d).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as e:
            got = over.value if over is not None else default
            prm.validate(name, got)  # the precise reason (type, range), when it is one of ours
            raise ValueError(f"parameter {name!r} = {got!r}: expected {kind} ({prm.constraints()})") from e
        self._values[name] = prm.validate(name, value)

    def p(self, name: str) -> Any:
        """The parameter's current, validated value."""
        if name in self._values:
            return self._values[name]
        return self.get_parameter(name).value

    def check_parameters(self, new: dict[str, Any]) -> None:
        """Veto a combination of parameter values (all values after the change): raise ValueError. Override."""

    def apply_parameters(self, changed: dict[str, Any]) -> None:
        """Apply accepted run-time changes (name -> validated value). Override."""

    def apply_pairing_parameters(self, changed: dict[str, Any]) -> None:
        """The run-time parameters of a node that pairs its inputs by stamp: sync_tolerance and
        time_jump (its live.StampSync `self.sync`), stale_timeout (its live.Watchdog `self.watchdog`)."""
        if "sync_tolerance" in changed:
            self.sync.tolerance_ns = int(changed["sync_tolerance"] * 1e9)
        if "time_jump" in changed:
            self.sync.jump_ns = int(changed["time_jump"] * 1e9)
        if "stale_timeout" in changed:
            self.watchdog.timeout = float(changed["stale_timeout"])

    def _on_set_parameters(self, params):
        new = dict(self._values)
        try:
            for prm in params:
                spec = self.info.all_params.get(prm.name)
                if spec is None:
                    continue  # e.g. use_sim_time: rclpy's own
                if not spec.runtime and prm.name in self._values:
                    raise ValueError(f"{prm.name} is fixed at start-up (restart the node to change it)")
                new[prm.name] = spec.validate(prm.name, prm.value)
            self.check_parameters(new)
        except ValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, params) -> None:
        changed = {}
        for prm in params:
            spec = self.info.all_params.get(prm.name)
            if spec is not None and prm.name in self._values:
                changed[prm.name] = self._values[prm.name] = spec.validate(prm.name, prm.value)
        if changed:
            try:
                self.apply_parameters(changed)
            except Exception as e:  # noqa: BLE001 - validated already; report, don't crash
                self.report_error("parameters", f"applying {sorted(changed)}: {e}")
            self.get_logger().info("parameters set: " + ", ".join(f"{k}={v!r}" for k, v in changed.items()))

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

    def create_timer(self, timer_period_sec, callback, *args, **kwargs):
        """As Node.create_timer, with the callback always called without arguments: the events
        executor passes a TimerInfo to every timer callback that accepts an argument (ours are
        often `guarded` wrappers taking *args)."""
        if callback is not None:
            fn = callback

            def callback():
                return fn()

        return super().create_timer(timer_period_sec, callback, *args, **kwargs)

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

    def serve(self, slot, fn: Callable, kind: str = "explain") -> None:
        """A worker thread's loop: take each job from `slot` (live.LatestSlot) and run fn(*job) until
        the slot closes; an exception is reported (first line) and the worker keeps going, except
        while the node shuts down."""
        while not slot.closed:
            job = slot.take(timeout=0.2)
            if job is None:
                continue
            try:
                fn(*job)
            except Exception as e:  # noqa: BLE001 - keep the worker alive
                if not self.context.ok():
                    return  # shutting down
                self.report_error(kind, (str(e) or type(e).__name__).splitlines()[0])

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
        values["executor"] = getattr(self, "executor_name", "")
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


#: POLICY_XAI_EXECUTOR: "events" (default where rclpy has it), "single" (rclpy's Python
#: SingleThreadedExecutor) or "multi" (MultiThreadedExecutor, 3 threads)
EXECUTOR_ENV = "POLICY_XAI_EXECUTOR"


def make_executor(node: Node, multithreaded: bool = False):
    """The executor main() spins `node` with: rclpy's EventsExecutor (rclpy.experimental, C++) where
    it exists, else the SingleThreadedExecutor (MultiThreadedExecutor for multithreaded=True).

    Why: rclpy's Python executors rebuild the wait set in Python on every wake-up (every entity:
    subscriptions, their two default QoS event handlers, timers, the seven parameter services), which
    costs ~0.3-1 ms of interpreter time per message. On the live graph's 2 cores that was a third of
    the CPU (the recorder, waking for every message on ~20 topics, spent 75% of its 30% of a core
    in it) and every hop of the observation -> heatmap chain waited for it; the events executor
    dispatches from C++ (recorder ~30% -> ~7% of a core, whole graph ~104% -> ~71%). It cannot call
    subscription callbacks that take a MessageInfo (rclpy 9.1 raises SystemError), so a node that
    has one falls back to the Python executor. POLICY_XAI_EXECUTOR=single|multi|events chooses."""
    from rclpy.subscription import Subscription

    choice = os.environ.get(EXECUTOR_ENV, "").strip().lower() or ("multi" if multithreaded else "events")
    if choice not in ("events", "single", "multi"):
        raise ValueError(f"{EXECUTOR_ENV}={choice!r}: choose events, single or multi")
    if choice == "events":
        with_info = any(getattr(s, "_callback_type", None) == Subscription.CallbackType.WithMessageInfo
                        for s in node.subscriptions)
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:  # rclpy before Jazzy
            EventsExecutor = None
        if EventsExecutor is not None and not with_info:
            return EventsExecutor(context=node.context)
        choice = "multi" if multithreaded else "single"
    if choice == "multi":
        return MultiThreadedExecutor(num_threads=3, context=node.context)
    return SingleThreadedExecutor(context=node.context)


def executor_name(ex) -> str:
    return "events" if type(ex).__name__ == "EventsExecutor" else type(ex).__name__


#: seconds a node may take to stop once asked (executor, node, rclpy); `ros2 launch` sends SIGTERM
#: after 5 s and SIGKILL 5 s later, so a stop that takes longer is a hang (a node that must finish
#: writing, the recorder, sets a longer `stop_deadline_s`)
STOP_DEADLINE_S = 10.0


def main(node_factory: Callable[[], Node], args=None, multithreaded: bool = False) -> int:
    """Init rclpy, spin the node until SIGINT or SIGTERM, shut down cleanly; the exit code is 0 after
    a signal, 1 when the node could not start (one line on stderr, naming the problem) or when its
    stop hung for STOP_DEADLINE_S (every thread's stack on stderr).

    Signals are policy_xai's, not rclpy's: Ctrl-C in a terminal under `ros2 launch` sends SIGINT to
    the whole process group and launch then sends its own, so a node gets two (and SIGTERM after a
    while). Each one only sets a flag (see policy_xai.ros.entry), the spin loop looks at it at least
    every 0.1 s, and nothing raises KeyboardInterrupt: no traceback, exit code 0."""
    from . import entry

    entry.install_signal_handlers()
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    ex = None
    code = 0
    name = getattr(node_factory, "__name__", "node")
    try:
        if not entry.stopping():
            node = node_factory()
            freeze_gc(node)
            ex = make_executor(node, multithreaded)
            if isinstance(node, XaiNode):
                node.executor_name = executor_name(ex)
            ex.add_node(node)
            while not entry.stopping() and rclpy.ok():
                ex.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    except KeyboardInterrupt:  # a SIGINT before our handler was in place
        pass
    except Exception as e:  # noqa: BLE001 - startup failure: one clear line
        if not entry.stopping():
            print(f"[{name}] fatal: {e}", file=sys.stderr, flush=True)
            code = 1
    finally:
        # a stop that hangs (a DDS or executor deadlock) must neither keep an arm's process alive nor
        # go unexplained: after STOP_DEADLINE_S every thread's Python stack goes to stderr and the
        # process exits with code 1 (faulthandler's watchdog is a C thread: it fires with the GIL held)
        faulthandler.dump_traceback_later(float(getattr(node, "stop_deadline_s", STOP_DEADLINE_S)), exit=True,
                                          file=sys.stderr)
        try:
            if ex is not None:  # stop dispatching before the node's entities go away
                ex.shutdown(timeout_sec=2.0)
        except Exception as e:  # noqa: BLE001
            print(f"[{name}] error while stopping the executor: {e}", file=sys.stderr, flush=True)
        try:
            if node is not None:
                close = getattr(node, "close", None)
                if close:
                    close()
                node.destroy_node()
        except Exception as e:  # noqa: BLE001 - stopping anyway; say what failed
            print(f"[{name}] error while stopping: {e}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        # signals that arrive while the interpreter tears down (seconds on a loaded machine) must not
        # kill the process after a clean stop
        entry.ignore_signals()
    return code
