"""`policy-xai run | record | play | latency | topics`: the live ROS 2 pipeline without a ROS install.

run      start the simulated graph (sim, policy, attribution, visualisation) as processes over real
         DDS for a while, record every topic to a rosbag2 MCAP, then write the heatmap video, the
         ratio plot and a summary (rates, latency, success); --model runs a user's PyTorch policy
         (package.module:factory or .pt2, with a YAML --mapping) in user_policy_node instead
record   record topics of a running graph to MCAP until Ctrl-C
play     publish a bag's topics with their timing (rate, loop, start offset)
latency  observation stamp -> heatmap arrival, p50/p99, for the small (64x64) and paper (240x240) specs
topics   the topic / parameter tables (docs/ros.md)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from ..ros import interfaces as itf
from .checks import (UsageError, add_device_option, device_arg, domain_id, nonnegative_float, positive_float,
                     positive_int)

_DEFAULT_METHOD = str(itf.NODES["attribution_node"].parameters["method"])

COMPRESSIONS = ("zstd", "lz4", "none")


def _compression_arg(p) -> None:
    p.add_argument("--compression", choices=COMPRESSIONS, default="zstd",
                   help="MCAP chunk compression of the recorded bag (as rosbag2's MCAP storage; default zstd)")


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
    p.add_argument("--duration", type=nonnegative_float, default=0.0, help="stop after this many seconds (0: Ctrl-C)")
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

    p = sub.add_parser("latency", help="live latency benchmark: observation stamp -> heatmap, p50/p99")
    p.add_argument("--configs", nargs="*", default=["small:64", "paper:240"], metavar="SPEC:SIZE",
                   help="spec name (untrained) or a weights file (.safetensors, with its explainer) and the camera "
                        "size, e.g. small:64 models/reach.safetensors:64")
    p.add_argument("--duration", type=positive_float, default=20.0, help="seconds measured per configuration")
    p.add_argument("--method", default=_DEFAULT_METHOD,
                   help=f"attribution method (default {_DEFAULT_METHOD}; an untrained network has no explainer "
                        "and falls back as the attribution node does)")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--machine-check", type=nonnegative_float, default=8.0, metavar="S",
                   help="before each configuration, time a fixed CPU task at 20 Hz for S s (0: skip): the "
                        "tail this machine adds to any pipeline")
    p.add_argument("--out", default=None, help="folder for bags and results (default: a temp folder)")
    p.add_argument("--domain-id", type=domain_id, default=None)
    add_device_option(p, NODE_DEVICE_HELP)
    _compression_arg(p)
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("topics", help="print the topic and parameter tables of the live pipeline")
    p.set_defaults(func=lambda a: _print_tables())


NODE_DEVICE_HELP = ("torch device of the nodes that run a network (their `device` parameter): cpu, cuda, cuda:N "
                    "or mps; checked before any node starts (one that torch cannot use here: one line, exit code 2)")


def _live_args(p) -> None:
    p.add_argument("--duration", type=positive_float, default=20.0, help="seconds to run after the graph is up")
    p.add_argument("--spec", default="small", help="policy spec (small, paper or a YAML file)")
    p.add_argument("--weights", default="", help="trained weights (.safetensors); default: untrained")
    p.add_argument("--method", default=_DEFAULT_METHOD, help=f"attribution method (default {_DEFAULT_METHOD})")
    p.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                   help="attribution rule convolutions (bfloat16: several times faster on AMX CPUs)")
    p.add_argument("--task", default="reach", help="simulation task")
    p.add_argument("--image-size", type=positive_int, default=None, help="camera size (default: the spec's input size)")
    p.add_argument("--params-file", default=None, help="parameter file (default config/sim.yaml)")
    p.add_argument("--domain-id", type=domain_id, default=None, help="ROS_DOMAIN_ID (default: a random free-ish one)")
    add_device_option(p, NODE_DEVICE_HELP)
    g = p.add_argument_group("a user's policy instead of the spec's (user_policy_node; --spec is then unused)")
    g.add_argument("--model", default="", help="package.module:factory (with --weights, else untrained: simulation) "
                                               "or a torch.export program (.pt2)")
    g.add_argument("--mapping", default="user_policy_sim",
                   help="YAML observation mapping (default: the shipped config/user_policy_sim.yaml)")
    g.add_argument("--model-kwargs", default="", help="factory keyword arguments, a JSON object")
    g.add_argument("--split", action="store_true",
                   help="explain in a user_explainer_node of its own (default: the user_policy_node explains)")


def _print_tables() -> int:
    from ..ros.interfaces import parameter_table_markdown, topic_table_markdown

    print(topic_table_markdown())
    print()
    print(parameter_table_markdown())
    return 0


def _domain(arg) -> int:
    if arg is not None:
        return int(arg)
    return int(os.environ.get("ROS_DOMAIN_ID_RUN", random.randint(120, 200)))


def check_live_args(out: Path, spec: str, weights: str = "", params_file=None, image_size=None) -> None:
    """Before anything starts: the spec loads, the weights and parameter files exist, --out is a
    creatable, writable folder that holds no bag/ yet and is none of the inputs."""
    from ..resources import config_path
    from ..spec import load_spec
    from . import checks

    load_spec(spec)
    inputs = {}
    if Path(spec).is_file():
        inputs["--spec file"] = spec
    if weights:
        inputs["--weights file"] = checks.input_file(weights, "--weights file")
    if params_file:
        inputs["--params-file"] = config_path(params_file)
    writes = {n: out / n for n in ("bag", "logs", "heatmap.mp4", "ratios.png", "summary.json")}
    checks.guard_outputs(inputs, out, writes)
    if (out / "bag").exists():
        raise UsageError(f"--out {out} already holds a bag/ (an earlier run?); choose another --out")
    if image_size is not None and image_size < 8:
        raise UsageError(f"--image-size {image_size} is too small for a camera image")
    checks.writable_dir(out)


def check_user_model(model: str, mapping: str, model_kwargs: str = "", weights: str = "", method: str = "dtd",
                     device: str = "cpu"):
    """--model / --mapping load and fit (and the method explains the model) before any node starts;
    a UsageError with the node's one-line reason otherwise. In simulation a factory model without
    --weights runs untrained (as --spec does)."""
    from ..user_live import load_live
    from ..user_policy import UserPolicyError

    try:
        return load_live(model, mapping, weights=weights, model_kwargs=model_kwargs, allow_untrained=True,
                         method=method, device=device)
    except UserPolicyError as e:
        raise UsageError(str(e)) from None


def _death(p, t0: float, phase: str) -> dict:
    """What the summary says about a node that exited while the run went on."""
    rc = p.returncode
    info = {"node": p.name, "exit_code": rc, "phase": phase, "after_s": round(time.monotonic() - t0, 2),
            "log": str(p.log_path), "last_log_lines": [ln for ln in p.tail(15).splitlines() if ln.strip()]}
    if rc is not None and rc < 0:
        try:
            info["signal"] = signal.Signals(-rc).name
        except ValueError:
            info["signal"] = str(-rc)
    return info


def live_run(out: Path, duration: float, spec: str = "small", weights: str = "", method: str = "dtd",
             task: str = "reach", image_size=None, params_file=None, domain_id=None, log=print,
             warmup_timeout: float = 90.0, precision: str = "float32", compression: str = "zstd",
             on_up=None, user: "dict | None" = None, device: str = "cpu") -> dict:
    """Start recorder + sim graph, wait until heatmaps flow, run `duration` s, stop, summarise.

    user: {"model", "mapping", "model_kwargs", "weights", "split"} runs graph "user_sim" (or
    "user_sim_split") instead (the user's
    model in user_policy_node, the sim camera at the mapping's size unless image_size is given).

    A node that exits early is noted (exit code, time, last log lines) and the others keep running
    to the end of the run (a dead recorder ends it: nothing more is recorded); what was recorded is
    read and summarised either way. The summary's "dead_nodes" lists them. `on_up(runner)` is called
    once the graph is up (tests use it to act on the node processes). device: every node that runs a
    network gets it (`device` parameter)."""
    from .. import bags
    from ..ros import bagtools
    from ..ros.graph import NodeLaunch, graph
    from ..ros.interfaces import NODES
    from ..ros.runner import GraphRunner
    from ..spec import load_spec

    if user:
        from ..ros.graph import first_camera_size, user_sim_overrides

        cam = first_camera_size(user["mapping"])
        size = image_size or (cam[0] if cam else 64)
        split = bool(user.get("split"))
        overrides = user_sim_overrides(user["model"], user["mapping"], user.get("model_kwargs", ""),
                                       user.get("weights", ""), method, allow_untrained=True, device=device,
                                       image_size=(size, size) if image_size else None, split=split)
        overrides["sim_node"] = {**overrides.get("sim_node", {}), "task": task}
        if image_size and cam and tuple(cam) != (size, size):
            for n in ("user_policy_node", "user_explainer_node"):
                if n in overrides:
                    overrides[n]["resize"] = True
        graph_name, name = ("user_sim_split" if split else "user_sim"), str(user["model"])
    else:
        s = load_spec(spec)
        size = image_size or s.image_height
        pol = {"spec": spec, "weights": weights, "device": device}
        overrides = {"sim_node": {"task": task, "image_width": int(size), "image_height": int(size)},
                     "policy_node": {**pol, "resize": size != s.image_height},
                     "attribution_node": {**pol, "method": method, "precision": precision}}
        graph_name, name = "sim", s.name
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "bag"
    if bag.exists():
        raise UsageError(f"{bag} exists; choose another --out")
    dom = _domain(domain_id)
    rec = NodeLaunch("recorder", NODES["recorder"].module, NODES["recorder"].executable, None,
                     {"output": str(bag), "compression": compression})
    runner = GraphRunner([rec, *graph(graph_name, params_file=params_file, overrides=overrides)], domain_id=dom,
                         log_dir=out / "logs")
    log(f"starting recorder + {graph_name} graph on ROS_DOMAIN_ID={dom} (logs: {runner.log_dir})")
    t_start = time.monotonic()
    dead: dict = {}
    interrupted = False

    def note(phase: str) -> None:
        for n in runner.dead():
            if n not in dead:
                dead[n] = d = _death(runner[n], t_start, phase)
                log(f"warning: {n} exited during {phase} with code {d['exit_code']}"
                    + (f" ({d['signal']})" if "signal" in d else "") + f" after {d['after_s']:.1f} s; "
                    + ("nothing more is recorded" if n == "recorder" else "the other nodes keep running")
                    + f" (log: {d['log']})")

    nodes = [n for n in runner.procs if n != "recorder"]
    t_run = None
    try:
        runner.start(["recorder"])
        time.sleep(1.0)
        runner.start(nodes)
        try:
            up = _wait_for_heatmaps(runner, dom, warmup_timeout, lambda: note("start-up") or bool(dead))
        finally:
            _close_probe(dom)
        log(f"graph up after {time.monotonic() - t_start:.1f} s (first heatmap {'seen' if up else 'NOT seen'}); "
            f"running {duration:.0f} s")
        if on_up is not None:
            on_up(runner)
        t_run = time.monotonic()
        end = t_run + duration
        while time.monotonic() < end:
            note("the run")
            if "recorder" in dead or all(n in dead for n in nodes):
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping the graph and summarising what was recorded")
    finally:
        note("the run")
        runner.stop(nodes)
        runner["recorder"].stop(timeout=10)
    ran_s = time.monotonic() - t_run if t_run is not None else 0.0
    exit_codes = {n: p.returncode for n, p in runner.procs.items()}
    if not bag.is_dir() or not any(bag.iterdir()):
        raise RuntimeError(f"the recorder wrote nothing to {bag}\n{runner.report()}")
    if not (bag / "metadata.yaml").is_file():
        log(f"warning: the recorder did not close the bag {bag}; reading what it wrote")
    with bags.BagSource(bag) as src:
        problem = src.problem.describe(src.start_ns) if src.problem is not None else None
    run = bagtools.read_run(bag)
    summary = bagtools.summarize(run)
    summary.update({"spec": name, "image_size": int(size), "method": method, "precision": precision, "device": device,
                    "task": task, "duration_s": duration, "ran_s": round(ran_s, 2),
                    "bag": str(bag), "domain_id": dom, "compression": compression,
                    "bag_bytes": sum(p.stat().st_size for p in bag.iterdir() if p.is_file()),
                    "dead_nodes": list(dead.values()), "exit_codes": exit_codes})
    if problem:
        summary["bag_problem"] = problem
    if interrupted:
        summary["interrupted"] = True
    return {"run": run, "summary": summary, "bag": bag, "runner": runner}


def _wait_for_heatmaps(runner, dom: int, timeout: float, stop=lambda: False) -> bool:
    """Poll a probe subscription until the first heatmap arrives (True), the timeout passes or
    `stop()` says so (a node died: its heatmaps may never come) (False).
    (Startup = Python + torch + MuJoCo imports in every process, ~2-10 s on 2 busy cores.)"""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if stop():
            return False
        if _probe_heatmap(dom):
            return True
        time.sleep(0.5)
    return False


_probe_state = {}


def _probe_heatmap(dom: int) -> bool:
    """True once a /policy_xai/heatmap message arrived at a probe subscription in this process."""
    st = _probe_state.get(dom)
    if st is None:
        from ..ros.runner import ros_env

        os.environ.update(ros_env(dom))
        import rclpy
        from rclpy.context import Context
        from rclpy.signals import SignalHandlerOptions

        from ..ros import interfaces as itf
        from ..ros.common import qos

        ctx = Context()
        rclpy.init(context=ctx, domain_id=dom, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("policy_xai_run_probe", context=ctx)
        got = []
        t = itf.TOPIC["heatmap"]
        node.create_subscription(itf.message_class(t.type), t.name, lambda m: got.append(1), qos(t.qos))
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        st = _probe_state[dom] = (ctx, node, ex, got)
    ctx, node, ex, got = st
    ex.spin_once(timeout_sec=0.1)
    if got:
        node.destroy_node()
        import rclpy

        rclpy.try_shutdown(context=ctx)
        _probe_state.pop(dom, None)
        return True
    return False


def _close_probe(dom: int) -> None:
    st = _probe_state.pop(dom, None)
    if st is not None:
        import rclpy

        ctx, node, ex, _ = st
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def _print_summary(summary: dict, out=None) -> None:
    out = out or sys.stdout  # looked up per call: the stream may be replaced (pytest capture, redirection)
    r = summary["rates_hz"]
    from ..ros.interfaces import TOPIC

    print(f"spec {summary['spec']} ({summary['image_size']}x{summary['image_size']}), method {summary['method']}, "
          f"task {summary['task']}, {summary['duration_s']:.0f} s", file=out)
    for key in ("image", "commands", "relevance_image", "heatmap", "ratio_plot"):
        name = TOPIC[key].name
        print(f"  rate {name:34s} {r.get(name, 0.0):6.2f} Hz  ({summary['counts'].get(name, 0)} msgs)", file=out)
    for key, v in summary["latency"].items():
        print(f"  latency stamp -> {key:16s} p50 {v['p50_ms']:7.1f} ms  p99 {v['p99_ms']:7.1f} ms  (n={v['n']})",
              file=out)
    if summary.get("attribution"):
        print(f"  attribution: {summary['attribution']}", file=out)
    if summary.get("user_policy"):
        print(f"  user_policy_node: {summary['user_policy']}", file=out)
    if summary.get("success"):
        print(f"  simulation: {summary['success']}", file=out)


def cmd_run(args) -> int:
    from ..ros import bagtools

    out = Path(args.out or time.strftime("runs/%Y%m%d_%H%M%S"))
    device = str(device_arg(getattr(args, "device", "cpu")))
    check_live_args(out, args.spec, args.weights, args.params_file, args.image_size)
    user = None
    if getattr(args, "model", ""):
        method = args.method if args.method != _DEFAULT_METHOD else "dtd"  # occlusion_net is for our policies
        live = check_user_model(args.model, args.mapping, args.model_kwargs, args.weights, method, device)
        if live.untrained:
            print(f"note: {args.model} runs UNTRAINED (no --weights): random actions, in simulation only")
        user = {"model": args.model, "mapping": args.mapping, "model_kwargs": args.model_kwargs,
                "weights": args.weights, "split": args.split}
        args.method = method
    elif getattr(args, "model_kwargs", "") or getattr(args, "mapping", "user_policy_sim") != "user_policy_sim":
        raise UsageError("--mapping and --model-kwargs are for --model")
    res = live_run(out, args.duration, args.spec, args.weights, args.method, args.task, args.image_size,
                   args.params_file, args.domain_id, precision=getattr(args, "precision", "float32"),
                   compression=getattr(args, "compression", "zstd"), on_up=getattr(args, "on_up", None),
                   user=user, device=device)
    run, summary = res["run"], res["summary"]
    if not args.no_video:
        v = bagtools.write_video(run, out / "heatmap.mp4")
        summary["video"] = str(v) if v else None
    p = bagtools.write_ratio_plot(run, out / "ratios.png")
    summary["ratio_plot"] = str(p) if p else None
    bagtools.write_summary({k: v for k, v in summary.items() if k != "nodes"}, out / "summary.json")
    _print_summary(summary)
    print(f"wrote {out}/: bag/ (MCAP, {summary['compression']} chunks, {summary['bag_bytes'] / 1e6:.1f} MB), "
          "heatmap.mp4, ratios.png, summary.json, logs/")
    for d in summary["dead_nodes"]:
        print(f"error: {d['node']} exited during {d['phase']} with code {d['exit_code']}"
              + (f" ({d['signal']})" if "signal" in d else "") + f" after {d['after_s']:.1f} s; last log lines:",
              file=sys.stderr)
        for line in d["last_log_lines"][-5:]:
            print(f"    {line}", file=sys.stderr)
    if summary["dead_nodes"]:
        return 1
    return 130 if summary.get("interrupted") else 0


def cmd_record(args) -> int:
    from ..ros.graph import NodeLaunch
    from ..ros.interfaces import NODES
    from ..ros.runner import GraphRunner
    from . import checks

    checks.new_bag_dir(args.output, "output bag")
    params = {"output": str(Path(args.output).absolute()), "compression": args.compression}
    if args.topics:
        params["topics"] = list(args.topics)
    rec = NodeLaunch("recorder", NODES["recorder"].module, NODES["recorder"].executable, None, params)
    runner = GraphRunner([rec], domain_id=args.domain_id,
                         log_dir=Path(args.output).absolute().parent / "recorder_logs")
    runner.start()
    print(f"recording to {args.output} ({args.compression} chunks; Ctrl-C to stop)")
    try:
        end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
        while time.monotonic() < end and runner["recorder"].alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
    print(runner["recorder"].tail(2))
    return 0 if (Path(args.output) / "metadata.yaml").is_file() else 1


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


def _latency_configs(configs) -> list:
    from ..spec import load_spec

    out = []
    for cfg in configs:
        spec, _, size = cfg.partition(":")
        try:
            n = int(size) if size else None
        except ValueError:
            n = 0
        if n is not None and n < 8:
            raise UsageError(f"--configs takes SPEC:SIZE with a camera size >= 8, got {cfg!r}")
        if spec.endswith(".safetensors"):  # trained weights (and their explainer, when there is one)
            from ..policy import PolicyLoadError, load_policy

            try:
                name = load_policy(spec).spec.name
            except (PolicyLoadError, OSError) as e:
                raise UsageError(f"--configs {cfg!r}: {e}") from e
            out.append((name, n, spec))
            continue
        load_spec(spec)
        out.append((spec, n, ""))
    if not out:
        raise UsageError("--configs is empty")
    return out


def cmd_latency(args) -> int:
    import tempfile

    from . import checks

    device = str(device_arg(args.device))
    configs = _latency_configs(args.configs)
    label = lambda spec, size, w: f"{Path(w).stem if w else spec}_{size or 'spec'}_{args.precision}"  # noqa: E731
    if args.out:
        for spec, size, w in configs:
            if (Path(args.out) / label(spec, size, w) / "bag").exists():
                raise UsageError(f"--out {args.out} already holds {label(spec, size, w)}/bag; choose another --out")
        checks.writable_dir(args.out)
    base = Path(args.out or tempfile.mkdtemp(prefix="policy_xai_latency_"))
    rows = []
    for i, (spec, size, weights) in enumerate(configs):
        from ..live import machine_jitter

        jit = machine_jitter(args.machine_check) if args.machine_check > 0 else {}
        if jit:
            print(f"machine check ({args.machine_check:.0f} s, nothing else started): a fixed CPU task of "
                  f"{jit['task_p50_ms']:.1f} ms (p50) took {jit['task_p99_ms']:.1f} ms at p99 "
                  f"({jit['p99_over_p50']:.1f}x)")
        res = live_run(base / label(spec, size, weights), args.duration, spec, weights, args.method,
                       image_size=size, domain_id=(args.domain_id + i) if args.domain_id is not None else None,
                       precision=args.precision, compression=args.compression, device=device)
        s = res["summary"]
        if s["dead_nodes"]:
            raise RuntimeError(f"{spec}:{size}: nodes exited during the measurement: "
                               + ", ".join(f"{d['node']} (code {d['exit_code']})" for d in s["dead_nodes"])
                               + f"; logs in {base}")
        heat = s["latency"].get("heatmap", {})
        rel = s["latency"].get("relevance_image", {})
        rows.append({"spec": s["spec"], "weights": weights, "size": s["image_size"],
                     "method": s.get("attribution", {}).get("method") or args.method, "precision": args.precision,
                     "camera_hz": s["rates_hz"].get("/camera/image_raw", 0.0),
                     "commands_hz": s["rates_hz"].get("/effort_controller/commands", 0.0),
                     "explained_hz": s["rates_hz"].get("/policy_xai/relevance/image", 0.0),
                     "heatmap_hz": s["rates_hz"].get("/policy_xai/heatmap", 0.0),
                     "relevance_p50_ms": rel.get("p50_ms"), "relevance_p99_ms": rel.get("p99_ms"),
                     "heatmap_p50_ms": heat.get("p50_ms"), "heatmap_p99_ms": heat.get("p99_ms"),
                     "skipped_behind": s["attribution"].get("skipped_behind"),
                     "attribution_compute_p50_ms": s["attribution"].get("compute_p50_ms"),
                     "attribution_compute_p99_ms": s["attribution"].get("compute_p99_ms"),
                     **{f"machine_{k}": v for k, v in jit.items()}})
    (base / "latency.json").write_text(json.dumps(rows, indent=2))
    print("| spec | weights | method | size | precision | camera Hz | explained Hz | heatmap Hz | "
          "stamp->relevance p50/p99 ms | stamp->heatmap p50/p99 ms | skipped |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    f = lambda x: "n/a" if x is None else f"{x:.1f}"  # noqa: E731
    for r in rows:
        print(f"| {r['spec']} | {Path(r['weights']).name if r['weights'] else 'untrained'} | {r['method']} | "
              f"{r['size']} | {r['precision']} | {r['camera_hz']:.1f} | {r['explained_hz']:.1f} | "
              f"{r['heatmap_hz']:.1f} | {f(r['relevance_p50_ms'])} / {f(r['relevance_p99_ms'])} | "
              f"{f(r['heatmap_p50_ms'])} / {f(r['heatmap_p99_ms'])} | {r['skipped_behind']} |")
    if any("machine_task_p99_ms" in r for r in rows):
        print("machine check per row (fixed CPU task p50 / p99 ms): "
              + "; ".join(f"{f(r.get('machine_task_p50_ms'))} / {f(r.get('machine_task_p99_ms'))}" for r in rows))
    print(f"(bags and latency.json in {base})")
    return 0
