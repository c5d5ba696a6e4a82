"""The single-bag analysis behind `policy-xai analyze BAG` (and the per-bag task of policy_xai.fleet).

    from policy_xai.bags.analyze import AnalyzeOptions, analyze_bag
    summary = analyze_bag(AnalyzeOptions("run/bag", out="run/analysis", methods="dtd,rap"), quiet=True)

reads the bag, pairs the observations as the live policy node does, recomputes the explanations in
batches and writes into `out`: ratios.csv/.parquet, importance.csv/.parquet, fig4_ratios.png,
fig5_curves.png, importance.png, heatmap_<method>.mp4, summary.json and bag/ (the annotated MCAP
bag). Returns the summary dict (what summary.json holds). No rclpy, no argparse parser: the command
(policy_xai.commands.analyze) only builds an AnalyzeOptions from its arguments.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from ..checks import UsageError
from ..parameters import NODES

_ATTR = NODES["attribution_node"].parameters
_POLICY = NODES["policy_node"].parameters


@dataclass
class AnalyzeOptions:
    """Every option of the single-bag analysis; the defaults are `policy-xai analyze`'s."""

    bag: Union[str, Path]
    out: Union[str, Path] = "out/analyze"
    policy: str = str(_ATTR["spec"])  # policy_xai.resolve: weights file, spec (random network) or task name
    seed: int = int(_ATTR["init_seed"])  # init seed of a random network
    methods: Union[str, Sequence[str]] = str(_ATTR["method"])  # comma-separated or a list; the first is "live"
    importance: str = str(_ATTR["importance"])  # dynamics | uniform
    robot: str = str(_ATTR["robot"])
    dt: float = float(_ATTR["dt"])  # control period for the importance factors [s]
    batch: int = 0  # observations per batch (0: auto_batch)
    layer: int = 0  # conv layer of the Grad-CAM family
    threads: int = 1  # torch threads (0: leave torch's setting)
    device: str = "cpu"
    source: str = "auto"  # auto | observation | raw
    sync_tolerance: float = float(_POLICY["sync_tolerance"])
    resize: bool = False
    start: float = 0.0
    duration: float = 0.0
    max_steps: int = 0
    time_jump: float = float(_POLICY.get("time_jump", 1.0))
    normalize: str = "frame"  # heatmap colour scale: frame | video
    gap_factor: float = 3.0
    recorded_prefix: str = "/recorded"
    write_bag: bool = True  # the annotated output bag
    compression: str = "zstd"  # zstd | lz4 | none
    video: bool = True  # heatmap videos
    bench: bool = False  # only read, pair and explain (nothing written); print the timing
    topics: Mapping[str, str] = field(default_factory=dict)  # role key -> topic name, over default_topics()

    @classmethod
    def from_dests(cls, dests: Union[Mapping[str, Any], Any], strict: bool = False) -> "AnalyzeOptions":
        """From option names (a dict or a Namespace): the fields here, or the `analyze` parser's dests:
        no_bag, no_video and topic_<key> become write_bag, video and topics (and win over those fields).
        Entries that are no option here (func, bags, the fleet's workers, ...) are left out; with
        `strict` they are a ValueError."""
        from .common import default_topics

        d = dict(dests if isinstance(dests, Mapping) else vars(dests))
        names = {f.name for f in fields(cls)}
        default = default_topics()
        if strict:
            unknown = [k for k in d if k not in names and k not in ("no_bag", "no_video")
                       and not (k.startswith("topic_") and k[len("topic_"):] in default)]
            if unknown:
                raise ValueError(f"unknown analyze option {unknown[0]!r}")
        kw = {k: v for k, v in d.items() if k in names}
        if "no_bag" in d:
            kw["write_bag"] = not d["no_bag"]
        if "no_video" in d:
            kw["video"] = not d["no_video"]
        over = {**dict(kw.get("topics") or {}),
                **{k[len("topic_"):]: v for k, v in d.items() if k.startswith("topic_") and v}}
        kw["topics"] = {k: v for k, v in over.items() if v != default.get(k)}  # what differs from the defaults
        return cls(**kw)

    def topic_names(self) -> dict:
        """default_topics() with the overrides in `topics`."""
        from .common import default_topics

        t = default_topics()
        t.update({k: v for k, v in self.topics.items() if k in t and v})
        return t

    def method_list(self) -> list[str]:
        from ..attribution import parse_methods

        m = self.methods
        return parse_methods(m if isinstance(m, str) else ",".join(m))


def auto_batch(spec) -> int:
    """Batch size for the batched explanation: 32 for small images, 8 for large ones (at 240x240 larger
    batches ran slower here: the relevance maps of a batch no longer fit the caches)."""
    return 32 if spec.image_height * spec.image_width <= 128 * 128 else 8


def usable_methods(policy, methods: list[str]) -> list[str]:
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


def load_policy(opts: AnalyzeOptions):
    """The policy of opts.policy (policy_xai.resolve: a weights file, a spec -> a random network with
    opts.seed, a task -> its shipped weights) on opts.device; sets torch's thread count to opts.threads
    (when not 0)."""
    from ..checks import device_arg
    from ..resolve import resolve_policy

    device = device_arg(opts.device)
    if opts.threads:
        import torch

        torch.set_num_threads(opts.threads)
    return resolve_policy(opts.policy, seed=opts.seed, device=device, label="--policy")


def check_analyze_out(bag, policy: str, out, methods, write_bag: bool = True, video: bool = True,
                      create: bool = True) -> None:
    """Before any work: the bag exists, --out is creatable and writable, and nothing analyze writes is
    the input bag, inside it or holds it (`analyze RUN/bag --out RUN` would put its bag at RUN/bag);
    an existing <out>/bag is replaced only when an earlier `analyze` wrote it."""
    from .. import checks
    from .annotated import is_annotated_bag

    checks.input_path(bag, "bag")
    out = Path(out)
    inputs = {"input bag": checks.bag_root(bag)}
    src = checks.policy_arg(policy)
    if src.weights is not None:
        inputs["--policy weights file"] = src.weights
    writes = {name: out / name for name in ("summary.json", "ratios.csv", "ratios.parquet", "importance.csv",
                                            "importance.parquet", "fig4_ratios.png", "fig5_curves.png",
                                            "importance.png")}
    if video:
        writes.update({f"heatmap_{m}.mp4": out / f"heatmap_{m}.mp4" for m in methods})
    if write_bag:
        writes = {"the annotated bag": out / "bag", **writes}
    checks.guard_outputs(inputs, out, writes)
    if write_bag and (out / "bag").exists() and not is_annotated_bag(out / "bag"):
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


def analyze_bag(opts: AnalyzeOptions, quiet: bool = False) -> dict:
    """The analysis of one bag (see the module's doc): returns the summary dict. Errors: UsageError
    (options that cannot work, checked before any work), BagError (nothing pairable, topics missing),
    ValueError (an unknown method). torch's thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    try:
        return _analyze(opts, quiet)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Explained:
    """What reading, pairing and explaining one bag gave."""

    obs: Any
    live: Any
    res: Any
    ts: Any
    timing: Any


def _analyze(o: AnalyzeOptions, quiet: bool) -> dict:
    import warnings

    from ..report import ReportWriter
    from .source import BagSource

    methods = o.method_list()
    out = Path(o.out)
    write_bag = not o.bench and o.write_bag
    if not o.bench:
        check_analyze_out(o.bag, o.policy, out, methods, write_bag, o.video, create=False)
    policy = load_policy(o)
    methods = usable_methods(policy, methods)
    if not o.bench:
        from ..checks import writable_dir

        writable_dir(out)
    o = replace(o, batch=o.batch or auto_batch(policy.spec))
    topics = o.topic_names()
    with warnings.catch_warnings(record=True) as wlist, BagSource(o.bag) as bag:
        warnings.simplefilter("always")
        ex = _read_and_explain(o, bag, policy, methods, topics, quiet)
        summary = _summary(o, bag, policy.spec, methods, ex)
        if o.bench:
            summary["warnings"] = [str(w.message) for w in wlist]
            if not quiet:
                print_timing(summary)
            return summary
        report = ReportWriter(out, parquet=True)
        _write_outputs(o, report, policy.spec, methods, ex, summary)
        if write_bag:
            _write_bag(o, out, bag, policy.spec, methods, topics, ex, summary)
        summary["files"] = sorted({f.name for f in report.files})
        summary["warnings"] = [str(w.message) for w in wlist]
    report.summary(summary)
    if not quiet:
        print_summary(summary, out)
    return summary


def _read_and_explain(o: AnalyzeOptions, bag, policy, methods: list, topics: dict, quiet: bool) -> _Explained:
    import time

    from tqdm import tqdm

    from .common import BagError, typestore
    from .explain import Timing, explain_observations, importance_factors
    from .observations import LiveExplanations, ReadOptions, read_observations

    spec = policy.spec
    ropts = ReadOptions(topics, o.source, o.sync_tolerance, o.resize, o.robot, o.start, o.duration, o.max_steps,
                        o.time_jump)
    timing = Timing()
    ts = typestore()
    live = LiveExplanations()
    t0 = time.perf_counter()
    obs = read_observations(bag, spec, ropts, live, ts)
    timing.read_s = time.perf_counter() - t0
    if len(obs) == 0:
        why = "; ".join(f"{k} ({n}x)" for k, n in obs.skipped.items()) or \
            f"no image and {'configuration' if obs.source == 'observation' else 'joint state'} stamps matched"
        raise BagError(f"{o.bag}: no observation could be paired ({why}); topics: {bag.describe_topics()}")
    t0 = time.perf_counter()
    alphas = importance_factors(spec, obs.configs, o.importance, o.robot, o.dt)
    timing.alpha_s = time.perf_counter() - t0
    with tqdm(total=len(obs), desc=f"explaining ({', '.join(methods)})", unit="step", disable=quiet) as bar:
        res = explain_observations(policy, obs, methods, alphas, o.batch, o.layer, bar.update, timing)
    return _Explained(obs, live, res, ts, timing)


def _summary(o: AnalyzeOptions, bag, spec, methods: list, ex: _Explained) -> dict:
    from .explain import compare_live, find_gaps
    from .observations import LiveExplanations

    obs, timing = ex.obs, ex.timing
    summary = {
        "bag": str(o.bag), "storage": bag.storage, "reader": bag.reader, "policy": o.policy,
        "spec": spec.name, "source": obs.source, "methods": methods,
        "importance": o.importance + (f" ({o.robot}, dt={o.dt})" if o.importance == "dynamics" else ""),
        "topics_in_bag": {t.name: {"type": t.msgtype, "count": t.count} for t in bag.topics.values()},
        "steps": len(obs), "unpaired_messages": obs.unpaired, "skipped_messages": obs.skipped,
        "resized_images": obs.resized, "original_image_size": obs.original_size,
        "timing": {"read_and_pair_s": round(timing.read_s, 3), "importance_s": round(timing.alpha_s, 3),
                   "explain_s": round(timing.explain_s, 3), "steps_per_s": round(timing.steps_per_s, 2),
                   "batch": o.batch, "methods_per_step": len(methods)},
        "time_span_s": float((obs.stamps[-1] - obs.stamps[0]) * 1e-9),
        "gaps": find_gaps(obs.stamps, o.gap_factor, obs.backwards, obs.late_stamps, obs.largest_backward_ns),
        "pairing_restarts": obs.jumps,
    }
    if bag.problem is not None:
        summary["truncated"] = bag.problem.describe(bag.start_ns)
    if len(ex.live):
        summary["live_vs_recomputed"] = compare_live(ex.res, obs, ex.live, methods[0], spec)
    elif obs.recorded_torques:
        summary["live_vs_recomputed"] = compare_live(ex.res, obs, LiveExplanations(), methods[0], spec)
    return summary


def _write_outputs(o: AnalyzeOptions, report, spec, methods: list, ex: _Explained, summary: dict) -> None:
    """Tables, figures, videos and the two-method comparison through `report` (a report.ReportWriter;
    its files: what was written). Adds ratios_mean_std (and methods_compared) to `summary`."""
    import numpy as np

    from ..analysis import summary_stats
    from ..report import Curves, Episode, ratio_methods
    from .compare import compare_series, series_from_result
    from .tables import break_at_gaps, importance_figure, importance_rows

    res, obs, out = ex.res, ex.obs, report.out
    report.ratios([Episode(None, res, obs.stamps)])
    report.table(importance_rows(res, obs, spec), "importance")
    ratio_ms = ratio_methods(methods)
    stats = summary_stats(res)
    summary["ratios_mean_std"] = stats
    gaps = summary["gaps"]
    if ratio_ms:
        report.fig4(stats, ratio_ms, title=f"relevance ratios ({spec.name}, {len(res)} steps)")
        curves = {}
        for m in ratio_ms:
            t, r = break_at_gaps(res.times, res.methods[m].ratios, gaps)
            curves[m] = r
        report.fig5(Curves(t, curves, res.methods[ratio_ms[0]].ratio_names, marks=[g["from_s"] for g in gaps["gaps"]],
                           mark_label="time gap", title=f"relevance ratio over time ({o.bag})"))
    report.files.append(importance_figure(out / "importance.png", res.times, res.alpha, spec.joint_names, gaps,
                                          title=f"importance factors ({o.importance})"))
    period = gaps["median_period_s"]
    fps = float(np.clip(1.0 / period, 1.0, 60.0)) if period == period and period > 0 else 10.0
    if o.video:
        for m in methods:
            report.video(f"heatmap_{m}.mp4", obs.images, res.methods[m].image, res.feature_points,
                         normalize=o.normalize, fps=fps)
    if len(ratio_ms) >= 2:
        a = series_from_result(res, obs, ratio_ms[0])
        b = series_from_result(res, obs, ratio_ms[1])
        summary["methods_compared"] = compare_series(a, b, out, how="stamp", stem="compare_methods")


def _write_bag(o: AnalyzeOptions, out: Path, bag, spec, methods: list, topics: dict, ex: _Explained,
               summary: dict) -> None:
    """out/bag: the bag's topics (in the analysed window) plus the explanation topics; summary["output_bag"]."""
    from .annotated import explanation_messages, remove_annotated_bag, write_annotated_bag

    remove_annotated_bag(out / "bag")  # an earlier run's output bag (checked up front)
    msgs = list(explanation_messages(ex.ts, ex.res, ex.obs, spec, methods, topics))
    start = bag.start_ns + int(o.start * 1e9) if bag.start_ns is not None and o.start else None
    end = int(ex.obs.log_times[-1]) if (o.duration or o.max_steps) else None
    summary["output_bag"] = write_annotated_bag(bag, out / "bag", msgs, ex.ts, topics, o.recorded_prefix, start, end,
                                                compression=o.compression)


def print_timing(s: dict) -> None:
    """One line: steps, source, storage, reader and the time of each stage."""
    t = s["timing"]
    print(f"{s['steps']} steps ({s['source']} source, {s['storage']}, read by {s['reader']}): read+pair "
          f"{t['read_and_pair_s']:.2f} s ({s['steps'] / max(t['read_and_pair_s'], 1e-9):.0f} steps/s), importance "
          f"{t['importance_s']:.2f} s, explain {t['explain_s']:.2f} s = {t['steps_per_s']:.1f} steps/s "
          f"({', '.join(s['methods'])}, batch {t['batch']})")


def print_summary(s: dict, out) -> None:
    """What `policy-xai analyze` prints of a summary dict written into `out`."""
    from ..report import ratio_lines

    print(f"analysed {s['bag']}: {s['steps']} steps over {s['time_span_s']:.2f} s -> {out}/")
    print_timing(s)
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
    for line in ratio_lines(s.get("ratios_mean_std", {})):
        print(line)
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
