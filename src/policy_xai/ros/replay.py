"""Playing a bag into running nodes once they are up and subscribed (`policy-xai replay`, the
launch_testing replay test): rclpy in this process, the nodes in theirs (policy_xai.ros.runner)."""
from __future__ import annotations

from ..topics import DECISION, names_with, published_per_observation, topic_name
from . import interfaces as itf


def play_into(bag, topics, node_names, domain_id: int, rate: float = 1.0, loop: bool = False, start: float = 0.0,
              ready_timeout: float = 90.0, runner=None, drain: float = 2.0, listeners=()) -> int:
    """Play `topics` of `bag` once the nodes `node_names` are up and subscribed (rclpy in this process).
    listeners: more node names (e.g. a test's probe) whose subscriptions to the played topics, where
    they have one, the player's publishers must have matched first."""
    import os
    import time

    from .player import BagPlayer
    from .runner import ros_env

    os.environ.update(ros_env(domain_id))
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    from rclpy.executors import SingleThreadedExecutor

    node = rclpy.create_node("policy_xai_replay", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    player = BagPlayer(bag, topics, rate, loop, start)
    try:
        end = time.monotonic() + ready_timeout
        want = {n.split("/")[-1] for n in node_names}
        need = ready_subscriptions(topics, want)
        # publish the played topics now, so that a recorder discovers and subscribes to them first
        pubs = player.publishers(node)
        own = {c.topic: pubs[c.id] for c in player.connections if c.id in pubs}
        matched: dict = {}  # node name -> {topic: matched subscriptions}, from the nodes' /diagnostics

        def on_diag(msg):
            from .convert import matched_counts

            matched.update(matched_counts(msg))

        from diagnostic_msgs.msg import DiagnosticArray

        from .common import qos

        node.create_subscription(DiagnosticArray, itf.topic_name("diagnostics"), on_diag, qos(itf.RELIABLE, 50))
        while True:
            ex.spin_once(timeout_sec=0.2)
            up = set(node.get_node_names())
            missing = [(t, who) for t, who in need if not any(
                (who is None or i.node_name == who) for i in node.get_subscriptions_info_by_topic(t))]
            if want <= up and not missing:
                missing = unmatched(node, {t for t, _ in need}, want | set(listeners), own, matched)
                if not missing:
                    break
            if runner is not None and runner.dead():
                raise RuntimeError(f"nodes exited before the replay started: {runner.dead()}\n{runner.report()}")
            if time.monotonic() > end:
                raise RuntimeError(f"nodes not ready after {ready_timeout} s: "
                                   f"up {sorted(up & want)} of {sorted(want)}, "
                                   f"subscriptions missing or not yet matched: {missing}")
        n = player.play(node, should_stop=lambda: not ctx.ok(), spin=lambda t: ex.spin_once(timeout_sec=t),
                        wait_for_subscribers=0.0)
        t_end = time.monotonic() + drain  # let the last explanations arrive at the recorder
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
        return n
    finally:
        player.close()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def unmatched(node, topics, nodes, own: dict, matched: dict) -> list:
    """(topic, publisher, matched, wanted) for every topic whose publisher has not yet matched all the
    subscriptions that the nodes `nodes` have on it. The graph (what `node` sees) lists a subscription
    before the publishing process has matched it; messages published in between are lost to that
    subscriber. `own`: topic -> this process's publisher; `matched`: node name -> {topic: count} as
    the policy_xai nodes report it on /diagnostics."""
    out = []
    for t in sorted(topics):
        wanted = sum(1 for i in node.get_subscriptions_info_by_topic(t) if i.node_name in nodes)
        if t in own:
            if own[t].get_subscription_count() < wanted:
                out.append((t, node.get_name(), own[t].get_subscription_count(), wanted))
            continue
        for i in node.get_publishers_info_by_topic(t):
            if i.node_name not in nodes:
                continue
            got = int(matched.get(i.node_name, {}).get(t, -1))
            if got < wanted:
                out.append((t, i.node_name, got, wanted))
    return out


def ready_subscriptions(played, nodes) -> list:
    """(topic, node or None) subscriptions that must exist before playing: every played topic has a
    subscriber, the attribution node listens to the policy's decisions (the DECISION topics), and
    the recorder (if any) records the played topics and every per-observation topic the nodes
    publish (policy_xai.topics.published_per_observation)."""
    need = [(t, None) for t in played]
    if "attribution_node" in nodes:
        need += [(n, "attribution_node") for n in names_with(DECISION)]
    if "recorder" in nodes:
        outputs = published_per_observation(nodes)
        need += [(t, "recorder") for t in played] + [(topic_name(k), "recorder") for k in outputs]
    return need
