"""Scripted experts solve every task from every condition (physics only, no rendering)."""
import numpy as np
import pytest

from policy_xai.robot import Simulation, between_targets, run_expert


@pytest.mark.parametrize("task", ["reach2d", "reach"])
def test_reach_experts_succeed_from_every_condition(task):
    with Simulation(task, render=False) as sim:
        for c in range(len(sim.conditions)):
            r = run_expert(sim, c)
            assert r["success"], f"{task} condition {c}: final distance {r['final_distance']:.3f} m"
            assert r["final_distance"] < 0.01
            assert r["clipped_steps"] == 0


@pytest.mark.parametrize("task", ["reach2d", "reach"])
def test_target_change_mid_episode(task):
    """The paper's Fig. 6: the target moves between the training targets; the expert follows it."""
    with Simulation(task, render=False) as sim:
        for c, (i, j) in enumerate([(0, 3), (1, 2)]):
            new = between_targets(sim.task, i, j)
            r = run_expert(sim, c, target_change=(sim.task.horizon // 3, new))
            np.testing.assert_allclose(sim.target_position, new)
            assert r["success"] and r["final_distance"] < 0.01


@pytest.mark.parametrize("task", ["peg", "door"])
def test_peg_and_door_experts(task):
    with Simulation(task, render=False) as sim:
        for c in range(len(sim.conditions)):
            r = run_expert(sim, c)
            assert r["success"], f"{task} condition {c}: {r['measure']}"
        if task == "door":
            assert r["measure"]["door_angle"] > 0.5
        else:
            assert r["measure"]["depth"] > 0.05 and r["measure"]["lateral_error"] < 0.005


def test_expert_demonstrations_record_observations_and_torques():
    with Simulation("reach2d", image_size=64) as sim:
        r = run_expert(sim, 0, steps=10, record=True)
        assert len(r["trajectory"]) == 10
        obs, tau = r["trajectory"][3]
        assert obs.image.shape == (64, 64, 3) and tau.shape == (2,)
        assert np.all(np.abs(tau) <= sim.torque_limits)
