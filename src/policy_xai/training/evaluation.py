"""Evaluation: success rates of a policy on the training conditions and on held-out targets."""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from .rollout import run_episode
from .targets import heldout_targets
from .teachers import make_teacher


def policy_controller(policy) -> Callable:
    def controller(obs, img, tgt, k):
        return policy.act(img, obs.config(policy.spec.group_names))
    return controller


def blank_image(image: np.ndarray) -> np.ndarray:
    """The image with every pixel set to its mean colour (no target, no arm)."""
    return np.broadcast_to(image.reshape(-1, 3).mean(0).astype(np.uint8), image.shape).copy()


def evaluate(policy, sim, episodes: int = 5, noise: float = 0.05, seed: int = 0, blank: bool = False,
             heldout: bool = True, progress: Optional[Callable] = None) -> dict:
    """Success rates: per training condition and per held-out target (between the conditions).
    Episode 0 of each starts exactly at the condition's pose; the others add `noise` rad to it.
    Per target also the mean final end-effector distance to the target and the means of the task's
    scalar measurements (`mean_depth`, `mean_lateral_error` for peg, `mean_door_angle` for door)."""
    sim.reseed(seed)
    expert = make_teacher(sim)
    ctrl = policy_controller(policy)
    img_fn = blank_image if blank else None
    res = {"conditions": {}, "heldout": {}}
    run = dict(episodes=episodes, noise=noise, image_fn=img_fn, progress=progress)
    for c, cond in enumerate(sim.task.conditions):
        res["conditions"][cond.name or str(c)] = _episode_stats(sim, ctrl, lambda e: c, **run)
    if heldout:
        n = len(sim.task.conditions)
        for k, (name, p) in enumerate(heldout_targets(sim.task, expert)):
            # episode e starts at the pose of condition (k + e) mod n
            res["heldout"][name] = {"target": [round(float(x), 4) for x in p],
                                    **_episode_stats(sim, ctrl, lambda e: (k + e) % n, target=p, **run)}
    for key in ("conditions", "heldout"):
        vals = [v["success"] for v in res[key].values()]
        res[f"{key}_success"] = float(np.mean(vals)) if vals else math.nan
    return res


def _episode_stats(sim, ctrl, start: Callable[[int], int], episodes: int, noise: float, target=None,
                   image_fn: Optional[Callable] = None, progress: Optional[Callable] = None) -> dict:
    """`episodes` unrecorded episodes, episode e from condition start(e)'s pose (episode 0 exactly, the
    others with `noise`): the success rate, mean final distance and means of the task's measurements."""
    ok, dist, meas = [], [], []
    for e in range(episodes):
        ep = run_episode(sim, ctrl, start(e), target=target, noise=0.0 if e == 0 else noise, record=False,
                         image_fn=image_fn)
        ok.append(ep.success), dist.append(ep.final_distance), meas.append(ep.measure)
        if progress:
            progress(1)
    return {"success": float(np.mean(ok)), "final_distance": float(np.mean(dist)), "episodes": episodes,
            **_mean_measures(meas)}


def _mean_measures(measures: list) -> dict:
    """{"mean_<name>": mean} of the task's scalar end-of-episode measurements (peg depth, door angle)."""
    keys = set().union(*measures) if measures else set()
    return {f"mean_{k}": float(np.mean([m[k] for m in measures if k in m])) for k in sorted(keys)}


def count_evaluation_episodes(task, episodes: int, heldout: bool = True) -> int:
    n = len(task.conditions) * episodes
    if heldout:
        n += len(task.conditions) * (len(task.conditions) - 1) // 2 * episodes + episodes
    return n
