"""States of interest (policy_xai.states): the VAE trains, the latent search raises its target and
respects the prior, it finds a hand-built policy's known weak spot, states.npz holds the policy's
torques on exactly the stored inputs, and bad arguments are one-line errors. One real MuJoCo run of
`policy-xai states train` on the shipped reach policy."""
import json

import numpy as np
import pytest
import torch

from cli_harness import cli
from hand_policies import blob_policy
from policy_xai.policy import save_policy
from policy_xai.resources import share_path
from policy_xai.states import (StateModelError, StateModelMismatchError, TargetError, find_states, load_state_model,
                               make_target, save_state_model)
from policy_xai.states.find import FindOptions, find
from policy_xai.states.model import StateVAE
from policy_xai.states.search import start_points
from policy_xai.states.train import TrainingStates, TrainOptions, fit

SIZE = 16


def blob_states(n: int = 240, seed: int = 0, span: float = 0.75):
    """Grey 16x16 images (a random shade each) with one red 3x3 blob, its centre uniform in
    [-span, span]^2 (image coords)."""
    rng = np.random.default_rng(seed)
    imgs = np.repeat(rng.integers(40, 200, (n, 1, 1, 1)), SIZE, 1).repeat(SIZE, 2).repeat(3, 3).astype(np.uint8)
    xy = rng.uniform(-span, span, (n, 2))
    for k, (x, y) in enumerate(xy):
        cx, cy = int(round((x + 1) / 2 * (SIZE - 1))), int(round((y + 1) / 2 * (SIZE - 1)))
        imgs[k, max(0, cy - 1):cy + 2, max(0, cx - 1):cx + 2] = (230, 30, 30)
    cfg = rng.normal(0, 1, (n, 2)).astype(np.float32)
    return TrainingStates(imgs, cfg, source="blobs"), xy


def red_x(images: np.ndarray) -> np.ndarray:
    """x in [-1, 1] of the red pixels' centroid per image (nan without red)."""
    im = images.astype(float)
    red = (im[..., 0] - 0.5 * (im[..., 1] + im[..., 2])) > 80
    xs = np.linspace(-1, 1, SIZE)[None, None, :].repeat(SIZE, 1)
    return np.array([xs[0][m].mean() if m.any() else np.nan for m in red])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: more threads only add contention
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("states")
    policy = blob_policy(size=SIZE)
    pfile = save_policy(policy, d / "blob.safetensors")
    states, xy = blob_states()
    model = StateVAE(3, SIZE, SIZE, 2, latent=6, stages=2, filters=16)
    opt = TrainOptions(epochs=60, batch=32, lr=2e-3, kl=0.5, perception=0.1, attention="gradient", seed=0)
    res = fit(model, policy, states, opt)
    gfile = save_state_model(model, d / "blob_states.safetensors", pfile, training=res)
    return {"dir": d, "policy": policy, "pfile": pfile, "model": model, "gfile": gfile, "res": res,
            "states": states, "xy": xy}


def test_the_state_model_trains_and_reconstructs_better(trained):
    r = trained["res"]
    assert r["after"]["pixel_rmse_255"] < 0.6 * r["before"]["pixel_rmse_255"], r
    assert r["after"]["config_rmse"] < r["before"]["config_rmse"]
    assert r["history"][-1]["total"] < r["history"][0]["total"]
    assert r["held_out_states"] == 24 and r["train_states"] == 216
    # the file round trip gives the same model; it is refused for other weights or shapes
    back = load_state_model(trained["gfile"], policy_path=trained["pfile"], spec=trained["policy"].spec)
    z = torch.randn(3, 6)
    for a, b in zip(trained["model"].decode(z), back.decode(z)):
        torch.testing.assert_close(a, b)
    assert back.meta["training"]["train_states"] == 216
    other = save_policy(blob_policy(bias=3.0, size=SIZE), trained["dir"] / "other.safetensors")
    with pytest.raises(StateModelMismatchError, match="trained for the policy file 'blob.safetensors'"):
        load_state_model(trained["gfile"], policy_path=other)
    with pytest.raises(StateModelMismatchError, match="the policy takes 32x32x3"):
        load_state_model(trained["gfile"], spec=blob_policy(size=32).spec)
    bad = trained["dir"] / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(StateModelError, match="not a readable safetensors"):
        load_state_model(bad)
    with pytest.raises(FileExistsError):
        save_state_model(trained["model"], trained["gfile"], trained["pfile"])


def test_search_raises_the_target_and_respects_the_prior(trained):
    policy, model = trained["policy"], trained["model"]
    t = make_target("torque:a:max", policy)
    z0 = start_points(model, policy, 6, 1, trained["states"].images, trained["states"].configs)
    res = find_states(model, policy, t, steps=80, lr=0.05, lam=0.05, start=z0)
    med = np.median(res.trace, axis=1)
    assert med[-1] > med[0] + 0.3  # tau_a = 2 x: the blob moved right
    drops = np.diff(np.maximum.accumulate(med)) < -1e-6
    assert not drops.any()
    assert np.mean(np.diff(med) < -0.02) < 0.1  # monotone within noise
    assert (res.score >= res.trace[0] - 1e-3).all()
    # a heavier prior term keeps the latents nearer the origin
    tight = find_states(model, policy, t, steps=80, lr=0.05, lam=5.0, start=z0)
    assert np.median(tight.prior[-1]) < np.median(res.prior[-1])
    # the aggregate prior (a Gaussian of the real states' latents) holds a heavily regularised search
    # near them
    from policy_xai.states.search import LatentPrior, real_latents

    mu = real_latents(model, policy, trained["states"].images, trained["states"].configs)
    agg = LatentPrior.aggregate(mu)
    assert float(agg.energy(agg.mean[None])) == pytest.approx(0.0, abs=1e-9)
    assert float(agg.energy(mu).mean()) == pytest.approx(0.5 * mu.shape[1], rel=0.1)  # whitened
    held = find_states(model, policy, t, steps=80, lr=0.05, lam=50.0, start=z0, prior=agg)
    assert np.median(held.prior[-1]) <= np.median(held.prior[0])
    # minimising goes the other way
    low = find_states(model, policy, make_target("torque:a:min", policy), steps=80, lr=0.05, lam=0.05, start=z0)
    assert np.median(low.score) < np.median(res.trace[0]) - 0.3


def test_the_search_finds_the_known_weak_spot(trained):
    """tau_a = 2 x saturates at the limit 1.0 where the blob sits right of x = 0.5: searched for
    saturation, the found states have their blob there (most real states do not)."""
    policy, model = trained["policy"], trained["model"]
    with torch.no_grad():
        policy.torque_limits.copy_(torch.tensor([1.0, 10.0]))
    try:
        t = make_target("saturation", policy)
        z0 = start_points(model, policy, 8, 2, trained["states"].images, trained["states"].configs)
        res = find_states(model, policy, t, steps=100, lr=0.05, lam=0.05, start=z0)
        x = red_x(res.image)
        real_x = trained["xy"][:, 0]
        assert np.mean(np.abs(real_x) > 0.5) < 0.4
        assert np.mean(np.abs(x) > 0.5) >= 0.75, x
        assert np.median(res.score) > 1.0  # beyond the limit: the command would be clipped
    finally:
        with torch.no_grad():
            policy.torque_limits.copy_(torch.tensor([10.0, 10.0]))


def test_find_writes_the_policys_torques_on_the_stored_inputs(trained):
    out = trained["dir"] / "found"
    opt = FindOptions(policy=str(trained["pfile"]), generator=str(trained["gfile"]), target="torque:b:max", n=4,
                      steps=30, method="gradient", naive=True, out=str(out))
    s = find(opt, log=lambda m: None, real=trained["states"])
    z = np.load(out / "states.npz")
    assert z["image"].dtype == np.uint8 and z["image"].shape == (4, SIZE, SIZE, 3)
    assert z["config"].dtype == np.float32 and z["torques"].dtype == np.float32 and z["score"].shape == (4,)
    policy = trained["policy"]
    tau = policy(torch.from_numpy(z["image"]).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(z["config"]))
    np.testing.assert_array_equal(z["torques"], tau.detach().numpy())
    np.testing.assert_allclose(z["score"], z["torques"][:, 1], atol=1e-6)
    summ = json.loads((out / "summary.json").read_text())
    assert summ["real"]["states"] == 240 and set(summ["real"]["percentiles"]) >= {"1", "50", "99"}
    assert len(summ["realism"]["nearest_real_rms"]) == 4 and summ["realism"]["real_to_real_rms_median"] > 0
    # the target on the real states' reconstructions, next to the real states' own
    st = trained["states"]
    with torch.no_grad():
        tau_real = policy(torch.from_numpy(st.images).permute(0, 3, 1, 2).float() / 255.0, torch.from_numpy(st.configs))
    assert summ["realism"]["target_real_median"] == pytest.approx(float(np.median(tau_real[:, 1].numpy())), abs=1e-5)
    assert np.isfinite(summ["realism"]["target_reconstructed_median"])
    assert summ["explanation"]["method"] == "gradient" and "image" in summ["explanation"]["ratios"]
    assert len(summ["naive"]["score"]) == 4
    assert (out / "grid.png").stat().st_size > 2000 and s["files"][-1] == "grid.png"
    with pytest.raises(FileExistsError):
        find(opt, log=lambda m: None, real=trained["states"])


def test_the_episode_scope_moves_every_state_of_an_episode_by_one_shift(trained):
    """--scope episode: each start is a real episode (here: 10 runs of 24 blob states), its K states are
    moved by one shared latent shift; maximising tau_a = 2 x moves the blob right in the episode's states,
    the stored states carry their episode, and an episode's score is the mean over its states."""
    from policy_xai.states.search import episode_groups

    states = trained["states"]
    ep = np.repeat(np.arange(10), 24)
    groups = episode_groups(ep, 3, 6, seed=1)
    assert len(groups) == 3 and all(len(g) == 6 and len(set(ep[g])) == 1 for g in groups)
    assert len({int(ep[g[0]]) for g in groups}) == 3 and groups[0][0] == 24 * ep[groups[0][0]]
    with pytest.raises(ValueError, match="rollouts"):
        episode_groups(np.zeros(0, int), 2, 3)
    out = trained["dir"] / "found_episodes"
    real = TrainingStates(states.images, states.configs, source="blobs", episode=ep)
    opt = FindOptions(policy=str(trained["pfile"]), generator=str(trained["gfile"]), target="torque:a:max", n=3,
                      steps=60, method="gradient", scope="episode", episode_states=6, out=str(out))
    s = find(opt, log=lambda m: None, real=real)
    z = np.load(out / "states.npz")
    assert z["image"].shape == (18, SIZE, SIZE, 3)
    np.testing.assert_array_equal(z["episode"], np.repeat(np.arange(3), 6))
    tau = trained["policy"](torch.from_numpy(z["image"]).permute(0, 3, 1, 2).float() / 255.0,
                            torch.from_numpy(z["config"]))
    np.testing.assert_array_equal(z["torques"], tau.detach().numpy())
    np.testing.assert_allclose(s["found"]["score"], z["score"].reshape(3, 6).mean(1), rtol=1e-5)
    assert s["scope"] == "episode" and s["real"]["episodes"] == 10 and len(s["found"]["state_score"]) == 18
    assert s["found"]["median"] > s["found"]["start_median"] + 0.3
    # the one shift per episode moved the blobs right (the found episodes' states from the real ones')
    start_x = red_x(states.images[np.concatenate(episode_groups(ep, 3, 6, seed=0))]).reshape(3, 6)
    found_x = red_x(z["image"]).reshape(3, 6)
    assert np.nanmean(found_x) > np.nanmean(start_x) + 0.2, (start_x, found_x)
    assert np.all(np.nanmean(found_x, 1) > np.nanmean(start_x, 1)), (start_x, found_x)
    with pytest.raises(ValueError, match="not a recording"):
        find(FindOptions(**{**opt.__dict__, "out": str(trained["dir"] / "fe2")}), log=lambda m: None,
             real=TrainingStates(states.images, states.configs, source="bag"))


def test_the_scene_term_keeps_the_scene_in_the_reconstructions(trained):
    """A state model trained with the scene term (a teacher network that reads the blob's place) keeps
    the place in its reconstructions better than the same training without it."""
    from policy_xai.states.teacher import TeacherNet, fit_teacher
    from policy_xai.states.train import measure

    policy, states = trained["policy"], trained["states"]
    torch.manual_seed(0)
    X = torch.from_numpy(states.images).permute(0, 3, 1, 2).float() / 255.0
    C = torch.from_numpy(states.configs)
    S = torch.from_numpy(np.column_stack([trained["xy"], np.zeros(len(X))]).astype(np.float32))
    net = TeacherNet(3, SIZE, SIZE, 2, joints=2, scene=3, filters=8, hidden=64)
    fit_teacher(net, policy, X, C, torch.zeros(len(X), 2), S, epochs=30, batch=16, lr=3e-3)
    net.eval()
    errs = {}
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        m = StateVAE(3, SIZE, SIZE, 2, latent=6, stages=2, filters=16)
        opt = TrainOptions(epochs=15, batch=32, lr=2e-3, kl=0.5, perception=0.1, attention="gradient", seed=0,
                           scene_weight=w)
        r = fit(m, policy, states, opt, scene_net=net if w else None)
        errs[w] = measure(m, policy, X[:64], C[:64], scene_net=net)["scene_rmse"]
        if w:
            assert r["history"][-1]["scene"] < r["history"][0]["scene"] and "scene_rmse" in r["after"]
        else:
            assert "scene" not in r["history"][0] and "scene_rmse" not in r["after"]
    assert errs[1.0]["s0"] < 0.8 * errs[0.0]["s0"] and errs[1.0]["s1"] < 0.8 * errs[0.0]["s1"], errs


def test_bad_targets_and_arguments_are_one_line_errors(trained, capsys, tmp_path):
    policy = trained["policy"]
    with pytest.raises(TargetError, match="unknown target 'speed:max': not one of torque:<joint>:max"):
        make_target("speed:max", policy)
    with pytest.raises(TargetError, match="unknown target 'fastest'; choose one of torque:<joint>:max"):
        make_target("fastest", policy)
    with pytest.raises(TargetError, match="unknown joint 'elbow'; the policy's joints are a, b"):
        make_target("torque:elbow:max", policy)
    with pytest.raises(TargetError, match="cannot import"):
        make_target("no_such_module_xyz:score", policy)
    other = save_policy(blob_policy(bias=3.0, size=SIZE), tmp_path / "other.safetensors")
    rc, out, err = cli(capsys, "states", "find", "--policy", other, "--generator", trained["gfile"], "--target",
                       "saturation", "--out", tmp_path / "o")
    assert rc == 2 and "trained for the policy file 'blob.safetensors'" in err and len(err.strip().splitlines()) == 1
    rc, out, err = cli(capsys, "states", "find", "--policy", trained["pfile"], "--generator", trained["gfile"],
                       "--target", "torque:x:max", "--out", tmp_path / "o2")
    assert rc == 2 and "unknown joint 'x'" in err
    rc, out, err = cli(capsys, "states", "train", "--policy", trained["pfile"], "--out", trained["gfile"])
    assert rc == 2 and "exists" in err and "never overwritten" in err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o2").exists()


def test_states_train_on_the_shipped_reach_policy(tmp_path):
    """Real MuJoCo rollouts of models/reach.safetensors -> a state model file that loads for it."""
    from policy_xai.states.train import train_state_model

    w = share_path("models", "reach.safetensors")
    out = tmp_path / "reach_states.safetensors"
    r = train_state_model(TrainOptions(policy=str(w), out=str(out), episodes=1, every=8, epochs=2, latent=8),
                          log=lambda s: None)
    assert r["train_states"] > 0 and np.isfinite(r["after"]["pixel_rmse_255"]) and r["file"] == str(out)
    m = load_state_model(out, policy_path=w)
    assert m.arch["height"] == 64 and m.arch["config_dim"] == 20 and m.meta["training"]["task"] == "reach"


def test_every_target_runs_and_a_users_callable_is_searched(trained):
    policy, model = trained["policy"], trained["model"]
    z0 = start_points(model, policy, 3, 3, trained["states"].images, trained["states"].configs)
    for name in ("torque_norm:max", "saturation", "image_share:max", "image_share:min", "sensitivity:max"):
        r = find_states(model, policy, make_target(name, policy), steps=3, start=z0)
        assert r.score.shape == (3,) and np.isfinite(r.score).all(), name
    share = find_states(model, policy, make_target("image_share:max", policy), steps=3, start=z0).score
    assert ((share >= 0) & (share <= 1)).all()
    user = make_target("hand_policies:first_torque", policy)
    r = find_states(model, policy, user, steps=40, start=z0)
    assert np.median(r.trace[-1]) > np.median(r.trace[0])
    np.testing.assert_allclose(r.score, r.torques[:, 0], atol=1e-6)


def test_states_bench_times_training_and_search(capsys, tmp_path):
    from policy_xai.states.bench import bench_states

    w = share_path("models", "reach.safetensors")
    g = share_path("models", "reach_states.safetensors")
    b = bench_states(str(w), str(g), epochs=1, targets=["saturation"], n=2, steps=3, log=lambda s: None)
    assert b["task"] == "reach" and b["states"] > 0 and b["train_states_per_s"] > 0
    assert [r["target"] for r in b["search"]] == ["saturation"] and b["search"][0]["s_per_state"] > 0
    out = tmp_path / "bench.json"
    out.write_text("{}")
    rc, _, err = cli(capsys, "states", "bench", "--policy", w, "--json", out)
    assert rc == 2 and "exists" in err


def test_states_train_from_a_bag(capsys, tmp_path):
    """--bag: the states of a recording (camera + joint states) instead of rollouts."""
    from policy_xai import bags
    from policy_xai.spec import load_spec

    bag = bags.write_synthetic_bag(tmp_path / "bag", load_spec("small"), 30, "mcap")
    out = tmp_path / "m.safetensors"
    rc, stdout, err = cli(capsys, "states", "train", "--policy", share_path("models", "reach.safetensors"),
                          "--bag", bag,
                          "--out", out, "--epochs", 1, "--latent", 4)
    assert rc == 0, err
    assert "trained on 27 states (3 held out)" in stdout
    assert load_state_model(out).meta["training"]["source"].startswith(f"bag {bag}: 30 observations")
    rc, _, err = cli(capsys, "states", "train", "--policy", share_path("models", "reach.safetensors"), "--bag",
                     tmp_path / "missing", "--out", tmp_path / "m2.safetensors")
    assert rc == 2 and "--bag not found" in err


def test_teacher_network_fits_and_the_teacher_gap_search_raises_the_gap(trained, tmp_path):
    """A teacher network fit on a handful of blob states (the 'teacher' commands tau = (0, 0), the scene is
    the blob's place) lowers its loss and reads the place; the teacher_gap:max search raises the gap."""
    from policy_xai.states.teacher import TeacherModelError, TeacherNet, fit_teacher, load_teacher, save_teacher

    policy, model, states = trained["policy"], trained["model"], trained["states"]
    torch.manual_seed(0)
    n = 96
    X = torch.from_numpy(states.images[:n]).permute(0, 3, 1, 2).float() / 255.0
    C = torch.from_numpy(states.configs[:n])
    T = torch.zeros(n, 2)
    S = torch.from_numpy(np.column_stack([trained["xy"][:n], np.zeros(n)]).astype(np.float32))
    net = TeacherNet(3, SIZE, SIZE, 2, joints=2, scene=3, filters=8, hidden=64)
    hist = fit_teacher(net, policy, X, C, T, S, epochs=30, batch=16, lr=3e-3)
    assert hist[-1] < 0.5 * hist[0], hist
    with torch.no_grad():
        sx = net(X, C)[1][:, 0]
    assert float(np.corrcoef(sx.numpy(), S[:, 0].numpy())[0, 1]) > 0.8
    net.task = "blob"
    f = save_teacher(net, tmp_path / "teacher.safetensors")
    with pytest.raises(FileExistsError):
        save_teacher(net, f)
    back = load_teacher(f, policy.spec)
    torch.testing.assert_close(back(X[:4], C[:4])[0], net(X[:4], C[:4])[0])
    t = make_target("teacher_gap:max", policy, teacher=f)
    z0 = start_points(model, policy, 4, 5, states.images, states.configs)
    r = find_states(model, policy, t, steps=60, lr=0.1, lam=0.05, start=z0)
    assert np.median(r.trace[-1]) > 1.2 * np.median(r.trace[0]) and np.median(r.score) > 1.2 * np.median(r.trace[0])
    # the gap on the stored states is || (tau - tau_T) / L || with the net's tau_T
    x = torch.from_numpy(r.image).permute(0, 3, 1, 2).float() / 255.0
    want = ((torch.from_numpy(r.torques) - back(x, torch.from_numpy(r.config))[0]) / policy.torque_limits).norm(dim=1)
    np.testing.assert_allclose(r.score, want.numpy(), atol=1e-5)
    with pytest.raises(TargetError, match="needs a teacher network"):
        make_target("teacher_gap:max", policy)
    with pytest.raises(TargetError, match="teacher network not found"):
        make_target("teacher_gap:max", policy, teacher=tmp_path / "missing.safetensors")
    # a residual network learns tau_T - tau: labelled with the policy's own torques, its gap goes to ~0
    res = TeacherNet(3, SIZE, SIZE, 2, joints=2, scene=3, filters=8, hidden=64, residual=True)
    with torch.no_grad():
        tau = policy(X, C)
    fit_teacher(res, policy, X, C, tau, S, epochs=10, batch=16, lr=3e-3)
    from policy_xai.states.teacher import teacher_gap, teacher_torques

    with torch.no_grad():
        assert float(teacher_gap(policy, res, X, C).median()) < 0.05
        torch.testing.assert_close(teacher_torques(policy, res, X, C), tau + res(X, C)[0])
    other = TeacherNet(3, 32, 32, 2, joints=2, scene=3, filters=4, hidden=8)
    with pytest.raises(TeacherModelError, match="takes 32x32x3 images"):
        load_teacher(save_teacher(other, tmp_path / "other.safetensors"), policy.spec)


def test_states_teacher_and_validate_on_door(capsys, tmp_path):
    """Real MuJoCo: `states teacher` distils the door teacher (tiny run) and `states validate` runs the
    policy from found states' situations and from random starts, writing both failure rates."""
    from policy_xai.states.train import rollout_states

    w = share_path("models", "door.safetensors")
    tf = tmp_path / "door_teacher.safetensors"
    rc, out, err = cli(capsys, "states", "teacher", "--policy", w, "--out", tf, "--episodes", 1, "--every", 16,
                       "--epochs", 3)
    assert rc == 0, err
    assert "held out: teacher torque RMSE" in out and "door_angle" in out
    rc, _, err = cli(capsys, "states", "teacher", "--policy", w, "--task", "juggle",
                     "--out", tmp_path / "t2.safetensors")
    assert rc == 2 and "'juggle' has no state-feedback teacher" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli(capsys, "states", "teacher", "--policy", w, "--out", tf)
    assert rc == 2 and "never overwritten" in err
    from policy_xai.policy import load_policy

    st = rollout_states("door", load_policy(w), 1, 80, 0.0, 0.0, region=1.0)
    assert st.scene.shape == (8, 4) and np.all(st.scene[:, 3] >= -0.06)
    np.testing.assert_array_equal(st.episode, [0, 0, 1, 1, 2, 2, 3, 3])  # 2 kept states per rollout
    np.savez_compressed(tmp_path / "states.npz", image=st.images[:2], config=st.configs[:2])
    js = tmp_path / "v.json"
    rc, out, err = cli(capsys, "states", "validate", "--policy", w, "--teacher", tf,
                       "--states", tmp_path / "states.npz", "--episodes", 2, "--steps", 4, "--json", js)
    assert rc == 0, err
    v = json.loads(js.read_text())
    for start in ("state", "place"):
        for kind in ("found", "random"):
            r = v[start][kind]
            assert r["episodes"] == 2 and 0.0 <= r["failure_rate"] <= 1.0 and len(r["success"]) == 2
            assert 0.0 <= r["teacher_failure_rate"] <= 1.0 and len(r["teacher_success"]) == 2
            assert len(r["true_gap_at_start"]) == 2 and r["true_gap_at_start_median"] >= 0
    assert len(v["decoded"]["nearest_named_place"]) == 2 and "mid13" in v["named_places"]
    assert set(v["places"]) == set(v["named_places"]) and v["places"]["mid13"]["gap_true_mean"] >= 0
    rc, _, err = cli(capsys, "states", "validate", "--policy", w, "--teacher", tf, "--states", tmp_path / "states.npz",
                     "--json", js)
    assert rc == 2 and "exists" in err
    # found episodes (states find --scope episode): validated per episode, at the median decoded place
    np.savez_compressed(tmp_path / "episodes.npz", image=st.images[:4], config=st.configs[:4],
                        score=np.array([0.1, 0.3, 0.2, 0.1], np.float32), episode=np.array([0, 0, 1, 1]))
    rc, out, err = cli(capsys, "states", "validate", "--policy", w, "--teacher", tf, "--states",
                       tmp_path / "episodes.npz", "--episodes", 2, "--steps", 2, "--json", tmp_path / "ve.json",
                       "--starts", "place")
    assert rc == 0, err
    v = json.loads((tmp_path / "ve.json").read_text())
    assert v["found_episodes"] == 2 and len(v["decoded"]["nearest_named_place"]) == 2
    rc, _, err = cli(capsys, "states", "find", "--policy", w, "--generator", tf, "--target", "teacher_gap:max",
                     "--out", tmp_path / "f")
    assert rc == 2 and "needs --teacher" in err


def _hand_teacher(q, v, s):
    """A hand-made state-feedback 'teacher' of 2 joints: a clipped PD law towards the scene's place,
    switched by a ramp in the distance as the door teacher's phases are."""
    e = s[:, :2] - q
    ramp = np.clip((np.abs(e).sum(1, keepdims=True) - 0.2) / 0.2, 0.0, 1.0)
    return np.clip(8.0 * e * (0.5 + 0.5 * ramp) - 1.5 * v, -3.0, 3.0).astype(np.float32)


def _two_stage_net(joints: int = 2):
    from policy_xai.states.teacher import TeacherNet
    from policy_xai.states.two_stage import TwoStageTeacher

    scene = TeacherNet(3, SIZE, SIZE, 2 * joints, joints=joints, scene=2, filters=4, hidden=16)
    net = TwoStageTeacher(scene.arch, 0, joints, joints, 2, hidden=64, layers=2)
    net.torque_limits.copy_(torch.full((joints,), 3.0))
    return net


def test_two_stage_mlp_fits_a_hand_made_teacher_and_survives_its_file(tmp_path):
    """Stage 2 of the two-stage teacher network (an MLP over (q, v, scene)) fits a hand-made teacher on
    sampled states far better than the teacher's own spread; the file round trip gives the same outputs
    through the scene head; an old-format (/1) file still loads; bad files are one-line errors."""
    from safetensors.torch import save_file

    from policy_xai.states.teacher import FORMAT, TeacherModelError, TeacherNet, load_teacher, save_teacher
    from policy_xai.states.two_stage import TwoStageTeacher, fit_torques, torque_accuracy

    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    def sample(n):
        q, v, s = rng.uniform(-1, 1, (n, 2)), rng.normal(0, 0.5, (n, 2)), rng.uniform(-1, 1, (n, 2))
        return q.astype(np.float32), v.astype(np.float32), s.astype(np.float32), _hand_teacher(q, v, s)

    net = _two_stage_net()
    Q, V, S, T = sample(20000)
    before = torque_accuracy(net, *sample(2000))
    hist = fit_torques(net, Q, V, S, T, epochs=15, batch=256, lr=3e-3)
    after = torque_accuracy(net, *sample(2000))
    assert hist[-1] < 0.1 * hist[0], hist
    assert after["torque_rmse_per_limit"] < 0.1 * after["teacher_torque_rms_per_limit"], after
    assert after["torque_rmse_per_limit"] < 0.2 * before["torque_rmse_per_limit"], (before, after)
    # forward(image, config): q, v from the configuration, the scene from the scene head
    x, c = torch.rand(5, 3, SIZE, SIZE), torch.randn(5, 4)
    with torch.no_grad():
        tau, s = net(x, c)
        torch.testing.assert_close(tau, net.torques(c[:, :2], c[:, 2:], net.scene_net(x, c)[1]))
    net.task = "hand"
    f = save_teacher(net, tmp_path / "two.safetensors")
    back = load_teacher(f)
    assert isinstance(back, TwoStageTeacher) and back.task == "hand" and FORMAT.endswith("/2")
    with torch.no_grad():
        torch.testing.assert_close(back(x, c)[0], tau)
        torch.testing.assert_close(back(x, c)[1], s)
    # a direct network in the old format (no "kind") loads as a TeacherNet
    old = TeacherNet(3, SIZE, SIZE, 4, joints=2, scene=2, filters=4, hidden=16)
    tensors = {k: v.contiguous() for k, v in old.state_dict().items()}
    save_file(tensors, str(tmp_path / "old.safetensors"),
              metadata={"format": "policy_xai_teacher/1", "arch": json.dumps(old.arch), "task": "hand", "meta": "{}"})
    assert isinstance(load_teacher(tmp_path / "old.safetensors"), TeacherNet)
    save_file(tensors, str(tmp_path / "odd.safetensors"),
              metadata={"format": FORMAT, "kind": "three_stage", "arch": json.dumps(old.arch), "meta": "{}"})
    with pytest.raises(TeacherModelError, match="unknown teacher network kind 'three_stage'") as e:
        load_teacher(tmp_path / "odd.safetensors")
    assert len(str(e.value).splitlines()) == 1
    save_file(tensors, str(tmp_path / "mixed.safetensors"),
              metadata={"format": FORMAT, "kind": "two_stage", "arch": json.dumps(net.arch), "meta": "{}"})
    with pytest.raises(TeacherModelError, match="tensors do not match") as e:
        load_teacher(tmp_path / "mixed.safetensors")
    assert len(str(e.value).splitlines()) == 1


def test_two_stage_labels_are_the_door_teacher_and_the_cli_errors_are_one_line(capsys, tmp_path):
    """Real MuJoCo (physics only): label_teacher, given the door angle instead of the simulator's, gives
    the teacher's torques in that state; `states teacher --kind two_stage` argument errors are one line."""
    from policy_xai.robot.sim import Simulation
    from policy_xai.states.train import scene_state
    from policy_xai.states.two_stage import label_teacher
    from policy_xai.training import make_teacher

    with Simulation("door", image_size=(64, 64), seed=0, render=False) as sim:
        ex = make_teacher(sim)
        obs = sim.reset(0)
        for _ in range(60):
            obs = sim.step(ex.act(obs.joint_position, obs.joint_velocity, sim.target_position))
        s = scene_state(sim)
        assert s[3] > 0.05                                   # the door is part open: the angle matters
        want = ex.act(obs.joint_position, obs.joint_velocity, sim.target_position)
        np.testing.assert_allclose(label_teacher(ex, obs.joint_position, obs.joint_velocity, s), want, atol=1e-6)
        other = label_teacher(ex, obs.joint_position, obs.joint_velocity, np.append(s[:3], 0.0))
        assert np.abs(other - want).max() > 1e-3                 # ... and is used, not read from the sim
        np.testing.assert_allclose(ex.act(obs.joint_position, obs.joint_velocity, sim.target_position), want)
    w = share_path("models", "door.safetensors")
    rc, _, err = cli(capsys, "states", "teacher", "--policy", w, "--out", tmp_path / "t.safetensors",
                     "--kind", "two_stage", "--residual")
    assert rc == 2 and "--residual is for --kind direct" in err and len(err.strip().splitlines()) == 1
    rc, _, err = cli(capsys, "states", "teacher", "--policy", w, "--out", tmp_path / "t.safetensors",
                     "--kind", "two_stage", "--scene-from", tmp_path / "missing.safetensors")
    assert rc == 2 and "missing.safetensors" in err and len(err.strip().splitlines()) == 1


def test_a_scene_only_head_reads_the_place_and_stage2_can_be_kept(trained, capsys, tmp_path):
    """fit_scene trains the scene head on the scene loss alone (the torque head is not changed) and reads
    the blob's place; copy_stage2 takes another two-stage network's MLP exactly, and refuses other shapes;
    `--stage2-from`/`--scene-only` with --kind direct and a negative --scene-clean are one-line errors."""
    from policy_xai.states.teacher import TeacherModelError, TeacherNet
    from policy_xai.states.two_stage import TwoStageTeacher, copy_stage2, fit_scene, two_stage_for

    policy, states = trained["policy"], trained["states"]
    torch.manual_seed(0)
    n = 160
    X = torch.from_numpy(states.images[:n]).permute(0, 3, 1, 2).float() / 255.0
    C = torch.from_numpy(states.configs[:n])
    S = torch.from_numpy(np.column_stack([trained["xy"][:n], np.zeros(n)]).astype(np.float32))
    net = TeacherNet(3, SIZE, SIZE, 2, joints=2, scene=3, filters=8, hidden=64)
    head0 = net.torque_head.weight.detach().clone()
    hist = fit_scene(net, policy, X, C, S, epochs=30, batch=16, lr=3e-3)
    assert hist[-1] < 0.3 * hist[0], hist
    torch.testing.assert_close(net.torque_head.weight, head0)
    with torch.no_grad():
        s = net(X, C)[1]
    for k in (0, 1):
        assert float(np.corrcoef(s[:, k].numpy(), S[:, k].numpy())[0, 1]) > 0.9
    torch.testing.assert_close(net.torque_limits, policy.torque_limits.float())
    with pytest.raises(TeacherModelError, match="joint_position and joint_velocity"):
        two_stage_for(net, type("S", (), {"group_slices": lambda self: {}, "joint_names": ["a", "b"],
                                          "group_names": ["image"]})())
    # stage 2 kept from another two-stage network: the same torques at every (q, v, s)
    src = TwoStageTeacher(net.arch, 0, 2, 2, 3, hidden=32, layers=2)
    with torch.no_grad():
        src.in_mean.normal_()
        src.in_std.uniform_(0.5, 2.0)
    new = TwoStageTeacher(net.arch, 0, 2, 2, 3, hidden=32, layers=2)
    copy_stage2(new, src)
    q, v, sc = torch.randn(6, 2), torch.randn(6, 2), torch.randn(6, 3)
    with torch.no_grad():
        torch.testing.assert_close(new.torques(q, v, sc), src.torques(q, v, sc))
    with pytest.raises(TeacherModelError, match="other shapes"):
        copy_stage2(TwoStageTeacher(net.arch, 0, 2, 2, 3, hidden=16, layers=2), src)
    w = share_path("models", "door.safetensors")
    for extra, msg in ((["--stage2-from", w], "are for --kind two_stage"),
                       (["--kind", "two_stage", "--scene-clean", "-1"], "must be 0 or more")):
        rc, _, err = cli(capsys, "states", "teacher", "--policy", w, "--out", tmp_path / "t.safetensors", *extra)
        assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_the_states_commands_take_their_defaults_from_the_options():
    """states train | find | teacher | validate: every option's default is the library's (states.options)."""
    import argparse
    from dataclasses import fields

    from policy_xai.commands import states as cmd
    from policy_xai.states.options import FindOptions, TeacherOptions, TrainOptions, ValidateOptions

    p = argparse.ArgumentParser()
    cmd.register(p.add_subparsers())
    sub = {"train": TrainOptions, "find": FindOptions, "teacher": TeacherOptions, "validate": ValidateOptions}
    for name, cls in sub.items():
        parser = p._subparsers._group_actions[0].choices["states"]._subparsers._group_actions[0].choices[name]
        dests = {a.dest: a.default for a in parser._actions if a.default is not argparse.SUPPRESS}
        shared = [f.name for f in fields(cls) if f.name in dests and not parser._option_string_actions.get(
            "--" + f.name.replace("_", "-"), argparse.Action([], "")).required]
        assert len(shared) >= 7, (name, shared)
        for f in shared:
            assert str(dests[f]) == str(getattr(cls(), f)), (name, f, dests[f], getattr(cls(), f))
