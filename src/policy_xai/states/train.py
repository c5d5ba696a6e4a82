"""Training the state model (`policy-xai states train`).

Training states: rollouts of the policy in the task's MuJoCo simulation with exploration noise (the
paper's agent is epsilon-greedy: here each step's torques are, with probability `epsilon`, uniform
random within the limits, else the policy's plus smooth noise of `torque_noise` x the limits), or
the observations of a rosbag recording.

Loss per state (x image in [0, 1], c the normalised configuration, (x', c') the reconstruction from a
sample of q(z | x, c), tau the policy's raw torques, L the torque limits):

    attentive reconstruction  mean_{pixels, channels} (1 + M(x)) (x' - x)^2 + w_c mean (c' - c)^2
                              (w_c: config_weight, default 1)
    perception                mean_j ((tau_j(x', c') - tau_j(x, c)) / sigma_j)^2    (weight `perception`)
    KL                        KL(q(z | x, c) || N(0, I)) / (C H W)                   (weight `kl`)
    scene (optional)          mean_k ((s_k(x', c') - s_k(x, c)) / rho_k)^2           (weight `scene_weight`)

The scene term is a second agent-perception term, for the task's teacher network (`scene_teacher`,
a `states teacher` file): s(x, c) is the scene state its scene head reads from an observation (the
door's place and angle), rho_k its spread over the training states (at least 1e-3). Without it a
state model's reconstructions can keep the policy's torques and lose the scene: the door state
model trained without it shows the door about 30-40 mm and 0.4 rad from where the scene head reads
it in the originals (docs/states.md), too far for a search to reach a place such as door's mid13.

sigma_j is the spread of the policy's torque j over the training states (their standard deviation,
at least 1e-3 x its limit), so the term is on the scale of the torques the policy really commands.
M(x) is the policy's own image relevance for the state (method `attention`, default `gbp` as in the
paper; any of policy_xai's methods), |R| summed over channels, blurred with a 5 x 5 box filter and
scaled to mean 1 per image, so the reconstruction is weighted towards what drives the torques.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .model import StateVAE, kl_divergence, state_model_for
from .options import TrainOptions  # noqa: F401 - the options live in options.py


@dataclass
class TrainingStates:
    images: np.ndarray        # (N, H, W, 3) uint8
    configs: np.ndarray       # (N, D) raw
    targets: Optional[np.ndarray] = None   # (N, 3) task object position (rollouts only; for measuring)
    teacher: Optional[np.ndarray] = None   # (N, J) the task's state-feedback teacher torques (rollouts)
    source: str = ""
    scene: Optional[np.ndarray] = None     # (N, K) what the teacher needs besides (q, v): see scene_state
    episode: Optional[np.ndarray] = None   # (N,) the rollout each state is from (rollouts only), in order


def scene_state(sim) -> np.ndarray:
    """What the task's teacher needs besides the arm's (q, v): the target (the object's place, x y z)
    and the task's `Task.scene_state` measurements (door: the door angle, rad)."""
    t = np.asarray(sim.target_position, np.float32)
    if sim.task.scene_state:
        m = sim.measure()
        return np.append(t, [np.float32(m[k]) for k in sim.task.scene_state]).astype(np.float32)
    return t


def rollout_states(task: str, policy, episodes: int = 6, every: int = 1, epsilon: float = 0.1,
                   torque_noise: float = 0.1, seed: int = 0, progress: Optional[Callable[[int, int], None]] = None,
                   region: float = 0.0, beta: float = 0.0) -> TrainingStates:
    """States the policy visits in `task`: `episodes` per condition, exploration as in the module
    docstring, every `every`-th step kept, labelled with the task's teacher torques and the scene state
    (scene_state). `region`: the share of episodes at a random (reachable) place in the region the
    conditions span instead of the condition's (training.region_target); `beta`: the probability per
    step that the teacher's torque (plus the same noise) is executed instead of the policy's."""
    from ..robot.sim import Simulation
    from ..training import GROUPS, make_teacher, reachable_region_target

    spec = policy.spec
    rng = np.random.default_rng(seed)
    sim = Simulation(task, image_size=(spec.image_height, spec.image_width), seed=seed)
    try:
        teacher = make_teacher(sim)
        lim = np.asarray(sim.torque_limits, float)
        imgs, cfgs, tgts, labels, scenes, eps = [], [], [], [], [], []
        n_cond = len(sim.conditions)
        total, done = int(episodes) * n_cond, 0
        for _ in range(int(episodes)):
            for cond in range(n_cond):
                obs = sim.reset(cond, noise=0.05)
                if region > 0 and rng.random() < region:
                    t = reachable_region_target(sim.task, rng, teacher.reachable)
                    if t is not None:
                        sim.set_target(t)
                        obs = sim.observation()
                ou = np.zeros(sim.n_joints)
                for k in range(sim.task.horizon):
                    cfg = obs.config(GROUPS)
                    tgt = sim.target_position
                    keep = k % every == 0
                    use_teacher = beta > 0 and rng.random() < beta
                    label = teacher.act(obs.joint_position, obs.joint_velocity, tgt) if keep or use_teacher else None
                    if keep:
                        imgs.append(obs.image)
                        cfgs.append(cfg)
                        tgts.append(np.asarray(tgt, np.float32))
                        labels.append(label)
                        scenes.append(scene_state(sim))
                        eps.append(done)
                    if rng.random() < epsilon:
                        tau = rng.uniform(-lim, lim)
                    else:
                        ou = 0.8 * ou + 0.2 * rng.normal(0.0, 1.0, sim.n_joints)
                        base = label if use_teacher else policy.act(obs.image, cfg)
                        tau = np.clip(base + torque_noise * lim * ou * 2.0, -lim, lim)
                    obs = sim.step(tau)
                done += 1
                if progress:
                    progress(done, total)
    finally:
        sim.close()
    return TrainingStates(np.stack(imgs).astype(np.uint8), np.stack(cfgs).astype(np.float32),
                          np.stack(tgts).astype(np.float32), np.stack(labels).astype(np.float32),
                          f"rollouts of {task}: {episodes} episode(s) per condition, epsilon {epsilon}, "
                          f"torque noise {torque_noise}, region {region}, teacher share {beta}, seed {seed}",
                          np.stack(scenes).astype(np.float32), np.asarray(eps, np.int64))


def bag_states(bag: str, policy) -> TrainingStates:
    """The observations of a rosbag recording (default topics; see `policy-xai analyze`)."""
    from .. import bags

    opts = bags.ReadOptions(bags.default_topics(), resize=True)
    with bags.BagSource(bag) as src:
        obs = bags.read_observations(src, policy.spec, opts)
    if len(obs) == 0:
        raise ValueError(f"{bag}: no observation could be paired (topics: camera image and joint states)")
    return TrainingStates(np.asarray(obs.images, np.uint8), np.asarray(obs.configs, np.float32),
                          source=f"bag {bag}: {len(obs)} observations")


def attention_weights(policy, images: torch.Tensor, configs: torch.Tensor, method: str = "gbp",
                      batch: int = 64) -> torch.Tensor:
    """(N, H, W) pixel weights 1 + M(x) of the attentive term (module docstring); ones for "none"."""
    N, _, H, W = images.shape
    if method == "none":
        return torch.ones(N, H, W)
    from ..attribution import explain

    out = []
    for i in range(0, N, batch):
        e = explain(policy, images[i:i + batch], configs[i:i + batch], method=method)
        m = e.image.abs().float()
        if m.dim() == 4:
            m = m.sum(1)
        m = F.avg_pool2d(m.unsqueeze(1), 5, stride=1, padding=2, count_include_pad=False)[:, 0]
        mean = m.flatten(1).mean(1).clamp_min(1e-12).view(-1, 1, 1)
        out.append(1.0 + m / mean)
    return torch.cat(out)


@dataclass
class Losses:
    reconstruction: float
    config: float
    perception: float
    kl: float
    total: float
    scene: float = 0.0


def _terms(model: StateVAE, policy, x, cn, w, tau, lim, opt: TrainOptions, sample: bool = True, scene=None):
    """The loss and its parts; scene: (teacher network, its scene states of the originals, rho) or None."""
    img, cfg, mu, logvar = model(x, cn, sample=sample)
    rec = ((img - x) ** 2 * w.unsqueeze(1)).mean()
    crec = ((cfg - cn) ** 2).mean() if cn.shape[1] else x.new_zeros(())
    raw = cfg * policy.config_std + policy.config_mean
    tau_r = policy(img, raw)
    perc = (((tau_r - tau) / lim) ** 2).mean()
    kl = kl_divergence(mu, logvar).mean() / x[0].numel()
    total = rec + getattr(opt, "config_weight", 1.0) * crec + opt.perception * perc + opt.kl * kl
    sc = x.new_zeros(())
    if scene is not None:
        net, s0, rho = scene
        sc = (((net(img, raw)[1] - s0) / rho) ** 2).mean()
        total = total + opt.scene_weight * sc
    return total, Losses(*(float(t.detach()) for t in (rec, crec, perc, kl, total, sc)))


def scene_states(net, images: torch.Tensor, configs: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """(N, K) the scene states the teacher network's scene head reads from observations (raw configs)."""
    with torch.no_grad():
        return torch.cat([net(images[i:i + batch], configs[i:i + batch])[1] for i in range(0, len(images), batch)])


def measure(model: StateVAE, policy, images: torch.Tensor, configs: torch.Tensor, batch: int = 128,
            scene_net=None) -> dict:
    """Reconstruction from the latent mean: pixel RMSE (0-255 units), configuration RMSE (normalised
    units), and the perception error: RMS and max over states of max_j |tau_j(x', c') - tau_j(x, c)| (N·m);
    with a teacher network `scene_net` also the RMS difference per scene element between what its
    scene head reads from the reconstructions and from the originals (`scene_rmse`, m and rad)."""
    model.eval()
    se, n, cse, errs, sce = 0.0, 0, 0.0, [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x, c = images[i:i + batch], configs[i:i + batch]
            cn = policy.normalise_config(c)
            img, cfg, _, _ = model(x, cn, sample=False)
            se += float(((img - x) * 255.0).pow(2).sum())
            n += x.numel()
            cse += float((cfg - cn).pow(2).sum())
            tau = policy(x, c)
            tau_r = policy(img, cfg * policy.config_std + policy.config_mean)
            errs.append((tau_r - tau).abs().max(1).values)
            if scene_net is not None:
                sce.append(scene_net(img, cfg * policy.config_std + policy.config_mean)[1] - scene_net(x, c)[1])
    e = torch.cat(errs) if errs else torch.zeros(0)
    out = {}
    if sce:
        from .teacher import scene_names

        names = scene_names(scene_net.task) if getattr(scene_net, "task", "") else []
        names = names if len(names) == sce[0].shape[1] else [f"s{k}" for k in range(sce[0].shape[1])]
        rms = torch.cat(sce).pow(2).mean(0).sqrt()
        out["scene_rmse"] = {str(k): float(v) for k, v in zip(names, rms)}
    return out | {"pixel_rmse_255": (se / max(n, 1)) ** 0.5,
            "config_rmse": (cse / max(configs.numel(), 1)) ** 0.5,
            "torque_err_rms_nm": float(e.pow(2).mean().sqrt()) if len(e) else float("nan"),
            "torque_err_max_nm": float(e.max()) if len(e) else float("nan")}


def fit(model: StateVAE, policy, states: TrainingStates, opt: TrainOptions,
        log: Callable[[str], None] = lambda s: None, scene_net=None) -> dict:
    """Train `model` on `states` (a held-out share kept for the measurements); returns what was
    measured before and after training, the losses per epoch and the seconds. scene_net: the teacher
    network of the scene term (module docstring), or None."""
    g = torch.Generator().manual_seed(int(opt.seed))
    for p in policy.parameters():
        p.requires_grad_(False)
    policy.eval()
    X = torch.from_numpy(states.images).permute(0, 3, 1, 2).float() / 255.0
    C = torch.from_numpy(np.asarray(states.configs, np.float32))
    N = len(X)
    perm = torch.randperm(N, generator=g)
    n_hold = int(round(opt.holdout * N)) if N >= 10 else 0
    hold, train = perm[:n_hold], perm[n_hold:]
    t0 = time.perf_counter()
    W = attention_weights(policy, X[train], C[train], opt.attention)
    t_att = time.perf_counter() - t0
    with torch.no_grad():
        TAU = torch.cat([policy(X[train][i:i + 256], C[train][i:i + 256]) for i in range(0, len(train), 256)])
    lim = torch.maximum(TAU.std(0) if len(TAU) > 1 else torch.ones(TAU.shape[1]),
                        1e-3 * policy.torque_limits.float())  # sigma_j (module docstring)
    eval_x, eval_c = (X[hold], C[hold]) if n_hold else (X[train], C[train])
    scene = None
    if scene_net is not None:
        scene_net.eval()
        for p in scene_net.parameters():
            p.requires_grad_(False)
        S0 = scene_states(scene_net, X[train], C[train])
        scene = (scene_net, S0, S0.std(0).clamp_min(1e-3) if len(S0) > 1 else torch.ones(S0.shape[1]))
    before = measure(model, policy, eval_x, eval_c, scene_net=scene_net)
    optim = torch.optim.Adam(model.parameters(), lr=opt.lr)
    history = []
    t1 = time.perf_counter()
    Xt, Ct = X[train], C[train]
    CNt = policy.normalise_config(Ct)
    for epoch in range(int(opt.epochs)):
        model.train()
        order = torch.randperm(len(train), generator=g)
        sums = np.zeros(6)
        batches = 0
        for i in range(0, len(order), int(opt.batch)):
            idx = order[i:i + int(opt.batch)]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            sc = None if scene is None else (scene[0], scene[1][idx], scene[2])
            loss, parts = _terms(model, policy, Xt[idx], CNt[idx], W[idx], TAU[idx], lim, opt, scene=sc)
            optim.zero_grad()
            loss.backward()
            optim.step()
            sums += [parts.reconstruction, parts.config, parts.perception, parts.kl, parts.total, parts.scene]
            batches += 1
        mean = sums / max(batches, 1)
        history.append({"epoch": epoch + 1, "reconstruction": mean[0], "config": mean[1], "perception": mean[2],
                        "kl": mean[3], "total": mean[4]} | ({"scene": mean[5]} if scene else {}))
        log(f"epoch {epoch + 1}/{opt.epochs}: loss {mean[4]:.5f} (reconstruction {mean[0]:.5f}, configuration "
            f"{mean[1]:.4f}, perception {mean[2]:.5f}, KL {mean[3]:.5f}"
            + (f", scene {mean[5]:.4f})" if scene else ")"))
    train_s = time.perf_counter() - t1
    model.eval()
    after = measure(model, policy, eval_x, eval_c, scene_net=scene_net)
    return {"states": int(N), "train_states": int(len(train)), "held_out_states": int(n_hold),
            "attention": opt.attention, "attention_s": round(t_att, 2), "train_s": round(train_s, 2),
            "epochs": int(opt.epochs), "before": before, "after": after, "history": history,
            "source": states.source}


def default_task(policy_path) -> str:
    """The task a policy's weights file is for, by its name (robot.tasks.task_of_weights); "" if none."""
    from ..robot.tasks import task_of_weights

    return task_of_weights(policy_path)


def train_state_model(opt: TrainOptions, log: Callable[[str], None] = print) -> dict:
    """Collect the states, train a StateVAE for opt.policy and save it to opt.out (never over an
    existing file); returns the measurements (also stored in the file)."""
    from ..resolve import trained_policy
    from ..robot.tasks import task_names
    from .model import save_state_model

    if not opt.out:
        raise ValueError("an output file is needed (--out)")
    if Path(opt.out).exists():
        raise FileExistsError(f"{opt.out} exists; choose another --out")
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, int(opt.threads)))
    torch.manual_seed(int(opt.seed))
    try:
        policy, policy_path = trained_policy(opt.policy, label="--policy")
        if opt.bag:
            states = bag_states(opt.bag, policy)
        else:
            task = opt.task or default_task(policy_path)
            if task not in task_names():
                raise ValueError(f"--task {task or '(none)'}: choose one of {', '.join(task_names())} (or give --bag)")
            t0 = time.perf_counter()
            states = rollout_states(task, policy, opt.episodes, opt.every, opt.epsilon, opt.torque_noise, opt.seed,
                                    progress=lambda d, n: log(f"rollouts {d}/{n}") if d == n else None,
                                    region=opt.region)
            log(f"{len(states.images)} states from rollouts of {task} in {time.perf_counter() - t0:.1f} s")
        scene_net = None
        if opt.scene_teacher:
            from .teacher import load_teacher

            scene_net = load_teacher(opt.scene_teacher, policy.spec, policy_path=policy_path)
        model = state_model_for(policy.spec, opt.latent, filters=opt.filters)
        res = fit(model, policy, states, opt, log, scene_net=scene_net)
        res["task"] = opt.task or default_task(policy_path)
        res["options"] = {k: getattr(opt, k) for k in TrainOptions.__dataclass_fields__}
        save_state_model(model, opt.out, policy_path, training=res)
        res["file"] = str(opt.out)
        return res
    finally:
        torch.set_num_threads(prev)
