"""A bag recorded from the live pipeline: `policy-xai replay` plays a robot-like bag into the real
policy and attribution nodes (separate processes over Fast DDS) and records them with the raw-bytes
recorder; `analyze` then pairs that recording like the nodes did and reproduces the live explanations."""
import subprocess
import sys

import numpy as np
import pytest

import rclpy  # noqa: F401  (the test environment always has it: a missing rclpy must fail, not skip)

from policy_xai import bags
from policy_xai.bags.analyze import AnalyzeOptions, analyze_bag
from policy_xai.spec import load_spec  # noqa: E402

from ros_harness import fresh_domain  # noqa: E402

SPEC = load_spec("small")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    d = tmp_path_factory.mktemp("live")
    src = bags.write_synthetic_bag(d / "robot", SPEC, 24, "mcap")
    rec = d / "rec"
    p = subprocess.run([sys.executable, "-m", "policy_xai.cli", "replay", str(src), "--record", str(rec),
                        "--no-visualization", "--domain-id", str(fresh_domain()), "--log-dir", str(d / "logs")],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "graph 'explain'" in p.stdout and "published 48 messages" in p.stdout
    return src, rec, d, p.stdout + p.stderr


def node_logs(d) -> str:
    """The replay's output and the tail of every node's log, for a failure message."""
    out = [d[3]]
    for f in sorted((d[2] / "logs").glob("*")):
        out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(out)


def test_live_recording_reproduced_by_the_offline_analysis(recorded, tmp_path):
    src, rec = recorded[:2]
    with bags.BagSource(rec) as b:
        assert b.reader == "rosbags" and b.storage == "mcap"
        T = bags.default_topics()
        counts = {k: b.topics[T[k]].count if T[k] in b.topics else 0
                  for k in ("obs_image", "obs_config", "torques", "ratios", "relevance_image", "importance")}
        assert all(counts.values()), f"{counts}\n{node_logs(recorded)}"
    s = analyze_bag(AnalyzeOptions(rec, out=tmp_path / "o", video=False), quiet=True)
    assert s["source"] == "observation" and s["steps"] >= 20
    lv = s["live_vs_recomputed"]
    from policy_xai.attribution.engine import FALLBACK_METHOD

    # an untrained network has no amortised explainer: node and analysis both use the fallback
    assert lv["live_methods"] == [FALLBACK_METHOD] and "warning" not in lv
    assert lv["torques"]["matched"] == s["steps"] and lv["torques"]["max_abs_diff"] < 1e-4
    for k in ("ratios", "relevance_config", "importance"):
        # every live explanation in the bag is matched; the attribution node explains the newest
        # decision and skips the rest when it falls behind (a slower method on a loaded machine)
        recorded = counts["ratios" if k == "ratios" else "importance" if k == "importance" else "relevance_image"]
        assert lv[k]["matched"] >= min(recorded, s["steps"]) - 1 and lv[k]["matched"] >= s["steps"] // 2, (k, lv[k])
        assert lv[k]["max_abs_diff"] < 1e-4, (k, lv[k])
    # ig_occlusion picks its occlusion windows by the ranking of |ig|: a near-tie can flip between the
    # live batch of 1 and the offline batches (float differences ~1e-7), moving one window's share
    tol = 5e-3 if FALLBACK_METHOD == "ig_occlusion" else 1e-4
    assert lv["relevance_image"]["relative_to_max"] < tol
    # the annotated bag's explanation messages decode with rclpy as the live ones do
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import Image, JointState

    with AnyReader([tmp_path / "o" / "bag"]) as r:
        got = {}
        for c, _, raw in r.messages():
            got.setdefault(c.topic, []).append(bytes(raw))
    ratios = deserialize_message(got["/policy_xai/relevance/ratios"][3], JointState)
    assert abs(sum(ratios.position) - 1) < 1e-6 and ratios.name[0] == "image"
    img = deserialize_message(got["/policy_xai/relevance/image"][3], Image)
    assert img.encoding == "32FC1" and img.width == 64
    assert len(got["/recorded/policy_xai/relevance/ratios"]) == lv["ratios"]["matched"]
    # other weights than the live nodes had: the torques no longer match, and the summary says so
    s2 = analyze_bag(AnalyzeOptions(rec, out=tmp_path / "w", seed=3, video=False, write_bag=False, max_steps=5),
                     quiet=True)
    assert "other weights" in s2["live_vs_recomputed"]["torque_warning"]


def test_raw_topics_of_the_recording_pair_like_the_policy_node(recorded):
    """The camera images and joint states in the recording, paired offline, give the configuration
    vectors the policy node published for the same stamps."""
    rec = recorded[1]
    with bags.BagSource(rec) as b:
        raw = bags.read_observations(b, SPEC, bags.ReadOptions(bags.default_topics(), source="raw"))
        obs = bags.read_observations(b, SPEC, bags.ReadOptions(bags.default_topics(), source="observation"))
    common, ir, io = np.intersect1d(raw.stamps, obs.stamps, return_indices=True)
    assert len(common) >= min(len(raw), len(obs)) - 2 and len(common) > 10
    np.testing.assert_allclose(raw.configs[ir], obs.configs[io], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(raw.images[ir], obs.images[io])
