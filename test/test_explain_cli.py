"""`policy-xai explain` end to end on a recording file: figures, CSV, video and clear errors."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest


def run_cli(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "policy_xai.cli", *args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(p.stdout + p.stderr)
    return p


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    rng = np.random.default_rng(0)
    N = 8
    imgs = (rng.random((N, 64, 64, 3)) * 60).astype(np.uint8)
    for i in range(N):
        imgs[i, 10 + 4 * i:20 + 4 * i, 30:40] = [255, 40, 40]
    q = rng.uniform(-0.5, 0.5, size=(N, 7))
    cfg = np.concatenate([q, rng.normal(size=(N, 13)) * 0.1], axis=1).astype(np.float32)
    path = tmp_path_factory.mktemp("rec") / "rec.npz"
    np.savez(path, images=imgs, configs=cfg, times=np.arange(N) * 0.05)
    return path


def test_explain_recording_writes_everything(recording, tmp_path):
    out = tmp_path / "out"
    p = run_cli("explain", "--inputs", str(recording), "--robot", "baxter_right_arm",
                "--methods", "dtd,rap,gbp,gradcam", "--out", str(out), "--normalize", "video")
    assert "image:configuration" in p.stdout
    for f in ("fig4_ratios.png", "fig5_curves.png", "ratios.csv", "summary.json", "heatmap_dtd.mp4",
              "heatmap_gradcam.mp4"):
        assert (out / f).stat().st_size > 0, f
    rows = list(csv.DictReader(open(out / "ratios.csv")))
    assert len(rows) == 8 * 3  # Grad-CAM has no ratios
    for r in rows:
        total = sum(float(r[g]) for g in ("image", "joint_position", "joint_velocity", "ee_position", "ee_velocity"))
        assert abs(total - 1) < 1e-4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["alpha"].startswith("robot model")
    assert len(list((out / "heatmaps").glob("*.png"))) == 4 * 4


def test_explain_bad_inputs(tmp_path):
    p = run_cli("explain", "--inputs", str(tmp_path / "missing.npz"), "--out", str(tmp_path), check=False)
    assert p.returncode == 2 and "--inputs recording not found" in p.stderr  # the command line is wrong: 2
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 32, 32, 3), np.uint8), configs=np.zeros((2, 20), np.float32))
    p = run_cli("explain", "--inputs", str(bad), "--out", str(tmp_path), check=False)
    assert p.returncode == 1 and "expects 64x64x3" in p.stderr
    p = run_cli("explain", "--methods", "magic", "--out", str(tmp_path), check=False)
    assert p.returncode == 1 and "unknown method" in p.stderr
    p = run_cli("--help")
    assert "explain" in p.stdout


def test_explain_library_job_and_the_commands_defaults(recording, tmp_path):
    """The job the command adapts, called directly; every command's defaults are its options' defaults."""
    from dataclasses import fields

    from policy_xai import report
    from policy_xai.cli import build_parser
    from policy_xai.commands import demo, explain, rollout
    from policy_xai.jobs import DemoOptions, ExplainOptions, RolloutOptions, explain_recording

    job = explain_recording(ExplainOptions(inputs=str(recording), methods="dtd,gradcam", panels=1,
                                           out=tmp_path / "lib"), quiet=True)
    assert job.summary["steps"] == 8 and job.lines[0].startswith("explained 8 steps")
    assert {p.name for p in job.files} >= {"ratios.csv", "fig4_ratios.png", "fig5_curves.png", "summary.json",
                                          "heatmap_dtd.mp4", "heatmap_gradcam.mp4"}
    t = report.read_table(tmp_path / "lib" / "ratios.csv")
    assert list(t)[:4] == list(report.RATIO_COLUMNS) and set(t["method"]) == {"dtd"} and len(t["step"]) == 8
    np.testing.assert_array_equal(t["stamp_ns"], np.round(np.arange(8) * 0.05 * 1e9).astype(np.int64))
    parser = build_parser()
    for cmd, mod, cls in (("explain", explain, ExplainOptions), ("analyze-rollout", rollout, RolloutOptions),
                          ("demo", demo, DemoOptions)):
        args = parser.parse_args([cmd])
        assert mod.options(args) == cls(**{f.name: getattr(args, f.name) for f in fields(cls)
                                           if hasattr(args, f.name)}) == cls(), cmd
