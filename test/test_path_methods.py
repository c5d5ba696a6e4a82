"""Integrated gradients (policy_xai.attribution.path) and its wiring into explain as "ig" (blurred
reference) and "ig_median": completeness and its convergence in the number of path points,
per-joint amortisation, linearity in alpha, zero relevance where the input equals the reference,
ratios, argument checks, and the reference images (blur, per-channel median)."""
import numpy as np
import pytest
import torch

from policy_xai.attribution import explain
from policy_xai.attribution.engine import PATH_METHODS
from policy_xai.attribution.path import (DEFAULT_STEPS, blur, completeness_gap, default_sigma, gaussian_kernel,
                                         integrated_gradients, path_sigma, reference_image)
from policy_xai.policy import init_policy

S = 16
BASELINES = ("blur", "median", "black")
#: the methods under test (explain wires them to integrated_gradients with these references)
IG_METHODS = ["ig", "ig_median"]


def _spec(hidden, temperature, conv=None, joints=2, groups=None):
    return {"name": "path", "image": {"channels": 3, "height": S, "width": S},
            "conv": conv or [{"channels": 2, "kernel": 1}], "softmax_temperature": temperature,
            "config_groups": groups or [["joint_position", 2], ["joint_velocity", 2]], "hidden": hidden,
            "joint_names": [f"j{i}" for i in range(joints)], "torque_limits": [10.0] * joints}


def smooth_policy():
    """No ReLU takes effect: 1x1 conv (random weights x 4, |w . x| <= 7) with bias 10, so the
    pre-activations stay positive for images in [0, 1]; a sharp spatial softmax; a linear head (no
    hidden layer). The spatial softmax is the only non-linearity, a smooth one: the midpoint rule's
    error falls like 1/m^2."""
    p = init_policy(_spec([], 0.1), seed=0)
    with torch.no_grad():
        p.convs[0].weight.mul_(4.0)
        p.convs[0].bias.fill_(10.0)
    return p


def relu_policy():
    """Random weights, two conv layers and a hidden fc layer: ReLUs switch along the path."""
    conv = [{"channels": 6, "kernel": 3}, {"channels": 4, "kernel": 3}]
    p = init_policy(_spec([12], 0.1, conv=conv, joints=3), seed=2)
    with torch.no_grad():
        p.config_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
        p.config_std.copy_(torch.tensor([0.5, 1.0, 2.0, 1.5]))
    return p


def linear_policy():
    """Linear in all of its inputs: zero conv weights (the image has no influence: uniform
    attention, point (0, 0)) and a linear head. The spatial softmax makes no VisuomotorPolicy
    whose image matters linear in the image, so this is the exactly linear case."""
    p = init_policy(_spec([], 1.0), seed=1)
    with torch.no_grad():
        p.convs[0].weight.zero_()
        p.config_std.copy_(torch.tensor([0.5, 1.0, 2.0, 1.5]))
    return p


def images(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.full((B, 3, S, S), 0.5) + 0.1 * torch.rand(B, 3, S, S, generator=g)
    for b in range(B):
        r, c = torch.randint(0, S - 5, (2,), generator=g).tolist()
        img[b, :, r:r + 5, c:c + 5] = torch.rand(3, 1, 1, generator=g)
    return img


def configs(B=2, seed=0):
    return torch.randn(B, 4, generator=torch.Generator().manual_seed(seed + 100))


ALPHA = torch.tensor([1.0, 0.5])
ALPHA3 = torch.tensor([1.0, 0.5, 2.0])


def _target(ig, alpha):
    return (alpha * (ig.torques - ig.reference_torques).abs()).sum(1)


# ---- completeness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", BASELINES)
def test_completeness_gap_shrinks_with_steps_smooth(baseline):
    p, img, cfg = smooth_policy(), images(), configs()
    for cref in ("mean", "self"):
        gaps = {}
        for m in (8, 64):
            ig = integrated_gradients(p, img, cfg, ALPHA, steps=m, baseline=baseline, config_reference=cref)
            tgt = _target(ig, ALPHA)
            assert torch.all(tgt > 1e-4), "the image must change the torques"
            total = ig.image.flatten(1).sum(1) + ig.config.sum(1)
            assert np.allclose(completeness_gap(ig, ALPHA), (total - tgt).numpy())
            with torch.no_grad():
                assert float(p.conv_features(img).min()) > 0      # no ReLU at work
            gaps[m] = np.abs(completeness_gap(ig, ALPHA))
            assert np.all(gaps[m] < 0.05 * tgt.numpy()), (m, gaps, tgt)
        # midpoint rule on a smooth integrand: O(1/m^2), 64 / 8 steps -> 64x smaller (down to float32
        # noise, ~1e-7 on torques of order 1)
        assert np.all(gaps[64] < np.maximum(gaps[8] / 20, 5e-7)), gaps
        if baseline != "blur":  # (the blurred reference is close to the image: gaps near float noise)
            assert np.all(gaps[8] > 2e-5), gaps


def test_completeness_gap_shrinks_with_steps_relu():
    p, img, cfg = relu_policy(), images(seed=1), configs(seed=1)
    for baseline in BASELINES:
        g8 = np.abs(completeness_gap(integrated_gradients(p, img, cfg, ALPHA3, steps=8, baseline=baseline), ALPHA3))
        ig64 = integrated_gradients(p, img, cfg, ALPHA3, steps=64, baseline=baseline)
        g64 = np.abs(completeness_gap(ig64, ALPHA3))
        tgt = _target(ig64, ALPHA3).numpy()
        assert g64.sum() < g8.sum(), (baseline, g8, g64)
        assert np.all(g64 < 0.05 * tgt), (baseline, g64, tgt)


def test_completeness_exact_for_a_linear_network():
    p, img, cfg = linear_policy(), images(), configs()
    for baseline in BASELINES:
        for m in (1, 2, 8, 64):
            ig = integrated_gradients(p, img, cfg, ALPHA, steps=m, baseline=baseline)
            tgt = _target(ig, ALPHA)
            assert torch.all(tgt > 0.1)
            assert np.all(np.abs(completeness_gap(ig, ALPHA)) < 1e-5 * tgt.numpy()), (baseline, m)
            assert float(ig.image.abs().max()) == 0.0   # the image has no influence
            # linear: gradient x (x - x0) is exact, R_cfg = alpha s W dcfg at any number of steps
            s = torch.sign(ig.torques - ig.reference_torques)
            W = p.fcs[0].weight[:, 4:]
            want = (ALPHA * s) @ W * p.normalise_config(cfg)
            assert torch.allclose(ig.config, want, atol=1e-6)


@pytest.mark.parametrize("method", IG_METHODS)
def test_explain_path_methods_are_integrated_gradients(method):
    p, img, cfg = smooth_policy(), images(), configs()
    e = explain(p, img, cfg, method, alpha=ALPHA.numpy())
    ig = integrated_gradients(p, img, cfg, ALPHA, steps=DEFAULT_STEPS, baseline=PATH_METHODS[method],
                              sigma=path_sigma(S, S))
    assert torch.allclose(e.image, ig.image.sum(1), atol=1e-7)
    assert torch.allclose(e.config, ig.config, atol=1e-7)
    assert torch.allclose(e.points, ig.points, atol=1e-7)
    assert e.extras["reference"] == PATH_METHODS[method]
    assert torch.allclose(e.extras["reference_torques"], ig.reference_torques)
    out = e.extras["output_relevance"]
    assert torch.allclose(out, _target(ig, ALPHA))
    # completeness through explain (8 path points)
    total = e.image.flatten(1).sum(1) + e.config.sum(1)
    assert torch.allclose(total, out, rtol=1e-2, atol=1e-6)


# ---- per joint, alpha ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", IG_METHODS)
def test_per_joint_sums_to_the_amortised_map_and_alpha_is_linear(method):
    p, img, cfg = relu_policy(), images(3, seed=2), configs(3, seed=2)
    e = explain(p, img, cfg, method, alpha=ALPHA3.numpy(), per_joint=True)
    assert e.per_joint_image.shape == (3, 3, S, S) and e.per_joint_config.shape == (3, 3, 4)
    assert torch.allclose(e.per_joint_image.sum(1), e.image, atol=1e-5)
    assert torch.allclose(e.per_joint_config.sum(1), e.config, atol=1e-5)
    # joint j's map is the explanation of joint j alone
    for j in range(3):
        ej = explain(p, img, cfg, method, alpha=(ALPHA3 * (torch.arange(3) == j)).numpy())
        assert torch.allclose(e.per_joint_image[:, j], ej.image, atol=1e-6)
    # alpha scales everything linearly; the ratios stay
    e2 = explain(p, img, cfg, method, alpha=(2.5 * ALPHA3).numpy())
    assert torch.allclose(e2.image, 2.5 * e.image, rtol=1e-5, atol=1e-7)
    assert torch.allclose(e2.config, 2.5 * e.config, rtol=1e-5, atol=1e-7)
    assert torch.allclose(e2.extras["output_relevance"], 2.5 * e.extras["output_relevance"], rtol=1e-5)
    for k in e.ratios:
        assert torch.allclose(e2.ratios[k], e.ratios[k], atol=1e-5)
    # without alpha: alpha = 1
    e1 = explain(p, img, cfg, method)
    assert torch.allclose(e1.image, explain(p, img, cfg, method, alpha=np.ones(3)).image)


def test_batch_equals_one_by_one():
    p, img, cfg = relu_policy(), images(3, seed=3), configs(3, seed=3)
    for baseline in BASELINES:
        ig = integrated_gradients(p, img, cfg, ALPHA3, steps=8, baseline=baseline)
        for i in range(3):
            one = integrated_gradients(p, img[i:i + 1], cfg[i:i + 1], ALPHA3, steps=8, baseline=baseline)
            assert torch.allclose(ig.image[i], one.image[0], atol=1e-6)
            assert torch.allclose(ig.config[i], one.config[0], atol=1e-6)


# ---- where the input equals the reference -----------------------------------------------------------------
def test_pixels_equal_to_the_reference_get_zero_relevance():
    p = smooth_policy()
    # grey background (exactly the median colour) with a coloured square
    img = torch.full((1, 3, S, S), 0.5)
    img[0, :, 3:7, 8:12] = torch.tensor([0.9, 0.1, 0.3]).view(3, 1, 1)
    cfg = configs(1)
    ig = integrated_gradients(p, img, cfg, ALPHA, steps=8, baseline="median")
    bg = torch.ones(S, S, dtype=torch.bool)
    bg[3:7, 8:12] = False
    assert torch.all(ig.image[0][:, bg] == 0)
    assert float(ig.image[0][:, ~bg].abs().sum()) > 0
    # a uniform image: its median and its blur are the image itself -> no image relevance at all
    u = torch.full((1, 3, S, S), 0.37)
    for baseline, tol in (("median", 0.0), ("blur", 1e-6)):
        ig = integrated_gradients(p, u, cfg, ALPHA, steps=8, baseline=baseline)
        assert float(ig.image.abs().max()) <= tol
        e = explain(p, u, cfg, "ig" if baseline == "blur" else "ig_median", alpha=ALPHA.numpy())
        assert float(e.image.abs().max()) <= tol
        assert float(e.ratios["image"][0]) <= 1e-5
        assert abs(float(e.config.sum() - e.extras["output_relevance"][0])) < 1e-5


def test_config_reference_self_and_mean():
    p, img, cfg = relu_policy(), images(), configs()
    for baseline in BASELINES:
        ig = integrated_gradients(p, img, cfg, ALPHA3, steps=32, baseline=baseline, config_reference="self")
        assert torch.all(ig.config == 0)
        # the reference torques: the reference image with the configuration itself
        x0 = reference_image(img, baseline)
        assert torch.allclose(ig.reference_torques, p(x0, cfg), atol=1e-6)
        assert np.all(np.abs(completeness_gap(ig, ALPHA3)) < 0.05 * _target(ig, ALPHA3).numpy())
    # "mean": a configuration at the training mean is its own reference -> zero config relevance
    at_mean = p.config_mean.expand(2, -1).clone()
    ig = integrated_gradients(p, img, at_mean, ALPHA3, steps=8)
    assert torch.all(ig.config == 0)
    ig = integrated_gradients(p, img, cfg, ALPHA3, steps=8)
    assert float(ig.config.abs().sum()) > 0
    assert torch.allclose(ig.reference_torques, p(reference_image(img, "blur"), at_mean), atol=1e-6)


# ---- ratios, arguments ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", IG_METHODS)
def test_ratios_sum_to_one_and_are_finite(method):
    p, img, cfg = relu_policy(), images(4, seed=4), configs(4, seed=4)
    e = explain(p, img, cfg, method, alpha=ALPHA3.numpy())
    r = e.ratio_array()
    assert r.shape == (4, 3) and np.all(np.isfinite(r)) and np.all(r >= 0)
    assert np.allclose(r.sum(1), 1.0, atol=1e-6)
    assert np.all(r[:, 0] > 0) and np.all(r[:, 1:].sum(1) > 0)


def test_bad_arguments():
    p, img, cfg = smooth_policy(), images(1), configs(1)
    for steps in (0, -3):
        with pytest.raises(ValueError, match="steps"):
            integrated_gradients(p, img, cfg, ALPHA, steps=steps)
    with pytest.raises(ValueError, match="unknown baseline"):
        integrated_gradients(p, img, cfg, ALPHA, baseline="noise")
    with pytest.raises(ValueError, match="config_reference"):
        integrated_gradients(p, img, cfg, ALPHA, config_reference="zero")
    with pytest.raises(ValueError, match="unknown baseline"):
        reference_image(img, "gray")


# ---- reference images ------------------------------------------------------------------------------------
def test_blur_keeps_uniform_images_and_the_mean_colour():
    k = gaussian_kernel(1.5)
    assert float(k.sum()) == pytest.approx(1.0) and torch.allclose(k, k.flip(0))
    u = torch.full((2, 3, S, S), 0.42)
    u[1] = torch.tensor([0.1, 0.6, 0.9]).view(3, 1, 1)
    for sigma in (0.5, 1.0, path_sigma(S, S), default_sigma(S, S), 6.0):   # 6: radius 18 > 16 (replicate)
        assert torch.allclose(blur(u, sigma), u, atol=1e-6), sigma
    tiny = torch.full((1, 3, 3, 4), 0.8)
    assert torch.allclose(blur(tiny, 2.0), tiny, atol=1e-6)
    assert torch.equal(blur(u, 0.0), u) and blur(u, 0.0) is not u
    x = torch.rand(2, 3, S, 20, generator=torch.Generator().manual_seed(5))
    for sigma in (path_sigma(S, 20), default_sigma(S, 20)):
        b = blur(x, sigma)
        assert b.shape == x.shape
        assert torch.allclose(b.mean((2, 3)), x.mean((2, 3)), atol=0.02)
        assert b.min() >= x.min() - 1e-6 and b.max() <= x.max() + 1e-6
        assert b.std() < x.std()
    # reference_image("blur") without sigma: default_sigma
    assert torch.equal(reference_image(x, "blur"), blur(x, default_sigma(S, 20)))
    assert torch.equal(reference_image(x, "blur", sigma=1.0), blur(x, 1.0))


def test_reference_image_median_and_black():
    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(6))    # 35 pixels: odd
    ref = reference_image(x, "median")
    assert ref.shape == x.shape
    want = np.median(x.numpy().reshape(2, 3, -1), axis=2)
    assert np.array_equal(ref[:, :, 0, 0].numpy(), want.astype(np.float32))
    assert torch.all(ref == ref[:, :, :1, :1])
    # even pixel count: a median (between the two middle values)
    y = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    v = reference_image(y, "median")[0, :, 0, 0].numpy()
    s = np.sort(y.numpy().reshape(3, -1), axis=1)
    assert np.all((s[:, 7] <= v) & (v <= s[:, 8]))
    assert torch.equal(reference_image(x, "black"), torch.zeros_like(x))
