"""Synthetic observations for a policy spec: camera-like images with a few coloured blobs plus
matching configuration vectors. Used when no recording is given (sanity check, benchmark, demo).

The N observations form a smooth sequence (like frames of an episode): the joints follow slow
sinusoids, the end effector moves with them, and the blobs drift across a shaded table-top
background. One grey blob (the "gripper") is drawn where the end effector's (x, y) projects into the
image, so the image and the configuration are related as they would be on a robot.
"""
from __future__ import annotations

import numpy as np

from .spec import PolicySpec, load_spec

#: RGB colours of the object blobs (the gripper is grey)
BLOB_COLOURS = np.array([[220, 40, 40], [40, 180, 60], [50, 80, 220], [230, 200, 40], [180, 60, 200]],
                        dtype=np.float32)
GRIPPER_COLOUR = np.array([90, 90, 90], dtype=np.float32)


def _config_trajectory(spec: PolicySpec, n: int, rng: np.random.Generator, dt: float):
    """Configuration vectors (n, D) following smooth joint trajectories, plus the ee (x, y) in [-1, 1]."""
    t = np.arange(n) * dt
    n_j = spec.n_joints
    amp = rng.uniform(0.2, 0.8, n_j)
    freq = rng.uniform(0.1, 0.5, n_j)  # Hz
    phase = rng.uniform(0, 2 * np.pi, n_j)
    offset = rng.uniform(-0.5, 0.5, n_j)
    w = 2 * np.pi * freq
    q = offset + amp * np.sin(w * t[:, None] + phase)  # (n, J) rad
    dq = amp * w * np.cos(w * t[:, None] + phase)  # (n, J) rad/s
    # a stand-in for forward kinematics: a smooth, bounded function of the joints (metres)
    mix = rng.normal(0, 1, (n_j, 3)) / np.sqrt(n_j)
    base = np.array([0.7, -0.4, 0.2])
    ee = base + 0.3 * np.tanh(q @ mix)
    dee = 0.3 * (1 - np.tanh(q @ mix) ** 2) * (dq @ mix)
    groups = {"joint_position": q, "joint_velocity": dq, "ee_position": ee, "ee_velocity": dee}
    parts = []
    for g, size in spec.config_groups:
        v = groups[g]
        if v.shape[1] < size:  # more values than we model: pad with small noise
            v = np.concatenate([v, rng.normal(0, 0.1, (n, size - v.shape[1]))], axis=1)
        parts.append(v[:, :size])
    configs = np.concatenate(parts, axis=1).astype(np.float32)
    ee_xy = np.tanh((ee[:, :2] - base[:2]) / 0.3)  # in (-1, 1)
    return configs, ee_xy


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A shaded table top: a linear colour gradient with a little texture, float (h, w, 3) in [0, 255]."""
    c0 = rng.uniform(150, 210, 3)
    c1 = rng.uniform(90, 150, 3)
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    s = (np.cos(ang) * xx + np.sin(ang) * yy)
    s = (s - s.min()) / max(np.ptp(s), 1e-9)
    return c0 * (1 - s[..., None]) + c1 * s[..., None]


def synthetic_observations(spec, n: int, seed: int = 0, dt: float = 0.05, blobs: int = 3):
    """n synthetic observations for `spec` (a PolicySpec, dict, YAML path or shipped name).

    Returns (images, configs): images (n, H, W, C) uint8 RGB, configs (n, D) float32 in the spec's
    group order. Deterministic for a seed.
    """
    spec = load_spec(spec)
    if n < 1:
        raise ValueError("need at least one observation")
    rng = np.random.default_rng(seed)
    H, W, C = spec.image_height, spec.image_width, spec.image_channels
    configs, ee_xy = _config_trajectory(spec, n, rng, dt)
    bg = _background(H, W, rng)
    scale = min(H, W)
    k = int(np.clip(blobs, 1, len(BLOB_COLOURS)))
    centre = rng.uniform(0.15, 0.85, (k, 2)) * [W, H]  # (x, y) pixels
    vel = rng.normal(0, 0.01, (k, 2)) * scale  # pixels per step
    radius = rng.uniform(0.06, 0.12, k) * scale
    colour = BLOB_COLOURS[rng.permutation(len(BLOB_COLOURS))[:k]]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    images = np.empty((n, H, W, C), dtype=np.uint8)
    for i in range(n):
        img = bg + rng.normal(0, 4.0, (H, W, 1))  # sensor noise
        # objects bounce inside the frame
        centre += vel
        for d, size in ((0, W), (1, H)):
            out = (centre[:, d] < 0.1 * size) | (centre[:, d] > 0.9 * size)
            vel[out, d] *= -1
            centre[:, d] = np.clip(centre[:, d], 0.1 * size, 0.9 * size)
        for b in range(k):
            d2 = ((xx - centre[b, 0]) ** 2 + (yy - centre[b, 1]) ** 2) / radius[b] ** 2
            m = np.clip(1.5 - d2, 0, 1)[..., None]  # soft-edged disc
            img = img * (1 - m) + colour[b] * m
        gx, gy = (ee_xy[i] * 0.4 + 0.5) * [W, H]
        gr = 0.07 * scale
        d2 = ((xx - gx) / gr) ** 2 + ((yy - gy) / (0.6 * gr)) ** 2
        m = np.clip(1.5 - d2, 0, 1)[..., None]
        img = img * (1 - m) + GRIPPER_COLOUR * m
        img = np.clip(img, 0, 255)
        if C != 3:  # grey or extra channels: mean intensity repeated
            img = np.repeat(img.mean(-1, keepdims=True), C, axis=-1)
        images[i] = img.astype(np.uint8)
    return images, configs
