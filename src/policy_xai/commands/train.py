"""`policy-xai collect`, `policy-xai train`, `policy-xai evaluate`: trained policies for the simulated tasks."""
from __future__ import annotations

from ..resolve import SOURCE_HELP
from ..robot.tasks import get_task, task_names
from . import checks
from .checks import fraction, nonnegative_float, nonnegative_int, positive_float, positive_int


def _common(p, seed=True):
    p.add_argument("--task", default="reach", choices=task_names(), help="simulated task (default: reach)")
    if seed:
        p.add_argument("--seed", type=int, default=0, help="seed of the data, the initialisation and the shuffling")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads (default 1: fastest on a shared 2-core machine)")


def register(sub) -> None:
    from ..training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "collect", help="roll out the feedback expert in MuJoCo and save images, configurations and labels (.npz)",
        description="Roll out the task's state-feedback expert (with exploration noise on the torques and the start "
                    "pose) in MuJoCo with rendered images; save images (N,H,W,3 uint8), configs (N,D), labels (N,J "
                    "expert torques) and targets (N,3) to an .npz file, usable by `train --data` and "
                    "`explain --inputs`.")
    _common(p)
    p.add_argument("--episodes", type=positive_int, default=d.expert_episodes)
    p.add_argument("--region-fraction", type=fraction, default=d.region_fraction,
                   help="share of episodes with a random target in the region of the training targets")
    p.add_argument("--out", default=None, help="output .npz (default out/data/<task>.npz)")
    p.set_defaults(func=run_collect)

    p = sub.add_parser(
        "train", help="train a visuomotor policy by behaviour cloning + DAgger relabelling on a simulated task",
        description="Behaviour cloning of the state-feedback expert (torques from q, v and the target, which the "
                    "network sees only in the image) with an auxiliary loss that regresses the target position from "
                    "the feature points, then DAgger rounds: roll out the policy, relabel by the expert, aggregate, "
                    "fit again. Saves weights + spec (.safetensors) and evaluates them.")
    _common(p)
    p.add_argument("--spec", default=None, help="policy spec, a shipped name or a YAML file (default: the task's: "
                   + ", ".join(f"{get_task(t).spec} for {t}" for t in task_names()) + ")")
    p.add_argument("--data", default=None, help="start from a collected .npz instead of collecting expert episodes")
    p.add_argument("--expert-episodes", type=positive_int, default=d.expert_episodes)
    p.add_argument("--dagger-iters", type=nonnegative_int, default=d.dagger_iters)
    p.add_argument("--dagger-episodes", type=positive_int, default=d.dagger_episodes)
    p.add_argument("--epochs", type=positive_int, default=d.epochs, help="epochs on the expert data")
    p.add_argument("--dagger-epochs", type=nonnegative_int, default=d.dagger_epochs,
                   help="epochs after each DAgger round")
    p.add_argument("--head-epochs", type=nonnegative_int, default=d.head_epochs,
                   help="> 0: after the expert data freeze the conv layers and fit only the FC head on cached "
                        "feature points, this many epochs per DAgger round (much faster on CPU)")
    p.add_argument("--finetune-epochs", type=nonnegative_int, default=d.finetune_epochs,
                   help="with --head-epochs: end-to-end epochs on all the data at the end")
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--aux-weight", type=nonnegative_float, default=d.aux_weight,
                   help="weight of the target-regression loss")
    p.add_argument("--region-fraction", type=fraction, default=d.region_fraction,
                   help="share of episodes with a random target between the training targets (0: conditions only)")
    p.add_argument("--torque-noise", type=nonnegative_float, default=d.torque_noise,
                   help="exploration noise on the executed expert torques, as a fraction of the effort limits")
    p.add_argument("--change-fraction", type=fraction, default=d.change_fraction,
                   help="share of episodes whose target moves mid-episode")
    p.add_argument("--eval-episodes", type=nonnegative_int, default=3,
                   help="evaluation episodes per target after training (0: none)")
    p.add_argument("--out", default=None, help="weights file (default out/models/<task>.safetensors)")
    p.set_defaults(func=run_train)

    p = sub.add_parser(
        "evaluate",
        help="success rates of a trained policy per condition, on held-out targets, and with the image blanked",
        description="Run a trained policy in MuJoCo: success rate per training condition and on held-out targets "
                    "between them (midpoints, centroid), then the same with the camera image blanked to its mean "
                    "colour (a policy that uses the image must then fail). Episode 0 per target starts exactly at the "
                    "condition's pose, the others with --noise rad of uniform noise.")
    _common(p)
    p.add_argument("--policy", default=None, help=f"the policy: {SOURCE_HELP} (default: the task's shipped weights)")
    p.add_argument("--episodes", type=positive_int, default=5, help="episodes per target")
    p.add_argument("--noise", type=nonnegative_float, default=0.05,
                   help="start-pose noise [rad] for episodes after the first")
    p.add_argument("--no-blank", action="store_true", help="skip the blanked-image evaluation")
    p.add_argument("--no-heldout", action="store_true", help="only the training conditions")
    p.add_argument("--json", default=None, help="also write the results to this JSON file (never overwritten)")
    checks.add_device_option(p)
    p.set_defaults(func=run_evaluate)


def _bar(total, desc, unit):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "sample", leave=False)


def run_collect(args) -> int:
    import numpy as np

    from ..robot.sim import Simulation
    from ..training import collect
    from . import checks

    out = checks.writable_file(args.out or f"out/data/{args.task}.npz", "--out")
    if out.suffix != ".npz":
        raise checks.UsageError(f"--out {out}: collect writes an .npz file (numpy adds .npz to other names)")
    if out.exists():
        import zipfile

        if not zipfile.is_zipfile(out):
            raise checks.UsageError(f"--out {out} exists and is not an .npz data file; it is left alone "
                                    "(choose another --out)")
    with Simulation(args.task, image_size=64, seed=args.seed) as sim, _bar(args.episodes, "expert episodes", "ep") as b:
        data = collect(sim, args.episodes, seed=args.seed, region_fraction=args.region_fraction, progress=b.update)
    np.savez_compressed(out, **data, times=np.arange(len(data["images"])) * sim.dt)
    print(f"collected {args.episodes} episodes, {len(data['images'])} samples of task {args.task!r} -> {out}")
    return 0


def run_train(args) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from ..training import TrainConfig, default_spec, save_trained, train
    from . import checks

    out = Path(args.out or f"out/models/{args.task}.safetensors")
    inputs = {}
    if args.data:
        inputs["--data file"] = checks.input_file(args.data, "--data file")
    if args.spec:
        from ..spec import load_spec

        load_spec(args.spec)
        if Path(args.spec).is_file():
            inputs["--spec file"] = args.spec
    checks.writable_file(out, "--out", inputs)
    if out.exists():
        from ..policy import PolicyLoadError, read_metadata

        try:
            ours = read_metadata(out).get("format", "").startswith("policy_xai/")
        except PolicyLoadError:
            ours = False
        if not ours:
            raise checks.UsageError(f"--out {out} exists and is not a policy weights file; it is left alone "
                                    "(choose another --out)")
    cfg = TrainConfig(task=args.task, spec=args.spec or default_spec(args.task), seed=args.seed,
                      expert_episodes=args.expert_episodes, dagger_iters=args.dagger_iters,
                      dagger_episodes=args.dagger_episodes, epochs=args.epochs, dagger_epochs=args.dagger_epochs,
                      head_epochs=args.head_epochs, finetune_epochs=args.finetune_epochs,
                      lr=args.lr, aux_weight=args.aux_weight, region_fraction=args.region_fraction,
                      threads=args.threads, torque_noise=args.torque_noise, change_fraction=args.change_fraction)
    data = None
    if args.data:
        try:
            with np.load(args.data) as z:
                data = {k: z[k] for k in ("images", "configs", "labels", "targets")}
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"{args.data}: not a collected data file with arrays images, configs, labels and "
                             f"targets ({e})") from None
    print(f"training {cfg.spec!r} on task {cfg.task!r} (seed {cfg.seed})")
    policy, data, info = train(cfg, data=data, bar_factory=_bar)
    save_trained(policy, out, task=cfg.task, seed=str(cfg.seed), samples=str(info["samples"]),
                train_seconds=str(info["total_seconds"]),
                recipe=json.dumps({k: v for k, v in vars(cfg).items()}, sort_keys=True))
    print(f"trained in {info['total_seconds']:.0f} s ({info['fit_seconds']:.0f} s fitting, {info['samples']} samples) "
          f"-> {out}")
    if args.eval_episodes > 0:
        _print_eval(policy, args.task, args.eval_episodes, 0.05, args.seed + 7, blank=True, heldout=True)
    return 0


def _print_eval(policy, task, episodes, noise, seed, blank=True, heldout=True) -> dict:
    from ..robot.sim import Simulation
    from ..training import count_evaluation_episodes, evaluate

    out = {}
    with Simulation(task, image_size=policy.spec.image_height, seed=seed) as sim:
        for kind in (("normal", False), ("blanked image", True))[: 2 if blank else 1]:
            n = count_evaluation_episodes(sim.task, episodes, heldout)
            with _bar(n, f"evaluating ({kind[0]})", "ep") as b:
                r = evaluate(policy, sim, episodes=episodes, noise=noise, seed=seed, blank=kind[1], heldout=heldout,
                             progress=b.update)
            out[kind[0]] = r
            print(f"  [{kind[0]}] training conditions: {100 * r['conditions_success']:.0f}% success"
                  + (f", held-out targets: {100 * r['heldout_success']:.0f}%" if heldout else ""))
            for grp in ("conditions", "heldout"):
                for name, v in r[grp].items():
                    extra = "".join(f"  {k[5:].replace('_', ' ')} {v[k]:.3f}"
                                    for k in sorted(v) if k.startswith("mean_"))
                    print(f"      {grp[:9]:9s} {name:12s} success {100 * v['success']:5.1f}%  "
                          f"mean final distance {100 * v['final_distance']:.1f} cm" + extra)
    return out


def run_evaluate(args) -> int:
    import json
    from pathlib import Path

    import torch

    torch.set_num_threads(max(1, args.threads))
    source = checks.policy_arg(args.policy or f"task:{args.task}", "--policy" if args.policy else "--task")
    device = checks.device_arg(args.device)
    if args.json:
        checks.new_file(args.json, "--json", {"--policy weights file": source.weights})
    policy = source.load(seed=args.seed, device=device)
    print(f"evaluating {source.describe()} on task {args.task!r}: {args.episodes} episodes per target, "
          f"start noise {args.noise} rad")
    res = _print_eval(policy, args.task, args.episodes, args.noise, args.seed, blank=not args.no_blank,
                      heldout=not args.no_heldout)
    if args.json:
        Path(args.json).write_text(json.dumps({"policy": source.describe(), "task": args.task, **res}, indent=2))
    return 0
