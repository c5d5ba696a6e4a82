"""Every node parameter of the live pipeline (default, meaning, type, constraints), declared once (core: no rclpy).

policy_xai.ros.interfaces re-exports these; the nodes declare them from here, the offline readers
(policy_xai.bags) take their defaults from here.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Param:
    """One node parameter: default, meaning, type, allowed values / range, and whether it may change
    while the node runs (`ros2 param set`); the others are read-only after start-up.

    kind: bool | int | float | str | float_list | str_list (default: from the default's type);
    choices: allowed values, or "module:NAME" naming a sequence imported when first needed (so this
    module stays free of torch); lo / hi: inclusive bounds (float_list: per element); check:
    "module:FUNCTION" imported when first needed, called with the typed value: returns the value to
    use or raises ValueError saying why not (e.g. the device check)."""

    default: Any
    description: str = ""
    choices: "tuple | str" = ()
    lo: Optional[float] = None
    hi: Optional[float] = None
    runtime: bool = False
    kind: str = ""
    check: str = ""

    @property
    def type(self) -> str:
        if self.kind:
            return self.kind
        d = self.default
        if isinstance(d, bool):
            return "bool"
        if isinstance(d, int):
            return "int"
        if isinstance(d, float):
            return "float"
        if isinstance(d, (list, tuple)):
            return "str_list"
        return "str"

    def allowed(self) -> tuple:
        if isinstance(self.choices, str):
            mod, name = self.choices.split(":")
            return tuple(getattr(importlib.import_module(mod), name))
        return tuple(self.choices)

    def constraints(self) -> str:
        """Human-readable constraints (ParameterDescriptor.additional_constraints, docs)."""
        parts = []
        if self.choices:
            try:
                parts.append("one of: " + ", ".join(map(str, self.allowed())))
            except Exception:  # noqa: BLE001 - only a description
                parts.append(f"one of {self.choices}")
        if self.lo is not None and self.hi is not None:
            parts.append(f"in [{self.lo:g}, {self.hi:g}]")
        elif self.lo is not None:
            parts.append(f">= {self.lo:g}")
        elif self.hi is not None:
            parts.append(f"<= {self.hi:g}")
        if self.type == "float_list":
            parts.append("a list of numbers, or '' for none")
        parts.append("changeable at run time" if self.runtime else "read-only after start-up")
        return "; ".join(parts)

    def validate(self, name: str, value: Any) -> Any:
        """The value, normalised to the parameter's type; ValueError naming the parameter and what is
        wrong otherwise (a one-line message for `ros2 param set` and start-up errors)."""
        kind = self.type

        def bad(what: str):
            return ValueError(f"parameter {name!r} = {value!r}: {what}")

        def number(x, integer: bool):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise bad(f"expected {'an integer' if integer else 'a number'}")
            if integer and float(x) != int(x):
                raise bad("expected an integer")
            x = int(x) if integer else float(x)
            if not math.isfinite(x):
                raise bad("expected a finite number")
            if self.lo is not None and x < self.lo:
                raise bad(f"must be >= {self.lo:g}")
            if self.hi is not None and x > self.hi:
                raise bad(f"must be <= {self.hi:g}")
            return x

        if kind == "bool":
            if not isinstance(value, bool):
                raise bad("expected true or false")
            out = value
        elif kind in ("int", "float"):
            out = number(value, kind == "int")
        elif kind == "str":
            if not isinstance(value, str):
                raise bad("expected a string")
            out = value
        elif kind == "float_list":
            if isinstance(value, str) and value == "":
                return ""
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise bad("expected a list of numbers (or '' for none)")
            out = [number(x, False) for x in value]
            if not out:
                return ""
        elif kind == "str_list":
            if isinstance(value, str) or not all(isinstance(x, str) for x in value):
                raise bad("expected a list of strings")
            out = list(value)
        else:  # pragma: no cover - declaration error
            raise ValueError(f"parameter {name!r}: unknown kind {kind!r}")
        if self.choices and kind == "str":
            allowed = self.allowed()
            if out not in allowed:
                raise bad(f"choose from {', '.join(map(str, allowed))}")
        if self.check:
            mod, fn = self.check.split(":")
            try:
                out = getattr(importlib.import_module(mod), fn)(out)
            except ValueError as e:
                raise bad(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        return out


@dataclass(frozen=True)
class NodeInfo:
    name: str
    module: str  # python -m <module> (also policy_xai.ros.entry <name>)
    executable: str  # console script
    params: dict[str, Param] = field(default_factory=dict)
    description: str = ""

    @property
    def parameters(self) -> dict[str, Any]:
        """Parameter name -> default (the node's own and the common ones)."""
        return {k: p.default for k, p in self.params.items()}

    @property
    def all_params(self) -> dict[str, Param]:
        return {**self.params, **COMMON_PARAMETERS}


_METHODS = "policy_xai.attribution.engine:METHODS"
_PRECISIONS = "policy_xai.attribution.engine:PRECISIONS"
_TASKS = "policy_xai.robot.tasks:TASKS"
P = Param  # short, for the table below

#: the torch device of every node that runs a network (policy_xai.device.parse_device checks it)
_DEVICE = Param("cpu", "torch device the network runs on: cpu, cuda, cuda:N or mps; one that torch cannot use "
                       "here stops the node at start-up with one line saying why",
                check="policy_xai.device:check_device_text")

_ACT = ("publish the actions (kind: torques also as the effort commands); false: only explain the decisions "
        "a user_policy_node with the same model, weights and mapping takes (it gets the same messages)")
#: the parameters of user_policy_node and user_explainer_node (the same node; act differs)
_USER_PARAMS: dict = {
    "act": P(True, _ACT),
    "model": P("", "a user's policy: package.module:factory (with weights) or a torch.export program (.pt2)"),
    "model_kwargs": P("", "keyword arguments of the factory, a JSON object ('' = none)"),
    "weights": P("", "weights of a factory model: .safetensors or a torch state_dict (read with "
                     "weights_only=True); required unless allow_untrained is true"),
    "allow_untrained": P(False, "run a factory model without weights (random actions: simulation and tests "
                                "only; never on a real robot)"),
    "init_seed": P(0, "torch seed the untrained factory model is built with (the same network in every process)",
                   lo=0),
    "mapping": P("", "YAML observation mapping: observation names -> topics and fields, the actions "
                     "(a path, or a shipped config/ name such as user_policy_sim)"),
    "method": P("dtd", "attribution method of the graph engine (checked on the model before it applies)",
                choices="policy_xai.attribution.graph:METHODS", runtime=True),
    "explain": P(True, "explain each decision (in a worker thread that drops to the newest when behind)",
                 runtime=True),
    "importance": P("mapping", "explanation output weights: mapping (actions.alpha, else 1) | dynamics "
                               "(joint torques: the robot model's importance factors)",
                    choices=("mapping", "dynamics")),
    "robot": P("baxter_right_arm", "urdf/<robot>.urdf for importance:=dynamics"),
    "dt": P(0.05, "control period for the importance factors (s)", lo=1e-4, hi=10.0, runtime=True),
    "device": _DEVICE,
    "torque_limits": P("", "N·m per action, to clip joint torques ('' = no clipping)", lo=0.0,
                       kind="float_list", runtime=True),
    "resize": P(False, "resize images of another size to the mapping's (else: error)", runtime=True),
    "sync_tolerance": P(0.02, "s between the stamps of the mapped topics", lo=0.0, hi=1.0, runtime=True),
    "stale_timeout": P(0.5, "s without a fresh observation -> zero torque (kind: torques)", lo=0.01, hi=60.0,
                       runtime=True),
    "time_jump": P(1.0, "s: a stamp this far behind the last one used (or ahead) restarts the pairing",
                   lo=0.001, runtime=True),
    "threads": P(1, "torch intra-op threads", lo=1, hi=256),
}

#: node parameters: defaults, types, constraints (config/*.yaml override them; every one also -p)
NODES: dict[str, NodeInfo] = {
    "sim_node": NodeInfo("sim_node", "policy_xai.ros.sim_node", "sim_node", {
        "task": P("reach", "policy_xai.robot task", choices=_TASKS),
        "rate": P(20.0, "control rate (Hz): one observation and one torque hold per period", lo=0.1, hi=1000.0),
        "image_width": P(64, "camera width (px)", lo=8, hi=4096),
        "image_height": P(64, "camera height (px)", lo=8, hi=4096),
        "condition": P(-1, "task condition index; -1 = cycle through them episode by episode (applies at the next "
                           "episode)", lo=-1, runtime=True),
        "seed": P(0, "random seed (targets)", lo=0),
        "episode_steps": P(0, "control steps per episode; 0 = the task's horizon, -1 = one endless episode", lo=-1),
        "publish_clock": P(False, "publish /clock and stamp with simulated time (use_sim_time elsewhere)"),
        "command_timeout": P(0.5, "s without a valid command -> zero torque", lo=0.001, hi=60.0, runtime=True),
        "frame_id": P("base", "frame of /joint_states and /sim/target"),
        "camera_frame_id": P("camera", "frame of the camera image"),
    }, "MuJoCo arm: joint states and camera images at the control rate, applies torque commands"),
    "policy_node": NodeInfo("policy_node", "policy_xai.ros.policy_node", "policy_node", {
        "spec": P("small", "shipped spec name or YAML path (used when weights is empty, or to check it)"),
        "weights": P("", "trained weights (.safetensors); required unless allow_untrained is true"),
        "allow_untrained": P(False, "with weights empty, drive the arm with untrained weights from init_seed "
                                    "(simulation and tests only; never on a real arm)"),
        "init_seed": P(0, "seed of the untrained weights", lo=0),
        "robot": P("baxter_right_arm", "urdf/<robot>.urdf: end-effector kinematics for ee_* groups"),
        "torque_limits": P("", "N·m per joint, to clip tighter than the spec's limits ('' = the spec's)", lo=0.0,
                           kind="float_list", runtime=True),
        "resize": P(False, "resize images of another size to the policy input (else: error)", runtime=True),
        "sync_tolerance": P(0.02, "s between image and joint state stamps", lo=0.0, hi=1.0, runtime=True),
        "stale_timeout": P(0.5, "s without a fresh observation -> stale_action", lo=0.01, hi=60.0, runtime=True),
        "stale_action": P("zero", "what to command on stale input", choices=("zero", "hold"), runtime=True),
        "time_jump": P(1.0, "s: an observation stamp this far behind the last one used (or this far ahead) is a "
                            "time jump: the pairing restarts and the jump is counted", lo=0.001, runtime=True),
        "threads": P(1, "torch intra-op threads", lo=1, hi=256),
        "device": _DEVICE,
    }, "runs the policy on the newest paired observation, publishes torques and what it decided on"),
    "attribution_node": NodeInfo("attribution_node", "policy_xai.ros.attribution_node", "attribution_node", {
        "spec": P("small", "as policy_node"),
        "weights": P("", "as policy_node (the same file; mismatches are reported on /diagnostics)"),
        "init_seed": P(0, "as policy_node", lo=0),
        "robot": P("baxter_right_arm", "urdf/<robot>.urdf for the importance factors"),
        "method": P("occlusion_net", "attribution method (default: the one measured best in docs/faithfulness.md; "
                    "it needs <weights>.explainer.safetensors, else ig_occlusion is used; dtd/rap/gbp are the "
                    "paper's)", choices=_METHODS, runtime=True),
        "precision": P("float32", "rule convolutions: float32 | bfloat16 (several times faster with AMX)",
                       choices=_PRECISIONS, runtime=True),
        "importance": P("dynamics", "dynamics (robot model alphas) | uniform", choices=("dynamics", "uniform")),
        "dt": P(0.05, "control period for the importance factors (s)", lo=1e-4, hi=10.0, runtime=True),
        "reproduce_tolerance": P(1e-3, "N·m; recomputed torques that differ more are reported on /diagnostics",
                                 lo=0.0, runtime=True),
        "time_jump": P(1.0, "s: a decision stamp this far behind the last one (or ahead) restarts the pairing",
                       lo=0.001, runtime=True),
        "threads": P(1, "torch intra-op threads", lo=1, hi=256),
        "device": _DEVICE,
    }, "explains each decision of the policy node; drops to the newest when behind"),
    "user_policy_node": NodeInfo("user_policy_node", "policy_xai.ros.user_policy_node", "user_policy_node",
                                 _USER_PARAMS, "a user's PyTorch policy from a YAML mapping: acts on the mapped "
                                               "topics (and explains each decision unless explain:=false)"),
    "user_explainer_node": NodeInfo("user_explainer_node", "policy_xai.ros.user_explainer_node",
                                    "user_explainer_node", {**_USER_PARAMS, "act": P(False, _ACT)},
                                    "user_policy_node with act:=false: explains the decisions of a user_policy_node "
                                    "(explain:=false) in a process of its own; never commands"),
    "visualization_node": NodeInfo("visualization_node", "policy_xai.ros.visualization_node",
                                   "visualization_node", {
        "robot": P("baxter_right_arm", "joint marker positions ('' = a row of spheres)"),
        "normalize": P("frame", "heatmap colour scale: per frame, or fixed (fixed_scale)", choices=("frame", "fixed"),
                       runtime=True),
        "fixed_scale": P(0.0, "|relevance| mapped to full colour when normalize=fixed (> 0 then)", lo=0.0,
                         runtime=True),
        "heatmap_scale": P(0, "upscale factor of the overlay image; 0 = auto (about 256 px wide)", lo=0, hi=32,
                           runtime=True),
        "opacity": P(0.5, "heatmap opacity over the camera image", lo=0.0, hi=1.0, runtime=True),
        "plot_rate": P(2.0, "Hz of the ratio plot image", lo=0.01, hi=100.0),
        "plot_window": P(20.0, "s of history in the plot", lo=0.1),
        "frame_id": P("base", "frame of the markers", runtime=True),
        "marker_scale": P(0.12, "m: sphere diameter for the most relevant joint", lo=0.0, runtime=True),
        "time_jump": P(1.0, "s: a stamp this far behind the last one (or ahead) restarts the pairing", lo=0.001,
                       runtime=True),
    }, "heatmap overlay, joint markers and the rolling ratio plot"),
    "recorder": NodeInfo("recorder", "policy_xai.ros.recorder", "policy_xai_recorder", {
        "output": P("", "bag directory (must not exist)"),
        "topics": P([""], "topics to record; [''] = every topic", kind="str_list"),
        "discovery_period": P(0.5, "s between looks for new topics", lo=0.01),
        "compression": P("zstd", "MCAP chunk compression", choices=("zstd", "lz4", "none")),
    }, "records raw received bytes of topics into a rosbag2 MCAP"),
}

#: parameters every node has
COMMON_PARAMETERS: dict[str, Param] = {"diagnostics_period": P(1.0, "s between /diagnostics", lo=0.01, hi=3600.0)}


def validate_parameter(node: str, name: str, value: Any) -> Any:
    """Normalised value of parameter `name` of `node`; ValueError (one line) when it is not allowed."""
    params = NODES[node].all_params
    if name not in params:
        raise ValueError(f"{node} has no parameter {name!r}")
    return params[name].validate(name, value)


def parameter_table_markdown() -> str:
    rows = ["| Node | Parameter | Default | Constraints | Meaning |", "|---|---|---|---|---|"]
    for n in NODES.values():
        for k, p in n.all_params.items():
            cells = [p.constraints().replace("|", "\\|"), p.description.replace("|", "\\|")]
            rows.append(f"| {n.name} | `{k}` | `{p.default!r}` | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)
