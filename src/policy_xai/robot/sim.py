"""Torque-controlled MuJoCo simulation of a task's arm with an offscreen RGB camera. No ROS.

    sim = Simulation(task="reach", image_size=64, control_rate=20.0, seed=0)
    obs = sim.reset(condition=0)            # Observation: image, joint state, end-effector state, time
    obs = sim.step(torques)                 # holds the torques for one control period (1/control_rate)
    obs.clipped, obs.torque_applied         # the clipping report of that step
    sim.set_target(xyz); sim.success(); sim.close()
    sim.render_segmentation()               # (H, W) int32 geom id per pixel of render()'s image, -1: none
    sim.object_masks()                      # {task object name: (H, W) bool, ..., "background": ...}
    sim.site_position("peg_tip"); sim.scene_joint_position("door_hinge")   # for task callbacks
    sim.set_joint_state(q, v, scene={"door_hinge": 0.3})                   # place the arm and the scene
    sim.mj_model, sim.mj_data, sim.camera_fovy, sim.physics_timestep       # read-only MuJoCo view
    sim.reseed(seed)                        # restart the random stream (start-pose noise, reset(None))

The MuJoCo model is generated from the task's URDF (`policy_xai.robot.mjcf`); `sim.model` is the
Pinocchio `RobotModel` of the same file (importance factors, experts). Rendering picks MUJOCO_GL=egl
unless set (osmesa if only OSMesa is installed); it turns shadows and multisampling off for speed.
"""
from __future__ import annotations

import ctypes.util
import math
import os
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import numpy as np

from .errors import (JointCountError, NonFiniteTorqueError, RenderingUnavailableError, RobotInputError,
                     UnknownTaskError)
from .tasks import ARM, Task, get_task

MIN_IMAGE, MAX_IMAGE = 16, 512


def _choose_gl_backend() -> str:
    """Set MUJOCO_GL before mujoco is imported: egl, else osmesa, when the user has not chosen."""
    if "mujoco" not in sys.modules and not os.environ.get("MUJOCO_GL"):
        if ctypes.util.find_library("EGL"):
            os.environ["MUJOCO_GL"] = "egl"
        elif ctypes.util.find_library("OSMesa"):
            os.environ["MUJOCO_GL"] = "osmesa"
        else:
            os.environ["MUJOCO_GL"] = "egl"
    return os.environ.get("MUJOCO_GL", "")


def _gl_help(backend: str, err: Exception) -> str:
    return (f"offscreen rendering failed with MUJOCO_GL={backend or '(unset)'}: {err}. Install the Debian package "
            "libegl1 (and a Mesa/GPU driver, e.g. libegl-mesa0) for MUJOCO_GL=egl, or libosmesa6 for "
            "MUJOCO_GL=osmesa; or use Simulation(..., render=False) for physics only.")


def import_mujoco():
    backend = _choose_gl_backend()
    try:
        import mujoco
    except Exception as e:  # noqa: BLE001 - e.g. MUJOCO_GL=osmesa without libOSMesa
        raise RenderingUnavailableError(_gl_help(backend, e)) from e
    return mujoco


@dataclass
class Observation:
    """What the arm's sensors and camera give at one instant (the target's position is NOT in here)."""
    image: np.ndarray | None          # (H, W, 3) uint8 RGB, or None when rendering is off
    joint_names: tuple
    joint_position: np.ndarray        # (n,) rad
    joint_velocity: np.ndarray        # (n,) rad/s
    ee_position: np.ndarray           # (3,) m, base frame
    ee_velocity: np.ndarray           # (3,) m/s, base frame
    time: float                       # simulated seconds since reset
    step: int                         # control steps since reset
    torque_requested: np.ndarray = field(default_factory=lambda: np.zeros(0))  # last step's input
    torque_applied: np.ndarray = field(default_factory=lambda: np.zeros(0))    # after clipping
    clipped: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))     # per joint: was clipped

    @property
    def any_clipped(self) -> bool:
        return bool(np.any(self.clipped))

    def config(self, groups=("joint_position", "joint_velocity", "ee_position", "ee_velocity")) -> np.ndarray:
        """The policy's configuration vector: the named groups concatenated in the given order."""
        parts = []
        for g in groups:
            if g not in ("joint_position", "joint_velocity", "ee_position", "ee_velocity"):
                raise RobotInputError(f"unknown configuration group {g!r}")
            parts.append(getattr(self, g))
        return np.concatenate(parts).astype(np.float32)


class Simulation:
    """One task's scene in MuJoCo under torque control at `control_rate` Hz."""

    def __init__(self, task: str | Task = "reach", image_size: int | tuple = 64, control_rate: float = 20.0,
                 seed: int | None = 0, render: bool = True, camera: str = "view", timestep: float | None = None,
                 gravity_compensation: bool | None = None):
        self.task = task if isinstance(task, Task) else get_task(task)
        h, w = (image_size, image_size) if np.isscalar(image_size) else tuple(image_size)
        if not all(isinstance(x, (int, np.integer)) and MIN_IMAGE <= x <= MAX_IMAGE for x in (h, w)):
            raise RobotInputError(f"image_size must be an int (or (height, width)) in {MIN_IMAGE}..{MAX_IMAGE}, "
                                  f"got {image_size!r}")
        self.image_shape = (int(h), int(w), 3)
        try:
            control_rate = float(control_rate)
        except (TypeError, ValueError):
            control_rate = float("nan")
        if not (math.isfinite(control_rate) and control_rate > 0):
            raise RobotInputError(f"control_rate must be a positive number of Hz, got {control_rate!r}")

        from .mjcf import build_mjcf
        from .model import RobotModel
        from .urdf_tools import parse_urdf
        from ..resources import share_path

        mujoco = import_mujoco()
        self._mj = mujoco
        urdf = share_path("urdf", f"{self.task.robot}.urdf")
        self.model = RobotModel(urdf)
        self.description = parse_urdf(urdf)
        scene = self.task.scene(self.task)
        if timestep is not None:
            scene.timestep = float(timestep)
        self.gravity_compensation = (self.task.gravity_compensation if gravity_compensation is None
                                     else bool(gravity_compensation))
        scene.gravcomp = self.gravity_compensation
        self.mjcf = build_mjcf(self.description, scene, offscreen=max(256, h, w))
        self._m = mujoco.MjModel.from_xml_string(self.mjcf)
        self._d = mujoco.MjData(self._m)
        ts = self._m.opt.timestep
        self.substeps = max(1, int(round(1.0 / (control_rate * ts))))
        if 1.0 / control_rate < ts * 0.999:
            raise RobotInputError(f"control_rate {control_rate} Hz is faster than the physics rate {1 / ts:.0f} Hz")
        self.dt = self.substeps * ts
        self.control_rate = 1.0 / self.dt

        self.joint_names = self.model.joint_names
        self.n_joints = len(self.joint_names)
        self._qadr = np.array([self._m.jnt_qposadr[self._m.joint(nm).id] for nm in self.joint_names])
        self._vadr = np.array([self._m.jnt_dofadr[self._m.joint(nm).id] for nm in self.joint_names])
        self._act = np.array([self._m.actuator(nm).id for nm in self.joint_names])
        self.torque_limits = np.array([self._m.actuator_ctrlrange[a, 1] for a in self._act])
        self._extra_qpos = {self._m.joint(j).name: self._m.jnt_qposadr[j] for j in range(self._m.njnt)
                            if self._m.joint(j).name not in self.joint_names}
        self._site_ids = {self._m.site(i).name: i for i in range(self._m.nsite)}
        self._ee_site = self._site_ids["ee"]
        self._target_mocap = self._m.body_mocapid[self._m.body("target").id]
        cameras = [self._m.camera(i).name for i in range(self._m.ncam)]
        self._cam = self._m.camera(camera).id if camera in cameras else None
        if self._cam is None:
            raise RobotInputError(f"no camera {camera!r} in task {self.task.name!r}")
        self.object_geoms = self._resolve_objects(scene)
        self._object_luts = {}
        for name, ids in self.object_geoms.items():
            lut = np.zeros(self._m.ngeom + 1, bool)   # the last entry: no geom (-1)
            lut[list(ids)] = True
            self._object_luts[name] = lut
        self._render = bool(render)
        self._renderer = None
        self._rng = np.random.default_rng(seed)
        self._jacp = np.zeros((3, self._m.nv))
        self._last = (np.zeros(self.n_joints), np.zeros(self.n_joints), np.zeros(self.n_joints, bool))
        self.condition = None
        self.steps = 0
        self.reset(0)

    def _resolve_objects(self, scene) -> dict:
        """task.objects -> {name: tuple of geom ids}. A pattern matching no geom is an error of the task."""
        m, task = self._m, self.task
        names = [m.geom(i).name for i in range(m.ngeom)]
        root = m.body(self.description.root).id
        ee_added = {g.get("name") for g in ET.fromstring(f"<x>{scene.ee_xml}</x>").iter("geom")}
        arm = tuple(i for i in range(m.ngeom) if m.body_rootid[m.geom_bodyid[i]] == root and names[i] not in ee_added)
        if task.objects and task.main_object not in task.objects:
            raise ValueError(f"task {task.name!r}: main_object {task.main_object!r} is not one of its objects")
        out = {}
        for obj, patterns in task.objects.items():
            if obj == "background":
                raise ValueError(f"task {task.name!r}: 'background' is reserved, not an object name")
            ids: set = set()
            for pat in patterns:
                if pat == ARM:
                    hit = arm
                elif pat.endswith("*"):
                    hit = [i for i, nm in enumerate(names) if nm.startswith(pat[:-1])]
                else:
                    hit = [i for i, nm in enumerate(names) if nm == pat]
                if not hit:
                    raise ValueError(f"task {task.name!r}: object {obj!r} pattern {pat!r} matches no geom")
                ids.update(hit)
            out[obj] = tuple(sorted(ids))
        return out

    # ---- properties -----------------------------------------------------------------------
    @property
    def conditions(self) -> list:
        return self.task.conditions

    @property
    def target_position(self) -> np.ndarray:
        return self._d.mocap_pos[self._target_mocap].copy()

    @property
    def time(self) -> float:
        return float(self._d.time)

    # ---- the public read-only view of the MuJoCo scene (for task callbacks, nodes, tests) -------
    @property
    def mj_model(self):
        """The `mujoco.MjModel` of the scene (`model` is the Pinocchio RobotModel). Read it; changing
        it changes the simulation."""
        return self._m

    @property
    def mj_data(self):
        """The `mujoco.MjData` of the current state. Read it; write through `set_state`/`set_target`."""
        return self._d

    @property
    def physics_timestep(self) -> float:
        """MuJoCo's integration step in s (`dt` is the control period, `substeps` of these)."""
        return float(self._m.opt.timestep)

    @property
    def camera_id(self) -> int:
        """MuJoCo id of the camera `render()` uses by default."""
        return int(self._cam)

    @property
    def camera_fovy(self) -> float:
        """Vertical field of view of the default camera in degrees."""
        return float(self._m.cam_fovy[self._cam])

    def site_position(self, name: str) -> np.ndarray:
        """World position (3,) of the named MuJoCo site (e.g. "peg_tip", "handle") in the current state, a copy."""
        if name not in self._site_ids:
            raise RobotInputError(f"no site {name!r} in task {self.task.name!r} (sites: {sorted(self._site_ids)})")
        return self._d.site_xpos[self._site_ids[name]].copy()

    def scene_joint_position(self, name: str) -> float:
        """Position of a scene joint that is not one of the arm's (e.g. "door_hinge"), rad or m."""
        if name not in self._extra_qpos:
            raise RobotInputError(f"no scene joint {name!r} in task {self.task.name!r} "
                                  f"(scene joints: {sorted(self._extra_qpos)})")
        return float(self._d.qpos[self._extra_qpos[name]])

    @property
    def scene_joint_names(self) -> tuple:
        """The scene's joints that are not the arm's (e.g. ("door_hinge",) for door; () for reach)."""
        return tuple(self._extra_qpos)

    def set_joint_state(self, q=None, v=None, scene: dict | None = None) -> None:
        """Place the arm at joint positions `q` / velocities `v` (joint order `joint_names`; None: keep)
        and scene joints at `scene` = {name: position}; positions are recomputed, time, step count and
        target are kept. (Limits are not enforced: clip q to `model.lower`/`model.upper` first.)"""
        d = self._d
        for name, x in (("q", q), ("v", v)):
            if x is not None and np.shape(x) != (self.n_joints,):
                raise JointCountError(f"{name} must have {self.n_joints} entries, got shape {np.shape(x)}")
        for name in scene or {}:
            if name not in self._extra_qpos:
                raise RobotInputError(f"no scene joint {name!r} in task {self.task.name!r} "
                                      f"(scene joints: {sorted(self._extra_qpos)})")
        if q is not None:
            d.qpos[self._qadr] = np.asarray(q, float)
        if v is not None:
            d.qvel[self._vadr] = np.asarray(v, float)
        for name, x in (scene or {}).items():
            d.qpos[self._extra_qpos[name]] = float(x)
        self._mj.mj_forward(self._m, d)

    def reseed(self, seed: int | None) -> None:
        """Restart the simulator's random stream (start-pose noise, conditions drawn by `reset(None)`)
        as if it had been created with `seed`."""
        self._rng = np.random.default_rng(seed)

    # ---- episode --------------------------------------------------------------------------
    def reset(self, condition: int | None = None, noise: float = 0.0) -> Observation:
        """Start an episode from condition `condition` (index; None: drawn with the seed).
        `noise` adds uniform noise of that many radians to the start pose."""
        n = len(self.task.conditions)
        if condition is None:
            condition = int(self._rng.integers(n))
        if isinstance(condition, bool) or not isinstance(condition, (int, np.integer)) or not 0 <= condition < n:
            raise UnknownTaskError(f"task {self.task.name!r} has conditions 0..{n - 1}, got {condition!r}")
        c = self.task.conditions[int(condition)]
        mj = self._mj
        mj.mj_resetData(self._m, self._d)
        q0 = np.asarray(c.q0, float)
        if noise:
            q0 = np.clip(q0 + self._rng.uniform(-noise, noise, q0.shape), self.model.lower, self.model.upper)
        self._d.qpos[self._qadr] = q0
        self._d.mocap_pos[self._target_mocap] = np.asarray(c.target, float)
        mj.mj_forward(self._m, self._d)
        self.condition = int(condition)
        self.steps = 0
        self._last = (np.zeros(self.n_joints), np.zeros(self.n_joints), np.zeros(self.n_joints, bool))
        return self.observation()

    def check_torques(self, torques) -> np.ndarray:
        try:
            tau = np.asarray(torques, dtype=float)
        except (TypeError, ValueError) as e:
            raise RobotInputError(f"torques must be {self.n_joints} numbers: {e}") from None
        if tau.shape != (self.n_joints,):
            raise JointCountError(f"expected {self.n_joints} torques for joints {list(self.joint_names)}, "
                                  f"got shape {tau.shape}")
        if not np.all(np.isfinite(tau)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(tau))]
            raise NonFiniteTorqueError(f"torques for {bad} are NaN or inf; step rejected, state unchanged")
        return tau

    def step(self, torques) -> Observation:
        """Apply torques (N*m, joint order `joint_names`) for one control period; clip to the effort
        limits (reported in the returned observation). NaN/inf or a wrong count raise, state unchanged."""
        tau = self.check_torques(torques)
        lim = self.torque_limits
        applied = np.clip(tau, -lim, lim)
        clipped = applied != tau
        d = self._d
        d.ctrl[self._act] = applied
        self._mj.mj_step(self._m, d, self.substeps)
        self._mj.mj_forward(self._m, d)  # positions/sites of the NEW state (mj_step leaves them one step old)
        if not (np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel))):
            raise RuntimeError("the simulation diverged (non-finite state); call reset()")
        self.steps += 1
        self._last = (tau, applied, clipped)
        return self.observation()

    def set_target(self, xyz) -> None:
        """Move the target (the goal marker) to xyz (base frame), e.g. in the middle of an episode."""
        p = np.asarray(xyz, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise RobotInputError(f"target must be 3 finite numbers (x, y, z), got {xyz!r}")
        self._d.mocap_pos[self._target_mocap] = p
        self._mj.mj_forward(self._m, self._d)

    # ---- sensing --------------------------------------------------------------------------
    def ee_position(self) -> np.ndarray:
        return self._d.site_xpos[self._ee_site].copy()

    def ee_velocity(self) -> np.ndarray:
        self._mj.mj_jacSite(self._m, self._d, self._jacp, None, self._ee_site)
        return self._jacp @ self._d.qvel

    def observation(self, render: bool | None = None) -> Observation:
        d = self._d
        img = self.render() if (self._render if render is None else render) else None
        req, app, clp = self._last
        return Observation(
            image=img, joint_names=self.joint_names,
            joint_position=d.qpos[self._qadr].copy(), joint_velocity=d.qvel[self._vadr].copy(),
            ee_position=self.ee_position(), ee_velocity=self.ee_velocity(),
            time=float(d.time), step=self.steps,
            torque_requested=req.copy(), torque_applied=app.copy(), clipped=clp.copy())

    def distance(self) -> float:
        """End-effector distance to the target (m)."""
        return float(np.linalg.norm(self.ee_position() - self.target_position))

    def success(self) -> bool:
        if self.task.success is not None:
            return bool(self.task.success(self))
        return self.distance() < self.task.success_tolerance

    def measure(self) -> dict:
        out = {"distance": self.distance(), "success": self.success()}
        if self.task.measure is not None:
            out.update(self.task.measure(self))
        return out

    # ---- rendering ------------------------------------------------------------------------
    def _scene_renderer(self, camera: str | None):
        """The (lazily created) renderer with the scene of the current state from `camera`."""
        if self._renderer is None:
            backend = os.environ.get("MUJOCO_GL", "")
            try:
                self._renderer = self._mj.Renderer(self._m, self.image_shape[0], self.image_shape[1])
            except Exception as e:  # noqa: BLE001 - GL context creation failures come in many types
                raise RenderingUnavailableError(_gl_help(backend, e)) from e
        cam = self._cam if camera is None else self._m.camera(camera).id
        self._renderer.update_scene(self._d, camera=cam)
        return self._renderer

    def render(self, camera: str | None = None) -> np.ndarray:
        """The camera image, (H, W, 3) uint8 RGB."""
        return self._scene_renderer(camera).render()

    def render_segmentation(self, camera: str | None = None) -> np.ndarray:
        """(H, W) int32: the geom id seen at each pixel of `render(camera)`'s image (same camera, size and
        state, pixel for pixel), -1 where no geom is (background). For measurements only."""
        r = self._scene_renderer(camera)
        r.enable_segmentation_rendering()
        try:
            seg = r.render()          # (H, W, 2): object id, object type
        finally:
            r.disable_segmentation_rendering()
        return np.where(seg[..., 1] == int(self._mj.mjtObj.mjOBJ_GEOM), seg[..., 0], -1).astype(np.int32)

    def object_masks(self, camera: str | None = None) -> dict:
        """{name: (H, W) bool} for every object of `task.objects` (all False when it is out of view) and
        "background" (no geom). A measurement tool (e.g. of explanation faithfulness): no policy or
        attribution method sees it."""
        seg = self.render_segmentation(camera)
        idx = np.where(seg < 0, self._m.ngeom, seg)
        masks = {name: lut[idx] for name, lut in self._object_luts.items()}
        masks["background"] = seg < 0
        return masks

    # ---- state (for tests, the ROS node, rollbacks) ---------------------------------------
    def get_state(self) -> dict:
        d = self._d
        return {"qpos": d.qpos.copy(), "qvel": d.qvel.copy(), "time": float(d.time), "steps": self.steps,
                "target": self.target_position, "act": d.act.copy()}

    def set_state(self, state: dict) -> None:
        d = self._d
        d.qpos[:] = state["qpos"]
        d.qvel[:] = state["qvel"]
        d.time = state["time"]
        self.steps = state["steps"]
        d.mocap_pos[self._target_mocap] = state["target"]
        self._mj.mj_forward(self._m, d)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
