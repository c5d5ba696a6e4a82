"""Running the fleet: one Ray task per bag (analyze_one), on a local Ray instance or a cluster
(optionally with this policy_xai shipped to its workers), resumed bags skipped, the results merged."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from ..bags.analyze import AnalyzeOptions
from .inputs import bag_names, expand_bags
from .options import analysis_options, content_key, done_record, keyed_options, reuse_names
from .report import EPISODE_GAP_S, dataset_report, merge_steps, stage_seconds


@dataclass
class FleetOptions:
    """How analyze_bags runs (the per-bag analysis has its own options: AnalyzeOptions). The defaults
    are those of `policy-xai analyze BAG BAG ...` (but --out, which the command shares with one bag)."""

    out: Union[str, Path] = "out/fleet"
    workers: int = 2  # CPUs of a local Ray instance started here
    ray_address: Optional[str] = None  # an existing cluster (the bags on a shared file system)
    ship_code: bool = False  # with ray_address: send this policy_xai to the workers (code_runtime_env)
    num_gpus: Optional[float] = None  # GPUs per task; None: gpus_per_task()
    episode_gap: float = EPISODE_GAP_S  # s of pause between two steps that starts a new episode
    hash_bytes: bool = False  # the content key from the bags' bytes (else size + mtime)
    resume: bool = True  # skip bags whose done.json holds the same content key


# ==== one bag (a Ray task) =======================================================================
def analyze_one(bag: str, out: str, options: AnalyzeOptions, key: str) -> dict:
    """The single-bag analysis of `bag` into `out` (as `policy-xai analyze BAG --out OUT ...`); never
    raises for a bad bag: the error is returned. On success writes out/done.json with `key`."""
    from ..bags.analyze import analyze_bag

    t0 = time.perf_counter()
    rec = {"bag": str(bag), "out": str(out), "key": key}
    try:
        s = analyze_bag(replace(options, bag=str(bag), out=str(out)), quiet=True)
    except Exception as e:  # noqa: BLE001 - reported per bag; the other bags go on
        lines = [ln.strip() for ln in (str(e) or type(e).__name__).splitlines() if ln.strip()]
        rec.update(status="failed", steps=0, error=f"{type(e).__name__}: {lines[0] if lines else ''}",
                   seconds=round(time.perf_counter() - t0, 3))
        from ..bags import BagError

        if isinstance(e, BagError):  # the bag's content (nothing readable, topics missing): the same next time
            Path(out).mkdir(parents=True, exist_ok=True)
            Path(out, "done.json").write_text(json.dumps(rec, indent=2, default=str))
        return rec
    import policy_xai

    rec["code"] = str(Path(policy_xai.__file__).resolve().parent)
    rec.update(status="truncated" if s.get("truncated") else "ok", steps=int(s["steps"]),
               error=s.get("truncated"), seconds=round(time.perf_counter() - t0, 3), storage=s.get("storage"),
               reader=s.get("reader"), methods=s.get("methods"), timing=s.get("timing"))
    Path(out, "done.json").write_text(json.dumps(rec, indent=2, default=str))
    return rec


_REMOTE = None


def _remote():
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(max_retries=2)(analyze_one)
    return _REMOTE


def gpus_per_task(num_gpus: Optional[float] = None) -> float:
    """GPUs each bag's task asks Ray for: the given number, else 1 when torch sees CUDA here, else 0."""
    if num_gpus is not None:
        if not num_gpus >= 0:
            raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
        return float(num_gpus)
    try:
        import torch

        return 1.0 if torch.cuda.is_available() else 0.0
    except Exception:  # noqa: BLE001 - no torch / broken CUDA: CPU tasks
        return 0.0


def code_runtime_env(stage: Path) -> dict:
    """A Ray runtime_env that ships this policy_xai to a cluster's workers: the package as a py_module
    and its shared files (config/, urdf/, launch/, models/) as the working directory, found there
    through POLICY_XAI_SHARE. The workers still need the dependencies (the README's pip install)."""
    import shutil

    import policy_xai

    from ..resources import share_dir

    share = share_dir()
    stage = Path(stage)
    for sub in ("config", "urdf", "launch", "models"):
        if (share / sub).is_dir():
            shutil.copytree(share / sub, stage / sub, dirs_exist_ok=True)
    return {"py_modules": [str(Path(policy_xai.__file__).resolve().parent)], "working_dir": str(stage),
            "env_vars": {"POLICY_XAI_SHARE": "."}}


# ==== many bags ==================================================================================
def analyze_bags(bags, options: Union[None, AnalyzeOptions, Mapping[str, Any]] = None,
                 fleet: Optional[FleetOptions] = None, progress: Union[bool, Callable] = True, **fleet_fields) -> dict:
    """Analyse every bag of `bags` (see expand_bags) in parallel on Ray into out/bags/<name>/, merge
    out/steps.parquet and write out/summary.json; returns the summary.

    `options`: the per-bag analysis (analysis_options: an AnalyzeOptions or a mapping of option names;
    videos off unless asked). `fleet` (a FleetOptions) and/or its fields as keywords (out=, workers=,
    ray_address=, ship_code=, num_gpus=, episode_gap=, hash_bytes=, resume=): how the run goes. A Ray
    instance already running in this process is used as is; else `ray_address` (a cluster; bags must
    be on a shared file system) or a local instance with `workers` CPUs, shut down at the end.
    `progress`: a tqdm bar over the bags (True), none (False), or a callable(record, done, total) per
    finished bag. `episode_gap`: a pause of at least this many seconds between a bag's steps starts a
    new episode (steps.parquet's `episode` column). `num_gpus` per task: None = 1 when this machine
    has CUDA (torch.cuda), else 0. `ship_code` (with `ray_address`): send this policy_xai and its
    shared files to the cluster's workers (code_runtime_env) instead of using the policy_xai installed
    there."""
    from tqdm import tqdm

    fo = replace(fleet or FleetOptions(), **fleet_fields)
    out = Path(fo.out)
    paths = expand_bags(bags, exclude=[out])
    if not paths:
        raise FileNotFoundError(f"no bag in {bags}")
    opts = analysis_options(options)
    pol = str(opts.policy or "")
    if pol:  # a weights file or a task's shipped weights, absolute: the workers' working directory may differ
        from ..resolve import policy_source

        src = policy_source(pol, label="policy")  # a bad source: one line before any worker starts
        if src.weights is not None:
            opts = replace(opts, policy=str(Path(src.weights).resolve()))
    if opts.bench:
        raise ValueError("--bench analyses one bag")
    if fo.ship_code and not fo.ray_address:
        raise ValueError("ship_code needs ray_address (and no Ray already running in this process)")
    names = reuse_names(out, paths, bag_names(paths))
    (out / "bags").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    records: dict[str, dict] = {}
    todo = []
    for p, name in zip(paths, names):
        key = content_key(p, opts, fo.hash_bytes)
        bag_out = out / "bags" / name
        d = done_record(bag_out, key) if fo.resume else None
        if d is not None:
            records[name] = {**d, "name": name, "resumed": True}
        else:
            todo.append((p, name, key, bag_out))

    bar = tqdm(total=len(paths), desc="bags", unit="bag", disable=progress is not True, initial=len(records))
    ray_start = 0.0
    try:
        if todo:
            with _ray(fo) as started_in:
                ray_start = started_in
                _run_tasks(todo, opts, fo, records, len(paths), bar, progress, t_start)
    finally:
        bar.close()
    summary = _summary(out, [records[n] for n in names], opts, fo, time.perf_counter() - t_start, ray_start)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


class _ray:
    """Ray for the tasks: the instance running in this process, else one started here (a cluster's
    client with ray_address, or a local instance), shut down on leaving. Entering gives the seconds
    the start took."""

    def __init__(self, fo: FleetOptions):
        self.fo, self.started, self.stage = fo, False, None

    def __enter__(self) -> float:
        import tempfile

        import ray

        t0 = time.perf_counter()
        fo = self.fo
        if fo.ship_code and ray.is_initialized():
            raise ValueError("ship_code needs ray_address (and no Ray already running in this process)")
        if not ray.is_initialized():
            if fo.ray_address:
                env = None
                if fo.ship_code:
                    self.stage = Path(tempfile.mkdtemp(prefix="policy_xai_ship_"))
                    env = code_runtime_env(self.stage)
                ray.init(address=fo.ray_address, log_to_driver=False, runtime_env=env)
            else:
                # "local": a new instance even when another cluster runs on this machine (ray.init
                # without an address would join the latest one, and refuse num_cpus)
                ray.init(address="local", num_cpus=int(fo.workers), include_dashboard=False, log_to_driver=False,
                         object_store_memory=200 * 1024 * 1024)
            self.started = True
        return time.perf_counter() - t0

    def __exit__(self, *exc) -> None:
        import ray

        if self.started:
            ray.shutdown()
        if self.stage is not None:
            import shutil

            shutil.rmtree(self.stage, ignore_errors=True)


def _run_tasks(todo: list, opts: AnalyzeOptions, fo: FleetOptions, records: dict, total: int, bar, progress,
               t_start: float) -> None:
    """One task per bag of `todo` ((path, name, key, bag_out)); each finished bag's record into `records`."""
    import ray

    gpus = gpus_per_task(fo.num_gpus)
    task = _remote().options(num_gpus=gpus) if gpus else _remote()
    pending = {task.remote(str(p.resolve()), str(bag_out.resolve()), opts, key): name
               for p, name, key, bag_out in todo}
    steps = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            name = pending.pop(ref)
            try:
                rec = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the worker died more often than Ray retries
                rec = {"bag": str(next(p for p, n, _, _ in todo if n == name)), "status": "failed",
                       "steps": 0, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                       "seconds": None}
            rec = {**rec, "name": name, "resumed": False}
            records[name] = rec
            steps += rec.get("steps") or 0
            bar.update(1)
            el = time.perf_counter() - t_start
            bar.set_postfix(steps_per_s=f"{steps / max(el, 1e-9):.1f}", failed=sum(
                r["status"] == "failed" for r in records.values()))
            if callable(progress):
                progress(rec, len(records), total)


def _summary(out: Path, ordered: list, opts: AnalyzeOptions, fo: FleetOptions, wall: float, ray_start: float) -> dict:
    """steps.parquet and the dataset report merged from the bags' records (in input order); the summary."""
    merged = merge_steps(out, [r for r in ordered if r["status"] != "failed"], fo.episode_gap)
    dataset = dataset_report(out) if merged else {"figures": [], "stand_out": [], "per_bag": {}}
    analysed = [r for r in ordered if not r["resumed"]]
    new_steps = sum(r.get("steps") or 0 for r in analysed)
    return {
        "bags": [{k: r.get(k) for k in ("name", "bag", "status", "steps", "error", "seconds", "resumed", "storage",
                                         "reader", "code")} for r in ordered],
        "totals": {"bags": len(ordered), "ok": sum(r["status"] == "ok" for r in ordered),
                   "truncated": sum(r["status"] == "truncated" for r in ordered),
                   "failed": sum(r["status"] == "failed" for r in ordered),
                   "resumed": sum(bool(r["resumed"]) for r in ordered),
                   "steps": sum(r.get("steps") or 0 for r in ordered), "rows_in_steps_parquet": merged,
                   "wall_s": round(wall, 3), "analysed_bags_per_s": round(len(analysed) / wall, 3) if wall else None,
                   "analysed_steps_per_s": round(new_steps / wall, 2) if wall else None},
        "stages_s": stage_seconds(analysed), "ray_start_s": round(ray_start, 3),
        "episode_gap_s": float(fo.episode_gap),
        "per_bag_medians": dataset["per_bag"], "stand_out": dataset["stand_out"], "figures": dataset["figures"],
        "workers": None if fo.ray_address else int(fo.workers), "ray_address": fo.ray_address,
        "options": keyed_options(opts),
    }
