"""The weights shipped for each task: where they are, which spec they use, how they are saved. Both
are declared with the task (`policy_xai.robot.tasks`: `Task.weights`, `Task.spec`)."""
from __future__ import annotations


def save_trained(policy, path, **metadata):
    """save_policy (the spec, with its configuration-group order, travels in the file)."""
    from ..policy import save_policy

    return save_policy(policy, path, **metadata)


def default_spec(task: str) -> str:
    """The spec a new policy for the task gets (its `Task.spec`: `small` for Baxter, 7 joints, `reach2d`
    for the two-link arm). UnknownTaskError (a ValueError) for an unknown task."""
    from ..robot.tasks import get_task

    return get_task(task).spec


def model_path(task: str):
    """The shipped weights of a task: share/policy_xai/models/<its Task.weights> (the first install
    location that has it, see policy_xai.resources). FileNotFoundError when it ships none or the file is
    not installed; UnknownTaskError (a ValueError) for an unknown task."""
    from ..robot.tasks import shipped_weights

    try:
        return shipped_weights(task)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}; train them with `policy-xai train --task {task} --out FILE` and pass "
                                "--policy FILE") from None
