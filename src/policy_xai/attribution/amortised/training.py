"""Fitting an Explainer to teacher maps: the sharpened target distribution, the KL loss, the
one-cycle Adam loop."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from .student import Explainer
from .teacher import SIZES, teacher_map

#: exponent applied to the teacher map before it is normalised into the training target
SHARPEN = 2.0


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
