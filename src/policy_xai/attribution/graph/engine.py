"""The graph engine: trace once, canonize, one cached forward, explicit backward passes with the
method's rules (composites.py). `explain_module` is the entry point.

    from policy_xai.attribution.graph import explain_module
    e = explain_module(model, {"image": img, "state": s}, method="dtd", alpha=None)
    e.inputs["image"]   # relevance, same shape as the input
    e.ratios["state"]   # share of the total absolute relevance, (B,)
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import torch
from torch import nn

from .canonizers import CANONIZERS, module_layer_params
from .composites import METHODS, OUTPUT_PASS, Method
from .trace import Graph, Node, UnsupportedOpError, analyse, trace


@dataclass
class GraphExplanation:
    """inputs: name -> relevance (B, ...) like the input; ratios: name -> (B,) share of the total
    absolute relevance (sum to 1; NaN where there is none); group_ratios: "input/group" -> (B,) for
    the groups given to explain_module; outputs: the explained outputs (B, A); alpha: (B, A);
    per_output: name -> (B, A, ...) per-output relevance when requested; maps: image inputs
    (B, C, H, W) -> (B, H, W), the channel-summed relevance (the CAM methods: the CAM, and the camera
    is then not in `inputs`; ratios None)."""

    method: str
    inputs: dict
    ratios: Optional[dict]
    outputs: torch.Tensor
    alpha: torch.Tensor
    group_ratios: dict = field(default_factory=dict)
    per_output: Optional[dict] = None
    extras: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)


def _alpha_tensor(alpha, B, A, dtype, device=None):
    if alpha is None:
        return torch.ones(B, A, dtype=dtype, device=device)
    if torch.is_tensor(alpha):
        a = alpha.detach().to(device=device, dtype=dtype)
    else:
        a = torch.as_tensor(np.asarray(alpha, dtype=np.float64), dtype=dtype, device=device)
    if a.dim() == 1:
        a = a.unsqueeze(0).expand(B, -1)
    if tuple(a.shape) != (B, A):
        raise ValueError(f"alpha must have shape ({A},) or ({B}, {A}), got {tuple(a.shape)}")
    if not torch.isfinite(a).all() or (a < 0).any():
        raise ValueError("alpha must be finite and non-negative")
    return a.contiguous()


class Context:
    """What the rules may ask during one backward pass."""

    def __init__(self, graph: Graph, vals: dict, rule_dtype=None):
        self.graph, self.vals, self.rule_dtype = graph, vals, rule_dtype
        self.memo: dict = {}

    def params(self, node: Node) -> dict:
        if "fold" in node.info:
            return node.info["fold"].get()
        if node.module is not None:
            return module_layer_params(node.module)
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


def _acc(old, new):
    if old is None:
        return new
    if new is None:
        return old
    if isinstance(old, list):
        return [_acc(o, n) for o, n in zip(old, new)]
    return old + new


class GraphProgram:
    """A traced and canonized model for one observation structure (cached per model)."""

    def __init__(self, model: nn.Module, names: list, as_dict: bool, output):
        self.model, self.names, self.as_dict, self.output_key = model, names, as_dict, output
        self.graph = trace(model, names, as_dict)
        self.folded = sum(c(self.graph) for c in CANONIZERS)
        self._analysed = False
        self._checked: set = set()

    def _select_output(self, out):
        key = self.output_key
        if key is None:
            if not isinstance(out, Node):
                raise ValueError(f"the model returns a {type(out).__name__}; pass output=<key or index> to choose "
                                 "the actions")
            return out
        try:
            node = out[key]
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"output {key!r} not in the model's output ({type(out).__name__})") from e
        if not isinstance(node, Node):
            raise ValueError(f"output {key!r} is not a tensor computed from the observation")
        return node

    def forward(self, tensors: list) -> dict:
        vals = self.graph.run(tensors)
        if not self._analysed:
            self.out_node = self._select_output(self.graph.output)
            analyse(self.graph, vals, self.out_node)
            self._mark_output_layers()
            self._check_against_model(tensors, vals)
            self._analysed = True
        return vals

    def _mark_output_layers(self):
        for n in self.graph.nodes:
            n.info["output_layer"] = False
        stack, seen = [self.out_node], set()
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n.kind in ("linear", "conv"):
                n.info["output_layer"] = True
            elif n.kind in OUTPUT_PASS:
                stack.extend(a for a, lv in zip(n.arg_nodes(), n.info["live_args"]) if lv)

    @torch.no_grad()
    def _check_against_model(self, tensors, vals):
        obs = dict(zip(self.names, tensors)) if self.as_dict else tuple(tensors)
        ref = self.model(obs) if self.as_dict else self.model(*obs)
        if self.output_key is not None:
            ref = ref[self.output_key]
        got = vals[self.out_node]
        if not torch.is_tensor(ref) or ref.shape != got.shape or not torch.allclose(ref, got, rtol=1e-4, atol=1e-5):
            raise UnsupportedOpError("the traced graph does not reproduce the model's output (data-dependent "
                                     "control flow or an op traced with fixed values?)")

    def check(self, method: Method, vals: dict):
        key = (method.name, tuple(tuple(vals[n].shape) for n in self.graph.inputs))
        if key in self._checked:
            return
        self._check(method, vals)
        self._checked.add(key)

    def _check(self, method: Method, vals: dict):
        for n in self.graph.nodes:
            if n.op != "call" or not n.info["reached"]:
                continue
            rule = method.rule_for(n.kind, n.info["output_layer"])
            if rule is None:
                hint = ""
                if "softmax" in n.kind.lower():
                    hint = (" (a spatial softmax must be one module: policy_xai.policy.SpatialSoftmax, or a keypoint "
                            "soft-argmax with pos_x, pos_y, temperature and an optional 1x1 conv `nets`, robomimic's "
                            "layout, see policy_xai.attribution.graph.models.SpatialSoftArgmax)")
                raise UnsupportedOpError(
                    f"method {method.name!r} has no rule for op {n.kind!r} ({n.source}) at module path "
                    f"{n.path or '<top level>'!r}; supported op types: {', '.join(method.supported())}{hint}")
            if rule.elementwise:
                x = vals[[a for a, lv in zip(n.arg_nodes(), n.info["live_args"]) if lv][0]]
                if x.shape != vals[n].shape:
                    raise UnsupportedOpError(f"{n.where()}: elementwise op {n.kind!r} changes the shape "
                                             f"{tuple(x.shape)} -> {tuple(vals[n].shape)} (broadcasting)")

    def backward(self, method: Method, vals: dict, seed: torch.Tensor, capture=None, skip_input=None,
                 rule_dtype=None) -> dict:
        """seed (m, *y.shape) at the output -> R (m, *x.shape) per input node (and per node in
        `capture`: the relevance / gradient at its output). skip_input: an input whose result is not
        needed; the pass stops once the captures are done and only that input's ops remain."""
        ctx = Context(self.graph, vals, rule_dtype)
        rel = {self.out_node: seed}
        got = {}
        for n, rule, live in self._plan(method):
            R = rel.pop(n, None)
            if capture and n in capture:
                got[n] = R
                if skip_input is not None and len(got) == len(capture) and all(
                        k.op == "input" or k.info["input_deps"] <= {skip_input} for k in rel):
                    break
            if R is None:
                continue
            xs = [vals[a] for a in live]
            if n.kind == "getitem" and isinstance(xs[0], (tuple, list)):  # one element of a split
                parts = [None] * len(xs[0])
                parts[n.args[1]] = R
                outs = [parts]
            else:
                outs = rule(ctx, n, xs, vals[n], R)
            for a, r in zip(live, outs):
                if r is not None:
                    rel[a] = _acc(rel.get(a), r)
        out = {n: rel.get(n) for n in self.graph.inputs}
        out.update(got)
        return out

    def _plan(self, method: Method) -> list:
        """(node, rule, live argument nodes) of every op in reverse graph order (cached per method)."""
        plans = self.__dict__.setdefault("_plans", {})
        hit = plans.get(method.name)
        if hit is None or hit[0] is not method.rules:
            hit = plans[method.name] = (method.rules, [
                (n, method.rule_for(n.kind, n.info["output_layer"]),
                 [a for a, lv in zip(n.arg_nodes(), n.info["live_args"]) if lv])
                for n in reversed(self.graph.nodes) if n.op == "call"])
        return hit[1]

    def node_at(self, path: str) -> Node:
        """The op giving the output of the module at `path` (the last op traced from it)."""
        hit = [n for n in self.graph.nodes if n.op == "call" and n.path == path and n.info.get("live")]
        if not hit:
            paths = sorted({n.path for n in self.graph.nodes if n.op == "call" and n.path})
            raise ValueError(f"no op at module path {path!r}; paths: {', '.join(paths)}")
        return hit[-1]

    def cam_layer(self, layer) -> tuple[Node, Node, str]:
        """(activation node, camera input node) of a CAM layer: `layer` is the index of a conv among
        the convs in graph order (negative from the end) or a conv's module path; the CAM is taken
        on the conv's output after the elementwise ops that follow it alone (folded BatchNorm, ReLU)."""
        convs = [n for n in self.graph.nodes if n.kind == "conv" and n.info.get("reached")]
        if isinstance(layer, str):
            hit = [n for n in convs if n.path == layer]
            if not hit:
                raise ValueError(f"no conv at module path {layer!r}; convs: {[n.path for n in convs]}")
            node = hit[0]
        else:
            if not -len(convs) <= layer < len(convs):
                raise ValueError(f"conv layer {layer} out of range for {len(convs)} conv layers")
            node = convs[layer]
        users = self.graph.users()
        conv_path = node.path
        from .composites import ACTIVATIONS, ELEMENTWISE

        while len(users[node]) == 1 and users[node][0].kind in ACTIVATIONS + ELEMENTWISE:
            node = users[node][0]
        cams = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if n.op == "input":
                cams.add(n)
            stack.extend(a for a, lv in zip(n.arg_nodes(), n.info.get("live_args", [])) if lv)
        cams = [c for c in self.graph.inputs if c in cams]
        if len(cams) != 1:
            raise ValueError(f"CAM layer {node.path!r} depends on inputs {[c.name for c in cams]}, not on one camera")
        return node, cams[0], conv_path


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}

_PROGRAMS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _observation(observation, check_finite: bool = True):
    if isinstance(observation, Mapping):
        names = list(observation)
        tensors = [observation[k] for k in names]
        as_dict = True
    elif isinstance(observation, (tuple, list)):
        names = [f"input{i}" for i in range(len(observation))]
        tensors, as_dict = list(observation), False
    elif torch.is_tensor(observation):
        names, tensors, as_dict = ["input0"], [observation], False
    else:
        raise TypeError(f"observation must be a dict name -> tensor, a tuple of tensors or a tensor, "
                        f"got {type(observation).__name__}")
    for k, t in zip(names, tensors):
        if not torch.is_tensor(t):
            raise TypeError(f"observation {k!r} is a {type(t).__name__}, not a tensor")
        if check_finite and t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"observation {k!r} contains NaN or infinite values")
    B = {int(t.shape[0]) for t in tensors}
    if len(B) != 1:
        raise ValueError(f"observation tensors have different batch sizes {sorted(B)}")
    return names, tensors, as_dict


def compile_module(model: nn.Module, observation, output=None, _parsed=None) -> GraphProgram:
    """The traced, canonized program of `model` for observations shaped like `observation` (cached)."""
    names, _, as_dict = _parsed or _observation(observation)
    per = _PROGRAMS.get(model)
    key = (tuple(names), as_dict, output)
    prog = per.get(key) if per is not None else None
    # the whole module tree is checked when tracing; later calls check the modules whose eval
    # behaviour differs (dropout, batch norm, anything with its own `training`-dependent code)
    mods = model.named_modules() if prog is None else prog.mode_modules
    training = [name or "<model>" for name, m in mods if m.training]
    if training:
        raise ValueError(f"model has modules in training mode ({', '.join(training[:3])}...); call model.eval() "
                         "first (dropout, batch statistics)")
    if prog is None:
        prog = GraphProgram(model, names, as_dict, output)
        std = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ReLU, nn.Sequential, nn.ModuleList, nn.ModuleDict, nn.Flatten,
               nn.Identity)
        prog.mode_modules = [(n or "<model>", m) for n, m in model.named_modules() if not isinstance(m, std)]
        _PROGRAMS.setdefault(model, {})[key] = prog
    return prog


def _ratios(inputs: dict, groups) -> tuple[dict, dict]:
    mass = {k: v.abs().reshape(v.shape[0], -1).sum(1) for k, v in inputs.items()}
    total = sum(mass.values())
    safe = torch.where(total > 0, total, torch.ones_like(total))
    share = lambda v: torch.where(total > 0, v / safe, torch.full_like(v, float("nan")))  # noqa: E731
    ratios = {k: share(v) for k, v in mass.items()}
    gr = {}
    for name, spec in (groups or {}).items():
        if name not in inputs:
            raise ValueError(f"groups: no input {name!r}; inputs are {list(inputs)}")
        v = inputs[name]
        start = 0
        for g, sl in (spec.items() if isinstance(spec, Mapping) else spec):
            if isinstance(sl, int):
                sl = slice(start, start + sl)
            start = sl.stop
            gr[f"{name}/{g}"] = share(v[:, sl].abs().reshape(v.shape[0], -1).sum(1))
    return ratios, gr


@torch.no_grad()
def explain_module(model: nn.Module, observation, method: str = "dtd", alpha=None, output=None,
                   per_output: bool = False, groups=None, layer=0, precision: str = "float32",
                   baseline=None, steps: int = 8, at=(), _validated: bool = False,
                   _ratios_wanted: bool = True) -> GraphExplanation:
    """Explain the outputs (B, A) of any supported torch.nn.Module for a batch of observations.

    observation: dict name -> tensor (B, ...) passed as model(observation), or a tuple of tensors
    passed as model(*observation); output: key / index of the actions when the model returns a dict or
    a tuple; alpha: None, (A,) or (B, A) non-negative weights of the outputs; per_output: also return
    each output's relevance; groups: {input name: {group: n_features or slice}} for ratios of
    named groups within a vector input (last dimension); layer: the CAM methods' conv layer (index
    among the convs in graph order, or module path; default the first, see docs/attribution.md);
    precision: "float32" (exact rules) or "bfloat16": the rules' convolutions run in bfloat16 (faster
    on CPUs with AVX512-BF16 / AMX; relevance then conserved to ~1e-2), all else stays float32;
    baseline: path methods (ig, ig_median): {input name: reference tensor} for inputs whose reference
    is not the default (images: blurred, sigma max(H, W) / 16, or their median colour; other inputs:
    zeros, i.e. the training mean of a normalised input); steps: path points; at: module paths whose
    output's relevance (relevance methods) or gradient x output (gradient methods) to report in
    e.extras["at"][path] (and the output itself in e.extras["at_values"][path]), e.g. a spatial
    softmax's feature points. (_validated: the caller checked the observation is finite;
    _ratios_wanted=False: the caller computes its own ratios; ratios is then {} where the method has them.)
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    rule_dtype = PRECISIONS[precision]
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} for the graph engine; choose from {', '.join(METHODS)}")
    meth = METHODS[method]
    parsed = _observation(observation, check_finite=not _validated)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    tensors = [t.to(dtype) if t.is_floating_point() else t for t in parsed[1]]
    prog = compile_module(model, observation, output, parsed)
    if meth.path and prog._analysed:  # the path's own forward pass at x gives the outputs: no extra one
        if per_output and meth.occlusion:
            raise ValueError(f"per_output is not available for {method}: its occlusion refinement is not additive "
                             "over outputs (use ig for per-output maps)")
        return _explain_path(prog, meth, tensors, None, alpha, baseline or {}, int(steps), groups, rule_dtype,
                             {p: prog.node_at(p) for p in at}, per_output)
    Rin = None
    if meth.name == "gradient" and not per_output and rule_dtype == torch.float32:
        # plain gradient x input in one pass: autograd on the traced graph (the same exact transposes);
        # the first call analyses the graph in a plain forward first, so every call gives the same numbers
        if not prog._analysed:
            prog.forward(tensors)

        def seed_of(y):
            if y.dim() != 2:
                raise ValueError(f"the explained output must be (B, A), got shape {tuple(y.shape)}")
            return _alpha_tensor(alpha, *y.shape, y.dtype, y.device) * torch.sign(y)

        Rin, _, vals = _autograd_gradient(prog, tensors, seed_of, [prog.node_at(p) for p in at])
    else:
        vals = prog.forward(tensors)
    prog.check(meth, vals)
    y = vals[prog.out_node]
    if y.dim() != 2:
        raise ValueError(f"the explained output must be (B, A), got shape {tuple(y.shape)}")
    B, A = y.shape
    a = _alpha_tensor(alpha, B, A, y.dtype, y.device)
    base = a * y.abs() if meth.seed == "relevance" else a * torch.sign(y)
    per_pass = per_output or not meth.linear
    if per_pass:
        unit = base if meth.linear else torch.sign(y)  # non-linear: unit seeds, weighted by alpha after
        seed = torch.zeros(A, B, A, dtype=y.dtype, device=y.device)
        idx = torch.arange(A, device=y.device)
        seed[idx, :, idx] = unit.T
    else:
        seed = base.unsqueeze(0)
    at_nodes = {p: prog.node_at(p) for p in at}
    if meth.path:
        if per_output and meth.occlusion:
            raise ValueError(f"per_output is not available for {method}: its occlusion refinement is not additive "
                             "over outputs (use ig for per-output maps)")
        return _explain_path(prog, meth, tensors, y, a, baseline or {}, int(steps), groups, rule_dtype, at_nodes,
                             per_output)
    if meth.cam:
        return _explain_cam(prog, meth, vals, tensors, y, a, seed, layer, per_output, rule_dtype, at_nodes)
    if Rin is None:
        Rin = prog.backward(meth, vals, seed, rule_dtype=rule_dtype, capture=set(at_nodes.values()))
    inputs, per = {}, {}
    for node, x in zip(prog.graph.inputs, tensors):
        R = Rin[node]
        R = torch.zeros((seed.shape[0], *x.shape), dtype=y.dtype, device=x.device) if R is None else R
        if meth.times_input:
            R = R * x
        if per_pass and not meth.linear:
            R = R * a.T.reshape(A, B, *([1] * (x.dim() - 1)))
        inputs[node.name] = R.sum(0)
        if per_output:
            per[node.name] = R.transpose(0, 1)
    ratios, gr = _ratios(inputs, groups) if _ratios_wanted else ({}, {})
    extras = {"folded_batchnorms": prog.folded, "at": {}, "at_values": {p: vals[n] for p, n in at_nodes.items()}}
    for p, node in at_nodes.items():
        v = vals[node]
        R = Rin.get(node)
        R = torch.zeros((seed.shape[0], *v.shape), dtype=y.dtype, device=y.device) if R is None else R
        if meth.times_input:
            R = R * v
        if per_pass and not meth.linear:
            R = R * a.T.reshape(A, B, *([1] * (v.dim() - 1)))
        extras["at"][p] = R.sum(0)
    if meth.seed == "relevance":
        extras["output_relevance"] = (a * y.abs()).sum(1)
    if per_pass and not meth.linear and meth.guided:
        # the old engine's image share for gbp: sum_j alpha_j |R_j| (for compat.explain_policy)
        extras["abs_per_output"] = {n.name: (Rin[n] * x * a.T.reshape(A, B, *([1] * (x.dim() - 1)))).abs()
                                    .reshape(A, B, -1).sum((0, 2)) for n, x in zip(prog.graph.inputs, tensors)
                                    if Rin[n] is not None}
    maps = {k: v.sum(1) for k, v in inputs.items() if v.dim() == 4}
    return GraphExplanation(method, inputs, ratios, y, a, gr, per if per_output else None, extras, maps)


def _explain_cam(prog, meth, vals, tensors, y, a, seed, layer, per_output, rule_dtype=None, at_nodes=None):
    """Grad-CAM family (one pass per output): ReLU(sum_c mean_hw(dA_c) A_c) on the layer, upsampled
    (bilinear) to its camera; dA from the plain (gradcam, guided_gradcam) or guided (g1, g2) pass;
    guided_gradcam / g2gradcam multiply by the channel-summed guided gradient of the camera image.
    The other inputs get gradient x input of the pass that gives the image gradient (or of the
    plain pass for gradcam). No ratios (the CAM localises within the image only)."""
    from torch.nn import functional as F

    node, cam_in, conv_path = prog.cam_layer(layer)
    A, B = seed.shape[0], y.shape[0]
    weights_method = METHODS[meth.cam_weights]
    plain_only = not (meth.times_guided_gradient or meth.cam_weights != "gradient")
    at_nodes = at_nodes or {}
    R = prog.backward(weights_method, vals, seed, capture={node, *at_nodes.values()},
                      skip_input=cam_in if plain_only else None, rule_dtype=rule_dtype)
    if meth.times_guided_gradient or meth.cam_weights != "gradient":
        G = R if meth.cam_weights == "gbp" else prog.backward(METHODS["gbp"], vals, seed, rule_dtype=rule_dtype,
                                                              capture=set(at_nodes.values()))
    else:
        G = R
    act = vals[node]
    g = R[node] if R[node] is not None else torch.zeros((A, *act.shape), dtype=y.dtype, device=y.device)
    w = g.mean(dim=tuple(range(3, g.dim())), keepdim=True)
    cam = torch.relu((w * act).sum(2))  # (A, B, h, w)
    H, W = tensors[prog.graph.inputs.index(cam_in)].shape[2:]
    cam = F.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False)
    if meth.times_guided_gradient:
        cam = cam * G[cam_in].sum(2)
    wj = a.T.reshape(A, B)
    cam = cam * wj.view(A, B, 1, 1)
    inputs, per = {}, {}
    for n, x in zip(prog.graph.inputs, tensors):
        if n is cam_in:
            continue
        r = G[n]
        r = torch.zeros((A, *x.shape), dtype=y.dtype, device=x.device) if r is None else r * x
        r = r * wj.view(A, B, *([1] * (x.dim() - 1)))
        inputs[n.name] = r.sum(0)
        per[n.name] = r.transpose(0, 1)
    maps = {cam_in.name: cam.sum(0)}
    per[cam_in.name] = cam.transpose(0, 1)
    extras = {"layer": conv_path, "activation": node.path, "camera": cam_in.name, "folded_batchnorms": prog.folded,
              "at": {}, "at_values": {p: vals[n] for p, n in at_nodes.items()}}
    for p, an in at_nodes.items():
        v = vals[an]
        g = G.get(an)
        extras["at"][p] = (torch.zeros_like(v) if g is None else
                           (g * v * wj.view(A, B, *([1] * (v.dim() - 1)))).sum(0))
    return GraphExplanation(meth.name, inputs, None, y, a, {}, per if per_output else None, extras, maps)


def _autograd_gradient(prog, inputs: list, seed, capture=()):
    """The gradient method's one pass by autograd on the traced graph: seed (B, A) at the output, or
    a function of the outputs giving it. Returns (node -> (1, *shape) gradient per input node and per
    node in `capture`, as prog.backward gives; the outputs; the forward values). Every rule of the
    gradient method is the op's exact transpose, so the numbers are the same."""
    leaves = [t.detach().requires_grad_(True) if t.is_floating_point() else t for t in inputs]
    vals = prog.graph.run_recorded(leaves)
    prog.check(METHODS["gradient"], vals)
    targets = [(n, t) for n, t in zip(prog.graph.inputs, leaves) if t.requires_grad]
    targets += [(n, vals[n]) for n in capture if vals[n].requires_grad]
    out = vals[prog.out_node]
    if callable(seed):
        seed = seed(out.detach())
    got = torch.autograd.grad(out, [t for _, t in targets], seed, allow_unused=True) if out.requires_grad else \
        [None] * len(targets)
    G = {n: None for n in prog.graph.inputs}
    G.update({n: None for n in capture})
    for (n, _), g in zip(targets, got):
        G[n] = None if g is None else g.unsqueeze(0)
    return G, out.detach(), {n: (v.detach() if torch.is_tensor(v) else v) for n, v in vals.items()}


def _explain_path(prog, meth, tensors, y, a, baseline, steps, groups, rule_dtype=None, at_nodes=None,
                  per_output=False):
    """Integrated gradients from a reference observation (as path.py for VisuomotorPolicy): one
    forward pass at x and x0, one over the steps * B path points, one gradient pass. The relevance
    adds up to sum_j alpha_j |y_j(x) - y_j(x0)| as the steps grow (completeness)."""
    from ..path import path_sigma, reference_image

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    names = [n.name for n in prog.graph.inputs]
    unknown = sorted(set(baseline) - set(names))
    if unknown:
        raise ValueError(f"baseline for unknown inputs {unknown}; inputs are {names}")
    B = tensors[0].shape[0]
    refs = []
    for name, x in zip(names, tensors):
        if name in baseline:
            r = torch.as_tensor(baseline[name], dtype=x.dtype, device=x.device)
            refs.append(r.expand_as(x).contiguous())
        elif x.dim() == 4:
            refs.append(reference_image(x, meth.path, path_sigma(*x.shape[2:]) if meth.path == "blur" else None))
        else:
            refs.append(torch.zeros_like(x))
    at_nodes = at_nodes or {}
    end_vals = prog.forward([torch.cat([x, r]) for x, r in zip(tensors, refs)])
    ends = end_vals[prog.out_node]
    at_delta = {p: end_vals[n][:B] - end_vals[n][B:] for p, n in at_nodes.items()}
    at_values = {p: end_vals[n][:B] for p, n in at_nodes.items()}
    tau, tau0 = ends[:B], ends[B:]
    if y is None:  # `a` is the alpha argument: the outputs come from this pass
        if tau.dim() != 2:
            raise ValueError(f"the explained output must be (B, A), got shape {tuple(tau.shape)}")
        y, a = tau, _alpha_tensor(a, B, tau.shape[1], tau.dtype, tau.device)
    d = tau - tau0
    tol = 1e-5 * (tau.abs() + tau0.abs()) + 1e-9  # an unchanged output has nothing to attribute
    s = torch.where(d.abs() > tol, torch.sign(d), torch.zeros_like(d))
    t = (torch.arange(steps, dtype=y.dtype, device=y.device) + 0.5) / steps
    path = [(r.unsqueeze(0) + t.view(-1, *([1] * x.dim())) * (x - r).unsqueeze(0)).reshape(steps * B, *x.shape[1:])
            for x, r in zip(tensors, refs)]
    A = y.shape[1]
    if per_output:  # one path integral per output (replicas), adding up to the amortised one
        seed = torch.zeros(A, steps * B, A, dtype=y.dtype, device=y.device)
        idx = torch.arange(A, device=y.device)
        seed[idx, :, idx] = (a * s).repeat(steps, 1).T
    else:
        seed = (a * s).repeat(steps, 1).unsqueeze(0)
    if per_output or rule_dtype not in (None, torch.float32):
        vals = prog.forward(path)
        prog.check(METHODS["gradient"], vals)
        G = prog.backward(METHODS["gradient"], vals, seed, rule_dtype=rule_dtype, capture=set(at_nodes.values()))
    else:
        G = _autograd_gradient(prog, path, seed[0], at_nodes.values())[0]
    inputs, per = {}, {}
    for n, x, r in zip(prog.graph.inputs, tensors, refs):
        g = G[n]
        m = seed.shape[0]
        g = torch.zeros((m, *x.shape), dtype=x.dtype, device=x.device) if g is None else \
            g.view(m, steps, *x.shape).mean(1)
        R = (x - r) * g  # (m, B, ...)
        inputs[n.name] = R.sum(0)
        per[n.name] = R.transpose(0, 1)
    ratios, gr = _ratios(inputs, groups)
    maps = {k: v.sum(1) for k, v in inputs.items() if v.dim() == 4}
    if meth.occlusion:
        from ..path import occlusion_refine

        for cam in list(maps):
            ci = names.index(cam)

            def occluded_outputs(images, owners, _ci=ci):
                own = owners[:, 0].long()
                obs = [images if i == _ci else x[own] for i, x in enumerate(tensors)]
                return prog.forward(obs)[prog.out_node]

            # occlusion_refine calls policy(images, config[owners]): the "config" here is the owner index
            owner_ids = torch.arange(B, dtype=y.dtype, device=y.device).unsqueeze(1)
            maps[cam] = occlusion_refine(occluded_outputs, tensors[ci], owner_ids, a, maps[cam], tau)
    extras = {"reference_torques": tau0, "output_relevance": (a * d.abs()).sum(1), "reference": meth.path,
              "references": dict(zip(names, refs)), "folded_batchnorms": prog.folded, "at": {},
              "at_values": at_values}
    for p, n in at_nodes.items():  # the straight-line approximation of the node's own path (not conserved)
        g = G.get(n)
        dv = at_delta[p]
        extras["at"][p] = (torch.zeros_like(dv) if g is None else
                           (dv * g.view(g.shape[0], steps, *dv.shape).mean(1)).sum(0))
    return GraphExplanation(meth.name, inputs, ratios, tau, a, gr, per if per_output else None, extras, maps)
