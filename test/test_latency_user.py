"""`policy-xai latency --model`: the live latency benchmark with a user's PyTorch policy in the
user_policy_node (real node processes over DDS, real MuJoCo), and its start-up checks."""
import json

from policy_xai.live_run import LatencyOptions, UserModel

from cli_harness import cli
from ros_harness import fresh_domain

FACTORY = "policy_xai.attribution.graph.models:robomimic_bc"
KW = '{"width": 4, "image_size": 64, "hidden": [16], "low_dim": {"joint_state": 14}}'


def test_latency_of_a_users_model(tmp_path):
    """Two runs back to back (--repeat 2): a row and a folder each."""
    from policy_xai.ros.pipeline import latency_bench

    logs = []
    rows, base = latency_bench(LatencyOptions(configs=("mapping",), duration=5.0, machine_check=0.0, out=str(tmp_path),
                                              domain_id=fresh_domain(), user=UserModel(FACTORY, model_kwargs=KW),
                                              repeat=2),
                               logs.append)
    assert [r["run"] for r in rows] == [1, 2]
    for r in rows:
        assert r["method"] == "dtd" and r["size"] == 64 and r["explained_hz"] > 0 and r["heatmap_hz"] > 0, (r, logs)
        assert r["heatmap_p50_ms"] is not None and r["attribution_compute_p50_ms"] is not None, r
    assert json.loads((base / "latency.json").read_text()) == rows
    assert sorted(p.name for p in base.iterdir() if p.is_dir()) == ["robomimic_bc_spec_float32_run1",
                                                                     "robomimic_bc_spec_float32_run2"]


def test_latency_checks_the_model_before_any_node_starts(capsys, tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("camera: {topic: /camera/image_raw, kind: image, height: 64, width: 64}\n")
    rc, out, err = cli(capsys, "latency", "--model", FACTORY, "--model-kwargs", KW, "--mapping", bad,
                       "--out", tmp_path / "o", "--machine-check", "0")
    assert rc == 2 and "agentview_image" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
    rc, out, err = cli(capsys, "latency", "--weights", tmp_path / "w.safetensors", "--out", tmp_path / "o2")
    assert rc == 2 and "--weights is for --model" in err
    rc, out, err = cli(capsys, "latency", "--model", FACTORY, "--model-kwargs", KW, "--configs", "4",
                       "--out", tmp_path / "o3")
    assert rc == 2 and "camera sizes >= 8" in err
    (tmp_path / "o4" / "small_64_float32_run2" / "bag").mkdir(parents=True)  # a second run's bag is never replaced
    rc, out, err = cli(capsys, "latency", "--configs", "small:64", "--repeat", "2", "--out", tmp_path / "o4",
                       "--machine-check", "0")
    assert rc == 2 and "small_64_float32_run2/bag" in err and len(err.strip().splitlines()) == 1, err
