"""Fitting: behaviour cloning with the GPS-style auxiliary target loss (`fit`), and the FC head alone on
cached feature points (`fit_head`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass
class FitLog:
    losses: list = field(default_factory=list)      # (epoch, torque loss, aux loss)
    seconds: float = 0.0


def set_config_normalisation(policy, configs: np.ndarray, min_std: float = 1e-2) -> None:
    import torch

    mean = configs.mean(0)
    std = np.maximum(configs.std(0), min_std)
    policy.config_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    policy.config_std.copy_(torch.as_tensor(std, dtype=torch.float32))


def fit(policy, data: dict, epochs: int = 10, batch: int = 64, lr: float = 1e-3, aux_weight: float = 1.0,
        seed: int = 0, aux_head=None, optimizer=None, progress: Optional[Callable] = None,
        log: Optional[FitLog] = None) -> FitLog:
    """Behaviour cloning on (images, configs) -> labels, with the GPS-style auxiliary loss: a linear
    head on the feature points regresses the target's position (visible only in the image).
    Torque errors are scaled per joint by the torque limits."""
    import torch

    log = log or FitLog()
    t0 = time.time()
    g = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(data["images"])                       # (N, H, W, 3) uint8
    configs = torch.from_numpy(data["configs"])
    labels = torch.from_numpy(data["labels"])
    targets = torch.from_numpy(data["targets"])
    t_mean, t_std = targets.mean(0), targets.std(0).clamp_min(1e-2)
    scale = policy.torque_limits.clone()
    aux_head = aux_head if aux_head is not None else torch.nn.Linear(2 * policy.spec.feature_points, 3)
    params = list(policy.parameters()) + list(aux_head.parameters())
    opt = optimizer or torch.optim.Adam(params, lr=lr)
    N = len(images)
    policy.train()
    try:
        for ep in range(epochs):
            perm = torch.randperm(N, generator=g)
            tot = aux_tot = 0.0
            for s in range(0, N, batch):
                idx = perm[s:s + batch]
                img = images[idx].permute(0, 3, 1, 2).float().div_(255.0)
                pts = policy.softmax(policy.conv_features(img))
                tau = policy.head(pts, policy.normalise_config(configs[idx]))
                loss_t = (((tau - labels[idx]) / scale) ** 2).mean()
                loss_a = ((aux_head(pts) - (targets[idx] - t_mean) / t_std) ** 2).mean()
                loss = loss_t + aux_weight * loss_a
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss_t.detach()) * len(idx)
                aux_tot += float(loss_a.detach()) * len(idx)
                if progress:
                    progress(len(idx))
            log.losses.append((len(log.losses), tot / N, aux_tot / N))
    finally:
        policy.eval()
    log.seconds += time.time() - t0
    log.aux_head, log.optimizer = aux_head, opt
    return log


def feature_points_of(policy, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """(N, 2K) spatial-softmax feature points of uint8 images (N, H, W, 3), no gradients."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            img = torch.from_numpy(images[s:s + batch]).permute(0, 3, 1, 2).float().div_(255.0)
            out.append(policy.softmax(policy.conv_features(img)))
    return torch.cat(out).numpy()


def fit_head(policy, points: np.ndarray, configs: np.ndarray, labels: np.ndarray, epochs: int = 100,
             batch: int = 128, lr: float = 1e-3, seed: int = 0, optimizer=None, progress=None):
    """Train only the fully connected layers on cached feature points (the conv layers frozen, as in
    GPS after its pose-regression pretraining of the vision layers); fast, since the convolutions are
    not recomputed. Returns (final torque loss, optimizer)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    P, C, Y = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (points, configs, labels))
    Cn = policy.normalise_config(C)
    scale = policy.torque_limits.clone()
    opt = optimizer or torch.optim.Adam(policy.fcs.parameters(), lr=lr)
    N = len(P)
    policy.train()
    loss_sum = 0.0
    try:
        for _ in range(epochs):
            perm = torch.randperm(N, generator=g)
            loss_sum = 0.0
            for s in range(0, N, batch):
                idx = perm[s:s + batch]
                loss = (((policy.head(P[idx], Cn[idx]) - Y[idx]) / scale) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
            if progress:
                progress(1)
    finally:
        policy.eval()
    return loss_sum / N, opt
