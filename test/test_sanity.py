"""Model-randomisation sanity check: the similarity metrics on hand cases, and the command."""
import csv

import numpy as np
import pytest
import torch

from policy_xai.cli import main
from policy_xai.sanity import cascade_layers, normalise_abs, policy_from_arg, randomisation_cascade, spearman, ssim
from policy_xai.synthetic import synthetic_observations


def test_spearman_hand_cases():
    rng = np.random.default_rng(0)
    a = rng.random((3, 500))
    assert np.allclose(spearman(a, a), 1.0)
    assert np.allclose(spearman(a, 3 * a ** 2 + 1), 1.0)  # monotone map: same ranks
    assert np.allclose(spearman(a, -a), -1.0)
    # hand-computed: ranks [1,2,3,4] vs [2,1,4,3] -> 1 - 6*4/(4*15) = 0.6
    assert spearman(np.array([1.0, 2, 3, 4]), np.array([20.0, 10, 40, 30])) == pytest.approx(0.6)
    # ties get average ranks: [1,2.5,2.5,4] vs [1,2,3,4] -> Pearson of the ranks
    assert spearman(np.array([1.0, 2, 2, 3]), np.array([1.0, 2, 3, 4])) == pytest.approx(
        np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    # independent noise: ~0 (standard error 1/sqrt(N-1) = 0.014 for N = 5000)
    x, y = rng.random((2, 5000))
    assert abs(spearman(x, y)) < 0.06
    # constant maps: identical -> 1, otherwise 0
    z = np.zeros(10)
    assert spearman(z, z) == 1.0 and spearman(z, np.arange(10.0)) == 0.0


def test_ssim_hand_cases():
    rng = np.random.default_rng(1)
    m = normalise_abs(rng.normal(size=(2, 64, 64)))
    assert np.all((m >= 0) & (m <= 1)) and np.allclose(m.reshape(2, -1).max(1), 1.0)
    assert np.allclose(ssim(m, m), 1.0, atol=1e-12)  # a map with itself
    smooth = normalise_abs(np.add.outer(np.arange(64.0), np.arange(64.0))[None])
    assert ssim(smooth, smooth)[0] == pytest.approx(1.0)
    # independent noise maps: structure term ~0
    a, b = rng.random((2, 1, 128, 128))
    assert abs(float(ssim(a, b)[0])) < 0.05
    # a map vs its negative-structure counterpart: strongly negative
    assert float(ssim(a, 1 - a)[0]) < -0.5
    # all-zero maps are identical
    assert ssim(np.zeros((8, 8)), np.zeros((8, 8))) == pytest.approx(1.0)


def test_cascade_order_and_copies():
    p = policy_from_arg("small", seed=0)
    names = [n for n, _ in cascade_layers(p)]
    assert names == ["fc3", "fc2", "fc1", "conv3", "conv2", "conv1"]
    before = {k: v.clone() for k, v in p.state_dict().items()}
    seen = []
    for name, net in randomisation_cascade(p, seed=0):
        changed = [k.split(".")[0] + k.split(".")[1] for k, v in net.state_dict().items()
                   if k.endswith("weight") and not torch.equal(v, before[k])]
        seen.append(sorted(changed))
    # cumulative from the top: fc3, then fc3 + fc2, ...
    assert seen[0] == ["fcs2"] and seen[2] == ["fcs0", "fcs1", "fcs2"] and len(seen[-1]) == 6
    assert all(torch.equal(v, before[k]) for k, v in p.state_dict().items())  # original untouched


def test_synthetic_observations_shapes_and_determinism():
    im, cfg = synthetic_observations("small", 5, seed=3)
    assert im.shape == (5, 64, 64, 3) and im.dtype == np.uint8 and cfg.shape == (5, 20) and cfg.dtype == np.float32
    im2, cfg2 = synthetic_observations("small", 5, seed=3)
    assert np.array_equal(im, im2) and np.array_equal(cfg, cfg2)
    assert im.std() > 10  # blobs on a background, not a flat image


def test_sanity_command_small(tmp_path, capsys):
    out = tmp_path / "sanity"
    rc = main(["sanity", "--policy", "small", "--methods", "dtd,rap,gradient", "--samples", "4",
               "--seed", "0", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Spearman" in text and "SSIM" in text
    assert (out / "sanity.png").stat().st_size > 10_000
    rows = list(csv.DictReader(open(out / "sanity.csv")))
    assert len(rows) == 3 * 7
    get = {(r["method"], r["randomised_down_to"]): r for r in rows}
    for m in ("dtd", "rap", "gradient"):
        assert float(get[(m, "original")]["image_spearman_mean"]) == pytest.approx(1.0)
        assert float(get[(m, "original")]["image_ssim_mean"]) == pytest.approx(1.0)
    # randomising every layer changes dtd's maps (though little: the z+ maps keep the conv stack's
    # receptive-field footprint, see docs/bench.md), and the gradient's a lot
    assert float(get[("dtd", "conv1")]["image_spearman_mean"]) < 0.99
    assert float(get[("dtd", "conv1")]["image_ssim_mean"]) < 0.95
    assert float(get[("gradient", "conv1")]["image_spearman_mean"]) < 0.7
    assert float(get[("rap", "conv1")]["image_spearman_mean"]) < 0.9
    assert "FLAG" in text or "no method flagged" in text


def test_flags():
    from policy_xai.sanity import METRICS, SanityResult

    steps = ["original", "fc2", "fc1", "conv2", "conv1"]
    vals = {k: np.ones((2, 5, 3)) for k in METRICS}
    vals["image_spearman"][1, 1:] = [[0.5, 0.4, 0.6], [0.3, 0.2, 0.1], [0.1, 0.0, 0.2], [0.0, 0.1, 0.0]]
    vals["image_spearman"][0, 3:] = 0.2  # changes only once the convs are randomised
    r = SanityResult(["stuck", "fine"], steps, 2, vals)
    flags = r.flags(0.9)
    assert len(flags) == 1 and flags[0].startswith("FLAG stuck") and "fc1" in flags[0]
    vals["image_spearman"][0, 3:] = 0.95
    assert [f.split(":")[0] for f in r.flags(0.9)] == ["FLAG stuck", "FLAG stuck"]


def test_sanity_command_rejects_unknown_method(tmp_path, capsys):
    assert main(["sanity", "--methods", "dtd,nope", "--out", str(tmp_path)]) == 1
    assert "unknown method" in capsys.readouterr().err
