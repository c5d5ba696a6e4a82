"""The teacher: the dense occlusion map the student learns (window masks, their effects on the
torques, and the per-pixel reductions; the formulas: the package docstring)."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..path import median_colour

#: teacher window sides as fractions of the image's larger side (3, 4 and 8 px at 64x64)
SIZES = (3 / 64, 4 / 64, 8 / 64)
#: smallest teacher window stride in pixels at 64x64 (scaled with the image side); a window of
#: side p moves by max(STRIDE, p // 2)
STRIDE = 2
#: exponent of the window area in the "norm" teacher
BETA = 0.5
REDUCTIONS = ("norm", "mean", "max")


def window_sides(height: int, width: int, sizes: Sequence[float] = SIZES) -> list[int]:
    """Window sides in pixels for an image size (fractions of the larger side, at least 1 px)."""
    side = max(height, width)
    return [max(1, int(round(f * side))) for f in sizes]


def _starts(n: int, p: int, stride: int) -> list[int]:
    """Window starts 0, s, 2s, ... with the last window moved to touch the border."""
    if p >= n:
        return [0]
    s = list(range(0, n - p + 1, stride))
    if s[-1] != n - p:
        s.append(n - p)
    return s


def window_masks(height: int, width: int, sizes: Sequence[float] = SIZES, stride: Optional[int] = None,
                 device=None) -> torch.Tensor:
    """(N, H, W) bool masks of every teacher window (all sizes, smallest first) on `device`. stride
    None: a window of side p moves by max(s, p // 2) with s = STRIDE scaled with the image side (2 px
    at 64x64); an int: every size moves by that stride."""
    scale = max(height, width) / 64
    out = []
    for p in window_sides(height, width, sizes):
        st = max(1, int(round(STRIDE * scale)), p // 2) if stride is None else int(stride)
        ph, pw = min(p, height), min(p, width)
        for y in _starts(height, ph, st):
            for x in _starts(width, pw, st):
                m = torch.zeros(height, width, dtype=torch.bool, device=device)
                m[y:y + ph, x:x + pw] = True
                out.append(m)
    return torch.stack(out)


@torch.no_grad()
def window_effects(policy, image: torch.Tensor, config: torch.Tensor, alpha: torch.Tensor, masks: torch.Tensor,
                   batch: int = 256) -> torch.Tensor:
    """(B, N) effect E(P) of painting each window of masks (N, H, W) with the image's median colour;
    alpha (B, J) or (J,)."""
    B = image.shape[0]
    alpha = _as_alpha(alpha, image.device)
    alpha = alpha.expand(B, -1) if alpha.ndim == 1 else alpha
    fill = median_colour(image)
    tau = policy(image, config)
    N = masks.shape[0]
    out = torch.empty(B, N, device=image.device)
    mk = masks[:, None].to(image.device)
    for b in range(B):
        for i in range(0, N, batch):
            m = mk[i:i + batch]
            occ = torch.where(m, fill[b:b + 1], image[b:b + 1])
            t = policy(occ, config[b:b + 1].expand(len(m), -1))
            out[b, i:i + batch] = (alpha[b] * (t - tau[b]).abs()).sum(1)
    return out


@torch.no_grad()
def teacher_map(policy, image: torch.Tensor, config: torch.Tensor, alpha, reduce: str = "norm",
                sizes: Sequence[float] = SIZES, stride: Optional[int] = None, batch: int = 256,
                beta: float = BETA):
    """Dense occlusion map (B, H, W) of images (B, C, H, W) in [0, 1], raw configurations (B, D) and
    importance factors alpha (B, J) or (J,): T_norm, T_mean or T_max of the window effects (module
    docstring). reduce="all" returns the dict {"norm", "mean", "max"} from one set of forwards."""
    if reduce not in REDUCTIONS + ("all",):
        raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)} or 'all', got {reduce!r}")
    B, _, H, W = image.shape
    masks = window_masks(H, W, sizes, stride, device=image.device)
    eff = window_effects(policy, image, config, alpha, masks, batch)  # (B, N)
    return reduce_effects(eff, masks, reduce, beta)


def reduce_effects(eff: torch.Tensor, masks: torch.Tensor, reduce: str = "norm", beta: float = BETA):
    """Per-pixel maps (B, H, W) from window effects eff (B, N) of masks (N, H, W)."""
    B = eff.shape[0]
    N, H, W = masks.shape
    mf = masks.flatten(1).float()  # (N, HW)
    cnt = mf.sum(0).clamp_min(1.0)
    mean = ((eff @ mf) / cnt).view(B, H, W)
    area = mf.sum(1)  # (N,)

    def maxmap(e):
        return torch.stack([(mf * e[b, :, None]).amax(0) for b in range(B)]).view(B, H, W)

    out = {"mean": mean}
    if reduce in ("max", "all"):
        out["max"] = maxmap(eff)
    if reduce in ("norm", "all"):
        out["norm"] = maxmap(eff / area ** float(beta)) + 1e-3 * mean
    return out if reduce == "all" else out[reduce]


def _as_alpha(alpha, device) -> torch.Tensor:
    """Importance factors (J,) or (B, J) as a float32 tensor on `device` (from numbers, an array or
    a tensor on any device)."""
    if torch.is_tensor(alpha):
        return alpha.detach().to(device=device, dtype=torch.float32)
    return torch.as_tensor(np.asarray(alpha, dtype=np.float32), device=device)
