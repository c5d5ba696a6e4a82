"""Bookkeeping of the live pipeline, free of ROS: pairing by stamp, newest-only hand-off with skip
counting, rates and latency statistics, the stale-input watchdog and the configuration vector.

The ROS nodes (policy_xai.ros.*) are thin adapters over these classes.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import groups
from .spec import PolicySpec


# ---- pairing -----------------------------------------------------------------------------------
class StampSync:
    """Pairs messages of several streams by stamp (ns).

    `add(stream, stamp, item)` returns the complete set {stream: item} once every stream has an
    item whose stamp is within `tolerance_ns` of this one (exact match with tolerance 0), else None.
    Only the newest `keep` stamps per stream are buffered; sets older than an emitted one are
    dropped and counted in `dropped`.

    Time jumps (`jump_ns`, None = not detected): a stamp more than `jump_ns` behind the last emitted
    set (the clock restarted: simulated time of a new episode, a looped bag, a clock reset; or the
    set before was stamped in the future) restarts the pairing instead of being dropped, and a stamp
    more than `jump_ns` ahead of every stamp seen so far clears what is buffered (nothing older can
    pair with it). A smaller restart (a bag shorter than `jump_ns` played in a loop) shows as `keep`
    messages in a row all older than the last emitted set: that restarts the pairing too. Both are
    counted (`jumps_backward`, `jumps_forward`, `last_jump_ns`) so that a node can say why it paired
    nothing for a while, and it never stays stuck behind one bad stamp.
    """

    def __init__(self, streams: Sequence[str], tolerance_ns: int = 0, keep: int = 10,
                 jump_ns: Optional[int] = None):
        self.streams = tuple(streams)
        self.tolerance_ns = int(tolerance_ns)
        self.keep = int(keep)
        self.jump_ns = None if jump_ns is None else int(jump_ns)
        self.buffers: dict[str, OrderedDict[int, Any]] = {s: OrderedDict() for s in self.streams}
        self.last_emitted: Optional[int] = None
        self.newest: Optional[int] = None  # newest stamp added (any stream) since the last restart
        self.dropped = 0  # items discarded without being part of an emitted set
        self.emitted = 0
        self.jumps_backward = 0
        self.jumps_forward = 0
        self.last_jump_ns = 0  # signed size of the last jump (new stamp - reference)
        self.last_jump_time: Optional[float] = None  # time.monotonic() of the last jump
        self._old_streak = 0  # messages in a row older than the last emitted set

    def restart(self) -> None:
        """Forget everything buffered and emitted (counters stay)."""
        for buf in self.buffers.values():
            self.dropped += len(buf)
            buf.clear()
        self.last_emitted = None
        self.newest = None
        self._old_streak = 0

    def _jump(self, delta_ns: int, backward: bool) -> None:
        if backward:
            self.jumps_backward += 1
        else:
            self.jumps_forward += 1
        self.last_jump_ns = int(delta_ns)
        self.last_jump_time = time.monotonic()
        self.restart()

    def _find(self, stream: str, stamp: int) -> Optional[int]:
        buf = self.buffers[stream]
        if stamp in buf:
            return stamp
        if self.tolerance_ns <= 0 or not buf:
            return None
        best = min(buf, key=lambda s: abs(s - stamp))
        return best if abs(best - stamp) <= self.tolerance_ns else None

    def add(self, stream: str, stamp: int, item: Any) -> Optional[dict[str, Any]]:
        if stream not in self.buffers:
            raise KeyError(f"unknown stream {stream!r}; streams: {self.streams}")
        stamp = int(stamp)
        if self.jump_ns is not None:
            ref = self.last_emitted if self.last_emitted is not None else self.newest
            if ref is not None and stamp < ref - self.jump_ns:
                self._jump(stamp - ref, backward=True)
            elif self.newest is not None and stamp > self.newest + self.jump_ns:
                self._jump(stamp - self.newest, backward=False)
        if self.last_emitted is not None and stamp <= self.last_emitted - self.tolerance_ns:
            self._old_streak += 1
            if self.jump_ns is None or self._old_streak < self.keep:
                self.dropped += 1  # older than what we already used
                return None
            self._jump(stamp - self.last_emitted, backward=True)  # a small restart of the clock
        self._old_streak = 0
        self.newest = stamp if self.newest is None else max(self.newest, stamp)
        buf = self.buffers[stream]
        if stamp in buf:
            self.dropped += 1  # duplicate stamp: keep the newer item
        buf[stamp] = item
        buf.move_to_end(stamp)
        while len(buf) > self.keep:
            buf.popitem(last=False)
            self.dropped += 1
        found = {s: self._find(s, stamp) for s in self.streams}
        if any(v is None for v in found.values()):
            return None
        out = {s: self.buffers[s][found[s]] for s in self.streams}
        self.emitted += 1
        self.last_emitted = stamp
        for s in self.streams:  # drop everything at or before what was emitted
            buf = self.buffers[s]
            for k in [k for k in buf if k <= max(found[s], stamp)]:
                if k != found[s]:
                    self.dropped += 1
                del buf[k]
        return out

    def jump_status(self, window: float = 10.0) -> Optional[str]:
        """A one-line account of the last time jump if it happened within `window` s, else None."""
        if self.last_jump_time is None or time.monotonic() - self.last_jump_time > window:
            return None
        d = self.last_jump_ns * 1e-9
        way = "backwards" if d < 0 else "forwards"
        return (f"observation stamps jumped {way} by {abs(d):.3g} s (clock restart, looped bag or bad stamp): "
                f"pairing restarted ({self.jumps_backward} back, {self.jumps_forward} forward so far)")


class LatestSlot:
    """Single-slot mailbox between callbacks and a worker: a newer item replaces an unread one
    (counted in `skipped`), so the worker always takes the newest and never builds up latency."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False
        self.skipped = 0
        self.put_count = 0

    def put(self, item: Any) -> None:
        with self._cond:
            if self._full:
                self.skipped += 1
            self._item, self._full = item, True
            self.put_count += 1
            self._cond.notify()

    def take(self, timeout: Optional[float] = None) -> Any:
        """The newest item, waiting up to `timeout` s; None on timeout or after close()."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# ---- statistics --------------------------------------------------------------------------------
class RateMeter:
    """Events per second over a sliding window of wall-clock time."""

    def __init__(self, window: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.window, self.clock = float(window), clock
        self.events: deque[float] = deque()
        self.total = 0

    def tick(self) -> None:
        now = self.clock()
        self.events.append(now)
        self.total += 1
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.events and now - self.events[0] > self.window:
            self.events.popleft()

    def rate(self) -> float:
        now = self.clock()
        self._trim(now)
        if len(self.events) < 2:
            return 0.0
        span = self.events[-1] - self.events[0]
        return (len(self.events) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Rolling latency samples (s) with percentiles."""

    def __init__(self, maxlen: int = 1000):
        self.samples: deque[float] = deque(maxlen=maxlen)

    def add(self, seconds: float) -> None:
        self.samples.append(float(seconds))

    def percentile(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.samples), q)) if self.samples else float("nan")

    def summary(self, prefix: str = "latency") -> dict[str, float]:
        return {f"{prefix}_p50_ms": 1e3 * self.percentile(50), f"{prefix}_p99_ms": 1e3 * self.percentile(99),
                f"{prefix}_max_ms": 1e3 * (max(self.samples) if self.samples else float("nan"))}


def machine_jitter(seconds: float = 8.0, rate_hz: float = 20.0, work_ms: float = 4.0) -> dict[str, float]:
    """How steady this machine runs a fixed CPU task at a control rate: a pure-Python loop sized to
    take about `work_ms` is run every 1/rate_hz s for `seconds`; its time's p50/p99/max (ms) and
    p99/p50. A pipeline's latency tail cannot be shorter than the tail this shows (on the shared
    2-core VM used here the same task takes 4-6x its median at p99, with no descheduling: tight
    clock reads see no gaps)."""
    def task(n: int) -> int:
        s = 0
        for i in range(n):
            s += i * i
        return s

    n = 20000
    t0 = time.perf_counter()
    task(n)
    n = max(1000, int(n * (work_ms * 1e-3) / max(time.perf_counter() - t0, 1e-6)))  # size to ~work_ms
    times = []
    end = time.monotonic() + float(seconds)
    period = 1.0 / float(rate_hz)
    while time.monotonic() < end:
        t0 = time.perf_counter()
        task(n)
        dt = time.perf_counter() - t0
        times.append(dt)
        time.sleep(max(0.0, period - dt))
    a = 1e3 * np.asarray(times[2:] or times)
    p50, p99 = float(np.percentile(a, 50)), float(np.percentile(a, 99))
    return {"task_p50_ms": p50, "task_p99_ms": p99, "task_max_ms": float(a.max()),
            "p99_over_p50": p99 / p50 if p50 > 0 else float("nan"), "n": int(a.size)}


class Watchdog:
    """True while the last `feed()` is older than `timeout` s."""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic):
        self.timeout, self.clock = float(timeout), clock
        self.last: Optional[float] = None
        self.trips = 0
        self._was_stale = False

    def feed(self) -> None:
        self.last = self.clock()
        self._was_stale = False

    def stale(self) -> bool:
        s = self.last is None or self.clock() - self.last > self.timeout
        if s and not self._was_stale and self.last is not None:
            self.trips += 1
        self._was_stale = s
        return s


# ---- configuration vector ----------------------------------------------------------------------
def config_feature_names(spec: PolicySpec) -> list[str]:
    """'group/element' names of the configuration vector, in order."""
    out = []
    for g, n in spec.config_groups:
        out.extend(f"{g}/{e}" for e in groups.group(g).element_names(n, spec.joint_names))
    return out


#: ee kinematics: (q, v) -> (ee position (3,), ee velocity (3,)) in the base frame
EEFunction = groups.EEFunction


class ConfigBuilder:
    """Builds the policy's configuration vector from joint positions and velocities."""

    def __init__(self, spec: PolicySpec, ee: Optional[EEFunction] = None):
        self.spec, self.ee = spec, ee
        self.names = config_feature_names(spec)
        if groups.needs_kinematics(spec.group_names) and ee is None:
            raise ValueError(f"policy {spec.name!r} takes end-effector groups but no kinematics was given")

    def build(self, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        vals = groups.values(self.spec.group_names, q, v, self.ee)
        parts = []
        for g, n in self.spec.config_groups:
            x = vals[g]
            if x.shape != (n,):
                raise ValueError(f"configuration group {g!r} has {x.shape} values, expected ({n},)")
            parts.append(x)
        out = np.concatenate(parts)
        if not np.all(np.isfinite(out)):
            raise ValueError("configuration contains NaN or infinite values")
        return out


# ---- robot model adapters ----------------------------------------------------------------------
class RobotAdapter:
    """A RobotModel seen in the policy's joint order: ee kinematics, importance factors, joint markers."""

    def __init__(self, spec: "PolicySpec | Sequence[str]", robot: "str | object" = "baxter_right_arm"):
        """`spec`: the policy's spec or just its joint names (in the policy's order); `robot`: a
        RobotModel, a robot name (urdf/) or a URDF file."""
        from pathlib import Path

        from .robot.model import RobotModel

        if isinstance(robot, RobotModel):
            self.model = robot
        else:
            self.model = RobotModel(str(robot)) if Path(str(robot)).is_file() else RobotModel.from_name(str(robot))
        joints = list(getattr(spec, "joint_names", spec))
        names = list(self.model.joint_names)
        missing = [j for j in joints if j not in names]
        if missing or len(names) != len(joints):
            raise ValueError(f"robot {Path(str(self.model.urdf_path)).stem!r} has joints {names}; the policy drives "
                             f"{joints}")
        self.to_model = np.array([joints.index(n) for n in names])  # model order <- policy order
        self.to_policy = np.argsort(self.to_model)

    def ee(self, q: np.ndarray, v: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
        qm, vm = np.asarray(q)[self.to_model], np.asarray(v)[self.to_model]
        return self.model.ee_position(qm), self.model.ee_velocity(qm, vm)

    def importance(self, q: np.ndarray, v: np.ndarray, dt: float, method: str = "linearized") -> np.ndarray:
        """alpha (n_joints,) in the policy's joint order for one state."""
        a = self.model.importance_factors(np.asarray(q)[self.to_model], np.asarray(v)[self.to_model], dt,
                                          method=method)
        return np.asarray(a)[self.to_policy]

    def joint_positions(self, q: np.ndarray) -> np.ndarray:
        """(n_joints, 3) joint positions in the policy's joint order, then the end effector: (n+1, 3)."""
        p = self.model.joint_positions(np.asarray(q)[self.to_model])
        return np.concatenate([p[:-1][self.to_policy], p[-1:]], axis=0)


def importance_per_step(spec: PolicySpec, configs: np.ndarray, robot: "Optional[RobotAdapter]", dt: float,
                        method: str = "linearized") -> np.ndarray:
    """The importance factors alpha (N, n_joints) for configuration vectors (N, D) or one (D,) -> (n_joints,).

    The one place where alpha is computed from observations: the attribution node, `analyze` (bags),
    `explain` and `analyze-rollout` all call it, so live and offline explanations weigh the torques
    alike. alpha = 1 without a robot model or when the configuration has no joint positions (the
    velocities default to zero when absent)."""
    c = np.asarray(configs, dtype=np.float64)
    one = c.ndim == 1
    c = np.atleast_2d(c)
    if c.shape[1] != spec.config_dim:
        raise ValueError(f"configuration vectors have {c.shape[1]} values, "
                         f"policy {spec.name!r} takes {spec.config_dim}")
    sl = spec.group_slices()
    J = spec.n_joints
    if robot is None or "joint_position" not in sl:
        out = np.ones((len(c), J))
    else:
        out = np.empty((len(c), J))
        zero = np.zeros(J)
        for i, row in enumerate(c):
            v = row[sl["joint_velocity"]] if "joint_velocity" in sl else zero
            out[i] = robot.importance(row[sl["joint_position"]], v, dt, method)
    return out[0] if one else out
