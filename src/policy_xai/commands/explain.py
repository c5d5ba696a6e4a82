"""`policy-xai explain`: offline explanation of a policy on recorded or generated observations (the argparse
adapter over policy_xai.jobs.explain_recording)."""
from __future__ import annotations

import argparse
from dataclasses import fields

from ..jobs.explain import ExplainOptions
from ..resolve import SOURCE_HELP
from .checks import add_device_option, nonnegative_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="explain a policy offline on recorded (.npz) or generated observations; writes figures",
        description=(
            "Explain a policy's torques on a sequence of observations and write, into --out: "
            "ratios.csv (relevance ratio per input group per step and method), summary.json, "
            "fig4_ratios.png (mean +- std ratio per group), fig5_curves.png (ratios over the steps), "
            "heatmaps/ (Fig. 3 style panels) and heatmap_<method>.mp4. Observations come from an .npz "
            "file with arrays images (N,H,W,3 uint8), configs (N,D) and optionally times (N,) and "
            "alphas (N,J), or are generated (--inputs synthetic)."
        ),
    )
    D = ExplainOptions
    p.add_argument("--policy", default=D.policy, help=f"the policy: {SOURCE_HELP} (default: small, untrained)")
    p.add_argument("--inputs", default=D.inputs, help="'synthetic' or an .npz recording (see above)")
    p.add_argument("--steps", type=positive_int, default=D.steps,
                   help="number of generated observations (synthetic inputs)")
    p.add_argument("--methods", default=D.methods, help="comma-separated: dtd,rap,gbp,gradient,gradcam,...")
    p.add_argument("--robot", default=D.robot,
                   help="robot model for importance factors: a shipped name (baxter_right_arm, two_link_arm), "
                        "a URDF path, or 'none' (alpha = 1)")
    p.add_argument("--dt", type=positive_float, default=D.dt, help="control period for the importance factors [s]")
    p.add_argument("--batch", type=positive_int, default=D.batch, help="observations per batch")
    p.add_argument("--layer", type=nonnegative_int, default=D.layer, help="conv layer of the Grad-CAM family")
    p.add_argument("--normalize", choices=("frame", "video"), default=D.normalize,
                   help="heatmap colour scale: per frame, or one scale for the whole video")
    p.add_argument("--panels", type=nonnegative_int, default=D.panels, help="how many Fig. 3 style panels to draw")
    p.add_argument("--seed", type=int, default=D.seed)
    add_device_option(p)
    p.add_argument("--out", default=D.out, help="output folder")
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> ExplainOptions:
    """The library's ExplainOptions of the parsed arguments."""
    return ExplainOptions(**{f.name: getattr(args, f.name) for f in fields(ExplainOptions)})


def run(args: argparse.Namespace) -> int:
    from ..jobs.explain import explain_recording

    print("\n".join(explain_recording(options(args)).lines))
    return 0
