"""`policy-xai demo`: the README's main job.

Live (default): the simulated Baxter-style arm, the shipped trained policy, attribution and
visualisation run as separate ROS 2 processes over real DDS (no ROS install needed) for --duration
seconds while every topic is recorded to a rosbag2 MCAP; then the recording is analysed offline
(the live method, then the paper's dtd, rap, gbp: Fig. 4/5-style figures, heatmap video, ratio
CSV/Parquet).
--offline: no ROS at all; the policy explains generated observations (policy-xai explain).
(The argparse adapter over policy_xai.jobs.demo.)
"""
from __future__ import annotations

import argparse

from ..bags import COMPRESSIONS
from ..jobs.demo import DemoOptions
from ..robot.tasks import task_names
from .checks import positive_float


def register(sub) -> None:
    D = DemoOptions
    p = sub.add_parser("demo", help="the main demo: live simulated pipeline + recording + offline analysis",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default=D.task, choices=task_names(),
                   help=f"simulation task, with its shipped policy (default: {D.task})")
    p.add_argument("--weights", default=D.weights, help="policy weights: a .safetensors file or a task name (default: "
                                                        "the task's shipped weights, models/<task>.safetensors)")
    p.add_argument("--duration", type=positive_float, default=D.duration,
                   help="seconds of live running after start-up")
    p.add_argument("--method", default=D.method,
                   help=f"live attribution method (default {D.method}: see docs/faithfulness.md)")
    p.add_argument("--offline", action="store_true", help="no ROS: explain generated observations instead")
    p.add_argument("--no-analyze", action="store_true", help="skip the offline analysis of the recording")
    p.add_argument("--out", default=D.out, help="output folder (default runs/demo-<date-time>; must not hold live/bag "
                                                "or analysis/bag from another command)")
    p.add_argument("--compression", choices=COMPRESSIONS, default=D.compression,
                   help=f"MCAP chunk compression of the recorded and the annotated bag (default {D.compression})")
    from .checks import add_device_option
    from .ros import NODE_DEVICE_HELP

    add_device_option(p, NODE_DEVICE_HELP.replace("nodes", "nodes and the offline analysis"))
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> DemoOptions:
    """The library's DemoOptions of the parsed arguments."""
    return DemoOptions(task=args.task, weights=args.weights, duration=args.duration, method=args.method,
                       offline=args.offline, analyze=not args.no_analyze, out=args.out,
                       compression=args.compression, device=args.device)


def run(args: argparse.Namespace) -> int:
    from ..jobs.demo import demo
    from ..ros.pipeline import run_and_report

    return demo(options(args), run_live=run_and_report, on_up=getattr(args, "on_up", None))
