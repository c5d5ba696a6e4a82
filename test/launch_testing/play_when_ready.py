"""Plays a bag into launched nodes once they are up and their subscriptions have matched, then exits
(what `policy-xai replay` does after starting its own graph: policy_xai.ros.replay.play_into).
Started by test_replay_launch.py as a launch process next to replay.launch.py's nodes.

    python play_when_ready.py BAG --nodes attribution_node visualization_node \
        [--go TOPIC] [--listener NAME --outputs /policy_xai/relevance/ratios ...]

--go: first wait for the test's probe to say (a latched std_msgs/Empty on TOPIC) that its subscriptions
have matched the nodes' publishers (the reader's side); --listener / --outputs: then wait until the
nodes publishing each output topic have matched every subscription, NAME's included (the writers' side:
their matched<topic> counts on /diagnostics), and the player's own publishers (e.g. the decisions of
the replay graph) have matched NAME's subscriptions to them. All three, so that the listener loses
no message.
The domain is $ROS_DOMAIN_ID. Exit code 0 when every message was published.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def wait_for_go(topic: str, domain: int, timeout: float) -> None:
    """Until a (latched) std_msgs/Empty arrives on `topic`: the test's probe is listening."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Empty

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("play_when_ready_go", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    got = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(Empty, topic, got.append, latched)
    end = time.monotonic() + timeout
    try:
        while not got:
            ex.spin_once(timeout_sec=0.2)
            if time.monotonic() > end:
                raise RuntimeError(f"no go on {topic} after {timeout} s")
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def wait_for_listener(listener: str, outputs, nodes, domain: int, timeout: float) -> None:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from policy_xai.ros.replay import unmatched
    from policy_xai.ros import interfaces as itf
    from policy_xai.ros.common import qos

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("play_when_ready_wait", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    matched: dict = {}

    def on_diag(msg):
        from policy_xai.ros.convert import matched_counts

        matched.update(matched_counts(msg))

    node.create_subscription(DiagnosticArray, itf.topic_name("diagnostics"), on_diag, qos(itf.RELIABLE, 50))
    end = time.monotonic() + timeout
    try:
        while True:
            ex.spin_once(timeout_sec=0.2)
            missing = [t for t in outputs
                       if not any(i.node_name == listener for i in node.get_subscriptions_info_by_topic(t))]
            if not missing:
                missing = unmatched(node, set(outputs), set(nodes) | {listener}, {}, matched)
                if not missing:
                    return
            if time.monotonic() > end:
                raise RuntimeError(f"{listener} not subscribed / matched after {timeout} s: {missing}")
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bag")
    ap.add_argument("--nodes", nargs="+", required=True, help="node names that must be up and subscribed")
    ap.add_argument("--graph", default="auto", help="which topics to play: as bags.replay_plan for this graph")
    ap.add_argument("--listener", default="", help="a node that must be subscribed to --outputs first")
    ap.add_argument("--outputs", nargs="*", default=[], help="topics the listener must get from the nodes")
    ap.add_argument("--go", default="", help="first wait for a latched std_msgs/Empty on this topic")
    ap.add_argument("--ready-timeout", type=float, default=120.0)
    args = ap.parse_args()

    from policy_xai import bags
    from policy_xai.ros.replay import play_into

    with bags.BagSource(args.bag) as b:
        plan = bags.replay_plan(list(b.topics), graph=args.graph)
        count = sum(b.topics[t].count for t in plan["topics"])
    domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    print(f"play_when_ready: {args.bag} -> graph {plan['graph']!r}, topics {plan['topics']}, "
          f"waiting for {args.nodes} on domain {domain}", flush=True)
    t0 = time.monotonic()
    if args.go:
        wait_for_go(args.go, domain, args.ready_timeout)
    if args.listener and args.outputs:
        wait_for_listener(args.listener, args.outputs, args.nodes, domain, args.ready_timeout)
    n = play_into(args.bag, plan["topics"], args.nodes, domain,
                  ready_timeout=max(1.0, args.ready_timeout - (time.monotonic() - t0)),
                  listeners=[args.listener] if args.listener else [])
    print(f"play_when_ready: published {n} of {count} messages", flush=True)
    return 0 if n == count else 1


if __name__ == "__main__":
    sys.exit(main())
