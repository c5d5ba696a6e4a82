"""What the rules may ask during one backward pass (Context): a layer's parameters (module, folded
BatchNorm or functional call), whether an argument is non-negative, the op re-run at the cached
values, its attention, derivative and exact transpose (vjp)."""
from __future__ import annotations

import torch

from .canonizers import module_layer_params
from .trace import Graph, Node, UnsupportedOpError


def node_module_params(node: Node) -> dict:
    """module_layer_params of the node's module, the same dict while the module's weight and bias are
    the same tensors (rules.layer_map caches on it)."""
    m = node.module
    w, b = m.weight, m.bias
    hit = node.info.get("module_params")
    if hit is None or hit[0] is not w or hit[1] is not b:
        hit = node.info["module_params"] = (w, b, module_layer_params(m))
    return hit[2]


class Context:
    """What the rules may ask during one backward pass."""

    def __init__(self, graph: Graph, vals: dict, rule_dtype=None):
        self.graph, self.vals, self.rule_dtype = graph, vals, rule_dtype
        self.memo: dict = {}

    def params(self, node: Node) -> dict:
        if "fold" in node.info:
            return node.info["fold"].get()
        if node.module is not None:
            return node_module_params(node)
        # functional F.linear / F.conv1d / F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        a, kw = node.bind(self.vals)
        W = a[1] if len(a) > 1 else kw["weight"]
        b = a[2] if len(a) > 2 else kw.get("bias")
        if node.source.endswith("linear"):
            return {"type": "linear", "weight": W, "bias": b}
        nd = W.dim() - 2
        names = ("stride", "padding", "dilation", "groups")
        defaults = (1, 0, 1, 1)
        got = {k: (a[3 + i] if len(a) > 3 + i else kw.get(k, d)) for i, (k, d) in enumerate(zip(names, defaults))}
        if isinstance(got["padding"], str):
            raise UnsupportedOpError(f"{node.where()}: string padding in functional conv")
        tup = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd  # noqa: E731
        return {"type": "conv", "nd": nd, "weight": W, "bias": b, "stride": tup(got["stride"]),
                "padding": tup(got["padding"]), "dilation": tup(got["dilation"]), "groups": got["groups"]}

    def nonneg(self, node: Node) -> bool:
        """The node's (first) live argument is known to be non-negative (a ReLU's output etc.)."""
        for a, lv in zip(node.arg_nodes(), node.info["live_args"]):
            if lv:
                return bool(a.info.get("nonneg"))
        return False

    def call(self, node: Node, xs: list):
        return self.graph.call_with(node, self.vals, xs)

    def attention(self, node: Node, a):
        key = ("attention", node)
        if key not in self.memo:
            ad = node.info["adapter"]
            last = getattr(ad, "last", None)
            self.memo[key] = last[1] if last is not None and last[0] is a else ad.attention(a)
        return self.memo[key]

    def derivative(self, node: Node, x):
        key = ("derivative", node)
        if key not in self.memo:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                y = self.call(node, [xg])
                (d,) = torch.autograd.grad(y.sum(), xg)
            self.memo[key] = d
        return self.memo[key]

    def vjp(self, node: Node, R):
        """Exact transpose of the op at this point: R (m, *y.shape) -> per live argument (m, *x.shape)."""
        live = [a for a, lv in zip(node.arg_nodes(), node.info["live_args"]) if lv]
        xs = []
        for a in live:
            v = self.vals[a]
            xs.append(tuple(t.detach().requires_grad_(True) for t in v) if isinstance(v, (tuple, list))
                      else v.detach().requires_grad_(True))
        leaves = [t for x in xs for t in (x if isinstance(x, tuple) else (x,))]
        with torch.enable_grad():
            y = self.call(node, xs)
        ys = list(y) if isinstance(y, (tuple, list)) else [y]
        Rs = list(R) if isinstance(R, (tuple, list)) else [R]
        pairs = [(yo, Ro) for yo, Ro in zip(ys, Rs) if Ro is not None]
        m = next(Ro.shape[0] for _, Ro in pairs)
        per_rep = []
        for k in range(m):
            outs = [yo for yo, _ in pairs]
            gs = [Ro[k] for _, Ro in pairs]
            got = torch.autograd.grad(outs, leaves, gs, retain_graph=k < m - 1, allow_unused=True)
            per_rep.append([torch.zeros_like(t) if g is None else g for g, t in zip(got, leaves)])
        stacked = [torch.stack([rep[i] for rep in per_rep]) for i in range(len(leaves))]
        out, i = [], 0
        for x in xs:
            if isinstance(x, tuple):
                out.append(stacked[i:i + len(x)])
                i += len(x)
            else:
                out.append(stacked[i])
                i += 1
        return out
