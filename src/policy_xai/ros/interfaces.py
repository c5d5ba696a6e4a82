"""Every topic, message type, QoS and node parameter default of the live pipeline, declared once.

The declarations are ROS-free and live in the core (policy_xai.topics: topics, services, types,
QoS names; policy_xai.parameters: node parameters), so that the offline bag readers use them without
importing this package; this module re-exports them for the nodes, the launch graph and the tests.

    python -m policy_xai.ros.interfaces   # print the tables for docs/ros.md
"""
from __future__ import annotations

from ..parameters import (  # noqa: F401 - re-exported
    COMMON_PARAMETERS, NODES, P, NodeInfo, Param, parameter_table_markdown, validate_parameter,
)
from ..topics import (  # noqa: F401 - re-exported
    LATCHED, RELIABLE, SENSOR_DATA, SERVICES, TOPIC, TOPICS, Topic, message_class, role_table_markdown, topic_name,
    topic_table_markdown,
)

if __name__ == "__main__":  # print the tables for docs/ros.md
    print(topic_table_markdown())
    print()
    print(role_table_markdown())
    print()
    print(parameter_table_markdown())
