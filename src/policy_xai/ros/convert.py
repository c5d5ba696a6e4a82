"""numpy <-> ROS 2 messages, without cv_bridge.

The array logic lives in plain functions on plain values (`decode_image`, `encode_image`,
`select_joints`) so it is testable without ROS; the `*_msg` / `*_from_msg` wrappers import the
message classes (not rclpy) when called. Every decoder raises ConversionError with a message that
says what was wrong; nodes log it and report it on /diagnostics instead of crashing.
"""
from __future__ import annotations

import array
from typing import Mapping, Sequence

import numpy as np

from ..policy import ObservationError


class ConversionError(ObservationError):
    """A message that cannot be turned into the array a node needs."""


#: encoding -> (channels, numpy dtype)
ENCODINGS = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8), "32FC1": (1, np.float32),
}
#: the encodings a camera image may have (what the policy and visualisation nodes take)
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")


# ---- images (pure) --------------------------------------------------------------------------
def decode_image(height: int, width: int, encoding: str, step: int, data, is_bigendian: bool = False) -> np.ndarray:
    """Image fields -> (H, W, C) array (uint8 for 8-bit encodings, float32 for 32FC1); copies."""
    if encoding not in ENCODINGS:
        raise ConversionError(f"image encoding {encoding!r} not supported (supported: {', '.join(ENCODINGS)})")
    ch, dtype = ENCODINGS[encoding]
    itemsize = np.dtype(dtype).itemsize
    if height <= 0 or width <= 0:
        raise ConversionError(f"image has no pixels ({width}x{height})")
    row = width * ch * itemsize
    if step < row:
        raise ConversionError(f"image step {step} is smaller than width*channels*bytes = {row}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size != step * height:
        raise ConversionError(f"image data has {buf.size} bytes, expected step*height = {step * height}")
    rows = buf.reshape(height, step)[:, :row]
    dt = np.dtype(dtype).newbyteorder(">" if is_bigendian else "<") if itemsize > 1 else np.dtype(dtype)
    out = np.ascontiguousarray(rows).view(dt).reshape(height, width, ch).astype(dtype, copy=True)
    return out


def to_rgb(arr: np.ndarray, encoding: str) -> np.ndarray:
    """A decoded 8-bit image in any supported colour encoding -> (H, W, 3) uint8 RGB."""
    if encoding == "rgb8":
        return arr
    if encoding == "bgr8":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(arr[:, :, :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    if encoding == "mono8":
        return np.repeat(arr, 3, axis=2)
    raise ConversionError(f"image encoding {encoding!r} is not a colour image")


def encode_image(arr: np.ndarray) -> tuple[int, int, str, int, bytes]:
    """(H, W, 3) uint8 -> rgb8, or (H, W) / (H, W, 1) float -> 32FC1: (height, width, encoding, step, bytes)."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 3 and a.dtype == np.uint8:
        enc = "rgb8"
    elif (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 1)) and np.issubdtype(a.dtype, np.floating):
        a = a.reshape(a.shape[0], a.shape[1]).astype("<f4", copy=False)
        enc = "32FC1"
    else:
        raise ConversionError(f"cannot encode an array of shape {a.shape} and dtype {a.dtype} "
                              "(rgb8 needs HxWx3 uint8, 32FC1 needs HxW float)")
    a = np.ascontiguousarray(a)
    h, w = a.shape[:2]
    return h, w, enc, a.nbytes // h, a.tobytes()


# ---- stamps ------------------------------------------------------------------------------------
def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int):
    from builtin_interfaces.msg import Time

    ns = int(ns)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _bytes_array(b: bytes) -> array.array:
    a = array.array("B")
    a.frombytes(b)
    return a


# ---- images (messages) ------------------------------------------------------------------------
def image_msg(arr: np.ndarray, stamp_ns: int, frame_id: str = ""):
    from sensor_msgs.msg import Image

    h, w, enc, step, data = encode_image(arr)
    msg = Image(height=h, width=w, encoding=enc, is_bigendian=0, step=step)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = _bytes_array(data)
    return msg


def rgb_from_msg(msg) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB."""
    if msg.encoding not in COLOUR_ENCODINGS:
        raise ConversionError(f"camera image encoding {msg.encoding!r} not supported (supported: "
                              f"{', '.join(COLOUR_ENCODINGS)})")
    arr = decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))
    return to_rgb(arr, msg.encoding)


def float_image_from_msg(msg) -> np.ndarray:
    """sensor_msgs/Image 32FC1 -> (H, W) float32."""
    if msg.encoding != "32FC1":
        raise ConversionError(f"expected a 32FC1 image, got {msg.encoding!r}")
    return decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))[:, :, 0]


# ---- joint states and named vectors -------------------------------------------------------------
def select_joints(names: Sequence[str], values: Sequence[float], wanted: Sequence[str],
                  what: str = "position") -> np.ndarray:
    """Values of the `wanted` joints (in that order) out of a (names, values) pair."""
    names = list(names)
    if len(values) != len(names):
        raise ConversionError(f"joint state has {len(names)} names but {len(values)} {what} values")
    index = {n: i for i, n in enumerate(names)}
    if len(index) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConversionError(f"joint state names {dup} more than once (names: {names})")
    missing = [n for n in wanted if n not in index]
    if missing:
        raise ConversionError(f"joint state lacks joints {missing} (it has {names}); the policy needs {list(wanted)}")
    out = np.array([values[index[n]] for n in wanted], dtype=np.float64)
    if not np.all(np.isfinite(out)):
        bad = [n for n, x in zip(wanted, out) if not np.isfinite(x)]
        raise ConversionError(f"joint state {what} is NaN/inf for {bad}")
    return out


def joint_arrays(msg, wanted: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """sensor_msgs/JointState -> (q, v) of the `wanted` joints; velocity required."""
    q = select_joints(msg.name, msg.position, wanted, "position")
    if len(msg.velocity) == 0:
        raise ConversionError("joint state has no velocities; the policy needs them")
    v = select_joints(msg.name, msg.velocity, wanted, "velocity")
    return q, v


def joint_state_msg(stamp_ns: int, names: Sequence[str], position=(), velocity=(), effort=(), frame_id: str = ""):
    from sensor_msgs.msg import JointState

    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.header.frame_id = frame_id
    msg.name = [str(n) for n in names]
    msg.position = [float(x) for x in np.asarray(position, dtype=np.float64).ravel()]
    msg.velocity = [float(x) for x in np.asarray(velocity, dtype=np.float64).ravel()]
    msg.effort = [float(x) for x in np.asarray(effort, dtype=np.float64).ravel()]
    return msg


def named_vector_msg(stamp_ns: int, names: Sequence[str], values, frame_id: str = "", **extra):
    """A named vector as JointState: name[i] names position[i]; extra velocity=/effort= arrays."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) != len(names):
        raise ConversionError(f"{len(names)} names for {len(values)} values")
    return joint_state_msg(stamp_ns, names, position=values, frame_id=frame_id, **extra)


def named_vector_from_msg(msg, field: str = "position") -> tuple[list[str], np.ndarray]:
    values = np.asarray(getattr(msg, field), dtype=np.float64)
    if len(values) != len(msg.name):
        raise ConversionError(f"named vector has {len(msg.name)} names but {len(values)} {field} values")
    return list(msg.name), values


def float_array_msg(values):
    from std_msgs.msg import Float64MultiArray

    msg = Float64MultiArray()
    msg.data = [float(x) for x in np.asarray(values, dtype=np.float64).ravel()]
    return msg


def matched_counts(diagnostic_array) -> dict[str, dict[str, str]]:
    """node name -> {topic: matched subscriptions} from a DiagnosticArray of policy_xai nodes (the
    `matched<topic>` values every node publishes)."""
    out = {}
    for st in diagnostic_array.status:
        counts = {kv.key[len("matched"):]: kv.value for kv in st.values if kv.key.startswith("matched/")}
        if counts:
            out[st.name.split("/")[-1]] = counts
    return out


def mapping_to_key_values(d: Mapping[str, object]):
    from diagnostic_msgs.msg import KeyValue

    out = []
    for k, v in d.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        out.append(KeyValue(key=str(k), value=str(v)))
    return out

