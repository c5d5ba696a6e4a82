"""The shipped trained weights load and solve the task in MuJoCo; without the image they fail."""
import json

import numpy as np
import pytest
import torch

from policy_xai.policy import read_metadata
from policy_xai.robot.sim import Simulation
from policy_xai.policy import load_policy
from policy_xai.training import GROUPS, evaluate, model_path


@pytest.mark.parametrize("task", ["reach", "reach2d"])
def test_shipped_weights_load_with_spec(task):
    path = model_path(task)
    assert path.is_file() and path.stat().st_size < 2_000_000
    meta = read_metadata(path)
    assert meta["task"] == task and "spec" in meta and json.loads(meta["recipe"])["task"] == task
    policy = load_policy(path)
    assert policy.spec.group_names == GROUPS
    assert policy.spec.name == ("reach2d" if task == "reach2d" else "small")
    assert torch.all(policy.config_std != 1.0), "config normalisation was not set from training data"


def test_shipped_reach_policy_succeeds_and_needs_the_image():
    torch.set_num_threads(1)
    policy = load_policy(model_path("reach"))
    with Simulation("reach", image_size=64, control_rate=20.0, seed=0) as sim:
        res = evaluate(policy, sim, episodes=1, heldout=False)
        assert res["conditions_success"] == 1.0, res
        blank = evaluate(policy, sim, episodes=1, heldout=False, blank=True)
        assert blank["conditions_success"] <= 0.5, blank
        # without the image the arm goes to roughly the same place whatever the target is
        assert np.mean([v["final_distance"] for v in blank["conditions"].values()]) > 2 * sim.task.success_tolerance
