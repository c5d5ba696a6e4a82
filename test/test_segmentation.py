"""Segmentation masks of the task objects (Simulation.render_segmentation / object_masks), real MuJoCo.

A measurement tool for explanation faithfulness: the masks must align pixel for pixel with the RGB
image of render() and cover the objects each task declares (Task.objects, Task.main_object).
"""
import colorsys
import dataclasses

import numpy as np
import pytest

from policy_xai.robot import Simulation
from policy_xai.robot.tasks import TASKS, get_task

TASK_NAMES = ("reach2d", "reach", "peg", "door")
EXPECTED_OBJECTS = {
    "reach2d": {"target", "table", "arm"},
    "reach": {"target", "table", "floor", "arm"},
    "peg": {"hole_block", "peg", "table", "floor", "arm"},
    "door": {"door", "panel", "handle", "frame", "hook", "table", "floor", "arm"},
}
MAIN = {"reach2d": "target", "reach": "target", "peg": "hole_block", "door": "door"}
# the object whose colour is checked in the RGB image, and the geom that gives its colour, per task
COLOURED = {"reach2d": ("target", "target"), "reach": ("target", "target"), "peg": ("hole_block", "hole_wall0"),
            "door": ("panel", "door_panel")}
# objects that contain others (all other pairs of objects must be disjoint)
PARTS = {"door": ("panel", "handle", "frame")}


@pytest.fixture(scope="module")
def sims():
    out = {t: Simulation(t, image_size=64, seed=0) for t in TASK_NAMES}
    yield out
    for s in out.values():
        s.close()


def _project(sim, p) -> np.ndarray:
    """(row, col) image coordinates (pixel i spans [i, i+1)) of world point p in sim's camera."""
    m, d, c = sim.mj_model, sim.mj_data, sim.camera_id
    h, w = sim.image_shape[:2]
    pc = d.cam_xmat[c].reshape(3, 3).T @ (np.asarray(p, float) - d.cam_xpos[c])
    f = (h / 2) / np.tan(np.radians(m.cam_fovy[c]) / 2)
    return np.array([h / 2 - f * pc[1] / -pc[2], w / 2 + f * pc[0] / -pc[2]])


def _centroid(mask) -> np.ndarray:
    return np.argwhere(mask).mean(0) + 0.5   # pixel centres, in _project's coordinates


def _chroma(rgb) -> np.ndarray:
    rgb = np.asarray(rgb, float)
    return rgb / rgb.sum(-1, keepdims=True)


def _hue_gap(rgb, ref) -> np.ndarray:
    """Hue difference (degrees) of each rgb row to ref: brightness, specular light and clipping at 255
    leave the hue of a lit geom nearly unchanged."""
    ref_h = colorsys.rgb_to_hsv(*np.asarray(ref, float))[0]
    h = np.array([colorsys.rgb_to_hsv(*(np.asarray(x, float) / 255))[0] for x in np.atleast_2d(rgb)])
    d = np.abs(h - ref_h) * 360
    return np.minimum(d, 360 - d)


def test_declared_objects_and_geoms(sims):
    for t in TASK_NAMES:
        task, sim = TASKS[t], sims[t]
        assert set(task.objects) == EXPECTED_OBJECTS[t] and task.main_object == MAIN[t]
        names = {k: {sim.mj_model.geom(i).name for i in ids} for k, ids in sim.object_geoms.items()}
        assert set(names) == EXPECTED_OBJECTS[t]
        # "arm": every geom of the URDF's links, without the task's end-effector geoms
        link_names = {lk.name for lk in sim.description.links}
        urdf_geoms = {sim.mj_model.geom(i).name for i in range(sim.mj_model.ngeom)
                      if sim.mj_model.body(sim.mj_model.geom_bodyid[i]).name in link_names}
        assert names["arm"] == urdf_geoms - {"peg", "hook_shaft"} and len(names["arm"]) >= 4
    peg = sims["peg"]
    assert peg.object_geoms and {peg.mj_model.geom(i).name for i in peg.object_geoms["hole_block"]} \
        == {"hole_wall0", "hole_wall1", "hole_wall2", "hole_wall3", "target"}
    door = {k: {sims["door"].mj_model.geom(i).name for i in v} for k, v in sims["door"].object_geoms.items()}
    assert door["handle"] == {"handle_bar", "handle_post_a", "handle_post_b"} and door["hook"] == {"hook_shaft"}
    assert door["table"] == {"table", "table_leg"}


@pytest.mark.parametrize("task", TASK_NAMES)
def test_main_object_visible_with_its_colour(sims, task):
    sim = sims[task]
    coloured, geom = COLOURED[task]
    rgba = sim.mj_model.geom_rgba[sim.mj_model.geom(geom).id, :3]
    for c in range(4):
        img = sim.reset(c).image
        seg = sim.render_segmentation()
        masks = sim.object_masks()
        assert seg.shape == img.shape[:2] and seg.dtype == np.int32
        assert seg.min() >= -1 and seg.max() < sim.mj_model.ngeom
        assert set(masks) == EXPECTED_OBJECTS[task] | {"background"}
        assert all(m.shape == img.shape[:2] and m.dtype == bool for m in masks.values())
        assert masks[MAIN[task]].sum() >= 8, (task, c)
        # the masked pixels have the geom's colour (its hue: the lighting scales the brightness)
        px = img[masks[coloured]].astype(float)
        assert _hue_gap(px.mean(0), rgba)[0] < 10, (task, c, px.mean(0), rgba)
        assert np.mean(_hue_gap(px, rgba) < 15) > 0.9, (task, c)
        assert np.mean(np.argmax(px, 1) == np.argmax(rgba)) > 0.9, (task, c)
        # background: no geom, the black clear colour; everything else belongs to some declared object
        assert np.all(img[masks["background"]] == 0)
        covered = np.logical_or.reduce([m for k, m in masks.items() if k != "background"])
        assert np.array_equal(covered, ~masks["background"])
        # the main object's pixels differ from the rest of the image
        assert np.abs(img[masks[coloured]].mean(0) - img[~masks[coloured]].mean(0)).max() > 20


@pytest.mark.parametrize("task", TASK_NAMES)
def test_masks_are_disjoint(sims, task):
    sim = sims[task]
    sim.reset(1)
    masks = sim.object_masks()
    whole = {w: parts for w, parts in PARTS.items() if w in masks}
    in_a_whole = {p for parts in whole.values() for p in parts}
    flat = [k for k in masks if k not in in_a_whole]   # the top-level objects and the background
    for i, a in enumerate(flat):
        for b in flat[i + 1:]:
            assert not np.any(masks[a] & masks[b]), (task, a, b)
    for w, parts in whole.items():
        for i, a in enumerate(parts):
            assert masks[a].any(), (task, a)
            for b in parts[i + 1:]:
                assert not np.any(masks[a] & masks[b]), (task, a, b)
        assert np.array_equal(np.logical_or.reduce([masks[p] for p in parts]), masks[w])
    # the geom ids agree with the masks
    seg = sim.render_segmentation()
    for k, ids in sim.object_geoms.items():
        assert np.array_equal(np.isin(seg, ids), masks[k])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_set_target_moves_the_main_object(sims, task):
    sim = sims[task]
    sim.reset(0)
    main = MAIN[task]
    before = _centroid(sim.object_masks()[main])
    p0 = sim.target_position
    p1 = p0 + np.array([0.0, 0.12, 0.0])
    sim.set_target(p1)
    after = _centroid(sim.object_masks()[main])
    expected = _project(sim, p1) - _project(sim, p0)   # (rows, cols) the target's centre moves in the image
    assert np.linalg.norm(expected) > 3
    moved = after - before
    assert np.dot(moved, expected) > 0.6 * np.dot(expected, expected), (moved, expected)
    assert np.linalg.norm(moved - expected) < 0.5 * np.linalg.norm(expected), (moved, expected)
    if task in ("reach", "reach2d"):   # a small, unoccluded object: its centroid is where it projects
        assert np.abs(after - _project(sim, p1)).max() < 1.5
    sim.set_target((3.0, -3.0, 0.0) if task != "reach2d" else (0.0, -3.0, 0.0))   # out of view
    masks = sim.object_masks()
    assert main in masks and not masks[main].any()
    sim.reset(0)


@pytest.mark.parametrize("task", ("reach2d", "reach"))
def test_arm_mask_follows_the_arm(sims, task):
    sim = sims[task]
    sim.reset(0)
    arm0 = sim.object_masks()["arm"]
    assert arm0.sum() > 20
    r, c = np.floor(_project(sim, sim.ee_position())).astype(int)
    near = arm0[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
    assert near.any(), "the end-effector does not project onto the arm mask"
    tau = 0.6 * sim.torque_limits * np.where(np.arange(sim.n_joints) % 2 == 0, 1.0, -1.0)
    for _ in range(5):
        sim.step(tau)
    arm1 = sim.object_masks()["arm"]
    assert np.sum(arm0 ^ arm1) >= 5
    sim.reset(0)
    assert np.array_equal(sim.object_masks()["arm"], arm0)


def test_non_square_image():
    with Simulation("reach", image_size=(48, 64)) as sim:
        img = sim.render()
        seg = sim.render_segmentation()
        masks = sim.object_masks()
        assert img.shape == (48, 64, 3) and seg.shape == (48, 64)
        assert all(m.shape == (48, 64) for m in masks.values())
        assert np.abs(_centroid(masks["target"]) - _project(sim, sim.target_position)).max() < 1.5
        assert _chroma(img[masks["target"]].astype(float).mean(0))[1] > 0.6


def test_lazy_renderer_and_close():
    sim = Simulation("reach2d", image_size=32, render=False)
    assert sim._renderer is None and sim.reset(0).image is None
    masks = sim.object_masks()
    assert masks["target"].any() and masks["target"].shape == (32, 32)
    sim.close()
    assert sim._renderer is None
    assert sim.object_masks()["target"].any()   # a new renderer after close()
    sim.close()


def test_bad_declarations_raise_at_construction():
    base = get_task("reach2d")
    with pytest.raises(ValueError, match="'nothing\\*' matches no geom"):
        Simulation(dataclasses.replace(base, objects={**base.objects, "x": ("nothing*",)}), render=False)
    with pytest.raises(ValueError, match="'tabel' matches no geom"):
        Simulation(dataclasses.replace(base, objects={"target": ("target",), "table": ("tabel",)}), render=False)
    with pytest.raises(ValueError, match="main_object"):
        Simulation(dataclasses.replace(base, main_object="block"), render=False)
