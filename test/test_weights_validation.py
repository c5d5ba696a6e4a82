"""Weights files and specs with bad numbers (issue 9, item 7): NaN/inf torque limits or temperature in
the spec, NaN/inf weights, a spec that is not a JSON object, a zero config_std - each rejected with a
PolicyLoadError (SpecError for YAML specs) that names what is wrong. Real safetensors files, written
and read back."""
import json
import subprocess
import sys

import pytest
from safetensors.torch import save_file

from policy_xai.policy import FORMAT, PolicyLoadError, init_policy, load_policy, save_policy
from policy_xai.spec import SpecError, load_spec


def write(path, spec_json=None, mutate=None, meta_extra=None):
    """A weights file of the small spec, with its spec metadata / tensors changed."""
    p = init_policy("small")
    state = {k: v.detach().clone().contiguous() for k, v in p.state_dict().items()}
    if mutate:
        mutate(state)
    spec = p.spec.to_json() if spec_json is None else spec_json
    save_file(state, str(path), metadata={"format": FORMAT, "spec": spec, **(meta_extra or {})})
    return path


def spec_with(**changes) -> str:
    d = load_spec("small").to_dict()
    d.update(changes)
    return json.dumps(d)  # json writes NaN / Infinity as such (and json.loads reads them back)


@pytest.mark.parametrize("changes, words", [
    ({"torque_limits": [float("nan")] + [50.0] * 6}, ["torque_limits", "right_s0", "nan"]),
    ({"torque_limits": [50.0] * 6 + [float("inf")]}, ["torque_limits", "right_w2", "inf"]),
    ({"torque_limits": [50.0] * 6 + [-float("inf")]}, ["torque_limits", "right_w2"]),
    ({"softmax_temperature": float("nan")}, ["softmax_temperature", "nan"]),
    ({"softmax_temperature": float("inf")}, ["softmax_temperature", "inf"]),
    ({"softmax_temperature": 0.0}, ["softmax_temperature"]),
    ({"hidden": [40, float("inf")]}, ["hidden"]),
    ({"feature_points": float("nan")}, ["feature_points"]),
])
def test_bad_numbers_in_the_stored_spec_are_rejected(tmp_path, changes, words):
    path = write(tmp_path / "w.safetensors", spec_with(**changes))
    with pytest.raises(PolicyLoadError) as e:
        load_policy(path)
    msg = str(e.value)
    assert str(path) in msg and "spec" in msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("spec_json, words", [
    ("[1, 2, 3]", ["JSON object", "array"]),
    ('"small"', ["JSON object", "string"]),
    ("null", ["JSON object", "null"]),
    ("{not json", ["not valid JSON"]),
    (json.dumps({"name": "x"}), ["missing", "image"]),
])
def test_a_spec_that_is_not_a_json_object_is_rejected(tmp_path, spec_json, words):
    path = write(tmp_path / "w.safetensors", spec_json)
    with pytest.raises(PolicyLoadError) as e:
        load_policy(path)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_config_groups_metadata_that_is_not_json_is_rejected(tmp_path):
    path = write(tmp_path / "w.safetensors", meta_extra={"config_groups": "[[oops"})
    with pytest.raises(PolicyLoadError, match="config_groups"):
        load_policy(path)


@pytest.mark.parametrize("name, value, words", [
    ("fcs.0.weight", float("nan"), ["fcs.0.weight", "1 NaN"]),
    ("convs.1.bias", float("inf"), ["convs.1.bias", "1 inf"]),
    ("fcs.2.bias", -float("inf"), ["fcs.2.bias", "1 inf"]),
    ("config_mean", float("nan"), ["config_mean"]),
])
def test_nan_or_inf_weights_are_rejected(tmp_path, name, value, words):
    def mutate(state):
        state[name].view(-1)[0] = value

    with pytest.raises(PolicyLoadError) as e:
        load_policy(write(tmp_path / "w.safetensors", mutate=mutate))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_zero_config_std_and_torque_limits_unlike_the_spec_are_rejected(tmp_path):
    def zero_std(state):
        state["config_std"][3] = 0.0

    with pytest.raises(PolicyLoadError, match=r"config_std must be positive.*element 3"):
        load_policy(write(tmp_path / "a.safetensors", mutate=zero_std))

    def other_limits(state):
        state["torque_limits"][0] = 500.0

    with pytest.raises(PolicyLoadError, match="torque_limits tensor"):
        load_policy(write(tmp_path / "b.safetensors", mutate=other_limits))


def test_good_files_still_load_and_act_finitely(tmp_path):
    p = load_policy(save_policy(init_policy("small", seed=3), tmp_path / "w.safetensors"))
    import numpy as np

    tau = p.act(np.zeros((64, 64, 3), np.uint8), np.zeros(20))
    assert np.all(np.isfinite(tau))
    from policy_xai.training import model_path

    for task in ("reach", "reach2d", "peg", "door"):
        load_policy(model_path(task))  # the shipped weights pass every check


def test_yaml_specs_are_validated_the_same_way(tmp_path):
    base = (load_spec("small").to_dict())
    import yaml

    for changes, words in [({"torque_limits": [".nan"] * 7}, ["torque_limits", "nan"]),
                           ({"softmax_temperature": ".inf"}, ["softmax_temperature", "inf"]),
                           ({"hidden": ["forty", 40]}, ["hidden", "forty"]),
                           ({"conv": [{"channels": ".inf", "kernel": 5}]}, ["channels"])]:
        d = dict(base, **changes)
        text = yaml.safe_dump(d).replace("'.nan'", ".nan").replace("'.inf'", ".inf")
        f = tmp_path / "spec.yaml"
        f.write_text(text)
        with pytest.raises(SpecError) as e:
            load_spec(str(f))
        for w in words:
            assert w in str(e.value), (changes, str(e.value))
    f.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(str(f))
    with pytest.raises(SpecError, match="mapping"):
        load_spec([1, 2])  # a list handed to load_spec in Python


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path):
    path = write(tmp_path / "w.safetensors", "[1, 2]")
    p = subprocess.run([sys.executable, "-m", "policy_xai.cli", "explain", "--policy", str(path), "--out",
                        str(tmp_path / "o"), "--steps", "2"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith("policy-xai explain: error: ")
    assert "JSON object" in p.stderr
