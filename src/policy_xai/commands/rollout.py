"""`policy-xai analyze-rollout`: the paper's analyses (Kim & Choi IV-B/IV-C, Figs. 3-6) on a trained
policy running in MuJoCo, with an explanation at every control step."""
from __future__ import annotations

import argparse

from ..resolve import SOURCE_HELP
from ..robot.tasks import task_names
from .checks import add_device_option, nonnegative_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "analyze-rollout",
        help="run a trained policy in MuJoCo over the task's conditions, explain every step, write Figs. 3-6",
        description=(
            "Run a trained policy over the task's conditions (and once more with the target moved mid-episode to "
            "a position between the training targets), explain every step with each method, amortised over "
            "the joints by the importance factors of the arm's model, and write into --out: fig3/ (image + "
            "feature points, relevance heatmap, configuration relevance per method), fig4_ratios.png (mean +- "
            "std ratio per input group and method over all steps), fig5_curves.png (ratios over the steps, mean "
            "over the conditions, paper colours), fig6_target_change.png (ratios of the target-change episode, "
            "change marked), heatmap videos with per-frame and per-video normalisation, ratios.csv and "
            "summary.json; prints the image:configuration ratio, the early/late trend, the reaction to the "
            "target change and the rank correlation of the ratio curves between the methods."),
    )
    p.add_argument("--task", default="reach", choices=task_names(), help="simulated task (default: reach)")
    p.add_argument("--policy", default=None, help=f"the policy: {SOURCE_HELP} (default: the task's shipped weights)")
    p.add_argument("--methods", default="dtd,rap,gbp", help="comma-separated attribution methods")
    p.add_argument("--conditions", default="all", help="'all' or comma-separated condition indices")
    p.add_argument("--steps", type=positive_int, default=None, help="steps per episode (default: the task's horizon)")
    p.add_argument("--change-step", type=int, default=None,
                   help="step of the target change in the Fig. 6 episode (default: a third of the episode; -1: none)")
    p.add_argument("--change-condition", type=nonnegative_int, default=0, help="condition of the Fig. 6 episode")
    p.add_argument("--alpha", choices=("linearized", "exact", "none"), default="linearized",
                   help="importance factors from the arm's model (Pinocchio), or none (alpha = 1)")
    p.add_argument("--batch", type=positive_int, default=25, help="observations explained per batch")
    p.add_argument("--panels", type=nonnegative_int, default=3, help="Fig. 3 panels per method per episode")
    p.add_argument("--fps", type=positive_float, default=10.0, help="frame rate of the heatmap videos")
    p.add_argument("--seed", type=int, default=0, help="seed of the changed target's position")
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    add_device_option(p)
    p.add_argument("--out", default=None, help="output folder (default out/rollout_<task>)")
    p.set_defaults(func=run)


def record(sim, policy, condition: int, steps: int, change=None):
    """Run the policy; returns images (N,H,W,3), configs (N,D), times (N,), success, final distance."""
    import numpy as np

    from ..training import policy_controller, run_episode

    ep = run_episode(sim, policy_controller(policy), condition, steps=steps, target_change=change)
    times = np.arange(len(ep.images)) * sim.dt
    return np.stack(ep.images), np.stack(ep.configs), times, ep


def run(args: argparse.Namespace) -> int:
    import csv
    import json
    from pathlib import Path

    import numpy as np
    import torch
    from tqdm import tqdm

    from .. import figures
    from ..analysis import (alphas_for, change_reaction, explain_sequence, rank_consistency, summary_stats,
                            trend_stats)
    from ..attribution import CAM_METHODS, parse_methods
    from ..live import config_feature_names
    from ..robot.sim import Simulation
    from ..training import check_spec_fits, make_teacher, region_target

    torch.set_num_threads(max(1, args.threads))
    methods = parse_methods(args.methods)
    ratio_methods = [m for m in methods if m not in CAM_METHODS]
    if not ratio_methods:
        raise ValueError("analyze-rollout needs at least one ratio method (dtd, rap, gbp, ...)")
    from . import checks

    source = checks.policy_arg(args.policy or f"task:{args.task}", "--policy" if args.policy else "--task")
    out = Path(args.out or f"out/rollout_{args.task}")
    checks.guard_outputs({"--policy weights file": source.weights}, out, {n: out / n for n in (
        "fig3", "fig4_ratios.png", "fig5_curves.png", "fig6_target_change.png", "ratios.csv", "summary.json")})
    if args.conditions != "all":
        try:
            [int(c) for c in args.conditions.split(",")]
        except ValueError:
            raise checks.UsageError(f"--conditions takes 'all' or comma-separated indices, got {args.conditions!r}") \
                from None
    device = checks.device_arg(args.device)
    checks.writable_dir(out)
    policy = source.load(seed=args.seed, device=device)
    spec = policy.spec
    (out / "fig3").mkdir(parents=True, exist_ok=True)
    names = config_feature_names(spec)

    with Simulation(args.task, image_size=spec.image_height, seed=args.seed) as sim:
        check_spec_fits(spec, sim)
        steps = args.steps or sim.task.horizon
        n_cond = len(sim.task.conditions)
        conds = list(range(n_cond)) if args.conditions == "all" else [int(c) for c in args.conditions.split(",")]
        if any(not 0 <= c < n_cond for c in conds):
            raise ValueError(f"task {args.task!r} has conditions 0..{n_cond - 1}")
        change_step = steps // 3 if args.change_step is None else args.change_step
        episodes = []  # (label, images, configs, times, episode, change step or None)
        with tqdm(total=len(conds) + (change_step >= 0), desc="policy rollouts", unit="ep", leave=False) as bar:
            for c in conds:
                episodes.append((f"condition{c}", *record(sim, policy, c, steps), None))
                bar.update()
            if 0 <= change_step < steps:
                rng = np.random.default_rng(args.seed)
                expert = make_teacher(sim)
                start = np.asarray(sim.task.conditions[args.change_condition].target, float)
                for _ in range(50):  # "randomly located in between the trained target positions", away from the first
                    new = region_target(sim.task, rng, margin=0.0)
                    if expert.reachable(new) and np.linalg.norm(new - start) > 2.5 * sim.task.success_tolerance:
                        break
                episodes.append(("target_change", *record(sim, policy, args.change_condition, steps,
                                                          (change_step, new)), change_step))
                bar.update()
        robot = None if args.alpha == "none" else sim.model
        dt = sim.dt

    # ---- explanations ------------------------------------------------------------------------
    results = []
    total = sum(len(e[1]) for e in episodes)
    with tqdm(total=total, desc=f"explaining ({', '.join(methods)})", unit="step", leave=False) as bar:
        for label, images, configs, times, ep, ch in episodes:
            alphas = None if robot is None else alphas_for(robot, spec, configs.astype(np.float64), dt,
                                                         method=args.alpha)
            res = explain_sequence(policy, images, configs, methods, alphas=alphas, batch=args.batch,
                                   progress=bar.update)
            res.times = times
            results.append(res)

    normal = [(e, r) for e, r in zip(episodes, results) if e[5] is None]
    change = [(e, r) for e, r in zip(episodes, results) if e[5] is not None]
    ratio_names = results[0].methods[ratio_methods[0]].ratio_names

    # ---- tables ----------------------------------------------------------------------------
    with open(out / "ratios.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "step", "time", "method", *ratio_names])
        for (label, *_), res in zip(episodes, results):
            for m in ratio_methods:
                for i, row in enumerate(res.methods[m].ratios):
                    w.writerow([label, i, f"{res.times[i]:.3f}", m, *(f"{x:.6f}" for x in row)])

    # pooled statistics over all steps of the condition episodes (Fig. 4)
    from ..analysis import MethodSeries, SequenceResult

    pooled = SequenceResult(np.concatenate([r.torques for _, r in normal]),
                            np.concatenate([r.alpha for _, r in normal]),
                            np.concatenate([r.feature_points for _, r in normal]))
    for m in ratio_methods:
        pooled.methods[m] = MethodSeries(m, np.zeros((0,)), np.zeros((0,)), np.zeros((0,)),
                                         np.concatenate([r.methods[m].ratios for _, r in normal]), ratio_names)
    stats = summary_stats(pooled)
    consistency = rank_consistency(pooled, ratio_methods)
    # per-step mean over the condition episodes (Fig. 5) and its trend
    mean_curves = {m: np.mean(np.stack([r.methods[m].ratios for _, r in normal]), axis=0) for m in ratio_methods}
    trends = {m: trend_stats(mean_curves[m], ratio_names) for m in ratio_methods}
    per_episode_trend = {e[0]: trend_stats(r.methods[ratio_methods[0]].ratios, ratio_names) for e, r in normal}

    # ---- figures ---------------------------------------------------------------------------
    figures.ratio_bars(out / "fig4_ratios.png", {m: stats[m] for m in ratio_methods},
                       title=f"{args.task}: relevance ratio, mean ± std over {len(pooled)} steps "
                             f"of {len(normal)} episodes")
    t = normal[0][1].times
    figures.ratio_curves(out / "fig5_curves.png", t, mean_curves, ratio_names, style="paper",
                         title=f"{args.task}: relevance ratio over time (mean over {len(normal)} conditions)")
    for e, r in normal:
        figures.ratio_curves(out / f"fig5_{e[0]}.png", r.times, {m: r.methods[m].ratios for m in ratio_methods},
                             ratio_names, style="paper", title=f"{args.task} {e[0]}: relevance ratio over time")
    reaction = {}
    if change:
        (label, images, configs, times, ep, ch), r = change[0]
        figures.ratio_curves(out / "fig6_target_change.png", r.times, {m: r.methods[m].ratios for m in ratio_methods},
                             ratio_names, marks=[r.times[ch]], style="paper",
                             title=f"{args.task}: target moved at step {ch} (t = {r.times[ch]:.2f} s)")
        reaction = {m: change_reaction(r.methods[m].ratios, ratio_names, ch) for m in ratio_methods}
    videos = []
    for (label, images, *_), r in [normal[0]] + change[:1]:
        idx = np.linspace(0, len(r) - 1, num=min(args.panels, len(r))).round().astype(int)
        if label == "target_change":
            ch = change[0][0][5]
            idx = np.unique(np.clip([ch - 1, ch, ch + 3, len(r) - 1], 0, len(r) - 1))
        for m in methods:
            ser = r.methods[m]
            for i in idx:
                figures.explanation_panel(out / "fig3" / f"{label}_step{i:03d}_{m}.png", images[i], ser.image[i],
                                          ser.config[i], r.feature_points[i], ser.points[i], spec.group_slices(),
                                          names, title=f"{args.task} {label}, step {i}, {m}")
            for norm in ("frame", "video"):
                v = out / f"heatmap_{label}_{m}_per-{norm}.mp4"
                figures.heatmap_video(v, images, ser.image, r.feature_points, normalize=norm, fps=args.fps)
                videos.append(v.name)

    outcomes = {e[0]: {"success": bool(e[4].success), "final_distance": float(e[4].final_distance)} for e in episodes}
    summary = {"policy": source.describe(), "task": args.task, "steps": steps, "methods": methods, "dt": dt,
               "alpha": args.alpha, "episodes": outcomes, "ratios_mean_std": stats,
               "method_rank_consistency": consistency, "trend_mean_over_conditions": trends,
               "trend_per_episode_" + ratio_methods[0]: per_episode_trend, "target_change": {
                   "step": change[0][0][5] if change else None,
                   "target": [float(x) for x in new] if change else None, "reaction": reaction},
               "videos": videos}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    # ---- printout --------------------------------------------------------------------------
    name = source.weights.name if source.trained else source.describe()
    print(f"analyzed {len(episodes)} episodes ({sum(len(r) for r in results)} steps) of {name} on {args.task!r} "
          f"-> {out}/")
    print("  episodes: " + ", ".join(f"{k} {'ok' if v['success'] else 'FAIL'} ({100 * v['final_distance']:.1f} cm)"
                                     for k, v in outcomes.items()))
    for m in ratio_methods:
        st = stats[m]
        img, cfg = st["image:configuration"]
        groups = "  ".join(f"{g} {v[0]:.2f}±{v[1]:.2f}" for g, v in st.items() if ":" not in g)
        print(f"  {m:4s} image:configuration = {100 * img:.0f}:{100 * cfg:.0f}   {groups}")
    for m in ratio_methods:
        tr = trends[m]
        print(f"  {m:4s} trend (first 10% -> last 50% of steps): image {tr['image']['early']:.2f} -> "
              f"{tr['image']['late']:.2f}, position {tr['position']['early']:.2f} -> {tr['position']['late']:.2f}, "
              f"velocity {tr['velocity']['early']:.2f} -> {tr['velocity']['late']:.2f}")
    for m, rc in reaction.items():
        print(f"  {m:4s} target change (5 steps before -> 5 from it): image {rc['image']['before']:.2f} -> "
              f"{rc['image']['after']:.2f} (max {rc['image']['after_max']:.2f}), "
              f"position {rc['position']['before']:.2f} -> {rc['position']['after']:.2f} "
              f"(min {rc['position']['after_min']:.2f})")
    for pair, per in consistency.items():
        vals = [v for v in per.values() if v == v]
        print(f"  rank correlation {pair}: " + "  ".join(f"{g} {v:+.2f}" for g, v in per.items())
              + (f"   (mean {np.mean(vals):+.2f})" if vals else ""))
    return 0
