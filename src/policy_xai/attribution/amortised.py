"""Amortised occlusion saliency: a small network, trained offline per policy, that predicts the
policy's dense occlusion map from the image in one forward pass (in the spirit of Dabkowski & Gal
2017, "Real time image saliency for black box classifiers", and FastSHAP, Jethani et al. 2022).
The attribution methods `occlusion_net` and `occlusion_net_refined` (engine.py). "Amortised" is
meant as in amortised explanation models (the cost paid once, in training); it is not the paper's
amortisation over joints by importance factors, which every method here applies.

Teacher (`teacher_map`, the expensive perturbation map the student learns):
    windows P of side p in SIZES (3/64, 4/64 and 8/64 of the image's larger side: 3, 4 and 8 px at
    64x64), top-left corners on a grid of stride max(STRIDE, p // 2) (2, 2 and 4 px at 64x64; the
    last row / column of windows is moved to touch the border, so every pixel is covered). Each
    window is painted with the image's per-channel median colour and its effect on the torques is
        E(P) = sum_j alpha_j |tau_j(x with P painted, c) - tau_j(x, c)|        (N*m * m/(N*m) = m)
    (the effect of faithfulness.metrics). A pixel q gets, over the windows of all sizes together,
        T_mean(q) = mean_{P containing q} E(P)                              (reduce="mean")
        T_max(q)  = max_{P containing q} E(P)                               (reduce="max")
        T_norm(q) = max_{P containing q} E(P) / |P|^BETA + 1e-3 T_mean(q)   (reduce="norm", default)
    BETA = 0.5 (E per window side): a larger window must change the torques proportionally more to
    outrank a smaller one, so the top pixels are the smallest window that removes what matters, at
    the scale of the object (T_max is dominated by the largest windows, T_mean blurs the object
    into its surroundings; measured on validation rollouts, docs in scripts/train_explainers.py);
    the small mean term breaks the ties inside a window. All windows go through the policy in
    batched forward passes under no_grad: N_windows forwards per observation (2210 at 64x64).

Student (`Explainer`): image (B, 3, H, W) in [0, 1] plus two coordinate channels (x, y in [-1, 1];
the policy reads positions through its spatial softmax) -> a stride-2 encoder (3x3 convs at H, H/2,
H/4, H/8, batch-norm-free, ReLU) -> a 3x3 bottleneck at H/8 -> a decoder that upsamples (nearest)
x2 three times, concatenating the encoder's features of the same size (U-Net skips), -> one logit
per pixel l(q). The map is
        S(q) = softmax_q(l)(q) = exp(l(q)) / sum_q' exp(l(q'))        (non-negative, sums to 1)
i.e. a distribution over the pixels; only its ranking and its shares matter to the metrics
(top-k and pointing are scale-free), so the teacher's scale (which follows the torques) is not
learned.

Refined (`explain_amortised_refined`): S re-ranked by measuring the effect of occluding its top
windows (path.occlusion_refine, the refinement of ig_occlusion, with S in place of |ig|): 12 more
policy forwards in one batch.

Loss (`train_explainer`), per observation, with the teacher map normalised to a distribution
    p(q) = T(q)^gamma / sum_q' T(q')^gamma       (gamma = SHARPEN: emphasises the top pixels)
    L = KL(p || S) = sum_q p(q) (log p(q) - log S(q))
(an all-zero teacher map gives the uniform p), averaged over the batch; Adam with a one-cycle
learning rate (10 % warm-up to lr, then cosine decay), batches of 32, no augmentation. The policy
is used only to compute the teacher maps; at run time the explainer needs the image only (the
refined map needs the policy, the configuration and alpha as well).

Files (`save_explainer` / `load_explainer`): safetensors with metadata {format, arch (JSON of the
architecture parameters), policy_sha256 (sha256 of the policy weights file the explainer was
trained for), policy_file, teacher (JSON of the teacher's parameters), extra keys}; loading with a
policy path (or a policy file's sha256) that does not match raises ExplainerMismatchError.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..files import file_sha256, network_from_file, read_safetensors
from .path import median_colour

FORMAT = "policy_xai.explainer/1"
#: teacher window sides as fractions of the image's larger side (3, 4 and 8 px at 64x64)
SIZES = (3 / 64, 4 / 64, 8 / 64)
#: smallest teacher window stride in pixels at 64x64 (scaled with the image side); a window of
#: side p moves by max(STRIDE, p // 2)
STRIDE = 2
#: exponent of the window area in the "norm" teacher
BETA = 0.5
REDUCTIONS = ("norm", "mean", "max")
#: exponent applied to the teacher map before it is normalised into the training target
SHARPEN = 2.0


class ExplainerLoadError(RuntimeError):
    """An explainer file that is missing, corrupt, or not an explainer."""


class ExplainerMismatchError(ExplainerLoadError):
    """An explainer trained for another policy file than the one it is used with."""


# ---- the teacher: dense occlusion ------------------------------------------------------------------
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


# ---- the student ----------------------------------------------------------------------------------
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
    from .path import occlusion_refine

    B = image.shape[0]
    a = _as_alpha(alpha, image.device)
    a = a.expand(B, -1) if a.ndim == 1 else a
    s = explain_amortised(explainer, image)
    tau = policy(image, config)
    return occlusion_refine(policy, image, config, a, s, tau, windows)


# ---- training -------------------------------------------------------------------------------------
def target_distribution(maps: torch.Tensor, sharpen: float = SHARPEN) -> torch.Tensor:
    """p = T^gamma / sum T^gamma per map (B, H, W); an all-zero map becomes uniform."""
    t = maps.clamp_min(0).flatten(1).double()
    t = t / t.amax(1, keepdim=True).clamp_min(1e-30)
    t = t ** float(sharpen)
    s = t.sum(1, keepdim=True)
    t = torch.where(s > 0, t / s.clamp_min(1e-30), torch.full_like(t, 1.0 / t.shape[1]))
    return t.float().view_as(maps)


def kl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over the batch of KL(target || softmax(logits)) over the pixels."""
    lq = torch.log_softmax(logits.flatten(1), 1)
    p = target.flatten(1)
    return (p * (torch.log(p.clamp_min(1e-12)) - lq)).sum(1).mean()


def train_on_maps(images: torch.Tensor, maps: torch.Tensor, epochs: int = 60, seed: int = 0, width: int = 16,
                  lr: float = 3e-3, batch: int = 32, sharpen: float = SHARPEN, coords: bool = True,
                  log=None) -> tuple[Explainer, list]:
    """Fit an Explainer to teacher maps (N, H, W) of images (N, C, H, W); returns (explainer,
    per-epoch mean training losses)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        net = Explainer(images.shape[1], width, coords).to(images.device)  # trained where the images are
    finally:
        torch.random.set_rng_state(gen_state)
    target = target_distribution(maps, sharpen)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    N = images.shape[0]
    steps = max(1, epochs * math.ceil(N / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = torch.Generator().manual_seed(seed)
    losses = []
    net.train()
    for ep in range(int(epochs)):
        perm = torch.randperm(N, generator=rng)
        tot = 0.0
        for i in range(0, N, batch):
            idx = perm[i:i + batch]
            loss = kl_loss(net.logits(images[idx]), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        losses.append(tot / N)
        if log:
            log(ep, losses[-1])
    net.eval()
    net.meta = {"sharpen": float(sharpen), "epochs": int(epochs), "seed": int(seed), "lr": float(lr)}
    return net, losses


def train_explainer(policy, images: torch.Tensor, configs: torch.Tensor, alphas, epochs: int = 60, seed: int = 0,
                    reduce: str = "norm", maps: Optional[torch.Tensor] = None, sizes: Sequence[float] = SIZES,
                    stride: Optional[int] = None, **kw) -> Explainer:
    """Compute the teacher maps (reduce, sizes, stride: teacher_map) of the observations (unless
    given as maps (N, H, W)) and fit an Explainer to them (kw: train_on_maps)."""
    if maps is None:
        maps = teacher_map(policy, images, configs, alphas, reduce=reduce, sizes=sizes, stride=stride)
    net, losses = train_on_maps(images, maps, epochs=epochs, seed=seed, **kw)
    net.meta.update({"reduce": reduce, "final_loss": losses[-1] if losses else float("nan"),
                     "sizes": [float(f) for f in sizes], "train_states": int(images.shape[0])})
    return net


# ---- files ----------------------------------------------------------------------------------------
def save_explainer(explainer: Explainer, path, policy_path, **metadata) -> Path:
    """Weights + architecture + the policy file's sha256 in one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = file_sha256(policy_path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in explainer.state_dict().items()}
    teacher = {"sizes": list(SIZES), "stride": STRIDE, "beta": BETA, "fill": "median",
               **{k: v for k, v in explainer.meta.items()}}
    meta = {"format": FORMAT, "arch": json.dumps(explainer.arch, sort_keys=True), "policy_sha256": sha,
            "policy_file": Path(policy_path).name, "teacher": json.dumps(teacher, sort_keys=True),
            **{k: str(v) for k, v in metadata.items()}}
    save_file(tensors, str(path), metadata=meta)
    explainer.policy_sha256 = sha
    return path


def load_explainer(path, policy_path=None, policy_sha256: Optional[str] = None) -> Explainer:
    """Load an explainer file; with policy_path (or policy_sha256) check that it was trained for
    that policy file (ExplainerMismatchError otherwise)."""
    path = Path(path)
    meta, state = read_safetensors(path, ExplainerLoadError, "explainer file")
    if meta.get("format") != FORMAT or "arch" not in meta:
        raise ExplainerLoadError(f"{path}: not an explainer file (format {meta.get('format')!r})")
    want = policy_sha256 or (file_sha256(policy_path) if policy_path is not None else None)
    if want is not None and want != meta.get("policy_sha256"):
        raise ExplainerMismatchError(
            f"{path}: trained for the policy file {meta.get('policy_file')!r} with sha256 "
            f"{meta.get('policy_sha256', '?')[:12]}..., but the policy given has sha256 {want[:12]}...; retrain it "
            "(scripts/train_explainers.py)")
    net, arch = network_from_file(path, meta, state, Explainer, ExplainerLoadError)
    net.policy_sha256 = meta.get("policy_sha256", "")
    net.meta = json.loads(meta.get("teacher", "{}"))
    net.eval()
    return net


def time_explainer(explainer: Explainer, height: int = 64, width: int = 64, repeats: int = 50) -> float:
    """Median ms of one explain_amortised call on one image (at the current torch thread count)."""
    from ..device import model_device

    x = torch.rand(1, explainer.arch["channels"], height, width, device=model_device(explainer))
    for _ in range(5):
        explain_amortised(explainer, x)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        explain_amortised(explainer, x)
        ts.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(ts))


# ---- the explainer of a policy object -------------------------------------------------------------
#: the explainer file that belongs to a policy weights file: models/reach.safetensors ->
#: models/reach.explainer.safetensors (load_policy attaches it when it exists and matches)
EXPLAINER_SUFFIX = ".explainer.safetensors"


def explainer_path_for(policy_path) -> Path:
    p = Path(policy_path)
    return p.with_name(p.name[:-len(p.suffix)] + EXPLAINER_SUFFIX if p.suffix else p.name + EXPLAINER_SUFFIX)


def _fingerprint(policy) -> tuple:
    """Identity of the policy's weights: (storage, in-place version) of every parameter. A copy of
    the network (new storage) or an in-place change of its weights (version) gives another value."""
    return tuple((p.data_ptr(), p._version) for p in policy.parameters())


def attach_explainer(policy, explainer: Explainer) -> None:
    """Use `explainer` for the methods "occlusion_net" / "occlusion_net_refined" of this policy object,
    for as long as its weights stay the ones it has now."""
    policy._xai_explainer = (explainer, _fingerprint(policy))
    policy._xai_explainer_error = None


def has_explainer(policy) -> bool:
    rec = getattr(policy, "_xai_explainer", None)
    return rec is not None and rec[1] == _fingerprint(policy)


def explainer_of(policy) -> Explainer:
    """The explainer attached to `policy` (ExplainerLoadError / ExplainerMismatchError with the
    reason when there is none that fits)."""
    rec = getattr(policy, "_xai_explainer", None)
    if rec is None:
        why = getattr(policy, "_xai_explainer_error", None) or (
            "no explainer is attached to this policy (load_policy attaches <weights>" + EXPLAINER_SUFFIX
            + " when the file exists)")
        raise ExplainerLoadError(f"the occlusion_net methods need an explainer trained for this policy: {why}; "
                                 "train one with `policy-xai explainer --task TASK --policy WEIGHTS`")
    if rec[1] != _fingerprint(policy):
        raise ExplainerMismatchError("the policy's weights changed (or it is a copy) since its explainer was "
                                     "attached: the explainer describes the original weights only")
    return rec[0]


def attach_for_file(policy, policy_path) -> Optional[Path]:
    """Attach <policy_path stem>.explainer.safetensors to `policy` when it exists and was trained for
    that weights file; returns its path, or None (the reason kept for explainer_of's error)."""
    path = explainer_path_for(policy_path)
    policy._xai_explainer = None
    if not path.is_file():
        policy._xai_explainer_error = f"no explainer file {path} next to the weights"
        return None
    try:
        ex = load_explainer(path, policy_path=policy_path)
    except ExplainerLoadError as e:
        policy._xai_explainer_error = str(e)
        return None
    attach_explainer(policy, ex)
    return path


# ---- the amortised explanation: student map + two-leg reference path ------------------------------
#: path points of the configuration leg (fully connected head passes only: cheap)
CONFIG_STEPS = 32


class Amortised(NamedTuple):
    image: torch.Tensor            # (B, H, W) S * image total (signed like the total)
    share: torch.Tensor            # (B, H, W) the student's distribution S (sums to 1)
    config: torch.Tensor           # (B, D) configuration relevance (normalised units)
    points: torch.Tensor           # (B, K) feature-point relevance (display only)
    image_total: torch.Tensor      # (B,)
    torques: torch.Tensor          # (B, J) tau(x, c)
    reference_torques: torch.Tensor  # (B, J) tau(x0, c0)
    image_joint: torch.Tensor      # (B, J) the image leg's change per torque, alpha_j s_j (tau_j(x,.) - tau_j(x0,.))
    config_joint: torch.Tensor     # (B, J, D) configuration relevance per torque (sums over J to `config`)
    feature_points: torch.Tensor   # (B, 2K) the policy's feature points of x


#: order of the two legs of the reference path (amortised_explanation): "image" first (then the
#: configuration at the image x), "config" first (at the reference image x0, then the image at c),
#: or "both": the mean of the two orders (the Shapley value of the two inputs)
LEG_ORDERS = ("image", "config", "both")
LEG_ORDER = "both"


def amortised_explanation(policy, explainer: Explainer, image: torch.Tensor, config: torch.Tensor,
                          alpha: torch.Tensor, steps: int = CONFIG_STEPS, sigma: Optional[float] = None,
                          order: str = LEG_ORDER) -> Amortised:
    """The student's map, with the image's and the configuration's relevance measured along the
    two-leg paths from the reference (x0, c0) (x0 the blurred image of `ig`, c0 the training mean)
    to (x, c), with f = sum_j alpha_j s_j tau_j, s_j = sign(tau_j(x, c) - tau_j(x0, c0)) (as `ig`):

        order "image":   image leg (x0, c0) -> (x, c0):  I = f(x, c0) - f(x0, c0)
                         configuration leg (x, c0) -> (x, c) by integrated gradients over c at x:
                         R_c = (c - c0) * mean_k grad_c f(x, c0 + t_k (c - c0))
        order "config":  configuration leg at x0 (R_c as above with x0), then I = f(x, c) - f(x0, c)
        order "both":    the mean of the two (the two-player Shapley split of the change)

    so I + sum R_c = sum_j alpha_j |tau_j(x, c) - tau_j(x0, c0)| (the total `ig` explains, to the
    midpoint rule's accuracy over the configuration leg). The image relevance is R_x(q) = S(q) I.
    Both are also kept per torque (I_j, R_c^(j), with f_j = alpha_j s_j tau_j) for the ratios:
        image: sum_j |I_j|,   group G: sum_j |sum_{i in G} R_c,i^(j)|
    (how much each input moves each torque; a net sum over torques would let opposite moves
    cancel, which the ablation effect sum_j alpha_j |d tau_j| does not).
    The configuration legs hold the image fixed: their path points share one set of conv features,
    so the cost is two conv passes (x, x0), the student and m (2m for "both") head passes."""
    from .path import path_sigma, reference_image

    if order not in LEG_ORDERS:
        raise ValueError(f"order must be one of {', '.join(LEG_ORDERS)}, got {order!r}")
    B, _, H, W = image.shape
    x0 = reference_image(image, "blur", path_sigma(H, W) if sigma is None else sigma)
    cn = policy.normalise_config(config)
    cn0 = torch.zeros_like(cn)
    with torch.no_grad():
        share = explain_amortised(explainer, image)
        pts_all = policy.softmax(policy.conv_features(torch.cat([image, x0])))
        pts, pts0 = pts_all[:B], pts_all[B:]
        ends = policy.head(torch.cat([pts, pts, pts0, pts0]), torch.cat([cn, cn0, cn0, cn]))
    tau, tau_c0, tau0, tau_x0 = ends[:B], ends[B:2 * B], ends[2 * B:3 * B], ends[3 * B:]
    d = tau - tau0
    tol = 1e-5 * (tau.abs() + tau0.abs()) + 1e-9
    w = alpha * torch.where(d.abs() > tol, torch.sign(d), torch.zeros_like(d))
    m = int(steps)
    t = ((torch.arange(m, dtype=torch.float32, device=cn.device) + 0.5) / m).view(m, 1, 1)
    legs = {"image": [pts], "config": [pts0], "both": [pts, pts0]}[order]
    n, J = len(legs), tau.shape[1]
    # one configuration integral per joint (seed alpha_j s_j on torque j alone) in one backward pass:
    # rows (joint, leg, path point, observation); the head is cheap
    eye = torch.eye(J, dtype=w.dtype, device=w.device)
    seeds = (eye[:, None, None, None, :] * w[None, None, None]).expand(J, n, m, B, J).reshape(-1, J)
    with torch.enable_grad():
        p_cfg = (cn0.unsqueeze(0) + t * (cn - cn0).unsqueeze(0))  # (m, B, D)
        p_cfg = p_cfg[None, None].expand(J, n, m, B, -1).reshape(-1, cn.shape[1]).clone().requires_grad_(True)
        at = torch.stack(legs)[None, :, None].expand(J, n, m, B, -1).reshape(-1, pts.shape[1])
        out = policy.head(at, p_cfg)
        (g_cfg,) = torch.autograd.grad((out * seeds).sum(), (p_cfg,))
        # feature points: gradient at the image leg's midpoint times their displacement (display only)
        mid = (0.5 * (pts + pts0)).requires_grad_(True)
        (g_pts,) = torch.autograd.grad((policy.head(mid, cn0) * w).sum(), (mid,))
    R_joint = ((cn - cn0)[None] * g_cfg.view(J, n * m, B, -1).mean(1)).transpose(0, 1)  # (B, J, D)
    R_pts = ((pts - pts0) * g_pts).view(B, -1, 2).sum(-1)
    legs_I = {"image": w * (tau_c0 - tau0), "config": w * (tau - tau_x0)}
    I_joint = legs_I[order] if order != "both" else 0.5 * (legs_I["image"] + legs_I["config"])  # (B, J)
    total = I_joint.sum(1)
    return Amortised(share * total.view(B, 1, 1), share, R_joint.sum(1).detach(), R_pts.detach(), total, tau, tau0,
                     I_joint.detach(), R_joint.detach(), pts)
