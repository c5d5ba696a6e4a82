"""The captum rows of the attribution benchmark: captum's LRP, GuidedBackprop and LayerGradCam over
all torques of a policy (CaptumRunner), each on its own deep copy, and the method of ours each row
is compared with (CAPTUM_ROWS)."""
from __future__ import annotations

#: captum rows and the method of ours each is compared with
CAPTUM_ROWS = {"captum_lrp": "dtd", "captum_gbp": "gbp", "captum_layergradcam": "gradcam"}


def _captum_helpers():
    """Classes that need torch/captum, built on first use (heavy imports stay out of --help)."""
    import torch
    from captum.attr._utils.lrp_rules import PropagationRule

    class SignedTorques(torch.nn.Module):
        """Outputs sign(tau_j) * tau_j = |tau_j| at the explained observations: captum then explains
        the same quantity as our methods (which start from alpha_j |tau_j|)."""

        def __init__(self, policy, sign):
            super().__init__()
            self.policy, self.sign = policy, sign

        def forward(self, image, config):
            return self.policy(image, config) * self.sign

    class GradientPassRule(PropagationRule):
        """Let relevance cross the spatial softmax as a plain gradient: no relevance hooks, weights
        untouched. This is what reference LRP implementations effectively do with a layer they have no
        rule for (captum itself refuses such a layer with a TypeError)."""

        def forward_hook(self, module, inputs, outputs):
            return None

        def _manipulate_weights(self, module, inputs, outputs):
            pass

    return SignedTorques, GradientPassRule


class CaptumRunner:
    """captum's LRP / GuidedBackprop / LayerGradCam over all torques, each on its own deep copy."""

    def __init__(self, policy, image, config):
        import copy

        import torch
        from captum.attr import LRP, GuidedBackprop, LayerGradCam

        SignedTorques, self._Rule = _captum_helpers()
        self.image, self.config = image, config
        with torch.no_grad():
            sign = torch.sign(policy(image, config))
        sign[sign == 0] = 1
        self.J = sign.shape[1]
        self.size = tuple(image.shape[2:])
        self.rule_drops = 0
        self.calls = 0
        self._lrp_net = copy.deepcopy(policy)
        self._no_rule = [self._lrp_net.softmax] + [m for m in self._lrp_net.modules()
                                                   if isinstance(m, torch.nn.GroupNorm)]
        self.lrp = LRP(SignedTorques(self._lrp_net, sign))
        self.gbp = GuidedBackprop(SignedTorques(copy.deepcopy(policy), sign))
        gc_net = copy.deepcopy(policy)
        # the first conv's ReLU, like our gradcam's default layer (a ResNet trunk: the stem's, after its norm)
        first_relu = gc_net.conv_relus[0] if policy.spec.trunk is None else gc_net.trunk.relu
        self.lgc = LayerGradCam(SignedTorques(gc_net, sign), first_relu)
        self._reference = policy

    def _attach(self):
        # the spatial softmax, and the GroupNorms of a ResNet trunk (captum has no rule for either)
        for m in self._no_rule:
            if not hasattr(m, "rule"):
                m.rule = self._Rule()

    def run_lrp(self):
        out = []
        for j in range(self.J):
            self._attach()
            out.append(self.lrp.attribute((self.image, self.config), target=j))
            self.calls += 1
            if not hasattr(self._lrp_net.softmax, "rule"):
                self.rule_drops += 1
        return out

    def run_gbp(self):
        return [self.gbp.attribute((self.image, self.config), target=j) for j in range(self.J)]

    def run_lgc(self):
        from captum.attr import LayerAttribution

        out = []
        for j in range(self.J):
            cam = self.lgc.attribute((self.image, self.config), target=j, relu_attributions=True)
            out.append(LayerAttribution.interpolate(cam, self.size, interpolate_mode="bilinear"))
        return out

    def softmax_passage(self) -> float:
        """Net relevance that crosses the spatial softmax in one LRP call per torque (untimed):
        sum of the relevance arriving at the feature maps / sum of the relevance on the feature
        points, mean over torques and observations. A conserving rule gives 1."""
        import numpy as np

        seen = {}

        def fwd_hook(module, inputs, output):
            inputs[0].register_hook(lambda g: seen.__setitem__("maps", g.detach().flatten(1).sum(1)))
            output.register_hook(lambda g: seen.__setitem__("points", g.detach().sum(1)))

        ratios = []
        for j in range(self.J):
            self._attach()
            h = self._lrp_net.softmax.register_forward_hook(fwd_hook)
            try:
                seen.clear()
                self.lrp.attribute((self.image, self.config), target=j)
            finally:
                h.remove()
            if "maps" in seen and "points" in seen:
                pts = seen["points"].numpy()
                ok = np.abs(pts) > 0
                ratios.extend((seen["maps"].numpy()[ok] / pts[ok]).tolist())
        return float(np.mean(ratios)) if ratios else float("nan")

    def check_intact(self) -> bool:
        """After the LRP calls, the copy must compute what the policy computes (captum restores the
        weights it changed; a broken model would differ)."""
        import torch

        with torch.no_grad():
            return bool(torch.allclose(self._lrp_net(self.image, self.config),
                                       self._reference(self.image, self.config), atol=1e-5))
