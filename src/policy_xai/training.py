"""Training visuomotor policies on the simulated tasks: data collection, behaviour cloning with
DAgger-style relabelling, evaluation. No ROS; used by `policy-xai collect/train/evaluate`.

The teacher is a *state-feedback* expert (`FeedbackExpert`): its torque is a function of the joint
state (q, v) and of the target's position only,

    q_goal = IK(target)   (seeded at the task's start pose, so that it is a function of the target)
    a      = a_max * tanh(w^2 (q_goal - q) / a_max) - 2 zeta w v
    tau    = c(q, v) + B v + (M(q) + dt B) a        (clipped to the effort limits)

so that a network which sees the target only in the image and (q, v, ee) in the configuration can
represent it, and every state the learner visits can be relabelled (DAgger). The task's own
time-indexed experts (`policy_xai.robot.experts`) follow a planned trajectory and are not a function
of the observation, so they are not used as labels here.

Training targets: the task's conditions (the paper's training conditions) and, with probability
`region_fraction`, random targets in the region the conditions span (bilinear patch of the four
targets, slightly enlarged); `evaluate` reports the conditions and held-out targets between them.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

#: the configuration groups every simulated observation provides, in the spec's canonical order
GROUPS = ("joint_position", "joint_velocity", "ee_position", "ee_velocity")
DOWN = (0.0, 0.0, -1.0)


# ------------------------------------------------------------------------------------------------
# the teacher
# ------------------------------------------------------------------------------------------------
class FeedbackExpert:
    """Torque as a function of (q, v, target) for reaching; see the module docstring. Subclasses for
    multi-phase tasks override `joint_goal(q, target)` (and `waypoints`, for `reachable`)."""

    omega_default = 5.0
    a_max_default: float | None = None    # None: 6 rad/s^2 (7 joints), 20 (2 joints)

    def __init__(self, sim, omega: float | None = None, zeta: float = 1.0, a_max: float | None = None):
        self.sim = sim
        self.model = sim.model
        self.dt = sim.dt
        self.omega, self.zeta = float(omega if omega is not None else self.omega_default), float(zeta)
        a_max = a_max if a_max is not None else self.a_max_default
        self.a_max = float(a_max) if a_max is not None else (6.0 if sim.n_joints > 2 else 20.0)
        self.seed_pose = np.asarray(sim.task.conditions[0].q0, float)
        self.orient = DOWN if sim.n_joints == 7 else None
        self._goals: dict = {}

    def ik(self, point) -> tuple:
        """(q, IK position error in m) for an end-effector point (gripper down on Baxter), seeded at the
        task's start pose; cached."""
        key = tuple(np.round(np.asarray(point, float), 6))
        if key not in self._goals:
            self._goals[key] = self.solve_ik(point, self.seed_pose)
        return self._goals[key]

    def solve_ik(self, point, seed) -> tuple:
        """(q, position error in m) for an end-effector point from `seed`, with the teacher's posture
        (the start pose) and orientation (gripper down on Baxter) terms; not cached."""
        q, err = self.model.inverse_kinematics(
            np.asarray(point, float), np.asarray(seed, float), iters=300, posture=self.seed_pose,
            posture_weight=0.05, orientation=self.orient, orientation_weight=0.5 if self.orient is not None else 0.0)
        return q, float(err)

    def goal(self, target) -> tuple:
        """(q_goal, IK position error in m) for a target; cached."""
        return self.ik(target)

    def waypoints(self, target) -> list:
        """The end-effector points the teacher steers to for this target (all must be reachable)."""
        return [np.asarray(target, float)]

    def reachable(self, target, tol: float = 0.005) -> bool:
        return all(self.ik(p)[1] < tol for p in self.waypoints(target))

    def joint_goal(self, q, target) -> np.ndarray:
        return self.goal(target)[0]

    def act(self, q, v, target) -> np.ndarray:
        m = self.model
        q_goal = self.joint_goal(np.asarray(q, float), np.asarray(target, float))
        w, z, am = self.omega, self.zeta, self.a_max
        a = am * np.tanh(w * w * (q_goal - q) / am) - 2 * z * w * v
        c = m.bias(q, v)
        if self.sim.gravity_compensation:
            c = c - m.gravity(q)
        B = m.damping
        tau = c + B * v + (m.mass_matrix(q) + self.dt * np.diag(B)) @ a
        lim = self.sim.torque_limits
        return np.clip(tau, -lim, lim)


def _ramp(x, lo: float, hi: float) -> float:
    """0 at x <= lo, 1 at x >= hi, linear between."""
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


class PegFeedbackExpert(FeedbackExpert):
    """Peg insertion as a function of (q, v, hole position): joint goal `above` (the peg vertical, its
    tip 5 cm over the hole's top) while the end-effector is more than 2 cm to the side of the hole,
    `deep` (tip 1.5 cm over the hole's bottom) when within 1 cm, blended linearly between; once the tip
    is inside the hole it keeps going down. The phase depends only on the end-effector position
    relative to the hole, so every state the learner visits has a label. Stiffer than the reaching
    teacher (w = 8 rad/s, a_max = 30 rad/s^2): with a_max = 6 a torque error of 1 % of the limits on the
    light wrist joints already tilts the peg off the hole."""

    omega_default = 8.0
    a_max_default = 30.0

    def _points(self, target):
        from .robot.tasks import HOLE_DEPTH, PEG_LEN

        up = PEG_LEN - 0.02                     # end-effector point above the peg tip
        x, y, z0 = np.asarray(target, float)
        top = z0 + HOLE_DEPTH
        return np.array([x, y, top + 0.05 + up]), np.array([x, y, z0 + 0.015 + up]), top, up

    def waypoints(self, target) -> list:
        above, deep, _, _ = self._points(target)
        return [above, deep]

    def goal(self, target) -> tuple:
        return self.ik(self._points(target)[1])

    def joint_goal(self, q, target) -> np.ndarray:
        from .robot.tasks import HOLE_CLEAR, PEG_HALF

        above, deep, top, up = self._points(target)
        p = self.model.ee_position(q)
        e = float(np.linalg.norm(p[:2] - target[:2]))
        s = 1.0 - _ramp(e, 0.01, 0.02)
        if p[2] - up < top and e < PEG_HALF + HOLE_CLEAR:   # tip in the hole: keep going down
            s = 1.0
        qa, qd = self.ik(above)[0], self.ik(deep)[0]
        return qa + s * (qd - qa)


class DoorFeedbackExpert(FeedbackExpert):
    """Door opening as a function of (q, v, handle position, door angle): the hinge follows from the
    (closed) handle's position; `gap(theta)` is the point between handle bar and panel with the door at
    angle theta. The hook goes above the current gap point, down into it when the end-effector is
    within 1.5 cm of it (ramp to 3 cm), and once down (within 1.5 cm of the hooking height, ramp to 3 cm)
    pulls: the joint goal is the gap point `lead` rad further open. The door angle is part of the
    scene's state the policy sees only in the image (the door panel); with it, "hooked" is decidable from
    the state, so every state the learner visits has a label (a slipped hook goes back up and re-hooks).
    Joint goals along the arc are IK solutions at `n_arc` angles (each seeded with the previous one),
    interpolated linearly in the angle."""

    omega_default = 8.0
    a_max_default = 30.0
    open_to = 0.7          # rad, the last arc point
    lead = 0.25            # rad ahead of the door's angle
    n_arc = 8
    above = 0.09           # m, approach height over the hooking height (the shaft then clears the bar)

    def __init__(self, sim, **kw):
        super().__init__(sim, **kw)
        self._arcs: dict = {}

    @staticmethod
    def _z_grip(target) -> float:
        return float(target[2]) + 0.02                     # the shaft reaches ~8 cm below the ee point

    def arc(self, target) -> tuple:
        """(angles (n,), joint goals at the hooking height (n, J), joint goals above (n, J), max IK error)."""
        from .robot.tasks import door_gap_point

        key = tuple(np.round(np.asarray(target, float), 6))
        if key not in self._arcs:
            z_grip = self._z_grip(target)
            th = np.linspace(0.0, self.open_to, self.n_arc)
            out, err = [], 0.0
            for z in (z_grip, z_grip + self.above):
                q_seed, qs = self.seed_pose, []
                for t in th:
                    q, e = self.solve_ik(door_gap_point(target, t, z), q_seed)
                    qs.append(q)
                    q_seed, err = q, max(err, float(e))
                out.append(np.stack(qs))
            self._arcs[key] = (th, out[0], out[1], err)
        return self._arcs[key]

    def reachable(self, target, tol: float = 0.005) -> bool:
        return self.arc(target)[3] < tol

    def goal(self, target) -> tuple:
        th, grip, _, err = self.arc(target)
        return grip[-1], err

    def door_angle(self) -> float:
        return float(self.sim.measure()["door_angle"]) if self.sim.task.name == "door" else 0.0

    def joint_goal(self, q, target, door_angle: float | None = None) -> np.ndarray:
        from .robot.tasks import door_gap_point

        z_grip = self._z_grip(target)
        th, grip, above, _ = self.arc(target)
        ang = self.door_angle() if door_angle is None else float(door_angle)
        ang = float(np.clip(ang, 0.0, self.open_to))

        def at(table, a):
            return np.array([np.interp(a, th, table[:, j]) for j in range(table.shape[1])])

        p = self.model.ee_position(q)
        e = float(np.linalg.norm(p[:2] - door_gap_point(target, ang, z_grip)[:2]))
        s_down = 1.0 - _ramp(e, 0.015, 0.03)
        q_up = at(above, ang)
        q_desc = q_up + s_down * (at(grip, ang) - q_up)
        s_pull = (1.0 - _ramp(p[2] - z_grip, 0.015, 0.03)) * (1.0 - _ramp(e, 0.02, 0.035))
        q_pull = at(grip, min(ang + self.lead, self.open_to))
        return q_desc + s_pull * (q_pull - q_desc)


TEACHERS = {"peg": PegFeedbackExpert, "door": DoorFeedbackExpert}


def make_teacher(sim) -> FeedbackExpert:
    """The state-feedback teacher of a task: FeedbackExpert (reaching) or the task's multi-phase one."""
    return TEACHERS.get(sim.task.name, FeedbackExpert)(sim)


# ------------------------------------------------------------------------------------------------
# targets
# ------------------------------------------------------------------------------------------------
def region_target(task, rng: np.random.Generator, margin: float = 0.1) -> np.ndarray:
    """A random target in the region spanned by the task's (four) condition targets: a bilinear patch
    over conditions (0, 1, 2, 3) = (near-left, near-right, far-left, far-right), enlarged by `margin`."""
    T = task.targets
    if len(T) != 4:
        w = rng.dirichlet(np.ones(len(T)))
        return w @ T
    u, v = rng.uniform(-margin, 1 + margin, size=2)
    return (1 - u) * (1 - v) * T[0] + u * (1 - v) * T[1] + (1 - u) * v * T[2] + u * v * T[3]


def heldout_targets(task, expert: Optional[FeedbackExpert] = None) -> list:
    """[(name, xyz)] targets between the training targets: midpoints of every pair of conditions and
    the centroid (duplicates and, given an expert, unreachable ones removed)."""
    from .robot.tasks import between_targets

    out, seen = [], []
    n = len(task.conditions)
    cands = [(f"mid{i}{j}", between_targets(task, i, j, 0.5)) for i in range(n) for j in range(i + 1, n)]
    cands.append(("centroid", between_targets(task)))
    for name, p in cands:
        if any(np.linalg.norm(p - s) < 1e-6 for s in seen):
            continue
        if expert is not None and not expert.reachable(p):
            continue
        seen.append(p)
        out.append((name, p))
    return out


# ------------------------------------------------------------------------------------------------
# episodes
# ------------------------------------------------------------------------------------------------
@dataclass
class Episode:
    images: list = field(default_factory=list)
    configs: list = field(default_factory=list)
    labels: list = field(default_factory=list)    # expert torques at the visited states
    targets: list = field(default_factory=list)
    success: bool = False
    final_distance: float = math.nan
    change_step: Optional[int] = None
    measure: dict = field(default_factory=dict)   # the task's scalar measurements at the end (depth, door angle)


def run_episode(sim, controller: Callable, condition: int, target=None, steps: Optional[int] = None,
                noise: float = 0.0, expert: Optional[FeedbackExpert] = None, target_change: Optional[tuple] = None,
                record: bool = True, image_fn: Optional[Callable] = None) -> Episode:
    """One episode. controller(obs, image, target, step) -> torques; `expert` (if given) labels each
    visited state; target_change = (step, xyz); image_fn(image) -> image the controller sees."""
    obs = sim.reset(condition, noise=noise)
    if target is not None:
        sim.set_target(target)
        obs = sim.observation()
    steps = sim.task.horizon if steps is None else int(steps)
    ep = Episode()
    for k in range(steps):
        if target_change is not None and k == target_change[0]:
            sim.set_target(target_change[1])
            obs = sim.observation()
            ep.change_step = k
        tgt = sim.target_position
        img = obs.image if image_fn is None else image_fn(obs.image)
        if record:
            ep.images.append(obs.image)
            ep.configs.append(obs.config(GROUPS))
            ep.targets.append(tgt)
            if expert is not None:
                ep.labels.append(expert.act(obs.joint_position, obs.joint_velocity, tgt))
        tau = controller(obs, img, tgt, k)
        obs = sim.step(tau)
    ep.success = bool(sim.success())
    ep.final_distance = sim.distance()
    ep.measure = {k: float(v) for k, v in sim.measure().items()
                  if np.isscalar(v) and not isinstance(v, (bool, np.bool_)) and k not in ("distance", "success")}
    return ep


def stack(episodes: list) -> dict:
    eps = [e for e in episodes if e.images]
    return {"images": np.stack([i for e in eps for i in e.images]).astype(np.uint8),
            "configs": np.stack([c for e in eps for c in e.configs]).astype(np.float32),
            "labels": np.stack([t for e in eps for t in e.labels]).astype(np.float32),
            "targets": np.stack([t for e in eps for t in e.targets]).astype(np.float32)}


def merge(a: Optional[dict], b: dict) -> dict:
    return b if a is None else {k: np.concatenate([a[k], b[k]]) for k in b}


def _episode_plan(task, rng, expert, region_fraction: float, change_fraction: float, horizon: int):
    """(condition, target or None, target_change or None) for one training episode."""
    cond = int(rng.integers(len(task.conditions)))
    target = None
    if rng.random() < region_fraction:
        for _ in range(20):
            t = region_target(task, rng)
            if expert.reachable(t):
                target = t
                break
    change = None
    if rng.random() < change_fraction:
        for _ in range(20):
            # (region_fraction 0: the changed target is another training condition's, as in the paper's setting)
            region = region_fraction > 0 and rng.random() < 0.5
            t = region_target(task, rng) if region else task.targets[int(rng.integers(len(task.conditions)))]
            if expert.reachable(t):
                change = (int(rng.integers(horizon // 5, horizon // 2)), t)
                break
    return cond, target, change


def collect(sim, episodes: int, seed: int = 0, noise: float = 0.05, torque_noise: float = 0.1,
            region_fraction: float = 0.5, change_fraction: float = 0.2, policy=None, beta: float = 1.0,
            expert: Optional[FeedbackExpert] = None, progress: Optional[Callable[[int], None]] = None) -> dict:
    """Roll out (expert with noisy torques if policy is None, else the policy mixed with the expert
    at probability beta per step) and label every visited state with the feedback expert."""
    rng = np.random.default_rng(seed)
    expert = expert or make_teacher(sim)
    task = sim.task
    lim = sim.torque_limits
    eps = []
    for _ in range(episodes):
        cond, target, change = _episode_plan(task, rng, expert, region_fraction, change_fraction, task.horizon)
        # smooth exploration noise on the executed torques (not on the labels)
        ou = np.zeros(sim.n_joints)

        def controller(obs, img, tgt, k):
            nonlocal ou
            tau = expert.act(obs.joint_position, obs.joint_velocity, tgt)
            if policy is not None and rng.random() >= beta:
                tau = policy.act(img, obs.config(GROUPS))
            ou = 0.8 * ou + 0.2 * rng.normal(0.0, 1.0, sim.n_joints)
            return np.clip(tau + torque_noise * lim * ou * 2.0, -lim, lim)

        eps.append(run_episode(sim, controller, cond, target, noise=noise, expert=expert, target_change=change))
        if progress:
            progress(1)
    return stack(eps)


# ------------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------------
@dataclass
class FitLog:
    losses: list = field(default_factory=list)      # (epoch, torque loss, aux loss)
    seconds: float = 0.0


def set_config_normalisation(policy, configs: np.ndarray, min_std: float = 1e-2) -> None:
    import torch

    mean = configs.mean(0)
    std = np.maximum(configs.std(0), min_std)
    policy.config_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    policy.config_std.copy_(torch.as_tensor(std, dtype=torch.float32))


def fit(policy, data: dict, epochs: int = 10, batch: int = 64, lr: float = 1e-3, aux_weight: float = 1.0,
        seed: int = 0, aux_head=None, optimizer=None, progress: Optional[Callable] = None,
        log: Optional[FitLog] = None) -> FitLog:
    """Behaviour cloning on (images, configs) -> labels, with the GPS-style auxiliary loss: a linear
    head on the feature points regresses the target's position (visible only in the image).
    Torque errors are scaled per joint by the torque limits."""
    import torch

    log = log or FitLog()
    t0 = time.time()
    g = torch.Generator().manual_seed(seed)
    images = torch.from_numpy(data["images"])                       # (N, H, W, 3) uint8
    configs = torch.from_numpy(data["configs"])
    labels = torch.from_numpy(data["labels"])
    targets = torch.from_numpy(data["targets"])
    t_mean, t_std = targets.mean(0), targets.std(0).clamp_min(1e-2)
    scale = policy.torque_limits.clone()
    aux_head = aux_head if aux_head is not None else torch.nn.Linear(2 * policy.spec.feature_points, 3)
    params = list(policy.parameters()) + list(aux_head.parameters())
    opt = optimizer or torch.optim.Adam(params, lr=lr)
    N = len(images)
    policy.train()
    try:
        for ep in range(epochs):
            perm = torch.randperm(N, generator=g)
            tot = aux_tot = 0.0
            for s in range(0, N, batch):
                idx = perm[s:s + batch]
                img = images[idx].permute(0, 3, 1, 2).float().div_(255.0)
                pts = policy.softmax(policy.conv_features(img))
                tau = policy.head(pts, policy.normalise_config(configs[idx]))
                loss_t = (((tau - labels[idx]) / scale) ** 2).mean()
                loss_a = ((aux_head(pts) - (targets[idx] - t_mean) / t_std) ** 2).mean()
                loss = loss_t + aux_weight * loss_a
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss_t.detach()) * len(idx)
                aux_tot += float(loss_a.detach()) * len(idx)
                if progress:
                    progress(len(idx))
            log.losses.append((len(log.losses), tot / N, aux_tot / N))
    finally:
        policy.eval()
    log.seconds += time.time() - t0
    log.aux_head, log.optimizer = aux_head, opt
    return log


def feature_points_of(policy, images: np.ndarray, batch: int = 128) -> np.ndarray:
    """(N, 2K) spatial-softmax feature points of uint8 images (N, H, W, 3), no gradients."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            img = torch.from_numpy(images[s:s + batch]).permute(0, 3, 1, 2).float().div_(255.0)
            out.append(policy.softmax(policy.conv_features(img)))
    return torch.cat(out).numpy()


def fit_head(policy, points: np.ndarray, configs: np.ndarray, labels: np.ndarray, epochs: int = 100,
             batch: int = 128, lr: float = 1e-3, seed: int = 0, optimizer=None, progress=None):
    """Train only the fully connected layers on cached feature points (the conv layers frozen, as in
    GPS after its pose-regression pretraining of the vision layers); fast, since the convolutions are
    not recomputed. Returns (final torque loss, optimizer)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    P, C, Y = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (points, configs, labels))
    Cn = policy.normalise_config(C)
    scale = policy.torque_limits.clone()
    opt = optimizer or torch.optim.Adam(policy.fcs.parameters(), lr=lr)
    N = len(P)
    policy.train()
    loss_sum = 0.0
    try:
        for _ in range(epochs):
            perm = torch.randperm(N, generator=g)
            loss_sum = 0.0
            for s in range(0, N, batch):
                idx = perm[s:s + batch]
                loss = (((policy.head(P[idx], Cn[idx]) - Y[idx]) / scale) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(idx)
            if progress:
                progress(1)
    finally:
        policy.eval()
    return loss_sum / N, opt


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------
def policy_controller(policy) -> Callable:
    def controller(obs, img, tgt, k):
        return policy.act(img, obs.config(policy.spec.group_names))
    return controller


def blank_image(image: np.ndarray) -> np.ndarray:
    """The image with every pixel set to its mean colour (no target, no arm)."""
    return np.broadcast_to(image.reshape(-1, 3).mean(0).astype(np.uint8), image.shape).copy()


def evaluate(policy, sim, episodes: int = 5, noise: float = 0.05, seed: int = 0, blank: bool = False,
             heldout: bool = True, progress: Optional[Callable] = None) -> dict:
    """Success rates: per training condition and per held-out target (between the conditions).
    Episode 0 of each starts exactly at the condition's pose; the others add `noise` rad to it.
    Per target also the mean final end-effector distance to the target and the means of the task's
    scalar measurements (`mean_depth`, `mean_lateral_error` for peg, `mean_door_angle` for door)."""
    sim.reseed(seed)
    expert = make_teacher(sim)
    ctrl = policy_controller(policy)
    img_fn = blank_image if blank else None
    res = {"conditions": {}, "heldout": {}}
    for c, cond in enumerate(sim.task.conditions):
        ok, dist, meas = [], [], []
        for e in range(episodes):
            ep = run_episode(sim, ctrl, c, noise=0.0 if e == 0 else noise, record=False, image_fn=img_fn)
            ok.append(ep.success), dist.append(ep.final_distance), meas.append(ep.measure)
            if progress:
                progress(1)
        res["conditions"][cond.name or str(c)] = {"success": float(np.mean(ok)), "final_distance": float(np.mean(dist)),
                                                  "episodes": episodes, **_mean_measures(meas)}
    if heldout:
        for k, (name, p) in enumerate(heldout_targets(sim.task, expert)):
            ok, dist, meas = [], [], []
            for e in range(episodes):
                c = (k + e) % len(sim.task.conditions)  # the start pose of some condition
                ep = run_episode(sim, ctrl, c, target=p, noise=0.0 if e == 0 else noise, record=False, image_fn=img_fn)
                ok.append(ep.success), dist.append(ep.final_distance), meas.append(ep.measure)
                if progress:
                    progress(1)
            res["heldout"][name] = {"target": [round(float(x), 4) for x in p], "success": float(np.mean(ok)),
                                    "final_distance": float(np.mean(dist)), "episodes": episodes,
                                    **_mean_measures(meas)}
    for key in ("conditions", "heldout"):
        vals = [v["success"] for v in res[key].values()]
        res[f"{key}_success"] = float(np.mean(vals)) if vals else math.nan
    return res


def _mean_measures(measures: list) -> dict:
    """{"mean_<name>": mean} of the task's scalar end-of-episode measurements (peg depth, door angle)."""
    keys = set().union(*measures) if measures else set()
    return {f"mean_{k}": float(np.mean([m[k] for m in measures if k in m])) for k in sorted(keys)}


def count_evaluation_episodes(task, episodes: int, heldout: bool = True) -> int:
    n = len(task.conditions) * episodes
    if heldout:
        n += len(task.conditions) * (len(task.conditions) - 1) // 2 * episodes + episodes
    return n


# ------------------------------------------------------------------------------------------------
# the whole recipe
# ------------------------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    task: str = "reach"
    spec: str = "small"
    seed: int = 0
    expert_episodes: int = 60
    dagger_iters: int = 4
    dagger_episodes: int = 30
    epochs: int = 8                 # after the expert data
    dagger_epochs: int = 4          # end-to-end epochs after each DAgger round (when head_epochs == 0)
    head_epochs: int = 0            # >0: after the expert data, freeze the convs and fit only the FC head
                                    # on cached feature points, this many epochs per round
    finetune_epochs: int = 0        # end-to-end epochs on all the data at the end (head mode)
    batch: int = 64
    lr: float = 1e-3
    aux_weight: float = 1.0
    noise: float = 0.05
    torque_noise: float = 0.1
    region_fraction: float = 0.5
    change_fraction: float = 0.2
    threads: int = 1                # 1 is ~3x faster than 2 on a shared 2-core machine
    image_size: int = 64
    control_rate: float = 20.0


def train(cfg: TrainConfig, data: Optional[dict] = None, bar_factory: Optional[Callable] = None,
          say: Callable[[str], None] = print):
    """Expert data (or `data`) -> fit -> DAgger rounds (policy rollouts relabelled by the expert, data
    aggregated, fit again). Returns (policy, data, info)."""
    import torch

    from .policy import init_policy
    from .robot.sim import Simulation

    torch.set_num_threads(max(1, int(cfg.threads)))
    torch.manual_seed(cfg.seed)
    bar_factory = bar_factory or (lambda total, desc, unit: _NullBar())
    t_start = time.time()
    policy = init_policy(cfg.spec, seed=cfg.seed)
    sim = Simulation(cfg.task, image_size=cfg.image_size, control_rate=cfg.control_rate, seed=cfg.seed)
    try:
        check_spec_fits(policy.spec, sim)
        expert = make_teacher(sim)
        if data is None:
            with bar_factory(cfg.expert_episodes, "expert episodes", "ep") as bar:
                data = collect(sim, cfg.expert_episodes, seed=cfg.seed, noise=cfg.noise, torque_noise=cfg.torque_noise,
                               region_fraction=cfg.region_fraction, change_fraction=cfg.change_fraction,
                               expert=expert, progress=bar.update)
        set_config_normalisation(policy, data["configs"])
        log = FitLog()
        with bar_factory(cfg.epochs * len(data["images"]), f"fit on {len(data['images'])} samples", "sample") as bar:
            fit(policy, data, cfg.epochs, cfg.batch, cfg.lr, cfg.aux_weight, cfg.seed, progress=bar.update, log=log)
        say(f"  expert data: {len(data['images'])} samples, torque loss {log.losses[-1][1]:.4f}, "
            f"aux loss {log.losses[-1][2]:.4f}")
        head_mode = cfg.head_epochs > 0
        if head_mode:
            points = feature_points_of(policy, data["images"])
            with bar_factory(cfg.head_epochs, "fit FC head", "epoch") as bar:
                hl, head_opt = fit_head(policy, points, data["configs"], data["labels"], cfg.head_epochs, lr=cfg.lr,
                                        seed=cfg.seed, progress=bar.update)
            say(f"  FC head on frozen convs: torque loss {hl:.4f}")
        rounds = []
        for it in range(cfg.dagger_iters):
            beta = 0.5 if it == 0 else 0.0
            with bar_factory(cfg.dagger_episodes, f"DAgger {it + 1}/{cfg.dagger_iters} rollouts", "ep") as bar:
                new = collect(sim, cfg.dagger_episodes, seed=cfg.seed + 1000 * (it + 1), noise=cfg.noise,
                              torque_noise=0.0, region_fraction=cfg.region_fraction,
                              change_fraction=cfg.change_fraction, policy=policy, beta=beta, expert=expert,
                              progress=bar.update)
            data = merge(data, new)
            if head_mode:
                points = np.concatenate([points, feature_points_of(policy, new["images"])])
                with bar_factory(cfg.head_epochs, f"fit FC head on {len(points)} samples", "epoch") as bar:
                    hl, head_opt = fit_head(policy, points, data["configs"], data["labels"], cfg.head_epochs,
                                            lr=cfg.lr, seed=cfg.seed + it + 1, optimizer=head_opt, progress=bar.update)
                rounds.append({"round": it + 1, "samples": int(len(data["images"])), "torque_loss": hl})
                say(f"  DAgger {it + 1}: {len(data['images'])} samples, head torque loss {hl:.4f}")
                continue
            with bar_factory(cfg.dagger_epochs * len(data["images"]), f"fit on {len(data['images'])} samples",
                             "sample") as bar:
                fit(policy, data, cfg.dagger_epochs, cfg.batch, cfg.lr * 0.5, cfg.aux_weight, cfg.seed + it + 1,
                    aux_head=log.aux_head, optimizer=log.optimizer, progress=bar.update, log=log)
            rounds.append({"round": it + 1, "samples": int(len(data["images"])), "torque_loss": log.losses[-1][1],
                           "aux_loss": log.losses[-1][2]})
            say(f"  DAgger {it + 1}: {len(data['images'])} samples, torque loss {log.losses[-1][1]:.4f}, "
                f"aux loss {log.losses[-1][2]:.4f}")
        if head_mode and cfg.finetune_epochs > 0:
            with bar_factory(cfg.finetune_epochs * len(data["images"]), "end-to-end fine-tuning", "sample") as bar:
                fit(policy, data, cfg.finetune_epochs, cfg.batch, cfg.lr * 0.2, cfg.aux_weight, cfg.seed + 99,
                    aux_head=log.aux_head, progress=bar.update, log=log)
            say(f"  fine-tuned end to end: torque loss {log.losses[-1][1]:.4f}, aux loss {log.losses[-1][2]:.4f}")
    finally:
        sim.close()
    info = {"task": cfg.task, "seed": cfg.seed, "samples": int(len(data["images"])), "losses": log.losses,
            "dagger": rounds, "fit_seconds": round(log.seconds, 1), "total_seconds": round(time.time() - t_start, 1)}
    return policy, data, info


def check_spec_fits(spec, sim) -> None:
    if tuple(spec.joint_names) != tuple(sim.joint_names):
        raise ValueError(f"spec {spec.name!r} drives joints {list(spec.joint_names)}, task {sim.task.name!r} has "
                         f"{list(sim.joint_names)} (use config/reach2d.yaml for reach2d)")
    if (spec.image_height, spec.image_width) != sim.image_shape[:2]:
        raise ValueError(f"spec {spec.name!r} takes {spec.image_height}x{spec.image_width} images, the simulation "
                         f"renders {sim.image_shape[0]}x{sim.image_shape[1]}")
    obs_sizes = {"joint_position": sim.n_joints, "joint_velocity": sim.n_joints, "ee_position": 3, "ee_velocity": 3}
    if tuple(spec.config_groups) != tuple((g, obs_sizes[g]) for g in GROUPS):
        raise ValueError(f"spec {spec.name!r}: configuration groups {dict(spec.config_groups)} do not match the "
                         f"simulation's observation {obs_sizes} (in that order)")


class _NullBar:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def update(self, n=1):
        pass


def save_trained(policy, path, **metadata):
    """save_policy (the spec, with its configuration-group order, travels in the file)."""
    from .policy import save_policy

    return save_policy(policy, path, **metadata)


def default_spec(task: str) -> str:
    """The spec shipped for a task: `small` (Baxter, 7 joints) or `reach2d` (two-link arm)."""
    return "reach2d" if task == "reach2d" else "small"


def model_path(task: str):
    """The shipped weights of a task: share/policy_xai/models/<task>.safetensors (the first install
    location that has it, see policy_xai.resources)."""
    from .resources import find_shared, share_path

    name = f"{task}.safetensors"
    found = find_shared("models", name)
    if found is not None:
        return found
    path = share_path("models", name)
    raise FileNotFoundError(f"no shipped weights for task {task!r} ({path}); train them with "
                            f"`policy-xai train --task {task} --out {path}` or pass --policy FILE")
