"""Are found weaknesses real? (`policy-xai states validate`)

Found states are generated observations. To check them in the simulation, each is turned into a
simulator situation with the teacher network's scene head (states/teacher.py): the object's place
(the target; for door the closed handle, which places the whole door) and, for door, the door angle;
the arm's joint positions and velocities come from the found state's configuration. The policy then
runs a full episode (the task's horizon) from there, and success is the task's own test. Two starts:

- `state`: the arm at the found state's (q, v), the door at the decoded place and angle;
- `place`: the door at the decoded place (closed), the arm at the task's start pose (uniform noise of
  0.05 rad, as in `evaluate`): is the place itself a weak spot?

The same number of episodes from random starts gives the baseline: `place`: a random reachable place
in the region the conditions span (training.region_target) from the start pose; `state`: a state the
policy visits there (the policy run from the start pose for a random 0..horizon/2 steps), then a full
episode from it. The decoded places are also compared with the task's named places (the conditions
and the held-out places of `evaluate`).

Found episodes (`states find --scope episode`: states.npz has `episode`) are validated per episode:
its place and door angle are the median of what the scene head reads from its K states, and a
`state` start puts the arm at the episode's highest-scoring state.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np
import torch

STARTS = ("state", "place")


def _region_box(task, margin: float = 0.1):
    T = np.asarray(task.targets, float)
    lo, hi = T.min(0), T.max(0)
    span = hi - lo
    return lo - margin * span, hi + margin * span


def decode_scenes(net, images: np.ndarray, configs: np.ndarray) -> np.ndarray:
    """(N, K) scene states (scene_state) the teacher network reads from the observations."""
    x = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 255.0
    c = torch.from_numpy(np.asarray(configs, np.float32))
    with torch.no_grad():
        return net(x, c)[1].numpy()


def _place(sim, target, q=None, v=None, door_angle: float = 0.0) -> None:
    """Put the scene at `target` (the door at `door_angle`), the arm at (q, v) when given."""
    sim.set_target(target)
    scene = {"door_hinge": float(np.clip(door_angle, 0.0, 1.6))} if "door_hinge" in sim.scene_joint_names else None
    sim.set_joint_state(None if q is None else np.clip(q, sim.model.lower, sim.model.upper), v, scene=scene)


def _run(sim, policy, steps: int, teacher=None) -> tuple[bool, dict]:
    """Run `steps` control steps with the policy (or, given, the teacher: the oracle that reads the
    simulator's state); (success, the task's scalar measurements)."""
    from ..training import GROUPS

    obs = sim.observation()
    for _ in range(int(steps)):
        if teacher is not None:
            tau = teacher.act(obs.joint_position, obs.joint_velocity, sim.target_position)
        else:
            tau = policy.act(obs.image, obs.config(GROUPS))
        obs = sim.step(tau)
    meas = {k: float(v) for k, v in sim.measure().items()
            if np.isscalar(v) and not isinstance(v, (bool, np.bool_)) and k not in ("distance", "success")}
    return bool(sim.success()), meas


def _gap_now(sim, policy, expert) -> float:
    """The true teacher gap || (tau - tau_T) / L || in the simulator's current state (the policy on the
    rendered observation, the teacher on the true state)."""
    from ..training import GROUPS

    obs = sim.observation()
    tau = policy.act(obs.image, obs.config(GROUPS))
    t = expert.act(obs.joint_position, obs.joint_velocity, sim.target_position)
    return float(np.linalg.norm((tau - t) / np.asarray(sim.torque_limits, float)))


def place_gaps(sim, policy, net, expert, named: list, steps: int) -> dict:
    """Per named place: one policy episode from the start pose of condition 0 (no noise), its success,
    and the teacher gap along it, by the teacher network (net) and with the true teacher torques."""
    from ..training import GROUPS
    from .teacher import teacher_gap, true_gap

    out = {}
    for name, p in named:
        obs = sim.reset(0)
        _place(sim, p)
        obs = sim.observation()
        imgs, cfgs, lab = [], [], []
        for _ in range(int(steps)):
            c = obs.config(GROUPS)
            imgs.append(obs.image)
            cfgs.append(c)
            lab.append(expert.act(obs.joint_position, obs.joint_velocity, sim.target_position))
            obs = sim.step(policy.act(obs.image, c))
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
        c = torch.from_numpy(np.stack(cfgs).astype(np.float32))
        with torch.no_grad():
            g_net = teacher_gap(policy, net, x, c).numpy()
        g_true = true_gap(policy, x, c, torch.from_numpy(np.stack(lab).astype(np.float32))).numpy()
        out[name] = {"success": bool(sim.success()), "door_angle": float(sim.measure().get("door_angle", 0.0)),
                     "gap_net_mean": float(g_net.mean()), "gap_net_max": float(g_net.max()),
                     "gap_true_mean": float(g_true.mean()), "gap_true_max": float(g_true.max())}
    return out


def named_places(task, expert=None) -> list:
    """[(name, target xyz)]: the task's conditions and the held-out places of `evaluate`."""
    from ..training import heldout_targets

    out = [(c.name or f"condition{i}", np.asarray(c.target, float)) for i, c in enumerate(task.conditions)]
    return out + [(n, np.asarray(p, float)) for n, p in heldout_targets(task, expert)]


def validate(policy, net, images: np.ndarray, configs: np.ndarray, task: str, episodes: int = 20,
             starts=STARTS, steps: Optional[int] = None, seed: int = 0, teacher_control: bool = True,
             gaps_by_place: bool = True, log: Callable[[str], None] = lambda s: None,
             episode: Optional[np.ndarray] = None, score: Optional[np.ndarray] = None) -> dict:
    """Failure rates of the policy from the found states' situations and from random starts (module
    docstring), `episodes` each per start kind; `steps` (default: the task's horizon) per episode.
    teacher_control: also run the task's teacher (which reads the true simulator state) from exactly the
    same placed situations: a situation the teacher solves and the policy does not is the policy's
    weakness, not an impossible one. gaps_by_place: also the teacher gap along one policy episode at each
    named place (place_gaps). episode (N,): the found episode of each state (module docstring), with
    `score` (N,) the target of each state."""
    from ..robot.sim import Simulation
    from ..training import make_teacher, region_target

    bad = [s for s in starts if s not in STARTS]
    if bad:
        raise ValueError(f"unknown start {bad[0]!r}; choose from {', '.join(STARTS)}")
    if len(images) == 0:
        raise ValueError("no found states to validate")
    if net.task and net.task != task:
        raise ValueError(f"the teacher network is of task {net.task!r}, not {task!r}")
    spec = policy.spec
    rng = np.random.default_rng(seed)
    scenes = decode_scenes(net, images, configs)
    nq = len(spec.joint_names)
    configs = np.asarray(configs, np.float32)
    if episode is not None:
        episode = np.asarray(episode)
        if episode.shape != (len(images),):
            raise ValueError(f"episode: {episode.shape} entries for {len(images)} states")
        score = np.zeros(len(images)) if score is None else np.asarray(score, float)
        ids = np.unique(episode)
        rep = np.array([np.flatnonzero(episode == i)[np.argmax(score[episode == i])] for i in ids])
        scenes = np.stack([np.median(scenes[episode == i], 0) for i in ids])
        configs, images = configs[rep], images[rep]
    t0 = time.perf_counter()
    sim = Simulation(task, image_size=(spec.image_height, spec.image_width), seed=seed)
    try:
        steps = sim.task.horizon if steps is None else int(steps)
        expert = make_teacher(sim)
        lo, hi = _region_box(sim.task)
        z = float(sim.task.conditions[0].target[2])
        places = np.column_stack([np.clip(scenes[:, 0], lo[0], hi[0]), np.clip(scenes[:, 1], lo[1], hi[1]),
                                  np.full(len(scenes), z)])
        clipped = int(np.sum(np.any(np.abs(places[:, :2] - scenes[:, :2]) > 1e-9, axis=1)))
        angles = scenes[:, 3] if scenes.shape[1] > 3 else np.zeros(len(scenes))
        named = named_places(sim.task, expert)
        nearest = []
        for p in places:
            d = [float(np.linalg.norm(p[:2] - q[:2])) for _, q in named]
            k = int(np.argmin(d))
            nearest.append({"place": named[k][0], "distance_m": round(d[k], 4)})
        out = {"task": task, "episodes": int(episodes), "steps": int(steps), "found_states": int(len(images)),
               "found_episodes": None if episode is None else int(len(images)),
               "decoded": {"target": np.round(scenes[:, :3], 4).tolist(), "door_angle": np.round(angles, 4).tolist(),
                           "places_clipped_to_region": clipped, "nearest_named_place": nearest},
               "named_places": {n: np.round(p, 4).tolist() for n, p in named}}
        counts = {}
        for n in nearest:
            counts[n["place"]] = counts.get(n["place"], 0) + 1
        out["decoded"]["nearest_place_counts"] = counts
        n_cond = len(sim.task.conditions)
        for start in starts:
            res = {}
            for kind in ("found", "random"):
                ok, meas, ok_t, g0 = [], [], [], []
                for e in range(int(episodes)):
                    i = e % len(images)
                    sim.reset(int(rng.integers(n_cond)), noise=0.05)
                    if kind == "found":
                        if start == "state":
                            _place(sim, places[i], configs[i, :nq], configs[i, nq:2 * nq], float(angles[i]))
                        else:
                            _place(sim, places[i])
                    else:
                        for _ in range(20):
                            t = region_target(sim.task, rng)
                            if expert.reachable(t):
                                break
                        _place(sim, t)
                        if start == "state":
                            _run(sim, policy, int(rng.integers(0, max(1, steps // 2))))
                    placed = sim.get_state()
                    g0.append(_gap_now(sim, policy, expert))
                    s, m = _run(sim, policy, steps)
                    ok.append(s)
                    meas.append(m)
                    if teacher_control:
                        sim.set_state(placed)
                        ok_t.append(_run(sim, policy, steps, teacher=expert)[0])
                fail = 1.0 - float(np.mean(ok))
                res[kind] = {"failure_rate": fail, "failures": int(len(ok) - sum(ok)), "episodes": len(ok),
                             "success": [bool(x) for x in ok], "true_gap_at_start_median": float(np.median(g0)),
                             "true_gap_at_start": [round(x, 4) for x in g0]}
                if teacher_control:
                    res[kind]["teacher_failure_rate"] = 1.0 - float(np.mean(ok_t))
                    res[kind]["teacher_success"] = [bool(x) for x in ok_t]
                for key in (meas[0] if meas else {}):
                    res[kind][f"mean_{key}"] = float(np.mean([m[key] for m in meas]))
                log(f"{start} starts, {kind}: {res[kind]['failures']}/{len(ok)} failed"
                    + (f" (teacher: {len(ok_t) - sum(ok_t)}/{len(ok_t)})" if teacher_control else ""))
            out[start] = res
        if gaps_by_place:
            out["places"] = place_gaps(sim, policy, net, expert, named, steps)
        out["seconds"] = round(time.perf_counter() - t0, 1)
        return out
    finally:
        sim.close()


def validate_file(opt, log: Callable[[str], None] = print) -> dict:
    """`policy-xai states validate` as a library function: validate the states.npz `opt.states` (a file,
    or the folder of `states find`) with the options `opt` (states.options.ValidateOptions), write
    the JSON (opt.json, default validate.json next to the states; never over an existing file) and
    return it, with `json` its path. Bad input is a ValueError (FileExistsError for the output) of one
    line."""
    import json
    from pathlib import Path

    from ..resolve import resolve_policy
    from ..robot.tasks import task_names
    from .teacher import TeacherModelError, load_teacher

    sp = Path(opt.states)
    if sp.is_dir():
        sp = sp / "states.npz"
    if not sp.is_file():
        raise ValueError(f"states: {sp} not found")
    out = Path(opt.json) if opt.json else sp.with_name("validate.json")
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another --json")
    starts = [x.strip() for x in str(opt.starts).split(",") if x.strip()]
    if not starts or any(x not in STARTS for x in starts):
        raise ValueError(f"starts {opt.starts!r}: choose from {', '.join(STARTS)} (comma-separated)")
    policy = resolve_policy(opt.policy, accept=("weights",), label="--policy")
    try:
        net = load_teacher(opt.teacher, policy.spec, policy_path=opt.policy)
    except TeacherModelError as e:
        raise ValueError(str(e).splitlines()[0]) from e
    task = opt.task or net.task
    if task not in task_names():
        raise ValueError(f"task {task or '(none)'}: choose one of {', '.join(task_names())}")
    try:
        with np.load(sp) as z:
            images, configs = z["image"], z["config"]
            episode = z["episode"] if "episode" in z.files else None
            score = z["score"] if "score" in z.files else None
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"states {sp}: not a states.npz of `states find` ({str(e).splitlines()[0]})") from e
    if images.ndim != 4 or images.shape[1:3] != (policy.spec.image_height, policy.spec.image_width) \
            or configs.shape != (len(images), policy.spec.config_dim):
        raise ValueError(f"states {sp}: images {images.shape} / configurations {configs.shape} do not fit the policy")
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, int(opt.threads)))
    try:
        r = validate(policy, net, images, configs, task, opt.episodes, starts, opt.steps or None, opt.seed,
                     log=log, episode=episode, score=score)
    finally:
        torch.set_num_threads(prev)
    r.update({"policy": str(opt.policy), "teacher": str(opt.teacher), "states": str(sp), "seed": opt.seed})
    out.write_text(json.dumps(r, indent=2))
    return r | {"json": str(out), "starts_run": starts}
