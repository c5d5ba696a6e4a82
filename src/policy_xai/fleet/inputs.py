"""The fleet's inputs: bag paths, folders of bags, globs and list files -> bags, each once, with a
unique output folder name per bag."""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

STORAGE_SUFFIXES = (".mcap", ".db3")
_GLOB = set("*?[")


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
