"""`policy-xai demo`: the README's main job.

Live (default): the simulated Baxter-style arm, the shipped trained policy, attribution and
visualisation run as separate ROS 2 processes over real DDS (no ROS install needed) for --duration
seconds while every topic is recorded to a rosbag2 MCAP; then the recording is analysed offline
(the live method, then the paper's dtd, rap, gbp: Fig. 4/5-style figures, heatmap video, ratio
CSV/Parquet).
--offline: no ROS at all; the policy explains generated observations (policy-xai explain).
"""
from __future__ import annotations

import argparse

from ..bags import COMPRESSIONS
from ..live_run import LIVE_METHOD, RunOptions
from ..robot.tasks import task_names
from .checks import positive_float


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main demo: live simulated pipeline + recording + offline analysis",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="reach", choices=task_names(),
                   help="simulation task, with its shipped policy (default: reach)")
    p.add_argument("--weights", default="", help="policy weights: a .safetensors file or a task name (default: the "
                                                 "task's shipped weights, models/<task>.safetensors)")
    p.add_argument("--duration", type=positive_float, default=30.0, help="seconds of live running after start-up")
    p.add_argument("--method", default=LIVE_METHOD,
                   help=f"live attribution method (default {LIVE_METHOD}: see docs/faithfulness.md)")
    p.add_argument("--offline", action="store_true", help="no ROS: explain generated observations instead")
    p.add_argument("--no-analyze", action="store_true", help="skip the offline analysis of the recording")
    p.add_argument("--out", default=None, help="output folder (default runs/demo-<date-time>; must not hold live/bag "
                                               "or analysis/bag from another command)")
    p.add_argument("--compression", choices=COMPRESSIONS, default=RunOptions.compression,
                   help="MCAP chunk compression of the recorded and the annotated bag "
                        f"(default {RunOptions.compression})")
    from .checks import add_device_option
    from .ros import NODE_DEVICE_HELP

    add_device_option(p, NODE_DEVICE_HELP.replace("nodes", "nodes and the offline analysis"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    import yaml

    from .. import bags
    from ..cli import build_parser
    from ..live_run import check_live_args
    from ..resolve import PolicySourceError, policy_source
    from ..robot.tasks import get_task
    from . import checks

    out = Path(args.out or time.strftime("runs/demo-%Y%m%d_%H%M%S"))
    device = str(checks.device_arg(args.device))
    task = get_task(args.task)
    if args.weights:
        source = checks.policy_arg(args.weights, "--weights", accept=("weights", "task"))
    else:
        try:
            source = policy_source(f"task:{task.name}")
        except PolicySourceError:
            source = None  # no shipped policy: an untrained network of the task's spec (warned below)
    weights = source.weights if source is not None else None
    inputs = {"--weights file": weights}
    checks.guard_outputs(inputs, out, {n: out / n for n in ("spec.yaml", "live", "analysis")})
    checks.writable_dir(out)
    if not args.offline:
        check_live_args(out / "live", task.spec, str(weights or ""))
        if not args.no_analyze and (out / "analysis" / "bag").exists() and \
                not bags.is_annotated_bag(out / "analysis" / "bag"):
            raise checks.UsageError(f"--out {out} already holds analysis/bag, which analyze did not write; "
                                    "choose another --out")
    if weights is None:
        print(f"warning: no shipped policy for task {args.task!r}; using an untrained network", file=sys.stderr)
    parser = build_parser()
    if args.offline:
        argv = ["explain", "--policy", str(weights or f"spec:{task.spec}"), "--out", str(out), "--methods",
                "dtd,rap,gbp,gradcam", "--robot", task.robot, "--steps", "60", "--device", device]
        a = parser.parse_args(argv)
        return a.func(a)

    from .ros import run_and_report

    spec = task.spec
    if source is not None:  # the spec stored with the weights, for every node
        spec_file = out / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(source.load().spec.to_dict(), sort_keys=False))
        spec = str(spec_file)
    live = RunOptions(out=out / "live", duration=args.duration, spec=spec, weights=str(weights or ""),
                      method=args.method, task=args.task, compression=args.compression, device=device)
    rc = run_and_report(live, on_up=getattr(args, "on_up", None))
    if rc or args.no_analyze:
        return rc
    methods = ",".join(dict.fromkeys([args.method, "dtd", "rap", "gbp"]))
    print(f"\nanalysing the recording offline ({methods.replace(',', ', ')}) ...")
    a = parser.parse_args(["analyze", str(out / "live" / "bag"), "--policy", str(weights) if weights else spec,
                           "--methods", methods, "--out", str(out / "analysis"),
                           "--compression", args.compression, "--device", device])
    rc = a.func(a)
    print(f"\ndemo outputs in {out}/: live/ (bag, heatmap.mp4, ratios.png, summary.json) and analysis/ "
          "(fig4_ratios.png, fig5_curves.png, heatmap_*.mp4, ratios.csv/parquet, annotated bag)")
    return rc
