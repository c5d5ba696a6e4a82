"""Architecture spec of a visuomotor policy: a small dict / YAML file, validated once."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

#: configuration groups a policy may take, in their canonical order
KNOWN_GROUPS = ("joint_position", "joint_velocity", "ee_position", "ee_velocity")


class SpecError(ValueError):
    """A policy spec that cannot describe a network."""


@dataclass(frozen=True)
class ConvSpec:
    channels: int
    kernel: int
    stride: int = 1


@dataclass(frozen=True)
class PolicySpec:
    name: str
    image_channels: int
    image_height: int
    image_width: int
    conv: tuple[ConvSpec, ...]
    feature_points: int
    config_groups: tuple[tuple[str, int], ...]
    hidden: tuple[int, ...]
    joint_names: tuple[str, ...]
    torque_limits: tuple[float, ...]
    softmax_temperature: float = 1.0
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    # ---- derived ---------------------------------------------------------------------------
    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def config_dim(self) -> int:
        return sum(n for _, n in self.config_groups)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g for g, _ in self.config_groups)

    def group_slices(self) -> dict[str, slice]:
        out, i = {}, 0
        for g, n in self.config_groups:
            out[g] = slice(i, i + n)
            i += n
        return out

    def conv_output_size(self) -> tuple[int, int]:
        h, w = self.image_height, self.image_width
        for c in self.conv:
            h = (h - c.kernel) // c.stride + 1
            w = (w - c.kernel) // c.stride + 1
        return h, w

    # ---- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "image": {"channels": self.image_channels, "height": self.image_height, "width": self.image_width},
            "conv": [asdict(c) for c in self.conv],
            "feature_points": self.feature_points,
            "softmax_temperature": self.softmax_temperature,
            # a list of [group, size] pairs: the order IS the layout of the configuration vector, and
            # JSON/YAML writers that sort mapping keys must not change it
            "config_groups": [[g, n] for g, n in self.config_groups],
            "hidden": list(self.hidden),
            "joint_names": list(self.joint_names),
            "torque_limits": list(self.torque_limits),
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PolicySpec":
        try:
            img = d["image"]
            conv = tuple(ConvSpec(int(c["channels"]), int(c["kernel"]), int(c.get("stride", 1))) for c in d["conv"])
            groups = d["config_groups"]
            groups = tuple((str(k), int(v)) for k, v in (groups.items() if isinstance(groups, Mapping) else groups))
            spec = cls(
                name=str(d.get("name", "custom")),
                image_channels=int(img.get("channels", 3)),
                image_height=int(img["height"]),
                image_width=int(img["width"]),
                conv=conv,
                feature_points=int(d.get("feature_points", conv[-1].channels if conv else 0)),
                config_groups=groups,
                hidden=tuple(int(h) for h in d["hidden"]),
                joint_names=tuple(str(j) for j in d["joint_names"]),
                torque_limits=tuple(float(t) for t in d["torque_limits"]),
                softmax_temperature=float(d.get("softmax_temperature", 1.0)),
                extra=dict(d.get("extra", {})),
            )
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            raise SpecError(f"policy spec is missing or has a malformed field: {e!r}") from e
        spec.validate()
        return spec

    def validate(self) -> None:
        if not self.conv:
            raise SpecError("spec needs at least one conv layer")
        for c in self.conv:
            if c.channels < 1 or c.kernel < 1 or c.stride < 1:
                raise SpecError(f"bad conv layer {c}")
        if self.feature_points != self.conv[-1].channels:
            raise SpecError(
                f"feature_points ({self.feature_points}) must equal the channels of the last conv layer "
                f"({self.conv[-1].channels}): each channel's spatial softmax gives one (x, y) point"
            )
        h, w = self.conv_output_size()
        if h < 1 or w < 1:
            raise SpecError(f"image {self.image_height}x{self.image_width} is too small for the conv stack")
        for g, n in self.config_groups:
            if g not in KNOWN_GROUPS:
                raise SpecError(f"unknown configuration group {g!r}; known: {', '.join(KNOWN_GROUPS)}")
            if n < 1:
                raise SpecError(f"configuration group {g!r} needs a positive size")
        if len(set(self.group_names)) != len(self.group_names):
            raise SpecError("configuration groups must be unique")
        if not self.joint_names:
            raise SpecError("spec needs at least one joint")
        if len(self.torque_limits) != len(self.joint_names):
            raise SpecError(
                f"{len(self.torque_limits)} torque limits for {len(self.joint_names)} joints"
            )
        if any(t <= 0 for t in self.torque_limits):
            raise SpecError("torque limits must be positive")
        if self.softmax_temperature <= 0:
            raise SpecError("softmax_temperature must be positive")


def load_spec(source: "str | Path | Mapping[str, Any] | PolicySpec") -> PolicySpec:
    """A spec from a PolicySpec, a dict, a YAML file path or a shipped name ('small', 'paper')."""
    if isinstance(source, PolicySpec):
        return source
    if isinstance(source, Mapping):
        return PolicySpec.from_dict(source)
    from .resources import config_path

    path = config_path(str(source))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, Mapping):
        raise SpecError(f"{path}: a policy spec must be a mapping")
    if "policy" in data and isinstance(data["policy"], Mapping):  # a spec nested in a parameter file
        data = data["policy"]
    return PolicySpec.from_dict(data)
