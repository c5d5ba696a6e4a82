"""Rules: one small named object per (op type, method), applied by the engine's backward pass.

A rule is called as ``rule(ctx, node, xs, y, R)`` with the values `xs` of the node's
input-dependent arguments (in order), its output `y` and the upper relevance (or gradient) `R`,
shaped (m, *y.shape): m replicas of the batch (m = 1 for one pass over all outputs; m = A for
per-output passes). It returns one entry per element of `xs` (None = nothing flows there). Every
rule is linear in R; the rules for dtd/rap and their conservation properties are in
docs/graph_engine.md. Notation: contributions z_ij = x_i w_ij, (.)+ = max(., 0), (.)- = min(., 0).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

EPS = 1e-12
#: LayerMap.T: the GEMM + fold transpose (few input channels) while its column matrix has at most
#: this many elements; the backward-data convolution beyond
FOLD_MAX_ELEMENTS = 2_200_000


def dense_min(t):
    """t.min() as a 0-d tensor; torch.amin reads a channels-last tensor in memory order (half the time
    of a permuted view's min, ~10x faster than the strided min)."""
    return torch.amin(t)


def sdiv(a, b):
    """a / b, 0 where |b| <= EPS (a dead unit's relevance is dropped, not blown up); the division's
    values there (inf or NaN) are never used."""
    return torch.where(b.abs() > EPS, a / b, 0.0)


class LayerMap:
    """The linear part x -> W x of a Linear / Conv layer and its transpose, for any weights W
    (the rules use W+, W-, |W|). Relevance and gradients carry a leading replica dimension m."""

    def __init__(self, p: dict, x_shape, node=None, dtype=None):
        self.p, self.x_shape, self.node = p, tuple(x_shape), node
        self.is_conv = p["type"] == "conv"
        # convolutions of the rules in this dtype (explain_module(precision="bfloat16")); results float32
        self.dt = dtype if self.is_conv and dtype not in (None, torch.float32) else None
        # 2-D convs run channels-last (~2x faster on CPU); few input channels (a camera image):
        # the transpose as one GEMM + fold, ~2x faster than conv_transpose2d
        self.cl = self.is_conv and p["nd"] == 2
        self.fold = self.cl and x_shape[1] <= 4 and p["groups"] == 1 and tuple(p["dilation"]) == (1, 1)
        self._shape_like = None  # _conv_T's placeholder input

    def _variant(self, W, kind):
        """W in channels-last layout ("cl") or as the (C_in k k, C_out) matrix ("cols"), cached on the node."""
        if self.node is None:
            cache = {}
        else:
            cache = self.node.info.setdefault("weight_variants", {})
        key = (kind, self.dt, id(W))
        stamp = (W._version, W.data_ptr())
        hit = cache.get(key)
        if hit is not None and hit[0] == stamp and hit[2] is W:
            return hit[1]
        if len(cache) >= 8:  # weights changed (training between explanations): drop the stale variants
            cache.clear()
        with torch.no_grad():
            v = W if self.dt is None else W.to(self.dt)
            v = (v.contiguous(memory_format=torch.channels_last) if kind == "cl"
                 else v.contiguous() if kind == "plain" else v.reshape(v.shape[0], -1).T.contiguous())
        cache[key] = (stamp, v, W)
        return v

    def fwd(self, x, W):
        p = self.p
        if not self.is_conv:
            return x @ W.T
        conv = F.conv1d if p["nd"] == 1 else F.conv2d
        if self.cl or self.dt is not None:
            W = self._variant(W, "cl" if self.cl else "plain")
        if self.dt is not None:
            return conv(x.to(self.dt), W, None, p["stride"], p["padding"], p["dilation"], p["groups"]).to(x.dtype)
        return conv(x, W, None, p["stride"], p["padding"], p["dilation"], p["groups"])

    def T(self, S, W):
        """Transpose of fwd applied to S (m, *out_shape) -> (m, *x_shape)."""
        if not self.is_conv:
            return S @ W
        m = S.shape[0]
        B = self.x_shape[0]
        n = m * B
        S = S.reshape(n, *S.shape[2:])
        dtype = S.dtype
        if self.dt is not None:
            S = S.to(self.dt)
        if self.fold and self._fold_faster(S, W, n):
            return self._fold_T(S, W, n, dtype).view(m, *self.x_shape)
        return self._conv_T(S, W, n, dtype).reshape(m, *self.x_shape)

    def _fold_T(self, S, W, n, dtype):
        p = self.p
        cols = self._variant(W, "cols") @ S.reshape(n, S.shape[1], -1)  # (n, C_in k k, h w)
        return F.fold(cols.to(dtype), self.x_shape[2:], W.shape[2:], stride=p["stride"], padding=p["padding"])

    def _fold_faster(self, S, W, n) -> bool:
        """GEMM + fold or the backward-data convolution: the GEMM's (n, C_in k k, h w) result must stay
        small (FOLD_MAX_ELEMENTS); beyond it the fold streams through memory and the convolution wins
        (measured here: a 7x7/2 stem to 16 channels at 64x64 and batch 16 takes 11.2 ms by fold and
        4.9 ms by convolution, the batch-1 layers of `small`, `paper` and a width-64 84x84 stem are
        1.2-2.3x faster by fold). A fixed rule rather than a timing, so that the numbers never depend
        on which one ran faster."""
        k = s = 1
        for d in W.shape[2:]:
            k *= d
        for d in S.shape[2:]:
            s *= d
        return n * W.shape[1] * k * s <= FOLD_MAX_ELEMENTS  # shapes only: no tensor views

    def _conv_T(self, S, W, n, dtype):
        p = self.p
        if self.cl:
            W, S = self._variant(W, "cl"), S.contiguous(memory_format=torch.channels_last)
        elif self.dt is not None:
            W = self._variant(W, "plain")
        # the backward-data convolution, as torch.nn.grad.conv{1,2}d_input computes it, with its shape
        # placeholder (a broadcast view of one element, never read) kept per shape and dtype: two
        # small ops fewer per layer and pass
        key = (n, S.dtype, S.device)
        hit = self._shape_like
        if hit is None or hit[0] != key:
            hit = self._shape_like = (key, S.new_empty(1).expand(n, *self.x_shape[1:]))
        # (the layer parameters hold stride, padding and dilation as tuples of nd ints already)
        out = torch.ops.aten.convolution_backward(S, hit[1], W, None, p["stride"], p["padding"], p["dilation"],
                                                  False, [0] * p["nd"], p["groups"], (True, False, False))[0]
        return out.to(dtype)

    def div(self, R, Z):
        # Linear layers drop units with |Z| <= EPS; conv layers divide by Z + EPS (Z >= 0 there):
        # the same results as the VisuomotorPolicy engine (engine.py), bit for bit where Z > EPS.
        return sdiv(R, Z) if not self.is_conv else R / (Z + EPS)

    def bias_view(self, b, y):
        if b is None:
            return 0
        return b if not self.is_conv else b.view(1, -1, *([1] * (y.dim() - 2)))

    def wired(self, W):
        """Input units (features / channels) with a non-zero outgoing weight, broadcastable to x."""
        if not self.is_conv:
            return W.abs().sum(0) > 0
        g = self.p["groups"]
        cout, cin_g = W.shape[:2]
        a = W.abs().reshape(g, cout // g, cin_g, -1).sum((1, 3)).reshape(-1) > 0
        return a.view(1, -1, *([1] * self.p["nd"]))


def layer_map(ctx, node, x) -> tuple:
    """(parameters, LayerMap) of a Linear / Conv node for an input like x, cached on the node while
    the parameters (the same dict object: a module's, or a folded layer's until its weights change)
    and the input shape stay the same."""
    p = ctx.params(node)
    key = (tuple(x.shape), ctx.rule_dtype)
    hit = node.info.get("layer_map")
    if hit is not None and hit[0] is p and hit[1] == key:
        return p, hit[2]
    L = LayerMap(p, x.shape, node, ctx.rule_dtype)
    node.info["layer_map"] = (p, key, L)
    return p, L


def weight_parts(node, W):
    """(W+, W-) of a layer's weight, cached on the node until the weight changes (clamping a
    ResNet-18's weights costs more than a third of a dtd pass otherwise)."""
    stamp = (W._version, W.data_ptr(), tuple(W.shape))
    hit = node.info.get("weight_parts")
    if hit is not None and hit[0] == stamp:
        return hit[1]
    with torch.no_grad():
        parts = (W.clamp(min=0), W.clamp(max=0))
    node.info["weight_parts"] = (stamp, parts)
    return parts


#: node.info key of (x, Zp) from the forward pass fused with the z+ convolution (fused.py)
ZPLUS = "zplus_forward"


def take_zplus(node, x):
    """The fused forward's Zp of this node at input x (removed: the caller adds EPS to it in place), or None."""
    hit = node.info.pop(ZPLUS, None)
    return hit[1] if hit is not None and hit[0] is x else None


def has_negative(x) -> bool:
    """x has a value < 0 (one reduction in memory order and a float compare: ~10x faster on an image
    than (x < 0).any(); NaN compares False either way)."""
    return x.numel() > 0 and float(torch.amin(x)) < 0


def _parts(x, nonneg: bool = False):
    """(x+, x-, has_neg); x- is None for a non-negative x (post-ReLU maps, images in [0, 1]);
    nonneg=True: known from the graph (a ReLU's output), not checked."""
    if nonneg or not has_negative(x):
        return x, None, False
    return x.clamp(min=0), x.clamp(max=0), True


class Rule:
    name = "rule"
    #: passes R unchanged; input and output must have the same shape (checked before running)
    elementwise = False

    def __repr__(self):
        return f"<rule {self.name}>"


# ---- relevance rules (dtd, rap) -----------------------------------------------------------------
class ZPlus(Rule):
    """Deep Taylor z+ for Linear / Conv with Eq. 2 for negative inputs ((x w)+ = x+ w+ + x- w-).
    output=True: Eq. 1, the weights of an output whose bias-free pre-activation is negative are flipped.
    Hidden layers fall back to the flipped weights where a unit has no positive contribution, so no
    relevance is lost there (both choices depend on the forward pass only: linear in R)."""

    def __init__(self, output: bool = False):
        self.output = output
        self.name = "zplus_output" if output else "zplus"

    def __call__(self, ctx, node, xs, y, R):
        x = xs[0]
        p, L = layer_map(ctx, node, x)
        W = p["weight"]
        Wp, Wn = weight_parts(node, W)
        Zp = None if self.output else take_zplus(node, x)  # computed by the forward pass (fused.py)
        if Zp is not None:  # its input was non-negative
            xp, xn, has_neg = x, None, False
        else:
            xp, xn, has_neg = _parts(x, ctx.nonneg(node))
            Zp = L.fwd(xp, Wp)
            if has_neg:
                Zp = Zp + L.fwd(xn, Wn)
        if self.output:
            pos = (y - L.bias_view(p["bias"], y)) > 0
            all_pos = bool(pos.all())
        else:
            all_pos = Zp.numel() == 0 or float(dense_min(Zp)) > EPS  # a Python compare: no tensor op
            pos = None if all_pos else Zp > EPS
            # units without a positive contribution that get no relevance: the fallback adds nothing
            # there (exactly 0), so the one-transpose form gives the same result
            all_pos = all_pos or not bool((R * ~pos).any())
        if all_pos:
            # conv: R / (Zp + EPS) with the sum added in place (Zp is ours), as L.div computes it
            S = R / Zp.add_(EPS) if L.is_conv else L.div(R, Zp)
            out = xp * L.T(S, Wp)
            return [out + xn * L.T(S, Wn) if has_neg else out]
        Zn = L.fwd(xp, Wn)
        if has_neg:
            Zn = Zn + L.fwd(xn, Wp)
        S = L.div(R, torch.where(pos, Zp, -Zn))
        Sp, Sn = S * pos, S * ~pos
        out = xp * (L.T(Sp, Wp) - L.T(Sn, Wn))
        if has_neg:
            out = out + xn * (L.T(Sp, Wn) - L.T(Sn, Wp))
        return [out]


def shift(C, R, mask):
    """RAP's uniform shifting: the excess sum C - sum R is taken equally from the units in mask."""
    m, B = C.shape[:2]
    excess = C.reshape(m, B, -1).sum(2) - R.reshape(m, B, -1).sum(2)
    maskf = mask.to(C.dtype).expand(C.shape[1:])
    count = maskf.reshape(B, -1).sum(1).clamp(min=1)
    return C - maskf * (excess / count).view(m, B, *([1] * (C.dim() - 2)))


class RAPHidden(Rule):
    """Relative Attributing Propagation in hidden Linear / Conv layers: relevant P = (z)+ and
    irrelevant N = -(z)- contributions, C_i = sum_j R_j (P_ij / sum P_.j + N_ij / sum (P + N)_.j),
    then uniform shifting over the participating units (x_i != 0 and wired) restores sum R."""

    name = "rap_hidden"

    def __call__(self, ctx, node, xs, y, R):
        x = xs[0]
        p, L = layer_map(ctx, node, x)
        W = p["weight"]
        Wp, Wn = weight_parts(node, W)
        xp, xn, has_neg = _parts(x, ctx.nonneg(node))
        P = L.fwd(xp, Wp)
        Nn = L.fwd(xp, Wn)
        if has_neg:
            P = P + L.fwd(xn, Wn)
            Nn = Nn + L.fwd(xn, Wp)
        S1 = L.div(R, P)
        S2 = L.div(R, P - Nn)
        C = xp * (L.T(S1, Wp) - L.T(S2, Wn))
        if has_neg:
            C = C + xn * (L.T(S1, Wn) - L.T(S2, Wp))
        return [shift(C, R, (x != 0) & L.wired(W))]


class RAPOutput(Rule):
    """RAP at the output layer: absolute-influence normalisation R_i = sum_j |z_ij| / sum |z_.j| R_j."""

    name = "rap_output"

    def __call__(self, ctx, node, xs, y, R):
        x = xs[0]
        p, L = layer_map(ctx, node, x)
        ax, aW = x.abs(), p["weight"].abs()
        S = L.div(R, L.fwd(ax, aW))
        return [ax * L.T(S, aW)]


class PassThrough(Rule):
    """Elementwise ops (activations, dropout/identity, normalisation with frozen statistics,
    arithmetic with a constant): R_in = R. Conserving trivially."""

    name = "pass"
    elementwise = True

    def __call__(self, ctx, node, xs, y, R):
        return [R]


class Select(Rule):
    """Ops that move, copy out or join elements (reshape/view/flatten/permute, getitem, split, cat,
    stack): relevance follows each element back to where it came from (their exact transpose).
    Conserving for reshapes, cat, split; getitem keeps only the selected part's relevance."""

    name = "select"

    def __call__(self, ctx, node, xs, y, R):
        return ctx.vjp(node, R)


class Concat(Select):
    """cat: each input gets its slice of R back (exact, conserving)."""

    name = "concat"

    def __call__(self, ctx, node, xs, y, R):
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        nodes = node.arg_nodes()
        if (not isinstance(dim, int) or not isinstance(tensors, (list, tuple)) or len(nodes) != len(tensors)
                or any(t is not n for t, n in zip(tensors, nodes))):
            return ctx.vjp(node, R)  # constants among the tensors, or a computed dim
        dim = dim % y.dim()
        parts = torch.split(R, [ctx.vals[t].shape[dim] for t in tensors], dim=dim + 1)
        return [p for p, lv in zip(parts, node.info["live_args"]) if lv]


def _maxpool2d_args(ctx, node):
    """(kernel, stride, padding, dilation, ceil_mode) of a 2-D max pool node, None for other forms."""
    m = node.module
    if m is not None:
        if not isinstance(m, torch.nn.MaxPool2d) or m.return_indices:
            return None
        return m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    if node.fn is not F.max_pool2d:
        return None
    a, kw = node.bind(ctx.vals)
    names = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    defaults = (None, None, 0, 1, False, False)
    got = {k: (a[1 + i] if len(a) > 1 + i else kw.get(k, d)) for i, (k, d) in enumerate(zip(names, defaults))}
    if got["return_indices"] or got["kernel_size"] is None:
        return None
    return got["kernel_size"], got["stride"] or got["kernel_size"], got["padding"], got["dilation"], got["ceil_mode"]


class WinnerTakesAll(Select):
    """Max pooling: each window's relevance goes to its maximal input (accumulated where windows
    overlap). Conserving. It is also the pool's exact gradient (the gradient methods use it): the
    winners are the indices of max_pool2d, as in autograd, and R is added up at them (one scatter)."""

    name = "winner_takes_all"

    def __call__(self, ctx, node, xs, y, R):
        x = xs[0]
        args = _maxpool2d_args(ctx, node) if x.dim() == 4 else None
        if args is None:
            return ctx.vjp(node, R)
        key = ("maxpool_indices", node)
        idx = ctx.memo.get(key)
        if idx is None:
            idx = ctx.memo[key] = F.max_pool2d(x, *args, return_indices=True)[1].flatten(2)  # (B, C, h w)
        m, (B, C, H, W) = R.shape[0], x.shape
        out = torch.zeros(m, B, C, H * W, dtype=R.dtype, device=R.device)
        out.scatter_add_(3, idx.unsqueeze(0).expand(m, -1, -1, -1), R.reshape(m, B, C, -1))
        return [out.view(m, B, C, H, W)]


class AddGradient(Rule):
    """y = c_1 x_1 + c_2 x_2 (add; sub: c_2 = -1): g_k = c_k g, summed over broadcast dimensions."""

    name = "add_gradient"

    def __call__(self, ctx, node, xs, y, R):
        signs = node.info.get("signs", (1.0,) * len(xs))
        out = []
        for c, x in zip(signs, xs):
            g = R if c == 1 else c * R
            out.append(g if g.shape[1:] == x.shape else g.sum_to_size(g.shape[0], *x.shape))
        return out


class ZPlusPositiveMap(Rule):
    """Linear maps with non-negative weights and no bias (average / adaptive average pooling, mean,
    sum): z+ with the input's positive part, R_i = x_i+ [A^T (R / A x+)]_i, falling back to the
    negative part where a unit has no positive contribution. Conserving."""

    name = "zplus_positive_map"

    def __call__(self, ctx, node, xs, y, R):
        x = xs[0]
        xp, xn, has_neg = _parts(x, ctx.nonneg(node))
        Zp = ctx.call(node, [xp])
        pos = Zp > EPS
        if not has_neg or bool(pos.all()):
            return [xp * ctx.vjp(node, sdiv(R, Zp))[0]]
        Zn = -ctx.call(node, [xn])
        Sp = sdiv(R * pos, Zp)
        Sn = sdiv(R * ~pos, Zn)
        return [xp * ctx.vjp(node, Sp)[0] - xn * ctx.vjp(node, Sn)[0]]


class ResidualSplit(Rule):
    """y = c_1 x_1 + c_2 x_2 (residual add, c = +1; sub, c_2 = -1): R_k = (c_k x_k)+ / sum (c x)+ R,
    Eq. 2's sign handling (a negative branch contribution gets none); where no branch contributes
    positively, the negative contributions share R instead. Conserving."""

    name = "residual_split"

    def __call__(self, ctx, node, xs, y, R):
        signs = node.info.get("signs", (1.0,) * len(xs))
        nonneg = node.info.get("live_nonneg")
        if nonneg is None:
            nonneg = node.info["live_nonneg"] = [bool(a.info.get("nonneg")) for a, lv in
                                                 zip(node.arg_nodes(), node.info["live_args"]) if lv]
        z = [x if c == 1 and x.shape == y.shape else c * x.expand_as(y) for c, x in zip(signs, xs)]
        zp = [t if c == 1 and nn else t.clamp(min=0) for t, c, nn in zip(z, signs, nonneg)]
        Zp = zp[0]
        for t in zp[1:]:
            Zp = Zp + t
        pos = Zp > EPS
        out = []
        # where no branch contributes positively but no relevance arrives (the ReLU after a residual
        # add is off there), the negative-share fallback adds exactly 0: skip it. There R = 0, so
        # R / max(Zp, EPS) is sdiv(R, Zp) exactly.
        if not bool(R.masked_fill(pos, 0).any()):
            S = R / Zp.clamp(min=EPS)
            parts = [S * t for t in zp]
        else:
            Zn = sum(-t.clamp(max=0) for t in z)
            Sp, Sn = sdiv(R * pos, Zp), sdiv(R * ~pos, Zn)
            parts = [Sp * t.clamp(min=0) - Sn * t.clamp(max=0) for t in z]
        for x, r in zip(xs, parts):
            out.append(r if r.shape[1:] == x.shape else r.sum_to_size(r.shape[0], *x.shape))
        return out


class AttentionSplit(Rule):
    """Spatial softmax: a feature point's relevance R_k = R_xk + R_yk goes to the pixels of its map
    in proportion to the softmax attention, R_kq = p_kq R_k. Conserving (sum_q p_kq = 1)."""

    name = "attention_split"

    def __call__(self, ctx, node, xs, y, R):
        a = xs[0]
        att = ctx.attention(node, a)  # (B, K, Q)
        m = R.shape[0]
        Rk = R.reshape(m, a.shape[0], a.shape[1], 2).sum(-1)
        return [(Rk.unsqueeze(-1).expand(-1, -1, -1, att.shape[-1]).contiguous() * att).view(m, *a.shape)]


# ---- gradient rules (gradient, gbp) ----------------------------------------------------------------
class LinearGradient(Rule):
    """Linear / Conv: g_in = W^T g."""

    name = "linear_gradient"

    def __call__(self, ctx, node, xs, y, R):
        p, L = layer_map(ctx, node, xs[0])
        return [L.T(R, p["weight"])]


class ReLUGradient(Rule):
    """ReLU: g_in = g [x > 0]; guided (GBP): then only positive gradients pass."""

    def __init__(self, guided: bool = False):
        self.guided = guided
        self.name = "relu_guided" if guided else "relu_gradient"

    def __call__(self, ctx, node, xs, y, R):
        g = R * (xs[0] > 0)
        return [g.clamp(min=0) if self.guided else g]


class ActivationGradient(Rule):
    """Other elementwise activations (LeakyReLU, ELU, SiLU, GELU, Mish, Tanh): g_in = g f'(x);
    guided (GBP): then only positive gradients pass, as GBP does at a ReLU."""

    elementwise = True

    def __init__(self, guided: bool = False):
        self.guided = guided
        self.name = "activation_guided" if guided else "activation_gradient"

    def __call__(self, ctx, node, xs, y, R):
        g = R * ctx.derivative(node, xs[0])
        return [g.clamp(min=0) if self.guided else g]


class ExactGradient(Select):
    """The op's exact vector-Jacobian product (autograd on this one op, as Select): structural ops,
    pooling, normalisation, arithmetic with constants, for the gradient methods."""

    name = "exact_gradient"


class SpatialSoftmaxGradient(Rule):
    """Spatial softmax, exact: dA_kq = p_kq (g_k . (pos_q - point_k)) / T."""

    name = "spatial_softmax_gradient"

    def __call__(self, ctx, node, xs, y, R):
        a = xs[0]
        ad = node.info["adapter"]
        att = ctx.attention(node, a)
        pos = ad.positions()
        m, B, K = R.shape[0], a.shape[0], a.shape[1]
        g = R.reshape(m, B, K, 2)
        pts = (att @ pos).view(B, K, 2)
        gpos = g @ pos.T
        gpt = (g * pts).sum(-1, keepdim=True)
        return [((gpos - gpt) * att / ad.temperature()).view(m, *a.shape)]
