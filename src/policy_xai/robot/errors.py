"""Exceptions of the robot side. All are ValueErrors: bad input, reported with a clear message."""
from __future__ import annotations


class RobotInputError(ValueError):
    """Bad input to the robot model or simulation (wrong shape, NaN, out-of-range value)."""


class UnknownTaskError(RobotInputError):
    """A task or condition name/index that does not exist."""


class JointCountError(RobotInputError):
    """A torque/position vector with the wrong number of joints."""


class NonFiniteTorqueError(RobotInputError):
    """Torques containing NaN or inf; the step was rejected and the simulation state is unchanged."""


class RenderingUnavailableError(RuntimeError):
    """No offscreen OpenGL backend (EGL / OSMesa) works on this machine."""
