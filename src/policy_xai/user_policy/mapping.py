"""The YAML observation mapping (ObservationMapping, load_mapping): observation names -> sources,
the actions, and the checks that a model and a mapping fit."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from .errors import UserPolicyError, _line, _short
from .inputs import _pick_output, call_style, describe_inputs, model_inputs
from .sources import ACTION_KINDS, _from_fields, _source


@dataclass
class ObservationMapping:
    """observation name -> Source, the action names, their kind and alpha."""

    observations: dict
    action_names: list = field(default_factory=list)
    action_kind: str = "other"
    action_alpha: Optional[list] = None
    output: Any = None
    path: str = ""

    # ---- reading ----------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path) -> "ObservationMapping":
        import yaml

        p = Path(path)
        if not p.is_file():
            raise UserPolicyError(f"mapping file not found: {path}" if not p.exists()
                                  else f"mapping {path} is a folder")
        try:
            doc = yaml.safe_load(p.read_text())
        except Exception as e:  # noqa: BLE001 - yaml errors, undecodable text
            raise UserPolicyError(f"mapping {path}: not valid YAML ({_line(e)})") from None
        return cls.from_dict(doc, str(path))

    @classmethod
    def from_dict(cls, doc, path: str = "<mapping>") -> "ObservationMapping":
        if not isinstance(doc, Mapping):
            raise UserPolicyError(f"mapping {path}: expected observation names -> sources and 'actions', "
                                  f"got a {type(doc).__name__}")
        doc = dict(doc)
        actions = doc.pop("actions", None) or {}
        obs_doc = doc.pop("observations") if isinstance(doc.get("observations"), Mapping) else doc
        if obs_doc is not doc and doc:
            raise UserPolicyError(f"mapping {path}: unknown top-level keys {_short(doc)} next to 'observations'")
        if not obs_doc:
            raise UserPolicyError(f"mapping {path}: no observations")
        observations = {str(name): _source(str(name), spec, path) for name, spec in obs_doc.items()}
        if not isinstance(actions, Mapping):
            raise UserPolicyError(f"mapping {path}: 'actions' must be a mapping (names, kind, alpha)")
        unknown = set(actions) - {"names", "kind", "alpha", "output"}
        if unknown:
            raise UserPolicyError(f"mapping {path}: actions: unknown keys {_short(sorted(unknown))} "
                                  "(known: names, kind, alpha, output)")
        names = actions.get("names") or []
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise UserPolicyError(f"mapping {path}: actions.names must be a list of names")
        kind = str(actions.get("kind", "other"))
        if kind not in ACTION_KINDS:
            raise UserPolicyError(f"mapping {path}: actions.kind {kind!r} is not one of {', '.join(ACTION_KINDS)}")
        alpha = actions.get("alpha")
        if alpha is not None:
            try:
                a = np.asarray(alpha, dtype=np.float64)
            except (TypeError, ValueError):
                raise UserPolicyError(f"mapping {path}: actions.alpha must be a list of numbers") from None
            if a.ndim != 1 or not np.isfinite(a).all() or (a < 0).any():
                raise UserPolicyError(f"mapping {path}: actions.alpha must be a list of finite numbers >= 0")
            if names and len(a) != len(names):
                raise UserPolicyError(f"mapping {path}: actions.alpha has {len(a)} weights for {len(names)} actions")
            alpha = a.tolist()
        return cls(observations, [str(n) for n in names], kind, alpha, actions.get("output"), path)

    # ---- observations -> model inputs -------------------------------------------------------------
    def names(self) -> list:
        return list(self.observations)

    def groups(self) -> dict:
        return {n: dict(s.groups) for n, s in self.observations.items() if s.groups}

    def example(self, seed: int = 0) -> dict:
        """A random observation as ROS would give it (images H x W x 3 uint8, vectors float)."""
        rng = np.random.default_rng(seed)
        out = {}
        for n, s in self.observations.items():
            if s.kind == "image":
                out[n] = rng.integers(0, 256, (s.height, s.width, 3), dtype=np.uint8)
            else:
                out[n] = rng.standard_normal(s.size).astype(np.float32)
        return out

    def to_inputs(self, observation: Mapping, device=None, dtype=None) -> dict:
        """One observation (name -> numpy array as ROS gives it) -> name -> tensor (1, ...)."""
        return {n: t.unsqueeze(0) for n, t in self._convert(observation, device, dtype, batched=False).items()}

    def to_batch(self, observations: Mapping, device=None, dtype=None) -> dict:
        """Several observations with a leading step axis (name -> (T, ...) arrays) -> (T, ...) tensors."""
        return self._convert(observations, device, dtype, batched=True)

    def _convert(self, observation, device, dtype, batched: bool) -> dict:

        if not isinstance(observation, Mapping):
            raise UserPolicyError(f"an observation is a dict name -> array, got a {type(observation).__name__}")
        missing = [n for n in self.observations if n not in observation]
        if missing:
            raise UserPolicyError(f"the observation has no {_short(missing)}; it has {_short(observation)}; "
                                  f"the mapping needs {_short(self.observations)}")
        dtype = dtype or torch.float32
        out = {}
        for n, s in self.observations.items():
            v = observation[n]
            if s.kind == "image":
                a = np.asarray(v)
                want = (s.height, s.width, 3)
                got = a.shape[1:] if batched else a.shape
                if tuple(got) != want or (batched and a.ndim != 4):
                    raise UserPolicyError(f"observation {n}: expected an image {'T x ' if batched else ''}"
                                          f"{s.height} x {s.width} x 3 (RGB), got shape {a.shape}")
                t = torch.from_numpy(np.ascontiguousarray(a))
                t = t.to(device) if device is not None else t  # the uint8 bytes travel, then convert there
                t = t.to(dtype) / 255.0 if a.dtype == np.uint8 else t.to(dtype)
                t = t.permute(0, 3, 1, 2) if batched else t.permute(2, 0, 1)
            else:
                if isinstance(v, Mapping) and not batched:
                    a = _from_fields(n, s, v)
                else:
                    try:
                        a = np.asarray(v, dtype=np.float64)
                    except (TypeError, ValueError):
                        raise UserPolicyError(f"observation {n}: expected numbers, got {type(v).__name__}") from None
                got = a.shape[1:] if batched else a.shape
                if tuple(got) != (s.size,) or not np.issubdtype(a.dtype, np.number):
                    raise UserPolicyError(f"observation {n}: expected a vector of {s.size} numbers"
                                          f"{' per step' if batched else ''}, got shape {a.shape}")
                t = torch.from_numpy(np.ascontiguousarray(a))
                t = (t.to(device) if device is not None else t).to(dtype)
            out[n] = t.contiguous()
        return out

    # ---- the model --------------------------------------------------------------------------------
    def alpha(self, n_actions: int) -> np.ndarray:
        """The output weights: the mapping's alpha, else 1 (see the module docstring on torques)."""
        if self.action_alpha is not None:
            if len(self.action_alpha) != n_actions:
                raise UserPolicyError(f"mapping {self.path}: actions.alpha has {len(self.action_alpha)} weights, "
                                      f"the model has {n_actions} outputs")
            return np.asarray(self.action_alpha, dtype=np.float64)
        return np.ones(n_actions)

    def torque_alpha(self, robot, data: Mapping, dt: float = 0.05, method: str = "linearized") -> np.ndarray:
        """Per-step importance factors (T, A) of joint-torque actions from a robot model (a
        policy_xai.robot.RobotModel): the joint positions (and velocities, for method="exact") are
        read from the vector observation whose `fields` hold "position" over joints that cover the
        actions; data: name -> (T, ...) arrays. The actions must be the robot's joints."""
        from ..robot.importance import importance_factors

        if self.action_kind != "torques":
            raise UserPolicyError(f"mapping {self.path}: actions.kind is {self.action_kind!r}; importance factors "
                                  "are for joint torques (other actions take alpha = 1 or actions.alpha)")
        names = list(self.action_names)
        joints = list(robot.joint_names)
        if sorted(names) != sorted(joints):
            raise UserPolicyError(f"mapping {self.path}: actions.names {_short(names, 8)} are not the robot's "
                                  f"joints {_short(joints, 8)}")
        src = next((s for s in self.observations.values() if s.kind == "vector" and "position" in s.fields
                    and set(joints) <= set(s.joints)), None)
        if src is None:
            raise UserPolicyError(f"mapping {self.path}: no vector observation with a 'position' field over the "
                                  f"joints {_short(joints, 8)} (needed for the importance factors)")
        a = np.asarray(data[src.name], dtype=np.float64)
        col = lambda f, j: src.fields.index(f) * len(src.joints) + src.joints.index(j)  # noqa: E731
        q = a[:, [col("position", j) for j in joints]]
        v = a[:, [col("velocity", j) for j in joints]] if "velocity" in src.fields else np.zeros_like(q)
        alpha = np.stack([importance_factors(robot, q[t], v[t], dt=dt, method=method) for t in range(len(a))])
        return alpha[:, [joints.index(n) for n in names]]

    def call_style(self, model) -> tuple:
        """("dict", None): model(obs); ("positional", names): model(*[obs[n] for n in names])."""
        return call_style(model, self.names(), self.path)

    def run(self, model, inputs: dict):
        """model(inputs) in its call style, the actions picked by `output`."""
        style, order = self.call_style(model)
        y = model(inputs) if style == "dict" else model(*[inputs[n] for n in order])
        return _pick_output(y, self.output)

    def check(self, model) -> int:
        """Run the model once on a random observation built from the mapping; UserPolicyError (listing
        the model's inputs and what the mapping gives) if they do not fit. Returns the action count."""

        style, order = self.call_style(model)
        needs = model_inputs(model)
        gives = "; the mapping gives " + _short([s.describe() for s in self.observations.values()], 8)
        if style == "dict" and needs is not None:
            missing = [k for k in needs if k not in self.observations]
            extra = [k for k in self.observations if k not in needs]
            if missing or extra:
                what = []
                if missing:
                    what.append(f"no source for {_short(missing)}")
                if extra:
                    what.append(f"{_short(extra)} not read by the model")
                raise UserPolicyError(f"mapping {self.path} does not fit the model: {'; '.join(what)}; the model's "
                                      f"inputs (keys its forward reads): {_short(needs, 10)}{gives}")
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        device = next((p.device for p in model.parameters()), None)
        inputs = self.to_inputs(self.example(), device=device, dtype=dtype)
        try:
            with torch.no_grad():
                y = self.run(model, inputs)
        except UserPolicyError:
            raise
        except KeyError as e:
            raise UserPolicyError(f"mapping {self.path} does not fit the model: its forward reads key {e} that the "
                                  f"mapping does not give; model inputs: {describe_inputs(model)}{gives}") from None
        except Exception as e:  # noqa: BLE001 - whatever the user's forward raises on wrong inputs
            raise UserPolicyError(f"mapping {self.path} does not fit the model: the model fails on the mapping's "
                                  f"observation ({type(e).__name__}: {_line(e)}); model inputs: "
                                  f"{describe_inputs(model)}{gives}") from None
        if not torch.is_tensor(y) or y.dim() != 2 or y.shape[0] != 1:
            shape = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
            raise UserPolicyError(f"the model's output must be actions (B, A) (pick one of a dict / tuple output "
                                  f"with actions.output), got {shape}")
        A = int(y.shape[1])
        if self.action_names and len(self.action_names) != A:
            raise UserPolicyError(f"mapping {self.path}: actions.names has {len(self.action_names)} names, the model "
                                  f"has {A} outputs")
        self.alpha(A)
        return A

    def explain(self, model, inputs: dict, method: str = "dtd", **kw):
        """policy_xai.attribution.explain on mapped inputs (name -> (B, ...) tensors); the result's
        `inputs` / `ratios` / `maps` use the mapping's names whatever the model's call style."""
        from ..attribution import explain

        style, order = self.call_style(model)
        kw.setdefault("output", self.output)
        if "alpha" not in kw and self.action_alpha is not None:
            kw["alpha"] = np.asarray(self.action_alpha, dtype=np.float64)
        groups = self.groups()
        if style == "dict":
            return explain(model, dict(inputs), method=method, groups=groups or None, **kw)
        rename = {f"input{i}": n for i, n in enumerate(order)}
        back = {n: k for k, n in rename.items()}
        e = explain(model, tuple(inputs[n] for n in order), method=method,
                    groups={back[n]: g for n, g in groups.items()} or None, **kw)
        e.inputs = {rename.get(k, k): v for k, v in e.inputs.items()}
        e.ratios = None if e.ratios is None else {rename.get(k, k): v for k, v in e.ratios.items()}
        e.maps = {rename.get(k, k): v for k, v in e.maps.items()}
        e.group_ratios = {rename.get(k.split("/")[0], k.split("/")[0]) + "/" + k.split("/", 1)[1]: v
                          for k, v in e.group_ratios.items()}
        if e.per_output:
            e.per_output = {rename.get(k, k): v for k, v in e.per_output.items()}
        return e


def load_mapping(path, model=None) -> ObservationMapping:
    """ObservationMapping.from_yaml(path), checked against model when given: every error then also
    lists the model's inputs."""
    try:
        mapping = ObservationMapping.from_yaml(path)
    except UserPolicyError as e:
        if model is None:
            raise
        raise UserPolicyError(f"{e}; model inputs: {describe_inputs(model)}") from None
    if model is not None:
        mapping.check(model)
    return mapping
