"""The core (everything under src/policy_xai/ but ros/ and commands/) imports without rclpy and without
policy_xai.ros: checked in a fresh interpreter where both cannot be imported."""
import json
import os
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "policy_xai"
NOT_CORE = ("ros", "commands")

_CHECK = r"""
import importlib, importlib.abc, json, sys

BLOCKED = ("rclpy", "policy_xai.ros")


class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"{name} is blocked: the core must not import it")
        return None


sys.meta_path.insert(0, Block())
failed = {}
for mod in json.loads(sys.argv[1]):
    try:
        importlib.import_module(mod)
    except Exception as e:  # noqa: BLE001 - reported below
        failed[mod] = f"{type(e).__name__}: {e}"
leaked = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
print(json.dumps({"failed": failed, "leaked": leaked}))
"""


def core_modules() -> list[str]:
    mods = []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG)
        if rel.parts[0] in NOT_CORE or "__pycache__" in rel.parts:
            continue
        parts = ["policy_xai", *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[-1] == "__main__":
            continue
        mods.append(".".join(parts))
    return mods


def test_core_modules_import_without_rclpy_and_the_ros_layer():
    mods = core_modules()
    assert "policy_xai.bags" in mods and "policy_xai.topics" in mods and "policy_xai.messages" in mods
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PKG.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _CHECK, json.dumps(mods)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["failed"] == {}, res["failed"]
    assert res["leaked"] == []


def _absolute(mod: str, node) -> list[str]:
    import ast

    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not node.level:
        return [node.module or ""]
    base = mod.split(".")[:-node.level]  # "policy_xai.x.__init__" too: level 1 is policy_xai.x
    prefix = ".".join(base + ([node.module] if node.module else []))
    return [prefix] if node.module else [f"{prefix}.{a.name}" for a in node.names]


def test_core_sources_never_import_rclpy_or_the_ros_layer_even_lazily():
    import ast

    bad = []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG)
        if rel.parts[0] in NOT_CORE:
            continue
        mod = ".".join(["policy_xai", *rel.with_suffix("").parts])  # x/__init__ -> x.__init__: level 1 = x
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _absolute(mod, node):
                    if name.split(".")[0] == "rclpy" or name == "policy_xai.ros" or name.startswith("policy_xai.ros."):
                        bad.append(f"{rel}:{node.lineno} imports {name}")
    assert not bad, bad


def test_bag_reading_and_declarations_stay_free_of_torch():
    """The player, the recorder's writer and the run summary import no torch (they start fast)."""
    mods = ["policy_xai.bags", "policy_xai.topics", "policy_xai.parameters", "policy_xai.ros.interfaces",
            "policy_xai.ros.player", "policy_xai.ros.bagtools"]
    code = f"import importlib, sys\nfor m in {mods!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PKG.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
