"""What the live nodes compute around one decision (core: no rclpy, numpy only).

* `torque_limits`: the limits in force: the policy's own, tightened by a `torque_limits` parameter.
* `clip_command`: the command that is sent: clipped to the limits, refused when not finite.
* `valid_command`: the check of a command an arm receives (sim_node): one finite value per joint.
* `ReproductionCheck`: does the explanation reproduce the decision that was published? The
  attribution node recomputes the policy's torques and compares them with the policy node's
  /policy_xai/torques; a user_explainer_node compares its model's outputs with the acting node's
  /policy_xai/actions (`StampedOutputs` keeps those by stamp until the explanation gets there).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Optional, Sequence

import numpy as np


def torque_limits(base, extra, names: Sequence[str], what: str = "joints") -> np.ndarray:
    """|limit| per joint: `base` (the policy's limits; np.inf for none) where `extra` is '' or None,
    else the smaller of `base` and |extra| (one value per name; a wrong count is a ValueError that
    names the joints, `what` says what they are: joints, actions)."""
    base = np.asarray(base, dtype=np.float64).ravel()
    if extra in ("", None):
        return base.copy()
    extra = np.abs(np.asarray(extra, dtype=np.float64).ravel())
    if extra.shape != base.shape:
        raise ValueError(f"torque_limits has {extra.size} values for {base.size} {what} {list(names)}")
    return np.minimum(base, extra)


def clip_command(values, limits) -> Optional[np.ndarray]:
    """`values` clipped to [-limits, limits] (float64), or None when any of them is NaN or infinite
    (the caller then commands zero torque: never a non-finite command)."""
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        return None
    limits = np.asarray(limits, dtype=np.float64)
    return np.clip(v, -limits, limits)


def valid_command(values, joint_names: Sequence[str]) -> np.ndarray:
    """A received torque command as float64, one finite value per joint of `joint_names` (in their
    order), else a ValueError that says what is wrong."""
    tau = np.asarray(values, dtype=np.float64)
    n = len(joint_names)
    if tau.shape != (n,):
        raise ValueError(f"command has {tau.size} values, the arm has {n} joints {list(joint_names)}")
    if not np.all(np.isfinite(tau)):
        raise ValueError(f"command contains NaN/inf: {tau.tolist()}")
    return tau


def relative_tolerance(published, rtol: float = 1e-3) -> float:
    """rtol x max(1, max |published|): an absolute tolerance that grows with large outputs."""
    p = np.abs(np.asarray(published, dtype=np.float64))
    return float(rtol) * max(1.0, float(p.max()) if p.size else 0.0)


class ReproductionCheck:
    """Compares recomputed outputs with the published ones, decision by decision, and keeps what
    /diagnostics reports: how many were checked, how many differed by more than the tolerance, the
    largest difference seen."""

    def __init__(self):
        self.checked = 0
        self.mismatches = 0
        self.max_diff = 0.0

    def compare(self, recomputed, published, tolerance: float, limits=None) -> Optional[float]:
        """max |recomputed - published| (recomputed first clipped to [-limits, limits] when given, as
        the published command was); 0 for empty outputs. Counted; returns the difference when it
        exceeds `tolerance` (a mismatch), else None."""
        r = np.asarray(recomputed, dtype=np.float64)
        p = np.asarray(published, dtype=np.float64)
        if limits is not None:
            lim = np.asarray(limits, dtype=np.float64)
            r = np.clip(r, -lim, lim)
        diff = float(np.max(np.abs(r - p))) if p.size else 0.0
        self.checked += 1
        self.max_diff = max(self.max_diff, diff)
        if diff > float(tolerance):
            self.mismatches += 1
            return diff
        return None


class StampedOutputs:
    """The last `keep` published outputs by observation stamp (thread-safe): what an explainer
    compares its recomputed outputs with, when the explanation of that stamp is done."""

    def __init__(self, keep: int = 50):
        self.keep = int(keep)
        self._items: "OrderedDict[int, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()

    def put(self, stamp: int, values) -> None:
        with self._lock:
            self._items[int(stamp)] = np.asarray(values, dtype=np.float64)
            while len(self._items) > self.keep:
                self._items.popitem(last=False)

    def get(self, stamp: int) -> Optional[np.ndarray]:
        with self._lock:
            return self._items.get(int(stamp))

    def __len__(self) -> int:
        return len(self._items)
