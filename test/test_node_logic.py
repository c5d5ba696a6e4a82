"""What the ROS nodes compute, tested directly in the core modules they call (no rclpy, no DDS):
policy_xai.observation (image size, camera intrinsics), policy_xai.decisions (torque limits, the
command sent, the command an arm takes, the reproduction check) and policy_xai.viz (joint markers,
ratio timeline, overlay scale). The expected values are worked out by hand."""
import math
import threading

import numpy as np
import pytest

from policy_xai import decisions, viz
from policy_xai.observation import ImageSizeError, camera_info_fields, fit_image, pinhole_intrinsics


# ---- observation: the image at the policy's size -----------------------------------------------------
def test_an_image_of_the_right_size_is_passed_through():
    img = np.zeros((64, 48, 3), np.uint8)
    assert fit_image(img, 64, 48) is img
    assert fit_image(img, 64, 48, resize=True) is img


def test_a_wrong_size_names_both_sizes_and_the_resize_parameter():
    img = np.zeros((80, 96, 3), np.uint8)  # 96 wide, 80 high
    with pytest.raises(ImageSizeError) as e:
        fit_image(img, 64, 64, wants="policy 'small' takes")
    # the policy node's message, as it was
    assert str(e.value) == "image is 96x80, policy 'small' takes 64x64 (set resize:=true to resize)"
    assert isinstance(e.value, ValueError)  # a node's guarded callback reports it without a traceback

    class Custom(ValueError):
        pass

    with pytest.raises(Custom, match=r"^images on /cam are 96x80, policy 'p' takes 32x16; pass --resize$"):
        fit_image(img, 16, 32, what="images on /cam are", wants="policy 'p' takes", hint="; pass --resize",
                  error=Custom)


def test_resize_averages_areas():
    # 4x4 -> 2x2 with INTER_AREA: each output pixel is the mean of a 2x2 block
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :2] = 10
    img[:2, 2:] = [20, 40, 60]
    img[2:, :2] = 100
    img[2:, 2:] = [0, 200, 0]
    img[0, 0] = 14  # block mean (14 + 10 + 10 + 10) / 4 = 11
    out = fit_image(img, 2, 2, resize=True)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [11, 11, 11] and out[0, 1].tolist() == [20, 40, 60]
    assert out[1, 0].tolist() == [100, 100, 100] and out[1, 1].tolist() == [0, 200, 0]
    # upsampling: (height, width) order, a constant image stays constant
    up = fit_image(np.full((3, 5, 3), 7, np.uint8), 6, 10, resize=True)
    assert up.shape == (6, 10, 3) and np.all(up == 7)


def test_the_user_mapping_and_bag_messages_keep_their_wording():
    from policy_xai.bags import BagError
    from policy_xai.user_policy import UserPolicyError

    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(UserPolicyError, match=r"agentview from /cam: image is 32x32, the mapping says 64x64 "
                                              r"\(set resize:=true to resize\)"):
        fit_image(img, 64, 64, what="agentview from /cam: image is", wants="the mapping says", error=UserPolicyError)
    with pytest.raises(BagError, match=r"32x32, policy 'small' takes 64x64; pass --resize"):
        fit_image(img, 64, 64, what="images on /c are", wants="policy 'small' takes",
                  hint="; pass --resize to resize them (cv2.INTER_AREA)", error=BagError)


# ---- observation: camera intrinsics -----------------------------------------------------------------
def test_intrinsics_from_the_vertical_field_of_view():
    # fovy 90 degrees: tan(45) = 1, so f = height / 2; the principal point is the image centre
    assert pinhole_intrinsics(80, 60, 90.0) == pytest.approx((30.0, 30.0, 40.0, 30.0))
    # fovy 60 degrees on a square 64x64 image: f = 32 / tan(30) = 32 * sqrt(3) = 55.4256...
    fx, fy, cx, cy = pinhole_intrinsics(64, 64, 60.0)
    assert fx == fy == pytest.approx(32 * math.sqrt(3)) and (cx, cy) == (32.0, 32.0)
    # square: (w/2) / tan(fovx/2) with fovx = fovy is the same number
    assert fx == pytest.approx((64 / 2) / math.tan(math.radians(60.0) / 2))
    for bad in (0.0, 180.0, -5.0):
        with pytest.raises(ValueError, match="field of view"):
            pinhole_intrinsics(64, 64, bad)


def test_camera_info_fields_lay_out_k_r_p():
    f = camera_info_fields(80, 60, 90.0)
    assert (f["width"], f["height"], f["distortion_model"], f["d"]) == (80, 60, "plumb_bob", [0.0] * 5)
    assert f["k"] == pytest.approx([30, 0, 40, 0, 30, 30, 0, 0, 1])
    assert f["r"] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert f["p"] == pytest.approx([30, 0, 40, 0, 0, 30, 30, 0, 0, 0, 1, 0])


def test_intrinsics_project_like_the_mujoco_camera():
    """A point on the camera axis lands on the principal point; one at the top edge of the field of view
    (angle fovy/2 above the axis) lands on row 0."""
    fx, fy, cx, cy = pinhole_intrinsics(100, 50, 45.0)
    z = 2.0
    y_top = -z * math.tan(math.radians(45.0) / 2)  # image y grows downwards
    assert cy + fy * y_top / z == pytest.approx(0.0)
    assert cx + fx * 0.0 / z == pytest.approx(50.0)


# ---- decisions: limits and commands ---------------------------------------------------------------------
def test_torque_limits_are_the_spec_s_tightened_by_the_parameter():
    base = [10.0, 10.0, 4.0]
    assert decisions.torque_limits(base, "", ["a", "b", "c"]).tolist() == [10.0, 10.0, 4.0]
    assert decisions.torque_limits(base, None, ["a", "b", "c"]).tolist() == [10.0, 10.0, 4.0]
    assert decisions.torque_limits(base, [20.0, -2.5, 3.0], ["a", "b", "c"]).tolist() == [10.0, 2.5, 3.0]
    with pytest.raises(ValueError, match=r"torque_limits has 2 values for 3 joints \['a', 'b', 'c'\]"):
        decisions.torque_limits(base, [1.0, 2.0], ["a", "b", "c"])
    # a user's model: no limits of its own (inf), the parameter's values where given
    inf = np.full(2, np.inf)
    assert np.all(np.isinf(decisions.torque_limits(inf, "", ["x", "y"])))
    assert decisions.torque_limits(inf, [3.0, 4.0], ["x", "y"], "actions").tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="for 2 actions"):
        decisions.torque_limits(inf, [3.0], ["x", "y"], "actions")


def test_clip_command_clips_and_refuses_non_finite():
    assert decisions.clip_command([12.0, -12.0, 1.5], [10.0, 10.0, 1.0]).tolist() == [10.0, -10.0, 1.0]
    assert decisions.clip_command([1.0, float("nan")], [2.0, 2.0]) is None
    assert decisions.clip_command([float("inf"), 0.0], [2.0, 2.0]) is None
    assert decisions.clip_command([1.0, 2.0], np.full(2, np.inf)).tolist() == [1.0, 2.0]


def test_valid_command_needs_one_finite_value_per_joint():
    assert decisions.valid_command([1, 2], ["j1", "j2"]).dtype == np.float64
    with pytest.raises(ValueError, match=r"command has 3 values, the arm has 2 joints \['j1', 'j2'\]"):
        decisions.valid_command([1, 2, 3], ["j1", "j2"])
    with pytest.raises(ValueError, match="NaN/inf"):
        decisions.valid_command([1, float("nan")], ["j1", "j2"])


# ---- decisions: the reproduction check --------------------------------------------------------------------
def test_reproduction_check_counts_mismatches_and_the_largest_difference():
    c = decisions.ReproductionCheck()
    # recomputed 12 is clipped to the limit 10 first, as the published command was: no difference
    assert c.compare([12.0, 1.0], [10.0, 1.0], tolerance=1e-3, limits=[10.0, 10.0]) is None
    assert (c.checked, c.mismatches, c.max_diff) == (1, 0, 0.0)
    # 1.0005 vs 1.0: within 1e-3
    assert c.compare([1.0005, 0.0], [1.0, 0.0], tolerance=1e-3) is None
    assert c.max_diff == pytest.approx(5e-4)
    # 1.25 vs 1.0: a mismatch of 0.25
    assert c.compare([1.25, 0.0], [1.0, 0.0], tolerance=1e-3) == pytest.approx(0.25)
    assert (c.checked, c.mismatches) == (3, 1) and c.max_diff == pytest.approx(0.25)
    # nothing to compare: checked, no difference
    assert c.compare([], [], tolerance=0.0) is None and c.checked == 4


def test_relative_tolerance_grows_with_the_outputs():
    assert decisions.relative_tolerance([0.2, -0.5]) == pytest.approx(1e-3)  # max(1, 0.5) = 1
    assert decisions.relative_tolerance([-40.0, 3.0]) == pytest.approx(0.04)
    assert decisions.relative_tolerance([]) == pytest.approx(1e-3)


def test_stamped_outputs_keep_the_last_ones():
    s = decisions.StampedOutputs(keep=3)
    for k in range(5):
        s.put(k * 10, [k])
    assert len(s) == 3 and s.get(0) is None and s.get(10) is None and s.get(40).tolist() == [4.0]
    threads = [threading.Thread(target=lambda i=i: [s.put(1000 + i * 100 + j, [j]) for j in range(100)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(s) == 3


# ---- viz: the joint markers ------------------------------------------------------------------------------
CFG = ["joint_position/a", "joint_position/b", "joint_velocity/a", "joint_velocity/b", "ee_position/x"]


def test_joint_shares_of_the_configuration_relevance():
    joints, q, share = viz.joint_shares(CFG, [0.1, 0.2, 0.0, 0.0, 0.5], CFG, [1.0, -2.0, 3.0, 0.0, 4.0])
    # |relevance| 1 + 2 + 3 + 0 + 4 = 10; a: (1 + 3) / 10, b: (2 + 0) / 10; ee_position's 0.4 is no joint's
    assert joints == ["a", "b"] and q.tolist() == [0.1, 0.2]
    assert share.tolist() == pytest.approx([0.4, 0.2])
    _, _, zero = viz.joint_shares(CFG, np.zeros(5), CFG, np.zeros(5))
    assert zero.tolist() == [0.0, 0.0]
    assert viz.joint_shares(["ee_position/x"], [0.0], ["ee_position/x"], [1.0])[0] == []


def test_joint_markers_size_and_colour_by_share():
    pos = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.2], [0.3, 0.1, 0.5]])  # two joints, then the end effector
    m = viz.joint_relevance_markers(["a", "b"], [0.4, 0.2], pos, 0.12, ["image", "joint_position"], [0.7, 0.3])
    assert [(x.ns, x.id, x.kind) for x in m] == [("joint_relevance", 0, "sphere"), ("joint_relevance", 1, "sphere"),
                                                 ("ratios", 0, "text")]
    # top share 0.4: a full size (0.12), b at share/top = 0.5: 0.12 * (0.25 + 0.75 * 0.5) = 0.075
    assert m[0].scale == pytest.approx((0.12,) * 3) and m[1].scale == pytest.approx((0.075,) * 3)
    assert m[0].rgba == pytest.approx((*viz.relevance_colour(1.0), 0.8))
    assert m[1].rgba == pytest.approx((*viz.relevance_colour(0.5), 0.8))
    assert m[1].position == pytest.approx((0.1, 0.0, 0.2))
    # the ratio text 0.3 m above the last position
    assert m[2].position == pytest.approx((0.3, 0.1, 0.8)) and m[2].scale == (0.0, 0.0, 0.06)
    assert m[2].text == "image 0.70  joint_position 0.30" and m[2].rgba == (1.0, 1.0, 1.0, 1.0)
    # no relevance: every sphere a quarter size; no ratios (Grad-CAM): says so
    m = viz.joint_relevance_markers(["a", "b"], [0.0, 0.0], viz.row_positions(2), 0.12)
    assert m[0].scale == pytest.approx((0.03,) * 3) and m[1].scale == pytest.approx((0.03,) * 3)
    assert m[-1].text == "(no ratios for this method)" and m[-1].position == pytest.approx((0.15, 0.0, 0.3))


def test_row_positions_without_a_robot_model():
    assert viz.row_positions(3).tolist() == [[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.3, 0.0, 0.0]]


# ---- viz: the ratio timeline and the overlay scale ---------------------------------------------------------
def test_ratio_history_times_from_the_first_stamp_and_restarts_on_a_jump():
    h = viz.RatioHistory(window=20.0)
    h.add_stamped(5_000_000_000, ["image", "cfg"], [0.6, 0.4], jump_ns=1_000_000_000)
    h.add_stamped(5_500_000_000, ["image", "cfg"], [0.5, 0.5], jump_ns=1_000_000_000)
    assert list(h.times) == pytest.approx([0.0, 0.5])
    with pytest.raises(ValueError, match="ratios sum to 0.9000, not 1"):
        h.add_stamped(5_600_000_000, ["image", "cfg"], [0.5, 0.4], jump_ns=1_000_000_000)
    assert len(h) == 2  # not added
    # 0.9 s later: no jump; then 10 s back (a new episode's clock): the plot starts over at t = 0
    h.add_stamped(6_400_000_000, ["image", "cfg"], [0.5, 0.5], jump_ns=1_000_000_000)
    assert list(h.times)[-1] == pytest.approx(1.4)
    h.add_stamped(400_000_000, ["image", "cfg"], [0.5, 0.5], jump_ns=1_000_000_000)
    assert list(h.times) == [0.0] and len(h.values) == 1
    h.add_stamped(900_000_000, ["image", "cfg"], [0.5, 0.5], jump_ns=1_000_000_000)
    assert list(h.times) == pytest.approx([0.0, 0.5])


def test_heatmap_scale():
    assert viz.heatmap_scale(64) == 4 and viz.heatmap_scale(84) == 3 and viz.heatmap_scale(300) == 1
    assert viz.heatmap_scale(64, 2) == 2
