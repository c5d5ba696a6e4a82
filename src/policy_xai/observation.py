"""What is computed from a camera image before a policy sees it, and the camera model that goes with
it (core: no rclpy, no message classes).

* `fit_image`: an image at the size a policy (or a user's mapping) takes: unchanged when it already
  is, resized (cv2.INTER_AREA) when resizing is allowed, else an error that names both sizes and how
  to allow resizing. policy_node and user_policy_node (`resize:=true`) and the bag readers
  (`--resize`, policy_xai.bags) all call it.
* `pinhole_intrinsics` / `camera_info_fields`: the pinhole model of a MuJoCo camera from its vertical
  field of view, as sim_node publishes it on /camera/camera_info (sensor_msgs/CameraInfo fields;
  policy_xai.ros.convert.camera_info_msg builds the message).

Light: numpy only (cv2 when an image is resized), so the bag readers can import it without torch.
"""
from __future__ import annotations

import math

import numpy as np


class ImageSizeError(ValueError):
    """An image of another size than the policy takes, and resizing is not allowed."""


def fit_image(rgb: np.ndarray, height: int, width: int, resize: bool = False, *, what: str = "image is",
              wants: str = "the policy takes", hint: str = " (set resize:=true to resize)",
              error: type = ImageSizeError) -> np.ndarray:
    """`rgb` (H, W, C) at (height, width): the same array when it already is that size, resized with
    cv2.INTER_AREA when `resize`, else `error` with the text
    "<what> <W>x<H>, <wants> <width>x<height><hint>", e.g.
    "image is 96x80, policy 'small' takes 64x64 (set resize:=true to resize)" (sizes are width x height)."""
    h, w = rgb.shape[:2]
    if (h, w) == (int(height), int(width)):
        return rgb
    if not resize:
        raise error(f"{what} {w}x{h}, {wants} {int(width)}x{int(height)}{hint}")
    import cv2

    return cv2.resize(rgb, (int(width), int(height)), interpolation=cv2.INTER_AREA)


def pinhole_intrinsics(width: int, height: int, fovy_deg: float) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) in pixels of a camera with vertical field of view `fovy_deg` (MuJoCo's
    `fovy`) and square pixels: fy = (height / 2) / tan(fovy / 2), fx = fy, principal point at the
    image centre (width / 2, height / 2)."""
    if not 0.0 < float(fovy_deg) < 180.0:
        raise ValueError(f"field of view must be in (0, 180) degrees, got {fovy_deg}")
    f = 0.5 * int(height) / math.tan(math.radians(float(fovy_deg)) / 2.0)
    return f, f, int(width) / 2.0, int(height) / 2.0


def camera_info_fields(width: int, height: int, fovy_deg: float) -> dict:
    """The sensor_msgs/CameraInfo fields (no header) of an undistorted pinhole camera: plumb_bob with
    zero distortion, K = [fx 0 cx; 0 fy cy; 0 0 1], R = identity, P = [K | 0]."""
    fx, fy, cx, cy = pinhole_intrinsics(width, height, fovy_deg)
    return {"height": int(height), "width": int(width), "distortion_model": "plumb_bob", "d": [0.0] * 5,
            "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
            "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]}
