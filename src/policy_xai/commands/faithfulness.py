"""`policy-xai faithfulness`: every attribution method side by side on rollouts of the shipped
policies, judged by what removing what each map points at does to the torques (library:
policy_xai.faithfulness)."""
from __future__ import annotations

from pathlib import Path

from ..robot.tasks import task_names
from .checks import UsageError, add_device_option, device_arg, nonnegative_int, positive_int, writable_dir

QUICK = dict(tasks="reach", methods="dtd,gradient,ig,occlusion_net", every=25, sanity_states=2)


def register(sub) -> None:
    p = sub.add_parser(
        "faithfulness",
        help="measure how faithful each method's maps and ratios are (deletion/insertion, objects, ablations)",
        description=(
            "Rolls out each task's shipped policy in MuJoCo and, for every kept step and every method: "
            "deletion and insertion curves (median colour, blur and ROAD noisy-linear removal; pixels and "
            "4x4 patches; a random-order baseline), the torque change when each scene object is painted "
            "out, pointing-game and top-k ratios on the task object (object masks from MuJoCo "
            "segmentation, for measuring only), configuration-group ablations against the published "
            "ratios, the cost per step and the model-randomisation sanity check. Writes summary.md / "
            ".csv / .json, per-row tables (CSV and Parquet) and figures into --out. The full run takes "
            "about 15-30 minutes on 2 cores; --quick is a one-minute smoke run."),
    )
    p.add_argument("--tasks", default=",".join(task_names()), help="comma-separated tasks (default: all)")
    p.add_argument("--methods", default="all", help="comma-separated methods, or 'all'")
    p.add_argument("--episodes", type=positive_int, default=1, help="episodes per task condition")
    p.add_argument("--every", type=positive_int, default=10, help="keep every n-th control step")
    p.add_argument("--max-states", type=nonnegative_int, default=0, help="at most this many states per task (0: all)")
    p.add_argument("--removals", default="median,blur,road", help="comma-separated removal operators")
    p.add_argument("--units", default="1,4", help="ranking units: 1 = pixels, p = p x p patches")
    p.add_argument("--sanity-states", type=nonnegative_int, default=4,
                   help="states for the model-randomisation check on the trained policy (0: skip)")
    p.add_argument("--policy", action="append", default=[], metavar="TASK=FILE",
                   help="weights for a task instead of its shipped models/<task>.safetensors (repeatable)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (the ms column is per this)")
    p.add_argument("--seed", type=int, default=0)
    add_device_option(p)
    p.add_argument("--quick", action="store_true", help="reach only, dtd/gradient/ig/occlusion_net, every 25th step")
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.set_defaults(func=run)


def _list(text: str, what: str) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError(f"{what}: empty list")
    return items


def options_from_args(args):
    from ..attribution import METHODS
    from ..faithfulness import REMOVALS, Options
    from .checks import policy_arg

    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    tasks = _list(args.tasks, "--tasks")
    bad = [t for t in tasks if t not in task_names()]
    if bad:
        raise UsageError(f"--tasks: unknown {bad}; choose from {', '.join(task_names())}")
    methods = list(METHODS) if args.methods == "all" else _list(args.methods, "--methods")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise UsageError(f"--methods: unknown {bad}; choose from {', '.join(METHODS)} or 'all'")
    removals = _list(args.removals, "--removals")
    bad = [r for r in removals if r not in REMOVALS]
    if bad:
        raise UsageError(f"--removals: unknown {bad}; choose from {', '.join(REMOVALS)}")
    try:
        units = [int(u) for u in _list(args.units, "--units")]
    except ValueError:
        raise UsageError(f"--units: positive integers, got {args.units!r}") from None
    if any(u < 1 for u in units):
        raise UsageError(f"--units: positive integers, got {args.units!r}")
    device = str(device_arg(args.device))
    policies = {}
    for item in args.policy:
        task, sep, path = item.partition("=")
        if not sep or task not in task_names():
            raise UsageError(f"--policy {item!r}: expected TASK=FILE with TASK one of {', '.join(task_names())}")
        policies[task] = str(policy_arg(path, f"--policy {task}", accept=("weights", "task")).weights)
    return Options(tasks=tuple(tasks), methods=tuple(methods), episodes=args.episodes, every=args.every,
                   max_states=args.max_states, removals=tuple(removals), units=tuple(units),
                   sanity=args.sanity_states > 0, sanity_states=args.sanity_states, policies=policies,
                   threads=args.threads, seed=args.seed, device=device)


def run(args) -> int:
    opt = options_from_args(args)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose a new one (nothing is overwritten)")
    writable_dir(out)

    from tqdm import tqdm

    from ..faithfulness import faithfulness, write_report

    bars = {}

    def progress(task, done, total):
        bar = bars.get(task)
        if bar is None:
            bar = bars[task] = tqdm(total=total, desc=f"faithfulness {task}", unit="state")
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    results = faithfulness(opt, progress)
    for b in bars.values():
        b.close()
    doc = write_report(results, out, opt)
    print((out / "summary.md").read_text(), end="")
    for task, flags in doc["sanity_flags"].items():
        for f in flags:
            print(f"sanity {task}: {f}")
    print(f"(tables, figures and summary.json in {out})")
    return 0
