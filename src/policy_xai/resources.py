"""Where the package's shared files (config/, urdf/, launch/, models/) are on this install.

Order: $POLICY_XAI_SHARE, the ament index (colcon install), <prefix>/share/policy_xai (pip
install), then the source tree (editable install / checkout).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "policy_xai"


def _candidates():
    env = os.environ.get("POLICY_XAI_SHARE")
    if env:
        yield Path(env)
    try:  # a colcon-built workspace
        from ament_index_python.packages import get_package_share_directory

        yield Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - not a ROS install, or package not indexed
        pass
    yield Path(sys.prefix) / "share" / PACKAGE
    yield Path(__file__).resolve().parents[2]  # checkout: src/policy_xai/ -> repo root


def share_dir() -> Path:
    for c in _candidates():
        if (c / "config" / "small.yaml").is_file():
            return c
    raise FileNotFoundError(
        "policy_xai's shared files (config/small.yaml) were not found; set POLICY_XAI_SHARE to the "
        "folder that holds config/ and urdf/"
    )


def share_path(*parts: str) -> Path:
    return share_dir().joinpath(*parts)


def find_shared(*parts: str) -> "Path | None":
    """The first install location (same order as share_dir) that holds this file, or None: an older
    share/ folder may lack a file a newer checkout has (trained weights added later)."""
    for c in _candidates():
        if c.joinpath(*parts).is_file():
            return c.joinpath(*parts)
    return None


def config_path(name_or_path: str) -> Path:
    """A spec or parameter file: an existing path, or a name in the shipped config/ folder."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (share_path("config", name_or_path), share_path("config", name_or_path + ".yaml")):
        if cand.is_file():
            return cand
    shipped = sorted(x.stem for x in share_path("config").glob("*.yaml"))
    raise FileNotFoundError(f"no such file or shipped config: {name_or_path!r} (shipped: {', '.join(shipped)})")
