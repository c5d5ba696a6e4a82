"""A general rule engine over a traced graph: explain any supported torch.nn.Module policy.

    from policy_xai.attribution.graph import explain_module
    e = explain_module(model, {"image": img, "state": s}, method="dtd")

trace.py (torch.fx -> typed ops), canonizers.py (BatchNorm folding), rules.py (the rules),
composites.py (methods as op type -> rule tables), engine.py (explain_module) over program.py
(cached forward, plans, backward passes), context.py (what a rule may ask), results.py
(GraphExplanation, alpha, ratios), cam.py and path_methods.py (the CAM and path families),
models.py (reference architectures). Rules and their conservation properties: docs/graph_engine.md.
"""
from .composites import METHODS, Method  # noqa: F401
from .engine import GraphExplanation, GraphProgram, compile_module, explain_module  # noqa: F401
from .trace import UnsupportedOpError  # noqa: F401
