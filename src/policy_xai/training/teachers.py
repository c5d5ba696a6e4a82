"""The state-feedback teachers: torques as a function of the joint state (q, v) and of the target's
position only,

    q_goal = IK(target)   (seeded at the task's start pose, so that it is a function of the target)
    a      = a_max * tanh(w^2 (q_goal - q) / a_max) - 2 zeta w v
    tau    = c(q, v) + B v + (M(q) + dt B) a        (clipped to the effort limits)

so that a network which sees the target only in the image and (q, v, ee) in the configuration can
represent it, and every state the learner visits can be relabelled (DAgger). The task's own
time-indexed experts (`policy_xai.robot.experts`) follow a planned trajectory and are not a function
of the observation, so they are not used as labels here. `FeedbackExpert` reaches;
`PegFeedbackExpert` and `DoorFeedbackExpert` are the multi-phase ones; `make_teacher(sim)` picks the
task's (its `Task.teacher`).
"""
from __future__ import annotations

import numpy as np

DOWN = (0.0, 0.0, -1.0)


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
        from ..robot.tasks import HOLE_DEPTH, PEG_LEN

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
        from ..robot.tasks import HOLE_CLEAR, PEG_HALF

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
        from ..robot.tasks import door_gap_point

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
        return float(self.sim.measure().get("door_angle", 0.0))

    def joint_goal(self, q, target, door_angle: float | None = None) -> np.ndarray:
        from ..robot.tasks import door_gap_point

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


def make_teacher(sim) -> FeedbackExpert:
    """The state-feedback teacher of the simulation's task (its `Task.teacher`, see robot.tasks):
    FeedbackExpert (reaching) or the task's multi-phase one."""
    return sim.task.teacher_class()(sim)
