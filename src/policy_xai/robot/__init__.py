"""The robot side of policy_xai (no ROS): URDFs, a Pinocchio robot model with importance factors,
a MuJoCo simulation built from the same URDFs, the paper's tasks and scripted experts.

    from policy_xai.robot import RobotModel, Simulation
    model = RobotModel.from_name("baxter_right_arm")
    alpha = model.importance_factors(q, v, dt=0.05)           # (7,), mean 1
    with Simulation("reach", image_size=64, control_rate=20.0) as sim:
        obs = sim.reset(0); obs = sim.step(torques)
    task_names(); get_task("reach"); register_task(Task(...))   # the task registry (robot/tasks.py)

Heavy modules (pinocchio, mujoco) load on first use of the names below.
"""
from __future__ import annotations

from .errors import (JointCountError, NonFiniteTorqueError, RenderingUnavailableError,  # noqa: F401
                     RobotInputError, UnknownTaskError)

__all__ = [
    "RobotModel", "Simulation", "Observation", "importance_factors", "fallback_alpha", "normalize_alpha",
    "TASKS", "Task", "Condition", "get_task", "task_names", "register_task", "unregister_task", "between_targets",
    "make_expert", "run_expert",
    "RobotInputError", "UnknownTaskError", "JointCountError", "NonFiniteTorqueError", "RenderingUnavailableError",
]

_LAZY = {
    "RobotModel": ".model", "Simulation": ".sim", "Observation": ".sim",
    "importance_factors": ".importance", "fallback_alpha": ".importance", "normalize_alpha": ".importance",
    "TASKS": ".tasks", "Task": ".tasks", "Condition": ".tasks", "get_task": ".tasks", "task_names": ".tasks",
    "register_task": ".tasks", "unregister_task": ".tasks", "between_targets": ".tasks",
    "make_expert": ".experts", "run_expert": ".experts",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
