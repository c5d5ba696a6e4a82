"""Canonizers: rewrite the traced graph before the rules run.

`channels_last_convs`: conv modules run with channels-last weights when their input is channels-last
(only the layout of the weights changes; `ConvLayer`).

`fold_batchnorm`: a BatchNorm (torch.nn BatchNorm1d/2d in eval mode, or a frozen BatchNorm plain
Module with weight/bias/running_mean/running_var buffers) whose input is a Linear / Conv used by
nothing else is folded into it:

    s = gamma / sqrt(running_var + eps),  W' = s W (per output channel),  b' = s (b - running_mean) + beta

The pair then is one linear layer with W', b' (the same function up to float rounding), and the
BatchNorm node becomes an identity. The rules see W', so the sign of gamma flips the contributions
as it should. Folded weights are recomputed when any of the tensors involved changes (version
counter and storage), so training between explanations is fine.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .trace import Graph, Node, UnsupportedOpError


def _stamp(ts):
    return tuple((t._version, t.data_ptr()) if torch.is_tensor(t) else t for t in ts)


def _member(m: nn.Module, name: str):
    """m.<name> for a parameter or buffer, read from the module's dicts (nn.Module.__getattr__ is
    several times slower: this runs once per forward pass and folded layer); other attributes as usual."""
    d = m.__dict__
    for store in ("_parameters", "_buffers"):
        t = d[store].get(name, d)
        if t is not d:
            return t
    return getattr(m, name, None)


def _conv_padding(m) -> tuple:
    p = m.padding
    if isinstance(p, str):
        if p == "valid":
            return (0,) * len(m.kernel_size)
        # "same": symmetric only (odd effective kernel)
        eff = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation)]
        if any(e % 2 for e in eff):
            raise UnsupportedOpError(f"conv with padding='same' and an even effective kernel ({m})")
        return tuple(e // 2 for e in eff)
    return tuple(p)


def module_layer_params(m: nn.Module) -> dict:
    """weight, bias and geometry of a Linear / Conv1d / Conv2d module."""
    if isinstance(m, nn.Linear):
        return {"type": "linear", "weight": m.weight, "bias": m.bias}
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise UnsupportedOpError(f"conv with padding_mode={m.padding_mode!r} ({m}); supported: 'zeros'")
    return {"type": "conv", "nd": len(m.kernel_size), "weight": m.weight, "bias": m.bias, "stride": tuple(m.stride),
            "padding": _conv_padding(m), "dilation": tuple(m.dilation), "groups": m.groups}


class FoldedLayer:
    """Parameters of a linear / conv layer with the BatchNorm after it folded in (cached)."""

    def __init__(self, layer: Node, bn: nn.Module, graph: Graph = None):
        self.layer, self.bn, self.graph = layer, bn, graph
        self._cache = None
        self._epoch = None
        self._base = None  # module_layer_params of the layer while its weight and bias are the same tensors

    def _bn_tensors(self):
        bn = self.bn
        return _member(bn, "weight"), _member(bn, "bias"), _member(bn, "running_mean"), _member(bn, "running_var")

    def get(self) -> dict:
        epoch = None if self.graph is None else self.graph.epoch
        if epoch is not None and self._epoch == epoch and self._cache is not None:
            return self._cache[1]  # checked already in this forward pass
        self._epoch = epoch
        m = self.layer.module
        w, b = _member(m, "weight"), _member(m, "bias")
        base = self._base
        if base is None or base["weight"] is not w or base["bias"] is not b:
            base = self._base = module_layer_params(m)
        g, beta, mu, var = self._bn_tensors()
        stamp = _stamp((w, b, g, beta, mu, var))
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        with torch.no_grad():
            eps = float(getattr(self.bn, "eps", 1e-5))
            s = torch.rsqrt(var + eps)
            if g is not None:
                s = s * g
            W = base["weight"]
            b = base["bias"] if base["bias"] is not None else torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
            W2 = W * s.view(-1, *([1] * (W.dim() - 1)))
            b2 = (b - mu) * s + (beta if beta is not None else 0)
        out = dict(base, weight=W2.contiguous(), bias=b2.contiguous())
        self._cache = (stamp, out)
        return out

    def __call__(self, x):
        p = self.get()
        if p["type"] == "linear":
            return F.linear(x, p["weight"], p["bias"])
        return _conv(x, p, self)


def _channels_last(x) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _conv(x, p: dict, owner):
    """The conv of p on x; a channels-last x gets the weights in channels-last layout too (cached on
    `owner` per weight tensor and version: ~10-15 % faster on CPU than NCHW weights with it)."""
    W = p["weight"]
    if p["nd"] == 2 and _channels_last(x):
        stamp = (W._version, W.data_ptr(), tuple(W.shape))
        hit = getattr(owner, "_cl_weight", None)
        if hit is None or hit[0] != stamp or hit[2] is not W:
            with torch.no_grad():
                hit = owner._cl_weight = (stamp, W.contiguous(memory_format=torch.channels_last), W)
        W = hit[1]
    conv = F.conv1d if p["nd"] == 1 else F.conv2d
    return conv(x, W, p["bias"], p["stride"], p["padding"], p["dilation"], p["groups"])


class ConvLayer:
    """A conv module's forward in the traced graph: F.conv with the module's parameters, channels-last
    weights for channels-last inputs (the same function as the module, up to float rounding)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, x):
        return _conv(x, module_layer_params(self.module), self)


def channels_last_convs(graph: Graph) -> int:
    """Conv2d modules (not folded) run as ConvLayer; returns 0 (nothing is folded)."""
    for n in graph.nodes:
        m = n.module
        if not (n.kind == "conv" and "fold" not in n.info and isinstance(m, nn.Conv2d) and n.fn is m
                and not n.kwargs and len(n.args) == 1) or m._forward_hooks or m._forward_pre_hooks:
            continue
        try:
            module_layer_params(m)
        except UnsupportedOpError:
            continue  # e.g. padding_mode="reflect": the module runs itself (and the rules say why they cannot)
        n.fn = ConvLayer(m)
    return 0


def fold_batchnorm(graph: Graph) -> int:
    """Fold every foldable BatchNorm into the layer before it; returns how many were folded."""
    users = graph.users()
    folded = 0
    for n in graph.nodes:
        if n.kind != "batchnorm" or n.module is None:
            continue
        bn = n.module
        if isinstance(bn, nn.modules.batchnorm._BatchNorm):
            if bn.training:
                raise UnsupportedOpError(f"{n.where()} is in training mode; call model.eval() first")
            if bn.running_mean is None:
                continue  # batch statistics in eval: not a fixed affine map; stays a batchnorm node
        args = n.arg_nodes()
        if len(args) != 1:
            continue
        prev = args[0]
        if prev.kind not in ("linear", "conv") or prev.module is None or len(users[prev]) != 1 or "fold" in prev.info:
            continue
        fl = FoldedLayer(prev, bn, graph)
        prev.info["fold"] = fl
        prev.info["folded_from"] = n.path
        prev.fn = fl
        n.kind = "identity"
        n.info["folded_into"] = prev.path
        n.fn = _identity
        folded += 1
    return folded


def _identity(x):
    return x


#: canonizers run in this order before every explanation
CANONIZERS = (fold_batchnorm, channels_last_convs)
