"""Small file helpers shared by the model files (explainers, state models) and the fleet's content
hash: a file's sha256, and reading a safetensors file with its metadata."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_safetensors(path, error: type = ValueError, what: str = "file") -> tuple[dict, dict]:
    """(metadata, tensors) of a safetensors file; `error(one line)` when it is missing or unreadable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        return meta, load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises several kinds on corrupt files
        raise error(f"{path}: not a readable safetensors file ({e})") from e


def network_from_file(path, meta: dict, state: dict, cls, error: type = ValueError):
    """(network, arch): cls(**arch) with arch the JSON in meta["arch"], loaded with `state`; error(one
    line naming the file and the architecture) when the tensors do not fit it."""
    import json

    arch = json.loads(meta["arch"])
    net = cls(**arch)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise error(f"{path}: tensors do not match the architecture {arch}: {str(e).splitlines()[0]}") from e
    return net, arch
