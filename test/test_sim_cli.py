"""`policy-xai robot bench` and `policy-xai robot experts` end to end (small counts)."""
import json

from policy_xai.cli import main


def test_robot_bench_json(capsys):
    assert main(["robot", "bench", "--task", "reach2d", "--steps", "20", "--frames", "5", "--alphas", "50",
                 "--sizes", "64", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["physics_steps_per_s"] > 1000 and r["fps_64x64"] > 1
    assert 0 < r["alpha_linearized_us"] < r["alpha_exact_us"]


def test_robot_experts_reach2d(capsys):
    assert main(["robot", "experts", "--tasks", "reach2d", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["reach2d"]["success_rate"] == 1.0
    assert len(r["reach2d"]["conditions"]) == 8  # 4 conditions + 4 target changes


def test_robot_experts_unknown_task(capsys):
    assert main(["robot", "experts", "--tasks", "reach,fly"]) == 1
    assert "unknown task 'fly'" in capsys.readouterr().err
