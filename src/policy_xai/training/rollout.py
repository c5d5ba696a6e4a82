"""Episodes: running a controller in the simulation with the teacher's labels at every visited state
(`run_episode`), and collecting training data from teacher or policy rollouts (`collect`, the DAgger
data when given a policy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .targets import region_target
from .teachers import FeedbackExpert, make_teacher

#: the configuration groups every simulated observation provides, in the spec's canonical order
GROUPS = ("joint_position", "joint_velocity", "ee_position", "ee_velocity")


@dataclass
class Episode:
    images: list = field(default_factory=list)
    configs: list = field(default_factory=list)
    labels: list = field(default_factory=list)    # expert torques at the visited states
    targets: list = field(default_factory=list)
    success: bool = False
    final_distance: float = math.nan
    change_step: Optional[int] = None
    measure: dict = field(default_factory=dict)   # the task's scalar measurements at the end (depth, door angle)


def run_episode(sim, controller: Callable, condition: int, target=None, steps: Optional[int] = None,
                noise: float = 0.0, expert: Optional[FeedbackExpert] = None, target_change: Optional[tuple] = None,
                record: bool = True, image_fn: Optional[Callable] = None) -> Episode:
    """One episode. controller(obs, image, target, step) -> torques; `expert` (if given) labels each
    visited state; target_change = (step, xyz); image_fn(image) -> image the controller sees."""
    obs = sim.reset(condition, noise=noise)
    if target is not None:
        sim.set_target(target)
        obs = sim.observation()
    steps = sim.task.horizon if steps is None else int(steps)
    ep = Episode()
    for k in range(steps):
        if target_change is not None and k == target_change[0]:
            sim.set_target(target_change[1])
            obs = sim.observation()
            ep.change_step = k
        tgt = sim.target_position
        img = obs.image if image_fn is None else image_fn(obs.image)
        if record:
            ep.images.append(obs.image)
            ep.configs.append(obs.config(GROUPS))
            ep.targets.append(tgt)
            if expert is not None:
                ep.labels.append(expert.act(obs.joint_position, obs.joint_velocity, tgt))
        tau = controller(obs, img, tgt, k)
        obs = sim.step(tau)
    ep.success = bool(sim.success())
    ep.final_distance = sim.distance()
    ep.measure = {k: float(v) for k, v in sim.measure().items()
                  if np.isscalar(v) and not isinstance(v, (bool, np.bool_)) and k not in ("distance", "success")}
    return ep


def stack(episodes: list) -> dict:
    eps = [e for e in episodes if e.images]
    return {"images": np.stack([i for e in eps for i in e.images]).astype(np.uint8),
            "configs": np.stack([c for e in eps for c in e.configs]).astype(np.float32),
            "labels": np.stack([t for e in eps for t in e.labels]).astype(np.float32),
            "targets": np.stack([t for e in eps for t in e.targets]).astype(np.float32)}


def merge(a: Optional[dict], b: dict) -> dict:
    return b if a is None else {k: np.concatenate([a[k], b[k]]) for k in b}


def _episode_plan(task, rng, expert, region_fraction: float, change_fraction: float, horizon: int):
    """(condition, target or None, target_change or None) for one training episode."""
    cond = int(rng.integers(len(task.conditions)))
    target = None
    if rng.random() < region_fraction:
        for _ in range(20):
            t = region_target(task, rng)
            if expert.reachable(t):
                target = t
                break
    change = None
    if rng.random() < change_fraction:
        for _ in range(20):
            # (region_fraction 0: the changed target is another training condition's, as in the paper's setting)
            region = region_fraction > 0 and rng.random() < 0.5
            t = region_target(task, rng) if region else task.targets[int(rng.integers(len(task.conditions)))]
            if expert.reachable(t):
                change = (int(rng.integers(horizon // 5, horizon // 2)), t)
                break
    return cond, target, change


def collect(sim, episodes: int, seed: int = 0, noise: float = 0.05, torque_noise: float = 0.1,
            region_fraction: float = 0.5, change_fraction: float = 0.2, policy=None, beta: float = 1.0,
            expert: Optional[FeedbackExpert] = None, progress: Optional[Callable[[int], None]] = None) -> dict:
    """Roll out (expert with noisy torques if policy is None, else the policy mixed with the expert
    at probability beta per step) and label every visited state with the feedback expert."""
    rng = np.random.default_rng(seed)
    expert = expert or make_teacher(sim)
    task = sim.task
    lim = sim.torque_limits
    eps = []
    for _ in range(episodes):
        cond, target, change = _episode_plan(task, rng, expert, region_fraction, change_fraction, task.horizon)
        # smooth exploration noise on the executed torques (not on the labels)
        ou = np.zeros(sim.n_joints)

        def controller(obs, img, tgt, k):
            nonlocal ou
            tau = expert.act(obs.joint_position, obs.joint_velocity, tgt)
            if policy is not None and rng.random() >= beta:
                tau = policy.act(img, obs.config(GROUPS))
            ou = 0.8 * ou + 0.2 * rng.normal(0.0, 1.0, sim.n_joints)
            return np.clip(tau + torque_noise * lim * ou * 2.0, -lim, lim)

        eps.append(run_episode(sim, controller, cond, target, noise=noise, expert=expert, target_change=change))
        if progress:
            progress(1)
    return stack(eps)
