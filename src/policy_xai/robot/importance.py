"""Importance factors alpha_j (Kim & Choi, Sec. III, Fig. 2), from the arm's dynamics.

alpha_j measures how far the end-effector moves in one control step of length dt when ONLY joint j's
torque is applied, per unit of that torque: alpha_j = |delta p_j| / |tau_j|, with the drift (the
motion the arm makes under zero torque from the same state (q, v)) removed. Two ways to compute it:

``method="linearized"`` (the default)
    alpha_j = || J_pos(q) M(q)^-1 e_j || * dt^2 / 2
    The end-effector displacement of a constant joint acceleration M^-1 tau held for dt, to first
    order in the torque. Independent of v and of the torque's size; about 7-10 us for 7 joints.

``method="exact"``
    Integrate the rigid-body dynamics (Pinocchio's ABA, with the URDF's joint damping) over dt from
    (q, v) twice — once with tau = tau_j e_j and once with tau = 0 — run forward kinematics on both
    end states and divide the distance between the two end-effector positions by |tau_j|. Each of
    `substeps` steps holds the acceleration constant (q += v h + a h^2 / 2, v += a h); with more
    than one substep the damping is taken implicitly, a = (M + h B)^-1 (tau - h(q, v) - B v). tau_j is the
    commanded torque if `tau` is given (so alpha depends on it), else a small probe (1e-3 of the
    joint's effort limit), which reproduces the linearised value up to the end-effector path's
    curvature. Cost: (n + 1) * substeps ABA + n + 1 forward kinematics (~50-60 us for 7 joints).

Where they differ: with a real torque the exact value includes the curvature of the end-effector path
(second order in the joint displacement M^-1 tau dt^2 / 2), and with substeps > 1 the effect of joint
damping and of the velocity the torque builds up within the step. On Baxter the two agree to <1 % for
probe torques at dt = 0.01-0.05 s; they differ by tens of percent on the light wrist joints under
full torque at dt = 0.05 s, where one step turns the joint by a large angle (see test_robot_importance).
MuJoCo's semi-implicit Euler step moves the joints by a dt^2 (not a dt^2 / 2): a constant factor 2,
which normalisation removes.

Normalisation (`normalize`): only ratios between joints matter to the attribution (the amortised
relevance is sum_j alpha_j R_j and is reported as ratios), so alpha is rescaled:

- ``"mean"`` (default): alpha / mean(alpha) — mean 1, the same scale as the no-model fallback
  alpha = 1 (Sec. III: "If the dynamics and forward kinematics are unavailable, alpha_j is set to 1").
- ``"sum"``: alpha / sum(alpha) — the weights sum to 1.
- ``"max"``: alpha / max(alpha).
- ``None``: raw values in metres per N*m.

If every raw alpha is 0 (an end-effector that no joint can move), the normalised result is all ones.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import RobotInputError

METHODS = ("linearized", "exact")
NORMALIZATIONS = ("mean", "sum", "max", None)


def fallback_alpha(n_joints: int) -> np.ndarray:
    """alpha without a robot model: every joint counts the same (paper, Sec. III)."""
    return np.ones(int(n_joints))


def normalize_alpha(alpha: np.ndarray, normalize: str | None = "mean") -> np.ndarray:
    if normalize is None:
        return alpha
    vals = alpha.tolist()
    if normalize == "mean":
        s = sum(vals) / len(vals)
    elif normalize == "sum":
        s = sum(vals)
    elif normalize == "max":
        s = max(vals)
    else:
        raise RobotInputError(f"unknown normalisation {normalize!r}; use one of {NORMALIZATIONS}")
    if not (s > 0 and math.isfinite(s)):
        return np.ones_like(alpha) if normalize != "sum" else np.full_like(alpha, 1.0 / alpha.size)
    return alpha / s


def linearized_raw(model, q: np.ndarray, dt: float) -> np.ndarray:
    """||J_pos M^-1 e_j|| dt^2/2 for all j, without input checks (the hot path)."""
    pin, m, d = model._pin, model.model, model.data
    pin.crba(m, d, q)
    pin.cholesky.decompose(m, d)
    Minv = pin.cholesky.computeMinv(m, d)  # the full symmetric inverse
    A = pin.computeFrameJacobian(m, d, q, model.ee_id, model._rf)[:3] @ Minv
    k = 0.5 * dt * dt
    # (small arrays: Python floats beat numpy's per-call overhead here)
    return np.array([k * math.hypot(a, b, c) for a, b, c in zip(*A.tolist())])


def _ee_after(model, q, dq):
    pin, m, d = model._pin, model.model, model.data
    q1 = pin.integrate(m, q, dq)
    pin.forwardKinematics(m, d, q1)
    return pin.updateFramePlacement(m, d, model.ee_id).translation.copy()


def _rollout_ee(model, q, v, tau, dt, substeps):
    pin, m, d = model._pin, model.model, model.data
    h = dt / substeps
    B = np.diag(model.damping)
    for _ in range(substeps):
        # joint damping taken implicitly (as MuJoCo does): stable for light, heavily damped joints
        M = pin.crba(m, d, q)
        M = np.triu(M) + np.triu(M, 1).T
        a = np.linalg.solve(M + h * B, tau - pin.nonLinearEffects(m, d, q, v) - model.damping * v)
        q = pin.integrate(m, q, v * h + a * (0.5 * h * h))
        v = v + a * h
    pin.forwardKinematics(m, d, q)
    return pin.updateFramePlacement(m, d, model.ee_id).translation.copy()


def exact_raw(model, q, v, dt, tau=None, substeps: int = 1) -> np.ndarray:
    n = model.n
    default_probe = 1e-3 * np.where(model.effort_limit > 0, model.effort_limit, 1.0)
    if tau is None:
        probe = default_probe
    else:
        probe = np.asarray(tau, float).copy()
        small = np.abs(probe) < 1e-9
        probe[small] = default_probe[small]
    out = np.empty(n)
    if substeps == 1:
        # one constant-acceleration step; ABA is affine in tau, so a_j = a_0 + M^-1 e_j tau_j exactly
        pin, m, d = model._pin, model.model, model.data
        a0 = pin.aba(m, d, q, v, -model.damping * v)
        pin.crba(m, d, q)
        pin.cholesky.decompose(m, d)
        Minv = pin.cholesky.computeMinv(m, d)
        k = 0.5 * dt * dt
        base = v * dt + a0 * k
        p0 = _ee_after(model, q, base)
        for j in range(n):
            pj = _ee_after(model, q, base + Minv[:, j] * (probe[j] * k))
            out[j] = math.dist(pj.tolist(), p0.tolist()) / abs(probe[j])
        return out
    zero = np.zeros(n)
    p0 = _rollout_ee(model, q, v, zero, dt, substeps)
    t = np.zeros(n)
    for j in range(n):
        t[j] = probe[j]
        pj = _rollout_ee(model, q, v, t, dt, substeps)
        t[j] = 0.0
        out[j] = np.linalg.norm(pj - p0) / abs(probe[j])
    return out


def importance_factors(model, q, v=None, dt: float = 0.05, method: str = "linearized", tau=None,
                       normalize: str | None = "mean", substeps: int = 1) -> np.ndarray:
    """Importance factors (n_joints,) of a `RobotModel` at state (q, v) for a control step dt.

    See the module docstring for the methods and the normalisation."""
    q = model.check(q, "q")
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        dt = float("nan")
    if not (math.isfinite(dt) and dt > 0):
        raise RobotInputError(f"dt must be a positive number of seconds, got {dt!r}")
    if method == "linearized":
        raw = linearized_raw(model, q, dt)
    elif method == "exact":
        v = np.zeros(model.n) if v is None else model.check(v, "v")
        if tau is not None:
            tau = model.check(tau, "tau")
        if int(substeps) < 1:
            raise RobotInputError(f"substeps must be >= 1, got {substeps}")
        raw = exact_raw(model, q, v, dt, tau, int(substeps))
    else:
        raise RobotInputError(f"unknown importance-factor method {method!r}; use one of {METHODS}")
    return normalize_alpha(raw, normalize)
