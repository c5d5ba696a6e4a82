"""Which policy a command or a library call means: one resolver for "weights, spec or task".

    from policy_xai.resolve import policy_source, resolve_policy
    resolve_policy("models/reach.safetensors", device="cpu")  # trained weights (spec=...: they must fit it)
    resolve_policy("small", seed=3)                           # an untrained network of a spec (name or YAML file)
    resolve_policy("reach")                                   # the task's shipped weights (robot.tasks registry)
    policy_source("reach").weights                            # what it names, found without loading (no torch)

A source is tried in this order: an existing file (.yaml/.yml: a spec; anything else: weights), a
name ending in .safetensors (weights, which must exist), a shipped spec name (config/NAME.yaml), a
task name. "spec:NAME" and "task:NAME" choose where a name is both (reach2d is a spec and a task: bare,
it is the spec). A PolicySpec or a spec mapping is a spec too. `accept` narrows the kinds a caller
takes (e.g. ("weights", "task") where trained weights are needed). Every failure is one line:
PolicySourceError, a ValueError (a missing, empty or corrupt file, an unknown name with what is
accepted, weights that do not fit the requested spec).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

KINDS = ("weights", "spec", "task")
#: --policy's help text in every command that takes any kind
SOURCE_HELP = ("a weights file (.safetensors); a spec for an untrained network (a shipped name: small, paper, "
               "reach2d, ...; or a YAML file); or a task name for its shipped weights (reach, peg, door; "
               "task:NAME / spec:NAME where a name is both)")
SPEC_SUFFIXES = (".yaml", ".yml")
WEIGHTS_SUFFIX = ".safetensors"


class PolicySourceError(ValueError):
    """A policy source that names nothing usable (one line, saying what is accepted)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@dataclass(frozen=True)
class PolicySource:
    """What a policy source names. kind: "weights" (a weights file), "spec" (an untrained network of
    `spec`) or "task" (`task`'s shipped weights file)."""
    kind: str
    text: str                      # the source as given
    weights: Optional[Path] = None  # the weights file (kinds weights and task)
    spec: Any = None               # the PolicySpec (kind spec)
    task: str = ""                 # the task (kind task)
    label: str = "policy"          # how messages name it (e.g. "--policy")
    spec_file: Optional[Path] = None  # the YAML file the spec came from (kind spec; None: a mapping)

    @property
    def trained(self) -> bool:
        """Trained weights (a file), not a freshly initialised network."""
        return self.weights is not None

    def describe(self) -> str:
        """One phrase for printouts and summaries: the weights file, or "untrained <spec name>"."""
        if self.weights is not None:
            return str(self.weights)
        return f"untrained {self.spec.name}"

    def load(self, spec=None, seed: int = 0, device=None):
        """The VisuomotorPolicy: the weights loaded (checked against `spec` when given), or a network of
        the spec initialised with `seed` (the same weights on every device); on `device` (None: the CPU)."""
        from .policy import PolicyLoadError, init_policy, load_policy

        if self.weights is None:
            if spec is not None:
                raise PolicySourceError(f"{self.label} {self.text!r} is a spec (an untrained network); a spec to "
                                        "check against is only for trained weights")
            return init_policy(self.spec, seed=seed, device=device)
        if spec is not None:
            spec = policy_source(spec, accept=("spec",), label=f"{self.label} spec").spec
        try:
            return load_policy(self.weights, spec, device=device)
        except PolicyLoadError as e:
            raise PolicySourceError(_one_line(f"{self.label} {e}")) from e


def spec_names() -> list:
    """The shipped spec names (config/*.yaml that are policy specs, not parameter files)."""
    from .resources import share_path
    from .spec import load_spec

    out = []
    for f in sorted(share_path("config").glob("*.yaml")):
        try:
            load_spec(f)
        except Exception:  # noqa: BLE001 - a parameter file, or a broken one: not offered
            continue
        out.append(f.stem)
    return out


def accepted(accept: Sequence[str] = KINDS) -> str:
    """What a policy source may be, for messages."""
    from .robot.tasks import task_names

    parts = []
    if "weights" in accept:
        parts.append("a .safetensors weights file")
    if "spec" in accept:
        parts.append(f"a spec for an untrained network (a YAML file or a shipped name: {', '.join(spec_names())})")
    if "task" in accept:
        parts.append(f"a task name for its shipped weights ({', '.join(task_names())})")
    return parts[0] if len(parts) == 1 else "one of: " + "; ".join(parts)


def _weights(text: str, path: Path, label: str) -> PolicySource:
    if not path.exists():
        raise PolicySourceError(f"{label} file not found: {path}")
    if path.is_dir():
        raise PolicySourceError(f"{label} {path} is a folder, not a weights file")
    if path.stat().st_size == 0:
        raise PolicySourceError(f"{label} file {path} is empty")
    return PolicySource("weights", text, weights=path, label=label)


def _spec(text: str, source, label: str) -> PolicySource:
    from .spec import PolicySpec, SpecError, load_spec

    try:
        spec = load_spec(source)
    except (SpecError, TypeError, ValueError, OSError) as e:
        where = "" if isinstance(source, (Mapping, PolicySpec)) or str(source) in str(e) else f"{source}: "
        raise PolicySourceError(_one_line(f"{label} spec {where}{e}")) from None
    file = Path(source) if isinstance(source, (str, Path)) else None
    return PolicySource("spec", text, spec=spec, label=label, spec_file=file)


def _task(text: str, name: str, label: str) -> PolicySource:
    from .robot.tasks import shipped_weights

    try:
        path = Path(shipped_weights(name))
    except FileNotFoundError as e:
        raise PolicySourceError(_one_line(f"{label} {text!r}: {e}; train them with `policy-xai train --task "
                                          f"{name} --out FILE` and pass the file")) from None
    return PolicySource("task", text, weights=path, task=name, label=label)


def _shipped_spec(name: str) -> Optional[Path]:
    from .resources import share_path

    for cand in (share_path("config", name), share_path("config", name + ".yaml")):
        if cand.suffix in SPEC_SUFFIXES and cand.is_file():
            return cand
    return None


def _find(source, label: str, accept: Sequence[str]) -> PolicySource:
    from .robot.tasks import TASKS
    from .spec import PolicySpec

    if isinstance(source, (PolicySpec, Mapping)):
        return _spec(getattr(source, "name", "") or "spec", source, label)
    if not isinstance(source, (str, Path)):
        raise PolicySourceError(f"{label}: a path or a name, got {type(source).__name__}; give {accepted(accept)}")
    if not str(source).strip():
        raise PolicySourceError(f"{label}: none given; give {accepted(accept)}")
    text = str(source).strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("spec", "task") and not Path(text).exists():
        if prefix == "task":
            if rest not in TASKS:
                raise PolicySourceError(f"{label} {text!r}: unknown task {rest!r}; known tasks: {', '.join(TASKS)}")
            return _task(text, rest, label)
        found = _shipped_spec(rest)
        if found is None and not Path(rest).is_file():
            raise PolicySourceError(f"{label} {text!r}: no such spec file or shipped spec; shipped specs: "
                                    f"{', '.join(spec_names())}")
        return _spec(text, Path(rest) if Path(rest).is_file() else found, label)
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix.lower() in SPEC_SUFFIXES:
            return _spec(text, path, label)
        return _weights(text, path, label)
    if path.suffix.lower() == WEIGHTS_SUFFIX or path.is_dir():
        return _weights(text, path, label)
    found = _shipped_spec(text)
    if found is not None:
        return _spec(text, found, label)
    if text in TASKS:
        return _task(text, text, label)
    if path.suffix.lower() in SPEC_SUFFIXES or len(path.parts) > 1:
        raise PolicySourceError(f"{label} file not found: {text}")
    hint = " ('spec:NAME' / 'task:NAME' where a name is both)" if {"spec", "task"} <= set(accept) else ""
    raise PolicySourceError(f"{label} {text!r}: not a file, a shipped spec or a task; give {accepted(accept)}{hint}")


def policy_source(source, *, accept: Sequence[str] = KINDS, label: str = "policy") -> PolicySource:
    """What `source` names (module docstring), checked without loading any weights: the file exists and
    is not empty, the spec loads, the task ships weights. PolicySourceError (one line) otherwise, and
    when the kind is not in `accept`."""
    bad = [k for k in accept if k not in KINDS]
    if bad or not accept:
        raise ValueError(f"accept: kinds out of {KINDS}, got {tuple(accept)}")
    src = _find(source, label, accept)
    if src.kind not in accept:
        what = {"spec": f"an untrained network (spec {getattr(src.spec, 'name', '')!r})",
                "weights": "a weights file", "task": f"the shipped weights of task {src.task!r}"}[src.kind]
        raise PolicySourceError(f"{label} {src.text!r} names {what}; give {accepted(accept)}")
    return src


def resolve_policy(source, spec=None, *, seed: int = 0, device=None, accept: Sequence[str] = KINDS,
                   label: str = "policy"):
    """The policy `source` names (module docstring), loaded: trained weights (which must fit `spec`
    when it is given), or an untrained network of a spec initialised with `seed`; on `device` (a
    torch.device or text such as "cpu", "cuda:0"; None: the CPU). PolicySourceError (a ValueError, one
    line) for a missing, empty or corrupt file, a bad spec, an unknown name (listing what is
    accepted) or weights that do not fit `spec`."""
    return policy_source(source, accept=accept, label=label).load(spec=spec, seed=seed, device=device)


def trained_policy(source, spec=None, *, device=None, label: str = "policy"):
    """(policy, weights file) for a source that must be trained weights (a weights file or a task's
    shipped weights), for the tools tied to one weights file (state models, teacher and explainer
    networks store its name and sha256)."""
    src = policy_source(source, accept=("weights", "task"), label=label)
    return src.load(spec=spec, device=device), src.weights
