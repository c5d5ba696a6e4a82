"""Pictures of explanations (OpenCV, numpy): heatmap overlays and the rolling ratio plot.

Core code: no rclpy. Used by the visualization node, the `run` command's video writer and the
offline analysis.
"""
from __future__ import annotations

from collections import deque
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


class RatioHistory:
    """Rolling window of ratio vectors (time, group -> value) and its plot as an image."""

    def __init__(self, window: float = 20.0, maxlen: int = 4000):
        self.window = float(window)
        self.times: deque[float] = deque(maxlen=maxlen)
        self.values: deque[np.ndarray] = deque(maxlen=maxlen)
        self.names: tuple[str, ...] = ()

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
