"""The node graphs, declared once: which nodes, parameter files, parameters and remappings.

Used by launch/*.launch.py (launch_ros.actions.Node per entry) and by runner.py (one Python process
per entry over real DDS), so what is tested here is what `ros2 launch` starts. No rclpy.

    graph("sim", params_file="config/sim.yaml", overrides={"policy_node": {"spec": "paper"}})
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from .interfaces import NODES

#: graph name -> (node names, default parameter file in config/)
GRAPHS: dict[str, tuple[tuple[str, ...], str]] = {
    "sim": (("sim_node", "policy_node", "attribution_node", "visualization_node"), "sim.yaml"),
    "robot": (("policy_node", "attribution_node", "visualization_node"), "baxter.yaml"),
    "replay": (("attribution_node", "visualization_node"), "sim.yaml"),
    "explain": (("policy_node", "attribution_node", "visualization_node"), "sim.yaml"),
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


def graph(name: str, params_file: Optional[str] = None,
          overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
          remappings: Sequence[tuple[str, str]] = (), nodes: Optional[Sequence[str]] = None) -> list[NodeLaunch]:
    """The nodes of graph `name`. params_file: a path or a file name in config/ (default: the
    graph's own); overrides: node name -> {parameter: value}; remappings apply to every node."""
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
    out = []
    for n in (nodes or names):
        info = NODES[n]
        out.append(NodeLaunch(n, info.module, info.executable, path, dict(overrides.get(n, {})), tuple(remappings)))
    return out
