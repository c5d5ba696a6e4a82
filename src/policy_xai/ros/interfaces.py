"""Every topic, message type, QoS and node parameter default of the live pipeline, declared once.

No rclpy here: the nodes, the launch graph, the recorder, the README table (`topic_table_markdown`)
and the tests all read these declarations. Message types are ROS interface names
("sensor_msgs/msg/Image"); `message_class(name)` imports the Python class when a node needs it.

Named vectors (configuration, relevance, ratios, importance factors) travel as
sensor_msgs/JointState: `header.stamp` is the observation stamp, `name[i]` names value `position[i]`.
Torques travel in JointState `effort[]` (its meaning in ROS).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

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
          "attribution_node", "per-joint importance factor alpha used to amortise over joints (RobotModel.importance_factors, "
          "mean-normalised)"),
    # ---- visualisation ---------------------------------------------------------------------------
    Topic("heatmap", "/policy_xai/heatmap", "sensor_msgs/msg/Image", SENSOR_DATA, "visualization_node",
          "camera image with the colour-mapped relevance and feature points (rgb8), observation stamp"),
    Topic("markers", "/policy_xai/markers", "visualization_msgs/msg/MarkerArray", RELIABLE,
          "visualization_node", "per-joint spheres (size/colour = configuration relevance) and ratio text"),
    Topic("ratio_plot", "/policy_xai/ratio_plot", "sensor_msgs/msg/Image", SENSOR_DATA,
          "visualization_node", "rolling plot of the ratios over time (rgb8, low rate)"),
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


@dataclass(frozen=True)
class NodeInfo:
    name: str
    module: str  # python -m policy_xai.ros.<module>
    executable: str  # console script
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str = ""


#: node parameter defaults (config/*.yaml override them; every one also settable with -p)
NODES: dict[str, NodeInfo] = {
    "sim_node": NodeInfo("sim_node", "policy_xai.ros.sim_node", "sim_node", {
        "task": "reach",  # policy_xai.robot task: reach2d, reach, peg, door
        "rate": 20.0,  # control rate (Hz): one observation and one torque hold per period
        "image_width": 64,
        "image_height": 64,
        "condition": -1,  # task condition index; -1 = cycle through them episode by episode
        "seed": 0,
        "episode_steps": 0,  # control steps per episode; 0 = the task's horizon, -1 = one endless episode
        "publish_clock": False,  # publish /clock and stamp with simulated time (use_sim_time elsewhere)
        "command_timeout": 0.5,  # s without commands -> zero torque
        "frame_id": "base",
        "camera_frame_id": "camera",
    }, "MuJoCo arm: joint states and camera images at the control rate, applies torque commands"),
    "policy_node": NodeInfo("policy_node", "policy_xai.ros.policy_node", "policy_node", {
        "spec": "small",  # shipped spec name or YAML path (used when weights is empty or to check it)
        "weights": "",  # safetensors file; empty = untrained weights from init_seed
        "init_seed": 0,
        "robot": "baxter_right_arm",  # urdf/<robot>.urdf: end-effector kinematics for ee_* groups
        "torque_limits": "",  # list of N·m per joint to clip tighter than the spec's limits ("" = spec's)
        "resize": False,  # resize images of another size to the policy input (else: error)
        "sync_tolerance": 0.02,  # s between image and joint state stamps
        "stale_timeout": 0.5,  # s without a fresh observation -> stale_action
        "stale_action": "zero",  # zero | hold
        "threads": 1,  # torch intra-op threads
    }, "runs the policy on the newest paired observation, publishes torques and what it decided on"),
    "attribution_node": NodeInfo("attribution_node", "policy_xai.ros.attribution_node", "attribution_node", {
        "spec": "small",
        "weights": "",
        "init_seed": 0,
        "robot": "baxter_right_arm",
        "method": "dtd",  # changeable at run time (ros2 param set)
        "precision": "float32",  # float32 | bfloat16 (rule convolutions; several times faster with AMX)
        "importance": "dynamics",  # dynamics (robot model alphas) | uniform
        "dt": 0.05,  # control period for the importance factors (s)
        "reproduce_tolerance": 1e-3,  # N·m; torques that differ more are reported on /diagnostics
        "threads": 1,
    }, "explains each decision of the policy node; drops to the newest when behind"),
    "visualization_node": NodeInfo("visualization_node", "policy_xai.ros.visualization_node",
                                   "visualization_node", {
        "robot": "baxter_right_arm",  # joint marker positions
        "normalize": "frame",  # frame | fixed
        "fixed_scale": 0.0,  # |relevance| mapped to full colour when normalize=fixed
        "heatmap_scale": 0,  # upscale factor of the overlay image; 0 = auto (about 256 px wide)
        "opacity": 0.5,
        "plot_rate": 2.0,  # Hz of the ratio plot image
        "plot_window": 20.0,  # s of history in the plot
        "frame_id": "base",
        "marker_scale": 0.12,  # m: sphere diameter for the most relevant joint
    }, "heatmap overlay, joint markers and the rolling ratio plot"),
    "recorder": NodeInfo("recorder", "policy_xai.ros.recorder", "policy_xai_recorder", {
        "output": "",  # bag directory (must not exist)
        "topics": [""],  # empty = every topic
        "discovery_period": 0.5,
    }, "records raw received bytes of topics into a rosbag2 MCAP"),
}

#: parameters every node has
COMMON_PARAMETERS = {"diagnostics_period": 1.0}


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


def parameter_table_markdown() -> str:
    rows = ["| Node | Parameter | Default |", "|---|---|---|"]
    for n in NODES.values():
        for k, v in {**n.parameters, **COMMON_PARAMETERS}.items():
            rows.append(f"| {n.name} | `{k}` | `{v!r}` |")
    return "\n".join(rows)


if __name__ == "__main__":  # print the tables for docs/ros.md
    print(topic_table_markdown())
    print()
    print(parameter_table_markdown())
