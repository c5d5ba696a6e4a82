"""The README's main command, `policy-xai demo`, end to end: live graph over DDS, recording, offline
analysis of the recording (short run)."""
import json
import subprocess
import sys


def test_demo_live_then_offline_analysis(tmp_path):
    out = tmp_path / "demo"
    p = subprocess.run([sys.executable, "-m", "policy_xai.cli", "demo", "--duration", "4", "--out", str(out)],
                       capture_output=True, text=True, timeout=400)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    summary = json.loads((out / "live" / "summary.json").read_text())
    assert summary["task"] == "reach"
    # the shipped policy has its explainer: the live default runs as it is (no fallback)
    from policy_xai.attribution.engine import DEFAULT_METHOD

    assert summary["attribution"]["method"] == DEFAULT_METHOD, summary["attribution"]
    assert (out / "live" / "bag" / "metadata.yaml").is_file()
    for f in ("fig4_ratios.png", "fig5_curves.png", "ratios.csv", "heatmap_dtd.mp4", f"heatmap_{DEFAULT_METHOD}.mp4"):
        assert (out / "analysis" / f).stat().st_size > 0, f
    assert "live vs recomputed" in p.stdout
