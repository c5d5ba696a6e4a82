"""`policy-xai states train | find | teacher | validate | bench`: a generative model of the policy's
observations, the search of its latent space for states of interest, the teacher network of the
teacher_gap target, and the check of found states in the simulation (library: policy_xai.states)."""
from __future__ import annotations

from pathlib import Path

from ..states.options import FindOptions, TeacherOptions, TrainOptions, ValidateOptions
from .checks import UsageError, nonnegative_float, positive_float, positive_int

_TR, _FI, _TE, _VA = TrainOptions(), FindOptions(), TeacherOptions(), ValidateOptions()  # the defaults
_WEIGHTS_HELP = "policy weights: a .safetensors file, or a task name for its shipped weights"


def register(sub) -> None:
    p = sub.add_parser("states", help="states of interest: train a state model (VAE), search it for states",
                       description="A VAE over what the policy observes (image and configuration), trained on "
                                   "states the policy visits, and the search of its latent space for states where "
                                   "a target is extreme (Rupprecht et al., ../shared/papers/003).")
    s = p.add_subparsers(dest="states_command", metavar="SUB")

    t = s.add_parser("train", help="train the state model of a policy from its rollouts (or a bag)")
    t.add_argument("--policy", required=True, help=_WEIGHTS_HELP)
    t.add_argument("--out", required=True, help="state model file to write (never overwritten)")
    t.add_argument("--task", default=_TR.task,
                   help="simulation task (default: the weights file's name when it is a task)")
    t.add_argument("--bag", default=_TR.bag, help="take the states from this recording instead of rollouts")
    t.add_argument("--episodes", type=positive_int, default=_TR.episodes, help="rollouts per task condition")
    t.add_argument("--every", type=positive_int, default=_TR.every, help="keep every n-th control step")
    t.add_argument("--epsilon", type=nonnegative_float, default=_TR.epsilon,
                   help="probability of a random torque per step")
    t.add_argument("--torque-noise", type=nonnegative_float, default=_TR.torque_noise,
                   help="smooth noise x the torque limits")
    t.add_argument("--region", type=nonnegative_float, default=_TR.region,
                   help="share of episodes at a random place between the conditions (0-1)")
    t.add_argument("--epochs", type=positive_int, default=_TR.epochs)
    t.add_argument("--batch", type=positive_int, default=_TR.batch)
    t.add_argument("--lr", type=positive_float, default=_TR.lr)
    t.add_argument("--latent", type=positive_int, default=_TR.latent)
    t.add_argument("--kl", type=nonnegative_float, default=_TR.kl, help="weight of the KL term")
    t.add_argument("--perception", type=nonnegative_float, default=_TR.perception,
                   help="weight of the agent-perception term")
    t.add_argument("--config-weight", type=nonnegative_float, default=_TR.config_weight,
                   help="weight of the configuration's reconstruction term")
    t.add_argument("--attention", default=_TR.attention,
                   help="explanation method of the attentive term ('none': plain)")
    t.add_argument("--scene-teacher", default=_TR.scene_teacher,
                   help="teacher network file (states teacher): add the scene term, so that its scene head reads the "
                        "same scene (door place and angle) from a reconstruction as from the original")
    t.add_argument("--scene-weight", type=nonnegative_float, default=_TR.scene_weight, help="weight of the scene term")
    t.add_argument("--threads", type=positive_int, default=_TR.threads)
    t.add_argument("--seed", type=int, default=_TR.seed)
    t.set_defaults(func=run_train)

    f = s.add_parser("find", help="search the state model for states where a target is extreme")
    f.add_argument("--policy", required=True, help=_WEIGHTS_HELP)
    f.add_argument("--generator", required=True, help="state model trained for these weights (states train)")
    f.add_argument("--target", required=True,
                   help="torque:<joint>:max|min, torque_norm:max, saturation, image_share:max|min, sensitivity:max, "
                        "teacher_gap:max (with --teacher), or module:function")
    f.add_argument("--n", type=positive_int, default=_FI.n, help="states to find (random starts)")
    f.add_argument("--steps", type=positive_int, default=_FI.steps, help="gradient steps per start")
    f.add_argument("--lr", type=positive_float, default=_FI.lr)
    f.add_argument("--lam", type=nonnegative_float, default=_FI.lam, help="weight of the prior term R(z)")
    f.add_argument("--prior", choices=("aggregate", "standard"), default=_FI.prior,
                   help="R(z): the Gaussian of the real states' latents (default) or N(0, I) (the paper's)")
    f.add_argument("--task", default=_FI.task, help="task for the real states compared with (default: the model's)")
    f.add_argument("--real-episodes", type=positive_int, default=_FI.real_episodes,
                   help="rollouts per condition for the real states")
    f.add_argument("--real-bag", default=_FI.real_bag, help="compare with the states of this recording instead")
    f.add_argument("--real-region", type=nonnegative_float, default=_FI.real_region,
                   help="share of the real rollouts at random places between the conditions (0-1)")
    f.add_argument("--teacher", default=_FI.teacher,
                   help="teacher network (states teacher) for the teacher_gap:max target")
    f.add_argument("--method", default=_FI.method, help="explanation of the found states (default: the live default)")
    f.add_argument("--starts", choices=("real", "prior"), default=_FI.starts,
                   help="start from the latents of random real states (default) or from the prior N(0, I)")
    f.add_argument("--naive", action="store_true", help="also the naive search over raw pixels (the paper's Fig. 4)")
    f.add_argument("--scope", choices=("state", "episode"), default=_FI.scope,
                   help="state: each start one real state; episode: each start one real episode, all its states "
                        "moved by one latent shift, the target averaged over them (places where the policy is weak "
                        "along a whole episode)")
    f.add_argument("--episode-states", type=positive_int, default=_FI.episode_states,
                   help="--scope episode: states per episode, evenly spaced along it")
    f.add_argument("--threads", type=positive_int, default=_FI.threads)
    f.add_argument("--seed", type=int, default=_FI.seed)
    f.add_argument("--out", required=True, help="output folder (new or empty)")
    f.set_defaults(func=run_find)
    te = s.add_parser("teacher", help="distil the task's state-feedback teacher into a network (teacher_gap target)",
                      description="Rollouts of the task (policy and teacher mixed, at the conditions and at random "
                                  "places between them), each frame labelled with the teacher's torques and the scene "
                                  "state; a small CNN (image, configuration) -> (teacher torques, scene state).")
    te.add_argument("--policy", required=True,
                    help=_WEIGHTS_HELP + ": drives the rollouts, gives the shapes")
    te.add_argument("--task", default=_TE.task,
                    help="simulation task (default: the weights file's name when it is a task)")
    te.add_argument("--out", required=True, help="teacher network file to write (never overwritten)")
    te.add_argument("--episodes", type=positive_int, default=_TE.episodes, help="rollouts per task condition")
    te.add_argument("--every", type=positive_int, default=_TE.every, help="keep every n-th control step")
    te.add_argument("--region", type=nonnegative_float, default=_TE.region,
                    help="share of episodes at random places (0-1)")
    te.add_argument("--beta", type=nonnegative_float, default=_TE.beta,
                    help="probability per step that the teacher drives")
    te.add_argument("--epochs", type=positive_int, default=_TE.epochs)
    te.add_argument("--residual", action="store_true",
                    help="learn the teacher's torques minus the policy's (default: the teacher's torques)")
    te.add_argument("--kind", choices=("direct", "two_stage"), default=_TE.kind,
                    help="direct: the CNN's torque head; two_stage: the scene head, then an MLP (q, v, scene) -> "
                         "torques fit on sampled states labelled by the teacher itself (no rendering)")
    te.add_argument("--scene-from", default=_TE.scene_from,
                    help="two_stage: take the scene head of this teacher-network file "
                                                     "(default: fit one on --episodes rollouts, --epochs)")
    te.add_argument("--policy-episodes", type=positive_int, default=_TE.policy_episodes,
                    help="two_stage: sampled rollouts with the policy driving")
    te.add_argument("--teacher-episodes", type=positive_int, default=_TE.teacher_episodes,
                    help="two_stage: sampled rollouts with the teacher driving")
    te.add_argument("--copies", type=int, default=_TE.copies, help="two_stage: perturbed copies per sampled state")
    te.add_argument("--mlp-epochs", type=positive_int, default=_TE.mlp_epochs,
                    help="two_stage: epochs of the torque MLP")
    te.add_argument("--scene-only", action="store_true",
                    help="two_stage without --scene-from: fit the scene head on the scene loss alone")
    te.add_argument("--scene-filters", type=positive_int, default=_TE.scene_filters,
                    help="two_stage without --scene-from: first-layer filters of the scene head's CNN")
    te.add_argument("--scene-clean", type=int, default=_TE.scene_clean,
                    help="two_stage without --scene-from: extra rollouts per condition without exploration")
    te.add_argument("--stage2-from", default=_TE.stage2_from,
                    help="two_stage: keep the torque MLP of this two-stage file (no sampling, no MLP fit)")
    te.add_argument("--holdout-episodes", type=int, default=_TE.holdout_episodes,
                    help="two_stage: held-out rendered episodes per condition (default: 15 %% of --episodes)")
    te.add_argument("--threads", type=positive_int, default=_TE.threads)
    te.add_argument("--seed", type=int, default=_TE.seed)
    te.set_defaults(func=run_teacher)
    v = s.add_parser("validate", help="run the policy from the situations of found states and from random ones",
                     description="Decode the place (and door angle) of each found state with the teacher network, "
                                 "put the simulation there and run the policy for full episodes; the same number "
                                 "of episodes from random starts is the baseline. Writes a JSON with both failure "
                                 "rates.")
    v.add_argument("--policy", required=True, help=_WEIGHTS_HELP)
    v.add_argument("--teacher", required=True, help="teacher network of the task (states teacher): decodes the scene")
    v.add_argument("--states", required=True, help="states.npz of `states find` (or its folder)")
    v.add_argument("--task", default=_VA.task, help="simulation task (default: the teacher network's)")
    v.add_argument("--episodes", type=positive_int, default=_VA.episodes,
                   help="episodes per start kind, found and random each")
    v.add_argument("--starts", default=_VA.starts, help="state (the found arm state) and/or place (start pose)")
    v.add_argument("--steps", type=positive_int, default=_VA.steps,
                   help="steps per episode (default: the task's horizon)")
    v.add_argument("--threads", type=positive_int, default=_VA.threads)
    v.add_argument("--seed", type=int, default=_VA.seed)
    v.add_argument("--json", default=_VA.json,
                   help="output JSON (default: validate.json next to the states; never overwritten)")
    v.set_defaults(func=run_validate)
    b = s.add_parser("bench", help="cost of training a state model and of the search per state, on this machine")
    b.add_argument("--policy", required=True, help=_WEIGHTS_HELP)
    b.add_argument("--generator", default="", help="a trained state model of the policy: also time the search")
    b.add_argument("--task", default="", help="simulation task (default: the weights file's name when it is a task)")
    b.add_argument("--episodes", type=positive_int, default=1, help="rollouts per condition for the timed states")
    b.add_argument("--epochs", type=positive_int, default=2, help="training epochs timed")
    b.add_argument("--targets", default="torque_norm:max,saturation,image_share:min,sensitivity:max")
    b.add_argument("--n", type=positive_int, default=4, help="search starts (batched)")
    b.add_argument("--steps", type=positive_int, default=50, help="search steps timed")
    b.add_argument("--threads", type=positive_int, default=1)
    b.add_argument("--json", default="", help="also write the numbers to this JSON file (never overwritten)")
    b.set_defaults(func=run_bench)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _policy(arg: str) -> Path:
    """The weights file of --policy (a file, or a task's shipped weights), loaded once to check it."""
    from ..resolve import PolicySourceError
    from .checks import policy_arg

    src = policy_arg(arg, "--policy", accept=("weights", "task"))
    try:
        src.load()
    except PolicySourceError as e:
        raise UsageError(str(e)) from e
    return src.weights


def run_train(args) -> int:
    from ..states.teacher import TeacherModelError
    from ..states.options import options_from
    from ..states.train import train_state_model
    from .checks import input_file, input_path, writable_file

    w = _policy(args.policy)
    if args.region > 1:
        raise UsageError(f"--region {args.region}: a share between 0 and 1")
    if Path(args.out).exists():
        raise UsageError(f"{args.out} exists; choose another --out (a state model is never overwritten)")
    if args.bag:
        input_path(args.bag, "--bag")
    writable_file(args.out, "--out", {"--policy": w, "--bag": args.bag or None})
    if args.attention != "none":
        from ..attribution import METHODS

        if args.attention not in METHODS:
            raise UsageError(f"--attention {args.attention!r}: choose none or one of {', '.join(METHODS)}")
    scene = str(input_file(args.scene_teacher, "--scene-teacher file")) if args.scene_teacher else ""
    opt = options_from(TrainOptions, args, policy=str(w), scene_teacher=scene)
    try:
        r = train_state_model(opt)
    except TeacherModelError as e:
        raise UsageError(f"--scene-teacher: {str(e).splitlines()[0]}") from e
    except (ValueError, FileExistsError) as e:
        raise UsageError(str(e).splitlines()[0]) from e
    b, a = r["before"], r["after"]
    print(f"trained on {r['train_states']} states ({r['held_out_states']} held out) in {r['train_s']:.1f} s "
          f"(+ {r['attention_s']:.1f} s of {r['attention']} maps) -> {r['file']}")
    print(f"held-out reconstruction: pixel RMSE {b['pixel_rmse_255']:.1f} -> {a['pixel_rmse_255']:.1f} (0-255), "
          f"configuration RMSE {b['config_rmse']:.3f} -> {a['config_rmse']:.3f} (normalised), perception error "
          f"(max_j |d tau_j|) RMS {b['torque_err_rms_nm']:.2f} -> {a['torque_err_rms_nm']:.2f} N·m")
    if "scene_rmse" in a:
        print("scene read from the reconstructions vs the originals (RMS): "
              + ", ".join(f"{k} {b['scene_rmse'][k]:.4f} -> {v:.4f}" for k, v in a["scene_rmse"].items()))
    return 0


def run_teacher(args) -> int:
    from ..states.options import options_from
    from ..states.teacher import TeacherModelError, train_teacher
    from .checks import input_file, writable_file

    w = _policy(args.policy)
    if args.region > 1 or args.beta > 1:
        raise UsageError("--region and --beta are shares between 0 and 1")
    if Path(args.out).exists():
        raise UsageError(f"{args.out} exists; choose another --out (a teacher network is never overwritten)")
    writable_file(args.out, "--out", {"--policy": w})
    if args.kind == "two_stage" and args.residual:
        raise UsageError("--residual is for --kind direct (the two-stage network predicts the teacher's torques)")
    if args.copies < 0:
        raise UsageError("--copies must be 0 or more")
    if args.scene_clean < 0 or args.holdout_episodes < 0:
        raise UsageError("--scene-clean and --holdout-episodes must be 0 or more")
    if args.kind != "two_stage" and (args.stage2_from or args.scene_only):
        raise UsageError("--stage2-from and --scene-only are for --kind two_stage")
    scene_from = str(input_file(args.scene_from, "--scene-from file")) if args.scene_from else ""
    stage2_from = str(input_file(args.stage2_from, "--stage2-from file")) if args.stage2_from else ""
    opt = options_from(TeacherOptions, args, policy=str(w), scene_from=scene_from, stage2_from=stage2_from)
    try:
        r = train_teacher(opt)
    except (TeacherModelError, ValueError, FileExistsError) as e:
        raise UsageError(str(e).splitlines()[0]) from e
    h = r["held_out"] or r["train"]
    print(f"{r['train_states']} training states ({r['held_out_states']} held out, whole episodes), rollouts "
          f"{r['rollout_s']:.1f} s, fit {r['fit_s']:.1f} s -> {r['file']}")
    print(f"held out: teacher torque RMSE {h['torque_rmse_nm']:.2f} N·m ({h['torque_rmse_per_limit']:.3f} of the "
          f"limits; the teacher's torques: RMS {h['teacher_torque_rms_per_limit']:.3f}); scene RMSE "
          + ", ".join(f"{k} {v:.4f}" for k, v in h["scene_rmse"].items())
          + f"; gap: Pearson r {h['gap_pearson_r']:.3f}, RMSE {h['gap_rmse']:.4f} "
          f"(true median {h['gap_true_median']:.4f})")
    return 0


def run_validate(args) -> int:
    from ..states.options import options_from
    from ..states.validate import validate_file
    from .checks import input_file, input_path, writable_file

    w = _policy(args.policy)
    t = input_file(args.teacher, "--teacher file")
    sp = input_path(args.states, "--states")
    if sp.is_dir():
        sp = sp / "states.npz"
        input_file(sp, "--states file")
    out = Path(args.json) if args.json else sp.with_name("validate.json")
    if out.exists():
        raise UsageError(f"{out} exists; choose another --json")
    writable_file(out, "--json", {"--policy": w, "--teacher": t, "--states": sp})
    opt = options_from(ValidateOptions, args, policy=str(w), teacher=str(t), states=str(sp), json=str(out))
    try:
        r = validate_file(opt, log=print)
    except (ValueError, FileExistsError) as e:
        raise UsageError("--" + str(e).splitlines()[0] if str(e).startswith(("starts ", "task ", "states "))
                         else str(e).splitlines()[0]) from e
    for s_ in r["starts_run"]:
        f, rnd = r[s_]["found"], r[s_]["random"]
        print(f"{s_} starts: failure rate from the found states {f['failure_rate']:.2f} "
              f"({f['failures']}/{f['episodes']}; teacher {f['teacher_failure_rate']:.2f}), from random starts "
              f"{rnd['failure_rate']:.2f} ({rnd['failures']}/{rnd['episodes']}; teacher "
              f"{rnd['teacher_failure_rate']:.2f}); true teacher gap at the start (median) "
              f"{f['true_gap_at_start_median']:.3f} vs {rnd['true_gap_at_start_median']:.3f}")
    print("teacher gap along one policy episode per named place (network mean / true mean, success): "
          + ", ".join(f"{k} {v['gap_net_mean']:.3f}/{v['gap_true_mean']:.3f} {'ok' if v['success'] else 'FAIL'}"
                      for k, v in r["places"].items()))
    print(f"decoded places, nearest named place: {r['decoded']['nearest_place_counts']} -> {r['json']}")
    return 0


def run_find(args) -> int:
    from ..states.find import find
    from ..states.options import options_from
    from ..states.model import StateModelError
    from ..states.search import TargetError
    from .checks import input_file

    w = _policy(args.policy)
    g = input_file(args.generator, "--generator file")
    if args.target.startswith("teacher_gap") and not args.teacher:
        raise UsageError("--target teacher_gap:max needs --teacher FILE (make one with `policy-xai states teacher`)")
    if args.teacher:
        input_file(args.teacher, "--teacher file")
    if args.real_region > 1:
        raise UsageError(f"--real-region {args.real_region}: a share between 0 and 1")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} is not an empty folder; choose another")
    opt = options_from(FindOptions, args, policy=str(w), generator=str(g), out=str(out))
    try:
        s = find(opt)
    except (StateModelError, TargetError, ValueError, FileExistsError) as e:
        raise UsageError(str(e).splitlines()[0]) from e
    r = s["real"]["percentiles"]
    print(f"{s['target']}: found median {s['found']['median']:.4g} (from {s['found']['start_median']:.4g} at the "
          f"starts), best {s['found']['best']:.4g}; real states ({s['real']['states']}): median {r['50']:.4g}, "
          f"1-99 % {r['1']:.4g} .. {r['99']:.4g}")
    rl = s["realism"]
    import numpy as np

    print(f"realism: nearest real state RMS median {np.median(rl['nearest_real_rms']):.3f} (real to real "
          f"{rl['real_to_real_rms_median']:.3f}); perception error median "
          f"{np.median(rl['perception_err_nm_found']):.2f} "
          f"N·m (real {rl['perception_err_nm_real_median']:.2f}); the target on real states' reconstructions "
          f"{rl['target_reconstructed_median']:.4g} (on the real states {rl['target_real_median']:.4g})")
    if "naive" in s and "median" in s["naive"]:
        print(f"naive pixel search: median {s['naive']['median']:.4g}, nearest real RMS median "
              f"{np.median(s['naive']['nearest_real_rms']):.3f}, perception error median "
              f"{np.median(s['naive']['perception_err_nm']):.2f} N·m")
    print(f"search {s['seconds']['per_state']:.2f} s per state -> {out}/ (states.npz, summary.json, grid.png)")
    return 0


def run_bench(args) -> int:
    import json

    from ..states.bench import bench_states
    from ..states.model import StateModelError
    from ..states.search import TargetError
    from .checks import input_file

    w = _policy(args.policy)
    if args.generator:
        input_file(args.generator, "--generator file")
    if args.json and Path(args.json).exists():
        raise UsageError(f"{args.json} exists; choose another --json")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    try:
        out = bench_states(str(w), args.generator, args.task, args.episodes, args.epochs, targets, args.n, args.steps,
                           threads=args.threads)
    except (StateModelError, TargetError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from e
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
