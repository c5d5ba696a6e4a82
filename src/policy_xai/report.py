"""The offline report of explained steps, written the same way by every offline job: `explain`
(policy_xai.jobs.explain_recording), `analyze-rollout` (policy_xai.jobs.analyze_rollout) and `analyze`
(policy_xai.bags.analyze_bag):

    ratios.csv (.parquet)   one row per step and ratio method: [episode,] step, stamp_ns, time, method,
                            then one column per input group (image, joint_position, ...); `episode`
                            only when the report holds several labelled episodes (a rollout)
    fig4_ratios.png         mean +- std ratio per input group, one bar per method (figures.ratio_bars)
    fig5_curves.png         the ratios over time, one panel per method (figures.ratio_curves)
    heatmap_*.mp4, panels   heatmap videos and Fig. 3 style panels (figures.heatmap_video, explanation_panel)
    summary.json            the job's summary dict (NaN written as null)

and the summary lines printed for it (`ratio_lines`, `rank_lines`).

    w = ReportWriter(out, parquet=True)
    w.ratios([Episode(None, res, stamps_ns)])
    w.fig4(stats, ["dtd", "rap"], title="...")
    w.fig5(Curves(res.times, {m: res.methods[m].ratios for m in ...}, names))
    w.summary(summary)          # w.files: every file written, in order
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

#: the leading columns of ratios.csv (after `episode` when there is one); the input groups follow
RATIO_COLUMNS = ("step", "stamp_ns", "time", "method")


@dataclass
class Episode:
    """One explained sequence of a report: its label (None for a job with one sequence), the
    analysis.SequenceResult (with times) and the stamps of its steps [ns] (default: the times)."""

    label: Optional[str]
    result: Any
    stamps_ns: Optional[np.ndarray] = None

    def times(self) -> np.ndarray:
        t = self.result.times
        return np.arange(len(self.result), dtype=float) if t is None else np.asarray(t, dtype=float)

    def stamps(self) -> np.ndarray:
        if self.stamps_ns is not None:
            return np.asarray(self.stamps_ns, dtype=np.int64)
        return np.round(self.times() * 1e9).astype(np.int64)


@dataclass
class JobReport:
    """What an offline job gives: its output folder, the summary (what summary.json holds), the lines
    its command prints and the files written."""

    out: Path
    summary: dict
    lines: list[str]
    files: list = field(default_factory=list)


@dataclass
class Curves:
    """What fig5_curves.png (and the other ratio-over-time figures) draw: method -> (N, groups) ratios."""

    times: np.ndarray
    ratios: Mapping[str, np.ndarray]
    names: Sequence[str]
    title: str = ""
    marks: Sequence[float] = ()
    mark_label: str = "target moved"
    style: str = "groups"  # figures.ratio_curves: "groups" or "paper"


def ratio_methods(methods: Sequence[str]) -> list[str]:
    """The methods with relevance ratios (the Grad-CAM family has none)."""
    from .attribution import CAM_METHODS

    return [m for m in methods if m not in CAM_METHODS]


def ratio_rows(episodes: Sequence[Episode], methods: Optional[Sequence[str]] = None) -> list[dict]:
    """The rows of ratios.csv: per episode, per ratio method (`methods`, default all of the result's),
    per step; the `episode` column when any episode has a label."""
    labelled = any(e.label is not None for e in episodes)
    rows = []
    for e in episodes:
        res = e.result
        times, stamps = e.times(), e.stamps()
        for m in ratio_methods(list(res.methods) if methods is None else methods):
            ser = res.methods[m]
            for i in range(len(res)):
                row = {"episode": e.label} if labelled else {}
                row.update({"step": i, "stamp_ns": int(stamps[i]), "time": float(times[i]), "method": m})
                row.update({n: float(v) for n, v in zip(ser.ratio_names, ser.ratios[i])})
                rows.append(row)
    return rows


def write_table(rows: list[dict], stem: Union[str, Path], parquet: bool = True) -> list[Path]:
    """rows -> <stem>.csv and (with `parquet` and pyarrow) <stem>.parquet; the files written."""
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
    if not parquet:
        return written
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


def read_table(path: Union[str, Path]) -> dict[str, np.ndarray]:
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


def nan_to_none(x):
    """JSON-friendly: NaN -> None, recursively (numpy scalars -> Python numbers)."""
    import math

    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return nan_to_none(x.item())
    return x


@dataclass
class ReportWriter:
    """Writes one job's report into `out` (created); `files` lists what it wrote, in order."""

    out: Path
    parquet: bool = False  # ratios.parquet next to ratios.csv
    files: list = field(default_factory=list)

    def __post_init__(self):
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)

    def _add(self, paths) -> list[Path]:
        paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths]) if p]
        self.files += paths
        return paths

    def table(self, rows: list[dict], stem: str) -> list[Path]:
        """rows -> <stem>.csv (and .parquet with `parquet`)."""
        return self._add(write_table(rows, self.out / stem, self.parquet))

    def ratios(self, episodes: Sequence[Episode], methods: Optional[Sequence[str]] = None) -> list[Path]:
        """ratios.csv (and ratios.parquet) in the one layout (`ratio_rows`)."""
        return self.table(ratio_rows(episodes, methods), "ratios")

    def fig4(self, stats: Mapping[str, Mapping], methods: Sequence[str], title: str = "",
             name: str = "fig4_ratios.png") -> Optional[Path]:
        """fig4_ratios.png of summary_stats' `stats` for the ratio methods among `methods` (none: no figure)."""
        from . import figures

        ms = [m for m in ratio_methods(methods) if m in stats]
        if not ms:
            return None
        return self._add(figures.ratio_bars(self.out / name, {m: stats[m] for m in ms}, title=title))[0]

    def fig5(self, curves: Curves, name: str = "fig5_curves.png") -> Optional[Path]:
        """fig5_curves.png (or another ratio-over-time figure: `name`) of `curves` (no methods: no figure)."""
        from . import figures

        if not curves.ratios:
            return None
        return self._add(figures.ratio_curves(self.out / name, curves.times, dict(curves.ratios), curves.names,
                                              marks=list(curves.marks), mark_label=curves.mark_label,
                                              title=curves.title, style=curves.style))[0]

    def video(self, name: str, images, maps, feature_points=None, normalize: str = "frame",
              fps: float = 10.0) -> Path:
        """A heatmap video <out>/<name> (figures.heatmap_video)."""
        from . import figures

        return self._add(figures.heatmap_video(self.out / name, np.asarray(images), maps, feature_points,
                                               normalize=normalize, fps=fps))[0]

    def panels(self, folder: str, stem: str, images, res, methods: Sequence[str], steps: Sequence[int], spec,
               title: str = "{method}, step {step}", step_digits: int = 4) -> list[Path]:
        """Fig. 3 style panels <out>/<folder>/<stem>step<i>_<method>.png of the given steps;
        `title` is formatted with method and step."""
        from . import figures
        from .live import config_feature_names

        names = config_feature_names(spec)
        d = self.out / folder
        d.mkdir(parents=True, exist_ok=True)
        written = []
        for m in methods:
            ser = res.methods[m]
            for i in steps:
                written.append(figures.explanation_panel(
                    d / f"{stem}step{i:0{step_digits}d}_{m}.png", images[i], ser.image[i], ser.config[i],
                    res.feature_points[i], ser.points[i], spec.group_slices(), names,
                    title=title.format(method=m, step=i)))
        return self._add(written)

    def summary(self, summary: dict, name: str = "summary.json") -> Path:
        """summary.json: `summary` as indented JSON, NaN as null."""
        p = self.out / name
        p.write_text(json.dumps(nan_to_none(summary), indent=2, default=str))
        return self._add(p)[0]


def panel_steps(n: int, panels: int) -> np.ndarray:
    """`panels` steps spread evenly over n steps (the first and the last among them)."""
    return np.linspace(0, n - 1, num=min(panels, n)).round().astype(int)


def ratio_lines(stats: Mapping[str, Mapping], methods: Optional[Sequence[str]] = None, width: int = 9) -> list[str]:
    """The printed lines of summary_stats' `stats`: per method the image:configuration split in
    percent, then every group's mean±std."""
    lines = []
    for m in (list(stats) if methods is None else methods):
        st = stats[m]
        img, cfg = st["image:configuration"]
        groups = "  ".join(f"{g} {v[0]:.2f}±{v[1]:.2f}" for g, v in st.items() if ":" not in g)
        lines.append(f"  {m:{width}s} image:configuration = {100 * img:.0f}:{100 * cfg:.0f}   {groups}")
    return lines


def rank_lines(consistency: Mapping[str, Mapping[str, float]], label: str = "rank consistency",
               with_mean: bool = False) -> list[str]:
    """The printed lines of analysis.rank_consistency: per method pair each group's rank correlation
    (and, `with_mean`, their mean over the defined ones)."""
    lines = []
    for pair, per in consistency.items():
        vals = [v for v in per.values() if v == v]
        lines.append(f"  {label} {pair}: " + "  ".join(f"{g} {v:+.2f}" for g, v in per.items())
                     + (f"   (mean {np.mean(vals):+.2f})" if with_mean and vals else ""))
    return lines
