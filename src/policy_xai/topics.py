"""Every topic and service of the live pipeline, its message type, QoS and roles, declared once (core: no rclpy).

The nodes, the launch graph, the recorder, the bag readers (policy_xai.bags), the README table
(`topic_table_markdown`) and the tests all read these declarations; policy_xai.ros.interfaces
re-exports them. Message types are ROS interface names ("sensor_msgs/msg/Image");
`message_class(name)` imports the Python class when a node needs it.

A topic's roles (OBSERVATION, DECISION, EXPLANATION, ... below) say what it is to the tools that
handle topics as a group, and those tools derive their lists from them (`keys_with`, `bag_topics`,
`published_per_observation`, `remappings`): the bag readers' topics, what `replay` plays into which
graph and waits for, the launch files' topic arguments, the topics rviz shows. A new topic is then
one declaration here (with its roles) plus the node code that publishes or subscribes to it
(`XaiNode.pub(key)` / `sub(key)`); `role_table_markdown` lists where each role is read.

Named vectors (configuration, relevance, ratios, importance factors) travel as
sensor_msgs/JointState: `header.stamp` is the observation stamp, `name[i]` names value `position[i]`.
Torques travel in JointState `effort[]` (its meaning in ROS). policy_xai.messages holds the field
layouts and the encoders both the rclpy and the rosbags paths use.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Mapping

#: QoS profile names used below (resolved to rclpy profiles by policy_xai.ros.qos)
SENSOR_DATA = "sensor_data"  # best effort, keep last 5, volatile (rclpy.qos.qos_profile_sensor_data)
RELIABLE = "reliable"  # reliable, keep last 10, volatile
LATCHED = "latched"  # reliable, keep last 1, transient local (late joiners get the last value)


# ---- roles: what a topic is to the tools that handle topics as a group --------------------------
# A topic's roles put it in the lists below (`keys_with`), so that declaring a topic with its roles is
# all it takes for the recorder's replay wait, the replay plan, the bag readers, the launch files'
# remapping arguments and the rviz check to handle it. ROLE_USES says where each role is read.
OBSERVATION = "observation"  # the robot's observation (policy_node's input): what a robot recording holds
OBSERVATION_EXTRA = "observation_extra"  # goes with the observation, no node needs it: replayed with it
DECISION = "decision"  # what policy_node decided on and its torques (observation stamp): attribution_node's input
EXPLANATION = "explanation"  # attribution_node's explanation of one decision (observation stamp)
HEALTH = "health"  # the nodes' /diagnostics
PER_OBSERVATION = "per_observation"  # one message per observation (or decision) a node handles
ROBOT = "robot"  # the arm's side of the graph (its drivers publish or take it): remappable at launch
RVIZ = "rviz"  # shown by config/policy_xai.rviz

#: role -> what reads the topics that have it (the README / docs/ros.md role table)
ROLE_USES: dict[str, str] = {
    OBSERVATION: "bags: the raw source of `analyze`; `replay` plays them into graph explain",
    OBSERVATION_EXTRA: "`replay` plays them into graph explain too when the bag has them",
    DECISION: "bags: the observation source of `analyze`; `replay` plays them into graph replay, once "
              "attribution_node subscribed to them",
    EXPLANATION: "bags: compared with the recomputed explanations; `analyze` writes them again in its bag",
    HEALTH: "bags: read for the summary of a run",
    PER_OBSERVATION: "`replay --record` waits until the recorder subscribed to those of the running nodes",
    ROBOT: "the launch files' `<key>_topic:=NAME` arguments remap them in every node",
    RVIZ: "config/policy_xai.rviz shows exactly these (test/test_rviz_config.py)",
}
#: the roles whose topics the bag readers know by key (policy_xai.bags.default_topics)
BAG_ROLES = (OBSERVATION, DECISION, EXPLANATION, HEALTH)


@dataclass(frozen=True)
class Topic:
    key: str  # how the code refers to it
    name: str  # default name (remap with --ros-args -r name:=other)
    type: str  # ROS interface name
    qos: str  # SENSOR_DATA | RELIABLE | LATCHED
    publisher: str  # node that publishes it
    meaning: str
    roles: tuple[str, ...] = ()  # of the roles above

    def __post_init__(self):
        unknown = [r for r in self.roles if r not in ROLE_USES]
        if unknown:
            raise ValueError(f"topic {self.key!r}: unknown roles {unknown}; roles: {', '.join(ROLE_USES)}")


TOPICS: tuple[Topic, ...] = (
    # ---- robot side (sim_node, or the real robot's drivers) -----------------------------------
    Topic("joint_states", "/joint_states", "sensor_msgs/msg/JointState", RELIABLE, "sim_node",
          "joint positions (rad) and velocities (rad/s) of the arm, stamped at the observation time",
          roles=(OBSERVATION, PER_OBSERVATION, ROBOT)),
    Topic("image", "/camera/image_raw", "sensor_msgs/msg/Image", SENSOR_DATA, "sim_node",
          "camera image, rgb8, same stamp as the joint state it goes with",
          roles=(OBSERVATION, PER_OBSERVATION, ROBOT, RVIZ)),
    Topic("camera_info", "/camera/camera_info", "sensor_msgs/msg/CameraInfo", SENSOR_DATA, "sim_node",
          "pinhole intrinsics of the camera",
          roles=(OBSERVATION_EXTRA, PER_OBSERVATION)),
    Topic("commands", "/effort_controller/commands", "std_msgs/msg/Float64MultiArray", RELIABLE,
          "policy_node", "joint torques (N·m) in the policy's joint order (ros2_control forward effort "
          "controller convention)",
          roles=(PER_OBSERVATION, ROBOT)),
    Topic("target", "/sim/target", "geometry_msgs/msg/PointStamped", LATCHED, "sim_node",
          "current reach target in the base frame (m)"),
    Topic("set_target", "/sim/set_target", "geometry_msgs/msg/PointStamped", RELIABLE, "(user)",
          "move the reach target mid-episode"),
    Topic("clock", "/clock", "rosgraph_msgs/msg/Clock", RELIABLE, "sim_node",
          "simulated time (only with sim_node publish_clock:=true)"),
    # ---- what the policy decided on ------------------------------------------------------------
    Topic("obs_image", "/policy_xai/observation/image", "sensor_msgs/msg/Image", SENSOR_DATA,
          "policy_node", "the exact image the network took (rgb8, policy input size), observation stamp",
          roles=(DECISION, PER_OBSERVATION)),
    Topic("obs_config", "/policy_xai/observation/config", "sensor_msgs/msg/JointState", RELIABLE,
          "policy_node", "the configuration vector the network took: name[i] = 'group/element', "
          "position[i] = raw value",
          roles=(DECISION, PER_OBSERVATION)),
    Topic("torques", "/policy_xai/torques", "sensor_msgs/msg/JointState", RELIABLE, "policy_node",
          "the commanded torques, named by joint, in effort[] (clipped to the limits), observation stamp",
          roles=(DECISION, PER_OBSERVATION)),
    # ---- explanations ----------------------------------------------------------------------------
    Topic("relevance_image", "/policy_xai/relevance/image", "sensor_msgs/msg/Image", SENSOR_DATA,
          "attribution_node", "per-pixel relevance, 32FC1 at the policy input size, observation stamp",
          roles=(EXPLANATION, PER_OBSERVATION)),
    Topic("relevance_config", "/policy_xai/relevance/config", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "relevance per configuration element (names as in observation/config)",
          roles=(EXPLANATION, PER_OBSERVATION)),
    Topic("relevance_points", "/policy_xai/relevance/points", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "per feature point: position[] = relevance, velocity[] = x, effort[] = y "
          "(image coordinates in [-1, 1], left/top = -1)",
          roles=(EXPLANATION, PER_OBSERVATION)),
    Topic("ratios", "/policy_xai/relevance/ratios", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "share of total |relevance| per input group ('image' + the configuration "
          "groups), sums to 1; empty for the Grad-CAM family",
          roles=(EXPLANATION, PER_OBSERVATION)),
    Topic("importance", "/policy_xai/importance_factors", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "per-joint importance factor alpha used to amortise over joints "
          "(RobotModel.importance_factors, mean-normalised)",
          roles=(EXPLANATION, PER_OBSERVATION)),
    # ---- a user's policy (user_policy_node) ---------------------------------------------------------
    Topic("actions", "/policy_xai/actions", "sensor_msgs/msg/JointState", RELIABLE, "user_policy_node",
          "a user's model's actions, named as the mapping's actions.names, in position[], observation stamp "
          "(joint torques also go to /effort_controller/commands and /policy_xai/torques)",
          roles=(PER_OBSERVATION,)),
    Topic("camera_relevance", "/policy_xai/relevance/cameras/<camera>", "sensor_msgs/msg/Image", SENSOR_DATA,
          "user_policy_node", "per-pixel relevance of each camera of a user's mapping (32FC1 at its size; "
          "<camera> = the observation name); the first camera also on /policy_xai/relevance/image",
          roles=(PER_OBSERVATION,)),
    # ---- visualisation ---------------------------------------------------------------------------
    Topic("heatmap", "/policy_xai/heatmap", "sensor_msgs/msg/Image", SENSOR_DATA, "visualization_node",
          "camera image with the colour-mapped relevance and feature points (rgb8), observation stamp",
          roles=(PER_OBSERVATION, RVIZ)),
    Topic("markers", "/policy_xai/markers", "visualization_msgs/msg/MarkerArray", RELIABLE,
          "visualization_node", "per-joint spheres (size/colour = configuration relevance) and ratio text",
          roles=(PER_OBSERVATION, RVIZ)),
    Topic("ratio_plot", "/policy_xai/ratio_plot", "sensor_msgs/msg/Image", SENSOR_DATA,
          "visualization_node", "rolling plot of the ratios over time (rgb8, low rate)",
          roles=(RVIZ,)),
    Topic("robot_description", "/robot_description", "std_msgs/msg/String", LATCHED, "robot_state_publisher",
          "the arm's URDF (sim.launch.py robot_state_publisher:=true), for rviz's RobotModel",
          roles=(RVIZ,)),
    # ---- health ----------------------------------------------------------------------------------
    Topic("diagnostics", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE, "every node",
          "rates, latency, drops, errors per node",
          roles=(HEALTH,)),
)

TOPIC = {t.key: t for t in TOPICS}

#: services
SERVICES = {
    "reset": ("/sim/reset", "std_srvs/srv/Trigger", "sim_node", "start a new episode"),
    "random_target": ("/sim/random_target", "std_srvs/srv/Trigger", "sim_node",
                      "move the reach target to a new random reachable point mid-episode"),
}


def topic_name(key: str) -> str:
    return TOPIC[key].name


# ---- the lists the roles make (read at call time: a topic declared above is in them) -------------
def keys_with(*roles: str) -> list[str]:
    """Keys of the declared topics that have any of `roles`, in declaration order."""
    unknown = [r for r in roles if r not in ROLE_USES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}; roles: {', '.join(ROLE_USES)}")
    return [t.key for t in TOPICS if any(r in t.roles for r in roles)]


def names_with(*roles: str) -> list[str]:
    """Default names of the declared topics that have any of `roles`, in declaration order."""
    return [TOPIC[k].name for k in keys_with(*roles)]


def bag_topics() -> dict[str, str]:
    """Topic key -> default name of what the bag readers know by key (the BAG_ROLES: observation,
    decision, explanation and health topics): policy_xai.bags.default_topics."""
    return {k: TOPIC[k].name for k in keys_with(*BAG_ROLES)}


def published_per_observation(nodes) -> list[str]:
    """Keys of the per-observation topics that the nodes `nodes` publish (their `publisher`): what a
    recorder must be subscribed to before a replay starts, so that none of the first is lost."""
    nodes = set(nodes)
    return [k for k in keys_with(PER_OBSERVATION) if TOPIC[k].publisher in nodes]


def remappings(names: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(default name, new name) for each topic key -> name in `names` that differs from the default
    (what policy_xai.ros.graph gives every node of a graph; the launch files take the ROBOT topics
    as `<key>_topic:=NAME` arguments). An unknown key, or an empty name, is a ValueError."""
    out = []
    for k, v in names.items():
        if k not in TOPIC:
            raise ValueError(f"no topic {k!r} to remap; topics: {', '.join(TOPIC)}")
        if not str(v).strip():
            raise ValueError(f"remapping {k!r} ({TOPIC[k].name}) to an empty name")
        if str(v) != TOPIC[k].name:
            out.append((TOPIC[k].name, str(v)))
    return tuple(out)


def message_class(type_name: str):
    """'sensor_msgs/msg/Image' -> the Python message class."""
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def topic_table_markdown() -> str:
    """The README / docs/ros.md topic table."""
    rows = ["| Topic | Type | QoS | Publisher | Meaning |", "|---|---|---|---|---|"]
    for t in TOPICS:
        rows.append(f"| `{t.name}` | `{t.type}` | {t.qos} | {t.publisher} | {t.meaning} |")
    for name, typ, node, meaning in SERVICES.values():
        rows.append(f"| `{name}` (service) | `{typ}` | services | {node} | {meaning} |")
    return "\n".join(rows)


def role_table_markdown() -> str:
    """The docs/ros.md table of the topic roles: each role, its topics and what reads them."""
    rows = ["| Role | Topics | Read by |", "|---|---|---|"]
    for role, use in ROLE_USES.items():
        rows.append(f"| `{role}` | {', '.join(f'`{n}`' for n in names_with(role))} | {use} |")
    return "\n".join(rows)
