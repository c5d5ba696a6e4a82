"""`policy-xai explain-model --bag`: a user's policy explained over a real rosbag2 recording (written
with rosbags: camera images and joint states in another joint order, plus a joint the mapping does not
use), read through the shipped user_policy_sim mapping. The numbers must equal explaining the same
observations given directly as an .npz; bad bags are one-line errors, bad messages skipped and counted."""
import json

import numpy as np
import pytest
import torch

from policy_xai.bags.synthetic import write_synthetic_bag
from policy_xai.resources import config_path
from policy_xai.spec import load_spec
from policy_xai.synthetic import synthetic_observations

from cli_harness import cli

FACTORY = "policy_xai.attribution.graph.models:robomimic_bc"
KW = {"width": 4, "image_size": 64, "hidden": [16], "low_dim": {"joint_state": 14}}
STEPS = 6


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from safetensors.torch import save_file

    from policy_xai.attribution.graph.models import randomize_norms, robomimic_bc

    d = tmp_path_factory.mktemp("bag_em")
    torch.manual_seed(3)
    model = robomimic_bc(**KW).eval()
    randomize_norms(model)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "w.safetensors"))
    spec = load_spec("small")
    write_synthetic_bag(d / "run", spec, steps=STEPS, seed=1)
    write_synthetic_bag(d / "big", spec, steps=STEPS, seed=1, image_size=(96, 96))
    # the same observations, as the mapping reads them: images, and positions then velocities by joint name
    images, configs = synthetic_observations(spec, STEPS, seed=1)
    sl = spec.group_slices()
    joint_state = np.concatenate([configs[:, sl["joint_position"]], configs[:, sl["joint_velocity"]]], 1)
    np.savez(d / "obs.npz", agentview_image=images, joint_state=joint_state.astype(np.float32))
    return d


def run(capsys, d, out, *extra, source=("--bag", "run")):
    flag, name = source
    return cli(capsys, "explain-model", "--model", FACTORY, "--weights", d / "w.safetensors", "--factory-kwargs",
               json.dumps(KW), "--mapping", config_path("user_policy_sim.yaml"), flag, d / name, "--method", "dtd",
               "--batch", "4", "--out", out, *extra)


def test_a_bag_gives_the_numbers_of_the_same_observations_as_npz(capsys, files):
    rc, out, err = run(capsys, files, files / "from_bag")
    assert rc == 0, err
    rc, _, err = run(capsys, files, files / "from_npz", source=("--observations", "obs.npz"))
    assert rc == 0, err
    a, b = np.load(files / "from_bag" / "relevance.npz"), np.load(files / "from_npz" / "relevance.npz")
    for k in ("agentview_image", "joint_state"):
        assert a[k].shape[0] == STEPS
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-7)
    sa = json.loads((files / "from_bag" / "summary.json").read_text())
    sb = json.loads((files / "from_npz" / "summary.json").read_text())
    assert sa["steps"] == STEPS and np.allclose(sa["outputs"], sb["outputs"], atol=1e-6)
    # the stamps are the recording's: one period (50 ms) apart
    assert np.all(np.diff(sa["stamps_ns"]) == 50_000_000) and sa["skipped_messages"] == {}


def test_a_bag_without_the_mapped_topic_is_one_line(capsys, files, tmp_path):
    from rosbags.rosbag2 import Writer

    from policy_xai.bags.common import typestore

    ts = typestore()
    with Writer(tmp_path / "only_js", version=9) as w:
        w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
    rc, out, err = run(capsys, files, tmp_path / "o", source=("--bag", str(tmp_path / "only_js")))
    assert rc != 0 and "/camera/image_raw" in err and "the mapping's topics" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_images_of_another_size_are_skipped_with_the_reason_or_resized(capsys, files):
    rc, out, err = run(capsys, files, files / "big_no")
    assert rc == 0  # the "run" bag: control
    rc, out, err = run(capsys, files, files / "big_refused", source=("--bag", "big"))
    assert rc != 0 and "no step has every mapped topic" in err and "96x96" in err and "resize" in err
    rc, out, err = run(capsys, files, files / "big_resized", "--resize", source=("--bag", "big"))
    assert rc == 0, err
    assert np.load(files / "big_resized" / "relevance.npz")["agentview_image"].shape == (STEPS, 3, 64, 64)


def test_observations_and_bag_are_one_or_the_other(capsys, files):
    rc, out, err = run(capsys, files, files / "both", "--observations", files / "obs.npz")
    assert rc != 0 and "one of the two" in err


def test_replay_plays_a_bag_into_a_users_model_live_and_offline_agrees(capsys, files):
    """`policy-xai replay BAG --model ...`: the bag's camera images and joint states played into a
    user_explainer_node (it never commands) and the visualisation node, over real DDS, recorded; the
    recorded live ratios equal `explain-model --bag` on the same bag, stamp by stamp."""
    from policy_xai.bags.common import stamp_ns, typestore
    from policy_xai.bags.source import BagSource
    from policy_xai.topics import topic_name

    from ros_harness import fresh_domain

    rec = files / "replayed"
    rc, out, err = cli(capsys, "replay", files / "run", "--model", FACTORY, "--weights", files / "w.safetensors",
                       "--model-kwargs", json.dumps(KW), "--record", rec, "--domain-id", fresh_domain(),
                       "--rate", "0.2",  # 4 Hz: a node on a loaded machine keeps the latest frame only
                       "--log-dir", files / "replay_logs")
    assert rc == 0, out + err
    assert "graph 'user_replay'" in out and f"published {2 * STEPS} messages" in out, out
    ts = typestore()
    live, topics = {}, {}
    with BagSource(rec) as bag:
        for topic, _, raw in bag.messages():
            topics[topic] = topics.get(topic, 0) + 1
            if topic == topic_name("ratios"):
                m = ts.deserialize_cdr(raw, bag.topics[topic].msgtype)
                live[stamp_ns(m)] = dict(zip(m.name, m.position))
    assert topic_name("commands") not in topics  # explain only: never a command
    assert topics.get("/policy_xai/relevance/cameras/agentview_image", 0) >= STEPS - 1, topics
    assert topics.get(topic_name("heatmap"), 0) >= 1, topics  # the camera topic feeds the heatmap overlay
    rc, _, err = run(capsys, files, files / "replayed_offline", source=("--bag", "replayed"))
    assert rc == 0, err
    s = json.loads((files / "replayed_offline" / "summary.json").read_text())
    offline = {}
    import csv

    for r in csv.DictReader(open(files / "replayed_offline" / "ratios.csv")):
        if r["input"] == "agentview_image" and not r["group"]:
            offline[int(r["stamp_ns"])] = float(r["ratio"])
    assert len(live) >= STEPS - 1 and set(live) <= set(offline) and len(s["stamps_ns"]) == STEPS
    for stamp, names in live.items():
        assert abs(names["agentview_image"] - offline[stamp]) < 1e-5, (stamp, names, offline[stamp])
