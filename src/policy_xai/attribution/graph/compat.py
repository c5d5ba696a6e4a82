"""VisuomotorPolicy through the graph engine, with the existing `explain`'s signature and result.

    from policy_xai.attribution.graph.compat import explain_policy
    e = explain_policy(policy, image, config, method="dtd", alpha=alpha)   # an Explanation

The policy is traced as one model among others (`PolicyModule`: {"image", "config"} -> torques, the
configuration normalised outside so that relevance and gradient x input are on the network's
normalised inputs, as in the existing engine); the result is the same `Explanation` as
`policy_xai.attribution.explain` gives, with the same numbers (test/test_graph_compat.py). This is
the bridge for making the graph engine the only engine (issue 11, part 2); `explain` already takes
it for a policy with a ResNet-family trunk (spec `trunk:`).
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from ..explanation import IMAGE, Explanation
from .engine import explain_module

#: the methods of the existing engine the graph engine has (all of them)
METHODS = ("dtd", "rap", "gbp", "gradient", "gradcam", "guided_gradcam", "g1gradcam", "g2gradcam", "ig",
           "ig_median", "ig_occlusion")


class PolicyModule(nn.Module):
    """{"image": (B, C, H, W), "config": (B, D) normalised} -> torques (B, J)."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, obs):
        p = self.policy
        return p.head(p.softmax(p.conv_features(obs["image"])), obs["config"])


_MODULES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_GROUPS: dict = {}


def _group_matrix(spec, dtype, device) -> tuple[tuple, torch.Tensor]:
    """(group names, (D, G) 0/1 matrix: configuration feature d belongs to group g), cached per layout."""
    key = (tuple(spec.config_groups), dtype, str(device))
    hit = _GROUPS.get(key)
    if hit is None:
        sl = spec.group_slices()
        m = torch.zeros(spec.config_dim, len(sl), dtype=dtype, device=device)
        for j, s in enumerate(sl.values()):
            m[s, j] = 1
        hit = _GROUPS[key] = (tuple(sl), m)
    return hit


def policy_module(policy) -> PolicyModule:
    m = _MODULES.get(policy)
    if m is None:
        m = _MODULES[policy] = PolicyModule(policy).eval()
    return m


@torch.no_grad()
def explain_policy(policy, image: torch.Tensor, config: torch.Tensor, method: str = "dtd", alpha=None,
                   per_joint: bool = False, layer: int = 0, precision: str = "float32") -> Explanation:
    """`policy_xai.attribution.explain` computed by the graph engine (same arguments, same result)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}")
    from ..engine import check_observation

    spec = policy.spec
    check_observation(spec, image, config)
    if per_joint and method == "ig_occlusion":
        raise ValueError("per_joint is not available for ig_occlusion: its occlusion refinement is not additive "
                         "over joints (use ig for per-joint maps)")
    image = image.float()
    obs = {"image": image, "config": policy.normalise_config(config.float())}
    e = explain_module(policy_module(policy), obs, method=method, alpha=alpha, per_output=per_joint, layer=layer,
                       precision=precision, at=("policy.softmax",), _validated=True, _ratios_wanted=False)
    B = image.shape[0]
    points = e.extras["at"]["policy.softmax"].view(B, -1, 2).sum(-1)
    fp = e.extras["at_values"]["policy.softmax"].view(B, -1, 2)  # the forward pass's, not a second one
    ratios = None
    if e.ratios is not None:
        img_abs = e.extras.get("abs_per_output", {}).get("image")
        if img_abs is None:
            img_abs = e.inputs["image"].abs().flatten(1).sum(1)
        names, member = _group_matrix(spec, img_abs.dtype, img_abs.device)
        # (B, 1 + G): the image's mass, then each configuration group's (one product with a 0/1 matrix)
        parts = torch.cat([img_abs.unsqueeze(1), e.inputs["config"].abs() @ member], 1)
        total = parts.sum(1, keepdim=True)
        share = torch.where(total > 0, parts / total, float("nan"))
        ratios = {k: share[:, i] for i, k in enumerate((IMAGE, *names))}
    pj_img = pj_cfg = None
    if per_joint:
        pj = e.per_output["image"]
        pj_img = pj if pj.dim() == 4 else pj.sum(2)  # CAM maps are (B, J, H, W) already
        pj_cfg = e.per_output["config"]
    extras = {k: v for k, v in e.extras.items() if k in ("output_relevance", "reference_torques", "reference")}
    if e.method in ("gradcam", "guided_gradcam", "g1gradcam", "g2gradcam"):
        n_convs = len(policy.convs) if policy.spec.trunk is None else \
            sum(isinstance(m, nn.Conv2d) for m in policy.modules())
        extras["layer"] = layer if layer >= 0 else n_convs + layer
    return Explanation(method, e.maps["image"], e.inputs["config"], points, e.outputs, e.alpha, ratios,
                       spec.group_names, fp, pj_img, pj_cfg, extras)
