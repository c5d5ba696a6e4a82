"""Comparing relevance ratio series: two runs, or two methods on one run (curves, rank correlation)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .common import BagError
from .observations import Observations
from .tables import _plt, read_table, write_table

@dataclass
class RatioSeries:
    label: str
    method: str
    steps: np.ndarray
    stamps: Optional[np.ndarray]
    times: np.ndarray
    names: tuple
    ratios: np.ndarray  # (N, G)


def load_ratio_series(ref: str, method: Optional[str] = None) -> RatioSeries:
    """`DIR[:method]` (an analyze output folder) or a ratios .csv / .parquet file [:method]."""
    path, meth = ref, method
    if ":" in ref and not Path(ref).exists():
        path, meth = ref.rsplit(":", 1)
    p = Path(path)
    if p.is_dir():
        cand = [p / "ratios.parquet", p / "ratios.csv"]
        p = next((c for c in cand if c.is_file()), None)
        if p is None:
            raise FileNotFoundError(f"{path} holds no ratios.csv / ratios.parquet (run `policy-xai analyze` first)")
    elif not p.is_file():
        raise FileNotFoundError(f"no such ratio table or analyze folder: {path}")
    tab = read_table(p)
    if "method" not in tab:
        raise BagError(f"{p} is not a ratio table (no 'method' column)")
    methods = list(dict.fromkeys(tab["method"].tolist()))
    meth = meth or methods[0]
    if meth not in methods:
        raise BagError(f"{p} has methods {methods}, not {meth!r}")
    sel = tab["method"] == meth
    groups = tuple(k for k in tab if k not in ("step", "stamp_ns", "time", "method"))
    ratios = np.stack([np.asarray(tab[g][sel], float) for g in groups], axis=1)
    stamps = np.asarray(tab["stamp_ns"][sel], np.int64) if "stamp_ns" in tab else None
    return RatioSeries(f"{Path(path).name}:{meth}", meth, np.asarray(tab["step"][sel]), stamps,
                       np.asarray(tab["time"][sel], float), groups, ratios)


def series_from_result(res, obs: Observations, method: str, label: str = "") -> RatioSeries:
    ser = res.methods[method]
    return RatioSeries(label or method, method, np.arange(len(res)), obs.stamps.copy(), np.asarray(res.times, float),
                       tuple(ser.ratio_names), ser.ratios.astype(float))


def align(a: RatioSeries, b: RatioSeries, how: str = "auto", tolerance: float = 0.02):
    """Index pairs (ia, ib) of matching steps: same stamp, nearest time (within tolerance s), or same step."""
    if how == "auto":
        if a.stamps is not None and b.stamps is not None:
            common = np.intersect1d(a.stamps, b.stamps)
            if len(common) >= 0.5 * min(len(a.stamps), len(b.stamps)) and len(common):
                how = "stamp"
        if how == "auto":
            how = "time"
    if how == "stamp":
        if a.stamps is None or b.stamps is None:
            raise BagError("stamp alignment needs stamp_ns columns in both tables")
        _, ia, ib = np.intersect1d(a.stamps, b.stamps, return_indices=True)
    elif how == "time":
        j = np.clip(np.searchsorted(b.times, a.times), 1, max(1, len(b.times) - 1))
        if len(b.times) == 1:
            j = np.zeros_like(j)
        else:
            j = np.where(np.abs(b.times[j - 1] - a.times) <= np.abs(b.times[j] - a.times), j - 1, j)
        ok = np.abs(b.times[j] - a.times) <= tolerance
        ia, ib = np.nonzero(ok)[0], j[ok]
    elif how == "step":
        n = min(len(a.steps), len(b.steps))
        ia = ib = np.arange(n)
    else:
        raise BagError(f"alignment must be auto, stamp, time or step, got {how!r}")
    return np.asarray(ia), np.asarray(ib), how


def _rank_corr(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def compare_series(a: RatioSeries, b: RatioSeries, out_dir: "str | Path", how: str = "auto", window: int = 20,
                   tolerance: float = 0.02, stem: str = "compare") -> dict:
    """Overlaid ratio curves, rank correlation over time (per step across groups, and per group in a
    sliding window) and the overall numbers; writes <stem>_curves.png, <stem>_rank.png, <stem>.csv."""
    names = [g for g in a.names if g in b.names]
    if not names:
        raise BagError(f"no common ratio groups: {a.names} vs {b.names}")
    ia, ib, how = align(a, b, how, tolerance)
    if len(ia) == 0:
        raise BagError(f"{a.label} and {b.label} have no matching steps (alignment {how!r})")
    A = a.ratios[ia][:, [a.names.index(g) for g in names]]
    B = b.ratios[ib][:, [b.names.index(g) for g in names]]
    t = a.times[ia]
    per_step = np.array([_rank_corr(A[i], B[i]) for i in range(len(ia))])
    w = max(3, min(window, len(ia)))
    rolling = np.full((len(ia), len(names)), np.nan)
    for i in range(len(ia)):
        lo, hi = max(0, i - w // 2), min(len(ia), i - w // 2 + w)
        if hi - lo >= 3:
            for g in range(len(names)):
                rolling[i, g] = _rank_corr(A[lo:hi, g], B[lo:hi, g])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _compare_figures(out_dir, stem, a.label, b.label, names, t, A, B, per_step, rolling, w)
    rows = [{"time": float(t[i]), "stamp_ns": int(a.stamps[ia[i]]) if a.stamps is not None else -1,
             "rank_corr_groups": float(per_step[i]),
             **{f"a/{g}": float(A[i, k]) for k, g in enumerate(names)},
             **{f"b/{g}": float(B[i, k]) for k, g in enumerate(names)},
             **{f"window_rank_corr/{g}": float(rolling[i, k]) for k, g in enumerate(names)}} for i in range(len(ia))]
    write_table(rows, out_dir / stem)
    mean_rank = float(np.nanmean(per_step)) if np.any(np.isfinite(per_step)) else float("nan")
    return {
        "a": a.label, "b": b.label, "alignment": how, "matched_steps": int(len(ia)),
        "steps": [int(len(a.ratios)), int(len(b.ratios))],
        "overall_rank_corr_per_group": {g: _rank_corr(A[:, k], B[:, k]) for k, g in enumerate(names)},
        "mean_rank_corr_of_groups_per_step": mean_rank,
        "mean_abs_ratio_diff": {g: float(np.nanmean(np.abs(A[:, k] - B[:, k]))) for k, g in enumerate(names)},
        "max_abs_ratio_diff": float(np.nanmax(np.abs(A - B))),
        "mean_ratios": {a.label: {g: float(np.nanmean(A[:, k])) for k, g in enumerate(names)},
                        b.label: {g: float(np.nanmean(B[:, k])) for k, g in enumerate(names)}},
        "files": [f"{stem}_curves.png", f"{stem}_rank.png", f"{stem}.csv"],
    }


def _compare_figures(out_dir: Path, stem: str, label_a: str, label_b: str, names: list, t: np.ndarray,
                     A: np.ndarray, B: np.ndarray, per_step: np.ndarray, rolling: np.ndarray, w: int) -> None:
    """<stem>_curves.png (the ratios overlaid) and <stem>_rank.png (rank correlations over time)."""
    plt = _plt()
    from ..figures import GROUP_STYLE

    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.6 * len(names) + 0.6), sharex=True, squeeze=False)
    for ax, g in zip(axes[:, 0], names):
        c = GROUP_STYLE.get(g, ("#777", "-"))[0]
        ax.plot(t, A[:, names.index(g)], color=c, lw=1.5, label=label_a)
        ax.plot(t, B[:, names.index(g)], color=c, lw=1.5, ls="--", alpha=0.8, label=label_b)
        ax.set_ylabel(g.replace("_", "\n"), fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time [s]")
    fig.suptitle(f"relevance ratios: {label_a} (solid) vs {label_b} (dashed)")
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}_curves.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    axes[0].plot(t, per_step, color="black", lw=1.2)
    axes[0].set_ylabel("rank corr. of\ngroups per step")
    axes[0].set_ylim(-1.05, 1.05)
    for g in range(len(names)):
        axes[1].plot(t, rolling[:, g], color=GROUP_STYLE.get(names[g], ("#777", "-"))[0], lw=1.2, label=names[g])
    axes[1].set_ylabel(f"rank corr. per group\n({w}-step window)")
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].legend(fontsize=7, ncol=3)
    axes[1].set_xlabel("time [s]")
    fig.suptitle(f"rank correlation over time: {label_a} vs {label_b}")
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}_rank.png", dpi=110)
    plt.close(fig)
