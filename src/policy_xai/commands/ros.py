"""`policy-xai run | record | play | latency | topics`: the live ROS 2 pipeline without a ROS install.

run      start the simulated graph (sim, policy, attribution, visualisation) as processes over real
         DDS for a while, record every topic to a rosbag2 MCAP, then write the heatmap video, the
         ratio plot and a summary (rates, latency, success); --model runs a user's PyTorch policy
         (package.module:factory or .pt2, with a YAML --mapping) in user_policy_node instead
record   record topics of a running graph to MCAP until Ctrl-C
play     publish a bag's topics with their timing (rate, loop, start offset)
latency  observation stamp -> heatmap arrival, p50/p99, for the small (64x64) and paper (240x240) specs
topics   the topic / parameter tables (docs/ros.md)

The options and checks are policy_xai.live_run (RunOptions, LatencyOptions, RecordOptions: the
defaults here are theirs), the runs policy_xai.ros.pipeline; this module parses and prints.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..bags import COMPRESSIONS
from ..robot.tasks import task_names
from ..live_run import LIVE_METHOD, USER_METHOD, LatencyOptions, RecordOptions, RunOptions, UserModel
from .checks import (UsageError, add_device_option, domain_id, new_file, nonnegative_float, positive_float,
                     positive_int)

PRECISIONS = ("float32", "bfloat16")
NODE_DEVICE_HELP = ("torch device of the nodes that run a network (their `device` parameter): cpu, cuda, cuda:N "
                    "or mps; checked before any node starts (one that torch cannot use here: one line, exit code 2)")


def _compression_arg(p) -> None:
    p.add_argument("--compression", choices=COMPRESSIONS, default=RunOptions.compression,
                   help=f"MCAP chunk compression of the recorded bag (as rosbag2's MCAP storage; default "
                        f"{RunOptions.compression})")


def register(sub) -> None:
    p = sub.add_parser("run", help="run the simulated live pipeline, record it, write video/plot/summary",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _live_args(p)
    p.add_argument("--out", default=None, help="output folder (default runs/<date-time>; must not hold a bag/ yet)")
    p.add_argument("--no-video", action="store_true", help="skip the heatmap video")
    _compression_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("record", help="record topics to a rosbag2 MCAP (raw bytes) until Ctrl-C")
    p.add_argument("output", help="bag folder to create (must not exist)")
    p.add_argument("--topics", nargs="*", default=[], help="topics (default: all, also ones appearing later)")
    p.add_argument("--duration", type=nonnegative_float, default=RecordOptions.duration,
                   help="stop after this many seconds (0: Ctrl-C)")
    p.add_argument("--domain-id", type=domain_id, default=None)
    _compression_arg(p)
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("play", help="publish a bag's topics with their recorded timing")
    p.add_argument("bag")
    p.add_argument("--topics", nargs="*", default=None)
    p.add_argument("--rate", type=positive_float, default=1.0, help="speed factor (2 = twice as fast)")
    p.add_argument("--loop", action="store_true")
    p.add_argument("--start", type=nonnegative_float, default=0.0, help="skip this many seconds from the bag's start")
    p.add_argument("--remap", nargs="*", default=[], metavar="FROM:=TO")
    p.add_argument("--domain-id", type=domain_id, default=None)
    p.set_defaults(func=cmd_play)

    L = LatencyOptions
    p = sub.add_parser("latency", help="live latency benchmark: observation stamp -> heatmap, p50/p99")
    p.add_argument("--configs", nargs="*", default=list(L.configs), metavar="SPEC:SIZE",
                   help="spec name (untrained), a weights file (.safetensors, with its explainer) or a task name and "
                        "the camera size, e.g. small:64 models/reach.safetensors:64; with --model: camera sizes "
                        "(default: the mapping's)")
    p.add_argument("--duration", type=positive_float, default=L.duration, help="seconds measured per configuration")
    p.add_argument("--repeat", type=positive_int, default=L.repeat, metavar="N",
                   help="runs per configuration, back to back, each with its machine check (a row each: on a "
                        "shared machine the tail varies from run to run)")
    p.add_argument("--method", default=L.method,
                   help=f"attribution method (default {LIVE_METHOD}, {USER_METHOD} with --model; an untrained network "
                        "has no explainer and falls back as the attribution node does)")
    p.add_argument("--precision", default=L.precision, choices=PRECISIONS)
    p.add_argument("--machine-check", type=nonnegative_float, default=L.machine_check, metavar="S",
                   help="before each configuration, time a fixed CPU task at 20 Hz for S s (0: skip): the "
                        "tail this machine adds to any pipeline")
    p.add_argument("--out", default=None, help="folder for bags and results (default: a temp folder)")
    p.add_argument("--json", default=None, metavar="FILE",
                   help="also write the rows of latency.json to this file (never overwritten)")
    p.add_argument("--domain-id", type=domain_id, default=None)
    add_device_option(p, NODE_DEVICE_HELP)
    _compression_arg(p)
    _user_model_args(p, weights=True)
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("topics", help="print the topic and parameter tables of the live pipeline")
    p.set_defaults(func=lambda a: _print_tables())


def _live_args(p) -> None:
    R = RunOptions
    p.add_argument("--duration", type=positive_float, default=R.duration, help="seconds to run after the graph is up")
    p.add_argument("--spec", default=R.spec, help="policy spec (small, paper or a YAML file)")
    p.add_argument("--weights", default=R.weights, help="trained weights (.safetensors); default: untrained")
    p.add_argument("--method", default=R.method,
                   help=f"attribution method (default {LIVE_METHOD}; {USER_METHOD} with --model)")
    p.add_argument("--precision", default=R.precision, choices=PRECISIONS,
                   help="attribution rule convolutions (bfloat16: several times faster on AMX CPUs)")
    p.add_argument("--task", default=R.task, choices=task_names(), help="simulation task")
    p.add_argument("--image-size", type=positive_int, default=R.image_size,
                   help="camera size (default: the spec's input size)")
    p.add_argument("--params-file", default=R.params_file, help="parameter file (default config/sim.yaml)")
    p.add_argument("--domain-id", type=domain_id, default=R.domain_id,
                   help="ROS_DOMAIN_ID (default: a random free-ish one)")
    add_device_option(p, NODE_DEVICE_HELP)
    _user_model_args(p)


def _user_model_args(p, weights: bool = False) -> None:
    g = p.add_argument_group("a user's policy instead of the spec's (user_policy_node; --spec is then unused)")
    g.add_argument("--model", default="", help="package.module:factory (with --weights, else untrained: simulation) "
                                               "or a torch.export program (.pt2)")
    if weights:
        g.add_argument("--weights", default="", help="the model's weights (.safetensors or a state_dict)")
    g.add_argument("--mapping", default=UserModel.mapping,
                   help=f"YAML observation mapping (default: the shipped config/{UserModel.mapping}.yaml)")
    g.add_argument("--model-kwargs", default=UserModel.model_kwargs, help="factory keyword arguments, a JSON object")
    g.add_argument("--split", action="store_true",
                   help="explain in a user_explainer_node of its own (default: the user_policy_node explains)")


def _print_tables() -> int:
    from ..ros.interfaces import parameter_table_markdown, topic_table_markdown

    print(topic_table_markdown())
    print()
    print(parameter_table_markdown())
    return 0


# ==== run ========================================================================================
def _user_model(args):
    """The UserModel of --model / --mapping / --model-kwargs / --split (None without --model)."""
    if args.model:
        return UserModel(args.model, args.mapping, args.model_kwargs, args.split)
    if args.model_kwargs or args.mapping != UserModel.mapping:
        raise UsageError("--mapping and --model-kwargs are for --model")
    return None


def run_options(args: argparse.Namespace) -> RunOptions:
    """The library's RunOptions of the parsed `run` arguments."""
    user = _user_model(args)
    return RunOptions(out=args.out, duration=args.duration, spec=args.spec, weights=args.weights, method=args.method,
                      precision=args.precision, task=args.task, image_size=args.image_size,
                      params_file=args.params_file, domain_id=args.domain_id, device=args.device,
                      compression=args.compression, video=not args.no_video, user=user)


def cmd_run(args) -> int:
    from ..ros.pipeline import run_and_report

    return run_and_report(run_options(args), on_up=getattr(args, "on_up", None))


# ==== record, play ===============================================================================
def cmd_record(args) -> int:
    from ..ros.pipeline import record

    closed = record(RecordOptions(args.output, topics=args.topics, duration=args.duration,
                                  compression=args.compression, domain_id=args.domain_id))
    return 0 if closed else 1


def cmd_play(args) -> int:
    from ..ros.player import run
    from . import checks

    checks.input_path(args.bag, "bag")
    remap = {}
    for r in args.remap:
        if ":=" not in r:
            raise UsageError(f"--remap takes FROM:=TO, got {r!r}")
        a, b = r.split(":=", 1)
        remap[a] = b
    return run(args.bag, args.topics, args.rate, args.loop, args.start, remap, args.domain_id)


# ==== latency ====================================================================================
def cmd_latency(args) -> int:
    from ..ros.pipeline import latency_bench

    opts = LatencyOptions(configs=args.configs, duration=args.duration, method=args.method, precision=args.precision,
                          machine_check=args.machine_check, out=args.out, domain_id=args.domain_id,
                          device=args.device, compression=args.compression, user=_user_model(args),
                          weights=args.weights, repeat=args.repeat)
    if args.weights and not opts.user:
        raise UsageError("--weights is for --model (a spec's weights go in --configs: WEIGHTS.safetensors:SIZE)")
    if args.json:
        new_file(args.json, "--json")
    rows, base = latency_bench(opts)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    print("| spec | weights | method | size | precision | run | camera Hz | explained Hz | heatmap Hz | "
          "stamp->relevance p50/p99 ms | stamp->heatmap p50/p99 ms | skipped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    f = lambda x: "n/a" if x is None else f"{x:.1f}"  # noqa: E731
    for r in rows:
        print(f"| {r['spec']} | {Path(r['weights']).name if r['weights'] else 'untrained'} | {r['method']} | "
              f"{r['size']} | {r['precision']} | {r.get('run', 1)} | {r['camera_hz']:.1f} | {r['explained_hz']:.1f} | "
              f"{r['heatmap_hz']:.1f} | {f(r['relevance_p50_ms'])} / {f(r['relevance_p99_ms'])} | "
              f"{f(r['heatmap_p50_ms'])} / {f(r['heatmap_p99_ms'])} | {r['skipped_behind']} |")
    if any("machine_task_p99_ms" in r for r in rows):
        print("machine check per row (fixed CPU task p50 / p99 ms): "
              + "; ".join(f"{f(r.get('machine_task_p50_ms'))} / {f(r.get('machine_task_p99_ms'))}" for r in rows))
    print(f"(bags and latency.json in {base}" + (f"; rows also in {args.json})" if args.json else ")"))
    return 0
