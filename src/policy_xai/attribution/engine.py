"""Attribution rules for VisuomotorPolicy, written as explicit backward passes over one cached
forward pass.

Layers of the network and the rule each method applies there (see README "Attribution rules"):

    image -> conv_1..conv_L (+ReLU) -> spatial softmax -> points (x, y) --+
                                       configuration (normalised) --------+-> fc_1..fc_M (+ReLU) -> torques

Notation per layer: inputs x_i, weights w_ij, contributions z_ij = x_i w_ij, upper relevance R_j,
(.)^+ = max(., 0), (.)^- = min(., 0). Every method starts at the torques with
R_j = alpha_j |tau_j| (the sign of a negative torque is handled by the output rule).

dtd  (Deep Taylor z+, Kim & Choi Eq. 1 and 2)
    output layer:  R_i = sum_j (s_j z_ij)^+ / sum_i' (s_j z_i'j)^+ * R_j,  s_j = sign(sum_i z_ij)
                   (Eq. 1: weights of a negative torque are flipped)
    other layers:  R_i = sum_j (z_ij)^+ / sum_i' (z_i'j)^+ * R_j
                   (Eq. 2: (x w)^+ = x^+ w^+ + x^- w^-, i.e. a negative input and its weights are
                   flipped; for non-negative inputs this is the plain z+ rule)
rap  (Relative Attributing Propagation, Nam et al. 2020)
    output layer:  R_i = sum_j |z_ij| / sum_i' |z_i'j| * R_j      (absolute-influence normalisation;
                   the bias share of the original, b_j z_ij / sum_i z_ij, cancels in this ratio)
    other layers:  P_ij = (z_ij)^+,  N_ij = -(z_ij)^-  (relevant / irrelevant contributions, with the
                   Eq. 2 sign flip for negative inputs)
                   C_i = sum_j R_j * ( P_ij / sum_i' P_i'j + N_ij / sum_i' (P_i'j + N_i'j) )
                   R_i = C_i - m_i * (sum_i' C_i' - sum_j R_j) / sum_i' m_i'   (uniform shifting
                   restores conservation; m_i = 1 for the units taking part: x_i != 0 with
                   some non-zero outgoing weight)
    Both rules are linear in the upper relevance, so all torques are explained in one pass.
gbp  Guided Backprop x input: gradient of |tau_j| where ReLUs pass only positive gradients of
     active units; multiplied by the input (image pixels, feature points, normalised config).
gradient  gradient x input of sum_j alpha_j |tau_j| (one backward pass).
gradcam / g1gradcam  Grad-CAM on a chosen conv layer (default: the first): ReLU(sum_c mean_hw(dA) *
     A_c), upsampled to the image; g1gradcam takes dA from the guided (GBP) backward pass. On the
     last conv layer plain Grad-CAM vanishes: the spatial softmax's gradient sums to zero per map.
guided_gradcam / g2gradcam  (g1)gradcam x the channel-summed guided gradient of the image.
ig / ig_median  integrated gradients (path.py) from a reference observation: the image blurred
     (sigma = max(H, W) / 16) or painted its median colour, the configuration at its training mean;
     8 path points. Relevance adds up to sum_j alpha_j |tau_j(x) - tau_j(x0)| (completeness).
ig_occlusion  |ig| refined by occluding the windows where it is largest (8 of 4/64 and 4 of 6/64
     of the image's side) with the median colour: each window's measured torque change is spread over
     its pixels in proportion to |ig| (path.occlusion_refine). Non-negative; the configuration
     relevance and the ratios are ig's.
A policy with a ResNet-family trunk (spec `trunk:`) is explained by the graph engine
(graph/compat.py) for every method above except the occlusion_net ones, which run here (they only
use conv_features, softmax and head). The same rules; BatchNorm is folded into the conv before it.
occlusion_net / occlusion_net_refined  the policy's dense occlusion map predicted by a small network
     trained offline for these weights (amortised/; `policy-xai explainer`), times the image's share
     of the torque change along the reference path (both leg orders averaged); the configuration by
     integrated gradients with the image held; ratios from per-torque magnitudes. The refined form
     occludes the map's top windows as ig_occlusion does. The live default (DEFAULT_METHOD).

Spatial softmax (all relevance methods): a feature point's relevance R_k = R_xk + R_yk is spread
over the pixels of its feature map in proportion to the softmax attention p_kq (sum_q p_kq = 1), so
it is conserved: R_kq = p_kq R_k. Gradient methods take the exact softmax Jacobian instead.
"""
from __future__ import annotations

import torch

from ..policy import VisuomotorPolicy
from .explanation import IMAGE, Explanation
# the hand-written reference passes (engine="reference"); their names stay importable from here
from .reference import (_CHUNK_ELEMENTS, _CL, _RULE_DTYPE, EPS, Cache, _alpha_tensor, _bmul,  # noqa: F401
                        _brep, _chunk_image_maps, _conv_fwd, _conv_rap, _conv_T, _conv_weight, _conv_zplus,
                        _div_nonneg, _explain_gradient, _explain_path, _explain_per_joint, _explain_relevance,
                        _grad_backward, _joint_chunks, _linear_rap, _linear_rap_out, _linear_zplus, _neg,
                        _onehot_out, _pos, _propagate_relevance, _ratios, _sdiv, _shift, _softmax_grad,
                        _softmax_relevance, explain_reference, forward_cache)

RELEVANCE_METHODS = ("dtd", "rap")
GRADIENT_METHODS = ("gbp", "gradient")
CAM_METHODS = ("gradcam", "guided_gradcam", "g1gradcam", "g2gradcam")
#: path methods (path.py): method -> reference image; relevance relative to a reference observation
PATH_METHODS = {"ig": "blur", "ig_median": "median", "ig_occlusion": "blur"}
#: methods that need an amortised explainer trained for the policy (amortised/)
EXPLAINER_METHODS = ("occlusion_net", "occlusion_net_refined")
METHODS = RELEVANCE_METHODS + GRADIENT_METHODS + CAM_METHODS + tuple(PATH_METHODS) + EXPLAINER_METHODS
#: the method the live pipeline and the commands use unless told otherwise (chosen by
#: `policy-xai faithfulness`, docs/faithfulness.md)
DEFAULT_METHOD = "occlusion_net"
#: explain(engine=...): the graph engine (default) or the hand-written passes of reference/
ENGINES = ("graph", "reference")
#: what the live pipeline and analyze use instead of an occlusion_net method for a policy without an
#: explainer file (the best-measured method that needs none)
FALLBACK_METHOD = "ig_occlusion"
#: methods whose amortised map is not the alpha-weighted sum of per-joint maps (no per_joint)
NON_ADDITIVE_METHODS = ("ig_occlusion",) + EXPLAINER_METHODS

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def check_observation(spec, image: torch.Tensor, config: torch.Tensor) -> None:
    """ValueError unless image is (B, C, H, W) and config (B, D) of the spec, both finite."""
    if image.dim() != 4 or tuple(image.shape[1:]) != (spec.image_channels, spec.image_height, spec.image_width):
        raise ValueError(f"image batch has shape {tuple(image.shape)}, policy expects (B, {spec.image_channels}, "
                         f"{spec.image_height}, {spec.image_width})")
    if config.dim() != 2 or config.shape[1] != spec.config_dim or config.shape[0] != image.shape[0]:
        raise ValueError(f"config batch has shape {tuple(config.shape)}, "
                         f"expected ({image.shape[0]}, {spec.config_dim})")
    from .graph.program import all_finite

    if not (all_finite(image) and all_finite(config)):
        raise ValueError("observation contains NaN or infinite values")


def usable_method(policy, method: str) -> tuple[str, str]:
    """(method, "") when `method` can explain `policy`; (FALLBACK_METHOD, why) for an amortised
    method and a policy without a fitting explainer."""
    if method not in EXPLAINER_METHODS:
        return method, ""
    from . import amortised

    try:
        amortised.explainer_of(policy)
    except amortised.ExplainerLoadError as e:
        return FALLBACK_METHOD, str(e)
    return method, ""


@torch.no_grad()
def explain(policy: VisuomotorPolicy, image: torch.Tensor, config: torch.Tensor, method: str = "dtd",
            alpha=None, per_joint: bool = False, layer: int = 0, precision: str = "float32",
            engine: str = "graph") -> Explanation:
    """Explain the torques of `policy` for a batch of observations (see module docstring).

    image: (B, C, H, W) float in [0, 1]; config: (B, D) raw configuration; alpha: None, (J,) or
    (B, J) importance factors; per_joint: also return the per-torque explanations; layer: the conv
    layer (index, negative from the end) for the Grad-CAM family. Default 0, the first conv layer:
    on the LAST conv layer Grad-CAM is identically zero for these networks, because the gradient
    of a spatial softmax sums to zero over each feature map, and so do Grad-CAM's channel weights.
    precision: "float32" (exact rules; the default) or "bfloat16": the rules' convolutions run in
    bfloat16 (several times faster on CPUs with AVX512-BF16/AMX; relevance then conserved to ~1e-2),
    the forward pass and everything else stay float32.
    engine: "graph" (the default): the policy is traced as one model among others and explained by
    the graph engine (policy_xai.attribution.graph, docs/graph_engine.md); "reference": the
    hand-written passes over the plain conv stack (reference/), kept as the independent reference
    the graph engine is checked against (the same numbers to 1e-6, test/test_graph_compat.py). The
    amortised methods (occlusion_net...) run their own explainer network either way.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if method in METHODS and method not in EXPLAINER_METHODS and (engine == "graph" or policy.spec.trunk is not None):
        if engine == "reference":
            raise ValueError("engine='reference' covers the plain conv stack only; a ResNet-family trunk "
                             "(spec `trunk:`) is explained by the graph engine")
        from .graph.compat import explain_policy

        return explain_policy(policy, image, config, method, alpha, per_joint, layer, precision)
    token = _RULE_DTYPE.set(PRECISIONS[precision])
    try:
        return _explain(policy, image, config, method, alpha, per_joint, layer)
    finally:
        _RULE_DTYPE.reset(token)


def _explain(policy, image, config, method, alpha, per_joint, layer) -> Explanation:
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}")
    spec = policy.spec
    check_observation(spec, image, config)
    image, config = image.float(), config.float()
    if method in EXPLAINER_METHODS:  # computes its own forward passes (the live default: no extra one)
        a = _alpha_tensor(alpha, image.shape[0], spec.n_joints, torch.float32, image.device)
        return _explain_amortised(policy, image, config, method, a, per_joint, spec)
    return explain_reference(policy, image, config, method, alpha, per_joint, layer)


def _explain_amortised(policy, image, config, method, a, per_joint, spec) -> Explanation:
    from . import amortised as am
    from .path import occlusion_refine

    if per_joint:
        raise ValueError(f"per_joint is not available for {method}: its explainer predicts the map of the "
                         "alpha-weighted torques (use ig for per-joint maps)")
    ex = am.explainer_of(policy)
    r = am.amortised_explanation(policy, ex, image, config, a, steps=am.CONFIG_STEPS)
    img_map = r.image
    if method == "occlusion_net_refined":
        img_map = occlusion_refine(policy, image, config, a, r.image, r.torques)
    # ratios from per-torque magnitudes: sum_j |I_j| for the image, sum_j |sum_{i in G} R_i^(j)| per
    # group (amortised.amortised_explanation)
    parts = {IMAGE: r.image_joint.abs().sum(1)}
    for g, sl in spec.group_slices().items():
        parts[g] = r.config_joint[:, :, sl].sum(2).abs().sum(1)
    total = sum(parts.values())
    safe = torch.where(total > 0, total, torch.ones_like(total))
    ratios = {k: torch.where(total > 0, v / safe, torch.full_like(v, float("nan"))) for k, v in parts.items()}
    extras = {"reference_torques": r.reference_torques,
              "output_relevance": (a * (r.torques - r.reference_torques).abs()).sum(1),
              "reference": "blur", "image_total": r.image_total, "share": r.share}
    fp = r.feature_points.view(image.shape[0], -1, 2)
    return Explanation(method, img_map, r.config, r.points, r.torques, a, ratios, spec.group_names, fp, None, None,
                       extras)
