"""config/policy_xai.rviz (what `ros2 launch policy_xai sim.launch.py rviz:=true` opens) against the
topic declarations of the live pipeline (policy_xai.ros.interfaces.TOPICS): every display's topic is
declared, with the message type the display subscribes to and a QoS it can match. rviz2 itself does
not run here; the file is read as the YAML rviz2 reads."""
from pathlib import Path

import pytest
import yaml

from policy_xai.ros import interfaces as itf

ROOT = Path(__file__).resolve().parents[1]
RVIZ = ROOT / "config" / "policy_xai.rviz"

# rviz_default_plugins display class -> (topic field, message type it subscribes to)
DISPLAY_TOPICS = {
    "rviz_default_plugins/Image": ("Topic", "sensor_msgs/msg/Image"),
    "rviz_default_plugins/Camera": ("Topic", "sensor_msgs/msg/Image"),
    "rviz_default_plugins/MarkerArray": ("Topic", "visualization_msgs/msg/MarkerArray"),
    "rviz_default_plugins/Marker": ("Topic", "visualization_msgs/msg/Marker"),
    "rviz_default_plugins/RobotModel": ("Description Topic", "std_msgs/msg/String"),
    "rviz_default_plugins/PointStamped": ("Topic", "geometry_msgs/msg/PointStamped"),
    "rviz_default_plugins/JointState": ("Topic", "sensor_msgs/msg/JointState"),
}
NO_TOPIC = {"rviz_default_plugins/Grid", "rviz_default_plugins/TF", "rviz_default_plugins/Axes"}


def displays(items):
    """Every display of the config, groups flattened."""
    for d in items or ():
        yield d
        if d.get("Class") == "rviz_common/Group":
            yield from displays(d.get("Displays"))


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(RVIZ.read_text())


def subscriptions(config):
    """(display name, class, topic name, message type, topic settings) per display that subscribes."""
    out = []
    for d in displays(config["Visualization Manager"]["Displays"]):
        cls = d["Class"]
        if cls in NO_TOPIC:
            continue
        assert cls in DISPLAY_TOPICS, f"display {d.get('Name')!r}: class {cls} is unknown to this test; add the " \
                                      f"message type it subscribes to to DISPLAY_TOPICS"
        field, msgtype = DISPLAY_TOPICS[cls]
        if cls == "rviz_default_plugins/RobotModel" and d.get("Description Source", "Topic") != "Topic":
            continue  # the description comes from a file, no subscription
        topic = d.get(field)
        assert isinstance(topic, dict) and topic.get("Value"), f"display {d.get('Name')!r} has no {field}"
        out.append((d.get("Name"), cls, topic["Value"], msgtype, topic))
    return out


def test_every_display_topic_is_declared_with_its_type(config):
    declared = {t.name: t for t in itf.TOPICS}
    subs = subscriptions(config)
    assert subs
    problems = []
    for name, cls, topic, msgtype, _ in subs:
        if topic not in declared:
            problems.append(f"display {name!r} ({cls}) shows {topic}, which interfaces.TOPICS does not declare")
        elif declared[topic].type != msgtype:
            problems.append(f"display {name!r} ({cls}) needs {msgtype} on {topic}; TOPICS declares "
                            f"{declared[topic].type}")
    assert not problems, "\n".join(problems)


def test_display_qos_matches_the_publishers(config):
    """A reliable display never matches a best-effort (sensor data) publisher, a transient-local one
    only a latched publisher; best-effort / volatile displays match any."""
    declared = {t.name: t for t in itf.TOPICS}
    problems = []
    for name, _, topic, _, settings in subscriptions(config):
        if topic not in declared:
            continue  # reported by the test above
        qos = declared[topic].qos
        if settings.get("Reliability Policy", "Reliable") == "Reliable" and qos == itf.SENSOR_DATA:
            problems.append(f"display {name!r}: reliable subscription to the best-effort {topic}")
        if settings.get("Durability Policy", "Volatile") == "Transient Local" and qos != itf.LATCHED:
            problems.append(f"display {name!r}: transient-local subscription to the {qos} {topic}")
        depth = settings.get("Depth", 1)
        if not (isinstance(depth, int) and depth >= 1):
            problems.append(f"display {name!r}: depth {depth!r}")
    assert not problems, "\n".join(problems)


def test_every_visualisation_topic_has_a_display(config):
    shown = {topic for _, _, topic, _, _ in subscriptions(config)}
    published = {t.name for t in itf.TOPICS if t.publisher == "visualization_node"}
    assert published and published <= shown, f"not shown in {RVIZ.name}: {sorted(published - shown)}"


def test_the_displays_show_exactly_the_topics_with_the_rviz_role(config):
    """The rviz role of policy_xai.topics is the list of what the config shows: a topic given the role
    needs a display, a display needs a topic with the role."""
    from policy_xai.topics import RVIZ, names_with

    shown = {topic for _, _, topic, _, _ in subscriptions(config)}
    role = set(names_with(RVIZ))
    assert shown == role, f"shown, without the rviz role: {sorted(shown - role)}; with the role, not shown: " \
                          f"{sorted(role - shown)}"


def test_fixed_frame_is_the_markers_frame(config):
    frame = config["Visualization Manager"]["Global Options"]["Fixed Frame"]
    assert frame == itf.NODES["visualization_node"].parameters["frame_id"]
    assert frame == itf.NODES["sim_node"].parameters["frame_id"]
