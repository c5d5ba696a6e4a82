"""`policy-xai analyze | compare | bench-bag | replay`: explanations from rosbag2 recordings.

The work is done by policy_xai.bags (no rclpy); `replay` alone starts ROS 2 processes.
"""
from __future__ import annotations

import argparse
import sys

from ..ros import interfaces as itf
from .checks import (UsageError, add_device_option, device_arg, domain_id, nonnegative_float, nonnegative_int,
                     positive_float, positive_int, positive_int_list)

_ATTR = itf.NODES["attribution_node"].parameters
_POLICY = itf.NODES["policy_node"].parameters


def _topic_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("topics (defaults: the live pipeline's, policy_xai/ros/interfaces.py)")
    for key, opt in (("image", "--image-topic"), ("joint_states", "--joint-topic"),
                     ("obs_image", "--obs-image-topic"), ("obs_config", "--obs-config-topic"),
                     ("torques", "--torques-topic"), ("ratios", "--ratios-topic"),
                     ("relevance_image", "--relevance-image-topic"), ("relevance_config", "--relevance-config-topic"),
                     ("relevance_points", "--relevance-points-topic"), ("importance", "--importance-topic")):
        g.add_argument(opt, dest=f"topic_{key}", default=itf.topic_name(key), metavar="NAME",
                       help=f"{itf.TOPIC[key].type} (default {itf.topic_name(key)})")


def _topics(args) -> dict:
    from ..bags import default_topics

    t = default_topics()
    for k in list(t):
        v = getattr(args, f"topic_{k}", None)
        if v:
            t[k] = v
    return t


def _explain_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", default=str(_ATTR["spec"]),
                   help="weights file (.safetensors) or a shipped spec name for a random network (small, paper)")
    p.add_argument("--seed", type=int, default=int(_ATTR["init_seed"]),
                   help="init seed of a random network (the live nodes' init_seed)")
    p.add_argument("--method", "--methods", dest="methods", default=str(_ATTR["method"]),
                   help="comma-separated attribution methods (dtd, rap, gbp, gradient, gradcam, ...); "
                        "the first one goes under the live topic names in the output bag")
    p.add_argument("--importance", choices=("dynamics", "uniform"), default=str(_ATTR["importance"]),
                   help="importance factors from the robot model, or 1 for every joint")
    p.add_argument("--robot", default=str(_ATTR["robot"]), help="robot model (joint kinematics and dynamics)")
    p.add_argument("--dt", type=positive_float, default=float(_ATTR["dt"]),
                   help="control period for the importance factors [s]")
    p.add_argument("--batch", type=nonnegative_int, default=0,
                   help="observations per batch (0 = auto: 32 up to 128x128 images, 8 above; measured best here)")
    p.add_argument("--layer", type=nonnegative_int, default=0, help="conv layer of the Grad-CAM family")
    p.add_argument("--threads", type=nonnegative_int, default=1,
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
    p.add_argument("--source", choices=("auto", "observation", "raw"), default="auto",
                   help="observation: the policy node's observation topics; raw: camera image + joint states; "
                        "auto: observation topics when present")
    p.add_argument("--sync-tolerance", type=nonnegative_float, default=float(_POLICY["sync_tolerance"]),
                   help="s between image and joint state stamps (raw source), as the policy node")
    p.add_argument("--resize", action="store_true",
                   help="resize images of another size to the policy input (cv2.INTER_AREA) instead of failing")
    p.add_argument("--start", type=nonnegative_float, default=0.0, help="skip the first START s of the bag")
    p.add_argument("--duration", type=nonnegative_float, default=0.0, help="analyse DURATION s (0: to the end)")
    p.add_argument("--max-steps", type=nonnegative_int, default=0, help="analyse at most this many steps (0: all)")
    p.add_argument("--normalize", choices=("frame", "video"), default="frame",
                   help="heatmap colour scale: per frame, or one scale for the whole video")
    p.add_argument("--time-jump", type=nonnegative_float, default=float(_POLICY.get("time_jump", 1.0)),
                   help="s: a stamp this far behind the last pair (or ahead) restarts the pairing, as the policy "
                        "node's time_jump (0: never; late stamps are then dropped)")
    p.add_argument("--gap-factor", type=positive_float, default=3.0,
                   help="a gap is a step longer than this x the median period")
    p.add_argument("--recorded-prefix", default="/recorded",
                   help="prefix for the bag's own explanation topics in the output bag")
    p.add_argument("--no-bag", action="store_true", help="do not write the output bag")
    p.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd",
                   help="MCAP chunk compression of the output bag (as rosbag2's MCAP storage; default zstd)")
    p.add_argument("--no-video", action="store_true", help="do not write heatmap videos")
    p.add_argument("--bench", action="store_true", help="only read, pair and explain; print the timing")
    p.add_argument("--out", default="out/analyze",
                   help="output folder (never the bag's own folder: e.g. RUN/analysis for the bag RUN/bag)")
    f = p.add_argument_group("many bags (Ray)")
    f.add_argument("--workers", type=positive_int, default=2, help="local Ray instance with this many CPUs (default 2)")
    f.add_argument("--ray-address", default=None, help="an existing Ray cluster (e.g. auto or ray://HOST:10001)")
    f.add_argument("--video", action="store_true", help="with many bags: heatmap videos too (off by default)")
    f.add_argument("--ship-code", action="store_true",
                   help="with --ray-address: send this policy_xai (code, config, urdf, models) to the cluster's "
                        "workers (their Python still needs the dependencies)")
    f.add_argument("--episode-gap", type=positive_float, default=1.0, metavar="S",
                   help="a pause of at least S s between a bag's steps starts a new episode (steps.parquet)")
    f.add_argument("--num-gpus", type=nonnegative_float, default=None,
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
    b.set_defaults(func=run_bench)

    fb = sub.add_parser(
        "bench-fleet",
        help="bags/s and steps/s of `analyze` over many generated bags: sequential, and on Ray with 1, 2 ... workers",
        description="Writes N robot-like bags into a temporary folder and analyses them one after another without "
                    "Ray, then with policy_xai.fleet on a fresh local Ray instance per worker count; prints bags/s, "
                    "steps/s and where the task time went (decode, importance factors, explanation, the rest).")
    fb.add_argument("--bags", type=positive_int, default=8)
    fb.add_argument("--steps", type=positive_int, default=120, help="steps per bag")
    fb.add_argument("--workers", type=positive_int_list, default="1,2", help="comma-separated worker counts")
    fb.add_argument("--methods", default="dtd")
    fb.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    fb.add_argument("--no-sequential", action="store_true", help="skip the run without Ray")
    fb.add_argument("--json", default="", help="also write the rows to this JSON file (never overwritten)")
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
    r.add_argument("--policy", default=str(_ATTR["spec"]), help="spec name or weights file for the nodes")
    r.add_argument("--method", default=str(_ATTR["method"]))
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
    r.set_defaults(func=run_replay)


# ==== analyze ====================================================================================
def _load(args):
    from .explain import load_policy_arg

    device = device_arg(getattr(args, "device", "cpu"))
    if getattr(args, "threads", 0):
        import torch

        torch.set_num_threads(args.threads)
    return load_policy_arg(args.policy, args.seed, device)


def auto_batch(spec) -> int:
    """Batch size for the batched explanation: 32 for small images, 8 for large ones (at 240x240 larger
    batches ran slower here: the relevance maps of a batch no longer fit the caches)."""
    return 32 if spec.image_height * spec.image_width <= 128 * 128 else 8


def _usable_methods(policy, methods: list[str]) -> list[str]:
    """An amortised method for a policy without an explainer file becomes the fallback (one warning
    line), as in the live attribution node; duplicates are dropped."""
    from ..attribution.engine import usable_method

    out = []
    for m in methods:
        use, why = usable_method(policy, m)
        if why:
            print(f"warning: method {m!r} is not available ({why}); using {use!r}", file=sys.stderr)
        if use not in out:
            out.append(use)
    return out


def analyze(args, quiet: bool = False) -> dict:
    """The analysis behind `policy-xai analyze` (also used by tests): returns the summary dict."""
    import torch

    threads = torch.get_num_threads()
    try:
        return _analyze(args, quiet)
    finally:
        torch.set_num_threads(threads)


def _analyze(args, quiet: bool = False) -> dict:
    import json
    import time
    import warnings
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from .. import bags, figures
    from ..analysis import summary_stats
    from ..attribution import CAM_METHODS

    from ..attribution import parse_methods

    methods = parse_methods(args.methods)
    out = Path(args.out)
    write_bag = not args.bench and not args.no_bag
    if not args.bench:
        check_analyze_out(args.bag, args.policy, out, methods, write_bag, not args.no_video, create=False)
    policy = _load(args)
    methods = _usable_methods(policy, methods)
    if not args.bench:
        from .checks import writable_dir

        writable_dir(out)
    spec = policy.spec
    if not args.batch:
        args.batch = auto_batch(spec)
    topics = _topics(args)
    opts = bags.ReadOptions(topics, args.source, args.sync_tolerance, args.resize, args.robot, args.start,
                            args.duration, args.max_steps, getattr(args, "time_jump", bags.ReadOptions.time_jump))
    timing = bags.Timing()
    caught = []
    with warnings.catch_warnings(record=True) as wlist, bags.BagSource(args.bag) as bag:
        warnings.simplefilter("always")
        ts = bags.typestore()
        live = bags.LiveExplanations()
        t0 = time.perf_counter()
        obs = bags.read_observations(bag, spec, opts, live, ts)
        timing.read_s = time.perf_counter() - t0
        if len(obs) == 0:
            why = "; ".join(f"{k} ({n}x)" for k, n in obs.skipped.items()) or \
                f"no image and {'configuration' if obs.source == 'observation' else 'joint state'} stamps matched"
            raise bags.BagError(f"{args.bag}: no observation could be paired ({why}); topics: {bag.describe_topics()}")
        t0 = time.perf_counter()
        alphas = bags.importance_factors(spec, obs.configs, args.importance, args.robot, args.dt)
        timing.alpha_s = time.perf_counter() - t0
        with tqdm(total=len(obs), desc=f"explaining ({', '.join(methods)})", unit="step", disable=quiet) as bar:
            res = bags.explain_observations(policy, obs, methods, alphas, args.batch, args.layer, bar.update, timing)
        summary = {
            "bag": str(args.bag), "storage": bag.storage, "reader": bag.reader, "policy": args.policy,
            "spec": spec.name, "source": obs.source, "methods": methods,
            "importance": args.importance + (f" ({args.robot}, dt={args.dt})" if args.importance == "dynamics" else ""),
            "topics_in_bag": {t.name: {"type": t.msgtype, "count": t.count} for t in bag.topics.values()},
            "steps": len(obs), "unpaired_messages": obs.unpaired, "skipped_messages": obs.skipped,
            "resized_images": obs.resized, "original_image_size": obs.original_size,
            "timing": {"read_and_pair_s": round(timing.read_s, 3), "importance_s": round(timing.alpha_s, 3),
                       "explain_s": round(timing.explain_s, 3), "steps_per_s": round(timing.steps_per_s, 2),
                       "batch": args.batch, "methods_per_step": len(methods)},
            "time_span_s": float((obs.stamps[-1] - obs.stamps[0]) * 1e-9),
            "gaps": bags.find_gaps(obs.stamps, args.gap_factor, obs.backwards, obs.late_stamps,
                                   obs.largest_backward_ns),
            "pairing_restarts": obs.jumps,
        }
        if bag.problem is not None:
            summary["truncated"] = bag.problem.describe(bag.start_ns)
        if len(live):
            summary["live_vs_recomputed"] = bags.compare_live(res, obs, live, methods[0], spec)
        elif obs.recorded_torques:
            summary["live_vs_recomputed"] = bags.compare_live(res, obs, bags.LiveExplanations(), methods[0], spec)
        if args.bench:
            caught = [str(w.message) for w in wlist]
            summary["warnings"] = caught
            if not quiet:
                _print_timing(summary)
            return summary
        out.mkdir(parents=True, exist_ok=True)
        files = []
        files += bags.write_table(bags.ratio_rows(res, obs), out / "ratios")
        files += bags.write_table(bags.importance_rows(res, obs, spec), out / "importance")
        ratio_methods = [m for m in methods if m not in CAM_METHODS]
        stats = summary_stats(res)
        summary["ratios_mean_std"] = stats
        gaps = summary["gaps"]
        if ratio_methods:
            files.append(figures.ratio_bars(out / "fig4_ratios.png", {m: stats[m] for m in ratio_methods},
                                            title=f"relevance ratios ({spec.name}, {len(res)} steps)"))
            first = res.methods[ratio_methods[0]]
            curves = {}
            for m in ratio_methods:
                t, r = bags.break_at_gaps(res.times, res.methods[m].ratios, gaps)
                curves[m] = r
            marks = [g["from_s"] for g in gaps["gaps"]]
            files.append(figures.ratio_curves(out / "fig5_curves.png", t, curves, first.ratio_names, marks=marks,
                                              mark_label="time gap", title=f"relevance ratio over time ({args.bag})"))
        files.append(bags.importance_figure(out / "importance.png", res.times, res.alpha, spec.joint_names, gaps,
                                            title=f"importance factors ({args.importance})"))
        period = gaps["median_period_s"]
        fps = float(np.clip(1.0 / period, 1.0, 60.0)) if period == period and period > 0 else 10.0
        if not args.no_video:
            for m in methods:
                files.append(figures.heatmap_video(out / f"heatmap_{m}.mp4", obs.images, res.methods[m].image,
                                                   res.feature_points, normalize=args.normalize, fps=fps))
        if len(ratio_methods) >= 2:
            a = bags.series_from_result(res, obs, ratio_methods[0])
            b = bags.series_from_result(res, obs, ratio_methods[1])
            summary["methods_compared"] = bags.compare_series(a, b, out, how="stamp", stem="compare_methods")
        if write_bag:
            bags.remove_annotated_bag(out / "bag")  # an earlier run's output bag (checked up front)
            msgs = list(bags.explanation_messages(ts, res, obs, spec, methods, topics))
            start = bag.start_ns + int(args.start * 1e9) if bag.start_ns is not None and args.start else None
            end = int(obs.log_times[-1]) if (args.duration or args.max_steps) else None
            summary["output_bag"] = bags.write_annotated_bag(bag, out / "bag", msgs, ts, topics, args.recorded_prefix,
                                                             start, end, compression=args.compression)
        summary["files"] = sorted({str(Path(f).name) for f in files if f})
        summary["warnings"] = [str(w.message) for w in wlist]
    (out / "summary.json").write_text(json.dumps(bags.nan_to_none(summary), indent=2, default=str))
    if not quiet:
        _print_summary(summary, out)
    return summary


def check_analyze_out(bag, policy: str, out, methods, write_bag: bool = True, video: bool = True,
                      create: bool = True) -> None:
    """Before any work: the bag exists, --out is creatable and writable, and nothing analyze writes is
    the input bag, inside it or holds it (`analyze RUN/bag --out RUN` would put its bag at RUN/bag);
    an existing <out>/bag is replaced only when an earlier `analyze` wrote it."""
    from pathlib import Path

    from .. import bags
    from . import checks

    checks.input_path(bag, "bag")
    out = Path(out)
    inputs = {"input bag": checks.bag_root(bag)}
    if policy.endswith(".safetensors") or Path(policy).is_file():
        inputs["--policy weights file"] = checks.input_file(policy, "--policy weights file")
    writes = {name: out / name for name in ("summary.json", "ratios.csv", "ratios.parquet", "importance.csv",
                                            "importance.parquet", "fig4_ratios.png", "fig5_curves.png",
                                            "importance.png")}
    if video:
        writes.update({f"heatmap_{m}.mp4": out / f"heatmap_{m}.mp4" for m in methods})
    if write_bag:
        writes = {"the annotated bag": out / "bag", **writes}
    checks.guard_outputs(inputs, out, writes)
    if write_bag and (out / "bag").exists() and not bags.is_annotated_bag(out / "bag"):
        raise UsageError(f"--out {out} already holds {out / 'bag'}, which analyze did not write (a recording?); "
                         "it is left alone: choose another --out, or pass --no-bag")
    if (out / "summary.json").is_file():  # a `run` folder (RUN/summary.json next to RUN/bag): not ours to replace
        import json

        try:
            other = json.loads((out / "summary.json").read_text())
        except ValueError:
            other = {}
        if isinstance(other, dict) and "rates_hz" in other:
            raise UsageError(f"--out {out} holds the summary.json of a `policy-xai run`; write the analysis "
                             f"elsewhere (e.g. {out / 'analysis'})")
    if create:
        checks.writable_dir(out)


def _print_timing(s: dict) -> None:
    t = s["timing"]
    print(f"{s['steps']} steps ({s['source']} source, {s['storage']}, read by {s['reader']}): read+pair "
          f"{t['read_and_pair_s']:.2f} s ({s['steps'] / max(t['read_and_pair_s'], 1e-9):.0f} steps/s), importance "
          f"{t['importance_s']:.2f} s, explain {t['explain_s']:.2f} s = {t['steps_per_s']:.1f} steps/s "
          f"({', '.join(s['methods'])}, batch {t['batch']})")


def _print_summary(s: dict, out) -> None:
    print(f"analysed {s['bag']}: {s['steps']} steps over {s['time_span_s']:.2f} s -> {out}/")
    _print_timing(s)
    if s.get("truncated"):
        print(f"  TRUNCATED: {s['truncated']}; analysed what was readable")
    if s["skipped_messages"]:
        print("  skipped: " + "; ".join(f"{k} ({n}x)" for k, n in s["skipped_messages"].items()))
    gaps = s["gaps"]
    if gaps["gaps"] or gaps["backwards"] or gaps.get("out_of_order"):
        g = gaps["gaps"]
        back = f"stamps going backwards: {gaps['backwards']}"
        if gaps["backwards"]:
            per = ", ".join(f"{t} {n}" for t, n in sorted(gaps.get("backwards_per_topic", {}).items()))
            back += f" ({per + '; ' if per else ''}largest {gaps.get('largest_backward_s', 0.0):.3f} s)"
        longest = f"longest {max(x['length_s'] for x in g):.2f} s, " if g else ""
        print(f"  time gaps: {len(g)} ({longest}median period {gaps['median_period_s'] * 1e3:.1f} ms); {back}")
        late = gaps.get("late_unpaired", 0)
        if late:
            print(f"  {late} observations arrived late (stamped before a step already paired) and were not paired, "
                  f"as the live policy node would not pair them; the {len(gaps['out_of_order'])} hole(s) they leave "
                  "are not counted as time gaps")
        if s.get("pairing_restarts"):
            print(f"  pairing restarted {s['pairing_restarts']} time(s) at a time jump (> --time-jump)")
    for m, st in s.get("ratios_mean_std", {}).items():
        img, cfg = st["image:configuration"]
        groups = "  ".join(f"{g} {v[0]:.2f}±{v[1]:.2f}" for g, v in st.items() if ":" not in g)
        print(f"  {m:9s} image:configuration = {100 * img:.0f}:{100 * cfg:.0f}   {groups}")
    lv = s.get("live_vs_recomputed")
    if lv:
        parts = [f"{k} {v['max_abs_diff']:.3g}" + (f" ({100 * v['relative_to_max']:.2g}% of max)"
                                                   if "relative_to_max" in v else "")
                 for k, v in lv.items() if isinstance(v, dict)]
        print(f"  live vs recomputed ({lv['matched_steps']} steps matched), largest |difference|: " + ", ".join(parts))
        for k in ("torque_warning", "warning"):
            if k in lv:
                print(f"  note: {lv[k]}")
    mc = s.get("methods_compared")
    if mc:
        print(f"  {mc['a']} vs {mc['b']}: mean rank correlation of the groups per step "
              f"{mc['mean_rank_corr_of_groups_per_step']:.2f}")
    if s.get("output_bag"):
        ob = s["output_bag"]
        print(f"  output bag {ob['path']}: {sum(ob['counts'].values())} messages on {len(ob['counts'])} topics"
              + (f"; left out {sorted(ob['left_out'])}" if ob["left_out"] else ""))
    for w in s.get("warnings", []):
        print(f"  warning: {w}")


def run_analyze(args: argparse.Namespace) -> int:
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
    s = fleet.analyze_bags(bags, args, workers=args.workers, ray_address=args.ray_address, out=args.out,
                           episode_gap=args.episode_gap, num_gpus=args.num_gpus, ship_code=args.ship_code)
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
            ns = argparse.Namespace(bag=str(bag), policy=name if spec.name == name else name, seed=0, methods=method,
                                    importance="dynamics", robot="baxter_right_arm", dt=0.05, batch=batch, layer=0,
                                    threads=0, source="auto", sync_tolerance=0.02, resize=spec.name != name,
                                    start=0.0, duration=0.0, max_steps=0, bench=True, out=str(Path(tmp) / "out"),
                                    normalize="frame", gap_factor=3.0, recorded_prefix="/recorded", no_bag=True,
                                    no_video=True)
            s = analyze(ns, quiet=True)
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
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    from .checks import int_list

    sizes = int_list(args.sizes, label="--sizes")
    bench(sizes, args.steps, args.method, args.batch, args.storage)
    return 0


# ==== replay =====================================================================================
def run_bench_fleet(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .. import fleet
    from .checks import int_list

    if args.json and Path(args.json).exists():
        raise UsageError(f"{args.json} exists; choose another --json")
    rows = fleet.bench_fleet(args.bags, args.steps, int_list(args.workers, label="--workers"), args.methods,
                             args.storage, sequential=not args.no_sequential)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def run_replay(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from .. import bags
    from ..ros.graph import graph
    from ..ros.runner import GraphRunner
    from . import checks

    checks.input_path(args.bag, "bag")
    checks.policy_input(args.policy)
    device = str(checks.device_arg(args.device))
    inputs = {"input bag": checks.bag_root(args.bag)}
    if args.record:
        checks.new_bag_dir(args.record, "--record", inputs)
    if args.log_dir:
        checks.guard_outputs(inputs, args.log_dir, out_label="--log-dir")
        checks.writable_dir(args.log_dir, "--log-dir")
    with bags.BagSource(args.bag) as bag:
        names = list(bag.topics)
        if bag.problem is not None:
            print(f"warning: {bag.problem.describe(bag.start_ns)}")
    plan = bags.replay_plan(names, graph=args.graph)
    gname = plan["graph"]
    nodes = [n for n in graph(gname, params_file="")]
    node_names = [n.name for n in nodes if not (args.no_visualization and n.name == "visualization_node")]
    weights = args.policy if args.policy.endswith(".safetensors") or Path(args.policy).is_file() else ""
    spec = "" if weights else args.policy
    over = {n: {"spec": spec, "weights": weights, "device": device} for n in ("policy_node", "attribution_node")
            if n in node_names}
    if "attribution_node" in over:
        over["attribution_node"]["method"] = args.method
    if args.record:
        node_names.append("recorder")
        over["recorder"] = {"output": str(Path(args.record).resolve())}
    launches = graph(gname, params_file=args.params_file, overrides=over, nodes=node_names)
    domain = args.domain_id if args.domain_id is not None else 40 + int(time.time()) % 100
    print(f"replaying {args.bag} into graph {gname!r} ({plan['reason']}): nodes {node_names}, "
          f"topics {plan['topics']}, domain {domain}")
    with GraphRunner(launches, domain_id=domain, log_dir=args.log_dir or None) as runner:
        n = play_into(args.bag, plan["topics"], [x.name for x in launches], domain, args.rate, args.loop,
                      args.start_offset, args.ready_timeout, runner)
        print(f"published {n} messages from {args.bag}")
        dead = runner.dead()
        if dead:
            print(runner.report())
    if args.record:
        print(f"recorded to {args.record}; analyse it with: policy-xai analyze {args.record} --policy {args.policy}")
    return 0


def play_into(bag, topics, node_names, domain_id: int, rate: float = 1.0, loop: bool = False, start: float = 0.0,
              ready_timeout: float = 90.0, runner=None, drain: float = 2.0, listeners=()) -> int:
    """Play `topics` of `bag` once the nodes `node_names` are up and subscribed (rclpy in this process).
    listeners: more node names (e.g. a test's probe) whose subscriptions to the played topics, where
    they have one, the player's publishers must have matched first."""
    import os
    import time

    from ..ros.player import BagPlayer
    from ..ros.runner import ros_env

    os.environ.update(ros_env(domain_id))
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("policy_xai_replay", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    player = BagPlayer(bag, topics, rate, loop, start)
    try:
        end = time.monotonic() + ready_timeout
        want = {n.split("/")[-1] for n in node_names}
        need = ready_subscriptions(topics, want)
        # publish the played topics now, so that a recorder discovers and subscribes to them first
        pubs = player.publishers(node)
        own = {c.topic: pubs[c.id] for c in player.connections if c.id in pubs}
        matched: dict = {}  # node name -> {topic: matched subscriptions}, from the nodes' /diagnostics

        def on_diag(msg):
            from ..ros.convert import matched_counts

            matched.update(matched_counts(msg))

        from diagnostic_msgs.msg import DiagnosticArray

        from ..ros.common import qos

        node.create_subscription(DiagnosticArray, itf.topic_name("diagnostics"), on_diag, qos(itf.RELIABLE, 50))
        while True:
            ex.spin_once(timeout_sec=0.2)
            up = set(node.get_node_names())
            missing = [(t, who) for t, who in need if not any(
                (who is None or i.node_name == who) for i in node.get_subscriptions_info_by_topic(t))]
            if want <= up and not missing:
                missing = unmatched(node, {t for t, _ in need}, want | set(listeners), own, matched)
                if not missing:
                    break
            if runner is not None and runner.dead():
                raise RuntimeError(f"nodes exited before the replay started: {runner.dead()}\n{runner.report()}")
            if time.monotonic() > end:
                raise RuntimeError(f"nodes not ready after {ready_timeout} s: "
                                   f"up {sorted(up & want)} of {sorted(want)}, "
                                   f"subscriptions missing or not yet matched: {missing}")
        n = player.play(node, should_stop=lambda: not ctx.ok(), spin=lambda t: ex.spin_once(timeout_sec=t),
                        wait_for_subscribers=0.0)
        t_end = time.monotonic() + drain  # let the last explanations arrive at the recorder
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
        return n
    finally:
        player.close()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def unmatched(node, topics, nodes, own: dict, matched: dict) -> list:
    """(topic, publisher, matched, wanted) for every topic whose publisher has not yet matched all the
    subscriptions that the nodes `nodes` have on it. The graph (what `node` sees) lists a subscription
    before the publishing process has matched it; messages published in between are lost to that
    subscriber. `own`: topic -> this process's publisher; `matched`: node name -> {topic: count} as
    the policy_xai nodes report it on /diagnostics."""
    out = []
    for t in sorted(topics):
        wanted = sum(1 for i in node.get_subscriptions_info_by_topic(t) if i.node_name in nodes)
        if t in own:
            if own[t].get_subscription_count() < wanted:
                out.append((t, node.get_name(), own[t].get_subscription_count(), wanted))
            continue
        for i in node.get_publishers_info_by_topic(t):
            if i.node_name not in nodes:
                continue
            got = int(matched.get(i.node_name, {}).get(t, -1))
            if got < wanted:
                out.append((t, i.node_name, got, wanted))
    return out


def ready_subscriptions(played, nodes) -> list:
    """(topic, node or None) subscriptions that must exist before playing: every played topic has a
    subscriber, the attribution node listens to the policy's decisions, and the recorder (if any)
    records the played topics and everything the nodes publish."""
    T = itf.TOPIC
    need = [(t, None) for t in played]
    if "attribution_node" in nodes:
        need += [(T[k].name, "attribution_node") for k in ("obs_image", "obs_config", "torques")]
    if "recorder" in nodes:
        keys = []
        if "policy_node" in nodes:
            keys += ["obs_image", "obs_config", "torques", "commands"]
        if "attribution_node" in nodes:
            keys += ["relevance_image", "relevance_config", "relevance_points", "ratios", "importance"]
        if "visualization_node" in nodes:
            keys += ["heatmap", "markers"]
        need += [(t, "recorder") for t in played] + [(T[k].name, "recorder") for k in keys]
    return need
