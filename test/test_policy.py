"""Policy specs, the network, safe save/load and observation checks."""
import json

import numpy as np
import pytest
import torch

from policy_xai.policy import ObservationError, PolicyLoadError, init_policy, load_policy, read_metadata, save_policy
from policy_xai.spec import SpecError, load_spec


def test_shipped_specs():
    small, paper = load_spec("small"), load_spec("paper")
    assert (small.image_height, small.config_dim, small.n_joints, small.hidden) == (64, 20, 7, (40, 40))
    assert [c.channels for c in paper.conv] == [64, 32, 32] and paper.conv[0].kernel == 7
    p = init_policy("paper")
    out = p(torch.rand(2, 3, 240, 240), torch.randn(2, 20))
    assert out.shape == (2, 7)
    pts = p.feature_points(torch.rand(2, 3, 240, 240))
    assert pts.shape == (2, 32, 2) and pts.abs().max() <= 1


def test_save_load_roundtrip_keeps_group_order(tmp_path):
    d = load_spec("small").to_dict()
    d["config_groups"] = {"joint_velocity": 7, "ee_velocity": 3, "joint_position": 7, "ee_position": 3}
    d["name"] = "unsorted"
    p = init_policy(d, seed=3)
    p.config_mean.fill_(0.5)
    path = save_policy(p, tmp_path / "w.safetensors", task="test")
    q = load_policy(path)
    assert q.spec == p.spec and q.spec.group_names == ("joint_velocity", "ee_velocity", "joint_position", "ee_position")
    for k, v in p.state_dict().items():
        assert torch.equal(v, q.state_dict()[k]), k
    assert read_metadata(path)["task"] == "test"
    img, cfg = torch.rand(1, 3, 64, 64), torch.randn(1, 20)
    assert torch.equal(p(img, cfg), q(img, cfg))


def test_load_errors(tmp_path):
    p = init_policy("small")
    path = save_policy(p, tmp_path / "w.safetensors")
    with pytest.raises(PolicyLoadError, match="differs from the requested spec"):
        load_policy(path, spec="paper")
    with pytest.raises(PolicyLoadError, match="not found"):
        load_policy(tmp_path / "missing.safetensors")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(path.read_bytes()[:200])
    with pytest.raises(PolicyLoadError):
        load_policy(bad)
    # tensors that don't fit the stored spec
    from safetensors.torch import save_file

    meta = read_metadata(path)
    state = {k: v.contiguous() for k, v in p.state_dict().items()}
    state["fcs.0.weight"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "shapes.safetensors"), metadata=meta)
    with pytest.raises(PolicyLoadError, match="do not match the spec"):
        load_policy(tmp_path / "shapes.safetensors")


def test_spec_validation():
    d = load_spec("small").to_dict()
    for key, value, msg in [("feature_points", 16, "feature_points"), ("torque_limits", [1.0], "torque limits"),
                            ("config_groups", {"gripper": 2}, "unknown configuration group"),
                            ("image", {"channels": 3, "height": 8, "width": 8}, "too small")]:
        bad = json.loads(json.dumps(d))
        bad[key] = value
        with pytest.raises(SpecError, match=msg):
            load_spec(bad)
    with pytest.raises(FileNotFoundError, match="shipped"):
        load_spec("no_such_spec")


def test_observation_checks():
    p = init_policy("small")
    img = np.zeros((64, 64, 3), np.uint8)
    cfg = {"joint_position": np.zeros(7), "joint_velocity": np.zeros(7), "ee_position": np.zeros(3),
           "ee_velocity": np.zeros(3)}
    assert p.act(img, cfg).shape == (7,)
    with pytest.raises(ObservationError, match="expects 64x64x3"):
        p.prepare_image(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ObservationError, match="dtype"):
        p.prepare_image(np.zeros((64, 64, 3), np.int32))
    with pytest.raises(ObservationError, match="NaN"):
        p.prepare_image(np.full((64, 64, 3), np.nan, np.float32))
    with pytest.raises(ObservationError, match="unknown"):
        p.prepare_config({**cfg, "gripper": [0.0]})
    with pytest.raises(ObservationError, match="expected 7"):
        p.prepare_config({**cfg, "joint_position": np.zeros(6)})
    with pytest.raises(ObservationError, match="NaN"):
        p.prepare_config(np.full(20, np.nan))
    tau = p.act(np.full((64, 64, 3), 255, np.uint8), np.full(20, 1e6))
    assert np.all(np.abs(tau) <= np.array(p.spec.torque_limits) + 1e-9)  # clipped to the limits


def test_building_a_policy_flushes_denormals():
    """Denormal arithmetic is microcoded on x86 (a trained spatial softmax underflows into it): the
    policy turns flush-to-zero on, so a denormal input computes as 0."""
    import torch

    from policy_xai.policy import init_policy
    from policy_xai.spec import load_spec

    init_policy(load_spec("small"), 0)
    assert (torch.tensor([1e-39], dtype=torch.float32) * 1.0).item() == 0.0
