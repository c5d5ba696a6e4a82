"""The tasks of Kim & Choi (Sec. IV-A), each a scene around an arm, a set of conditions, a success test,
and the task registry: one `register_task(Task(...))` per task declares everything keyed by its name.

=========  =================  ==========================================================================
task       arm                conditions
=========  =================  ==========================================================================
reach2d    two_link_arm       4 target positions on the table (the target is only in the image)
reach      baxter_right_arm   4 target blocks on a table; one start pose (target only in the image)
peg        baxter_right_arm   peg held in the gripper, a hole in a block at 4 places on the table
door       baxter_right_arm   a hook on the gripper, a hinged door with a handle bar at 4 places
=========  =================  ==========================================================================

    from policy_xai.robot.tasks import get_task, register_task, task_names, unregister_task
    task_names()                      # ('reach2d', 'reach', 'peg', 'door'): every command's --task choices
    get_task("reach").weights         # 'reach.safetensors' (models/), .spec 'small', .robot, .expert, ...
    register_task(dataclasses.replace(get_task("reach"), name="reach_far", weights=""))
    Simulation("reach_far")           # buildable like the shipped ones; unregister_task("reach_far")

A Task's `scene`, `success` and `measure` callbacks get the Simulation and use only its public API
(`mj_model`, `mj_data`, `site_position`, `scene_joint_position`, `target_position`, ...). The expert
and the teacher are classes (or "module:Name" strings, imported when first used, so this module
stays free of the simulator and of torch).

A target change mid-episode (the paper's Fig. 6) is `Simulation.set_target(xyz)`; `between_targets`
gives positions between the training targets. Units: metres, radians, base frame of the arm.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
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
    # the scene's objects for segmentation masks (`Simulation.object_masks`; a measurement tool for
    # explanation faithfulness, never an input of a policy or an attribution method): name -> geom-name
    # patterns, each an exact geom name, a prefix ending in '*', or ARM (every geom generated from the URDF)
    objects: dict = field(default_factory=dict)
    main_object: str = "target"   # the object that differs between conditions (the target, the hole, the door)
    # ---- what else is keyed by the task (commands, training, faithfulness, states) ----
    #: the scripted, time-indexed expert (`robot.experts`, `robot experts`): a class taking the Simulation,
    #: or "module:Name"
    expert: "type | str" = "policy_xai.robot.experts:ReachExpert"
    #: the state-feedback teacher of training and DAgger (`training.teachers`), a class or "module:Name"
    teacher: "type | str" = "policy_xai.training.teachers:FeedbackExpert"
    spec: str = "small"           # the policy spec a new policy for the task gets (`train`): a shipped name or YAML
    weights: str = ""             # the shipped trained policy: a file name in models/ ("" = none shipped)
    #: `measure()` entries that are part of the scene state besides the target (x, y, z), e.g. the door angle
    scene_state: tuple = ()
    #: objects reported part by part besides main_object (faithfulness top-k ratios)
    parts: tuple = ()
    #: `robot experts` also runs the Fig. 6 episode (target moved mid-episode) of every condition
    target_change: bool = False
    #: the faithfulness goals reported for the task (faithfulness report): "topk", "pointing"
    faithfulness_goals: tuple = ()

    @property
    def targets(self) -> np.ndarray:
        return np.array([c.target for c in self.conditions], float)

    def expert_class(self) -> type:
        """The scripted expert's class (`expert`, imported when a string)."""
        return _class(self.expert, "expert", self.name)

    def teacher_class(self) -> type:
        """The state-feedback teacher's class (`teacher`, imported when a string)."""
        return _class(self.teacher, "teacher", self.name)


def _class(ref, what: str, task: str):
    if not isinstance(ref, str):
        return ref
    mod, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise UnknownTaskError(f"task {task!r}: its {what} {ref!r} cannot be imported ({e})") from None


#: geom pattern: every geom of the arm's bodies generated from the URDF (robot/mjcf.py `arm_bodies`),
#: without the geoms a task adds to the end-effector (Scene.ee_xml: the held peg, the hook)
ARM = "@arm"


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
    world = ('<geom name="table" type="plane" size="0.6 0.6 0.2" pos="0 0 0" material="grid" '
             'contype="0" conaffinity="0"/>\n'
             + _target_body(t, "cylinder", "0.03 0.005", "0.9 0.15 0.1 1"))
    return Scene(camera_pos=(0.0, -0.45, 0.95), camera_target=(0.02, 0.0, 0.0), fovy=45.0, world_xml=world)


TABLE_TOP = -0.15  # z of the table top in Baxter's base frame


def _table_xml(x=0.68, y=-0.45, hx=0.35, hy=0.45) -> str:
    z = TABLE_TOP
    return (f'<geom name="floor" type="plane" size="3 3 0.5" pos="0 0 -0.95" material="grid" '
            f'contype="0" conaffinity="0"/>\n'
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
HOLE_CLEAR = 0.010        # clearance each side
PEG_FRICTION = 0.3        # peg and hole walls: a low friction, so the rounded tip slides into the hole
HOLE_DEPTH = 0.08


def _peg_scene(task: Task) -> Scene:
    x, y, z0 = task.conditions[0].target
    a = PEG_HALF + HOLE_CLEAR       # half width of the hole
    w = 0.06                         # wall thickness
    hd = HOLE_DEPTH / 2
    walls = []
    for k, (dx, dy, sx, sy) in enumerate([(a + w / 2, 0, w / 2, a + w), (-(a + w / 2), 0, w / 2, a + w),
                                          (0, a + w / 2, a, w / 2), (0, -(a + w / 2), a, w / 2)]):
        walls.append(f'<geom name="hole_wall{k}" type="box" size="{sx} {sy} {hd}" pos="{dx} {dy} {hd}" '
                     f'rgba="0.25 0.35 0.75 1" contype="1" conaffinity="1" friction="{PEG_FRICTION} 0.005 0.0001"/>')
    # the hole's goal point (bottom centre) is the mocap target; the block is part of that body, so
    # set_target (and every condition) moves the whole block: its position is only visible in the image
    world = _table_xml() + "\n" + (
        f'<body name="target" mocap="true" pos="{x} {y} {z0}"><geom name="target" type="sphere" size="0.004" '
        f'rgba="0.9 0.9 0.1 1" contype="0" conaffinity="0"/>' + "".join(walls) + "</body>")
    # a rounded (capsule) tip: a peg that lands on the rim within about the clearance slides in
    peg = (f'<geom name="peg" type="capsule" size="{PEG_HALF} {PEG_LEN / 2 - PEG_HALF}" pos="0 0 {PEG_LEN / 2 - 0.02}" '
           f'rgba="0.95 0.6 0.1 1" contype="1" conaffinity="1" mass="0" friction="{PEG_FRICTION} 0.005 0.0001"/>'
           f'<site name="peg_tip" pos="0 0 {PEG_LEN - 0.02}" size="0.005" rgba="1 0 0 0"/>')
    return Scene(world_xml=world, ee_xml=peg, contacts=True, **_baxter_camera())


def _peg_tip(sim) -> np.ndarray:
    return sim.site_position("peg_tip")


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
DOOR_HINGE = (0.84, -0.08, TABLE_TOP)   # hinge axis position of the first condition (vertical axis through it)
DOOR_WIDTH = 0.45
DOOR_HEIGHT = 0.35
DOOR_OPEN_ANGLE = 0.35                   # success: door turned by at least this (rad, about 20 deg)
#: the handle bar's centre relative to the hinge (closed door); the task's target is the handle
HANDLE_OFFSET = (-0.07, -DOOR_WIDTH + 0.08, DOOR_HEIGHT * 0.6)


def door_hinge(target) -> np.ndarray:
    """The hinge position of a door whose (closed) handle is at `target`."""
    return np.asarray(target, float) - np.asarray(HANDLE_OFFSET)


#: the gap between the handle bar and the panel (where the hook goes), (x, y) in the hinge frame of
#: the closed door
DOOR_GAP = (-0.035, -DOOR_WIDTH + 0.08)


def door_gap_point(target, theta: float, z: float) -> np.ndarray:
    """The gap point in the world, at height z, with the door (closed handle at `target`) opened by theta."""
    hx, hy, _ = door_hinge(target)
    gx, gy = DOOR_GAP
    c, s = np.cos(theta), np.sin(theta)
    return np.array([hx + gx * c + gy * s, hy - gx * s + gy * c, z])


def _door_scene(task: Task) -> Scene:
    w, h = DOOR_WIDTH, DOOR_HEIGHT
    ox, oy, oz = HANDLE_OFFSET
    t = task.conditions[0].target
    # closed door lies in the plane x = hinge x, spanning y from the hinge to hinge - w; it opens towards -x
    # (the robot). The door (with its frame) is a child of the mocap target body at the closed handle's
    # position, so set_target (and every condition) moves the whole door.
    world = _table_xml() + "\n" + f"""<body name="target" mocap="true" pos="{t[0]} {t[1]} {t[2]}">
 <geom name="target" type="sphere" size="0.004" rgba="0.9 0.9 0.1 0" contype="0" conaffinity="0"/>
 <geom name="door_frame" type="box" size="0.02 0.02 {h / 2}" pos="{-ox + 0.03} {-oy + 0.02} {-oz + h / 2}"
       rgba="0.3 0.3 0.3 1" contype="0" conaffinity="0"/>
 <body name="door" pos="{-ox} {-oy} {-oz}">
  <joint name="door_hinge" type="hinge" axis="0 0 -1" range="-0.05 1.6" limited="true" damping="0.5" armature="0.01"/>
  <inertial pos="0 {-w / 2} {h / 2}" mass="1.0" diaginertia="0.02 0.02 0.02"/>
  <geom name="door_panel" type="box" size="0.01 {w / 2} {h / 2}" pos="0.0 {-w / 2} {h / 2 + 0.005}"
        rgba="0.6 0.5 0.35 1" contype="1" conaffinity="1"/>
  <geom name="handle_post_a" type="cylinder" size="0.008 0.03" pos="-0.04 {-w + 0.12} {h * 0.6}"
        quat="0.7071068 0 0.7071068 0" rgba="0.2 0.2 0.2 1" contype="1" conaffinity="1"/>
  <geom name="handle_post_b" type="cylinder" size="0.008 0.03" pos="-0.04 {-w + 0.04} {h * 0.6}"
        quat="0.7071068 0 0.7071068 0" rgba="0.2 0.2 0.2 1" contype="1" conaffinity="1"/>
  <geom name="handle_bar" type="capsule" size="0.01 0.04" pos="{ox} {oy} {oz}" quat="0.7071068 0.7071068 0 0"
        rgba="0.2 0.2 0.2 1" contype="1" conaffinity="1"/>
  <site name="handle" pos="{ox} {oy} {oz}" size="0.01" rgba="1 0 0 0"/>
 </body>
</body>"""
    # hook: a rod straight down from the end-effector point, dropped behind the handle bar to pull it
    hook = ('<geom name="hook_shaft" type="capsule" size="0.008 0.045" pos="0 0 0.025" rgba="0.15 0.15 0.15 1" '
            'contype="1" conaffinity="1" mass="0"/>')
    return Scene(world_xml=world, ee_xml=hook, contacts=True, arm_contacts=(), **_baxter_camera())


def _door_measure(sim) -> dict:
    return {"door_angle": sim.scene_joint_position("door_hinge"), "handle": sim.site_position("handle")}


def _door_success(sim) -> bool:
    return _door_measure(sim)["door_angle"] > DOOR_OPEN_ANGLE


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
#: name -> Task, in registration order: the registry itself (read it; change it with register_task and
#: unregister_task)
TASKS: dict = {}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def register_task(task: Task | None = None, *, replace: bool = False, **fields) -> Task:
    """Add a task to the registry (or, with `replace`, put it in place of the one of that name): a Task,
    or its fields as keywords. Checked here: a name (letter, then letters, digits, _ or -), a robot, at
    least one condition (start pose, target x y z), a scene callback, weights as a bare file name.
    Building its Simulation checks the scene itself. Returns the task."""
    if task is None:
        task = Task(**fields)
    elif fields:
        raise TypeError("register_task takes a Task or its fields as keywords, not both")
    if not isinstance(task, Task):
        raise TypeError(f"register_task takes a policy_xai.robot.tasks.Task, got {type(task).__name__}")
    name = task.name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UnknownTaskError(f"task name {name!r}: a letter, then letters, digits, '_' or '-'")
    if name in TASKS and not replace:
        raise UnknownTaskError(f"task {name!r} is already registered (register_task(..., replace=True) replaces it)")
    if not task.robot or not isinstance(task.robot, str):
        raise UnknownTaskError(f"task {name!r}: robot must name urdf/<robot>.urdf, got {task.robot!r}")
    if not task.conditions:
        raise UnknownTaskError(f"task {name!r}: at least one condition is needed")
    for i, c in enumerate(task.conditions):
        if np.shape(c.target) != (3,):
            raise UnknownTaskError(f"task {name!r}: condition {i} ({c.name or 'unnamed'}) needs a target (x, y, z), "
                                   f"got {c.target!r}")
    if not callable(task.scene):
        raise UnknownTaskError(f"task {name!r}: scene must be a callable (Task) -> Scene")
    for what in ("expert", "teacher"):
        ref = getattr(task, what)
        if not (callable(ref) or (isinstance(ref, str) and ref.count(":") == 1)):
            raise UnknownTaskError(f"task {name!r}: {what} must be a class (called with the Simulation) or "
                                   f"'module:Name', got {ref!r}")
    f = task.weights
    if f and (not isinstance(f, str) or Path(f).name != f or not f.endswith(".safetensors")):
        raise UnknownTaskError(f"task {name!r}: weights is a file name in models/ ending in .safetensors, got {f!r}")
    TASKS[name] = task
    return task


def unregister_task(name: str) -> Task:
    """Remove a task from the registry; returns it."""
    get_task(name)
    return TASKS.pop(name)


def task_names() -> tuple:
    """The registered tasks' names, in registration order (the shipped ones: reach2d, reach, peg, door)."""
    return tuple(TASKS)


def get_task(name: str) -> Task:
    """The registered task of that name; UnknownTaskError (a ValueError) listing the known ones."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def shipped_weights(name: str) -> Path:
    """A task's shipped trained policy, models/<its weights>: the first install location that has it
    (policy_xai.resources.find_shared). FileNotFoundError when the task ships none or it is not installed."""
    from ..resources import find_shared, share_path

    file = get_task(name).weights
    if not file:
        raise FileNotFoundError(f"task {name!r} ships no trained weights")
    found = find_shared("models", file)
    if found is None:
        raise FileNotFoundError(f"no shipped weights for task {name!r} ({share_path('models', file)})")
    return found


def task_of_weights(path) -> str:
    """The task a weights file is for by its name: the task shipping a file of that name, else the task
    named like the file's stem up to the first dot (out/reach.safetensors -> reach); "" when none."""
    name = Path(path).name
    for t in TASKS.values():
        if t.weights and t.weights == name:
            return t.name
    stem = name.split(".")[0]
    return stem if stem in TASKS else ""


# --------------------------------------------------------------------------------------------
# the shipped tasks: one declaration each
# --------------------------------------------------------------------------------------------
BAXTER_START = (0.25, -1.5, 0.1, 2.25, 0.0, 0.85, 0.35)
_Z_BLOCK = TABLE_TOP + 0.035
_HANDLES = [tuple(np.round(np.add(h, HANDLE_OFFSET), 4)) for h in
            [(0.76, 0.0, TABLE_TOP), (0.76, -0.14, TABLE_TOP), (0.84, 0.0, TABLE_TOP), (0.84, -0.14, TABLE_TOP)]]

register_task(Task(
    "reach2d", "two_link_arm",
    [Condition((0.0, 1.2), (0.24, 0.16, 0.03), "near-left"),
     Condition((0.0, 1.2), (0.24, -0.16, 0.03), "near-right"),
     Condition((0.0, 1.2), (0.05, 0.3, 0.03), "far-left"),
     Condition((0.0, 1.2), (0.05, -0.3, 0.03), "far-right")],
    success_tolerance=0.02, horizon=60, scene=_reach2d_scene,
    objects={"target": ("target",), "table": ("table",), "arm": (ARM,)},
    description="2-DoF planar arm reaching one of 4 targets; the target is only in the image",
    expert="policy_xai.robot.experts:ReachExpert", teacher="policy_xai.training.teachers:FeedbackExpert",
    spec="reach2d", weights="reach2d.safetensors", target_change=True))

register_task(Task(
    "reach", "baxter_right_arm",
    [Condition(BAXTER_START, (0.58, -0.30, _Z_BLOCK), "front-left"),
     Condition(BAXTER_START, (0.58, -0.58, _Z_BLOCK), "front-right"),
     Condition(BAXTER_START, (0.76, -0.30, _Z_BLOCK), "far-left"),
     Condition(BAXTER_START, (0.76, -0.58, _Z_BLOCK), "far-right")],
    success_tolerance=0.05, horizon=100, scene=_reach_scene, gravity_compensation=True,
    objects={"target": ("target",), "table": ("table", "table_leg"), "floor": ("floor",), "arm": (ARM,)},
    description="Baxter right arm reaching a block on a table (4 blocks); the block is only in the image",
    expert="policy_xai.robot.experts:ReachExpert", teacher="policy_xai.training.teachers:FeedbackExpert",
    spec="small", weights="reach.safetensors", target_change=True, faithfulness_goals=("topk", "pointing")))

# peg and door: one start pose (as in reach); the hole / the door is at one of 4 places, visible
# only in the image (the block and the door are parts of the moving target body)
register_task(Task(
    "peg", "baxter_right_arm",
    [Condition(BAXTER_START, (0.58, -0.32, TABLE_TOP), "front-left"),
     Condition(BAXTER_START, (0.58, -0.56, TABLE_TOP), "front-right"),
     Condition(BAXTER_START, (0.74, -0.32, TABLE_TOP), "far-left"),
     Condition(BAXTER_START, (0.74, -0.56, TABLE_TOP), "far-right")],
    success_tolerance=0.02, horizon=140, scene=_peg_scene, gravity_compensation=True,
    success=_peg_success, measure=_peg_measure, main_object="hole_block",
    # the 4 mm "target" sphere marks the hole's goal point: part of the block
    objects={"hole_block": ("hole_wall*", "target"), "peg": ("peg",), "table": ("table", "table_leg"),
             "floor": ("floor",), "arm": (ARM,)},
    description="peg held in the gripper, inserted into a hole in a block on the table; the block is at one "
                "of 4 places (only in the image)",
    expert="policy_xai.robot.experts:PegExpert", teacher="policy_xai.training.teachers:PegFeedbackExpert",
    spec="small", weights="peg.safetensors", faithfulness_goals=("topk", "pointing")))

register_task(Task(
    "door", "baxter_right_arm",
    [Condition(BAXTER_START, _HANDLES[0], "front-left"),
     Condition(BAXTER_START, _HANDLES[1], "front-right"),
     Condition(BAXTER_START, _HANDLES[2], "far-left"),
     Condition(BAXTER_START, _HANDLES[3], "far-right")],
    success_tolerance=0.03, horizon=160, scene=_door_scene, gravity_compensation=True,
    success=_door_success, measure=_door_measure, main_object="door",
    # (the door's "target" sphere is transparent: never rendered, in no object)
    objects={"door": ("door_panel", "handle_bar", "handle_post_a", "handle_post_b", "door_frame"),
             "panel": ("door_panel",), "handle": ("handle_bar", "handle_post_a", "handle_post_b"),
             "frame": ("door_frame",), "hook": ("hook_shaft",), "table": ("table", "table_leg"),
             "floor": ("floor",), "arm": (ARM,)},
    description="door opening with a hook on the gripper; the door (target: its handle) is at one of 4 "
                "places (only in the image)",
    expert="policy_xai.robot.experts:DoorExpert", teacher="policy_xai.training.teachers:DoorFeedbackExpert",
    spec="small", weights="door.safetensors", scene_state=("door_angle",), parts=("panel", "handle", "frame"),
    faithfulness_goals=("topk",)))
