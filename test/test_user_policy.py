"""A user's policy without writing code (policy_xai.user_policy, `policy-xai explain-model`): loading
from package.module:factory with safetensors or torch state_dict weights and from a torch.export
.pt2 program, the YAML observation mapping and its errors (which list the model's inputs), and the
command end to end.

The .pt2 tests use a small conv + linear model: torch.export exports the spatial-softmax
robomimic_bc too (it loads and runs, tested below), but export decomposes the keypoint module and
BatchNorm into aten ops (softmax, matmul, batch_norm) that the graph engine has no rule for, so only
the conv + linear program is explained (and matches its nn.Module's explanation)."""
import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from policy_xai.attribution import explain
from policy_xai.attribution.graph.models import randomize_norms, robomimic_bc
from policy_xai.user_policy import (ObservationMapping, UserPolicyError, load_mapping, load_user_policy,
                                    model_inputs)

from cli_harness import cli  # noqa: E402

torch.set_num_threads(1)
FACTORY = "policy_xai.attribution.graph.models:robomimic_bc"
KW = {"width": 4, "image_size": 32, "hidden": [16], "low_dim": {"joint_state": 14}}
JOINTS = ["right_s0", "right_s1", "right_e0", "right_e1", "right_w0", "right_w1", "right_w2"]
MAPPING = {
    "agentview_image": {"topic": "/camera/image_raw", "kind": "image", "height": 32, "width": 32},
    "joint_state": {"topic": "/joint_states", "kind": "vector", "fields": ["position", "velocity"], "joints": JOINTS},
    "actions": {"names": JOINTS, "kind": "torques"},
}


class ConvLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2)
        self.fc = nn.Linear(4 * 7 * 7 + 14, 5)

    def forward(self, image, state):
        return self.fc(torch.cat([torch.relu(self.conv(image)).flatten(1), state], 1))


def write_yaml(path, doc):
    import yaml

    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return randomize_norms(robomimic_bc(**KW)).eval()


@pytest.fixture(scope="module")
def obs():
    g = torch.Generator().manual_seed(1)
    return {"agentview_image": torch.rand(2, 3, 32, 32, generator=g), "joint_state": torch.randn(2, 14, generator=g)}


# ---- loading ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_factory_with_weights(tmp_path, trained, obs, fmt):
    sd = {k: v.contiguous() for k, v in trained.state_dict().items()}
    if fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(sd, str(path))
    else:
        path = tmp_path / "w.pt"
        torch.save(sd, path)
    m = load_user_policy(FACTORY, path, KW)
    assert not m.training
    with torch.no_grad():
        assert torch.equal(m(obs), trained(obs))


def test_weights_mismatch_names_keys_and_shapes(tmp_path, trained):
    sd = dict(trained.state_dict())
    sd.pop("action.bias")
    sd["extra.weight"] = torch.zeros(2)
    sd["action.weight"] = torch.zeros(3, 16)
    torch.save(sd, tmp_path / "w.pt")
    with pytest.raises(UserPolicyError) as e:
        load_user_policy(FACTORY, tmp_path / "w.pt", KW)
    msg = str(e.value)
    assert "\n" not in msg and "missing keys: action.bias" in msg and "unexpected keys: extra.weight" in msg
    assert "action.weight (3, 16) in the file vs (7, 16) in the model" in msg


def test_load_errors_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "corrupt.pt2").write_bytes(b"not a zip")
    (tmp_path / "corrupt.safetensors").write_bytes(b"garbage!" * 4)
    (tmp_path / "userpkg_raises.py").write_text("def make():\n    raise RuntimeError('no GPU here\\nsecond line')\n"
                                                "def notmodule():\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = [
        ("nosuch_pkg.mod:make", None, "cannot import module 'nosuch_pkg.mod'"),
        ("policy_xai.attribution.graph.models:nothing", None, "has no 'nothing'"),
        ("userpkg_raises:make", None, "make() raised RuntimeError: no GPU here"),
        ("userpkg_raises:notmodule", None, "returned a int, not a torch.nn.Module"),
        (str(tmp_path / "missing.pt2"), None, "model file not found"),
        (str(tmp_path / "corrupt.pt2"), None, "torch.export.load failed"),
        (FACTORY, tmp_path / "missing.pt", "weights file not found"),
        (FACTORY, tmp_path / "corrupt.safetensors", "not a readable safetensors file"),
        ("just_a_name", None, "expected package.module:factory or a .pt2 file"),
    ]
    for source, weights, want in cases:
        with pytest.raises(UserPolicyError) as e:
            load_user_policy(source, weights, KW if source == FACTORY else None)
        assert want in str(e.value) and "\n" not in str(e.value), (source, str(e.value))


def test_pt2_conv_linear_loads_and_explains_like_the_module(tmp_path):
    torch.manual_seed(0)
    m = ConvLinear().eval()
    x, s = torch.rand(1, 3, 16, 16), torch.randn(1, 14)
    torch.export.save(torch.export.export(m, (x, s)), tmp_path / "p.pt2")
    p = load_user_policy(tmp_path / "p.pt2")
    assert not p.training and model_inputs(p) == ["image", "state"]
    mapping = ObservationMapping.from_dict({"image": {"kind": "image", "height": 16, "width": 16},
                                            "state": {"size": 14}, "actions": {"kind": "other"}})
    assert mapping.check(p) == 5
    e = mapping.explain(p, {"image": x, "state": s}, method="dtd")
    ref = explain(m, (x, s), method="dtd")
    assert torch.allclose(e.inputs["image"], ref.inputs["input0"], atol=1e-6)
    assert torch.allclose(e.inputs["state"], ref.inputs["input1"], atol=1e-6)
    total = e.inputs["image"].sum() + e.inputs["state"].sum()
    assert torch.allclose(total, ref.outputs.abs().sum(), rtol=1e-5)


def test_pt2_spatial_softmax_model_loads_and_runs(tmp_path, trained, obs):
    one = {k: v[:1] for k, v in obs.items()}
    torch.export.save(torch.export.export(trained, (one,)), tmp_path / "bc.pt2")
    p = load_user_policy(str(tmp_path / "bc.pt2"))
    assert p.input_style == "dict" and sorted(p.input_names) == ["agentview_image", "joint_state"]
    with torch.no_grad():
        assert torch.allclose(p(one), trained(one), atol=1e-6)
    assert ObservationMapping.from_dict(MAPPING).check(p) == 7


# ---- the mapping --------------------------------------------------------------------------------
def test_mapping_to_inputs_and_explain(trained):
    mapping = ObservationMapping.from_dict(MAPPING)
    assert mapping.check(trained) == 7
    raw = mapping.example(seed=2)
    inp = mapping.to_inputs(raw)
    assert inp["agentview_image"].shape == (1, 3, 32, 32) and inp["joint_state"].shape == (1, 14)
    assert inp["agentview_image"].max() <= 1 and torch.allclose(
        inp["agentview_image"][0, :, 3, 5], torch.tensor(raw["agentview_image"][3, 5] / 255.0, dtype=torch.float32))
    # a JointState-like message, joints in another order, picked by name
    order = JOINTS[::-1]
    msg = {"name": order, "position": [JOINTS.index(j) for j in order],
           "velocity": [10 + JOINTS.index(j) for j in order]}
    v = mapping.to_inputs({"agentview_image": raw["agentview_image"], "joint_state": msg})["joint_state"][0]
    assert v.tolist() == list(range(7)) + list(range(10, 17))
    e = mapping.explain(trained, inp)
    assert set(e.group_ratios) == {"joint_state/position", "joint_state/velocity"}
    assert abs(sum(float(r) for r in e.ratios.values()) - 1) < 1e-6
    assert torch.allclose(e.alpha, torch.ones(1, 7))


def test_alpha_for_actions():
    doc = dict(MAPPING, actions={"names": ["dx", "dy", "grip"], "kind": "other", "alpha": [1, 2, 0.5]})
    assert ObservationMapping.from_dict(doc).alpha(3).tolist() == [1, 2, 0.5]
    assert ObservationMapping.from_dict(dict(MAPPING, actions={"kind": "other"})).alpha(4).tolist() == [1] * 4
    for bad, want in [({"kind": "velocity"}, "is not one of torques, other"),
                      ({"names": ["a", "b"], "alpha": [1]}, "1 weights for 2 actions"),
                      ({"alpha": [1, -1]}, ">= 0")]:
        with pytest.raises(UserPolicyError, match=want):
            ObservationMapping.from_dict(dict(MAPPING, actions=bad))


def test_mapping_errors_list_the_model_inputs(tmp_path, trained):
    inputs = "agentview_image, joint_state"
    missing = {k: v for k, v in MAPPING.items() if k != "joint_state"}
    with pytest.raises(UserPolicyError) as e:
        ObservationMapping.from_dict(missing).check(trained)
    assert "no source for joint_state" in str(e.value) and inputs in str(e.value)
    wrong_kind = dict(MAPPING, agentview_image={"topic": "/camera/image_raw", "kind": "vector", "size": 14})
    with pytest.raises(UserPolicyError) as e:
        ObservationMapping.from_dict(wrong_kind).check(trained)
    assert "the model fails" in str(e.value) and inputs in str(e.value)
    assert "agentview_image (vector 14)" in str(e.value)
    unknown_kind = dict(MAPPING, agentview_image={"topic": "/camera/image_raw", "kind": "lidar"})
    with pytest.raises(UserPolicyError) as e:
        load_mapping(write_yaml(tmp_path / "m.yaml", unknown_kind), trained)
    assert "kind 'lidar' is not one of image, vector" in str(e.value) and inputs in str(e.value)
    wrong_size = dict(MAPPING, agentview_image=dict(MAPPING["agentview_image"], height=64))
    with pytest.raises(UserPolicyError, match="the model fails"):
        ObservationMapping.from_dict(wrong_size).check(trained)
    # positional model: names must be forward's parameters
    with pytest.raises(UserPolicyError) as e:
        ObservationMapping.from_dict({"img": {"kind": "image", "height": 16, "width": 16},
                                      "state": {"size": 14}}).check(ConvLinear().eval())
    assert "image, state" in str(e.value)
    with pytest.raises(UserPolicyError, match="actions.names has 2 names, the model has 7 outputs"):
        ObservationMapping.from_dict(dict(MAPPING, actions={"names": ["a", "b"]})).check(trained)


# ---- the command --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, trained):
    d = tmp_path_factory.mktemp("em")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(d / "w.safetensors"))
    write_yaml(d / "mapping.yaml", MAPPING)
    rng = np.random.default_rng(0)
    np.savez(d / "obs.npz", agentview_image=rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
             joint_state=rng.standard_normal((5, 14)).astype(np.float32))
    return d


def args(d, out, **over):
    a = {"--model": FACTORY, "--weights": d / "w.safetensors", "--factory-kwargs": json.dumps(KW),
         "--mapping": d / "mapping.yaml", "--observations": d / "obs.npz", "--method": "dtd", "--batch": 2,
         "--out": out}
    a.update(over)
    return ["explain-model"] + [x for k, v in a.items() if v is not None for x in (k, v)]


def test_cli_end_to_end(capsys, files, trained):
    out = files / "out"
    rc, stdout, err = cli(capsys, *args(files, out))
    assert rc == 0, err
    rows = list(csv.DictReader(open(out / "ratios.csv")))
    steps = sorted({int(r["step"]) for r in rows})
    assert steps == list(range(5))
    for s in steps:
        whole = [float(r["ratio"]) for r in rows if int(r["step"]) == s and not r["group"]]
        groups = [float(r["ratio"]) for r in rows if int(r["step"]) == s and r["group"]]
        assert len(whole) == 2 and abs(sum(whole) - 1) < 1e-5
        state = [float(r["ratio"]) for r in rows
                 if int(r["step"]) == s and r["input"] == "joint_state" and not r["group"]]
        assert abs(sum(groups) - state[0]) < 1e-5
    rel = np.load(out / "relevance.npz")
    assert rel["agentview_image"].shape == (5, 3, 32, 32) and rel["joint_state"].shape == (5, 14)
    summary = json.loads((out / "summary.json").read_text())
    # the weights were loaded: the outputs are the trained model's
    o = np.load(files / "obs.npz")
    with torch.no_grad():
        y = trained({"agentview_image": torch.from_numpy(o["agentview_image"]).permute(0, 3, 1, 2).float() / 255,
                     "joint_state": torch.from_numpy(o["joint_state"])})
    assert np.allclose(summary["outputs"], y.numpy(), atol=1e-5)
    total = rel["agentview_image"].reshape(5, -1).sum(1) + rel["joint_state"].sum(1)
    assert np.allclose(total, np.abs(y.numpy()).sum(1), rtol=1e-4)


def test_cli_refuses_non_empty_out(capsys, files):
    out = files / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc, _, err = cli(capsys, *args(files, out))
    assert rc == 2 and "not an empty folder" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("over, want", [
    ({"--model": "nosuch_pkg.policies:make"}, "cannot import module 'nosuch_pkg.policies'"),
    ({"--factory-kwargs": "{width: 4"}, "--factory-kwargs: not valid JSON"),
    ({"--factory-kwargs": None, "--weights": None}, "no source for robot0_eef_pos"),
    ({"--method": "gradcam"}, "--method 'gradcam'"),
    ({"--observations": "missing.npz"}, "--observations not found"),
])
def test_cli_bad_input_is_one_line(capsys, files, over, want):
    out = files / "never"
    rc, _, err = cli(capsys, *args(files, out, **over))
    assert rc == 2 and want in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_cli_pt2(capsys, tmp_path):
    torch.manual_seed(0)
    m = ConvLinear().eval()
    torch.export.save(torch.export.export(m, (torch.rand(1, 3, 16, 16), torch.randn(1, 14))), tmp_path / "p.pt2")
    write_yaml(tmp_path / "m.yaml", {"image": {"topic": "/camera/image_raw", "kind": "image",
                                               "height": 16, "width": 16},
                                     "state": {"topic": "/joint_states", "fields": ["position", "velocity"],
                                               "joints": JOINTS},
                                     "actions": {"names": ["dx", "dy", "dz", "roll", "grip"], "kind": "other",
                                                 "alpha": [1, 1, 1, 0.5, 2]}})
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "o.npz", image=rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8),
             state=rng.standard_normal((3, 14)))
    rc, _, err = cli(capsys, "explain-model", "--model", tmp_path / "p.pt2", "--mapping", tmp_path / "m.yaml",
                     "--observations", tmp_path / "o.npz", "--method", "rap", "--out", tmp_path / "out")
    assert rc == 0, err
    rel = np.load(tmp_path / "out" / "relevance.npz")
    assert rel["image"].shape == (3, 3, 16, 16) and rel["state"].shape == (3, 14)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["alpha"] == [1, 1, 1, 0.5, 2] and summary["action_kind"] == "other"
    y = np.abs(np.asarray(summary["outputs"])) @ np.asarray([1, 1, 1, 0.5, 2])
    assert np.allclose(rel["image"].reshape(3, -1).sum(1) + rel["state"].sum(1), y, rtol=1e-4)
    rc, _, err = cli(capsys, "explain-model", "--model", tmp_path / "p.pt2", "--weights", tmp_path / "o.npz",
                     "--mapping", tmp_path / "m.yaml", "--observations", tmp_path / "o.npz", "--out", tmp_path / "o2")
    assert rc == 2 and "holds its weights" in err and len(err.strip().splitlines()) == 1


def test_cli_torques_take_importance_factors_from_a_robot(capsys, files):
    from policy_xai.robot.importance import importance_factors
    from policy_xai.robot.model import RobotModel

    out = files / "robot"
    rc, _, err = cli(capsys, *args(files, out), "--robot", "baxter_right_arm")
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    robot = RobotModel.from_name("baxter_right_arm")
    q = np.load(files / "obs.npz")["joint_state"][:, :7]
    want = [importance_factors(robot, q[t], dt=0.05)[[list(robot.joint_names).index(j) for j in JOINTS]]
            for t in range(5)]
    assert np.allclose(summary["alpha"], want) and summary["robot"] == "baxter_right_arm"
    rel = np.load(out / "relevance.npz")
    total = rel["agentview_image"].reshape(5, -1).sum(1) + rel["joint_state"].sum(1)
    assert np.allclose(total, (np.abs(summary["outputs"]) * np.asarray(want)).sum(1), rtol=1e-4)
    rc, _, err = cli(capsys, *args(files, files / "r2"), "--robot", "two_link_arm")
    assert rc == 2 and "are not the robot's joints" in err and len(err.strip().splitlines()) == 1


def test_single_tensor_model_takes_its_one_observation_whatever_its_name():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 2, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 7 * 7, 3)).eval()
    mapping = ObservationMapping.from_dict({"wrist_camera": {"kind": "image", "height": 16, "width": 16}})
    assert mapping.call_style(m) == ("positional", ["wrist_camera"]) and mapping.check(m) == 3
    e = mapping.explain(m, mapping.to_inputs(mapping.example()))
    assert e.inputs["wrist_camera"].shape == (1, 3, 16, 16) and float(e.ratios["wrist_camera"]) == 1
    with pytest.raises(UserPolicyError) as err:
        ObservationMapping.from_dict({"wrist_camera": {"kind": "image", "height": 16, "width": 16},
                                      "state": {"size": 3}}).check(m)
    assert "forward(input)" in str(err.value)


def test_example_mapping_fits_robomimic_bc():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "config" / "user_policy_example.yaml"
    model = load_user_policy(FACTORY, kwargs={"width": 4, "low_dim": {"joint_state": 14}})
    mapping = load_mapping(path, model)
    assert mapping.names() == ["agentview_image", "joint_state"] and mapping.action_kind == "torques"
    assert mapping.check(model) == 7 and mapping.action_names == JOINTS
    with pytest.raises(UserPolicyError, match="no source for robot0_eef_pos"):  # robomimic_bc() as it comes
        load_mapping(path, load_user_policy(FACTORY, kwargs={"width": 4}))


# ==== live, without ROS (policy_xai.user_live: what user_policy_node computes) =======================
SIM_KW = '{"width": 8, "image_size": 64, "low_dim": {"joint_state": 14}, "tanh": false}'


@pytest.fixture(scope="module")
def sim_live():
    from policy_xai.user_live import load_live

    return load_live(FACTORY, "user_policy_sim", model_kwargs=SIM_KW, allow_untrained=True)


def test_shipped_sim_mapping_fits_robomimic_bc_at_64(sim_live):
    from policy_xai.ros.graph import first_camera_size

    assert sim_live.n_actions == 7 and sim_live.mapping.action_kind == "torques"
    assert sim_live.topic_plan() == {"/camera/image_raw": ("image", ["agentview_image"]),
                                     "/joint_states": ("joint_state", ["joint_state"])}
    assert first_camera_size("user_policy_sim") == (64, 64)
    rng = np.random.default_rng(0)
    q = sim_live.vector_from_joint_state("joint_state", JOINTS[::-1],
                                         {"position": np.arange(7.0), "velocity": np.ones(7)})
    assert q.tolist() == list(range(6, -1, -1)) + [1.0] * 7  # picked by name, positions then velocities
    rgb = sim_live.image("agentview_image", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    inputs, actions = sim_live.decide({"agentview_image": rgb, "joint_state": q})
    e = sim_live.explain(inputs, {"joint_state": q}, "dtd")
    assert e.ratio_names == ["agentview_image", "joint_state/position", "joint_state/velocity"]
    assert e.ratio_values.sum() == pytest.approx(1.0, abs=1e-5)
    assert e.maps["agentview_image"].shape == (64, 64) and e.maps["agentview_image"].dtype == np.float32
    np.testing.assert_allclose(e.outputs, actions, atol=1e-5)
    assert e.element_names[0] == "joint_position/right_s0" and e.element_names[7] == "joint_velocity/right_s0"
    assert e.element_relevance.shape == (14,) and e.alpha.tolist() == [1.0] * 7


def test_live_input_errors_are_one_line(sim_live):
    def err(fn):
        with pytest.raises(UserPolicyError) as ei:
            fn()
        assert "\n" not in str(ei.value)
        return str(ei.value)

    assert "32x32, the mapping says 64x64" in err(
        lambda: sim_live.image("agentview_image", np.zeros((32, 32, 3), np.uint8)))
    assert sim_live.image("agentview_image", np.zeros((32, 32, 3), np.uint8), resize=True).shape == (64, 64, 3)
    f = {"position": np.zeros(7), "velocity": np.zeros(7)}
    assert "left_0" in err(lambda: sim_live.vector_from_joint_state("joint_state", [f"left_{i}" for i in range(7)], f))
    assert "NaN" in err(lambda: sim_live.vector_from_joint_state(
        "joint_state", JOINTS, {"position": np.full(7, np.nan), "velocity": np.zeros(7)}))
    assert "0 velocity values" in err(lambda: sim_live.vector_from_joint_state("joint_state", JOINTS,
                                                                               {"position": np.zeros(7)}))
    assert "cannot explain" in err(lambda: sim_live.check_method("no_such_method"))


def test_live_loading_refuses_and_names_the_problem():
    from policy_xai.user_live import UntrainedModelRefused, check_device, load_live, parse_kwargs

    with pytest.raises(UntrainedModelRefused, match="allow_untrained:=true"):
        load_live(FACTORY, "user_policy_sim", model_kwargs=SIM_KW)
    with pytest.raises(UserPolicyError, match="robot0_eef_pos"):  # the model's inputs are listed
        load_live(FACTORY, "user_policy_sim", allow_untrained=True)
    with pytest.raises(UserPolicyError, match="not JSON"):
        parse_kwargs("{width: 8")
    with pytest.raises(UserPolicyError, match="JSON object"):
        parse_kwargs("[1, 2]")
    assert parse_kwargs("") == {} and parse_kwargs('{"width": 8}') == {"width": 8}
    assert str(check_device("cpu")) == "cpu"
    with pytest.raises(UserPolicyError, match="expected cpu, cuda"):
        check_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserPolicyError, match="CUDA is not available"):
            check_device("cuda")
    with pytest.raises(UserPolicyError, match="mapping file not found: no_such_mapping.yaml"):
        load_live(FACTORY, "no_such_mapping.yaml", model_kwargs=SIM_KW, allow_untrained=True)
    with pytest.raises(UserPolicyError, match="model file not found"):
        load_live("missing.pt2", "user_policy_sim")
    with pytest.raises(UserPolicyError, match="no model"):
        load_live("", "user_policy_sim")


def test_live_other_actions_and_dynamics_alpha(tmp_path):
    from policy_xai.user_live import load_live

    torch.manual_seed(0)
    torch.save(ConvLinear().state_dict(), tmp_path / "w.pt")
    mapping = write_yaml(tmp_path / "map.yaml", {
        "image": {"topic": "/cam", "kind": "image", "height": 16, "width": 16},
        "state": {"topic": "/joint_states", "kind": "vector", "fields": ["position", "velocity"], "joints": JOINTS},
        "actions": {"names": ["dx", "dy", "dz", "roll", "grip"], "kind": "other", "alpha": [1, 1, 1, 0.5, 2]}})
    live = load_live("test_user_policy:ConvLinear", str(mapping), weights=str(tmp_path / "w.pt"))
    assert not live.untrained and live.mapping.action_kind == "other"
    obs = live.mapping.example()
    inputs, a = live.decide(obs)
    e = live.explain(inputs, {"state": obs["state"]}, "gradient", importance="dynamics")  # not torques: mapping's alpha
    assert e.alpha.tolist() == [1, 1, 1, 0.5, 2] and a.shape == (5,)
    assert e.ratio_names == ["image", "state/position", "state/velocity"]


def test_run_command_checks_the_users_model_before_starting(capsys, tmp_path):
    """`policy-xai run --model`: a mapping that does not fit is one line and exit code 2, before any
    node starts (the live run itself: test_user_policy_ros.py and docs/ros.md)."""
    rc, _, err = cli(capsys, "run", "--model", FACTORY, "--mapping", "user_policy_sim", "--out", tmp_path / "r")
    assert rc == 2 and "does not fit the model" in err and "robot0_eef_pos" in err
    assert not (tmp_path / "r" / "bag").exists()
    rc, _, err = cli(capsys, "run", "--mapping", "other.yaml", "--out", tmp_path / "r2")
    assert rc == 2 and "--mapping and --model-kwargs are for --model" in err
