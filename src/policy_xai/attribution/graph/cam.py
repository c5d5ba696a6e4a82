"""The Grad-CAM family on the graph engine (gradcam, guided_gradcam, g1gradcam, g2gradcam)."""
from __future__ import annotations

import torch

from .composites import METHODS
from .results import GraphExplanation


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
