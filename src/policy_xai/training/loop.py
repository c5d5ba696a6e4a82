"""The whole recipe: expert data -> fit -> DAgger rounds (policy rollouts relabelled by the teacher,
data aggregated, fit again)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .fitting import FitLog, feature_points_of, fit, fit_head, set_config_normalisation
from .rollout import GROUPS, collect, merge
from .teachers import make_teacher


@dataclass
class TrainConfig:
    task: str = "reach"
    spec: str = "small"
    seed: int = 0
    expert_episodes: int = 60
    dagger_iters: int = 4
    dagger_episodes: int = 30
    epochs: int = 8                 # after the expert data
    dagger_epochs: int = 4          # end-to-end epochs after each DAgger round (when head_epochs == 0)
    head_epochs: int = 0            # >0: after the expert data, freeze the convs and fit only the FC head
                                    # on cached feature points, this many epochs per round
    finetune_epochs: int = 0        # end-to-end epochs on all the data at the end (head mode)
    batch: int = 64
    lr: float = 1e-3
    aux_weight: float = 1.0
    noise: float = 0.05
    torque_noise: float = 0.1
    region_fraction: float = 0.5
    change_fraction: float = 0.2
    threads: int = 1                # 1 is ~3x faster than 2 on a shared 2-core machine
    image_size: int = 64
    control_rate: float = 20.0


@dataclass
class HeadFit:
    """Head mode (`head_epochs > 0`): the cached feature points of every sample so far and the FC head's
    optimizer, carried from round to round."""
    points: np.ndarray
    optimizer: object = None


def train(cfg: TrainConfig, data: Optional[dict] = None, bar_factory: Optional[Callable] = None,
          say: Callable[[str], None] = print):
    """Expert data (or `data`) -> fit -> DAgger rounds (policy rollouts relabelled by the expert, data
    aggregated, fit again). Returns (policy, data, info)."""
    import torch

    from ..policy import init_policy
    from ..robot.sim import Simulation

    torch.set_num_threads(max(1, int(cfg.threads)))
    torch.manual_seed(cfg.seed)
    bar_factory = bar_factory or (lambda total, desc, unit: _NullBar())
    t_start = time.time()
    policy = init_policy(cfg.spec, seed=cfg.seed)
    sim = Simulation(cfg.task, image_size=cfg.image_size, control_rate=cfg.control_rate, seed=cfg.seed)
    try:
        check_spec_fits(policy.spec, sim)
        expert = make_teacher(sim)
        if data is None:
            with bar_factory(cfg.expert_episodes, "expert episodes", "ep") as bar:
                data = collect(sim, cfg.expert_episodes, seed=cfg.seed, noise=cfg.noise, torque_noise=cfg.torque_noise,
                               region_fraction=cfg.region_fraction, change_fraction=cfg.change_fraction,
                               expert=expert, progress=bar.update)
        log, head = _fit_expert_data(cfg, policy, data, bar_factory, say)
        rounds = []
        for it in range(cfg.dagger_iters):
            data, rnd = dagger_round(cfg, it, sim, policy, expert, data, log, head, bar_factory, say)
            rounds.append(rnd)
        if head is not None and cfg.finetune_epochs > 0:
            with bar_factory(cfg.finetune_epochs * len(data["images"]), "end-to-end fine-tuning", "sample") as bar:
                fit(policy, data, cfg.finetune_epochs, cfg.batch, cfg.lr * 0.2, cfg.aux_weight, cfg.seed + 99,
                    aux_head=log.aux_head, progress=bar.update, log=log)
            say(f"  fine-tuned end to end: torque loss {log.losses[-1][1]:.4f}, aux loss {log.losses[-1][2]:.4f}")
    finally:
        sim.close()
    info = {"task": cfg.task, "seed": cfg.seed, "samples": int(len(data["images"])), "losses": log.losses,
            "dagger": rounds, "fit_seconds": round(log.seconds, 1), "total_seconds": round(time.time() - t_start, 1)}
    return policy, data, info


def _fit_expert_data(cfg: TrainConfig, policy, data: dict, bar_factory: Callable, say: Callable):
    """The first fit, on the expert data: configuration normalisation, end-to-end epochs and, in head
    mode, the FC head on the frozen convs. Returns (FitLog, HeadFit or None)."""
    set_config_normalisation(policy, data["configs"])
    log = FitLog()
    with bar_factory(cfg.epochs * len(data["images"]), f"fit on {len(data['images'])} samples", "sample") as bar:
        fit(policy, data, cfg.epochs, cfg.batch, cfg.lr, cfg.aux_weight, cfg.seed, progress=bar.update, log=log)
    say(f"  expert data: {len(data['images'])} samples, torque loss {log.losses[-1][1]:.4f}, "
        f"aux loss {log.losses[-1][2]:.4f}")
    if cfg.head_epochs <= 0:
        return log, None
    head = HeadFit(feature_points_of(policy, data["images"]))
    with bar_factory(cfg.head_epochs, "fit FC head", "epoch") as bar:
        hl, head.optimizer = fit_head(policy, head.points, data["configs"], data["labels"], cfg.head_epochs,
                                      lr=cfg.lr, seed=cfg.seed, progress=bar.update)
    say(f"  FC head on frozen convs: torque loss {hl:.4f}")
    return log, head


def dagger_round(cfg: TrainConfig, it: int, sim, policy, expert, data: dict, log: FitLog,
                 head: Optional[HeadFit], bar_factory: Callable, say: Callable) -> tuple:
    """DAgger round `it` (0-based): `cfg.dagger_episodes` rollouts of the policy (mixed with the expert
    at beta = 0.5 in the first round, 0 after), relabelled by the expert and aggregated with `data`;
    then a refit: the FC head on cached feature points (`head` given, updated in place) or
    `cfg.dagger_epochs` end-to-end epochs at half the learning rate (continuing `log`'s aux head and
    optimizer). Returns (the aggregated data, the round's record)."""
    beta = 0.5 if it == 0 else 0.0
    with bar_factory(cfg.dagger_episodes, f"DAgger {it + 1}/{cfg.dagger_iters} rollouts", "ep") as bar:
        new = collect(sim, cfg.dagger_episodes, seed=cfg.seed + 1000 * (it + 1), noise=cfg.noise,
                      torque_noise=0.0, region_fraction=cfg.region_fraction,
                      change_fraction=cfg.change_fraction, policy=policy, beta=beta, expert=expert,
                      progress=bar.update)
    data = merge(data, new)
    n = int(len(data["images"]))
    seed = cfg.seed + it + 1
    if head is not None:
        head.points = np.concatenate([head.points, feature_points_of(policy, new["images"])])
        with bar_factory(cfg.head_epochs, f"fit FC head on {len(head.points)} samples", "epoch") as bar:
            hl, head.optimizer = fit_head(policy, head.points, data["configs"], data["labels"], cfg.head_epochs,
                                          lr=cfg.lr, seed=seed, optimizer=head.optimizer, progress=bar.update)
        say(f"  DAgger {it + 1}: {n} samples, head torque loss {hl:.4f}")
        return data, {"round": it + 1, "samples": n, "torque_loss": hl}
    with bar_factory(cfg.dagger_epochs * n, f"fit on {n} samples", "sample") as bar:
        fit(policy, data, cfg.dagger_epochs, cfg.batch, cfg.lr * 0.5, cfg.aux_weight, seed,
            aux_head=log.aux_head, optimizer=log.optimizer, progress=bar.update, log=log)
    tl, al = log.losses[-1][1], log.losses[-1][2]
    say(f"  DAgger {it + 1}: {n} samples, torque loss {tl:.4f}, aux loss {al:.4f}")
    return data, {"round": it + 1, "samples": n, "torque_loss": tl, "aux_loss": al}


def check_spec_fits(spec, sim) -> None:
    if tuple(spec.joint_names) != tuple(sim.joint_names):
        raise ValueError(f"spec {spec.name!r} drives joints {list(spec.joint_names)}, task {sim.task.name!r} has "
                         f"{list(sim.joint_names)} (the task's own spec is {sim.task.spec!r})")
    if (spec.image_height, spec.image_width) != sim.image_shape[:2]:
        raise ValueError(f"spec {spec.name!r} takes {spec.image_height}x{spec.image_width} images, the simulation "
                         f"renders {sim.image_shape[0]}x{sim.image_shape[1]}")
    obs_sizes = {"joint_position": sim.n_joints, "joint_velocity": sim.n_joints, "ee_position": 3, "ee_velocity": 3}
    if tuple(spec.config_groups) != tuple((g, obs_sizes[g]) for g in GROUPS):
        raise ValueError(f"spec {spec.name!r}: configuration groups {dict(spec.config_groups)} do not match the "
                         f"simulation's observation {obs_sizes} (in that order)")


class _NullBar:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def update(self, n=1):
        pass
