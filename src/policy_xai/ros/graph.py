"""The node graphs, declared once: which nodes, parameter files, parameters and remappings.

Used by launch/*.launch.py (launch_ros.actions.Node per entry) and by runner.py (one Python process
per entry over real DDS), so what is tested here is what `ros2 launch` starts. No rclpy.

    graph("sim", params_file="config/sim.yaml", overrides={"policy_node": {"spec": "paper"}})
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ..topics import ROBOT, TOPIC, keys_with, remappings as topic_remappings
from .interfaces import NODES

#: graph name -> (node names, default parameter file in config/)
GRAPHS: dict[str, tuple[tuple[str, ...], str]] = {
    "sim": (("sim_node", "policy_node", "attribution_node", "visualization_node"), "sim.yaml"),
    "robot": (("policy_node", "attribution_node", "visualization_node"), "baxter.yaml"),
    "replay": (("attribution_node", "visualization_node"), "sim.yaml"),
    "explain": (("policy_node", "attribution_node", "visualization_node"), "sim.yaml"),
    # a user's model driving the sim: user_policy_node acts and explains (user_sim), or acts while
    # user_explainer_node explains in a process of its own (user_sim_split)
    "user_sim": (("sim_node", "user_policy_node", "visualization_node"), "sim.yaml"),
    "user_sim_split": (("sim_node", "user_policy_node", "user_explainer_node", "visualization_node"), "sim.yaml"),
    # a bag's camera images and joint states explained by a user's model that never commands
    # (user_explainer_node: act:=false), shown by the visualisation node (`policy-xai replay --model`)
    "user_replay": (("user_explainer_node", "visualization_node"), "sim.yaml"),
}


@dataclass(frozen=True)
class NodeLaunch:
    name: str  # node name (also the section of the parameter file)
    module: str  # python -m <module>
    executable: str  # console script / ros2 run executable
    params_file: Optional[str]  # path of the YAML parameter file, or None
    parameters: dict[str, Any] = field(default_factory=dict)  # overrides on top of the file
    remappings: tuple[tuple[str, str], ...] = ()

    def ros_args(self) -> list[str]:
        """The `--ros-args ...` a process of this node gets."""
        out = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.params_file:
            out += ["--params-file", str(self.params_file)]
        for k, v in self.parameters.items():
            out += ["-p", f"{k}:={format_parameter(v)}"]
        for a, b in self.remappings:
            out += ["-r", f"{a}:={b}"]
        return out


def format_parameter(v: Any) -> str:
    """A parameter value as `-p name:=value` text (YAML, as rcl parses it)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(format_parameter(x) for x in v) + "]"
    s = str(v)
    return "'" + s.replace("'", "''") + "'" if s == "" or any(c in s for c in ":#[]{},'\" ") else s


def sim_task(params_file: Optional[str], overrides: Mapping[str, Mapping[str, Any]]) -> str:
    """The sim_node task a sim graph runs: the override, else the parameter file's, else the default."""
    task = overrides.get("sim_node", {}).get("task")
    if task:
        return str(task)
    if params_file:
        import yaml

        try:
            doc = yaml.safe_load(open(params_file)) or {}
            task = ((doc.get("sim_node") or {}).get("ros__parameters") or {}).get("task")
        except (OSError, yaml.YAMLError, AttributeError):
            task = None
    return str(task or NODES["sim_node"].parameters["task"])


def with_shipped_policy(params_file: Optional[str], overrides: Mapping[str, Mapping[str, Any]]) -> dict:
    """Overrides for a sim graph: unless the policy's spec or weights were chosen (in the overrides or
    the parameter file), the policy and attribution nodes load the shipped trained policy of the
    task (its `Task.weights` in share/policy_xai/models/, the spec from the file) and the task's robot.
    An explicit spec without weights still means untrained weights of that spec."""
    out = {k: dict(v) for k, v in overrides.items()}
    pol = out.get("policy_node", {})
    if "weights" in pol or "spec" in pol or _file_sets(params_file, "policy_node", ("weights", "spec")):
        return out
    task = sim_task(params_file, out)
    from ..robot.tasks import get_task, shipped_weights

    try:
        weights = shipped_weights(task)
    except (FileNotFoundError, ValueError):
        return out  # no shipped policy: the parameter file's (untrained) setting stands
    robot = get_task(task).robot
    for n in ("policy_node", "attribution_node"):
        d = out.setdefault(n, {})
        d.setdefault("weights", str(weights))
        d.setdefault("spec", "")
        d.setdefault("robot", robot)
    out.setdefault("visualization_node", {}).setdefault("robot", robot)
    return out


def user_sim_overrides(model: str, mapping: str = "user_policy_sim", model_kwargs: str = "", weights: str = "",
                       method: str = "", allow_untrained: bool = False, device: str = "",
                       image_size: Optional[Sequence[int]] = None, split: bool = False) -> dict:
    """Overrides of graphs "user_sim" (user_policy_node acts and explains) and "user_sim_split"
    (split=True: user_policy_node acts with explain:=false, user_explainer_node explains): the
    model, mapping and options, and the sim camera at the size of the mapping's first camera
    (image_size: (height, width) to choose another; the nodes then need resize:=true). No torch:
    the mapping is only read for that size."""
    node = {"model": str(model), "mapping": str(mapping)}
    for k, v in (("model_kwargs", model_kwargs), ("weights", weights), ("method", method), ("device", device)):
        if v:
            node[k] = str(v)
    explainer = dict(node)
    if allow_untrained:
        node["allow_untrained"] = True
    size = tuple(image_size) if image_size else first_camera_size(mapping)
    out = {"user_policy_node": {**node, "explain": False}, "user_explainer_node": explainer} if split \
        else {"user_policy_node": node}
    if size:
        out["sim_node"] = {"image_height": int(size[0]), "image_width": int(size[1])}
    return out


def topic_arguments() -> dict[str, tuple[str, str]]:
    """The launch files' remapping arguments: `<key>_topic` -> (topic key, default name), one per
    topic with the ROBOT role (policy_xai.topics: what the arm's drivers publish or take)."""
    return {f"{k}_topic": (k, TOPIC[k].name) for k in keys_with(ROBOT)}


def first_camera_size(mapping: str) -> Optional[tuple]:
    """(height, width) of the first image observation of a mapping file, None if there is none or
    the file cannot be read (the node reports that at start-up)."""
    import yaml

    from ..resources import config_path

    try:
        doc = yaml.safe_load(open(config_path(str(mapping)))) or {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    obs = doc.get("observations") if isinstance(doc.get("observations"), dict) else doc
    for name, spec in obs.items():
        if name != "actions" and isinstance(spec, dict) and (spec.get("kind") == "image" or "height" in spec):
            h, w = spec.get("height"), spec.get("width")
            if isinstance(h, int) and isinstance(w, int):
                return h, w
    return None


def _file_sets(params_file: Optional[str], node: str, keys: Sequence[str]) -> bool:
    """True if the parameter file gives `node` a non-empty value for any of `keys`."""
    if not params_file:
        return False
    import yaml

    try:
        doc = yaml.safe_load(open(params_file)) or {}
        prm = (doc.get(node) or {}).get("ros__parameters") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return False
    return any(prm.get(k) not in (None, "") for k in keys)


def graph(name: str, params_file: Optional[str] = None,
          overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
          remappings: Sequence[tuple[str, str]] = (), nodes: Optional[Sequence[str]] = None,
          topics: Optional[Mapping[str, str]] = None) -> list[NodeLaunch]:
    """The nodes of graph `name`. params_file: a path or a file name in config/ (default: the
    graph's own); overrides: node name -> {parameter: value}; topics: topic key -> name for the
    declared topics to rename (policy_xai.topics.remappings; the launch files' `<key>_topic`
    arguments); remappings: more (from, to) names. Both apply to every node."""
    remappings = tuple(topic_remappings(topics or {})) + tuple(remappings)
    if name not in GRAPHS:
        raise ValueError(f"unknown graph {name!r}; graphs: {', '.join(GRAPHS)}")
    names, default_file = GRAPHS[name]
    path = None
    if params_file != "":
        from ..resources import config_path

        path = str(config_path(params_file or default_file))
    overrides = overrides or {}
    unknown = set(overrides) - set(NODES)
    if unknown:
        raise ValueError(f"overrides for unknown nodes {sorted(unknown)}")
    if name == "sim":
        overrides = with_shipped_policy(path, overrides)
    out = []
    for n in (nodes or names):
        info = NODES[n]
        out.append(NodeLaunch(n, info.module, info.executable, path, dict(overrides.get(n, {})), tuple(remappings)))
    return out
