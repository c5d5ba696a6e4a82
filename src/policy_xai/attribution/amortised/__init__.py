"""Amortised occlusion saliency: a small network, trained offline per policy, that predicts the
policy's dense occlusion map from the image in one forward pass (in the spirit of Dabkowski & Gal
2017, "Real time image saliency for black box classifiers", and FastSHAP, Jethani et al. 2022).
The attribution methods `occlusion_net` and `occlusion_net_refined` (engine.py). "Amortised" is
meant as in amortised explanation models (the cost paid once, in training); it is not the paper's
amortisation over joints by importance factors, which every method here applies.

Teacher (`teacher_map`, the expensive perturbation map the student learns):
    windows P of side p in SIZES (3/64, 4/64 and 8/64 of the image's larger side: 3, 4 and 8 px at
    64x64), top-left corners on a grid of stride max(STRIDE, p // 2) (2, 2 and 4 px at 64x64; the
    last row / column of windows is moved to touch the border, so every pixel is covered). Each
    window is painted with the image's per-channel median colour and its effect on the torques is
        E(P) = sum_j alpha_j |tau_j(x with P painted, c) - tau_j(x, c)|        (N*m * m/(N*m) = m)
    (the effect of faithfulness.metrics). A pixel q gets, over the windows of all sizes together,
        T_mean(q) = mean_{P containing q} E(P)                              (reduce="mean")
        T_max(q)  = max_{P containing q} E(P)                               (reduce="max")
        T_norm(q) = max_{P containing q} E(P) / |P|^BETA + 1e-3 T_mean(q)   (reduce="norm", default)
    BETA = 0.5 (E per window side): a larger window must change the torques proportionally more to
    outrank a smaller one, so the top pixels are the smallest window that removes what matters, at
    the scale of the object (T_max is dominated by the largest windows, T_mean blurs the object
    into its surroundings; measured on validation rollouts, docs in scripts/train_explainers.py);
    the small mean term breaks the ties inside a window. All windows go through the policy in
    batched forward passes under no_grad: N_windows forwards per observation (2210 at 64x64).

Student (`Explainer`): image (B, 3, H, W) in [0, 1] plus two coordinate channels (x, y in [-1, 1];
the policy reads positions through its spatial softmax) -> a stride-2 encoder (3x3 convs at H, H/2,
H/4, H/8, batch-norm-free, ReLU) -> a 3x3 bottleneck at H/8 -> a decoder that upsamples (nearest)
x2 three times, concatenating the encoder's features of the same size (U-Net skips), -> one logit
per pixel l(q). The map is
        S(q) = softmax_q(l)(q) = exp(l(q)) / sum_q' exp(l(q'))        (non-negative, sums to 1)
i.e. a distribution over the pixels; only its ranking and its shares matter to the metrics
(top-k and pointing are scale-free), so the teacher's scale (which follows the torques) is not
learned.

Refined (`explain_amortised_refined`): S re-ranked by measuring the effect of occluding its top
windows (path.occlusion_refine, the refinement of ig_occlusion, with S in place of |ig|): 12 more
policy forwards in one batch.

Loss (`train_explainer`), per observation, with the teacher map normalised to a distribution
    p(q) = T(q)^gamma / sum_q' T(q')^gamma       (gamma = SHARPEN: emphasises the top pixels)
    L = KL(p || S) = sum_q p(q) (log p(q) - log S(q))
(an all-zero teacher map gives the uniform p), averaged over the batch; Adam with a one-cycle
learning rate (10 % warm-up to lr, then cosine decay), batches of 32, no augmentation. The policy
is used only to compute the teacher maps; at run time the explainer needs the image only (the
refined map needs the policy, the configuration and alpha as well).

Files (`save_explainer` / `load_explainer`): safetensors with metadata {format, arch (JSON of the
architecture parameters), policy_sha256 (sha256 of the policy weights file the explainer was
trained for), policy_file, teacher (JSON of the teacher's parameters), extra keys}; loading with a
policy path (or a policy file's sha256) that does not match raises ExplainerMismatchError.

Layout: teacher.py (the occlusion map), student.py (Explainer, its maps), training.py, storage.py
(explainer files, the explainer of a policy object), explanation.py (amortised_explanation).
"""
from ...files import file_sha256  # noqa: F401
from .explanation import CONFIG_STEPS, LEG_ORDER, LEG_ORDERS, Amortised, amortised_explanation  # noqa: F401
from .storage import (EXPLAINER_SUFFIX, FORMAT, ExplainerLoadError, ExplainerMismatchError,  # noqa: F401
                      attach_explainer, attach_for_file, explainer_of, explainer_path_for, has_explainer,
                      load_explainer, save_explainer, time_explainer)
from .student import Explainer, _conv, _fingerprint, explain_amortised, explain_amortised_refined  # noqa: F401
from .teacher import (BETA, REDUCTIONS, SIZES, STRIDE, _as_alpha, _starts, reduce_effects,  # noqa: F401
                      teacher_map, window_effects, window_masks, window_sides)
from .training import SHARPEN, kl_loss, target_distribution, train_explainer, train_on_maps  # noqa: F401
