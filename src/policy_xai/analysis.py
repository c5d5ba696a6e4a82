"""Explanations over a sequence of observations (an episode, a recording), in batches.

Core code shared by `policy-xai explain`, the rollout analysis and the bag analysis: no rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from . import groups
from .attribution import CAM_METHODS, explain
from .device import to_numpy
from .policy import VisuomotorPolicy


@dataclass
class MethodSeries:
    """One method's explanations of N observations (numpy, float32)."""

    method: str
    image: np.ndarray  # (N, H, W)
    config: np.ndarray  # (N, D)
    points: np.ndarray  # (N, K) relevance per feature point
    ratios: np.ndarray  # (N, G) NaN for the Grad-CAM family
    ratio_names: tuple


@dataclass
class SequenceResult:
    torques: np.ndarray  # (N, J)
    alpha: np.ndarray  # (N, J)
    feature_points: np.ndarray  # (N, K, 2)
    methods: dict = field(default_factory=dict)  # method -> MethodSeries
    times: Optional[np.ndarray] = None  # (N,) seconds

    def __len__(self) -> int:
        return int(self.torques.shape[0])


def alphas_for(robot, spec, configs: np.ndarray, dt: float, method: str = "linearized") -> np.ndarray:
    """Importance factors per step (N, n_joints) from a robot model (RobotModel, name or None) and the
    joint positions/velocities in the configuration vectors (N, D); see live.importance_per_step."""
    from .live import RobotAdapter, importance_per_step

    adapter = None if robot is None else RobotAdapter(spec, robot)
    return importance_per_step(spec, configs, adapter, dt, method)


def explain_sequence(
    policy: VisuomotorPolicy,
    images: np.ndarray,
    configs: np.ndarray,
    methods: Sequence[str] = ("dtd",),
    alphas: Optional[np.ndarray] = None,
    batch: int = 32,
    layer: int = 0,
    progress: Optional[Callable[[int], None]] = None,
) -> SequenceResult:
    """Explain N observations (images (N, H, W, 3) uint8, configs (N, D)) with each method."""
    N = len(images)
    if len(configs) != N:
        raise ValueError(f"{N} images but {len(configs)} configurations")
    if alphas is not None and len(alphas) != N:
        raise ValueError(f"{N} observations but {len(alphas)} alpha rows")
    out = {m: {"image": [], "config": [], "points": [], "ratios": []} for m in methods}
    torques, alpha_used, fps = [], [], []
    names = None
    for s in range(0, N, batch):
        e_ = slice(s, min(N, s + batch))
        img = policy.prepare_image(images[e_])
        cfg = policy.prepare_config(configs[e_])
        a = None if alphas is None else np.asarray(alphas[e_], dtype=np.float64)
        for k, m in enumerate(methods):
            ex = explain(policy, img, cfg, m, alpha=a, layer=layer)
            d = out[m]
            d["image"].append(to_numpy(ex.image).astype(np.float32))
            d["config"].append(to_numpy(ex.config).astype(np.float32))
            d["points"].append(to_numpy(ex.points).astype(np.float32))
            d["ratios"].append(ex.ratio_array().astype(np.float32))
            names = ex.ratio_names()
            if k == 0:
                torques.append(to_numpy(ex.torques))
                alpha_used.append(to_numpy(ex.alpha))
                fps.append(to_numpy(ex.feature_points))
        if progress:
            progress(e_.stop - e_.start)
    res = SequenceResult(np.concatenate(torques), np.concatenate(alpha_used), np.concatenate(fps))
    for m, d in out.items():
        res.methods[m] = MethodSeries(m, *(np.concatenate(d[k]) for k in ("image", "config", "points", "ratios")),
                                      ratio_names=tuple(names))
    return res


def ratio_table(res: SequenceResult) -> list[dict]:
    """Rows (step, time, method, one column per group) for CSV / Parquet."""
    rows = []
    for m, ser in res.methods.items():
        if m in CAM_METHODS:
            continue
        for i in range(len(res)):
            row = {"step": i, "time": float(res.times[i]) if res.times is not None else float(i), "method": m}
            row.update({n: float(v) for n, v in zip(ser.ratio_names, ser.ratios[i])})
            rows.append(row)
    return rows


def summary_stats(res: SequenceResult) -> dict:
    """method -> {group: (mean, std)} and the image:configuration split."""
    out = {}
    for m, ser in res.methods.items():
        if m in CAM_METHODS:
            continue
        mean = np.nanmean(ser.ratios, axis=0)
        std = np.nanstd(ser.ratios, axis=0)
        out[m] = {n: (float(a), float(b)) for n, a, b in zip(ser.ratio_names, mean, std)}
        out[m]["image:configuration"] = (float(mean[0]), float(1 - mean[0]))
    return out


def rank_consistency(res: SequenceResult, methods: Iterable[str] = ("dtd", "rap", "gbp")) -> dict:
    """Spearman rank correlation of each group's ratio curve between pairs of methods."""
    from scipy.stats import spearmanr

    ms = [m for m in methods if m in res.methods]
    out = {}
    for i, a in enumerate(ms):
        for b in ms[i + 1:]:
            A, B = res.methods[a].ratios, res.methods[b].ratios
            per = {}
            for g, name in enumerate(res.methods[a].ratio_names):
                if np.nanstd(A[:, g]) > 0 and np.nanstd(B[:, g]) > 0:
                    per[name] = float(spearmanr(A[:, g], B[:, g]).statistic)
                else:
                    per[name] = float("nan")
            out[f"{a}~{b}"] = per
    return out


def _position_velocity(ratios: np.ndarray, names: Sequence[str]) -> dict:
    """image, position (joint + ee position), velocity (joint + ee velocity) ratio series (N,)."""
    idx = {n: i for i, n in enumerate(names)}
    pick = lambda gs: sum((ratios[:, idx[g]] for g in gs if g in idx), np.zeros(len(ratios)))  # noqa: E731
    return {"image": ratios[:, idx["image"]], "position": pick(groups.of_quantity("position")),
            "velocity": pick(groups.of_quantity("velocity"))}


def trend_stats(ratios: np.ndarray, names: Sequence[str], early: float = 0.1, late: float = 0.5) -> dict:
    """The paper's early-image / later-position trend (Sec. IV-C2) in numbers: mean image, position
    and velocity ratio over the first `early` fraction of an episode's steps vs. its last `late`
    fraction. ratios: (N, G) for one episode (or the per-step mean over episodes)."""
    N = len(ratios)
    e = max(1, int(round(early * N)))
    l0 = min(N - 1, int(round((1 - late) * N)))
    out = {}
    for k, v in _position_velocity(np.asarray(ratios, float), names).items():
        out[k] = {"early": float(np.nanmean(v[:e])), "late": float(np.nanmean(v[l0:])), "first_step": float(v[0])}
    return out


def change_reaction(ratios: np.ndarray, names: Sequence[str], change: int, window: int = 5) -> dict:
    """Fig. 6 in numbers: mean image/position/velocity ratio over `window` steps before the target
    change, over the `window` steps from it, and the extreme value reached in those steps."""
    out = {}
    for k, v in _position_velocity(np.asarray(ratios, float), names).items():
        before = v[max(0, change - window):change]
        after = v[change:change + window]
        out[k] = {"before": float(np.nanmean(before)), "after": float(np.nanmean(after)),
                  "after_min": float(np.nanmin(after)), "after_max": float(np.nanmax(after))}
    return out
