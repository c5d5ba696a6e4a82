"""Robot-like and damaged bags for tests and benchmarks."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..topics import topic_name
from .common import JOINT_TYPE, typestore
from .source import _storage_files

def write_synthetic_bag(path: "str | Path", spec, steps: int = 40, storage: str = "mcap", rate: float = 20.0,
                        seed: int = 0, image_size: Optional[tuple] = None, encoding: str = "rgb8",
                        start_ns: int = 1_700_000_000_000_000_000, gap_after: Optional[int] = None,
                        gap_s: float = 1.0, joint_names: Optional[Sequence[str]] = None,
                        extra_joints: Sequence[str] = ("head_pan",),
                        step_order: Optional[Sequence[int]] = None) -> Path:
    """A robot-like recording written with rosbags: /camera/image_raw (moving blob images from
    policy_xai.synthetic) and /joint_states (the policy's joints plus `extra_joints`, another order)
    with the same stamps, logged in arrival order (joint state first). For tests and benchmarks.
    `step_order[k]`: the stamp (in periods after the start) of the k-th logged step, for stamps out
    of order or restarting (log times keep increasing one period per step)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from ..synthetic import synthetic_observations

    ts = typestore()
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    images, configs = synthetic_observations(spec, steps, seed=seed)
    if image_size is not None and tuple(image_size) != images.shape[1:3][::-1]:
        import cv2

        images = np.stack([cv2.resize(im, tuple(image_size), interpolation=cv2.INTER_LINEAR) for im in images])
    sl = spec.group_slices()
    q = configs[:, sl["joint_position"]]
    v = configs[:, sl["joint_velocity"]] if "joint_velocity" in sl else np.zeros_like(q)
    names = list(joint_names or spec.joint_names)
    all_names = list(extra_joints) + names[::-1]
    plug = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    period = int(1e9 / rate)
    path = Path(path)
    with Writer(path, version=9, storage_plugin=plug) as w:
        ci = w.add_connection(topic_name("image"), "sensor_msgs/msg/Image", typestore=ts)
        cj = w.add_connection(topic_name("joint_states"), JOINT_TYPE, typestore=ts)
        t = start_ns
        if step_order is not None and len(step_order) != steps:
            raise ValueError(f"step_order has {len(step_order)} entries for {steps} steps")
        for i in range(steps):
            if gap_after is not None and i == gap_after + 1:
                t += int(gap_s * 1e9)
            st = t if step_order is None else start_ns + int(step_order[i]) * period
            hdr = Header(stamp=Time(sec=st // 1_000_000_000, nanosec=st % 1_000_000_000), frame_id="camera")
            im = images[i]
            if encoding == "bgr8":
                im = im[:, :, ::-1]
            elif encoding == "mono8":
                im = im.mean(axis=2, keepdims=True).astype(np.uint8)
            im = np.ascontiguousarray(im)
            img = T["sensor_msgs/msg/Image"](header=hdr, height=im.shape[0], width=im.shape[1], encoding=encoding,
                                             is_bigendian=0, step=im.shape[1] * im.shape[2],
                                             data=im.reshape(-1).view(np.uint8))
            pos = dict(zip(names, q[i])) | {n: 0.0 for n in extra_joints}
            vel = dict(zip(names, v[i])) | {n: 0.0 for n in extra_joints}
            js = T[JOINT_TYPE](header=Header(stamp=hdr.stamp, frame_id=""), name=all_names,
                               position=np.array([pos[n] for n in all_names]),
                               velocity=np.array([vel[n] for n in all_names]), effort=np.zeros(0))
            w.write(cj, t + 300_000, ts.serialize_cdr(js, JOINT_TYPE))
            w.write(ci, t + 2_000_000, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            t += period
    return path


def truncate_bag(src: "str | Path", dst: "str | Path", fraction: float = 0.6, keep_metadata: bool = True) -> Path:
    """A copy of a bag whose storage file is cut after `fraction` of its bytes (a crash mid-write)."""
    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst)
    if not keep_metadata and (dst / "metadata.yaml").exists():
        (dst / "metadata.yaml").unlink()
    for f in _storage_files(dst):
        data = f.read_bytes()
        f.write_bytes(data[:int(len(data) * fraction)])
    return dst
