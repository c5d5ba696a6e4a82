"""The generated blocks of README.md and docs/*.md: the block syntax, its parser, the sources it reads,
the renderer registry and the writer (`render_docs`); the renderers are policy_xai.docs_numbers.renderers.

A generated block in a Markdown file, rewritten in place by `render_docs` (command: `policy-xai docs
render [--check]`, commands/docs.py):

    <!-- generated: KIND SOURCES ARG ... opt=value ... -->
    (the rendered text)
    <!-- end generated -->

or inline, inside a sentence: `... <!-- generated: value docs/x.json a/b fmt=.1f -->1.3<!-- end
generated --> ms ...` (no line break after the opening marker). KIND names a renderer (`RENDERERS`,
one small function per kind, registered with `@renderer`). SOURCES is one comma-separated token of
files relative to the repository root, each read once per run:

    docs/x.json                              the JSON a command wrote (`--json`)
    docs/x.md#NAME                           the text between `<!-- NAME -->` and `<!-- /NAME -->` of
                                             a Markdown file (a table there reads as a list of rows)
    models/x.safetensors                     a weights file's metadata (JSON values decoded)

then the kind's arguments and `name=value` options (shell quoting for spaces). A block never holds
numbers of its own: to change one, re-run the command that writes its source, then `policy-xai docs
render`. `--check` (test/test_docs_numbers.py) fails when a file differs from what would be rendered.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import json
import math
import re
import shlex
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

#: the Markdown files holding generated blocks (relative to the repository root)
DOC_GLOBS = ("README.md", "docs/*.md")

BLOCK = re.compile(r"<!-- generated: (?P<args>.*?) -->(?P<body>.*?)<!-- end generated -->", re.S)


class DocsNumbersError(ValueError):
    """A block that cannot be rendered (unknown kind, missing source, bad path): one line naming it."""


@dataclass
class Block:
    """One generated block: where it is, what it renders and from what."""

    file: str
    line: int
    kind: str
    refs: list[str]
    args: list[str]
    opts: dict[str, str]
    inline: bool
    sources: list = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return f"{self.file}:{self.line}: generated block '{' '.join([self.kind, ','.join(self.refs)]).strip()}'"

    def fail(self, why: str) -> DocsNumbersError:
        return DocsNumbersError(f"{self.label}: {why}")

    def opt(self, name: str, default: str = "") -> str:
        return self.opts.get(name, default)


@dataclass(frozen=True)
class Renderer:
    fn: Callable[[Block], str]
    sources: bool
    options: tuple[str, ...]


RENDERERS: dict[str, Renderer] = {}


def renderer(kind: str, sources: bool = True, options: tuple[str, ...] = ()):
    """Register `fn(block) -> str` as the renderer of KIND; `sources=False`: the block names no files;
    `options`: the `name=value` arguments it takes (other tokens are positional)."""

    def add(fn):
        RENDERERS[kind] = Renderer(fn, sources, tuple(options))
        return fn

    return add


# ---- sources ------------------------------------------------------------------------------------------
def _safetensors_metadata(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n)).get("__metadata__", {}) or {}
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def md_region(text: str, name: str) -> "str | None":
    """The text between `<!-- NAME -->` and `<!-- /NAME -->`, None when there is no such region."""
    m = re.search(rf"<!-- {re.escape(name)} -->\n(.*?)<!-- /{re.escape(name)} -->", text, re.S)
    return m.group(1) if m else None


def md_table(text: str) -> list[dict]:
    """The first Markdown table in `text` as a list of rows (header cell -> cell text)."""
    lines = [ln.strip() for ln in text.splitlines()]
    for i, ln in enumerate(lines[:-1]):
        if ln.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]):
            head = _cells(ln)
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(head, _cells(row))))
            return rows
    return []


def _cells(line: str) -> list[str]:
    line = re.sub(r"<!--.*?-->", "", line)  # the markers of inline generated values
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def load_source(root: Path, ref: str):
    path, _, part = ref.partition("#")
    p = root / path
    if not p.is_file():
        raise FileNotFoundError(ref)
    if p.suffix == ".json":
        return json.loads(p.read_text())
    if p.suffix == ".safetensors":
        return _safetensors_metadata(p)
    if p.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(p.read_text())))
    text = p.read_text()
    if not part:
        return text
    region = md_region(text, part)
    if region is None:
        raise LookupError(f"{path} has no region <!-- {part} --> ... <!-- /{part} -->")
    return region


# ---- the files ------------------------------------------------------------------------------------------
def parse_block(file: str, line: int, args: str, inline: bool) -> Block:
    try:
        tokens = shlex.split(args)
    except ValueError as e:
        raise DocsNumbersError(f"{file}:{line}: generated block: bad arguments {args!r} ({e})") from None
    if not tokens or tokens[0] not in RENDERERS:
        kind = tokens[0] if tokens else ""
        raise DocsNumbersError(f"{file}:{line}: generated block: unknown kind {kind!r} "
                               f"(known: {', '.join(sorted(RENDERERS))})")
    r = RENDERERS[tokens[0]]
    rest = tokens[1:]
    refs = []
    if r.sources:
        if not rest:
            raise DocsNumbersError(f"{file}:{line}: generated block '{tokens[0]}': no source file given")
        refs = rest.pop(0).split(",")
    opts, pos = {}, []
    for t in rest:
        name, eq, value = t.partition("=")
        if eq and name in r.options:
            opts[name] = value
        else:
            pos.append(t)
    return Block(file, line, tokens[0], refs, pos, opts, inline)


def render_text(text: str, root: Path, file: str = "<text>", cache: "dict | None" = None) -> tuple[str, list[Block]]:
    """`text` with every generated block rendered again, and the blocks whose content changed."""
    cache = {} if cache is None else cache
    out, stale, pos = [], [], 0
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        inline = not m.group("body").startswith("\n")
        b = parse_block(file, line, m.group("args"), inline)
        if inline and "|" in m.group("args") and text[text.rfind("\n", 0, m.start()) + 1:].startswith("|"):
            raise b.fail("a '|' in a block's arguments would split the table row it is in")
        for ref in b.refs:
            if ref not in cache:
                try:
                    cache[ref] = load_source(root, ref)
                except FileNotFoundError:
                    raise b.fail(f"source file {ref.partition('#')[0]} not found (run the command that writes "
                                 "it, see the text before the block)") from None
                except (LookupError, ValueError, OSError) as e:
                    raise b.fail(f"source {ref}: {e}") from None
            b.sources.append(cache[ref])
        try:
            body = RENDERERS[b.kind].fn(b)
        except DocsNumbersError:
            raise
        except (LookupError, ValueError, TypeError, ArithmeticError) as e:
            raise b.fail(f"{type(e).__name__}: {e}") from None
        body = body.rstrip("\n")
        if inline:
            if "\n" in body:
                raise b.fail("an inline block rendered more than one line")
        else:
            body = "\n" + body + "\n"
        if body != m.group("body"):
            stale.append(b)
        out += [text[pos:m.start("body")], body]
        pos = m.end("body")
    out.append(text[pos:])
    return "".join(out), stale


def doc_files(root: Path) -> list[Path]:
    files = []
    for g in DOC_GLOBS:
        files += sorted(root.glob(g))
    return [f for f in files if f.is_file()]


def render_docs(root: Path, files=None, check: bool = False) -> list[Block]:
    """Render every generated block of `files` (default: README.md and docs/*.md) from its sources.
    Writes the files that change unless `check`; returns the stale blocks (empty = all in sync).
    Every file is rendered before any is written, so an error leaves all of them as they were."""
    root = Path(root)
    files = doc_files(root) if files is None else [Path(f) if Path(f).is_absolute() else root / f for f in files]
    cache, new, stale = {}, {}, []
    for f in files:
        text = f.read_text()
        rel = f.relative_to(root).as_posix() if f.is_relative_to(root) else str(f)
        rendered, s = render_text(text, root, rel, cache)
        stale += s
        if rendered != text:
            new[f] = rendered
    if not check:
        for f, text in new.items():
            f.write_text(text)
    return stale


# ---- formatting and paths --------------------------------------------------------------------------------
def number(v) -> "float | None":
    """A cell or JSON value as a float (None for empty cells, text, booleans)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).strip().strip("*").rstrip("x%"))
    except ValueError:
        return None


def fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return format(v, spec)


def _match(item, cond: str) -> bool:
    for part in cond.split("&"):
        neg = "!=" in part
        key, _, pat = part.partition("!=" if neg else "=")
        val = item.get(key) if isinstance(item, dict) else None
        hit = val is not None and any(fnmatch.fnmatchcase(str(val), p) for p in pat.split("|"))
        if hit == neg:
            return False
    return True


def select(data, path: str) -> list:
    """The values at `path` in `data`: segments separated by '/'. On a dict: a key, a key pattern
    (fnmatch, `*`: every value) or `!pattern` (the other keys). On a list: an index, `*`, or filters
    keeping the matching items, `key=pattern` (fnmatch; `a|b` either), `key!=pattern` (none of them),
    joined by `&`. A Markdown region reads as its first table. E.g. `results/spec=paper/rows/row=dtd/ms`
    in a `bench attribution --json` file."""
    items = [data]
    for seg in [s for s in path.split("/") if s]:
        nxt = []
        for it in items:
            if isinstance(it, str) and "|" in it:
                it = md_table(it)
            if isinstance(it, dict):
                if seg in it:
                    nxt.append(it[seg])
                elif seg.startswith("!"):
                    nxt += [v for k, v in it.items() if not fnmatch.fnmatchcase(k, seg[1:])]
                elif any(c in seg for c in "*?["):
                    nxt += [v for k, v in it.items() if fnmatch.fnmatchcase(k, seg)]
            elif isinstance(it, list):
                if seg == "*":
                    nxt += it
                elif re.fullmatch(r"-?\d+", seg):
                    if -len(it) <= int(seg) < len(it):
                        nxt.append(it[int(seg)])
                elif "=" in seg:
                    nxt += [x for x in it if _match(x, seg)]
        items = nxt
        if not items:
            raise LookupError(f"nothing at {path!r} (segment {seg!r})")
    return items


def span(values, spec: str, sep: str = "-", outward: bool = False) -> str:
    """One formatted number, or `min-max` of several (equal once formatted: one). `outward`: the
    minimum rounded down and the maximum up at the format's precision (a range that holds them all)."""
    nums = [number(v) for v in values]
    nums = [v for v in nums if v is not None]
    if not nums:
        raise ValueError("no number there")
    lo, hi = min(nums), max(nums)
    if outward:
        digits = int(m.group(1)) if (m := re.search(r"\.(\d+)f", spec)) else 0
        q = 10 ** digits
        lo, hi = math.floor(lo * q + 1e-9) / q, math.ceil(hi * q - 1e-9) / q
    lo, hi = fmt(lo, spec), fmt(hi, spec)
    return lo if lo == hi else f"{lo}{sep}{hi}"


def _table(head, rows, align=None) -> str:
    align = align or ["---"] + ["---:"] * (len(head) - 1)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)
