"""recorder: subscribes raw to topics and writes a rosbag2 MCAP bag with `rosbags`.

Stores the bytes exactly as received (raw subscriptions; rclpy's serialize_message may append bytes
that readers reject) with the receive time as the log time. Topics are discovered continuously, so
nodes that start later are recorded too. SIGINT / SIGTERM stop the recording and close the bag
(summary + metadata.yaml), so nothing received is lost. MCAP chunks (~1 MB each) are compressed
with zstd by default, as rosbag2's MCAP storage does (`compression`: zstd, lz4 or none); a bag
killed mid-write keeps every chunk written before.

    python -m policy_xai.ros.recorder --ros-args -p output:=run/bag [-p topics:="['/joint_states']"]
                                                 [-p compression:=lz4]
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional, Sequence

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from . import interfaces as itf
from .common import XaiNode, main as run_node


#: declared here when interfaces.NODES["recorder"] does not declare it
DEFAULT_COMPRESSION = "zstd"


def open_bag_writer(path: "str | Path", compression: str = DEFAULT_COMPRESSION):
    from ..bags import open_bag_writer as open_writer, typestore

    return open_writer(path, compression), typestore()


def recording_qos(publisher_infos) -> QoSProfile:
    """A QoS that matches every current publisher: best effort if any publisher is best effort,
    transient local if all are (then late joiners' last values are recorded too)."""
    best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in publisher_infos)
    latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in publisher_infos)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class Recorder(XaiNode):
    #: closing writes the last chunk and the index: a slow close must not be cut short (a torn bag)
    stop_deadline_s = 120.0

    def __init__(self, output: Optional[str] = None, topics: Optional[Sequence[str]] = None,
                 compression: Optional[str] = None):
        super().__init__("recorder")
        if not self.has_parameter("compression"):
            from rcl_interfaces.msg import ParameterDescriptor

            self.declare_parameter("compression", DEFAULT_COMPRESSION, ParameterDescriptor(dynamic_typing=True))
        out = output or str(self.p("output") or "")
        if not out:
            out = time.strftime("policy_xai_%Y%m%d_%H%M%S")
        wanted = [t for t in (topics if topics is not None else self.p("topics") or []) if t]
        self.wanted = set(wanted)
        self.compression = str(compression or self.p("compression") or DEFAULT_COMPRESSION)
        self.writer, self.typestore = open_bag_writer(out, self.compression)
        self.path = Path(out)
        self.lock = threading.Lock()
        self.connections: dict[str, object] = {}
        self.subs = {}
        self.counts: dict[str, int] = {}
        self.bytes = 0
        self.skipped_types: dict[str, str] = {}
        self.closed = False
        self.discover()
        self.create_timer(float(self.p("discovery_period")), self.discover)
        self.get_logger().info(f"recording {'all topics' if not self.wanted else sorted(self.wanted)} to {out} "
                               f"({self.compression} chunks)")

    def discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name in self.subs or name in self.skipped_types or (self.wanted and name not in self.wanted):
                continue
            infos = self.get_publishers_info_by_topic(name)
            if not infos:
                continue  # only subscribers so far: wait for a publisher to learn its QoS
            typ = types[0]
            try:
                cls = itf.message_class(typ)
                self.typestore.hash_rihs01(typ)  # the typestore must know the type to write its definition
            except Exception as e:  # noqa: BLE001
                self.skipped_types[name] = typ
                self.report_error("unknown_type", f"not recording {name}: type {typ} unknown here ({e})")
                continue
            with self.lock:
                if self.closed:
                    return
                self.connections[name] = self.writer.add_connection(name, typ, typestore=self.typestore)
            q = recording_qos(infos)
            self.counts[name] = 0
            self.subs[name] = self.create_subscription(cls, name, self._writer_for(name), q, raw=True)

    def _writer_for(self, topic: str):
        def write(data: bytes) -> None:
            t = time.time_ns()
            with self.lock:
                if self.closed:
                    return
                self.writer.write(self.connections[topic], t, data)
            self.counts[topic] += 1
            self.bytes += len(data)

        return write

    def diagnostics(self):
        total = sum(self.counts.values())
        values = {"output": str(self.path), "topics": len(self.subs), "messages": total, "megabytes": self.bytes / 1e6,
                  "compression": self.compression,
                  **{f"count{k}": v for k, v in self.counts.items()}}
        return (1 if self.skipped_types else 0), f"recorded {total} messages on {len(self.subs)} topics", values

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.writer.close()
        total = sum(self.counts.values())
        print(f"[recorder] closed {self.path}: {total} messages on {len(self.counts)} topics", flush=True)


def main(args=None) -> int:
    return run_node(Recorder, args)


if __name__ == "__main__":
    raise SystemExit(main())
