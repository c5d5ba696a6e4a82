"""Starts a node graph (graph.py) as separate Python processes over real DDS, without ros2 launch.

    with GraphRunner(graph("sim"), domain_id=42, log_dir="run/logs") as g:
        time.sleep(10)
        g.stop("attribution_node"); g.start("attribution_node")

No rclpy in this module: each node runs as `python -m <module> --ros-args ...` with the environment
from `ros_env` (UDPv4 transport, localhost discovery, the chosen domain id).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .graph import NodeLaunch


def ros_env(domain_id: Optional[int] = None, base: Optional[dict] = None) -> dict:
    """Environment for node processes: Fast DDS over UDPv4 (works across mount namespaces), discovery
    limited to this machine, an explicit domain id, unbuffered output, headless MuJoCo."""
    env = dict(os.environ if base is None else base)
    env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "UDPv4")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("LP_NUM_THREADS", "1")  # Mesa llvmpipe: one render thread (the nodes share 2 cores)
    env["PYTHONUNBUFFERED"] = "1"
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    return env


class NodeProcess:
    """One node as a child process; output goes to <log_dir>/<name>.log."""

    def __init__(self, launch: NodeLaunch, env: dict, log_dir: Path, python: str = sys.executable):
        self.launch, self.env, self.log_dir, self.python = launch, env, Path(log_dir), python
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def name(self) -> str:
        return self.launch.name

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def command(self) -> list[str]:
        """Through policy_xai.ros.entry (signals handled before the heavy imports), as the console
        scripts that ros2 launch starts; other modules directly."""
        from .entry import MODULES

        if MODULES.get(self.launch.name) == self.launch.module:
            return [self.python, "-m", "policy_xai.ros.entry", self.launch.name, *self.launch.ros_args()]
        return [self.python, "-m", self.launch.module, *self.launch.ros_args()]

    def start(self) -> "NodeProcess":
        if self.alive():
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        """Process id of the running (or last) process."""
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGINT) -> Optional[int]:
        """SIGINT (clean shutdown), then SIGTERM, then SIGKILL if it does not exit (a node ignores
        signals once it has stopped cleanly, so a slow interpreter teardown still ends with code 0)."""
        if self.proc is None:
            return None
        for s, t in ((sig, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(s)
                self.proc.wait(t)
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        return self.proc.poll()

    def kill(self) -> None:
        """Hard kill (crash simulation)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""


class GraphRunner:
    """Processes for a list of NodeLaunch entries, started in order and stopped in reverse."""

    def __init__(self, nodes: Iterable[NodeLaunch], domain_id: Optional[int] = None,
                 log_dir: "str | Path | None" = None, env: Optional[dict] = None):
        self.env = ros_env(domain_id, env)
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="policy_xai_logs_"))
        self.procs = {n.name: NodeProcess(n, self.env, self.log_dir) for n in nodes}

    def __enter__(self) -> "GraphRunner":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def add(self, launch: NodeLaunch, start: bool = True) -> NodeProcess:
        p = self.procs[launch.name] = NodeProcess(launch, self.env, self.log_dir)
        return p.start() if start else p

    def start(self, names: Optional[Sequence[str]] = None) -> None:
        for n in names or list(self.procs):
            self.procs[n].start()

    def stop(self, names: Optional[Sequence[str]] = None) -> None:
        for n in reversed(names or list(self.procs)):
            self.procs[n].stop()

    def __getitem__(self, name: str) -> NodeProcess:
        return self.procs[name]

    def dead(self) -> list[str]:
        """Nodes that were started and have exited."""
        return [n for n, p in self.procs.items() if p.proc is not None and not p.alive()]

    def report(self, n: int = 15) -> str:
        return "\n".join(f"--- {name} (rc={p.returncode}) ---\n{p.tail(n)}" for name, p in self.procs.items())
