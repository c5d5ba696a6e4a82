"""Training on real MuJoCo: a tiny behaviour-cloning run on expert data reduces the loss."""
import numpy as np
import pytest
import torch

from policy_xai.policy import init_policy
from policy_xai.robot.sim import Simulation
from policy_xai.training import (GROUPS, FeedbackExpert, check_spec_fits, collect, fit, heldout_targets,
                                 run_episode, set_config_normalisation)


@pytest.fixture(scope="module")
def sim():
    s = Simulation("reach2d", image_size=64, control_rate=20.0, seed=0)
    yield s
    s.close()


def test_feedback_expert_solves_conditions_and_heldout(sim):
    ex = FeedbackExpert(sim)
    ctrl = lambda obs, img, tgt, k: ex.act(obs.joint_position, obs.joint_velocity, tgt)  # noqa: E731
    for c in range(len(sim.task.conditions)):
        assert run_episode(sim, ctrl, c, record=False).success
    held = heldout_targets(sim.task, ex)
    assert held, "no reachable held-out target"
    assert run_episode(sim, ctrl, 0, target=held[0][1], record=False).success


def test_tiny_training_run_reduces_loss(sim):
    torch.set_num_threads(1)
    data = collect(sim, episodes=2, seed=3)
    n = 2 * sim.task.horizon
    assert data["images"].shape == (n, 64, 64, 3) and data["images"].dtype == np.uint8
    assert data["configs"].shape == (n, 10) and data["labels"].shape == (n, 2)
    # the target is only in the image: the configuration is q, v, ee position, ee velocity
    assert np.allclose(data["configs"][:, 4:7], np.stack([sim.model.ee_position(q) for q in data["configs"][:, :2]]),
                       atol=1e-4)
    policy = init_policy("reach2d", seed=0)
    check_spec_fits(policy.spec, sim)
    set_config_normalisation(policy, data["configs"])
    assert torch.all(policy.config_std > 0)
    log = fit(policy, data, epochs=6, batch=32, lr=2e-3, seed=0)
    first, last = log.losses[0], log.losses[-1]
    assert last[1] < 0.7 * first[1], log.losses      # torque loss
    assert last[2] < first[2], log.losses            # auxiliary target-regression loss
    assert not policy.training
    # the normalisation is part of the saved state
    assert set(GROUPS) == set(policy.spec.group_names)
