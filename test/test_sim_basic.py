"""MuJoCo Simulation: API, control rate, observations, clipping, bad input, rendering."""
import numpy as np
import pytest

from policy_xai.robot import (JointCountError, NonFiniteTorqueError, RobotInputError, Simulation,
                              UnknownTaskError)
from policy_xai.robot.tasks import TASKS, between_targets


@pytest.fixture(scope="module")
def reach():
    sim = Simulation("reach", image_size=64, control_rate=20.0, seed=0)
    yield sim
    sim.close()


def _same_state(a, b):
    return all(np.array_equal(a[k], b[k]) for k in ("qpos", "qvel", "target")) and a["time"] == b["time"]


def test_unknown_task_and_condition():
    with pytest.raises(UnknownTaskError, match="known tasks: reach2d, reach, peg, door"):
        Simulation("fly")
    with Simulation("reach2d", render=False) as sim:
        with pytest.raises(UnknownTaskError, match="conditions 0..3"):
            sim.reset(4)
        with pytest.raises(UnknownTaskError):
            sim.reset(-1)
    assert issubclass(UnknownTaskError, ValueError)


def test_bad_construction_arguments():
    with pytest.raises(RobotInputError, match="image_size"):
        Simulation("reach2d", image_size=8)
    with pytest.raises(RobotInputError, match="control_rate"):
        Simulation("reach2d", control_rate=0)
    with pytest.raises(RobotInputError, match="faster than the physics"):
        Simulation("reach2d", control_rate=5000)


def test_control_period_and_observation(reach):
    obs = reach.reset(1)
    assert reach.dt == pytest.approx(0.05) and reach.substeps == 25
    assert obs.joint_names == reach.joint_names == reach.model.joint_names
    assert obs.image.shape == (64, 64, 3) and obs.image.dtype == np.uint8
    np.testing.assert_allclose(obs.joint_position, TASKS["reach"].conditions[1].q0)
    np.testing.assert_allclose(reach.target_position, TASKS["reach"].conditions[1].target)
    rng = np.random.default_rng(0)
    for k in range(5):
        obs = reach.step(rng.uniform(-3, 3, 7))
    assert obs.step == 5 and obs.time == pytest.approx(0.25)
    # the observed end-effector state is Pinocchio's FK / Jacobian of the observed joint state
    np.testing.assert_allclose(obs.ee_position, reach.model.ee_position(obs.joint_position), atol=1e-9)
    np.testing.assert_allclose(obs.ee_velocity, reach.model.ee_velocity(obs.joint_position, obs.joint_velocity),
                               atol=1e-9)
    cfg = obs.config()
    assert cfg.shape == (20,) and cfg.dtype == np.float32
    np.testing.assert_allclose(cfg[:7], obs.joint_position, rtol=1e-6)


def test_gravity_compensation_holds_the_arm(reach):
    obs0 = reach.reset(0)
    for _ in range(20):
        obs = reach.step(np.zeros(7))
    np.testing.assert_allclose(obs.joint_position, obs0.joint_position, atol=1e-6)
    with Simulation("reach", render=False, gravity_compensation=False) as sim:
        sim.reset(0)
        for _ in range(5):
            obs = sim.step(np.zeros(7))
        assert np.abs(obs.joint_position - obs0.joint_position).max() > 0.05  # it falls


def test_torques_above_limits_are_clipped_and_reported(reach):
    reach.reset(0)
    tau = np.array([80.0, -60.0, 10.0, 0.0, 20.0, -15.0, 1.0])
    obs = reach.step(tau)
    np.testing.assert_array_equal(obs.clipped, [True, True, False, False, True, False, False])
    np.testing.assert_allclose(obs.torque_applied, [50, -50, 10, 0, 15, -15, 1])
    np.testing.assert_allclose(obs.torque_requested, tau)
    assert obs.any_clipped
    np.testing.assert_allclose(reach.mj_data.ctrl, obs.torque_applied)
    obs = reach.step(np.zeros(7))
    assert not obs.any_clipped


def test_nan_and_wrong_count_are_rejected_and_the_state_is_kept(reach):
    reach.reset(2)
    reach.step(np.ones(7))
    before = reach.get_state()
    for bad, err in [([np.nan] + [0.0] * 6, NonFiniteTorqueError), ([0.0] * 6 + [np.inf], NonFiniteTorqueError),
                     (np.zeros(6), JointCountError), (np.zeros((7, 1)), JointCountError), ("abc", RobotInputError)]:
        with pytest.raises(err):
            reach.step(bad)
        assert _same_state(reach.get_state(), before)
    with pytest.raises(NonFiniteTorqueError, match=r"\['right_s0'\].*state unchanged"):
        reach.step([np.nan] + [0.0] * 6)
    obs = reach.step(np.zeros(7))  # still steps normally
    assert obs.step == before["steps"] + 1 and np.all(np.isfinite(obs.joint_position))


def test_full_random_torques_stay_stable():
    with Simulation("reach", render=False, seed=1) as sim:
        rng = np.random.default_rng(1)
        sim.reset(0)
        for _ in range(60):
            obs = sim.step(rng.uniform(-1, 1, 7) * sim.torque_limits)
        assert np.all(np.isfinite(obs.joint_position))
        # soft limits
        assert np.all(obs.joint_position >= sim.model.lower - 0.1)
        assert np.all(obs.joint_position <= sim.model.upper + 0.1)


def test_set_target_moves_it_in_the_image(reach):
    obs = reach.reset(0)
    img0 = obs.image
    mid = between_targets(reach.task)
    reach.set_target(mid)
    np.testing.assert_allclose(reach.target_position, mid)
    img1 = reach.render()
    assert np.abs(img1.astype(int) - img0.astype(int)).sum() > 1000
    with pytest.raises(RobotInputError, match="3 finite numbers"):
        reach.set_target([0.1, 0.2])
    with pytest.raises(RobotInputError):
        reach.set_target([0.1, np.nan, 0.0])
    np.testing.assert_allclose(reach.target_position, mid)
    np.testing.assert_allclose(between_targets(reach.task, 0, 1), (reach.task.targets[0] + reach.task.targets[1]) / 2)


@pytest.mark.parametrize("task", ["reach2d", "reach", "peg", "door"])
@pytest.mark.parametrize("size", [64, 240])
def test_rendering(task, size):
    with Simulation(task, image_size=size) as sim:
        img = sim.reset(0).image
        assert img.shape == (size, size, 3) and img.dtype == np.uint8
        assert img.std() > 10  # not a blank frame
        # the arm is in the picture: moving it changes the image
        sim.step(np.r_[sim.torque_limits[:1], np.zeros(sim.n_joints - 1)])
        sim.step(np.r_[sim.torque_limits[:1], np.zeros(sim.n_joints - 1)])
        assert np.abs(sim.render().astype(int) - img.astype(int)).sum() > 500


def test_physics_only_mode_has_no_image():
    with Simulation("reach2d", render=False) as sim:
        assert sim.reset(0).image is None
        assert sim.observation(render=True).image.shape == (64, 64, 3)


def test_public_scene_api_matches_the_mujoco_state():
    """site_position, scene_joint_position, set_joint_state and reseed: the public view task callbacks and
    tools use instead of the simulator's private fields."""
    with Simulation("door", image_size=32, seed=0) as sim:
        assert sim.scene_joint_names == ("door_hinge",) and sim.physics_timestep == sim.mj_model.opt.timestep
        q = np.asarray(sim.task.conditions[0].q0, float) + 0.05
        via_state = sim.get_state()
        m = sim.mj_model   # joint addresses from the public MuJoCo model, not the simulator's private tables
        via_state["qpos"][[m.jnt_qposadr[m.joint(n).id] for n in sim.joint_names]] = q
        via_state["qpos"][m.jnt_qposadr[m.joint("door_hinge").id]] = 0.3
        sim.set_state(via_state)
        expected = (sim.mj_data.qpos.copy(), sim.site_position("handle"), sim.render())
        sim.reset(0)
        sim.set_joint_state(q, np.zeros(sim.n_joints), scene={"door_hinge": 0.3})
        np.testing.assert_array_equal(sim.mj_data.qpos, expected[0])
        np.testing.assert_array_equal(sim.site_position("handle"), expected[1])
        np.testing.assert_array_equal(sim.render(), expected[2])
        assert sim.scene_joint_position("door_hinge") == 0.3 == sim.measure()["door_angle"]
        with pytest.raises(RobotInputError):
            sim.set_joint_state(scene={"nope": 1.0})
        with pytest.raises(RobotInputError):
            sim.site_position("nope")
        sim.reseed(4)
        a = sim.reset(None, noise=0.1).joint_position
        sim.reseed(4)
        np.testing.assert_array_equal(sim.reset(None, noise=0.1).joint_position, a)
