"""A user's policy live, without ROS: what the user_policy_node computes, on plain values.

    live = load_live("policy_xai.attribution.graph.models:robomimic_bc", "config/user_policy_sim.yaml",
                     model_kwargs='{"width": 8, "image_size": 64, "low_dim": {"joint_state": 14}}',
                     allow_untrained=True)
    rgb = live.image("agentview_image", rgb_uint8)                      # size checked (or resized)
    q = live.vector_from_joint_state("joint_state", names, {"position": [...], "velocity": [...]})
    inputs, actions = live.decide({"agentview_image": rgb, "joint_state": q})
    e = live.explain(inputs, {"joint_state": q})                       # LiveExplanation

Every failure is a UserPolicyError (policy_xai.user_policy) with a one-line message: the node shows it
on /diagnostics (a bad message at run time) or exits with it (a bad model or mapping at start-up).

Where observations come from (`topic_plan`): an image observation from a sensor_msgs/Image topic; a
vector observation from a sensor_msgs/JointState topic (the project's stamped named-vector
convention): its `fields` (default: position) over its `joints` picked by name, or, without joints,
the whole field arrays in message order (then `size` is checked). Observations on one topic (two
vectors from /joint_states) share one subscription.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from .observation import fit_image
from .user_policy import ObservationMapping, UserPolicyError, _short, load_mapping, load_user_policy

JOINT_FIELDS = ("position", "velocity", "effort")


class UntrainedModelRefused(UserPolicyError):
    """A factory model without a weights file, and allow_untrained not set."""


def parse_kwargs(text) -> dict:
    """model_kwargs as given on the command line: a JSON object ('' = none)."""
    if isinstance(text, Mapping):
        return dict(text)
    text = str(text or "").strip()
    if not text:
        return {}
    try:
        out = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserPolicyError(f"model_kwargs {text!r} is not JSON ({e.msg} at character {e.pos}); give an object, "
                              "e.g. '{\"width\": 8}'") from None
    if not isinstance(out, dict):
        raise UserPolicyError(f"model_kwargs must be a JSON object (name -> value), got {type(out).__name__}")
    return out


def check_device(device: str) -> torch.device:
    """policy_xai.device.parse_device, its DeviceError as a UserPolicyError (the same line)."""
    from .device import DeviceError, parse_device

    try:
        return parse_device(device)
    except DeviceError as e:
        raise UserPolicyError(str(e)) from None


def is_program(model: str) -> bool:
    return str(model).endswith(".pt2")


@dataclass
class LiveExplanation:
    """One explanation as the node publishes it: per-camera maps (H, W) float32, ratio names and
    values (per input; a vector input with groups is split into them; sum to 1, empty for the CAM
    methods), the vector elements' relevance, the alpha used and the explained outputs."""

    maps: dict
    ratio_names: list
    ratio_values: np.ndarray
    element_names: list
    element_relevance: np.ndarray
    alpha: np.ndarray
    outputs: np.ndarray
    method: str = ""


@dataclass
class UserLive:
    """A loaded model with its mapping; `explainer` is a copy of the model for the explanation worker
    thread (the control path and the explanation never run one module object concurrently)."""

    model: torch.nn.Module
    mapping: ObservationMapping
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    method: str = "dtd"
    n_actions: int = 0
    untrained: bool = False
    source: str = ""
    explainer: Optional[torch.nn.Module] = None
    robot: object = None  # a RobotModel for importance: dynamics
    dt: float = 0.05

    def __post_init__(self):
        self.dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), torch.float32)
        if self.explainer is None:
            self.explainer = copy.deepcopy(self.model)
        if not self.mapping.action_names:
            self.mapping.action_names = [f"action_{i}" for i in range(self.n_actions)]

    # ---- where the observations come from -------------------------------------------------------
    def topic_plan(self) -> dict:
        """topic -> ("image" | "joint_state", [observation names]); every observation has a topic."""
        plan: dict = {}
        for n, s in self.mapping.observations.items():
            if not s.topic:
                raise UserPolicyError(f"mapping {self.mapping.path}: observation {n} has no topic")
            kind = "image" if s.kind == "image" else "joint_state"
            have = plan.setdefault(s.topic, (kind, []))
            if have[0] != kind:
                raise UserPolicyError(f"mapping {self.mapping.path}: topic {s.topic} is both an image and a vector "
                                      f"source ({_short(have[1] + [n])})")
            have[1].append(n)
        return plan

    def image_names(self) -> list:
        return [n for n, s in self.mapping.observations.items() if s.kind == "image"]

    def vector_names(self) -> list:
        return [n for n, s in self.mapping.observations.items() if s.kind != "image"]

    # ---- one message -> one observation ---------------------------------------------------------
    def image(self, name: str, rgb: np.ndarray, resize: bool = False) -> np.ndarray:
        """An (H, W, 3) uint8 RGB image for observation `name`: its size checked, or resized."""
        s = self.mapping.observations[name]
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise UserPolicyError(f"{name} from {s.topic}: expected an H x W x 3 image, got shape {rgb.shape}")
        return fit_image(rgb, s.height, s.width, resize, what=f"{name} from {s.topic}: image is",
                         wants="the mapping says", error=UserPolicyError)

    def vector_from_joint_state(self, name: str, names: Sequence[str], fields: Mapping) -> np.ndarray:
        """The vector of observation `name` out of a JointState's names and field arrays."""
        s = self.mapping.observations[name]
        names = [str(n) for n in names]
        parts = []
        for f in s.fields or ["position"]:
            if f not in JOINT_FIELDS:
                raise UserPolicyError(f"observation {name}: field {f!r} is not a JointState field "
                                      f"({', '.join(JOINT_FIELDS)})")
            v = np.asarray(fields.get(f, ()), dtype=np.float64).ravel()
            if s.joints:
                if len(v) != len(names):
                    raise UserPolicyError(f"{name} from {s.topic}: joint state has {len(names)} names but "
                                          f"{len(v)} {f} values")
                missing = [j for j in s.joints if j not in names]
                if missing:
                    raise UserPolicyError(f"{name} from {s.topic}: joints {_short(missing)} are not in the "
                                          f"message (it names {_short(names, 8)})")
                v = v[[names.index(j) for j in s.joints]]
            parts.append(v)
        out = np.concatenate(parts) if parts else np.zeros(0)
        if out.shape != (s.size,):
            raise UserPolicyError(f"{name} from {s.topic}: expected {s.size} values "
                                  f"({'+'.join(s.fields or ['position'])}), got {out.size}")
        if not np.all(np.isfinite(out)):
            raise UserPolicyError(f"{name} from {s.topic}: NaN or infinite values")
        return out

    # ---- decisions and explanations --------------------------------------------------------------
    def decide(self, observation: Mapping) -> tuple:
        """(model inputs name -> (1, ...) tensor, actions (A,) float64); non-finite actions: an error."""
        inputs = self.mapping.to_inputs(observation, device=self.device, dtype=self.dtype)
        with torch.no_grad():
            y = self.mapping.run(self.model, inputs)
        a = y.detach().float().cpu().numpy().reshape(-1).astype(np.float64)
        if a.shape != (self.n_actions,):
            raise UserPolicyError(f"the model gave {a.size} actions, the mapping names {self.n_actions}")
        if not np.all(np.isfinite(a)):
            raise UserPolicyError(f"the model produced non-finite actions {np.round(a, 4).tolist()}")
        return inputs, a

    def alpha(self, observation: Mapping, importance: str = "mapping") -> np.ndarray:
        """The output weights: the mapping's alpha (else 1), or for joint torques with
        importance="dynamics" the robot model's importance factors at the observed state."""
        if importance == "dynamics" and self.mapping.action_kind == "torques" and self.robot is not None:
            data = {n: np.asarray(observation[n], dtype=np.float64)[None] for n in self.vector_names()}
            a = self.mapping.torque_alpha(self.robot, data, dt=self.dt)[0]
            if np.all(np.isfinite(a)) and np.any(a > 0):
                return np.maximum(a, 0.0)
        return self.mapping.alpha(self.n_actions)

    def explain(self, inputs: Mapping, observation: Mapping, method: Optional[str] = None,
                importance: str = "mapping") -> LiveExplanation:
        method = method or self.method
        alpha = self.alpha(observation, importance)
        e = self.mapping.explain(self.explainer, dict(inputs), method=method, alpha=alpha)
        maps = {n: e.maps[n][0].detach().float().cpu().numpy().astype(np.float32)
                for n in self.image_names() if n in e.maps}
        names, values = [], []
        if e.ratios is not None:
            groups = self.mapping.groups()
            for n in self.mapping.names():
                r = float(e.ratios[n][0]) if n in e.ratios else float("nan")
                if n in groups:
                    rest = r
                    for g in groups[n]:
                        v = float(e.group_ratios[f"{n}/{g}"][0])
                        names.append(f"{n}/{g}")
                        values.append(v)
                        rest -= v
                    if sum(groups[n].values()) < self.mapping.observations[n].size:
                        names.append(f"{n}/other")
                        values.append(max(rest, 0.0))
                else:
                    names.append(n)
                    values.append(r)
        el_names = self.element_names()
        el = [e.inputs[n][0].detach().float().cpu().numpy().reshape(-1) if n in e.inputs
              else np.zeros(self.mapping.observations[n].size) for n in self.vector_names()]
        rel = np.concatenate(el) if el else np.zeros(0)
        return LiveExplanation(maps, names, np.asarray(values, dtype=np.float64), el_names, rel.astype(np.float64),
                               np.asarray(alpha, dtype=np.float64),
                               e.outputs[0].detach().float().cpu().numpy().astype(np.float64), method)

    def element_names(self) -> list:
        """Names of the vector elements in order ('joint_<field>/<joint>' for JointState fields over
        joints, as the visualisation node's markers read them; '<observation>/<i>' otherwise; a name
        taken twice gets its observation's name in front)."""
        out = []
        for n in self.vector_names():
            s = self.mapping.observations[n]
            if s.joints:
                here = [f"joint_{f}/{j}" for f in (s.fields or ["position"]) for j in s.joints]
                if set(here) & set(out):
                    here = [f"{n}:{x}" for x in here]
            else:
                here = [f"{n}/{i}" for i in range(s.size)]
            out += here
        return out

    def check_method(self, method: str) -> None:
        """Explain a random observation with `method`; UserPolicyError naming why it cannot."""
        obs = self.mapping.example()
        inputs = self.mapping.to_inputs(obs, device=self.device, dtype=self.dtype)
        vec = {n: obs[n] for n in self.vector_names()}
        try:
            self.explain(inputs, vec, method)
        except UserPolicyError:
            raise
        except Exception as e:  # noqa: BLE001 - unsupported ops, unknown methods: one line
            text = (str(e) or type(e).__name__).strip().splitlines()[0]
            raise UserPolicyError(f"method {method!r} cannot explain this model: {type(e).__name__}: {text}") from None


def mapping_path(mapping) -> str:
    """An existing path, else a shipped config/ file of that name (user_policy_sim, user_policy_sim.yaml)."""
    from pathlib import Path

    if Path(str(mapping)).exists():
        return str(mapping)
    from .resources import config_path

    try:
        return str(config_path(str(mapping)))
    except FileNotFoundError:
        return str(mapping)  # from_yaml names the missing file


def load_live(model: str, mapping: str, weights: str = "", model_kwargs="", device: str = "cpu",
              allow_untrained: bool = False, method: str = "dtd", check_explain: bool = True,
              robot: str = "", dt: float = 0.05, init_seed: int = 0) -> UserLive:
    """Load and check a user's model and mapping for driving a robot: UserPolicyError (one line) for a
    missing file, a model that does not load, a mapping that does not fit (listing the model's
    inputs), a device that is not there, or a factory model without weights unless allow_untrained.
    An untrained factory model is built after torch.manual_seed(init_seed): every process that loads
    it (the acting and the explaining node) gets the same network."""
    model = str(model or "").strip()
    if not model:
        raise UserPolicyError("no model: set the parameter 'model' to package.module:factory or a .pt2 file")
    if not str(mapping or "").strip():
        raise UserPolicyError("no mapping: set the parameter 'mapping' to a YAML observation mapping "
                              "(e.g. config/user_policy_sim.yaml)")
    dev = check_device(device)
    kwargs = parse_kwargs(model_kwargs)
    untrained = not is_program(model) and not str(weights or "")
    if untrained and not allow_untrained:
        raise UntrainedModelRefused(
            f"no trained weights for {model}: set the parameter 'weights' to a .safetensors or state_dict file; "
            "an untrained network would drive the robot at random (allow_untrained:=true permits that, for "
            "simulation and tests only)")
    if untrained:
        torch.manual_seed(int(init_seed))
    m = load_user_policy(model, weights=str(weights or "") or None, kwargs=kwargs)
    try:
        m = m.to(dev)
    except Exception as e:  # noqa: BLE001 - a program pinned to another device
        raise UserPolicyError(f"model {model}: cannot move to {dev} ({type(e).__name__}: {e})") from None
    mp = load_mapping(mapping_path(mapping), m)
    A = mp.check(m)
    rm = None
    if robot:
        from .robot.model import RobotModel

        try:
            rm = RobotModel.from_name(robot)
        except Exception as e:  # noqa: BLE001
            raise UserPolicyError(f"robot {robot!r}: {e}") from None
    live = UserLive(m, mp, dev, method, A, untrained, model, robot=rm, dt=dt)
    live.topic_plan()
    if check_explain:
        live.check_method(method)
    return live
