"""The student: the U-Net-like Explainer that predicts the occlusion map from the image in one
forward pass, and its maps (plain and refined by occlusion)."""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from .teacher import _as_alpha


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.ReLU())


class Explainer(nn.Module):
    """U-Net-like student: image (B, C, H, W) -> per-pixel logits (B, H, W); `forward` gives the
    softmax map S (each map sums to 1). Architecture parameters: channels (image channels),
    width (channels of the first level; levels have width, 2 width, 2 width, 4 width), coords
    (add x, y coordinate channels)."""

    def __init__(self, channels: int = 3, width: int = 16, coords: bool = True):
        super().__init__()
        self.arch = {"channels": int(channels), "width": int(width), "coords": bool(coords)}
        w = int(width)
        c0 = channels + (2 if coords else 0)
        self.e0 = _conv(c0, w)                 # H
        self.e1 = _conv(w, 2 * w, 2)           # H/2
        self.e2 = _conv(2 * w, 2 * w, 2)       # H/4
        self.e3 = _conv(2 * w, 4 * w, 2)       # H/8
        self.mid = _conv(4 * w, 4 * w)
        self.d2 = _conv(4 * w + 2 * w, 2 * w)  # H/4
        self.d1 = _conv(2 * w + 2 * w, 2 * w)  # H/2
        self.d0 = _conv(2 * w + w, w)          # H
        self.out = nn.Conv2d(w, 1, 3, padding=1)
        self.policy_sha256 = ""
        self.meta: dict = {}
        self.eval()

    def _coords(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ys = torch.linspace(-1, 1, H, dtype=x.dtype, device=x.device).view(1, 1, H, 1).expand(B, 1, H, W)
        xs = torch.linspace(-1, 1, W, dtype=x.dtype, device=x.device).view(1, 1, 1, W).expand(B, 1, H, W)
        return torch.cat([x, xs, ys], 1)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        x = self._coords(image) if self.arch["coords"] else image
        x = x.contiguous(memory_format=torch.channels_last)
        f0 = self.e0(x)
        f1 = self.e1(f0)
        f2 = self.e2(f1)
        f3 = self.mid(self.e3(f2))
        up = lambda t, ref: F.interpolate(t, size=ref.shape[2:], mode="nearest")  # noqa: E731
        g2 = self.d2(torch.cat([up(f3, f2), f2], 1))
        g1 = self.d1(torch.cat([up(g2, f1), f1], 1))
        g0 = self.d0(torch.cat([up(g1, f0), f0], 1))
        return self.out(g0)[:, 0]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        lg = self.logits(image)
        B, H, W = lg.shape
        return torch.softmax(lg.reshape(B, -1), 1).view(B, H, W)


@torch.no_grad()
def explain_amortised(explainer: Explainer, image: torch.Tensor) -> torch.Tensor:
    """(B, H, W) non-negative map (each sums to 1) of images (B, C, H, W) in [0, 1]: one forward pass
    (through a frozen TorchScript trace of the explainer per input shape and weights: one call
    instead of ~40 Python-level ops, which matters to the live tail latency; same numbers to float
    rounding)."""
    explainer.eval()
    key = (tuple(image.shape), image.dtype, image.device, _fingerprint(explainer))
    cache = explainer.__dict__.setdefault("_traced", {})
    fn = cache.get(key)
    if fn is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = torch.jit.freeze(torch.jit.trace(explainer, image.detach().clone()))
        except Exception:  # noqa: BLE001 - tracing is only an optimisation
            fn = explainer
        cache.clear()  # one shape at a time (the live pipeline has one)
        cache[key] = fn
    return fn(image)


@torch.no_grad()
def explain_amortised_refined(explainer: Explainer, policy, image: torch.Tensor, config: torch.Tensor, alpha,
                              windows: Optional[list] = None) -> torch.Tensor:
    """The student's map S refined by occluding the windows where it is largest
    (path.occlusion_refine with S in place of |ig|: per size, the n windows of largest S, painted
    with the median colour, each window's measured effect spread over its pixels in proportion to
    S, a pixel keeping the largest value). One student pass plus one batched policy pass of
    B * (sum of counts) images (12 at the default windows)."""
    from ..path import occlusion_refine

    B = image.shape[0]
    a = _as_alpha(alpha, image.device)
    a = a.expand(B, -1) if a.ndim == 1 else a
    s = explain_amortised(explainer, image)
    tau = policy(image, config)
    return occlusion_refine(policy, image, config, a, s, tau, windows)



def _fingerprint(policy) -> tuple:
    """Identity of the policy's weights: (storage, in-place version) of every parameter. A copy of
    the network (new storage) or an in-place change of its weights (version) gives another value."""
    return tuple((p.data_ptr(), p._version) for p in policy.parameters())
