"""Kinematics and dynamics of an arm from its URDF, with Pinocchio.

    model = RobotModel.from_name("baxter_right_arm")     # or RobotModel(urdf_path, joint_names=...)
    model.ee_position(q); model.jacobian(q); model.gravity(q); model.importance_factors(q, v, dt)

A bigger URDF can be reduced to a joint list (all other joints are locked at `reference`).
All arrays are in the URDF's base frame and in the order of `joint_names`.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import JointCountError, RobotInputError


class RobotModel:
    """A fixed-base serial arm: forward kinematics, Jacobians, mass matrix, dynamics, alphas."""

    def __init__(self, urdf: str | Path, ee_frame: str | None = None, joint_names=None, reference=None):
        import pinocchio as pin

        self._pin = pin
        urdf = Path(urdf)
        if not urdf.is_file():
            raise FileNotFoundError(f"URDF not found: {urdf}")
        full = pin.buildModelFromUrdf(str(urdf))
        if ee_frame is None:
            from .urdf_tools import parse_urdf

            ee_frame = parse_urdf(urdf).ee_frame
        if joint_names is not None:
            joint_names = list(joint_names)
            unknown = [n for n in joint_names if not full.existJointName(n)]
            if unknown:
                raise RobotInputError(f"joints {unknown} are not in {urdf.name}")
            lock = [full.getJointId(n) for n in full.names[1:] if n not in joint_names]
            ref = pin.neutral(full) if reference is None else np.asarray(reference, float)
            full = pin.buildReducedModel(full, lock, ref) if lock else full
        self.model = full
        self.data = full.createData()
        self.urdf_path = urdf
        self.joint_names = tuple(full.names[1:])
        if self.model.nq != self.model.nv or self.model.nv != len(self.joint_names):
            raise RobotInputError("only arms of 1-DoF joints (revolute/prismatic, no continuous) are supported")
        if not self.model.existFrame(ee_frame):
            raise RobotInputError(f"end-effector frame {ee_frame!r} is not in {urdf.name}")
        self.ee_frame = ee_frame
        self.ee_id = self.model.getFrameId(ee_frame)
        self.n = self.model.nv
        self.lower = np.array(self.model.lowerPositionLimit, dtype=float)
        self.upper = np.array(self.model.upperPositionLimit, dtype=float)
        self.effort_limit = np.array(self.model.effortLimit, dtype=float)
        self.velocity_limit = np.array(self.model.velocityLimit, dtype=float)
        self.damping = np.array(self.model.damping, dtype=float)
        self._joint_frame_ids = [self.model.getFrameId(nm) for nm in self.joint_names]
        self._rf = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
        self._tril = np.tril_indices(self.n, -1)

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str) -> "RobotModel":
        """A shipped robot: "baxter_right_arm" or "two_link_arm"."""
        from ..resources import share_path

        path = share_path("urdf", f"{name}.urdf")
        if not path.is_file():
            raise RobotInputError(f"unknown robot {name!r}: no urdf/{name}.urdf")
        return cls(path)

    # ---- input checking -------------------------------------------------------------------
    def check(self, x, what: str = "q") -> np.ndarray:
        a = np.asarray(x, dtype=float)
        if a.shape != (self.n,):
            raise JointCountError(f"{what} must have shape ({self.n},) for joints {list(self.joint_names)}, "
                                  f"got {a.shape}")
        if not math.isfinite(sum(a.tolist())):
            raise RobotInputError(f"{what} contains NaN or inf: {a}")
        return a

    # ---- kinematics -----------------------------------------------------------------------
    def _fk(self, q):
        self._pin.framesForwardKinematics(self.model, self.data, q)

    def ee_position(self, q) -> np.ndarray:
        q = self.check(q)
        self._fk(q)
        return self.data.oMf[self.ee_id].translation.copy()

    def ee_pose(self, q) -> tuple:
        """(position (3,), rotation matrix (3, 3)) of the end-effector frame."""
        q = self.check(q)
        self._fk(q)
        T = self.data.oMf[self.ee_id]
        return T.translation.copy(), T.rotation.copy()

    def ee_velocity(self, q, v) -> np.ndarray:
        return self.jacobian(q) @ self.check(v, "v")

    def joint_positions(self, q) -> np.ndarray:
        """Positions of the joint frames (rows, in joint order) followed by the end-effector, (n+1, 3)."""
        q = self.check(q)
        self._fk(q)
        out = np.empty((self.n + 1, 3))
        for i, fid in enumerate(self._joint_frame_ids):
            out[i] = self.data.oMf[fid].translation
        out[self.n] = self.data.oMf[self.ee_id].translation
        return out

    def jacobian(self, q, full: bool = False) -> np.ndarray:
        """Translational Jacobian of the end-effector point (3, n) (or (6, n) with full=True),
        in base-frame axes."""
        q = self.check(q)
        J = self._pin.computeFrameJacobian(self.model, self.data, q, self.ee_id, self._rf)
        return J.copy() if full else J[:3].copy()

    # ---- dynamics -------------------------------------------------------------------------
    def mass_matrix(self, q) -> np.ndarray:
        q = self.check(q)
        M = self._pin.crba(self.model, self.data, q)
        return np.triu(M) + np.triu(M, 1).T

    def gravity(self, q) -> np.ndarray:
        return self._pin.computeGeneralizedGravity(self.model, self.data, self.check(q)).copy()

    def bias(self, q, v) -> np.ndarray:
        """Coriolis, centrifugal and gravity torques h(q, v) (without joint damping)."""
        return self._pin.nonLinearEffects(self.model, self.data, self.check(q), self.check(v, "v")).copy()

    def forward_dynamics(self, q, v, tau, damping: bool = True) -> np.ndarray:
        """Joint accelerations for torques tau; with damping=True the URDF's viscous joint damping acts."""
        q, v, tau = self.check(q), self.check(v, "v"), self.check(tau, "tau")
        if damping:
            tau = tau - self.damping * v
        return self._pin.aba(self.model, self.data, q, v, tau).copy()

    def inverse_dynamics(self, q, v, a, damping: bool = True) -> np.ndarray:
        q, v, a = self.check(q), self.check(v, "v"), self.check(a, "a")
        tau = self._pin.rnea(self.model, self.data, q, v, a).copy()
        return tau + self.damping * v if damping else tau

    # ---- importance factors ---------------------------------------------------------------
    def importance_factors(self, q, v=None, dt: float = 0.05, method: str = "linearized", tau=None,
                           normalize: str | None = "mean", substeps: int = 1) -> np.ndarray:
        """alpha_j: how far the end-effector moves per N*m of joint j's torque in one control step.

        See `policy_xai.robot.importance` for the definitions, the normalisation and the cost."""
        from .importance import importance_factors

        return importance_factors(self, q, v, dt, method=method, tau=tau, normalize=normalize, substeps=substeps)

    # ---- inverse kinematics (for scripted experts) ----------------------------------------
    def inverse_kinematics(self, target, q0, iters: int = 200, tol: float = 1e-4, damping: float = 1e-3,
                           posture=None, posture_weight: float = 0.0, orientation=None,
                           orientation_weight: float = 0.0) -> tuple:
        """Damped least squares on the end-effector position (optionally its z axis), within joint limits.

        A local method: seed it near the answer (e.g. the current pose), not at a singular pose such as
        Baxter's q = 0 (arm straight). Returns (q, position error in m). `orientation`, if given, is the
        wanted direction (3,) of the end-effector frame's z axis (the approach direction)."""
        q = self.check(q0).copy()
        target = np.asarray(target, float)
        post = None if posture is None else self.check(posture, "posture")
        err_norm = np.inf
        for _ in range(iters):
            self._fk(q)
            T = self.data.oMf[self.ee_id]
            e = target - T.translation
            err_norm = float(np.linalg.norm(e))
            Jf = self._pin.computeFrameJacobian(self.model, self.data, q, self.ee_id, self._rf)
            rows, errs = [Jf[:3]], [e]
            if orientation is not None and orientation_weight > 0:
                z = T.rotation[:, 2]
                want = np.asarray(orientation, float) / np.linalg.norm(orientation)
                # angular error that turns z onto want; the Jacobian's angular rows act on it
                rows.append(orientation_weight * Jf[3:])
                errs.append(orientation_weight * np.cross(z, want))
            if err_norm < tol and (orientation is None or np.linalg.norm(errs[-1]) < tol * 10):
                break
            J = np.vstack(rows)
            err = np.concatenate(errs)
            dq = J.T @ np.linalg.solve(J @ J.T + damping * np.eye(J.shape[0]), err)
            if post is not None and posture_weight > 0:
                N = np.eye(self.n) - np.linalg.pinv(J) @ J
                dq += posture_weight * N @ (post - q)
            step = np.linalg.norm(dq)
            if step > 0.3:
                dq *= 0.3 / step
            q = np.clip(q + dq, self.lower, self.upper)
        else:
            self._fk(q)
            err_norm = float(np.linalg.norm(target - self.data.oMf[self.ee_id].translation))
        return q, err_norm
