"""The `--json FILE` of evaluate, sanity, robot bench, bench-bag and latency (the stored sources of the README's
numbers): written with what the library returned, and an existing file is refused before any work,
left as it was (a measurement is never overwritten)."""
import json

from cli_harness import cli


def _written_then_refused(capsys, path, *argv):
    rc, out, err = cli(capsys, *argv, "--json", path)
    assert rc == 0, out + err
    data = json.loads(path.read_text())
    before = path.read_bytes()
    rc, out, err = cli(capsys, *argv, "--json", path)
    assert rc == 2 and "exists" in err and "never overwritten" in err, out + err
    assert path.read_bytes() == before
    return data


def test_evaluate_json(tmp_path, capsys):
    d = _written_then_refused(capsys, tmp_path / "e.json", "evaluate", "--task", "reach2d", "--episodes", "1",
                              "--no-blank", "--no-heldout")
    assert d["task"] == "reach2d" and len(d["normal"]["conditions"]) == 4
    assert all(v["episodes"] == 1 for v in d["normal"]["conditions"].values())


def test_sanity_json(tmp_path, capsys):
    d = _written_then_refused(capsys, tmp_path / "s.json", "sanity", "--policy", "small", "--samples", "2",
                              "--methods", "gradient", "--out", tmp_path / "out")
    assert d["methods"] == ["gradient"] and d["steps"][0] == "original"
    assert len(d["rows"]) == len(d["steps"]) and "image_spearman_mean" in d["rows"][0]


def test_bench_bag_json(tmp_path, capsys):
    d = _written_then_refused(capsys, tmp_path / "b.json", "bench-bag", "--sizes", "64", "--steps", "8")
    (row,) = d["rows"]
    assert row["size"] == 64 and row["steps"] > 0 and row["explain_steps_per_s"] > 0


def test_latency_json_refused_when_it_exists(tmp_path, capsys):
    path = tmp_path / "l.json"
    path.write_text("[]")
    rc, out, err = cli(capsys, "latency", "--configs", "small:64", "--duration", "1", "--json", path)
    assert rc == 2 and "exists" in err and path.read_text() == "[]"  # refused before any node starts
