"""`policy-xai demo`: the README's main job.

Live (default): the simulated Baxter-style arm, the shipped trained policy, attribution and
visualisation run as separate ROS 2 processes over real DDS (no ROS install needed) for --duration
seconds while every topic is recorded to a rosbag2 MCAP; then the recording is analysed offline
(dtd, rap, gbp: Fig. 4/5-style figures, heatmap video, ratio CSV/Parquet).
--offline: no ROS at all; the policy explains generated observations (policy-xai explain).
"""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("demo", help="the main demo: live simulated pipeline + recording + offline analysis",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="reach", help="simulation task with a shipped policy (reach, reach2d, peg, door)")
    p.add_argument("--weights", default="", help="policy weights (default: the shipped models/<task>.safetensors)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of live running after start-up")
    p.add_argument("--method", default="dtd", help="live attribution method")
    p.add_argument("--offline", action="store_true", help="no ROS: explain generated observations instead")
    p.add_argument("--no-analyze", action="store_true", help="skip the offline analysis of the recording")
    p.add_argument("--out", default=None, help="output folder (default runs/demo-<date-time>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from pathlib import Path

    import yaml

    from ..cli import build_parser
    from ..policy import load_policy
    from ..training import model_path

    out = Path(args.out or time.strftime("runs/demo-%Y%m%d_%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        weights = Path(args.weights) if args.weights else model_path(args.task)
    except FileNotFoundError:
        weights = None
    if weights is None:
        print(f"warning: no shipped policy for task {args.task!r}; using an untrained network", file=sys.stderr)
    parser = build_parser()
    if args.offline:
        argv = ["explain", "--policy", str(weights or "small"), "--out", str(out), "--methods", "dtd,rap,gbp,gradcam",
                "--robot", "baxter_right_arm" if args.task != "reach2d" else "two_link_arm", "--steps", "60"]
        a = parser.parse_args(argv)
        return a.func(a)

    from .ros import cmd_run

    spec = "small"
    if weights is not None:  # the spec stored with the weights, for every node
        spec_file = out / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(load_policy(weights).spec.to_dict(), sort_keys=False))
        spec = str(spec_file)
    live = argparse.Namespace(duration=args.duration, spec=spec, weights=str(weights or ""), method=args.method,
                              task=args.task, image_size=None, params_file=None, domain_id=None,
                              out=str(out / "live"), no_video=False)
    rc = cmd_run(live)
    if rc or args.no_analyze:
        return rc
    print("\nanalysing the recording offline (dtd, rap, gbp) ...")
    a = parser.parse_args(["analyze", str(out / "live" / "bag"), "--policy", str(weights) if weights else spec,
                           "--methods", "dtd,rap,gbp", "--out", str(out / "analysis")])
    rc = a.func(a)
    print(f"\ndemo outputs in {out}/: live/ (bag, heatmap.mp4, ratios.png, summary.json) and analysis/ "
          "(fig4_ratios.png, fig5_curves.png, heatmap_*.mp4, ratios.csv/parquet, annotated bag)")
    return rc
