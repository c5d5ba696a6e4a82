"""The `teacher_gap:max` target: where the policy disagrees with its task's state-feedback teacher.

The teacher (`policy_xai.training.make_teacher`) computes torques from the arm's state (q, v) and
the scene's state (the object's place; for door also the door angle) with IK tables, ramps and
clipping: not differentiable, and a generated observation carries the scene only as pixels. So the
gap is scored by a *teacher network* distilled from the teacher on simulated states:

    TeacherNet(image, configuration) -> (teacher torques tau_T (J), scene state s (K))

a small CNN on the image (4 stride-2 convolutions, 16-32-64-64 filters, ReLU) joined with a 64-unit
layer on the normalised configuration, two 256-unit layers, and two linear heads: the teacher's torques
in units of the torque limits L and the scene state (scene_state: target x y z, door angle) in units
of its spread. With `--residual` the torque head learns r = tau_T - tau, the teacher's torques minus
the policy's, so tau_T = tau + r and the gap is ||r / L|| (a residual network belongs to one policy's
weights: its file stores their sha256). On door it was not more accurate (docs/states.md), so the
default is the direct one. It is trained on frames of the task's simulation at the conditions and at random
places between them, driven by the policy and the teacher mixed per step with exploration noise,
each frame labelled with the true teacher torques and the true scene state. Loss:
mean_j ((tau_T,j - t_j) / L_j)^2 + mean_k ((s_k - s*_k) / sd_k)^2 (t_j the teacher's torques; with
the residual, tau_T,j = tau_j + r_j).

    teacher_gap = || (tau(x, c) - tau_T(x, c)) / L ||_2

(tau the policy's torques), differentiable in (x, c) through both networks. The scene head places
the simulation in a found state's situation (`validate`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..files import network_from_file, read_safetensors
from .options import TeacherOptions  # noqa: F401 - the options live in options.py

FORMAT = "policy_xai_teacher/2"        # metadata "kind": direct (TeacherNet) or two_stage (two_stage.py)
FORMATS_READ = ("policy_xai_teacher/1", FORMAT)   # /1: a TeacherNet, no "kind"
KINDS = ("direct", "two_stage")


class TeacherModelError(ValueError):
    """A teacher-network file that is missing, corrupt or does not fit the policy."""


def scene_names(task: str) -> list:
    """The scene state's entries: the target (x, y, z) and the task's `Task.scene_state` (door: door_angle);
    a task that is not registered: the target only."""
    from ..robot.tasks import TASKS

    t = TASKS.get(task)
    return ["target_x", "target_y", "target_z"] + list(t.scene_state if t is not None else ())


class TeacherNet(nn.Module):
    """(image (B, C, H, W) in [0, 1], raw configuration (B, D)) -> (teacher torques (B, J) in N·m,
    scene state (B, K) raw). Architecture in the module docstring; normalisation stored as buffers."""

    def __init__(self, channels: int = 3, height: int = 64, width: int = 64, config_dim: int = 20,
                 joints: int = 7, scene: int = 4, filters: int = 16, hidden: int = 256, residual: bool = False):
        super().__init__()
        self.arch = {"channels": int(channels), "height": int(height), "width": int(width),
                     "config_dim": int(config_dim), "joints": int(joints), "scene": int(scene),
                     "filters": int(filters), "hidden": int(hidden), "residual": bool(residual)}
        self.residual = bool(residual)
        chans = [filters, 2 * filters, 4 * filters, 4 * filters]
        layers, c = [], channels
        for k in chans:
            layers += [nn.Conv2d(c, k, 4, stride=2, padding=1), nn.ReLU()]
            c = k
        self.conv = nn.Sequential(*layers)
        flat = c * (height // 16) * (width // 16)
        self.cfg = nn.Sequential(nn.Linear(config_dim, 64), nn.ReLU())
        self.trunk = nn.Sequential(nn.Linear(flat + 64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.torque_head = nn.Linear(hidden, joints)
        self.scene_head = nn.Linear(hidden, scene)
        self.register_buffer("config_mean", torch.zeros(config_dim))
        self.register_buffer("config_std", torch.ones(config_dim))
        self.register_buffer("torque_limits", torch.ones(joints))
        self.register_buffer("scene_mean", torch.zeros(scene))
        self.register_buffer("scene_std", torch.ones(scene))
        self.task = ""
        self.policy_sha256 = ""
        self.meta: dict = {}

    def forward(self, image: torch.Tensor, config: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(image).flatten(1)
        cn = (config - self.config_mean) / self.config_std
        h = self.trunk(torch.cat([h, self.cfg(cn)], 1))
        return self.torque_head(h) * self.torque_limits, self.scene_head(h) * self.scene_std + self.scene_mean


def teacher_torques(policy, net: TeacherNet, image: torch.Tensor, config: torch.Tensor) -> torch.Tensor:
    """The teacher's torques as the network predicts them (a residual network adds the policy's)."""
    t = net(image, config)[0]
    return t + policy(image, config) if net.residual else t


def teacher_gap(policy, net: TeacherNet, image: torch.Tensor, config: torch.Tensor) -> torch.Tensor:
    """|| (tau_policy - tau_teacher_net) / L ||_2 per state (B,), L the policy's torque limits (for a
    residual network: || r(x, c) / L ||, the policy's torques cancel)."""
    lim = policy.torque_limits.float()
    if net.residual:
        return (net(image, config)[0] / lim).norm(dim=1)
    return ((policy(image, config) - net(image, config)[0]) / lim).norm(dim=1)


def true_gap(policy, image: torch.Tensor, config: torch.Tensor, teacher_torques: torch.Tensor) -> torch.Tensor:
    """The same gap with the teacher's true torques (simulated states)."""
    with torch.no_grad():
        return ((policy(image, config) - teacher_torques) / policy.torque_limits.float()).norm(dim=1)


# ---- training -----------------------------------------------------------------------------------


def _as_tensors(states):
    X = torch.from_numpy(states.images).permute(0, 3, 1, 2).float() / 255.0
    C = torch.from_numpy(np.asarray(states.configs, np.float32))
    T = torch.from_numpy(np.asarray(states.teacher, np.float32))
    S = torch.from_numpy(np.asarray(states.scene, np.float32))
    return X, C, T, S


def accuracy(net: TeacherNet, policy, X, C, T, S, batch: int = 256) -> dict:
    """On labelled states: torque RMSE (N·m, and in units of the limits), scene RMSE per component,
    and how well the net's gap tracks the true one (Pearson r, RMSE, medians)."""
    net.eval()
    tt, ss, gp, gt = [], [], [], []
    with torch.no_grad():
        for i in range(0, len(X), batch):
            tau_t, sc = net(X[i:i + batch], C[i:i + batch])
            if net.residual:
                tau_t = tau_t + policy(X[i:i + batch], C[i:i + batch])
            tt.append(tau_t)
            ss.append(sc)
            gp.append(teacher_gap(policy, net, X[i:i + batch], C[i:i + batch]))
            gt.append(true_gap(policy, X[i:i + batch], C[i:i + batch], T[i:i + batch]))
    tt, ss, gp, gt = (torch.cat(a) for a in (tt, ss, gp, gt))
    lim = net.torque_limits
    r = float(np.corrcoef(gp.numpy(), gt.numpy())[0, 1]) if len(gp) > 2 else float("nan")
    names = scene_names(net.task) if net.task else [f"s{k}" for k in range(S.shape[1])]
    return {"states": int(len(X)),
            "torque_rmse_nm": float((tt - T).pow(2).mean().sqrt()),
            "torque_rmse_per_limit": float(((tt - T) / lim).pow(2).mean().sqrt()),
            "teacher_torque_rms_per_limit": float((T / lim).pow(2).mean().sqrt()),
            "scene_rmse": {n: float((ss[:, k] - S[:, k]).pow(2).mean().sqrt()) for k, n in enumerate(names)},
            "gap_pearson_r": r, "gap_rmse": float((gp - gt).pow(2).mean().sqrt()),
            "gap_true_median": float(gt.median()), "gap_net_median": float(gp.median())}


def fit_teacher(net: TeacherNet, policy, X, C, T, S, epochs: int = 40, batch: int = 64, lr: float = 1e-3,
                seed: int = 0, log: Callable[[str], None] = lambda s: None) -> list:
    """Fit `net` (normalisation from these states) on labelled states; returns the loss per epoch. A
    residual network learns T - tau_policy."""
    g = torch.Generator().manual_seed(int(seed))
    if net.residual:
        with torch.no_grad():
            T = T - torch.cat([policy(X[i:i + 256], C[i:i + 256]) for i in range(0, len(X), 256)])
    set_normalisation(net, policy, C, S)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    lim = net.torque_limits

    def loss(idx):
        tau_t, sc = net(X[idx], C[idx])
        return (((tau_t - T[idx]) / lim) ** 2).mean() + (((sc - S[idx]) / net.scene_std) ** 2).mean()

    return minibatch_fit(net, len(X), loss, opt, epochs, batch, g, log, every=10)


def set_normalisation(net: TeacherNet, policy, C, S) -> None:
    """A TeacherNet's input and output normalisation from these states, its limits the policy's."""
    with torch.no_grad():
        net.config_mean.copy_(C.mean(0))
        net.config_std.copy_(C.std(0).clamp_min(1e-2) if len(C) > 1 else torch.ones(C.shape[1]))
        net.torque_limits.copy_(policy.torque_limits.float())
        net.scene_mean.copy_(S.mean(0))
        net.scene_std.copy_(S.std(0).clamp_min(1e-3) if len(S) > 1 else torch.ones(S.shape[1]))


def minibatch_fit(net: nn.Module, n: int, loss_of: Callable, opt, epochs: int, batch: int, g: torch.Generator,
                  log: Callable[[str], None], every: int = 5, label: str = "epoch", sched=None,
                  train: Optional[nn.Module] = None) -> list:
    """`epochs` passes over n states in shuffled minibatches (loss_of(indices) -> scalar loss), one
    optimiser (and scheduler) step each; `train` (default net) in train mode meanwhile, `net` in eval
    mode after. Returns the mean loss per epoch (logged every `every` epochs and at the end)."""
    hist = []
    for ep in range(int(epochs)):
        (train or net).train()
        order = torch.randperm(n, generator=g)
        tot, nb = 0.0, 0
        for i in range(0, n, int(batch)):
            loss = loss_of(order[i:i + int(batch)])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            tot += float(loss.detach())
            nb += 1
        hist.append(tot / max(nb, 1))
        if (ep + 1) % every == 0 or ep + 1 == int(epochs):
            log(f"{label} {ep + 1}/{epochs}: loss {hist[-1]:.5f}")
    net.eval()
    return hist


def teacher_net_for(spec, task: str, residual: bool = False, filters: int = 16) -> TeacherNet:
    if spec.image_height % 16 or spec.image_width % 16:
        raise TeacherModelError(f"the teacher network needs an image divisible by 16, the policy takes "
                                f"{spec.image_height}x{spec.image_width}")
    return TeacherNet(spec.image_channels, spec.image_height, spec.image_width, spec.config_dim,
                      len(spec.joint_names), len(scene_names(task)), filters=filters, residual=residual)


def train_teacher(opt: TeacherOptions, log: Callable[[str], None] = print) -> dict:
    """Collect labelled simulated states of opt.task, fit a TeacherNet, measure it on held-out episodes
    and save it to opt.out (never over an existing file)."""
    from ..resolve import trained_policy
    from ..robot.tasks import task_names
    from .train import default_task, rollout_states

    if not opt.out:
        raise ValueError("an output file is needed (--out)")
    if Path(opt.out).exists():
        raise FileExistsError(f"{opt.out} exists; choose another --out")
    task = opt.task or default_task(opt.policy)
    if opt.kind not in KINDS:
        raise TeacherModelError(f"unknown teacher network kind {opt.kind!r}; choose from {', '.join(KINDS)}")
    if task not in task_names():
        raise TeacherModelError(f"task {task or '(none)'!r} has no state-feedback teacher; teacher_gap needs one of "
                                f"{', '.join(task_names())}")
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, int(opt.threads)))
    torch.manual_seed(int(opt.seed))
    try:
        policy, policy_path = trained_policy(opt.policy, label="--policy")
        for p in policy.parameters():
            p.requires_grad_(False)
        policy.eval()
        if opt.kind == "two_stage":
            from .two_stage import train_two_stage

            return train_two_stage(opt, policy, task, log)
        t0 = time.perf_counter()
        states = rollout_states(task, policy, opt.episodes, opt.every, opt.epsilon, opt.torque_noise, opt.seed,
                                region=opt.region, beta=opt.beta)
        t_roll = time.perf_counter() - t0
        X, C, T, S = _as_tensors(states)
        log(f"{len(X)} labelled states from rollouts of {task} in {t_roll:.1f} s")
        # hold out whole episodes (consecutive states of one episode are near-duplicates)
        per_ep = int(np.ceil(get_horizon(task) / opt.every))
        n_ep = len(X) // per_ep
        g = np.random.default_rng(opt.seed)
        n_held = max(1, int(round(opt.holdout * n_ep)))
        held = set(g.choice(n_ep, n_held, replace=False).tolist()) if n_ep > 1 else set()
        ep_of = np.arange(len(X)) // per_ep
        hmask = torch.from_numpy(np.isin(ep_of, list(held)))
        tr, ho = ~hmask, hmask
        net = teacher_net_for(policy.spec, task, opt.residual)
        net.task = task
        if opt.residual:
            from ..files import file_sha256

            net.policy_sha256 = file_sha256(policy_path)
        t1 = time.perf_counter()
        hist = fit_teacher(net, policy, X[tr], C[tr], T[tr], S[tr], opt.epochs, opt.batch, opt.lr, opt.seed, log)
        t_fit = time.perf_counter() - t1
        res = {"task": task, "states": int(len(X)), "train_states": int(tr.sum()), "held_out_states": int(ho.sum()),
               "held_out_episodes": len(held), "rollout_s": round(t_roll, 1), "fit_s": round(t_fit, 1),
               "loss": [round(v, 6) for v in hist], "source": states.source,
               "train": accuracy(net, policy, X[tr], C[tr], T[tr], S[tr]),
               "held_out": accuracy(net, policy, X[ho], C[ho], T[ho], S[ho]) if int(ho.sum()) > 2 else {},
               "options": {k: getattr(opt, k) for k in TeacherOptions.__dataclass_fields__}}
        net.meta = res
        save_teacher(net, opt.out)
        res["file"] = str(opt.out)
        return res
    finally:
        torch.set_num_threads(prev)


def get_horizon(task: str) -> int:
    from ..robot.tasks import get_task

    return get_task(task).horizon


# ---- files --------------------------------------------------------------------------------------
def save_teacher(net: TeacherNet, path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "kind": getattr(net, "kind", "direct"), "arch": json.dumps(net.arch, sort_keys=True),
            "task": net.task,
            "policy_sha256": net.policy_sha256,
            "meta": json.dumps(net.meta, sort_keys=True, default=str)}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_teacher(path, spec=None, policy_path=None):
    """Load a teacher network (a TeacherNet, or a TwoStageTeacher for kind two_stage); with `spec` check
    it takes that policy's observations and joints, with `policy_path` that a residual network was
    trained for that weights file."""
    path = Path(path)
    meta, state = read_safetensors(path, TeacherModelError, "teacher network")
    if meta.get("format") not in FORMATS_READ or "arch" not in meta:
        raise TeacherModelError(f"{path}: not a policy_xai teacher network (format {meta.get('format')!r})")
    kind = meta.get("kind", "direct")
    if kind not in KINDS:
        raise TeacherModelError(f"{path}: unknown teacher network kind {kind!r} (known: {', '.join(KINDS)})")
    if kind == "two_stage":
        from .two_stage import TwoStageTeacher

        net, arch = network_from_file(path, meta, state, TwoStageTeacher, TeacherModelError)
        arch = dict(arch["scene_arch"], joints=arch["joints"])
    else:
        net, arch = network_from_file(path, meta, state, TeacherNet, TeacherModelError)
    if spec is not None:
        want = (spec.image_channels, spec.image_height, spec.image_width, spec.config_dim, len(spec.joint_names))
        got = (arch["channels"], arch["height"], arch["width"], arch["config_dim"], arch["joints"])
        if want != got:
            raise TeacherModelError(f"{path}: takes {got[1]}x{got[2]}x{got[0]} images, {got[3]} configuration values "
                                    f"and {got[4]} joints; the policy: {want[1]}x{want[2]}x{want[0]}, {want[3]}, "
                                    f"{want[4]}")
    net.task = meta.get("task", "")
    net.policy_sha256 = meta.get("policy_sha256", "")
    if policy_path is not None and net.residual:
        from ..files import file_sha256

        if file_sha256(policy_path) != net.policy_sha256:
            raise TeacherModelError(f"{path}: a residual teacher network of other policy weights (sha256 "
                                    f"{net.policy_sha256[:12]}...), not of {Path(policy_path).name}; make one with "
                                    "`policy-xai states teacher`")
    net.meta = json.loads(meta.get("meta", "{}"))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
