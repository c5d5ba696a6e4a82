"""numpy <-> ROS 2 messages, without cv_bridge.

The array logic and the field layouts live in the core (policy_xai.messages: `decode_image`,
`encode_image`, `select_joints`, ..., shared with the bag readers and writers) and are re-exported
here; the `*_msg` wrappers below import the message classes (not rclpy) when called. Every decoder
raises ConversionError with a message that says what was wrong; nodes log it and report it on
/diagnostics instead of crashing.
"""
from __future__ import annotations

import array
from typing import Mapping, Sequence

import numpy as np

from ..messages import (  # noqa: F401 - re-exported
    COLOUR_ENCODINGS, ENCODINGS, ConversionError, decode_image, encode_image, float_image_from_msg, image_fields,
    joint_arrays, joint_state_fields, matched_counts, named_vector_from_msg, rgb_from_msg, sec_nanosec,
    select_joints, stamp_to_ns, to_rgb,
)


def ns_to_stamp(ns: int):
    from builtin_interfaces.msg import Time

    sec, nanosec = sec_nanosec(ns)
    return Time(sec=sec, nanosec=nanosec)


def _bytes_array(b: bytes) -> array.array:
    a = array.array("B")
    a.frombytes(b)
    return a


# ---- images (messages) ------------------------------------------------------------------------
def image_msg(arr: np.ndarray, stamp_ns: int, frame_id: str = ""):
    from sensor_msgs.msg import Image

    f = image_fields(arr)
    msg = Image(height=f["height"], width=f["width"], encoding=f["encoding"], is_bigendian=f["is_bigendian"],
                step=f["step"])
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = _bytes_array(f["data"])
    return msg


# ---- joint states and named vectors -------------------------------------------------------------
def joint_state_msg(stamp_ns: int, names: Sequence[str], position=(), velocity=(), effort=(), frame_id: str = ""):
    from sensor_msgs.msg import JointState

    f = joint_state_fields(names, position, velocity, effort)
    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.name = f["name"]
    msg.position = [float(x) for x in f["position"]]
    msg.velocity = [float(x) for x in f["velocity"]]
    msg.effort = [float(x) for x in f["effort"]]
    return msg


def named_vector_msg(stamp_ns: int, names: Sequence[str], values, frame_id: str = "", **extra):
    """A named vector as JointState: name[i] names position[i]; extra velocity=/effort= arrays."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) != len(names):
        raise ConversionError(f"{len(names)} names for {len(values)} values")
    return joint_state_msg(stamp_ns, names, position=values, frame_id=frame_id, **extra)


def float_array_msg(values):
    from std_msgs.msg import Float64MultiArray

    msg = Float64MultiArray()
    msg.data = [float(x) for x in np.asarray(values, dtype=np.float64).ravel()]
    return msg


def camera_info_msg(fields: Mapping[str, object], stamp_ns: int, frame_id: str = ""):
    """sensor_msgs/CameraInfo from policy_xai.observation.camera_info_fields (height, width,
    distortion_model, d, k, r, p) and a header."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(**fields)
    info.header.stamp = ns_to_stamp(stamp_ns)
    info.header.frame_id = frame_id
    return info


def mapping_to_key_values(d: Mapping[str, object]):
    from diagnostic_msgs.msg import KeyValue

    out = []
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        out.append(KeyValue(key=str(k), value=str(v)))
    return out

