"""RobotModel (Pinocchio) on the shipped URDFs, held against MuJoCo built from the same files."""
import sysconfig
from pathlib import Path

import mujoco
import numpy as np
import pytest

from policy_xai.resources import share_path
from policy_xai.robot import JointCountError, RobotInputError, RobotModel
from policy_xai.robot.mjcf import Scene, build_mjcf
from policy_xai.robot.urdf_tools import ROBOTS, parse_urdf, to_urdf

ROBOT_NAMES = ["baxter_right_arm", "two_link_arm"]


@pytest.fixture(scope="module", params=ROBOT_NAMES)
def pair(request):
    """(RobotModel, MjModel, MjData) of one URDF; MuJoCo without contacts or gravity compensation."""
    urdf = share_path("urdf", f"{request.param}.urdf")
    m = mujoco.MjModel.from_xml_string(build_mjcf(parse_urdf(urdf), Scene()))
    return RobotModel(urdf), m, mujoco.MjData(m)


def test_shipped_urdfs_are_the_generator_output():
    for name, fn in ROBOTS.items():
        assert share_path("urdf", f"{name}.urdf").read_text() == to_urdf(fn()), (
            f"urdf/{name}.urdf differs from policy_xai.robot.urdf_tools; regenerate with "
            "`python -m policy_xai.robot.urdf_tools urdf`")


def test_baxter_model_facts():
    m = RobotModel.from_name("baxter_right_arm")
    assert m.joint_names == ("right_s0", "right_s1", "right_e0", "right_e1", "right_w0", "right_w1", "right_w2")
    np.testing.assert_allclose(m.effort_limit, [50, 50, 50, 50, 15, 15, 15])
    np.testing.assert_allclose(m.damping, 0.7)
    # Rethink's published forward kinematics of right_gripper at q = 0
    np.testing.assert_allclose(m.ee_position(np.zeros(7)), [0.90897, -1.10398, 0.32098], atol=2e-5)
    # the hand is physical: w2's own mass-matrix entry is no longer dominated by 0.04 kg*m^2 of fingers
    M = m.mass_matrix(np.zeros(7))
    assert 1e-4 < M[6, 6] < 5e-3
    np.testing.assert_allclose(M, M.T)


def _rethink_baxter_urdf() -> Path:
    p = (Path(sysconfig.get_paths()["purelib"])
         / "cmeel.prefix/share/example-robot-data/robots/baxter_description/urdf/baxter.urdf")
    assert p.is_file(), f"example-robot-data's Baxter URDF not found at {p} (pip install example-robot-data)"
    return p


def test_kinematics_equal_rethinks_urdf_reduced_to_the_right_arm():
    """Our URDF's kinematics = Rethink's full Baxter URDF reduced to the 7 right-arm joints."""
    ours = RobotModel.from_name("baxter_right_arm")
    full = RobotModel(_rethink_baxter_urdf(), ee_frame="right_gripper", joint_names=list(ours.joint_names))
    assert full.joint_names == ours.joint_names
    np.testing.assert_allclose(full.effort_limit, ours.effort_limit)
    np.testing.assert_allclose(full.lower, ours.lower)
    np.testing.assert_allclose(full.upper, ours.upper)
    rng = np.random.default_rng(3)
    for _ in range(20):
        q = rng.uniform(ours.lower, ours.upper)
        np.testing.assert_allclose(ours.ee_position(q), full.ee_position(q), atol=1e-9)
        np.testing.assert_allclose(ours.joint_positions(q)[:7], full.joint_positions(q)[:7], atol=1e-9)


def test_mujoco_and_pinocchio_agree(pair):
    pm, m, d = pair
    assert m.nq == pm.n and m.nu == pm.n
    site = m.site("ee").id
    rng = np.random.default_rng(0)
    Mm = np.zeros((m.nv, m.nv))
    for _ in range(40):
        q = rng.uniform(pm.lower, pm.upper) * 0.98  # strictly inside the limits (no limit forces)
        v = rng.normal(size=pm.n)
        tau = rng.uniform(-1, 1, pm.n) * pm.effort_limit
        d.qpos[:], d.qvel[:], d.ctrl[:] = q, v, tau
        mujoco.mj_forward(m, d)
        np.testing.assert_allclose(d.site_xpos[site], pm.ee_position(q), atol=1e-6)
        mujoco.mj_fullM(m, d, Mm)
        np.testing.assert_allclose(Mm, pm.mass_matrix(q), atol=1e-6)
        np.testing.assert_allclose(d.qacc, pm.forward_dynamics(q, v, tau), atol=1e-6, rtol=1e-9)
        np.testing.assert_allclose(d.qfrc_bias, pm.bias(q, v), atol=1e-6)
        jacp = np.zeros((3, m.nv))
        mujoco.mj_jacSite(m, d, jacp, None, site)
        np.testing.assert_allclose(jacp, pm.jacobian(q), atol=1e-6)


def test_gravity_compensated_mujoco_is_pinocchio_plus_gravity():
    pm = RobotModel.from_name("baxter_right_arm")
    m = mujoco.MjModel.from_xml_string(build_mjcf(parse_urdf(pm.urdf_path), Scene(gravcomp=True)))
    d = mujoco.MjData(m)
    rng = np.random.default_rng(1)
    for _ in range(10):
        q, v, tau = rng.uniform(pm.lower, pm.upper) * 0.98, rng.normal(size=7), rng.uniform(-5, 5, 7)
        d.qpos[:], d.qvel[:], d.ctrl[:] = q, v, tau
        mujoco.mj_forward(m, d)
        np.testing.assert_allclose(d.qacc, pm.forward_dynamics(q, v, tau + pm.gravity(q)), atol=1e-6, rtol=1e-9)


def test_jacobian_and_joint_positions():
    pm = RobotModel.from_name("baxter_right_arm")
    q = np.random.default_rng(2).uniform(pm.lower, pm.upper)
    J = pm.jacobian(q)
    eps = 1e-6
    Jfd = np.stack([(pm.ee_position(q + eps * e) - pm.ee_position(q - eps * e)) / (2 * eps) for e in np.eye(7)], 1)
    np.testing.assert_allclose(J, Jfd, atol=1e-6)
    P = pm.joint_positions(q)
    assert P.shape == (8, 3)
    np.testing.assert_allclose(P[-1], pm.ee_position(q))
    # gravity = inverse dynamics at rest without damping
    np.testing.assert_allclose(pm.gravity(q), pm.inverse_dynamics(q, np.zeros(7), np.zeros(7)), atol=1e-9)


def test_inverse_kinematics_reaches_a_reachable_point():
    pm = RobotModel.from_name("baxter_right_arm")
    q_true = np.array([0.3, -0.6, 0.1, 1.4, 0.1, 0.9, 0.2])
    seed = np.array([0.25, -1.5, 0.1, 2.25, 0.0, 0.85, 0.35])  # the reach task's start pose
    q, err = pm.inverse_kinematics(pm.ee_position(q_true), seed)
    assert err < 1e-4
    np.testing.assert_allclose(pm.ee_position(q), pm.ee_position(q_true), atol=1e-4)


def test_bad_input_is_rejected():
    pm = RobotModel.from_name("two_link_arm")
    with pytest.raises(JointCountError, match="shape \\(2,\\)"):
        pm.ee_position(np.zeros(3))
    with pytest.raises(RobotInputError, match="NaN"):
        pm.gravity([0.0, np.nan])
    with pytest.raises(RobotInputError, match="unknown robot"):
        RobotModel.from_name("r2d2")
    with pytest.raises(RobotInputError, match="not in"):
        RobotModel(pm.urdf_path, ee_frame="nowhere")
    assert issubclass(JointCountError, ValueError)
