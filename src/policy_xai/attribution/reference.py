"""The hand-written reference passes over VisuomotorPolicy's plain conv stack (image -> conv_1..conv_L
(+ReLU) -> spatial softmax -> points, with the normalised configuration -> fc_1..fc_M (+ReLU) -> torques),
used by `explain(..., engine="reference")` (engine.py, whose docstring gives the rules' formulas): one
cached forward pass (forward_cache), then explicit backward passes, for a batch and all joints at once.
The graph engine (graph/, the default) is checked against these: the same numbers to 1e-6
(test/test_graph_compat.py). The amortised methods (occlusion_net...) are not here (engine.py,
amortised/).
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn import functional as F
from torch.nn.grad import conv2d_input

from ..policy import VisuomotorPolicy
from .explanation import IMAGE, Explanation
from .graph.engine import _alpha_tensor  # the one alpha check (engine.py re-exports it)

EPS = 1e-12
_CL = torch.channels_last
#: budget (float elements) for one chunk of per-joint backward passes
_CHUNK_ELEMENTS = 96 * 2**20


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


# ---- helpers ------------------------------------------------------------------------------------
def _bmul(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """r (m*B, ...) times activations x (B, ...), broadcasting over the m replicas."""
    if r.shape[0] == x.shape[0]:
        return r * x
    m = r.shape[0] // x.shape[0]
    return (r.view(m, *x.shape) * x).view(r.shape)


def _brep(x: torch.Tensor, n: int) -> torch.Tensor:
    """Activations x (B, ...) repeated to n = m*B rows (a copy only when m > 1)."""
    if n == x.shape[0]:
        return x
    return x.repeat(n // x.shape[0], *([1] * (x.dim() - 1)))


def _sdiv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, and 0 where b == 0 (relevance of dead units is dropped, not blown up)."""
    return torch.where(b.abs() > EPS, a / torch.where(b.abs() > EPS, b, torch.ones_like(b)), torch.zeros_like(a))


def _pos(t):
    return t.clamp(min=0)


def _neg(t):
    return t.clamp(max=0)


#: dtype of the relevance rules' convolutions (explain(precision=...)); float32 = exact rules
_RULE_DTYPE: ContextVar[torch.dtype] = ContextVar("policy_xai_rule_dtype", default=torch.float32)


def _conv_weight(conv, kind: str, dtype=None) -> torch.Tensor:
    """conv.weight ("w"), its positive ("pos") or negative ("neg") part, in the rules' dtype and
    channels-last layout; "pos_cols" etc. give the (C_in*k*k, C_out) matrix for the fold path.
    Cached per weight tensor and refreshed when the weights change (version counter, storage)."""
    w = conv.weight
    dt = dtype or _RULE_DTYPE.get()
    stamp = (w._version, w.data_ptr())
    per = conv.__dict__.setdefault("_policy_xai_weights", {})  # lives and dies with the layer
    hit = per.get((kind, dt))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    base, _, cols = kind.partition("_")
    t = w.detach()
    t = t.clamp(min=0) if base == "pos" else t.clamp(max=0) if base == "neg" else t
    t = t.reshape(t.shape[0], -1).T.to(dt).contiguous() if cols else t.to(dt).contiguous(memory_format=_CL)
    per[(kind, dt)] = (stamp, t)
    return t


def _conv_T(conv, s: torch.Tensor, kind: str, in_shape) -> torch.Tensor:
    """Transposed convolution of s (N, C_out, h, w) with the weights `kind` back to the input size."""
    n = s.shape[0]
    c_in, H, W = in_shape[1:]
    dt = _RULE_DTYPE.get()
    if c_in <= 4 and conv.groups == 1 and conv.dilation == (1, 1):
        # few input channels (the image): one GEMM + fold is ~2x faster than conv_transpose2d on CPU
        cols = _conv_weight(conv, kind + "_cols") @ s.reshape(n, s.shape[1], -1).to(dt)  # (N, C_in*k*k, h*w)
        return F.fold(cols.float(), (H, W), conv.kernel_size, stride=conv.stride, padding=conv.padding)
    return conv2d_input((n, c_in, H, W), _conv_weight(conv, kind), s.to(dt).contiguous(memory_format=_CL),
                        stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups).float()


def _conv_fwd(conv, x, kind: str):
    dt = _RULE_DTYPE.get()
    return F.conv2d(x.to(dt), _conv_weight(conv, kind), None, conv.stride, conv.padding, conv.dilation,
                    conv.groups).float()


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
    from .engine import PATH_METHODS, RELEVANCE_METHODS

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
    from .engine import CAM_METHODS

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
    from .engine import PATH_METHODS
    from .path import DEFAULT_STEPS, integrated_gradients, path_sigma

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
        from .path import occlusion_refine

        img_map = occlusion_refine(policy, image, config, a, img_map, tau)
    # ratios from the path integral for all three (ig_occlusion's refined map ranks pixels; its total
    # depends on which windows were occluded, and a near-tie in their choice must not move the ratios)
    ratios = _ratios(ig.image.abs().flatten(1).sum(1), ig.config.abs(), spec)
    extras = {"reference_torques": tau0, "output_relevance": (a * (tau - tau0).abs()).sum(1),
              "reference": PATH_METHODS[method]}
    return Explanation(method, img_map, ig.config, ig.points, tau, a, ratios, spec.group_names, fp, pj_img,
                       pj_cfg, extras)
