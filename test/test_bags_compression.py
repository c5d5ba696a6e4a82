"""MCAP chunk compression (issue 9, item 10): the recorder and the annotated bags of `analyze` write
zstd (default) or lz4 compressed chunks, as rosbag2's MCAP storage does; `rosbags` and the `mcap`
library both read them, message for message the same as an uncompressed bag, and the bags shrink.
Real bags: written by `analyze`, and recorded from a real sim_node process over DDS."""
import hashlib
import time

import pytest
from mcap.reader import make_reader

from policy_xai import bags
from policy_xai.bags.analyze import AnalyzeOptions, analyze_bag
from policy_xai.cli import build_parser
from policy_xai.ros import interfaces as itf
from policy_xai.ros.graph import NodeLaunch, graph
from policy_xai.ros.runner import GraphRunner
from policy_xai.spec import load_spec

from ros_harness import Probe, fresh_domain

MCAP_NAME = {"zstd": "zstd", "lz4": "lz4", "none": ""}


def read_both(bag_dir):
    """(messages via rosbags, via mcap) as sorted (topic, log time, sha256 of the bytes); chunk compressions."""
    with bags.BagSource(bag_dir) as b:
        assert b.reader == "rosbags" and b.problem is None
        via_rosbags = sorted((t, lt, hashlib.sha256(raw).hexdigest()) for t, lt, raw in b.messages())
    (f,) = list(bag_dir.glob("*.mcap"))
    with open(f, "rb") as fh:
        r = make_reader(fh)
        chunks = {c.compression for c in r.get_summary().chunk_indexes}
        via_mcap = sorted((ch.topic, m.log_time, hashlib.sha256(m.data).hexdigest()) for _, ch, m in r.iter_messages())
    return via_rosbags, via_mcap, chunks


def size(bag_dir) -> int:
    return sum(p.stat().st_size for p in bag_dir.glob("*.mcap"))


def test_annotated_bags_are_compressed_and_read_by_rosbags_and_mcap(tmp_path):
    src = bags.write_synthetic_bag(tmp_path / "in", load_spec("small"), 60)
    got = {}
    for comp in ("zstd", "lz4", "none"):
        analyze_bag(AnalyzeOptions(src, out=tmp_path / comp, video=False, compression=comp), quiet=True)
        via_rosbags, via_mcap, chunks = read_both(tmp_path / comp / "bag")
        assert via_rosbags == via_mcap and len(via_mcap) == 60 * 2 + 60 * 5
        assert chunks == {MCAP_NAME[comp]}
        got[comp] = via_mcap
    assert got["zstd"] == got["lz4"] == got["none"]  # the same messages, bytes and log times
    none = size(tmp_path / "none" / "bag")
    assert size(tmp_path / "zstd" / "bag") < 0.85 * none and size(tmp_path / "lz4" / "bag") < 0.97 * none
    # a compressed bag cut off mid-write is still read chunk by chunk (the MCAP scan decompresses)
    cut = bags.truncate_bag(tmp_path / "lz4" / "bag", tmp_path / "cut", 0.7, keep_metadata=False)
    with bags.BagSource(cut) as b:
        assert b.reader == "mcap-scan" and 0 < b.message_count < len(got["lz4"])


def test_compression_option_on_record_run_demo_analyze():
    p = build_parser()
    for argv in (["record", "x"], ["run"], ["demo"], ["analyze", "b"], ["latency"]):
        assert p.parse_args(argv).compression == "zstd"  # on by default
        assert p.parse_args(argv + ["--compression", "lz4"]).compression == "lz4"
        assert p.parse_args(argv + ["--compression", "none"]).compression == "none"
        with pytest.raises(SystemExit):
            p.parse_args(argv + ["--compression", "gzip"])


def test_recorder_writes_compressed_chunks_of_a_live_sim(tmp_path):
    """Three recorders (zstd, lz4, none) on one real sim_node: the same traffic, three bags."""
    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("image")
    recs = [NodeLaunch(f"recorder_{c}", itf.NODES["recorder"].module, "policy_xai_recorder", None,
                       {"output": str(tmp_path / c), "compression": c,
                        "topics": ["/camera/image_raw", "/joint_states", "/camera/camera_info"]})
            for c in ("zstd", "lz4", "none")]
    runner = GraphRunner([*recs, *graph("sim", nodes=["sim_node"])], domain_id=dom, log_dir=tmp_path / "logs")
    runner.start()
    try:
        probe.wait_for("image", 5, timeout=90)
        time.sleep(4.0)
        assert not runner.dead(), runner.report()
    finally:
        runner.stop(["sim_node"])
        runner.stop([r.name for r in recs])
        probe.close()
    assert all(runner[r.name].returncode == 0 for r in recs), runner.report()
    per_msg = {}
    for c in ("zstd", "lz4", "none"):
        via_rosbags, via_mcap, chunks = read_both(tmp_path / c)
        assert via_rosbags == via_mcap and len(via_mcap) > 60
        assert chunks == {MCAP_NAME[c]}
        assert {t for t, _, _ in via_mcap} >= {"/camera/image_raw", "/joint_states"}
        per_msg[c] = size(tmp_path / c) / len(via_mcap)
    print(f"bytes per message: {per_msg}")
    assert per_msg["zstd"] < 0.7 * per_msg["none"] and per_msg["lz4"] < 0.9 * per_msg["none"]
