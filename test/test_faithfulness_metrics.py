"""The faithfulness metrics (policy_xai.faithfulness.metrics) on hand-computed tiny cases, the removal
operators (median, blur, ROAD), and a hand-built policy whose torques depend on one red blob only:
curves, object effects, top-k and pointing of a perfect map against the random baseline, and what
integrated gradients ("ig", "ig_median") find on it. No mocks: real VisuomotorPolicy networks whose
weights are set by hand."""
import math

import numpy as np
import pytest
import torch

from policy_xai.attribution import explain
from policy_xai.attribution.path import blur, default_sigma
from policy_xai.faithfulness import metrics as M
from policy_xai.policy import init_policy

import hand_policies  # noqa: E402

# ---- the hand-built blob policy ---------------------------------------------------------------------
S = 16                       # image side
BLOB = (3, 11)               # top-left corner (row, col) of the 3x3 red blob
GREY = 0.5
#: linspace(-1, 1, 16) at the blob's centre pixel (row 4, col 12)
BLOB_X, BLOB_Y = -1 + 2 * 12 / 15, -1 + 2 * 4 / 15
ALPHA = torch.tensor([1.0, 0.5])


def blob_policy(bias: float = 2.0):
    return hand_policies.blob_policy(bias, S)


def blob_scene():
    img = torch.full((3, S, S), GREY)
    r, c = BLOB
    img[:, r:r + 3, c:c + 3] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    mask = np.zeros((S, S), bool)
    mask[r:r + 3, c:c + 3] = True
    return img, torch.tensor([0.3, -0.2]), mask


#: torques (2 * BLOB_X, -BLOB_Y) vs (0, 0) once the blob is gone
BLOB_EFFECT = float(ALPHA[0]) * abs(2 * BLOB_X) + float(ALPHA[1]) * abs(BLOB_Y)


@pytest.fixture(scope="module")
def blob():
    torch.manual_seed(0)
    p = blob_policy()
    img, cfg, mask = blob_scene()
    return p, img, cfg, mask


def test_blob_policy_is_what_it_claims(blob):
    p, img, cfg, mask = blob
    pts = p.feature_points(img[None])[0, 0]
    assert torch.allclose(pts, torch.tensor([BLOB_X, BLOB_Y]), atol=1e-5)
    tau = M.torques(p, img[None], cfg[None])[0]
    assert torch.allclose(tau, torch.tensor([2 * BLOB_X, -BLOB_Y]), atol=1e-5)
    # the configuration has no influence; a grey image gives the point (0, 0) and zero torques
    assert torch.allclose(M.torques(p, img[None], torch.tensor([[5.0, -7.0]]))[0], tau)
    grey = torch.full((1, 3, S, S), GREY)
    assert torch.allclose(M.torques(p, grey, cfg[None])[0], torch.zeros(2), atol=1e-5)
    assert M.torques(p, torch.zeros(0, 3, S, S), torch.zeros(0, 2)).shape == (0, 2)


# ---- effect ---------------------------------------------------------------------------------------
def test_effect_hand_computed():
    tau_ref = torch.tensor([1.0, -2.0, 0.5])
    alpha = torch.tensor([2.0, 0.5, 1.0])
    tau = torch.tensor([[1.0, -2.0, 0.5], [0.0, 2.0, -0.5], [1.5, -3.0, 0.5]])
    # |d tau| rows: [0, 0, 0], [1, 4, 1], [0.5, 1, 0] -> 0; 2 + 2 + 1 = 5; 1 + 0.5 = 1.5
    assert torch.allclose(M.effect(tau, tau_ref, alpha), torch.tensor([0.0, 5.0, 1.5]))
    # per-row alpha (..., J) broadcasts as well
    a2 = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert torch.allclose(M.effect(tau, tau_ref, a2), torch.tensor([0.0, 4.0, 0.5]))


# ---- pointing ratio -------------------------------------------------------------------------------
def test_pointing_ratio_hand_computed():
    r = np.zeros((4, 4))
    r[1, 2], r[3, 0] = 3.0, -1.0           # all relevance on 2 of 16 pixels, one of them negative
    mask = np.zeros((4, 4), bool)
    mask[1, 2] = mask[3, 0] = True
    assert M.pointing_ratio(r, mask) == pytest.approx(8.0)       # share 1 / area 2/16
    one = np.zeros((4, 4), bool)
    one[1, 2] = True
    assert M.pointing_ratio(r, one) == pytest.approx(12.0)       # share 3/4 / area 1/16
    other = np.zeros((4, 4), bool)
    other[0, :] = True
    assert M.pointing_ratio(r, other) == 0.0
    uniform = np.full((4, 4), -0.7)
    for m in (mask, one, other, np.ones((4, 4), bool)):
        assert M.pointing_ratio(uniform, m) == pytest.approx(1.0)
    assert math.isnan(M.pointing_ratio(r, np.zeros((4, 4), bool)))       # empty mask
    assert math.isnan(M.pointing_ratio(np.zeros((4, 4)), mask))           # all-zero map


# ---- rankings, masks, units ------------------------------------------------------------------------
def test_ranking_orders_by_absolute_relevance():
    r = np.array([[0.1, -5.0], [2.0, 0.3]])
    assert M.ranking(r).tolist() == [1, 2, 3, 0]
    assert M.ranking(-r).tolist() == [1, 2, 3, 0]


def test_ranking_ties_in_seeded_random_order():
    n = 30
    flat = np.zeros(n)
    for seed in (0, 1, 7):
        order = M.ranking(flat.reshape(5, 6), seed=seed)
        # ties are ordered by the seeded tie-breaker: ascending default_rng(seed).random(n)
        assert order.tolist() == np.argsort(np.random.default_rng(seed).random(n)).tolist()
        assert M.ranking(flat.reshape(5, 6), seed=seed).tolist() == order.tolist()
    assert M.ranking(flat.reshape(5, 6), seed=0).tolist() != M.ranking(flat.reshape(5, 6), seed=1).tolist()
    # partial ties: the tied maxima come first (in seeded order), then the rest
    r = np.zeros((5, 6))
    r.flat[[4, 17, 22]] = [-2.0, 2.0, 2.0]
    r.flat[9] = 1.0
    for seed in range(5):
        o = M.ranking(r, seed=seed)
        assert sorted(o[:3].tolist()) == [4, 17, 22] and o[3] == 9
    assert len({tuple(M.ranking(r, seed=s)[:3]) for s in range(10)}) > 1


def test_ranking_patches_sum_tiles_including_partial_border_tiles():
    r = np.zeros((5, 5))
    r[0:2, 0:2] = 1.0      # tile 0 (2x2): 4
    r[4, 0:2] = -3.0       # tile 6 (1x2 border tile, row 4): 6
    r[4, 4] = 10.0         # tile 8 (1x1 corner tile): 10
    r[2, 3] = 0.5          # tile 4 (rows 2-3, cols 2-3): 0.5
    r[1, 4] = 0.25         # tile 2 (2x1 border tile, col 4): 0.25
    order = M.ranking(r, patch=2, seed=3)
    assert len(order) == 9  # ceil(5/2)^2 tiles
    assert order[:5].tolist() == [8, 6, 0, 4, 2]
    assert sorted(order[5:].tolist()) == [1, 3, 5, 7]


def test_top_masks_pixels_and_clipped_patches():
    order = np.array([5, 0, 7, 2])
    m = M.top_masks(order, [0, 1, 3], (3, 3))
    assert m.shape == (3, 3, 3) and m.dtype == bool
    assert m.sum((1, 2)).tolist() == [0, 1, 3]
    assert m[1].flat[5] and m[2].flat[[5, 0, 7]].all()
    # 5x5 image, 2x2 patches on a 3x3 grid: tile 8 is the 1x1 corner, tile 6 is row 4, cols 0-1
    m = M.top_masks(np.array([8, 0, 6, 4]), [1, 2, 3, 4, 100], (5, 5), patch=2)
    assert m.sum((1, 2)).tolist() == [1, 5, 7, 11, 11]
    assert m[0, 4, 4] and m[0].sum() == 1
    assert m[2, 4, 0] and m[2, 4, 1] and not m[2, 3, 0]
    assert m[3, 2:4, 2:4].all()


def test_units_for():
    assert M.units_for([0.0, 0.01, 0.05, 0.5, 1.0, 2.0], (10, 10)) == [1, 1, 5, 50, 100, 100]
    # 2x2 patches on 5x5: 9 units (partial tiles count as units)
    assert M.units_for([0.0, 0.3, 1.0], (5, 5), patch=2) == [1, 3, 9]
    # the default grid on 64x64 pixels: round(f * 4096), at least one unit
    n = 64 * 64
    got = M.units_for(M.FRACTIONS, (64, 64))
    assert got == [20, 41, 82, 205, 410, 819, 1229, 2048]
    assert all(abs(k - f * n) <= 0.5 for k, f in zip(got, M.FRACTIONS))
    assert M.units_for(M.FRACTIONS, (64, 64), patch=4) == [1, 3, 5, 13, 26, 51, 77, 128]


def test_auc_is_the_mean_over_the_grid():
    assert M.auc([0.0, 0.5, 1.0, 0.5]) == pytest.approx(0.5)
    assert M.auc(np.array([0.2, np.nan, 0.4])) == pytest.approx(0.3)
    assert math.isnan(M.auc([]))


def test_rank_correlation_known_values():
    # rho = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert M.rank_correlation([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert M.rank_correlation([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    assert M.rank_correlation([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)
    # ties: average ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4] -> 4.5 / sqrt(4.5 * 5)
    assert M.rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    # non-finite pairs are dropped
    assert M.rank_correlation([1, np.nan, 2, 3, 4], [1, 5, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(M.rank_correlation([1, 1, 1, 1], [1, 2, 3, 4]))     # constant side
    assert math.isnan(M.rank_correlation([1, 2, 3, 4], [2, 2, 2, 2]))
    assert math.isnan(M.rank_correlation([1, 2], [2, 1]))                 # fewer than 3 pairs
    assert math.isnan(M.rank_correlation([1, 2, np.nan], [1, 2, 3]))


def test_random_map_is_seeded():
    a = M.random_map((6, 7), 3)
    assert a.shape == (6, 7) and np.all((a >= 0) & (a < 1))
    assert np.array_equal(a, M.random_map((6, 7), 3))
    assert not np.array_equal(a, M.random_map((6, 7), 4))
    assert len(np.unique(a)) == a.size  # a strict ranking, no ties


def test_ablations():
    spec = init_policy({"name": "g", "image": {"height": 8, "width": 8}, "conv": [{"channels": 1, "kernel": 1}],
                        "config_groups": [["joint_position", 2], ["joint_velocity", 2], ["ee_position", 3],
                                          ["ee_velocity", 1]],
                        "hidden": [], "joint_names": ["a"], "torque_limits": [1.0]}).spec
    assert M.ablations(spec) == [("joint_position", "mean"), ("joint_velocity", "mean"), ("ee_position", "mean"),
                                 ("ee_velocity", "mean"), ("joint_velocity", "zero"), ("ee_velocity", "zero")]


# ---- removal operators ----------------------------------------------------------------------------------
def _rand_image(C=3, H=5, W=5, seed=0):
    return torch.rand(C, H, W, generator=torch.Generator().manual_seed(seed))


def test_unknown_removal():
    with pytest.raises(ValueError, match="unknown removal"):
        M.Remover(_rand_image(), "inpaint")


def test_median_paints_the_per_channel_median():
    img = _rand_image(H=5, W=5)      # 25 pixels: the median is one pixel's value
    masks = np.zeros((2, 5, 5), bool)
    masks[0, 1:3, 2:5] = True
    masks[1] = True
    out = M.Remover(img, "median")(torch.from_numpy(masks))
    med = torch.from_numpy(np.median(img.numpy().reshape(3, -1), axis=1).astype(np.float32))
    for i in range(2):
        m = torch.from_numpy(masks[i])
        assert torch.equal(out[i][:, m], med[:, None].expand(3, int(m.sum())))
        assert torch.equal(out[i][:, ~m], img[:, ~m])
    # remove() is the per-image Remover
    assert torch.equal(M.remove(img[None], masks[:1], "median"), out[:1])
    # an even number of pixels: a median of the colour values (between the two middle values)
    img4 = _rand_image(H=4, W=4, seed=1)
    fill = M.Remover(img4, "median")(torch.ones(1, 4, 4, dtype=torch.bool))[0, :, 0, 0]
    s = np.sort(img4.numpy().reshape(3, -1), axis=1)
    assert np.all(s[:, 7] <= fill.numpy()) and np.all(fill.numpy() <= s[:, 8])


def test_blur_fills_with_the_blurred_image_inside_the_mask_only():
    img = _rand_image(H=12, W=10, seed=2)
    mask = np.zeros((12, 10), bool)
    mask[2:7, 3:9] = True
    out = M.Remover(img, "blur")(torch.from_numpy(mask[None]))[0]
    ref = blur(img[None], default_sigma(12, 10))[0]
    m = torch.from_numpy(mask)
    assert torch.equal(out[:, m], ref[:, m])
    assert torch.equal(out[:, ~m], img[:, ~m])
    assert not torch.allclose(out[:, m], img[:, m], atol=1e-3)


def _ramp(H=12, W=14):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.stack([0.1 + 0.05 * xx, 0.2 + 0.03 * yy + 0.02 * xx, 0.9 - 0.04 * yy]).astype(np.float32)


def test_road_reproduces_a_ramp_away_from_the_borders():
    ramp = _ramp()
    img = torch.from_numpy(ramp)
    mask = np.zeros(ramp.shape[1:], bool)
    mask[3:8, 4:10] = True           # interior: every removed pixel has all 8 neighbours
    out = M.Remover(img, "road", seed=0)(torch.from_numpy(mask[None]))[0].numpy()
    d = out - ramp
    assert np.array_equal(out[:, ~mask], ramp[:, ~mask])       # outside the mask: unchanged
    # the 8-neighbour mean (1/6 direct, 1/12 diagonal) is exact for linear functions: what is left
    # is the N(0, ROAD_NOISE) noise
    assert np.abs(d[:, mask]).max() < 5 * M.ROAD_NOISE
    assert abs(d[:, mask].mean()) < 0.3 * M.ROAD_NOISE
    assert 0.7 * M.ROAD_NOISE < d[:, mask].std() < 1.3 * M.ROAD_NOISE
    # ... and for the harmonic quadratics x y and x^2 - y^2 (the stencil is the 9-point Laplacian)
    yy, xx = np.mgrid[0:12, 0:14].astype(np.float64)
    for q in (0.2 + 0.004 * xx * yy, 0.5 + 0.002 * ((xx - 7) ** 2 - (yy - 6) ** 2)):
        qi = np.repeat(q[None].astype(np.float32), 3, 0)
        out = M.Remover(torch.from_numpy(qi), "road", seed=1)(torch.from_numpy(mask[None]))[0].numpy()
        assert np.abs(out - qi)[:, mask].max() < 5 * M.ROAD_NOISE
    # a mask touching the border: outside still unchanged, values in range (the fill is no longer
    # the ramp there: the border pixels lack the neighbours on one side)
    border = np.zeros(ramp.shape[1:], bool)
    border[0:6, 0:5] = True
    out = M.Remover(img, "road", seed=0)(torch.from_numpy(border[None]))[0].numpy()
    assert np.array_equal(out[:, ~border], ramp[:, ~border])
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_road_fully_masked_is_the_mean_colour_plus_noise_and_stays_in_range():
    ramp = _ramp()
    full = torch.ones(1, *ramp.shape[1:], dtype=torch.bool)
    out = M.Remover(torch.from_numpy(ramp), "road", seed=3)(full)[0].numpy()
    mean = ramp.reshape(3, -1).mean(1)
    dev = out.reshape(3, -1) - mean[:, None]
    assert np.all(np.abs(dev.mean(1)) < 0.005)
    assert np.all((0.7 * M.ROAD_NOISE < dev.std(1)) & (dev.std(1) < 1.3 * M.ROAD_NOISE))
    # a black-and-white image: the noisy fill is clipped to [0, 1]
    bw = torch.zeros(3, 10, 10)
    bw[:, :, 5:] = 1.0
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 2:8, 1:9] = True
    for m in (mask, torch.ones(1, 10, 10, dtype=torch.bool)):
        out = M.Remover(bw, "road", seed=0)(m)
        assert out.min() >= 0.0 and out.max() <= 1.0 and out.dtype == torch.float32
    # seeded: the same seed gives the same fill, another seed other noise; nothing masked: unchanged
    a = M.Remover(bw, "road", seed=5)(mask)
    assert torch.equal(a, M.Remover(bw, "road", seed=5)(mask))
    assert not torch.equal(a, M.Remover(bw, "road", seed=6)(mask))
    assert torch.equal(M.Remover(bw, "road")(torch.zeros(1, 10, 10, dtype=torch.bool))[0], bw)


# ---- curves, objects, top-k on the blob policy -----------------------------------------------------------
@pytest.mark.parametrize("op", M.REMOVALS)
def test_full_effect_is_removing_everything(blob, op):
    p, img, cfg, mask = blob
    c = M.curves(p, img, cfg, ALPHA, mask.astype(float), op)
    # every operator leaves no red pixel when it removes the whole image (median: grey; blur
    # sigma 2: the blob's centre becomes r - g - b = -0.05 < 0; ROAD: the mean colour), so the point
    # goes to (0, 0) and both torques to 0
    assert c.full_effect == pytest.approx(BLOB_EFFECT, abs=1e-5)
    removed = M.remove(img[None], np.ones((1, S, S), bool), op)
    tau = M.torques(p, img[None], cfg[None])[0]
    assert float(M.effect(M.torques(p, removed, cfg[None])[0], tau, ALPHA)) == pytest.approx(c.full_effect, abs=1e-5)
    assert c.deletion.shape == c.insertion.shape == (len(M.FRACTIONS),)
    assert c.deletion[-1] == pytest.approx(1.0, abs=1e-5)    # 50 % of the ranking holds the blob


def test_curves_of_a_perfect_map_by_hand(blob):
    p, img, cfg, mask = blob
    # 16x16 = 256 pixels: units 1, 3, 5, 13, 26, 51, 77, 128; from 13 on, the 9 blob pixels are all
    # removed (deletion 1) / all inserted into the grey image (recovery 1)
    c = M.curves(p, img, cfg, ALPHA, mask.astype(float), "median")
    assert np.allclose(c.deletion[3:], 1.0, atol=1e-5)
    assert np.allclose(c.insertion[3:], 1.0, atol=1e-5)
    assert np.all(c.deletion[:3] < 0.2)  # a few of the 9 pixels gone: the centroid moves a little
    # a map that misses the blob: nothing changes until the ranking reaches it
    anti = (~mask).astype(float) + 0.0
    c2 = M.curves(p, img, cfg, ALPHA, anti, "median")
    assert np.allclose(c2.deletion[:7], 0.0, atol=1e-6)     # 128 < 247 background pixels
    assert np.allclose(c2.insertion[:7], 0.0, atol=1e-6)
    # a given tau_ref is used as the reference torques
    tau = M.torques(p, img[None], cfg[None])[0]
    c3 = M.curves(p, img, cfg, ALPHA, mask.astype(float), "median", tau_ref=tau)
    assert np.allclose(c3.deletion, c.deletion) and c3.full_effect == c.full_effect


@pytest.mark.parametrize("op", M.REMOVALS)
def test_perfect_map_beats_the_random_baseline(blob, op):
    p, img, cfg, mask = blob
    perfect = mask.astype(float)
    c = M.curves(p, img, cfg, ALPHA, perfect, op, seed=0)
    rand = [M.curves(p, img, cfg, ALPHA, M.random_map((S, S), s), op, seed=0) for s in range(4)]
    d_rand = max(M.auc(r.deletion) for r in rand)
    assert M.auc(c.deletion) > 0.6 > 0.1 > d_rand
    # insertion starts from the fully removed image (for ROAD too: the fill is not imputed from the
    # few inserted pixels, which would turn the whole image red)
    assert M.auc(c.insertion) > 0.95 > max(M.auc(r.insertion) for r in rand)
    k = int(mask.sum())
    obj = M.object_effects(p, img, cfg, ALPHA, {"blob": mask}, op)["blob"]
    tk = M.topk_effects(p, img, cfg, ALPHA, {"perfect": perfect, **{f"r{s}": M.random_map((S, S), s)
                                                                     for s in range(4)}}, k, op)
    assert tk["perfect"] / obj == pytest.approx(1.0, abs=1e-5)
    assert max(tk[f"r{s}"] for s in range(4)) / obj < 0.2


@pytest.mark.parametrize("op", M.REMOVALS)
def test_object_effects(blob, op):
    p, img, cfg, mask = blob
    corner = np.zeros((S, S), bool)
    corner[10:16, 0:6] = True
    empty = np.zeros((S, S), bool)
    eff = M.object_effects(p, img, cfg, ALPHA, {"blob": mask, "corner": corner, "none": empty}, op)
    assert set(eff) == {"blob", "corner"}                 # empty masks are left out
    assert eff["blob"] == pytest.approx(BLOB_EFFECT, abs=1e-5)
    assert eff["corner"] == pytest.approx(0.0, abs=1e-6)
    assert M.object_effects(p, img, cfg, ALPHA, {"none": empty}, op) == {}


def test_topk_effects_edge_cases(blob):
    p, img, cfg, mask = blob
    assert all(math.isnan(v) for v in M.topk_effects(p, img, cfg, ALPHA, {"a": mask, "b": ~mask}, 0).values())
    assert M.topk_effects(p, img, cfg, ALPHA, {}, 5) == {}
    # removing everything (k >= pixels) is the full effect
    assert M.topk_effects(p, img, cfg, ALPHA, {"a": mask}, S * S)["a"] == pytest.approx(BLOB_EFFECT, abs=1e-5)


@pytest.mark.parametrize("method", ["ig", "ig_median"])
def test_integrated_gradients_find_the_blob(blob, method):
    p, img, cfg, mask = blob
    e = explain(p, img[None], cfg[None], method, alpha=ALPHA.numpy())
    r = e.image[0].numpy()
    obj = M.object_effects(p, img, cfg, ALPHA, {"blob": mask})["blob"]
    topk = M.topk_effects(p, img, cfg, ALPHA, {method: r}, int(mask.sum()))[method]
    assert M.pointing_ratio(r, mask) >= 3.0
    assert topk >= 0.8 * obj
    # the configuration has no influence and gets no relevance
    assert float(e.ratios["image"][0]) == pytest.approx(1.0)
    if method == "ig_median":
        # the median reference IS the median-removed image: the relevance adds up to the full effect
        assert float(e.extras["output_relevance"][0]) == pytest.approx(BLOB_EFFECT, rel=1e-4)


# ---- configuration ablation ------------------------------------------------------------------------------
def test_group_effects_hand_computed(blob):
    spec = {"name": "cfg", "image": {"channels": 3, "height": S, "width": S}, "conv": [{"channels": 1, "kernel": 1}],
            "softmax_temperature": 0.05, "config_groups": [["joint_position", 2], ["joint_velocity", 2]],
            "hidden": [], "joint_names": ["a", "b"], "torque_limits": [10.0, 10.0]}
    p = init_policy(spec, seed=0)
    with torch.no_grad():
        p.convs[0].weight.copy_(torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1))
        p.convs[0].bias.zero_()
        # inputs [x, y, cn0, cn1, cn2, cn3]
        p.fcs[0].weight.copy_(torch.tensor([[2.0, 0.0, 1.0, 2.0, 0.5, -1.0],
                                            [0.0, 0.0, -1.0, 0.0, 1.0, 3.0]]))
        p.fcs[0].bias.copy_(torch.tensor([0.3, -0.1]))
        p.config_mean.copy_(torch.tensor([0.5, 1.0, 0.2, 0.1]))
        p.config_std.copy_(torch.tensor([0.5, 2.0, 1.0, 0.5]))
    img, _, _ = blob_scene()
    cfg = torch.tensor([1.0, 2.0, 0.5, -1.0])       # normalised: [1, 0.5, 0.3, -2.2]
    alpha = torch.tensor([1.0, 0.5])
    ge = M.group_effects(p, img, cfg, alpha, "median")
    # joint_position to its mean: cn0 = cn1 = 0 -> d tau = [-(1 + 1), +1]
    # joint_velocity to its mean: cn2 = cn3 = 0 -> d tau = [-(0.15 + 2.2), -(0.3 - 6.6)]
    # joint_velocity to zero (raw): cn2 = -0.2, cn3 = -0.2 -> d cn = [-0.5, 2.0] -> d tau = [-0.25 + 2, -0.5 - 6]
    # image removed (median grey): the point goes from (0.6, -0.47) to (0, 0) -> d tau_a = -1.2
    want = {("joint_position", "mean"): 1.0 * 2.0 + 0.5 * 1.0,
            ("joint_velocity", "mean"): 1.0 * 2.35 + 0.5 * 6.3,
            ("joint_velocity", "zero"): 1.0 * 1.75 + 0.5 * 6.5,
            ("image", "median"): 1.0 * 2 * BLOB_X}
    assert set(ge) == set(want)
    for k, v in want.items():
        assert ge[k] == pytest.approx(v, abs=1e-5), k
    # a configuration at its training mean: ablating to the mean changes nothing
    ge0 = M.group_effects(p, img, p.config_mean.clone(), alpha, "blur")
    assert ge0[("joint_position", "mean")] == pytest.approx(0.0, abs=1e-6)
    assert ge0[("joint_velocity", "mean")] == pytest.approx(0.0, abs=1e-6)
    assert ge0[("image", "blur")] == pytest.approx(1.0 * 2 * BLOB_X, abs=1e-5)
