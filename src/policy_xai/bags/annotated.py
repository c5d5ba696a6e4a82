"""Writing bags: the MCAP writer with chunk compression (also the recorder's) and the annotated bag
(the original messages merged with the explanation topics)."""
from __future__ import annotations

import heapq
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .common import JOINT_TYPE, BagError
from .observations import Observations
from .source import BagSource

#: metadata.yaml custom_data key/value that marks a bag written by `analyze` (only such a bag is ever
#: replaced by a later `analyze` into the same --out)
ANNOTATED_MARK = ("policy_xai", "annotated bag written by policy-xai analyze")
COMPRESSIONS = ("zstd", "lz4", "none")


def bag_writer(path: "str | Path", compression: str = "zstd", version: int = 9):
    """A rosbags MCAP Writer (not opened) with MCAP chunk compression, as rosbag2's MCAP storage writes
    it: each ~1 MB chunk compressed with zstd or lz4 (readers decompress chunk by chunk; the bag stays
    seekable). "none" writes uncompressed chunks. metadata.yaml keeps compression_mode '' (the
    compression is inside the storage file, as with rosbag2's MCAP storage presets)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

    if compression not in COMPRESSIONS:
        raise BagError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    w = Writer(Path(path), version=version, storage_plugin=StoragePlugin.MCAP)
    if compression != "none":
        w.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    return w


def set_chunk_compressor(w, compression: str) -> None:
    """After `w.open()`: rosbags' MCAP writer compresses chunks with zstd only; for lz4 its chunk
    compressor is swapped for lz4 frames (the format of MCAP's "lz4" chunks)."""
    if compression != "lz4":
        return
    import lz4.frame

    storage = w.storage
    if not (hasattr(storage, "compressor") and getattr(storage, "compression", None) == "zstd"):
        raise BagError("this rosbags version does not allow lz4 chunk compression; use zstd")
    storage.compression, storage.compressor = "lz4", lz4.frame.compress


def open_bag_writer(path: "str | Path", compression: str = "zstd", version: int = 9):
    """bag_writer(...), opened, with the chunk compressor set."""
    w = bag_writer(path, compression, version)
    w.open()
    try:
        set_chunk_compressor(w, compression)
    except BagError:
        w.close()
        raise
    return w


def is_annotated_bag(path: "str | Path") -> bool:
    """True for a bag folder that `analyze` wrote (marked in its metadata.yaml)."""
    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return False
    try:
        import yaml

        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        return (info.get("custom_data") or {}).get(ANNOTATED_MARK[0]) == ANNOTATED_MARK[1]
    except Exception:  # noqa: BLE001 - unreadable metadata: not ours
        return False


def remove_annotated_bag(path: "str | Path") -> None:
    """Delete an earlier `analyze` output bag at `path` (nothing else: a bag without the mark raises)."""
    path = Path(path)
    if not path.exists():
        return
    if not is_annotated_bag(path):
        raise BagError(f"{path} exists and was not written by policy-xai analyze; it is left alone")
    shutil.rmtree(path)
def explanation_messages(ts, res, obs: Observations, spec, methods: Sequence[str], topics: dict):
    """(log time, topic, type, CDR bytes) of the attribution node's topics for every step, first method
    under the live names; further methods under <ratios topic>/<method> etc."""
    from ..live import config_feature_names
    from ..messages import image_fields, joint_state_fields, sec_nanosec

    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    JS, Image = T[JOINT_TYPE], T["sensor_msgs/msg/Image"]
    cfg_names = config_feature_names(spec)
    empty = np.zeros(0, np.float64)

    def header(s, frame=""):
        sec, nanosec = sec_nanosec(s)
        return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame)

    def named(s, names, pos, vel=empty, eff=empty):
        msg = JS(header=header(s), **joint_state_fields(names, pos, vel, eff))
        return ts.serialize_cdr(msg, JOINT_TYPE)

    def image(s, frame, arr):  # the encoder of the attribution node's relevance image (32FC1)
        f = image_fields(arr)
        msg = Image(header=header(s, frame), **{**f, "data": np.frombuffer(f["data"], np.uint8)})
        return ts.serialize_cdr(msg, "sensor_msgs/msg/Image")

    for i in range(len(obs)):
        s, t = int(obs.stamps[i]), int(obs.log_times[i])
        for k, m in enumerate(methods):
            ser = res.methods[m]
            suffix = "" if k == 0 else f"/{m}"
            yield t, topics["relevance_image"] + suffix, "sensor_msgs/msg/Image", \
                image(s, obs.frame_ids[i], ser.image[i])
            yield t, topics["relevance_config"] + suffix, JOINT_TYPE, named(s, cfg_names, ser.config[i])
            fp = res.feature_points[i]
            yield t, topics["relevance_points"] + suffix, JOINT_TYPE, named(
                s, [f"point_{p:02d}" for p in range(len(ser.points[i]))], ser.points[i], fp[:, 0], fp[:, 1])
            r = ser.ratios[i]
            if np.all(np.isfinite(r)):
                yield t, topics["ratios"] + suffix, JOINT_TYPE, named(s, ser.ratio_names, r)
            else:
                yield t, topics["ratios"] + suffix, JOINT_TYPE, named(s, [], empty)
        yield t, topics["importance"], JOINT_TYPE, named(s, spec.joint_names, res.alpha[i])


def write_annotated_bag(bag: BagSource, out: "str | Path", explanation, ts, topics: dict,
                        recorded_prefix: str = "/recorded", start_ns: Optional[int] = None,
                        end_ns: Optional[int] = None, compression: str = "zstd") -> dict:
    """A new MCAP bag (chunks compressed with `compression`): every readable original message
    (original log times and bytes) merged in log-time order with the explanation messages. Original
    explanation topics are renamed <prefix><name>. Returns message counts per topic and the topics left
    out (no message definition)."""
    out = Path(out)
    if out.exists():
        raise BagError(f"{out} exists; delete it or choose another output folder")
    src = {Path(f).resolve() for f in bag.files} | {bag.path.resolve()}
    if any(out.resolve() == p or out.resolve() in p.parents for p in src):
        raise BagError(f"{out} is (or holds) the input bag {bag.path}; the input is never overwritten")
    explanation = sorted(explanation, key=lambda m: m[0])
    new_topics = {}
    for _, name, typ, _ in explanation:
        new_topics.setdefault(name, typ)
    rename = {n: recorded_prefix + n for n in bag.topics if n in new_topics}
    counts: dict[str, int] = {}
    left_out = {}
    w = bag_writer(out, compression)
    w.set_custom_data(*ANNOTATED_MARK)
    with w:
        set_chunk_compressor(w, compression)
        conns = {}
        for t in bag.topics.values():
            name = rename.get(t.name, t.name)
            try:
                if t.msgtype in ts.types:
                    conns[t.name] = w.add_connection(name, t.msgtype, typestore=ts, offered_qos_profiles=t.qos,
                                                     serialization_format=t.serialization_format)
                elif t.msgdef and t.digest:
                    conns[t.name] = w.add_connection(name, t.msgtype, msgdef=t.msgdef, rihs01=t.digest,
                                                     offered_qos_profiles=t.qos,
                                                     serialization_format=t.serialization_format)
                else:
                    left_out[t.name] = f"type {t.msgtype} has no definition in the bag or the typestore"
            except Exception as e:  # noqa: BLE001
                left_out[t.name] = f"{type(e).__name__}: {e}"
        new_conns = {n: w.add_connection(n, typ, typestore=ts) for n, typ in new_topics.items()}

        def original():
            for topic, t, raw in bag.messages(sorted(conns)):
                if (start_ns is None or t >= start_ns) and (end_ns is None or t <= end_ns):
                    yield t, 0, topic, raw

        def added():
            for t, name, _, raw in explanation:
                yield t, 1, name, raw

        for t, kind, topic, raw in heapq.merge(original(), added(), key=lambda m: (m[0], m[1])):
            c = conns[topic] if kind == 0 else new_conns[topic]
            w.write(c, t, raw)
            counts[c.topic] = counts.get(c.topic, 0) + 1
    return {"path": str(out), "counts": counts, "renamed": rename, "left_out": left_out, "compression": compression,
            "bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file())}
