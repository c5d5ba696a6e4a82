"""Training an amortised explainer (attribution.amortised) for a policy, from simulated rollouts
of the policy itself: the library under `policy-xai explainer` and scripts/train_explainers.py.

    states  collect_states(task, policy, episodes, every, noise=0.05, seed) per training seed (never
            seed 0: `policy-xai faithfulness` measures on seed 0), evenly subsampled to max_states;
    teacher amortised.teacher_map (dense occlusion, `sizes` windows) of every state;
    student amortised.train_on_maps, saved with the policy file's sha256 (save_explainer).

The object masks of the rollouts are not used: the teacher sees only the policy, the image, the
configuration and the importance factors.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..attribution import amortised as A

#: the rollout seed `policy-xai faithfulness` measures on: never trained on
HELD_OUT_SEED = 0


@dataclass
class TrainOptions:
    task: str
    policy: str                                  # weights file (.safetensors)
    out: Optional[str] = None                    # default: amortised.explainer_path_for(policy)
    seeds: Sequence[int] = (1, 2)
    episodes: int = 3
    every: int = 3
    max_states: int = 400
    epochs: int = 60
    sizes: Optional[Sequence[float]] = None      # window sides in px at 64x64; None: amortised.SIZES
    width: int = 16
    seed: int = 0
    device: str = "cpu"                          # policy, teacher maps and student training (parse_device)
    extra: dict = field(default_factory=dict)    # more metadata for the file


def training_states(task: str, policy, seeds: Sequence[int], episodes: int, every: int, max_states: int):
    """(images (N, H, W, 3) uint8, configs (N, D), alphas (N, J)) from rollouts of `policy`."""
    from .run import collect_states

    imgs, cfgs, alphas = [], [], []
    for s in seeds:
        if int(s) == HELD_OUT_SEED:
            raise ValueError(f"seed {s} is the held-out seed `policy-xai faithfulness` measures on: choose others")
        st = collect_states(task, policy, episodes=episodes, every=every, noise=0.05, seed=int(s))
        imgs.append(st.images)
        cfgs.append(st.configs)
        alphas.append(st.alpha)
    imgs, cfgs, alphas = np.concatenate(imgs), np.concatenate(cfgs), np.concatenate(alphas)
    if max_states and len(imgs) > max_states:
        keep = np.linspace(0, len(imgs) - 1, max_states).round().astype(int)
        imgs, cfgs, alphas = imgs[keep], cfgs[keep], alphas[keep]
    return imgs, cfgs, alphas


def teacher_maps(policy, images: torch.Tensor, configs: torch.Tensor, alphas, sizes=A.SIZES, chunk: int = 4,
                 progress: Optional[Callable[[int, int], None]] = None) -> tuple[dict, float]:
    """({"norm", "mean", "max"} -> (N, H, W) maps, seconds per state)."""
    outs = {r: [] for r in A.REDUCTIONS}
    t0 = time.perf_counter()
    for i in range(0, len(images), chunk):
        m = A.teacher_map(policy, images[i:i + chunk], configs[i:i + chunk], alphas[i:i + chunk], reduce="all",
                          sizes=sizes)
        for r in outs:
            outs[r].append(m[r])
        if progress:
            progress(i + len(m["norm"]), len(images))
    return {r: torch.cat(v) for r, v in outs.items()}, (time.perf_counter() - t0) / max(1, len(images))


def train_task_explainer(opt: TrainOptions, log: Callable[[str], None] = lambda s: None) -> dict:
    """Train and save the explainer of opt.policy on opt.task; returns what was measured (states,
    seconds per teacher map, training seconds, losses, student ms per image, the file)."""
    from ..resolve import trained_policy

    policy, policy_path = trained_policy(opt.policy, device=opt.device, label="--policy")
    out = Path(opt.out) if opt.out else A.explainer_path_for(policy_path)
    sizes = tuple(A.SIZES) if opt.sizes is None else tuple(float(p) / 64 for p in opt.sizes)
    t0 = time.perf_counter()
    imgs, cfgs, alphas = training_states(opt.task, policy, opt.seeds, opt.episodes, opt.every, opt.max_states)
    log(f"{len(imgs)} training states from rollouts (seeds {list(opt.seeds)}) in {time.perf_counter() - t0:.0f} s")
    X, C, Al = policy.prepare_image(imgs), policy.prepare_config(cfgs), torch.as_tensor(alphas, device=policy.device)
    step = max(1, len(X) // 10)
    maps, t_teacher = teacher_maps(policy, X, C, Al, sizes, progress=lambda n, N: log(
        f"teacher maps {n}/{N}") if n % step < 4 or n == N else None)
    log(f"teacher: {t_teacher:.2f} s per state ({len(A.window_masks(*X.shape[2:], sizes))} windows)")
    t0 = time.perf_counter()
    net, losses = A.train_on_maps(X, maps["norm"], epochs=opt.epochs, seed=opt.seed, width=opt.width,
                                  log=lambda ep, loss: log(f"epoch {ep + 1}/{opt.epochs} loss {loss:.4f}")
                                  if (ep + 1) % 10 == 0 or ep == 0 else None)
    t_train = time.perf_counter() - t0
    net.meta.update({"reduce": "norm", "final_loss": losses[-1] if losses else float("nan"),
                     "train_states": len(X), "sizes": [float(s) for s in sizes]})
    ms = A.time_explainer(net, *X.shape[2:])
    A.save_explainer(net, out, policy_path, task=opt.task, train_seeds=",".join(map(str, opt.seeds)), **opt.extra)
    log(f"wrote {out}: trained in {t_train:.0f} s, loss {losses[0]:.4f} -> {losses[-1]:.4f}, {ms:.2f} ms per image")
    return {"task": opt.task, "file": str(out), "states": len(X), "teacher_s_per_state": t_teacher,
            "train_s": t_train, "losses": losses, "student_ms": ms}
