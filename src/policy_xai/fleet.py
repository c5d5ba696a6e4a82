"""Many bags at once: `policy-xai analyze` over a fleet's recordings in parallel on Ray (issue 14).

One Ray task per bag runs the single-bag analysis (policy_xai.bags.analyze.analyze_bag) into
OUT/bags/<name>/; a content hash of the bag's files, the policy file and the options is stored in
OUT/bags/<name>/done.json, so a rerun with the same inputs skips that bag (an interrupted run
resumes). A bag that cannot be read is reported in OUT/summary.json and the others go on; a
truncated bag is analysed as far as it reads. The per-step tables of all bags are merged into
OUT/steps.parquet (one row per bag, step and method: ratios per group, importance factors, torques).

No rclpy here; Ray is imported only when analyze_bags runs.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

from .files import file_sha256 as _sha256

STORAGE_SUFFIXES = (".mcap", ".db3")
#: a pause of at least this many seconds between two steps of a bag starts a new episode
EPISODE_GAP_S = 1.0
#: a bag stands out when its median ratio of a group is this many robust standard deviations (1.4826
#: x the median absolute deviation over the bags' medians) from the fleet's median (and >= 0.05 away)
STAND_OUT_Z = 3.5
# Namespace entries that are not options of the per-bag analysis (or that fleet sets per bag)
_NOT_OPTIONS = {"bag", "bags", "out", "func", "command", "workers", "ray_address", "video", "bench", "episode_gap",
                "num_gpus", "ship_code"}
_GLOB = set("*?[")


# ==== inputs =====================================================================================
def is_bag(path: Path) -> bool:
    """A rosbag2 bag: a folder with metadata.yaml, or a single .mcap / .db3 storage file."""
    path = Path(path)
    if path.is_file():
        return path.suffix in STORAGE_SUFFIXES
    return path.is_dir() and (path / "metadata.yaml").is_file()


def _find(folder: Path, exclude: Sequence[Path]) -> list[Path]:
    """Bags under `folder`: itself when it is a bag (metadata.yaml), else its bag subfolders (recursively)
    and its loose storage files; a folder with storage files and no bag below it is one metadata-less bag."""
    if _excluded(folder, exclude):
        return []
    if (folder / "metadata.yaml").is_file():
        return [folder]
    subs, files = [], []
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            subs += _find(p, exclude)
        elif p.suffix in STORAGE_SUFFIXES and not _excluded(p, exclude):
            files.append(p)
    if not subs:
        return [folder] if files else []
    return subs + files


def _excluded(p: Path, exclude: Sequence[Path]) -> bool:
    rp = p.resolve()
    return any(rp == e or e in rp.parents for e in exclude)


def is_folder_of_bags(path: Path) -> bool:
    """A folder (no metadata.yaml) with at least one bag folder below it."""
    path = Path(path)
    if not path.is_dir() or (path / "metadata.yaml").is_file():
        return False
    found = _find(path, [])
    return bool(found) and found != [path]


def wants_fleet(inputs: Sequence[str]) -> bool:
    """More than one bag, a folder of bags, a glob, or a list file (@list.txt or *.txt): the fleet path."""
    if len(inputs) != 1:
        return len(inputs) > 1
    s = str(inputs[0])
    if s.startswith("@") or s.endswith(".txt"):
        return True
    if not Path(s).exists() and _GLOB & set(s):
        return True
    return is_folder_of_bags(Path(s))


def expand_bags(inputs: Union[str, Path, Iterable[Union[str, Path]]],
                exclude: Sequence[Union[str, Path]] = ()) -> list[Path]:
    """Paths, folders holding bags, globs and text files listing them (`@list.txt` or a .txt path; one
    entry per line, # comments; relative entries from the list file's folder) -> bag paths, each once,
    in the order given. Anything under `exclude` (the output folder) is left out."""
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    excl = [Path(e).resolve() for e in exclude]
    out: list[Path] = []
    seen = set()

    def add(p: Path) -> None:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            out.append(p)

    def one(s: str, base: Optional[Path] = None) -> None:
        if s.startswith("@") or (s.endswith(".txt") and Path(s).is_file()):
            lst = Path(s[1:] if s.startswith("@") else s)
            if not lst.is_file():
                raise FileNotFoundError(f"bag list not found: {lst}")
            for line in lst.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    one(line, lst.parent)
            return
        p = Path(s)
        if base is not None and not p.is_absolute() and not p.exists():
            p = base / p
        if not p.exists() and _GLOB & set(str(p)):
            matches = sorted(glob.glob(str(p), recursive=True))
            if not matches:
                raise FileNotFoundError(f"no bag matches {s}")
            for m in matches:
                mp = Path(m)
                for b in (_find(mp, excl) if mp.is_dir() else ([mp] if mp.suffix in STORAGE_SUFFIXES else [])):
                    add(b)
            return
        if not p.exists():
            raise FileNotFoundError(f"bag not found: {p}")
        if p.is_dir():
            found = _find(p, excl)
            if not found:
                raise FileNotFoundError(f"{p} holds no bag (no metadata.yaml, .mcap or .db3 below it)")
            for b in found:
                add(b)
        else:
            add(p)

    for s in inputs:
        one(str(s))
    return out


def bag_names(paths: Sequence[Path]) -> list[str]:
    """A unique folder name per bag: its own name (without .mcap/.db3), with parent folders joined by
    '__' in front where two bags share a name (run1/bag, run2/bag -> run1__bag, run2__bag)."""
    parts = [list(Path(p).resolve().with_suffix("").parts[1:]) if Path(p).suffix in STORAGE_SUFFIXES
             else list(Path(p).resolve().parts[1:]) for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["__".join(pp[-d:]) for pp, d in zip(parts, depth)]
        dup = {n for n in names if names.count(n) > 1}
        if not dup:
            return names
        grown = False
        for i, n in enumerate(names):
            if n in dup and depth[i] < len(parts[i]):
                depth[i] += 1
                grown = True
        if not grown:  # identical paths cannot happen (expand_bags dedups); number what is left
            return [f"{n}-{i}" if n in dup else n for i, n in enumerate(names)]


# ==== options and content hash ===================================================================
def analysis_options(options=None) -> dict:
    """The per-bag analysis options as a dict (dest -> value, every analyze option, defaults filled in):
    from CLI tokens (["--methods", "dtd,rap"]), a dict of dests, or an analyze Namespace. Videos are
    off unless asked (no_video=False)."""
    from .cli import build_parser

    ns = build_parser().parse_args(["analyze", "BAG", "--out", "OUT", "--no-video"]
                                   + ([str(x) for x in options] if isinstance(options, (list, tuple)) else []))
    if isinstance(options, argparse.Namespace):
        over = dict(vars(options))
        over["no_video"] = not getattr(options, "video", False)
    elif isinstance(options, dict):
        over = dict(options)
    else:
        over = {}
    base = vars(ns)
    for k, v in over.items():
        if k in _NOT_OPTIONS:
            continue
        if k not in base:
            raise ValueError(f"unknown analyze option {k!r}")
        base[k] = v
    return {k: v for k, v in base.items() if k not in _NOT_OPTIONS}


def content_key(bag: Path, options: dict, hash_bytes: bool = False) -> str:
    """sha256 of (each file of the bag: name and size+mtime, or its bytes' sha256 with hash_bytes; the
    policy file's sha256 when --policy is a file; the analysis options)."""
    bag = Path(bag)
    files = [bag] if bag.is_file() else sorted(p for p in bag.rglob("*") if p.is_file())
    items = []
    for f in files:
        st = f.stat()
        rel = f.name if bag.is_file() else str(f.relative_to(bag))
        items.append([rel, _sha256(f)] if hash_bytes else [rel, st.st_size, st.st_mtime_ns])
    pol = str(options.get("policy", ""))
    pol_id = _sha256(Path(pol)) if pol and Path(pol).is_file() else pol
    # the device does not change the analysis (the same numbers to float rounding): not part of the key
    options = {k: v for k, v in options.items() if k != "device"}
    blob = json.dumps({"files": items, "policy": pol_id, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def reuse_names(out: Path, paths: Sequence[Path], names: Sequence[str]) -> list[str]:
    """Output folder names: a bag analysed before into out/bags/<old>/ (its done.json names the same
    bag path) keeps <old>, so that a rerun with other bags next to it (whose names would differ)
    still finds its results; other bags take `names`, made unique against the kept ones."""
    earlier: dict[str, str] = {}
    others = set()  # folders of bags not in this run: never written into
    root = Path(out) / "bags"
    if root.is_dir():
        for d in sorted(root.iterdir()):
            try:
                rec = json.loads((d / "done.json").read_text())
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and rec.get("bag"):
                earlier.setdefault(str(Path(rec["bag"]).resolve()), d.name)
                others.add(d.name)
    kept = [earlier.get(str(Path(p).resolve())) for p in paths]
    taken = {k for k in kept if k} | others
    result = []
    for k, n in zip(kept, names):
        if k:
            result.append(k)
            continue
        m, i = n, 1
        while m in taken:
            m, i = f"{n}-{i}", i + 1
        taken.add(m)
        result.append(m)
    return result


def _done(bag_out: Path, key: str) -> Optional[dict]:
    try:
        d = json.loads((bag_out / "done.json").read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("key") == key else None


# ==== one bag (a Ray task) =======================================================================
def analyze_one(bag: str, out: str, options: dict, key: str) -> dict:
    """The single-bag analysis of `bag` into `out` (as `policy-xai analyze BAG --out OUT ...`); never
    raises for a bad bag: the error is returned. On success writes out/done.json with `key`."""
    from .bags.analyze import AnalyzeOptions, analyze_bag

    t0 = time.perf_counter()
    rec = {"bag": str(bag), "out": str(out), "key": key}
    try:
        s = analyze_bag(AnalyzeOptions.from_dests({**options, "bag": str(bag), "out": str(out)}), quiet=True)
    except Exception as e:  # noqa: BLE001 - reported per bag; the other bags go on
        lines = [ln.strip() for ln in (str(e) or type(e).__name__).splitlines() if ln.strip()]
        rec.update(status="failed", steps=0, error=f"{type(e).__name__}: {lines[0] if lines else ''}",
                   seconds=round(time.perf_counter() - t0, 3))
        from .bags import BagError

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


# ==== many bags ==================================================================================
def code_runtime_env(stage: Path) -> dict:
    """A Ray runtime_env that ships this policy_xai to a cluster's workers: the package as a py_module
    and its shared files (config/, urdf/, launch/, models/) as the working directory, found there
    through POLICY_XAI_SHARE. The workers still need the dependencies (the README's pip install)."""
    import shutil

    import policy_xai

    from .resources import share_dir

    share = share_dir()
    stage = Path(stage)
    for sub in ("config", "urdf", "launch", "models"):
        if (share / sub).is_dir():
            shutil.copytree(share / sub, stage / sub, dirs_exist_ok=True)
    return {"py_modules": [str(Path(policy_xai.__file__).resolve().parent)], "working_dir": str(stage),
            "env_vars": {"POLICY_XAI_SHARE": "."}}


def analyze_bags(bags, options=None, workers: int = 2, ray_address: Optional[str] = None,
                 out: Union[str, Path] = "out/fleet", progress: Union[bool, Callable] = True,
                 hash_bytes: bool = False, resume: bool = True, episode_gap: float = EPISODE_GAP_S,
                 num_gpus: Optional[float] = None, ship_code: bool = False) -> dict:
    """Analyse every bag of `bags` (see expand_bags) in parallel on Ray into out/bags/<name>/, merge
    out/steps.parquet and write out/summary.json; returns the summary. A Ray instance already running
    in this process is used as is; else `ray_address` (a cluster; bags must be on a shared file
    system) or a local instance with `workers` CPUs, shut down at the end. `progress`: a tqdm bar over
    the bags (True), none (False), or a callable(record, done, total) per finished bag. `episode_gap`:
    a pause of at least this many seconds between a bag's steps starts a new episode (steps.parquet's
    `episode` column). `num_gpus` per task: None = 1 when this machine has CUDA (torch.cuda), else 0.
    `ship_code` (with `ray_address`): send this policy_xai and its shared files to the cluster's
    workers (code_runtime_env) instead of using the policy_xai installed there."""
    import tempfile
    import ray
    from tqdm import tqdm

    out = Path(out)
    paths = expand_bags(bags, exclude=[out])
    if not paths:
        raise FileNotFoundError(f"no bag in {bags}")
    opts = analysis_options(options)
    pol = str(opts.get("policy") or "")
    if pol and Path(pol).is_file():  # the workers' working directory may differ (a cluster's, --ship-code)
        opts["policy"] = str(Path(pol).resolve())
    if opts.get("bench"):
        raise ValueError("--bench analyses one bag")
    names = reuse_names(out, paths, bag_names(paths))
    (out / "bags").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    records: dict[str, dict] = {}
    todo = []
    for p, name in zip(paths, names):
        key = content_key(p, opts, hash_bytes)
        bag_out = out / "bags" / name
        d = _done(bag_out, key) if resume else None
        if d is not None:
            records[name] = {**d, "name": name, "resumed": True}
        else:
            todo.append((p, name, key, bag_out))

    started = False
    ray_start = 0.0
    stage = None
    bar = tqdm(total=len(paths), desc="bags", unit="bag", disable=progress is not True, initial=len(records))
    try:
        if todo:
            t_ray = time.perf_counter()
            if ship_code and (ray.is_initialized() or not ray_address):
                raise ValueError("ship_code needs ray_address (and no Ray already running in this process)")
            if not ray.is_initialized():
                if ray_address:
                    env = None
                    if ship_code:
                        stage = Path(tempfile.mkdtemp(prefix="policy_xai_ship_"))
                        env = code_runtime_env(stage)
                    ray.init(address=ray_address, log_to_driver=False, runtime_env=env)
                else:
                    ray.init(num_cpus=int(workers), include_dashboard=False, log_to_driver=False,
                             object_store_memory=200 * 1024 * 1024)
                started = True
            ray_start = time.perf_counter() - t_ray
            gpus = gpus_per_task(num_gpus)
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
                        progress(rec, len(records), len(paths))
    finally:
        bar.close()
        if started:
            ray.shutdown()
        if stage is not None:
            import shutil

            shutil.rmtree(stage, ignore_errors=True)
    wall = time.perf_counter() - t_start
    ordered = [records[n] for n in names]
    merged = merge_steps(out, [r for r in ordered if r["status"] != "failed"], episode_gap)
    dataset = dataset_report(out) if merged else {"figures": [], "stand_out": [], "per_bag": {}}
    analysed = [r for r in ordered if not r["resumed"]]
    new_steps = sum(r.get("steps") or 0 for r in analysed)
    summary = {
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
        "episode_gap_s": float(episode_gap),
        "per_bag_medians": dataset["per_bag"], "stand_out": dataset["stand_out"], "figures": dataset["figures"],
        "workers": None if ray_address else int(workers), "ray_address": ray_address,
        "options": {k: v for k, v in opts.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def episodes_of(steps: Sequence[int], gaps: Sequence[dict], episode_gap: float = 1.0) -> list[int]:
    """Episode index per step: 0 until the first pause of at least `episode_gap` s in the recording
    (a gap of analyze's summary.json: {"after_step", "length_s"}), then 1, ... ."""
    cuts = sorted(int(g["after_step"]) for g in gaps if float(g.get("length_s", 0.0)) >= episode_gap)
    import bisect

    return [bisect.bisect_left(cuts, int(s)) for s in steps]


def merge_steps(out: Path, records: Sequence[dict], episode_gap: float = 1.0) -> int:
    """out/steps.parquet: each bag's ratios (one row per step and method) joined with its importance
    factors and torques per step, with `bag` and `episode` (episodes_of) columns; returns the number of
    rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for r in records:
        d = Path(out, "bags", r["name"])
        if not (d / "ratios.parquet").is_file():
            continue
        ratios = pq.read_table(d / "ratios.parquet")
        imp = pq.read_table(d / "importance.parquet")
        extra = [c for c in imp.column_names if c not in ("step", "stamp_ns", "time")]
        row = {int(s): i for i, s in enumerate(imp.column("step").to_pylist())}
        take = pa.array([row[int(s)] for s in ratios.column("step").to_pylist()], pa.int64())
        t = ratios
        for c in extra:  # ratio rows keep their order (step, method as written)
            t = t.append_column(c, imp.column(c).take(take))
        try:
            gaps = json.loads((d / "summary.json").read_text()).get("gaps", {}).get("gaps", [])
        except (OSError, ValueError, AttributeError):
            gaps = []
        episodes = episodes_of(t.column("step").to_pylist(), gaps, episode_gap)
        t = t.add_column(0, "episode", pa.array(episodes, pa.int32()))
        t = t.add_column(0, "bag", pa.array([r["name"]] * len(t), pa.string()))
        tables.append(t)
    if not tables:
        (Path(out) / "steps.parquet").unlink(missing_ok=True)
        return 0
    table = pa.concat_tables(tables, promote_options="default")
    pq.write_table(table, Path(out) / "steps.parquet")
    return len(table)


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


def stage_seconds(records: Sequence[dict]) -> dict:
    """Where the analysed bags' task time went (s, summed over bags): reading + pairing (decode),
    importance factors, explanation, and the rest (tables, figures, output bag, start-up), so the
    limit of a run is visible."""
    tot = {"read_and_pair": 0.0, "importance": 0.0, "explain": 0.0, "other": 0.0, "task": 0.0}
    for r in records:
        t, sec = r.get("timing") or {}, r.get("seconds")
        if not t or sec is None:
            continue
        parts = [float(t.get(k) or 0.0) for k in ("read_and_pair_s", "importance_s", "explain_s")]
        for k, v in zip(("read_and_pair", "importance", "explain"), parts):
            tot[k] += v
        tot["other"] += max(0.0, float(sec) - sum(parts))
        tot["task"] += float(sec)
    return {k: round(v, 3) for k, v in tot.items()}


def dataset_report(out: Path, z_limit: float = STAND_OUT_Z) -> dict:
    """From out/steps.parquet: per bag and group the median ratio (first method), the bags that stand
    out (robust z of their median against the other bags' medians), and out/figures/ratios_per_bag.png
    (one box per bag and group, stand-outs in red). Returns {"per_bag", "stand_out", "figures"}."""
    import numpy as np
    import pyarrow.parquet as pq

    from .figures import ratio_distributions

    table = pq.read_table(Path(out) / "steps.parquet")
    cols = table.column_names
    methods = list(dict.fromkeys(table.column("method").to_pylist()))
    if not methods:
        return {"per_bag": {}, "stand_out": [], "figures": []}
    method = methods[0]
    fixed = {"bag", "episode", "step", "stamp_ns", "time", "method"}
    groups = [c for c in cols if c not in fixed and "/" not in c]
    meth = np.asarray(table.column("method").to_pylist())
    bag_col = np.asarray(table.column("bag").to_pylist())
    sel = meth == method
    per_bag: dict = {}
    values: dict = {}
    for b in dict.fromkeys(bag_col[sel].tolist()):
        m = sel & (bag_col == b)
        values[b] = {g: np.asarray(table.column(g).to_numpy(zero_copy_only=False), float)[m] for g in groups}
        per_bag[b] = {g: (float(np.nanmedian(v)) if np.isfinite(v).any() else None) for g, v in values[b].items()}
    stand_out = []
    if len(per_bag) >= 3:
        for g in groups:
            meds = {b: v[g] for b, v in per_bag.items() if v[g] is not None}
            if len(meds) < 3:
                continue
            arr = np.asarray(list(meds.values()))
            for b, v in meds.items():
                others = arr[[k != b for k in meds]]
                c = float(np.median(others))
                mad = 1.4826 * float(np.median(np.abs(others - c)))
                z = (v - c) / mad if mad > 0 else (float("inf") if abs(v - c) > 0.05 else 0.0)
                if abs(z) >= z_limit and abs(v - c) >= 0.05:
                    stand_out.append({"bag": b, "group": g, "method": method, "median": round(v, 4),
                                      "others_median": round(c, 4),
                                      "robust_z": round(z, 2) if np.isfinite(z) else None})
    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(exist_ok=True)
    marked = sorted({s["bag"] for s in stand_out})
    f = ratio_distributions(fig_dir / "ratios_per_bag.png", values, groups, marked,
                            title=f"relevance ratios per bag ({method}); red: stands out")
    return {"per_bag": per_bag, "stand_out": stand_out, "figures": [str(f.relative_to(out))]}


def bench_fleet(n_bags: int = 8, steps: int = 120, workers: Sequence[int] = (1, 2), methods: str = "dtd",
                storage: str = "mcap", spec: str = "small", sequential: bool = True, log=print) -> list[dict]:
    """bags/s and steps/s of analyze_bags over `n_bags` generated bags of `steps` steps, once per
    worker count (a fresh local Ray instance each, nothing resumed), and, with `sequential`, the same
    bags analysed one after another in this process without Ray (torch with 1 thread, as each Ray
    task has). Rows: mode, workers, bags, steps, wall_s, bags_per_s, steps_per_s, ray_start_s and the
    share of task time per stage (stage_seconds)."""
    import tempfile

    import torch

    from . import bags as bagmod
    from .spec import load_spec

    s = load_spec(spec)
    rows = []
    with tempfile.TemporaryDirectory(prefix="policy_xai_bench_fleet_") as tmp:
        src = Path(tmp) / "in"
        for i in range(int(n_bags)):
            bagmod.write_synthetic_bag(src / f"bag{i:03d}", s, int(steps), storage, seed=i)
        opts = ["--no-bag", "--methods", methods, "--policy", spec]

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

        if sequential:
            from .bags.analyze import AnalyzeOptions, analyze_bag

            prev = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                t0 = time.perf_counter()
                recs = []
                for b in sorted(src.iterdir()):
                    t1 = time.perf_counter()
                    one = analyze_bag(AnalyzeOptions(str(b), out=str(Path(tmp) / "seq" / b.name), policy=spec,
                                                     methods=methods, write_bag=False, video=False), quiet=True)
                    recs.append({"timing": one["timing"], "seconds": time.perf_counter() - t1, "steps": one["steps"]})
                wall = time.perf_counter() - t0
            finally:
                torch.set_num_threads(prev)
            rows.append(row("sequential", 1, {"totals": {"bags": len(recs), "steps": sum(r["steps"] for r in recs),
                                                         "wall_s": round(wall, 3)},
                                              "stages_s": stage_seconds(recs), "ray_start_s": 0.0}))
        for w in workers:
            summ = analyze_bags([src], opts, workers=int(w), out=Path(tmp) / f"out{w}", progress=False, resume=False)
            rows.append(row("ray", int(w), summ))
    return rows
