"""The per-method assembly of the reference engine (explain_reference): dtd / rap, gradient, gbp and
the CAM family (joints batched in chunks), the path methods; their output seeds and ratios."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..explanation import IMAGE, Explanation
from ..graph.results import _alpha_tensor  # the one alpha check (graph/results.py; the engines re-export it)
from .ops import _bmul
from .passes import _grad_backward, _propagate_relevance, forward_cache

#: budget (float elements) for one chunk of per-joint backward passes
_CHUNK_ELEMENTS = 96 * 2**20


def _ratios(img_abs, cfg_abs, spec):
    """Shares of total absolute relevance: image, then each configuration group."""
    parts = {IMAGE: img_abs}
    for g, sl in spec.group_slices().items():
        parts[g] = cfg_abs[:, sl].sum(1)
    total = sum(parts.values())
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return {k: torch.where(total > 0, v / safe, torch.full_like(v, float("nan"))) for k, v in parts.items()}


def _joint_chunks(policy, cache, B, J):
    """Joint chunks for the per-joint passes, sized to keep memory bounded."""
    biggest = max(t[0].numel() for t in cache.conv_out + cache.conv_in)
    per = max(1, int(_CHUNK_ELEMENTS // max(1, biggest * B)))
    return [list(range(s, min(J, s + per))) for s in range(0, J, per)]


def _onehot_out(cache, alpha, joints, signed: bool):
    """(len(joints)*B, J) output seeds: block k selects joint joints[k] with alpha_j * sign(tau_j)."""
    tau = cache.torques
    B, J = tau.shape
    seed = alpha * (torch.sign(tau) if signed else torch.abs(tau))
    out = torch.zeros(len(joints), B, J, dtype=tau.dtype, device=tau.device)
    for k, j in enumerate(joints):
        out[k, :, j] = seed[:, j]
    return out.view(len(joints) * B, J)


# ---- per-method assembly --------------------------------------------------------------------------
def explain_reference(policy, image, config, method, alpha, per_joint, layer) -> Explanation:
    """explain(engine="reference") for a method other than the amortised ones; image (B, C, H, W)
    and config (B, D) already checked and float (engine._explain), the rules' dtype set."""
    from ..engine import PATH_METHODS, RELEVANCE_METHODS

    cache = forward_cache(policy, image, config)
    tau = cache.torques
    B, J = tau.shape
    a = _alpha_tensor(alpha, B, J, tau.dtype, tau.device)
    fp = cache.points.view(B, -1, 2)
    if method in PATH_METHODS:
        return _explain_path(policy, image, config, method, a, per_joint, policy.spec, fp)
    if method in RELEVANCE_METHODS:
        return _explain_relevance(policy, cache, method, a, per_joint, fp)
    if method == "gradient":
        return _explain_gradient(policy, cache, image, a, per_joint, fp)
    return _explain_per_joint(policy, cache, image, method, a, per_joint, layer, fp)


def _explain_relevance(policy, cache, method, a, per_joint, fp) -> Explanation:
    """dtd / rap: all joints in one pass (the rules are linear in the upper relevance)."""
    spec = policy.spec
    tau = cache.torques
    B, J = tau.shape
    H, W = spec.image_height, spec.image_width
    pj_img = pj_cfg = None
    if per_joint:
        R_out = _onehot_out(cache, a, range(J), signed=False)
    else:
        R_out = a * tau.abs()
    R_img, R_pts, R_cfg = _propagate_relevance(policy, cache, R_out, method)
    img_abs = R_img.abs().flatten(1).sum(1)
    if per_joint:
        pj_img = R_img.sum(1).view(J, B, H, W).transpose(0, 1)
        pj_cfg = R_cfg.view(J, B, -1).transpose(0, 1)
        R_img, R_pts, R_cfg = (t.view(J, B, *t.shape[1:]).sum(0) for t in (R_img, R_pts, R_cfg))
        img_abs = R_img.abs().flatten(1).sum(1)
    img_map = R_img.sum(1)
    pts_rel = R_pts.view(B, -1, 2).sum(-1)
    ratios = _ratios(img_abs, R_cfg.abs(), spec)
    extras = {"output_relevance": (a * tau.abs()).sum(1)}
    return Explanation(method, img_map, R_cfg, pts_rel, tau, a, ratios, spec.group_names, fp, pj_img, pj_cfg,
                       extras)


def _explain_gradient(policy, cache, image, a, per_joint, fp) -> Explanation:
    """gradient x input of sum_j alpha_j |tau_j| (one backward pass; per joint: one-hot seeds)."""
    spec = policy.spec
    tau = cache.torques
    B, J = tau.shape
    H, W = spec.image_height, spec.image_width
    pj_img = pj_cfg = None
    seed = (a * torch.sign(tau)) if not per_joint else _onehot_out(cache, a, range(J), signed=True)
    g_img, g_pts, g_cfg, _ = _grad_backward(policy, cache, seed, guided=False)
    R_img = _bmul(g_img, image)
    R_cfg = _bmul(g_cfg, cache.config_n)
    R_pts = _bmul(g_pts, cache.points)
    if per_joint:
        pj_img = R_img.sum(1).view(J, B, H, W).transpose(0, 1)
        pj_cfg = R_cfg.view(J, B, -1).transpose(0, 1)
        R_img, R_pts, R_cfg = (t.view(J, B, *t.shape[1:]).sum(0) for t in (R_img, R_pts, R_cfg))
    ratios = _ratios(R_img.abs().flatten(1).sum(1), R_cfg.abs(), spec)
    return Explanation("gradient", R_img.sum(1), R_cfg, R_pts.view(B, -1, 2).sum(-1), tau, a, ratios,
                       spec.group_names, fp, pj_img, pj_cfg, {})


def _chunk_image_maps(policy, cache, image, method, seed, li):
    """One chunk of per-joint passes of gbp or the CAM family: (image maps (m*B, H, W), their
    absolute totals (m*B,), g_points, g_config)."""
    H, W = policy.spec.image_height, policy.spec.image_width
    if method == "gbp":
        g_img, g_pts, g_cfg, _ = _grad_backward(policy, cache, seed, guided=True)
        R_in = _bmul(g_img, image)  # (m*B, C, H, W)
        return R_in.sum(1), R_in.abs().flatten(1).sum(1), g_pts, g_cfg
    cam_guided = method in ("g1gradcam", "g2gradcam")
    if method == "guided_gradcam":  # plain Grad-CAM weights, guided image gradient
        _, _, _, g_layer = _grad_backward(policy, cache, seed, guided=False, stop_layer=li)
        g_img, g_pts, g_cfg, _ = _grad_backward(policy, cache, seed, guided=True)
    else:
        g_img, g_pts, g_cfg, g_layer = _grad_backward(policy, cache, seed, guided=cam_guided, stop_layer=li)
    A = cache.conv_out[li]
    wts = g_layer.mean(dim=(2, 3), keepdim=True)  # (m*B, C, 1, 1)
    cam = F.relu(_bmul(wts.expand(-1, -1, *A.shape[2:]).contiguous(), A).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False).squeeze(1)
    if method in ("guided_gradcam", "g2gradcam"):
        cam = cam * g_img.sum(1)
    return cam, cam.abs().flatten(1).sum(1), g_pts, g_cfg


def _explain_per_joint(policy, cache, image, method, a, per_joint, layer, fp) -> Explanation:
    """The per-joint (non-linear) methods: gbp and the CAM family, joints batched in chunks."""
    from ..engine import CAM_METHODS

    spec = policy.spec
    tau = cache.torques
    B, J = tau.shape
    H, W = spec.image_height, spec.image_width
    pj_img = pj_cfg = None
    extras = {}
    L = len(policy.convs)
    li = layer if layer >= 0 else L + layer
    if not 0 <= li < L:
        raise ValueError(f"conv layer {layer} out of range for {L} conv layers")
    need_cam = method in CAM_METHODS
    dev = tau.device
    img_acc = torch.zeros(B, H, W, device=dev)
    img_abs = torch.zeros(B, device=dev)
    cfg_acc = torch.zeros(B, spec.config_dim, device=dev)
    pts_acc = torch.zeros(B, spec.feature_points, device=dev)
    pj_img_l, pj_cfg_l = [], []
    for joints in _joint_chunks(policy, cache, B, J):
        m = len(joints)
        # unit seeds sign(tau_j); alpha weights the per-joint results (products like Guided Grad-CAM
        # are not linear in the seed)
        seed = _onehot_out(cache, torch.ones_like(a), joints, signed=True)
        wj = a[:, joints].T.reshape(m * B)
        R_img, abs_part, g_pts, g_cfg = _chunk_image_maps(policy, cache, image, method, seed, li)
        R_img = R_img * wj.view(-1, 1, 1)
        abs_part = abs_part * wj
        R_cfg = _bmul(g_cfg, cache.config_n) * wj.view(-1, 1)
        R_pts = _bmul(g_pts, cache.points).view(m * B, -1, 2).sum(-1) * wj.view(-1, 1)
        img_acc += R_img.view(m, B, H, W).sum(0)
        img_abs += abs_part.view(m, B).sum(0)
        cfg_acc += R_cfg.view(m, B, -1).sum(0)
        pts_acc += R_pts.view(m, B, -1).sum(0)
        if per_joint:
            pj_img_l.append(R_img.view(m, B, H, W))
            pj_cfg_l.append(R_cfg.view(m, B, -1))
    if per_joint:
        pj_img = torch.cat(pj_img_l).transpose(0, 1)
        pj_cfg = torch.cat(pj_cfg_l).transpose(0, 1)
    ratios = None if need_cam else _ratios(img_abs, cfg_acc.abs(), spec)
    if need_cam:
        extras["layer"] = li
    return Explanation(method, img_acc, cfg_acc, pts_acc, tau, a, ratios, spec.group_names, fp, pj_img, pj_cfg, extras)


def _explain_path(policy, image, config, method, a, per_joint, spec, fp) -> Explanation:
    from ..engine import PATH_METHODS
    from ..path import DEFAULT_STEPS, integrated_gradients, path_sigma

    B, J = a.shape
    H, W = spec.image_height, spec.image_width
    if per_joint and method == "ig_occlusion":
        raise ValueError("per_joint is not available for ig_occlusion: its occlusion refinement is not additive "
                         "over joints (use ig for per-joint maps)")
    kw = dict(steps=DEFAULT_STEPS, baseline=PATH_METHODS[method], sigma=path_sigma(H, W))
    ig = integrated_gradients(policy, image, config, a, **kw)
    tau, tau0 = ig.torques, ig.reference_torques
    pj_img = pj_cfg = None
    if per_joint:  # one path integral per joint (alpha one-hot); they add up to the amortised one
        onehot = lambda j: F.one_hot(torch.tensor(j, device=a.device), J).to(a.dtype)  # noqa: E731
        parts = [integrated_gradients(policy, image, config, a * onehot(j), **kw) for j in range(J)]
        pj_img = torch.stack([p.image.sum(1) for p in parts], dim=1)
        pj_cfg = torch.stack([p.config for p in parts], dim=1)
    img_map = ig.image.sum(1)
    if method == "ig_occlusion":
        from ..path import occlusion_refine

        img_map = occlusion_refine(policy, image, config, a, img_map, tau)
    # ratios from the path integral for all three (ig_occlusion's refined map ranks pixels; its total
    # depends on which windows were occluded, and a near-tie in their choice must not move the ratios)
    ratios = _ratios(ig.image.abs().flatten(1).sum(1), ig.config.abs(), spec)
    extras = {"reference_torques": tau0, "output_relevance": (a * (tau - tau0).abs()).sum(1),
              "reference": PATH_METHODS[method]}
    return Explanation(method, img_map, ig.config, ig.points, tau, a, ratios, spec.group_names, fp, pj_img,
                       pj_cfg, extras)
