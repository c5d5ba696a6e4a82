"""MuJoCo model (MJCF text) BUILT FROM a URDF file: the arm's bodies, joints, inertias and geometry
come from `urdf_tools.parse_urdf`; this module adds what a URDF cannot say (motor actuators with
the URDF's effort limits, an end-effector site, a camera, lights, and a task's scene objects).

Conventions kept equal to Pinocchio: the URDF joint frame is the child body's frame; inertias are
rotated into the body frame; joint damping is the URDF's <dynamics damping>; gravity -9.81 z.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .urdf_tools import Geom, RobotDescription


def rpy_to_matrix(rpy) -> np.ndarray:
    r, p, y = rpy
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    Rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    Ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    Rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def rpy_to_quat(rpy) -> tuple:
    """URDF roll-pitch-yaw (fixed axes x, y, z) -> MuJoCo quaternion (w, x, y, z)."""
    r, p, y = (a / 2 for a in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return (cr * cp * cy + sr * sp * sy, sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy)


def _n(*vals) -> str:
    return " ".join(repr(float(v)) for v in vals)


def look_at_xyaxes(pos, target, up=(0.0, 0.0, 1.0)) -> str:
    """MJCF camera `xyaxes` for a camera at pos looking at target (a camera looks along its -z)."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    x = np.cross(f, up)
    x /= np.linalg.norm(x)
    y = np.cross(x, f)
    return _n(*x, *y)


@dataclass
class Scene:
    """What a task adds around the arm."""
    camera_pos: tuple = (1.0, 0.0, 1.0)
    camera_target: tuple = (0.0, 0.0, 0.0)
    fovy: float = 45.0
    world_xml: str = ""            # extra worldbody children (tables, targets, obstacles)
    ee_xml: str = ""               # extra children of the end-effector body (a held peg, a hook)
    contacts: bool = False         # False: all contacts off (free-space reaching, equal to Pinocchio)
    gravcomp: bool = False         # True: MuJoCo cancels gravity on the arm's bodies (like Baxter's own
                                   # gravity compensation under torque control)
    arm_contacts: tuple = ()       # geom names of the arm that collide when contacts=True
    timestep: float = 0.002
    limit_timeconst: float = 0.005  # joint-limit stiffness (MuJoCo solref time constant, s)
    assets_xml: str = ""
    extra: dict = field(default_factory=dict)


def _geom_xml(g: Geom, name: str, collide: bool) -> str:
    if g.kind == "cylinder":
        size = _n(g.size[0], g.size[1] / 2)
    elif g.kind == "box":
        size = _n(*(s / 2 for s in g.size))
    elif g.kind == "sphere":
        size = _n(g.size[0])
    else:
        raise ValueError(f"unsupported geometry {g.kind!r}")
    col = 'contype="1" conaffinity="1"' if collide else 'contype="0" conaffinity="0"'
    return (f'<geom name="{name}" type="{g.kind}" size="{size}" pos="{_n(*g.xyz)}" quat="{_n(*rpy_to_quat(g.rpy))}" '
            f'rgba="{_n(*g.rgba)}" {col} mass="0"/>')


def _inertial_xml(lk) -> str:
    i = lk.inertial
    ixx, iyy, izz, ixy, ixz, iyz = i.inertia
    I_frame = np.array([[ixx, ixy, ixz], [ixy, iyy, iyz], [ixz, iyz, izz]])  # in the inertial frame
    R = rpy_to_matrix(i.rpy)
    Ib = R @ I_frame @ R.T
    return (f'<inertial pos="{_n(*i.xyz)}" mass="{float(i.mass)!r}" '
            f'fullinertia="{_n(Ib[0, 0], Ib[1, 1], Ib[2, 2], Ib[0, 1], Ib[0, 2], Ib[1, 2])}"/>')


def arm_bodies(robot: RobotDescription, scene: Scene, ee_site: str = "ee") -> tuple:
    """(worldbody xml of the arm, actuator xml)."""
    collide = set(scene.arm_contacts) if scene.contacts else set()
    used_names: set = set()

    def geoms(lk) -> list:
        out = []
        for k, g in enumerate(lk.geoms):
            name = g.name or f"{lk.name}_geom{k}"
            if name in used_names:
                name = f"{lk.name}_{name}"
            used_names.add(name)
            out.append(_geom_xml(g, name, name in collide))
        return out

    def body(link_name: str, joint, depth: int) -> list:
        lk = robot.link(link_name)
        pad = "  " * depth
        gc = ' gravcomp="1"' if scene.gravcomp else ""
        lines = [f'{pad}<body name="{lk.name}" pos="{_n(*joint.xyz)}" quat="{_n(*rpy_to_quat(joint.rpy))}"{gc}>']
        if lk.inertial is not None:
            lines.append(pad + "  " + _inertial_xml(lk))
        if joint.kind == "revolute":
            lines.append(f'{pad}  <joint name="{joint.name}" type="hinge" axis="{_n(*joint.axis)}" '
                         f'range="{_n(joint.lower, joint.upper)}" limited="true" damping="{joint.damping!r}" '
                         f'solreflimit="{scene.limit_timeconst!r} 1"/>')
        lines += [pad + "  " + g for g in geoms(lk)]
        if lk.name == robot.ee_frame:
            lines.append(f'{pad}  <site name="{ee_site}" size="0.01" rgba="1 1 0 0"/>')
            if scene.ee_xml:
                lines.append(pad + "  " + scene.ee_xml)
        for cj in robot.children_of(lk.name):
            lines += body(cj.child, cj, depth + 1)
        lines.append(pad + "</body>")
        return lines

    root = robot.link(robot.root)
    lines = [f'<body name="{root.name}">']
    lines += ["  " + g for g in geoms(root)]
    for cj in robot.children_of(root.name):
        lines += body(cj.child, cj, 1)
    lines.append("</body>")
    acts = [f'<motor name="{j.name}" joint="{j.name}" gear="1" ctrllimited="true" '
            f'ctrlrange="{_n(-j.effort, j.effort)}"/>'
            for j in robot.actuated]
    return "\n".join(lines), "\n".join(acts)


def build_mjcf(robot: RobotDescription, scene: Scene | None = None, offscreen: int = 256) -> str:
    """The full MJCF document: arm from the URDF + the task scene."""
    scene = scene or Scene()
    arm_xml, act_xml = arm_bodies(robot, scene)
    flags = "" if scene.contacts else '<flag contact="disable"/>'
    return f"""<mujoco model="{robot.name}">
  <compiler angle="radian" inertiafromgeom="false" autolimits="true"/>
  <option timestep="{scene.timestep!r}" integrator="Euler" gravity="0 0 -9.81">{flags}</option>
  <visual>
    <quality shadowsize="0" offsamples="0"/>
    <global offwidth="{offscreen}" offheight="{offscreen}"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>
  </visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.82 0.82 0.8" rgb2="0.72 0.72 0.7" width="64" height="64"/>
    <material name="grid" texture="grid" texrepeat="6 6"/>
    {scene.assets_xml}
  </asset>
  <worldbody>
    <light name="top" pos="0 0 3" dir="0 0 -1" castshadow="false" diffuse="0.5 0.5 0.5"/>
    <camera name="view" pos="{_n(*scene.camera_pos)}"
            xyaxes="{look_at_xyaxes(scene.camera_pos, scene.camera_target)}" fovy="{scene.fovy!r}"/>
{arm_xml}
{scene.world_xml}
  </worldbody>
  <actuator>
{act_xml}
  </actuator>
</mujoco>
"""
