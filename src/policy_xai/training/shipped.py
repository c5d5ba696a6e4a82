"""The weights shipped for each task: where they are, which spec they use, how they are saved."""
from __future__ import annotations


def save_trained(policy, path, **metadata):
    """save_policy (the spec, with its configuration-group order, travels in the file)."""
    from ..policy import save_policy

    return save_policy(policy, path, **metadata)


def default_spec(task: str) -> str:
    """The spec shipped for a task: `small` (Baxter, 7 joints) or `reach2d` (two-link arm)."""
    return "reach2d" if task == "reach2d" else "small"


def model_path(task: str):
    """The shipped weights of a task: share/policy_xai/models/<task>.safetensors (the first install
    location that has it, see policy_xai.resources)."""
    from ..resources import find_shared, share_path

    name = f"{task}.safetensors"
    found = find_shared("models", name)
    if found is not None:
        return found
    path = share_path("models", name)
    raise FileNotFoundError(f"no shipped weights for task {task!r} ({path}); train them with "
                            f"`policy-xai train --task {task} --out {path}` or pass --policy FILE")
