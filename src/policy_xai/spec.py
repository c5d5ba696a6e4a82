"""Architecture spec of a visuomotor policy: a small dict / YAML file, validated once."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import groups as _groups

#: configuration groups a policy may take, in their canonical order (declared in groups.py)
KNOWN_GROUPS = _groups.NAMES


class SpecError(ValueError):
    """A policy spec that cannot describe a network."""


@dataclass(frozen=True)
class ConvSpec:
    channels: int
    kernel: int
    stride: int = 1


#: trunk types a spec may name (`trunk: {type: ...}`); no trunk = the plain `conv` stack
TRUNK_TYPES = ("resnet",)
#: normalisation layers of a resnet trunk (graph/models.py:make_norm)
TRUNK_NORMS = ("batch", "group", "frozen")
TRUNK_FIELDS = ("type", "width", "stages", "blocks", "norm")


@dataclass(frozen=True)
class TrunkSpec:
    """A ResNet-family trunk (robomimic-like): 7x7/2 stem conv, norm, ReLU, 3x3/2 max-pool, then
    `stages` stages of BasicBlocks (`blocks[i]` in stage i, width * 2**i channels, stride 2 after
    the first), then a 1x1 conv to the spec's feature_points keypoint maps."""
    type: str = "resnet"
    width: int = 16
    stages: int = 2
    blocks: tuple[int, ...] = (2, 2)
    norm: str = "batch"

    def to_dict(self) -> dict:
        return {"type": self.type, "width": self.width, "stages": self.stages, "blocks": list(self.blocks),
                "norm": self.norm}

    @classmethod
    def from_dict(cls, d) -> "TrunkSpec":
        if not isinstance(d, Mapping):
            raise SpecError(f"trunk must be a mapping like {{type: resnet, width: 16, stages: 2, blocks: 2, "
                            f"norm: batch}}, got {type(d).__name__} {d!r}")
        unknown = sorted(set(map(str, d)) - set(TRUNK_FIELDS))
        if unknown:
            raise SpecError(f"trunk has unknown field(s) {', '.join(unknown)}; known: {', '.join(TRUNK_FIELDS)}")
        kind = d.get("type")
        if kind not in TRUNK_TYPES:
            raise SpecError(f"trunk.type must be one of {', '.join(TRUNK_TYPES)}, got {kind!r}")
        field_name = "trunk"
        try:
            field_name = "trunk.width"
            width = _int(d.get("width", 16))
            field_name = "trunk.stages"
            stages = _int(d.get("stages", 2))
            field_name = "trunk.blocks"
            b = d.get("blocks", 2)
            blocks = tuple(_int(x) for x in _list(b)) if not isinstance(b, (int, float, str)) else (_int(b),) * stages
        except (TypeError, ValueError, OverflowError) as e:
            raise SpecError(f"policy spec field {field_name!r} is malformed: {e}") from None
        norm = d.get("norm", "batch")
        if norm not in TRUNK_NORMS:
            raise SpecError(f"trunk.norm must be one of {', '.join(TRUNK_NORMS)}, got {norm!r}")
        return cls(str(kind), width, stages, blocks, str(norm))

    def validate(self) -> None:
        if self.width < 1:
            raise SpecError(f"trunk.width must be positive, got {self.width}")
        if not 1 <= self.stages <= 4:
            raise SpecError(f"trunk.stages must be 1 to 4 (ResNet-18 has 4), got {self.stages}")
        if len(self.blocks) != self.stages:
            raise SpecError(f"trunk.blocks lists {len(self.blocks)} stage(s) for {self.stages} stages")
        if any(n < 1 for n in self.blocks):
            raise SpecError(f"trunk.blocks must be positive, got {list(self.blocks)}")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Keypoint map size: the stem conv and the max-pool halve the image (rounding up), and so
        does every stage after the first (graph/models.py:ResNetTrunk.output_size)."""
        for _ in range(self.stages + 1):
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        return height, width


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
    #: None: the plain conv+ReLU stack of `conv`; a TrunkSpec: a ResNet-family trunk (`conv` empty)
    trunk: "TrunkSpec | None" = None
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
        if self.trunk is not None:
            return self.trunk.output_size(h, w)
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
            # only when set: a plain spec's dict (and the JSON in weights files) stays as it was
            **({"trunk": self.trunk.to_dict()} if self.trunk is not None else {}),
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PolicySpec":
        if not isinstance(d, Mapping):
            raise SpecError(f"a policy spec must be a mapping (JSON object / YAML mapping), got {type(d).__name__}")
        field_name = "?"

        def get(name, conv, *default):
            nonlocal field_name
            field_name = name
            if name not in d and not default:
                raise SpecError(f"policy spec is missing the field {name!r}")
            return conv(d.get(name, *default))

        try:
            img = get("image", _mapping)
            field_name = "image"
            image = (_int(img.get("channels", 3)), _int(img["height"]), _int(img["width"]))
            convs = []
            field_name = "trunk"
            trunk = TrunkSpec.from_dict(d["trunk"]) if d.get("trunk") is not None else None
            for i, c in enumerate(get("conv", _list, *(() if trunk is None else ([],)))):
                field_name = f"conv[{i}]"
                c = _mapping(c)
                layer = []
                for key, default in (("channels", None), ("kernel", None), ("stride", 1)):
                    field_name = f"conv[{i}].{key}"
                    layer.append(_int(c[key] if default is None else c.get(key, default)))
                convs.append(ConvSpec(*layer))
            conv = tuple(convs)
            groups = get("config_groups", lambda g: tuple(
                (str(k), _int(v)) for k, v in (g.items() if isinstance(g, Mapping) else _list(g))))
            spec = cls(
                name=str(d.get("name", "custom")),
                image_channels=image[0],
                image_height=image[1],
                image_width=image[2],
                conv=conv,
                feature_points=get("feature_points", _int,
                                   *((conv[-1].channels if conv else 0,) if trunk is None else ())),
                config_groups=groups,
                hidden=get("hidden", lambda h: tuple(_int(x) for x in _list(h))),
                joint_names=get("joint_names", lambda j: tuple(str(x) for x in _list(j))),
                torque_limits=get("torque_limits", lambda t: tuple(_float(x) for x in _list(t))),
                softmax_temperature=get("softmax_temperature", _float, 1.0),
                trunk=trunk,
                extra=get("extra", lambda e: dict(_mapping(e)), {}),
            )
        except SpecError:
            raise
        except (KeyError, TypeError, AttributeError, IndexError, ValueError, OverflowError) as e:
            raise SpecError(f"policy spec field {field_name!r} is missing a part or malformed: "
                            f"{type(e).__name__}: {e}") from e
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.trunk is not None:
            self.trunk.validate()
            if self.conv:
                raise SpecError("a spec takes either conv layers or a trunk, not both (remove 'conv' or 'trunk')")
            if self.feature_points < 1:
                raise SpecError(f"feature_points must be positive (the trunk's 1x1 conv gives one keypoint map "
                                f"each), got {self.feature_points}")
        else:
            self._validate_conv()
        self._validate_rest()

    def _validate_conv(self) -> None:
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

    def _validate_rest(self) -> None:
        for g, n in self.config_groups:
            if g not in KNOWN_GROUPS:
                raise SpecError(f"unknown configuration group {g!r}; known: {', '.join(KNOWN_GROUPS)}")
            if n < 1:
                raise SpecError(f"configuration group {g!r} needs a positive size")
        if len(set(self.group_names)) != len(self.group_names):
            raise SpecError("configuration groups must be unique")
        if not self.joint_names:
            raise SpecError("spec needs at least one joint")
        if any(h < 1 for h in self.hidden):
            raise SpecError(f"hidden layer sizes must be positive, got {list(self.hidden)}")
        if min(self.image_channels, self.image_height, self.image_width) < 1:
            raise SpecError("image channels, height and width must be positive")
        if len(self.torque_limits) != len(self.joint_names):
            raise SpecError(
                f"{len(self.torque_limits)} torque limits for {len(self.joint_names)} joints"
            )
        bad = [f"{j} has {t}" for j, t in zip(self.joint_names, self.torque_limits) if not (math.isfinite(t) and t > 0)]
        if bad:
            raise SpecError(f"torque_limits must be finite and positive (torque limits): {', '.join(bad)}")
        if not (math.isfinite(self.softmax_temperature) and self.softmax_temperature > 0):
            raise SpecError(f"softmax_temperature must be finite and positive, got {self.softmax_temperature}")


def _int(v) -> int:
    """An integer field: ints, integral floats and digit strings; not NaN/inf, bools or 3.5."""
    if isinstance(v, bool):
        raise ValueError(f"expected an integer, got {v!r}")
    if isinstance(v, float):
        if not math.isfinite(v) or v != int(v):
            raise ValueError(f"expected an integer, got {v!r}")
        return int(v)
    if isinstance(v, (int, str)):
        return int(v)
    raise TypeError(f"expected an integer, got {type(v).__name__} {v!r}")


def _float(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError(f"expected a number, got {type(v).__name__} {v!r}")
    return float(v)


def _list(v) -> list:
    if isinstance(v, (str, bytes, Mapping)) or not hasattr(v, "__iter__"):
        raise TypeError(f"expected a list, got {type(v).__name__} {v!r}")
    return list(v)


def _mapping(v) -> Mapping:
    if not isinstance(v, Mapping):
        raise TypeError(f"expected a mapping, got {type(v).__name__} {v!r}")
    return v


def load_spec(source: "str | Path | Mapping[str, Any] | PolicySpec") -> PolicySpec:
    """A spec from a PolicySpec, a dict, a YAML file path or a shipped name ('small', 'paper')."""
    if isinstance(source, PolicySpec):
        return source
    if isinstance(source, Mapping):
        return PolicySpec.from_dict(source)
    if not isinstance(source, (str, Path)):
        raise SpecError(f"a policy spec must be a mapping, a PolicySpec, a YAML file or a shipped name, "
                        f"got {type(source).__name__}")
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
