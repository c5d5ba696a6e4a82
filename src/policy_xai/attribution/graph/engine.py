"""The graph engine: trace once, canonize, one cached forward, explicit backward passes with the
method's rules (composites.py). `explain_module` is the entry point.

    from policy_xai.attribution.graph import explain_module
    e = explain_module(model, {"image": img, "state": s}, method="dtd", alpha=None)
    e.inputs["image"]   # relevance, same shape as the input
    e.ratios["state"]   # share of the total absolute relevance, (B,)

Layout: results.py (GraphExplanation, alpha, ratios), context.py (what the rules may ask),
program.py (GraphProgram: cached forward, plans, backward passes; compile_module's cache),
cam.py (the Grad-CAM family), path_methods.py (ig, ig_median, ig_occlusion); this module keeps
explain_module and re-exports the names that lived here.
"""
from __future__ import annotations

import torch
from torch import nn

from .cam import _explain_cam
from .composites import METHODS
from .context import Context  # noqa: F401
from .fused import zplus_forwards
from .path_methods import _explain_path
from .program import _PROGRAMS, GraphProgram, _acc, _autograd_gradient, _observation, compile_module  # noqa: F401
from .results import GraphExplanation, _alpha_tensor, _ratios
from .trace import UnsupportedOpError  # noqa: F401

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _sum0(R):
    """R.sum(0): the one replica itself when there is one (the same values, no kernel; a view of R,
    which the caller owns)."""
    return R[0] if R.shape[0] == 1 else R.sum(0)


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
    prog = compile_module(model, observation, output, parsed)
    dtype = prog.param_dtype()
    tensors = [t if not t.is_floating_point() or t.dtype == dtype else t.to(dtype) for t in parsed[1]]
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
        if not prog._analysed:  # analyse first: every call then runs the same (fused) forward pass
            prog.forward(tensors)
        fused = zplus_forwards(prog, meth) if rule_dtype == torch.float32 and not meth.path and not meth.cam else None
        vals = prog.forward(tensors, fused)
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
        inputs[node.name] = R.sum(0) if per_output else _sum0(R)  # per_output: not a view of per's tensor
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
        extras["output_relevance"] = (base if meth.seed == "relevance" else a * y.abs()).sum(1)
    if per_pass and not meth.linear and meth.guided:
        # the old engine's image share for gbp: sum_j alpha_j |R_j| (for compat.explain_policy)
        extras["abs_per_output"] = {n.name: (Rin[n] * x * a.T.reshape(A, B, *([1] * (x.dim() - 1)))).abs()
                                    .reshape(A, B, -1).sum((0, 2)) for n, x in zip(prog.graph.inputs, tensors)
                                    if Rin[n] is not None}
    maps = {k: v.sum(1) for k, v in inputs.items() if v.dim() == 4}
    return GraphExplanation(method, inputs, ratios, y, a, gr, per if per_output else None, extras, maps)
