"""Graph engine tracing: functional ops, shapes read from tensors, unfoldable BatchNorm, outputs in
tuples, the program cache and folded weights that follow training."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from policy_xai.attribution.graph import UnsupportedOpError, compile_module, explain_module

torch.set_num_threads(1)


def conserved(e, rel=1e-5):
    got = sum(v.reshape(v.shape[0], -1).sum(1) for v in e.inputs.values())
    want = (e.alpha * e.outputs.abs()).sum(1)
    return bool(torch.all((got - want).abs() <= rel * want))


def grad_x_input(model, args):
    xs = [a.clone().requires_grad_(True) for a in args]
    out = model(*xs)
    out = out[0] if isinstance(out, tuple) else out
    out.abs().sum().backward()
    return [x.grad * a for x, a in zip(xs, args)]


class Functional(nn.Module):
    """Functional ops with parameters read as attributes, shapes read from the tensors."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(6, 3, 3, 3) * 0.3)
        self.b1 = nn.Parameter(torch.randn(6) * 0.1)
        self.w2 = nn.Parameter(torch.randn(5, 6 * 2 * 2 + 4) * 0.3)
        self.ln = nn.Parameter(torch.rand(4) + 0.5)
        self.bn = nn.BatchNorm1d(4)  # on the state input: not after a layer, stays elementwise

    def forward(self, image, state):
        h = F.relu(F.conv2d(image, self.w1, self.b1, stride=1, padding=1))
        h = F.max_pool2d(h, 2)
        h = F.adaptive_avg_pool2d(h, (2, 2))
        h = h.view(h.size(0), -1)
        s = F.layer_norm(self.bn(state), (4,), self.ln)
        s1, s2 = s.chunk(2, dim=1)
        z = torch.cat([h, torch.stack([s2, s1], dim=1).flatten(1)], dim=1)
        out = F.linear(z, self.w2)
        return out, out.mean(1)


@pytest.fixture
def functional():
    torch.manual_seed(0)
    m = Functional()
    with torch.no_grad():
        m.bn.running_mean.normal_()
        m.bn.running_var.uniform_(0.5, 2)
    return m.eval(), (torch.rand(2, 3, 8, 8), torch.randn(2, 4))


def test_functional_ops(functional):
    model, args = functional
    for method in ("dtd", "rap"):
        e = explain_module(model, args, method=method, output=0)
        assert conserved(e)
        assert e.inputs["input0"].shape == args[0].shape and e.inputs["input1"].shape == args[1].shape
    want = grad_x_input(model, args)
    got = explain_module(model, args, method="gradient", output=0)
    for k, w in zip(("input0", "input1"), want):
        torch.testing.assert_close(got.inputs[k], w, rtol=1e-4, atol=1e-7)
    e = explain_module(model, args, method="gbp", output=0)
    one = explain_module(model, tuple(a[:1] for a in args), method="gbp", output=0)
    torch.testing.assert_close(one.inputs["input0"], e.inputs["input0"][:1], rtol=1e-4, atol=1e-7)


def test_same_padding_and_no_bias():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding="same", bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 25, 3)).eval()
    x = torch.rand(2, 2, 5, 5)
    assert conserved(explain_module(model, (x,), method="dtd"))
    torch.testing.assert_close(explain_module(model, (x,), method="gradient").inputs["input0"],
                               grad_x_input(model, (x,))[0], rtol=1e-4, atol=1e-7)


def test_program_is_cached_and_folded_weights_follow_training():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9, 2)).eval()
    x = torch.rand(2, 2, 5, 5)
    p1 = compile_module(model, (x,))
    e1 = explain_module(model, (x,), method="gradient")
    assert compile_module(model, (x,)) is p1
    with torch.no_grad():
        model[0].weight.mul_(-1.5)
        model[1].running_var.mul_(3.0)
    e2 = explain_module(model, (x,), method="gradient")
    assert not torch.allclose(e1.inputs["input0"], e2.inputs["input0"])
    torch.testing.assert_close(e2.inputs["input0"], grad_x_input(model, (x,))[0], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(e2.outputs, model(x), rtol=1e-5, atol=1e-6)


def test_untraceable_model_is_a_clear_error():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(3, 2)

        def forward(self, x):
            return self.l(x) if x.sum() > 0 else -self.l(x)

    with pytest.raises(UnsupportedOpError, match="could not trace"):
        explain_module(DataDependent().eval(), (torch.randn(2, 3),))


class InplaceBlock(nn.Module):
    """torchvision's BasicBlock style: ReLU(inplace=True) and `out += identity`."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)
        self.head = nn.Linear(3 * 36, 4)

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        out = F.relu(out, inplace=True)
        return self.head(out.flatten(1))


def test_inplace_ops_run_out_of_place():
    torch.manual_seed(5)
    model = InplaceBlock()
    with torch.no_grad():
        for bn in (model.bn1, model.bn2):
            bn.running_var.uniform_(0.5, 2)
            bn.running_mean.normal_()
    model.eval()
    x = torch.rand(2, 3, 6, 6)
    for method in ("dtd", "rap"):
        e = explain_module(model, (x,), method=method)
        assert conserved(e)
        assert e.extras["folded_batchnorms"] == 2
    torch.testing.assert_close(explain_module(model, (x,), method="gradient").inputs["input0"],
                               grad_x_input(model, (x,))[0], rtol=1e-4, atol=1e-7)


def test_bfloat16_rules_close_to_float32():
    """precision="bfloat16": the rules' convolutions in bfloat16; ratios move little, relevance is
    conserved to ~1e-2 (as explain(..., precision="bfloat16") on VisuomotorPolicy)."""
    from policy_xai.attribution.graph.models import example_observation, randomize_norms, robomimic_bc

    torch.manual_seed(0)
    model = randomize_norms(robomimic_bc(width=4, image_size=64, hidden=(32, 32))).eval()
    obs = example_observation(model, 2, 64, torch.Generator().manual_seed(1))
    for method in ("dtd", "rap", "gradient", "gbp", "gradcam"):
        a = explain_module(model, obs, method=method)
        b = explain_module(model, obs, method=method, precision="bfloat16")
        torch.testing.assert_close(a.outputs, b.outputs)
        if a.ratios is not None:
            for k in a.ratios:
                assert float((a.ratios[k] - b.ratios[k]).abs().max()) < 0.02
        if method in ("dtd", "rap"):
            assert conserved(b, rel=2e-2)
    with pytest.raises(ValueError, match="precision"):
        explain_module(model, obs, precision="int8")


class PosGridSoftmax(nn.Module):
    """A keypoint soft-argmax in LeRobot's attribute layout (`nets`, `pos_grid` (H*W, 2), no temperature)."""

    def __init__(self, c, h, w, k):
        super().__init__()
        self.nets = nn.Conv2d(c, k, 1)
        self.h, self.w, self.k = h, w, k
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("pos_grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1))

    def forward(self, x):
        att = torch.softmax(self.nets(x).reshape(-1, self.h * self.w), dim=-1)
        return (att @ self.pos_grid).view(-1, self.k, 2)


def test_lerobot_layout_spatial_softmax():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ELU(), PosGridSoftmax(8, 6, 6, 4), nn.Flatten(), nn.Linear(8, 8),
                          nn.ReLU(), nn.Linear(8, 3)).eval()
    x = torch.rand(2, 3, 8, 8)
    for method in ("dtd", "rap"):
        assert conserved(explain_module(model, (x,), method=method))
    torch.testing.assert_close(explain_module(model, (x,), method="gradient").inputs["input0"],
                               grad_x_input(model, (x,))[0], rtol=1e-4, atol=1e-7)


def test_float64_model():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(64, 3)).double().eval()
    x = torch.rand(2, 2, 10, 10)  # float32 in: converted to the model's dtype
    e = explain_module(model, (x,), method="dtd")
    assert e.inputs["input0"].dtype == torch.float64 and conserved(e, rel=1e-7)  # EPS = 1e-12 in the divisions: ~1e-8
    torch.testing.assert_close(explain_module(model, (x,), method="gradient").inputs["input0"],
                               grad_x_input(model, (x.double(),))[0], rtol=1e-10, atol=1e-12)


class TokenNet(nn.Module):
    """Linear and LayerNorm over (B, T, D) tokens, a transpose, a token mean."""

    def __init__(self):
        super().__init__()
        self.embed, self.ln, self.mix = nn.Linear(5, 8), nn.LayerNorm(8), nn.Linear(4, 4)
        self.out = nn.Linear(8, 3)

    def forward(self, tokens):
        h = F.gelu(self.ln(self.embed(tokens)))  # (B, 4, 8)
        h = F.silu(self.mix(h.transpose(1, 2))).transpose(1, 2)  # mix over tokens
        return self.out(h.mean(dim=1))


def test_tokens_3d_linear_layernorm():
    torch.manual_seed(8)
    model = TokenNet().eval()
    x = torch.randn(3, 4, 5)
    for method in ("dtd", "rap"):
        assert conserved(explain_module(model, (x,), method=method))
    torch.testing.assert_close(explain_module(model, (x,), method="gradient").inputs["input0"],
                               grad_x_input(model, (x,))[0], rtol=1e-4, atol=1e-7)
    one = explain_module(model, (x[1:2],), method="gbp").inputs["input0"]
    torch.testing.assert_close(one, explain_module(model, (x,), method="gbp").inputs["input0"][1:2],
                               rtol=1e-4, atol=1e-7)
