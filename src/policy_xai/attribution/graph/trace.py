"""Trace a torch.nn.Module policy (torch.fx) into a small graph of typed ops.

The graph is our own intermediate form, not an fx GraphModule: each `Node` has an op type (`kind`,
e.g. "linear", "conv", "relu", "add", "spatial_softmax") that the composites (composites.py) map to
a rule, a forward function, its arguments (other nodes or constants) and the module path it came
from (for error messages). `Graph.run` evaluates it once and keeps every value (the cached forward).

Leaf modules (not traced into): every torch.nn module as usual, spatial softmax modules (ours from
policy.py, and any keypoint soft-argmax with `pos_x`, `pos_y`, `temperature` and an optional 1x1 conv
`nets`, robomimic's layout, see models.SpatialSoftArgmax; or with `nets` and a (H*W, 2) `pos_grid`,
LeRobot's layout, temperature 1) and frozen BatchNorm modules (a plain Module
with weight/bias/running_mean/running_var buffers, as in ACT/DETR). A keypoint module's 1x1 conv
becomes its own "conv" node, so the conv rules apply to it.
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.fx as fx
from torch import nn
from torch.nn import functional as F


class UnsupportedOpError(TypeError):
    """An op in the traced model that the requested method has no rule for (or cannot trace)."""


# ---- spatial softmax leaf adapters ----------------------------------------------------------------
@dataclass
class SpatialSoftmaxAdapter:
    """How to read a spatial softmax module: optional keypoint conv, temperature, positions (Q, 2),
    and the output layout ("flat": (B, 2K) [x0, y0, x1, ...]; "points": (B, K, 2))."""

    module: nn.Module
    nets: Optional[nn.Module]
    layout: str

    def temperature(self):
        t = getattr(self.module, "temperature", 1.0)
        return t if torch.is_tensor(t) else float(t)

    def positions(self) -> torch.Tensor:
        m = self.module
        if hasattr(m, "pos_grid"):  # LeRobot's layout: (H*W, 2) [x, y]
            return m.pos_grid
        if hasattr(m, "pos") and not hasattr(m, "pos_x"):
            return m.pos
        return torch.stack([m.pos_x.reshape(-1), m.pos_y.reshape(-1)], dim=1)

    def attention(self, a: torch.Tensor) -> torch.Tensor:
        """(B, K, H*W) softmax weights of feature maps a (B, K, H, W)."""
        return torch.softmax(a.flatten(2) / self.temperature(), dim=-1)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        att = self.attention(a)
        self.last = (a, att)  # the rules reuse the forward's attention (Context.attention)
        pts = att @ self.positions()  # (B, K, 2)
        return pts.flatten(1) if self.layout == "flat" else pts


def spatial_softmax_adapter(module: nn.Module) -> Optional[SpatialSoftmaxAdapter]:
    from ...policy import SpatialSoftmax

    if isinstance(module, SpatialSoftmax):
        return SpatialSoftmaxAdapter(module, None, "flat")
    robomimic = all(hasattr(module, a) for a in ("pos_x", "pos_y", "temperature")) and torch.is_tensor(module.pos_x)
    lerobot = torch.is_tensor(getattr(module, "pos_grid", None)) and hasattr(module, "nets")
    if robomimic or lerobot:
        nets = getattr(module, "nets", None)
        if nets is not None and not isinstance(nets, (nn.Conv2d, nn.Identity)):
            raise UnsupportedOpError(f"spatial softmax {type(module).__name__}: its keypoint network `nets` is a "
                                     f"{type(nets).__name__}; supported: a Conv2d (1x1 keypoints) or None")
        return SpatialSoftmaxAdapter(module, nets if isinstance(nets, nn.Conv2d) else None, "points")
    return None


def is_frozen_batchnorm(module: nn.Module) -> bool:
    """A plain (non-torch.nn) BatchNorm with its affine parameters as buffers (ACT / DETR style)."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return False
    bufs = dict(module.named_buffers(recurse=False))
    return (all(k in bufs for k in ("weight", "bias", "running_mean", "running_var"))
            and not any(True for _ in module.parameters(recurse=False)) and "norm" in type(module).__name__.lower())


# ---- op types -------------------------------------------------------------------------------------
MODULE_KINDS = [
    (nn.Linear, "linear"), ((nn.Conv1d, nn.Conv2d), "conv"), (nn.ReLU, "relu"), (nn.LeakyReLU, "leaky_relu"),
    (nn.ELU, "elu"), (nn.SiLU, "silu"), (nn.GELU, "gelu"), (nn.Mish, "mish"), (nn.Tanh, "tanh"),
    ((nn.BatchNorm1d, nn.BatchNorm2d), "batchnorm"), (nn.GroupNorm, "groupnorm"), (nn.LayerNorm, "layernorm"),
    ((nn.MaxPool1d, nn.MaxPool2d), "maxpool"),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d), "avgpool"),
    ((nn.Flatten, nn.Unflatten), "reshape"),
    ((nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity), "identity"),
]

FUNCTION_KINDS = {
    torch.relu: "relu", F.relu: "relu", F.leaky_relu: "leaky_relu", F.elu: "elu", F.silu: "silu",
    F.gelu: "gelu", F.mish: "mish", torch.tanh: "tanh", F.tanh: "tanh",
    operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub", operator.mul: "mul",
    torch.mul: "mul", operator.truediv: "div", torch.div: "div", operator.neg: "neg", torch.neg: "neg",
    torch.cat: "cat", torch.concat: "cat", torch.stack: "stack",
    torch.flatten: "reshape", torch.reshape: "reshape", torch.squeeze: "reshape", torch.unsqueeze: "reshape",
    torch.permute: "reshape", torch.transpose: "reshape",
    operator.getitem: "getitem", torch.split: "split", torch.chunk: "split", torch.unbind: "split",
    torch.mean: "mean", torch.sum: "sum",
    F.max_pool1d: "maxpool", F.max_pool2d: "maxpool", F.avg_pool1d: "avgpool", F.avg_pool2d: "avgpool",
    F.adaptive_avg_pool1d: "avgpool", F.adaptive_avg_pool2d: "avgpool", F.dropout: "identity",
    F.linear: "linear", F.conv1d: "conv", F.conv2d: "conv", F.group_norm: "groupnorm", F.layer_norm: "layernorm",
}

METHOD_KINDS = {
    "view": "reshape", "reshape": "reshape", "flatten": "reshape", "squeeze": "reshape", "unsqueeze": "reshape",
    "permute": "reshape", "transpose": "reshape", "unflatten": "reshape", "view_as": "reshape",
    "reshape_as": "reshape", "contiguous": "identity", "float": "identity", "clone": "identity",
    "detach": "identity", "split": "split", "chunk": "split", "unbind": "split", "mean": "mean", "sum": "sum",
    "relu": "relu", "tanh": "tanh", "add": "add", "sub": "sub", "mul": "mul", "div": "div", "neg": "neg",
}

#: in-place ops, run out of place in the cached forward (ReLU(inplace=True), out += identity, ...)
_OUT_OF_PLACE_FUNCTIONS = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                           operator.itruediv: operator.truediv, torch.relu_: torch.relu, F.relu_: F.relu}
_INPLACE_SAFE_KINDS = ("relu", "leaky_relu", "elu", "silu", "mish", "identity")

#: elementwise arithmetic that becomes "affine_const" when only one operand depends on the input
_ARITH = ("add", "sub", "mul", "div", "neg")


def _fn_name(f) -> str:
    mod = getattr(f, "__module__", None) or ""
    name = getattr(f, "__name__", repr(f))
    if mod == "_operator":
        mod = "operator"
    return f"{mod}.{name}" if mod else name


@dataclass(eq=False)
class Node:
    index: int
    name: str
    op: str  # "input" | "const" | "call"
    kind: str  # op type (composites map it to a rule)
    fn: Optional[Callable]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    path: str = ""  # module path of the op (or of the module it was called in)
    source: str = ""  # what the op is, for messages: "nn.Conv2d", "torch.cat", "Tensor.view"
    module: Optional[nn.Module] = None
    info: dict = field(default_factory=dict)

    def arg_nodes(self) -> list["Node"]:
        """Nodes among the arguments, in order, with repeats (cached: arguments never change)."""
        got = self.info.get("_arg_nodes")
        if got is None:
            got = []
            _map((self.args, self.kwargs), lambda v: got.append(v) if isinstance(v, Node) else None)
            self.info["_arg_nodes"] = got
        return got

    def bind(self, vals: dict):
        """(args, kwargs) with the argument nodes replaced by their values."""
        f = self.info.get("_bind")
        if f is None:
            f = self.info["_bind"] = _compile_call(self.args, self.kwargs)
        return f(vals)

    def where(self) -> str:
        return f"{self.source} at {self.path!r}" if self.path else f"{self.source} (top level)"

    def __repr__(self):
        return f"Node({self.name}: {self.kind} <- {self.source} @ {self.path or '-'})"


def _map(obj, f):
    """Apply f to the leaves of nested tuples/lists/dicts/slices, rebuilding the structure."""
    if isinstance(obj, tuple):
        return tuple(_map(o, f) for o in obj)
    if isinstance(obj, list):
        return [_map(o, f) for o in obj]
    if isinstance(obj, dict):
        return {k: _map(v, f) for k, v in obj.items()}
    if isinstance(obj, slice):
        return slice(_map(obj.start, f), _map(obj.stop, f), _map(obj.step, f))
    return f(obj)


def _compile_call(args: tuple, kwargs: dict):
    """vals -> (args, kwargs) of a call; the common forms (a flat tuple of nodes and constants, no
    node among the keyword arguments) in one function, the rest through _compile."""
    flat = all(not isinstance(a, (tuple, list, dict, slice)) for a in args)
    fixed_kw = not any(isinstance(a, Node) for a in _leaves(kwargs))
    if not (flat and fixed_kw):
        return _compile((args, kwargs))
    kw = kwargs
    if len(args) == 1 and isinstance(args[0], Node):
        return lambda v, _n=args[0]: ((v[_n],), kw)
    if all(isinstance(a, Node) for a in args):
        return lambda v, _a=args: (tuple([v[n] for n in _a]), kw)
    is_node = [isinstance(a, Node) for a in args]
    return lambda v, _a=args, _k=is_node: (tuple([v[a] if k else a for a, k in zip(_a, _k)]), kw)


def _leaves(obj) -> list:
    out = []
    _map(obj, out.append)
    return out


def _compile(obj):
    """A function vals -> obj with the Node leaves replaced by vals[node] (faster than _map)."""
    if isinstance(obj, Node):
        return lambda v, _n=obj: v[_n]
    if isinstance(obj, (tuple, list, dict, slice)):
        if not any(isinstance(a, Node) for a in _leaves(obj)):
            return lambda v, _c=obj: _c
        if isinstance(obj, (tuple, list)):
            fs, typ = [_compile(o) for o in obj], type(obj)
            return lambda v: typ([f(v) for f in fs])
        if isinstance(obj, dict):
            fs = {k: _compile(o) for k, o in obj.items()}
            return lambda v: {k: f(v) for k, f in fs.items()}
        fa, fb, fc = _compile(obj.start), _compile(obj.stop), _compile(obj.step)
        return lambda v: slice(fa(v), fb(v), fc(v))
    return lambda v, _c=obj: _c


class Graph:
    """Ops in topological order; inputs by name; the output structure with Node leaves."""

    def __init__(self, root: nn.Module, nodes: list[Node], inputs: list[Node], output):
        self.root, self.nodes, self.inputs, self.output = root, nodes, inputs, output
        self.input_names = [n.name for n in inputs]
        #: counts forward passes: caches that depend only on the parameters (folded BatchNorms) check
        #: whether the parameters changed once per pass, not once per use
        self.epoch = 0

    def users(self) -> dict:
        us = {n: [] for n in self.nodes}
        for n in self.nodes:
            for a in n.arg_nodes():
                us[a].append(n)
        return us

    @torch.no_grad()
    def run(self, values_in: list, special=None) -> dict:
        """One forward pass; returns node -> value for every node. special: node -> function run in
        place of the node's own (the same value; e.g. graph/fused.py, which keeps more on the side)."""
        return self._run(values_in, special)

    def run_recorded(self, values_in: list) -> dict:
        """One forward pass recorded by autograd (for the exact gradient: autograd is the exact
        transpose of every op, and faster than op-by-op rules where no rule differs from it)."""
        with torch.enable_grad():
            return self._run(values_in)

    def _run(self, values_in: list, special=None) -> dict:
        self.epoch += 1
        vals = {}
        for n, v in zip(self.inputs, values_in):
            vals[n] = v
        special = special or {}
        for n in self.nodes:
            if n.op == "input":
                continue
            args, kwargs = n.bind(vals)
            vals[n] = special.get(n, n.fn)(*args, **kwargs)
        return vals

    def call_with(self, node: Node, vals: dict, replace: list):
        """node's forward with its live tensor arguments (in order, with repeats) replaced by `replace`."""
        it = iter(replace)
        live = node.info["live_args"]
        k = [0]

        def sub(a):
            if isinstance(a, Node):
                i = k[0]
                k[0] += 1
                return next(it) if live[i] else vals[a]
            return a

        args = _map(node.args, sub)
        kwargs = _map(node.kwargs, sub)
        return node.fn(*args, **kwargs)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if spatial_softmax_adapter(m) is not None or is_frozen_batchnorm(m):
            return True
        return super().is_leaf_module(m, qualname)


def _make_root(model: nn.Module, names: list, as_dict: bool) -> nn.Module:
    """A wrapper module whose forward takes one positional tensor per observation entry, so that
    the model sees a real dict (iteration, .items(), len work during tracing)."""
    params = [f"x{i}" for i in range(len(names))]
    if as_dict:
        body = "{" + ", ".join(f"{n!r}: {p}" for n, p in zip(names, params)) + "}"
        call = f"self.model({body})"
    else:
        call = f"self.model({', '.join(params)})"
    src = f"def forward(self, {', '.join(params)}):\n    return {call}\n"
    ns: dict = {}
    exec(src, ns)  # noqa: S102 - generated from our own parameter names only
    cls = type("ObservationRoot", (nn.Module,), {"forward": ns["forward"]})
    root = cls()
    root.model = model
    return root


def _strip(path: str) -> str:
    return path[len("model."):] if path.startswith("model.") else ("" if path == "model" else path)


def _get_attr(root, target):
    obj = root
    for p in target.split("."):
        obj = getattr(obj, p)
    return obj


def trace(model: nn.Module, names: list, as_dict: bool) -> Graph:
    """Trace model(dict(zip(names, tensors))) (or model(*tensors)) into a Graph."""
    root = _make_root(model, names, as_dict)
    tracer = _Tracer()
    try:
        fxg = tracer.trace(root)
    except Exception as e:  # noqa: BLE001 - fx raises many kinds for untraceable code
        raise UnsupportedOpError(f"torch.fx could not trace {type(model).__name__}: {type(e).__name__}: {e} "
                                 "(data-dependent control flow is not supported; trace a function of the "
                                 "observation tensors only)") from e
    modules = dict(root.named_modules())
    nodes, inputs, conv = [], [], {}
    output = None

    def ref(a):
        return conv[a] if isinstance(a, fx.Node) else a

    def add(**kw) -> Node:
        n = Node(index=len(nodes), **kw)
        nodes.append(n)
        return n

    for fn in fxg.nodes:
        stack = fn.meta.get("nn_module_stack") or {}
        ctx_path = _strip(list(stack.values())[-1][0]) if stack else ""
        args, kwargs = _map(tuple(fn.args), ref), _map(dict(fn.kwargs), ref)
        if fn.op == "placeholder":
            n = add(name=names[len(inputs)], op="input", kind="input", fn=None, source="input")
            inputs.append(n)
        elif fn.op == "get_attr":
            target = fn.target
            n = add(name=fn.name, op="const", kind="const", fn=lambda _t=target: _get_attr(root, _t),
                    path=_strip(target), source=f"attribute {_strip(target)}")
        elif fn.op == "call_module":
            m = modules[fn.target]
            path = _strip(fn.target)
            cls = f"nn.{type(m).__name__}" if type(m).__module__.startswith("torch.nn") else type(m).__name__
            ad = spatial_softmax_adapter(m)
            if ad is not None:
                if ad.nets is not None:
                    args = (add(name=fn.name + "_keypoints", op="call", kind="conv", fn=ad.nets, args=args,
                                kwargs=kwargs, path=path + ".nets", source="nn.Conv2d", module=ad.nets),)
                    kwargs = {}
                n = add(name=fn.name, op="call", kind="spatial_softmax", fn=ad.forward, args=args, kwargs=kwargs,
                        path=path, source=cls, module=m, info={"adapter": ad})
            else:
                kind = "batchnorm" if is_frozen_batchnorm(m) else next(
                    (k for t, k in MODULE_KINDS if isinstance(m, t)), f"module {cls}")
                f = m
                if getattr(m, "inplace", False) is True and kind in _INPLACE_SAFE_KINDS:
                    f = copy.copy(m)  # the cached forward must keep every value: run it out of place
                    f.inplace = False
                n = add(name=fn.name, op="call", kind=kind, fn=f, args=args, kwargs=kwargs, path=path,
                        source=cls, module=m)
        elif fn.op == "call_function":
            target = _OUT_OF_PLACE_FUNCTIONS.get(fn.target, fn.target)
            if kwargs.get("inplace") is True:
                kwargs = dict(kwargs, inplace=False)
            kind = FUNCTION_KINDS.get(target, f"function {_fn_name(target)}")
            n = add(name=fn.name, op="call", kind=kind, fn=target, args=args, kwargs=kwargs, path=ctx_path,
                    source=_fn_name(fn.target))
        elif fn.op == "call_method":
            name = fn.target
            if name.endswith("_") and not name.endswith("__") and name[:-1] in METHOD_KINDS:
                name = name[:-1]  # relu_, add_, mul_ ...: out of place, so the cache keeps the input
            kind = METHOD_KINDS.get(name, f"method Tensor.{fn.target}")
            n = add(name=fn.name, op="call", kind=kind, fn=lambda self, *a, _m=name, **k: getattr(self, _m)(*a, **k),
                    args=args, kwargs=kwargs, path=ctx_path, source=f"Tensor.{name}")
        elif fn.op == "output":
            output = args[0]
            continue
        else:  # pragma: no cover
            raise UnsupportedOpError(f"fx node {fn.op} {fn.target}")
        conv[fn] = n
    return Graph(root, nodes, inputs, output)


def _is_tensorish(v) -> bool:
    if torch.is_tensor(v):
        return True
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(torch.is_tensor(t) for t in v)


def analyse(graph: Graph, vals: dict, out_node: Node) -> None:
    """After one forward: which nodes depend on the input (live) and carry tensors, which live
    arguments each node has, which nodes lie on a path to the output, and the final op types of the
    elementwise arithmetic ("affine_const" with a constant operand, "add"/"sub" of two live tensors)."""
    live = set(graph.inputs)
    for n in graph.nodes:
        if n.op == "call" and any(a in live for a in n.arg_nodes()) and _is_tensorish(vals[n]):
            live.add(n)
    for n in graph.nodes:
        n.info["live_args"] = [a in live and _is_tensorish(vals[a]) for a in n.arg_nodes()]
        n.info["live"] = n in live
        if n.kind in _ARITH and n in live:
            n_live = sum(n.info["live_args"])
            if n_live == 1:
                n.kind = "affine_const"
            elif n.kind in ("add", "sub") and n_live == 2 and len(n.arg_nodes()) == 2 and not n.kwargs:
                n.info["signs"] = (1.0, 1.0) if n.kind == "add" else (1.0, -1.0)
                n.kind = "add"
            else:
                n.kind = f"{n.kind} of two input-dependent tensors"
    # the inputs each node depends on
    for n in graph.nodes:
        deps = {n} if n.op == "input" else set()
        for a, lv in zip(n.arg_nodes(), n.info["live_args"]):
            if lv:
                deps |= a.info["input_deps"]
        n.info["input_deps"] = frozenset(deps)
    # outputs known to be non-negative without looking (the rules then skip Eq. 2's negative part)
    keep = ("maxpool", "avgpool", "identity", "reshape", "getitem", "cat", "split", "stack", "mean", "sum")
    for n in graph.nodes:
        args = [a for a, lv in zip(n.arg_nodes(), n.info["live_args"]) if lv]
        n.info["nonneg"] = n.kind == "relu" or (n.kind in keep and bool(args) and
                                                all(a.info.get("nonneg") for a in args))
    # nodes relevance reaches: backwards from the output through live arguments
    reach = {out_node} if out_node in live else set()
    for n in reversed(graph.nodes):
        if n in reach:
            for a, lv in zip(n.arg_nodes(), n.info["live_args"]):
                if lv:
                    reach.add(a)
    for n in graph.nodes:
        n.info["reached"] = n in reach
