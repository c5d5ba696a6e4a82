"""The hand-written reference passes over VisuomotorPolicy's plain conv stack (image -> conv_1..conv_L
(+ReLU) -> spatial softmax -> points, with the normalised configuration -> fc_1..fc_M (+ReLU) -> torques),
used by `explain(..., engine="reference")` (attribution/engine.py, whose docstring gives the rules'
formulas): one cached forward pass (forward_cache), then explicit backward passes, for a batch and all
joints at once. The graph engine (graph/, the default) is checked against these: the same numbers to
1e-6 (test/test_graph_compat.py). The amortised methods (occlusion_net...) are not here
(attribution/engine.py, amortised/).

Layout: ops.py (shared tensor helpers, the rules' dtype and conv weights), passes.py (the forward
cache, the relevance and gradient backward passes), methods.py (explain_reference: the per-method
assembly); this package re-exports every name the module had.
"""
from .methods import (_CHUNK_ELEMENTS, _alpha_tensor, _chunk_image_maps, _explain_gradient,  # noqa: F401
                      _explain_path, _explain_per_joint, _explain_relevance, _joint_chunks, _onehot_out, _ratios,
                      explain_reference)
from .ops import (_CL, _RULE_DTYPE, EPS, _bmul, _brep, _conv_fwd, _conv_T, _conv_weight, _neg, _pos,  # noqa: F401
                  _sdiv)
from .passes import (Cache, _conv_rap, _conv_zplus, _div_nonneg, _grad_backward, _linear_rap,  # noqa: F401
                     _linear_rap_out, _linear_zplus, _propagate_relevance, _shift, _softmax_grad, _softmax_relevance,
                     forward_cache)
