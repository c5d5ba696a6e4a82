"""A user's policy live (user_policy_node) as real processes over Fast DDS, no mocks:

- graph user_sim (what launch/user_policy.launch.py starts): the MuJoCo sim driven by an untrained
  robomimic_bc (factory + model_kwargs, allow_untrained:=true) in one user_policy_node that acts
  and explains through config/user_policy_sim.yaml, and the heatmap;
- a torch.export program (.pt2, written here) with `actions.kind: other`, split as user_sim_split
  runs it: a user_policy_node (explain:=false) acts, a user_explainer_node explains, fed by the test;
- start-up refusals: a factory model without weights (safety), a mapping that does not fit.

Every process starts at once (module fixture) so that their imports overlap; DDS domains 221-250."""
import os
import time

import numpy as np
import pytest

from policy_xai.ros.graph import NodeLaunch, graph, user_sim_overrides
from policy_xai.ros.interfaces import NODES
from policy_xai.ros.runner import GraphRunner

from ros_harness import Feeder, Probe

FACTORY = "policy_xai.attribution.graph.models:robomimic_bc"
KWARGS = '{"width": 8, "image_size": 64, "low_dim": {"joint_state": 14}, "tanh": false}'
JOINTS = ["right_s0", "right_s1", "right_e0", "right_e1", "right_w0", "right_w1", "right_w2"]
BASE = 221 + (os.getpid() % 3) * 3  # three domains, within 221-229 (Fast DDS ports overflow above 232)

PT2_MAPPING = f"""
agentview_image: {{topic: /camera/image_raw, kind: image, height: 64, width: 64}}
joint_state: {{topic: /joint_states, kind: vector, fields: [position], joints: [{", ".join(JOINTS)}]}}
actions: {{names: [dx, dy, dz], kind: other, alpha: [1, 1, 0.5]}}
"""


def _export_program(path):
    """A small conv + linear policy (image, 7 joint positions) -> 3 end-effector deltas, exported."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 5, stride=2)
            self.fc = nn.Linear(4 * 16 + 7, 3)

        def forward(self, agentview_image, joint_state):
            x = F.adaptive_avg_pool2d(torch.relu(self.conv(agentview_image)), 4).flatten(1)
            return self.fc(torch.cat([x, joint_state], 1))

    torch.manual_seed(0)
    net = Net().eval()
    torch.export.save(torch.export.export(net, (torch.rand(1, 3, 64, 64), torch.rand(1, 7))), str(path))
    return net


def _node(name="user_policy_node", **params):
    info = NODES[name]
    return NodeLaunch(name, info.module, info.executable, None, params)


@pytest.fixture(scope="module")
def procs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("user_ros")
    net = _export_program(tmp / "policy.pt2")
    (tmp / "pt2_mapping.yaml").write_text(PT2_MAPPING)
    t0 = time.monotonic()
    overrides = user_sim_overrides(FACTORY, "user_policy_sim", KWARGS, allow_untrained=True)  # as the launch file
    assert overrides["sim_node"] == {"image_height": 64, "image_width": 64}  # the mapping's camera size
    sim = GraphRunner(graph("user_sim", overrides={**overrides, "visualization_node": {"plot_rate": 4.0}}),
                      domain_id=BASE, log_dir=tmp / "sim_logs")
    pt2_params = {"model": str(tmp / "policy.pt2"), "mapping": str(tmp / "pt2_mapping.yaml")}
    pt2 = GraphRunner([_node(**pt2_params, explain=False), _node("user_explainer_node", **pt2_params)],
                      domain_id=BASE + 1, log_dir=tmp / "pt2_logs")
    refused = GraphRunner([_node(model=FACTORY, model_kwargs=KWARGS, mapping="user_policy_sim")],
                          domain_id=BASE + 2, log_dir=tmp / "refused_logs")
    misfit = GraphRunner([_node(model=FACTORY, mapping="user_policy_sim", allow_untrained=True)],
                         domain_id=BASE + 2, log_dir=tmp / "misfit_logs")
    probe = Probe(BASE)
    probe.listen("commands", "actions", "torques", "relevance_image", "ratios", "importance", "heatmap", "diagnostics")
    probe2 = Probe(BASE + 1)
    probe2.listen("actions", "ratios", "relevance_image", "commands", "heatmap", "diagnostics")
    runners = (sim, pt2, refused, misfit)
    for r in runners:
        r.start()
    feeder = Feeder(probe2, JOINTS).start()
    try:
        yield {"sim": sim, "pt2": pt2, "refused": refused, "misfit": misfit, "probe": probe, "probe2": probe2,
               "feeder": feeder, "net": net, "t0": t0}
    finally:
        feeder.stop()
        for r in runners:
            r.stop()
        probe.close()
        probe2.close()
    assert not [n for n in sim.dead() if sim[n].returncode not in (0, None)], sim.report()
    assert not [n for n in pt2.dead() if pt2[n].returncode not in (0, None)], pt2.report()


def _fatal_line(runner):
    p = runner["user_policy_node"]
    end = time.monotonic() + 60
    while p.alive() and time.monotonic() < end:
        time.sleep(0.2)
    assert not p.alive(), "the node should have refused to start"
    log = p.log_path.read_text()
    fatal = [ln for ln in log.splitlines() if "fatal:" in ln]
    return p.returncode, fatal, log


def test_sim_driven_by_a_users_model_and_explained(procs):
    probe = procs["probe"]
    heat = probe.wait_for("heatmap", 3, timeout=60)
    print(f"first heatmaps {time.monotonic() - procs['t0']:.1f} s after start")
    assert heat[-1].encoding == "rgb8" and heat[-1].width >= 64
    cmds = probe.wait_for("commands", 10, timeout=10, pred=lambda m: np.any(np.asarray(m.data) != 0))
    assert all(len(c.data) == 7 and np.all(np.isfinite(c.data)) for c in cmds)
    acts = probe.wait_for("actions", 5)
    assert list(acts[-1].name) == JOINTS
    tq = probe.wait_for("torques", 5)
    assert list(tq[-1].name) == JOINTS
    by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in probe.get("actions")}
    same = [(m, by_stamp[k]) for m in tq if (k := (m.header.stamp.sec, m.header.stamp.nanosec)) in by_stamp]
    assert same and all(np.allclose(t.effort, a.position) for t, a in same)  # no torque_limits: not clipped
    ratios = probe.wait_for("ratios", 5, pred=lambda m: len(m.name) > 0)
    for m in ratios[-5:]:
        assert list(m.name) == ["agentview_image", "joint_state/position", "joint_state/velocity"]
        assert sum(m.position) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= x <= 1 for x in m.position)
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in probe.get("actions")}
    assert any((m.header.stamp.sec, m.header.stamp.nanosec) in stamps for m in ratios)  # explains its decisions
    img = probe.wait_for("relevance_image", 1)[-1]
    assert (img.encoding, img.height, img.width) == ("32FC1", 64, 64)  # the camera's size
    imp = probe.wait_for("importance", 1)[-1]
    assert list(imp.name) == JOINTS and all(a == 1.0 for a in imp.position)
    assert not procs["sim"].dead(), procs["sim"].report()
    probe.wait_for("diagnostics", 1, timeout=8, pred=lambda m: any(  # once a second
        s.name.endswith("/user_policy_node") and int({kv.key: kv.value for kv in s.values}.get("explained", 0)) >= 3
        for s in m.status))
    _, _, node = probe.diagnostics("user_policy_node")
    assert node["act"] == "True" and int(node["decisions"]) > 0  # one process acts and explains
    assert node["action_mismatches"] == "0", node  # the explained outputs are the actions


def test_bad_input_at_run_time_is_reported_and_the_node_keeps_running(procs):
    from policy_xai.ros import convert as cv

    probe, runner = procs["probe"], procs["sim"]
    probe.wait_for("actions", 3, timeout=60)
    pub_img, pub_js = probe.publisher("image"), probe.publisher("joint_states")
    time.sleep(0.5)  # the node's subscriptions match the new publishers
    now = time.time_ns()
    pub_img.publish(cv.image_msg(np.zeros((32, 32, 3), np.uint8), now, "camera"))  # wrong size
    time.sleep(0.1)
    bad = pub_img.msg_type(height=4, width=4, encoding="yuv422", step=8)  # wrong encoding
    bad.data = [0] * 32
    pub_img.publish(bad)
    time.sleep(0.1)
    pub_js.publish(cv.joint_state_msg(now, [f"left_{i}" for i in range(7)], np.zeros(7), np.zeros(7)))
    time.sleep(0.1)
    pub_js.publish(cv.joint_state_msg(now, JOINTS, np.full(7, np.nan), np.zeros(7)))  # NaN

    def reported(m):
        st = [s for s in m.status if s.name.endswith("/user_policy_node")]
        kv = {k.key: k.value for k in st[0].values} if st else {}
        return st and st[0].level == b"\x02" and int(kv.get("errors/image", 0)) >= 2 \
            and int(kv.get("errors/joint_state", 0)) >= 2

    probe.clear("diagnostics")
    try:
        probe.wait_for("diagnostics", 1, timeout=8, pred=reported)
    except AssertionError:
        raise AssertionError(str(probe.diagnostics("user_policy_node")))
    node = runner["user_policy_node"]
    assert node.alive()
    log = node.log_path.read_text()
    assert "image is 32x32, the mapping says 64x64" in log and "yuv422" in log and "left_0" in log and "NaN" in log
    n = len(probe.get("actions"))
    probe.wait_for("actions", n + 5, timeout=10)  # still acting


def test_method_changes_at_run_time_are_checked(procs):
    probe = procs["probe"]
    probe.wait_for("ratios", 1, timeout=60)
    from test_ros_pipeline import _set

    assert not _set(probe, "user_policy_node", method="no_such_method")["method"][0]
    assert not _set(probe, "user_policy_node", model="x.pt2")["model"][0]  # read-only
    assert _set(probe, "user_policy_node", method="gradient")["method"][0]
    probe.clear("diagnostics")
    probe.wait_for("diagnostics", 1, timeout=5, pred=lambda m: any(
        s.name.endswith("/user_policy_node") and any(kv.key == "method" and kv.value == "gradient" for kv in s.values)
        for s in m.status))
    n = len(probe.get("ratios"))
    probe.wait_for("ratios", n + 3, timeout=10)


def test_exported_program_runs_in_the_node(procs):
    import torch

    probe2, feeder, net = procs["probe2"], procs["feeder"], procs["net"]
    acts = probe2.wait_for("actions", 5, timeout=60)
    checked = 0
    for m in acts[-5:]:
        stamp = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
        rgb, q, _ = feeder.sent[stamp]
        x = torch.from_numpy(rgb).float().permute(2, 0, 1)[None] / 255.0
        want = net(x, torch.as_tensor(q, dtype=torch.float32)[None])[0].detach().numpy()
        assert list(m.name) == ["dx", "dy", "dz"]
        np.testing.assert_allclose(m.position, want, atol=1e-4)
        checked += 1
    assert checked == 5
    ratios = probe2.wait_for("ratios", 3, timeout=30)  # from the user_explainer_node
    assert list(ratios[-1].name) == ["agentview_image", "joint_state"]
    assert sum(ratios[-1].position) == pytest.approx(1.0, abs=1e-5)
    assert probe2.get("commands") == []  # kind: other is not an effort command
    probe2.wait_for("diagnostics", 1, timeout=10, pred=lambda m: any(
        s.name.endswith("/user_explainer_node")
        and int({kv.key: kv.value for kv in s.values}.get("actions_checked", 0)) >= 3
        for s in m.status))
    _, _, explainer = probe2.diagnostics("user_explainer_node")
    assert explainer["act"] == "False" and int(explainer["explained"]) > 0
    # its recomputed actions are the acting node's (same program, same messages, same stamps)
    assert explainer["action_mismatches"] == "0", explainer
    _, _, actor = probe2.diagnostics("user_policy_node")
    assert actor["explained"] == "0" and int(actor["decisions"]) > 0  # explain:=false: it only acts


def test_factory_model_without_weights_is_refused(procs):
    code, fatal, log = _fatal_line(procs["refused"])
    assert code == 1 and len(fatal) == 1, log
    assert "no trained weights" in fatal[0] and "allow_untrained:=true" in fatal[0]
    assert "Traceback" not in log


def test_mapping_that_does_not_fit_lists_the_models_inputs(procs):
    code, fatal, log = _fatal_line(procs["misfit"])
    assert code == 1 and len(fatal) == 1, log
    assert "does not fit the model" in fatal[0]
    for key in ("agentview_image", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"):
        assert key in fatal[0]
    assert "Traceback" not in log
