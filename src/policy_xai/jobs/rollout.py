"""The paper's analyses (Kim & Choi IV-B/IV-C, Figs. 3-6) on a trained policy running in MuJoCo, with an
explanation at every control step, behind `policy-xai analyze-rollout` (policy_xai.commands.rollout is
its argparse adapter):

    from policy_xai.jobs import RolloutOptions, analyze_rollout
    job = analyze_rollout(RolloutOptions(task="reach", conditions="0", steps=20))

runs the policy over the task's conditions (and once more with the target moved mid-episode to a
position between the training targets), explains every step with each method, amortised over the
joints by the importance factors of the arm's model, and writes into `out` (policy_xai.report): fig3/
(Fig. 3 panels), fig4_ratios.png (mean +- std over all steps of the condition episodes),
fig5_curves.png (mean over the conditions, paper colours), fig5_<condition>.png, fig6_target_change.png,
heatmap_<episode>_<method>_per-{frame,video}.mp4, ratios.csv (with an `episode` column) and summary.json.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ..report import JobReport


@dataclass
class RolloutOptions:
    """Every option of the rollout analysis; the defaults are `policy-xai analyze-rollout`'s."""

    task: str = "reach"  # a simulated task (policy_xai.robot.tasks)
    policy: Optional[str] = None  # policy_xai.resolve; None: the task's shipped weights
    methods: str = "dtd,rap,gbp"  # comma-separated attribution methods
    conditions: str = "all"  # 'all' or comma-separated condition indices
    steps: Optional[int] = None  # steps per episode (None: the task's horizon)
    change_step: Optional[int] = None  # step of the target change (None: a third of the episode; -1: none)
    change_condition: int = 0  # condition of the Fig. 6 episode
    alpha: str = "linearized"  # linearized | exact | none (alpha = 1)
    batch: int = 25  # observations explained per batch
    panels: int = 3  # Fig. 3 panels per method per episode
    fps: float = 10.0  # frame rate of the heatmap videos
    seed: int = 0  # seed of the changed target's position
    threads: int = 1  # torch CPU threads
    device: str = "cpu"
    out: Optional[Union[str, Path]] = None  # None: out/rollout_<task>

    def out_dir(self) -> Path:
        return Path(self.out or f"out/rollout_{self.task}")


@dataclass
class RolloutEpisode:
    """One recorded episode: its label, the observations, their times, the training.Episode and the
    step of the target change (None: none)."""

    label: str
    images: Any
    configs: Any
    times: Any
    episode: Any
    change: Optional[int] = None


def record(sim, policy, condition: int, steps: int, change=None):
    """Run the policy; returns images (N,H,W,3), configs (N,D), times (N,) and the training.Episode."""
    import numpy as np

    from ..training import policy_controller, run_episode

    ep = run_episode(sim, policy_controller(policy), condition, steps=steps, target_change=change)
    times = np.arange(len(ep.images)) * sim.dt
    return np.stack(ep.images), np.stack(ep.configs), times, ep


def _conditions(o: RolloutOptions) -> Optional[list[int]]:
    from ..checks import UsageError

    if o.conditions == "all":
        return None
    try:
        return [int(c) for c in o.conditions.split(",")]
    except ValueError:
        raise UsageError(f"--conditions takes 'all' or comma-separated indices, got {o.conditions!r}") from None


def run_rollouts(o: RolloutOptions, sim, policy, quiet: bool = False) -> tuple[list[RolloutEpisode], int, Any]:
    """The condition episodes and the target-change one: (episodes, steps per episode, the new target or None)."""
    import numpy as np
    from tqdm import tqdm

    from ..training import make_teacher, region_target

    steps = o.steps or sim.task.horizon
    n_cond = len(sim.task.conditions)
    conds = _conditions(o) or list(range(n_cond))
    if any(not 0 <= c < n_cond for c in conds):
        raise ValueError(f"task {o.task!r} has conditions 0..{n_cond - 1}")
    change_step = steps // 3 if o.change_step is None else o.change_step
    episodes, new = [], None
    with tqdm(total=len(conds) + (change_step >= 0), desc="policy rollouts", unit="ep", leave=False,
              disable=quiet) as bar:
        for c in conds:
            episodes.append(RolloutEpisode(f"condition{c}", *record(sim, policy, c, steps)))
            bar.update()
        if 0 <= change_step < steps:
            rng = np.random.default_rng(o.seed)
            expert = make_teacher(sim)
            start = np.asarray(sim.task.conditions[o.change_condition].target, float)
            for _ in range(50):  # "randomly located in between the trained target positions", away from the first
                new = region_target(sim.task, rng, margin=0.0)
                if expert.reachable(new) and np.linalg.norm(new - start) > 2.5 * sim.task.success_tolerance:
                    break
            episodes.append(RolloutEpisode("target_change", *record(sim, policy, o.change_condition, steps,
                                                                    (change_step, new)), change_step))
            bar.update()
    return episodes, steps, new


def pooled_result(results: list, methods: list[str]):
    """One analysis.SequenceResult of the ratios of all `results` (for the Fig. 4 statistics)."""
    import numpy as np

    from ..analysis import MethodSeries, SequenceResult

    names = results[0].methods[methods[0]].ratio_names
    pooled = SequenceResult(np.concatenate([r.torques for r in results]), np.concatenate([r.alpha for r in results]),
                            np.concatenate([r.feature_points for r in results]))
    for m in methods:
        pooled.methods[m] = MethodSeries(m, np.zeros((0,)), np.zeros((0,)), np.zeros((0,)),
                                         np.concatenate([r.methods[m].ratios for r in results]), names)
    return pooled


def analyze_rollout(o: RolloutOptions, quiet: bool = False) -> JobReport:
    """The rollout analysis (see the module's doc): the report's summary and its printed lines. Errors:
    UsageError (options that cannot work, checked before any work), ValueError (no ratio method, a
    condition the task does not have). torch's thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    try:
        return _analyze(o, quiet)
    finally:
        torch.set_num_threads(threads)


def _analyze(o: RolloutOptions, quiet: bool) -> JobReport:
    import numpy as np
    import torch
    from tqdm import tqdm

    from .. import checks
    from ..analysis import alphas_for, change_reaction, explain_sequence, rank_consistency, summary_stats, trend_stats
    from ..attribution import parse_methods
    from ..report import Curves, Episode, ReportWriter, ratio_methods
    from ..robot.sim import Simulation
    from ..training import check_spec_fits

    torch.set_num_threads(max(1, o.threads))
    methods = parse_methods(o.methods)
    ratio_ms = ratio_methods(methods)
    if not ratio_ms:
        raise ValueError("analyze-rollout needs at least one ratio method (dtd, rap, gbp, ...)")
    source = checks.policy_arg(o.policy or f"task:{o.task}", "--policy" if o.policy else "--task")
    out = o.out_dir()
    checks.guard_outputs({"--policy weights file": source.weights}, out, {n: out / n for n in (
        "fig3", "fig4_ratios.png", "fig5_curves.png", "fig6_target_change.png", "ratios.csv", "summary.json")})
    _conditions(o)
    device = checks.device_arg(o.device)
    checks.writable_dir(out)
    policy = source.load(seed=o.seed, device=device)
    spec = policy.spec
    report = ReportWriter(out)
    (out / "fig3").mkdir(parents=True, exist_ok=True)

    with Simulation(o.task, image_size=spec.image_height, seed=o.seed) as sim:
        check_spec_fits(spec, sim)
        episodes, steps, new = run_rollouts(o, sim, policy, quiet)
        robot = None if o.alpha == "none" else sim.model
        dt = sim.dt

    # ---- explanations ------------------------------------------------------------------------
    results = []
    with tqdm(total=sum(len(e.images) for e in episodes), desc=f"explaining ({', '.join(methods)})", unit="step",
              leave=False, disable=quiet) as bar:
        for e in episodes:
            alphas = None if robot is None else alphas_for(robot, spec, e.configs.astype(np.float64), dt,
                                                         method=o.alpha)
            res = explain_sequence(policy, e.images, e.configs, methods, alphas=alphas, batch=o.batch,
                                   progress=bar.update)
            res.times = e.times
            results.append(res)
    normal = [(e, r) for e, r in zip(episodes, results) if e.change is None]
    change = [(e, r) for e, r in zip(episodes, results) if e.change is not None]
    ratio_names = results[0].methods[ratio_ms[0]].ratio_names

    # ---- statistics: pooled over all steps of the condition episodes (Fig. 4), the per-step mean (Fig. 5)
    report.ratios([Episode(e.label, r) for e, r in zip(episodes, results)], ratio_ms)
    pooled = pooled_result([r for _, r in normal], ratio_ms)
    stats = summary_stats(pooled)
    consistency = rank_consistency(pooled, ratio_ms)
    mean_curves = {m: np.mean(np.stack([r.methods[m].ratios for _, r in normal]), axis=0) for m in ratio_ms}
    trends = {m: trend_stats(mean_curves[m], ratio_names) for m in ratio_ms}
    per_episode_trend = {e.label: trend_stats(r.methods[ratio_ms[0]].ratios, ratio_names) for e, r in normal}

    # ---- figures and videos ------------------------------------------------------------------
    report.fig4(stats, ratio_ms, title=f"{o.task}: relevance ratio, mean ± std over {len(pooled)} steps "
                                       f"of {len(normal)} episodes")
    report.fig5(Curves(normal[0][1].times, mean_curves, ratio_names, style="paper",
                       title=f"{o.task}: relevance ratio over time (mean over {len(normal)} conditions)"))
    for e, r in normal:
        report.fig5(Curves(r.times, {m: r.methods[m].ratios for m in ratio_ms}, ratio_names, style="paper",
                           title=f"{o.task} {e.label}: relevance ratio over time"), name=f"fig5_{e.label}.png")
    reaction = {}
    if change:
        e, r = change[0]
        ch = e.change
        report.fig5(Curves(r.times, {m: r.methods[m].ratios for m in ratio_ms}, ratio_names, marks=[r.times[ch]],
                           style="paper", title=f"{o.task}: target moved at step {ch} (t = {r.times[ch]:.2f} s)"),
                    name="fig6_target_change.png")
        reaction = {m: change_reaction(r.methods[m].ratios, ratio_names, ch) for m in ratio_ms}
    videos = []
    for e, r in [normal[0]] + change[:1]:
        idx = np.linspace(0, len(r) - 1, num=min(o.panels, len(r))).round().astype(int)
        if e.change is not None:
            idx = np.unique(np.clip([e.change - 1, e.change, e.change + 3, len(r) - 1], 0, len(r) - 1))
        report.panels("fig3", f"{e.label}_", e.images, r, methods, idx, spec, step_digits=3,
                      title=f"{o.task} {e.label}, step {{step}}, {{method}}")
        for m in methods:
            for norm in ("frame", "video"):
                v = report.video(f"heatmap_{e.label}_{m}_per-{norm}.mp4", e.images, r.methods[m].image,
                                 r.feature_points, normalize=norm, fps=o.fps)
                videos.append(v.name)

    outcomes = {e.label: {"success": bool(e.episode.success), "final_distance": float(e.episode.final_distance)}
                for e in episodes}
    summary = {"policy": source.describe(), "task": o.task, "steps": steps, "methods": methods, "dt": dt,
               "alpha": o.alpha, "episodes": outcomes, "ratios_mean_std": stats,
               "method_rank_consistency": consistency, "trend_mean_over_conditions": trends,
               "trend_per_episode_" + ratio_ms[0]: per_episode_trend, "target_change": {
                   "step": change[0][0].change if change else None,
                   "target": [float(x) for x in new] if change else None, "reaction": reaction},
               "videos": videos}
    report.summary(summary)
    name = source.weights.name if source.trained else source.describe()
    lines = _lines(summary, out, name, len(episodes), sum(len(r) for r in results), ratio_ms)
    return JobReport(out, summary, lines, report.files)


def _lines(s: dict, out: Path, name: str, n_episodes: int, n_steps: int, ratio_ms: list[str]) -> list[str]:
    """What `analyze-rollout` prints of its summary."""
    from ..report import rank_lines, ratio_lines

    lines = [f"analyzed {n_episodes} episodes ({n_steps} steps) of {name} on {s['task']!r} -> {out}/",
             "  episodes: " + ", ".join(f"{k} {'ok' if v['success'] else 'FAIL'} ({100 * v['final_distance']:.1f} cm)"
                                        for k, v in s["episodes"].items())]
    lines += ratio_lines(s["ratios_mean_std"], ratio_ms, width=4)
    for m in ratio_ms:
        tr = s["trend_mean_over_conditions"][m]
        lines.append(f"  {m:4s} trend (first 10% -> last 50% of steps): image {tr['image']['early']:.2f} -> "
                     f"{tr['image']['late']:.2f}, position {tr['position']['early']:.2f} -> "
                     f"{tr['position']['late']:.2f}, velocity {tr['velocity']['early']:.2f} -> "
                     f"{tr['velocity']['late']:.2f}")
    for m, rc in s["target_change"]["reaction"].items():
        lines.append(f"  {m:4s} target change (5 steps before -> 5 from it): image {rc['image']['before']:.2f} -> "
                     f"{rc['image']['after']:.2f} (max {rc['image']['after_max']:.2f}), "
                     f"position {rc['position']['before']:.2f} -> {rc['position']['after']:.2f} "
                     f"(min {rc['position']['after_min']:.2f})")
    lines += rank_lines(s["method_rank_consistency"], "rank correlation", with_mean=True)
    return lines
