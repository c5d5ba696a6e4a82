"""The amortised occlusion explainer (policy_xai.attribution.amortised): the dense occlusion teacher
on a hand-built policy whose torques depend on one red blob only, the explainer file (round trip,
policy hash check, refusal of other files), and a short training that fits the teacher. Real
VisuomotorPolicy networks with hand-set weights; no mocks."""
import numpy as np
import pytest
import torch

from policy_xai.attribution import amortised as A
from policy_xai.faithfulness import metrics as M
from policy_xai.policy import init_policy, save_policy

import hand_policies  # noqa: E402

S = 16
GREY = 0.5
ALPHA = torch.tensor([1.0, 0.5])
SIZES = (3 / 16, 4 / 16)   # 3 and 4 px windows at 16x16 (stride max(1, p // 2))


def blob_policy(bias: float = 2.0):
    return hand_policies.blob_policy(bias, S)


def blob_image(r: int, c: int):
    img = torch.full((3, S, S), GREY)
    img[:, r:r + 3, c:c + 3] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    mask = np.zeros((S, S), bool)
    mask[r:r + 3, c:c + 3] = True
    return img, mask


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread is faster, and the machine is shared."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def policy():
    return blob_policy()


def test_window_masks_cover_every_pixel():
    m = A.window_masks(64, 64)
    sides = A.window_sides(64, 64)
    assert sides == [3, 4, 8]
    # strides 2, 2, 4 with the last window at the border: 32^2 + 31^2 + 15^2
    assert m.shape == (32 * 32 + 31 * 31 + 15 * 15, 64, 64)
    assert bool(m.any(0).all())
    assert sorted(set(m.flatten(1).sum(1).tolist())) == [9, 16, 64]


def test_teacher_puts_its_mass_on_the_blob(policy):
    img, mask = blob_image(3, 11)
    cfg = torch.tensor([[0.3, -0.2]])
    maps = A.teacher_map(policy, img[None], cfg, ALPHA, reduce="all", sizes=SIZES)
    # windows away from the blob paint grey on grey: no effect at all
    near = np.zeros((S, S), bool)
    near[0:3 + 3 + 3, 11 - 3:S] = True
    full = float(M.effect(M.torques(policy, torch.full((1, 3, S, S), GREY), cfg), M.torques(policy, img[None], cfg),
                          ALPHA)[0])
    assert full > 1.0
    for r, t in maps.items():
        t = t[0].numpy()
        assert t.shape == (S, S) and (t >= 0).all()
        assert np.all(t[~near] == 0), r
        if r == "max":  # a plateau over the best window: every blob pixel at the peak
            assert t[mask].min() == pytest.approx(t.max())
        else:
            assert mask.flat[int(t.argmax())], r
        assert M.pointing_ratio(t, mask) > 5, r
    # the max map's peak is the effect of a window that swallows the whole blob: the full effect
    assert float(maps["max"].max()) == pytest.approx(full, rel=1e-4)
    # its top 9 pixels (k = the blob's size) remove the whole blob, as does the object itself
    for r in ("norm", "mean"):
        tk = M.topk_effects(policy, img, cfg[0], ALPHA, {r: maps[r][0].numpy()}, int(mask.sum()))[r]
        assert tk == pytest.approx(full, rel=1e-3), r
    # batched == one at a time, alpha (J,) == (B, J)
    img2, _ = blob_image(9, 2)
    both = A.teacher_map(policy, torch.stack([img, img2]), cfg.expand(2, -1), ALPHA[None].expand(2, -1), sizes=SIZES)
    assert torch.allclose(both[0], maps["norm"][0], atol=1e-6)
    assert torch.allclose(both[1], A.teacher_map(policy, img2[None], cfg, ALPHA, sizes=SIZES)[0], atol=1e-6)
    with pytest.raises(ValueError):
        A.teacher_map(policy, img[None], cfg, ALPHA, reduce="median")


def test_explainer_map_shape_and_normalisation():
    torch.manual_seed(0)
    net = A.Explainer(width=4)
    x = torch.rand(3, 3, S, S)
    m = A.explain_amortised(net, x)
    assert m.shape == (3, S, S) and bool((m >= 0).all())
    assert torch.allclose(m.flatten(1).sum(1), torch.ones(3), atol=1e-5)
    assert A.explain_amortised(net, torch.rand(1, 3, 64, 64)).shape == (1, 64, 64)


def test_save_load_round_trip_and_policy_hash(tmp_path, policy):
    torch.manual_seed(1)
    net = A.Explainer(width=4, coords=True)
    ppath = save_policy(policy, tmp_path / "blob.safetensors")
    other = save_policy(blob_policy(bias=3.0), tmp_path / "other.safetensors")
    out = A.save_explainer(net, tmp_path / "blob.explainer.safetensors", ppath, task="toy")
    x = torch.rand(2, 3, S, S)
    for loaded in (A.load_explainer(out), A.load_explainer(out, policy_path=ppath),
                   A.load_explainer(out, policy_sha256=A.file_sha256(ppath))):
        assert loaded.arch == net.arch
        assert loaded.policy_sha256 == A.file_sha256(ppath)
        assert torch.equal(A.explain_amortised(loaded, x), A.explain_amortised(net, x))
    with pytest.raises(A.ExplainerMismatchError, match="sha256"):
        A.load_explainer(out, policy_path=other)
    with pytest.raises(A.ExplainerLoadError, match="not an explainer"):
        A.load_explainer(ppath)
    with pytest.raises(A.ExplainerLoadError, match="not found"):
        A.load_explainer(tmp_path / "missing.safetensors")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(A.ExplainerLoadError):
        A.load_explainer(bad)


def blob_images(n: int, seed: int):
    """(images (n, 3, S, S), masks) with one blob each at random places."""
    rng = np.random.default_rng(seed)
    imgs, masks = zip(*(blob_image(int(rng.integers(0, S - 3)), int(rng.integers(0, S - 3))) for _ in range(n)))
    return torch.stack(imgs), list(masks)


def test_short_training_fits_the_teacher(policy):
    X, masks = blob_images(24, 0)
    cfg = torch.zeros(len(X), 2)
    maps = A.teacher_map(policy, X, cfg, ALPHA, sizes=SIZES)
    net, losses = A.train_on_maps(X, maps, epochs=25, seed=0, width=8, lr=1e-2, batch=8)
    assert len(losses) == 25 and all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    # the trained student points at the blobs of its training images
    pred = A.explain_amortised(net, X).numpy()
    hits = [mk.flat[int(p.argmax())] or mk.flat[int(np.argsort(p.ravel())[-2])] for p, mk in zip(pred, masks)]
    assert np.mean(hits) >= 0.6
    assert np.mean([M.pointing_ratio(p, mk) for p, mk in zip(pred, masks)]) > 3
    # train_explainer computes the teacher itself and records its parameters
    net2 = A.train_explainer(policy, X[:4], cfg[:4], ALPHA, epochs=2, seed=0, width=4, sizes=SIZES)
    assert isinstance(net2, A.Explainer) and net2.meta["reduce"] == "norm"


# ---- the methods "occlusion_net" / "occlusion_net_refined" through attribution.explain ---------------------
from pathlib import Path  # noqa: E402

from policy_xai.attribution import explain  # noqa: E402
from policy_xai.attribution.engine import FALLBACK_METHOD, usable_method  # noqa: E402
from policy_xai.policy import load_policy  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def reach():
    """The shipped reach policy, its explainer attached by load_policy, and one observation."""
    p = load_policy(MODELS / "reach.safetensors")
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, p.spec.image_height, p.spec.image_width, generator=g)
    cfg = torch.as_tensor(p.normaliser_mean if hasattr(p, "normaliser_mean") else np.zeros(p.spec.config_dim),
                          dtype=torch.float32).expand(2, -1).clone()
    cfg += 0.3 * torch.randn(2, p.spec.config_dim, generator=g)
    alpha = torch.tensor(np.linspace(0.5, 1.5, p.spec.n_joints), dtype=torch.float32)
    return p, img, cfg, alpha


def test_load_policy_attaches_the_shipped_explainer(reach):
    p = reach[0]
    assert A.has_explainer(p) and usable_method(p, "occlusion_net") == ("occlusion_net", "")
    assert A.explainer_path_for(MODELS / "reach.safetensors") == MODELS / "reach.explainer.safetensors"
    for task in ("reach2d", "peg", "door"):
        assert A.has_explainer(load_policy(MODELS / f"{task}.safetensors")), task


def test_occlusion_net_relevance_adds_up_to_the_torque_change(reach):
    """image total + configuration relevance = sum_j alpha_j |tau_j(x, c) - tau_j(x0, c0)| (the
    configuration leg's midpoint rule: within 0.5 % with 512 points, the head's ReLU kinks make it
    converge slowly); the image map is
    the student's distribution times the image total; torques are the policy's."""
    p, img, cfg, alpha = reach
    a = alpha.expand(2, -1)
    r = A.amortised_explanation(p, A.explainer_of(p), img, cfg, a, steps=512)
    total = r.image_total + r.config.sum(1)
    target = (a * (r.torques - r.reference_torques).abs()).sum(1)
    assert torch.allclose(total, target, rtol=5e-3), (total, target)
    coarse = A.amortised_explanation(p, A.explainer_of(p), img, cfg, a, steps=2)
    assert (total - target).abs().max() < (coarse.image_total + coarse.config.sum(1) - target).abs().max()
    assert torch.allclose(r.share.flatten(1).sum(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(r.image, r.share * r.image_total.view(-1, 1, 1))
    with torch.no_grad():
        assert torch.allclose(r.torques, p(img, cfg), atol=1e-5)
    # per torque: I_j + sum_i R_i^(j) = alpha_j |tau_j(x, c) - tau_j(x0, c0)| (each leg order), and
    # the per-torque parts add up to the totals
    for order in A.LEG_ORDERS:
        r = A.amortised_explanation(p, A.explainer_of(p), img, cfg, a, steps=512, order=order)
        per = r.image_joint + r.config_joint.sum(2)
        want = a * (r.torques - r.reference_torques).abs()
        assert torch.allclose(per, want, rtol=2e-2, atol=2e-2 * float(want.max())), order
        assert torch.allclose(r.config_joint.sum(1), r.config, rtol=1e-4, atol=1e-6)
        assert torch.allclose(r.image_joint.sum(1), r.image_total, rtol=1e-5, atol=1e-6)
    one = {o: A.amortised_explanation(p, A.explainer_of(p), img, cfg, a, steps=64, order=o)
           for o in ("image", "config")}
    b64 = A.amortised_explanation(p, A.explainer_of(p), img, cfg, a, steps=64)
    assert torch.allclose(b64.image_total, 0.5 * (one["image"].image_total + one["config"].image_total))
    assert torch.allclose(b64.config, 0.5 * (one["image"].config + one["config"].config), rtol=1e-4, atol=1e-6)
    # ratios: per-torque magnitudes, image sum_j |I_j|, group G sum_j |sum_{i in G} R_i^(j)|
    e = explain(p, img, cfg, "occlusion_net", alpha=alpha)
    assert torch.allclose(e.image, e.extras["share"] * e.extras["image_total"].view(-1, 1, 1))
    assert abs(float(sum(v[0] for v in e.ratios.values())) - 1) < 1e-5
    r = A.amortised_explanation(p, A.explainer_of(p), img[:1], cfg[:1], alpha[None])
    parts = {"image": float(r.image_joint[0].abs().sum())}
    for g, sl in p.spec.group_slices().items():
        parts[g] = float(r.config_joint[0, :, sl].sum(1).abs().sum())
    for g, v in parts.items():
        assert float(e.ratios[g][0]) == pytest.approx(v / sum(parts.values()), rel=1e-4, abs=1e-7), g


def test_occlusion_net_batch_equals_single_and_refinement_only_raises(reach):
    p, img, cfg, alpha = reach
    both = explain(p, img, cfg, "occlusion_net", alpha=alpha)
    one = explain(p, img[1:], cfg[1:], "occlusion_net", alpha=alpha)
    assert torch.allclose(both.image[1:], one.image, rtol=1e-4, atol=1e-7)
    assert torch.allclose(both.config[1:], one.config, rtol=1e-4, atol=1e-7)
    occ = explain(p, img, cfg, "occlusion_net_refined", alpha=alpha)
    # the refinement keeps every pixel's |value| or raises it to its window's measured share
    assert bool((occ.image >= both.image.abs() - 1e-7).all()) and bool((occ.image > both.image.abs() + 1e-6).any())
    for m in ("occlusion_net", "occlusion_net_refined"):
        with pytest.raises(ValueError, match="per_joint"):
            explain(p, img, cfg, m, alpha=alpha, per_joint=True)


def test_an_explainer_never_explains_other_weights(reach, tmp_path):
    import copy

    p, img, cfg, alpha = reach
    q = copy.deepcopy(p)  # a copy (new storage): e.g. the sanity check's randomised networks
    with pytest.raises(A.ExplainerMismatchError, match="weights changed"):
        explain(q, img, cfg, "occlusion_net", alpha=alpha)
    assert usable_method(q, "occlusion_net")[0] == FALLBACK_METHOD
    with torch.no_grad():  # an in-place change of the weights
        q2 = load_policy(MODELS / "reach.safetensors")
        q2.fcs[-1].bias.add_(0.1)
    assert not A.has_explainer(q2)
    # an untrained network: no explainer, the reason names the command that trains one
    fresh = init_policy("small", seed=0)
    m, why = usable_method(fresh, "occlusion_net")
    assert m == FALLBACK_METHOD and "policy-xai explainer" in why
    with pytest.raises(A.ExplainerLoadError, match="no explainer is attached"):
        explain(fresh, img, cfg, "occlusion_net")
    # weights next to an explainer trained for other weights: not attached, the reason kept
    import shutil

    shutil.copy(MODELS / "peg.safetensors", tmp_path / "mine.safetensors")
    shutil.copy(MODELS / "reach.explainer.safetensors", tmp_path / "mine.explainer.safetensors")
    mine = load_policy(tmp_path / "mine.safetensors")
    assert not A.has_explainer(mine)
    with pytest.raises(A.ExplainerLoadError, match="trained for the policy file 'reach.safetensors'"):
        A.explainer_of(mine)


def test_occlusion_net_finds_the_blob_of_a_hand_built_policy():
    """A student trained on the blob policy's teacher maps, attached to that policy: explain's
    occlusion_net map (and its occlusion refinement) points at the blob on new images."""
    pol = blob_policy()
    X, masks = blob_images(32, 1)
    cfg = torch.zeros(len(X), 2)
    net = A.train_explainer(pol, X[:24], cfg[:24], ALPHA, epochs=30, seed=0, width=8, lr=1e-2, batch=8, sizes=SIZES)
    A.attach_explainer(pol, net)
    from policy_xai.attribution.engine import DEFAULT_METHOD

    for m in dict.fromkeys((DEFAULT_METHOD, "occlusion_net", "occlusion_net_refined")):  # the live default first
        e = explain(pol, X[24:], cfg[24:], m, alpha=ALPHA)
        pts = [M.pointing_ratio(np.abs(e.image[i].numpy()), masks[24 + i]) for i in range(8)]
        assert np.mean(pts) > 3, (m, pts)
