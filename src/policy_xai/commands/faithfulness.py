"""`policy-xai faithfulness`: every attribution method side by side on rollouts of the shipped
policies, judged by what removing what each map points at does to the torques (library:
policy_xai.faithfulness)."""
from __future__ import annotations

from dataclasses import replace

from ..faithfulness.options import QUICK, Options
from ..robot.tasks import task_names
from .checks import UsageError, add_device_option, nonnegative_int, positive_int


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
    D = Options
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: all)")
    p.add_argument("--methods", default="all", help="comma-separated methods, or 'all'")
    p.add_argument("--episodes", type=positive_int, default=D.episodes, help="episodes per task condition")
    p.add_argument("--every", type=positive_int, default=D.every, help="keep every n-th control step")
    p.add_argument("--max-states", type=nonnegative_int, default=D.max_states,
                   help="at most this many states per task (0: all)")
    p.add_argument("--removals", default=",".join(D.removals), help="comma-separated removal operators")
    p.add_argument("--units", default=",".join(map(str, D.units)), help="ranking units: 1 = pixels, p = p x p patches")
    p.add_argument("--sanity-states", type=nonnegative_int, default=D.sanity_states,
                   help="states for the model-randomisation check on the trained policy (0: skip)")
    p.add_argument("--policy", action="append", default=[], metavar="TASK=FILE",
                   help="weights for a task instead of its shipped models/<task>.safetensors (repeatable)")
    p.add_argument("--threads", type=positive_int, default=D.threads, help="torch threads (the ms column is per this)")
    p.add_argument("--seed", type=int, default=D.seed)
    add_device_option(p)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: " + ", ".join(f"{k.replace('_', '-')} " + (",".join(map(str, v))
                                                    if isinstance(v, tuple) else str(v)) for k, v in QUICK.items()))
    p.add_argument("--out", required=True, help="output folder (new or empty)")
    p.set_defaults(func=run)


def options(args) -> Options:
    """The library's Options of the parsed arguments (checked by the library when it runs)."""
    policies = {}
    for item in args.policy:
        task, sep, path = item.partition("=")
        if not sep:
            raise UsageError(f"--policy {item!r}: expected TASK=FILE with TASK one of {', '.join(task_names())}")
        policies[task] = path
    opt = Options(methods=args.methods, episodes=args.episodes, every=args.every, max_states=args.max_states,
                  removals=args.removals, units=args.units, sanity_states=args.sanity_states, policies=policies,
                  threads=args.threads, seed=args.seed, device=args.device)
    if args.tasks is not None:
        opt = replace(opt, tasks=args.tasks)
    return replace(opt, **QUICK) if args.quick else opt


def run(args) -> int:
    from ..faithfulness import faithfulness_report

    print("\n".join(faithfulness_report(options(args), args.out).lines))
    return 0
