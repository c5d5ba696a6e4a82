"""VisuomotorPolicy through the graph engine (graph.compat.explain_policy): every field of the
Explanation equals the existing engine's, for every method, with per-joint maps."""
from pathlib import Path

import pytest
import torch

from policy_xai.attribution import explain
from policy_xai.attribution.graph.compat import METHODS, explain_policy
from policy_xai.policy import VisuomotorPolicy, load_policy
from policy_xai.spec import load_spec

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["small", "models/reach.safetensors"])
def case(request):
    torch.manual_seed(0)
    if request.param.endswith(".safetensors"):
        if not (ROOT / request.param).is_file():
            pytest.skip(f"{request.param} not shipped here")
        policy = load_policy(ROOT / request.param)
    else:
        policy = VisuomotorPolicy(load_spec(request.param)).eval()
        with torch.no_grad():
            policy.config_mean.normal_()
            policy.config_std.uniform_(0.5, 2.0)
    s = policy.spec
    g = torch.Generator().manual_seed(7)
    image = torch.rand(2, s.image_channels, s.image_height, s.image_width, generator=g)
    config = policy.config_mean + policy.config_std * torch.randn(2, s.config_dim, generator=g)
    return policy, image, config


def close(a, b, tol):
    if a is None or b is None:
        assert a is None and b is None
        return
    assert a.shape == b.shape
    scale = float(b.abs().max())
    assert float((a - b).abs().max()) <= tol * max(scale, 1e-30), (float((a - b).abs().max()), scale)


@pytest.mark.parametrize("method", METHODS)
def test_explanation_equals_engine(case, method):
    policy, image, config = case
    alpha = [1.0, 0.5, 2.0, 1.0, 0.1, 3.0, 1.0]
    per_joint = method != "ig_occlusion"
    old = explain(policy, image, config, method=method, alpha=alpha, per_joint=per_joint, engine="reference")
    new = explain_policy(policy, image, config, method=method, alpha=alpha, per_joint=per_joint)
    tol = 3e-5 if method in ("gradcam", "guided_gradcam") else 1e-6  # see docs/graph_engine.md
    for f in ("image", "config", "per_joint_image", "per_joint_config"):
        close(getattr(new, f), getattr(old, f), tol)
    close(new.points, old.points, 1e-6)
    close(new.torques, old.torques, 1e-6)
    close(new.feature_points, old.feature_points, 1e-6)
    torch.testing.assert_close(new.alpha, old.alpha)
    assert new.group_names == old.group_names and new.method == old.method
    if old.ratios is None:
        assert new.ratios is None
    else:
        assert set(new.ratios) == set(old.ratios)
        for k in old.ratios:
            torch.testing.assert_close(new.ratios[k], old.ratios[k], rtol=1e-5, atol=1e-6)
    for k in ("output_relevance", "reference_torques", "layer"):
        assert (k in new.extras) == (k in old.extras)
        if k in old.extras and torch.is_tensor(old.extras[k]):
            close(new.extras[k], old.extras[k], 1e-6)
