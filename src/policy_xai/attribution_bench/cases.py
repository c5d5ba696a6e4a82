"""The rows of one benchmark case (network x batch x thread count): a VisuomotorPolicy spec
(bench_case: forward, forward+backward, our methods on both engines, bfloat16 dtd, captum) or a
reference architecture (MODELS, reference_model; bench_module_case: the graph engine's methods)."""
from __future__ import annotations

from .captum_rows import CAPTUM_ROWS, CaptumRunner
from .timing import time_rows

#: reference architectures timed with --models (policy_xai.attribution.graph.models factories)
MODELS = ("robomimic_bc", "groupnorm_bc", "two_camera_bc")


def _net_share(img_sum, out):
    """Net image relevance (signed sum over the pixels) / the explained output, mean over entries."""
    import numpy as np

    ok = np.abs(out) > 0
    return float(np.mean(img_sum[ok] / out[ok])) if ok.any() else float("nan")


def _timing_explainer(policy, methods) -> None:
    """the occlusion_net methods on a network without an explainer file (a spec name): an untrained
    explainer of the shipped architecture, for timing only (its cost does not depend on its weights)."""
    import torch

    from ..attribution import amortised
    from ..attribution.engine import EXPLAINER_METHODS

    if any(m in EXPLAINER_METHODS for m in methods) and not amortised.has_explainer(policy):
        gen = torch.random.get_rng_state()
        torch.manual_seed(0)
        amortised.attach_explainer(policy, amortised.Explainer(policy.spec.image_channels))
        torch.random.set_rng_state(gen)


def bench_module_case(model, obs, methods, threads, repeat, budget, progress=None):
    """Rows for one reference architecture (dict observation) through the graph engine."""
    import torch

    from ..attribution import explain

    torch.set_num_threads(threads)
    B = next(iter(obs.values())).shape[0]
    entries = []

    def add(name, fn):
        entries.append((name, fn))

    def fwd():
        with torch.no_grad():
            return model(obs)

    def fwd_bwd():
        leaves = {k: v.detach().requires_grad_(True) for k, v in obs.items()}
        out = model(leaves)
        return torch.autograd.grad(out.sum(), list(leaves.values()))

    add("forward", fwd)
    add("forward+backward", fwd_bwd)
    for m in methods:
        add(m, lambda m=m: explain(model, obs, method=m))
    timed = time_rows(entries, repeat, budget, progress)
    rows = [{"row": name, "ms": t[0], "ms_per_obs": t[0] / B, "n": t[1], "warmup_only": t[2]}
            for name, t in timed.items()]
    fb = rows[1]["ms"]
    for r in rows:
        r["x_fwd_bwd"] = r["ms"] / fb
    return rows


def reference_model(name: str, width: int, image: int):
    """A reference architecture with random weights and norm statistics (seed 0), in eval mode."""
    import torch

    from ..attribution.graph import models as gm

    if name not in MODELS:
        raise ValueError(f"unknown reference architecture {name!r}; choose from {', '.join(MODELS)}")
    torch.manual_seed(0)
    model = gm.randomize_norms(getattr(gm, name)(width=width, image_size=image), seed=0).eval()
    return model


def bench_case(policy, image, config, methods, threads, repeat, budget, captum=True, progress=None,
               reference=True):
    """All rows for one (network, batch, thread count). Returns a list of dicts."""
    import numpy as np
    import torch

    from ..attribution import explain

    torch.set_num_threads(threads)
    B = image.shape[0]
    entries, shares, post = [], {}, {}

    def add(name, fn, share=None):
        entries.append((name, fn))
        if share is not None:
            shares[name] = share

    def fwd():
        with torch.no_grad():
            return policy(image, config)

    def fwd_bwd():
        x = image.detach().requires_grad_(True)
        c = config.detach().requires_grad_(True)
        tau = policy(x, c)
        return torch.autograd.grad(tau.sum(), (x, c))

    add("forward", fwd)
    add("forward+backward", fwd_bwd)

    def ours_share(e):
        return _net_share(e.image.flatten(1).sum(1).numpy(), (e.alpha * e.torques.abs()).sum(1).numpy())

    from ..attribution.engine import EXPLAINER_METHODS as _AMORTISED

    def softmax_pass(e):
        pts = e.points.sum(1).numpy()
        ok = np.abs(pts) > 0
        return float(np.mean(e.image.flatten(1).sum(1).numpy()[ok] / pts[ok]))

    refs = {}
    for m in methods:
        add(m, lambda m=m: explain(policy, image, config, m), ours_share if m in ("dtd", "rap") else None)
        if m in ("dtd", "rap"):
            post[m] = softmax_pass
        if reference and policy.spec.trunk is None and m not in _AMORTISED:
            add(f"{m} (ref)", lambda m=m: explain(policy, image, config, m, engine="reference"))
            refs[f"{m} (ref)"] = m

    if "dtd" in methods:  # the same rule with bfloat16 convolutions (forward pass stays float32)
        add("dtd_bf16", lambda: explain(policy, image, config, "dtd", precision="bfloat16"), ours_share)

    extra = {}
    if captum:
        runner = CaptumRunner(policy, image, config)

        tau_abs = policy(image, config).detach().abs().T.numpy()  # (J, B): what captum explains

        def lrp_share(res):
            img = np.stack([r[0].flatten(1).sum(1).detach().numpy() for r in res])  # (J, B)
            return _net_share(img.ravel(), tau_abs.ravel())

        add("captum_lrp", runner.run_lrp, lrp_share)
        add("captum_gbp", runner.run_gbp)
        add("captum_layergradcam", runner.run_lgc)
    rows = []
    for name, (ms, n, warm_only, res) in time_rows(entries, repeat, budget, progress).items():
        row = {"row": name, "ms": ms, "ms_per_obs": ms / B, "n": n, "warmup_only": warm_only}
        if name in shares:
            row["img_share"] = shares[name](res)
        if name in post:
            row["softmax_pass"] = post[name](res)
        if name in refs:
            row["reference_of"] = refs[name]
        rows.append(row)
    if captum:
        extra = {"captum_rule_drops": runner.rule_drops, "captum_lrp_calls": runner.calls,
                 "captum_model_intact": runner.check_intact()}
        by = {r["row"]: r for r in rows}
        by["captum_lrp"]["softmax_pass"] = runner.softmax_passage()
    # ratios
    by = {r["row"]: r for r in rows}
    fb = by["forward+backward"]["ms"]
    for r in rows:
        r["x_fwd_bwd"] = r["ms"] / fb
        ours = CAPTUM_ROWS.get(r["row"], r.get("reference_of"))
        if ours in by:
            r["vs_ours"] = r["ms"] / by[ours]["ms"]
    return rows, extra
