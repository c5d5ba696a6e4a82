"""A general rule engine over a traced graph: explain any supported torch.nn.Module policy.

    from policy_xai.attribution.graph import explain_module
    e = explain_module(model, {"image": img, "state": s}, method="dtd")

trace.py (torch.fx -> typed ops), canonizers.py (BatchNorm folding), rules.py (the rules),
composites.py (methods as op type -> rule tables), engine.py (cached forward, backward passes),
models.py (reference architectures). Rules and their conservation properties: docs/graph_engine.md.
"""
from .composites import METHODS, Method  # noqa: F401
from .engine import GraphExplanation, GraphProgram, compile_module, explain_module  # noqa: F401
from .trace import UnsupportedOpError  # noqa: F401
