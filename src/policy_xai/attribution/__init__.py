"""Attribution methods: our VisuomotorPolicy (engine.py, the rules and their formulas) and any
torch.nn.Module (graph/, docs/graph_engine.md), behind one entry point.

    from policy_xai.attribution import explain, METHODS
    exp = explain(policy, image, config, method="dtd", alpha=None)          # VisuomotorPolicy
    e = explain(model, {"agentview_image": img, "robot0_eef_pos": p}, method="dtd")   # any module

image: (B, C, H, W) float tensor in [0, 1] (policy.prepare_image), config: (B, D) raw configuration
(policy.prepare_config) -- or, for a VisuomotorPolicy, the numpy forms those two accept ((H, W, C)
uint8 RGB, a (D,) vector or a dict of groups), converted by them; alpha: None (= 1 for every
joint / action), a (J,) or (B, J) array of importance factors. The first form returns an
Explanation (explanation.py), the second a graph.GraphExplanation (`inputs`, `ratios`, `maps`,
...). See `explain` for both forms.
"""
from .explanation import IMAGE, Explanation  # noqa: F401
from . import engine as _engine
from .engine import CAM_METHODS, METHODS  # noqa: F401
from ..policy import VisuomotorPolicy as _VisuomotorPolicy

import numpy as _np
import torch as _torch


def parse_methods(text: str, choices=None) -> list[str]:
    """Comma-separated method names -> list, each one of `choices` (default: METHODS); ValueError
    "unknown method(s) [...]; choose from ..." for an unknown or an empty list (the one parser of
    every command's --methods)."""
    choices = METHODS if choices is None else tuple(choices)
    methods = [m.strip() for m in str(text or "").split(",") if m.strip()]
    bad = [m for m in methods if m not in choices]
    if bad or not methods:
        raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(choices)}")
    return methods


def explain(model, observation, *args, **kwargs):
    """Explain a policy's outputs for a batch of observations. Two call forms:

    1. Our VisuomotorPolicy (unchanged; engine.explain, documented below):

           explain(policy, image, config, method="dtd", alpha=None, per_joint=False, layer=0,
                   precision="float32", engine="graph") -> Explanation

       Taken whenever `model` is a policy_xai.policy.VisuomotorPolicy and `observation` is a tensor
       (the image); every argument goes to engine.explain as given. The policy is traced and
       explained by the graph engine like any other model (graph.compat.explain_policy gives the
       Explanation); engine="reference" runs the hand-written passes over the plain conv stack
       that the graph engine is checked against. Methods: METHODS (including the amortised
       occlusion_net / occlusion_net_refined, which need the policy's trained explainer attached).

    2. Any torch.nn.Module (the graph engine, graph.explain_module; rules in docs/graph_engine.md):

           explain(model, {"name": tensor (B, ...), ...}, method="dtd", alpha=None)  # model(obs)
           explain(model, (x0, x1), method="dtd")      # model(x0, x1); inputs "input0", "input1"
           explain(model, x0, x1, method="dtd")        # the same, positional tensors

       -> graph.GraphExplanation: `inputs[name]` is the relevance of each observation (same shape),
       `ratios[name]` its share, `maps[camera]` the channel-summed map of each image input,
       `outputs`, `alpha`. Keyword arguments: method, alpha ((A,) or (B, A)), output (key / index of
       the actions in a dict / tuple output), per_output (per_joint is accepted as its alias),
       groups, layer, precision, baseline, steps, at (see graph.explain_module). Methods: dtd, rap,
       gradient, gbp, gradcam, guided_gradcam, g1gradcam, g2gradcam, ig, ig_median, ig_occlusion
       (graph.METHODS); anything else is a ValueError naming them. occlusion_net methods exist for
       VisuomotorPolicy only (form 1). A model with an op the method has no rule for raises
       graph.UnsupportedOpError naming the op, its module path and the supported op types.
    """
    if isinstance(model, _VisuomotorPolicy) and isinstance(observation, _np.ndarray):
        # numpy as the robot gives it: (H, W, C) / (B, H, W, C) uint8 RGB and a (D,) / (B, D) vector
        if not args:
            raise TypeError("explain(policy, image, config, ...): the configuration (third argument) is missing")
        config = args[0] if _torch.is_tensor(args[0]) else model.prepare_config(args[0])
        observation, args = model.prepare_image(observation), (config, *args[1:])
    if isinstance(model, _VisuomotorPolicy) and _torch.is_tensor(observation):
        return _engine.explain(model, observation, *args, **kwargs)
    return _explain_graph(model, observation, args, kwargs)


def _explain_graph(model, observation, args, kwargs):
    import inspect
    from collections.abc import Mapping

    from .graph import METHODS as GRAPH_METHODS
    from .graph import explain_module

    if not isinstance(model, _torch.nn.Module):
        raise TypeError(f"explain: model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, _VisuomotorPolicy) and isinstance(observation, Mapping):
        raise TypeError("a VisuomotorPolicy takes (image, config), not a dict: call explain(policy, image, config, "
                        "...) or explain(policy, (image, config), ...) for the graph engine")
    args = list(args)
    if _torch.is_tensor(observation):  # positional tensors: explain(model, x0, x1, ..., method=...)
        tensors = [observation]
        while args and _torch.is_tensor(args[0]):
            tensors.append(args.pop(0))
        observation = tuple(tensors)
    kwargs = dict(kwargs)
    if "per_joint" in kwargs:
        if "per_output" in kwargs:
            raise TypeError("explain: pass per_output or its alias per_joint, not both")
        kwargs["per_output"] = kwargs.pop("per_joint")
    try:
        bound = inspect.signature(explain_module).bind(model, observation, *args, **kwargs)
    except TypeError as e:
        raise TypeError(f"explain (graph engine form): {e}") from None
    bound.apply_defaults()
    method = bound.arguments["method"]
    supported = ", ".join(GRAPH_METHODS)
    if method in _engine.EXPLAINER_METHODS:
        if isinstance(model, _VisuomotorPolicy):
            raise ValueError(f"method {method!r} runs on the VisuomotorPolicy engine only: call "
                             f"explain(policy, image, config, method={method!r}) with the policy's trained "
                             f"explainer attached. Methods for a (tuple / dict) observation: {supported}")
        raise ValueError(f"method {method!r} needs an amortised explainer trained for a "
                         f"policy_xai.policy.VisuomotorPolicy; {type(model).__name__} is not one and the graph "
                         f"engine has no amortised form. Methods for any module: {supported}")
    if method not in GRAPH_METHODS:
        raise ValueError(f"unknown attribution method {method!r} for {type(model).__name__} (graph engine); "
                         f"choose from {supported}")
    return explain_module(*bound.args, **bound.kwargs)


# engine.explain's own documentation (form 1), reachable from help(explain)
if explain.__doc__ is not None:  # python -OO strips docstrings
    explain.__doc__ += "\n    engine.explain (form 1):\n\n    " + (_engine.explain.__doc__ or "").strip() + "\n"
