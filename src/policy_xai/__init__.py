"""policy_xai: explanations of deep visuomotor robot policies (core; never imports rclpy).

The package import is light (no torch): the names below load their modules on first use, so that
processes which don't need torch (the recorder, the player) start fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "PolicySpec": "spec", "SpecError": "spec", "load_spec": "spec",
    "VisuomotorPolicy": "policy", "PolicyLoadError": "policy", "ObservationError": "policy",
    "load_policy": "policy", "save_policy": "policy", "init_policy": "policy",
    "resolve_policy": "resolve", "policy_source": "resolve", "PolicySourceError": "resolve",
    "explain": "attribution", "Explanation": "attribution", "METHODS": "attribution",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'policy_xai' has no attribute {name!r}")


__all__ = sorted(_LAZY)
