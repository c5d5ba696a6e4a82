"""The README's and docs' generated blocks (policy_xai.docs_numbers, `policy-xai docs render`): the
committed files are what their sources render, a renderer on a hand-made JSON gives the expected
table, and a block that cannot be rendered is a one-line error that changes no file."""
import json
from pathlib import Path

import pytest

from cli_harness import cli
from policy_xai import docs_numbers as dn

ROOT = Path(__file__).resolve().parents[1]


def test_committed_readme_and_docs_are_in_sync(capsys):
    rc, out, err = cli(capsys, "docs", "render", "--check", "--root", ROOT)
    assert rc == 0, out + err
    assert "in sync" in out
    # the blocks exist where the numbers are: README (bench, latency, fleet, faithfulness, rules text)
    readme = (ROOT / "README.md").read_text()
    for kind in ("bench docs/bench_engines_b1_1thread.json", "latency docs/latency_bfloat16.json",
                 "fleet docs/bench_fleet.json", "faithfulness-tables docs/faithfulness.md",
                 "include docs/attribution.md#source:attribution-rules", "bench-table docs/bench_faithful"):
        assert f"<!-- generated: {kind}" in readme, kind
    assert "<!-- generated: rules -->" in (ROOT / "docs" / "attribution.md").read_text()


def test_rules_table_covers_every_method_and_op_type():
    from policy_xai.attribution.graph.composites import METHODS

    text, _ = dn.render_text("<!-- generated: rules -->\n<!-- end generated -->\n", ROOT)
    for name, m in METHODS.items():
        assert f"`{name}`" in text, name
        for kind, rule in m.rules.items():
            assert f"`{kind}`" in text and f"`{rule.name}`" in text, (name, kind)


def _latency_json():
    row = {"spec": "small", "size": 64, "method": "dtd", "precision": "float32", "camera_hz": 20.04,
           "commands_hz": 20.0, "explained_hz": 19.96, "heatmap_hz": 19.5, "relevance_p50_ms": 23.4,
           "relevance_p99_ms": 31.6, "heatmap_p50_ms": 30.5, "heatmap_p99_ms": 41.2, "skipped_behind": "3"}
    return [row, {**row, "spec": "paper", "size": 240, "explained_hz": 7.49, "heatmap_p99_ms": 487.4}]


def test_renderers_on_a_hand_made_json(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "lat.json").write_text(json.dumps(_latency_json()))
    text = ("Latency:\n\n<!-- generated: latency docs/lat.json -->\nold table\n<!-- end generated -->\n\n"
            "paper at <!-- generated: value docs/lat.json spec=paper/explained_hz fmt=.1f -->8<!-- end generated -->"
            " Hz, p99 <!-- generated: value docs/lat.json */heatmap_p99_ms fmt=.0f -->?<!-- end generated --> ms.\n")
    new, stale = dn.render_text(text, tmp_path, "README.md")
    assert [b.kind for b in stale] == ["latency", "value", "value"]
    assert new == (
        "Latency:\n\n<!-- generated: latency docs/lat.json -->\n"
        "| spec | camera | rule precision | camera Hz | explained Hz | heatmap Hz | stamp -> relevance p50 / p99 ms"
        " | stamp -> heatmap p50 / p99 ms | skipped (behind) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        "| small | 64x64 | float32 | 20.0 | 20.0 | 19.5 | 23 / 32 | 30 / 41 | 3 |\n"
        "| paper | 240x240 | float32 | 20.0 | 7.5 | 19.5 | 23 / 32 | 30 / 487 | 3 |\n"
        "<!-- end generated -->\n\n"
        "paper at <!-- generated: value docs/lat.json spec=paper/explained_hz fmt=.1f -->7.5<!-- end generated -->"
        " Hz, p99 <!-- generated: value docs/lat.json */heatmap_p99_ms fmt=.0f -->41-487<!-- end generated --> ms.\n")
    again, stale = dn.render_text(new, tmp_path, "README.md")
    assert again == new and stale == []


def test_bench_table_and_markdown_region(tmp_path):
    (tmp_path / "docs").mkdir()
    rows = [{"row": "forward+backward", "ms": 2.64, "x_fwd_bwd": 1.0}, {"row": "dtd", "ms": 5.21, "x_fwd_bwd": 1.973}]
    bench = {"results": [{"spec": "small", "batch": 1, "threads": 1, "rows": rows},
                         {"spec": "paper", "batch": 1, "threads": 1, "rows": [rows[0]]}]}
    (tmp_path / "docs" / "b.json").write_text(json.dumps(bench))
    (tmp_path / "docs" / "t.md").write_text("<!-- src:t -->\n| task | method | top-k |\n|---|---|---:|\n"
                                            "| reach | ig | 0.48 |\n| peg | ig | 0.56 |\n<!-- /src:t -->\n")
    text = ("<!-- generated: bench-table docs/b.json cols=forward+backward,dtd:x_fwd_bwd first=spec -->\n"
            "<!-- end generated -->\ntop-k <!-- generated: value docs/t.md#src:t method=ig/top-k fmt=.2f -->"
            "<!-- end generated -->\n")
    new, _ = dn.render_text(text, tmp_path)
    assert ("| spec | forward+backward | dtd x f+b |\n|---|---:|---:|\n| small | 2.6 | 1.97 |\n| paper | 2.6 |  |\n"
            in new)
    assert "-->0.48-0.56<!--" in new


def test_check_names_a_stale_block_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "lat.json").write_text(json.dumps(_latency_json()))
    readme = tmp_path / "README.md"
    stale = ("# x\n\np99 <!-- generated: value docs/lat.json spec=small/heatmap_p99_ms fmt=.0f -->39"
             "<!-- end generated -->\n")
    readme.write_text(stale)
    rc, out, err = cli(capsys, "docs", "render", "--check", "--root", tmp_path)
    assert rc == 1
    assert "stale: README.md:3: generated block 'value docs/lat.json'" in out
    assert readme.read_text() == stale
    rc, out, err = cli(capsys, "docs", "render", "--root", tmp_path)
    assert rc == 0 and "-->41<!--" in readme.read_text()
    rc, out, err = cli(capsys, "docs", "render", "--check", "--root", tmp_path)
    assert rc == 0


def test_a_missing_source_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "docs").mkdir()
    readme = tmp_path / "README.md"
    text = "# x\n\n<!-- generated: latency docs/latency_float32.json -->\n| old |\n<!-- end generated -->\n"
    readme.write_text(text)
    (tmp_path / "docs" / "a.md").write_text("<!-- generated: nosuchkind x -->\n<!-- end generated -->\n")
    for argv in (("--check",), ()):
        rc, out, err = cli(capsys, "docs", "render", *argv, "--root", tmp_path, "README.md")
        assert rc == 1
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "README.md:3" in lines[0] and "docs/latency_float32.json not found" in lines[0]
        assert readme.read_text() == text
    rc, out, err = cli(capsys, "docs", "render", "--root", tmp_path, "docs/a.md")
    assert rc == 1 and "docs/a.md:1" in err and "unknown kind 'nosuchkind'" in err
    assert len(err.strip().splitlines()) == 1 and readme.read_text() == text


def test_states_places_table_on_hand_made_runs(tmp_path):
    """states-places: per found place the failures from it, with the distance to the named place whose
    clean episode fails; a search that is not of the episode scope is refused."""
    (tmp_path / "docs").mkdir()
    find = {"scope": "episode", "found": {"median": 0.5, "start_median": 0.3},
            "real": {"percentiles": {"50": 0.03, "99": 0.1}},
            "realism": {"target_reconstructed_median": 0.29, "target_real_median": 0.03}}
    val = {"decoded": {"target": [[0.72, -0.52, 0.06], [0.70, -0.40, 0.06]]},
           "named_places": {"mid13": [0.73, -0.51, 0.06], "mid02": [0.73, -0.37, 0.06]},
           "places": {"mid13": {"success": False}, "mid02": {"success": True}},
           "place": {"found": {"success": [False, True, False], "failures": 2, "episodes": 3,
                               "teacher_success": [True, True, True]},
                     "random": {"success": [True, True, True], "failures": 0, "episodes": 3,
                                "teacher_success": [True, True, True]}}}
    (tmp_path / "docs" / "f.json").write_text(json.dumps(find))
    (tmp_path / "docs" / "v.json").write_text(json.dumps(val))
    text = "<!-- generated: states-places docs/f.json,docs/v.json 'one run' -->\n<!-- end generated -->\n"
    new, _ = dn.render_text(text, tmp_path)
    assert ("| one run | 0.500 (0.300; 0.030, 0.100) | 0.290 / 0.030 | **2/3 / 0/3** (0/3 / 0/3) | "
            "(0.720, -0.520) 2/2, 14 mm from mid13; none at the 1 others (1 episodes) |") in new
    (tmp_path / "docs" / "f.json").write_text(json.dumps(find | {"scope": "state"}))
    with pytest.raises(dn.DocsNumbersError, match="not an episode-scope search"):
        dn.render_text(text, tmp_path)


def test_success_and_sanity_renderers(tmp_path):
    (tmp_path / "docs").mkdir()
    ev = {"normal": {"conditions": {"a": {"success": 1.0, "episodes": 5}, "b": {"success": 0.6, "episodes": 5}},
                     "heldout": {"m": {"success": 0.0, "episodes": 5, "target": [0, 0, 0]}}}}
    (tmp_path / "docs" / "e.json").write_text(json.dumps(ev))
    rows = [{"method": m, "step": s, "image_spearman_mean": v} for m, vals in (("dtd", (1, 0.99, 0.97)),
                                                                                ("rap", (1, 0.5, 0.4)))
            for s, v in enumerate(vals)]
    san = {"methods": ["dtd", "rap"], "steps": ["original", "fc1", "conv1"], "rows": rows}
    (tmp_path / "docs" / "s.json").write_text(json.dumps(san))
    text = ("| x | <!-- generated: success docs/e.json normal/conditions -->?<!-- end generated --> |\n"
            "all <!-- generated: success docs/e.json normal/conditions normal/heldout counts=no -->?"
            "<!-- end generated -->\n<!-- generated: sanity docs/s.json fmt=.2f -->\n<!-- end generated -->\n")
    new, _ = dn.render_text(text, tmp_path)
    assert "-->80 % (8/10)<!--" in new and "-->53 %<!--" in new
    assert "| method | fc1 | conv1 |\n|---|---|---|\n| dtd | 0.99 | 0.97 |\n| rap | 0.50 | 0.40 |\n" in new
    mean = ("<!-- generated: value docs/s.json rows/method=rap/image_spearman_mean reduce=mean fmt=+.2f -->"
            "<!-- end generated -->")
    assert "-->+0.63<!--" in dn.render_text(mean, tmp_path)[0]
    assert "-->+1.00<!--" in dn.render_text(mean.replace("reduce=mean", "reduce=max"), tmp_path)[0]


def test_rollout_renderer(tmp_path):
    (tmp_path / "docs").mkdir()
    r = {"image": [0.8, 0.05], "joint_position": [0.2, 0.05], "image:configuration": [0.8, 0.2]}
    trend = {k: {"early": 0.5, "late": 0.6} for k in ("image", "position", "velocity")}
    reaction = {k: {"before": 0.8, "after": 0.7} for k in ("image", "position", "velocity")}
    summary = {"task": "reach", "ratios_mean_std": {"dtd": r, "rap": r},
               "trend_mean_over_conditions": {"dtd": trend, "rap": trend},
               "target_change": {"step": 33, "reaction": {"dtd": reaction}},
               "method_rank_consistency": {"dtd~rap": {"image": 0.9, "joint_position": 0.5}}}
    (tmp_path / "docs" / "r.json").write_text(json.dumps(summary))
    text = "".join(f"<!-- generated: rollout docs/r.json table={t} bold=dtd -->\n<!-- end generated -->\n"
                   for t in ("ratios", "trend", "change", "consistency"))
    new, _ = dn.render_text(text, tmp_path)
    assert ("| reach | dtd | 0.80 ± 0.05 | 0.20 ± 0.05 | **80:20** |\n"
            "| reach | rap | 0.80 ± 0.05 | 0.20 ± 0.05 | 80:20 |") in new
    assert "| reach | dtd | 0.50 → 0.60 | 0.50 → 0.60 | 0.50 → 0.60 |" in new
    assert "| reach (step 33) | dtd | 0.80 → 0.70 | 0.80 → 0.70 |" in new
    assert "| reach | dtd~rap | +0.90 | +0.50 | +0.70 |" in new
