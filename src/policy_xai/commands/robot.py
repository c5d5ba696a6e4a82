"""`policy-xai robot`: the simulated arm's speed (`robot bench`) and the scripted experts (`robot experts`)."""
from __future__ import annotations

import argparse

from ..robot.tasks import task_names
from .checks import nonnegative_float, positive_float, positive_int, positive_int_list


def register(sub) -> None:
    p = sub.add_parser("robot", help="robot side: simulation/importance-factor benchmark, scripted experts",
                       description="The simulated arms (MuJoCo, built from urdf/) and their models (Pinocchio).")
    rsub = p.add_subparsers(dest="robot_command", metavar="SUBCOMMAND")

    b = rsub.add_parser("bench", help="physics steps/s, rendered frames/s (64x64, 240x240), alpha cost per step",
                        description="Measure the simulation's physics rate, the offscreen camera's frame rate at "
                                    "several sizes and the cost of the importance factors (linearised and exact).")
    b.add_argument("--task", default="reach", choices=task_names(), help="scene to measure (default: reach)")
    b.add_argument("--sizes", type=positive_int_list, default="64,240",
                   help="comma-separated square image sizes to render")
    b.add_argument("--steps", type=positive_int, default=200, help="control steps for the physics measurement")
    b.add_argument("--frames", type=positive_int, default=100, help="frames per image size")
    b.add_argument("--alphas", type=positive_int, default=2000, help="importance-factor evaluations per method")
    b.add_argument("--json", default=None, metavar="FILE",
                   help="also write the numbers to this JSON file (never overwritten)")
    b.set_defaults(func=run_bench)

    e = rsub.add_parser("experts", help="success rate of the scripted experts per task and condition",
                        description="Run the scripted expert of each task from every condition (and, for the "
                                    "tasks that declare it (target_change: the reaching tasks), with the target "
                                    "moved mid-episode between the training targets) and print the success "
                                    "rate. Exit status 1 if any episode fails.")
    e.add_argument("--tasks", default=",".join(task_names()),
                   help=f"comma-separated tasks out of {', '.join(task_names())} (default: all)")
    e.add_argument("--episodes", type=positive_int, default=1, help="episodes per condition")
    e.add_argument("--noise", type=nonnegative_float, default=0.0,
                   help="uniform start-pose noise (rad) for episodes after the first")
    e.add_argument("--control-rate", type=positive_float, default=20.0, help="control rate (Hz)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", default=None, metavar="FILE",
                   help="also write the results to this JSON file (never overwritten)")
    e.set_defaults(func=run_experts)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _sizes(text: str) -> list:
    try:
        out = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if not out:
        raise ValueError("--sizes is empty")
    return out


def bench(task: str = "reach", sizes=(64, 240), steps: int = 200, frames: int = 100, alphas: int = 2000) -> dict:
    """The numbers of `policy-xai robot bench` as a dict: rates, CPU microseconds per importance-factor
    evaluation, and how far the two methods' raw factors lie apart at rest (probe torques) over the
    timed poses, for a 0.01 s step and the control step (`alpha_exact_vs_linearized_median`: step
    length -> median |exact / linearised - 1|)."""
    import os
    import time

    import numpy as np

    from ..robot.importance import exact_raw, importance_factors, linearized_raw
    from ..robot.sim import Simulation

    out: dict = {"task": task, "load_average_before": list(os.getloadavg())}
    rng = np.random.default_rng(0)
    with Simulation(task, render=False) as sim:
        sim.reset(0)
        tau = rng.uniform(-0.2, 0.2, (steps, sim.n_joints)) * sim.torque_limits
        t = time.perf_counter()
        for k in range(steps):
            sim.step(tau[k])
        el = time.perf_counter() - t
        out["physics_timestep_s"] = sim.physics_timestep
        out["physics_steps_per_s"] = steps * sim.substeps / el
        out["control_steps_per_s"] = steps / el
        out["control_rate_hz"] = sim.control_rate
        q = [rng.uniform(sim.model.lower, sim.model.upper) for _ in range(256)]
        v = np.zeros(sim.n_joints)
        for method, n in (("linearized", alphas), ("exact", max(alphas // 4, 1))):
            for k in range(20):
                importance_factors(sim.model, q[k % 256], v, sim.dt, method=method)
            t = time.process_time()
            for k in range(n):
                importance_factors(sim.model, q[k % 256], v, sim.dt, method=method)
            out[f"alpha_{method}_us"] = (time.process_time() - t) / n * 1e6
        gap = {}
        for dt in sorted({0.01, sim.dt}):
            gap[f"{dt:g}"] = float(np.median([np.abs(exact_raw(sim.model, qk, v, dt) / linearized_raw(sim.model, qk, dt)
                                                     - 1) for qk in q[:64]]))
        out["alpha_exact_vs_linearized_median"] = gap  # step length (s) -> median gap
        out["control_dt_s"] = sim.dt
        out["n_joints"] = sim.n_joints
    for s in sizes:
        with Simulation(task, image_size=s, render=False) as sim:
            sim.reset(0)
            sim.render()
            t = time.perf_counter()
            for _ in range(frames):
                sim.render()
            out[f"fps_{s}x{s}"] = frames / (time.perf_counter() - t)
    out["load_average_after"] = list(os.getloadavg())
    return out


def run_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .checks import new_file

    if args.json:
        new_file(args.json, "--json")
    r = bench(args.task, _sizes(args.sizes), args.steps, args.frames, args.alphas)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    print(f"task {r['task']} ({r['n_joints']} joints), physics timestep {r['physics_timestep_s'] * 1e3:.1f} ms, "
          f"control {r['control_rate_hz']:.0f} Hz")
    print(f"  physics            {r['physics_steps_per_s']:>10.0f} steps/s  "
          f"({r['control_steps_per_s']:.0f} control steps/s with observations)")
    for k, v in r.items():
        if k.startswith("fps_"):
            print(f"  render {k[4:]:<11} {v:>10.0f} frames/s")
    print(f"  alpha linearised   {r['alpha_linearized_us']:>10.1f} us/step (CPU time)")
    print(f"  alpha exact        {r['alpha_exact_us']:>10.1f} us/step (CPU time)")
    print("  exact vs linearised: median gap " + ", ".join(
        f"{100 * g:.2f} % (dt {dt} s)" for dt, g in r["alpha_exact_vs_linearized_median"].items()) + " (at rest)")
    if args.json:
        print(f"wrote {args.json}")
    return 0


def run_experts(args: argparse.Namespace) -> int:
    import json
    import sys

    from tqdm import tqdm

    from ..robot.experts import run_expert
    from ..robot.sim import Simulation
    from ..robot.tasks import between_targets, get_task

    from pathlib import Path

    from .checks import new_file

    if args.json:
        new_file(args.json, "--json")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for t in tasks:
        get_task(t)  # unknown names fail early with the list of tasks
    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    jobs = []
    for t in tasks:
        task = get_task(t)
        n = len(task.conditions)
        for c in range(n):
            for e in range(args.episodes):
                jobs.append((t, str(c), c, e, None))
        if task.target_change:
            T = task.targets
            for c in range(n):  # Fig. 6: a third into the episode the target moves half-way to the nearest other target
                j = min((k for k in range(n) if k != c), key=lambda k: float(((T[k] - T[c]) ** 2).sum()))
                jobs.append((t, f"{c}->mid{j}", c, 0, (task.horizon // 3, between_targets(task, c, j))))
    results: dict = {}
    sims: dict = {}
    try:
        with tqdm(jobs, desc="expert episodes", unit="ep", file=sys.stderr, disable=None) as bar:
            for t, label, c, e, change in bar:
                if t not in sims:
                    sims[t] = Simulation(t, render=False, control_rate=args.control_rate, seed=args.seed)
                sim = sims[t]
                r = run_expert(sim, c, target_change=change, noise=args.noise if e > 0 else 0.0)
                results.setdefault(t, {}).setdefault(label, []).append(bool(r["success"]))
                bar.set_postfix_str(f"{t} {label}: {'ok' if r['success'] else 'FAIL'}")
    finally:
        for s in sims.values():
            s.close()
    all_ok = all(all(v) for d in results.values() for v in d.values())
    summary = {t: {"success_rate": sum(sum(v) for v in d.values()) / sum(len(v) for v in d.values()),
                   "conditions": {k: sum(v) / len(v) for k, v in d.items()}} for t, d in results.items()}
    for t, s in summary.items():
        conds = "  ".join(f"{k}:{v:.0%}" for k, v in s["conditions"].items())
        print(f"{t:<8} {s['success_rate']:>6.0%}   {conds}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all_ok else 1
