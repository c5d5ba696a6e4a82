"""A two-stage teacher network (`policy-xai states teacher --kind two_stage`).

The task's teacher (`policy_xai.training.make_teacher`) is a function of the arm's (q, v) and the
scene's state s (scene_state: target x y z, for door the door angle), all low-dimensional. Only s
has to be read from the image. So:

    stage 1  s = scene head of a TeacherNet (image, configuration)      (trained on rendered frames)
    stage 2  tau_T = L * MLP((q, v, s) normalised)                     (trained on sampled states)

q and v are the configuration's joint_position and joint_velocity groups (raw). Stage 2 needs no
rendering: its labels are the true teacher called directly on (q, v, s) (`label_teacher`, the
door angle passed in instead of read from the simulation), so it is fit on 10^5+ states: the states
of rollouts (the policy and the teacher driving, with exploration, at random places between the
conditions) and perturbed copies of them (q, v, door angle, and per episode the target, jittered).
Loss: mean_j ((tau_T,j - t_j) / L_j)^2. The gap || (tau(x, c) - tau_T(x, c)) / L || stays
differentiable in (x, c) through the policy, the scene head and the MLP.

Stage 1 is taken from a teacher-network file (`scene_from`) or fit here on rendered rollouts; with
`scene_only` (`fit_scene`) on the scene loss alone, mean_k ((s_k - s*_k) / sd_k)^2, with a cosine
learning-rate decay, optionally wider (`scene_filters`) and on extra rollouts without exploration
(`scene_clean`). The head sees only the image and the configuration; the simulator's state is only
its label. `stage2_from` keeps the MLP of an existing two-stage file, so a new scene head can be
compared with the same stage 2.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from .teacher import TeacherNet, minibatch_fit, set_normalisation


class TwoStageTeacher(nn.Module):
    """(image (B, C, H, W) in [0, 1], raw configuration (B, D)) -> (teacher torques (B, J) N·m, scene
    state (B, K) raw), as TeacherNet; the torques from an MLP over (q, v, scene)."""

    def __init__(self, scene_arch: dict, q_start: int = 0, v_start: int = 7, joints: int = 7, scene: int = 4,
                 hidden: int = 256, layers: int = 3):
        super().__init__()
        self.arch = {"scene_arch": dict(scene_arch), "q_start": int(q_start), "v_start": int(v_start),
                     "joints": int(joints), "scene": int(scene), "hidden": int(hidden), "layers": int(layers)}
        self.kind = "two_stage"
        self.residual = False
        self.scene_net = TeacherNet(**scene_arch)
        n_in, mods = 2 * int(joints) + int(scene), []
        for _ in range(int(layers)):
            mods += [nn.Linear(n_in, hidden), nn.SiLU()]
            n_in = hidden
        self.mlp = nn.Sequential(*mods, nn.Linear(n_in, joints))
        self.register_buffer("in_mean", torch.zeros(2 * joints + scene))
        self.register_buffer("in_std", torch.ones(2 * joints + scene))
        self.register_buffer("torque_limits", torch.ones(joints))
        self.task = ""
        self.policy_sha256 = ""
        self.meta: dict = {}

    def qv(self, config: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        J, a, b = self.arch["joints"], self.arch["q_start"], self.arch["v_start"]
        return config[:, a:a + J], config[:, b:b + J]

    def torques(self, q: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Stage 2: the teacher's torques (N·m) at arm state (q, v) and scene state s."""
        x = (torch.cat([q, v, s], 1) - self.in_mean) / self.in_std
        return self.mlp(x) * self.torque_limits

    def forward(self, image: torch.Tensor, config: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.scene_net(image, config)[1]
        q, v = self.qv(config)
        return self.torques(q, v, s), s


def two_stage_for(scene_net: TeacherNet, spec, hidden: int = 256, layers: int = 3) -> TwoStageTeacher:
    """A TwoStageTeacher around a (trained) TeacherNet's scene head, for a policy of this spec (its
    configuration must hold joint_position and joint_velocity)."""
    from .teacher import TeacherModelError

    sl = spec.group_slices()
    if "joint_position" not in sl or "joint_velocity" not in sl:
        raise TeacherModelError("the two-stage teacher network needs joint_position and joint_velocity in the "
                                f"policy's configuration (it has {', '.join(spec.group_names)})")
    net = TwoStageTeacher(scene_net.arch, sl["joint_position"].start, sl["joint_velocity"].start,
                          len(spec.joint_names), scene_net.arch["scene"], hidden, layers)
    net.scene_net.load_state_dict(scene_net.state_dict())
    net.task = scene_net.task
    return net


# ---- labels without rendering ---------------------------------------------------------------------
def label_teacher(expert, q, v, scene) -> np.ndarray:
    """The true teacher's torques at (q, v) and scene state (target xyz[, door angle]), without a
    simulator state: for door the angle is passed in instead of read from the simulation."""
    scene = np.asarray(scene, float)
    if len(scene) > 3:
        ang = float(scene[3])
        expert.door_angle = lambda: ang          # instance attribute: shadows the method for this call
        try:
            return expert.act(np.asarray(q, float), np.asarray(v, float), scene[:3])
        finally:
            del expert.door_angle
    return expert.act(np.asarray(q, float), np.asarray(v, float), scene[:3])


def sample_states(task: str, policy, policy_episodes: int = 60, teacher_episodes: int = 300, copies: int = 2,
                  region: float = 0.9, beta: float = 0.3, clean: float = 0.4, epsilon: float = 0.05,
                  torque_noise: float = 0.1,
                  q_sigma: float = 0.03, v_sigma: float = 0.2, angle_sigma: float = 0.05, target_sigma: float = 0.006,
                  seed: int = 0, log: Callable[[str], None] = lambda s: None) -> dict:
    """Labelled (q, v, scene) -> teacher torques: the states of rollouts (`policy_episodes` with the
    policy driving, mixed with the teacher with probability `beta` per step, rendered; `teacher_episodes`
    with the teacher driving, physics only; both with exploration as in rollout_states, except a share
    `clean` of the episodes without any (the driver's own states, e.g. at rest with the door open; on
    door a clean policy episode spends most of its steps there); a share `region` at random reachable
    places, else at a random condition), plus `copies` perturbed copies of each (q + N(0, q_sigma) rad,
    v + N(0, v_sigma x the episode's |v| spread), door angle + N(0, angle_sigma) (not below -0.1 rad: the
    door can be pushed past closed),
    the target jittered by N(0, target_sigma) m in x and y once per episode and copy). Returns arrays
    Q, V, S, T and `episode` (index per state, for holding out whole episodes)."""
    from ..robot.sim import Simulation
    from ..training import GROUPS, make_teacher, reachable_region_target
    from .train import scene_state

    rng = np.random.default_rng(seed)
    spec = policy.spec
    Q, V, S, T, E = [], [], [], [], []
    t0 = time.perf_counter()
    for kind, n_ep in (("policy", policy_episodes), ("teacher", teacher_episodes)):
        sim = Simulation(task, image_size=(spec.image_height, spec.image_width), seed=seed, render=kind == "policy")
        try:
            expert = make_teacher(sim)
            lim = np.asarray(sim.torque_limits, float)
            for ep in range(int(n_ep)):
                obs = sim.reset(int(rng.integers(len(sim.conditions))), noise=0.05)
                if rng.random() < region:
                    t = reachable_region_target(sim.task, rng, expert.reachable)
                    if t is not None:
                        sim.set_target(t)
                        obs = sim.observation()
                ou = np.zeros(sim.n_joints)
                quiet = rng.random() < clean
                eq, ev, es = [], [], []
                for _ in range(sim.task.horizon):
                    q, v, s = obs.joint_position.copy(), obs.joint_velocity.copy(), scene_state(sim).astype(float)
                    lab = expert.act(q, v, sim.target_position)
                    eq.append(q)
                    ev.append(v)
                    es.append(s)
                    Q.append(q)
                    V.append(v)
                    S.append(s)
                    T.append(lab)
                    if quiet:
                        tau = lab if kind == "teacher" else policy.act(obs.image, obs.config(GROUPS))
                    elif rng.random() < epsilon:
                        tau = rng.uniform(-lim, lim)
                    else:
                        ou = 0.8 * ou + 0.2 * rng.normal(0.0, 1.0, sim.n_joints)
                        use_t = kind == "teacher" or rng.random() < beta
                        base = lab if use_t else policy.act(obs.image, obs.config(GROUPS))
                        tau = np.clip(base + torque_noise * lim * ou * 2.0, -lim, lim)
                    obs = sim.step(tau)
                ep_id = ep if kind == "policy" else int(policy_episodes) + ep
                E += [ep_id] * len(eq)
                eq, ev, es = np.array(eq), np.array(ev), np.array(es)
                v_sd = np.maximum(np.abs(ev).std(0), 1e-3)
                for _ in range(int(copies)):
                    dt = np.zeros(es.shape[1])
                    dt[:2] = rng.normal(0.0, target_sigma, 2)
                    cand = es[0, :3] + dt[:3]
                    if not expert.reachable(cand):
                        dt[:] = 0.0
                    for k in range(len(eq)):
                        q = np.clip(eq[k] + rng.normal(0.0, q_sigma, len(eq[k])), sim.model.lower, sim.model.upper)
                        v = ev[k] + rng.normal(0.0, 1.0, len(ev[k])) * v_sigma * v_sd
                        s = es[k] + dt
                        if len(s) > 3:
                            s[3] = max(-0.1, s[3] + rng.normal(0.0, angle_sigma))
                        Q.append(q)
                        V.append(v)
                        S.append(s)
                        T.append(label_teacher(expert, q, v, s))
                        E.append(ep_id)
                if (ep + 1) % 50 == 0:
                    log(f"{kind} episodes {ep + 1}/{n_ep}: {len(Q)} labelled states, {time.perf_counter() - t0:.0f} s")
        finally:
            sim.close()
    f = np.float32
    return {"Q": np.asarray(Q, f), "V": np.asarray(V, f), "S": np.asarray(S, f), "T": np.asarray(T, f),
            "episode": np.asarray(E, np.int64), "seconds": round(time.perf_counter() - t0, 1)}


def fit_torques(net: TwoStageTeacher, Q, V, S, T, epochs: int = 30, batch: int = 512, lr: float = 2e-3,
                seed: int = 0, log: Callable[[str], None] = lambda s: None) -> list:
    """Fit stage 2 (normalisation from these states; torque_limits must be set); the scene head is not
    changed. Adam with a cosine learning-rate decay; returns the loss per epoch."""
    Q, V, S, T = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (Q, V, S, T))
    g = torch.Generator().manual_seed(int(seed))
    X = torch.cat([Q, V, S], 1)
    with torch.no_grad():
        net.in_mean.copy_(X.mean(0))
        net.in_std.copy_(X.std(0).clamp_min(1e-3) if len(X) > 1 else torch.ones(X.shape[1]))
    opt = torch.optim.Adam(net.mlp.parameters(), lr=lr)
    steps = max(1, int(epochs) * ((len(X) + int(batch) - 1) // int(batch)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    lim = net.torque_limits

    def loss(idx):
        return (((net.torques(Q[idx], V[idx], S[idx]) - T[idx]) / lim) ** 2).mean()

    return minibatch_fit(net, len(X), loss, opt, epochs, batch, g, log, sched=sched, train=net.mlp)


def fit_scene(net: TeacherNet, policy, X, C, S, epochs: int = 40, batch: int = 64, lr: float = 1e-3,
              seed: int = 0, log: Callable[[str], None] = lambda s: None) -> list:
    """Fit a TeacherNet's scene head (and the trunk under it) on the scene loss only,
    mean_k ((s_k - s*_k) / sd_k)^2, normalisation from these states, Adam with a cosine learning-rate
    decay; the torque head is left untrained (stage 2 replaces it). Returns the loss per epoch."""
    g = torch.Generator().manual_seed(int(seed))
    set_normalisation(net, policy, C, S)
    params = [p for n, p in net.named_parameters() if not n.startswith("torque_head")]
    opt = torch.optim.Adam(params, lr=lr)
    steps = max(1, int(epochs) * ((len(X) + int(batch) - 1) // int(batch)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)

    def loss(idx):
        return (((net(X[idx], C[idx])[1] - S[idx]) / net.scene_std) ** 2).mean()

    return minibatch_fit(net, len(X), loss, opt, epochs, batch, g, log, label="scene epoch", sched=sched)


def copy_stage2(net: TwoStageTeacher, src: TwoStageTeacher) -> None:
    """Take stage 2 (the MLP and its input normalisation) of another two-stage network."""
    from .teacher import TeacherModelError

    if (src.arch["joints"], src.arch["scene"], src.arch["hidden"], src.arch["layers"]) != (
            net.arch["joints"], net.arch["scene"], net.arch["hidden"], net.arch["layers"]):
        raise TeacherModelError("--stage2-from: its MLP has other shapes than this network's")
    with torch.no_grad():
        net.mlp.load_state_dict(src.mlp.state_dict())
        net.in_mean.copy_(src.in_mean)
        net.in_std.copy_(src.in_std)


def torque_accuracy(net: TwoStageTeacher, Q, V, S, T) -> dict:
    """Stage 2 alone on labelled (q, v, true scene) states: torque RMSE in units of the limits."""
    Q, V, S, T = (torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (Q, V, S, T))
    with torch.no_grad():
        P = torch.cat([net.torques(Q[i:i + 4096], V[i:i + 4096], S[i:i + 4096]) for i in range(0, len(Q), 4096)])
    lim = net.torque_limits
    return {"states": int(len(Q)), "torque_rmse_per_limit": float(((P - T) / lim).pow(2).mean().sqrt()),
            "teacher_torque_rms_per_limit": float((T / lim).pow(2).mean().sqrt())}


def train_two_stage(opt, policy, task: str, log: Callable[[str], None] = print) -> dict:
    """`states teacher --kind two_stage` (opt: TeacherOptions): the scene head from opt.scene_from or
    fit here on rendered rollouts (opt.episodes, as the direct network), stage 2 on sampled states
    (held out: 15 % of the sampled episodes), measured end to end on rendered held-out episodes (a
    rollout_states run with seed opt.seed + 1, opt.holdout x opt.episodes per condition, at least 1);
    saved to opt.out."""
    from .teacher import TeacherModelError, _as_tensors, accuracy, load_teacher, save_teacher
    from .train import rollout_states

    t0 = time.perf_counter()
    scene_meta: dict = {}
    if opt.scene_from:
        src = load_teacher(opt.scene_from, policy.spec)
        scene = src.scene_net if isinstance(src, TwoStageTeacher) else src
        if src.task and src.task != task:
            raise TeacherModelError(f"{opt.scene_from}: a teacher network of task {src.task!r}, not {task!r}")
        scene_meta = {"from": str(opt.scene_from), "held_out": src.meta.get("held_out", {})}
    else:
        scene, scene_meta = _fit_own_scene(opt, policy, task, log)
    scene_meta["s"] = round(time.perf_counter() - t0, 1)
    net = two_stage_for(scene, policy.spec)
    net.task = task
    with torch.no_grad():
        net.torque_limits.copy_(policy.torque_limits.float())
    if opt.stage2_from:
        src = load_teacher(opt.stage2_from, policy.spec)
        if not isinstance(src, TwoStageTeacher):
            raise TeacherModelError(f"{opt.stage2_from}: not a two-stage teacher network (--stage2-from)")
        copy_stage2(net, src)
        d, tr, ho, hist, t_sample, t_fit = None, np.zeros(0, bool), np.zeros(0, bool), [], 0.0, 0.0
        stage2 = dict(src.meta.get("stage2_held_out", {}), **{"from": str(opt.stage2_from)})
    else:
        t1 = time.perf_counter()
        d = sample_states(task, policy, opt.policy_episodes, opt.teacher_episodes, opt.copies, region=opt.region,
                          epsilon=opt.epsilon, torque_noise=opt.torque_noise, seed=opt.seed, log=log)
        t_sample = time.perf_counter() - t1
        log(f"{len(d['Q'])} labelled (q, v, scene) states in {t_sample:.1f} s")
        eps = np.unique(d["episode"])
        g = np.random.default_rng(opt.seed)
        held = g.choice(eps, max(1, int(round(opt.holdout * len(eps)))), replace=False) if len(eps) > 1 else []
        ho = np.isin(d["episode"], held)
        tr = ~ho if ho.any() and (~ho).any() else np.ones(len(ho), bool)
        t2 = time.perf_counter()
        hist = fit_torques(net, d["Q"][tr], d["V"][tr], d["S"][tr], d["T"][tr], opt.mlp_epochs, seed=opt.seed,
                           log=log)
        t_fit = time.perf_counter() - t2
        stage2 = torque_accuracy(net, d["Q"][ho], d["V"][ho], d["S"][ho], d["T"][ho]) if ho.any() else {}
    n_ho = int(opt.holdout_episodes) or max(1, int(round(opt.holdout * opt.episodes)))
    st = rollout_states(task, policy, n_ho, opt.every, opt.epsilon, opt.torque_noise, opt.seed + 1,
                        region=opt.region, beta=opt.beta)
    X, C, T, S = _as_tensors(st)
    res = {"task": task, "kind": "two_stage", "scene_head": scene_meta, "states": int(len(d["Q"])) if d else 0,
           "train_states": int(tr.sum()), "held_out_states": int(len(X)), "held_out_episodes": int(len(X) // max(
               1, int(np.ceil(policy_horizon(task) / opt.every)))), "sample_s": round(t_sample, 1),
           "fit_s": round(t_fit, 1), "loss": [round(v, 6) for v in hist],
           "stage2_held_out": stage2,
           "held_out": accuracy(net, policy, X, C, T, S),
           "options": {k: getattr(opt, k) for k in type(opt).__dataclass_fields__}}
    net.meta = res
    save_teacher(net, opt.out)
    res["file"] = str(opt.out)
    res["rollout_s"] = res["sample_s"]
    res["train"] = res["held_out"]
    return res


def _fit_own_scene(opt, policy, task: str, log) -> tuple:
    """Stage 1 fit here on rendered rollouts (opt.episodes per condition as the direct network's, plus
    opt.scene_clean per condition without exploration or teacher steps): with opt.scene_only on the
    scene loss alone (fit_scene), else as the direct network (fit_teacher)."""
    from .teacher import _as_tensors, fit_teacher, teacher_net_for
    from .train import rollout_states

    t0 = time.perf_counter()
    st = rollout_states(task, policy, opt.episodes, opt.every, opt.epsilon, opt.torque_noise, opt.seed,
                        region=opt.region, beta=opt.beta)
    X, C, T, S = _as_tensors(st)
    if opt.scene_clean:
        cl = rollout_states(task, policy, opt.scene_clean, opt.every, 0.0, 0.0, opt.seed + 7, region=opt.region)
        X2, C2, T2, S2 = _as_tensors(cl)
        X, C, T, S = torch.cat([X, X2]), torch.cat([C, C2]), torch.cat([T, T2]), torch.cat([S, S2])
    rollout_s = time.perf_counter() - t0
    scene = teacher_net_for(policy.spec, task, filters=opt.scene_filters)
    scene.task = task
    log(f"scene head: {len(X)} rendered states")
    t1 = time.perf_counter()
    if opt.scene_only:
        hist = fit_scene(scene, policy, X, C, S, opt.epochs, opt.batch, opt.lr, opt.seed, log)
    else:
        hist = fit_teacher(scene, policy, X, C, T, S, opt.epochs, opt.batch, opt.lr, opt.seed, log)
    return scene, {"states": int(len(X)), "rollout_s": round(rollout_s, 1), "epochs": int(opt.epochs),
                   "scene_only": bool(opt.scene_only),
                   "filters": int(opt.scene_filters), "clean_episodes": int(opt.scene_clean),
                   "fit_s": round(time.perf_counter() - t1, 1), "loss": [round(v, 6) for v in hist]}


def policy_horizon(task: str) -> int:
    from ..robot.tasks import get_task

    return get_task(task).horizon
