"""The graph engine (policy_xai.attribution.graph): rules per op type, reference architectures, and
the same numbers as the VisuomotorPolicy engine on `small`."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from policy_xai.attribution import explain
from policy_xai.attribution.graph import METHODS, UnsupportedOpError, explain_module
from policy_xai.attribution.graph.models import (FrozenBatchNorm2d, SpatialSoftArgmax, example_observation,
                                                 groupnorm_bc, randomize_norms, robomimic_bc, two_camera_bc)
from policy_xai.policy import SpatialSoftmax, VisuomotorPolicy
from policy_xai.spec import load_spec

torch.set_num_threads(1)
RELEVANCE = ("dtd", "rap")
ALL = ("dtd", "rap", "gradient", "gbp")


def total(e):
    return sum(v.reshape(v.shape[0], -1).sum(1) for v in e.inputs.values())


def assert_conserved(e, rel=1e-5):
    want = (e.alpha * e.outputs.abs()).sum(1)
    got = total(e)
    assert torch.all((got - want).abs() <= rel * want.abs().clamp(min=1e-12)), (got, want)


def autograd_x_input(model, obs, alpha=None):
    x = {k: v.clone().requires_grad_(True) for k, v in obs.items()}
    y = model(x)
    a = torch.ones_like(y) if alpha is None else torch.as_tensor(alpha, dtype=y.dtype).expand_as(y)
    (a * y.abs()).sum().backward()
    return {k: x[k].grad * obs[k] for k in obs}


# ---- one module per op type -----------------------------------------------------------------------
class Net(nn.Module):
    """A small net around one op: obs["x"] -> body -> Linear -> (B, 3) outputs."""

    def __init__(self, body, in_shape):
        super().__init__()
        self.body = body
        with torch.no_grad():
            d_out = body.eval()(torch.rand(1, *in_shape)).flatten(1).shape[1]
        self.head = nn.Linear(d_out, 3)

    def forward(self, obs):
        return self.head(self.body(obs["x"]).flatten(1))


class Residual(nn.Module):
    def __init__(self, sub=False):
        super().__init__()
        self.a, self.b, self.sub = nn.Linear(6, 6), nn.Linear(6, 6), sub

    def forward(self, x):
        h = F.relu(self.a(x))
        return F.relu(h - self.b(h)) if self.sub else F.relu(self.b(h) + h)


class Structural(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 12)

    def forward(self, x):
        h = torch.relu(self.fc(x))
        a, b, c = torch.split(h, 4, dim=1)
        v = torch.cat([c, a.view(-1, 2, 2).reshape(x.shape[0], 4)], dim=1)
        w = h[:, 2:6].unsqueeze(1).mean(1)
        return torch.cat([v, w, b.chunk(2, dim=1)[0]], dim=-1)


class Pooling(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = {"max": nn.MaxPool2d(3, 2, 1), "avg": nn.AvgPool2d(2), "adaptive": nn.AdaptiveAvgPool2d(2)}[kind]

    def forward(self, x):
        return self.pool(F.relu(self.conv(x)))


class MeanNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 3)

    def forward(self, x):
        return F.relu(self.conv(x)).mean(dim=(2, 3))


def act_net(act):
    return nn.Sequential(nn.Linear(6, 10), act, nn.Linear(10, 8), act)


OP_NETS = {
    "linear": lambda s: Net(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Identity()), s),
    "conv1d": lambda s: Net(nn.Sequential(nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), nn.ReLU(),
                                        nn.Conv1d(6, 4, 1)), s),
    "conv2d": lambda s: Net(nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(),
                                        nn.Conv2d(4, 4, 3, dilation=2, groups=2, padding=1), nn.ReLU()), s),
    "leaky_relu": lambda s: Net(act_net(nn.LeakyReLU(0.1)), s),
    "elu": lambda s: Net(act_net(nn.ELU()), s),
    "silu": lambda s: Net(act_net(nn.SiLU()), s),
    "gelu": lambda s: Net(act_net(nn.GELU()), s),
    "mish": lambda s: Net(act_net(nn.Mish()), s),
    "tanh": lambda s: Net(act_net(nn.Tanh()), s),
    "batchnorm": lambda s: Net(nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), s),
    "frozen_batchnorm": lambda s: Net(nn.Sequential(nn.Conv2d(2, 4, 3), FrozenBatchNorm2d(4), nn.ReLU()), s),
    "groupnorm": lambda s: Net(nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.ReLU()), s),
    "layernorm": lambda s: Net(nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.GELU()), s),
    "maxpool": lambda s: Net(Pooling("max"), s),
    "avgpool": lambda s: Net(Pooling("avg"), s),
    "adaptive_avgpool": lambda s: Net(Pooling("adaptive"), s),
    "mean": lambda s: Net(MeanNet(), s),
    "residual_add": lambda s: Net(Residual(), s),
    "residual_sub": lambda s: Net(Residual(sub=True), s),
    "structural": lambda s: Net(Structural(), s),
    "spatial_softmax_ours": lambda s: Net(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), SpatialSoftmax(6, 6, 0.5)), s),
    # ELU before the 1x1 keypoint conv: after a ReLU a pixel whose 3 channels are all 0 has only its bias, and
    # the z+ rule has nowhere to send the relevance the attention gives it (docs/graph_engine.md)
    "keypoints_temperature": lambda s: Net(nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ELU(), SpatialSoftArgmax(3, 6, 6, 4, 0.7, learnable_temperature=True)), s),
    "keypoints": lambda s: Net(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ELU(), SpatialSoftArgmax(3, 6, 6, 4)), s),
}
IN_SHAPES = {"linear": (6,), "conv1d": (4, 9), "leaky_relu": (6,), "elu": (6,), "silu": (6,), "gelu": (6,),
             "mish": (6,), "tanh": (6,), "layernorm": (6,), "residual_add": (6,), "residual_sub": (6,),
             "structural": (8,)}


def op_case(name, seed=0, batch=3):
    torch.manual_seed(seed)
    shape = IN_SHAPES.get(name, (2, 8, 8))
    net = randomize_norms(OP_NETS[name](shape), seed).eval()
    x = torch.randn(batch, *shape)
    return net, {"x": x}


@pytest.mark.parametrize("name", sorted(OP_NETS))
def test_rule_conservation_gradient_and_batch(name):
    net, obs = op_case(name)
    for method in RELEVANCE:
        e = explain_module(net, obs, method=method, alpha=[1.0, 0.5, 2.0])
        assert_conserved(e)
    if name in ("batchnorm", "frozen_batchnorm"):
        assert e.extras["folded_batchnorms"] == 1
    want = autograd_x_input(net, obs, [1.0, 0.5, 2.0])
    got = explain_module(net, obs, method="gradient", alpha=[1.0, 0.5, 2.0]).inputs
    torch.testing.assert_close(got["x"], want["x"], rtol=1e-4, atol=1e-6)
    # the explicit gradient rules (per-output replicas; the amortised pass runs autograd on the graph)
    per = explain_module(net, obs, method="gradient", alpha=[1.0, 0.5, 2.0], per_output=True).per_output
    torch.testing.assert_close(per["x"].sum(1), want["x"], rtol=1e-4, atol=1e-6)
    for method in ALL:
        e = explain_module(net, obs, method=method)
        one = explain_module(net, {"x": obs["x"][1:2]}, method=method)
        torch.testing.assert_close(one.inputs["x"], e.inputs["x"][1:2], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["linear", "conv2d", "tanh", "residual_add", "maxpool", "keypoints"])
def test_sign_handling_negative_outputs_and_inputs(name):
    """Negative outputs (bias pushing every output below zero) and negative inputs: dtd relevance is
    non-negative and adds up to |y|."""
    net, obs = op_case(name, seed=1)
    with torch.no_grad():
        net.head.bias.fill_(-50.0)
    e = explain_module(net, obs, method="dtd")
    assert bool((e.outputs < 0).all()) and bool((obs["x"] < 0).any())
    assert float(e.inputs["x"].min()) >= -1e-7
    assert_conserved(e)
    assert_conserved(explain_module(net, obs, method="rap"))


def test_per_output_adds_up():
    net, obs = op_case("residual_add")
    for method in ALL:
        e = explain_module(net, obs, method=method, alpha=[0.5, 1.0, 2.0], per_output=True)
        torch.testing.assert_close(e.per_output["x"].sum(1), e.inputs["x"], rtol=1e-5, atol=1e-7)


def test_hand_computed_two_layer():
    """x = (1, 2); hidden = ReLU(W1 x) = (0, 1.5); y = -2 * 1.5 = -3 (negative: Eq. 1 flips).
    dtd: the output gives all of |y| = 3 to hidden unit 2, whose positive contributions are
    (0, 2): R = (0, 3). rap: P = (0, 2), N = (0.5, 0): C = 3 (0/2 + 0.5/2.5, 2/2 + 0) = (0.6, 3),
    the excess 0.6 taken equally from both inputs: R = (0.3, 2.7)."""
    l1, l2 = nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, -1.0], [-0.5, 1.0]]))
        l2.weight.copy_(torch.tensor([[1.0, -2.0]]))
    net = nn.Sequential(l1, nn.ReLU(), l2).eval()
    x = torch.tensor([[1.0, 2.0]])
    e = explain_module(net, (x,), method="dtd")
    assert float(e.outputs) == -3.0
    torch.testing.assert_close(e.inputs["input0"], torch.tensor([[0.0, 3.0]]))
    torch.testing.assert_close(explain_module(net, (x,), method="rap").inputs["input0"], torch.tensor([[0.3, 2.7]]))
    # gradient x input of |y|: d|y|/dx = -(W2 diag(h > 0) W1) = -(-2 * (-0.5, 1)) = (-1, 2)
    torch.testing.assert_close(explain_module(net, (x,), method="gradient").inputs["input0"],
                               torch.tensor([[-1.0, 4.0]]))


def test_hand_computed_spatial_softmax_and_residual():
    """The attention rule gives a feature point's relevance to its pixels by attention; the
    residual add splits by positive contribution."""
    ssm = SpatialSoftmax(1, 2)  # positions x = (-1, 1)
    a = torch.tensor([[[[0.0, torch.log(torch.tensor(3.0))]]]])  # attention (1/4, 3/4)
    head = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0]]))  # y = x-coordinate = -1/4 + 3/4 = 0.5
    net = nn.Sequential(ssm, head).eval()
    e = explain_module(net, (a,), method="dtd")
    torch.testing.assert_close(e.outputs, torch.tensor([[0.5]]))
    torch.testing.assert_close(e.inputs["input0"], torch.tensor([[[[0.125, 0.375]]]]))

    class Add(nn.Module):
        def forward(self, u, v):
            return (u + v).sum(1, keepdim=True)

    u, v = torch.tensor([[3.0, -1.0]]), torch.tensor([[1.0, 2.0]])  # sums (4, 1): units split 3:1 and 0:2
    e = explain_module(Add().eval(), (u, v), method="dtd")
    # y = 5; sum: units (4, 1) share 5 by positive parts (4/5, 1/5); add: unit 1 (3, 1) -> 3, 1; unit 2 (-1, 2) -> 0, 1
    torch.testing.assert_close(e.inputs["input0"], torch.tensor([[3.0, 0.0]]))
    torch.testing.assert_close(e.inputs["input1"], torch.tensor([[1.0, 1.0]]))


def test_batchnorm_is_folded():
    """dtd of conv + BatchNorm equals dtd of the conv with the folded weights (a negative gamma
    flips that channel's contributions)."""
    torch.manual_seed(3)
    net = Net(nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), (2, 8, 8))
    randomize_norms(net, 3)
    with torch.no_grad():
        net.body[1].weight[0] = -1.0
    net.eval()
    conv, bn = net.body[0], net.body[1]
    folded = nn.Conv2d(2, 4, 3)
    with torch.no_grad():
        s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        folded.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))
        folded.bias.copy_((conv.bias - bn.running_mean) * s + bn.bias)
    ref = Net(nn.Sequential(folded, nn.ReLU()), (2, 8, 8)).eval()
    ref.head.load_state_dict(net.head.state_dict())
    _, obs = op_case("batchnorm")
    for method in RELEVANCE:
        torch.testing.assert_close(explain_module(net, obs, method=method).inputs["x"],
                                   explain_module(ref, obs, method=method).inputs["x"], rtol=1e-4, atol=1e-6)


# ---- reference architectures ------------------------------------------------------------------------
ARCHS = {
    "robomimic_bc": lambda: robomimic_bc(width=4, image_size=64, hidden=(32, 32), learnable_temperature=True,
                                         temperature=0.8),
    "groupnorm_bc": lambda: groupnorm_bc(width=4, image_size=64, hidden=(32, 32)),
    "two_camera_bc": lambda: two_camera_bc(width=4, image_size=64, hidden=(32, 32), tanh=False),
    "frozen_bn_bc": lambda: robomimic_bc(width=4, image_size=64, hidden=(32, 32), norm="frozen"),
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_reference_architecture(arch):
    torch.manual_seed(0)
    model = randomize_norms(ARCHS[arch]()).eval()
    obs = example_observation(model, 3, 64, torch.Generator().manual_seed(1))
    alpha = torch.rand(7, generator=torch.Generator().manual_seed(2)) + 0.1
    for method in RELEVANCE:
        e = explain_module(model, obs, method=method, alpha=alpha)
        assert_conserved(e)
        assert set(e.inputs) == set(obs) and all(e.inputs[k].shape == obs[k].shape for k in obs)
        assert torch.allclose(sum(e.ratios.values()), torch.ones(3))
        for cam in model.cameras:
            assert float(e.ratios[cam].min()) > 1e-4  # the image gets a real share
    want = autograd_x_input(model, obs, alpha)
    got = explain_module(model, obs, method="gradient", alpha=alpha).inputs
    per = explain_module(model, obs, method="gradient", alpha=alpha, per_output=True).per_output  # explicit rules
    for k in obs:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(per[k].sum(1), want[k], rtol=1e-4, atol=1e-7)
    for method in ALL:
        e = explain_module(model, obs, method=method)
        one = explain_module(model, {k: v[2:3] for k, v in obs.items()}, method=method)
        for k in obs:
            torch.testing.assert_close(one.inputs[k], e.inputs[k][2:3], rtol=1e-4, atol=1e-7)
    for method in ("gradcam", "g2gradcam"):  # on the last camera's stem conv, with per-output maps
        path = f"encoders.{model.cameras[-1]}.backbone.conv1"
        e = explain_module(model, obs, method=method, layer=path, alpha=alpha, per_output=True)
        assert e.extras["camera"] == model.cameras[-1] and e.extras["activation"].endswith("backbone.relu")
        cam = e.maps[model.cameras[-1]]
        assert cam.shape == (3, 64, 64) and float(cam.abs().sum()) > 0
        torch.testing.assert_close(e.per_output[model.cameras[-1]].sum(1), cam, rtol=1e-5, atol=1e-8)


# ---- VisuomotorPolicy: the same numbers as the existing engine ----------------------------------------
from policy_xai.attribution.graph.compat import PolicyModule as PolicyAdapter  # noqa: E402
# ({"image", "config"} -> torques, config already normalised: the existing engine's relevance and
# gradient x input are on the normalised configuration)


@pytest.fixture(scope="module", params=["small", "paper", "models/reach.safetensors"])
def small(request):
    """A random `small` policy (non-trivial config normalisation), a random `paper` one (240x240) and
    the shipped trained reach policy (a concentrated spatial softmax)."""
    from pathlib import Path

    from policy_xai.policy import load_policy

    torch.manual_seed(0)
    if request.param.endswith(".safetensors"):
        path = Path(__file__).resolve().parents[1] / request.param
        if not path.is_file():
            pytest.skip(f"{request.param} not shipped here")
        policy = load_policy(path)
    else:
        policy = VisuomotorPolicy(load_spec(request.param)).eval()
        with torch.no_grad():
            policy.config_mean.normal_()
            policy.config_std.uniform_(0.5, 2.0)
    s = policy.spec
    g = torch.Generator().manual_seed(4)
    B = 3 if s.image_height <= 64 else 1
    image = torch.rand(B, s.image_channels, s.image_height, s.image_width, generator=g)
    config = policy.config_mean + policy.config_std * torch.randn(B, s.config_dim, generator=g)
    return policy, image, config


def _max_rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("method", ALL + ("ig", "ig_median", "ig_occlusion"))
def test_same_numbers_as_engine_on_small(small, method):
    policy, image, config = small
    alpha = [1.0, 0.5, 2.0, 1.0, 0.1, 3.0, 1.0]
    old = explain(policy, image, config, method=method, alpha=alpha)
    obs = {"image": image, "config": policy.normalise_config(config)}
    groups = {"config": dict(policy.spec.config_groups)}
    new = explain_module(PolicyAdapter(policy).eval(), obs, method=method, alpha=alpha, groups=groups)
    assert _max_rel(new.maps["image"], old.image) <= 1e-6
    if method != "ig_occlusion":
        torch.testing.assert_close(new.maps["image"], new.inputs["image"].sum(1))
    else:  # the refined map: |ig|, raised inside occluded windows where occlusion changes the outputs more
        assert bool((new.maps["image"] >= new.inputs["image"].sum(1).abs() - 1e-9).all())
    assert _max_rel(new.inputs["config"], old.config) <= 1e-6
    torch.testing.assert_close(new.outputs, old.torques, rtol=1e-6, atol=1e-6)
    if method != "gbp":  # the old engine's gbp image share sums |per-joint maps| (not |their sum|)
        torch.testing.assert_close(new.ratios["image"], old.ratios["image"], rtol=1e-5, atol=1e-6)
        for g in policy.spec.group_names:
            torch.testing.assert_close(new.group_ratios[f"config/{g}"], old.ratios[g], rtol=1e-5, atol=1e-6)
    if method in RELEVANCE:
        assert_conserved(new)
    if method.startswith("ig"):
        torch.testing.assert_close(new.extras["output_relevance"], old.extras["output_relevance"])


def test_integrated_gradients_completeness_and_baseline():
    """ig's relevance approaches sum_j alpha_j |y_j(x) - y_j(x0)| as the steps grow; an input equal to
    its reference gets none."""
    torch.manual_seed(0)
    model = randomize_norms(ARCHS["two_camera_bc"]()).eval()
    obs = example_observation(model, 2, 64, torch.Generator().manual_seed(1))
    gaps = []
    for steps in (2, 32):
        e = explain_module(model, obs, method="ig", steps=steps)
        gaps.append(float(((total(e) - e.extras["output_relevance"]) / e.extras["output_relevance"]).abs().max()))
    assert gaps[1] < gaps[0] and gaps[1] < 0.02, gaps
    cam = model.cameras[0]
    e = explain_module(model, obs, method="ig_occlusion")  # one refined map per camera
    for c in model.cameras:
        assert e.maps[c].shape == (2, 64, 64) and bool((e.maps[c] >= e.inputs[c].sum(1).abs() - 1e-9).all())
    e = explain_module(model, obs, method="ig", baseline={cam: obs[cam], "robot0_eef_pos": torch.ones(3)})
    assert float(e.inputs[cam].abs().max()) == 0.0
    torch.testing.assert_close(e.extras["references"]["robot0_eef_pos"], torch.ones(2, 3))
    with pytest.raises(ValueError, match="unknown inputs"):
        explain_module(model, obs, method="ig", baseline={"nope": torch.zeros(1)})


CAMS = ("gradcam", "guided_gradcam", "g1gradcam", "g2gradcam")


@pytest.mark.parametrize("method", CAMS)
def test_cam_same_numbers_as_engine_on_small(small, method):
    policy, image, config = small
    alpha = [1.0, 0.5, 2.0, 1.0, 0.1, 3.0, 1.0]
    obs = {"image": image, "config": policy.normalise_config(config)}
    for layer in (0, -2):
        old = explain(policy, image, config, method=method, alpha=alpha, layer=layer)
        new = explain_module(PolicyAdapter(policy).eval(), obs, method=method, alpha=alpha, layer=layer)
        assert new.ratios is None and new.extras["layer"] == f"policy.convs.{layer % len(policy.convs)}"
        # plain Grad-CAM's weights are spatial means of gradients that largely cancel (they sum to zero
        # per map behind a spatial softmax): float rounding shows up to ~1e-5 there (paper: 9e-6)
        tol = 3e-5 if method in ("gradcam", "guided_gradcam") else 1e-6
        assert _max_rel(new.maps["image"], old.image) <= tol
        assert _max_rel(new.inputs["config"], old.config) <= 1e-6


@pytest.mark.parametrize("method", RELEVANCE)
def test_policy_itself_with_raw_config(small, method):
    """The policy traced as it is (positional image, raw config, normalisation inside): the
    normalisation is an elementwise map with constants, so dtd/rap pass through it unchanged."""
    policy, image, config = small
    old = explain(policy, image, config, method=method)
    new = explain_module(policy, (image, config), method=method)
    assert _max_rel(new.inputs["input0"].sum(1), old.image) <= 1e-6
    assert _max_rel(new.inputs["input1"], old.config) <= 1e-6


# ---- errors -----------------------------------------------------------------------------------------
from hand_policies import WithSigmoid  # noqa: E402


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, obs):
        h = self.a(obs["state"])
        return self.b(h * torch.sigmoid(h))


def test_unsupported_op_error_names_op_path_and_supported():
    obs = {"state": torch.randn(2, 4)}
    for method in METHODS:
        with pytest.raises(UnsupportedOpError) as err:
            explain_module(WithSigmoid().eval(), obs, method=method)
        msg = str(err.value)
        assert "Sigmoid" in msg and "'enc.1'" in msg and "supported op types" in msg and "linear" in msg
        assert method in msg
    with pytest.raises(UnsupportedOpError, match=r"sigmoid"):
        explain_module(Gated().eval(), obs, method="dtd")

    class FunctionalSoftArgmax(nn.Module):  # a spatial softmax written as ops, not as a module
        def __init__(self):
            super().__init__()
            self.conv, self.out = nn.Conv2d(1, 2, 3), nn.Linear(2, 2)
            self.register_buffer("pos", torch.linspace(-1, 1, 4))

        def forward(self, x):
            att = torch.softmax(self.conv(x).flatten(2), dim=-1)
            return self.out((att * self.pos.repeat(4)).sum(-1))

    with pytest.raises(UnsupportedOpError, match=r"softmax.*pos_x, pos_y, temperature"):
        explain_module(FunctionalSoftArgmax().eval(), (torch.rand(2, 1, 6, 6),), method="dtd")


def test_other_errors():
    net, obs = op_case("linear")
    with pytest.raises(ValueError, match="unknown method"):
        explain_module(net, obs, method="lrp_magic")
    with pytest.raises(ValueError, match="training mode"):
        explain_module(net.train(), obs)
    net.eval()
    with pytest.raises(ValueError, match="alpha"):
        explain_module(net, obs, alpha=[1.0, 2.0])

    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(6, 3)

        def forward(self, obs):
            return {"actions": self.l(obs["x"]), "value": self.l(obs["x"]).sum(1)}

    with pytest.raises(ValueError, match="output="):
        explain_module(Two().eval(), obs)
    e = explain_module(Two().eval(), obs, output="actions")
    assert_conserved(e)


def test_full_width_resnet18_policy():
    """robomimic's default (ResNet-18 width 64, 84x84, MLP 1024-1024): conservation and the
    gradient against autograd at the real size."""
    torch.manual_seed(0)
    model = randomize_norms(robomimic_bc(width=64, image_size=84)).eval()
    obs = example_observation(model, 1, 84, torch.Generator().manual_seed(1))
    for method in RELEVANCE:
        assert_conserved(explain_module(model, obs, method=method))
    want = autograd_x_input(model, obs)
    got = explain_module(model, obs, method="gradient").inputs
    for k in obs:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-7)
