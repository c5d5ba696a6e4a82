"""`policy-xai robot bench` and `policy-xai robot experts` end to end (small counts)."""
import json

from policy_xai.cli import main


def test_robot_bench_json(capsys, tmp_path):
    out = tmp_path / "bench.json"
    argv = ["robot", "bench", "--task", "reach2d", "--steps", "20", "--frames", "5", "--alphas", "50",
            "--sizes", "64", "--json", str(out)]
    assert main(argv) == 0
    r = json.loads(out.read_text())
    assert r["physics_steps_per_s"] > 1000 and r["fps_64x64"] > 1
    assert 0 < r["alpha_linearized_us"] < r["alpha_exact_us"]
    assert 0 <= r["alpha_exact_vs_linearized_median"]["0.01"] < 0.01
    capsys.readouterr()
    # a stored measurement is never overwritten
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and "exists" in capsys.readouterr().err
    assert json.loads(out.read_text()) == r


def test_robot_experts_reach2d(capsys, tmp_path):
    out = tmp_path / "experts.json"
    assert main(["robot", "experts", "--tasks", "reach2d", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["reach2d"]["success_rate"] == 1.0
    assert len(r["reach2d"]["conditions"]) == 8  # 4 conditions + 4 target changes


def test_robot_experts_unknown_task(capsys):
    assert main(["robot", "experts", "--tasks", "reach,fly"]) == 1
    assert "unknown task 'fly'" in capsys.readouterr().err
