"""Faithfulness of explanations, judged by what removing what they point at does to the torques.

Every number here is a change of the policy's torques, weighted by the importance factors alpha:

    effect(x', c') = sum_j alpha_j |tau_j(x', c') - tau_j(x, c)|        (N*m * m/(N*m) = m)

between the observation (x, c) and a modified one. Pieces (all plain functions over tensors, no ROS,
no simulator; `faithfulness.run` collects rollouts and runs them per task):

removal operators (`remove`), applied to the pixels of a mask:
  median  paint the image's per-channel median colour
  blur    the pixels of a Gaussian-blurred copy (sigma = max(H, W) / 8)
  road    noisy linear imputation (ROAD, Rong et al. 2022): each removed pixel is the mean of its
          8 neighbours (weights 1/6 for the 4 direct, 1/12 for the diagonal ones), solved as one
          sparse linear system over all removed pixels so that filled pixels use each other, plus
          Gaussian noise (std 0.01); the fill carries no trace of the mask's shape
rankings (`ranking`): pixels, or p x p patches (relevance summed over the patch), ordered by
  absolute relevance, ties in random order (seeded); a "random" map gives the random-order baseline.
deletion curve: the effect of removing the top fraction f of the ranking, f in FRACTIONS (0.5 ...
  50 %), divided by the effect of removing the whole image (so 1 = as much as removing everything).
  Higher is better. AUC = the mean over the fraction grid (area on the grid's index axis).
insertion curve: start from the fully removed image and put the top fraction back; the curve is the
  recovery 1 - effect(partial) / effect(fully removed). Higher is better. AUC the same way.
objects: with masks of the scene's objects (from the simulator's segmentation; measurement only)
  object effect     effect of removing the object's pixels
  pointing ratio    (sum of |R| on the object / sum of |R|) / (object pixels / image pixels);
                    1 = no better than a uniform map
  top-k ratio       effect of removing the k pixels of highest |R|, k = the object's pixel count,
                    divided by the effect of removing the object itself
configuration ablation: set a group to the training mean (or a velocity group to zero) and take the
  effect; compare with the groups' relevance ratios (Spearman rank correlation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..attribution.path import blur, default_sigma, median_colour
from .options import FRACTIONS, REMOVALS

ROAD_NOISE = 0.01


# ---- the effect on the torques ------------------------------------------------------------------
@torch.no_grad()
def torques(policy, images: torch.Tensor, configs: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Unclipped torques (N, J) of images (N, C, H, W) in [0, 1] and raw configurations (N, D)."""
    out = [policy(images[i:i + batch], configs[i:i + batch]) for i in range(0, images.shape[0], batch)]
    return torch.cat(out) if out else torch.zeros(0, policy.spec.n_joints, device=images.device)


def effect(tau: torch.Tensor, tau_ref: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """sum_j alpha_j |tau_j - tau_ref_j|, broadcasting tau (..., J) against tau_ref/alpha (J,) or (..., J)."""
    return (alpha * (tau - tau_ref).abs()).sum(-1)


# ---- removal operators --------------------------------------------------------------------------
def _road_fill(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Noisy linear imputation of the masked pixels of img (C, H, W) float, mask (H, W) bool."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    C, H, W = img.shape
    idx = np.flatnonzero(mask.ravel())
    n = len(idx)
    if n == 0:
        return img.copy()
    out = img.reshape(C, -1).astype(np.float64).copy()
    if n == H * W:  # nothing to impute from: the image's mean colour
        out[:] = img.reshape(C, -1).mean(1, keepdims=True)
    else:
        pos = -np.ones(H * W, np.int64)
        pos[idx] = np.arange(n)
        ys, xs = np.divmod(idx, W)
        rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.ones(n)]
        rhs = np.zeros((n, C))
        wsum = np.zeros(n)
        nbrs = [(-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
                (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12)]
        for dy, dx, w in nbrs:
            y2, x2 = ys + dy, xs + dx
            ok = (y2 >= 0) & (y2 < H) & (x2 >= 0) & (x2 < W)
            wsum += w * ok
        for dy, dx, w in nbrs:
            y2, x2 = ys + dy, xs + dx
            ok = (y2 >= 0) & (y2 < H) & (x2 >= 0) & (x2 < W)
            j = np.where(ok, y2 * W + x2, 0)
            wn = np.where(ok, w / np.maximum(wsum, 1e-12), 0.0)
            unknown = ok & (pos[j] >= 0)
            known = ok & ~unknown
            rows.append(np.flatnonzero(unknown))
            cols.append(pos[j[unknown]])
            vals.append(-wn[unknown])
            rhs[known] += wn[known, None] * out[:, j[known]].T
        A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsc()
        sol = spsolve(A, rhs)
        out[:, idx] = np.asarray(sol).reshape(n, C).T
    out[:, idx] += rng.normal(0.0, noise, (C, n))
    return np.clip(out, 0.0, 1.0).reshape(C, H, W).astype(np.float32)


class Remover:
    """Removes masked pixels of one image (C, H, W) with one operator; the fill is computed once."""

    def __init__(self, image: torch.Tensor, op: str = "median", seed: int = 0):
        if op not in REMOVALS:
            raise ValueError(f"unknown removal {op!r}; choose from {', '.join(REMOVALS)}")
        self.image, self.op = image, op
        self.rng = np.random.default_rng(seed)
        if op == "median":
            self.fill = median_colour(image[None])[0].expand_as(image)
        elif op == "blur":
            self.fill = blur(image[None], default_sigma(*image.shape[1:]))[0]
        else:
            self.fill = None

    def __call__(self, masks: torch.Tensor) -> torch.Tensor:
        """masks (N, H, W) bool -> (N, C, H, W) images with the masked pixels removed."""
        dev = self.image.device
        masks = torch.as_tensor(masks, dtype=torch.bool, device=dev)
        if self.fill is not None:
            return torch.where(masks[:, None], self.fill[None], self.image[None])
        img = self.image.cpu().numpy()  # ROAD's sparse solve runs in scipy, on the CPU
        filled = np.stack([_road_fill(img, m, self.rng, ROAD_NOISE) for m in masks.cpu().numpy()])
        return torch.from_numpy(filled).to(dev)


def remove(images: torch.Tensor, masks, op: str = "median", seed: int = 0) -> torch.Tensor:
    """images (N, C, H, W), masks (N, H, W) bool -> images with the masked pixels removed by `op`."""
    return torch.cat([Remover(images[i], op, seed + i)(torch.as_tensor(masks[i])[None]) for i in range(len(images))])


# ---- rankings and curves --------------------------------------------------------------------------
def ranking(relevance: np.ndarray, patch: int = 1, seed: int = 0) -> np.ndarray:
    """Pixel (or patch) indices of a map (H, W), most |relevance| first; ties in seeded random order.
    With patch p > 1 the map is summed over p x p tiles (partial tiles at the border) and the
    returned indices are tile indices on the (ceil(H/p), ceil(W/p)) grid."""
    r = np.abs(np.asarray(relevance, dtype=np.float64))
    if patch > 1:
        H, W = r.shape
        gh, gw = -(-H // patch), -(-W // patch)
        pad = np.zeros((gh * patch, gw * patch))
        pad[:H, :W] = r
        r = pad.reshape(gh, patch, gw, patch).sum((1, 3))
    flat = r.ravel()
    tie = np.random.default_rng(seed).random(flat.size)
    return np.lexsort((tie, -flat))


def top_masks(order: np.ndarray, counts: Sequence[int], shape: tuple, patch: int = 1) -> np.ndarray:
    """(len(counts), H, W) bool: the first counts[i] units of `order` (pixels, or patches clipped to
    the image) set."""
    H, W = shape
    gw = -(-W // patch)
    out = np.zeros((len(counts), H, W), bool)
    for i, k in enumerate(counts):
        sel = order[:int(k)]
        if patch == 1:
            out[i].flat[sel] = True
        else:
            for u in sel:
                y, x = divmod(int(u), gw)
                out[i, y * patch:(y + 1) * patch, x * patch:(x + 1) * patch] = True
    return out


def units_for(fractions: Sequence[float], shape: tuple, patch: int = 1) -> list[int]:
    """Numbers of ranked units nearest to each fraction of the image's units (at least one)."""
    H, W = shape
    n_units = (-(-H // patch)) * (-(-W // patch))
    return [int(min(n_units, max(1, round(f * n_units)))) for f in fractions]


def auc(curve) -> float:
    """Area under a curve sampled on the fraction grid, per unit of the grid's index axis (the mean)."""
    c = np.asarray(curve, dtype=np.float64)
    c = c[np.isfinite(c)]
    return float(c.mean()) if c.size else float("nan")


@dataclass
class Curves:
    deletion: np.ndarray   # (F,) effect of removing the top fraction / effect of removing all
    insertion: np.ndarray  # (F,) recovery after inserting the top fraction into the removed image
    full_effect: float     # effect of removing the whole image


def curves(policy, image: torch.Tensor, config: torch.Tensor, alpha: torch.Tensor, relevance: np.ndarray,
           op: str = "median", fractions: Sequence[float] = FRACTIONS, patch: int = 1, seed: int = 0,
           tau_ref: Optional[torch.Tensor] = None) -> Curves:
    """Deletion and insertion curves of one observation (image (C, H, W), config (D,), alpha (J,))
    for one relevance map (H, W)."""
    H, W = image.shape[1:]
    rem = Remover(image, op, seed)
    order = ranking(relevance, patch, seed)
    counts = units_for(fractions, (H, W), patch)
    keep = top_masks(order, counts, (H, W), patch)
    everything = np.ones((1, H, W), bool)
    F_ = len(counts)
    removed = rem(torch.from_numpy(everything))
    # insertion: the fully removed image with the top units put back (for ROAD this differs from
    # removing the complement, whose fill would be imputed from the few kept pixels)
    inserted = torch.where(torch.from_numpy(keep).to(image.device)[:, None], image[None], removed)
    imgs = torch.cat([rem(torch.from_numpy(keep)), inserted, removed])
    cfg = config[None].expand(len(imgs), -1)
    tau = torques(policy, imgs, cfg)
    if tau_ref is None:
        tau_ref = torques(policy, image[None], config[None])[0]
    e = effect(tau, tau_ref, alpha)
    full = float(e[-1])
    safe = full if full > 0 else float("nan")
    return Curves(deletion=(e[:F_] / safe).cpu().numpy(), insertion=(1.0 - e[F_:2 * F_] / safe).cpu().numpy(),
                  full_effect=full)


# ---- objects -------------------------------------------------------------------------------------
def pointing_ratio(relevance: np.ndarray, mask: np.ndarray) -> float:
    """(share of |relevance| on the mask) / (the mask's share of the pixels); NaN for an empty mask
    or an all-zero map."""
    r = np.abs(np.asarray(relevance, dtype=np.float64))
    m = np.asarray(mask, bool)
    tot, area = r.sum(), m.mean()
    if tot <= 0 or area <= 0:
        return float("nan")
    return float(r[m].sum() / tot / area)


def object_effects(policy, image, config, alpha, masks: dict, op: str = "median", seed: int = 0,
                   tau_ref=None) -> dict:
    """name -> effect of removing the object's pixels (non-empty masks only)."""
    names = [k for k, m in masks.items() if np.any(m)]
    if not names:
        return {}
    rem = Remover(image, op, seed)
    imgs = rem(torch.from_numpy(np.stack([np.asarray(masks[k], bool) for k in names])))
    if tau_ref is None:
        tau_ref = torques(policy, image[None], config[None])[0]
    e = effect(torques(policy, imgs, config[None].expand(len(imgs), -1)), tau_ref, alpha)
    return dict(zip(names, e.tolist()))


def topk_effects(policy, image, config, alpha, relevance_maps: dict, k: int, op: str = "median", seed: int = 0,
                 tau_ref=None) -> dict:
    """method -> effect of removing the k pixels of highest |relevance| of that method's map."""
    if k <= 0 or not relevance_maps:
        return {m: float("nan") for m in relevance_maps}
    H, W = image.shape[1:]
    names = list(relevance_maps)
    masks = np.concatenate([top_masks(ranking(relevance_maps[m], 1, seed), [k], (H, W)) for m in names])
    rem = Remover(image, op, seed)
    if tau_ref is None:
        tau_ref = torques(policy, image[None], config[None])[0]
    e = effect(torques(policy, rem(torch.from_numpy(masks)), config[None].expand(len(names), -1)), tau_ref, alpha)
    return dict(zip(names, e.tolist()))


# ---- configuration ablation ----------------------------------------------------------------------
def ablations(spec) -> list[tuple[str, str]]:
    """(group, how) pairs: every group to its training mean; velocity groups also to zero."""
    out = [(g, "mean") for g in spec.group_names]
    out += [(g, "zero") for g in spec.group_names if g.endswith("velocity")]
    return out


@torch.no_grad()
def group_effects(policy, image: torch.Tensor, config: torch.Tensor, alpha: torch.Tensor, op: str = "median",
                  seed: int = 0, tau_ref=None) -> dict:
    """(group, how) -> effect of that ablation for one observation; ("image", op) removes the whole
    image with the removal operator."""
    spec = policy.spec
    sl = spec.group_slices()
    rows, keys = [], []
    for g, how in ablations(spec):
        c = config.clone()
        c[sl[g]] = policy.config_mean.view(-1)[sl[g]] if how == "mean" else 0.0
        rows.append(c)
        keys.append((g, how))
    H, W = image.shape[1:]
    img_removed = Remover(image, op, seed)(torch.ones(1, H, W, dtype=torch.bool, device=image.device))
    imgs = torch.cat([image[None].expand(len(rows), -1, -1, -1), img_removed])
    cfgs = torch.stack(rows + [config])
    if tau_ref is None:
        tau_ref = torques(policy, image[None], config[None])[0]
    e = effect(torques(policy, imgs, cfgs), tau_ref, alpha)
    out = dict(zip(keys, e[:-1].tolist()))
    out[("image", op)] = float(e[-1])
    return out


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN if either side is constant."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def random_map(shape: tuple, seed: int) -> np.ndarray:
    """A random relevance map (H, W): its ranking is the random-order baseline."""
    return np.random.default_rng(seed).random(shape)


MapFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple]
