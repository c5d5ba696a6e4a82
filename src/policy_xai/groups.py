"""Configuration groups: one declaration per group of the configuration vector.

A group says what it measures (`quantity`), where its values come from (`source`: read from the
joint states, or computed from the joint positions and velocities by the robot model's
kinematics), what its elements are (one per joint, or x/y/z), and how figures draw it. Everything
that depends on a group asks here instead of matching its name: the spec's known groups, the
configuration vector's feature names, the live ConfigBuilder (which groups need kinematics), the
position / velocity summaries and the figures' colours. A new group is one entry in GROUPS plus the
code that computes it (`values`).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class ConfigGroup:
    name: str
    #: "position" or "velocity" (the paper's Sec. IV-C2 summaries add the groups of a quantity)
    quantity: str
    #: "joints": the joint states' position / velocity fields; "kinematics": forward kinematics of them
    source: str
    #: "joints": one element per joint (named by the spec's joints); "xyz": a 3-vector in the base frame
    elements: str
    description: str
    #: (colour, line style) in our figures, and in the paper's Fig. 5/6 legend
    style: tuple
    paper_style: tuple

    @property
    def needs_kinematics(self) -> bool:
        return self.source == "kinematics"

    def element_names(self, size: int, joint_names: Sequence[str]) -> list[str]:
        """Names of the group's `size` elements ("x", "y", "z"; joint names; indices otherwise)."""
        if self.elements == "joints" and size == len(joint_names):
            return list(joint_names)
        if self.elements == "xyz" and size == 3:
            return ["x", "y", "z"]
        return [str(i) for i in range(size)]


GROUPS: Mapping[str, ConfigGroup] = MappingProxyType({g.name: g for g in (
    ConfigGroup("joint_position", "position", "joints", "joints", "joint angles (rad)",
                ("#1f77b4", "-"), ("#000000", ":")),
    ConfigGroup("joint_velocity", "velocity", "joints", "joints", "joint velocities (rad/s)",
                ("#2ca02c", "--"), ("#e6b800", ":")),
    ConfigGroup("ee_position", "position", "kinematics", "xyz", "end-effector position in the base frame (m)",
                ("#9467bd", "-."), ("#2ca02c", ":")),
    ConfigGroup("ee_velocity", "velocity", "kinematics", "xyz", "end-effector linear velocity in the base frame (m/s)",
                ("#ff7f0e", ":"), ("#e377c2", ":")),
)})
#: the known groups in their canonical order
NAMES = tuple(GROUPS)


def group(name: str) -> ConfigGroup:
    try:
        return GROUPS[name]
    except KeyError:
        raise ValueError(f"unknown configuration group {name!r}; known: {', '.join(NAMES)}") from None


def needs_kinematics(names: Sequence[str]) -> bool:
    """Whether any of the groups is computed by the robot model (then an ee function is needed)."""
    return any(group(n).needs_kinematics for n in names)


def of_quantity(quantity: str) -> tuple[str, ...]:
    return tuple(n for n, g in GROUPS.items() if g.quantity == quantity)


#: (q, v) -> (ee position (3,), ee velocity (3,)) in the base frame
EEFunction = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


def values(names: Sequence[str], q: np.ndarray, v: np.ndarray, ee: Optional[EEFunction] = None) -> dict:
    """name -> values of each group in `names` for joint positions q and velocities v (the
    kinematic groups from ee(q, v))."""
    out = {"joint_position": np.asarray(q, float), "joint_velocity": np.asarray(v, float)}
    if needs_kinematics(names):
        if ee is None:
            raise ValueError("end-effector groups need the robot's kinematics (an ee function)")
        p, pv = ee(out["joint_position"], out["joint_velocity"])
        out["ee_position"], out["ee_velocity"] = np.asarray(p, float), np.asarray(pv, float)
    return {n: out[n] for n in names}
