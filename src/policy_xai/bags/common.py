"""What every part of policy_xai.bags shares: the error, the message types of the roles, the default
topic names (policy_xai.topics), the typestore, stamps."""
from __future__ import annotations

from .. import topics
from ..report import nan_to_none  # noqa: F401 - re-exported (the report writer's)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_TYPE = "sensor_msgs/msg/JointState"


class BagError(ValueError):
    """A bag that cannot be analysed as asked (missing topics, wrong types, unreadable)."""


def default_topics() -> dict[str, str]:
    """Topic key -> name, as the live pipeline declares them: every topic with one of the roles the
    bag readers read (policy_xai.topics.BAG_ROLES: observation, decision, explanation, health)."""
    return topics.bag_topics()


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
