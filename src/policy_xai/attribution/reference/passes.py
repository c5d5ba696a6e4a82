"""The passes of the reference engine over VisuomotorPolicy's plain conv stack: the forward pass
with its cache (forward_cache), the relevance backward with the rules per layer type
(_propagate_relevance) and the gradient backward, plain or guided (_grad_backward)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn import functional as F

from ...policy import VisuomotorPolicy
from .ops import _CL, EPS, _bmul, _brep, _conv_fwd, _conv_T, _conv_weight, _neg, _pos, _sdiv


# ---- forward with cache -----------------------------------------------------------------------
@dataclass
class Cache:
    conv_in: list  # input of each conv layer (image first), (B, C, H, W)
    conv_out: list  # post-ReLU output of each conv layer
    attention: torch.Tensor  # (B, K, h*w)
    points: torch.Tensor  # (B, 2K)
    config_n: torch.Tensor  # (B, D) normalised configuration
    fc_in: list  # input of each fc layer
    fc_pre: list  # pre-activation of each fc layer (last = torques)
    image_nonneg: bool = True

    @property
    def torques(self) -> torch.Tensor:
        return self.fc_pre[-1]


@torch.no_grad()
def forward_cache(policy: VisuomotorPolicy, image: torch.Tensor, config: torch.Tensor) -> Cache:
    conv_in, conv_out = [], []
    x = image.contiguous(memory_format=_CL)  # channels-last convolutions are ~2x faster on CPU
    for conv in policy.convs:
        conv_in.append(x)
        x = F.relu(F.conv2d(x, _conv_weight(conv, "w", torch.float32), conv.bias, conv.stride, conv.padding,
                            conv.dilation, conv.groups))
        conv_out.append(x)
    att = policy.softmax.attention(x)
    points = (att @ policy.softmax.pos).flatten(1)
    cfg = policy.normalise_config(config)
    h = torch.cat([points, cfg], dim=1)
    fc_in, fc_pre = [], []
    for i, fc in enumerate(policy.fcs):
        fc_in.append(h)
        z = fc(h)
        fc_pre.append(z)
        h = F.relu(z) if i < len(policy.fcs) - 1 else z
    return Cache(conv_in, conv_out, att, points, cfg, fc_in, fc_pre, bool((image >= 0).all()))


# ---- relevance rules per layer type -------------------------------------------------------------
def _linear_zplus(x, W, R, sign=None):
    """DTD z+ with Eq. 2 (negative inputs) and, given sign (B, J), Eq. 1 (negative outputs)."""
    xp, xn = _pos(x), _neg(x)
    Wp, Wn = _pos(W), _neg(W)
    has_neg = bool((xn != 0).any())
    Zp = xp @ Wp.T + (xn @ Wn.T if has_neg else 0)
    if sign is None:
        S = _sdiv(R, _brep(Zp, R.shape[0]) if R.shape[0] != Zp.shape[0] else Zp)
        Rin = _bmul(S @ Wp, xp) + (_bmul(S @ Wn, xn) if has_neg else 0)
        return Rin
    # flipped weights for negative outputs: (-x w)^+ = x^+ (-w^-) + x^- (-w^+)
    Zn = -(xp @ Wn.T + (xn @ Wp.T if has_neg else 0))
    pos = sign > 0
    Z = torch.where(pos, Zp, Zn)
    S = _sdiv(R, _brep(Z, R.shape[0]))
    posr = _brep(pos, R.shape[0])
    Sp, Sn = S * posr, S * ~posr
    Rin = _bmul(Sp @ Wp - Sn @ Wn, xp)
    if has_neg:
        Rin = Rin + _bmul(Sp @ Wn - Sn @ Wp, xn)
    return Rin


def _linear_rap_out(x, W, R):
    """RAP at the output layer: absolute-influence normalisation of the contributions."""
    ax, aW = x.abs(), W.abs()
    Z = ax @ aW.T
    S = _sdiv(R, _brep(Z, R.shape[0]))
    return _bmul(S @ aW, ax)


def _shift(C, R, mask):
    """Uniform shifting: subtract the excess relevance equally from the participating units."""
    n = C.shape[0]
    maskr = _brep(mask, n)
    excess = C.flatten(1).sum(1) - R.flatten(1).sum(1)
    count = maskr.flatten(1).sum(1).clamp(min=1)
    return C - maskr * (excess / count).view(-1, *([1] * (C.dim() - 1)))


def _linear_rap(x, W, R):
    xp, xn = _pos(x), _neg(x)
    Wp, Wn = _pos(W), _neg(W)
    has_neg = bool((xn != 0).any())
    P = xp @ Wp.T + (xn @ Wn.T if has_neg else 0)  # sum of positive contributions
    N = -(xp @ Wn.T + (xn @ Wp.T if has_neg else 0))  # sum of |negative contributions|
    n = R.shape[0]
    S1 = _sdiv(R, _brep(P, n))
    S2 = _sdiv(R, _brep(P + N, n))
    C = _bmul(S1 @ Wp - S2 @ Wn, xp)
    if has_neg:
        C = C + _bmul(S1 @ Wn - S2 @ Wp, xn)
    return _shift(C, R, ((x != 0) & (W.abs().sum(0) > 0)).to(C.dtype))


def _div_nonneg(R, Z):
    """R / Z for a denominator known to be >= 0 (z+ sums); where Z == 0 every contribution is zero,
    so the tiny stabiliser only keeps the quotient finite and nothing is propagated."""
    return R / _brep(Z.add_(EPS), R.shape[0])


def _conv_zplus(conv, x, R, nonneg: bool):
    if nonneg:  # post-ReLU maps and images in [0, 1]: the plain z+ rule
        S = _div_nonneg(R, _conv_fwd(conv, x, "pos"))
        return _bmul(_conv_T(conv, S, "pos", x.shape), x)
    # Eq. 2 for negative inputs (e.g. a mean-subtracted image): (x w)^+ = x^+ w^+ + x^- w^-
    xp, xn = _pos(x), _neg(x)
    S = _div_nonneg(R, _conv_fwd(conv, xp, "pos") + _conv_fwd(conv, xn, "neg"))
    return _bmul(_conv_T(conv, S, "pos", x.shape), xp) + _bmul(_conv_T(conv, S, "neg", x.shape), xn)


def _conv_rap(conv, x, R, nonneg: bool):
    if not nonneg:
        raise ValueError("rap: conv inputs must be non-negative (images in [0, 1], post-ReLU maps)")
    P = _conv_fwd(conv, x, "pos")
    PN = P - _conv_fwd(conv, x, "neg")  # sum of positive + |negative| contributions
    S1 = _div_nonneg(R, P)
    S2 = _div_nonneg(R, PN)
    C = _bmul(_conv_T(conv, S1, "pos", x.shape) - _conv_T(conv, S2, "neg", x.shape), x)
    wired = (conv.weight.abs().sum((0, 2, 3)) > 0).view(1, -1, 1, 1)
    return _shift(C, R, ((x != 0) & wired).to(C.dtype))


def _softmax_relevance(att, R_points, shape):
    """Feature point relevance (N, 2K) -> feature maps (N, K, h, w), in proportion to attention."""
    N = R_points.shape[0]
    Rk = R_points.view(N, -1, 2).sum(-1)  # (N, K)
    return _bmul(Rk.unsqueeze(-1).expand(-1, -1, att.shape[-1]).contiguous(), att).view(N, *shape[1:])


def _propagate_relevance(policy, cache: Cache, R_out: torch.Tensor, method: str):
    """Relevance R_out (N, J) at the torques -> (image (N,C,H,W), points (N,2K), config (N,D))."""
    fcs = policy.fcs
    R = R_out
    last = len(fcs) - 1
    for i in range(last, -1, -1):
        x, W = cache.fc_in[i], fcs[i].weight
        if method == "dtd":
            R = _linear_zplus(x, W, R, sign=torch.sign(cache.fc_pre[i] - fcs[i].bias) if i == last else None)
        elif i == last:
            R = _linear_rap_out(x, W, R)
        else:
            R = _linear_rap(x, W, R)
    npts = cache.points.shape[1]
    R_points, R_cfg = R[:, :npts], R[:, npts:]
    R = _softmax_relevance(cache.attention, R_points, cache.conv_out[-1].shape)
    for li in range(len(policy.convs) - 1, -1, -1):
        conv, x = policy.convs[li], cache.conv_in[li]
        nonneg = li > 0 or cache.image_nonneg
        R = _conv_zplus(conv, x, R, nonneg) if method == "dtd" else _conv_rap(conv, x, R, nonneg)
    return R, R_points, R_cfg


# ---- gradient backward (plain or guided) ---------------------------------------------------------
def _softmax_grad(policy, cache, g_points):
    """Exact gradient through the spatial softmax: d points / d feature maps."""
    att = cache.attention  # (B, K, Q)
    pos = policy.softmax.pos  # (Q, 2)
    N = g_points.shape[0]
    g = g_points.view(N, -1, 2)  # (N, K, 2)
    pts = cache.points.view(att.shape[0], -1, 2)
    # dA_kq = p_kq * (g_k . (pos_q - point_k)) / T
    gpos = g @ pos.T  # (N, K, Q)
    if N != pts.shape[0]:
        gpt = (g.view(-1, *pts.shape) * pts).sum(-1).view(N, -1, 1)
    else:
        gpt = (g * pts).sum(-1, keepdim=True)
    dA = _bmul(gpos - gpt, att) / policy.softmax.temperature
    return dA.view(N, *cache.conv_out[-1].shape[1:])


def _grad_backward(policy, cache: Cache, g_out: torch.Tensor, guided: bool, stop_layer: Optional[int] = None):
    """Gradient of g_out . torques w.r.t. the inputs; guided=True gives Guided Backprop.

    Returns (g_image, g_points, g_config, g_layer) where g_layer is the gradient at the post-ReLU
    output of conv layer `stop_layer` (the image gradient is then None unless guided CAM needs it).
    """
    def relu_back(g, pre_or_out):
        mask = _brep(pre_or_out > 0, g.shape[0])
        g = g * mask
        return g.clamp(min=0) if guided else g

    fcs = policy.fcs
    g = g_out
    for i in range(len(fcs) - 1, -1, -1):
        g = g @ fcs[i].weight
        if i > 0:
            g = relu_back(g, cache.fc_pre[i - 1])
    npts = cache.points.shape[1]
    g_points, g_cfg = g[:, :npts], g[:, npts:]
    g = _softmax_grad(policy, cache, g_points)
    g_layer = None
    L = len(policy.convs)
    for li in range(L - 1, -1, -1):
        if stop_layer is not None and li == stop_layer:
            g_layer = g  # gradient w.r.t. the layer's (post-ReLU) activations
            if not guided:
                return None, g_points, g_cfg, g_layer
        g = relu_back(g, cache.conv_out[li])
        conv = policy.convs[li]
        g = _conv_T(conv, g, "w", cache.conv_in[li].shape)
    return g, g_points, g_cfg, g_layer
