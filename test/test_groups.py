"""The configuration-group registry (policy_xai.groups): one declaration per group, used by the spec,
the configuration vector's names, the live ConfigBuilder and the figures."""
import numpy as np
import pytest

from policy_xai import groups
from policy_xai.figures import GROUP_STYLE, PAPER_STYLE
from policy_xai.live import ConfigBuilder, config_feature_names
from policy_xai.spec import KNOWN_GROUPS, load_spec


def test_registry_is_the_one_declaration():
    assert KNOWN_GROUPS == groups.NAMES == ("joint_position", "joint_velocity", "ee_position", "ee_velocity")
    assert set(groups.of_quantity("position")) == {"joint_position", "ee_position"}
    assert set(groups.of_quantity("velocity")) == {"joint_velocity", "ee_velocity"}
    assert all(n in GROUP_STYLE and n in PAPER_STYLE for n in groups.NAMES)
    assert [g for g in groups.NAMES if groups.group(g).needs_kinematics] == ["ee_position", "ee_velocity"]
    with pytest.raises(ValueError, match="unknown configuration group 'gripper'; known: joint_position"):
        groups.group("gripper")


def test_feature_names_and_values():
    spec = load_spec("small")
    names = config_feature_names(spec)
    assert names[0] == f"joint_position/{spec.joint_names[0]}" and names[-1] == "ee_velocity/z"
    assert len(names) == spec.config_dim
    q, v = np.arange(7.0), -np.arange(7.0)
    ee = lambda q, v: (q[:3] * 2, v[:3] * 2)  # noqa: E731
    got = groups.values(spec.group_names, q, v, ee)
    assert list(got) == list(spec.group_names)
    np.testing.assert_array_equal(got["ee_velocity"], v[:3] * 2)
    np.testing.assert_array_equal(ConfigBuilder(spec, ee).build(q, v), np.concatenate(list(got.values())))
    with pytest.raises(ValueError, match="end-effector groups"):
        groups.values(spec.group_names, q, v)
    assert not groups.needs_kinematics(("joint_position", "joint_velocity"))
