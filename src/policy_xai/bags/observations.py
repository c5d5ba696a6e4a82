"""The policy's observations in a bag, paired the way the live nodes pair them (live.StampSync), and the
explanation topics a live attribution node recorded."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..observation import fit_image
from ..parameters import NODES
from .common import IMAGE_TYPES, JOINT_TYPE, BagError, stamp_ns, typestore
from .source import BagSource, register_bag_types

def image_from_msg(msg, msgtype: str) -> tuple[np.ndarray, str]:
    """sensor_msgs Image (rgb8, bgr8, rgba8, bgra8, mono8) or CompressedImage -> ((H, W, 3) uint8 RGB, frame_id)."""
    from ..messages import decode_image, to_rgb

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
    sync_tolerance: float = float(NODES["policy_node"].parameters["sync_tolerance"])
    resize: bool = False
    robot: str = str(NODES["policy_node"].parameters["robot"])
    start: float = 0.0  # s after the bag's first message
    duration: float = 0.0  # s; 0 = to the end
    max_steps: int = 0  # 0 = all
    #: s: a stamp this far behind the last pair (or ahead) restarts the pairing, as in the live nodes
    time_jump: float = float(NODES["policy_node"].parameters.get("time_jump", 1.0))


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
    ts = ts or typestore()
    source, streams, live_topics = _streams(bag, opts, ts, live)
    pairer = _Pairer(bag, spec, opts, source, ts)
    wanted = set(streams) | set(live_topics)
    for topic, t, raw in bag.messages(sorted(wanted)):
        if pairer.t0 is not None and t < pairer.t0:
            continue
        if pairer.t1 is not None and t >= pairer.t1:
            break
        if opts.max_steps and len(pairer.stamps) >= opts.max_steps:
            break
        key = live_topics.get(topic)
        if key is None:
            pairer.add(topic, t, raw, streams[topic])
            continue
        try:
            msg = ts.deserialize_cdr(raw, bag.topics[topic].msgtype)
            _read_live(live, key, msg)
        except Exception as e:  # noqa: BLE001 - a damaged recorded explanation: not fatal
            pairer.skip(f"{topic}: {type(e).__name__}: {e}")
    return pairer.result()


def _streams(bag: BagSource, opts: ReadOptions, ts, live: Optional[LiveExplanations]) -> tuple[str, dict, dict]:
    """(source, observation topic -> role, explanation topic -> LiveExplanations key), the types checked."""
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
    return source, streams, live_topics


class _Pairer:
    """Decodes observation messages and pairs them as the live nodes do (live.StampSync)."""

    def __init__(self, bag: BagSource, spec, opts: ReadOptions, source: str, ts):
        from .. import live as lv

        self.bag, self.spec, self.opts, self.source, self.ts = bag, spec, opts, source, ts
        self.names = lv.config_feature_names(spec)
        self.builder = None
        jump_ns = int(opts.time_jump * 1e9) if opts.time_jump else None
        if source == "raw":
            robot = None
            if any(g.startswith("ee_") for g in spec.group_names):
                robot = lv.RobotAdapter(spec, opts.robot)
            self.builder = lv.ConfigBuilder(spec, robot.ee if robot else None)
            self.sync = lv.StampSync(["image", "joints"], int(opts.sync_tolerance * 1e9), keep=10, jump_ns=jump_ns)
        else:
            self.sync = lv.StampSync(["image", "config"], 0, keep=20, jump_ns=jump_ns)
        self.last_stamp: dict = {}
        self.late: set = set()
        H, W = spec.image_height, spec.image_width
        self.out = Observations(source, np.zeros(0, np.int64), np.zeros(0, np.int64),
                                np.zeros((0, H, W, 3), np.uint8), np.zeros((0, spec.config_dim)), [], {})
        self.stamps, self.logs, self.images, self.configs, self.frames = [], [], [], [], []
        self.t0 = None if bag.start_ns is None else bag.start_ns + int(opts.start * 1e9)
        self.t1 = None if not opts.duration or self.t0 is None else self.t0 + int(opts.duration * 1e9)
        self.warned_resize = False

    def skip(self, reason: str) -> None:
        self.out.skipped[reason] = self.out.skipped.get(reason, 0) + 1

    def add(self, topic: str, t: int, raw: bytes, role: str) -> None:
        """One observation message (log time t): decoded, checked, paired."""
        from ..messages import ConversionError

        out = self.out
        typ = self.bag.topics[topic].msgtype
        try:
            msg = self.ts.deserialize_cdr(raw, typ)
        except Exception as e:  # noqa: BLE001 - bad CDR bytes
            self.skip(f"{topic}: undecodable message ({type(e).__name__}: {e})")
            return
        stamp = stamp_ns(msg)
        if role != "torques":  # stamps going backwards on an observation topic (log-time order)
            prev = self.last_stamp.get(topic)
            if prev is not None and stamp < prev:
                out.backwards[topic] = out.backwards.get(topic, 0) + 1
                out.largest_backward_ns = max(out.largest_backward_ns, prev - stamp)
            self.last_stamp[topic] = stamp
        try:
            item = self._item(topic, typ, role, msg, stamp)
        except BagError:
            raise
        except (ConversionError, ValueError) as e:
            self.skip(f"{topic}: {e}")
            return
        if item is None:  # torques: kept by stamp, not paired
            return
        self._pair(role, stamp, item, t)

    def _item(self, topic: str, typ: str, role: str, msg, stamp: int):
        from ..messages import joint_arrays, named_vector_from_msg, select_joints

        spec = self.spec
        if role == "image":
            return self._image(topic, typ, msg)
        if role == "joints":
            q, v = joint_arrays(msg, spec.joint_names)
            return self.builder.build(q, v)
        if role == "config":
            got, values = named_vector_from_msg(msg)
            if got != self.names:
                raise BagError(f"{topic} names {got} but policy {spec.name!r} takes {self.names}: the bag was "
                               "recorded with another policy spec (pass the matching --policy)")
            return values
        self.out.recorded_torques[stamp] = select_joints(msg.name, msg.effort, spec.joint_names, "effort")
        return None

    def _image(self, topic: str, typ: str, msg) -> tuple:
        H, W = self.spec.image_height, self.spec.image_width
        rgb, frame = image_from_msg(msg, typ)
        if rgb.shape[:2] != (H, W) and self.opts.resize:
            if not self.warned_resize:
                warnings.warn(f"resizing {rgb.shape[1]}x{rgb.shape[0]} images on {topic} to {W}x{H} "
                              "(cv2.INTER_AREA); explanations are at the policy's input size")
                self.warned_resize = True
            self.out.original_size = (rgb.shape[1], rgb.shape[0])
            self.out.resized += 1
        return fit_image(rgb, H, W, self.opts.resize, what=f"images on {topic} are",
                         wants=f"policy {self.spec.name!r} takes",
                         hint="; pass --resize to resize them (cv2.INTER_AREA)", error=BagError), frame

    def _pair(self, role: str, stamp: int, item, t: int) -> None:
        sync = self.sync
        stale = sync.last_emitted is not None and stamp <= sync.last_emitted - sync.tolerance_ns
        jumps = sync.jumps_backward
        got = sync.add(role, stamp, item)
        if stale and sync.jumps_backward == jumps:
            self.late.add(stamp)  # older than a pair already used: dropped, as the live node drops it
        if got is None:
            return
        rgb, frame = got["image"]
        self.stamps.append(stamp)
        self.logs.append(t)
        self.images.append(rgb)
        self.configs.append(got["config"] if self.source == "observation" else got["joints"])
        self.frames.append(frame)

    def result(self) -> Observations:
        out, sync = self.out, self.sync
        out.unpaired = sync.dropped
        out.jumps = sync.jumps_backward + sync.jumps_forward
        out.late_stamps = sorted(self.late - set(self.stamps))
        if self.stamps:
            out.stamps = np.asarray(self.stamps, np.int64)
            out.log_times = np.asarray(self.logs, np.int64)
            out.images = np.stack(self.images)
            out.configs = np.stack(self.configs).astype(np.float64)
            out.frame_ids = self.frames
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
        from ..messages import decode_image

        live.relevance_image[s] = decode_image(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                                               bool(msg.is_bigendian))[:, :, 0]
