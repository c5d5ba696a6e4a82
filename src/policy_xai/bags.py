"""Rosbag2 recordings -> explanations, tables, figures and an annotated bag (plain Python, no rclpy).

Reads bags written by `ros2 bag record`, by policy_xai's recorder or by `rosbags` (sqlite3 and MCAP)
with the `rosbags` library, and - when a bag was cut off mid-write (crash, full disk, kill -9) -
with a tolerant fallback that reads what is readable and says where it stops:

* MCAP: the records are scanned from the start; every complete chunk is used, the scan stops at the
  first incomplete record.
* sqlite3: the database file is copied to a temporary folder, its header's page count is set to what
  the file really holds, and the messages are read in insertion order until SQLite meets a missing
  page.

Observations are paired the way the live pipeline pairs them (policy_xai.live.StampSync):

* "observation" source: the policy node's own /policy_xai/observation/{image,config} (exact stamps,
  the image and configuration vector the network really took), used when the bag holds them;
* "raw" source: camera image + joint states with the policy node's sync tolerance, the configuration
  built by live.ConfigBuilder (end-effector groups from the robot model).

Topic names default to the live pipeline's (policy_xai.ros.interfaces). Message types: the
ROS2_KILTED typestore, extended with the definitions stored in the bag.
"""
from __future__ import annotations

import heapq
import math
import shutil
import sqlite3
import struct
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from .ros import interfaces as itf

MCAP_MAGIC = b"\x89MCAP0\r\n"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
JOINT_TYPE = "sensor_msgs/msg/JointState"


class BagError(ValueError):
    """A bag that cannot be analysed as asked (missing topics, wrong types, unreadable)."""


def default_topics() -> dict[str, str]:
    """Topic key -> name, as the live pipeline declares them."""
    keys = ("image", "joint_states", "obs_image", "obs_config", "torques", "relevance_image", "relevance_config",
            "relevance_points", "ratios", "importance", "diagnostics")
    return {k: itf.topic_name(k) for k in keys}


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


# ==== reading ==================================================================================
@dataclass
class TopicInfo:
    name: str
    msgtype: str
    count: int = 0
    msgdef: Optional[str] = None
    msgdef_format: str = "ros2msg"
    digest: str = ""
    qos: list = field(default_factory=list)
    serialization_format: str = "cdr"


@dataclass
class ReadProblem:
    """Where a damaged bag stops being readable."""

    reason: str
    file: str = ""
    byte_offset: Optional[int] = None  # MCAP: start of the first unreadable record
    file_size: Optional[int] = None
    last_row: Optional[int] = None  # sqlite3: last readable message row id
    last_log_time: Optional[int] = None

    def describe(self, start_ns: Optional[int] = None) -> str:
        where = []
        if self.byte_offset is not None:
            where.append(f"byte {self.byte_offset} of {self.file_size}")
        if self.last_row is not None:
            where.append(f"message row {self.last_row}")
        if self.last_log_time is not None:
            rel = f" ({(self.last_log_time - start_ns) * 1e-9:.3f} s after the start)" if start_ns else ""
            where.append(f"last readable message at log time {self.last_log_time}{rel}")
        if self.last_log_time is None:
            where.append("no message is readable")
        return f"{Path(self.file).name}: {self.reason}" + f" - stops at {', '.join(where)}"


def _storage_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"bag not found: {path}")
    files = []
    meta = path / "metadata.yaml"
    if meta.is_file():
        try:
            import yaml

            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
            files = [path / p for p in info.get("relative_file_paths") or [] if (path / p).is_file()]
        except Exception:  # noqa: BLE001 - a broken metadata.yaml: fall back to the folder's files
            files = []
    if not files:
        files = sorted(p for p in path.iterdir() if p.suffix in (".mcap", ".db3"))
    if not files:
        have = sorted(p.name for p in path.iterdir())
        raise BagError(f"{path} holds no .mcap or .db3 storage file (it has {have})")
    return files


class BagSource:
    """Topics and messages of one rosbag2 bag (folder, or a single .mcap / .db3 file).

    `reader` tells how it was read: "rosbags" (intact bag), "mcap-scan" or "sqlite-recover" (damaged
    or metadata-less bag); `problem` says where a damaged bag stops. Messages come as
    (topic, log time ns, raw CDR bytes), in log-time order for intact bags and in file order otherwise.
    """

    def __init__(self, path: "str | Path"):
        self.path = Path(path)
        self.files = _storage_files(self.path)
        self.storage = "mcap" if self.files[0].suffix == ".mcap" else "sqlite3"
        self.problem: Optional[ReadProblem] = None
        self.open_error: Optional[str] = None
        self.topics: dict[str, TopicInfo] = {}
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self.start_ns: Optional[int] = None
        self.end_ns: Optional[int] = None
        self.message_count = 0
        self.reader = "rosbags"
        try:
            self._open_rosbags()
        except Exception as e:  # noqa: BLE001 - rosbags raises several error kinds on damaged bags
            self.open_error = f"{type(e).__name__}: {e}"
            self.reader = "mcap-scan" if self.storage == "mcap" else "sqlite-recover"
            self._open_fallback()

    # ---- intact bags: rosbags ------------------------------------------------------------------
    def _open_rosbags(self) -> None:
        from rosbags.highlevel import AnyReader

        if self.path.is_file() or not (self.path / "metadata.yaml").is_file():
            raise BagError("no metadata.yaml")
        self._any = AnyReader([self.path])
        self._any.open()
        for c in self._any.connections:
            self._add_topic(c.topic, c.msgtype, c.msgcount, getattr(c.msgdef, "data", None),
                            "ros2idl" if "IDL" in str(getattr(c.msgdef, "format", "")) else "ros2msg",
                            c.digest, list(getattr(c.ext, "offered_qos_profiles", []) or []),
                            getattr(c.ext, "serialization_format", "cdr"))
        if self._any.message_count:
            self.start_ns, self.end_ns = self._any.start_time, self._any.end_time - 1
        self.message_count = self._any.message_count

    def _add_topic(self, name, msgtype, count, msgdef, fmt, digest, qos, ser) -> None:
        t = self.topics.get(name)
        if t is None:
            self.topics[name] = TopicInfo(name, msgtype, int(count), msgdef or None, fmt, digest or "", qos, ser)
        elif t.msgtype == msgtype:
            t.count += int(count)
        else:
            warnings.warn(f"topic {name} has two types ({t.msgtype}, {msgtype}); using {t.msgtype}")

    # ---- damaged bags ----------------------------------------------------------------------------
    def _open_fallback(self) -> None:
        counts: dict[str, int] = {}
        first = last = None
        n = 0
        for topic, t, _ in self._raw_fallback(meta=True):
            counts[topic] = counts.get(topic, 0) + 1
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
            n += 1
        for name, c in counts.items():
            self.topics[name].count = c
        self.start_ns, self.end_ns, self.message_count = first, last, n
        if self.problem is None and self.open_error and "metadata.yaml" not in self.open_error:
            self.problem = ReadProblem(f"not readable as an intact bag ({self.open_error})", str(self.files[0]))
        if self.problem is not None:
            self.problem.last_log_time = last

    def _raw_fallback(self, meta: bool) -> Iterator[tuple[str, int, bytes]]:
        for f in self.files:
            if f.suffix == ".mcap":
                yield from self._scan_mcap(f, meta)
            else:
                yield from self._recover_sqlite(f, meta)

    def _scan_mcap(self, f: Path, meta: bool) -> Iterator[tuple[str, int, bytes]]:
        from rosbags.rosbag2.storage_mcap import decompress

        size = f.stat().st_size
        schemas: dict[int, tuple[str, str, str]] = {}
        channels: dict[int, str] = {}

        def fail(reason: str, offset: int) -> None:
            if meta and self.problem is None:
                self.problem = ReadProblem(reason, str(f), offset, size)

        def records(buf: memoryview, base: int, top: bool):
            pos = 0
            while pos < len(buf):
                if len(buf) - pos < 9:
                    fail("the file ends inside a record header", base + pos)
                    return
                op = buf[pos]
                (length,) = struct.unpack_from("<Q", buf, pos + 1)
                if pos + 9 + length > len(buf):
                    fail(f"the file ends inside a record (opcode 0x{op:02x}, {length} bytes)", base + pos)
                    return
                yield op, buf[pos + 9:pos + 9 + length], base + pos
                pos += 9 + length
                if top and op == 0x0F:  # data end: the summary follows
                    return

        def string(b: memoryview, p: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<I", b, p)
            return bytes(b[p + 4:p + 4 + n]).decode(), p + 4 + n

        def handle(op, rec, offset):
            if op == 0x03:  # schema
                (sid,) = struct.unpack_from("<H", rec, 0)
                name, p = string(rec, 2)
                enc, p = string(rec, p)
                (n,) = struct.unpack_from("<I", rec, p)
                schemas[sid] = (name, enc, bytes(rec[p + 4:p + 4 + n]).decode(errors="replace"))
            elif op == 0x04:  # channel
                cid, sid = struct.unpack_from("<HH", rec, 0)
                topic, p = string(rec, 4)
                enc, p = string(rec, p)
                channels[cid] = topic
                if meta and topic not in self.topics:
                    name, fmt, data = schemas.get(sid, ("", "ros2msg", ""))
                    self.topics[topic] = TopicInfo(topic, name, 0, data or None, fmt or "ros2msg", "", [], enc)
            elif op == 0x05:  # message
                cid, _seq, log_time, _pub = struct.unpack_from("<HIQQ", rec, 0)
                if cid in channels:
                    return channels[cid], log_time, bytes(rec[22:])
            return None

        with open(f, "rb") as fh:
            data = memoryview(fh.read())
        if bytes(data[:8]) != MCAP_MAGIC:
            raise BagError(f"{f} is not an MCAP file (bad magic)")
        for op, rec, off in records(data[8:], 8, top=True):
            if op == 0x06:  # chunk
                start, end, usize, crc = struct.unpack_from("<QQQI", rec, 0)
                comp, p = string(rec, 28)
                (csize,) = struct.unpack_from("<Q", rec, p)
                try:
                    inner = decompress(bytes(rec[p + 8:p + 8 + csize]), comp, usize, crc)
                except Exception as e:  # noqa: BLE001
                    fail(f"chunk at byte {off} is damaged ({e})", off)
                    return
                for iop, irec, _ in records(memoryview(inner), off, top=False):
                    m = handle(iop, irec, off)
                    if m is not None:
                        yield m
            else:
                m = handle(op, rec, off)
                if m is not None:
                    yield m

    def _recover_sqlite(self, f: Path, meta: bool) -> Iterator[tuple[str, int, bytes]]:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="policy_xai_bag_")
        copy = Path(self._tmp.name) / f.name
        if not copy.exists():
            data = bytearray(f.read_bytes())
            if data[:16] != b"SQLite format 3\x00":
                raise BagError(f"{f} is not an SQLite database")
            (ps,) = struct.unpack(">H", data[16:18])
            ps = 65536 if ps == 1 else ps
            pages = len(data) // ps
            if pages == 0:
                raise BagError(f"{f} is shorter than one database page")
            del data[pages * ps:]
            data[28:32] = struct.pack(">I", pages)  # the page count the file really holds
            copy.write_bytes(bytes(data))
        con = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            cols = {r[1] for r in con.execute("PRAGMA table_info(topics)")}
            sel = ["id", "name", "type", "serialization_format"]
            sel += [c for c in ("offered_qos_profiles",) if c in cols]
            topics = {}
            for row in con.execute(f"SELECT {', '.join(sel)} FROM topics"):
                topics[row[0]] = row[1]
                if meta and row[1] not in self.topics:
                    self.topics[row[1]] = TopicInfo(row[1], row[2], 0, None, "ros2msg", "", [], row[3])
            if meta:
                try:
                    for typ, enc, text in con.execute(
                            "SELECT topic_type, encoding, encoded_message_definition FROM message_definitions"):
                        for t in self.topics.values():
                            if t.msgtype == typ and t.msgdef is None:
                                t.msgdef, t.msgdef_format = text, enc or "ros2msg"
                except sqlite3.DatabaseError:
                    pass  # older bags have no definitions table
            last = None
            try:
                for rid, tid, ts, blob in con.execute("SELECT id, topic_id, timestamp, data FROM messages ORDER BY id"):
                    last = rid
                    if tid in topics:
                        yield topics[tid], int(ts), bytes(blob)
            except sqlite3.DatabaseError as e:
                if meta and self.problem is None:
                    self.problem = ReadProblem(f"SQLite reports '{e}' (the file is cut off or damaged)", str(f),
                                               last_row=last)
        except sqlite3.DatabaseError as e:
            raise BagError(f"{f}: cannot read the topics of the bag ({e})") from e
        finally:
            con.close()

    # ---- messages ------------------------------------------------------------------------------
    def messages(self, topics: Optional[Sequence[str]] = None) -> Iterator[tuple[str, int, bytes]]:
        wanted = None if topics is None else set(topics)
        if self.reader == "rosbags":
            conns = [c for c in self._any.connections if wanted is None or c.topic in wanted]
            try:
                for c, t, raw in self._any.messages(connections=conns):
                    yield c.topic, t, raw
            except Exception as e:  # noqa: BLE001 - damage inside an indexed file
                if self.problem is None:
                    self.problem = ReadProblem(f"{type(e).__name__}: {e}", str(self.files[0]))
            return
        for topic, t, raw in self._raw_fallback(meta=False):
            if wanted is None or topic in wanted:
                yield topic, t, raw

    def describe_topics(self) -> str:
        topics = sorted(self.topics.values(), key=lambda t: t.name)
        return ", ".join(f"{t.name} ({t.msgtype}, {t.count})" for t in topics)

    def close(self) -> None:
        if self.reader == "rosbags":
            self._any.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "BagSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def register_bag_types(ts, topics: Sequence[TopicInfo]) -> list[str]:
    """Add the bag's own message definitions for types the typestore lacks; returns types still unknown."""
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    unknown = []
    for t in topics:
        if t.msgtype in ts.types:
            continue
        if not t.msgdef:
            unknown.append(t.msgtype)
            continue
        try:
            if t.msgdef_format == "ros2idl":
                ts.register(get_types_from_idl(t.msgdef))
            else:
                # rosbag2 concatenates the dependencies: "=====...\nMSG: pkg/msg/Name\n<definition>"
                parts = t.msgdef.split("\n" + "=" * 80 + "\n")
                types = get_types_from_msg(parts[0], t.msgtype)
                for part in parts[1:]:
                    head, _, body = part.partition("\n")
                    name = head.removeprefix("MSG: ").strip()
                    if "/msg/" not in name and "/" in name:
                        name = name.replace("/", "/msg/", 1)
                    types.update(get_types_from_msg(body, name))
                ts.register(types)
        except Exception:  # noqa: BLE001 - an unparsable definition: the type stays unknown
            unknown.append(t.msgtype)
    return sorted(set(unknown))


# ==== observations =============================================================================
def image_from_msg(msg, msgtype: str) -> tuple[np.ndarray, str]:
    """sensor_msgs Image (rgb8, bgr8, rgba8, bgra8, mono8) or CompressedImage -> ((H, W, 3) uint8 RGB, frame_id)."""
    from .ros.convert import decode_image, to_rgb

    if msgtype == "sensor_msgs/msg/CompressedImage":
        import cv2

        arr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if arr is None:
            raise BagError(f"compressed image (format {msg.format!r}) cannot be decoded by OpenCV")
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), msg.header.frame_id
    if msg.encoding == "32FC1":
        raise BagError("image encoding 32FC1 is a relevance/depth map, not a camera image")
    arr = decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data, bool(msg.is_bigendian))
    return to_rgb(arr, msg.encoding), msg.header.frame_id


@dataclass
class Observations:
    """What the policy saw, step by step, paired like the live nodes pair it."""

    source: str  # "observation" | "raw"
    stamps: np.ndarray  # (N,) int64 ns: observation stamps
    log_times: np.ndarray  # (N,) int64 ns: log time of the message that completed the pair
    images: np.ndarray  # (N, H, W, 3) uint8 at the policy's input size
    configs: np.ndarray  # (N, D) float64
    frame_ids: list
    recorded_torques: dict  # stamp -> (J,) torques the policy node published (observation source)
    unpaired: int = 0  # messages not used (StampSync dropped them)
    skipped: dict = field(default_factory=dict)  # reason -> count of messages that could not be used
    resized: int = 0
    original_size: Optional[tuple] = None
    #: observation topic -> how often its header stamps went backwards (log-time order)
    backwards: dict = field(default_factory=dict)
    largest_backward_ns: int = 0
    #: stamps of observation messages that arrived after a newer pair was used, not paired (as live)
    late_stamps: list = field(default_factory=list)
    jumps: int = 0  # pairing restarts at time jumps (clock restart, looped recording)

    def __len__(self) -> int:
        return int(len(self.stamps))


@dataclass
class LiveExplanations:
    """Explanation topics already in the bag (from a live attribution node), by stamp."""

    ratios: dict = field(default_factory=dict)  # stamp -> (names, values)
    relevance_config: dict = field(default_factory=dict)  # stamp -> values
    relevance_image: dict = field(default_factory=dict)  # stamp -> (H, W) float32
    importance: dict = field(default_factory=dict)  # stamp -> values
    methods: set = field(default_factory=set)  # attribution_node "method" seen on /diagnostics

    def __len__(self) -> int:
        return max(len(self.ratios), len(self.relevance_config), len(self.relevance_image), len(self.importance))


@dataclass
class ReadOptions:
    topics: dict  # key -> name (default_topics() with overrides)
    source: str = "auto"  # auto | observation | raw
    sync_tolerance: float = float(itf.NODES["policy_node"].parameters["sync_tolerance"])
    resize: bool = False
    robot: str = str(itf.NODES["policy_node"].parameters["robot"])
    start: float = 0.0  # s after the bag's first message
    duration: float = 0.0  # s; 0 = to the end
    max_steps: int = 0  # 0 = all
    #: s: a stamp this far behind the last pair (or ahead) restarts the pairing, as in the live nodes
    time_jump: float = float(itf.NODES["policy_node"].parameters.get("time_jump", 1.0))


def choose_source(bag: BagSource, opts: ReadOptions) -> str:
    T = opts.topics
    have = bag.topics
    obs = [T["obs_image"], T["obs_config"]]
    raw = [T["image"], T["joint_states"]]

    def usable(names):
        return all(n in have and have[n].count > 0 for n in names)

    if opts.source == "observation" or (opts.source == "auto" and usable(obs)):
        missing = [n for n in obs if n not in have or have[n].count == 0]
        if missing:
            raise BagError(f"the bag lacks the policy's observation topics {missing}; it has: {bag.describe_topics()}")
        return "observation"
    if opts.source not in ("auto", "raw"):
        raise BagError(f"source must be auto, observation or raw, got {opts.source!r}")
    missing = [n for n in raw if n not in have or have[n].count == 0]
    if missing:
        hint = " (use --image-topic / --joint-topic to name them)" if have else ""
        damage = f" ({bag.problem.describe(bag.start_ns)})" if bag.problem is not None else ""
        raise BagError(f"the bag has no messages on {missing}{hint}; it has: {bag.describe_topics() or 'no topics'}"
                       f"{damage}")
    return "raw"


def read_observations(bag: BagSource, spec, opts: ReadOptions, live: Optional[LiveExplanations] = None,
                      ts=None) -> Observations:
    """Decode and pair the bag's observations (and, into `live`, any explanation topics it holds)."""
    from . import live as lv
    from .ros.convert import ConversionError, joint_arrays, named_vector_from_msg, select_joints

    ts = ts or typestore()
    unknown = register_bag_types(ts, list(bag.topics.values()))
    source = choose_source(bag, opts)
    T = opts.topics
    if source == "observation":
        streams = {T["obs_image"]: "image", T["obs_config"]: "config", T["torques"]: "torques"}
    else:
        streams = {T["image"]: "image", T["joint_states"]: "joints"}
    for name, role in streams.items():
        if name not in bag.topics:
            continue
        typ = bag.topics[name].msgtype
        ok = IMAGE_TYPES if role == "image" else (JOINT_TYPE,)
        if typ not in ok:
            raise BagError(f"topic {name} has type {typ}; the {role} topic must be {' or '.join(ok)}")
    if unknown:
        warnings.warn(f"message types without a definition (not decodable, copied as bytes): {unknown}")
    live_topics = {}
    if live is not None:
        for k in ("ratios", "relevance_config", "relevance_image", "importance", "diagnostics"):
            if T[k] in bag.topics and bag.topics[T[k]].msgtype in ts.types:
                live_topics[T[k]] = k

    names = lv.config_feature_names(spec)
    builder = None
    if source == "raw":
        robot = None
        if any(g.startswith("ee_") for g in spec.group_names):
            robot = lv.RobotAdapter(spec, opts.robot)
        builder = lv.ConfigBuilder(spec, robot.ee if robot else None)
        sync = lv.StampSync(["image", "joints"], int(opts.sync_tolerance * 1e9), keep=10,
                            jump_ns=int(opts.time_jump * 1e9) if opts.time_jump else None)
    else:
        sync = lv.StampSync(["image", "config"], 0, keep=20,
                            jump_ns=int(opts.time_jump * 1e9) if opts.time_jump else None)
    last_stamp: dict = {}
    late: set = set()
    H, W = spec.image_height, spec.image_width
    out = Observations(source, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, H, W, 3), np.uint8),
                       np.zeros((0, spec.config_dim)), [], {})
    stamps, logs, images, configs, frames = [], [], [], [], []
    t0 = None if bag.start_ns is None else bag.start_ns + int(opts.start * 1e9)
    t1 = None if not opts.duration or t0 is None else t0 + int(opts.duration * 1e9)
    warned_resize = False

    def skip(reason: str) -> None:
        out.skipped[reason] = out.skipped.get(reason, 0) + 1

    wanted = set(streams) | set(live_topics)
    for topic, t, raw in bag.messages(sorted(wanted)):
        if t0 is not None and t < t0:
            continue
        if t1 is not None and t >= t1:
            break
        if opts.max_steps and len(stamps) >= opts.max_steps:
            break
        typ = bag.topics[topic].msgtype
        key = live_topics.get(topic)
        if key is not None:
            try:
                msg = ts.deserialize_cdr(raw, typ)
                _read_live(live, key, msg)
            except Exception as e:  # noqa: BLE001 - a damaged recorded explanation: not fatal
                skip(f"{topic}: {type(e).__name__}: {e}")
            continue
        role = streams[topic]
        try:
            msg = ts.deserialize_cdr(raw, typ)
        except Exception as e:  # noqa: BLE001 - bad CDR bytes
            skip(f"{topic}: undecodable message ({type(e).__name__}: {e})")
            continue
        stamp = stamp_ns(msg)
        if role != "torques":  # stamps going backwards on an observation topic (log-time order)
            prev = last_stamp.get(topic)
            if prev is not None and stamp < prev:
                out.backwards[topic] = out.backwards.get(topic, 0) + 1
                out.largest_backward_ns = max(out.largest_backward_ns, prev - stamp)
            last_stamp[topic] = stamp
        try:
            if role == "image":
                rgb, frame = image_from_msg(msg, typ)
                if rgb.shape[:2] != (H, W):
                    if not opts.resize:
                        raise BagError(f"images on {topic} are {rgb.shape[1]}x{rgb.shape[0]}, policy {spec.name!r} "
                                       f"takes {W}x{H}; pass --resize to resize them (cv2.INTER_AREA)")
                    import cv2

                    if not warned_resize:
                        warnings.warn(f"resizing {rgb.shape[1]}x{rgb.shape[0]} images on {topic} to {W}x{H} "
                                      "(cv2.INTER_AREA); explanations are at the policy's input size")
                        warned_resize = True
                    out.original_size = (rgb.shape[1], rgb.shape[0])
                    rgb = cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
                    out.resized += 1
                item = (rgb, frame)
            elif role == "joints":
                q, v = joint_arrays(msg, spec.joint_names)
                item = builder.build(q, v)
            elif role == "config":
                got, values = named_vector_from_msg(msg)
                if got != names:
                    raise BagError(f"{topic} names {got} but policy {spec.name!r} takes {names}: the bag was recorded "
                                   "with another policy spec (pass the matching --policy)")
                item = values
            else:  # torques
                out.recorded_torques[stamp] = select_joints(msg.name, msg.effort, spec.joint_names, "effort")
                continue
        except BagError:
            raise
        except (ConversionError, ValueError) as e:
            skip(f"{topic}: {e}")
            continue
        stale = sync.last_emitted is not None and stamp <= sync.last_emitted - sync.tolerance_ns
        jumps = sync.jumps_backward
        got = sync.add(role, stamp, item)
        if stale and sync.jumps_backward == jumps:
            late.add(stamp)  # older than a pair already used: dropped, as the live node drops it
        if got is None:
            continue
        rgb, frame = got["image"]
        stamps.append(stamp)
        logs.append(t)
        images.append(rgb)
        configs.append(got["config"] if source == "observation" else got["joints"])
        frames.append(frame)
    out.unpaired = sync.dropped
    out.jumps = sync.jumps_backward + sync.jumps_forward
    out.late_stamps = sorted(late - set(stamps))
    if stamps:
        out.stamps = np.asarray(stamps, np.int64)
        out.log_times = np.asarray(logs, np.int64)
        out.images = np.stack(images)
        out.configs = np.stack(configs).astype(np.float64)
        out.frame_ids = frames
    return out


def _read_live(live: LiveExplanations, key: str, msg) -> None:
    if key == "diagnostics":
        for st in msg.status:
            if st.name.split("/")[-1] == "attribution_node":
                for kv in st.values:
                    if kv.key == "method":
                        live.methods.add(kv.value)
        return
    s = stamp_ns(msg)
    if key == "ratios":
        if len(msg.name):
            live.ratios[s] = (tuple(msg.name), np.asarray(msg.position, np.float64))
    elif key == "relevance_config":
        live.relevance_config[s] = np.asarray(msg.position, np.float64)
    elif key == "importance":
        live.importance[s] = np.asarray(msg.position, np.float64)
    elif key == "relevance_image":
        from .ros.convert import decode_image

        live.relevance_image[s] = decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                                               bool(msg.is_bigendian))[:, :, 0]


# ==== explanations ===============================================================================
def importance_factors(spec, configs: np.ndarray, importance: str = "dynamics", robot: str = "baxter_right_arm",
                       dt: float = 0.05) -> np.ndarray:
    """alpha per step, computed exactly like the attribution node does (RobotAdapter, policy joint order)."""
    if importance == "uniform":
        return np.ones((len(configs), spec.n_joints))
    if importance != "dynamics":
        raise BagError(f"importance must be 'dynamics' or 'uniform', got {importance!r}")
    from .live import RobotAdapter, importance_per_step

    adapter = RobotAdapter(spec, robot) if "joint_position" in spec.group_slices() else None
    return importance_per_step(spec, configs, adapter, dt)


@dataclass
class Timing:
    read_s: float = 0.0
    alpha_s: float = 0.0
    explain_s: float = 0.0
    steps: int = 0
    methods: int = 1

    @property
    def steps_per_s(self) -> float:
        """Explained steps per second (all methods of a step count as one step)."""
        return self.steps / self.explain_s if self.explain_s > 0 else float("nan")


def explain_observations(policy, obs: Observations, methods: Sequence[str], alphas: np.ndarray, batch: int = 32,
                         layer: int = 0, progress: Optional[Callable[[int], None]] = None,
                         timing: Optional[Timing] = None):
    """analysis.explain_sequence over the paired observations, timed; times are seconds from the first stamp."""
    from .analysis import explain_sequence

    t = time.perf_counter()
    res = explain_sequence(policy, obs.images, obs.configs, list(methods), alphas=alphas, batch=batch, layer=layer,
                           progress=progress)
    if timing is not None:
        timing.explain_s, timing.steps, timing.methods = time.perf_counter() - t, len(obs), len(methods)
    res.times = (obs.stamps - obs.stamps[0]) * 1e-9 if len(obs) else np.zeros(0)
    return res


def find_gaps(stamps: np.ndarray, factor: float = 3.0, backwards: Optional[dict] = None,
              late_stamps: Sequence[int] = (), largest_backward_ns: int = 0) -> dict:
    """Time gaps between the paired observations and stamps going backwards.

    A gap is a step longer than `factor` x the median period. A gap that holds stamps of observations
    which are in the bag but arrived late (`late_stamps`, Observations.late_stamps: their stamps went
    backwards, so they were not paired) is no gap of the recording: it is listed under "out_of_order"
    instead. `backwards`: topic -> how often the stamps went backwards on it (Observations.backwards);
    "backwards" is the most on one topic. Without it, backward steps between paired stamps count."""
    stamps = np.asarray(stamps, np.int64)
    per_topic = dict(backwards or {})
    res = {"median_period_s": float("nan"), "gaps": [], "out_of_order": [],
           "backwards": max(per_topic.values(), default=0), "backwards_per_topic": per_topic,
           "largest_backward_s": largest_backward_ns * 1e-9, "late_unpaired": len(late_stamps)}
    if len(stamps) < 2:
        return res
    d = np.diff(stamps) * 1e-9
    if backwards is None:
        res["backwards"] = int(np.sum(d < 0))
        if np.any(d < 0):
            res["largest_backward_s"] = float(-d.min())
    if len(stamps) < 3:
        return res
    pos = d[d > 0]
    med = float(np.median(pos)) if len(pos) else float("nan")
    res["median_period_s"] = med
    if med != med:
        return res
    t = (stamps - stamps[0]) * 1e-9
    late = np.asarray(sorted(late_stamps), np.int64)
    for i in np.nonzero(d > factor * med)[0]:
        g = {"after_step": int(i), "from_s": float(t[i]), "to_s": float(t[i + 1]), "length_s": float(d[i])}
        n = int(np.sum((late > stamps[i]) & (late < stamps[i + 1])))
        if n:
            res["out_of_order"].append({**g, "late_observations": n})
        else:
            res["gaps"].append(g)
    return res


def compare_live(res, obs: Observations, live: LiveExplanations, method: str, spec) -> dict:
    """Largest differences between the recorded live explanations and the recomputation (same stamps)."""
    idx = {int(s): i for i, s in enumerate(obs.stamps)}
    ser = res.methods[method]
    out: dict = {"method": method, "live_methods": sorted(live.methods)}

    def record(name, diffs, scale=None):
        if not diffs:
            return
        k = int(np.argmax([d for d, _ in diffs]))
        entry = {"matched": len(diffs), "max_abs_diff": float(diffs[k][0]), "at_stamp": int(diffs[k][1])}
        if scale is not None:
            entry["relative_to_max"] = float(scale)
        out[name] = entry

    d = []
    for s, (names, v) in live.ratios.items():
        if s in idx and tuple(names) == tuple(ser.ratio_names):
            d.append((float(np.max(np.abs(ser.ratios[idx[s]] - v))), s))
    record("ratios", d)
    d = []
    for s, v in live.relevance_config.items():
        if s in idx and len(v) == ser.config.shape[1]:
            d.append((float(np.max(np.abs(ser.config[idx[s]] - v))), s))
    record("relevance_config", d)
    d, top, worst = [], 0.0, (0.0, None)
    for s, v in live.relevance_image.items():
        if s in idx and v.shape == ser.image.shape[1:]:
            diff = float(np.max(np.abs(ser.image[idx[s]] - v)))
            d.append((diff, s))
            vmax = float(np.abs(v).max())
            top = max(top, vmax)
            if diff / (vmax or 1.0) > worst[0]:
                worst = (diff / (vmax or 1.0), s)
    # relative to the largest relevance of the recording (the scale of a per-video heatmap); the
    # worst single step is reported too: steps whose torques are all near zero have tiny maps where
    # float rounding (and Eq. 1 sign flips of ~0 torques) weigh more
    record("relevance_image", d, max(x for x, _ in d) / (top or 1.0) if d else None)
    if d:
        out["relevance_image"]["worst_step_relative"] = float(worst[0])
        out["relevance_image"]["worst_step_stamp"] = int(worst[1]) if worst[1] is not None else None
    d = []
    for s, v in live.importance.items():
        if s in idx and len(v) == res.alpha.shape[1]:
            d.append((float(np.max(np.abs(res.alpha[idx[s]] - v))), s))
    record("importance", d)
    if obs.recorded_torques:
        lim = np.asarray(spec.torque_limits)
        d = [(float(np.max(np.abs(np.clip(res.torques[idx[s]], -lim, lim) - tau))), s)
             for s, tau in obs.recorded_torques.items() if s in idx]
        record("torques", d)
    matched = [v["matched"] for k, v in out.items() if isinstance(v, dict)]
    out["matched_steps"] = max(matched) if matched else 0
    tol = float(itf.NODES["attribution_node"].parameters["reproduce_tolerance"])
    if "torques" in out and out["torques"]["max_abs_diff"] > tol:
        out["torque_warning"] = (f"the recomputed torques differ from the recorded ones by up to "
                                 f"{out['torques']['max_abs_diff']:.3g} N·m: the bag was recorded with other weights "
                                 "or another spec than --policy")
    if live.methods and method not in live.methods:
        out["warning"] = (f"the live attribution node used {sorted(live.methods)}, this recomputation {method!r}: "
                          "differences are expected")
    return out


# ==== tables ====================================================================================
def ratio_rows(res, obs: Observations) -> list[dict]:
    from .analysis import ratio_table

    rows = ratio_table(res)
    for r in rows:
        i = r["step"]
        r["stamp_ns"] = int(obs.stamps[i])
        r["time"] = float(res.times[i])
    order = ["step", "stamp_ns", "time", "method"]
    return [{k: r[k] for k in order + [k for k in r if k not in order]} for r in rows]


def importance_rows(res, obs: Observations, spec) -> list[dict]:
    lim = np.asarray(spec.torque_limits)
    rows = []
    for i in range(len(res)):
        r = {"step": i, "stamp_ns": int(obs.stamps[i]), "time": float(res.times[i])}
        r.update({f"alpha/{j}": float(a) for j, a in zip(spec.joint_names, res.alpha[i])})
        r.update({f"torque/{j}": float(x) for j, x in zip(spec.joint_names, np.clip(res.torques[i], -lim, lim))})
        rows.append(r)
    return rows


def write_table(rows: list[dict], stem: "str | Path") -> list[Path]:
    """rows -> <stem>.csv and (with pyarrow) <stem>.parquet."""
    import csv

    stem = Path(stem)
    written = []
    if not rows:
        return written
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    written.append(stem.with_suffix(".csv"))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        warnings.warn("pyarrow is not installed: no Parquet file (pip install pyarrow)")
        return written
    table = pa.Table.from_pydict({k: [r[k] for r in rows] for k in rows[0]})
    pq.write_table(table, stem.with_suffix(".parquet"))
    written.append(stem.with_suffix(".parquet"))
    return written


def read_table(path: "str | Path") -> dict[str, np.ndarray]:
    """A .csv or .parquet table written by write_table -> column -> array."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        return {c: np.asarray(t.column(c).to_pylist()) for c in t.column_names}
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out = {}
    for k in rows[0]:
        vals = [r[k] for r in rows]
        try:
            out[k] = np.asarray([int(v) for v in vals]) if k in ("step", "stamp_ns") else np.asarray(vals, float)
        except ValueError:
            out[k] = np.asarray(vals)
    return out


# ==== figures ====================================================================================
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def break_at_gaps(times: np.ndarray, values: np.ndarray, gaps: dict) -> tuple[np.ndarray, np.ndarray]:
    """Insert a NaN row after every gap so that plotted lines do not bridge it."""
    after = [g["after_step"] for g in gaps.get("gaps", [])]
    if not after:
        return times, values
    t = np.insert(times.astype(float), np.array(after) + 1, np.nan)
    v = np.insert(values.astype(float), np.array(after) + 1, np.nan, axis=0)
    return t, v


def importance_figure(path, times: np.ndarray, alpha: np.ndarray, joint_names: Sequence[str], gaps: dict,
                      title: str = "") -> Path:
    plt = _plt()
    t, a = break_at_gaps(times, alpha, gaps)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    for j, name in enumerate(joint_names):
        ax.plot(t, a[:, j], lw=1.4, label=name)
    if np.all(alpha[np.isfinite(alpha)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("importance factor alpha")
    ax.legend(fontsize=7, ncol=4, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# ==== output bag =================================================================================
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
    from .live import config_feature_names

    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    JS, Image = T[JOINT_TYPE], T["sensor_msgs/msg/Image"]
    cfg_names = config_feature_names(spec)
    empty = np.zeros(0, np.float64)

    def header(s, frame=""):
        return Header(stamp=Time(sec=int(s) // 1_000_000_000, nanosec=int(s) % 1_000_000_000), frame_id=frame)

    def named(s, names, pos, vel=empty, eff=empty):
        msg = JS(header=header(s), name=list(names), position=np.asarray(pos, np.float64),
                 velocity=np.asarray(vel, np.float64), effort=np.asarray(eff, np.float64))
        return ts.serialize_cdr(msg, JOINT_TYPE)

    for i in range(len(obs)):
        s, t = int(obs.stamps[i]), int(obs.log_times[i])
        for k, m in enumerate(methods):
            ser = res.methods[m]
            suffix = "" if k == 0 else f"/{m}"
            rel = np.ascontiguousarray(ser.image[i], dtype="<f4")
            img = Image(header=header(s, obs.frame_ids[i]), height=rel.shape[0], width=rel.shape[1], encoding="32FC1",
                        is_bigendian=0, step=rel.shape[1] * 4, data=np.frombuffer(rel.tobytes(), np.uint8))
            yield t, topics["relevance_image"] + suffix, "sensor_msgs/msg/Image", \
                ts.serialize_cdr(img, "sensor_msgs/msg/Image")
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


# ==== comparing runs and methods ===============================================================
@dataclass
class RatioSeries:
    label: str
    method: str
    steps: np.ndarray
    stamps: Optional[np.ndarray]
    times: np.ndarray
    names: tuple
    ratios: np.ndarray  # (N, G)


def load_ratio_series(ref: str, method: Optional[str] = None) -> RatioSeries:
    """`DIR[:method]` (an analyze output folder) or a ratios .csv / .parquet file [:method]."""
    path, meth = ref, method
    if ":" in ref and not Path(ref).exists():
        path, meth = ref.rsplit(":", 1)
    p = Path(path)
    if p.is_dir():
        cand = [p / "ratios.parquet", p / "ratios.csv"]
        p = next((c for c in cand if c.is_file()), None)
        if p is None:
            raise FileNotFoundError(f"{path} holds no ratios.csv / ratios.parquet (run `policy-xai analyze` first)")
    elif not p.is_file():
        raise FileNotFoundError(f"no such ratio table or analyze folder: {path}")
    tab = read_table(p)
    if "method" not in tab:
        raise BagError(f"{p} is not a ratio table (no 'method' column)")
    methods = list(dict.fromkeys(tab["method"].tolist()))
    meth = meth or methods[0]
    if meth not in methods:
        raise BagError(f"{p} has methods {methods}, not {meth!r}")
    sel = tab["method"] == meth
    groups = tuple(k for k in tab if k not in ("step", "stamp_ns", "time", "method"))
    ratios = np.stack([np.asarray(tab[g][sel], float) for g in groups], axis=1)
    stamps = np.asarray(tab["stamp_ns"][sel], np.int64) if "stamp_ns" in tab else None
    return RatioSeries(f"{Path(path).name}:{meth}", meth, np.asarray(tab["step"][sel]), stamps,
                       np.asarray(tab["time"][sel], float), groups, ratios)


def series_from_result(res, obs: Observations, method: str, label: str = "") -> RatioSeries:
    ser = res.methods[method]
    return RatioSeries(label or method, method, np.arange(len(res)), obs.stamps.copy(), np.asarray(res.times, float),
                       tuple(ser.ratio_names), ser.ratios.astype(float))


def align(a: RatioSeries, b: RatioSeries, how: str = "auto", tolerance: float = 0.02):
    """Index pairs (ia, ib) of matching steps: same stamp, nearest time (within tolerance s), or same step."""
    if how == "auto":
        if a.stamps is not None and b.stamps is not None:
            common = np.intersect1d(a.stamps, b.stamps)
            if len(common) >= 0.5 * min(len(a.stamps), len(b.stamps)) and len(common):
                how = "stamp"
        if how == "auto":
            how = "time"
    if how == "stamp":
        if a.stamps is None or b.stamps is None:
            raise BagError("stamp alignment needs stamp_ns columns in both tables")
        _, ia, ib = np.intersect1d(a.stamps, b.stamps, return_indices=True)
    elif how == "time":
        j = np.clip(np.searchsorted(b.times, a.times), 1, max(1, len(b.times) - 1))
        if len(b.times) == 1:
            j = np.zeros_like(j)
        else:
            j = np.where(np.abs(b.times[j - 1] - a.times) <= np.abs(b.times[j] - a.times), j - 1, j)
        ok = np.abs(b.times[j] - a.times) <= tolerance
        ia, ib = np.nonzero(ok)[0], j[ok]
    elif how == "step":
        n = min(len(a.steps), len(b.steps))
        ia = ib = np.arange(n)
    else:
        raise BagError(f"alignment must be auto, stamp, time or step, got {how!r}")
    return np.asarray(ia), np.asarray(ib), how


def _rank_corr(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import rankdata

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return float("nan")
    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def compare_series(a: RatioSeries, b: RatioSeries, out_dir: "str | Path", how: str = "auto", window: int = 20,
                   tolerance: float = 0.02, stem: str = "compare") -> dict:
    """Overlaid ratio curves, rank correlation over time (per step across groups, and per group in a
    sliding window) and the overall numbers; writes <stem>_curves.png, <stem>_rank.png, <stem>.csv."""
    names = [g for g in a.names if g in b.names]
    if not names:
        raise BagError(f"no common ratio groups: {a.names} vs {b.names}")
    ia, ib, how = align(a, b, how, tolerance)
    if len(ia) == 0:
        raise BagError(f"{a.label} and {b.label} have no matching steps (alignment {how!r})")
    A = a.ratios[ia][:, [a.names.index(g) for g in names]]
    B = b.ratios[ib][:, [b.names.index(g) for g in names]]
    t = a.times[ia]
    per_step = np.array([_rank_corr(A[i], B[i]) for i in range(len(ia))])
    w = max(3, min(window, len(ia)))
    rolling = np.full((len(ia), len(names)), np.nan)
    for i in range(len(ia)):
        lo, hi = max(0, i - w // 2), min(len(ia), i - w // 2 + w)
        if hi - lo >= 3:
            for g in range(len(names)):
                rolling[i, g] = _rank_corr(A[lo:hi, g], B[lo:hi, g])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    from .figures import GROUP_STYLE

    fig, axes = plt.subplots(len(names), 1, figsize=(8, 1.6 * len(names) + 0.6), sharex=True, squeeze=False)
    for ax, g in zip(axes[:, 0], names):
        c = GROUP_STYLE.get(g, ("#777", "-"))[0]
        ax.plot(t, A[:, names.index(g)], color=c, lw=1.5, label=a.label)
        ax.plot(t, B[:, names.index(g)], color=c, lw=1.5, ls="--", alpha=0.8, label=b.label)
        ax.set_ylabel(g.replace("_", "\n"), fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time [s]")
    fig.suptitle(f"relevance ratios: {a.label} (solid) vs {b.label} (dashed)")
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}_curves.png", dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    axes[0].plot(t, per_step, color="black", lw=1.2)
    axes[0].set_ylabel("rank corr. of\ngroups per step")
    axes[0].set_ylim(-1.05, 1.05)
    for g in range(len(names)):
        axes[1].plot(t, rolling[:, g], color=GROUP_STYLE.get(names[g], ("#777", "-"))[0], lw=1.2, label=names[g])
    axes[1].set_ylabel(f"rank corr. per group\n({w}-step window)")
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].legend(fontsize=7, ncol=3)
    axes[1].set_xlabel("time [s]")
    fig.suptitle(f"rank correlation over time: {a.label} vs {b.label}")
    fig.tight_layout()
    fig.savefig(out_dir / f"{stem}_rank.png", dpi=110)
    plt.close(fig)
    rows = [{"time": float(t[i]), "stamp_ns": int(a.stamps[ia[i]]) if a.stamps is not None else -1,
             "rank_corr_groups": float(per_step[i]),
             **{f"a/{g}": float(A[i, k]) for k, g in enumerate(names)},
             **{f"b/{g}": float(B[i, k]) for k, g in enumerate(names)},
             **{f"window_rank_corr/{g}": float(rolling[i, k]) for k, g in enumerate(names)}} for i in range(len(ia))]
    write_table(rows, out_dir / stem)
    mean_rank = float(np.nanmean(per_step)) if np.any(np.isfinite(per_step)) else float("nan")
    return {
        "a": a.label, "b": b.label, "alignment": how, "matched_steps": int(len(ia)),
        "steps": [int(len(a.ratios)), int(len(b.ratios))],
        "overall_rank_corr_per_group": {g: _rank_corr(A[:, k], B[:, k]) for k, g in enumerate(names)},
        "mean_rank_corr_of_groups_per_step": mean_rank,
        "mean_abs_ratio_diff": {g: float(np.nanmean(np.abs(A[:, k] - B[:, k]))) for k, g in enumerate(names)},
        "max_abs_ratio_diff": float(np.nanmax(np.abs(A - B))),
        "mean_ratios": {a.label: {g: float(np.nanmean(A[:, k])) for k, g in enumerate(names)},
                        b.label: {g: float(np.nanmean(B[:, k])) for k, g in enumerate(names)}},
        "files": [f"{stem}_curves.png", f"{stem}_rank.png", f"{stem}.csv"],
    }


# ==== replay through the live nodes ===============================================================
def replay_plan(topic_names: Sequence[str], topics: Optional[dict] = None, graph: str = "auto") -> dict:
    """Which node graph explains a bag when it is played back live, and which topics to play.

    Bags with the policy's observation topics and torques go to the "replay" graph (attribution +
    visualisation: the recorded decisions are explained again); bags with only camera images and
    joint states go to the "explain" graph (policy + attribution + visualisation). Recorded
    explanation, command and visualisation topics are never played (the live nodes publish them)."""
    T = topics or default_topics()
    have = set(topic_names)
    obs = [T["obs_image"], T["obs_config"], T["torques"]]
    raw = [T["image"], T["joint_states"]]
    if graph in ("auto", "replay") and all(n in have for n in obs):
        return {"graph": "replay", "topics": obs, "reason": "the bag holds the policy's decisions"}
    if graph in ("auto", "explain") and all(n in have for n in raw):
        extra = [n for n in (itf.topic_name("camera_info"),) if n in have]
        return {"graph": "explain", "topics": raw + extra,
                "reason": "the bag holds camera images and joint states: the policy node acts on them again"}
    need = {"auto": f"{obs} or {raw}", "replay": str(obs), "explain": str(raw)}.get(graph)
    if need is None:
        raise BagError(f"graph must be auto, replay or explain, got {graph!r}")
    raise BagError(f"nothing to replay{'' if graph == 'auto' else ' into graph ' + graph}: the bag needs {need}; "
                   f"it has {sorted(have)}")


# ==== test / benchmark bags ======================================================================
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

    from .synthetic import synthetic_observations

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
        ci = w.add_connection(itf.topic_name("image"), "sensor_msgs/msg/Image", typestore=ts)
        cj = w.add_connection(itf.topic_name("joint_states"), JOINT_TYPE, typestore=ts)
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


def nan_to_none(x):
    """JSON-friendly: NaN -> None, recursively."""
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (np.floating, np.integer)):
        return nan_to_none(x.item())
    return x
