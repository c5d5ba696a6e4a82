"""Summary numbers, tables and figures of a faithfulness run (run.faithfulness).

summarise(results) -> one row per (task, method):
  deletion_<op>[_p<unit>]   mean over states of the deletion AUC (1 = as much as removing the whole
                            image at every fraction); "random" is the random-order baseline
  insertion_<op>[_p<unit>]  mean over states of the insertion AUC (recovery)
  pointing                  mean pointing ratio on the task's main object (1 = uniform map)
  topk                      mean top-k effect / mean object effect on the main object (median colour)
  topk_median               median over states of the per-state top-k ratio
  pointing_<part> / topk_<part>   the same per part (door: panel, handle, frame)
  config_rank               Spearman rank correlation, pooled over states and groups, between the
                            method's ratios (image and each configuration group) and the ablation
                            effects' shares (image removed with the median colour; each group set to
                            its training mean), NaN for methods without ratios
  ms                        median ms per explained state (B = 1, the run's thread count)
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from . import metrics as M
from .run import RANDOM, TaskResult


def _mean(v):
    v = [x for x in v if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def curve_aucs(res: TaskResult) -> dict:
    """(method, removal, unit) -> (mean deletion AUC, mean insertion AUC) over states."""
    per = defaultdict(lambda: ([], []))
    for r in res.curves:
        d, i = per[(r["method"], r["removal"], r["unit"], r["state"])]
        d.append(r["deletion"])
        i.append(r["insertion"])
    agg = defaultdict(lambda: ([], []))
    for (m, op, u, _s), (d, i) in per.items():
        agg[(m, op, u)][0].append(M.auc(d))
        agg[(m, op, u)][1].append(M.auc(i))
    return {k: (_mean(d), _mean(i)) for k, (d, i) in agg.items()}


def mean_curves(res: TaskResult, removal: str, unit: int = 1) -> dict:
    """method -> (fractions, mean deletion curve, mean insertion curve)."""
    acc = defaultdict(lambda: defaultdict(lambda: ([], [])))
    for r in res.curves:
        if r["removal"] == removal and r["unit"] == unit:
            d, i = acc[r["method"]][r["fraction"]]
            d.append(r["deletion"])
            i.append(r["insertion"])
    out = {}
    for m, by in acc.items():
        fr = sorted(by)
        out[m] = (np.array(fr), np.array([_mean(by[f][0]) for f in fr]), np.array([_mean(by[f][1]) for f in fr]))
    return out


def _topk(rows) -> tuple[float, float]:
    rows = [r for r in rows if math.isfinite(r["topk_effect"]) and math.isfinite(r["object_effect"])]
    if not rows:
        return float("nan"), float("nan")
    tk = np.array([r["topk_effect"] for r in rows])
    ob = np.array([r["object_effect"] for r in rows])
    ratio = float(tk.mean() / ob.mean()) if ob.mean() > 0 else float("nan")
    per = tk[ob > 0] / ob[ob > 0]
    return ratio, float(np.median(per)) if per.size else float("nan")


def config_rank(res: TaskResult, method: str) -> float:
    """Pooled Spearman correlation of ratios vs ablation-effect shares (see module docstring)."""
    by_state = defaultdict(dict)
    for r in res.config:
        if r["method"] != method:
            continue
        if r["group"] == "image" or r["how"] == "mean":
            by_state[r["state"]][r["group"]] = (r["ratio"], r["effect"])
    ratios, shares = [], []
    for groups in by_state.values():
        tot = sum(e for _, e in groups.values())
        if not tot > 0:
            continue
        for ratio, e in groups.values():
            ratios.append(ratio)
            shares.append(e / tot)
    return M.rank_correlation(ratios, shares)


def summarise(results: Sequence[TaskResult]) -> list[dict]:
    rows = []
    for res in results:
        aucs = curve_aucs(res)
        methods = list(dict.fromkeys(r["method"] for r in res.curves)) or list(res.cost)
        main = _main_object(res)
        parts = sorted({r["object"] for r in res.pointing if math.isfinite(r["topk_effect"])} - {main})
        for m in methods:
            row = {"task": res.task, "method": m, "states": res.n_states}
            for (mm, op, u), (d, i) in aucs.items():
                if mm == m:
                    sfx = op if u == 1 else f"{op}_p{u}"
                    row[f"deletion_{sfx}"] = d
                    row[f"insertion_{sfx}"] = i
            pr = [r for r in res.pointing if r["method"] == m]
            for obj, key in [(main, "")] + [(p, "_" + p) for p in parts]:
                sel = [r for r in pr if r["object"] == obj]
                row["pointing" + key] = _mean(r["pointing"] for r in sel)
                tk, tkm = _topk(sel)
                row["topk" + key] = tk
                if not key:
                    row["topk_median"] = tkm
            row["config_rank"] = config_rank(res, m) if m != RANDOM else float("nan")
            row["ms"] = res.cost.get(m, float("nan"))
            rows.append(row)
    return rows


def _main_object(res: TaskResult) -> str:
    # the main object is the first object with top-k rows (run.py evaluates it first)
    for r in res.pointing:
        if math.isfinite(r["topk_effect"]):
            return r["object"]
    return ""


def object_table(results: Sequence[TaskResult]) -> list[dict]:
    """Per task and object: mean effect of removing it (per removal) and its mean pixel count."""
    rows = []
    for res in results:
        acc = defaultdict(list)
        px = defaultdict(list)
        first = res.objects[0]["removal"] if res.objects else None
        for r in res.objects:
            acc[(r["object"], r["removal"])].append(r["effect"])
            if r["removal"] == first:  # one row per state and removal: count states once
                px[r["object"]].append(r["pixels"])
        for obj in dict.fromkeys(r["object"] for r in res.objects):
            row = {"task": res.task, "object": obj, "pixels": _mean(px[obj]), "states_visible": len(px[obj])}
            for (o, op), v in acc.items():
                if o == obj:
                    row[f"effect_{op}"] = _mean(v)
            rows.append(row)
    return rows


# ---- files ----------------------------------------------------------------------------------------
def _write_table(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in keys})
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # Parquet is an extra; the CSV holds the same numbers
        return
    cols = {k: [r.get(k) for r in rows] for k in keys}
    pq.write_table(pa.table(cols), path.with_suffix(".parquet"))


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else v


GOALS = ("topk >= 0.8 (reach, peg, door); pointing >= 3 (reach, peg); deletion AUC > random and gradient; "
         "config_rank >= 0.7")

MD_COLUMNS = [("deletion_median", "del. med"), ("deletion_road", "del. ROAD"), ("deletion_blur", "del. blur"),
              ("insertion_median", "ins. med"), ("deletion_median_p4", "del. med 4x4"), ("pointing", "pointing"),
              ("topk", "top-k"), ("config_rank", "cfg rank"), ("ms", "ms")]


def markdown_table(summary: list[dict]) -> str:
    cols = [(k, h) for k, h in MD_COLUMNS if any(k in r for r in summary)]
    lines = ["| task | method | " + " | ".join(h for _, h in cols) + " |",
             "|---|---|" + "---:|" * len(cols)]
    for r in summary:
        vals = []
        for k, _ in cols:
            v = r.get(k, float("nan"))
            vals.append("" if not isinstance(v, float) or not math.isfinite(v) else
                        (f"{v:.1f}" if k == "ms" else f"{v:.2f}"))
        lines.append(f"| {r['task']} | {r['method']} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def objects_markdown(results: Sequence[TaskResult]) -> str:
    """Which objects each policy uses: the torque change when the object is painted out."""
    rows = object_table(results)
    ops = [op for op in ("median", "blur", "road") if any(f"effect_{op}" in r for r in rows)]
    lines = ["| task | object | pixels (mean) | states seen | " + " | ".join(f"effect ({op})" for op in ops) + " |",
             "|---|---|---:|---:|" + "---:|" * len(ops)]
    for r in rows:
        lines.append(f"| {r['task']} | {r['object']} | {r['pixels']:.0f} | {r['states_visible']} | "
                     + " | ".join(f"{r.get(f'effect_{op}', float('nan')):.3f}" for op in ops) + " |")
    return "\n".join(lines) + "\n"


def parts_markdown(summary: list[dict]) -> str:
    """Pointing and top-k per part, for tasks whose object has parts (door)."""
    parts = sorted({k[len("pointing_"):] for r in summary for k in r if k.startswith("pointing_")})
    if not parts:
        return ""
    lines = ["| task | method | " + " | ".join(f"pointing {p} | top-k {p}" for p in parts) + " |",
             "|---|---|" + "---:|---:|" * len(parts)]
    for r in summary:
        if not any(f"pointing_{p}" in r for p in parts):
            continue
        cells = []
        for p in parts:
            for k in (f"pointing_{p}", f"topk_{p}"):
                v = r.get(k, float("nan"))
                cells.append(f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else "")
        lines.append(f"| {r['task']} | {r['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _goals(task: str) -> tuple:
    """The faithfulness goals the task declares (`Task.faithfulness_goals`); none for an unregistered one."""
    from ..robot.tasks import TASKS

    t = TASKS.get(task)
    return t.faithfulness_goals if t is not None else ()


def goals_markdown(summary: list[dict], method: str) -> str:
    """The issue's goals for one method, measured: top-k, pointing, deletion AUC vs random and
    gradient x input, configuration rank correlation."""
    by = {(r["task"], r["method"]): r for r in summary}
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    lines = ["| goal | task | measured | met |", "|---|---|---|---|"]

    def row(goal, task, text, ok):
        lines.append(f"| {goal} | {task} | {text} | {'yes' if ok else '**no**'} |")

    for t in tasks:
        r = by.get((t, method))
        if r is None:
            continue
        goals = _goals(t)
        if "topk" in goals:
            row("top-k >= 0.8x the task object", t, f"{r.get('topk', float('nan')):.2f}", r.get("topk", 0) >= 0.8)
        if "pointing" in goals:
            row("pointing >= 3 on the task object", t, f"{r.get('pointing', float('nan')):.1f}",
                r.get("pointing", 0) >= 3)
        for op in ("median", "blur", "road"):
            k = f"deletion_{op}"
            if k not in r:
                continue
            rnd = by.get((t, RANDOM), {}).get(k, float("nan"))
            grd = by.get((t, "gradient"), {}).get(k, float("nan"))
            ok = r[k] > rnd and (not math.isfinite(grd) or r[k] > grd)
            row(f"deletion AUC ({op}) > random and gradient", t, f"{r[k]:.2f} vs {rnd:.2f} / {grd:.2f}", ok)
        c = r.get("config_rank", float("nan"))
        row("configuration ratios' rank correlation >= 0.7", t, f"{c:.2f}", math.isfinite(c) and c >= 0.7)
    return "\n".join(lines) + "\n"


def figures(results: Sequence[TaskResult], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for res in results:
        curves = mean_curves(res, "median", 1)
        if curves:
            fig, ax = plt.subplots(1, 2, figsize=(10, 4))
            for k, (m, (fr, d, i)) in enumerate(curves.items()):
                style = dict(color="k", ls="--") if m == RANDOM else dict(color=plt.cm.tab20(k % 20))
                ax[0].plot(fr * 100, d, marker=".", label=m, **style)
                ax[1].plot(fr * 100, i, marker=".", label=m, **style)
            for a_, t in zip(ax, ("deletion: torque change / full removal", "insertion: recovery")):
                a_.set_xscale("log")
                a_.set_xlabel("pixels removed / inserted (%)")
                a_.set_title(f"{res.task}: {t}")
                a_.grid(alpha=0.3)
            ax[1].legend(fontsize=7, ncol=2)
            fig.tight_layout()
            p = out / f"curves_{res.task}.png"
            fig.savefig(p, dpi=90)
            plt.close(fig)
            paths.append(p)
        objs = [r for r in object_table([res])]
        if objs:
            fig, ax = plt.subplots(1, 2, figsize=(11, 4))
            names = [r["object"] for r in objs]
            ax[0].bar(names, [r.get("effect_median", np.nan) for r in objs])
            ax[0].set_title(f"{res.task}: torque change when the object is painted out")
            ax[0].tick_params(axis="x", rotation=45)
            methods = list(dict.fromkeys(r["method"] for r in res.pointing))
            width = 0.8 / max(1, len(methods))
            for k, m in enumerate(methods):
                vals = [_mean(r["pointing"] for r in res.pointing if r["method"] == m and r["object"] == n)
                        for n in names]
                ax[1].bar(np.arange(len(names)) + k * width, vals, width, label=m, color=plt.cm.tab20(k % 20))
            ax[1].axhline(1.0, color="k", lw=0.8)
            ax[1].set_xticks(np.arange(len(names)) + 0.4, names, rotation=45)
            ax[1].set_yscale("symlog", linthresh=1)
            ax[1].set_title("pointing ratio (1 = uniform)")
            ax[1].legend(fontsize=6, ncol=3)
            fig.tight_layout()
            p = out / f"objects_{res.task}.png"
            fig.savefig(p, dpi=90)
            plt.close(fig)
            paths.append(p)
    return paths


def write_report(results: Sequence[TaskResult], out: Path, options=None) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(results)
    _write_table(out / "summary.csv", summary)
    _write_table(out / "objects.csv", object_table(results))
    _write_table(out / "curves.csv", [dict(r, task=res.task) for res in results for r in res.curves])
    _write_table(out / "pointing.csv", [dict(r, task=res.task) for res in results for r in res.pointing])
    _write_table(out / "config.csv", [dict(r, task=res.task) for res in results for r in res.config])
    sanity = [r for res in results for r in res.sanity]
    if sanity:
        _write_table(out / "sanity.csv", sanity)
    md = markdown_table(summary)
    (out / "summary.md").write_text(md)
    (out / "objects.md").write_text(objects_markdown(results))
    parts = parts_markdown(summary)
    if parts:
        (out / "parts.md").write_text(parts)
    from ..attribution.engine import DEFAULT_METHOD

    if any(r["method"] == DEFAULT_METHOD for r in summary):
        (out / "goals.md").write_text(goals_markdown(summary, DEFAULT_METHOD))
    figs = figures(results, out)
    doc = {"summary": summary, "objects": object_table(results), "goals": GOALS,
           "sanity_flags": {res.task: res.sanity_flags for res in results},
           "figures": [p.name for p in figs]}
    if options is not None:
        from dataclasses import asdict

        doc["options"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()}
    (out / "summary.json").write_text(json.dumps(doc, indent=1, default=_json_default))
    return doc


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
