"""The task registry (policy_xai.robot.tasks): one declaration per task, read by every command. A toy
task registered in one place (a copy of reach with its blocks moved) is offered by the commands'
--task choices, built and solved by the simulator and its expert, and gone again once unregistered."""
import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from policy_xai.cli import build_parser
from policy_xai.robot import experts
from policy_xai.robot.errors import UnknownTaskError
from policy_xai.robot.sim import Simulation
from policy_xai.robot.tasks import (TASKS, Condition, Task, get_task, register_task, task_names, task_of_weights,
                                    unregister_task)

SRC = Path(__file__).resolve().parents[1] / "src" / "policy_xai"
TOY = "reach_toy"


def toy_task() -> Task:
    """reach with its 4 blocks 4 cm further out and 2 cm to the side, no shipped weights."""
    reach = get_task("reach")
    conds = [Condition(c.q0, (c.target[0] + 0.04, c.target[1] + 0.02, c.target[2]), c.name) for c in reach.conditions]
    return dataclasses.replace(reach, name=TOY, conditions=conds, weights="", faithfulness_goals=(),
                               description="reach, blocks moved (test task)")


@pytest.fixture
def toy():
    task = register_task(toy_task())
    try:
        yield task
    finally:
        unregister_task(TOY)


def _choices(parser, *path, dest="task"):
    """The choices of option `dest` of the subcommand at `path` (e.g. "robot", "bench")."""
    import argparse

    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return next(a for a in parser._actions if a.dest == dest).choices


def test_the_shipped_tasks_and_what_they_declare():
    assert task_names() == ("reach2d", "reach", "peg", "door") == tuple(TASKS)
    assert [get_task(t).robot for t in task_names()] == ["two_link_arm"] + ["baxter_right_arm"] * 3
    assert [get_task(t).spec for t in task_names()] == ["reach2d", "small", "small", "small"]
    assert [get_task(t).weights for t in task_names()] == [f"{t}.safetensors" for t in task_names()]
    assert get_task("peg").expert_class() is experts.PegExpert and get_task("door").expert_class() is experts.DoorExpert
    from policy_xai.training import teachers

    assert get_task("door").teacher_class() is teachers.DoorFeedbackExpert
    assert get_task("reach2d").teacher_class() is teachers.FeedbackExpert
    assert get_task("door").scene_state == ("door_angle",) and get_task("reach").scene_state == ()
    assert [t for t in task_names() if get_task(t).target_change] == ["reach2d", "reach"]
    assert task_of_weights("/x/models/peg.safetensors") == "peg" == task_of_weights("out/peg.v2.safetensors")
    assert task_of_weights("mine.safetensors") == ""


def test_unknown_names_list_the_known_tasks():
    with pytest.raises(ValueError, match="unknown task 'fly'; known tasks: reach2d, reach, peg, door"):
        get_task("fly")
    with pytest.raises(UnknownTaskError, match="known tasks"):
        Simulation("fly", render=False)
    with pytest.raises(UnknownTaskError):
        unregister_task("fly")


def test_bad_declarations_are_refused_at_registration():
    base = toy_task()
    for changes, words in [({"name": "two words"}, "task name"), ({"name": "reach"}, "already registered"),
                           ({"conditions": []}, "at least one condition"),
                           ({"conditions": [Condition((0.0,), (1.0, 2.0))]}, "condition 0 .* needs a target"),
                           ({"scene": "not callable"}, "scene must be a callable"),
                           ({"expert": "no_colon"}, "expert must be a class"),
                           ({"weights": "models/x.safetensors"}, "file name in models/"),
                           ({"robot": ""}, "robot must name")]:
        with pytest.raises(ValueError, match=words):
            register_task(dataclasses.replace(base, **changes))
    assert task_names() == ("reach2d", "reach", "peg", "door")
    with pytest.raises(TypeError):
        register_task("reach")
    replaced = register_task(dataclasses.replace(get_task("reach")), replace=True)  # replace=True: in its place
    assert get_task("reach") is replaced and task_names() == ("reach2d", "reach", "peg", "door")


def test_a_registered_task_is_offered_by_the_commands(toy):
    assert task_names()[-1] == TOY
    parser = build_parser()  # built after the registration: the choices are the registry's
    for path in (("analyze-rollout",), ("train",), ("collect",), ("evaluate",), ("robot", "bench"), ("demo",)):
        assert TOY in _choices(parser, *path), path
    args = parser.parse_args(["train", "--task", TOY])
    assert args.task == TOY
    assert parser.parse_args(["analyze-rollout", "--task", TOY]).task == TOY
    assert TOY in parser.parse_args(["robot", "experts"]).tasks.split(",")
    # faithfulness: no --tasks means the library's default, every registered task
    from policy_xai.faithfulness import Options

    assert parser.parse_args(["faithfulness", "--out", "x"]).tasks is None and TOY in Options().tasks
    from policy_xai.training import default_spec, model_path

    assert default_spec(TOY) == "small"
    with pytest.raises(FileNotFoundError, match=f"task '{TOY}' ships no trained weights"):
        model_path(TOY)


def test_a_registered_task_is_built_and_solved_by_the_simulator(toy):
    from policy_xai.training import FeedbackExpert, make_teacher

    with Simulation(TOY, image_size=32, seed=0) as sim:
        assert sim.task is toy
        np.testing.assert_allclose(sim.reset(2).joint_position, toy.conditions[2].q0)
        np.testing.assert_allclose(sim.target_position, toy.conditions[2].target)
        assert sim.render().shape == (32, 32, 3) and sim.object_masks()["target"].any()
        assert type(experts.make_expert(sim)) is experts.ReachExpert and type(make_teacher(sim)) is FeedbackExpert
        r = experts.run_expert(sim, 0)
        assert r["success"], r


def test_after_unregistering_nothing_offers_it():
    register_task(toy_task())
    unregister_task(TOY)
    assert TOY not in task_names()
    parser = build_parser()
    assert TOY not in _choices(parser, "train")
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--task", TOY])
    with pytest.raises(UnknownTaskError):
        Simulation(TOY, render=False)


def test_no_module_declares_task_names_of_its_own():
    """The shipped task names appear as string literals only in robot/tasks.py: everything else asks
    the registry (commands' choices, experts, teachers, specs, weights, scene state, faithfulness)."""
    names = {"reach2d", "peg", "door"}
    bad = []
    for f in sorted(SRC.rglob("*.py")):
        if f == SRC / "robot" / "tasks.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                bad.append(f"{f.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert not bad, bad


def test_outside_the_simulator_nothing_reads_its_private_fields():
    """Task callbacks and tools use the public Simulation API (mj_model, mj_data, site_position, ...)."""
    bad = []
    private = ("_m", "_d", "_mj", "_cam", "_rng", "_qadr", "_vadr", "_extra_qpos", "_site_ids", "_target_mocap",
               "_renderer", "_act", "_ee_site", "_last", "_object_luts", "_render")
    for f in sorted(SRC.rglob("*.py")):
        if f == SRC / "robot" / "sim.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private and not (
                    isinstance(node.value, ast.Name) and node.value.id == "self"):
                bad.append(f"{f.relative_to(SRC)}:{node.lineno} .{node.attr}")
    assert not bad, bad
