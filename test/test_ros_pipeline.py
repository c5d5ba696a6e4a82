"""The live pipeline as real processes over Fast DDS (isolated domain): policy, attribution and
visualisation nodes fed by the test like a robot would, and checked on what arrives."""
import time

import numpy as np
import pytest

from policy_xai.policy import init_policy
from policy_xai.live import ConfigBuilder, RobotAdapter
from policy_xai.ros.graph import graph
from policy_xai.ros.runner import GraphRunner
from policy_xai.spec import load_spec

from ros_harness import Feeder, Probe, fresh_domain

SPEC = load_spec("small")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    dom = fresh_domain()
    probe = Probe(dom)
    probe.listen("commands", "torques", "obs_config", "relevance_image", "relevance_config", "relevance_points",
                 "ratios", "importance", "heatmap", "markers", "ratio_plot", "diagnostics")
    runner = GraphRunner(graph("explain", params_file="", overrides={"visualization_node": {"plot_rate": 4.0},
                                                                  "policy_node": {"allow_untrained": True}}),
                         domain_id=dom, log_dir=tmp_path_factory.mktemp("logs"))
    runner.start()
    feeder = Feeder(probe, SPEC.joint_names).start()
    try:
        probe.wait_for("heatmap", 5, timeout=40)
        yield probe, runner, feeder
    finally:
        feeder.stop()
        runner.stop()
        probe.close()
    assert not [n for n in runner.dead() if runner[n].returncode not in (0, None)], runner.report()


def test_torques_follow_the_policy(live):
    probe, runner, feeder = live
    policy = init_policy(SPEC, 0)
    robot = RobotAdapter(SPEC)
    cfg = ConfigBuilder(SPEC, robot.ee)
    msgs = probe.wait_for("torques", 10)
    checked = 0
    for m in msgs[-10:]:
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        rgb, q, v = feeder.sent[stamp]
        want = policy.act(rgb, cfg.build(q, v))
        assert list(m.name) == list(SPEC.joint_names)
        np.testing.assert_allclose(m.effort, want, atol=1e-4)
        assert np.all(np.abs(want) <= np.asarray(SPEC.torque_limits))
        checked += 1
    assert checked == 10
    cmds = probe.get("commands")
    assert cmds and all(len(c.data) == SPEC.n_joints and np.all(np.isfinite(c.data)) for c in cmds)


def test_explanations_match_stamps_names_and_ratios(live):
    probe, runner, feeder = live
    ratios = probe.wait_for("ratios", 10)
    images = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in probe.get("relevance_image")}
    torques = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in probe.get("torques")}
    cfg_names = [f"{g}/{e}" for g, n in SPEC.config_groups
                 for e in (SPEC.joint_names if g.startswith("joint") else "xyz")]
    for m in ratios[-10:]:
        key = (m.header.stamp.sec, m.header.stamp.nanosec)
        assert key in torques  # explains a decision the policy published
        assert list(m.name) == ["image", *SPEC.group_names]
        assert sum(m.position) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= x <= 1 for x in m.position)
    matched = [k for k in ((m.header.stamp.sec, m.header.stamp.nanosec) for m in ratios) if k in images]
    assert matched, "relevance images carry the same stamps as the ratios"
    img = images[matched[-1]]
    assert (img.encoding, img.height, img.width) == ("32FC1", SPEC.image_height, SPEC.image_width)
    rc = probe.get("relevance_config")[-1]
    assert list(rc.name) == cfg_names
    imp = probe.get("importance")[-1]
    assert list(imp.name) == list(SPEC.joint_names) and all(a > 0 for a in imp.position)
    pts = probe.get("relevance_points")[-1]
    assert len(pts.name) == SPEC.feature_points and all(-1 <= x <= 1 for x in pts.velocity)
    heat = probe.wait_for("heatmap", 1)[-1]
    assert heat.encoding == "rgb8" and heat.height == 4 * SPEC.image_height
    mk = probe.wait_for("markers", 1)[-1]
    assert len(mk.markers) == SPEC.n_joints + 1 and "image" in mk.markers[-1].text
    plot = probe.wait_for("ratio_plot", 1)[-1]
    assert plot.encoding == "rgb8" and plot.width > 0
    deadline = time.monotonic() + 5  # /diagnostics comes once a second; the explanations can be quicker
    while time.monotonic() < deadline:
        d = probe.diagnostics("attribution_node")
        if d is not None and int(d[2]["explained"]) > 0:
            break
        time.sleep(0.1)
    level, message, values = probe.diagnostics("attribution_node")
    assert values["torque_mismatches"] == "0", values
    assert int(values["explained"]) > 0
    # publisher-side matched subscriptions: the probe and the visualisation node listen to the ratios
    # (matching completes on each side on its own time: wait for it, a few diagnostics at most)
    deadline = time.monotonic() + 10
    while int(values.get("matched/policy_xai/relevance/ratios", 0)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        values = probe.diagnostics("attribution_node")[2]
    assert int(values["matched/policy_xai/relevance/ratios"]) >= 2, values


def test_bad_input_is_reported_and_does_not_crash(live):
    probe, runner, feeder = live
    feeder.stop()
    time.sleep(0.2)
    probe.clear("diagnostics")
    # spaced out: the image subscription keeps only the newest 2 (drop-to-newest by design)
    feeder.size = (32, 32)
    feeder.send_one()  # wrong image size
    time.sleep(0.1)
    feeder.size = (SPEC.image_height, SPEC.image_width)
    feeder.send_one(q=np.full(SPEC.n_joints, np.nan))  # NaN joint state
    time.sleep(0.1)
    feeder.send_one(names=[f"left_{i}" for i in range(SPEC.n_joints)])  # unknown joints
    time.sleep(0.1)
    bad = feeder.pub_img.msg_type(height=4, width=4, encoding="yuv422", step=8)
    bad.data = [0] * 32
    feeder.pub_img.publish(bad)

    def reported(m):
        st = [s for s in m.status if s.name.endswith("/policy_node")]
        kv = {k.key: k.value for k in st[0].values} if st else {}
        return st and st[0].level == b"\x02" and int(kv.get("errors/image", 0)) >= 2 \
            and int(kv.get("errors/joint_state", 0)) >= 2

    try:
        probe.wait_for("diagnostics", 1, timeout=6, pred=reported)
    except AssertionError:
        raise AssertionError(str(probe.diagnostics("policy_node")))
    assert runner["policy_node"].alive()
    log = runner["policy_node"].log_path.read_text()
    assert "32x32" in log and "yuv422" in log and "lacks joints" in log and "NaN" in log
    feeder.start()  # still acting
    n = len(probe.get("torques"))
    probe.wait_for("torques", n + 5, timeout=10)


def test_stale_inputs_command_zero_torque(live):
    probe, runner, feeder = live
    feeder.stop()
    time.sleep(1.0)  # > stale_timeout (0.5 s)
    probe.clear("commands")
    cmds = probe.wait_for("commands", 3, timeout=5)
    assert all(np.all(np.asarray(c.data) == 0.0) for c in cmds)
    level, message, values = probe.diagnostics("policy_node") or (None, "", {})
    feeder.start()
    probe.wait_for("commands", 3, timeout=5, pred=lambda c: np.any(np.asarray(c.data) != 0.0))


def test_method_changes_at_run_time(live):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    probe, runner, feeder = live
    client = probe.node.create_client(SetParameters, "/attribution_node/set_parameters")
    assert client.wait_for_service(timeout_sec=10)

    def set_method(name):
        req = SetParameters.Request(parameters=[Parameter(
            name="method", value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=name))])
        fut = client.call_async(req)
        end = time.time() + 10
        while not fut.done() and time.time() < end:
            time.sleep(0.02)
        return fut.result().results[0]

    assert not set_method("no_such_method").successful
    # the untrained network has no amortised explainer: refused with the reason (the node started
    # with the fallback method instead of the default)
    r = set_method("occlusion_net")
    assert not r.successful and "explainer" in r.reason, r.reason
    assert set_method("rap").successful
    probe.clear("diagnostics")
    probe.wait_for("diagnostics", 1, timeout=5,
                   pred=lambda m: any(kv.key == "method" and kv.value == "rap" for s in m.status for kv in s.values))
    n = len(probe.get("ratios"))
    probe.wait_for("ratios", n + 3, timeout=10)
    assert set_method("gradcam").successful  # the Grad-CAM family has no ratios: empty vector
    time.sleep(0.5)
    probe.clear("ratios")
    probe.wait_for("ratios", 2, timeout=10, pred=lambda m: len(m.name) == 0)
    assert set_method("dtd").successful


def test_killing_attribution_keeps_policy_and_restart_resumes(live):
    probe, runner, feeder = live
    runner["attribution_node"].kill()
    time.sleep(0.5)
    probe.clear("torques", "ratios")
    probe.wait_for("torques", 20, timeout=10)  # the policy keeps acting at the control rate
    assert len(probe.get("ratios")) == 0
    assert runner["policy_node"].alive()
    runner["attribution_node"].start()
    got = probe.wait_for("ratios", 5, timeout=40)
    torques = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in probe.get("torques")}
    assert all((m.header.stamp.sec, m.header.stamp.nanosec) in torques for m in got)


def _set(probe, node, **values):
    """`ros2 param set` over the node's SetParameters service: name -> (successful, reason)."""
    from rclpy.parameter import Parameter
    from rcl_interfaces.srv import SetParameters

    client = probe.node.create_client(SetParameters, f"/{node}/set_parameters")
    assert client.wait_for_service(timeout_sec=10)
    req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    fut = client.call_async(req)
    end = time.time() + 10
    while not fut.done() and time.time() < end:
        time.sleep(0.02)
    probe.node.destroy_client(client)
    return {k: (r.successful, r.reason) for k, r in zip(values, fut.result().results)}


def _diag_value(probe, node, key, want, timeout=6.0):
    probe.clear("diagnostics")
    probe.wait_for("diagnostics", 1, timeout=timeout, pred=lambda m: any(
        s.name.endswith("/" + node) and any(kv.key == key and kv.value == want for kv in s.values)
        for s in m.status))


def test_parameters_are_typed_validated_and_applied(live):
    probe, runner, feeder = live
    # rejected, with the reason: an unknown precision, a string for a number, out of range, read-only
    r = _set(probe, "attribution_node", precision="bogus")["precision"]
    assert not r[0] and "bfloat16" in r[1]
    assert not _set(probe, "attribution_node", dt="abc")["dt"][0]
    assert not _set(probe, "attribution_node", dt=-1.0)["dt"][0]
    ok, reason = _set(probe, "attribution_node", spec="paper")["spec"]
    assert not ok and ("read-only" in reason.lower() or "fixed" in reason), reason
    assert not _set(probe, "policy_node", stale_action="brake")["stale_action"][0]
    assert not _set(probe, "policy_node", torque_limits=[1.0, 2.0])["torque_limits"][0]
    # the explanations still run after the rejected values
    n = len(probe.get("ratios"))
    probe.wait_for("ratios", n + 3, timeout=10)
    # accepted and applied
    assert _set(probe, "attribution_node", precision="bfloat16")["precision"][0]
    _diag_value(probe, "attribution_node", "precision", "bfloat16")
    n = len(probe.get("ratios"))
    probe.wait_for("ratios", n + 3, timeout=10)
    assert _set(probe, "attribution_node", precision="float32", dt=0.1) == {"precision": (True, ""), "dt": (True, "")}
    assert _set(probe, "policy_node", stale_action="hold")["stale_action"][0]
    _diag_value(probe, "policy_node", "stale_action", "hold")
    assert _set(probe, "policy_node", torque_limits=[0.5] * SPEC.n_joints)["torque_limits"][0]
    probe.clear("torques")
    msgs = probe.wait_for("torques", 5, timeout=10)
    assert all(np.all(np.abs(m.effort) <= 0.5 + 1e-9) for m in msgs)
    assert _set(probe, "policy_node", stale_action="zero", torque_limits="")["torque_limits"][0]


def test_time_jumps_do_not_leave_the_policy_stuck(live):
    """A future-stamped observation (clock jump) and stamps that restart (sim time, a looped bag)
    used to stop the pairing for good; now it restarts, counts and reports the jump."""
    probe, runner, feeder = live
    feeder.stop()
    time.sleep(0.2)
    future = time.time_ns() + 3600 * 10**9
    feeder.send_one(stamp=future)  # one pair stamped an hour ahead
    time.sleep(0.2)
    probe.clear("torques")
    feeder.last_stamp = 0
    feeder.start()  # back to the wall clock: an hour "backwards"
    probe.wait_for("torques", 5, timeout=10, pred=lambda m: m.header.stamp.sec < future // 10**9 - 60)
    feeder.stop()
    time.sleep(0.2)
    probe.clear("torques")
    for k in range(20):  # stamps restart near zero, as simulated time of a new episode does
        feeder.send_one(stamp=10**9 + k * 50_000_000)
        time.sleep(0.05)
    probe.wait_for("torques", 5, timeout=10, pred=lambda m: m.header.stamp.sec < 100)
    probe.clear("diagnostics")
    got = probe.wait_for("diagnostics", 1, timeout=5, pred=lambda m: any(
        s.name.endswith("/policy_node") and any(kv.key == "time_jumps_backward" and int(kv.value) >= 2
                                                 for kv in s.values) for s in m.status))
    st = [s for s in got[-1].status if s.name.endswith("/policy_node")][0]
    assert "jumped backwards" in st.message
    feeder.last_stamp = 0
    feeder.start()


def test_duplicate_joint_names_are_rejected(live):
    probe, runner, feeder = live
    feeder.stop()
    time.sleep(0.2)
    names = list(SPEC.joint_names)
    names[1] = names[0]
    feeder.send_one(names=names)
    time.sleep(1.5)
    assert "more than once" in runner["policy_node"].log_path.read_text()
    feeder.start()
