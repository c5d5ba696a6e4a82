"""The rollout analysis (policy_xai.jobs.analyze_rollout, behind `policy-xai analyze-rollout`) on a short
real MuJoCo episode of a shipped policy; the command's arguments become the same options."""
import csv
import json

import numpy as np

from policy_xai.cli import build_parser
from policy_xai.commands.rollout import options
from policy_xai.jobs import RolloutOptions, analyze_rollout

OPTIONS = dict(task="reach2d", conditions="0", steps=6, change_step=3, panels=2)


def test_the_command_parses_into_the_librarys_options(tmp_path):
    args = build_parser().parse_args(["analyze-rollout", "--task", "reach2d", "--conditions", "0", "--steps", "6",
                                      "--change-step", "3", "--panels", "2", "--out", str(tmp_path / "r")])
    assert options(args) == RolloutOptions(**OPTIONS, out=str(tmp_path / "r"))
    assert options(build_parser().parse_args(["analyze-rollout"])) == RolloutOptions()


def test_analyze_rollout_writes_all_figures_and_ratios(tmp_path):
    out = tmp_path / "rollout"
    job = analyze_rollout(RolloutOptions(**OPTIONS, out=out), quiet=True)
    assert job.out == out
    text = "\n".join(job.lines)
    assert "image:configuration" in text and "rank correlation dtd~rap" in text and "target change" in text
    for f in ("fig4_ratios.png", "fig5_curves.png", "fig5_condition0.png", "fig6_target_change.png", "ratios.csv",
              "summary.json"):
        assert (out / f).stat().st_size > 0, f
    for label in ("condition0", "target_change"):
        for m in ("dtd", "rap", "gbp"):
            for norm in ("frame", "video"):
                assert (out / f"heatmap_{label}_{m}_per-{norm}.mp4").stat().st_size > 1000
            assert list((out / "fig3").glob(f"{label}_step*_{m}.png"))
    with open(out / "ratios.csv") as f:
        rows = list(csv.DictReader(f))
    groups = ["image", "joint_position", "joint_velocity", "ee_position", "ee_velocity"]
    assert len(rows) == 2 * 3 * 6  # (1 condition + change episode) x 3 methods x 6 steps
    sums = np.array([[float(r[g]) for g in groups] for r in rows]).sum(1)
    assert np.allclose(sums, 1.0, atol=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["target_change"]["step"] == 3 and summary["alpha"] == "linearized"
    for m in ("dtd", "rap", "gbp"):
        img, cfg = summary["ratios_mean_std"][m]["image:configuration"]
        assert abs(img + cfg - 1) < 1e-6 and 0 < img < 1
    assert set(summary["method_rank_consistency"]) == {"dtd~rap", "dtd~gbp", "rap~gbp"}
