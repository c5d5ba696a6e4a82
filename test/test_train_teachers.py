"""The state-feedback teachers of peg and door (real MuJoCo): they solve every condition and the held-out
places between them, they are functions of the state (so DAgger can relabel), and the scene's object
(hole block, door) moves with the target, i.e. it is only visible in the image."""
import numpy as np
import pytest

from policy_xai.robot.sim import Simulation
from policy_xai.training import (DoorFeedbackExpert, FeedbackExpert, PegFeedbackExpert, heldout_targets,
                                 make_teacher, run_episode)


def _ctrl(ex):
    return lambda obs, img, tgt, k: ex.act(obs.joint_position, obs.joint_velocity, tgt)


def test_make_teacher_per_task():
    for task, cls in (("reach", FeedbackExpert), ("peg", PegFeedbackExpert), ("door", DoorFeedbackExpert)):
        with Simulation(task, render=False) as sim:
            assert type(make_teacher(sim)) is cls


@pytest.mark.parametrize("task", ["peg", "door"])
def test_teacher_solves_conditions_and_heldout(task):
    with Simulation(task, render=False, seed=0) as sim:
        ex = make_teacher(sim)
        for c in range(len(sim.task.conditions)):
            ep = run_episode(sim, _ctrl(ex), c, record=False)
            assert ep.success, (task, c, ep.measure)
        held = heldout_targets(sim.task, ex)
        assert len(held) >= 5, held
        ep = run_episode(sim, _ctrl(ex), 1, target=held[-1][1], noise=0.05, record=False)
        assert ep.success, (task, held[-1], ep.measure)
        if task == "peg":
            assert ep.measure["depth"] > 0.05
        else:
            assert ep.measure["door_angle"] > 0.5


@pytest.mark.parametrize("task", ["peg", "door"])
def test_teacher_is_a_function_of_the_state(task):
    """The same state gives the same torque whatever happened before (no time index, no plan)."""
    with Simulation(task, render=False, seed=0) as sim:
        ex = make_teacher(sim)
        run_episode(sim, _ctrl(ex), 2, steps=40, record=False)
        state = sim.get_state()
        obs = sim.observation()
        tau1 = ex.act(obs.joint_position, obs.joint_velocity, sim.target_position)
        fresh = make_teacher(sim)
        sim.reset(0)
        sim.set_state(state)
        obs = sim.observation()
        np.testing.assert_allclose(fresh.act(obs.joint_position, obs.joint_velocity, sim.target_position), tau1)


@pytest.mark.parametrize("task", ["peg", "door"])
def test_scene_object_moves_with_the_target(task):
    with Simulation(task, image_size=64, seed=0) as sim:
        img0 = sim.reset(0).image
        img3 = sim.reset(3).image
        assert np.abs(img0.astype(int) - img3.astype(int)).sum() > 2000   # the block / the door moved
        ex = make_teacher(sim)
        # the teacher of a moved target succeeds there (the object really is at the target)
        ep = run_episode(sim, _ctrl(ex), 0, target=sim.task.targets.mean(0), record=False)
        assert ep.success, ep.measure
