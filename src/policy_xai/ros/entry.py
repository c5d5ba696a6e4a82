"""Start-up of the node processes: signal handling first, heavy imports after.

The console scripts (`ros2 run policy_xai policy_node`, what launch starts) and the process runner
(`python -m policy_xai.ros.entry policy_node --ros-args ...`) come through here, so that SIGINT and
SIGTERM are handled from the first instant: while torch, MuJoCo and rclpy are still importing a signal
only marks the process as stopping, and the node then exits with code 0 instead of a
KeyboardInterrupt traceback. Nothing heavy is imported by this module.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

_stop = threading.Event()
_received: list[int] = []


def _on_signal(signum, frame) -> None:
    _received.append(signum)
    _stop.set()


def install_signal_handlers() -> None:
    """SIGINT / SIGTERM only set the stop flag (any number of times). Main thread only."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)


def ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def stopping() -> bool:
    return _stop.is_set()


def request_stop() -> None:
    _stop.set()


#: node name -> module with main(args)
MODULES = {
    "sim_node": "policy_xai.ros.sim_node",
    "policy_node": "policy_xai.ros.policy_node",
    "attribution_node": "policy_xai.ros.attribution_node",
    "visualization_node": "policy_xai.ros.visualization_node",
    "recorder": "policy_xai.ros.recorder",
    "user_policy_node": "policy_xai.ros.user_policy_node",
    "user_explainer_node": "policy_xai.ros.user_explainer_node",
}


def run(name: str, args=None) -> int:
    """Start node `name` and end the process with its exit code (does not return).

    The process ends with os._exit once the node has stopped (its executor, entities and rclpy
    context are gone, its files closed): the interpreter's own teardown (module and C-extension
    finalisers of torch, MuJoCo's EGL context, Fast DDS's static objects) adds nothing the node
    needs, took seconds on a loaded machine, and is one more place a stop can hang (once, on CI, a
    node had not exited 30 s after Ctrl-C)."""
    install_signal_handlers()
    code = 0
    try:
        import importlib

        module = importlib.import_module(MODULES[name])
        if not _stop.is_set():
            code = int(module.main(args) or 0)
    except KeyboardInterrupt:
        code = 0
    _exit(code)


def _exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say
            pass
    os._exit(code)


def sim_node() -> int:
    return run("sim_node")


def policy_node() -> int:
    return run("policy_node")


def attribution_node() -> int:
    return run("attribution_node")


def visualization_node() -> int:
    return run("visualization_node")


def recorder() -> int:
    return run("recorder")


def user_policy_node() -> int:
    return run("user_policy_node")


def user_explainer_node() -> int:
    return run("user_explainer_node")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in MODULES:
        print(f"usage: python -m policy_xai.ros.entry {{{','.join(MODULES)}}} [--ros-args ...]", file=sys.stderr)
        raise SystemExit(2)
    name = sys.argv.pop(1)
    run(name)
