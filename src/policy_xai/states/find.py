"""`policy-xai states find` as a library function: search, compare with real states, write DIR.

DIR/states.npz   image (N, H, W, 3) uint8, config (N, D) float32 (raw), torques (N, J) float32 (the
                 policy's torques on exactly these inputs), score (N,) the target on them, z (N, latent);
                 with --scope episode also episode (N,): the found episode (n of them, K states each)
DIR/summary.json the target over the real states (percentiles) and over the found ones, realism (RMS
                 distance to the nearest real state; the perception error between a found state and
                 its reconstruction through the state model, N·m), the explanation ratios of the found
                 states by `method`, the optional naive pixel search, the search's cost
DIR/grid.png     per found state: the state, its heatmap and ratios, its nearest real state
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import search as S
from .options import FindOptions  # noqa: F401 - the options live in options.py


def _real_states(opt: FindOptions, policy, model, policy_path=None):
    from .train import bag_states, default_task, rollout_states
    from ..robot.tasks import task_names

    if opt.real_bag:
        return bag_states(opt.real_bag, policy)
    task = opt.task or model.meta.get("training", {}).get("task") or default_task(policy_path or opt.policy)
    if task not in task_names():
        raise ValueError(f"real states: no task known for this state model; give --task ({', '.join(task_names())}) "
                         "or --real-bag")
    return rollout_states(task, policy, opt.real_episodes, 1, 0.0, 0.0, seed=opt.seed + 1000, region=opt.real_region)


def find(opt: FindOptions, log: Callable[[str], None] = print, real=None) -> dict:
    """Search, compare and write opt.out (module docstring); `real`: the real states to compare with
    (a train.TrainingStates; default: rollouts of the task or opt.real_bag)."""
    from ..attribution import explain
    from ..attribution.engine import DEFAULT_METHOD, usable_method
    from ..resolve import trained_policy
    from .model import load_state_model

    if not opt.out:
        raise ValueError("an output folder is needed (--out)")
    out = Path(opt.out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose another --out")
    if opt.n < 1 or opt.steps < 1:
        raise ValueError("--n and --steps must be >= 1")
    prev = torch.get_num_threads()
    torch.set_num_threads(max(1, int(opt.threads)))
    try:
        policy, policy_path = trained_policy(opt.policy, label="--policy")
        model = load_state_model(opt.generator, policy_path=policy_path, spec=policy.spec)
        target = S.make_target(opt.target, policy, teacher=opt.teacher or None)
        scene_net = None
        if opt.target.startswith("teacher_gap"):
            from ..robot.tasks import task_names
            from .teacher import load_teacher

            task = opt.task or model.meta.get("training", {}).get("task", "")
            scene_net = load_teacher(opt.teacher, policy.spec, policy_path=policy_path)
            net_task = scene_net.task
            if task and task not in task_names():
                raise S.TargetError(f"target {opt.target}: task {task!r} has no state-feedback teacher")
            if task and net_task and net_task != task:
                raise S.TargetError(f"target {opt.target}: the teacher network {opt.teacher} is of task {net_task!r}, "
                                    f"the state model of {task!r}")
        if opt.starts not in ("real", "prior"):
            raise ValueError(f"starts must be real or prior, got {opt.starts!r}")
        if opt.scope not in ("state", "episode"):
            raise ValueError(f"scope must be state or episode, got {opt.scope!r}")
        if opt.scope == "episode" and (opt.starts != "real" or opt.episode_states < 1):
            raise ValueError("the episode scope starts from real episodes (starts real, episode_states >= 1)")
        real = real if real is not None else _real_states(opt, policy, model, policy_path)
        log(f"searching {opt.n} " + (f"episodes ({opt.episode_states} states each, one shift)" if opt.scope == "episode"
                                      else "states") + f" for {opt.target} ({opt.steps} steps each, lambda {opt.lam}, "
            f"starts: {opt.starts})")
        if opt.prior not in ("aggregate", "standard"):
            raise ValueError(f"prior must be aggregate or standard, got {opt.prior!r}")
        episodic = opt.scope == "episode"
        if episodic and getattr(real, "episode", None) is None:
            raise ValueError("the episode scope needs real states from rollouts of the task, not a recording")
        mu_real = S.real_latents(model, policy, real.images, real.configs)
        prior = S.LatentPrior.aggregate(mu_real) if opt.prior == "aggregate" else S.LatentPrior.standard(model.latent)
        if episodic:
            groups = S.episode_groups(real.episode, opt.n, opt.episode_states, opt.seed)
            res = S.find_episodes(model, policy, target, mu_real[torch.from_numpy(np.stack(groups))], opt.steps,
                                  opt.lr, opt.lam, prior=prior)
        else:
            z0 = (S.start_points(model, policy, opt.n, opt.seed, real.images, real.configs) if opt.starts == "real"
                  else S.start_points(model, policy, opt.n, opt.seed))
            res = S.find_states(model, policy, target, opt.n, opt.steps, opt.lr, opt.lam, opt.seed, start=z0,
                                prior=prior)
        X = torch.from_numpy(real.images).permute(0, 3, 1, 2).float() / 255.0
        C = torch.from_numpy(real.configs)
        real_scores = torch.cat([S.score(target, policy, X[i:i + 128], C[i:i + 128], model)
                                 for i in range(0, len(X), 128)]).numpy()
        # the quantity maximised: one state's target, or an episode's mean target over its K states
        found_scores = res.extras["episode_score"] if episodic else res.score
        real_units = real_scores
        if episodic:
            every = S.episode_groups(real.episode, len(np.unique(real.episode)), opt.episode_states, opt.seed)
            real_units = np.array([real_scores[g].mean() for g in every])
        idx, dist = S.nearest_real(res.image, res.config, real.images, real.configs, policy)
        # perception error of the found states through the state model (are they states it knows?)
        xf = torch.from_numpy(res.image).permute(0, 3, 1, 2).float() / 255.0
        cf = torch.from_numpy(res.config)
        with torch.no_grad():
            img_r, cn_r, _, _ = model(xf, policy.normalise_config(cf), sample=False)
            perc = (policy(img_r, cn_r * policy.config_std + policy.config_mean) - policy(xf, cf)).abs().max(1).values
            # up to 256 real states spread over the whole set (rollouts come episode by episode)
            sub = torch.from_numpy(np.unique(np.linspace(0, len(X) - 1, min(len(X), 256)).round().astype(np.int64)))
            img_q, cn_q, _, _ = model(X[sub], policy.normalise_config(C[sub]), sample=False)
            cq = cn_q * policy.config_std + policy.config_mean
            perc_real = (policy(img_q, cq) - policy(X[sub], C[sub])).abs().max(1).values
            # the target on the state model's reconstructions of real states against the real states': how
            # much the state model itself moves the target (an effect smaller than that is not resolved)
            recon_scores = S.score(target, policy, (img_q.clamp(0, 1) * 255).round() / 255, cq, model).numpy()
            # with a teacher network: the scene its scene head reads from the reconstructions against the
            # originals (can the state model show the scene where it is? door: the place and the angle)
            scene_rmse = None
            if scene_net is not None:
                from .teacher import scene_names

                ds = (scene_net(img_q, cq)[1] - scene_net(X[sub], C[sub])[1]).pow(2).mean(0).sqrt()
                names = scene_names(scene_net.task) if scene_net.task else []
                names = names if len(names) == len(ds) else [f"s{k}" for k in range(len(ds))]
                scene_rmse = {n: float(v) for n, v in zip(names, ds)}
            # the real states' own nearest-neighbour distances (leave one out) as the scale of "near"
            ii, dd = S.nearest_real(real.images[sub.numpy()], real.configs[sub.numpy()], real.images, real.configs,
                                    policy, exclude_self=sub.numpy())
        method, why = usable_method(policy, opt.method or DEFAULT_METHOD)
        if why:
            log(f"note: {why}; explaining the found states with {method}")
        e = explain(policy, xf, cf, method=method)
        ratios = {k: v.numpy().tolist() for k, v in (e.ratios or {}).items()}
        pct = [0, 1, 5, 25, 50, 75, 95, 99, 100]
        summary = {
            "target": opt.target, "description": target.description, "maximise": target.sign > 0,
            "policy": opt.policy, "generator": opt.generator, "n": int(opt.n), "steps": int(opt.steps),
            "lambda": opt.lam, "lr": opt.lr, "seed": opt.seed, "starts": opt.starts,
            "prior": opt.prior, "scope": opt.scope,
            "found": {"score": found_scores.tolist(),
                      "best": float(found_scores.max() if target.sign > 0 else found_scores.min()),
                      "median": float(np.median(found_scores)),
                      "start_median": float(np.median(res.trace[0])), "prior_term": res.prior[-1].tolist(),
                      "prior_term_start": res.prior[0].tolist()},
            "real": {"states": int(len(real.images)), "source": real.source,
                     "percentiles": {str(p): float(np.percentile(real_units, p)) for p in pct}},
            "found_beyond_real": {"share_beyond_real_max" if target.sign > 0 else "share_below_real_min":
                                  float(np.mean(found_scores > real_units.max()) if target.sign > 0
                                        else np.mean(found_scores < real_units.min()))},
            "realism": {"nearest_real_rms": dist.tolist(), "nearest_real_index": idx.tolist(),
                        "real_to_real_rms_median": float(np.median(dd)),
                        "perception_err_nm_found": perc.numpy().tolist(),
                        "perception_err_nm_real_median": float(perc_real.median()),
                        "target_real_median": float(np.median(real_scores[sub.numpy()])),
                        "target_reconstructed_median": float(np.median(recon_scores)),
                        **({"scene_rmse_reconstructed": scene_rmse} if scene_rmse else {})},
            "explanation": {"method": method, "ratios": ratios},
            "seconds": {"search": round(res.seconds, 3), "per_state": round(res.seconds / opt.n, 4)},
        }
        if opt.naive:
            if target.needs_z:
                summary["naive"] = {"skipped": f"{opt.target} needs the latent space"}
            else:
                nv = S.optimise_pixels(policy, target, tuple(xf.shape[1:]), C[:1], opt.n, opt.steps, opt.lr, opt.seed)
                ni, nd = S.nearest_real(nv.image, nv.config, real.images, real.configs, policy)
                with torch.no_grad():
                    xn = torch.from_numpy(nv.image).permute(0, 3, 1, 2).float() / 255.0
                    img_n, cn_n, _, _ = model(xn, policy.normalise_config(torch.from_numpy(nv.config)), sample=False)
                    perc_n = (policy(img_n, cn_n * policy.config_std + policy.config_mean)
                              - policy(xn, torch.from_numpy(nv.config))).abs().max(1).values
                summary["naive"] = {"score": nv.score.tolist(), "median": float(np.median(nv.score)),
                                    "nearest_real_rms": nd.tolist(), "perception_err_nm": perc_n.numpy().tolist()}
                res.extras["naive"] = nv
        if episodic:
            ep = res.extras["episode"]
            summary["found"]["state_score"] = res.score.tolist()
            summary["real"]["states_percentiles"] = {str(p): float(np.percentile(real_scores, p)) for p in pct}
            summary["real"]["episodes"] = int(len(real_units))
            summary["episode_states"] = int(opt.episode_states)
        out.mkdir(parents=True, exist_ok=True)
        extra = {"episode": res.extras["episode"]} if episodic else {}
        np.savez_compressed(out / "states.npz", image=res.image, config=res.config, torques=res.torques,
                            score=res.score, z=res.z.detach().numpy(), **extra)
        np.savez_compressed(out / "trace.npz", target=res.trace, energy=res.energy, prior=res.prior)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        # one row per found state; per found episode its highest-scoring state
        rows = (np.array([np.flatnonzero(ep == i)[np.argmax(res.score[ep == i] * target.sign)]
                          for i in range(int(ep.max()) + 1)]) if episodic else np.arange(len(res.image)))
        grid_png(out / "grid.png", res, e, real, idx, dist, opt.target, rows)
        summary["files"] = ["states.npz", "trace.npz", "summary.json", "grid.png"]
        return summary
    finally:
        torch.set_num_threads(prev)


def grid_png(path, res, explanation, real, idx, dist, title: str, rows=None) -> Path:
    """Per found state (`rows`: which, default all): the state, its heatmap and ratios, its nearest real state."""
    from ..figures import _plt
    from .. import viz

    plt = _plt()
    rows = np.arange(len(res.image)) if rows is None else np.asarray(rows)
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.4 * len(rows)), squeeze=False)
    maps = explanation.image.detach().numpy()
    for r, i in enumerate(rows):
        a0, a1, a2 = axes[r]
        a0.imshow(res.image[i])
        a0.set_title(f"found {i}: {res.score[i]:.3g}", fontsize=8)
        a1.imshow(viz.overlay_heatmap(res.image[i], maps[i], normalize="frame", opacity=0.6))
        if explanation.ratios:
            txt = ", ".join(f"{k[:9]} {float(v[i]):.2f}" for k, v in explanation.ratios.items())
            a1.set_title(f"{explanation.method}\n{txt}", fontsize=6)
        a2.imshow(real.images[idx[i]])
        a2.set_title(f"nearest real (RMS {dist[i]:.3f})", fontsize=8)
        for a in (a0, a1, a2):
            a.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
