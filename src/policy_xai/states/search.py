"""Searching the state model's latent space for states of interest (`policy-xai states find`).

Energy of a latent point z (the paper's Eq. 4-5, with the regulariser as the negative log-density
of the standard normal prior the model was trained towards):

    E(z) = -s * T(policy, g(z)) + lam * R(z),   R(z) = 0.5 (z - m)^T S^-1 (z - m)

where R is the negative log-density of a Gaussian prior over the latent space: N(0, I) (m = 0, S = I:
the paper's regulariser, --prior standard) or the Gaussian fitted to the latent means of the real
states (--prior aggregate, the default: a trained VAE's real states sit far from the origin, and
z = 0 decodes to a blurred average no real state looks like), g(z) = (image, configuration) decoded
from z, T the target and s = +1 to maximise it, -1 to minimise it. E is minimised with Adam from n
starts, each start's best point is one found state. The starts are the latent means of real states
drawn at random (`policy-xai states find` default, --starts real) or draws z ~ N(0, I) from the prior
(--starts prior, the paper's choice).

Targets (TARGETS; `module:function` for a user's own):
- `torque:<joint>:max|min`   the policy's raw torque of that joint (N·m)
- `torque_norm:max`          || tau / L ||_2 (L the torque limits)
- `saturation`               max_j |tau_j| / L_j (above 1: the command is clipped)
- `image_share:max|min`      the image's share of the torque change when either input is replaced
                             by its reference (the blurred image / the training-mean configuration):
                             a / (a + b), a = sum_j |tau_j(x, c) - tau_j(x0, c)|, b = the same for c -> c0.
                             Differentiable through the policy; the found states are also scored by
                             an explanation method (summary.json)
- `sensitivity:max`          || tau(g(z + eps v)) - tau(g(z)) ||_2 / eps averaged over 4 random unit
                             directions v (eps = 0.1): where a small change of the state moves the
                             torques most (critical states)
- `teacher_gap:max`          || (tau - tau_T) / L ||_2, tau_T the task teacher's torques as a distilled
                             teacher network predicts them from the same (image, configuration)
                             (states/teacher.py; needs the network: make_target(..., teacher=))
- `module:function`          a user's callable f(torques (B, J), observation {"image": (B, C, H, W),
                             "config": (B, D) raw}) -> (B,) scores to maximise, differentiable in them

Scope. By default (`state`) each start is one state and the search moves it alone. With the
`episode` scope each start is a real episode: K states evenly spaced along one rollout, with latent
means z_1..z_K, and the search moves them all by one shared latent shift d:

    E(d) = -s * mean_k T(policy, g(z_k + d)) + lam * mean_k R(z_k + d)

A shift that raises the target of every state of an episode at once changes what the states share
(the scene: where the object is, how the door stands), not one arm state, so this finds places
where the policy is weak along a whole episode (door's held-out mid13: a gap of about 0.1 all the
way, where the per-state maximum finds off-path arm states with gaps of 0.5 elsewhere).

Every found state is stored as the policy would see it: the image quantised to uint8, and the
torques and target recomputed on exactly those stored inputs.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from .model import StateVAE

SENSITIVITY_EPS = 0.1
SENSITIVITY_DIRECTIONS = 4


class TargetError(ValueError):
    """A target name that does not exist or does not fit the policy."""


@dataclass
class Target:
    name: str
    sign: float                                  # +1 maximise, -1 minimise
    fn: Callable                                 # (policy, image, config_raw, decode, z) -> (B,) score
    needs_z: bool = False
    description: str = ""


def _torques(policy, image, config):
    return policy(image, config)


def _image_share(policy, image, config):
    from ..attribution.path import path_sigma, reference_image

    H, W = image.shape[2:]
    x0 = reference_image(image, "blur", path_sigma(H, W))
    c0 = policy.config_mean.expand_as(config)
    tau = policy(image, config)
    a = (tau - policy(x0, config)).abs().sum(1)
    b = (tau - policy(image, c0)).abs().sum(1)
    return a / (a + b).clamp_min(1e-9)


TARGETS = ("torque:<joint>:max", "torque:<joint>:min", "torque_norm:max", "saturation", "image_share:max",
           "image_share:min", "sensitivity:max", "teacher_gap:max", "module:function")


def make_target(name: str, policy, teacher=None) -> Target:
    """The Target of a name (see the module docstring); TargetError names the choices. `teacher`: the
    teacher network (a TeacherNet or its file) for teacher_gap."""
    spec = policy.spec
    lim = policy.torque_limits.float()
    parts = name.split(":")
    if parts[0] == "torque" and len(parts) == 3 and parts[2] in ("max", "min"):
        if parts[1] not in spec.joint_names:
            raise TargetError(f"target {name!r}: unknown joint {parts[1]!r}; the policy's joints are "
                              f"{', '.join(spec.joint_names)}")
        j = spec.joint_names.index(parts[1])
        return Target(name, 1.0 if parts[2] == "max" else -1.0,
                      lambda p, x, c, dec, z: _torques(p, x, c)[:, j], description=f"torque of {parts[1]} (N·m)")
    if name == "torque_norm:max":
        return Target(name, 1.0, lambda p, x, c, dec, z: (_torques(p, x, c) / lim).norm(dim=1),
                      description="|| tau / L ||")
    if name == "saturation":
        return Target(name, 1.0, lambda p, x, c, dec, z: (_torques(p, x, c).abs() / lim).max(1).values,
                      description="max_j |tau_j| / L_j")
    if parts[0] == "image_share" and len(parts) == 2 and parts[1] in ("max", "min"):
        return Target(name, 1.0 if parts[1] == "max" else -1.0, lambda p, x, c, dec, z: _image_share(p, x, c),
                      description="image share of the torque change (reference path)")
    if name == "sensitivity:max":
        def sens(p, x, c, dec, z):
            tau = _torques(p, x, c)
            g = torch.Generator().manual_seed(0)
            out = 0.0
            for _ in range(SENSITIVITY_DIRECTIONS):
                v = torch.randn(z.shape, generator=g)
                v = v / v.norm(dim=1, keepdim=True)
                x2, c2 = dec(z + SENSITIVITY_EPS * v)
                out = out + (_torques(p, x2, c2) - tau).norm(dim=1) / SENSITIVITY_EPS
            return out / SENSITIVITY_DIRECTIONS
        return Target(name, 1.0, sens, needs_z=True, description="torque change per unit latent step")
    if name == "teacher_gap:max":
        from .teacher import TeacherModelError, load_teacher, teacher_gap

        if teacher is None:
            raise TargetError("target teacher_gap:max needs a teacher network (--teacher FILE; make one with "
                              "`policy-xai states teacher --policy P --task T --out FILE`)")
        if not isinstance(teacher, torch.nn.Module):      # a file: TeacherNet or TwoStageTeacher
            try:
                teacher = load_teacher(teacher, spec)
            except TeacherModelError as e:
                raise TargetError(str(e).splitlines()[0]) from e
        net = teacher
        return Target(name, 1.0, lambda p, x, c, dec, z: teacher_gap(p, net, x, c),
                      description=f"|| (tau - tau_teacher) / L || (teacher network of {net.task or '?'})")
    if parts[0] == "teacher_gap":
        raise TargetError(f"unknown target {name!r}; the teacher gap is teacher_gap:max")
    if len(parts) == 2 and parts[0] and parts[1] and parts[0] not in ("torque", "image_share", "sensitivity",
                                                                         "torque_norm", "teacher_gap"):
        try:
            mod = importlib.import_module(parts[0])
            fn = getattr(mod, parts[1])
        except (ImportError, AttributeError) as e:
            raise TargetError(f"unknown target {name!r}: not one of {', '.join(TARGETS)}, and cannot import "
                              f"{parts[1]} from {parts[0]} ({e})") from e
        if not callable(fn):
            raise TargetError(f"target {name!r} is not callable")
        return Target(name, 1.0, lambda p, x, c, dec, z: fn(_torques(p, x, c), {"image": x, "config": c}),
                      description=f"user target {name}")
    raise TargetError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")


def decoder(model: StateVAE, policy) -> Callable:
    """z -> (image (B, C, H, W) in [0, 1], raw configuration (B, D))."""
    def dec(z):
        img, cn = model.decode(z)
        return img, cn * policy.config_std + policy.config_mean
    return dec


def score(target: Target, policy, image: torch.Tensor, config: torch.Tensor, model: StateVAE,
          z: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The target on given inputs (no gradient). Targets that need the latent (sensitivity) encode
    the inputs when `z` is not given."""
    with torch.no_grad():
        if target.needs_z and z is None:
            z, _ = model.encode(image, policy.normalise_config(config))
        return target.fn(policy, image, config, decoder(model, policy), z).float()


@dataclass
class SearchResult:
    z: torch.Tensor               # (N, latent) best point per start
    image: np.ndarray             # (N, H, W, 3) uint8
    config: np.ndarray            # (N, D) float32 raw
    torques: np.ndarray           # (N, J) float32, the policy's torques on the stored inputs
    score: np.ndarray             # (N,) target on the stored inputs
    trace: np.ndarray             # (steps + 1, N) target along the optimisation (decoded, float images)
    energy: np.ndarray            # (steps + 1, N)
    prior: np.ndarray             # (steps + 1, N) R(z)
    seconds: float
    target: str = ""
    extras: dict = field(default_factory=dict)


def start_points(model: StateVAE, policy, n: int, seed: int = 0, images: Optional[np.ndarray] = None,
                 configs: Optional[np.ndarray] = None) -> torch.Tensor:
    """n starting latents: the posterior means of n real states drawn at random (when given), else
    draws from the prior N(0, I)."""
    g = torch.Generator().manual_seed(int(seed))
    if images is None or not len(images):
        return torch.randn(int(n), model.latent, generator=g)
    pick = torch.randint(0, len(images), (int(n),), generator=g)
    x = torch.from_numpy(np.asarray(images)[pick.numpy()]).permute(0, 3, 1, 2).float() / 255.0
    c = torch.from_numpy(np.asarray(configs, np.float32)[pick.numpy()])
    with torch.no_grad():
        mu, _ = model.encode(x, policy.normalise_config(c))
    return mu


@dataclass
class LatentPrior:
    """A Gaussian over the latent space: 0.5 ||(z - mean) @ whiten||^2 is its negative log-density up
    to a constant. standard(): N(0, I) (the paper's regulariser); aggregate(): fitted to the latent
    means of real states (where the real states are in a trained model's latent space)."""
    mean: torch.Tensor
    whiten: torch.Tensor
    kind: str = "standard"

    @staticmethod
    def standard(latent: int) -> "LatentPrior":
        return LatentPrior(torch.zeros(latent), torch.eye(latent), "standard")

    @staticmethod
    def aggregate(mu: torch.Tensor, shrink: float = 1e-2) -> "LatentPrior":
        m = mu.mean(0)
        cov = torch.cov((mu - m).T) if len(mu) > 1 else torch.eye(mu.shape[1])
        cov = cov + shrink * torch.eye(mu.shape[1]) * max(float(cov.diagonal().mean()), 1e-6)
        evals, evecs = torch.linalg.eigh(cov)
        return LatentPrior(m, evecs @ torch.diag(evals.clamp_min(1e-9).rsqrt()) @ evecs.T, "aggregate")

    def energy(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z - self.mean) @ self.whiten).pow(2).sum(1)


def real_latents(model: StateVAE, policy, images: np.ndarray, configs: np.ndarray, batch: int = 256) -> torch.Tensor:
    """The posterior means of real states (N, latent)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.asarray(images[i:i + batch])).permute(0, 3, 1, 2).float() / 255.0
            c = torch.from_numpy(np.asarray(configs[i:i + batch], np.float32))
            out.append(model.encode(x, policy.normalise_config(c))[0])
    return torch.cat(out)


def _freeze(*nets) -> None:
    """Eval mode and no parameter gradients: the search differentiates through the networks only."""
    for net in nets:
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)


def _stored(model, policy, target: Target, dec, z) -> tuple:
    """The states of latents z as they are stored: (image (N, H, W, 3) uint8, raw configuration, the
    policy's torques and the target on exactly those inputs), float32."""
    with torch.no_grad():
        img, cfg = dec(z)
        u8 = (img.clamp(0, 1) * 255.0).round().to(torch.uint8)
        x = u8.float() / 255.0  # exactly what is stored
        tau = policy(x, cfg)
        sc = score(target, policy, x, cfg, model, z if target.needs_z else None)
    return (u8.permute(0, 2, 3, 1).numpy(), cfg.numpy().astype(np.float32), tau.numpy().astype(np.float32),
            sc.numpy().astype(np.float32))


def _minimise(x0: torch.Tensor, terms: Callable, sign: float, lam: float, steps: int, lr: float,
              progress: Optional[Callable[[int, int], None]] = None):
    """Adam on E = -sign T + lam R for n independent rows of x (x0 (n, ...)); `terms(x)` -> (T, R),
    each (n,). Returns (the best x of each row, T, E and R at every step (steps + 1, n), seconds)."""
    x = x0.requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    trace, energy, priors = [], [], []
    best_e = torch.full((len(x0),), float("inf"))
    best = x.detach().clone()
    t0 = time.perf_counter()
    for k in range(int(steps) + 1):
        t, r = terms(x)
        e = -sign * t + lam * r
        trace.append(t.detach().numpy().copy())
        energy.append(e.detach().numpy().copy())
        priors.append(r.detach().numpy().copy())
        better = e.detach() < best_e
        best_e = torch.where(better, e.detach(), best_e)
        best[better] = x.detach()[better]
        if k == int(steps):
            break
        opt.zero_grad()
        e.sum().backward()
        opt.step()
        if progress:
            progress(k + 1, int(steps))
    return best, np.stack(trace), np.stack(energy), np.stack(priors), time.perf_counter() - t0


def find_states(model: StateVAE, policy, target: Target, n: int = 8, steps: int = 200, lr: float = 0.05,
                lam: float = 0.1, seed: int = 0, progress: Optional[Callable[[int, int], None]] = None,
                start: Optional[torch.Tensor] = None, prior: Optional[LatentPrior] = None) -> SearchResult:
    """Minimise E(z) (module docstring) from n starts (`start` (n, latent), default draws from the
    prior) with `prior`'s regulariser (default N(0, I)); returns the best point of each."""
    _freeze(model, policy)
    prior = prior or LatentPrior.standard(model.latent)
    if start is None:
        start = start_points(model, policy, n, seed)
    n = len(start)
    dec = decoder(model, policy)

    def terms(z):
        img, cfg = dec(z)
        return target.fn(policy, img, cfg, dec, z), prior.energy(z)

    best_z, trace, energy, priors, seconds = _minimise(start.detach().clone().float(), terms, target.sign, lam,
                                                       steps, lr, progress)
    return SearchResult(best_z, *_stored(model, policy, target, dec, best_z), trace, energy, priors, seconds,
                        target.name)


def find_episodes(model: StateVAE, policy, target: Target, groups: torch.Tensor, steps: int = 200,
                  lr: float = 0.05, lam: float = 0.1, progress: Optional[Callable[[int, int], None]] = None,
                  prior: Optional[LatentPrior] = None) -> SearchResult:
    """The episode scope (module docstring): minimise E(d) for each of the n groups (n, K, latent) of
    real latents; returns the n K states of each group's best shift, in group order, with the
    group's mean target in `trace`/`energy` and, in extras, `episode` (n K,) the group of each
    state, `episode_score` (n,) the mean target over a group's stored states and `shift` (n, latent)."""
    _freeze(model, policy)
    prior = prior or LatentPrior.standard(model.latent)
    groups = groups.detach().float()
    n, K, L = groups.shape
    dec = decoder(model, policy)

    def terms(d):
        z = (groups + d).reshape(n * K, L)
        img, cfg = dec(z)
        return (target.fn(policy, img, cfg, dec, z).reshape(n, K).mean(1),
                prior.energy(z).reshape(n, K).mean(1))

    best_d, trace, energy, priors, seconds = _minimise(torch.zeros(n, 1, L), terms, target.sign, lam, steps, lr,
                                                       progress)
    z = (groups + best_d).reshape(n * K, L)
    res = SearchResult(z, *_stored(model, policy, target, dec, z), trace, energy, priors, seconds, target.name)
    res.extras.update(episode=np.repeat(np.arange(n), K), episode_score=res.score.reshape(n, K).mean(1),
                      shift=best_d[:, 0].numpy())
    return res


def episode_groups(episode: np.ndarray, n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """n lists of k state indices, each evenly spaced along one real episode (`episode`: the rollout of
    each state, in order); the episodes drawn at random without repeats while there are enough."""
    episode = np.asarray(episode)
    ids = np.unique(episode)
    if not len(ids):
        raise ValueError("the episode scope needs real states from rollouts (not a bag)")
    rng = np.random.default_rng(int(seed))
    pick = rng.permutation(ids) if n <= len(ids) else rng.choice(ids, int(n), replace=True)
    out = []
    for e in pick[:int(n)]:
        members = np.flatnonzero(episode == e)
        out.append(members[np.linspace(0, len(members) - 1, int(k)).round().astype(int)])
    return out


def optimise_pixels(policy, target: Target, image_shape, config: torch.Tensor, n: int = 8, steps: int = 200,
                    lr: float = 0.05, seed: int = 0) -> SearchResult:
    """The naive search the paper's Fig. 4 compares with: optimise the raw image (from uniform noise,
    through a sigmoid so it stays in [0, 1]) for the target, the configuration held at `config`."""
    C, H, W = image_shape
    g = torch.Generator().manual_seed(int(seed))
    logits = torch.randn(int(n), C, H, W, generator=g).requires_grad_(True)
    cfg = config.expand(int(n), -1).clone()
    opt = torch.optim.Adam([logits], lr=lr)
    trace = []
    t0 = time.perf_counter()
    for k in range(int(steps) + 1):
        img = torch.sigmoid(logits)
        if target.needs_z:
            raise TargetError(f"target {target.name!r} needs the state model's latent space")
        s = target.fn(policy, img, cfg, None, None)
        trace.append(s.detach().numpy().copy())
        if k == int(steps):
            break
        opt.zero_grad()
        (-target.sign * s).sum().backward()
        opt.step()
    with torch.no_grad():
        u8 = (torch.sigmoid(logits) * 255.0).round().to(torch.uint8)
        x = u8.float() / 255.0
        tau = policy(x, cfg)
        sc = target.fn(policy, x, cfg, None, None)
    tr = np.stack(trace)
    return SearchResult(torch.zeros(int(n), 0), u8.permute(0, 2, 3, 1).numpy(), cfg.numpy().astype(np.float32),
                        tau.numpy().astype(np.float32), sc.numpy().astype(np.float32), tr, -target.sign * tr,
                        np.zeros_like(tr), time.perf_counter() - t0, target.name)


def nearest_real(images: np.ndarray, configs: np.ndarray, real_images: np.ndarray, real_configs: np.ndarray,
                 policy, exclude_self=False) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest real state per found state and its distance: RMS over the image's values
    in [0, 1] and the normalised configuration together. exclude_self: True when the states are the
    first len(images) real states themselves, or the index of each state among the real ones
    (leave-one-out distances)."""
    def flat(imgs, cfgs):
        x = torch.from_numpy(np.asarray(imgs)).float().flatten(1) / 255.0
        c = policy.normalise_config(torch.from_numpy(np.asarray(cfgs, np.float32))).detach()
        return torch.cat([x, c], 1)
    a, b = flat(images, configs), flat(real_images, real_configs)
    d = torch.cdist(a, b) / (a.shape[1] ** 0.5)
    if exclude_self is not False and exclude_self is not None:
        k = torch.arange(len(a))
        own = k if exclude_self is True else torch.as_tensor(np.asarray(exclude_self), dtype=torch.long)
        d[k, own] = float("inf")
    v, i = d.min(1)
    return i.numpy(), v.numpy()
