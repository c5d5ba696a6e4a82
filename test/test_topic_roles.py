"""The topic roles of policy_xai.topics and the lists derived from them (no DDS, no rclpy).

The lists were hand lists before the roles (bags.default_topics, bags.replay_plan, the replay's
ready_subscriptions): the first tests pin the derived lists to those hand lists (copied here as they
were), so behaviour is unchanged; the last ones declare a new topic with roles and find it in every
list its roles name."""
import itertools

import pytest

from policy_xai import bags, topics
from policy_xai.ros import graph as gr
from policy_xai.ros import replay as rp
from policy_xai.topics import (DECISION, EXPLANATION, OBSERVATION, PER_OBSERVATION, RELIABLE, ROBOT, Topic,
                               keys_with, names_with)

NODES = ("policy_node", "attribution_node", "visualization_node", "recorder")


# ---- the hand lists as they were before the roles -------------------------------------------------
def old_default_topics():
    keys = ("image", "joint_states", "obs_image", "obs_config", "torques", "relevance_image", "relevance_config",
            "relevance_points", "ratios", "importance", "diagnostics")
    return {k: topics.topic_name(k) for k in keys}


def old_replay_plan(topic_names, graph="auto"):
    T = old_default_topics()
    have = set(topic_names)
    obs = [T["obs_image"], T["obs_config"], T["torques"]]
    raw = [T["image"], T["joint_states"]]
    if graph in ("auto", "replay") and all(n in have for n in obs):
        return "replay", obs
    if graph in ("auto", "explain") and all(n in have for n in raw):
        return "explain", raw + [n for n in (topics.topic_name("camera_info"),) if n in have]
    return None, None


def old_ready_subscriptions(played, nodes):
    T = topics.TOPIC
    need = [(t, None) for t in played]
    if "attribution_node" in nodes:
        need += [(T[k].name, "attribution_node") for k in ("obs_image", "obs_config", "torques")]
    if "recorder" in nodes:
        keys = []
        if "policy_node" in nodes:
            keys += ["obs_image", "obs_config", "torques", "commands"]
        if "attribution_node" in nodes:
            keys += ["relevance_image", "relevance_config", "relevance_points", "ratios", "importance"]
        if "visualization_node" in nodes:
            keys += ["heatmap", "markers"]
        need += [(t, "recorder") for t in played] + [(T[k].name, "recorder") for k in keys]
    return need


def subsets(items):
    return itertools.chain.from_iterable(itertools.combinations(items, n) for n in range(len(items) + 1))


# ---- derived == today's -------------------------------------------------------------------------
def test_bag_topics_are_the_former_hand_list():
    assert bags.default_topics() == old_default_topics()


def test_replay_plan_plays_what_it_played():
    T = old_default_topics()
    names = [T["obs_image"], T["obs_config"], T["torques"], T["image"], T["joint_states"],
             topics.topic_name("camera_info"), T["ratios"], "/rosout"]
    for have in subsets(names):
        for graph in ("auto", "replay", "explain"):
            want_graph, want_topics = old_replay_plan(have, graph)
            if want_graph is None:
                with pytest.raises(bags.BagError):
                    bags.replay_plan(list(have), graph=graph)
                continue
            got = bags.replay_plan(list(have), graph=graph)
            # the same topics (the order of a played list does not matter: the player plays by log time)
            assert got["graph"] == want_graph and sorted(got["topics"]) == sorted(want_topics), (have, graph)


def test_ready_subscriptions_wait_for_what_they_waited_for():
    played = [topics.topic_name("obs_image"), topics.topic_name("torques")]
    for nodes in subsets(NODES):
        got, want = rp.ready_subscriptions(played, set(nodes)), old_ready_subscriptions(played, set(nodes))
        assert sorted(got, key=str) == sorted(want, key=str), nodes


def test_the_robot_topics_and_the_launch_arguments():
    assert keys_with(ROBOT) == ["joint_states", "image", "commands"]
    assert gr.topic_arguments() == {"joint_states_topic": ("joint_states", "/joint_states"),
                                    "image_topic": ("image", "/camera/image_raw"),
                                    "commands_topic": ("commands", "/effort_controller/commands")}
    # no argument given (or the default name): no remapping, as before
    for n in gr.graph("robot", topics={"image": "/camera/image_raw"}):
        assert n.remappings == ()
    nodes = gr.graph("robot", topics={"image": "/cameras/right_hand_camera/image"}, remappings=[("/a", "/b")])
    assert [n.name for n in nodes] == ["policy_node", "attribution_node", "visualization_node"]
    for n in nodes:
        assert n.remappings == (("/camera/image_raw", "/cameras/right_hand_camera/image"), ("/a", "/b"))
        args = n.ros_args()
        assert args[args.index("/camera/image_raw:=/cameras/right_hand_camera/image") - 1] == "-r"
    with pytest.raises(ValueError, match="no topic 'camera'"):
        gr.graph("robot", topics={"camera": "/x"})
    with pytest.raises(ValueError, match="empty name"):
        topics.remappings({"image": " "})


def test_roles_are_checked():
    with pytest.raises(ValueError, match="unknown roles"):
        Topic("x", "/x", "std_msgs/msg/String", RELIABLE, "sim_node", "x", roles=("observaton",))
    with pytest.raises(ValueError, match="unknown roles"):
        keys_with("recorded")
    assert set(topics.ROLE_USES) >= {r for t in topics.TOPICS for r in t.roles}
    # every role table row lists the topics of the role
    table = topics.role_table_markdown()
    for role in topics.ROLE_USES:
        row = next(line for line in table.splitlines() if line.startswith(f"| `{role}` |"))
        assert all(f"`{n}`" in row for n in names_with(role))


# ---- a new topic: one declaration, in every list its roles name -------------------------------
@pytest.fixture
def declare(monkeypatch):
    """declare(Topic(...)): the topic is declared, as one more line of topics.TOPICS would."""

    def add(t: Topic) -> Topic:
        monkeypatch.setattr(topics, "TOPICS", topics.TOPICS + (t,))
        monkeypatch.setitem(topics.TOPIC, t.key, t)  # the dict interfaces.TOPIC is too: the nodes' pub/sub
        return t

    return add


def test_a_new_observation_topic_is_read_replayed_and_remappable(declare):
    t = declare(Topic("gripper", "/gripper/state", "sensor_msgs/msg/JointState", RELIABLE, "sim_node",
                      "gripper opening", roles=(OBSERVATION, PER_OBSERVATION, ROBOT)))
    from policy_xai.ros import interfaces as itf

    assert itf.TOPIC["gripper"] is t
    assert bags.default_topics()["gripper"] == "/gripper/state"
    T = bags.default_topics()
    without = [T["image"], T["joint_states"]]
    with pytest.raises(bags.BagError, match="/gripper/state"):  # the explain graph now needs it
        bags.replay_plan(without, graph="explain")
    assert "/gripper/state" in bags.replay_plan(without + ["/gripper/state"])["topics"]
    assert gr.topic_arguments()["gripper_topic"] == ("gripper", "/gripper/state")
    assert gr.graph("robot", topics={"gripper": "/g"})[0].remappings == (("/gripper/state", "/g"),)
    # sim_node publishes it once per observation: a replay with sim_node and a recorder waits for it
    assert ("/gripper/state", "recorder") in rp.ready_subscriptions([], {"sim_node", "recorder"})


def test_a_new_explanation_topic_is_read_and_recorded_before_a_replay(declare):
    declare(Topic("relevance_depth", "/policy_xai/relevance/depth", "sensor_msgs/msg/Image", topics.SENSOR_DATA,
                  "attribution_node", "per-pixel relevance of a depth image", roles=(EXPLANATION, PER_OBSERVATION)))
    assert bags.default_topics()["relevance_depth"] == "/policy_xai/relevance/depth"
    need = rp.ready_subscriptions([], {"attribution_node", "recorder"})
    assert ("/policy_xai/relevance/depth", "recorder") in need
    assert ("/policy_xai/relevance/depth", "recorder") not in rp.ready_subscriptions([], {"policy_node", "recorder"})
    assert "relevance_depth" in keys_with(EXPLANATION) and "relevance_depth" not in keys_with(DECISION)


def test_a_recording_replay_waits_for_every_topic_the_nodes_report():
    """The replay waits until the recorder has every topic the graph's nodes publish (as their
    /diagnostics list it), whoever publishes it: the first explanations are not lost to the bag."""
    from policy_xai.ros.replay import recorded_outputs

    matched = {"user_explainer_node": {"/policy_xai/relevance/cameras/cam": "0", "/policy_xai/relevance/ratios": "1"}}
    assert recorded_outputs({"user_explainer_node", "visualization_node"}, matched) == (set(), [])
    topics, silent = recorded_outputs({"user_explainer_node", "visualization_node", "recorder"}, matched)
    assert topics == {"/policy_xai/relevance/cameras/cam", "/policy_xai/relevance/ratios"}
    assert silent == ["visualization_node"]
