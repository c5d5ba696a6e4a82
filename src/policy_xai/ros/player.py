"""Bag player: publishes a rosbag2 bag's topics (sqlite3 or MCAP, read with policy_xai.bags.BagSource,
the one bag reader) with their recorded timing, for machines without `ros2 bag play`.

    policy-xai play BAG [--rate 2] [--loop] [--start 5] [--topics /camera/image_raw /joint_states]
                        [--remap /camera/image_raw:=/other]

Messages are published as the recorded bytes (no decode). QoS per topic: the declared one for the
pipeline's topics (interfaces.py), else reliable. Only bags that read to the end are played (a bag
cut off mid-write is refused: `policy-xai analyze` reads what it holds). `--restamp` is not offered: stamps stay as
recorded (the live nodes pair by header stamp, not by arrival time).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

from . import interfaces as itf


class Connection(NamedTuple):
    """A played topic: `id` keys the publishers (BagPlayer.publishers)."""

    id: int
    topic: str
    msgtype: str


class BagPlayer:
    def __init__(self, bag: "str | Path", topics: Optional[Sequence[str]] = None, rate: float = 1.0,
                 loop: bool = False, start: float = 0.0, remap: Optional[dict] = None,
                 node_name: str = "policy_xai_player"):
        from ..bags import BagSource

        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.path = Path(bag)
        if not self.path.exists():
            raise FileNotFoundError(f"bag not found: {self.path}")
        self.rate, self.loop, self.start = float(rate), bool(loop), float(start)
        self.remap = dict(remap or {})
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise ValueError(f"{self.path} is empty: not a bag")
        try:
            self.reader = BagSource(self.path)
        except Exception as e:  # noqa: BLE001 - no storage file, not a bag
            raise ValueError(f"{self.path}: not a readable rosbag2 bag ({e}); a bag cut off mid-write can be read "
                             "by `policy-xai analyze`, not played") from None
        if self.reader.problem is not None:
            why = self.reader.problem.describe(self.reader.start_ns)
            self.reader.close()
            raise ValueError(f"{self.path}: not a readable rosbag2 bag ({why}); a bag cut off mid-write can be read "
                             "by `policy-xai analyze`, not played")
        if not self.reader.topics or not self.reader.message_count:
            self.reader.close()
            raise ValueError(f"{self.path}: the bag holds no messages")
        have = {t.name: t.msgtype for t in self.reader.topics.values()}
        if topics:
            missing = [t for t in topics if t not in have]
            if missing:
                self.reader.close()
                raise ValueError(f"topics {missing} are not in the bag (it has {sorted(have)})")
        self.topics = list(topics) if topics else sorted(have)
        self.connections = [Connection(i, t, have[t]) for i, t in enumerate(self.topics)]
        self.node_name = node_name
        self.published = 0
        self.loops = 0
        self._pubs: Optional[dict] = None

    def publishers(self, node) -> dict:
        """connection id -> publisher on `node` (created once; create them early so that discovery
        matches the subscribers before playing)."""
        if self._pubs is None:
            self._pubs = self._create_publishers(node)
        return self._pubs

    def _create_publishers(self, node):
        from .common import qos

        by_name = {t.name: t for t in itf.TOPICS}
        pubs = {}
        for c in self.connections:
            try:
                cls = itf.message_class(c.msgtype)
            except Exception as e:  # noqa: BLE001
                print(f"[player] skipping {c.topic}: type {c.msgtype} not importable ({e})")
                continue
            declared = by_name.get(c.topic)
            pubs[c.id] = node.create_publisher(cls, self.remap.get(c.topic, c.topic),
                                               qos(declared.qos if declared else itf.RELIABLE))
        return pubs

    def play(self, node, should_stop: Callable[[], bool] = lambda: False,
             spin: Optional[Callable[[float], None]] = None, wait_for_subscribers: float = 1.0) -> int:
        """Publish (in real time / rate) until the bag ends (or forever with loop); returns messages published."""
        pubs = self.publishers(node)
        t_end = time.monotonic() + wait_for_subscribers  # let discovery match the subscribers first
        while time.monotonic() < t_end and not should_stop():
            (spin or time.sleep)(0.05)
        t_first = self.reader.start_ns + int(self.start * 1e9)
        by_topic = {c.topic: pubs[c.id] for c in self.connections if c.id in pubs}
        while not should_stop() and by_topic:
            wall0 = time.monotonic()
            for topic, t, raw in self.reader.messages(sorted(by_topic), start=t_first):
                due = wall0 + (t - t_first) * 1e-9 / self.rate
                while not should_stop():
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    (spin or time.sleep)(min(left, 0.05))
                if should_stop():
                    break
                by_topic[topic].publish(bytes(raw))
                self.published += 1
            self.loops += 1
            if not self.loop:
                break
        return self.published

    def close(self) -> None:
        self.reader.close()


def run(bag, topics=None, rate=1.0, loop=False, start=0.0, remap=None, domain_id=None) -> int:
    """Play a bag from this process (used by `policy-xai play`)."""
    import os

    from .runner import ros_env

    os.environ.update(ros_env(domain_id))
    import rclpy
    from rclpy.executors import ExternalShutdownException

    player = BagPlayer(bag, topics, rate, loop, start, remap)
    rclpy.init()
    node = rclpy.create_node(player.node_name)
    try:
        n = player.play(node, should_stop=lambda: not rclpy.ok(),
                        spin=lambda t: rclpy.spin_once(node, timeout_sec=t))
        print(f"published {n} messages from {player.path} ({player.loops} pass(es))")
    except (KeyboardInterrupt, ExternalShutdownException):
        print(f"stopped after {player.published} messages")
    finally:
        player.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
