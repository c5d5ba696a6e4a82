"""Explaining the paired observations offline, finding gaps in them, and comparing with the explanations
a live attribution node recorded."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..parameters import NODES
from .common import BagError
from .observations import LiveExplanations, Observations

def importance_factors(spec, configs: np.ndarray, importance: str = "dynamics", robot: str = "baxter_right_arm",
                       dt: float = 0.05) -> np.ndarray:
    """alpha per step, computed exactly like the attribution node does (RobotAdapter, policy joint order)."""
    if importance == "uniform":
        return np.ones((len(configs), spec.n_joints))
    if importance != "dynamics":
        raise BagError(f"importance must be 'dynamics' or 'uniform', got {importance!r}")
    from ..live import RobotAdapter, importance_per_step

    adapter = RobotAdapter(spec, robot) if "joint_position" in spec.group_slices() else None
    return importance_per_step(spec, configs, adapter, dt)


@dataclass
class Timing:
    read_s: float = 0.0
    alpha_s: float = 0.0
    explain_s: float = 0.0
    steps: int = 0
    methods: int = 1

    @property
    def steps_per_s(self) -> float:
        """Explained steps per second (all methods of a step count as one step)."""
        return self.steps / self.explain_s if self.explain_s > 0 else float("nan")


def explain_observations(policy, obs: Observations, methods: Sequence[str], alphas: np.ndarray, batch: int = 32,
                         layer: int = 0, progress: Optional[Callable[[int], None]] = None,
                         timing: Optional[Timing] = None):
    """analysis.explain_sequence over the paired observations, timed; times are seconds from the first stamp."""
    from ..analysis import explain_sequence

    t = time.perf_counter()
    res = explain_sequence(policy, obs.images, obs.configs, list(methods), alphas=alphas, batch=batch, layer=layer,
                           progress=progress)
    if timing is not None:
        timing.explain_s, timing.steps, timing.methods = time.perf_counter() - t, len(obs), len(methods)
    res.times = (obs.stamps - obs.stamps[0]) * 1e-9 if len(obs) else np.zeros(0)
    return res


def find_gaps(stamps: np.ndarray, factor: float = 3.0, backwards: Optional[dict] = None,
              late_stamps: Sequence[int] = (), largest_backward_ns: int = 0) -> dict:
    """Time gaps between the paired observations and stamps going backwards.

    A gap is a step longer than `factor` x the median period. A gap that holds stamps of observations
    which are in the bag but arrived late (`late_stamps`, Observations.late_stamps: their stamps went
    backwards, so they were not paired) is no gap of the recording: it is listed under "out_of_order"
    instead. `backwards`: topic -> how often the stamps went backwards on it (Observations.backwards);
    "backwards" is the most on one topic. Without it, backward steps between paired stamps count."""
    stamps = np.asarray(stamps, np.int64)
    per_topic = dict(backwards or {})
    res = {"median_period_s": float("nan"), "gaps": [], "out_of_order": [],
           "backwards": max(per_topic.values(), default=0), "backwards_per_topic": per_topic,
           "largest_backward_s": largest_backward_ns * 1e-9, "late_unpaired": len(late_stamps)}
    if len(stamps) < 2:
        return res
    d = np.diff(stamps) * 1e-9
    if backwards is None:
        res["backwards"] = int(np.sum(d < 0))
        if np.any(d < 0):
            res["largest_backward_s"] = float(-d.min())
    if len(stamps) < 3:
        return res
    pos = d[d > 0]
    med = float(np.median(pos)) if len(pos) else float("nan")
    res["median_period_s"] = med
    if med != med:
        return res
    t = (stamps - stamps[0]) * 1e-9
    late = np.asarray(sorted(late_stamps), np.int64)
    for i in np.nonzero(d > factor * med)[0]:
        g = {"after_step": int(i), "from_s": float(t[i]), "to_s": float(t[i + 1]), "length_s": float(d[i])}
        n = int(np.sum((late > stamps[i]) & (late < stamps[i + 1])))
        if n:
            res["out_of_order"].append({**g, "late_observations": n})
        else:
            res["gaps"].append(g)
    return res


def compare_live(res, obs: Observations, live: LiveExplanations, method: str, spec) -> dict:
    """Largest differences between the recorded live explanations and the recomputation (same stamps)."""
    idx = {int(s): i for i, s in enumerate(obs.stamps)}
    ser = res.methods[method]
    out: dict = {"method": method, "live_methods": sorted(live.methods)}

    def record(name, diffs, scale=None):
        if not diffs:
            return
        k = int(np.argmax([d for d, _ in diffs]))
        entry = {"matched": len(diffs), "max_abs_diff": float(diffs[k][0]), "at_stamp": int(diffs[k][1])}
        if scale is not None:
            entry["relative_to_max"] = float(scale)
        out[name] = entry

    d = []
    for s, (names, v) in live.ratios.items():
        if s in idx and tuple(names) == tuple(ser.ratio_names):
            d.append((float(np.max(np.abs(ser.ratios[idx[s]] - v))), s))
    record("ratios", d)
    d = []
    for s, v in live.relevance_config.items():
        if s in idx and len(v) == ser.config.shape[1]:
            d.append((float(np.max(np.abs(ser.config[idx[s]] - v))), s))
    record("relevance_config", d)
    d, top, worst = [], 0.0, (0.0, None)
    for s, v in live.relevance_image.items():
        if s in idx and v.shape == ser.image.shape[1:]:
            diff = float(np.max(np.abs(ser.image[idx[s]] - v)))
            d.append((diff, s))
            vmax = float(np.abs(v).max())
            top = max(top, vmax)
            if diff / (vmax or 1.0) > worst[0]:
                worst = (diff / (vmax or 1.0), s)
    # relative to the largest relevance of the recording (the scale of a per-video heatmap); the
    # worst single step is reported too: steps whose torques are all near zero have tiny maps where
    # float rounding (and Eq. 1 sign flips of ~0 torques) weigh more
    record("relevance_image", d, max(x for x, _ in d) / (top or 1.0) if d else None)
    if d:
        out["relevance_image"]["worst_step_relative"] = float(worst[0])
        out["relevance_image"]["worst_step_stamp"] = int(worst[1]) if worst[1] is not None else None
    d = []
    for s, v in live.importance.items():
        if s in idx and len(v) == res.alpha.shape[1]:
            d.append((float(np.max(np.abs(res.alpha[idx[s]] - v))), s))
    record("importance", d)
    if obs.recorded_torques:
        lim = np.asarray(spec.torque_limits)
        d = [(float(np.max(np.abs(np.clip(res.torques[idx[s]], -lim, lim) - tau))), s)
             for s, tau in obs.recorded_torques.items() if s in idx]
        record("torques", d)
    matched = [v["matched"] for k, v in out.items() if isinstance(v, dict)]
    out["matched_steps"] = max(matched) if matched else 0
    tol = float(NODES["attribution_node"].parameters["reproduce_tolerance"])
    if "torques" in out and out["torques"]["max_abs_diff"] > tol:
        out["torque_warning"] = (f"the recomputed torques differ from the recorded ones by up to "
                                 f"{out['torques']['max_abs_diff']:.3g} N·m: the bag was recorded with other weights "
                                 "or another spec than --policy")
    if live.methods and method not in live.methods:
        out["warning"] = (f"the live attribution node used {sorted(live.methods)}, this recomputation {method!r}: "
                          "differences are expected")
    return out
