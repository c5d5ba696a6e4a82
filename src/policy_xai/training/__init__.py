"""Training visuomotor policies on the simulated tasks: data collection, behaviour cloning with
DAgger-style relabelling, evaluation. No ROS; used by `policy-xai collect/train/evaluate`.

The teacher is a *state-feedback* expert (`teachers.FeedbackExpert`): its torque is a function of the
joint state (q, v) and of the target's position only, so that a network which sees the target only in
the image and (q, v, ee) in the configuration can represent it, and every state the learner visits can
be relabelled (DAgger).

Training targets: the task's conditions (the paper's training conditions) and, with probability
`region_fraction`, random targets in the region the conditions span (bilinear patch of the four
targets, slightly enlarged); `evaluate` reports the conditions and held-out targets between them.

The modules, by concern:
    teachers    the three state-feedback teachers and `make_teacher(sim)`
    targets     `region_target` (random training targets), `heldout_targets`
    rollout     `run_episode`, `collect` (teacher or DAgger data), `stack`, `merge`, `GROUPS`
    fitting     `fit` (behaviour cloning + auxiliary loss), `fit_head` (FC head on cached feature points)
    evaluation  `evaluate`, `policy_controller`, `blank_image`, `count_evaluation_episodes`
    loop        `TrainConfig`, `train` (the whole recipe), `dagger_round`, `check_spec_fits`
    shipped     `model_path`, `default_spec`, `save_trained`
Every public name is importable from `policy_xai.training` itself.
"""
from __future__ import annotations

from .evaluation import blank_image, count_evaluation_episodes, evaluate, policy_controller
from .fitting import FitLog, feature_points_of, fit, fit_head, set_config_normalisation
from .loop import HeadFit, TrainConfig, check_spec_fits, dagger_round, train
from .rollout import GROUPS, Episode, collect, merge, run_episode, stack
from .shipped import default_spec, model_path, save_trained
from .targets import heldout_targets, reachable_region_target, region_target
from .teachers import DOWN, DoorFeedbackExpert, FeedbackExpert, PegFeedbackExpert, make_teacher

__all__ = [
    "DOWN", "GROUPS", "DoorFeedbackExpert", "Episode", "FeedbackExpert", "FitLog", "HeadFit",
    "PegFeedbackExpert", "TrainConfig", "blank_image", "check_spec_fits", "collect", "count_evaluation_episodes",
    "dagger_round", "default_spec", "evaluate", "feature_points_of", "fit", "fit_head", "heldout_targets",
    "make_teacher", "merge", "model_path", "policy_controller", "reachable_region_target", "region_target",
    "run_episode", "save_trained",
    "set_config_normalisation", "stack", "train",
]
