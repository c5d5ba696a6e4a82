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

S = 16
GREY = 0.5
ALPHA = torch.tensor([1.0, 0.5])
SIZES = (3 / 16, 4 / 16)   # 3 and 4 px windows at 16x16 (stride max(1, p // 2))


def blob_policy(bias: float = 2.0):
    """1x1 conv relu(r - g - b) (grey 0, red 1) -> spatial softmax at temperature 0.05 (the point
    sits on the red blob's centroid; no red: (0, 0)) -> tau = (2x, -y) for bias 2 (another bias:
    other torques, same architecture). The configuration has zero weights."""
    spec = {"name": "blob", "image": {"channels": 3, "height": S, "width": S},
            "conv": [{"channels": 1, "kernel": 1}], "feature_points": 1, "softmax_temperature": 0.05,
            "config_groups": {"joint_position": 2}, "hidden": [2], "joint_names": ["a", "b"],
            "torque_limits": [10.0, 10.0]}
    p = init_policy(spec, seed=0)
    with torch.no_grad():
        p.convs[0].weight.copy_(torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1))
        p.convs[0].bias.zero_()
        p.fcs[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))
        p.fcs[0].bias.fill_(bias)
        p.fcs[1].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
        p.fcs[1].bias.copy_(torch.tensor([-2.0 * bias, bias]))
    return p


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


def test_short_training_fits_the_teacher(policy):
    rng = np.random.default_rng(0)
    imgs, masks = [], []
    for _ in range(24):
        im, mk = blob_image(int(rng.integers(0, S - 3)), int(rng.integers(0, S - 3)))
        imgs.append(im)
        masks.append(mk)
    X = torch.stack(imgs)
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
