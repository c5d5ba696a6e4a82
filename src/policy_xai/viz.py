"""Pictures of explanations (OpenCV, numpy): heatmap overlays, the rolling ratio plot and the
per-joint relevance markers.

Core code: no rclpy. Used by the visualization node, the `run` command's video writer and the
offline analysis. The visualization node only turns what is computed here into messages: the overlay
(`overlay_heatmap`, at `heatmap_scale`), the plot (`RatioHistory.add_stamped` / `render`) and the
markers (`joint_shares` -> `joint_relevance_markers`: plain `MarkerSpec`s, one visualization_msgs/Marker each).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import cv2
import numpy as np

#: BGR-free palette (RGB, uint8) for ratio groups, in order
PALETTE = [
    (228, 26, 28), (55, 126, 184), (77, 175, 74), (152, 78, 163), (255, 127, 0), (166, 86, 40),
    (247, 129, 191), (153, 153, 153),
]


def relevance_scale(relevance: np.ndarray, normalize: Union[str, float] = "frame") -> float:
    """The |relevance| mapped to full colour: the frame's maximum, or a fixed number."""
    if isinstance(normalize, str):
        if normalize != "frame":
            raise ValueError(f"normalize must be 'frame' or a positive number, got {normalize!r}")
        r = np.asarray(relevance)
        if not r.size:
            return 0.0
        m = float(np.nanmax(np.abs(r))) if not np.all(np.isnan(r)) else 0.0
        return m if np.isfinite(m) else float(np.abs(np.nan_to_num(r.astype(np.float64))).max())
    scale = float(normalize)
    if not scale > 0:
        raise ValueError(f"fixed normalisation scale must be positive, got {normalize!r}")
    return scale


def colorize(relevance: np.ndarray, normalize: Union[str, float] = "frame") -> np.ndarray:
    """(H, W) relevance -> (H, W, 3) uint8 RGB colour map (jet) of |relevance| / scale."""
    r = np.asarray(relevance, dtype=np.float32)
    if r.ndim != 2:
        raise ValueError(f"relevance must be HxW, got shape {r.shape}")
    r = np.abs(r)
    if not np.isfinite(r).all():
        r = np.abs(np.nan_to_num(r))
    scale = relevance_scale(r, normalize)
    u8 = np.zeros(r.shape, np.uint8) if scale <= 0 else cv2.convertScaleAbs(r, alpha=255.0 / scale)
    return cv2.cvtColor(cv2.applyColorMap(u8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay_heatmap(
    rgb: np.ndarray,
    relevance: np.ndarray,
    points: Optional[np.ndarray] = None,
    normalize: Union[str, float] = "frame",
    opacity: float = 0.5,
    scale: int = 1,
    point_relevance: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Camera image + colour-mapped relevance (+ feature points) -> (H*scale, W*scale, 3) uint8 RGB.

    rgb: (H, W, 3) uint8; relevance: (h, w) any size (resized to the image); points: (K, 2) feature
    point coordinates (x, y) in [-1, 1] (left/top = -1); point_relevance: (K,) sizes the circles.
    normalize: "frame" (this frame's max |relevance| = full colour) or a fixed positive scale.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"rgb must be HxWx3 uint8, got shape {img.shape} dtype {img.dtype}")
    h, w = img.shape[:2]
    H, W = h * int(scale), w * int(scale)
    base = img if scale == 1 else cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR)
    rel = np.asarray(relevance, dtype=np.float32)
    if rel.shape != (H, W):
        rel = cv2.resize(rel, (W, H), interpolation=cv2.INTER_LINEAR)
    heat = colorize(rel, normalize)
    out = cv2.addWeighted(base, 1.0 - float(opacity), heat, float(opacity), 0.0)
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        pr = None
        if point_relevance is not None and len(point_relevance) == len(pts):
            a = np.abs(np.nan_to_num(np.asarray(point_relevance, dtype=np.float64)))
            pr = a / a.max() if a.max() > 0 else np.zeros_like(a)
        for k, (x, y) in enumerate(pts):
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            px = int(round((x + 1) / 2 * (W - 1)))
            py = int(round((y + 1) / 2 * (H - 1)))
            rad = max(2, int(round((1 + 3 * (pr[k] if pr is not None else 0.3)) * max(1, scale))))
            cv2.circle(out, (px, py), rad, (255, 255, 255), 1, lineType=cv2.LINE_AA)
    return out


def heatmap_scale(width: int, setting: int = 0, target: int = 256) -> int:
    """The overlay's upscale factor: `setting` (the heatmap_scale parameter) when non-zero, else
    about `target` px wide (target // width, at least 1)."""
    return int(setting) or max(1, int(target) // max(1, int(width)))


class RatioHistory:
    """Rolling window of ratio vectors (time, group -> value) and its plot as an image."""

    def __init__(self, window: float = 20.0, maxlen: int = 4000):
        self.window = float(window)
        self.times: deque[float] = deque(maxlen=maxlen)
        self.values: deque[np.ndarray] = deque(maxlen=maxlen)
        self.names: tuple[str, ...] = ()
        self.t0_ns: Optional[int] = None  # add_stamped: the stamp of t = 0
        self.last_ns: Optional[int] = None

    def add_stamped(self, stamp_ns: int, names: Sequence[str], values: Sequence[float],
                    jump_ns: Optional[int] = None) -> None:
        """Add one ratio vector at its observation stamp: t = seconds since the first stamp. A stamp
        more than `jump_ns` from the previous one (time jumped: a new simulated episode's clock, a
        bag played again) starts the plot over. Ratios that do not sum to 1 (within 1e-3) are a
        ValueError and are not added."""
        values = np.asarray(values, dtype=np.float64)
        total = float(values.sum())
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"ratios sum to {total:.4f}, not 1")
        ns = int(stamp_ns)
        if self.t0_ns is None or (jump_ns is not None and self.last_ns is not None
                                  and abs(ns - self.last_ns) > jump_ns):
            self.times.clear()
            self.values.clear()
            self.t0_ns = ns
        self.last_ns = ns
        self.add((ns - self.t0_ns) * 1e-9, names, values)

    def add(self, t: float, names: Sequence[str], values: Sequence[float]) -> None:
        names = tuple(names)
        if names != self.names:  # groups changed (another policy): start over
            self.times.clear()
            self.values.clear()
            self.names = names
        self.times.append(float(t))
        self.values.append(np.asarray(values, dtype=np.float64))
        while self.times and self.times[-1] - self.times[0] > self.window:
            self.times.popleft()
            self.values.popleft()

    def __len__(self) -> int:
        return len(self.times)

    def render(self, width: int = 480, height: int = 240) -> np.ndarray:
        return ratio_plot(np.array(self.times), np.array(self.values).reshape(len(self.times), -1),
                          self.names, width, height, window=self.window)


def ratio_plot(times: np.ndarray, values: np.ndarray, names: Sequence[str], width: int = 480,
               height: int = 240, window: Optional[float] = None) -> np.ndarray:
    """Line plot of ratios (N, G) over times (N,) in [0, 1] -> (height, width, 3) uint8 RGB."""
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 34, 8, 8, 22
    pw, ph = width - left - right, height - top - bottom
    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for frac in (0.0, 0.5, 1.0):
        y = int(top + ph * (1 - frac))
        cv2.putText(img, f"{frac:.1f}", (2, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(img, (left, y), (left + pw, y), (220, 220, 220), 1)
    if len(times) >= 1 and values.size:
        t1 = float(times[-1])
        t0 = t1 - window if window else float(times[0])
        span = max(t1 - t0, 1e-9)
        xs = left + (np.asarray(times) - t0) / span * pw
        for g in range(values.shape[1]):
            v = np.clip(np.nan_to_num(values[:, g]), 0, 1)
            ys = top + (1 - v) * ph
            pts = np.stack([xs, ys], axis=1).round().astype(np.int32)
            cv2.polylines(img, [pts], False, PALETTE[g % len(PALETTE)], 1, cv2.LINE_AA)
        cv2.putText(img, f"t={t1:.1f}s", (left, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                    cv2.LINE_AA)
    x = left + 60
    for g, name in enumerate(names):
        cv2.putText(img, str(name), (x, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    PALETTE[g % len(PALETTE)], 1, cv2.LINE_AA)
        x += 8 + 7 * len(str(name))
    return img


def ratio_text(names: Sequence[str], values: Sequence[float]) -> str:
    return "  ".join(f"{n} {v:.2f}" for n, v in zip(names, values))


def relevance_colour(value: float) -> tuple[float, float, float]:
    """Relevance share in [0, 1] -> (r, g, b) floats in [0, 1] on the jet map."""
    b, g, r = _jet_lut()[int(np.clip(value, 0, 1) * 255)]
    return r / 255.0, g / 255.0, b / 255.0


_JET: list = []


def _jet_lut() -> np.ndarray:
    """The 256 BGR colours of cv2's jet map, built once (applyColorMap per value costs ~1 ms)."""
    if not _JET:
        _JET.append(cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), cv2.COLORMAP_JET)[:, 0].copy())
    return _JET[0]


# ---- rviz markers (visualization_node: one visualization_msgs/Marker per MarkerSpec) ---------------
def joint_shares(config_names: Sequence[str], config, relevance_names: Sequence[str], relevance):
    """(joints, q, share): the joints of a configuration vector (its 'joint_position/<joint>'
    elements, in order), their positions q, and each joint's share of the total |configuration
    relevance|: the |relevance| of every element named '<group>/<joint>' (position, velocity, ...)
    over the sum of all |relevance| (shares sum to at most 1: the rest is on groups of no joint,
    e.g. the end effector; all 0 when the relevance is all 0). No joints: ([], empty, empty)."""
    names = list(config_names)
    joints = [n.split("/", 1)[1] for n in names if n.startswith("joint_position/")]
    config = np.asarray(config, dtype=np.float64)
    q = np.array([config[names.index(f"joint_position/{j}")] for j in joints], dtype=np.float64)
    rel = np.abs(np.asarray(relevance, dtype=np.float64))
    share = np.zeros(len(joints))
    for i, j in enumerate(joints):
        for k, n in enumerate(relevance_names):
            if n.endswith("/" + j):
                share[i] += rel[k]
    total = rel.sum()
    return joints, q, (share / total if total > 0 else share)


def row_positions(n: int, spacing: float = 0.15) -> np.ndarray:
    """(n, 3) positions in a row along x, `spacing` m apart: the markers' places without a robot model."""
    return np.stack([np.arange(n) * float(spacing), np.zeros(n), np.zeros(n)], axis=1)


@dataclass(frozen=True)
class MarkerSpec:
    """One rviz marker, without its header: namespace, id, "sphere" or "text", position (m),
    scale (x, y, z: a sphere's diameters, a text's height in z), colour (r, g, b, a in [0, 1]), text."""
    ns: str
    id: int
    kind: str
    position: tuple[float, float, float]
    scale: tuple[float, float, float]
    rgba: tuple[float, float, float, float]
    text: str = ""


def joint_relevance_markers(joints: Sequence[str], share, positions, size: float,
                            ratio_names: Sequence[str] = (), ratios: Sequence[float] = ()) -> list[MarkerSpec]:
    """The /policy_xai/markers picture: a sphere per joint at positions[i], of diameter
    size x (0.25 + 0.75 x share / top) and jet colour share / top (top = the largest share, 1 when all
    are 0: the most relevant joint is `size` wide and red, the others at least a quarter of it),
    alpha 0.8; then a white text of the ratios 0.3 m above the last position (the end effector with
    a robot model) — "(no ratios for this method)" without ratios."""
    share = np.asarray(share, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    top = float(share.max()) if share.size and share.max() > 0 else 1.0
    out = []
    for i, _ in enumerate(joints):
        d = float(size) * (0.25 + 0.75 * share[i] / top)
        r, g, b = relevance_colour(share[i] / top)
        out.append(MarkerSpec("joint_relevance", i, "sphere", tuple(float(x) for x in pos[i]), (d, d, d),
                              (r, g, b, 0.8)))
    last = pos[-1] if len(pos) else np.zeros(3)
    text = ratio_text(ratio_names, ratios) if len(ratio_names) else "(no ratios for this method)"
    out.append(MarkerSpec("ratios", 0, "text", (float(last[0]), float(last[1]), float(last[2]) + 0.3),
                          (0.0, 0.0, 0.06), (1.0, 1.0, 1.0, 1.0), text))
    return out
