"""The executor every node spins with (common.make_executor): rclpy's EventsExecutor where it exists
(the Python executors' per-wake-up wait-set rebuild was a third of the live graph's CPU and delayed
every hop of the observation -> heatmap chain), the Python one for nodes it cannot serve, and the
POLICY_XAI_EXECUTOR override. Timer callbacks (guarded wrappers taking *args) must run without the
TimerInfo the events executor passes to callbacks that accept an argument."""
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.context import Context  # noqa: E402
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402

from policy_xai.ros import common  # noqa: E402
from policy_xai.ros.runner import ros_env  # noqa: E402

try:
    from rclpy.experimental import EventsExecutor  # noqa: F401
    HAVE_EVENTS = True
except ImportError:
    HAVE_EVENTS = False

DOMAIN = 232  # nothing here needs another process; a domain of its own anyway


@pytest.fixture
def ctx(monkeypatch):
    for k, v in ros_env(DOMAIN).items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(common.EXECUTOR_ENV, raising=False)
    c = Context()
    rclpy.init(context=c, domain_id=DOMAIN, signal_handler_options=SignalHandlerOptions.NO)
    yield c
    rclpy.try_shutdown(context=c)


def _node(ctx):
    return common.XaiNode("recorder", context=ctx)


def test_events_executor_by_default(ctx):
    node = _node(ctx)
    try:
        ex = common.make_executor(node)
        assert common.executor_name(ex) == ("events" if HAVE_EVENTS else "SingleThreadedExecutor")
        assert isinstance(common.make_executor(node, multithreaded=True), MultiThreadedExecutor)
    finally:
        node.destroy_node()


@pytest.mark.parametrize("choice, cls", [("single", SingleThreadedExecutor), ("multi", MultiThreadedExecutor)])
def test_override(ctx, monkeypatch, choice, cls):
    monkeypatch.setenv(common.EXECUTOR_ENV, choice)
    node = _node(ctx)
    try:
        assert isinstance(common.make_executor(node), cls)
    finally:
        node.destroy_node()


def test_bad_override_is_one_clear_error(ctx, monkeypatch):
    monkeypatch.setenv(common.EXECUTOR_ENV, "fast")
    node = _node(ctx)
    try:
        with pytest.raises(ValueError, match="POLICY_XAI_EXECUTOR"):
            common.make_executor(node)
    finally:
        node.destroy_node()


def test_message_info_callbacks_fall_back_to_the_python_executor(ctx):
    """rclpy 9.1's events executor raises SystemError for (msg, info) callbacks."""
    from std_msgs.msg import String

    node = _node(ctx)
    try:
        node.create_subscription(String, "/policy_xai_test/with_info", lambda msg, info: None, 1)
        assert isinstance(common.make_executor(node), SingleThreadedExecutor)
    finally:
        node.destroy_node()


@pytest.mark.parametrize("choice", ["events", "single"])
def test_guarded_timer_callbacks_run_under_every_executor(ctx, monkeypatch, choice):
    if choice == "events" and not HAVE_EVENTS:
        pytest.skip("no EventsExecutor in this rclpy")
    monkeypatch.setenv(common.EXECUTOR_ENV, choice)
    node = _node(ctx)
    fired = []
    try:
        node.create_timer(0.01, node.guarded("tick", lambda: fired.append(1)))  # a wrapper taking *args
        ex = common.make_executor(node)
        ex.add_node(node)
        end = time.monotonic() + 5.0
        while len(fired) < 3 and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
        assert len(fired) >= 3
        assert not node.errors, node.last_error
    finally:
        node.destroy_node()
