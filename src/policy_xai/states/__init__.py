"""States of interest (issue 12; Rupprecht et al., ../shared/papers/003): a VAE over what the policy
observes (model.py), trained with an attentive reconstruction, an agent-perception term and KL
(train.py), and the search of its latent space for states where a target is extreme (search.py,
find.py); the teacher network of the teacher_gap target (teacher.py) and the check of found states
in the simulation (validate.py); the options of every job (options.py). Commands: `policy-xai states
train | find | teacher | validate | bench` (commands/states.py). No ROS here.

Importing the package is light (options.py); the rest (torch) loads on first use of its names."""
from __future__ import annotations

from .options import FindOptions, TeacherOptions, TrainOptions, ValidateOptions  # noqa: F401

_LAZY = {"StateModelError": ".model", "StateModelMismatchError": ".model", "StateVAE": ".model",
         "load_state_model": ".model", "save_state_model": ".model", "state_model_for": ".model",
         "TARGETS": ".search", "TargetError": ".search", "find_states": ".search", "make_target": ".search"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
