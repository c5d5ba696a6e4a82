"""Many bags at once: `policy-xai analyze` over a fleet's recordings in parallel on Ray (issue 14).

One Ray task per bag runs the single-bag analysis (policy_xai.commands.analyze.analyze) into
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
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

STORAGE_SUFFIXES = (".mcap", ".db3")
# Namespace entries that are not options of the per-bag analysis (or that fleet sets per bag)
_NOT_OPTIONS = {"bag", "bags", "out", "func", "command", "workers", "ray_address", "video", "bench"}
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


def expand_bags(inputs: Union[str, Path, Iterable[Union[str, Path]]], exclude: Sequence[Union[str, Path]] = ()) -> list[Path]:
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    blob = json.dumps({"files": items, "policy": pol_id, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    from .cli import build_parser
    from .commands.analyze import analyze

    t0 = time.perf_counter()
    rec = {"bag": str(bag), "out": str(out), "key": key}
    try:
        args = build_parser().parse_args(["analyze", str(bag), "--out", str(out)])
        for k, v in options.items():
            setattr(args, k, v)
        s = analyze(args, quiet=True)
    except Exception as e:  # noqa: BLE001 - reported per bag; the other bags go on
        lines = [ln.strip() for ln in (str(e) or type(e).__name__).splitlines() if ln.strip()]
        rec.update(status="failed", steps=0, error=f"{type(e).__name__}: {lines[0] if lines else ''}",
                   seconds=round(time.perf_counter() - t0, 3))
        from .bags import BagError

        if isinstance(e, BagError):  # the bag's content (nothing readable, topics missing): the same next time
            Path(out).mkdir(parents=True, exist_ok=True)
            Path(out, "done.json").write_text(json.dumps(rec, indent=2, default=str))
        return rec
    rec.update(status="truncated" if s.get("truncated") else "ok", steps=int(s["steps"]),
               error=s.get("truncated"), seconds=round(time.perf_counter() - t0, 3), storage=s.get("storage"),
               reader=s.get("reader"), methods=s.get("methods"))
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
def analyze_bags(bags, options=None, workers: int = 2, ray_address: Optional[str] = None,
                 out: Union[str, Path] = "out/fleet", progress: Union[bool, Callable] = True,
                 hash_bytes: bool = False, resume: bool = True) -> dict:
    """Analyse every bag of `bags` (see expand_bags) in parallel on Ray into out/bags/<name>/, merge
    out/steps.parquet and write out/summary.json; returns the summary. A Ray instance already running
    in this process is used as is; else `ray_address` (a cluster; bags must be on a shared file
    system) or a local instance with `workers` CPUs, shut down at the end. `progress`: a tqdm bar over
    the bags (True), none (False), or a callable(record, done, total) per finished bag."""
    import ray
    from tqdm import tqdm

    out = Path(out)
    paths = expand_bags(bags, exclude=[out])
    if not paths:
        raise FileNotFoundError(f"no bag in {bags}")
    opts = analysis_options(options)
    if opts.get("bench"):
        raise ValueError("--bench analyses one bag")
    names = bag_names(paths)
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
    bar = tqdm(total=len(paths), desc="bags", unit="bag", disable=progress is not True, initial=len(records))
    try:
        if todo:
            if not ray.is_initialized():
                if ray_address:
                    ray.init(address=ray_address, log_to_driver=False)
                else:
                    ray.init(num_cpus=int(workers), include_dashboard=False, log_to_driver=False,
                             object_store_memory=200 * 1024 * 1024)
                started = True
            task = _remote()
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
    wall = time.perf_counter() - t_start
    ordered = [records[n] for n in names]
    merged = merge_steps(out, [r for r in ordered if r["status"] != "failed"])
    analysed = [r for r in ordered if not r["resumed"]]
    new_steps = sum(r.get("steps") or 0 for r in analysed)
    summary = {
        "bags": [{k: r.get(k) for k in ("name", "bag", "status", "steps", "error", "seconds", "resumed", "storage",
                                         "reader")} for r in ordered],
        "totals": {"bags": len(ordered), "ok": sum(r["status"] == "ok" for r in ordered),
                   "truncated": sum(r["status"] == "truncated" for r in ordered),
                   "failed": sum(r["status"] == "failed" for r in ordered),
                   "resumed": sum(bool(r["resumed"]) for r in ordered),
                   "steps": sum(r.get("steps") or 0 for r in ordered), "rows_in_steps_parquet": merged,
                   "wall_s": round(wall, 3), "analysed_bags_per_s": round(len(analysed) / wall, 3) if wall else None,
                   "analysed_steps_per_s": round(new_steps / wall, 2) if wall else None},
        "workers": None if ray_address else int(workers), "ray_address": ray_address,
        "options": {k: v for k, v in opts.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def merge_steps(out: Path, records: Sequence[dict]) -> int:
    """out/steps.parquet: each bag's ratios (one row per step and method) joined with its importance
    factors and torques per step, with a `bag` column; returns the number of rows."""
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
        t = t.add_column(0, "bag", pa.array([r["name"]] * len(t), pa.string()))
        tables.append(t)
    if not tables:
        (Path(out) / "steps.parquet").unlink(missing_ok=True)
        return 0
    table = pa.concat_tables(tables, promote_options="default")
    pq.write_table(table, Path(out) / "steps.parquet")
    return len(table)
