"""Property tests of the attribution rules (conservation, sign handling, hand-computed networks,
amortisation, batching, ratios, image relevance) and agreement with captum where both apply."""
import numpy as np
import pytest
import torch

from policy_xai.attribution import CAM_METHODS, METHODS, explain
from policy_xai.policy import init_policy
from policy_xai.spec import load_spec

RATIO_METHODS = [m for m in METHODS if m not in CAM_METHODS]


def blob_images(B, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(B, 3, size, size, generator=g) * 0.2
    for b in range(B):
        r, c = torch.randint(0, size - 12, (2,), generator=g).tolist()
        img[b, :, r:r + 10, c:c + 10] = 1.0
    return img


@pytest.fixture(scope="module")
def policy():
    """A `small` network whose feature points really move with the image (sharp softmax)."""
    d = load_spec("small").to_dict()
    d["softmax_temperature"] = 0.02
    p = init_policy(d, seed=1)
    # the amortised methods need an explainer: an untrained one (the properties here hold for any)
    from policy_xai.attribution import amortised

    torch.manual_seed(0)
    amortised.attach_explainer(p, amortised.Explainer(width=4))
    return p


@pytest.fixture(scope="module")
def obs():
    g = torch.Generator().manual_seed(3)
    return blob_images(4), torch.randn(4, 20, generator=g)


def test_conservation_dtd_rap(policy, obs):
    img, cfg = obs
    alpha = np.array([0.5, 2.0, 1.0, 3.0, 0.1, 1.5, 0.7])
    for method in ("dtd", "rap"):
        e = explain(policy, img, cfg, method, alpha=alpha)
        total_in = e.image.flatten(1).sum(1) + e.config.sum(1)
        total_out = (torch.as_tensor(alpha, dtype=torch.float32) * e.torques.abs()).sum(1)
        assert torch.allclose(total_in, total_out, rtol=1e-5, atol=0), method
        # and through the spatial softmax: feature point relevance == image relevance
        assert torch.allclose(e.points.sum(1), e.image.flatten(1).sum(1), rtol=1e-4, atol=1e-6), method


def test_dtd_sign_handling_negative_outputs_and_inputs(policy, obs):
    img, cfg = obs
    cfg = -cfg.abs() - 0.1  # every configuration input negative
    e = explain(policy, img, cfg, "dtd")
    assert (e.torques < 0).any() and (e.torques > 0).any(), "need torques of both signs"
    assert (e.config >= 0).all() and (e.image >= 0).all() and (e.points >= 0).all()
    assert (e.config > 0).any()
    assert torch.allclose(e.image.flatten(1).sum(1) + e.config.sum(1), e.torques.abs().sum(1), rtol=1e-5)


def _hand_policy(config_values):
    """A network small enough to compute by hand: uniform attention gives feature point (0, 0)."""
    spec = {
        "name": "hand", "image": {"channels": 1, "height": 4, "width": 4},
        "conv": [{"channels": 1, "kernel": 1, "stride": 1}], "feature_points": 1,
        "config_groups": {"joint_position": 2}, "hidden": [2],
        "joint_names": ["a", "b"], "torque_limits": [10.0, 10.0],
    }
    p = init_policy(spec)
    with torch.no_grad():
        p.convs[0].weight.zero_()
        p.convs[0].bias.fill_(1.0)  # constant map -> uniform softmax -> point (0, 0)
        p.fcs[0].weight.copy_(torch.tensor([[0.5, 0.3, 1.0, -1.0], [0.2, -0.4, -0.5, 0.5]]))
        p.fcs[0].bias.copy_(torch.tensor([0.1, 0.0]))
        p.fcs[1].weight.copy_(torch.tensor([[1.0, 2.0], [-0.5, 1.0]]))
        p.fcs[1].bias.copy_(torch.tensor([0.0, 0.2]))
    return p, torch.ones(1, 1, 4, 4), torch.tensor([config_values])


def test_dtd_hand_computed():
    # h0 = [0, 0, 1, -2]; h1 = relu([1 + 2 + 0.1, -0.5 - 1]) = [3.1, 0]; tau = [3.1, -1.55 + 0.2]
    p, img, cfg = _hand_policy([1.0, -2.0])
    e = explain(p, img, cfg, "dtd", alpha=[1.0, 2.0])
    assert torch.allclose(e.torques, torch.tensor([[3.1, -1.35]]), atol=1e-6)
    # Eq. 1: joint b is negative -> its relevance 2 * 1.35 goes through the flipped weight -0.5 to
    # h1_0; joint a gives 3.1 -> R(h1_0) = 5.8. Eq. 2: contributions (x w)^+ of [0, 0, 1, -2] with
    # w = [0.5, 0.3, 1, -1] are [0, 0, 1, 2] -> R = 5.8 * [1/3, 2/3].
    assert torch.allclose(e.config, torch.tensor([[5.8 / 3, 11.6 / 3]]), atol=1e-5)
    assert float(e.image.abs().sum()) < 1e-6  # the point sits at (0, 0): no contribution


def test_rap_hand_computed():
    # h0 = [., ., 2, 1]; h1_0 = 2 - 1 + 0.1 = 1.1 (w = [.., 1, -1]), h1_1 = relu(-1 + .5) = 0
    # tau = [1.1, -0.55 + 0.2 = -0.35]; output layer: all |z| on h1_0 -> R(h1_0) = 1.1 + 0.35
    # hidden: P = [2, 0], N = [0, 1] -> C = R [2/2, 0] + R [0, 1/3] = [R, R/3];
    # excess R/3 shifted equally from both units -> [5R/6, R/6]
    p, img, cfg = _hand_policy([2.0, 1.0])
    with torch.no_grad():
        p.fcs[0].weight[:, :2] = 0.0  # feature points not wired: they take no part in the shift
    e = explain(p, img, cfg, "rap")
    assert torch.allclose(e.torques, torch.tensor([[1.1, -0.35]]), atol=1e-6)
    R = 1.45
    assert torch.allclose(e.config, torch.tensor([[5 * R / 6, R / 6]]), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_alpha_one_equals_plain_sum_and_weighting(policy, obs, method):
    from policy_xai.attribution.engine import NON_ADDITIVE_METHODS

    img, cfg = obs
    if method in NON_ADDITIVE_METHODS:
        with pytest.raises(ValueError, match="per_joint"):
            explain(policy, img, cfg, method, per_joint=True)
        e_none = explain(policy, img, cfg, method, alpha=None)
        e_ones = explain(policy, img, cfg, method, alpha=np.ones(7))
        assert torch.allclose(e_none.image, e_ones.image) and torch.allclose(e_none.config, e_ones.config)
        return
    e1 = explain(policy, img, cfg, method, per_joint=True)
    assert torch.allclose(e1.per_joint_image.sum(1), e1.image, rtol=1e-4, atol=1e-7)
    assert torch.allclose(e1.per_joint_config.sum(1), e1.config, rtol=1e-4, atol=1e-7)
    e_none = explain(policy, img, cfg, method, alpha=None)
    e_ones = explain(policy, img, cfg, method, alpha=np.ones(7))
    assert torch.allclose(e_none.image, e_ones.image) and torch.allclose(e_none.config, e_ones.config)
    alpha = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.1, 1.5, 0.7])
    ea = explain(policy, img, cfg, method, alpha=alpha.numpy())
    weighted = (e1.per_joint_image * alpha.view(1, -1, 1, 1)).sum(1)
    assert torch.allclose(ea.image, weighted, rtol=1e-4, atol=1e-6 * float(weighted.abs().max()))


@pytest.fixture(scope="module")
def sharp_policy():
    """`policy` with an untrained explainer whose map is peaked (its logits scaled up 200x): the
    untrained one's map is flat to ~3 %, so its window sums crowd the 1e-4 tie grid of
    path.top_windows and float noise of ~1e-7 can move one across a grid line (then batch and single
    runs refine different windows, on some CPUs and not others)."""
    d = load_spec("small").to_dict()
    d["softmax_temperature"] = 0.02
    p = init_policy(d, seed=1)
    from policy_xai.attribution import amortised

    torch.manual_seed(0)
    ex = amortised.Explainer(width=4)
    with torch.no_grad():
        ex.out.weight.mul_(200.0)
        ex.out.bias.mul_(200.0)
    amortised.attach_explainer(p, ex)
    return p


@pytest.mark.parametrize("method", METHODS)
def test_batch_equals_loop(policy, sharp_policy, obs, method):
    img, cfg = obs
    if method == "occlusion_net_refined":  # its windows follow the explainer's map: see sharp_policy
        policy = sharp_policy
    eb = explain(policy, img, cfg, method)
    for i in range(img.shape[0]):
        ei = explain(policy, img[i:i + 1], cfg[i:i + 1], method)
        scale = float(ei.image.abs().max()) + 1e-12
        # occlusion effects are differences of torques (float noise ~1e-7 N·m of torques ~1): on this
        # untrained network they are ~1e-5, so the refined maps agree to ~1e-4 of their largest value
        rel = 1e-3 if method in ("ig_occlusion", "occlusion_net_refined") else 1e-5
        assert torch.allclose(eb.image[i], ei.image[0], atol=rel * scale, rtol=1e-4)
        assert torch.allclose(eb.config[i], ei.config[0], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("method", RATIO_METHODS)
def test_ratios_sum_to_one(policy, obs, method):
    img, cfg = obs
    e = explain(policy, img, cfg, method)
    r = e.ratio_array()
    assert r.shape == (4, 5) and np.all(r >= 0)
    assert np.allclose(r.sum(1), 1.0, atol=1e-6)


def test_image_gets_relevance_when_torques_depend_on_it(policy, obs):
    img, cfg = obs
    # the torques really depend on the image: moving the blob changes them
    tau_a = policy(img, cfg)
    tau_b = policy(torch.flip(img, dims=[3]), cfg)
    assert float((tau_a - tau_b).detach().abs().max()) > 0.05
    for method in ("dtd", "rap", "gbp"):
        e = explain(policy, img, cfg, method)
        assert float(e.ratios["image"].mean()) > 0.05, method


def test_gradient_matches_autograd(policy, obs):
    img, cfg = obs
    alpha = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.1, 1.5, 0.7])
    e = explain(policy, img, cfg, "gradient", alpha=alpha.numpy())
    x = img.clone().requires_grad_(True)
    c = cfg.clone().requires_grad_(True)
    tau = policy(x, c)
    (alpha * tau.abs()).sum().backward()
    assert torch.allclose(e.image, (x.grad * img).sum(1), rtol=1e-3, atol=1e-7)
    # config relevance is gradient x input w.r.t. the normalised configuration (identity here)
    assert torch.allclose(e.config, c.grad * cfg, rtol=1e-3, atol=1e-7)


def test_gbp_matches_captum(policy, obs):
    from captum.attr import GuidedBackprop

    img, cfg = obs
    e = explain(policy, img, cfg, "gbp", per_joint=True)
    tau = policy(img, cfg).detach()
    gbp = GuidedBackprop(_AbsTorque(policy, tau))
    assert (tau < 0).any()
    for j in range(7):
        g_img, g_cfg = gbp.attribute((img, cfg), target=j)
        ours = e.per_joint_image[:, j]
        theirs = (g_img * img).sum(1)
        assert torch.allclose(ours, theirs, rtol=1e-3, atol=1e-6 * float(theirs.abs().max())), j


class _AbsTorque(torch.nn.Module):
    """Our methods explain |tau_j| (sign handling of Eq. 1); captum explains tau_j."""

    def __init__(self, policy, tau):
        super().__init__()
        self.policy, self.sign = policy, torch.sign(tau)

    def forward(self, i, c):
        return self.policy(i, c) * self.sign


@pytest.mark.parametrize("layer", [0, 1])
def test_gradcam_matches_captum(policy, obs, layer):
    from captum.attr import LayerAttribution, LayerGradCam

    img, cfg = obs
    e = explain(policy, img, cfg, "gradcam", per_joint=True, layer=layer)
    tau = policy(img, cfg).detach()
    lgc = LayerGradCam(_AbsTorque(policy, tau), policy.conv_relus[layer])
    for j in range(7):
        cam = lgc.attribute((img, cfg), target=j, relu_attributions=True)
        cam = LayerAttribution.interpolate(cam, (64, 64), interpolate_mode="bilinear")[:, 0].detach()
        assert torch.allclose(e.per_joint_image[:, j], cam, rtol=1e-3, atol=1e-6 * float(cam.abs().max())), j


def test_gradcam_vanishes_on_last_conv_layer(policy, obs):
    """The spatial softmax's gradient sums to zero over each map, so Grad-CAM's channel weights at
    the last conv layer are zero: why our default layer is the first one."""
    img, cfg = obs
    first = explain(policy, img, cfg, "gradcam", layer=0).image.abs().max()
    last = explain(policy, img, cfg, "gradcam", layer=-1).image.abs().max()
    assert float(last) < 1e-4 * float(first), (float(last), float(first))


def test_bad_inputs(policy, obs):
    img, cfg = obs
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain(policy, img, cfg, "lrp-magic")
    with pytest.raises(ValueError, match="expects"):
        explain(policy, img[:, :, :32], cfg, "dtd")
    bad = cfg.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        explain(policy, img, bad, "dtd")
    with pytest.raises(ValueError, match="alpha"):
        explain(policy, img, cfg, "dtd", alpha=np.ones(3))
    with pytest.raises(ValueError, match="alpha"):
        explain(policy, img, cfg, "dtd", alpha=-np.ones(7))


def test_bfloat16_rules_close_to_float32(policy, obs):
    img, cfg = obs
    for method in ("dtd", "rap"):
        a = explain(policy, img, cfg, method)
        b = explain(policy, img, cfg, method, precision="bfloat16")
        assert torch.equal(a.torques, b.torques)  # forward pass stays float32
        total = a.image.flatten(1).sum(1) + a.config.sum(1)
        total_b = b.image.flatten(1).sum(1) + b.config.sum(1)
        assert torch.allclose(total_b, total, rtol=2e-2)
        ra, rb = a.ratio_array(), b.ratio_array()
        assert np.abs(ra - rb).max() < 0.02, method
    with pytest.raises(ValueError, match="precision"):
        explain(policy, img, cfg, "dtd", precision="int8")
