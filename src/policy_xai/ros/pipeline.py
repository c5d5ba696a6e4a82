"""The live pipeline's runs as node processes over real DDS: `policy-xai run` (run_pipeline: the
simulated graph recorded for a while, then the heatmap video, the ratio plot and summary.json;
run_and_report: that run with its printout, as `run` and `demo` show it),
`latency` (latency_bench: a run per configuration) and `record` (the recorder alone).

The options and the checks made before any node starts are policy_xai.live_run (no ROS there).
"""
from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..checks import UsageError
from ..live_run import (LatencyOptions, RecordOptions, RunOptions, USER_METHOD, check_user_model, latency_configs,
                        latency_row, prepare_run, user_latency_configs)

Log = Callable[[str], None]


@dataclass
class LiveRun:
    """What live_run gives: the summary, the decoded recording (bagtools.read_run), the bag and the
    stopped GraphRunner (its processes' logs and exit codes)."""

    summary: dict
    run: dict
    bag: Path
    runner: object


def run_domain(domain_id: Optional[int] = None) -> int:
    """The DDS domain of a run: the given one, else $ROS_DOMAIN_ID_RUN, else a random one in 120-200."""
    if domain_id is not None:
        return int(domain_id)
    return int(os.environ.get("ROS_DOMAIN_ID_RUN", random.randint(120, 200)))


def node_death(p, t0: float, phase: str) -> dict:
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


def graph_plan(o: RunOptions) -> tuple[str, str, int, dict]:
    """(graph name, policy name for the summary, camera size, node parameter overrides) of a run:
    graph "sim" with the spec's policy, or "user_sim" / "user_sim_split" with a user's model (the sim
    camera at the mapping's size unless image_size is given)."""
    from .graph import first_camera_size, user_sim_overrides

    method = o.live_method()
    if o.user:
        u = o.user
        cam = first_camera_size(u.mapping)
        size = o.image_size or (cam[0] if cam else 64)
        overrides = user_sim_overrides(u.model, u.mapping, u.model_kwargs, o.weights, method, allow_untrained=True,
                                       device=o.device, image_size=(size, size) if o.image_size else None,
                                       split=u.split)
        overrides["sim_node"] = {**overrides.get("sim_node", {}), "task": o.task}
        if o.image_size and cam and tuple(cam) != (size, size):
            for n in ("user_policy_node", "user_explainer_node"):
                if n in overrides:
                    overrides[n]["resize"] = True
        return ("user_sim_split" if u.split else "user_sim"), str(u.model), int(size), overrides
    from ..spec import load_spec

    s = load_spec(o.spec)
    size = o.image_size or s.image_height
    pol = {"spec": o.spec, "weights": o.weights, "device": o.device}
    overrides = {"sim_node": {"task": o.task, "image_width": int(size), "image_height": int(size)},
                 "policy_node": {**pol, "resize": size != s.image_height},
                 "attribution_node": {**pol, "method": method, "precision": o.precision}}
    return "sim", s.name, int(size), overrides


def live_run(o: RunOptions, log: Log = print, on_up: Optional[Callable] = None) -> LiveRun:
    """Start recorder + sim graph into o.out (out/bag, out/logs), wait until heatmaps flow, run
    o.duration s, stop, summarise (no checks here: prepare_run makes them).

    A node that exits early is noted (exit code, time, last log lines) and the others keep running
    to the end of the run (a dead recorder ends it: nothing more is recorded); what was recorded is
    read and summarised either way. The summary's "dead_nodes" lists them. `on_up(runner)` is called
    once the graph is up (tests use it to act on the node processes). o.device: every node that runs
    a network gets it (`device` parameter)."""
    from .. import bags
    from . import bagtools
    from .graph import NodeLaunch, graph
    from .interfaces import NODES
    from .probe import wait_for_heatmaps
    from .runner import GraphRunner

    graph_name, name, size, overrides = graph_plan(o)
    out = o.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    bag = out / "bag"
    if bag.exists():
        raise UsageError(f"{bag} exists; choose another --out")
    dom = run_domain(o.domain_id)
    rec = NodeLaunch("recorder", NODES["recorder"].module, NODES["recorder"].executable, None,
                     {"output": str(bag), "compression": o.compression})
    runner = GraphRunner([rec, *graph(graph_name, params_file=o.params_file, overrides=overrides)], domain_id=dom,
                         log_dir=out / "logs")
    log(f"starting recorder + {graph_name} graph on ROS_DOMAIN_ID={dom} (logs: {runner.log_dir})")
    t_start = time.monotonic()
    dead: dict = {}
    interrupted = False

    def note(phase: str) -> None:
        for n in runner.dead():
            if n not in dead:
                dead[n] = d = node_death(runner[n], t_start, phase)
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
        up = wait_for_heatmaps(dom, o.warmup_timeout, lambda: note("start-up") or bool(dead))
        log(f"graph up after {time.monotonic() - t_start:.1f} s (first heatmap {'seen' if up else 'NOT seen'}); "
            f"running {o.duration:.0f} s")
        if on_up is not None:
            on_up(runner)
        t_run = time.monotonic()
        end = t_run + o.duration
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
    summary.update({"spec": name, "image_size": size, "method": o.live_method(), "precision": o.precision,
                    "device": o.device, "task": o.task, "duration_s": o.duration, "ran_s": round(ran_s, 2),
                    "bag": str(bag), "domain_id": dom, "compression": o.compression,
                    "bag_bytes": sum(p.stat().st_size for p in bag.iterdir() if p.is_file()),
                    "dead_nodes": list(dead.values()), "exit_codes": exit_codes})
    if problem:
        summary["bag_problem"] = problem
    if interrupted:
        summary["interrupted"] = True
    return LiveRun(summary, run, bag, runner)


def run_pipeline(o: RunOptions, log: Log = print, on_up: Optional[Callable] = None) -> dict:
    """`policy-xai run`: the checks (prepare_run), the live run (live_run), then into o.out the heatmap
    video (o.video), ratios.png and summary.json; returns the summary (its "dead_nodes" name the
    nodes that exited early, "interrupted" a Ctrl-C)."""
    from . import bagtools

    o = prepare_run(o, log)
    res = live_run(o, log, on_up)
    out, summary = Path(o.out), res.summary
    if o.video:
        v = bagtools.write_video(res.run, out / "heatmap.mp4")
        summary["video"] = str(v) if v else None
    p = bagtools.write_ratio_plot(res.run, out / "ratios.png")
    summary["ratio_plot"] = str(p) if p else None
    bagtools.write_summary({k: v for k, v in summary.items() if k != "nodes"}, out / "summary.json")
    return summary


def run_and_report(opts: RunOptions, on_up=None) -> int:
    """ros.pipeline.run_pipeline, then what it did printed; the exit code (1: a node exited early,
    130: interrupted). `on_up(runner)`: see live_run (tests act on the node processes with it)."""
    summary = run_pipeline(opts, log=print, on_up=on_up)
    print_run_summary(summary)
    out = Path(summary["bag"]).parent
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


def print_run_summary(summary: dict, out=None) -> None:
    """The rates, latencies and node notes of a run's summary."""
    out = out or sys.stdout  # looked up per call: the stream may be replaced (pytest capture, redirection)
    r = summary["rates_hz"]
    from .interfaces import TOPIC

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


def latency_bench(o: LatencyOptions, log: Log = print) -> tuple[list[dict], Path]:
    """`policy-xai latency`: per configuration the machine check (o.machine_check s of a fixed CPU
    task), then a live run of o.duration s; the rows (latency_row) and the folder that holds the
    bags and latency.json. A node that exits during a measurement is a RuntimeError."""
    from .. import checks
    from ..live import machine_jitter

    device = str(checks.device_arg(o.device))
    if o.user:
        configs = user_latency_configs(o.configs, o.user, o.weights)
        check_user_model(o.user.model, o.user.mapping, o.user.model_kwargs, o.weights, o.method or USER_METHOD,
                         device)  # before any node starts: a model or mapping that does not fit is one line
    else:
        configs = latency_configs(o.configs)
    if o.out:
        for c in configs:
            for label in o.labels(c):
                if (Path(o.out) / label / "bag").exists():
                    raise UsageError(f"--out {o.out} already holds {label}/bag; choose another --out")
        checks.writable_dir(o.out)
    base = Path(o.out or tempfile.mkdtemp(prefix="policy_xai_latency_"))
    rows = []
    runs = [(c, i, label) for c in configs for i, label in enumerate(o.labels(c))]
    for k, (c, i, label) in enumerate(runs):
        jit = machine_jitter(o.machine_check) if o.machine_check > 0 else {}
        if jit:
            log(f"machine check ({o.machine_check:.0f} s, nothing else started): a fixed CPU task of "
                f"{jit['task_p50_ms']:.1f} ms (p50) took {jit['task_p99_ms']:.1f} ms at p99 "
                f"({jit['p99_over_p50']:.1f}x)")
        run = RunOptions(out=base / label, duration=o.duration, spec=c.spec, weights=c.weights,
                         method=o.method, precision=o.precision, image_size=c.size, device=device, user=o.user,
                         domain_id=(o.domain_id + k) if o.domain_id is not None else None, compression=o.compression)
        s = live_run(run, log).summary
        if s["dead_nodes"]:
            raise RuntimeError(f"{c.spec}:{c.size}: nodes exited during the measurement: "
                               + ", ".join(f"{d['node']} (code {d['exit_code']})" for d in s["dead_nodes"])
                               + f"; logs in {base}")
        row = latency_row(s, c, o, jit)
        if o.repeat > 1:
            row["run"] = i + 1
        rows.append(row)
    (base / "latency.json").write_text(json.dumps(rows, indent=2))
    return rows, base


def record(o: RecordOptions, log: Log = print) -> bool:
    """`policy-xai record`: the recorder node into the new bag folder o.output until o.duration s pass
    (0: Ctrl-C) or the recorder exits; True when the bag was closed (metadata.yaml written)."""
    from .. import checks
    from .graph import NodeLaunch
    from .interfaces import NODES
    from .runner import GraphRunner

    checks.new_bag_dir(o.output, "output bag")
    params = {"output": str(Path(o.output).absolute()), "compression": o.compression}
    if o.topics:
        params["topics"] = list(o.topics)
    rec = NodeLaunch("recorder", NODES["recorder"].module, NODES["recorder"].executable, None, params)
    runner = GraphRunner([rec], domain_id=o.domain_id, log_dir=Path(o.output).absolute().parent / "recorder_logs")
    runner.start()
    log(f"recording to {o.output} ({o.compression} chunks; Ctrl-C to stop)")
    try:
        end = time.monotonic() + o.duration if o.duration > 0 else float("inf")
        while time.monotonic() < end and runner["recorder"].alive():
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        runner.stop()
    log(runner["recorder"].tail(2))
    return (Path(o.output) / "metadata.yaml").is_file()
