"""The ROS layer's pure parts: declarations, conversions, pairing, hand-off, pictures (no DDS)."""
import ast
import threading
from pathlib import Path

import numpy as np
import pytest

from policy_xai import live, viz
from policy_xai.ros import convert as cv
from policy_xai.ros import graph as gr
from policy_xai.ros import interfaces as itf
from policy_xai.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


# ---- declarations ----------------------------------------------------------------------------
def test_topics_declared_once_and_types_import():
    names = [t.name for t in itf.TOPICS]
    assert len(names) == len(set(names))
    for t in itf.TOPICS:
        assert t.qos in (itf.SENSOR_DATA, itf.RELIABLE, itf.LATCHED)
        assert itf.message_class(t.type).__name__ == t.type.split("/")[-1]
    for t in itf.TOPICS:
        if t.type == "sensor_msgs/msg/Image":
            assert t.qos == itf.SENSOR_DATA, t.name
    table = itf.topic_table_markdown()
    assert all(f"`{n}`" in table for n in names)


def test_docs_table_matches_declarations():
    doc = (ROOT / "docs" / "ros.md").read_text()
    assert itf.topic_table_markdown() in doc, "regenerate the table: python -m policy_xai.ros.interfaces"
    assert itf.parameter_table_markdown() in doc, "regenerate the table: python -m policy_xai.ros.interfaces"
    assert itf.role_table_markdown() in doc, "regenerate the table: python -m policy_xai.ros.interfaces"


def test_core_modules_do_not_import_rclpy():
    for rel in ["live.py", "viz.py", "ros/interfaces.py", "ros/graph.py", "ros/runner.py", "ros/convert.py"]:
        tree = ast.parse((ROOT / "src" / "policy_xai" / rel).read_text())
        mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.startswith("rclpy") for m in mods), rel


def test_graph_parameters_are_declared_and_files_parse():
    import yaml

    for gname in gr.GRAPHS:
        nodes = gr.graph(gname)
        for n in nodes:
            data = yaml.safe_load(Path(n.params_file).read_text())
            section = data.get(n.name, {}).get("ros__parameters", {})
            unknown = set(section) - set(itf.NODES[n.name].parameters) - set(itf.COMMON_PARAMETERS)
            assert not unknown, (gname, n.name, unknown)
    n = gr.graph("sim", overrides={"policy_node": {"spec": "paper", "rate": 20.0, "resize": True,
                                                     "torque_limits": [1.0, 2.5]}})[1]
    args = n.ros_args()
    assert args[:3] == ["--ros-args", "-r", "__node:=policy_node"]
    assert "spec:=paper" in args and "rate:=20.0" in args and "resize:=true" in args
    assert "torque_limits:=[1.0,2.5]" in args
    with pytest.raises(ValueError):
        gr.graph("nope")


# ---- conversions ---------------------------------------------------------------------------------
def test_camera_info_message_from_the_core_fields():
    from policy_xai.observation import camera_info_fields

    msg = cv.camera_info_msg(camera_info_fields(80, 60, 90.0), 1_500_000_123, "camera")
    assert (msg.width, msg.height, msg.distortion_model, list(msg.d)) == (80, 60, "plumb_bob", [0.0] * 5)
    assert list(msg.k) == pytest.approx([30, 0, 40, 0, 30, 30, 0, 0, 1])  # f = (60 / 2) / tan(45 deg)
    assert list(msg.p) == pytest.approx([30, 0, 40, 0, 0, 30, 30, 0, 0, 0, 1, 0])
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1, 500_000_123, "camera")


def test_rgb_roundtrip_and_encodings():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    msg = cv.image_msg(img, 1_500_000_123, "cam")
    assert (msg.encoding, msg.step, msg.header.stamp.sec, msg.header.stamp.nanosec) == ("rgb8", 21, 1, 500_000_123)
    assert np.array_equal(cv.rgb_from_msg(msg), img)
    # bgr8 with a padded row
    bgr = np.ascontiguousarray(img[:, :, ::-1])
    padded = np.zeros((5, 24), np.uint8)
    padded[:, :21] = bgr.reshape(5, 21)
    out = cv.to_rgb(cv.decode_image(5, 7, "bgr8", 24, padded.tobytes()), "bgr8")
    assert np.array_equal(out, img)


def test_float_roundtrip_and_big_endian():
    r = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    msg = cv.image_msg(r, 0)
    assert msg.encoding == "32FC1" and msg.step == 16
    assert np.array_equal(cv.float_image_from_msg(msg), r)
    be = r.astype(">f4").tobytes()
    assert np.array_equal(cv.decode_image(3, 4, "32FC1", 16, be, is_bigendian=True)[:, :, 0], r)


@pytest.mark.parametrize("kw, match", [
    (dict(encoding="yuv422"), "not supported"),
    (dict(step=10), "step"),
    (dict(data=b"\x00" * 5), "bytes"),
    (dict(height=0), "no pixels"),
])
def test_bad_images_raise_clear_errors(kw, match):
    args = dict(height=2, width=4, encoding="rgb8", step=12, data=b"\x00" * 24)
    args.update(kw)
    with pytest.raises(cv.ConversionError, match=match):
        cv.decode_image(**args)


def test_joint_selection_errors():
    msg = cv.joint_state_msg(0, ["b", "a", "c"], [2.0, 1.0, 3.0], [0.2, 0.1, 0.3])
    q, v = cv.joint_arrays(msg, ["a", "b"])
    assert q.tolist() == [1.0, 2.0] and v.tolist() == [0.1, 0.2]
    with pytest.raises(cv.ConversionError, match="lacks joints"):
        cv.joint_arrays(msg, ["a", "z"])
    with pytest.raises(cv.ConversionError, match="NaN"):
        cv.joint_arrays(cv.joint_state_msg(0, ["a"], [np.nan], [0.0]), ["a"])
    with pytest.raises(cv.ConversionError, match="no velocities"):
        cv.joint_arrays(cv.joint_state_msg(0, ["a"], [0.0]), ["a"])
    names, vals = cv.named_vector_from_msg(cv.named_vector_msg(7, ["x", "y"], [1, 2], effort=[3, 4]))
    assert names == ["x", "y"] and vals.tolist() == [1.0, 2.0]


def test_config_names_follow_spec():
    spec = load_spec("small")
    names = live.config_feature_names(spec)
    assert len(names) == spec.config_dim
    assert names[0] == "joint_position/right_s0" and names[-1] == "ee_velocity/z"
    b = live.ConfigBuilder(spec, ee=lambda q, v: (q[:3], v[:3]))
    c = b.build(np.arange(7.0), np.arange(7.0) / 10)
    assert c.shape == (20,) and c[14] == 0.0 and c[17] == 0.0
    with pytest.raises(ValueError):
        live.ConfigBuilder(spec)


# ---- pairing and hand-off --------------------------------------------------------------------------
def test_stamp_sync_exact_and_tolerance():
    s = live.StampSync(["a", "b"])
    assert s.add("a", 10, "a10") is None
    assert s.add("a", 20, "a20") is None
    assert s.add("b", 20, "b20") == {"a": "a20", "b": "b20"}
    assert s.dropped == 1  # a10 was never paired
    assert s.add("b", 10, "late") is None and s.dropped == 2  # older than what was used
    t = live.StampSync(["img", "js"], tolerance_ns=5)
    t.add("js", 100, 1)
    assert t.add("img", 103, 2) == {"img": 2, "js": 1}
    assert t.add("img", 120, 3) is None


def test_latest_slot_skips_and_counts():
    slot = live.LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(0) == 4 and slot.skipped == 4
    assert slot.take(0.01) is None
    got = []
    th = threading.Thread(target=lambda: got.append(slot.take(2.0)))
    th.start()
    slot.put("x")
    th.join()
    assert got == ["x"]
    slot.close()
    assert slot.take(1.0) is None


def test_watchdog_and_rate():
    now = [0.0]
    w = live.Watchdog(0.5, clock=lambda: now[0])
    assert w.stale()
    w.feed()
    now[0] = 0.4
    assert not w.stale()
    now[0] = 1.0
    assert w.stale() and w.trips == 1
    r = live.RateMeter(clock=lambda: now[0])
    for i in range(11):
        now[0] = 2 + i * 0.05
        r.tick()
    assert r.rate() == pytest.approx(20.0)


def test_machine_jitter_times_a_fixed_task():
    j = live.machine_jitter(seconds=0.4, rate_hz=50.0, work_ms=1.0)
    assert j["n"] >= 10 and 0 < j["task_p50_ms"] <= j["task_p99_ms"] <= j["task_max_ms"]
    assert j["p99_over_p50"] >= 1.0


def test_colorize_maps_nan_and_inf_without_failing():
    rel = np.array([[0.0, 1.0], [np.nan, -2.0]], np.float32)
    out = viz.colorize(rel)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert np.array_equal(out[1, 0], out[0, 0])  # NaN is drawn as zero relevance
    assert np.array_equal(viz.colorize(np.array([[2.0, -2.0]], np.float32))[0, 0],
                          viz.colorize(np.array([[2.0, -2.0]], np.float32))[0, 1])  # |relevance|
    assert viz.colorize(np.array([[np.inf, 1.0]], np.float32)).shape == (1, 2, 3)


# ---- pictures --------------------------------------------------------------------------------------
def test_overlay_heatmap():
    rgb = np.full((8, 8, 3), 100, np.uint8)
    rel = np.zeros((8, 8), np.float32)
    rel[2, 3] = -5.0
    out = viz.overlay_heatmap(rgb, rel, points=np.array([[0.0, 0.0], [np.nan, 1]]), scale=2)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    fixed = viz.overlay_heatmap(rgb, rel, normalize=50.0, opacity=1.0)
    frame = viz.overlay_heatmap(rgb, rel, normalize="frame", opacity=1.0)
    assert frame[2, 3, 0] > fixed[2, 3, 0]  # the frame max is full red, 5/50 of the fixed scale is blue
    assert np.array_equal(viz.overlay_heatmap(rgb, np.zeros((4, 4)), opacity=0.0), rgb)
    with pytest.raises(ValueError):
        viz.overlay_heatmap(rgb[:, :, 0], rel)
    with pytest.raises(ValueError):
        viz.overlay_heatmap(rgb, rel, normalize="per-video")


def test_ratio_history_plot():
    h = viz.RatioHistory(window=1.0)
    for i in range(30):
        h.add(i * 0.1, ["image", "joint_position"], [0.7, 0.3])
    assert len(h) in (10, 11)  # 1 s window
    img = h.render(320, 160)
    assert img.shape == (160, 320, 3) and (img != 255).any()


def test_launch_files_are_thin_over_the_graph():
    import re

    for name in ["sim", "robot", "replay"]:
        src = (ROOT / "launch" / f"{name}.launch.py").read_text()
        compile(src, name, "exec")
        # replay.launch.py picks its graph from the launch argument graph:=replay|explain
        pattern = r'describe\(None' if name == "replay" else rf'describe\("{name}"'
        assert re.search(pattern, src) and name in gr.GRAPHS
        assert "Node(package=\"policy_xai\"" not in src  # nodes come from graph.py via _graph_launch
    assert 'default_value="replay"' in (ROOT / "launch" / "replay.launch.py").read_text()
    helper = (ROOT / "launch" / "_graph_launch.py").read_text()
    assert "from policy_xai.ros.graph import graph" in helper
    assert (ROOT / "config" / "policy_xai.rviz").is_file()


# ---- issue 9: time jumps, typed parameters, joint names, encodings, the sim graph's policy -------
def test_stamp_sync_recovers_from_time_jumps():
    s = live.StampSync(["a", "b"], tolerance_ns=0, jump_ns=1000)
    assert s.add("a", 5000, 1) is None and s.add("b", 5000, 2) == {"a": 1, "b": 2}
    # a pair stamped in the future, then the clock continues where it was
    assert s.add("a", 10**9, 1) is None and s.add("b", 10**9, 2) is not None
    assert s.jumps_forward == 1
    assert s.add("a", 5100, 1) is None and s.add("b", 5100, 2) is not None  # not stuck
    assert s.jumps_backward == 1 and s.last_jump_ns < 0 and "backwards" in s.jump_status()
    # stamps restart (new episode in simulated time, a looped bag)
    assert s.add("a", 100, 1) is None and s.add("b", 100, 2) is not None
    assert s.jumps_backward == 2
    # a late message within the jump threshold is still just dropped
    assert s.add("a", 50, 1) is None and s.jumps_backward == 2 and s.dropped >= 1
    # without jump detection: the old behaviour (stuck behind a future pair)
    t = live.StampSync(["a", "b"])
    t.add("a", 10**9, 1), t.add("b", 10**9, 2)
    assert t.add("a", 5000, 1) is None and t.add("b", 5000, 2) is None


def test_parameters_validate_types_ranges_and_choices():
    v = itf.validate_parameter
    assert v("attribution_node", "dt", 0.1) == 0.1 and v("sim_node", "rate", 20) == 20.0
    assert v("attribution_node", "method", "rap") == "rap"
    assert v("attribution_node", "precision", "bfloat16") == "bfloat16"
    for node, name, value, words in [
        ("attribution_node", "precision", "bogus", "float32, bfloat16"),
        ("attribution_node", "dt", "abc", "number"), ("attribution_node", "dt", -1.0, ">="),
        ("attribution_node", "dt", float("nan"), "finite"), ("attribution_node", "method", "x", "dtd"),
        ("policy_node", "stale_action", "brake", "zero, hold"), ("policy_node", "threads", 1.5, "integer"),
        ("policy_node", "torque_limits", [1.0, -2.0], ">="), ("policy_node", "torque_limits", "abc", "list"),
        ("policy_node", "resize", "yes", "true or false"), ("sim_node", "task", "fly", "reach"),
    ]:
        with pytest.raises(ValueError, match=words) as e:
            v(node, name, value)
        assert repr(name) in str(e.value) and "\n" not in str(e.value)
    assert v("policy_node", "torque_limits", "") == "" and v("policy_node", "torque_limits", [1, 2]) == [1.0, 2.0]
    p = itf.NODES["attribution_node"].params
    assert p["method"].runtime and p["precision"].runtime and not p["spec"].runtime and not p["weights"].runtime
    assert itf.NODES["policy_node"].params["stale_action"].runtime
    assert itf.NODES["policy_node"].parameters["allow_untrained"] is False


def test_duplicate_joint_names_are_rejected_by_the_converter():
    with pytest.raises(cv.ConversionError, match="more than once"):
        cv.select_joints(["a", "b", "a"], [1.0, 2.0, 3.0], ["a", "b"])


def test_colour_image_errors_list_only_colour_encodings():
    from types import SimpleNamespace

    msg = SimpleNamespace(encoding="32FC1", height=2, width=2, step=8, data=bytes(16), is_bigendian=0)
    with pytest.raises(cv.ConversionError) as e:
        cv.rgb_from_msg(msg)
    assert "32FC1" in str(e.value).split("supported")[0] and "32FC1" not in str(e.value).split("supported")[1]
    msg.encoding = "yuv422"
    with pytest.raises(cv.ConversionError, match="rgb8, bgr8"):
        cv.rgb_from_msg(msg)


def test_sim_graph_loads_the_shipped_policy_of_its_task():
    from policy_xai.resources import find_shared

    by = {n.name: n for n in gr.graph("sim")}
    assert by["policy_node"].parameters["weights"] == str(find_shared("models", "reach.safetensors"))
    assert by["attribution_node"].parameters["weights"] == by["policy_node"].parameters["weights"]
    by = {n.name: n for n in gr.graph("sim", overrides={"sim_node": {"task": "reach2d"}})}
    assert by["policy_node"].parameters["weights"].endswith("reach2d.safetensors")
    assert by["policy_node"].parameters["robot"] == "two_link_arm"
    assert by["visualization_node"].parameters["robot"] == "two_link_arm"
    # an explicit spec or weights wins; the robot graph never gets a default policy
    by = {n.name: n for n in gr.graph("sim", overrides={"policy_node": {"spec": "paper"}})}
    assert "weights" not in by["policy_node"].parameters
    by = {n.name: n for n in gr.graph("robot")}
    assert "weights" not in by["policy_node"].parameters


def test_stamp_sync_detects_a_restart_smaller_than_the_jump_threshold():
    s = live.StampSync(["a", "b"], tolerance_ns=0, keep=4, jump_ns=10**9)
    for t in range(0, 500, 50):  # one pass of a 0.5 s loop (stamps in ns here, small numbers)
        s.add("a", 10**6 * t, 1), s.add("b", 10**6 * t, 2)
    assert s.emitted == 10
    out = [s.add(k, 10**6 * t, 1) for t in range(0, 200, 50) for k in "ab"]  # second pass
    assert s.jumps_backward == 1 and any(o is not None for o in out)


def test_live_default_method_is_the_measured_one():
    """The attribution node, the shipped configs and the demo default to attribution.DEFAULT_METHOD
    (chosen by `policy-xai faithfulness`, docs/faithfulness.md)."""
    import yaml

    from policy_xai.attribution.engine import DEFAULT_METHOD, METHODS

    assert DEFAULT_METHOD in METHODS
    assert itf.NODES["attribution_node"].params["method"].default == DEFAULT_METHOD
    for name in ("sim.yaml", "baxter.yaml"):
        cfg = yaml.safe_load((ROOT / "config" / name).read_text())
        methods = [v["ros__parameters"]["method"] for v in cfg.values() if "method" in v.get("ros__parameters", {})]
        assert methods == [DEFAULT_METHOD], name
