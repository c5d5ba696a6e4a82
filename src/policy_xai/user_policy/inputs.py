"""What a model takes: its call style (one dict or positional tensors), the keys its forward reads,
and picking the actions out of its output."""
from __future__ import annotations

import inspect
import operator
from typing import Mapping, Optional

from .errors import UserPolicyError, _short


def _pick_output(y, output):
    if output is None:
        if isinstance(y, Mapping) and len(y) == 1:
            return next(iter(y.values()))
        if isinstance(y, (tuple, list)) and len(y) == 1:
            return y[0]
        return y
    try:
        return y[output]
    except (KeyError, IndexError, TypeError):
        keys = list(y) if isinstance(y, Mapping) else list(range(len(y))) if isinstance(y, (tuple, list)) else []
        raise UserPolicyError(f"actions.output {output!r} is not in the model's output (has {_short(keys)})") from None


def _positional_params(model) -> list:
    params = inspect.signature(model.forward).parameters.values()
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def call_style(model, names: list, path: str = "<mapping>") -> tuple:
    """How to call model with the mapping's observations: ("dict", None) or ("positional", order)."""
    style = getattr(model, "input_style", None)
    if style == "dict":
        return "dict", None
    if style == "positional":
        order = list(model.input_names)
        if sorted(order) != sorted(names):
            raise UserPolicyError(f"mapping {path} does not fit the model: it takes {_short(order, 10)} "
                                  f"(positional); the mapping gives {_short(names, 10)}")
        return "positional", order
    try:
        params = _positional_params(model)
    except (TypeError, ValueError):
        return "dict", None
    pnames = [p.name for p in params]
    required = [p.name for p in params if p.default is p.empty]
    if names and set(names) <= set(pnames) and set(required) <= set(names) and (len(pnames) > 1 or pnames == names):
        return "positional", [n for n in pnames if n in names]
    if len(pnames) == 1 and len(names) == 1 and model_inputs(model) is None:
        return "positional", list(names)  # forward(x) on one tensor: whatever the observation's name
    if len(required) <= 1 and pnames:
        return "dict", None
    raise UserPolicyError(f"mapping {path} does not fit the model: forward{inspect.signature(model.forward)} takes "
                          f"{_short(pnames, 10)}; the mapping gives {_short(names, 10)} (name the observations "
                          "after forward's parameters, or use a model that takes one dict)")


def model_inputs(model) -> Optional[list]:
    """The keys a dict-input model's forward reads (torch.fx: string keys of the observation
    parameter), or its positional parameter names; None if neither can be told."""
    names = getattr(model, "input_names", None)
    if names is not None:
        return list(names)
    try:
        params = _positional_params(model)
    except (TypeError, ValueError):
        return None
    if len(params) != 1:
        return [p.name for p in params]
    try:
        import torch.fx as fx

        g = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - data-dependent code does not trace; the run check still works
        return None
    ph = [n for n in g.nodes if n.op == "placeholder"]
    keys = []
    for n in g.nodes:
        if n.op == "call_function" and n.target is operator.getitem and n.args and n.args[0] is ph[0] \
                and isinstance(n.args[1], str) and n.args[1] not in keys:
            keys.append(n.args[1])
        elif n.op == "call_method" and n.target == "get" and n.args and n.args[0] is ph[0] \
                and isinstance(n.args[1], str) and n.args[1] not in keys:
            keys.append(n.args[1])
    return keys or None


def describe_inputs(model) -> str:
    keys = model_inputs(model)
    try:
        sig = f"forward{inspect.signature(model.forward)}"
    except (TypeError, ValueError):
        sig = "forward(...)"
    if keys is None:
        return f"{sig} (one tensor, or a dict whose keys could not be read off the code)"
    return f"{sig} reads {_short(keys, 10)}"
