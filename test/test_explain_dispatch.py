"""policy_xai.attribution.explain as one entry point: the VisuomotorPolicy form goes to engine.explain
unchanged, any other module (dict / tuple / positional observation) to the graph engine."""
import pytest
import torch
from torch import nn

from policy_xai.attribution import CAM_METHODS, IMAGE, METHODS, Explanation, engine, explain
from policy_xai.attribution.graph import METHODS as GRAPH_METHODS
from policy_xai.attribution.graph import GraphExplanation, UnsupportedOpError, explain_module
from policy_xai.attribution.graph.models import example_observation, randomize_norms, robomimic_bc
from policy_xai.policy import init_policy

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def policy():
    return init_policy("small", seed=0).eval()


@pytest.fixture(scope="module")
def policy_obs(policy):
    s, g = policy.spec, torch.Generator().manual_seed(3)
    image = torch.rand(2, s.image_channels, s.image_height, s.image_width, generator=g)
    return image, torch.randn(2, s.config_dim, generator=g)


@pytest.fixture(scope="module")
def bc():
    torch.manual_seed(0)
    return randomize_norms(robomimic_bc(width=4, image_size=64, hidden=(32, 32))).eval()


@pytest.fixture(scope="module")
def bc_obs(bc):
    return example_observation(bc, 2, 64, torch.Generator().manual_seed(1))


def _fields(e):
    return {k: v for k, v in vars(e).items()}


def _assert_same(a, b):
    assert type(a) is type(b) is Explanation
    fa, fb = _fields(a), _fields(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        x, y = fa[k], fb[k]
        if torch.is_tensor(x):
            assert torch.equal(x, y), k
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), k
            for kk in x:
                assert torch.equal(x[kk], y[kk]) if torch.is_tensor(x[kk]) else x[kk] == y[kk], (k, kk)
        else:
            assert x == y, k


def test_exports_unchanged():
    assert METHODS == engine.METHODS and CAM_METHODS == engine.CAM_METHODS
    assert "occlusion_net" in METHODS and IMAGE and Explanation


@pytest.mark.parametrize("method", ["dtd", "gradient"])
def test_old_form_is_engine_explain(policy, policy_obs, method):
    image, config = policy_obs
    alpha = torch.linspace(0.2, 2.0, policy.spec.n_joints)
    for kw in ({}, {"alpha": alpha, "per_joint": True}):
        want = engine.explain(policy, image, config, method=method, **kw)
        _assert_same(explain(policy, image, config, method=method, **kw), want)
        _assert_same(explain(policy, image, config, method, **kw), want)  # method positional
        _assert_same(explain(policy, image, config=config, method=method, **kw), want)


def test_old_form_passes_engine_errors_through(policy, policy_obs):
    image, config = policy_obs
    with pytest.raises(ValueError, match="unknown attribution method 'nope'.*occlusion_net"):
        explain(policy, image, config, method="nope")
    with pytest.raises(ValueError, match="config batch has shape"):
        explain(policy, image, config[:, :3])


def test_dict_observation_goes_to_graph_engine(bc, bc_obs):
    alpha = torch.rand(7, generator=torch.Generator().manual_seed(2)) + 0.1
    e = explain(bc, bc_obs, method="dtd", alpha=alpha)
    assert isinstance(e, GraphExplanation) and e.method == "dtd"
    assert set(e.inputs) == set(bc_obs) and all(e.inputs[k].shape == bc_obs[k].shape for k in bc_obs)
    want = (e.alpha * e.outputs.abs()).sum(1)
    got = sum(v.flatten(1).sum(1) for v in e.inputs.values())
    assert torch.all((got - want).abs() <= 1e-5 * want.abs())
    assert set(e.ratios) == set(bc_obs) and "agentview_image" in e.maps
    ref = explain_module(bc, bc_obs, method="dtd", alpha=alpha)
    assert all(torch.equal(e.inputs[k], ref.inputs[k]) for k in bc_obs)

    x = {k: v.clone().requires_grad_(True) for k, v in bc_obs.items()}
    (alpha * bc(x).abs()).sum().backward()
    g = explain(bc, bc_obs, method="gradient", alpha=alpha)
    for k in bc_obs:
        torch.testing.assert_close(g.inputs[k], x[k].grad * bc_obs[k], rtol=1e-4, atol=1e-7)

    per = explain(bc, bc_obs, method="dtd", per_joint=True)  # the old keyword as per_output's alias
    assert per.per_output["robot0_eef_pos"].shape == (2, 7, 3)
    with pytest.raises(TypeError, match="per_output or its alias per_joint"):
        explain(bc, bc_obs, per_joint=True, per_output=True)
    with pytest.raises(TypeError, match="graph engine form"):
        explain(bc, bc_obs, per_torque=True)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(5, 8), nn.Linear(3, 8), nn.Linear(8, 2)

    def forward(self, x, s):
        return self.out(torch.relu(self.a(x) + self.b(s)))


def test_positional_tensors():
    torch.manual_seed(0)
    model = TwoInputs().eval()
    x, s = torch.randn(3, 5), torch.randn(3, 3)
    ref = explain_module(model, (x, s), method="dtd")
    for e in (explain(model, x, s), explain(model, (x, s)), explain(model, x, s, "dtd"),
              explain(model, [x, s], method="dtd", alpha=None)):
        assert isinstance(e, GraphExplanation) and set(e.inputs) == {"input0", "input1"}
        assert e.inputs["input0"].shape == x.shape and e.inputs["input1"].shape == s.shape
        assert all(torch.equal(e.inputs[k], ref.inputs[k]) for k in ref.inputs)
    lin = nn.Linear(4, 2).eval()  # a single tensor: model(x)
    e = explain(lin, torch.randn(2, 4), method="gradient")
    assert set(e.inputs) == {"input0"} and e.inputs["input0"].shape == (2, 4)


def test_visuomotor_policy_tuple_goes_to_graph_engine(policy, policy_obs):
    e = explain(policy, tuple(policy_obs), method="dtd")
    assert isinstance(e, GraphExplanation)
    assert e.inputs["input0"].shape == policy_obs[0].shape and e.inputs["input1"].shape == policy_obs[1].shape
    with pytest.raises(TypeError, match=r"not a dict.*explain\(policy, image, config"):
        explain(policy, {"image": policy_obs[0], "config": policy_obs[1]})


from hand_policies import WithSigmoid  # noqa: E402


def test_errors(bc, bc_obs, policy, policy_obs):
    supported = ", ".join(GRAPH_METHODS)
    with pytest.raises(ValueError, match="unknown attribution method 'nope'") as err:
        explain(bc, bc_obs, method="nope")
    assert supported in str(err.value)
    for method in engine.EXPLAINER_METHODS:
        with pytest.raises(ValueError, match=f"{method}.*VisuomotorPolicy.*BCPolicy is not one") as err:
            explain(bc, bc_obs, method=method)
        assert supported in str(err.value)
        with pytest.raises(ValueError, match=r"VisuomotorPolicy engine only.*explain\(policy, image, config"):
            explain(policy, tuple(policy_obs), method=method)
    with pytest.raises(UnsupportedOpError) as err:
        explain(WithSigmoid().eval(), {"state": torch.randn(2, 4)}, method="dtd")
    msg = str(err.value)
    assert "Sigmoid" in msg and "'enc.1'" in msg and "supported op types" in msg
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        explain(lambda obs: obs, {"state": torch.randn(2, 4)})


def test_docstring_documents_both_forms():
    doc = explain.__doc__
    assert "explain(policy, image, config" in doc and "explain(model, {" in doc
    assert engine.explain.__doc__.strip()[:60] in doc  # engine.explain's own documentation


def test_a_policy_explains_numpy_observations_as_the_robot_gives_them():
    """explain(policy, uint8 (H, W, 3) image, (D,) config) == explain on the prepared tensors."""
    import numpy as np

    from policy_xai.attribution import explain
    from policy_xai.policy import init_policy
    from policy_xai.spec import load_spec

    pol = init_policy(load_spec("small"), 0)
    s = pol.spec
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (s.image_height, s.image_width, 3), dtype=np.uint8)
    cfg = rng.normal(size=s.config_dim).astype(np.float32)
    a = explain(pol, img, cfg, method="dtd")
    b = explain(pol, pol.prepare_image(img), pol.prepare_config(cfg), method="dtd")
    assert torch.equal(a.image, b.image) and torch.equal(a.config, b.config)
    assert np.array_equal(a.ratio_array(), b.ratio_array(), equal_nan=True)
    with pytest.raises(TypeError, match="configuration"):
        explain(pol, img, method="dtd")
