"""`policy-xai analyze / compare / bench-bag` on real bags written by rosbags: every output is written
and reads back, the annotated bag keeps the original messages and stamps, explanations already in a
bag are compared with the recomputation, truncated bags are analysed as far as they go."""
import json

import numpy as np
import pytest

from policy_xai import bags
from policy_xai.cli import build_parser
from policy_xai.bags.analyze import AnalyzeOptions, analyze_bag
from policy_xai.commands.analyze import bench, options, run_compare
from policy_xai.spec import load_spec

SPEC = load_spec("small")
N = 30


def args(*argv):
    return build_parser().parse_args(list(map(str, argv)))


def test_options_of_the_command_line_are_the_library_defaults():
    """AnalyzeOptions' defaults are `policy-xai analyze`'s; the command maps its flags onto the fields."""
    assert options(args("analyze", "B")) == AnalyzeOptions("B")
    o = options(args("analyze", "B", "--out", "O", "--no-bag", "--no-video", "--methods", "dtd,rap",
                     "--image-topic", "/cam", "--time-jump", "0", "--compression", "lz4"))
    assert o == AnalyzeOptions("B", out="O", write_bag=False, video=False, methods="dtd,rap", topics={"image": "/cam"},
                               time_jump=0.0, compression="lz4")
    t = o.topic_names()
    assert t["image"] == "/cam" and t["joint_states"] == bags.default_topics()["joint_states"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("an")
    bag = bags.write_synthetic_bag(d / "in_mcap", SPEC, N, "mcap", gap_after=20, gap_s=0.5)
    out = d / "out"
    summary = analyze_bag(AnalyzeOptions(bag, out=out, methods="dtd,rap", batch=16), quiet=True)
    return bag, out, summary


def test_outputs_are_written_and_read_back(run):
    bag, out, s = run
    for f in ("ratios.csv", "ratios.parquet", "importance.csv", "importance.parquet", "fig4_ratios.png",
              "fig5_curves.png", "importance.png", "heatmap_dtd.mp4", "heatmap_rap.mp4", "summary.json",
              "compare_methods_curves.png", "compare_methods_rank.png", "compare_methods.csv"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert s["steps"] == N and s["source"] == "raw" and s["timing"]["steps_per_s"] > 0
    assert json.loads((out / "summary.json").read_text())["steps"] == N
    csv_t, pq_t = bags.read_table(out / "ratios.csv"), bags.read_table(out / "ratios.parquet")
    assert list(csv_t) == list(pq_t) == ["step", "stamp_ns", "time", "method", "image", "joint_position",
                                         "joint_velocity", "ee_position", "ee_velocity"]
    assert len(pq_t["step"]) == 2 * N and set(pq_t["method"]) == {"dtd", "rap"}
    np.testing.assert_array_equal(csv_t["stamp_ns"], pq_t["stamp_ns"])
    groups = np.stack([pq_t[g] for g in ("image", "joint_position", "joint_velocity", "ee_position", "ee_velocity")], 1)
    np.testing.assert_allclose(groups.sum(1), 1.0, atol=1e-5)
    imp = bags.read_table(out / "importance.parquet")
    assert len(imp["step"]) == N and all(f"alpha/{j}" in imp for j in SPEC.joint_names)
    # the gap is found, and is in the figure's data
    assert [g["after_step"] for g in s["gaps"]["gaps"]] == [20]
    import cv2

    cap = cv2.VideoCapture(str(out / "heatmap_dtd.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N
    cap.release()


def test_annotated_bag_keeps_originals_and_adds_explanations(run):
    from rosbags.highlevel import AnyReader

    from policy_xai.attribution import explain
    from policy_xai.policy import init_policy

    bag, out, s = run
    with AnyReader([bag]) as r:
        orig = [(c.topic, t, bytes(raw)) for c, t, raw in r.messages()]
    T = bags.default_topics()
    with AnyReader([out / "bag"]) as r:
        got = {}
        for c, t, raw in r.messages():
            got.setdefault(c.topic, []).append((t, bytes(raw), c.msgtype))
        assert [(tp, t, raw) for tp, t, raw in orig] == [(tp, t, raw) for tp, t, raw in orig
                                                         if (t, raw) in {(a, b) for a, b, _ in got[tp]}]
        for k in ("relevance_image", "relevance_config", "relevance_points", "ratios", "importance"):
            assert len(got[T[k]]) == N, k
        for k in ("relevance_image", "ratios"):
            assert len(got[T[k] + "/rap"]) == N
        ratios = [r.deserialize(raw, typ) for _, raw, typ in got[T["ratios"]]]
        imgs = [r.deserialize(raw, typ) for _, raw, typ in got[T["relevance_image"]]]
    obs_stamps = bags.read_table(out / "ratios.csv")["stamp_ns"][:N]
    assert [bags.stamp_ns(m) for m in ratios] == list(obs_stamps)
    assert all(abs(sum(m.position) - 1) < 1e-6 and list(m.name)[0] == "image" for m in ratios)
    assert imgs[0].encoding == "32FC1" and (imgs[0].height, imgs[0].width) == (64, 64)
    assert imgs[0].header.frame_id == "camera"
    # the relevance of one step equals a direct explanation of that observation
    with bags.BagSource(bag) as b:
        obs = bags.read_observations(b, SPEC, bags.ReadOptions(bags.default_topics()))
    policy = init_policy(SPEC, 0)
    i = 7
    alpha = bags.importance_factors(SPEC, obs.configs[i:i + 1])
    ex = explain(policy, policy.prepare_image(obs.images[i]), policy.prepare_config(obs.configs[i]), "dtd", alpha=alpha)
    rel = np.frombuffer(bytes(imgs[i].data), "<f4").reshape(64, 64)
    np.testing.assert_allclose(rel, ex.image[0].numpy(), rtol=1e-4, atol=1e-7 * float(np.abs(rel).max()))


def test_explanations_in_the_bag_are_compared_with_the_recomputation(run, tmp_path):
    """The annotated bag holds explanation topics: analysing it again compares them (differences ~0)
    and moves them to /recorded/... in the new output bag."""
    from rosbags.highlevel import AnyReader

    _, out, _ = run
    s = analyze_bag(AnalyzeOptions(out / "bag", out=tmp_path / "again", methods="dtd", video=False), quiet=True)
    lv = s["live_vs_recomputed"]
    assert lv["matched_steps"] == N
    for k in ("ratios", "relevance_config", "relevance_image", "importance"):
        assert lv[k]["matched"] == N and lv[k]["max_abs_diff"] < 1e-5, (k, lv[k])
    # a different method is reported as such
    s2 = analyze_bag(AnalyzeOptions(out / "bag", out=tmp_path / "gbp", methods="gbp", video=False, write_bag=False,
                                    max_steps=8), quiet=True)
    assert s2["live_vs_recomputed"]["ratios"]["max_abs_diff"] > 1e-3
    with AnyReader([tmp_path / "again" / "bag"]) as r:
        topics = {c.topic for c in r.connections}
    assert "/recorded/policy_xai/relevance/ratios" in topics and "/policy_xai/relevance/ratios" in topics


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_is_analysed_as_far_as_it_goes(tmp_path, storage):
    n = 130 if storage == "mcap" else 40  # MCAP: more than one 1 MB chunk
    full = bags.write_synthetic_bag(tmp_path / "full", SPEC, n, storage)
    cut = bags.truncate_bag(full, tmp_path / "cut", 0.8)
    s = analyze_bag(AnalyzeOptions(cut, out=tmp_path / "o", video=False), quiet=True)
    assert "stops at" in s["truncated"] and 10 < s["steps"] < n
    assert s["output_bag"]["counts"]["/policy_xai/relevance/ratios"] == s["steps"]
    from rosbags.highlevel import AnyReader

    with AnyReader([tmp_path / "o" / "bag"]) as r:
        assert r.message_count == sum(s["output_bag"]["counts"].values())


def test_start_duration_and_max_steps(run, tmp_path):
    bag, _, _ = run
    s = analyze_bag(AnalyzeOptions(bag, out=tmp_path / "o", start=0.2, max_steps=5, video=False), quiet=True)
    assert s["steps"] == 5
    st = bags.read_table(tmp_path / "o" / "ratios.csv")["stamp_ns"]
    assert st[0] - 1_700_000_000_000_000_000 >= 150_000_000


def test_compare_two_methods_and_two_runs(run, tmp_path):
    bag, out, _ = run
    a = args("compare", f"{out}:dtd", f"{out}:rap", "--out", tmp_path / "m")
    assert run_compare(a) == 0
    res = json.loads((tmp_path / "m" / "compare.json").read_text())
    assert res["alignment"] == "stamp" and res["matched_steps"] == N
    assert (tmp_path / "m" / "compare_rank.png").is_file() and (tmp_path / "m" / "compare_curves.png").is_file()
    # the same recording as sqlite3 analysed separately: identical ratios, rank correlation 1
    other = bags.write_synthetic_bag(tmp_path / "sq", SPEC, N, "sqlite3", gap_after=20, gap_s=0.5)
    analyze_bag(AnalyzeOptions(other, out=tmp_path / "o2", methods="dtd,rap", video=False, write_bag=False), quiet=True)
    assert run_compare(args("compare", out / "ratios.parquet", tmp_path / "o2", "--out", tmp_path / "r")) == 0
    res = json.loads((tmp_path / "r" / "compare.json").read_text())
    assert res["matched_steps"] == N and res["max_abs_ratio_diff"] < 1e-6
    assert res["mean_rank_corr_of_groups_per_step"] == pytest.approx(1.0)
    # a run shifted in time is matched by time since its first step
    b = bags.load_ratio_series(str(tmp_path / "o2"))
    a = bags.load_ratio_series(str(out))
    b.stamps = b.stamps + 10**9
    ia, ib, how = bags.align(a, b)
    assert how == "time" and len(ia) == N


def test_bench_reports_steps_per_second():
    rows = bench(sizes=(64, 240), steps=6, quiet=True)
    assert [r["size"] for r in rows] == [64, 240]
    assert all(r["explain_steps_per_s"] > 0 and r["steps"] == 6 for r in rows)
