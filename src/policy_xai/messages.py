"""numpy <-> ROS 2 message fields, shared by the rclpy path (policy_xai.ros.convert, the nodes) and the
rosbags path (policy_xai.bags: reading and writing bags) - core: no rclpy, no message classes.

The array logic works on plain values (`decode_image`, `encode_image`, `select_joints`) and on any
object with the message's fields (an rclpy message or a rosbags one): `rgb_from_msg`,
`joint_arrays`, `named_vector_from_msg`. `image_fields` / `joint_state_fields` are the field layouts
of the messages policy_xai publishes (the encoders both paths build their messages from). Every
decoder raises ConversionError with a message that says what was wrong.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .policy import ObservationError


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



def sec_nanosec(ns: int) -> tuple[int, int]:
    """ns -> (sec, nanosec) of a builtin_interfaces/Time."""
    ns = int(ns)
    return ns // 1_000_000_000, ns % 1_000_000_000


def image_fields(arr: np.ndarray) -> dict:
    """sensor_msgs/Image fields (without the header) of an array, as encode_image encodes it."""
    h, w, enc, step, data = encode_image(arr)
    return {"height": h, "width": w, "encoding": enc, "is_bigendian": 0, "step": step, "data": data}


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



def joint_state_fields(names: Sequence[str], position=(), velocity=(), effort=()) -> dict:
    """sensor_msgs/JointState fields (without the header): names as str, values as float64 arrays."""
    def arr(x):
        return np.asarray(x, dtype=np.float64).ravel()

    return {"name": [str(n) for n in names], "position": arr(position), "velocity": arr(velocity),
            "effort": arr(effort)}


def named_vector_from_msg(msg, field: str = "position") -> tuple[list[str], np.ndarray]:
    values = np.asarray(getattr(msg, field), dtype=np.float64)
    if len(values) != len(msg.name):
        raise ConversionError(f"named vector has {len(msg.name)} names but {len(values)} {field} values")
    return list(msg.name), values



def matched_counts(diagnostic_array) -> dict[str, dict[str, str]]:
    """node name -> {topic: matched subscriptions} from a DiagnosticArray of policy_xai nodes (the
    `matched<topic>` values every node publishes)."""
    out = {}
    for st in diagnostic_array.status:
        counts = {kv.key[len("matched"):]: kv.value for kv in st.values if kv.key.startswith("matched/")}
        if counts:
            out[st.name.split("/")[-1]] = counts
    return out

