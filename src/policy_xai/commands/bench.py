"""`policy-xai bench attribution`: the argparse adapter over policy_xai.attribution_bench (which times
our attribution methods against a plain forward/backward pass and against captum's LRP,
GuidedBackprop and LayerGradCam on the same network, in one run)."""
from __future__ import annotations

import argparse

from ..attribution_bench import MODELS
from .checks import positive_float, positive_int, positive_int_list

DESCRIPTION = """\
Times, for each spec x thread count x batch size (median wall time of --repeat runs, after one
warm-up run; the rows of a case run interleaved, one call of each per round, so that load changes
hit all rows alike):
  forward            the policy's forward pass (no autograd)
  forward+backward   forward + ONE backward pass of the sum of the torques to the inputs
  dtd, rap, gbp, ... explain(policy, image, config, method): the amortised explanation of ALL
                     torques (alpha = 1), i.e. what one control step costs (the graph engine)
  dtd (ref), ...     the same with engine="reference": the hand-written passes over the plain conv
                     stack that the graph engine replaced (--engines; plain specs only); its "vs
                     ours" is reference ms / graph ms
  captum_lrp         captum LRP (default epsilon rules), looped over the torques, on a deep copy of
                     the policy whose SpatialSoftmax (and any GroupNorm) gets a gradient-passing rule
                     (captum has none and raises TypeError; it also deletes custom rules after every call, so the rule
                     is re-attached before each call and the drops are counted)
  captum_gbp         captum GuidedBackprop looped over the torques
  captum_layergradcam captum LayerGradCam (first conv layer, like ours) + upsampling, looped
Columns: ms (median per call of the whole batch), ms/obs, n (timed runs; 1* = the warm-up run was
the measurement because one run exceeded --budget), x f+b (ms / forward+backward ms), vs ours
(captum ms / ms of our counterpart: LRP vs dtd, GBP vs gbp, LayerGradCam vs gradcam), img share
(net image relevance share: signed sum of the image relevance / the explained output sum_j |tau_j|,
mean over observations; for captum per torque, relevance methods only), softmax pass (net relevance
arriving at the conv feature maps / relevance on the feature points, i.e. what crosses the spatial
softmax; 1 for our conserving rule; for captum measured in an extra, untimed LRP run).
Networks are randomly initialised (seed 0) with a sharp spatial softmax (temperature 0.02) so that
the torques depend on the image; timings do not depend on the weights.
--models times the reference architectures of any-PyTorch-policy support (robomimic-style BC with a
BatchNorm ResNet trunk, its GroupNorm variant, two cameras; dict observations; random weights,
seed 0) through explain(model, observation, method): forward, forward+backward and the graph
engine's methods, no captum rows.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the attribution methods against forward/backward and captum",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=["attribution"], help="what to benchmark")
    p.add_argument("--specs", default="small,paper,resnet_small,resnet_small_gn",
                   help="comma-separated spec names or YAML files")
    p.add_argument("--batch", type=positive_int_list, default="1,64", help="comma-separated batch sizes")
    p.add_argument("--threads", default="1,all", help="comma-separated torch thread counts ('all' = every core)")
    p.add_argument("--repeat", type=positive_int, default=5, help="timed runs per row (median reported)")
    p.add_argument("--budget", type=positive_float, default=8.0,
                   help="seconds per row: fewer repeats for rows whose single run is slow (>= 1 run)")
    p.add_argument("--methods", default=None, help="our methods to time (default: all)")
    p.add_argument("--engines", default="graph,reference",
                   help="graph (always) and reference: also time explain(..., engine='reference') on plain specs")
    p.add_argument("--models", default="",
                   help=f"comma-separated reference architectures to time as well ({', '.join(MODELS)})")
    p.add_argument("--model-width", type=positive_int, default=64, help="--models: trunk width (ResNet-18: 64)")
    p.add_argument("--model-image", type=positive_int, default=84, help="--models: image size (robomimic: 84)")
    p.add_argument("--no-captum", action="store_true", help="skip the captum rows")
    p.add_argument("--quick", action="store_true", help="smoke mode: small spec, B=1, 1 thread, 1 repeat")
    p.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    p.add_argument("--markdown", default=None, help="also write the tables as Markdown (for the README)")
    p.add_argument("--from-json", default=None,
                   help="measure nothing: re-print (and --markdown) the tables of an earlier --json file")
    p.set_defaults(func=run)



def run(args: argparse.Namespace) -> int:
    import json
    import os
    from pathlib import Path

    from .. import attribution_bench as ab
    from ..attribution import parse_methods
    from . import checks

    ins = {}
    if args.from_json:
        ins["--from-json file"] = checks.input_file(args.from_json, "--from-json file")
    for opt, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path:
            checks.writable_file(path, opt, ins)
    if args.from_json:
        try:
            data = json.loads(Path(args.from_json).read_text())
            data["results"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{args.from_json}: not a JSON file written by `bench attribution --json` ({e})") from None
    else:
        ncpu = os.cpu_count() or 1
        opts = ab.BenchOptions(budget=args.budget, captum=not args.no_captum,
                               methods=parse_methods(args.methods) if (args.methods or "").strip() else [],
                               models=[m.strip() for m in args.models.split(",") if m.strip()],
                               model_width=args.model_width, model_image=args.model_image)
        engines = [e.strip() for e in args.engines.split(",") if e.strip()]
        if not engines or any(e not in ("graph", "reference") for e in engines):
            raise ValueError(f"--engines: comma-separated graph / reference, got {args.engines!r}")
        opts.reference = "reference" in engines
        if args.quick:
            opts.specs, opts.batches, opts.threads, opts.repeat = ["small"], [1], [1], 1
        else:
            opts.specs = [s.strip() for s in args.specs.split(",") if s.strip()]
            opts.batches = checks.int_list(args.batch, "batch sizes", label="--batch")
            counts = checks.int_list(args.threads, "thread counts", allow=("all",), label="--threads")
            opts.threads = [ncpu if t == "all" else t for t in counts]
            opts.repeat = args.repeat
        data = ab.measure(opts)
    ab.print_report(data)
    if args.json and not args.from_json:
        Path(args.json).write_text(json.dumps(data, indent=1))
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(ab.markdown(data))
        print(f"wrote {args.markdown}")
    return 0
