"""The amortised explanation: the student's map scaled by the image's share of the torque change
along the two-leg reference path, the configuration by integrated gradients with the image held."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .student import Explainer, explain_amortised

#: path points of the configuration leg (fully connected head passes only: cheap)
CONFIG_STEPS = 32


class Amortised(NamedTuple):
    image: torch.Tensor            # (B, H, W) S * image total (signed like the total)
    share: torch.Tensor            # (B, H, W) the student's distribution S (sums to 1)
    config: torch.Tensor           # (B, D) configuration relevance (normalised units)
    points: torch.Tensor           # (B, K) feature-point relevance (display only)
    image_total: torch.Tensor      # (B,)
    torques: torch.Tensor          # (B, J) tau(x, c)
    reference_torques: torch.Tensor  # (B, J) tau(x0, c0)
    image_joint: torch.Tensor      # (B, J) the image leg's change per torque, alpha_j s_j (tau_j(x,.) - tau_j(x0,.))
    config_joint: torch.Tensor     # (B, J, D) configuration relevance per torque (sums over J to `config`)
    feature_points: torch.Tensor   # (B, 2K) the policy's feature points of x


#: order of the two legs of the reference path (amortised_explanation): "image" first (then the
#: configuration at the image x), "config" first (at the reference image x0, then the image at c),
#: or "both": the mean of the two orders (the Shapley value of the two inputs)
LEG_ORDERS = ("image", "config", "both")
LEG_ORDER = "both"


def amortised_explanation(policy, explainer: Explainer, image: torch.Tensor, config: torch.Tensor,
                          alpha: torch.Tensor, steps: int = CONFIG_STEPS, sigma: Optional[float] = None,
                          order: str = LEG_ORDER) -> Amortised:
    """The student's map, with the image's and the configuration's relevance measured along the
    two-leg paths from the reference (x0, c0) (x0 the blurred image of `ig`, c0 the training mean)
    to (x, c), with f = sum_j alpha_j s_j tau_j, s_j = sign(tau_j(x, c) - tau_j(x0, c0)) (as `ig`):

        order "image":   image leg (x0, c0) -> (x, c0):  I = f(x, c0) - f(x0, c0)
                         configuration leg (x, c0) -> (x, c) by integrated gradients over c at x:
                         R_c = (c - c0) * mean_k grad_c f(x, c0 + t_k (c - c0))
        order "config":  configuration leg at x0 (R_c as above with x0), then I = f(x, c) - f(x0, c)
        order "both":    the mean of the two (the two-player Shapley split of the change)

    so I + sum R_c = sum_j alpha_j |tau_j(x, c) - tau_j(x0, c0)| (the total `ig` explains, to the
    midpoint rule's accuracy over the configuration leg). The image relevance is R_x(q) = S(q) I.
    Both are also kept per torque (I_j, R_c^(j), with f_j = alpha_j s_j tau_j) for the ratios:
        image: sum_j |I_j|,   group G: sum_j |sum_{i in G} R_c,i^(j)|
    (how much each input moves each torque; a net sum over torques would let opposite moves
    cancel, which the ablation effect sum_j alpha_j |d tau_j| does not).
    The configuration legs hold the image fixed: their path points share one set of conv features,
    so the cost is two conv passes (x, x0), the student and m (2m for "both") head passes."""
    from ..path import path_sigma, reference_image

    if order not in LEG_ORDERS:
        raise ValueError(f"order must be one of {', '.join(LEG_ORDERS)}, got {order!r}")
    B, _, H, W = image.shape
    x0 = reference_image(image, "blur", path_sigma(H, W) if sigma is None else sigma)
    cn = policy.normalise_config(config)
    cn0 = torch.zeros_like(cn)
    with torch.no_grad():
        share = explain_amortised(explainer, image)
        pts_all = policy.softmax(policy.conv_features(torch.cat([image, x0])))
        pts, pts0 = pts_all[:B], pts_all[B:]
        ends = policy.head(torch.cat([pts, pts, pts0, pts0]), torch.cat([cn, cn0, cn0, cn]))
    tau, tau_c0, tau0, tau_x0 = ends[:B], ends[B:2 * B], ends[2 * B:3 * B], ends[3 * B:]
    d = tau - tau0
    tol = 1e-5 * (tau.abs() + tau0.abs()) + 1e-9
    w = alpha * torch.where(d.abs() > tol, torch.sign(d), torch.zeros_like(d))
    m = int(steps)
    t = ((torch.arange(m, dtype=torch.float32, device=cn.device) + 0.5) / m).view(m, 1, 1)
    legs = {"image": [pts], "config": [pts0], "both": [pts, pts0]}[order]
    n, J = len(legs), tau.shape[1]
    # one configuration integral per joint (seed alpha_j s_j on torque j alone) in one backward pass:
    # rows (joint, leg, path point, observation); the head is cheap
    eye = torch.eye(J, dtype=w.dtype, device=w.device)
    seeds = (eye[:, None, None, None, :] * w[None, None, None]).expand(J, n, m, B, J).reshape(-1, J)
    with torch.enable_grad():
        p_cfg = (cn0.unsqueeze(0) + t * (cn - cn0).unsqueeze(0))  # (m, B, D)
        p_cfg = p_cfg[None, None].expand(J, n, m, B, -1).reshape(-1, cn.shape[1]).clone().requires_grad_(True)
        at = torch.stack(legs)[None, :, None].expand(J, n, m, B, -1).reshape(-1, pts.shape[1])
        out = policy.head(at, p_cfg)
        (g_cfg,) = torch.autograd.grad((out * seeds).sum(), (p_cfg,))
        # feature points: gradient at the image leg's midpoint times their displacement (display only)
        mid = (0.5 * (pts + pts0)).requires_grad_(True)
        (g_pts,) = torch.autograd.grad((policy.head(mid, cn0) * w).sum(), (mid,))
    R_joint = ((cn - cn0)[None] * g_cfg.view(J, n * m, B, -1).mean(1)).transpose(0, 1)  # (B, J, D)
    R_pts = ((pts - pts0) * g_pts).view(B, -1, 2).sum(-1)
    legs_I = {"image": w * (tau_c0 - tau0), "config": w * (tau - tau_x0)}
    I_joint = legs_I[order] if order != "both" else 0.5 * (legs_I["image"] + legs_I["config"])  # (B, J)
    total = I_joint.sum(1)
    return Amortised(share * total.view(B, 1, 1), share, R_joint.sum(1).detach(), R_pts.detach(), total, tau, tau0,
                     I_joint.detach(), R_joint.detach(), pts)
