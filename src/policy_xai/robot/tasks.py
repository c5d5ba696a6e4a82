"""The tasks of Kim & Choi (Sec. IV-A), each a scene around an arm, a set of conditions, a success test.

=========  =================  ==========================================================================
task       arm                conditions
=========  =================  ==========================================================================
reach2d    two_link_arm       4 target positions on the table (the target is only in the image)
reach      baxter_right_arm   4 target blocks on a table; one start pose (target only in the image)
peg        baxter_right_arm   4 start poses, peg held in the gripper, a hole in a block on the table
door       baxter_right_arm   4 start poses, a hook on the gripper, a hinged door with a handle bar
=========  =================  ==========================================================================

A target change mid-episode (the paper's Fig. 6) is `Simulation.set_target(xyz)`; `between_targets`
gives positions between the training targets. Units: metres, radians, base frame of the arm.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import UnknownTaskError
from .mjcf import Scene


@dataclass
class Condition:
    q0: tuple                 # initial joint positions
    target: tuple             # where the end-effector must go (reach) / the task's goal point
    name: str = ""


@dataclass
class Task:
    name: str
    robot: str                # urdf/<robot>.urdf
    conditions: list
    success_tolerance: float  # metres
    horizon: int              # control steps an episode lasts at the default 20 Hz
    scene: Callable           # (Task) -> Scene
    gravity_compensation: bool = False
    description: str = ""
    # optional: (sim) -> bool; default: end-effector within success_tolerance of the target
    success: Callable | None = None
    # optional: (sim) -> dict of task measurements (e.g. insertion depth, door angle)
    measure: Callable | None = None
    extra: dict = field(default_factory=dict)

    @property
    def targets(self) -> np.ndarray:
        return np.array([c.target for c in self.conditions], float)


def between_targets(task: Task, i: int | None = None, j: int | None = None, fraction: float = 0.5) -> np.ndarray:
    """A target between the training targets: between conditions i and j (at `fraction` from i to j),
    or, without i and j, the centroid of all training targets."""
    T = task.targets
    if i is None and j is None:
        return T.mean(0)
    n = len(T)
    if i is None or j is None or not (0 <= i < n and 0 <= j < n):
        raise UnknownTaskError(f"task {task.name!r} has conditions 0..{n - 1}; got i={i}, j={j}")
    return (1 - fraction) * T[i] + fraction * T[j]


# --------------------------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------------------------
def _target_body(pos, kind="sphere", size="0.02", rgba="0.9 0.15 0.1 1") -> str:
    return (f'<body name="target" mocap="true" pos="{pos[0]} {pos[1]} {pos[2]}">'
            f'<geom name="target" type="{kind}" size="{size}" rgba="{rgba}" contype="0" conaffinity="0"/></body>')


def _reach2d_scene(task: Task) -> Scene:
    t = task.conditions[0].target
    world = ('<geom name="table" type="plane" size="0.6 0.6 0.2" pos="0 0 0" material="grid" contype="0" conaffinity="0"/>\n'
             + _target_body(t, "cylinder", "0.03 0.005", "0.9 0.15 0.1 1"))
    return Scene(camera_pos=(0.0, -0.45, 0.95), camera_target=(0.02, 0.0, 0.0), fovy=45.0, world_xml=world)


TABLE_TOP = -0.15  # z of the table top in Baxter's base frame


def _table_xml(x=0.68, y=-0.45, hx=0.35, hy=0.45) -> str:
    z = TABLE_TOP
    return (f'<geom name="floor" type="plane" size="3 3 0.5" pos="0 0 -0.95" material="grid" contype="0" conaffinity="0"/>\n'
            f'<geom name="table" type="box" size="{hx} {hy} 0.02" pos="{x} {y} {z - 0.02}" rgba="0.55 0.42 0.3 1" '
            f'contype="1" conaffinity="1"/>\n'
            f'<geom name="table_leg" type="box" size="0.05 0.05 0.38" pos="{x} {y} {z - 0.42}" rgba="0.3 0.25 0.2 1" '
            f'contype="0" conaffinity="0"/>')


def _baxter_camera() -> dict:
    return dict(camera_pos=(1.35, -1.3, 0.8), camera_target=(0.58, -0.43, 0.12), fovy=55.0)


def _reach_scene(task: Task) -> Scene:
    t = task.conditions[0].target
    world = _table_xml() + "\n" + _target_body(t, "box", "0.035 0.035 0.035", "0.1 0.7 0.15 1")
    return Scene(world_xml=world, **_baxter_camera())


# --------------------------------------------------------------------------------------------
# peg insertion: a peg fixed in the gripper, a block with a square hole on the table
# --------------------------------------------------------------------------------------------
PEG_HALF = 0.015          # peg radius (round peg in a square hole: any wrist yaw fits)
PEG_LEN = 0.12            # peg length below the end-effector point
HOLE_CLEAR = 0.006        # clearance each side
HOLE_DEPTH = 0.08
HOLE_XY = (0.68, -0.45)


def _peg_scene(task: Task) -> Scene:
    x, y = HOLE_XY
    z0 = TABLE_TOP
    a = PEG_HALF + HOLE_CLEAR       # half width of the hole
    w = 0.06                         # wall thickness
    hd = HOLE_DEPTH / 2
    walls = []
    for k, (dx, dy, sx, sy) in enumerate([(a + w / 2, 0, w / 2, a + w), (-(a + w / 2), 0, w / 2, a + w),
                                          (0, a + w / 2, a, w / 2), (0, -(a + w / 2), a, w / 2)]):
        walls.append(f'<geom name="hole_wall{k}" type="box" size="{sx} {sy} {hd}" pos="{x + dx} {y + dy} {z0 + hd}" '
                     f'rgba="0.25 0.35 0.75 1" contype="1" conaffinity="1"/>')
    # the hole's goal point (bottom centre) as a mocap marker so set_target moves the goal marker
    world = _table_xml() + "\n" + "\n".join(walls) + "\n" + (
        f'<body name="target" mocap="true" pos="{x} {y} {z0}"><geom name="target" type="sphere" size="0.004" '
        f'rgba="0.9 0.9 0.1 1" contype="0" conaffinity="0"/></body>')
    peg = (f'<geom name="peg" type="cylinder" size="{PEG_HALF} {PEG_LEN / 2}" pos="0 0 {PEG_LEN / 2 - 0.02}" '
           f'rgba="0.95 0.6 0.1 1" contype="1" conaffinity="1" mass="0"/>'
           f'<site name="peg_tip" pos="0 0 {PEG_LEN - 0.02}" size="0.005" rgba="1 0 0 0"/>')
    return Scene(world_xml=world, ee_xml=peg, contacts=True, **_baxter_camera())


def _peg_tip(sim) -> np.ndarray:
    return sim._d.site_xpos[sim._site_ids["peg_tip"]].copy()


def _peg_measure(sim) -> dict:
    tip = _peg_tip(sim)
    goal = sim.target_position
    depth = (TABLE_TOP + HOLE_DEPTH) - tip[2]
    return {"peg_tip": tip, "lateral_error": float(np.linalg.norm(tip[:2] - goal[:2])), "depth": float(depth)}


def _peg_success(sim) -> bool:
    m = _peg_measure(sim)
    return m["lateral_error"] < PEG_HALF + HOLE_CLEAR and m["depth"] > 0.5 * HOLE_DEPTH


# --------------------------------------------------------------------------------------------
# door opening: a door hinged on a vertical axis with a horizontal handle bar; a hook on the gripper
# --------------------------------------------------------------------------------------------
DOOR_HINGE = (0.84, -0.08, TABLE_TOP)   # hinge axis position (vertical axis through it)
DOOR_WIDTH = 0.45
DOOR_HEIGHT = 0.35
DOOR_OPEN_ANGLE = 0.35                   # success: door turned by at least this (rad, about 20 deg)


def _door_scene(task: Task) -> Scene:
    hx, hy, hz = DOOR_HINGE
    w, h = DOOR_WIDTH, DOOR_HEIGHT
    # closed door lies in the plane x = hx, spanning y from hy to hy - w; it opens towards -x (the robot)
    world = _table_xml() + "\n" + f"""<body name="door" pos="{hx} {hy} {hz}">
  <joint name="door_hinge" type="hinge" axis="0 0 -1" range="-0.05 1.6" limited="true" damping="0.5" armature="0.01"/>
  <inertial pos="0 {-w / 2} {h / 2}" mass="1.0" diaginertia="0.02 0.02 0.02"/>
  <geom name="door_panel" type="box" size="0.01 {w / 2} {h / 2}" pos="0.0 {-w / 2} {h / 2 + 0.005}" rgba="0.6 0.5 0.35 1" contype="1" conaffinity="1"/>
  <geom name="handle_post_a" type="cylinder" size="0.008 0.03" pos="-0.04 {-w + 0.12} {h * 0.6}" quat="0.7071068 0 0.7071068 0" rgba="0.2 0.2 0.2 1" contype="1" conaffinity="1"/>
  <geom name="handle_post_b" type="cylinder" size="0.008 0.03" pos="-0.04 {-w + 0.04} {h * 0.6}" quat="0.7071068 0 0.7071068 0" rgba="0.2 0.2 0.2 1" contype="1" conaffinity="1"/>
  <geom name="handle_bar" type="capsule" size="0.01 0.04" pos="-0.07 {-w + 0.08} {h * 0.6}" quat="0.7071068 0.7071068 0 0" rgba="0.2 0.2 0.2 1" contype="1" conaffinity="1"/>
  <site name="handle" pos="-0.07 {-w + 0.08} {h * 0.6}" size="0.01" rgba="1 0 0 0"/>
</body>
<geom name="door_frame" type="box" size="0.02 0.02 {h / 2}" pos="{hx + 0.03} {hy + 0.02} {hz + h / 2}" rgba="0.3 0.3 0.3 1" contype="0" conaffinity="0"/>
<body name="target" mocap="true" pos="{hx - 0.07} {hy - w + 0.08} {hz + h * 0.6}"><geom name="target" type="sphere" size="0.004" rgba="0.9 0.9 0.1 0" contype="0" conaffinity="0"/></body>"""
    # hook: a rod straight down from the end-effector point, dropped behind the handle bar to pull it
    hook = ('<geom name="hook_shaft" type="capsule" size="0.008 0.045" pos="0 0 0.025" rgba="0.15 0.15 0.15 1" '
            'contype="1" conaffinity="1" mass="0"/>')
    return Scene(world_xml=world, ee_xml=hook, contacts=True, arm_contacts=(), **_baxter_camera())


def _door_measure(sim) -> dict:
    return {"door_angle": float(sim._d.qpos[sim._extra_qpos["door_hinge"]]),
            "handle": sim._d.site_xpos[sim._site_ids["handle"]].copy()}


def _door_success(sim) -> bool:
    return _door_measure(sim)["door_angle"] > DOOR_OPEN_ANGLE


# --------------------------------------------------------------------------------------------
# the task table
# --------------------------------------------------------------------------------------------
BAXTER_START = (0.25, -1.5, 0.1, 2.25, 0.0, 0.85, 0.35)


def _make_tasks() -> dict:
    tasks = {}
    tasks["reach2d"] = Task(
        "reach2d", "two_link_arm",
        [Condition((0.0, 1.2), (0.24, 0.16, 0.03), "near-left"),
         Condition((0.0, 1.2), (0.24, -0.16, 0.03), "near-right"),
         Condition((0.0, 1.2), (0.05, 0.3, 0.03), "far-left"),
         Condition((0.0, 1.2), (0.05, -0.3, 0.03), "far-right")],
        success_tolerance=0.02, horizon=60, scene=_reach2d_scene,
        description="2-DoF planar arm reaching one of 4 targets; the target is only in the image")
    z = TABLE_TOP + 0.035
    tasks["reach"] = Task(
        "reach", "baxter_right_arm",
        [Condition(BAXTER_START, (0.58, -0.30, z), "front-left"),
         Condition(BAXTER_START, (0.58, -0.58, z), "front-right"),
         Condition(BAXTER_START, (0.76, -0.30, z), "far-left"),
         Condition(BAXTER_START, (0.76, -0.58, z), "far-right")],
        success_tolerance=0.05, horizon=100, scene=_reach_scene, gravity_compensation=True,
        description="Baxter right arm reaching a block on a table (4 blocks); the block is only in the image")
    hole = (HOLE_XY[0], HOLE_XY[1], TABLE_TOP)
    tasks["peg"] = Task(
        "peg", "baxter_right_arm",
        [Condition((0.05, -1.3, 0.1, 2.1, 0.0, 0.8, 0.1), hole, "start-a"),
         Condition((0.45, -1.3, 0.1, 2.1, 0.0, 0.8, 0.45), hole, "start-b"),
         Condition((0.25, -1.1, -0.2, 1.8, 0.3, 1.0, 0.3), hole, "start-c"),
         Condition((0.25, -1.6, 0.3, 2.4, -0.3, 0.7, 0.3), hole, "start-d")],
        success_tolerance=0.02, horizon=140, scene=_peg_scene, gravity_compensation=True,
        success=_peg_success, measure=_peg_measure,
        description="peg held in the gripper, inserted into a hole in a block on the table; 4 start poses")
    handle = (DOOR_HINGE[0] - 0.07, DOOR_HINGE[1] - DOOR_WIDTH + 0.08, DOOR_HINGE[2] + DOOR_HEIGHT * 0.6)
    tasks["door"] = Task(
        "door", "baxter_right_arm",
        [Condition((0.05, -1.3, 0.1, 2.1, 0.0, 0.8, 0.1), handle, "start-a"),
         Condition((0.45, -1.3, 0.1, 2.1, 0.0, 0.8, 0.45), handle, "start-b"),
         Condition((0.25, -1.1, -0.2, 1.8, 0.3, 1.0, 0.3), handle, "start-c"),
         Condition((0.25, -1.6, 0.3, 2.4, -0.3, 0.7, 0.3), handle, "start-d")],
        success_tolerance=0.03, horizon=160, scene=_door_scene, gravity_compensation=True,
        success=_door_success, measure=_door_measure,
        description="door opening with a hook on the gripper; 4 start poses")
    return tasks


TASKS = _make_tasks()


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None
