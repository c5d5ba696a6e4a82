"""The attribution benchmark (library; command: `policy-xai bench attribution`, commands/bench.py).

Times our attribution methods (the graph engine, and the hand-written reference engine on plain
specs) against a plain forward/backward pass and against captum's LRP, GuidedBackprop and
LayerGradCam on the same network, in one run; the rows of a case run interleaved. `measure(opts)`
returns the JSON-able result; `markdown`, `print_report` and `goals` render and judge it.

Layout: captum_rows.py (CaptumRunner, CAPTUM_ROWS), timing.py (time_rows, the interleaved timing),
cases.py (the rows of one case: bench_case, bench_module_case; MODELS, reference_model), report.py
(goals, print_report, markdown); this module keeps BenchOptions and measure and re-exports the rest.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .captum_rows import CAPTUM_ROWS, CaptumRunner, _captum_helpers  # noqa: F401
from .cases import MODELS, _net_share, _timing_explainer, bench_case, bench_module_case, reference_model  # noqa: F401
from .report import (GOAL_GRAPH_VS_REFERENCE, GOAL_PAPER_MS, GOAL_RATIO_FB, GOAL_RATIO_FB_GRAPH,  # noqa: F401
                     GOAL_SPEEDUP_LRP, _num, format_block, goals, markdown, print_report, summary_markdown)
from .timing import time_rows  # noqa: F401


@dataclass
class BenchOptions:
    """What `measure` times: spec names / YAML files, batch sizes, thread counts, our methods,
    whether to add captum rows and the reference engine's rows, reference architectures (MODELS) with
    their trunk width and image size; repeat and budget (seconds per row) as in time_rows."""

    specs: list = field(default_factory=lambda: ["small", "paper", "resnet_small", "resnet_small_gn"])
    batches: list = field(default_factory=lambda: [1, 64])
    threads: list = field(default_factory=lambda: [1])
    methods: list = field(default_factory=list)  # empty: all
    captum: bool = True
    reference: bool = True
    models: list = field(default_factory=list)
    model_width: int = 64
    model_image: int = 84
    repeat: int = 5
    budget: float = 8.0


def measure(opts: BenchOptions, progress_bar: bool = True) -> dict:
    """Run the benchmark: {"machine", "repeat", "budget_s", "results": [one case per spec / model x
    batch x threads: {"spec", "batch", "threads", "rows", ...}], "goals"}. ValueError for an unknown
    method or architecture."""
    import os
    import platform

    import torch
    from tqdm import tqdm

    from ..attribution import METHODS
    from ..attribution.engine import EXPLAINER_METHODS
    from ..attribution.graph import METHODS as GRAPH_METHODS
    from ..attribution.graph.models import example_observation
    from ..sanity import policy_from_arg
    from ..synthetic import synthetic_observations

    from ..attribution import parse_methods

    methods = parse_methods(",".join(opts.methods)) if opts.methods else list(METHODS)
    bad = [m for m in opts.models if m not in MODELS]
    if bad:
        raise ValueError(f"--models: unknown reference architecture(s) {bad}; choose from {', '.join(MODELS)}")
    threads = list(dict.fromkeys(opts.threads))  # "1,all" on a 1-core machine: once
    model_methods = [m for m in methods if m in GRAPH_METHODS and m not in EXPLAINER_METHODS]
    captum = opts.captum
    if captum:
        try:
            import captum as _captum  # noqa: F401
        except ImportError:
            print("captum is not installed: captum rows skipped (pip install captum torch==2.13.0)")
            captum = False
    load_before = os.getloadavg()
    n_rows = 2 + len(methods) + ("dtd" in methods) + (3 if captum else 0) + \
        (len([m for m in methods if m not in EXPLAINER_METHODS]) if opts.reference else 0)
    n_model_rows = 2 + len(model_methods)
    results = []
    old_threads = torch.get_num_threads()
    try:
        total = (len(opts.specs) * n_rows + len(opts.models) * n_model_rows) * len(opts.batches) * len(threads)
        with tqdm(total=total, desc="bench", unit="row", disable=not progress_bar) as bar:
            for spec in opts.specs:
                policy = policy_from_arg(spec, seed=0)
                _timing_explainer(policy, methods)
                for B in opts.batches:
                    images, configs = synthetic_observations(policy.spec, B, seed=0)
                    x, c = policy.prepare_image(images), policy.prepare_config(configs)
                    for t in threads:
                        def progress(name, spec=spec, B=B, t=t):
                            bar.set_postfix_str(f"{spec} B={B} t={t} {name}")
                            bar.update()

                        rows, extra = bench_case(policy, x, c, methods, t, opts.repeat, opts.budget, captum, progress,
                                                 opts.reference)
                        results.append({"spec": policy.spec.name, "batch": B, "threads": t, "rows": rows, **extra})
            for name in opts.models:
                model = reference_model(name, opts.model_width, opts.model_image)
                label = f"{name} (width {opts.model_width}, {opts.model_image}px)"
                for B in opts.batches:
                    obs = example_observation(model, B, opts.model_image, torch.Generator().manual_seed(0))
                    for t in threads:
                        def progress(row, label=name, B=B, t=t):
                            bar.set_postfix_str(f"{label} B={B} t={t} {row}")
                            bar.update()

                        rows = bench_module_case(model, obs, model_methods, t, opts.repeat, opts.budget, progress)
                        results.append({"spec": label, "batch": B, "threads": t, "rows": rows})
    finally:
        torch.set_num_threads(old_threads)
    load_after = os.getloadavg()

    from importlib.metadata import PackageNotFoundError, version

    try:
        captum_version = version("captum")
    except PackageNotFoundError:
        captum_version = None
    machine = {
        "cpu_count": os.cpu_count() or 1, "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
        "captum": captum_version,
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in load_after],
    }
    return {"machine": machine, "repeat": opts.repeat, "budget_s": opts.budget, "results": results,
            "goals": goals(results)}
