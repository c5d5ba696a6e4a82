"""`faithfulness(options)`: every method side by side on simulated rollouts of the shipped policies.

Per task: roll the policy out (every condition, `episodes` episodes each, small start noise), keep
every `every`-th step with its image, configuration, importance factors and the scene's object
masks (MuJoCo segmentation: measurement only, no method sees it), then per state and method:
deletion / insertion curves (metrics.curves) for each removal operator and ranking unit, object
effects, pointing ratios, top-k ratios, configuration ablations against the published ratios, the
cost per explanation, and (optionally) the model-randomisation sanity check on the trained network.
The report (tables, figures, summary) is written by report.write_report.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from ..robot.tasks import get_task
from . import metrics as M
from .options import Options

RANDOM = "random"


@dataclass
class States:
    images: np.ndarray          # (N, H, W, 3) uint8
    configs: np.ndarray         # (N, D) raw
    alpha: np.ndarray           # (N, J)
    masks: dict                 # object name -> (N, H, W) bool
    condition: np.ndarray       # (N,)
    step: np.ndarray            # (N,)
    main_object: str


def collect_states(task: str, policy, episodes: int = 1, every: int = 10, noise: float = 0.05, seed: int = 0,
                   max_states: int = 0) -> States:
    """Roll `policy` out in task's simulation and keep every `every`-th step with its object masks."""
    from ..live import RobotAdapter, importance_per_step
    from ..robot.sim import Simulation
    from ..training import GROUPS

    spec = policy.spec
    sim = Simulation(task, image_size=(spec.image_height, spec.image_width), seed=seed)
    try:
        robot = RobotAdapter(spec, sim.model)
        imgs, cfgs, masks, conds, steps = [], [], [], [], []
        for ep in range(int(episodes)):
            for cond in range(len(sim.conditions)):
                obs = sim.reset(cond, noise=noise)
                for k in range(sim.task.horizon):
                    cfg = obs.config(GROUPS)
                    if k % every == 0:
                        imgs.append(obs.image)
                        cfgs.append(cfg)
                        masks.append(sim.object_masks())
                        conds.append(cond)
                        steps.append(k)
                    obs = sim.step(policy.act(obs.image, cfg))
        if max_states and len(imgs) > max_states:
            keep = np.linspace(0, len(imgs) - 1, max_states).round().astype(int)
            imgs, cfgs, masks = [imgs[i] for i in keep], [cfgs[i] for i in keep], [masks[i] for i in keep]
            conds, steps = [conds[i] for i in keep], [steps[i] for i in keep]
        C = np.stack(cfgs).astype(np.float32)
        alpha = importance_per_step(spec, C, robot, sim.dt)
        names = list(masks[0])
        return States(np.stack(imgs), C, alpha.astype(np.float32), {n: np.stack([m[n] for m in masks]) for n in names},
                      np.array(conds), np.array(steps), sim.task.main_object)
    finally:
        sim.close()


@dataclass
class TaskResult:
    task: str
    n_states: int
    curves: list = field(default_factory=list)     # rows: method, removal, unit, state, fraction, deletion, insertion
    objects: list = field(default_factory=list)    # rows: state, object, removal, effect, pixels
    pointing: list = field(default_factory=list)   # rows: method, state, object, pointing, topk_effect, object_effect
    config: list = field(default_factory=list)     # rows: method, state, group, how, effect, ratio
    cost: dict = field(default_factory=dict)       # method -> ms per explained state (B=1)
    sanity: list = field(default_factory=list)     # rows of SanityResult.rows()
    sanity_flags: list = field(default_factory=list)


def explain_maps(policy, image, config, alpha, methods) -> tuple[dict, dict, dict]:
    """method -> (H, W) map, method -> ratios dict (or None), method -> ms; one observation."""
    from ..attribution import explain

    maps, ratios, ms = {}, {}, {}
    for m in methods:
        t0 = time.perf_counter()
        e = explain(policy, image, config, m, alpha=alpha)
        ms[m] = (time.perf_counter() - t0) * 1e3
        maps[m] = e.image[0].cpu().numpy().astype(np.float64)
        ratios[m] = None if e.ratios is None else {k: float(v[0]) for k, v in e.ratios.items()}
    return maps, ratios, ms


def evaluate_task(task: str, policy, states: States, opt: Options,
                  progress: Optional[Callable[[int], None]] = None) -> TaskResult:
    from ..attribution import METHODS

    methods = list(opt.methods or METHODS)
    res = TaskResult(task, len(states.images))
    images = policy.prepare_image(states.images)
    configs = policy.prepare_config(states.configs)
    alphas = torch.as_tensor(states.alpha, dtype=torch.float32, device=images.device)
    H, W = images.shape[2:]
    cost = {m: [] for m in methods}
    main = states.main_object
    # parts whose top-k ratio is reported besides the main object (the task's `parts`; door: per part)
    parts = [main] + [p for p in get_task(task).parts if p in states.masks]
    for i in range(len(images)):
        img, cfg, a = images[i], configs[i], alphas[i]
        tau = M.torques(policy, img[None], cfg[None])[0]
        maps, ratios, ms = explain_maps(policy, img[None], cfg[None], a[None].cpu().numpy(), methods)
        for m in methods:
            cost[m].append(ms[m])
        maps[RANDOM] = M.random_map((H, W), opt.seed + i)
        ratios[RANDOM] = None
        # deletion / insertion
        for op in opt.removals:
            for unit in opt.units:
                for m, r in maps.items():
                    c = M.curves(policy, img, cfg, a, r, op, opt.fractions, unit, opt.seed + i, tau_ref=tau)
                    for f, d, ins in zip(opt.fractions, c.deletion, c.insertion):
                        res.curves.append(dict(method=m, removal=op, unit=unit, state=i, fraction=f,
                                               deletion=float(d), insertion=float(ins), full_effect=c.full_effect))
        # objects
        masks = {n: states.masks[n][i] for n in states.masks if n != "background"}
        for op in opt.removals:
            eff = M.object_effects(policy, img, cfg, a, masks, op, opt.seed + i, tau_ref=tau)
            for n, e in eff.items():
                res.objects.append(dict(state=i, object=n, removal=op, effect=e, pixels=int(masks[n].sum())))
        obj_eff = M.object_effects(policy, img, cfg, a, {p: masks[p] for p in parts}, "median", opt.seed + i,
                                   tau_ref=tau)
        for n, mask in masks.items():
            k = int(mask.sum())
            if k == 0:
                continue
            tk = M.topk_effects(policy, img, cfg, a, maps, k, "median", opt.seed + i, tau_ref=tau) if n in parts else {}
            for m, r in maps.items():
                res.pointing.append(dict(method=m, state=i, object=n, pixels=k, pointing=M.pointing_ratio(r, mask),
                                         topk_effect=tk.get(m, float("nan")),
                                         object_effect=obj_eff.get(n, float("nan"))))
        # configuration ablation against the published ratios
        ge = M.group_effects(policy, img, cfg, a, "median", opt.seed + i, tau_ref=tau)
        for m, rt in ratios.items():
            if rt is None:
                continue
            for (g, how), e in ge.items():
                res.config.append(dict(method=m, state=i, group=g, how=how, effect=e, ratio=rt.get(g, float("nan"))))
        if progress:
            progress(1)
    res.cost = {m: float(np.median(v)) for m, v in cost.items() if v}
    if opt.sanity and opt.sanity_states > 0:
        from ..sanity import run_sanity

        n = min(opt.sanity_states, len(images))
        idx = np.linspace(0, len(images) - 1, n).round().astype(int)
        from ..attribution.engine import EXPLAINER_METHODS

        checked = [m for m in methods if m not in EXPLAINER_METHODS]
        sr = run_sanity(policy, images[idx], configs[idx], checked, seed=opt.seed)
        res.sanity = [dict(r, task=task, network="trained") for r in sr.rows()]
        res.sanity_flags = sr.flags()
        # the same check on an untrained network of the same architecture (sharp softmax, as
        # `policy-xai sanity --policy small` does)
        untrained = _untrained_like(policy, opt.seed)
        su = run_sanity(untrained, images[idx], configs[idx], checked, seed=opt.seed)
        res.sanity += [dict(r, task=task, network="untrained") for r in su.rows()]
        res.sanity_flags += [f"(untrained network) {f}" for f in su.flags()]
        res.sanity_flags += [f"NOT CHECKED {m}: its explainer is trained for the policy's weights only (a "
                             "randomised network would need an explainer of its own)"
                             for m in methods if m in EXPLAINER_METHODS]
    return res


def _untrained_like(policy, seed: int):
    """A randomly initialised network of policy's spec, with the trained one's configuration
    normaliser (so the same raw observations are in range) and the sharp softmax of sanity.py."""
    from ..policy import init_policy
    from ..sanity import RANDOM_NET_TEMPERATURE

    d = policy.spec.to_dict()
    d["softmax_temperature"] = RANDOM_NET_TEMPERATURE
    net = init_policy(d, seed=seed, device=policy.device)
    with torch.no_grad():
        net.config_mean.copy_(policy.config_mean)
        net.config_std.copy_(policy.config_std)
    return net


def faithfulness(opt: Options, progress: Optional[Callable[[str, int, int], None]] = None) -> list[TaskResult]:
    """Run the whole measurement; progress(task, done, total) after every state."""
    from ..resolve import resolve_policy

    opt = opt.checked()
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, int(opt.threads)))
    try:
        out = []
        for task in opt.tasks:
            policy = resolve_policy(opt.policies.get(task) or f"task:{task}", device=opt.device,
                                    label=f"policy of {task}")
            states = collect_states(task, policy, opt.episodes, opt.every, opt.noise, opt.seed, opt.max_states)
            done = [0]

            def tick(n, task=task, total=len(states.images)):
                done[0] += n
                if progress:
                    progress(task, done[0], total)

            out.append(evaluate_task(task, policy, states, opt, tick))
        return out
    finally:
        torch.set_num_threads(prev)
