"""Path attribution against a reference observation: integrated gradients (Sundararajan et al. 2017)
from an image with the detail removed and the training-mean configuration.

    R = (x - x0) * mean_k grad f(x0 + t_k (x - x0)),   t_k = (k + 1/2) / m,  k = 0..m-1

for the image and the (normalised) configuration together, with the explained quantity

    f(x') = sum_j alpha_j s_j tau_j(x'),   s_j = sign(tau_j(x) - tau_j(x0)).

With these signs f(x) - f(x0) = sum_j alpha_j |tau_j(x) - tau_j(x0)|: the alpha-weighted change of
the torques between the observation and the reference. Completeness of the path integral (exact in
the limit m -> inf, midpoint rule otherwise) makes the relevance add up to that change, so a pixel's
relevance is its share of what the torques would lose if the image were replaced by the reference,
and the ratios say how much of the torques the image, each configuration group, ... account for
relative to the reference (not relative to zero, as the relevance rules do).

References (`baseline`):
  blur    the image Gaussian-blurred (sigma given; `ig` uses path_sigma): objects dissolve into
          their surroundings, colours stay in range (Fong & Vedaldi 2017's blur perturbation);
  median  every pixel the image's per-channel median colour (the colour deletion paints with);
  black   zeros.
The configuration's reference is the training mean (the policy's normaliser), i.e. zero in the
network's normalised inputs; `config_reference="self"` keeps the configuration (image only).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

BASELINES = ("blur", "median", "black")
#: path points per explanation (batched in one forward and one backward pass)
DEFAULT_STEPS = 8


def gaussian_kernel(sigma: float, truncate: float = 3.0, device=None) -> torch.Tensor:
    r = max(1, int(math.ceil(truncate * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with reflected borders (the mean colour is kept
    approximately)."""
    if sigma <= 0:
        return image.clone()
    k = gaussian_kernel(sigma, device=image.device).to(image.dtype)
    r = (len(k) - 1) // 2
    B, C, H, W = image.shape
    x = image.reshape(B * C, 1, H, W)
    # reflect padding needs pad < size; clamp the radius for tiny images by repeated padding
    x = F.pad(x, (r, r, 0, 0), mode="replicate" if r >= W else "reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="replicate" if r >= H else "reflect")
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.view(B, C, H, W)


def default_sigma(height: int, width: int) -> float:
    return max(height, width) / 8.0


def path_sigma(height: int, width: int) -> float:
    """The blur of the `ig` method's reference image: max(H, W) / 16 px (4 px at 64x64). Measured
    with `policy-xai faithfulness`: sharper references (/ 32) and blurrier ones (/ 8, / 4) put less
    of the map on the task objects (docs/attribution.md)."""
    return max(height, width) / 16.0


def median_colour(image: torch.Tensor) -> torch.Tensor:
    """(B, C, 1, 1) per-image, per-channel median colour."""
    B, C = image.shape[:2]
    return image.reshape(B, C, -1).median(dim=2).values.view(B, C, 1, 1)


def reference_image(image: torch.Tensor, baseline: str = "blur", sigma: float | None = None) -> torch.Tensor:
    """The reference image x0 for a batch (B, C, H, W)."""
    if baseline == "blur":
        return blur(image, default_sigma(*image.shape[2:]) if sigma is None else float(sigma))
    if baseline == "median":
        return median_colour(image).expand_as(image).contiguous()
    if baseline == "black":
        return torch.zeros_like(image)
    raise ValueError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")


def integrated_gradients(policy, image: torch.Tensor, config: torch.Tensor, alpha: torch.Tensor,
                         steps: int = DEFAULT_STEPS, baseline: str = "blur", sigma: float | None = None,
                         config_reference: str = "mean"):
    """IntegratedGradients(R_image (B, C, H, W), R_config (B, D) in normalised units, R_points (B, K),
    tau (B, J), tau0 (B, J)).

    One batched forward pass over the m*B path points (and x, x0) and one backward pass. R_points
    (per feature point, x and y summed) is the mean gradient at the points along the path times the
    points' displacement between x0 and x: the straight-line approximation of the points' own path
    (the points do not move linearly with the image), reported for display, not conserved."""
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if config_reference not in ("mean", "self"):
        raise ValueError(f"config_reference must be 'mean' or 'self', got {config_reference!r}")
    m = int(steps)
    B = image.shape[0]
    x0 = reference_image(image, baseline, sigma)
    cn = policy.normalise_config(config)
    cn0 = torch.zeros_like(cn) if config_reference == "mean" else cn
    with torch.no_grad():
        ends, pts_ends = _forward_n(policy, torch.cat([image, x0]), torch.cat([cn, cn0]))
    tau, tau0 = ends[:B], ends[B:]
    dpts = pts_ends[:B] - pts_ends[B:]
    # a joint whose torque does not change between x0 and x (within float noise) has nothing to
    # attribute; its sign would be noise and flip with the batch composition
    d = tau - tau0
    tol = 1e-5 * (tau.abs() + tau0.abs()) + 1e-9
    s = torch.where(d.abs() > tol, torch.sign(d), torch.zeros_like(d))
    t = ((torch.arange(m, dtype=torch.float32, device=image.device) + 0.5) / m).view(m, 1, 1, 1, 1)
    dimg = image - x0
    dcfg = cn - cn0
    p_img = (x0.unsqueeze(0) + t * dimg.unsqueeze(0)).reshape(m * B, *image.shape[1:]).requires_grad_(True)
    p_cfg = (cn0.unsqueeze(0) + t.view(m, 1, 1) * dcfg.unsqueeze(0)).reshape(m * B, -1).requires_grad_(True)
    with torch.enable_grad():
        out, pts = _forward_n(policy, p_img, p_cfg)
        f = (out * (alpha * s).repeat(m, 1)).sum()
        g_img, g_cfg, g_pts = torch.autograd.grad(f, (p_img, p_cfg, pts))
    R_img = dimg * g_img.view(m, B, *image.shape[1:]).mean(0)
    R_cfg = dcfg * g_cfg.view(m, B, -1).mean(0)
    R_pts = (dpts * g_pts.view(m, B, -1).mean(0)).view(B, -1, 2).sum(-1)
    return IntegratedGradients(R_img, R_cfg, R_pts, tau, tau0)


class IntegratedGradients(NamedTuple):
    image: torch.Tensor
    config: torch.Tensor
    points: torch.Tensor
    torques: torch.Tensor
    reference_torques: torch.Tensor


def _forward_n(policy, image, config_n):
    """(torques, feature points (B, 2K)) from images and NORMALISED configurations."""
    pts = policy.softmax(policy.conv_features(image))
    return policy.head(pts, config_n), pts


#: windows checked by occlusion in `ig_occlusion`: (side as a fraction of the image's larger side,
#: how many); measured with `policy-xai faithfulness` (docs/attribution.md): small windows find
#: small objects (reach's block), larger ones the larger (peg's hole block)
OCCLUSION_WINDOWS = ((4 / 64, 8), (6 / 64, 4))


def occlusion_windows(height: int, width: int) -> list:
    """[(side in pixels, count)] of ig_occlusion for an image size."""
    return [(max(2, int(round(f * max(height, width)))), n) for f, n in OCCLUSION_WINDOWS]


def top_windows(score: torch.Tensor, p: int, n: int) -> list:
    """Top-left corners (y, x) of the n p x p windows with the largest sum of score (H, W), chosen
    greedily without overlap (each pick excludes the windows it overlaps); sums within 1e-4 of the
    largest one of each other are ties, taken in row order."""
    H, W = score.shape
    p = min(p, H, W)
    w = F.avg_pool2d(score[None, None].float(), p, stride=1)[0, 0].clone()
    # window sums that agree to 1e-4 of the largest are a tie, broken by position (first in row
    # order): float noise (batch composition, ~1e-7) must not change which windows are chosen
    top = float(w.max()) if w.numel() else 0.0
    if math.isfinite(top) and top > 0:
        w = torch.round(w / (top * 1e-4))
    out = []
    for _ in range(n):
        v, idx = w.flatten().max(0)
        if not torch.isfinite(v) or v <= 0:
            break
        y, x = divmod(int(idx), w.shape[1])
        out.append((y, x))
        w[max(0, y - p + 1):y + p, max(0, x - p + 1):x + p] = -math.inf
    return out


@torch.no_grad()
def occlusion_refine(policy, image: torch.Tensor, config: torch.Tensor, alpha: torch.Tensor, relevance: torch.Tensor,
                     tau: torch.Tensor, windows: list | None = None) -> torch.Tensor:
    """Refine |relevance| (B, H, W) by occluding the windows where it is largest.

    windows: [(side p, count n)] (default occlusion_windows): per size, the n p x p windows of largest
    |relevance| sum (greedy, no overlap within a size). Each window P is painted with the image's
    median colour and its measured effect E(P) = sum_j alpha_j |tau_j(x with P painted) - tau_j(x)|
    is spread over P's pixels in proportion to |relevance|; a pixel keeps the largest value:
        M(q) = max(|R(q)|, max_{P containing q} E(P) |R(q)| / sum_{q' in P} |R(q')|).
    One batched forward pass of B * (sum of counts) images."""
    B, _, H, W = image.shape
    windows = occlusion_windows(H, W) if windows is None else windows
    absr = relevance.abs()
    fill = median_colour(image)
    masks, owners = [], []
    for b in range(B):
        for p, n in windows:
            for (y, x) in top_windows(absr[b], p, n):
                m = torch.zeros(1, H, W, dtype=torch.bool, device=image.device)
                m[:, y:y + p, x:x + p] = True
                masks.append(m)
                owners.append(b)
    out = absr.clone()
    if not masks:
        return out
    mk = torch.stack(masks)  # (N, 1, H, W)
    own = torch.tensor(owners, device=image.device)
    occluded = torch.where(mk, fill[own], image[own])
    eff = (alpha[own] * (policy(occluded, config[own]) - tau[own]).abs()).sum(1)
    for i in torch.argsort(eff).tolist():  # windows of different images never mix
        b, m = owners[i], mk[i, 0]
        tot = absr[b][m].sum()
        if tot > 0:
            out[b][m] = torch.maximum(out[b][m], absr[b][m] / tot * eff[i])
    return out


def completeness_gap(ig: IntegratedGradients, alpha) -> np.ndarray:
    """(B,) sum of image and configuration relevance minus the alpha-weighted torque change
    sum_j alpha_j |tau_j(x) - tau_j(x0)| it adds up to in the limit of many path points."""
    total = ig.image.flatten(1).sum(1) + ig.config.sum(1)
    target = (alpha * (ig.torques - ig.reference_torques).abs()).sum(1)
    return (total - target).detach().cpu().numpy()
