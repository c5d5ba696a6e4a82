"""A stand-in for a Baxter's drivers, for test_robot_launch*.py: publishes /joint_states (every joint of
the robot, the right arm's right_s0..right_w2 among them, at 50 Hz) and an rgb8 camera image larger than
the policy input (/camera/image_raw, 20 Hz, its own stamps), and counts the torque commands that come
back on /effort_controller/commands. The arm does not move: the commands are only counted and checked.

    python fake_baxter.py [--width 160 --height 120] [--joint-topic /robot/joint_states]
                          [--image-topic /cameras/right_hand_camera/image]

Stops cleanly on SIGINT or SIGTERM (exit code 0) and prints what it received.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import threading

import numpy as np

RIGHT_ARM = ["right_s0", "right_s1", "right_e0", "right_e1", "right_w0", "right_w1", "right_w2"]
# a real Baxter's /robot/joint_states: head, torso and both arms, in this order
ALL_JOINTS = ["head_nod", "head_pan", "left_e0", "left_e1", "left_s0", "left_s1", "left_w0", "left_w1",
              "left_w2", "right_e0", "right_e1", "right_s0", "right_s1", "right_w0", "right_w1", "right_w2",
              "torso_t0"]
NEUTRAL = {"right_s0": 0.08, "right_s1": -1.0, "right_e0": 1.19, "right_e1": 1.94, "right_w0": -0.67,
           "right_w1": 1.03, "right_w2": 0.5}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=120)
    ap.add_argument("--joint-rate", type=float, default=50.0)
    ap.add_argument("--camera-rate", type=float, default=20.0)
    ap.add_argument("--joint-topic", default="/joint_states")
    ap.add_argument("--image-topic", default="/camera/image_raw")
    args, _ = ap.parse_known_args()

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64MultiArray

    stop = threading.Event()

    def on_signal(signum, frame):  # SIGINT (launch, Ctrl-C) and SIGTERM: stop spinning, exit 0
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("fake_baxter")
    pub_js = node.create_publisher(JointState, args.joint_topic, 10)
    pub_img = node.create_publisher(Image, args.image_topic, qos_profile_sensor_data)
    got = {"commands": 0, "bad": 0, "max_abs": 0.0}

    def on_command(msg):
        tau = np.asarray(msg.data, dtype=float)
        got["commands"] += 1
        if tau.size != len(RIGHT_ARM) or not np.all(np.isfinite(tau)):
            got["bad"] += 1
        elif tau.size:
            got["max_abs"] = max(got["max_abs"], float(np.abs(tau).max()))

    node.create_subscription(Float64MultiArray, "/effort_controller/commands", on_command, 10)
    t0 = node.get_clock().now().nanoseconds
    yy, xx = np.mgrid[0:args.height, 0:args.width].astype(np.float32)

    def publish_joints():
        now = node.get_clock().now()
        t = (now.nanoseconds - t0) * 1e-9
        msg = JointState()
        msg.header.stamp = now.to_msg()
        msg.name = list(ALL_JOINTS)
        wave = {n: 0.1 * math.sin(0.5 * t + i) for i, n in enumerate(RIGHT_ARM)}
        msg.position = [NEUTRAL.get(n, 0.0) + wave.get(n, 0.0) for n in ALL_JOINTS]
        msg.velocity = [0.05 * math.cos(0.5 * t + RIGHT_ARM.index(n)) if n in wave else 0.0 for n in ALL_JOINTS]
        msg.effort = [0.0] * len(ALL_JOINTS)
        pub_js.publish(msg)

    def publish_image():
        now = node.get_clock().now()
        t = (now.nanoseconds - t0) * 1e-9
        cx = args.width * (0.5 + 0.3 * math.cos(0.7 * t))
        cy = args.height * (0.5 + 0.3 * math.sin(0.7 * t))
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.08 * args.width) ** 2))
        rgb = np.empty((args.height, args.width, 3), np.uint8)
        rgb[..., 0] = (60 + 190 * blob).astype(np.uint8)
        rgb[..., 1] = (90 + 40 * (yy / args.height)).astype(np.uint8)
        rgb[..., 2] = (120 * (1 - blob)).astype(np.uint8)
        msg = Image()
        msg.header.stamp = now.to_msg()
        msg.header.frame_id = "right_hand_camera"
        msg.height, msg.width, msg.encoding, msg.is_bigendian = args.height, args.width, "rgb8", 0
        msg.step = 3 * args.width
        msg.data = rgb.tobytes()
        pub_img.publish(msg)

    node.create_timer(1.0 / args.joint_rate, publish_joints)
    node.create_timer(1.0 / args.camera_rate, publish_image)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print(f"fake_baxter: publishing {args.joint_topic} ({len(ALL_JOINTS)} joints) and {args.image_topic} "
          f"({args.width}x{args.height} rgb8)", flush=True)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        print(f"fake_baxter: received {got['commands']} commands ({got['bad']} malformed, "
              f"max |torque| {got['max_abs']:.3f} N·m)", flush=True)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
