"""Bags for test_replay_launch.py, written with the project's own tools.

`decision_bag`: what the live pipeline records from the policy node (graph "replay" input):
/policy_xai/observation/{image,config} and /policy_xai/torques, all with the observation stamp, made
by running the trained policy on synthetic observations exactly as policy_node does (configuration
vector from live.ConfigBuilder with the robot's end-effector kinematics, torques from policy.act),
the messages built by policy_xai.ros.convert and serialised by rclpy.

`robot_bag`: a robot-like recording, camera images + /joint_states (graph "explain" input):
policy_xai.bags.write_synthetic_bag.

Not a test file (no `test_` prefix).
"""
from __future__ import annotations

import time
from pathlib import Path


def start_stamp() -> int:
    """This run's first stamp (now, whole seconds): a bag played by another test session on the same
    DDS domain would show up with other stamps."""
    return int(time.time()) * 1_000_000_000


def decision_bag(path, weights, steps: int = 40, rate: float = 20.0, seed: int = 5) -> tuple[Path, list[int]]:
    """(bag path, stamps) of a recording of the policy's decisions."""
    start = start_stamp()
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer

    from policy_xai import bags, live
    from policy_xai.policy import load_policy
    from policy_xai.ros import convert as cv
    from policy_xai.ros import interfaces as itf
    from policy_xai.synthetic import synthetic_observations

    policy = load_policy(str(weights))
    spec = policy.spec
    builder = live.ConfigBuilder(spec, live.RobotAdapter(spec, "baxter_right_arm").ee)
    images, configs = synthetic_observations(spec, steps, seed=seed)
    sl = spec.group_slices()
    ts = bags.typestore()
    path = Path(path)
    period = int(1e9 / rate)
    stamps = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {k: w.add_connection(itf.topic_name(k), itf.TOPIC[k].type, typestore=ts)
                 for k in ("obs_image", "obs_config", "torques")}
        for i in range(steps):
            stamp = start + i * period
            q, v = configs[i, sl["joint_position"]], configs[i, sl["joint_velocity"]]
            config = builder.build(q, v)
            tau = policy.act(images[i], config)
            msgs = {"obs_image": cv.image_msg(images[i], stamp, "camera"),
                    "obs_config": cv.named_vector_msg(stamp, builder.names, config),
                    "torques": cv.joint_state_msg(stamp, spec.joint_names, effort=tau)}
            for j, (k, m) in enumerate(msgs.items()):  # logged in the order the policy node publishes
                w.write(conns[k], stamp + 3_000_000 + j * 100_000, serialize_message(m))
            stamps.append(stamp)
    return path, stamps


def robot_bag(path, weights, steps: int = 40) -> tuple[Path, list[int]]:
    """(bag path, stamps) of a camera + joint-state recording for the policy's spec."""
    from policy_xai import bags
    from policy_xai.policy import load_policy

    spec = load_policy(str(weights)).spec
    start = start_stamp()
    path = bags.write_synthetic_bag(path, spec, steps, "mcap", start_ns=start)
    return Path(path), [start + i * int(1e9 / 20.0) for i in range(steps)]
