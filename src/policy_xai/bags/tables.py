"""Tables (CSV / Parquet) and figures of an analysed bag."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .observations import Observations

def ratio_rows(res, obs: Observations) -> list[dict]:
    from ..analysis import ratio_table

    rows = ratio_table(res)
    for r in rows:
        i = r["step"]
        r["stamp_ns"] = int(obs.stamps[i])
        r["time"] = float(res.times[i])
    order = ["step", "stamp_ns", "time", "method"]
    return [{k: r[k] for k in order + [k for k in r if k not in order]} for r in rows]


def importance_rows(res, obs: Observations, spec) -> list[dict]:
    lim = np.asarray(spec.torque_limits)
    rows = []
    for i in range(len(res)):
        r = {"step": i, "stamp_ns": int(obs.stamps[i]), "time": float(res.times[i])}
        r.update({f"alpha/{j}": float(a) for j, a in zip(spec.joint_names, res.alpha[i])})
        r.update({f"torque/{j}": float(x) for j, x in zip(spec.joint_names, np.clip(res.torques[i], -lim, lim))})
        rows.append(r)
    return rows


def write_table(rows: list[dict], stem: "str | Path") -> list[Path]:
    """rows -> <stem>.csv and (with pyarrow) <stem>.parquet."""
    import csv

    stem = Path(stem)
    written = []
    if not rows:
        return written
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    written.append(stem.with_suffix(".csv"))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        warnings.warn("pyarrow is not installed: no Parquet file (pip install pyarrow)")
        return written
    table = pa.Table.from_pydict({k: [r[k] for r in rows] for k in rows[0]})
    pq.write_table(table, stem.with_suffix(".parquet"))
    written.append(stem.with_suffix(".parquet"))
    return written


def read_table(path: "str | Path") -> dict[str, np.ndarray]:
    """A .csv or .parquet table written by write_table -> column -> array."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        return {c: np.asarray(t.column(c).to_pylist()) for c in t.column_names}
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        try:
            out[k] = np.asarray([int(v) for v in vals]) if k in ("step", "stamp_ns") else np.asarray(vals, float)
        except ValueError:
            out[k] = np.asarray(vals)
    return out


# ==== figures ====================================================================================
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def break_at_gaps(times: np.ndarray, values: np.ndarray, gaps: dict) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN row after every gap so that plotted lines do not bridge it."""
    after = [g["after_step"] for g in gaps.get("gaps", [])]
    if not after:
        return times, values
    t = np.insert(times.astype(float), np.array(after) + 1, np.nan)
    v = np.insert(values.astype(float), np.array(after) + 1, np.nan, axis=0)
    return t, v


def importance_figure(path, times: np.ndarray, alpha: np.ndarray, joint_names: Sequence[str], gaps: dict,
                      title: str = "") -> Path:
    plt = _plt()
    t, a = break_at_gaps(times, alpha, gaps)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for j, name in enumerate(joint_names):
        ax.plot(t, a[:, j], lw=1.4, label=name)
    if np.all(alpha[np.isfinite(alpha)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("importance factor alpha")
    ax.legend(fontsize=7, ncol=4, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
