"""`policy-xai analyze | compare | bench-bag | replay`: explanations from rosbag2 recordings.

The work is done by policy_xai.bags (no rclpy); `replay` alone starts ROS 2 processes.
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from ..bags import COMPRESSIONS
from ..bags.analyze import AnalyzeOptions as _A
from ..fleet.bench import BenchFleetOptions as _BF
from ..fleet.run import FleetOptions as _F
from ..resolve import SOURCE_HELP
from ..ros import interfaces as itf
from .checks import (UsageError, add_device_option, device_arg, domain_id, nonnegative_float, nonnegative_int,
                     positive_float, positive_int, positive_int_list)

_ATTR = itf.NODES["attribution_node"].parameters  # replay's node defaults
# `analyze`'s defaults are the library's: AnalyzeOptions (one bag) and FleetOptions (many bags);
# `bench-fleet`'s: BenchFleetOptions


def _topic_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("topics (defaults: the live pipeline's, policy_xai/ros/interfaces.py)")
    for key, opt in (("image", "--image-topic"), ("joint_states", "--joint-topic"),
                     ("obs_image", "--obs-image-topic"), ("obs_config", "--obs-config-topic"),
                     ("torques", "--torques-topic"), ("ratios", "--ratios-topic"),
                     ("relevance_image", "--relevance-image-topic"), ("relevance_config", "--relevance-config-topic"),
                     ("relevance_points", "--relevance-points-topic"), ("importance", "--importance-topic")):
        g.add_argument(opt, dest=f"topic_{key}", default=itf.topic_name(key), metavar="NAME",
                       help=f"{itf.TOPIC[key].type} (default {itf.topic_name(key)})")


def _explain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", default=_A.policy, help=f"the policy: {SOURCE_HELP}")
    p.add_argument("--seed", type=int, default=_A.seed,
                   help="init seed of a random network (the live nodes' init_seed)")
    p.add_argument("--method", "--methods", dest="methods", default=_A.methods,
                   help="comma-separated attribution methods (dtd, rap, gbp, gradient, gradcam, ...); "
                        "the first one goes under the live topic names in the output bag")
    p.add_argument("--importance", choices=("dynamics", "uniform"), default=_A.importance,
                   help="importance factors from the robot model, or 1 for every joint")
    p.add_argument("--robot", default=_A.robot, help="robot model (joint kinematics and dynamics)")
    p.add_argument("--dt", type=positive_float, default=_A.dt,
                   help="control period for the importance factors [s]")
    p.add_argument("--batch", type=nonnegative_int, default=_A.batch,
                   help="observations per batch (0 = auto: 32 up to 128x128 images, 8 above; measured best here)")
    p.add_argument("--layer", type=nonnegative_int, default=_A.layer, help="conv layer of the Grad-CAM family")
    p.add_argument("--threads", type=nonnegative_int, default=_A.threads,
                   help="torch threads (0 = torch's default; 1 measured 3-6x faster than 2 on this shared 2-core "
                        "machine)")
    add_device_option(p)


class _BagsAction(argparse.Action):
    """BAG [BAG ...]: args.bags is the list; args.bag the one bag of the single-bag path (as before)."""

    def __call__(self, parser, namespace, values, option_string=None):
        namespace.bags = list(values)
        setattr(namespace, self.dest, values[0] if len(values) == 1 else list(values))


def register(sub) -> None:
    p = sub.add_parser(
        "analyze",
        help="explain every step of a rosbag2 recording (sqlite3 or MCAP); tables, figures, video, annotated bag",
        description=(
            "Read a rosbag2 bag (sqlite3 or MCAP; a folder or a single storage file; bags cut off mid-write are "
            "read as far as they go), pair the observations like the live policy node does (or take the policy "
            "node's own observation topics when the bag has them), recompute the explanations in batches and "
            "write into --out: ratios.csv/.parquet, importance.csv/.parquet (alpha and torques per joint), "
            "fig4_ratios.png, fig5_curves.png, importance.png, heatmap_<method>.mp4, summary.json and bag/ (MCAP: "
            "the original topics plus the attribution node's topics with the original stamps). When the bag "
            "already holds live explanation topics, they are compared with the recomputation."),
    )
    p.add_argument("bag", nargs="+", action=_BagsAction, metavar="BAG",
                   help="bag folder (with metadata.yaml) or a .mcap / .db3 file; more than one bag, a folder of "
                        "bags, a glob or @list.txt analyses them all in parallel on Ray (policy_xai.fleet) into "
                        "OUT/bags/<name>/ plus OUT/steps.parquet and OUT/summary.json")
    _explain_options(p)
    p.add_argument("--source", choices=("auto", "observation", "raw"), default=_A.source,
                   help="observation: the policy node's observation topics; raw: camera image + joint states; "
                        "auto: observation topics when present")
    p.add_argument("--sync-tolerance", type=nonnegative_float, default=_A.sync_tolerance,
                   help="s between image and joint state stamps (raw source), as the policy node")
    p.add_argument("--resize", action="store_true",
                   help="resize images of another size to the policy input (cv2.INTER_AREA) instead of failing")
    p.add_argument("--start", type=nonnegative_float, default=_A.start, help="skip the first START s of the bag")
    p.add_argument("--duration", type=nonnegative_float, default=_A.duration, help="analyse DURATION s (0: to the end)")
    p.add_argument("--max-steps", type=nonnegative_int, default=_A.max_steps,
                   help="analyse at most this many steps (0: all)")
    p.add_argument("--normalize", choices=("frame", "video"), default=_A.normalize,
                   help="heatmap colour scale: per frame, or one scale for the whole video")
    p.add_argument("--time-jump", type=nonnegative_float, default=_A.time_jump,
                   help="s: a stamp this far behind the last pair (or ahead) restarts the pairing, as the policy "
                        "node's time_jump (0: never; late stamps are then dropped)")
    p.add_argument("--gap-factor", type=positive_float, default=_A.gap_factor,
                   help="a gap is a step longer than this x the median period")
    p.add_argument("--recorded-prefix", default=_A.recorded_prefix,
                   help="prefix for the bag's own explanation topics in the output bag")
    p.add_argument("--no-bag", action="store_true", help="do not write the output bag")
    p.add_argument("--compression", choices=COMPRESSIONS, default=_A.compression,
                   help="MCAP chunk compression of the output bag (as rosbag2's MCAP storage; "
                        f"default {_A.compression})")
    p.add_argument("--no-video", action="store_true", help="do not write heatmap videos")
    p.add_argument("--bench", action="store_true", help="only read, pair and explain; print the timing")
    p.add_argument("--out", default=_A.out,
                   help="output folder (never the bag's own folder: e.g. RUN/analysis for the bag RUN/bag)")
    f = p.add_argument_group("many bags (Ray)")
    f.add_argument("--workers", type=positive_int, default=_F.workers,
                   help=f"local Ray instance with this many CPUs (default {_F.workers})")
    f.add_argument("--ray-address", default=_F.ray_address, help="an existing Ray cluster (e.g. auto or ray://HOST:10001)")
    f.add_argument("--video", action="store_true", help="with many bags: heatmap videos too (off by default)")
    f.add_argument("--ship-code", action="store_true",
                   help="with --ray-address: send this policy_xai (code, config, urdf, models) to the cluster's "
                        "workers (their Python still needs the dependencies)")
    f.add_argument("--episode-gap", type=positive_float, default=_F.episode_gap, metavar="S",
                   help="a pause of at least S s between a bag's steps starts a new episode (steps.parquet)")
    f.add_argument("--num-gpus", type=nonnegative_float, default=_F.num_gpus,
                   help="GPUs per bag's task (default: 1 when torch sees CUDA, else 0)")
    _topic_options(p)
    p.set_defaults(func=run_analyze)

    c = sub.add_parser(
        "compare",
        help="two runs or two methods side by side: overlaid ratio curves, rank correlation over time",
        description=(
            "Compare two ratio series. Each of A and B is an `analyze` output folder or a ratios .csv/.parquet "
            "file, optionally followed by :METHOD (e.g. out/run1:dtd out/run1:rap compares two methods on one "
            "recording; out/run1 out/run2 two recordings). Writes compare_curves.png, compare_rank.png, "
            "compare.csv/.parquet and compare.json into --out."),
    )
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--align", choices=("auto", "stamp", "time", "step"), default="auto",
                   help="match steps by identical stamp, by time since the first step, or by step index "
                        "(auto: stamp when at least half the stamps match, else time)")
    c.add_argument("--tolerance", type=nonnegative_float, default=0.02, help="s for time alignment")
    c.add_argument("--window", type=positive_int, default=20, help="steps in the sliding rank-correlation window")
    c.add_argument("--out", default="out/compare", help="output folder")
    c.set_defaults(func=run_compare)

    b = sub.add_parser(
        "bench-bag",
        help="steps/s of reading, pairing and batched explanation over a generated bag at 64x64 and 240x240",
        description="Writes a robot-like bag per size (spec small at 64, paper at 240 unless --policy) into a "
                    "temporary folder and times reading + pairing and the batched explanation.",
    )
    b.add_argument("--sizes", type=positive_int_list, default="64,240",
                   help="comma-separated image sizes (64 -> spec small, 240 -> paper)")
    b.add_argument("--steps", type=nonnegative_int, default=0, help="steps per bag (default 200 at 64, 48 at 240)")
    b.add_argument("--method", default="dtd")
    b.add_argument("--batch", type=nonnegative_int, default=0, help="0 = auto (as analyze)")
    b.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    b.add_argument("--threads", type=nonnegative_int, default=1, help="torch threads (0 = torch's default)")
    b.add_argument("--json", default=None, metavar="FILE",
                   help="also write the rows to this JSON file (never overwritten)")
    b.set_defaults(func=run_bench)

    fb = sub.add_parser(
        "bench-fleet",
        help="bags/s and steps/s of `analyze` over many generated bags: sequential, and on Ray with 1, 2 ... workers",
        description="Writes N robot-like bags into a temporary folder and analyses them one after another without "
                    "Ray, then with policy_xai.fleet on a fresh local Ray instance per worker count; prints bags/s, "
                    "steps/s and where the task time went (decode, importance factors, explanation, the rest).")
    fb.add_argument("--bags", type=positive_int, default=_BF.bags)
    fb.add_argument("--steps", type=positive_int, default=_BF.steps, help="steps per bag")
    fb.add_argument("--workers", type=positive_int_list, default=",".join(map(str, _BF.workers)),
                    help="comma-separated worker counts")
    fb.add_argument("--methods", default=_BF.methods)
    fb.add_argument("--storage", choices=("mcap", "sqlite3"), default=_BF.storage)
    fb.add_argument("--no-sequential", dest="sequential", action="store_false", help="skip the run without Ray")
    fb.add_argument("--json", dest="json_out", default="",
                    help="also write the rows to this JSON file (never overwritten)")
    fb.set_defaults(func=run_bench_fleet)

    r = sub.add_parser(
        "replay",
        help="play a bag into the live nodes (started here over DDS), optionally recording their output",
        description=(
            "Starts the node graph that explains the bag (replay: attribution + visualisation, for bags with the "
            "policy's observation topics; explain: policy + attribution + visualisation, for bags with camera "
            "images and joint states) as separate processes, and plays the bag's input topics with their "
            "recorded timing (rate factor, loop, start offset) - for machines without `ros2 bag play`."),
    )
    r.add_argument("bag")
    r.add_argument("--graph", choices=("auto", "replay", "explain"), default="auto")
    r.add_argument("--policy", default=str(_ATTR["spec"]), help=f"the nodes' policy: {SOURCE_HELP}")
    r.add_argument("--method", default=None, help=f"attribution method (default: the nodes', {_ATTR['method']}; "
                                                  "dtd with --model)")
    r.add_argument("--rate", type=positive_float, default=1.0, help="playback speed factor")
    r.add_argument("--loop", action="store_true")
    r.add_argument("--start-offset", type=nonnegative_float, default=0.0, help="start this many s into the bag")
    r.add_argument("--record", default="", help="record the live nodes' output (and the played topics) to this bag")
    r.add_argument("--domain-id", type=domain_id, default=None)
    r.add_argument("--params-file", default=None, help="parameter file (default: the graph's)")
    r.add_argument("--no-visualization", action="store_true", help="leave out the visualisation node")
    r.add_argument("--log-dir", default="", help="node logs (default: a temporary folder)")
    r.add_argument("--ready-timeout", type=positive_float, default=90.0, help="s to wait for the nodes to come up")
    add_device_option(r, "torch device of the policy and attribution nodes (their `device` parameter): cpu, cuda, "
                         "cuda:N or mps; checked before any node starts")
    g = r.add_argument_group("a user's policy explains the bag instead (user_explainer_node: it never commands)")
    g.add_argument("--model", default="", help="package.module:factory or a torch.export program (.pt2)")
    g.add_argument("--weights", default="", help="the model's weights (.safetensors or a state_dict)")
    g.add_argument("--mapping", default="user_policy_sim",
                   help="YAML observation mapping: the bag's topics the model reads (default: the shipped "
                        "config/user_policy_sim.yaml)")
    g.add_argument("--model-kwargs", default="", help="factory keyword arguments, a JSON object")
    r.set_defaults(func=run_replay)


# ==== analyze ====================================================================================
def options(args: argparse.Namespace):
    """The library's AnalyzeOptions (policy_xai.bags.analyze) of the parsed `analyze` arguments."""
    from ..bags.analyze import AnalyzeOptions

    return AnalyzeOptions.from_dests(args)


def analyze(args, quiet: bool = False) -> dict:
    """analyze_bag of the parsed `analyze` arguments (a Namespace or a dict of its dests): the summary dict."""
    from ..bags.analyze import analyze_bag

    return analyze_bag(options(args), quiet)


def run_analyze(args: argparse.Namespace) -> int:
    """One bag: analyze_bag; many (fleet.wants_fleet): fleet.analyze_bags on Ray."""
    from .. import fleet

    bags = getattr(args, "bags", None) or [args.bag]
    device_arg(args.device)  # before any bag is read (every worker checks it again where it runs)
    if not fleet.wants_fleet(bags):
        analyze(args)
        return 0
    if args.bench:
        raise UsageError("--bench takes one bag")
    if args.ship_code and not args.ray_address:
        raise UsageError("--ship-code goes with --ray-address (a local instance runs this install's code)")
    fo = fleet.FleetOptions(out=args.out, workers=args.workers, ray_address=args.ray_address, ship_code=args.ship_code,
                            num_gpus=args.num_gpus, episode_gap=args.episode_gap)
    s = fleet.analyze_bags(bags, replace(options(args), video=args.video), fo)  # videos only with --video
    t = s["totals"]
    print(f"analysed {t['bags']} bags ({t['resumed']} resumed, {t['truncated']} truncated, {t['failed']} failed): "
          f"{t['steps']} steps in {t['wall_s']:.1f} s -> {args.out}/ (steps.parquet, summary.json, bags/)")
    for b in s["bags"]:
        if b["status"] != "ok":
            print(f"  {b['name']}: {b['status'].upper()}: {b['error']}")
    st = s["stages_s"]
    if st["task"] > 0:
        print("  task time: " + ", ".join(f"{k.replace('_', ' ')} {100 * st[k] / st['task']:.0f} %"
                                          for k in ("read_and_pair", "importance", "explain", "other")))
    for o in s["stand_out"]:
        print(f"  stands out: {o['bag']}: median {o['group']} ratio {o['median']:.3f} against {o['others_median']:.3f} "
              f"for the other bags ({o['method']})")
    return 1 if t["failed"] else 0


# ==== compare ===================================================================================
def run_compare(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .. import bags
    from . import checks

    inputs = {}
    for label, ref in (("input A", args.a), ("input B", args.b)):
        path = ref if Path(ref).exists() or ":" not in ref else ref.rsplit(":", 1)[0]
        inputs[label] = checks.input_path(path, label)
    checks.guard_outputs(inputs, args.out, {n: Path(args.out, n) for n in (
        "compare.json", "compare.csv", "compare.parquet", "compare_curves.png", "compare_rank.png")})
    a = bags.load_ratio_series(args.a)
    b = bags.load_ratio_series(args.b)
    checks.writable_dir(args.out)
    if a.label == b.label:
        a.label, b.label = f"A {a.label}", f"B {b.label}"
    res = bags.compare_series(a, b, args.out, args.align, args.window, args.tolerance)
    Path(args.out, "compare.json").write_text(json.dumps(bags.nan_to_none(res), indent=2))
    print(f"{res['a']} vs {res['b']}: {res['matched_steps']} steps matched by {res['alignment']} -> {args.out}/")
    print("  overall rank correlation per group: " + "  ".join(
        f"{g} {v:+.2f}" for g, v in res["overall_rank_corr_per_group"].items()))
    print(f"  mean rank correlation of the groups per step: {res['mean_rank_corr_of_groups_per_step']:+.2f}; "
          f"largest |ratio difference| {res['max_abs_ratio_diff']:.3f}")
    return 0


# ==== bench ======================================================================================
def bench(sizes=(64, 240), steps: int = 0, method: str = "dtd", batch: int = 0, storage: str = "mcap",
          quiet: bool = False) -> list[dict]:
    import tempfile
    from pathlib import Path

    from .. import bags
    from ..bags.analyze import AnalyzeOptions, analyze_bag
    from ..spec import load_spec

    rows = []
    with tempfile.TemporaryDirectory(prefix="policy_xai_bench_") as tmp:
        for size in sizes:
            name = "small" if size <= 64 else "paper"
            spec = load_spec(name)
            if (spec.image_width, spec.image_height) != (size, size):
                d = spec.to_dict()
                d["image"] = {**d["image"], "height": size, "width": size}
                d["name"] = f"{name}_{size}"
                spec = load_spec(d)
            n = steps or (200 if size <= 64 else 48)
            bag = bags.write_synthetic_bag(Path(tmp) / f"bench_{size}", spec, n, storage)
            o = AnalyzeOptions(str(bag), out=str(Path(tmp) / "out"), policy=name, seed=0, methods=method,
                               importance="dynamics", robot="baxter_right_arm", dt=0.05, batch=batch, threads=0,
                               resize=spec.name != name, time_jump=bags.ReadOptions.time_jump, bench=True,
                               write_bag=False, video=False)
            s = analyze_bag(o, quiet=True)
            t = s["timing"]
            rows.append({"size": size, "spec": name, "steps": s["steps"], "storage": storage, "method": method,
                         "batch": t["batch"], "read_pair_steps_per_s": s["steps"] / max(t["read_and_pair_s"], 1e-9),
                         "importance_steps_per_s": s["steps"] / max(t["importance_s"], 1e-9),
                         "explain_steps_per_s": t["steps_per_s"]})
            if not quiet:
                r = rows[-1]
                print(f"{size}x{size} ({name}, {r['steps']} steps, {storage}): read+pair "
                      f"{r['read_pair_steps_per_s']:.0f} steps/s, "
                      f"importance {r['importance_steps_per_s']:.0f} steps/s, "
                      f"batched {method} (batch {r['batch']}) {r['explain_steps_per_s']:.1f} steps/s", flush=True)
    return rows


def run_bench(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    import torch

    from .checks import int_list, new_file

    if args.json:
        new_file(args.json, "--json")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    sizes = int_list(args.sizes, label="--sizes")
    load = list(os.getloadavg())
    rows = bench(sizes, args.steps, args.method, args.batch, args.storage)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "load_average_before": load, "load_average_after": list(os.getloadavg()), "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def run_bench_fleet(args: argparse.Namespace) -> int:
    from .. import fleet
    from .checks import int_list

    fleet.bench_fleet(fleet.BenchFleetOptions(
        bags=args.bags, steps=args.steps, workers=tuple(int_list(args.workers, label="--workers")),
        methods=args.methods, storage=args.storage, sequential=args.sequential, json_out=args.json_out or None))
    return 0


# ==== replay =====================================================================================
def run_replay(args: argparse.Namespace) -> int:
    from ..live_run import UserModel
    from ..ros.replay import ReplayOptions, replay_bag

    user = None
    if args.model:
        user = UserModel(args.model, args.mapping, args.model_kwargs)
    elif args.weights or args.model_kwargs or args.mapping != UserModel.mapping:
        raise UsageError("--weights, --mapping and --model-kwargs are for --model (a spec's weights: --policy)")
    replay_bag(ReplayOptions(
        bag=args.bag, graph=args.graph, policy=args.policy, method=args.method, rate=args.rate, loop=args.loop,
        start_offset=args.start_offset, record=args.record, domain_id=args.domain_id, params_file=args.params_file,
        visualization=not args.no_visualization, log_dir=args.log_dir, ready_timeout=args.ready_timeout,
        device=args.device, user=user, weights=args.weights))
    return 0
