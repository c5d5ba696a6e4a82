"""Tables (CSV / Parquet: policy_xai.report's writer) and figures of an analysed bag."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..report import read_table, write_table  # noqa: F401 - re-exported (the report writer's)
from .observations import Observations


def ratio_rows(res, obs: Observations) -> list[dict]:
    """The ratios.csv rows of an analysed bag (policy_xai.report's layout: step, stamp_ns, time, method, groups)."""
    from ..report import Episode
    from ..report import ratio_rows as rows

    return rows([Episode(None, res, obs.stamps)])


def importance_rows(res, obs: Observations, spec) -> list[dict]:
    lim = np.asarray(spec.torque_limits)
    rows = []
    for i in range(len(res)):
        r = {"step": i, "stamp_ns": int(obs.stamps[i]), "time": float(res.times[i])}
        r.update({f"alpha/{j}": float(a) for j, a in zip(spec.joint_names, res.alpha[i])})
        r.update({f"torque/{j}": float(x) for j, x in zip(spec.joint_names, np.clip(res.torques[i], -lim, lim))})
        rows.append(r)
    return rows


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
