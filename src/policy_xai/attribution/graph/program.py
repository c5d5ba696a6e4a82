"""The traced and canonized program of a model (GraphProgram, cached per model and observation
structure by compile_module): its cached forward, the checks of a method's rules against the graph,
the plan of a method (op, rule, live arguments, in reverse order) and the explicit backward pass over
it; the gradient method's one pass by autograd on the traced graph (_autograd_gradient)."""
from __future__ import annotations

import math
import weakref
from typing import Mapping

import torch
from torch import nn

from .canonizers import CANONIZERS
from .composites import METHODS, OUTPUT_PASS, Method
from .context import Context
from .trace import Node, UnsupportedOpError, analyse, trace


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

    def param_dtype(self):
        """dtype of the model's first floating-point parameter (float32 without one); the parameter is
        looked up once and its dtype read each call (model.double() changes it in place)."""
        p = self.__dict__.get("_dtype_param", False)
        if p is False or (p is not None and not p.is_floating_point()):
            p = self._dtype_param = next((q for q in self.model.parameters() if q.is_floating_point()), None)
        return torch.float32 if p is None else p.dtype

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

    def forward(self, tensors: list, special=None) -> dict:
        """The cached forward (node -> value); special: node -> function in place of its own (same value)."""
        vals = self.graph.run(tensors, special if self._analysed else None)
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


_PROGRAMS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def all_finite(t: torch.Tensor) -> bool:
    """No NaN or infinite element: the largest |x| is NaN or inf exactly when there is one (amax
    propagates NaN). Two kernels and one read-back, where torch.isfinite(t).all() takes six."""
    return t.numel() == 0 or not t.is_floating_point() or math.isfinite(float(t.abs().amax()))


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
        if check_finite and not all_finite(t):
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
