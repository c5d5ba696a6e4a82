"""Every topic and service of the live pipeline, its message type and QoS, declared once (core: no rclpy).

The nodes, the launch graph, the recorder, the bag readers (policy_xai.bags), the README table
(`topic_table_markdown`) and the tests all read these declarations; policy_xai.ros.interfaces
re-exports them. Message types are ROS interface names ("sensor_msgs/msg/Image");
`message_class(name)` imports the Python class when a node needs it.

Named vectors (configuration, relevance, ratios, importance factors) travel as
sensor_msgs/JointState: `header.stamp` is the observation stamp, `name[i]` names value `position[i]`.
Torques travel in JointState `effort[]` (its meaning in ROS). policy_xai.messages holds the field
layouts and the encoders both the rclpy and the rosbags paths use.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

#: QoS profile names used below (resolved to rclpy profiles by policy_xai.ros.qos)
SENSOR_DATA = "sensor_data"  # best effort, keep last 5, volatile (rclpy.qos.qos_profile_sensor_data)
RELIABLE = "reliable"  # reliable, keep last 10, volatile
LATCHED = "latched"  # reliable, keep last 1, transient local (late joiners get the last value)


@dataclass(frozen=True)
class Topic:
    key: str  # how the code refers to it
    name: str  # default name (remap with --ros-args -r name:=other)
    type: str  # ROS interface name
    qos: str  # SENSOR_DATA | RELIABLE | LATCHED
    publisher: str  # node that publishes it
    meaning: str


TOPICS: tuple[Topic, ...] = (
    # ---- robot side (sim_node, or the real robot's drivers) -----------------------------------
    Topic("joint_states", "/joint_states", "sensor_msgs/msg/JointState", RELIABLE, "sim_node",
          "joint positions (rad) and velocities (rad/s) of the arm, stamped at the observation time"),
    Topic("image", "/camera/image_raw", "sensor_msgs/msg/Image", SENSOR_DATA, "sim_node",
          "camera image, rgb8, same stamp as the joint state it goes with"),
    Topic("camera_info", "/camera/camera_info", "sensor_msgs/msg/CameraInfo", SENSOR_DATA, "sim_node",
          "pinhole intrinsics of the camera"),
    Topic("commands", "/effort_controller/commands", "std_msgs/msg/Float64MultiArray", RELIABLE,
          "policy_node", "joint torques (N·m) in the policy's joint order (ros2_control forward effort "
          "controller convention)"),
    Topic("target", "/sim/target", "geometry_msgs/msg/PointStamped", LATCHED, "sim_node",
          "current reach target in the base frame (m)"),
    Topic("set_target", "/sim/set_target", "geometry_msgs/msg/PointStamped", RELIABLE, "(user)",
          "move the reach target mid-episode"),
    Topic("clock", "/clock", "rosgraph_msgs/msg/Clock", RELIABLE, "sim_node",
          "simulated time (only with sim_node publish_clock:=true)"),
    # ---- what the policy decided on ------------------------------------------------------------
    Topic("obs_image", "/policy_xai/observation/image", "sensor_msgs/msg/Image", SENSOR_DATA,
          "policy_node", "the exact image the network took (rgb8, policy input size), observation stamp"),
    Topic("obs_config", "/policy_xai/observation/config", "sensor_msgs/msg/JointState", RELIABLE,
          "policy_node", "the configuration vector the network took: name[i] = 'group/element', "
          "position[i] = raw value"),
    Topic("torques", "/policy_xai/torques", "sensor_msgs/msg/JointState", RELIABLE, "policy_node",
          "the commanded torques, named by joint, in effort[] (clipped to the limits), observation stamp"),
    # ---- explanations ----------------------------------------------------------------------------
    Topic("relevance_image", "/policy_xai/relevance/image", "sensor_msgs/msg/Image", SENSOR_DATA,
          "attribution_node", "per-pixel relevance, 32FC1 at the policy input size, observation stamp"),
    Topic("relevance_config", "/policy_xai/relevance/config", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "relevance per configuration element (names as in observation/config)"),
    Topic("relevance_points", "/policy_xai/relevance/points", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "per feature point: position[] = relevance, velocity[] = x, effort[] = y "
          "(image coordinates in [-1, 1], left/top = -1)"),
    Topic("ratios", "/policy_xai/relevance/ratios", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "share of total |relevance| per input group ('image' + the configuration "
          "groups), sums to 1; empty for the Grad-CAM family"),
    Topic("importance", "/policy_xai/importance_factors", "sensor_msgs/msg/JointState", RELIABLE,
          "attribution_node", "per-joint importance factor alpha used to amortise over joints "
          "(RobotModel.importance_factors, mean-normalised)"),
    # ---- a user's policy (user_policy_node) ---------------------------------------------------------
    Topic("actions", "/policy_xai/actions", "sensor_msgs/msg/JointState", RELIABLE, "user_policy_node",
          "a user's model's actions, named as the mapping's actions.names, in position[], observation stamp "
          "(joint torques also go to /effort_controller/commands and /policy_xai/torques)"),
    Topic("camera_relevance", "/policy_xai/relevance/cameras/<camera>", "sensor_msgs/msg/Image", SENSOR_DATA,
          "user_policy_node", "per-pixel relevance of each camera of a user's mapping (32FC1 at its size; "
          "<camera> = the observation name); the first camera also on /policy_xai/relevance/image"),
    # ---- visualisation ---------------------------------------------------------------------------
    Topic("heatmap", "/policy_xai/heatmap", "sensor_msgs/msg/Image", SENSOR_DATA, "visualization_node",
          "camera image with the colour-mapped relevance and feature points (rgb8), observation stamp"),
    Topic("markers", "/policy_xai/markers", "visualization_msgs/msg/MarkerArray", RELIABLE,
          "visualization_node", "per-joint spheres (size/colour = configuration relevance) and ratio text"),
    Topic("ratio_plot", "/policy_xai/ratio_plot", "sensor_msgs/msg/Image", SENSOR_DATA,
          "visualization_node", "rolling plot of the ratios over time (rgb8, low rate)"),
    Topic("robot_description", "/robot_description", "std_msgs/msg/String", LATCHED, "robot_state_publisher",
          "the arm's URDF (sim.launch.py robot_state_publisher:=true), for rviz's RobotModel"),
    # ---- health ----------------------------------------------------------------------------------
    Topic("diagnostics", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE, "every node",
          "rates, latency, drops, errors per node"),
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
