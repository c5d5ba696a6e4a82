"""The options of every `policy-xai states` job, in one light module (no torch): the command line's
defaults are these dataclasses' (commands/states.py reads them), the library functions take them.

    TrainOptions     states train     (train.train_state_model)
    FindOptions      states find      (find.find)
    TeacherOptions   states teacher   (teacher.train_teacher)
    ValidateOptions  states validate  (validate.validate_file)
"""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class TrainOptions:
    policy: str = ""              # weights file
    task: str = ""                # simulation task (default: the policy file's stem when it names a task)
    bag: str = ""                 # a rosbag to take the states from instead of rollouts
    episodes: int = 6             # rollouts per task condition
    every: int = 1                # keep every n-th step
    epsilon: float = 0.1          # probability of a random torque per step
    torque_noise: float = 0.1     # smooth noise on the policy's torques, x the torque limits
    epochs: int = 30
    batch: int = 64
    lr: float = 1e-3
    latent: int = 32
    filters: int = 32
    kl: float = 1.0               # weight of the KL term (per pixel value, see the module docstring)
    perception: float = 0.1       # weight of the agent-perception term
    config_weight: float = 1.0    # weight of the configuration's reconstruction term
    attention: str = "gbp"        # method of the attentive term's pixel weights ("none": plain MSE)
    scene_teacher: str = ""       # teacher network file: add the scene term (module docstring)
    scene_weight: float = 1.0     # weight of the scene term
    region: float = 0.0           # share of episodes at a random place in the region the conditions span
    holdout: float = 0.1          # share of states kept out of training for the measurements
    threads: int = 1
    seed: int = 0
    out: str = ""


@dataclass
class FindOptions:
    policy: str = ""
    generator: str = ""
    target: str = "torque_norm:max"
    n: int = 8
    steps: int = 200
    lr: float = 0.05
    lam: float = 0.1              # weight of the prior term 0.5 ||z||^2
    task: str = ""                # real states from rollouts of this task (default: the model's)
    real_episodes: int = 1        # rollouts per condition for the real states
    real_bag: str = ""            # or the states of a recording
    real_region: float = 0.0      # share of the real rollouts at random places between the conditions
    teacher: str = ""             # teacher network file (teacher_gap; states teacher)
    method: str = ""              # explanation of the found states (default: the live default or its fallback)
    naive: bool = False           # also the naive pixel search
    starts: str = "real"          # "real": latent means of random real states; "prior": z ~ N(0, I)
    prior: str = "aggregate"      # regulariser: "aggregate" (Gaussian of the real states' latents) or "standard"
    scope: str = "state"          # "state": each start one state; "episode": one shift of a real episode's states
    episode_states: int = 16      # episode scope: states per episode (evenly spaced along it)
    threads: int = 1
    seed: int = 0
    out: str = ""


@dataclass
class TeacherOptions:
    policy: str = ""
    task: str = ""
    out: str = ""
    episodes: int = 10          # per condition
    every: int = 2
    region: float = 0.75        # share of episodes at random places between the conditions
    beta: float = 0.5           # probability per step that the teacher drives instead of the policy
    epsilon: float = 0.05
    torque_noise: float = 0.1
    epochs: int = 40
    batch: int = 64
    lr: float = 1e-3
    holdout: float = 0.15       # share of *episodes* held out for the accuracy numbers
    residual: bool = False      # learn the teacher's torques minus the policy's (tied to the policy's weights)
    kind: str = "direct"        # or "two_stage" (states/two_stage.py)
    scene_from: str = ""        # two_stage: the scene head of this teacher-network file (else trained here)
    policy_episodes: int = 80   # two_stage: sampled rollouts with the policy driving (rendered)
    teacher_episodes: int = 500  # two_stage: sampled rollouts with the teacher driving (physics only)
    copies: int = 2             # two_stage: perturbed copies per sampled state
    mlp_epochs: int = 40        # two_stage: epochs of the (q, v, scene) -> torques MLP
    scene_only: bool = False    # two_stage, own scene head: fit it on the scene loss only (cosine lr decay)
    scene_filters: int = 16     # two_stage, own scene head: the CNN's first-layer filters
    scene_clean: int = 0        # two_stage, own scene head: extra rollouts per condition without exploration
    stage2_from: str = ""       # two_stage: take stage 2 (the MLP) of this two-stage file (no sampling)
    holdout_episodes: int = 0   # two_stage: held-out rendered episodes per condition (0: holdout x episodes)
    threads: int = 1
    seed: int = 0


@dataclass
class ValidateOptions:
    policy: str = ""
    teacher: str = ""             # teacher network file: its scene head decodes the found states' places
    states: str = ""              # states.npz of `states find` (or its folder)
    task: str = ""                # default: the teacher network's
    episodes: int = 20            # per start kind, found and random each
    starts: str = "state,place"
    steps: int = 0                # per episode (0: the task's horizon)
    threads: int = 1
    seed: int = 0
    json: str = ""                # output (default: validate.json next to the states; never overwritten)


def options_from(cls, args, **given):
    """An options dataclass from an argparse namespace: each field from the attribute of the same name
    (the field's default where the namespace has none), `given` overriding both."""
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    return cls(**(values | given))
