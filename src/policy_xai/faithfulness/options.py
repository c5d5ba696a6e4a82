"""The options of the faithfulness measurement (`policy-xai faithfulness` is their argparse adapter) and
their checks; light to import (no torch), so that the command's parser reads its defaults here."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Sequence, Union

from ..robot.tasks import task_names

REMOVALS = ("median", "blur", "road")  # the removal operators of metrics.Remover
FRACTIONS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)  # deletion / insertion fractions of the ranking
UNITS = (1, 4)  # ranking units: pixels (1) and p x p patches

Names = Union[str, Sequence[str]]  # comma-separated text or a sequence


@dataclass
class Options:
    """Every option of the measurement; the defaults are `policy-xai faithfulness`'s. The lists take a
    sequence or comma-separated text (`checked` parses them)."""

    tasks: Names = field(default_factory=task_names)  # default: every registered task
    methods: Optional[Names] = None  # None or 'all': every method in attribution.METHODS
    episodes: int = 1  # per condition
    every: int = 10  # keep every n-th control step
    max_states: int = 0  # 0: all kept steps
    removals: Names = REMOVALS
    fractions: Sequence[float] = FRACTIONS
    units: Union[str, Sequence[int]] = UNITS  # ranking units: pixels (1) and p x p patches
    noise: float = 0.05  # start-pose noise (rad)
    seed: int = 0
    sanity: bool = True
    sanity_states: int = 4  # states of the model-randomisation check (0: none)
    policies: dict = field(default_factory=dict)  # task -> policy (policy_xai.resolve; default: its shipped weights)
    threads: int = 1  # torch threads (the cost column is per thread count)
    device: str = "cpu"  # where the policies run (policy_xai.device.parse_device)

    def checked(self) -> "Options":
        """These options with the lists as tuples (methods None / 'all': every method), the policies
        given as text resolved to weights files and the device checked. What cannot work is a
        UsageError (one line, naming the `policy-xai faithfulness` option), before any work starts."""
        from ..attribution import METHODS
        from ..checks import device_arg, policy_arg

        tasks = _names(self.tasks, "--tasks", task_names())
        methods = (tuple(METHODS) if self.methods is None or self.methods == "all" else
                   _names(self.methods, "--methods", METHODS, " or 'all'"))
        removals = _names(self.removals, "--removals", REMOVALS)
        policies = {}
        for task, pol in dict(self.policies).items():
            if task not in task_names():
                _fail(f"--policy {task}={pol}: expected TASK=FILE with TASK one of {', '.join(task_names())}")
            policies[task] = (str(policy_arg(str(pol), f"--policy {task}", accept=("weights", "task")).weights)
                              if isinstance(pol, str) or hasattr(pol, "__fspath__") else pol)
        return replace(self, tasks=tasks, methods=methods, removals=removals, units=_units(self.units),
                       policies=policies, device=str(device_arg(self.device)),
                       sanity=bool(self.sanity and self.sanity_states > 0))


# `policy-xai faithfulness --quick`: a one-minute smoke run (these fields over the others)
QUICK = dict(tasks=("reach",), methods=("dtd", "gradient", "ig", "occlusion_net"), every=25, sanity_states=2)


def _fail(message: str):
    from ..checks import UsageError

    raise UsageError(message)


def _split(value: Names, label: str) -> tuple:
    items = tuple(t.strip() for t in value.split(",")) if isinstance(value, str) else tuple(value)
    items = tuple(t for t in items if t != "")
    if not items:
        _fail(f"{label}: empty list")
    return items


def _names(value: Names, label: str, known: Sequence[str], more: str = "") -> tuple:
    items = _split(value, label)
    bad = [t for t in items if t not in known]
    if bad:
        _fail(f"{label}: unknown {bad}; choose from {', '.join(known)}{more}")
    return items


def _units(value: Union[str, Sequence[int]]) -> tuple:
    try:
        units = tuple(int(u) for u in _split(value, "--units"))
    except (TypeError, ValueError):
        units = ()
    if not units or any(u < 1 for u in units):
        _fail(f"--units: positive integers, got {value!r}")
    return units
