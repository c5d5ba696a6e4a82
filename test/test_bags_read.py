"""Reading rosbag2 bags written by rosbags (sqlite3 and MCAP): intact, metadata-less, single files,
cut off mid-write, unknown types, and the bad inputs the analysis must name clearly."""
import argparse

import numpy as np
import pytest

from policy_xai import bags
from policy_xai.spec import load_spec

SPEC = load_spec("small")
N = 120  # > 1 MB of images: rosbags' MCAP writer closes its first chunk at 1 MB


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("bags")
    return {s: bags.write_synthetic_bag(d / s, SPEC, N, s) for s in ("mcap", "sqlite3")}


def opts(**kw):
    return bags.ReadOptions(bags.default_topics(), **kw)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_intact_bag_reads_with_rosbags(written, storage):
    with bags.BagSource(written[storage]) as b:
        assert b.reader == "rosbags" and b.problem is None and b.storage == storage
        assert {t: i.count for t, i in b.topics.items()} == {"/camera/image_raw": N, "/joint_states": N}
        assert b.topics["/camera/image_raw"].msgtype == "sensor_msgs/msg/Image"
        msgs = list(b.messages())
        assert len(msgs) == 2 * N
        times = [t for _, t, _ in msgs]
        assert times == sorted(times)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_pairs_like_the_policy_node(written, storage):
    """Joint states come first with other names/order (plus head_pan); pairing and the configuration
    vector must match live.ConfigBuilder on the same q, v."""
    from policy_xai.live import ConfigBuilder, RobotAdapter
    from policy_xai.synthetic import synthetic_observations

    with bags.BagSource(written[storage]) as b:
        obs = bags.read_observations(b, SPEC, opts())
    assert obs.source == "raw" and len(obs) == N and not obs.skipped
    imgs, cfg = synthetic_observations(SPEC, N, seed=0)
    np.testing.assert_array_equal(obs.images, imgs)
    builder = ConfigBuilder(SPEC, RobotAdapter(SPEC).ee)
    sl = SPEC.group_slices()
    for i in (0, N // 2, N - 1):
        want = builder.build(cfg[i, sl["joint_position"]].astype(float), cfg[i, sl["joint_velocity"]].astype(float))
        np.testing.assert_allclose(obs.configs[i], want, rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(obs.stamps) == 50_000_000)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_metadata_less_folder_and_single_file(written, storage, tmp_path):
    import shutil

    d = tmp_path / "nometa"
    shutil.copytree(written[storage], d)
    (d / "metadata.yaml").unlink()
    f = next(p for p in d.iterdir())
    for path in (d, f):
        with bags.BagSource(path) as b:
            assert b.reader != "rosbags" and b.problem is None
            assert b.message_count == 2 * N
            assert len(bags.read_observations(b, SPEC, opts())) == N


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("keep_metadata", [True, False])
def test_truncated_bag_reads_what_is_readable(written, storage, keep_metadata, tmp_path):
    cut = bags.truncate_bag(written[storage], tmp_path / "cut", 0.8, keep_metadata=keep_metadata)
    with bags.BagSource(cut) as b:
        assert b.reader in ("mcap-scan", "sqlite-recover")
        assert b.problem is not None
        text = b.problem.describe(b.start_ns)
        assert "stops at" in text and "s after the start" in text
        if storage == "mcap":
            assert b.problem.byte_offset is not None and b.problem.byte_offset < b.problem.file_size
        else:
            assert b.problem.last_row is not None
        assert 10 < b.message_count < 2 * N
        obs = bags.read_observations(b, SPEC, opts())
        assert 5 < len(obs) < N
        # what was read is the bag's beginning, intact
        with bags.BagSource(written[storage]) as full:
            ref = bags.read_observations(full, SPEC, opts())
        np.testing.assert_array_equal(obs.stamps, ref.stamps[:len(obs)])
        np.testing.assert_array_equal(obs.images, ref.images[:len(obs)])


def test_bag_cut_inside_its_first_chunk_says_so(written, tmp_path):
    cut = bags.truncate_bag(written["mcap"], tmp_path / "cut", 0.3)
    with bags.BagSource(cut) as b:
        assert b.message_count == 0 and "no message is readable" in b.problem.describe()
        with pytest.raises(bags.BagError, match="no messages on .*the file ends inside a record"):
            bags.read_observations(b, SPEC, opts())


def test_missing_topics_name_what_the_bag_has(written):
    with bags.BagSource(written["mcap"]) as b:
        o = opts()
        o.topics["image"] = "/cam/front"
        with pytest.raises(bags.BagError,
                           match=r"/cam/front.*it has: /camera/image_raw \(sensor_msgs/msg/Image, 120\)"):
            bags.read_observations(b, SPEC, o)
        with pytest.raises(bags.BagError, match="observation topics"):
            bags.read_observations(b, SPEC, opts(source="observation"))


def test_wrong_size_fails_clearly_or_resizes_with_a_warning(tmp_path):
    bag = bags.write_synthetic_bag(tmp_path / "big", SPEC, 6, "mcap", image_size=(96, 80))
    with bags.BagSource(bag) as b:
        with pytest.raises(bags.BagError, match=r"96x80, policy 'small' takes 64x64; pass --resize"):
            bags.read_observations(b, SPEC, opts())
    with bags.BagSource(bag) as b, pytest.warns(UserWarning, match="resizing 96x80"):
        obs = bags.read_observations(b, SPEC, opts(resize=True))
    assert len(obs) == 6 and obs.images.shape[1:] == (64, 64, 3) and obs.resized == 6


def test_other_encodings_convert_and_unsupported_ones_are_named(tmp_path):
    ref = bags.write_synthetic_bag(tmp_path / "rgb", SPEC, 4, "mcap")
    bgr = bags.write_synthetic_bag(tmp_path / "bgr", SPEC, 4, "sqlite3", encoding="bgr8")
    with bags.BagSource(ref) as a, bags.BagSource(bgr) as b:
        np.testing.assert_array_equal(bags.read_observations(a, SPEC, opts()).images,
                                      bags.read_observations(b, SPEC, opts()).images)
    # CompressedImage (PNG: lossless) on the camera topic
    import cv2
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = bags.typestore()
    T = ts.types
    with bags.BagSource(ref) as a:
        want = bags.read_observations(a, SPEC, opts()).images
        with Writer(tmp_path / "png", version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
            c = w.add_connection("/camera/image_raw", "sensor_msgs/msg/CompressedImage", typestore=ts)
            j = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
            for topic, t, raw in a.messages():
                if topic == "/joint_states":
                    w.write(j, t, raw)
                    continue
                m = ts.deserialize_cdr(raw, "sensor_msgs/msg/Image")
                rgb = np.frombuffer(bytes(m.data), np.uint8).reshape(64, 64, 3)
                ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                msg = T["sensor_msgs/msg/CompressedImage"](header=m.header, format="rgb8; png compressed bgr8",
                                                           data=np.frombuffer(png.tobytes(), np.uint8))
                w.write(c, t, ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
    with bags.BagSource(tmp_path / "png") as b:
        np.testing.assert_array_equal(bags.read_observations(b, SPEC, opts()).images, want)
    # a 16-bit depth image on the camera topic
    with Writer(tmp_path / "depth", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        j = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        h = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="")
        img = T["sensor_msgs/msg/Image"](header=h, height=64, width=64, encoding="16UC1", is_bigendian=0, step=128,
                                         data=np.zeros(64 * 128, np.uint8))
        js = T["sensor_msgs/msg/JointState"](header=h, name=list(SPEC.joint_names), position=np.zeros(7),
                                             velocity=np.zeros(7), effort=np.zeros(0))
        w.write(j, 1, ts.serialize_cdr(js, "sensor_msgs/msg/JointState"))
        w.write(c, 2, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
    with bags.BagSource(tmp_path / "depth") as b:
        obs = bags.read_observations(b, SPEC, opts())
    assert len(obs) == 0
    (reason, n), = obs.skipped.items()
    assert "16UC1" in reason and "not supported" in reason and n == 1


def test_unknown_message_types_and_wrong_topic_types(tmp_path):
    """A custom type the typestore lacks: its definition stored in the bag makes it decodable and it is
    copied into the output bag; an image topic of the wrong type is refused with the type named."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import get_types_from_msg

    src = bags.typestore()
    src.register(get_types_from_msg("float64 level\nstring label", "acme_msgs/msg/Battery"))
    bag = bags.write_synthetic_bag(tmp_path / "base", SPEC, 4, "mcap")
    out = tmp_path / "custom"
    with bags.BagSource(bag) as b, Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {t.name: w.add_connection(t.name, t.msgtype, typestore=src) for t in b.topics.values()}
        cb = w.add_connection("/battery", "acme_msgs/msg/Battery", typestore=src)
        for topic, t, raw in b.messages():
            w.write(conns[topic], t, raw)
        msg = src.types["acme_msgs/msg/Battery"](level=0.5, label="main")
        w.write(cb, b.start_ns, src.serialize_cdr(msg, "acme_msgs/msg/Battery"))
    ts = bags.typestore()
    with bags.BagSource(out) as b:
        assert b.topics["/battery"].msgtype == "acme_msgs/msg/Battery"
        assert bags.register_bag_types(ts, list(b.topics.values())) == []
        raw = next(r for topic, _, r in b.messages(["/battery"]))
        assert ts.deserialize_cdr(raw, "acme_msgs/msg/Battery").label == "main"
        o = opts()
        o.topics["image"] = "/battery"
        with pytest.raises(bags.BagError, match="/battery has type acme_msgs/msg/Battery"):
            bags.read_observations(b, SPEC, o)


def test_time_gaps_are_found(tmp_path):
    bag = bags.write_synthetic_bag(tmp_path / "gap", SPEC, 12, "sqlite3", gap_after=5, gap_s=1.5)
    with bags.BagSource(bag) as b:
        obs = bags.read_observations(b, SPEC, opts())
    g = bags.find_gaps(obs.stamps)
    assert g["median_period_s"] == pytest.approx(0.05)
    assert len(g["gaps"]) == 1 and g["gaps"][0]["after_step"] == 5
    assert g["gaps"][0]["length_s"] == pytest.approx(1.55)
    t, v = bags.break_at_gaps(np.arange(12.0), np.ones((12, 2)), g)
    assert len(t) == 13 and np.isnan(v[6]).all()


def test_stamps_going_backwards_are_counted_and_make_no_fake_gap(tmp_path, capsys):
    """Steps 10-13 logged after step 14 (a burst that arrived late): the stamps go backwards once on
    each topic; the late steps are not paired (as the live policy node would not pair them), and the
    hole they leave in the paired steps is no time gap of the recording."""
    order = list(range(10)) + [14, 10, 11, 12, 13] + list(range(15, 20))
    bag = bags.write_synthetic_bag(tmp_path / "late", SPEC, 20, step_order=order)
    with bags.BagSource(bag) as b:
        obs = bags.read_observations(b, SPEC, opts())
    assert obs.backwards == {"/camera/image_raw": 1, "/joint_states": 1}
    assert obs.largest_backward_ns == 4 * 50_000_000
    assert len(obs) == 16 and sorted(obs.late_stamps) == [int(obs.stamps[0]) + k * 50_000_000 for k in (10, 11, 12, 13)]
    g = bags.find_gaps(obs.stamps, 3.0, obs.backwards, obs.late_stamps, obs.largest_backward_ns)
    assert g["backwards"] == 1 and g["backwards_per_topic"] == obs.backwards
    assert g["largest_backward_s"] == pytest.approx(0.2)
    assert g["gaps"] == []  # not a gap of the recording ...
    assert len(g["out_of_order"]) == 1 and g["out_of_order"][0]["late_observations"] == 4  # ... but late steps
    assert g["out_of_order"][0]["after_step"] == 9
    # the same through `policy-xai analyze`
    from policy_xai.cli import main

    assert main(["analyze", str(bag), "--out", str(tmp_path / "o"), "--no-video", "--no-bag"]) == 0
    out = capsys.readouterr().out
    assert "stamps going backwards: 1 (/camera/image_raw 1, /joint_states 1; largest 0.200 s)" in out
    assert "time gaps: 0" in out and "4 observations arrived late" in out


def test_a_clock_restart_restarts_the_pairing_and_is_counted(tmp_path):
    """Simulated time restarting with a new episode (stamps jump back 1.45 s > the policy node's
    time_jump): both episodes are paired, as the live node pairs them, and the jump is counted."""
    order = list(range(30)) + list(range(30))
    bag = bags.write_synthetic_bag(tmp_path / "restart", SPEC, 60, step_order=order)
    with bags.BagSource(bag) as b:
        obs = bags.read_observations(b, SPEC, opts())
    assert len(obs) == 60 and obs.backwards == {"/camera/image_raw": 1, "/joint_states": 1}
    g = bags.find_gaps(obs.stamps, 3.0, obs.backwards, obs.late_stamps, obs.largest_backward_ns)
    assert g["backwards"] == 1 and g["gaps"] == [] and g["out_of_order"] == []
    assert g["largest_backward_s"] == pytest.approx(1.45)


def test_replay_plan_picks_the_graph():
    T = bags.default_topics()
    assert bags.replay_plan([T["image"], T["joint_states"], "/rosout"])["graph"] == "explain"
    p = bags.replay_plan([T["obs_image"], T["obs_config"], T["torques"], T["ratios"], T["image"], T["joint_states"]])
    assert p["graph"] == "replay" and T["ratios"] not in p["topics"]
    with pytest.raises(bags.BagError, match="nothing to replay"):
        bags.replay_plan(["/rosout"])
    assert bags.replay_plan(p["topics"] + [T["image"], T["joint_states"]], graph="explain")["graph"] == "explain"
    with pytest.raises(bags.BagError, match="into graph replay"):
        bags.replay_plan([T["image"], T["joint_states"]], graph="replay")


def test_cli_error_is_one_clear_line(written, tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "policy_xai.cli", "analyze", str(written["sqlite3"]), "--joint-topic",
                        "/robot/joint_states", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "policy-xai analyze: error:" in p.stderr and "/robot/joint_states" in p.stderr
    assert "/joint_states (sensor_msgs/msg/JointState, 120)" in p.stderr and "Traceback" not in p.stderr


def test_analyze_arguments_default_to_the_live_pipeline():
    from policy_xai.cli import build_parser
    from policy_xai.ros import interfaces as itf

    a = build_parser().parse_args(["analyze", "x"])
    assert isinstance(a, argparse.Namespace)
    assert a.topic_image == itf.topic_name("image") and a.topic_ratios == itf.topic_name("ratios")
    assert a.methods == itf.NODES["attribution_node"].parameters["method"]
    assert a.sync_tolerance == itf.NODES["policy_node"].parameters["sync_tolerance"]
