"""`policy-xai analyze-rollout`: the paper's analyses (Kim & Choi IV-B/IV-C, Figs. 3-6) on a trained
policy running in MuJoCo, with an explanation at every control step (the argparse adapter over
policy_xai.jobs.analyze_rollout)."""
from __future__ import annotations

import argparse
from dataclasses import fields

from ..jobs.rollout import RolloutOptions
from ..resolve import SOURCE_HELP
from ..robot.tasks import task_names
from .checks import add_device_option, nonnegative_int, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "analyze-rollout",
        help="run a trained policy in MuJoCo over the task's conditions, explain every step, write Figs. 3-6",
        description=(
            "Run a trained policy over the task's conditions (and once more with the target moved mid-episode to "
            "a position between the training targets), explain every step with each method, amortised over "
            "the joints by the importance factors of the arm's model, and write into --out: fig3/ (image + "
            "feature points, relevance heatmap, configuration relevance per method), fig4_ratios.png (mean +- "
            "std ratio per input group and method over all steps), fig5_curves.png (ratios over the steps, mean "
            "over the conditions, paper colours), fig6_target_change.png (ratios of the target-change episode, "
            "change marked), heatmap videos with per-frame and per-video normalisation, ratios.csv and "
            "summary.json; prints the image:configuration ratio, the early/late trend, the reaction to the "
            "target change and the rank correlation of the ratio curves between the methods."),
    )
    D = RolloutOptions
    p.add_argument("--task", default=D.task, choices=task_names(), help=f"simulated task (default: {D.task})")
    p.add_argument("--policy", default=D.policy,
                   help=f"the policy: {SOURCE_HELP} (default: the task's shipped weights)")
    p.add_argument("--methods", default=D.methods, help="comma-separated attribution methods")
    p.add_argument("--conditions", default=D.conditions, help="'all' or comma-separated condition indices")
    p.add_argument("--steps", type=positive_int, default=D.steps,
                   help="steps per episode (default: the task's horizon)")
    p.add_argument("--change-step", type=int, default=D.change_step,
                   help="step of the target change in the Fig. 6 episode (default: a third of the episode; -1: none)")
    p.add_argument("--change-condition", type=nonnegative_int, default=D.change_condition,
                   help="condition of the Fig. 6 episode")
    p.add_argument("--alpha", choices=("linearized", "exact", "none"), default=D.alpha,
                   help="importance factors from the arm's model (Pinocchio), or none (alpha = 1)")
    p.add_argument("--batch", type=positive_int, default=D.batch, help="observations explained per batch")
    p.add_argument("--panels", type=nonnegative_int, default=D.panels, help="Fig. 3 panels per method per episode")
    p.add_argument("--fps", type=positive_float, default=D.fps, help="frame rate of the heatmap videos")
    p.add_argument("--seed", type=int, default=D.seed, help="seed of the changed target's position")
    p.add_argument("--threads", type=positive_int, default=D.threads, help="torch CPU threads")
    add_device_option(p)
    p.add_argument("--out", default=D.out, help="output folder (default out/rollout_<task>)")
    p.set_defaults(func=run)


def options(args: argparse.Namespace) -> RolloutOptions:
    """The library's RolloutOptions of the parsed arguments."""
    return RolloutOptions(**{f.name: getattr(args, f.name) for f in fields(RolloutOptions)})


def run(args: argparse.Namespace) -> int:
    from ..jobs.rollout import analyze_rollout

    print("\n".join(analyze_rollout(options(args)).lines))
    return 0
