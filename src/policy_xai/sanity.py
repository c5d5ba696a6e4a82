"""Model-randomisation sanity check of the attribution methods (Adebayo et al. 2018, "Sanity checks
for saliency maps"; discussed for visuomotor/DRL policies in the Grad-CAM paper 002).

Cascading randomisation: starting from the trained (or given) network, the layers' weights are
re-initialised one after the other FROM THE TOP (output fc first, then the hidden fcs, then the conv
layers from the last down to conv1), and after every step the same observations are explained
again. An explanation that reflects what the network computes must change as its weights are
destroyed; a method whose maps stay the same (e.g. because it mostly reconstructs the image, as
Adebayo et al. report for Guided Backprop) is flagged.

Metrics, per observation, between the original and the randomised explanation:
  image_spearman   Spearman rank correlation of the absolute per-pixel maps |R(x)| (H*W values)
  image_ssim       mean SSIM (Wang et al. 2004; Gaussian window sigma 1.5, 11x11, K1=0.01, K2=0.03)
                   of the absolute maps, each normalised to [0, 1] by its maximum
  config_spearman  Spearman rank correlation of the absolute configuration relevance (D values)
Degenerate (constant) inputs of a rank correlation give 1 if both vectors are identical, else 0.

The spatial softmax has no weights (its temperature is a hyper-parameter and stays). A randomised
layer gets the PyTorch default initialisation (`reset_parameters`, the distribution an untrained
network starts from), drawn from a generator seeded per step.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .policy import VisuomotorPolicy

METRICS = ("image_spearman", "image_ssim", "config_spearman")
#: temperature used for an untrained, randomly initialised network (see policy_from_arg)
RANDOM_NET_TEMPERATURE = 0.02


# ---- similarity metrics --------------------------------------------------------------------------
def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=1, method="average")


def spearman(a, b) -> np.ndarray:
    """Row-wise Spearman rank correlation of a and b, (B, N) each (or (N,)) -> (B,) (or scalar).

    Ties get average ranks. A row that is constant in a or b has no rank order: the correlation is
    1 if the two rows are identical, else 0 (a map that collapsed to a constant has changed)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    single = a.ndim == 1
    if single:
        a, b = a[None], b[None]
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    na, nb = np.sqrt((ra * ra).sum(1)), np.sqrt((rb * rb).sum(1))
    ok = (na > 0) & (nb > 0)
    rho = np.where(ok, (ra * rb).sum(1) / np.where(ok, na * nb, 1.0), 0.0)
    same = ~ok & np.all(a == b, axis=1)
    rho = np.where(same, 1.0, np.clip(rho, -1.0, 1.0))
    return rho[0] if single else rho


def normalise_abs(maps) -> np.ndarray:
    """|maps| / max|map| per map, (B, H, W) -> values in [0, 1]; an all-zero map stays zero."""
    m = np.abs(np.asarray(maps, dtype=np.float64))
    mx = m.reshape(len(m), -1).max(1).reshape(-1, *([1] * (m.ndim - 1)))
    return m / np.where(mx > 0, mx, 1.0)


def ssim(x, y, sigma: float = 1.5, data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Mean structural similarity of images x, y (B, H, W) (or (H, W)) with a Gaussian window.

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
    C1 = (k1 L)^2, C2 = (k2 L)^2, local moments by Gaussian filtering (sigma 1.5, truncated at 3.5
    sigma -> 11x11), averaged over the pixels whose window lies inside the image (if any)."""
    from scipy.ndimage import gaussian_filter

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    single = x.ndim == 2
    if single:
        x, y = x[None], y[None]
    if x.shape != y.shape or x.ndim != 3:
        raise ValueError(f"ssim needs two (B, H, W) arrays of the same shape, got {x.shape} and {y.shape}")
    truncate = 3.5

    def filt(z):
        return gaussian_filter(z, sigma=(0, sigma, sigma), truncate=truncate, mode="reflect")

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    r = int(truncate * sigma + 0.5)
    if s.shape[1] > 2 * r and s.shape[2] > 2 * r:
        s = s[:, r:-r, r:-r]
    out = s.mean(axis=(1, 2))
    return out[0] if single else out


# ---- the randomisation cascade -------------------------------------------------------------------
def cascade_layers(policy: VisuomotorPolicy) -> list[tuple[str, torch.nn.Module]]:
    """Layers with weights, from the top: fc_M (output), ..., fc_1, conv_L, ..., conv_1. A ResNet-family
    trunk is randomised a unit at a time: the 1x1 keypoint conv, each residual block (`layer2.1` ...,
    its convs, norms and downsample together) from the last, then the stem (7x7 conv and its norm)."""
    fcs = [(f"fc{i + 1}", m) for i, m in enumerate(policy.fcs)]
    if policy.spec.trunk is not None:
        t = policy.trunk
        blocks = [(f"layer{i + 1}.{j}", b)
                  for i in range(t.n_stages) for j, b in enumerate(getattr(t, f"layer{i + 1}"))]
        units = [("stem", torch.nn.ModuleList([t.conv1, t.bn1]))] + blocks + [("keypoints", policy.keypoints)]
        return fcs[::-1] + units[::-1]
    convs = [(f"conv{i + 1}", m) for i, m in enumerate(policy.convs)]
    return fcs[::-1] + convs[::-1]


def _reset(module: torch.nn.Module) -> None:
    """The PyTorch default initialisation of a layer, or of every layer inside a unit (norms included:
    BatchNorm's running statistics too). A layer on another device is re-initialised on a CPU copy
    and copied over: the same numbers wherever the network runs (the seed is the CPU generator's)."""
    from .device import model_device

    if model_device(module).type != "cpu":
        cpu = copy.deepcopy(module).cpu()
        _reset(cpu)
        with torch.no_grad():
            module.load_state_dict(cpu.state_dict())
        return
    if hasattr(module, "reset_parameters"):
        module.reset_parameters()
        return
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def randomisation_cascade(policy: VisuomotorPolicy, seed: int = 0):
    """Yield (layer name, network) after re-initialising each layer in turn, cumulatively, from the
    top. The input policy is not modified; the yielded network is one copy, changed in place."""
    net = copy.deepcopy(policy)
    net.eval()
    for step, (name, _) in enumerate(cascade_layers(policy)):
        module = dict(cascade_layers(net))[name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + step + 1)
            _reset(module)
        yield name, net


# ---- running the check ---------------------------------------------------------------------------
@dataclass
class SanityResult:
    methods: list
    steps: list  # "original" then the randomised layer names, cumulative from the top
    n_fc: int  # number of fc layers (steps[n_fc] = every layer above the convs randomised)
    values: dict = field(default_factory=dict)  # metric -> array (n_methods, n_steps, n_samples)

    def mean(self, metric: str) -> np.ndarray:
        return np.nanmean(self.values[metric], axis=2)

    def std(self, metric: str) -> np.ndarray:
        return np.nanstd(self.values[metric], axis=2)

    @property
    def head_step(self) -> int:
        """Index of the step after which every layer above the conv layers is randomised."""
        return self.n_fc

    def flags(self, threshold: float = 0.9) -> list[str]:
        """Methods whose image maps do not change (mean rank correlation > threshold) after the
        whole head (all fc layers) is randomised, or after every layer is."""
        out = []
        rho = self.mean("image_spearman")
        for i, m in enumerate(self.methods):
            head, full = rho[i, self.head_step], rho[i, -1]
            if head > threshold:
                out.append(f"FLAG {m}: image maps barely change when every layer above the convs is randomised "
                           f"(mean rank corr {head:.3f} > {threshold} after {self.steps[self.head_step]})")
            if full > threshold:
                out.append(f"FLAG {m}: image maps barely change even with ALL layers randomised "
                           f"(mean rank corr {full:.3f} > {threshold})")
        return out

    def rows(self) -> list[dict]:
        """One row per (method, step) with mean and std of every metric."""
        rows = []
        for i, m in enumerate(self.methods):
            for s, name in enumerate(self.steps):
                row = {"method": m, "step": s, "randomised_down_to": name}
                for k in METRICS:
                    row[f"{k}_mean"] = float(np.nanmean(self.values[k][i, s]))
                    row[f"{k}_std"] = float(np.nanstd(self.values[k][i, s]))
                rows.append(row)
        return rows


def _explain_maps(policy, images, configs, method, layer, batch):
    from .attribution import explain

    img_l, cfg_l = [], []
    for s in range(0, images.shape[0], batch):
        e = explain(policy, images[s:s + batch], configs[s:s + batch], method, layer=layer)
        img_l.append(e.image.cpu().numpy())
        cfg_l.append(e.config.cpu().numpy())
    return np.concatenate(img_l), np.concatenate(cfg_l)


def run_sanity(policy: VisuomotorPolicy, images: torch.Tensor, configs: torch.Tensor, methods: Sequence[str],
               seed: int = 0, layer: int = 0, batch: int = 16,
               progress: Optional[Callable[[str], None]] = None) -> SanityResult:
    """Cascading randomisation sanity check. images (N, C, H, W) in [0, 1], configs (N, D) raw.

    progress(label) is called once per explained (method, step)."""
    from .attribution import METHODS

    from .attribution.engine import EXPLAINER_METHODS

    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
    amort = [m for m in methods if m in EXPLAINER_METHODS]
    if amort:
        raise ValueError(f"{', '.join(amort)}: no randomisation check (its explainer is trained for one set of "
                         "weights; a randomised network would need its own)")
    methods = list(methods)
    n = images.shape[0]
    layers = cascade_layers(policy)
    steps = ["original"] + [name for name, _ in layers]
    res = SanityResult(methods, steps, len(policy.fcs),
                       {k: np.full((len(methods), len(steps), n), np.nan) for k in METRICS})
    originals = {}
    for i, m in enumerate(methods):
        originals[m] = _explain_maps(policy, images, configs, m, layer, batch)
        img0, cfg0 = originals[m]
        res.values["image_spearman"][i, 0] = spearman(np.abs(img0).reshape(n, -1), np.abs(img0).reshape(n, -1))
        res.values["image_ssim"][i, 0] = ssim(normalise_abs(img0), normalise_abs(img0))
        res.values["config_spearman"][i, 0] = spearman(np.abs(cfg0), np.abs(cfg0))
        if progress:
            progress(f"{m} original")
    for s, (name, net) in enumerate(randomisation_cascade(policy, seed), start=1):
        for i, m in enumerate(methods):
            img0, cfg0 = originals[m]
            img, cfg = _explain_maps(net, images, configs, m, layer, batch)
            res.values["image_spearman"][i, s] = spearman(np.abs(img0).reshape(n, -1), np.abs(img).reshape(n, -1))
            res.values["image_ssim"][i, s] = ssim(normalise_abs(img0), normalise_abs(img))
            res.values["config_spearman"][i, s] = spearman(np.abs(cfg0), np.abs(cfg))
            if progress:
                progress(f"{m} <= {name}")
    return res


def policy_from_arg(name, seed: int = 0, temperature: Optional[float] = None,
                    device=None) -> VisuomotorPolicy:
    """The policy `name` names (policy_xai.resolve: a weights file, a spec, a task's shipped weights).
    An untrained network's conv maps are nearly flat, so its spatial softmax is almost uniform and the
    feature points hardly move with the image; a spec's network gets a sharper softmax (temperature
    RANDOM_NET_TEMPERATURE) unless `temperature` is given. Trained weights keep their stored
    temperature unless `temperature` is given."""
    from dataclasses import replace

    from .resolve import policy_source
    from .spec import load_spec

    src = policy_source(name)
    if src.trained:
        policy = src.load(device=device)
        if temperature is not None:
            policy.softmax.temperature = float(temperature)
        return policy
    d = src.spec.to_dict()
    d["softmax_temperature"] = RANDOM_NET_TEMPERATURE if temperature is None else float(temperature)
    return replace(src, spec=load_spec(d)).load(seed=seed, device=device)
