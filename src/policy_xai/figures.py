"""Figures in the style of Kim & Choi (Figs. 3-6) and heatmap videos (matplotlib, OpenCV)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from . import viz
from .groups import GROUPS

#: colours and line styles per input group, shared by every figure
GROUP_STYLE = {"image": ("#d62728", "-"), **{n: g.style for n, g in GROUPS.items()}}
METHOD_HATCH = {"dtd": "", "rap": "//", "gbp": ".."}
#: Kim & Choi's Figs. 5/6 legend: solid red/blue/purple = total, image, configuration; dotted
#: black/yellow/green/pink = joint position, joint velocity, end-effector position, end-effector velocity
PAPER_STYLE = {
    "total": ("#d62728", "-"),
    "image": ("#1f3fd6", "-"),
    "configuration": ("#8e44ad", "-"),
    **{n: g.paper_style for n, g in GROUPS.items()},
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def explanation_panel(path, image: np.ndarray, relevance: np.ndarray, config_rel: np.ndarray,
                      feature_points: np.ndarray, point_rel: np.ndarray, group_slices: Mapping[str, slice],
                      feature_names: Sequence[str], title: str = "", normalize="frame") -> Path:
    """Fig. 3 style: camera image with feature points | relevance heatmap | configuration relevance."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    H, W = image.shape[:2]
    axes[0].imshow(image)
    fp = np.asarray(feature_points).reshape(-1, 2)
    pr = np.abs(point_rel) / (np.abs(point_rel).max() + 1e-12)
    axes[0].scatter((fp[:, 0] + 1) / 2 * (W - 1), (fp[:, 1] + 1) / 2 * (H - 1), s=10 + 60 * pr,
                    facecolors="none", edgecolors="yellow", linewidths=1)
    axes[0].set_title("image + feature points")
    axes[1].imshow(viz.overlay_heatmap(image, relevance, normalize=normalize, opacity=0.65))
    axes[1].set_title("image relevance")
    for ax in axes[:2]:
        ax.set_xticks([]), ax.set_yticks([])
    x = np.arange(len(config_rel))
    colours = ["#777777"] * len(x)
    for g, sl in group_slices.items():
        for i in range(sl.start, sl.stop):
            colours[i] = GROUP_STYLE.get(g, ("#777777", "-"))[0]
    axes[2].bar(x, config_rel, color=colours)
    axes[2].set_xticks(x)
    axes[2].set_xticklabels(feature_names, rotation=90, fontsize=6)
    axes[2].set_title("configuration relevance")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def ratio_bars(path, stats: Mapping[str, Mapping[str, tuple]], title: str = "") -> Path:
    """Fig. 4 style: mean +- std relevance ratio per input group, one bar per method."""
    plt = _plt()
    methods = list(stats)
    groups = [g for g in next(iter(stats.values())) if ":" not in g]
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.6))
    width = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        mean = [stats[m][g][0] for g in groups]
        std = [stats[m][g][1] for g in groups]
        xs = np.arange(len(groups)) + (k - (len(methods) - 1) / 2) * width
        ax.bar(xs, mean, width, yerr=std, capsize=3, label=m, hatch=METHOD_HATCH.get(m, ""),
               color=[GROUP_STYLE.get(g, ("#777", "-"))[0] for g in groups], edgecolor="black", alpha=0.85)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([g.replace("_", "\n") for g in groups])
    ax.set_ylabel("relevance ratio")
    ax.set_ylim(0, 1)
    ax.legend(title="method")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def ratio_curves(path, times: np.ndarray, ratios: Mapping[str, np.ndarray], names: Sequence[str],
                 marks: Sequence[float] = (), mark_label: str = "target moved", title: str = "",
                 episode_bounds: Optional[Sequence[int]] = None, style: str = "groups") -> Path:
    """Figs. 5/6 style: ratio per group over time, one panel per method; vertical marks.

    style="paper": the paper's legend (PAPER_STYLE), with the total (= 1) and the configuration
    total (1 - image) drawn as well; "groups": one colour per group (GROUP_STYLE)."""
    plt = _plt()
    methods = list(ratios)
    fig, axes = plt.subplots(len(methods), 1, figsize=(8, 2.3 * len(methods)), sharex=True, squeeze=False)
    names = list(names)
    for ax, m in zip(axes[:, 0], methods):
        r = np.asarray(ratios[m])
        series = list(zip(names, r.T))
        if style == "paper" and "image" in names:
            img = r[:, names.index("image")]
            series = [("total", np.nansum(r, axis=1)), ("image", img), ("configuration", 1.0 - img)] + \
                [(n, v) for n, v in series if n != "image"]
        for name, v in series:
            c, ls = (PAPER_STYLE if style == "paper" else GROUP_STYLE).get(name, ("#777", "-"))
            ax.plot(times, v, color=c, linestyle=ls, label=name, lw=1.8 if ls == ":" else 1.5)
        names_drawn = [n for n, _ in series]
        for t in marks:
            ax.axvline(t, color="black", lw=1, linestyle="--")
        ax.set_ylabel(m)
        ax.set_ylim(0, 1.05 if style == "paper" else 1)
    axes[0, 0].legend(fontsize=7, ncol=min(4, len(names_drawn)), loc="upper right")
    if marks:
        axes[0, 0].text(marks[0], 1.02, mark_label, fontsize=7, transform=axes[0, 0].get_xaxis_transform())
    axes[-1, 0].set_xlabel("time step" if times.dtype.kind in "iu" else "time [s]")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def heatmap_video(path, images: np.ndarray, maps: np.ndarray, feature_points: Optional[np.ndarray] = None,
                  normalize: str = "frame", fps: float = 10.0, scale: int = 2) -> Path:
    """mp4 of heatmap overlays; normalize="frame" (each frame its own max) or "video" (one scale
    for the whole video, so that weak frames look weak)."""
    import cv2

    if normalize not in ("frame", "video"):
        raise ValueError("normalize must be 'frame' or 'video'")
    norm = "frame" if normalize == "frame" else float(np.abs(maps).max() or 1.0)
    H, W = images.shape[1] * scale, images.shape[2] * scale
    path = Path(path)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (W, H))
    if not vw.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4 video to {path}")
    try:
        for i in range(len(images)):
            pts = None if feature_points is None else feature_points[i]
            frame = viz.overlay_heatmap(images[i], maps[i], points=pts, normalize=norm, scale=scale)
            vw.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        vw.release()
    return path


def ratio_distributions(path, per_bag: Mapping[str, Mapping[str, np.ndarray]], groups: Sequence[str],
                        marked: Sequence[str] = (), title: str = "") -> Path:
    """A fleet's ratios: one panel per input group, one box (median, quartiles, 5-95 % whiskers) per
    bag; bags in `marked` (those that stand out) are drawn in red. per_bag: bag -> group -> (N,)."""
    plt = _plt()
    bags_ = list(per_bag)
    n = max(1, len(groups))
    fig, axes = plt.subplots(n, 1, figsize=(max(4.0, 1.2 + 0.45 * len(bags_)), 1.9 * n + 0.6), sharex=True,
                             squeeze=False)
    for ax, g in zip(axes[:, 0], groups):
        data = [np.asarray(per_bag[b].get(g, []), float) for b in bags_]
        data = [d[np.isfinite(d)] if d.size else np.array([np.nan]) for d in data]
        box = ax.boxplot([d if d.size else np.array([np.nan]) for d in data], whis=(5, 95), showfliers=False,
                         patch_artist=True)
        for patch, b in zip(box["boxes"], bags_):
            patch.set_facecolor("#d62728" if b in marked else GROUP_STYLE.get(g, ("#777", "-"))[0])
            patch.set_alpha(0.6)
        ax.set_ylabel(g.replace("_", "\n"), fontsize=8)
        ax.set_ylim(0, 1)
    axes[-1, 0].set_xticks(np.arange(1, len(bags_) + 1))
    axes[-1, 0].set_xticklabels(bags_, rotation=60, ha="right", fontsize=7)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
