"""dtd's z+ forwards fused with the cached forward pass.

The z+ rule of a hidden conv (rules.ZPlus) needs Zp = conv(x, W+) at the cached input x. For a conv
whose input is non-negative (a ReLU's output, an image in [0, 1]: Eq. 2 then has no negative part)
the forward pass computes z and Zp in one convolution, conv(x, [W; W+]) with bias [b; 0], and keeps
(x, Zp) for the rule on the node (`info["zplus_forward"]`; the rule takes it, by identity of x, and
removes it, since it adds EPS to Zp in place): one convolution with twice the output channels is cheaper than
two (measured on `small`: 0.56 -> 0.51 ms for a 32 -> 32 5x5 layer at 30x30), and each output channel is
the same dot product either way (z and Zp equal the separate convolutions bit for bit here). A conv
whose input turns out to have negative values runs as usual and its rule computes Zp itself.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .canonizers import ConvLayer, FoldedLayer, _channels_last
from .context import node_module_params
from .rules import ZPLUS, ZPlus, has_negative

#: fuse only convs whose input has at most this many elements per observation: on `small` (inputs of
#: 12 k - 29 k) the stacked convolution is faster, on `paper`'s larger layers dtd was ~9 % slower with it
FUSE_MAX_INPUT = 1 << 17


def zplus_forwards(prog, method) -> dict:
    """node -> fused forward function for the method's hidden-conv z+ rules (cached per method);
    an empty dict when the method has none."""
    per = prog.__dict__.setdefault("_fused", {})
    hit = per.get(method.name)
    if hit is not None and hit[0] is method.rules:
        return hit[1]
    funcs = {}
    for n, rule, live in prog._plan(method):
        if (isinstance(rule, ZPlus) and not rule.output and n.kind == "conv" and len(live) == 1
                and isinstance(n.fn, (ConvLayer, FoldedLayer)) and _params(n)["nd"] == 2
                and _params(n)["groups"] == 1):
            funcs[n] = _fused_conv(n, bool(live[0].info.get("nonneg")))
    per[method.name] = (method.rules, funcs)
    return funcs


def _params(node) -> dict:
    return node.fn.get() if isinstance(node.fn, FoldedLayer) else node_module_params(node)


def _stacked(node, p, cl: bool):
    """([W; W+], [b; 0]) in the layout of the input, cached on the node while W and b are unchanged."""
    W, b = p["weight"], p["bias"]
    stamp = (W._version, W.data_ptr(), None if b is None else (b._version, b.data_ptr()), cl)
    hit = node.info.get("zplus_stack")
    if hit is not None and hit[0] == stamp and hit[1] is W and hit[2] is b:
        return hit[3]
    with torch.no_grad():
        Ws = torch.cat([W, W.clamp(min=0)])
        Ws = Ws.contiguous(memory_format=torch.channels_last) if cl else Ws.contiguous()
        bs = None if b is None else torch.cat([b, torch.zeros_like(b)])
    node.info["zplus_stack"] = (stamp, W, b, (Ws, bs))
    return Ws, bs


def _fused_conv(node, nonneg: bool):
    def run(x):
        if x.numel() > FUSE_MAX_INPUT * max(1, x.shape[0]) or (not nonneg and has_negative(x)):
            return node.fn(x)
        p = _params(node)
        cl = _channels_last(x)
        Ws, bs = _stacked(node, p, cl)
        out = F.conv2d(x, Ws, bs, p["stride"], p["padding"], p["dilation"], 1)
        C = p["weight"].shape[0]
        zp = out[:, C:]
        if cl and out.shape[0] * out.shape[2] * out.shape[3] > 1:
            # the channel half of a channels-last tensor is strided: the rule's min and division over it
            # run ~4-13x slower than over a dense copy (16 x 32 x 32: 51 vs 4 us for the min); same values
            zp = zp.contiguous(memory_format=torch.channels_last)
        node.info[ZPLUS] = (x, zp)
        return out[:, :C]

    return run
