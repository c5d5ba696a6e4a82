"""bags/s and steps/s of the fleet over generated bags: sequential in this process, and on Ray with
1, 2 ... workers (`policy-xai bench-fleet`)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence, Union

from ..bags.analyze import AnalyzeOptions
from .report import stage_seconds
from .run import FleetOptions, analyze_bags


@dataclass(frozen=True)
class BenchFleetOptions:
    """What bench_fleet measures; the defaults are `policy-xai bench-fleet`'s."""

    bags: int = 8  # generated bags
    steps: int = 120  # steps per bag
    workers: Sequence[int] = (1, 2)  # one Ray run per worker count
    methods: str = "dtd"  # comma-separated attribution methods of the analysis
    storage: str = "mcap"  # mcap | sqlite3
    spec: str = "small"  # the policy spec of the bags and the analysis
    sequential: bool = True  # also the bags one after another in this process, without Ray
    json_out: Union[None, str, Path] = None  # also write the rows here (a new file: never overwritten)


def bench_fleet(options: Optional[BenchFleetOptions] = None, log=print) -> list[dict]:
    """bags/s and steps/s of analyze_bags over `options.bags` generated bags of `options.steps` steps,
    once per worker count (a fresh local Ray instance each, nothing resumed), and, with `sequential`,
    the same bags analysed one after another in this process without Ray (torch with 1 thread, as
    each Ray task has). Rows: mode, workers, bags, steps, wall_s, bags_per_s, steps_per_s, ray_start_s
    and the share of task time per stage (stage_seconds); also written to `options.json_out` when set
    (a UsageError, before anything runs, when that file exists)."""
    from ..checks import UsageError, writable_file

    o = options or BenchFleetOptions()
    if o.json_out:
        if Path(o.json_out).exists():
            raise UsageError(f"{o.json_out} exists; choose another file for the rows")
        writable_file(o.json_out, "the rows' JSON file")
    import tempfile

    import torch

    from .. import bags as bagmod
    from ..bags.analyze import analyze_bag
    from ..spec import load_spec

    s = load_spec(o.spec)
    rows = []
    with tempfile.TemporaryDirectory(prefix="policy_xai_bench_fleet_") as tmp:
        src = Path(tmp) / "in"
        for i in range(int(o.bags)):
            bagmod.write_synthetic_bag(src / f"bag{i:03d}", s, int(o.steps), o.storage, seed=i)
        opts = AnalyzeOptions("", policy=o.spec, methods=o.methods, write_bag=False, video=False)

        def row(mode, w, summ):
            t = summ["totals"]
            st = summ["stages_s"]
            share = {f"{k}_share": round(st[k] / st["task"], 3) if st["task"] else None
                     for k in ("read_and_pair", "importance", "explain", "other")}
            r = {"mode": mode, "workers": w, "bags": t["bags"], "steps": t["steps"], "wall_s": t["wall_s"],
                 "bags_per_s": round(t["bags"] / t["wall_s"], 3), "steps_per_s": round(t["steps"] / t["wall_s"], 2),
                 "ray_start_s": summ.get("ray_start_s"), **share}
            log(f"{mode:10s} workers {w}: {r['bags']} bags, {r['steps']} steps in {r['wall_s']:.1f} s -> "
                f"{r['bags_per_s']:.2f} bags/s, {r['steps_per_s']:.1f} steps/s (Ray start {r['ray_start_s']} s; "
                + ", ".join(f"{k[:-6]} {100 * v:.0f}%" for k, v in share.items() if v is not None) + ")")
            return r

        if o.sequential:
            prev = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                t0 = time.perf_counter()
                recs = []
                for b in sorted(src.iterdir()):
                    t1 = time.perf_counter()
                    one = analyze_bag(replace(opts, bag=str(b), out=str(Path(tmp) / "seq" / b.name)), quiet=True)
                    recs.append({"timing": one["timing"], "seconds": time.perf_counter() - t1, "steps": one["steps"]})
                wall = time.perf_counter() - t0
            finally:
                torch.set_num_threads(prev)
            rows.append(row("sequential", 1, {"totals": {"bags": len(recs), "steps": sum(r["steps"] for r in recs),
                                                         "wall_s": round(wall, 3)},
                                              "stages_s": stage_seconds(recs), "ray_start_s": 0.0}))
        for w in o.workers:
            summ = analyze_bags([src], opts, FleetOptions(out=Path(tmp) / f"out{w}", workers=int(w), resume=False),
                                progress=False)
            rows.append(row("ray", int(w), summ))
    if o.json_out:
        Path(o.json_out).write_text(json.dumps(rows, indent=2))
    return rows
