"""The renderers of the generated blocks, one small function per KIND (registered with `@renderer`
into policy_xai.docs_numbers.blocks.RENDERERS): inline values and ratios, included regions, and the
tables of what the commands stored (evaluate, analyze-rollout, sanity, bench, latency, fleet, faithfulness, states,
rules, topics, parameters)."""
from __future__ import annotations

import re

from .blocks import Block, _table, fmt, md_table, number, renderer, select, span


# ---- inline values -----------------------------------------------------------------------------------------
@renderer("value", options=("fmt", "scale", "offset", "sep", "round", "group", "reduce"))
def render_value(b: Block) -> str:
    """`value SRC[,SRC...] PATH [PATH...] [fmt=.2f] [scale=100] [offset=-1] [sep=-] [round=out]`: the
    numbers at the PATHs (`select`, in every source) as `(v + offset) * scale` in format `fmt`; one
    number, or `min-max` of several (`round=out`: the range rounded outwards; `group=' '`: thousands
    separated by that text, with a `fmt` such as `,.0f`; `reduce=mean|max`: their mean or largest
    instead, one number)."""
    if not b.args:
        raise b.fail("value takes one or more PATHs")
    scale, offset = float(b.opt("scale", "1")), float(b.opt("offset", "0"))
    found = [v for src in b.sources for path in b.args for v in select(src, path)]
    found = [x for v in found for x in (v if isinstance(v, list) else [v])]  # a list of numbers: each
    vals = [(number(v) + offset) * scale for v in found if number(v) is not None]
    if b.opt("reduce") not in ("", "mean", "max"):
        raise b.fail(f"reduce={b.opt('reduce')}: reduce=mean or reduce=max")
    if b.opt("reduce") and vals:
        vals = [sum(vals) / len(vals) if b.opt("reduce") == "mean" else max(vals)]
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


# ---- policy-xai evaluate (--json) ------------------------------------------------------------------------------
@renderer("success", options=("counts",))
def render_success(b: Block) -> str:
    """`success SRC[,SRC...] PATH [PATH...] [counts=no]`: the success rate over the targets at the PATHs
    of `policy-xai evaluate --json` files (each a dict target -> {success, episodes}, e.g.
    `normal/heldout`), all pooled, as `80 % (20/25)` (`counts=no`: `80 %`)."""
    if not b.args:
        raise b.fail("success takes one or more PATHs (e.g. normal/conditions)")
    ok = n = 0
    for src in b.sources:
        for path in b.args:
            for group in select(src, path):
                if not isinstance(group, dict):
                    raise b.fail(f"{path}: not a table of targets")
                for target in group.values():
                    ok += round(target["success"] * target["episodes"])
                    n += target["episodes"]
    if not n:
        raise b.fail("no episodes there")
    rate = f"{100 * ok / n:.0f} %"
    return rate if b.opt("counts") == "no" else f"{rate} ({ok}/{n})"


# ---- policy-xai analyze-rollout (its summary.json) -----------------------------------------------------------
ROLLOUT_TABLES = ("ratios", "trend", "change", "consistency")
_GROUP_TITLES = {"image": "image", "joint_position": "joint position", "joint_velocity": "joint velocity",
                 "ee_position": "ee position", "ee_velocity": "ee velocity"}


@renderer("rollout", options=("table", "methods", "bold"))
def render_rollout(b: Block) -> str:
    """`rollout SRC,SRC... table=ratios|trend|change|consistency [methods=dtd,rap,gbp] [bold=dtd]`: one
    row per task (source) and method (or method pair) of `analyze-rollout` summaries: the mean +- std
    ratio per group and the image:configuration split (`bold`: the split of that method in bold), the
    first 10 % -> last 50 % trend, the target change (5 steps before -> 5 from it), the rank
    correlation of the ratio curves per group with their mean."""
    table = b.opt("table", "ratios")
    if table not in ROLLOUT_TABLES:
        raise b.fail(f"unknown table {table!r} (known: {', '.join(ROLLOUT_TABLES)})")
    keep = [m for m in b.opt("methods").split(",") if m]
    rows = []
    for src in b.sources:
        task = src["task"]
        methods = [m for m in src["ratios_mean_std"] if not keep or m in keep]
        if table == "ratios":
            groups = [g for g in src["ratios_mean_std"][methods[0]] if g != "image:configuration"]
            head = ["task", "method"] + [_GROUP_TITLES.get(g, g) for g in groups] + ["image:configuration"]
            for m in methods:
                r = src["ratios_mean_std"][m]
                split = f"{100 * r['image:configuration'][0]:.0f}:{100 * r['image:configuration'][1]:.0f}"
                rows.append([task, m] + [f"{r[g][0]:.2f} ± {r[g][1]:.2f}" for g in groups]
                            + [f"**{split}**" if m == b.opt("bold") else split])
        elif table == "trend":
            head = ["task", "method", "image", "position (joint + ee)", "velocity (joint + ee)"]
            for m in methods:
                t = src["trend_mean_over_conditions"][m]
                rows.append([task, m] + [f"{t[k]['early']:.2f} → {t[k]['late']:.2f}"
                                         for k in ("image", "position", "velocity")])
        elif table == "change":
            head = ["task", "method", "image", "position"]
            ch = src["target_change"]
            if not ch.get("reaction"):
                raise b.fail(f"{task}: the summary has no target change (run without --change-step -1)")
            for i, m in enumerate(m for m in methods if m in ch["reaction"]):
                r = ch["reaction"][m]
                rows.append([f"{task} (step {ch['step']})" if i == 0 else task, m]
                            + [f"{r[k]['before']:.2f} → {r[k]['after']:.2f}" for k in ("image", "position")])
        else:
            cons = src["method_rank_consistency"]
            pairs = [p for p in cons if not keep or all(m in keep for m in p.split("~"))]
            groups = list(cons[pairs[0]])
            head = ["task", "pair"] + [_GROUP_TITLES.get(g, g) for g in groups] + ["mean"]
            for p in pairs:
                vals = [cons[p][g] for g in groups]
                rows.append([task, p] + [fmt(v, "+.2f") for v in vals] + [fmt(sum(vals) / len(vals), "+.2f")])
    return _table(head, rows, ["---"] * len(head))


# ---- policy-xai sanity (--json) ------------------------------------------------------------------------------
@renderer("sanity", options=("metric", "fmt"))
def render_sanity(b: Block) -> str:
    """`sanity SRC [metric=image_spearman] [fmt=.3f]`: one row per method of a `policy-xai sanity --json`
    file, one column per randomisation step (randomised from the top down to that layer): the metric's
    mean over the observations."""
    data = b.sources[0]
    metric, spec = b.opt("metric", "image_spearman"), b.opt("fmt", ".3f")
    steps = list(data["steps"][1:])
    rows = []
    for m in data["methods"]:
        by = {r["step"]: r for r in data["rows"] if r["method"] == m}
        rows.append([m] + [fmt(by[i][f"{metric}_mean"], spec) for i in range(1, len(data["steps"]))])
    return _table(["method"] + steps, rows, ["---"] * (len(steps) + 1))


# ---- policy-xai bench attribution (--json) -------------------------------------------------------------------
BENCH_PARTS = ("machine", "summary", "cases", "footnote", "goals")


def bench_sections(data) -> list[tuple[str, str, str]]:
    """`attribution_bench.markdown(data)` cut into (part, spec, text): one renderer for the command's
    `--markdown` and for the docs."""
    from .. import attribution_bench as ab

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


@renderer("states-places")
def render_states_places(b: Block) -> str:
    """`states-places FIND,VALIDATE[,...] LABEL...`: per `states find --scope episode` summary and the
    `states validate --starts place` JSON of its found episodes, one row: the found episodes' mean gap,
    the target on reconstructions of real states against the real states', the policy's failures from
    the found places and from random ones, and where it failed: each such found place (x, y) with its
    distance to the nearest named place where the policy's clean episode fails (validate's `places`)."""
    import math

    if len(b.sources) % 2 or len(b.args) != len(b.sources) // 2:
        raise b.fail("states-places takes FIND,VALIDATE pairs and one label per pair")
    head = ["search", "found gap, episode mean (at the starts; real episodes median, 99 %)",
            "gap on reconstructions of real states / on real states",
            "`place` starts: policy fails, found / random (teacher)",
            "found places where the policy failed (failures / episodes; distance to a failing named place)"]
    rows = []
    for i, label in enumerate(b.args):
        find, val = b.sources[2 * i], b.sources[2 * i + 1]
        if find.get("scope") != "episode" or "place" not in val:
            raise b.fail(f"{b.refs[2 * i]}: not an episode-scope search validated with place starts")
        pct, rl, pl = find["real"]["percentiles"], find["realism"], val["place"]
        places = val["decoded"]["target"]
        bad_named = [(n, val["named_places"][n]) for n, r in val.get("places", {}).items() if not r["success"]]
        per: dict = {}
        for e, ok in enumerate(pl["found"]["success"]):
            got = per.setdefault(e % len(places), [0, 0])
            got[0] += 0 if ok else 1
            got[1] += 1
        cells, ok_n, ok_e = [], 0, 0
        for k, (f, n) in sorted(per.items()):
            if not f:
                ok_n, ok_e = ok_n + 1, ok_e + n
                continue
            x, y = places[k][:2]
            near = min(((math.dist((x, y), q[:2]), name) for name, q in bad_named), default=None)
            cells.append(f"({x:.3f}, {y:.3f}) {f}/{n}" + (f", {1000 * near[0]:.0f} mm from {near[1]}" if near else ""))
        cells.append(f"none at the {ok_n} others ({ok_e} episodes)" if cells else
                     f"none: {ok_e} episodes at {ok_n} found places")
        ft, rt = pl["found"].get("teacher_success", []), pl["random"].get("teacher_success", [])
        rows.append([
            label,
            f"{find['found']['median']:.3f} ({find['found']['start_median']:.3f}; {pct['50']:.3f}, {pct['99']:.3f})",
            f"{rl['target_reconstructed_median']:.3f} / {rl['target_real_median']:.3f}",
            f"**{pl['found']['failures']}/{pl['found']['episodes']} / {pl['random']['failures']}/"
            f"{pl['random']['episodes']}** ({ft.count(False)}/{len(ft)} / {rt.count(False)}/{len(rt)})",
            "; ".join(cells),
        ])
    return _table(head, rows, ["---"] * len(head))


# ---- the graph engine's rule tables (policy_xai.attribution.graph.composites) ------------------------------
@renderer("rules", sources=False)
def render_rules(b: Block) -> str:
    """`rules`: op type -> rule per method, read from the method composites in code, and what each rule
    does (its docstring, rules.py)."""
    import inspect

    from ..attribution.graph.composites import METHODS

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
    from ..topics import topic_table_markdown

    return topic_table_markdown()


@renderer("parameters", sources=False)
def render_parameters(b: Block) -> str:
    """`parameters`: every node parameter with its default and constraints (policy_xai.parameters)."""
    from ..parameters import parameter_table_markdown

    return parameter_table_markdown()
