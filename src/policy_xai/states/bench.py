"""`policy-xai states bench`: what training a state model and searching it cost on this machine.

Training: states from rollouts of the task (as `states train`), the attentive term's relevance maps
(seconds per state) and training (states per second over a few epochs of a fresh model of the
shipped architecture). Search: seconds per found state for each target (n starts, `steps` steps, as
`states find`), on a given trained state model.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

DEFAULT_TARGETS = ("torque_norm:max", "saturation", "image_share:min", "sensitivity:max")


def bench_states(policy_path: str, generator: str = "", task: str = "", episodes: int = 1, epochs: int = 2,
                 targets: Sequence[str] = DEFAULT_TARGETS, n: int = 4, steps: int = 50, attention: str = "gbp",
                 threads: int = 1, seed: int = 0, log: Callable[[str], None] = print) -> dict:
    from ..resolve import trained_policy
    from ..robot.tasks import task_names
    from . import search as S
    from .model import load_state_model, state_model_for
    from .train import TrainOptions, attention_weights, default_task, fit, rollout_states

    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        policy, policy_path = trained_policy(policy_path, label="--policy")
        task = task or default_task(policy_path)
        if task not in task_names():
            raise ValueError(f"--task {task or '(none)'}: choose one of {', '.join(task_names())}")
        t0 = time.perf_counter()
        states = rollout_states(task, policy, episodes, 1, 0.1, 0.1, seed)
        t_roll = time.perf_counter() - t0
        N = len(states.images)
        X = torch.from_numpy(states.images).permute(0, 3, 1, 2).float() / 255.0
        C = torch.from_numpy(states.configs)
        t0 = time.perf_counter()
        attention_weights(policy, X, C, attention)
        t_att = time.perf_counter() - t0
        model = state_model_for(policy.spec)
        res = fit(model, policy, states, TrainOptions(epochs=epochs, attention="none", holdout=0.0, seed=seed))
        out = {"task": task, "states": N, "threads": torch.get_num_threads(),
               "rollout_s_per_state": round(t_roll / N, 5),
               "attention": attention, "attention_ms_per_state": round(1e3 * t_att / N, 3),
               "train_states_per_s": round(N * epochs / max(res["train_s"], 1e-9), 1),
               "train_s_per_epoch_per_1000_states": round(1000 * res["train_s"] / (epochs * N), 3),
               "search": []}
        log(f"{task}: {N} states from rollouts ({1e3 * t_roll / N:.1f} ms per state); {attention} maps "
            f"{out['attention_ms_per_state']:.1f} ms per state; training {out['train_states_per_s']:.0f} states/s "
            f"({out['train_s_per_epoch_per_1000_states']:.1f} s per epoch of 1000 states)")
        if generator:
            gen = load_state_model(generator, policy_path=policy_path, spec=policy.spec)
            z0 = S.start_points(gen, policy, n, seed, states.images, states.configs)
            prior = S.LatentPrior.aggregate(S.real_latents(gen, policy, states.images, states.configs))
            for name in targets:
                t = S.make_target(name, policy)
                r = S.find_states(gen, policy, t, n, steps, start=z0, prior=prior)
                row = {"target": name, "n": n, "steps": steps, "s_per_state": round(r.seconds / n, 4),
                       "ms_per_step": round(1e3 * r.seconds / (n * steps), 3)}
                out["search"].append(row)
                log(f"search {name}: {row['s_per_state']:.3f} s per state ({steps} steps, {row['ms_per_step']:.2f} "
                    f"ms per step and start, {n} starts batched)")
        return out
    finally:
        torch.set_num_threads(prev)

