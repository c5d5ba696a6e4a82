"""The path methods on the graph engine (ig, ig_median, ig_occlusion): integrated gradients from a
reference observation."""
from __future__ import annotations

import torch

from .composites import METHODS
from .program import _autograd_gradient
from .results import GraphExplanation, _alpha_tensor, _ratios


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
