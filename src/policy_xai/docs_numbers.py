"""The numbers in README.md and docs/*.md, generated from what the commands stored (one source of truth).

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


# ---- inline values -----------------------------------------------------------------------------------------
@renderer("value", options=("fmt", "scale", "offset", "sep", "round", "group"))
def render_value(b: Block) -> str:
    """`value SRC[,SRC...] PATH [PATH...] [fmt=.2f] [scale=100] [offset=-1] [sep=-] [round=out]`: the
    numbers at the PATHs (`select`, in every source) as `(v + offset) * scale` in format `fmt`; one
    number, or `min-max` of several (`round=out`: the range rounded outwards; `group=' '`: thousands
    separated by that text, with a `fmt` such as `,.0f`)."""
    if not b.args:
        raise b.fail("value takes one or more PATHs")
    scale, offset = float(b.opt("scale", "1")), float(b.opt("offset", "0"))
    found = [v for src in b.sources for path in b.args for v in select(src, path)]
    found = [x for v in found for x in (v if isinstance(v, list) else [v])]  # a list of numbers: each
    vals = [(number(v) + offset) * scale for v in found if number(v) is not None]
    out = span(vals, b.opt("fmt", "g"), b.opt("sep", "-"), b.opt("round") == "out")
    return out.replace(",", b.opts["group"]) if "group" in b.opts else out


@renderer("ratio", options=("fmt", "sep"))
def render_ratio(b: Block) -> str:
    """`ratio SRC[,SRC...] PATH_A PATH_B [fmt=.2f]`: the number at PATH_A / the number at PATH_B (one
    ratio per source; several give `min-max`)."""
    if len(b.args) != 2:
        raise b.fail("ratio takes PATH_A PATH_B")
    out = []
    for src in b.sources:
        a, c = (select(src, p) for p in b.args)
        if len(a) != 1 or len(c) != 1:
            raise b.fail("ratio: each path must give one number per source")
        out.append(number(a[0]) / number(c[0]))
    return span(out, b.opt("fmt", ".2f"), b.opt("sep", "-"))


@renderer("include")
def render_include(b: Block) -> str:
    """`include FILE.md#NAME`: the text of a region kept in another file (one text, shown twice)."""
    if not isinstance(b.sources[0], str):
        raise b.fail("include needs a Markdown region FILE.md#NAME")
    if "<!-- generated:" in b.sources[0]:
        raise b.fail(f"{b.refs[0]} holds generated blocks: include its sources instead (blocks do not nest)")
    return b.sources[0].strip("\n")


# ---- policy-xai bench attribution (--json) -------------------------------------------------------------------
BENCH_PARTS = ("machine", "summary", "cases", "footnote", "goals")


def bench_sections(data) -> list[tuple[str, str, str]]:
    """`attribution_bench.markdown(data)` cut into (part, spec, text): one renderer for the command's
    `--markdown` and for the docs."""
    from . import attribution_bench as ab

    paras = ab.markdown(data).strip("\n").split("\n\n")
    out, i = [("machine", "", paras[0])], 1
    while i < len(paras):
        p = paras[i]
        m = re.match(r"\*\*(.+), B=\d+\*\* ", p)
        if p.startswith("**All networks**"):
            out.append(("summary", "", p + "\n\n" + paras[i + 1]))
            i += 2
        elif m:
            out.append(("cases", m.group(1), p + "\n\n" + paras[i + 1]))
            i += 2
        elif p.startswith("| goal |"):
            out.append(("goals", "", p))
            i += 1
        else:
            out.append(("footnote", "", p))
            i += 1
    return out


@renderer("bench", options=("parts", "specs"))
def render_bench(b: Block) -> str:
    """`bench SRC [parts=machine,summary,cases,footnote,goals] [specs=small|paper]`: the tables of
    `policy-xai bench attribution --from-json SRC --markdown` (specs: the per-network tables shown)."""
    parts = [p for p in b.opt("parts", ",".join(BENCH_PARTS)).split(",") if p]
    bad = [p for p in parts if p not in BENCH_PARTS]
    if bad:
        raise b.fail(f"unknown parts {bad} (known: {', '.join(BENCH_PARTS)})")
    specs = [s for s in b.opt("specs").split("|") if s]  # spec names may hold commas
    keep = [t for part, spec, t in bench_sections(b.sources[0])
            if part in parts and (part != "cases" or not specs or spec in specs)]
    return "\n\n".join(keep)


_BENCH_FIELDS = {"ms": (".1f", ""), "x_fwd_bwd": (".2f", " x f+b"), "vs_ours": (".1f", " vs ours"),
                 "ms_per_obs": (".3f", " ms/obs"), "img_share": (".3f", " img share"),
                 "softmax_pass": (".3f", " softmax pass")}


@renderer("bench-table", options=("cols", "labels", "first", "specs"))
def render_bench_table(b: Block) -> str:
    """`bench-table SRC cols=ROW[:FIELD],... [labels=...] [first=network] [specs=...]`: one row per
    network of a `bench attribution --json` file, one column per timed row (FIELD: ms, the default,
    x_fwd_bwd, vs_ours, ...)."""
    cols = [c for c in b.opt("cols").split(",") if c]
    if not cols:
        raise b.fail("bench-table needs cols=ROW[:FIELD],...")
    labels = b.opt("labels").split(",") if b.opt("labels") else []
    if labels and len(labels) != len(cols):
        raise b.fail(f"{len(labels)} labels for {len(cols)} cols")
    specs = [s for s in b.opt("specs").split("|") if s]  # spec names may hold commas
    head, fields = [b.opt("first", "network")], []
    for i, c in enumerate(cols):
        row, _, f = c.partition(":")
        f = f or "ms"
        if f not in _BENCH_FIELDS:
            raise b.fail(f"unknown field {f!r} (known: {', '.join(_BENCH_FIELDS)})")
        fields.append((row, f))
        head.append(labels[i] if labels else row + _BENCH_FIELDS[f][1])
    rows = []
    cases = b.sources[0]["results"]
    for case in sorted(cases, key=lambda c: specs.index(c["spec"])) if specs else cases:
        if specs and case["spec"] not in specs:
            continue
        by = {r["row"]: r for r in case["rows"]}
        cells = [case["spec"]]
        for row, f in fields:
            v = by.get(row, {}).get(f)
            cells.append(fmt(v, _BENCH_FIELDS[f][0]) + ("x" if f == "vs_ours" and v is not None else ""))
        rows.append(cells)
    return _table(head, rows)


# ---- policy-xai latency (--json) ------------------------------------------------------------------------------
@renderer("latency")
def render_latency(b: Block) -> str:
    """`latency SRC,SRC...`: one row per configuration of `policy-xai latency` JSON files, grouped by
    spec (first appearance), files in the given order within a spec."""
    entries = [e for src in b.sources for e in src]
    order = list(dict.fromkeys(e["spec"] for e in entries))
    entries.sort(key=lambda e: order.index(e["spec"]))  # stable: file order within a spec
    head = ["spec", "camera", "rule precision", "camera Hz", "explained Hz", "heatmap Hz",
            "stamp -> relevance p50 / p99 ms", "stamp -> heatmap p50 / p99 ms", "skipped (behind)"]
    rows = [[e["spec"], f"{e['size']}x{e['size']}", e["precision"], fmt(e["camera_hz"], ".1f"),
             fmt(e["explained_hz"], ".1f"), fmt(e["heatmap_hz"], ".1f"),
             f"{e['relevance_p50_ms']:.0f} / {e['relevance_p99_ms']:.0f}",
             f"{e['heatmap_p50_ms']:.0f} / {e['heatmap_p99_ms']:.0f}", str(e["skipped_behind"])] for e in entries]
    return _table(head, rows, ["---"] * len(head))


# ---- policy-xai bench-fleet (--json) -------------------------------------------------------------------------
@renderer("fleet")
def render_fleet(b: Block) -> str:
    """`fleet SRC,SRC... LABEL LABEL...`: one row per `bench-fleet` JSON file (LABEL: its methods):
    steps/s sequential and on Ray per worker count (x the 1-worker rate), and the task time shares."""
    if len(b.args) != len(b.sources):
        raise b.fail(f"{len(b.sources)} sources but {len(b.args)} labels")
    workers = sorted({e["workers"] for src in b.sources for e in src if e["mode"] == "ray"})
    head = ["methods", "sequential, no Ray"] + [f"Ray, {w} worker{'s' if w > 1 else ''}" for w in workers]
    head.append("task time: decode / explain / other")
    rows = []
    for label, src in zip(b.args, b.sources):
        seq = [e for e in src if e["mode"] == "sequential"]
        ray = {e["workers"]: e for e in src if e["mode"] == "ray"}
        cells = [label, f"{seq[0]['steps_per_s']:.1f} steps/s" if seq else ""]
        for w in workers:
            e = ray.get(w)
            if e is None:
                cells.append("")
                continue
            c = f"{e['steps_per_s']:.1f}"
            if w > 1 and 1 in ray:
                c += f" ({e['steps_per_s'] / ray[1]['steps_per_s']:.2f}x)"
            cells.append(c)
        shares = [span([e[k] * 100 for e in src], ".0f") for k in ("read_and_pair_share", "explain_share",
                                                                      "other_share")]
        cells.append(" / ".join(shares) + " %")
        rows.append(cells)
    return _table(head, rows, ["---"] + ["---:"] * (len(head) - 2) + ["---"])


# ---- policy-xai faithfulness (docs/faithfulness.md's summary, put there by scripts/faithfulness_docs.py) -----
FAITHFULNESS_METHODS = ("dtd", "rap", "gbp", "gradient", "gradcam", "ig", "ig_occlusion", "occlusion_net",
                        "occlusion_net_refined", "random")
#: (column of the full table, title of the README's table)
FAITHFULNESS_MEASURES = (("del. med", "deletion AUC"), ("del. ROAD", "deletion AUC (ROAD)"),
                         ("pointing", "pointing"), ("top-k", "top-k"), ("cfg rank", "cfg rank"))


@renderer("faithfulness-tables")
def render_faithfulness_tables(b: Block) -> str:
    """`faithfulness-tables docs/faithfulness.md#faithfulness:summary`: the README's condensed view of
    the full faithfulness table, one small table (method x task) per measure."""
    rows = md_table(b.sources[0])
    if not rows:
        raise b.fail("no table in the source region")
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    by = {(r["task"], r["method"]): r for r in rows}
    out = []
    for key, title in FAITHFULNESS_MEASURES:
        body = []
        for m in FAITHFULNESS_METHODS:
            cells = [fmt(number(by.get((t, m), {}).get(key)), ".2f") for t in tasks]
            if any(cells):
                body.append([f"`{m}`"] + cells)
        out.append(_table([title] + tasks, body))
    return "\n\n".join(out)


# ---- policy-xai states find / validate (--json) ------------------------------------------------------------
@renderer("states-validate")
def render_states_validate(b: Block) -> str:
    """`states-validate FIND,VALIDATE[,FIND,VALIDATE...] LABEL...`: per `states find` summary and the
    `states validate` JSON of its states, one row (LABEL: which state model / search)."""
    if len(b.sources) % 2 or len(b.args) != len(b.sources) // 2:
        raise b.fail("states-validate takes FIND,VALIDATE pairs and one label per pair")
    head = ["state model", "found gap median (at the starts; real states median, 99 %)", "nearest real RMS",
            "true gap at the start: found / random (`state`)", "`state` starts: policy fails, found / random",
            "teacher fails there, found / random",
            "`place` starts: policy fails, found / random (teacher: 0 everywhere)",
            "decoded places (nearest named place)"]

    def fails(part, teacher=False):
        k = "teacher_success" if teacher else "success"
        return f"{part[k].count(False)}/{len(part[k])}"

    rows = []
    for i, label in enumerate(b.args):
        find, val = b.sources[2 * i], b.sources[2 * i + 1]
        pct = find["real"]["percentiles"]
        rms = sorted(find["realism"]["nearest_real_rms"])
        n = len(rms)
        rms_med = (rms[n // 2] + rms[(n - 1) // 2]) / 2
        st, pl = val["state"], val["place"]
        places = ", ".join(f"{k} {v}" for k, v in val["decoded"]["nearest_place_counts"].items())
        rows.append([
            label,
            f"{find['found']['median']:.3f} ({find['found']['start_median']:.3f}; {pct['50']:.3f}, {pct['99']:.3f})",
            f"{rms_med:.3f}",
            f"{st['found']['true_gap_at_start_median']:.3f} / {st['random']['true_gap_at_start_median']:.3f}",
            f"**{fails(st['found'])} / {fails(st['random'])}**",
            f"{fails(st['found'], True)} / {fails(st['random'], True)}",
            f"{fails(pl['found'])} / {fails(pl['random'])}",
            f"{places}; door {span(val['decoded']['door_angle'], '.2f')} rad",
        ])
    return _table(head, rows, ["---"] * len(head))


# ---- the graph engine's rule tables (policy_xai.attribution.graph.composites) ------------------------------
@renderer("rules", sources=False)
def render_rules(b: Block) -> str:
    """`rules`: op type -> rule per method, read from the method composites in code, and what each rule
    does (its docstring, rules.py)."""
    import inspect

    from .attribution.graph.composites import METHODS

    own, shares = [], {}
    for name, m in METHODS.items():
        first = next((o for o in own if METHODS[o].rules is m.rules), None)
        if first is None:
            own.append(name)
        else:
            shares.setdefault(first, []).append(name)
    kinds = sorted({k for o in own for k in METHODS[o].rules}, key=lambda k: (k.partition("@")[0], k))
    head = ["op types"] + [f"`{o}`" + (" (also " + ", ".join(f"`{s}`" for s in shares[o]) + ")" if o in shares
                                       else "") for o in own]
    groups, docs = {}, {}  # op types with the same rule in every method share a row
    for k in kinds:
        row = []
        for o in own:
            rule = METHODS[o].rules.get(k)
            row.append(rule.name if rule is not None else "")
            if rule is not None:
                docs.setdefault(inspect.getdoc(type(rule)) or "", []).append(rule.name)
        groups.setdefault(tuple(row), []).append(k)
    rows = [[", ".join(f"`{k}`" for k in ks)] + [f"`{n}`" if n else "" for n in row] for row, ks in groups.items()]
    table = _table(head, rows, ["---"] * len(head))
    desc = _table(["rule", "what it does (`src/policy_xai/attribution/graph/rules.py`)"],
                  [[", ".join(f"`{n}`" for n in sorted(set(names))), " ".join(d.split()).replace("|", "\\|")]
                   for d, names in sorted(docs.items(), key=lambda kv: min(kv[1]))], ["---", "---"])
    note = ("An empty cell: the method has no rule for that op type (`UnsupportedOpError`). `<kind>@output`: "
            "a Linear / Conv op that reaches the output through structural and elementwise ops only.")
    return f"{table}\n\n{note}\n\n{desc}"


# ---- the ROS interface tables (policy_xai.topics, policy_xai.parameters: the declarations the nodes use) ------
@renderer("topics", sources=False)
def render_topics(b: Block) -> str:
    """`topics`: every topic and service the graph declares (policy_xai.topics)."""
    from .topics import topic_table_markdown

    return topic_table_markdown()


@renderer("parameters", sources=False)
def render_parameters(b: Block) -> str:
    """`parameters`: every node parameter with its default and constraints (policy_xai.parameters)."""
    from .parameters import parameter_table_markdown

    return parameter_table_markdown()
