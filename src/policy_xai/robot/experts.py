"""Scripted experts: demonstrations for every task, from the arm's model and the target's position.

An expert is privileged (it reads `sim.target_position`, which a policy only sees in the image). Each
plans Cartesian waypoints for the end-effector, turns them into joint goals by inverse kinematics
(Pinocchio, damped least squares, gripper pointing down on Baxter), follows a minimum-jerk joint
trajectory between them, and computes torques with a computed-torque law that suits a zero-order
hold at the control rate:

    tau = c(q, v) + B v + (M(q) + dt B) (a_ref + kp (q_ref - q) + kd (v_ref - v))

(c: Coriolis/centrifugal, plus gravity unless the simulation compensates it; B: joint damping; the
dt B term is the damping over one held step, which dominates the light wrist joints). A target move
(`Simulation.set_target`) triggers a re-plan from the current state.
"""
from __future__ import annotations

import numpy as np

from .sim import Observation, Simulation
from .tasks import HOLE_DEPTH, PEG_LEN, TABLE_TOP, door_gap_point

DOWN = (0.0, 0.0, -1.0)


def min_jerk(q0, q1, T: float, t: float) -> tuple:
    """Position, velocity, acceleration of a minimum-jerk move from q0 to q1 over T s, at time t."""
    if t >= T:
        return q1.copy(), np.zeros_like(q1), np.zeros_like(q1)
    s = max(t, 0.0) / T
    p = 10 * s**3 - 15 * s**4 + 6 * s**5
    dp = (30 * s**2 - 60 * s**3 + 30 * s**4) / T
    ddp = (60 * s - 180 * s**2 + 120 * s**3) / T**2
    d = q1 - q0
    return q0 + p * d, dp * d, ddp * d


class JointTrajectoryExpert:
    """Follows a list of (end-effector waypoint, duration) segments with computed-torque control."""

    omega = 6.0   # rad/s, closed-loop bandwidth of the joint tracking (x dt = 0.3 at 20 Hz)
    zeta = 1.0

    def __init__(self, sim: Simulation):
        self.sim = sim
        self.model = sim.model
        self.dt = sim.dt
        self.orient = DOWN if sim.n_joints == 7 else None
        self.posture = None
        self._segments = []       # list of (t0, T, q_from, q_to)
        self._t0 = 0.0
        self._target_seen = None

    # -- planning -----------------------------------------------------------------------------
    def waypoints(self, obs: Observation, target: np.ndarray) -> list:
        """[(end-effector position, duration s), ...]; override per task."""
        return [(target, 2.5)]

    def ik(self, p, q_seed) -> np.ndarray:
        q, _ = self.model.inverse_kinematics(p, q_seed, posture=self.posture if self.posture is not None else q_seed,
                                             posture_weight=0.05, orientation=self.orient,
                                             orientation_weight=0.5 if self.orient is not None else 0.0)
        return q

    def plan(self, obs: Observation) -> None:
        target = self.sim.target_position
        self._target_seen = target.copy()
        if self.posture is None:
            self.posture = obs.joint_position.copy()
        t = obs.time
        q = obs.joint_position.copy()
        self._segments = []
        for p, T in self.waypoints(obs, target):
            q1 = self.ik(np.asarray(p, float), q)
            self._segments.append((t, T, q, q1))
            q, t = q1, t + T

    def reference(self, t: float) -> tuple:
        for t0, T, qa, qb in self._segments:
            if t < t0 + T:
                return min_jerk(qa, qb, T, t - t0)
        t0, T, qa, qb = self._segments[-1]
        return min_jerk(qa, qb, T, T)

    # -- control ------------------------------------------------------------------------------
    def reset(self, obs: Observation) -> None:
        self.posture = None
        self.plan(obs)

    def act(self, obs: Observation) -> np.ndarray:
        if self._target_seen is None or not np.allclose(self._target_seen, self.sim.target_position):
            self.plan(obs)
        m = self.model
        q, v = obs.joint_position, obs.joint_velocity
        q_ref, v_ref, a_ref = self.reference(obs.time + 0.5 * self.dt)
        w, z = self.omega, self.zeta
        a_cmd = a_ref + w * w * (q_ref - q) + 2 * z * w * (v_ref - v)
        M = m.mass_matrix(q)
        c = m.bias(q, v)
        if self.sim.gravity_compensation:
            c = c - m.gravity(q)
        B = m.damping
        tau = c + B * v + (M + self.dt * np.diag(B)) @ a_cmd
        lim = self.sim.torque_limits
        return np.clip(tau, -lim, lim)


class ReachExpert(JointTrajectoryExpert):
    def waypoints(self, obs, target):
        return [(target, 2.5 if self.sim.n_joints == 7 else 1.5)]


class PegExpert(JointTrajectoryExpert):
    """Above the hole, then straight down into it (the peg is rigid in the gripper)."""
    omega = 8.0

    def waypoints(self, obs, target):
        # end-effector point = peg tip + (PEG_LEN - 0.02) up, the gripper pointing down
        up = PEG_LEN - 0.02
        top = TABLE_TOP + HOLE_DEPTH
        x, y = target[0], target[1]
        return [((x, y, top + 0.05 + up), 2.5), ((x, y, top + 0.01 + up), 1.0),
                ((x, y, top - 0.75 * HOLE_DEPTH + up), 2.0)]


class DoorExpert(JointTrajectoryExpert):
    """Hook shaft down into the gap behind the handle bar, then pull along the door's arc."""
    omega = 8.0
    open_to = 0.6  # rad

    def waypoints(self, obs, target):
        # the shaft's lower end is ~0.06 m below the end-effector point
        z_grip = target[2] + 0.02
        pts = [(door_gap_point(target, 0.0, z_grip + 0.12), 2.5), (door_gap_point(target, 0.0, z_grip), 1.0)]
        for k in range(1, 5):
            p = door_gap_point(target, self.open_to * k / 4, z_grip)
            pts.append(((p[0] - 0.01 * k, p[1], z_grip), 0.6))
        return pts


def make_expert(sim: Simulation) -> JointTrajectoryExpert:
    """The scripted expert of the simulation's task (its `Task.expert`, see robot.tasks)."""
    return sim.task.expert_class()(sim)


def run_expert(sim: Simulation, condition: int, steps: int | None = None, target_change: tuple | None = None,
               record: bool = False, noise: float = 0.0) -> dict:
    """One expert episode. target_change = (step, xyz) moves the target mid-episode; noise (rad) perturbs
    the start pose (see `Simulation.reset`).

    Returns {"success", "final_distance", "steps", "clipped_steps", "measure", ["trajectory"]}."""
    obs = sim.reset(condition, noise=noise)
    expert = make_expert(sim)
    expert.reset(obs)
    steps = sim.task.horizon if steps is None else steps
    traj = []
    clipped = 0
    for k in range(steps):
        if target_change is not None and k == target_change[0]:
            sim.set_target(target_change[1])
        tau = expert.act(obs)
        if record:
            traj.append((obs, tau))
        obs = sim.step(tau)
        clipped += int(obs.any_clipped)
    out = {"success": sim.success(), "final_distance": sim.distance(), "steps": steps, "clipped_steps": clipped,
           "measure": sim.measure()}
    if record:
        out["trajectory"] = traj
    return out
