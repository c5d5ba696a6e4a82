"""Methods as data: a method is a mapping op type -> rule plus a few declared properties.

Op types are the `kind` of the traced nodes (trace.py). A node of a Linear / Conv kind that feeds the
model's output through structural and elementwise ops only is an *output layer*; the composite's
entry "<kind>@output" applies there when present (dtd: Eq. 1 sign flip; rap: absolute influence).
Properties, declared once per method:

    linear       the rules are linear in the output relevance: all outputs in one backward pass
                 (otherwise one pass per output, batched as replicas)
    guided       the gradient is guided (GBP): activations pass only positive gradients
    cam          a CAM method: ReLU(sum_c mean_hw(dA_c) A_c) on a conv layer, upsampled to its camera;
                 `cam_weights` names the method giving dA, `times_guided_gradient` multiplies by the
                 guided image gradient (Guided Grad-CAM)
    seed         "relevance": R = alpha |y| at the outputs;  "gradient": alpha sign(y) (the gradient of
                 alpha |y|); per-output passes start from sign(y_j) and are weighted by alpha_j
    times_input  the input relevance is the backward result times the input (gradient x input)
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from . import rules as r

#: elementwise activations that pass relevance unchanged in dtd / rap
ACTIVATIONS = ("relu", "leaky_relu", "elu", "silu", "gelu", "mish", "tanh")
SMOOTH = ("leaky_relu", "elu", "silu", "gelu", "mish", "tanh")
STRUCTURAL = ("reshape", "getitem", "cat", "split", "stack")
#: elementwise maps with frozen statistics / constants
ELEMENTWISE = ("identity", "affine_const", "batchnorm", "groupnorm", "layernorm")
#: op types relevance passes through when looking for the output layer
OUTPUT_PASS = ACTIVATIONS + STRUCTURAL + ("identity", "affine_const")


@dataclass(frozen=True)
class Method:
    name: str
    rules: Mapping[str, r.Rule]
    linear: bool
    guided: bool = False
    cam: bool = False
    seed: str = "relevance"
    times_input: bool = False
    #: CAM methods: the method whose backward pass gives dA at the layer ("gradient" or "gbp"), and
    #: whether the CAM is multiplied by the channel-summed guided (GBP) image gradient
    cam_weights: str = ""
    times_guided_gradient: bool = False
    #: path methods: the reference image ("blur", "median"; vector inputs: zeros or given) and the
    #: integrated gradients from it, (x - x0) * mean_k grad f(x0 + t_k (x - x0)), t_k = (k + 1/2) / 8
    path: str = ""
    #: ig_occlusion: each camera's |ig| map refined by occluding its windows of largest |ig| (path.py)
    occlusion: bool = False

    def rule_for(self, kind: str, output_layer: bool = False):
        if output_layer and f"{kind}@output" in self.rules:
            return self.rules[f"{kind}@output"]
        return self.rules.get(kind)

    def supported(self) -> list[str]:
        return sorted(k for k in self.rules if "@" not in k)


def _relevance_composite(hidden: r.Rule, output: r.Rule) -> dict:
    c = {"linear": hidden, "conv": hidden, "linear@output": output, "conv@output": output,
         "maxpool": r.WinnerTakesAll(), "avgpool": r.ZPlusPositiveMap(), "mean": r.ZPlusPositiveMap(),
         "sum": r.ZPlusPositiveMap(), "add": r.ResidualSplit(), "spatial_softmax": r.AttentionSplit()}
    c.update({k: r.PassThrough() for k in ACTIVATIONS + ELEMENTWISE})
    c.update({k: r.Select() for k in STRUCTURAL})
    c["cat"] = r.Concat()
    return c


def _gradient_composite(guided: bool) -> dict:
    c = {"linear": r.LinearGradient(), "conv": r.LinearGradient(), "relu": r.ReLUGradient(guided),
         "spatial_softmax": r.SpatialSoftmaxGradient(), "identity": r.PassThrough()}
    c.update({k: r.ActivationGradient(guided) for k in SMOOTH})
    c["cat"] = r.Concat()
    for k in tuple(k for k in STRUCTURAL if k != "cat") + ("maxpool", "avgpool", "mean", "sum", "add", "affine_const",
                                                          "batchnorm", "groupnorm",
                           "layernorm"):
        c[k] = r.ExactGradient()
    c["maxpool"] = r.WinnerTakesAll()  # the pool's exact gradient, without autograd
    c["add"] = r.AddGradient()
    return c


METHODS: Mapping[str, Method] = MappingProxyType({
    "dtd": Method("dtd", MappingProxyType(_relevance_composite(r.ZPlus(), r.ZPlus(output=True))), linear=True),
    "rap": Method("rap", MappingProxyType(_relevance_composite(r.RAPHidden(), r.RAPOutput())), linear=True),
    "gradient": Method("gradient", MappingProxyType(_gradient_composite(False)), linear=True, seed="gradient",
                       times_input=True),
    "gbp": Method("gbp", MappingProxyType(_gradient_composite(True)), linear=False, guided=True, seed="gradient",
                  times_input=True),
})
_GRAD, _GUIDED = METHODS["gradient"].rules, METHODS["gbp"].rules
METHODS = MappingProxyType({
    **METHODS,
    "gradcam": Method("gradcam", _GRAD, linear=False, cam=True, seed="gradient", cam_weights="gradient"),
    "guided_gradcam": Method("guided_gradcam", _GRAD, linear=False, guided=True, cam=True, seed="gradient",
                             cam_weights="gradient", times_guided_gradient=True),
    "g1gradcam": Method("g1gradcam", _GUIDED, linear=False, guided=True, cam=True, seed="gradient", cam_weights="gbp"),
    "g2gradcam": Method("g2gradcam", _GUIDED, linear=False, guided=True, cam=True, seed="gradient", cam_weights="gbp",
                        times_guided_gradient=True),
    "ig": Method("ig", _GRAD, linear=True, seed="gradient", path="blur"),
    "ig_median": Method("ig_median", _GRAD, linear=True, seed="gradient", path="median"),
    "ig_occlusion": Method("ig_occlusion", _GRAD, linear=False, seed="gradient", path="blur", occlusion=True),
})
