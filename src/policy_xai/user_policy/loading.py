"""Loading a user's policy: `package.module:factory` (+ a weights file) or a `.pt2` torch.export
program (policy_xai.user_policy.exported)."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from .errors import UserPolicyError, _line, _short
from .exported import load_exported


def load_user_policy(source: str, weights: Optional[str] = None, kwargs: Optional[Mapping[str, Any]] = None):
    """A user's policy as an nn.Module in eval mode, from `package.module:factory` (+ weights) or a
    `.pt2` torch.export program. Every failure is a UserPolicyError with a one-line message."""

    source = str(source)
    if source.endswith(".pt2") or (Path(source).is_file() and ":" not in source):
        if weights:
            raise UserPolicyError(f"{source} is a torch.export program, which holds its weights; weights files "
                                  "are for the package.module:factory form")
        if kwargs:
            raise UserPolicyError(f"{source} is a torch.export program; factory keyword arguments do not apply")
        return load_exported(source)
    if ":" not in source:
        raise UserPolicyError(f"model {source!r}: expected package.module:factory or a .pt2 file "
                              "(torch.export.save); no such file either")
    mod_name, _, attr = source.partition(":")
    if not mod_name or not attr:
        raise UserPolicyError(f"model {source!r}: expected package.module:factory")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise UserPolicyError(f"model {source!r}: cannot import module {mod_name!r} ({_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything on import
        raise UserPolicyError(f"model {source!r}: importing {mod_name} failed: {type(e).__name__}: {_line(e)}") \
            from None
    factory = mod
    for part in attr.split("."):
        if not hasattr(factory, part):
            names = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n, None))]
            raise UserPolicyError(f"model {source!r}: module {mod_name} has no {attr!r}; callables there: "
                                  f"{_short(names, 8)}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise UserPolicyError(f"model {source!r}: {attr} is a {type(factory).__name__}, not a function or class")
    kwargs = dict(kwargs or {})
    try:
        model = factory(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's factory may raise anything
        raise UserPolicyError(f"model {source!r}: {attr}({_short(f'{k}={v!r}' for k, v in kwargs.items())}) "
                              f"raised {type(e).__name__}: {_line(e)}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserPolicyError(f"model {source!r}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    if weights:
        load_weights(model, weights)
    return model.eval()


def read_state_dict(path) -> dict:
    """A .safetensors file, or a torch state_dict read with torch.load(weights_only=True)."""

    p = Path(path)
    if not p.is_file():
        raise UserPolicyError(f"weights file not found: {path}" if not p.exists() else f"weights {path} is a folder")
    if p.stat().st_size == 0:
        raise UserPolicyError(f"weights file {path} is empty")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p)))
        except Exception as e:  # noqa: BLE001 - a corrupt file: several error types
            raise UserPolicyError(f"weights {path}: not a readable safetensors file ({_line(e)})") from None
    try:
        sd = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle / zip errors, or a file that is not weights only
        raise UserPolicyError(f"weights {path}: torch.load(weights_only=True) failed ({type(e).__name__}: "
                              f"{_line(e)})") from None
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(torch.is_tensor(v) for v in sd.values()):
        raise UserPolicyError(f"weights {path}: expected a state_dict (name -> tensor), got a {type(sd).__name__}")
    return dict(sd)


def load_weights(model, path) -> None:
    """Load a weights file into model; missing / unexpected keys and shape mismatches are named."""
    sd = read_state_dict(path)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} in the file vs {tuple(own[k].shape)} in the model"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing, 4)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected, 4)}")
        if shapes:
            parts.append(f"shape mismatch: {_short(shapes, 3)}")
        raise UserPolicyError(f"weights {path} do not fit the model ({'; '.join(parts)})")
    model.load_state_dict(sd, strict=True)
