"""The faithfulness measurement end to end (policy_xai.faithfulness.faithfulness_report): real MuJoCo
rollouts of a shipped policy, object masks from the simulator's segmentation, every table, figure and
summary written; `policy-xai faithfulness`: a small run through the command, bad arguments refused with
one line and nothing overwritten."""
import csv
import json

import numpy as np
import pytest

from cli_harness import cli  # noqa: E402
from policy_xai.faithfulness import Options, faithfulness_report

OPTIONS = Options(tasks="reach", methods="dtd,ig_occlusion", every=50, removals="median,road", units="1",
                  sanity_states=1)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("faith") / "out"
    return faithfulness_report(OPTIONS, out, quiet=True), out


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_writes_every_table_and_figure(run):
    job, out = run
    assert job.out == out and job.lines[-1] == f"(tables, figures and summary.json in {out})"
    assert job.summary["options"]["methods"] == ["dtd", "ig_occlusion"]
    for name in ("summary.csv", "summary.md", "summary.json", "curves.csv", "pointing.csv", "objects.csv",
                 "config.csv", "sanity.csv", "curves_reach.png", "objects_reach.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in ("summary", "curves", "pointing", "objects", "config"):
        assert (out / f"{name}.parquet").is_file()


def test_summary_compares_methods_with_the_random_baseline(run):
    _, out = run
    summary = {r["method"]: r for r in rows(out / "summary.csv")}
    assert set(summary) == {"dtd", "ig_occlusion", "random"}
    for m, r in summary.items():
        assert int(r["states"]) == 8  # 4 conditions x steps 0 and 50
        for key in ("deletion_median", "deletion_road", "insertion_median", "pointing", "topk"):
            assert np.isfinite(float(r[key])), (m, key)
    # a map that follows the policy removes more than random order does
    for m in ("dtd", "ig_occlusion"):
        assert float(summary[m]["deletion_median"]) > float(summary["random"]["deletion_median"])
    assert float(summary["ig_occlusion"]["pointing"]) > 3 > float(summary["dtd"]["pointing"])
    assert np.isfinite(float(summary["dtd"]["config_rank"])) and summary["random"]["config_rank"] in ("", "nan")
    doc = json.loads((out / "summary.json").read_text())
    assert doc["options"]["tasks"] == ["reach"] and "goals" in doc


def test_objects_table_names_the_scene_objects(run):
    _, out = run
    objs = {r["object"]: r for r in rows(out / "objects.csv")}
    assert {"target", "table", "arm"} <= set(objs)
    # the reach policy uses its target: painting the ~16-pixel block out moves the torques more than
    # painting a random 16 pixels (the random map's top-k on the target)
    random_topk = [float(r["topk_effect"]) for r in rows(out / "pointing.csv")
                   if r["method"] == "random" and r["object"] == "target"]
    assert float(objs["target"]["effect_median"]) > 3 * np.mean(random_topk)


def test_curves_cover_the_fraction_grid(run):
    _, out = run
    cur = rows(out / "curves.csv")
    fr = sorted({float(r["fraction"]) for r in cur})
    assert fr[0] == 0.005 and fr[-1] == 0.5
    assert {r["removal"] for r in cur} == {"median", "road"}


def test_the_command_runs_the_library_and_prints_the_summary(capsys, tmp_path):
    rc, out, err = cli(capsys, "faithfulness", "--tasks", "reach", "--methods", "dtd", "--every", 50, "--removals",
                       "median", "--units", 1, "--sanity-states", 0, "--max-states", 1, "--out", tmp_path / "o")
    assert rc == 0, err
    assert "| reach | dtd |" in out and "| reach | random |" in out and "summary.json in" in out
    doc = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert doc["options"]["units"] == [1] and doc["options"]["sanity"] is False
    assert [r["states"] for r in doc["summary"]] == [1, 1]


def test_library_options_are_checked_before_any_work(tmp_path):
    from policy_xai.checks import UsageError

    with pytest.raises(UsageError, match="--removals: unknown"):
        faithfulness_report(Options(tasks="reach", removals="erase"), tmp_path / "o")
    assert not (tmp_path / "o").exists()
    o = Options(tasks="reach", methods=None, units=(4,)).checked()
    assert o.tasks == ("reach",) and "dtd" in o.methods and o.units == (4,) and o.removals == ("median", "blur", "road")


@pytest.mark.parametrize("bad, msg", [
    (["--methods", "dtd,nope"], "--methods"),
    (["--tasks", "walk"], "--tasks"),
    (["--removals", "erase"], "--removals"),
    (["--units", "0"], "--units"),
    (["--policy", "reach"], "--policy"),
    (["--policy", "reach=/nonexistent.safetensors"], "--policy"),
])
def test_bad_arguments_are_one_line(capsys, tmp_path, bad, msg):
    rc, _, err = cli(capsys, "faithfulness", *bad, "--out", tmp_path / "o")
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and msg in lines[0], err
    assert not (tmp_path / "o").exists()


def test_refuses_a_folder_that_holds_data(capsys, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "summary.csv").write_text("precious")
    rc, _, err = cli(capsys, "faithfulness", "--quick", "--out", out)
    assert rc == 2 and "not an empty folder" in err
    assert (out / "summary.csv").read_text() == "precious"
