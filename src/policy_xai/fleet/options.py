"""The fleet's per-bag analysis options (the library's AnalyzeOptions, with the bag and the output
folder set per bag), the content key that decides whether a bag is done, and the output folder names
kept across reruns."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from ..bags.analyze import AnalyzeOptions
from ..files import file_sha256 as _sha256

# Entries of an `analyze` Namespace (or a dict made from one) that are no option of the per-bag
# analysis, or that the fleet sets per bag: left out of a mapping given as options
_NOT_OPTIONS = {"bag", "bags", "out", "func", "command", "workers", "ray_address", "episode_gap", "num_gpus",
                "ship_code"}
# AnalyzeOptions fields that do not change the analysis' numbers: not part of the content key
_NOT_KEYED = ("bag", "out", "device")  # the device: the same numbers to float rounding


def analysis_options(options: Union[None, AnalyzeOptions, Mapping[str, Any]] = None) -> AnalyzeOptions:
    """The per-bag analysis options, typed (bag and out empty: the fleet sets them per bag):

    * None: every default of AnalyzeOptions (those of `policy-xai analyze`), without videos;
    * an AnalyzeOptions: as it is (its video setting too);
    * a mapping of AnalyzeOptions field names, or of the `analyze` command's dests (no_bag, no_video,
      topic_<key>; AnalyzeOptions.from_dests): videos are off unless asked (video=True, which wins
      over no_video as the command's --video does, or no_video=False). Names of neither kind are a
      ValueError; entries the fleet sets itself (bag, out, workers, ...) are left out.

    Command-line tokens are no input here: `policy-xai analyze` parses them into an AnalyzeOptions."""
    if isinstance(options, AnalyzeOptions):
        return replace(options, bag="", out="")
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"analysis options are an AnalyzeOptions or a mapping of option names, not "
                        f"{type(options).__name__} (command-line tokens are parsed by `policy-xai analyze`)")
    d = {k: v for k, v in options.items() if k not in _NOT_OPTIONS}
    if "video" in d:
        d.pop("no_video", None)
    elif "no_video" not in d:
        d["video"] = False
    return AnalyzeOptions.from_dests({**d, "bag": "", "out": ""}, strict=True)


def keyed_options(options: AnalyzeOptions) -> dict:
    """The options as a JSON-able dict without the bag and the output folder (summary.json's
    "options"); `content_key` leaves the device out too."""
    return {k: v for k, v in asdict(options).items() if k not in ("bag", "out")}


def content_key(bag: Path, options: Union[AnalyzeOptions, Mapping[str, Any]], hash_bytes: bool = False) -> str:
    """sha256 of (each file of the bag: name and size+mtime, or its bytes' sha256 with hash_bytes; the
    policy file's sha256 when the policy is a file; the analysis options but the device)."""
    if not isinstance(options, AnalyzeOptions):
        options = analysis_options(options)
    bag = Path(bag)
    files = [bag] if bag.is_file() else sorted(p for p in bag.rglob("*") if p.is_file())
    items = []
    for f in files:
        st = f.stat()
        rel = f.name if bag.is_file() else str(f.relative_to(bag))
        items.append([rel, _sha256(f)] if hash_bytes else [rel, st.st_size, st.st_mtime_ns])
    pol = str(options.policy or "")
    pol_id = _sha256(Path(pol)) if pol and Path(pol).is_file() else pol
    opts = {k: v for k, v in asdict(options).items() if k not in _NOT_KEYED}
    blob = json.dumps({"files": items, "policy": pol_id, "options": opts}, sort_keys=True, default=str)
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


def done_record(bag_out: Path, key: str) -> Optional[dict]:
    """bag_out/done.json when it holds `key` (the bag was analysed with these inputs), else None."""
    try:
        d = json.loads((bag_out / "done.json").read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and d.get("key") == key else None
