"""What the fleet makes of the analysed bags together: steps.parquet (every bag's per-step tables,
with episodes), where the task time went, and the dataset report (per-bag medians, the bags that
stand out, the ratio distributions figure)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

#: a pause of at least this many seconds between two steps of a bag starts a new episode
EPISODE_GAP_S = 1.0
#: a bag stands out when its median ratio of a group is this many robust standard deviations (1.4826
#: x the median absolute deviation over the bags' medians) from the fleet's median (and >= 0.05 away)
STAND_OUT_Z = 3.5


def episodes_of(steps: Sequence[int], gaps: Sequence[dict], episode_gap: float = EPISODE_GAP_S) -> list[int]:
    """Episode index per step: 0 until the first pause of at least `episode_gap` s in the recording
    (a gap of analyze's summary.json: {"after_step", "length_s"}), then 1, ... ."""
    cuts = sorted(int(g["after_step"]) for g in gaps if float(g.get("length_s", 0.0)) >= episode_gap)
    import bisect

    return [bisect.bisect_left(cuts, int(s)) for s in steps]


def merge_steps(out: Path, records: Sequence[dict], episode_gap: float = EPISODE_GAP_S) -> int:
    """out/steps.parquet: each bag's ratios (one row per step and method) joined with its importance
    factors and torques per step, with `bag` and `episode` (episodes_of) columns; returns the number of
    rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for r in records:
        d = Path(out, "bags", r["name"])
        if not (d / "ratios.parquet").is_file():
            continue
        ratios = pq.read_table(d / "ratios.parquet")
        imp = pq.read_table(d / "importance.parquet")
        extra = [c for c in imp.column_names if c not in ("step", "stamp_ns", "time")]
        row = {int(s): i for i, s in enumerate(imp.column("step").to_pylist())}
        take = pa.array([row[int(s)] for s in ratios.column("step").to_pylist()], pa.int64())
        t = ratios
        for c in extra:  # ratio rows keep their order (step, method as written)
            t = t.append_column(c, imp.column(c).take(take))
        try:
            gaps = json.loads((d / "summary.json").read_text()).get("gaps", {}).get("gaps", [])
        except (OSError, ValueError, AttributeError):
            gaps = []
        episodes = episodes_of(t.column("step").to_pylist(), gaps, episode_gap)
        t = t.add_column(0, "episode", pa.array(episodes, pa.int32()))
        t = t.add_column(0, "bag", pa.array([r["name"]] * len(t), pa.string()))
        tables.append(t)
    if not tables:
        (Path(out) / "steps.parquet").unlink(missing_ok=True)
        return 0
    table = pa.concat_tables(tables, promote_options="default")
    pq.write_table(table, Path(out) / "steps.parquet")
    return len(table)


def stage_seconds(records: Sequence[dict]) -> dict:
    """Where the analysed bags' task time went (s, summed over bags): reading + pairing (decode),
    importance factors, explanation, and the rest (tables, figures, output bag, start-up), so the
    limit of a run is visible."""
    tot = {"read_and_pair": 0.0, "importance": 0.0, "explain": 0.0, "other": 0.0, "task": 0.0}
    for r in records:
        t, sec = r.get("timing") or {}, r.get("seconds")
        if not t or sec is None:
            continue
        parts = [float(t.get(k) or 0.0) for k in ("read_and_pair_s", "importance_s", "explain_s")]
        for k, v in zip(("read_and_pair", "importance", "explain"), parts):
            tot[k] += v
        tot["other"] += max(0.0, float(sec) - sum(parts))
        tot["task"] += float(sec)
    return {k: round(v, 3) for k, v in tot.items()}


def dataset_report(out: Path, z_limit: float = STAND_OUT_Z) -> dict:
    """From out/steps.parquet: per bag and group the median ratio (first method), the bags that stand
    out (robust z of their median against the other bags' medians), and out/figures/ratios_per_bag.png
    (one box per bag and group, stand-outs in red). Returns {"per_bag", "stand_out", "figures"}."""
    import numpy as np
    import pyarrow.parquet as pq

    from ..figures import ratio_distributions

    table = pq.read_table(Path(out) / "steps.parquet")
    cols = table.column_names
    methods = list(dict.fromkeys(table.column("method").to_pylist()))
    if not methods:
        return {"per_bag": {}, "stand_out": [], "figures": []}
    method = methods[0]
    fixed = {"bag", "episode", "step", "stamp_ns", "time", "method"}
    groups = [c for c in cols if c not in fixed and "/" not in c]
    meth = np.asarray(table.column("method").to_pylist())
    bag_col = np.asarray(table.column("bag").to_pylist())
    sel = meth == method
    per_bag: dict = {}
    values: dict = {}
    for b in dict.fromkeys(bag_col[sel].tolist()):
        m = sel & (bag_col == b)
        values[b] = {g: np.asarray(table.column(g).to_numpy(zero_copy_only=False), float)[m] for g in groups}
        per_bag[b] = {g: (float(np.nanmedian(v)) if np.isfinite(v).any() else None) for g, v in values[b].items()}
    stand_out = []
    if len(per_bag) >= 3:
        for g in groups:
            meds = {b: v[g] for b, v in per_bag.items() if v[g] is not None}
            if len(meds) < 3:
                continue
            arr = np.asarray(list(meds.values()))
            for b, v in meds.items():
                others = arr[[k != b for k in meds]]
                c = float(np.median(others))
                mad = 1.4826 * float(np.median(np.abs(others - c)))
                z = (v - c) / mad if mad > 0 else (float("inf") if abs(v - c) > 0.05 else 0.0)
                if abs(z) >= z_limit and abs(v - c) >= 0.05:
                    stand_out.append({"bag": b, "group": g, "method": method, "median": round(v, 4),
                                      "others_median": round(c, 4),
                                      "robust_z": round(z, 2) if np.isfinite(z) else None})
    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(exist_ok=True)
    marked = sorted({s["bag"] for s in stand_out})
    f = ratio_distributions(fig_dir / "ratios_per_bag.png", values, groups, marked,
                            title=f"relevance ratios per bag ({method}); red: stands out")
    return {"per_bag": per_bag, "stand_out": stand_out, "figures": [str(f.relative_to(out))]}
