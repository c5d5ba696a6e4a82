"""One policy resolver (policy_xai.resolve): a weights file (optionally checked against a spec), a spec
name or YAML file (an untrained network with a seed) or a task name (its shipped weights from the task
registry), on a device; every failure one ValueError line saying what is accepted. The commands and the
library (bags.analyze, sanity) use it."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cli_harness import cli
from policy_xai.policy import init_policy, load_policy, save_policy
from policy_xai.resolve import PolicySourceError, policy_source, resolve_policy, trained_policy
from policy_xai.resources import share_path
from policy_xai.robot.tasks import get_task, register_task, unregister_task
from policy_xai.spec import load_spec

MODELS = share_path("models")


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def one_line_error(source, match, **kw):
    with pytest.raises(PolicySourceError, match=match) as e:
        resolve_policy(source, label="--policy", **kw)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    return str(e.value)


# ---- the forms --------------------------------------------------------------------------------------
def test_a_weights_file(tmp_path):
    w = save_policy(init_policy("small", seed=5), tmp_path / "w.safetensors")
    for source in (w, str(w)):
        src = policy_source(source)
        assert (src.kind, src.weights, src.trained) == ("weights", Path(w), True)
        p = resolve_policy(source, device="cpu")
        assert same_weights(p, init_policy("small", seed=5)) and not p.training
    assert same_weights(resolve_policy(w, spec="small"), load_policy(w))  # the spec it was saved for
    assert resolve_policy(w, spec="spec:small").spec.name == "small"


def test_a_spec_name_or_yaml_file_is_an_untrained_network_with_a_seed(tmp_path):
    a, b, c = resolve_policy("small", seed=3), resolve_policy("small", seed=3), resolve_policy("small", seed=4)
    assert same_weights(a, b) and not same_weights(a, c) and same_weights(a, init_policy("small", seed=3))
    src = policy_source("small")
    assert (src.kind, src.trained, src.spec.name, src.spec_file.name) == ("spec", False, "small", "small.yaml")
    assert src.describe() == "untrained small"
    d = load_spec("small").to_dict()
    d["name"] = "mine"
    f = tmp_path / "mine.yaml"
    f.write_text(yaml.safe_dump(d))
    assert resolve_policy(f, seed=1).spec.name == "mine" == resolve_policy(str(f)).spec.name
    assert resolve_policy(load_spec(d)).spec.name == "mine" == resolve_policy(d).spec.name  # PolicySpec, mapping


def test_a_task_name_is_its_shipped_weights():
    src = policy_source("reach")
    assert (src.kind, src.task, src.weights) == ("task", "reach", MODELS / get_task("reach").weights)
    assert same_weights(resolve_policy("reach"), load_policy(MODELS / "reach.safetensors"))
    # reach2d is a spec and a task: bare it is the spec, task:/spec: choose
    assert policy_source("reach2d").kind == "spec" and policy_source("spec:reach2d").kind == "spec"
    t = policy_source("task:reach2d")
    assert t.kind == "task" and t.weights == MODELS / "reach2d.safetensors"
    policy, path = trained_policy("peg")
    assert path == MODELS / "peg.safetensors" and policy.spec.name == "small"


def test_accept_narrows_the_kinds():
    assert policy_source("reach", accept=("weights", "task")).trained
    msg = one_line_error("small", "names an untrained network", accept=("weights", "task"))
    assert "task name" in msg and "reach2d, reach, peg, door" in msg
    one_line_error("reach", "names the shipped weights of task 'reach'", accept=("weights",))
    with pytest.raises(ValueError, match="accept"):
        policy_source("small", accept=("model",))


# ---- the errors -------------------------------------------------------------------------------------
def test_missing_empty_folder_and_corrupt_files(tmp_path):
    one_line_error(tmp_path / "missing.safetensors", "--policy file not found: .*missing.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    one_line_error(tmp_path / "empty.safetensors", "is empty")
    one_line_error(tmp_path, "is a folder, not a weights file")
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    one_line_error(tmp_path / "corrupt.safetensors", "corrupt.safetensors: not a readable safetensors")
    (tmp_path / "other.bin").write_bytes(b"\x00" * 64)  # an existing file that is no YAML: read as weights
    one_line_error(tmp_path / "other.bin", "other.bin: not a readable safetensors")
    one_line_error(tmp_path / "nowhere" / "spec.yaml", "file not found")


def test_bad_specs(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: [1\n")
    one_line_error(f, "bad.yaml: not valid YAML")
    one_line_error("sim", "sim.yaml: policy spec is missing")  # a shipped parameter file, not a spec
    one_line_error("spec:nope", "no such spec file or shipped spec; shipped specs: .*small")
    one_line_error("small", "only for trained weights", spec="small")
    one_line_error(MODELS / "reach.safetensors", "saved for spec 'small', which differs from the requested spec "
                                                 "'paper'", spec="paper")
    one_line_error(MODELS / "reach.safetensors", "--policy spec 'nope'", spec="nope")


def test_unknown_names_say_what_is_accepted():
    msg = one_line_error("walk", "'walk': not a file, a shipped spec or a task")
    for word in (".safetensors weights file", "small", "paper", "reach2d, reach, peg, door", "task:NAME"):
        assert word in msg, msg
    one_line_error("task:fly", "unknown task 'fly'; known tasks: reach2d, reach, peg, door")
    one_line_error("", "none given")
    one_line_error(3, "a path or a name, got int")


def test_a_task_without_shipped_weights():
    register_task(dataclasses.replace(get_task("reach"), name="reach_untrained", weights=""))
    try:
        one_line_error("reach_untrained", "task 'reach_untrained' ships no trained weights; train them with "
                                          "`policy-xai train --task reach_untrained")
    finally:
        unregister_task("reach_untrained")


def test_finding_what_a_source_names_loads_no_torch():
    code = ("import sys; from policy_xai.resolve import policy_source; "
            "print([policy_source(s).kind for s in ('reach', 'small', 'task:reach2d')], 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "['task', 'spec', 'task'] False", out.stderr


# ---- the users ----------------------------------------------------------------------------------------
def test_the_library_uses_it():
    from policy_xai.bags.analyze import AnalyzeOptions, load_policy as analyze_policy
    from policy_xai.sanity import RANDOM_NET_TEMPERATURE, policy_from_arg

    assert same_weights(analyze_policy(AnalyzeOptions("x", policy="reach", threads=0)), resolve_policy("reach"))
    assert same_weights(analyze_policy(AnalyzeOptions("x", policy="small", seed=2, threads=0)),
                        resolve_policy("small", seed=2))
    with pytest.raises(PolicySourceError, match="--policy 'walk'"):
        analyze_policy(AnalyzeOptions("x", policy="walk", threads=0))
    trained = policy_from_arg("reach")
    assert trained.softmax.temperature == load_policy(MODELS / "reach.safetensors").softmax.temperature
    assert policy_from_arg("small").softmax.temperature == RANDOM_NET_TEMPERATURE
    assert policy_from_arg("spec:reach2d", temperature=0.5).softmax.temperature == 0.5


def test_the_commands_take_every_form(capsys, tmp_path):
    rc, out, err = cli(capsys, "explain", "--policy", "task:reach2d", "--steps", 2, "--methods", "gradient",
                       "--panels", 0, "--out", tmp_path / "e")
    assert rc == 0, err
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["spec"] == "reach2d"
    rc, _, err = cli(capsys, "explain", "--policy", "walk", "--out", tmp_path / "o")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "one of:" in lines[0] and "reach2d, reach, peg, door" in lines[0], err
    assert not (tmp_path / "o").exists()
    rc, out, err = cli(capsys, "evaluate", "--task", "reach2d", "--policy", "spec:reach2d", "--episodes", 1,
                       "--no-blank", "--no-heldout")
    assert rc == 0 and "evaluating untrained reach2d on task 'reach2d'" in out, err
