"""Attribution methods for VisuomotorPolicy (see engine.py for the rules and their formulas).

    from policy_xai.attribution import explain, METHODS
    exp = explain(policy, image, config, method="dtd", alpha=None)

image: (B, C, H, W) float tensor in [0, 1] (policy.prepare_image), config: (B, D) raw configuration
(policy.prepare_config); alpha: None (= 1 for every joint), a (J,) or (B, J) array of importance
factors. Returns an Explanation (explanation.py).
"""
from .explanation import IMAGE, Explanation  # noqa: F401
from .engine import CAM_METHODS, METHODS, explain  # noqa: F401
