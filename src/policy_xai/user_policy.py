"""A user's policy without writing code: load it, map observations to it, check the two fit.

    from policy_xai.user_policy import load_user_policy, ObservationMapping
    model = load_user_policy("my_pkg.policies:make_policy", weights="policy.safetensors")
    model = load_user_policy("policy.pt2")                       # a torch.export-ed program
    mapping = ObservationMapping.from_yaml("mapping.yaml")
    mapping.check(model)                                         # UserPolicyError if they do not fit
    obs = mapping.to_inputs({"image": rgb_uint8_hxwx3, "state": np.array([...])})  # model inputs
    e = mapping.explain(model, obs, method="dtd")                # policy_xai.attribution.explain

Sources (`load_user_policy`):
- `package.module:factory` (a function or class; `a.b:Class.make` works too), called with the
  keyword arguments given as a dict, then the weights: a `.safetensors` file or a torch state_dict
  read with `torch.load(..., weights_only=True)` (a checkpoint dict with a `state_dict` entry is
  accepted). Missing / unexpected keys and shape mismatches are a UserPolicyError naming them.
- a `.pt2` file written by `torch.export.save`: loaded with `torch.export.load(...).module()`. Its
  aten ops are mapped back to the torch functions the graph engine has rules for (conv, linear, relu
  and the smooth activations, pools, cat, flatten / reshape, add, mean, ...), so a conv + linear
  program explains as its nn.Module would. torch.export decomposes modules into aten ops, so a
  spatial softmax (softmax + matmul) or an unfolded BatchNorm (`aten.batch_norm`) is no longer
  recognisable: such a program loads and runs, but explaining it raises UnsupportedOpError naming
  the aten op (use the `module:factory` form for those models). The program's train/eval mode is
  the one it was exported in (export it from `model.eval()`).

The YAML mapping (`ObservationMapping.from_yaml`): observation names -> sources; `actions` names the
outputs (the observations may also sit under an `observations:` key):

    agentview_image: {topic: /camera/image_raw, kind: image, height: 84, width: 84}
    state: {topic: /joint_states, kind: vector, fields: [position, velocity], joints: [j1, ..., j7]}
    gripper: {topic: /gripper/state, kind: vector, size: 2}
    actions: {names: [j1, ..., j7], kind: torques}        # or kind: other; alpha: [w1, ...] optional

Images arrive as ROS gives them, H x W x 3 uint8 (RGB), and become float (1, 3, H, W) in [0, 1]
(float images are taken as already in [0, 1]);
vectors are float arrays of the declared size (fields x joints: all of the first field's joints,
then the next field's), or a JointState-like dict {"name": [...], "position": [...], ...} whose
joints are picked by name. The ratio groups of a fields x joints vector are its fields.

Alpha (the output weights of the explanation): the given `alpha`, else 1 for every action, which
is the right default for actions that are not joint torques (end-effector deltas, gripper). Joint
torques can instead take the paper's dynamics-based importance factors per step,
`mapping.torque_alpha(robot_model, data)`, from the joint positions of the state vector (the
command's `--robot`).

No ROS import here: the nodes and the `policy-xai explain-model` command build on this module.
"""
from __future__ import annotations

import importlib
import inspect
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

IMAGE_KINDS = ("image",)
VECTOR_KINDS = ("vector",)
OBSERVATION_KINDS = IMAGE_KINDS + VECTOR_KINDS
ACTION_KINDS = ("torques", "other")


class UserPolicyError(ValueError):
    """A user's policy, weights file or mapping that cannot work: one line saying why."""


def _line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _short(items, n: int = 6) -> str:
    items = list(items)
    head = ", ".join(str(i) for i in items[:n])
    return head + (f", ... ({len(items)} in all)" if len(items) > n else "")


# ==== loading ======================================================================================
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


# ---- torch.export programs -------------------------------------------------------------------------
def _aten_table() -> dict:
    """aten op -> (torch function the graph engine has a rule for, argument adapter or None)."""
    from torch.nn import functional as F

    aten = torch.ops.aten
    drop_last = lambda a: a[:-1] if len(a) == 6 else a  # noqa: E731 - group/layer_norm's cudnn_enabled
    table = {
        "conv1d.default": F.conv1d, "conv2d.default": F.conv2d, "linear.default": F.linear,
        "relu.default": torch.relu, "tanh.default": torch.tanh, "gelu.default": F.gelu, "silu.default": F.silu,
        "elu.default": F.elu, "leaky_relu.default": F.leaky_relu, "mish.default": F.mish,
        "max_pool1d.default": F.max_pool1d, "max_pool2d.default": F.max_pool2d, "avg_pool1d.default": F.avg_pool1d,
        "avg_pool2d.default": F.avg_pool2d, "adaptive_avg_pool1d.default": F.adaptive_avg_pool1d,
        "adaptive_avg_pool2d.default": F.adaptive_avg_pool2d,
        "cat.default": torch.cat, "stack.default": torch.stack, "flatten.using_ints": torch.flatten,
        "reshape.default": torch.reshape, "view.default": torch.reshape, "permute.default": torch.permute,
        "transpose.int": torch.transpose, "unsqueeze.default": torch.unsqueeze, "squeeze.dim": torch.squeeze,
        "add.Tensor": torch.add, "sub.Tensor": torch.sub, "mul.Tensor": torch.mul, "div.Tensor": torch.div,
        "neg.default": torch.neg, "mean.dim": torch.mean, "sum.dim_IntList": torch.sum,
        "dropout.default": F.dropout, "clone.default": None, "contiguous.default": None,
        "group_norm.default": (F.group_norm, drop_last), "layer_norm.default": (F.layer_norm, drop_last),
    }
    out = {}
    for name, fn in table.items():
        op = aten
        try:
            for part in name.split("."):
                op = getattr(op, part)
        except (AttributeError, RuntimeError):
            continue
        out[op] = fn if isinstance(fn, tuple) else (fn, None)
    out[operator.getitem] = (operator.getitem, None)
    return out


def load_exported(path):
    """A torch.export program (.pt2) as a plain module the graph engine can trace: inputs named as
    the program's (its dict keys, or its positional parameters), aten ops mapped back to torch
    functions where there is a rule, the exported input guards dropped (the mapping check runs the
    model on the mapping's shapes instead)."""
    import torch.fx as fx
    import torch.utils._pytree as pytree

    p = Path(path)
    if not p.is_file():
        raise UserPolicyError(f"model file not found: {path}" if not p.exists() else f"model {path} is a folder")
    try:
        ep = torch.export.load(str(p))
        gm = ep.module()
    except Exception as e:  # noqa: BLE001 - zip, pickle and version errors
        raise UserPolicyError(f"model {path}: torch.export.load failed ({type(e).__name__}: {_line(e)})") from None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    try:
        tree = pytree.tree_unflatten(list(range(len(placeholders))), gm._in_spec)
        args, kwargs = tree
    except Exception:  # noqa: BLE001 - an input structure we do not know
        args, kwargs = tuple(range(len(placeholders))), {}
    if (len(args) == 1 and isinstance(args[0], dict) and not kwargs
            and all(isinstance(v, int) for v in args[0].values())):
        style, names = "dict", [None] * len(placeholders)
        for k, i in args[0].items():
            names[i] = str(k)
    else:
        style, names = "positional", [str(n.target) for n in placeholders]
    table = _aten_table()
    graph = fx.Graph()
    env = {}
    out_spec = getattr(gm, "_out_spec", None)
    for n in gm.graph.nodes:
        if n.op == "call_module" and "_guards" in str(n.target):
            continue
        if n.op == "output":
            res = fx.node.map_arg(n.args[0], lambda a: env[a])
            if isinstance(res, (tuple, list)) and len(res) == 1 and out_spec is not None and out_spec.num_leaves == 1:
                res = res[0]
            graph.output(res)
            continue
        new = graph.node_copy(n, lambda a: env[a])
        if n.op == "call_function" and n.target in table:
            fn, adapt = table[n.target]
            if fn is None:  # clone / contiguous: the value itself
                env[n] = env[n.args[0]]
                graph.erase_node(new)
                continue
            new.target = fn
            if adapt is not None:
                new.args = adapt(tuple(new.args))
        env[n] = new
    try:
        inner = fx.GraphModule(gm, graph)
    except Exception as e:  # noqa: BLE001
        raise UserPolicyError(f"model {path}: cannot rebuild the exported program ({_line(e)})") from None
    return ExportedPolicy(inner, style, names).eval()


class ExportedPolicy(torch.nn.Module):
    """A torch.export program as a module: model(obs dict) when the program took a dict, else
    model(*tensors) in the program's parameter order (names in `input_names`)."""

    def __init__(self, program, style: str, names: list):
        super().__init__()
        self.program = program
        self.input_style = style
        self.input_names = list(names)

    def forward(self, *args):
        if self.input_style == "dict":
            (obs,) = args
            return self.program(*[obs[k] for k in self.input_names])
        return self.program(*args)

    def train(self, mode: bool = True):
        """eval() works (an exported program's own .eval() does not); its mode is fixed at export."""
        if mode:
            raise NotImplementedError("a torch.export program cannot be put in training mode")
        for m in self.modules():
            m.training = False
        return self


# ==== the observation mapping ======================================================================
@dataclass
class Source:
    """One observation: where it comes from and how it becomes a model input."""

    name: str
    kind: str
    topic: str = ""
    height: int = 0
    width: int = 0
    fields: list = field(default_factory=list)
    joints: list = field(default_factory=list)
    size: int = 0
    groups: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        """The model input's shape without the batch axis."""
        return (3, self.height, self.width) if self.kind == "image" else (self.size,)

    def describe(self) -> str:
        return f"{self.name} ({self.kind} {'x'.join(map(str, self.shape))})"


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
        from .robot.importance import importance_factors

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
        from .attribution import explain

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


def _source(name: str, spec, path: str) -> Source:
    where = f"mapping {path}: {name}"
    if not isinstance(spec, Mapping):
        raise UserPolicyError(f"{where}: expected {{topic: ..., kind: image|vector, ...}}, got {spec!r}")
    spec = dict(spec)
    known = {"topic", "kind", "height", "width", "fields", "field", "joints", "size", "groups", "encoding"}
    unknown = set(spec) - known
    if unknown:
        raise UserPolicyError(f"{where}: unknown keys {_short(sorted(unknown))} (known: {', '.join(sorted(known))})")
    kind = str(spec.get("kind", "image" if "height" in spec else "vector"))
    if kind not in OBSERVATION_KINDS:
        raise UserPolicyError(f"{where}: kind {kind!r} is not one of {', '.join(OBSERVATION_KINDS)}")
    topic = str(spec.get("topic", ""))

    def count(key):
        v = spec.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserPolicyError(f"{where}: {key} must be a positive integer, got {v!r}")
        return v

    if kind == "image":
        for k in ("fields", "field", "joints", "size"):
            if k in spec:
                raise UserPolicyError(f"{where}: {k!r} is for vectors; an image takes topic, height, width")
        return Source(name, kind, topic, height=count("height"), width=count("width"))
    for k in ("height", "width"):
        if k in spec:
            raise UserPolicyError(f"{where}: {k!r} is for images; a vector takes fields and joints, or size")
    fields = spec.get("fields", [spec["field"]] if "field" in spec else [])
    if isinstance(fields, str):
        fields = [fields]
    joints = spec.get("joints") or []
    if not isinstance(fields, list) or not isinstance(joints, list):
        raise UserPolicyError(f"{where}: fields and joints must be lists")
    if joints:
        fields = fields or ["position"]
        size = len(fields) * len(joints)
        if "size" in spec and spec["size"] != size:
            raise UserPolicyError(f"{where}: size {spec['size']} != {len(fields)} fields x {len(joints)} joints")
        groups = {str(f): len(joints) for f in fields} if len(fields) > 1 else {}
    else:
        size = count("size")
        groups = {}
    if spec.get("groups"):
        g = spec["groups"]
        if not isinstance(g, Mapping) or not all(isinstance(v, int) and v > 0 for v in g.values()) \
                or sum(g.values()) > size:
            raise UserPolicyError(f"{where}: groups must map names to positive sizes that add up to at most {size}")
        groups = {str(k): int(v) for k, v in g.items()}
    return Source(name, kind, topic, fields=[str(f) for f in fields], joints=[str(j) for j in joints], size=size,
                  groups=groups)


def _from_fields(name: str, s: Source, msg: Mapping) -> np.ndarray:
    """A JointState-like dict -> the vector: fields in order, each over the mapping's joints."""
    names = list(msg.get("name") or [])
    parts = []
    for f in s.fields or ["data"]:
        if f not in msg:
            raise UserPolicyError(f"observation {name}: no field {f!r} (has {_short(msg)})")
        v = np.asarray(msg[f], dtype=np.float64).reshape(-1)
        if s.joints and names:
            missing = [j for j in s.joints if j not in names]
            if missing:
                raise UserPolicyError(f"observation {name}: joints {_short(missing)} are not in the message's names")
            v = v[[names.index(j) for j in s.joints]]
        parts.append(v)
    return np.concatenate(parts)


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


# ==== what a model takes ===========================================================================
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
