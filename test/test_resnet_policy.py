"""ResNet-family policies (spec `trunk:`, config/resnet_small.yaml): spec validation, the unchanged
plain specs, the rules' conservation and gradients on BatchNorm / GroupNorm / frozen-BatchNorm trunks,
every routed method, save / load, a training smoke and one live run over real DDS."""
import time

import numpy as np
import pytest
import torch

from policy_xai.attribution import METHODS, explain
from policy_xai.attribution import amortised
from policy_xai.attribution.engine import EXPLAINER_METHODS
from policy_xai.attribution.graph.models import randomize_norms
from policy_xai.policy import init_policy, load_policy, read_metadata, save_policy
from policy_xai.resources import config_path, find_shared
from policy_xai.spec import PolicySpec, SpecError, load_spec

NORMS = ("batch", "group", "frozen")


def resnet_dict(**trunk):
    d = load_spec("resnet_small").to_dict()
    d["trunk"] = {**d["trunk"], **trunk}
    return d


def random_policy(norm="batch", seed=0, temperature=0.05):
    d = resnet_dict(norm=norm, width=8)
    d["softmax_temperature"] = temperature  # a sharp softmax: the torques depend on the image
    p = init_policy(d, seed)
    randomize_norms(p, seed + 1)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        p.config_mean.copy_(torch.randn(p.spec.config_dim, generator=g) * 0.1)
        p.config_std.copy_(torch.rand(p.spec.config_dim, generator=g) + 0.5)
    return p.eval()


def observation(spec, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, spec.image_height, spec.image_width, generator=g), \
        torch.randn(batch, spec.config_dim, generator=g)


# ---- spec ------------------------------------------------------------------------------------------
def test_spec_round_trip_and_map_size():
    for name in ("resnet_small", "resnet_small_gn"):
        s = load_spec(name)
        assert s.trunk is not None and s.conv == () and s.conv_output_size() == (8, 8)
        assert PolicySpec.from_dict(s.to_dict()) == s and load_spec(s.to_dict()).to_json() == s.to_json()
    s = load_spec(resnet_dict(stages=3, blocks=[1, 2, 1], norm="frozen"))
    assert s.trunk.blocks == (1, 2, 1) and s.conv_output_size() == (4, 4)
    p = init_policy(s)
    assert tuple(p.conv_features(torch.zeros(1, 3, 64, 64)).shape) == (1, 32, 4, 4)
    for stages in (1, 4):
        for hw in (63, 84):
            d = resnet_dict(stages=stages, blocks=1)
            d["image"] = {"channels": 3, "height": hw, "width": hw + 5}
            s = load_spec(d)
            assert tuple(init_policy(s).conv_features(torch.zeros(1, 3, hw, hw + 5)).shape[2:]) == s.conv_output_size()


@pytest.mark.parametrize("change, match", [
    ({"trunk": {"type": "vgg"}}, "trunk.type must be one of resnet"),
    ({"trunk": {"type": "resnet", "depth": 3}}, "unknown field"),
    ({"trunk": "resnet"}, "trunk must be a mapping"),
    ({"trunk": {"type": "resnet", "norm": "layer"}}, "trunk.norm must be one of batch, group, frozen"),
    ({"trunk": {"type": "resnet", "width": 0}}, "trunk.width must be positive"),
    ({"trunk": {"type": "resnet", "width": 2.5}}, "trunk.width"),
    ({"trunk": {"type": "resnet", "stages": 5}}, "trunk.stages must be 1 to 4"),
    ({"trunk": {"type": "resnet", "stages": 2, "blocks": [2]}}, "1 stage"),
    ({"trunk": {"type": "resnet", "blocks": 0}}, "trunk.blocks must be positive"),
    ({"trunk": {"type": "resnet", "blocks": "x"}}, "trunk.blocks"),
    ({"conv": [{"channels": 32, "kernel": 5}]}, "either conv layers or a trunk"),
    ({"feature_points": 0}, "feature_points must be positive"),
])
def test_bad_trunk_fields_are_one_line_spec_errors(change, match):
    d = load_spec("resnet_small").to_dict()
    d.update(change)
    with pytest.raises(SpecError, match=match) as e:
        load_spec(d)
    assert "\n" not in str(e.value)
    d = load_spec("resnet_small").to_dict()
    del d["feature_points"]
    with pytest.raises(SpecError, match="missing the field 'feature_points'"):
        load_spec(d)


def test_plain_specs_and_files_are_unchanged():
    for name in ("small", "paper", "reach2d", "baxter"):
        try:
            s = load_spec(name)
        except (SpecError, FileNotFoundError):
            continue
        assert s.trunk is None and "trunk" not in s.to_dict() and '"trunk"' not in s.to_json()
        p = init_policy(s)
        assert p.plain and hasattr(p, "convs") and not hasattr(p, "trunk")
    for task in ("peg", "door"):  # files with the current metadata layout: the stored JSON, byte for byte
        path = find_shared("models", f"{task}.safetensors")
        assert load_policy(path).spec.to_json() == read_metadata(path)["spec"]


# ---- rules ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", NORMS)
def test_dtd_and_rap_conserve_on_resnet_trunks(norm):
    p = random_policy(norm)
    x, c = observation(p.spec)
    for method in ("dtd", "rap"):
        e = explain(p, x, c, method=method)
        total = e.image.flatten(1).sum(1) + e.config.sum(1)
        want = (e.alpha * e.torques.abs()).sum(1)
        assert torch.allclose(total, want, rtol=1e-5, atol=0), (method, total, want)
        assert torch.allclose(e.image.flatten(1).sum(1), e.points.sum(1), rtol=1e-5, atol=1e-7)  # across the softmax
        r = sum(e.ratios.values())
        assert torch.allclose(r, torch.ones_like(r), atol=1e-5)


def test_trained_resnet_weights_conserve_and_match_the_live_numbers():
    path = find_shared("models", "reach_resnet.safetensors")
    if path is None:
        pytest.skip("models/reach_resnet.safetensors is not installed")
    p = load_policy(path)
    assert p.spec.name == "resnet_small" and not p.training
    x, c = observation(p.spec, 2, seed=9)
    for method in ("dtd", "rap"):
        e = explain(p, x, c, method=method)
        torch.testing.assert_close(e.image.flatten(1).sum(1) + e.config.sum(1), (e.alpha * e.torques.abs()).sum(1),
                                   rtol=1e-5, atol=0)
    torch.testing.assert_close(e.torques, p(x, c), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ("batch", "group"))
def test_gradient_is_autograd_times_input(norm):
    p = random_policy(norm, seed=3)
    x, c = observation(p.spec, 2, seed=4)
    alpha = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0, 1.0, 0.2])
    e = explain(p, x, c, method="gradient", alpha=alpha)
    xi = x.clone().requires_grad_(True)
    cn = p.normalise_config(c).detach().requires_grad_(True)
    tau = p.head(p.softmax(p.conv_features(xi)), cn)
    gx, gc = torch.autograd.grad((alpha * tau.abs()).sum(), (xi, cn))
    torch.testing.assert_close(e.image, (gx * x).sum(1), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(e.config, gc * cn, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(e.torques, p(x, c), rtol=1e-5, atol=1e-6)


def test_batch_equals_single_and_every_routed_method_runs():
    p = random_policy("batch", seed=5)
    x, c = observation(p.spec, 2, seed=6)
    torch.manual_seed(0)
    amortised.attach_explainer(p, amortised.Explainer(3))  # untrained: the occlusion_net methods run
    for m in METHODS:
        e = explain(p, x, c, method=m)
        assert e.method == m and tuple(e.image.shape) == (2, 64, 64) and torch.isfinite(e.image).all(), m
        assert tuple(e.feature_points.shape) == (2, 32, 2)
        if m in ("dtd", "rap", "gradient", "gbp", "ig"):
            one = explain(p, x[1:], c[1:], method=m)
            torch.testing.assert_close(one.image[0], e.image[1], rtol=1e-4, atol=1e-7)
            torch.testing.assert_close(one.config[0], e.config[1], rtol=1e-4, atol=1e-7)
    pj = explain(p, x, c, method="dtd", per_joint=True)
    torch.testing.assert_close(pj.per_joint_image.sum(1), pj.image, rtol=1e-4, atol=1e-6)
    assert explain(p, x, c, method="gradcam", layer=-1).extras["layer"] == \
        sum(isinstance(m, torch.nn.Conv2d) for m in p.modules()) - 1
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain(p, x, c, method="lrp")
    assert set(METHODS) - set(EXPLAINER_METHODS)  # the graph engine's share


def test_save_load_round_trip(tmp_path):
    p = random_policy("batch", seed=7)
    path = save_policy(p, tmp_path / "r.safetensors")
    q = load_policy(path)
    assert q.spec == p.spec and q.spec.trunk == p.spec.trunk
    x, c = observation(p.spec, 2)
    torch.testing.assert_close(q(x, c), p(x, c), rtol=0, atol=0)
    assert any("running_var" in k for k in q.state_dict())  # BatchNorm statistics are saved
    with pytest.raises(Exception, match="differs from the requested spec"):
        load_policy(path, "small")


# ---- training -------------------------------------------------------------------------------------
def test_training_smoke_changes_weights_and_ends_in_eval():
    from policy_xai.training import feature_points_of, fit, fit_head

    torch.set_num_threads(1)
    p = init_policy("resnet_small", seed=0)
    rng = np.random.default_rng(0)
    n = 12
    data = {"images": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
            "configs": rng.normal(size=(n, 20)).astype(np.float32),
            "labels": rng.normal(size=(n, 7)).astype(np.float32),
            "targets": rng.normal(size=(n, 3)).astype(np.float32)}
    before = {k: v.clone() for k, v in p.state_dict().items()}
    fit(p, data, epochs=1, batch=5)
    after = p.state_dict()
    assert not p.training and not any(m.training for m in p.modules())
    assert not torch.equal(before["trunk.conv1.weight"], after["trunk.conv1.weight"])
    assert not torch.equal(before["trunk.bn1.running_mean"], after["trunk.bn1.running_mean"])  # batch statistics
    pts = feature_points_of(p, data["images"])
    head = p.fcs[0].weight.clone()
    trunk = p.trunk.conv1.weight.clone()
    fit_head(p, pts, data["configs"], data["labels"], epochs=2)
    assert not torch.equal(head, p.fcs[0].weight) and torch.equal(trunk, p.trunk.conv1.weight)
    assert not any(m.training for m in p.modules())


# ---- live -----------------------------------------------------------------------------------------
def test_sim_graph_explains_the_resnet_policy_live(tmp_path):
    from policy_xai.ros.graph import graph
    from policy_xai.ros.runner import GraphRunner

    from ros_harness import Probe

    dom = 207
    spec_file = str(config_path("resnet_small"))
    probe = Probe(dom)
    probe.listen("torques", "ratios", "relevance_image", "diagnostics")
    over = {"policy_node": {"spec": spec_file}, "attribution_node": {"spec": spec_file, "method": "dtd"},
            "sim_node": {"task": "reach"}}
    runner = GraphRunner(graph("sim", overrides=over, nodes=["sim_node", "policy_node", "attribution_node"]),
                         domain_id=dom, log_dir=tmp_path / "logs")
    runner.start()
    try:
        probe.wait_for("ratios", 5, timeout=60)
        stamp = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
        deadline = time.monotonic() + 20
        while True:  # ratios of decisions whose torques the probe saw (its torque subscription may match later)
            torques = {stamp(m) for m in probe.get("torques")}
            ratios = [m for m in probe.get("ratios") if torques and stamp(m) >= min(torques)]
            if len(ratios) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        spec = load_spec("resnet_small")
        assert len(ratios) >= 5
        for m in ratios[-5:-1]:  # the newest one's torques may still be in flight
            assert (m.header.stamp.sec, m.header.stamp.nanosec) in torques
            assert list(m.name) == ["image", *spec.group_names]
            assert sum(m.position) == pytest.approx(1.0, abs=1e-5)
        img = probe.wait_for("relevance_image", 1)[-1]
        assert (img.height, img.width) == (64, 64)
        deadline = time.monotonic() + 10
        d = None
        while time.monotonic() < deadline:
            d = probe.diagnostics("attribution_node")
            if d is not None and int(d[2].get("explained", 0)) > 0:
                break
            time.sleep(0.2)
        assert d is not None, "no diagnostics from the attribution node"
        values = d[2]
        assert values["spec"] == "resnet_small" and values["method"] == "dtd", values
        assert values["torque_mismatches"] == "0", values
    finally:
        runner.stop()
        probe.close()
    assert not [n for n in runner.dead() if runner[n].returncode not in (0, None)], runner.report()
