"""Playing a bag into running nodes once they are up and subscribed (`policy-xai replay`, the
launch_testing replay test): rclpy in this process, the nodes in theirs (policy_xai.ros.runner)."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

from ..topics import DECISION, names_with, published_per_observation, topic_name
from . import interfaces as itf


@dataclass
class ReplayOptions:
    """`policy-xai replay`: a bag played into the live nodes that explain it (started here over DDS).
    With `user` (a policy_xai.live_run.UserModel) a user's model explains the bag's mapped topics in a
    user_explainer_node (act:=false: it never publishes commands) and `policy`/`graph` are unused."""

    bag: str
    graph: str = "auto"  # auto | replay | explain (policy_xai.bags.replay_plan)
    policy: str = str(itf.NODES["attribution_node"].parameters["spec"])  # weights, spec or task
    method: Optional[str] = None  # None: the nodes' default
    rate: float = 1.0
    loop: bool = False
    start_offset: float = 0.0
    record: str = ""  # record the nodes' output (and the played topics) to this new bag
    domain_id: Optional[int] = None
    params_file: Optional[str] = None
    visualization: bool = True
    log_dir: str = ""
    ready_timeout: float = 90.0
    device: str = "cpu"
    user: object = None  # a UserModel
    weights: str = ""  # the user model's weights ("": untrained)


def user_replay_plan(o: ReplayOptions, topic_names, live) -> tuple[list, dict, tuple]:
    """(topics to play, node overrides, the visualisation node's remapping) for a user's model: the
    mapping's topics (each must be in the bag), and the visualisation node's camera image taken from
    the mapping's first camera topic (the explaining node publishes no observation image)."""
    from ..checks import UsageError

    plan = live.topic_plan()
    missing = [t for t in plan if t not in topic_names]
    if missing:
        raise UsageError(f"bag {o.bag} has no {', '.join(missing)} (the mapping's topics); it has "
                         f"{', '.join(sorted(topic_names)) or 'no topics'}")
    u = o.user
    node = {"model": str(u.model), "mapping": str(u.mapping), "device": o.device}
    for k, v in (("model_kwargs", u.model_kwargs), ("weights", o.weights), ("method", o.method)):
        if v:
            node[k] = str(v)
    cameras = [t for t, (kind, _) in plan.items() if kind == "image"]
    remap = ((topic_name("obs_image"), cameras[0]),) if cameras else ()
    return list(plan), {"user_explainer_node": node}, remap


def replay_bag(o: ReplayOptions, log: Callable[[str], None] = print) -> int:
    """Check everything, start the graph that explains the bag, play it (play_into), stop; the
    number of messages published. A bad input is a UsageError before any node starts."""
    from .. import bags, checks
    from .graph import graph
    from .runner import GraphRunner

    checks.input_path(o.bag, "bag")
    if o.user is None:
        checks.policy_arg(o.policy)  # before the device: the order of the checks the command always made
    device = str(checks.device_arg(o.device))
    o = replace(o, device=device)
    inputs = {"input bag": checks.bag_root(o.bag)}
    if o.record:
        checks.new_bag_dir(o.record, "--record", inputs)
    if o.log_dir:
        checks.guard_outputs(inputs, o.log_dir, out_label="--log-dir")
        checks.writable_dir(o.log_dir, "--log-dir")
    with bags.BagSource(o.bag) as bag:
        names = list(bag.topics)
        if bag.problem is not None:
            log(f"warning: {bag.problem.describe(bag.start_ns)}")
    remap: tuple = ()
    if o.user:
        from ..live_run import USER_METHOD, check_user_model

        u = o.user
        live = check_user_model(u.model, u.mapping, u.model_kwargs, o.weights, o.method or USER_METHOD, device)
        topics, over, remap = user_replay_plan(o, names, live)
        gname, reason = "user_replay", f"a user's model ({u.model}) explains the mapping's topics"
    else:
        src = checks.policy_arg(o.policy)
        plan = bags.replay_plan(names, graph=o.graph)
        gname, topics, reason = plan["graph"], plan["topics"], plan["reason"]
        weights = str(src.weights) if src.trained else ""
        spec = "" if weights else str(src.spec_file or o.policy)
        over = {n: {"spec": spec, "weights": weights, "device": device} for n in ("policy_node", "attribution_node")}
        if o.method:
            over["attribution_node"]["method"] = o.method
    node_names = [n.name for n in graph(gname, params_file="")
                  if o.visualization or n.name != "visualization_node"]
    over = {n: v for n, v in over.items() if n in node_names}
    if o.record:
        node_names.append("recorder")
        over["recorder"] = {"output": str(Path(o.record).resolve())}
    launches = graph(gname, params_file=o.params_file, overrides=over, nodes=node_names)
    launches = [replace(x, remappings=x.remappings + remap) if x.name == "visualization_node" else x
                for x in launches]
    domain = o.domain_id if o.domain_id is not None else 40 + int(time.time()) % 100
    log(f"replaying {o.bag} into graph {gname!r} ({reason}): nodes {node_names}, topics {topics}, domain {domain}")
    with GraphRunner(launches, domain_id=domain, log_dir=o.log_dir or None) as runner:
        n = play_into(o.bag, topics, [x.name for x in launches], domain, o.rate, o.loop, o.start_offset,
                      o.ready_timeout, runner)
        log(f"published {n} messages from {o.bag}")
        if runner.dead():
            log(runner.report())
    if o.record:
        again = f"--model {o.user.model} --mapping {o.user.mapping}" if o.user else f"--policy {o.policy}"
        log(f"recorded to {o.record}; analyse it with: policy-xai "
            + (f"explain-model {again} --bag {o.record}" if o.user else f"analyze {o.record} {again}"))
    return n


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
                outputs, silent = recorded_outputs(want, matched)
                missing = [("/diagnostics", n) for n in silent] + [
                    (t, "recorder") for t in sorted(outputs) if not any(
                        i.node_name == "recorder" for i in node.get_subscriptions_info_by_topic(t))]
            if want <= up and not missing:
                missing = unmatched(node, {t for t, _ in need} | outputs, want | set(listeners), own, matched)
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


def recorded_outputs(nodes, matched: dict) -> tuple[set, list]:
    """With a recorder among `nodes`: (every topic the other nodes publish, as their /diagnostics
    list it in `matched`; nodes that have not reported yet). The recorder must have subscribed to
    each, and each publisher matched it, before the first played message, or the first explanations
    of a replay are lost to the recording (the user_explainer_node's camera relevance was)."""
    if "recorder" not in nodes:
        return set(), []
    others = sorted(set(nodes) - {"recorder"})
    silent = [n for n in others if n not in matched]
    return {t for n in others for t in matched.get(n, {}) if t != itf.topic_name("diagnostics")}, silent


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
