"""One observation of the YAML mapping (Source): its kinds, the spec parser, and reading a vector
out of a JointState-like dict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .errors import UserPolicyError, _short

IMAGE_KINDS = ("image",)
VECTOR_KINDS = ("vector",)
OBSERVATION_KINDS = IMAGE_KINDS + VECTOR_KINDS
ACTION_KINDS = ("torques", "other")


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
