"""`policy-xai explainer`: train the occlusion explainer network of a policy (the live default method's
model), from simulated rollouts of that policy (library: policy_xai.faithfulness.explainers)."""
from __future__ import annotations

from pathlib import Path

from ..robot.tasks import task_names
from .checks import UsageError, add_device_option, device_arg, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "explainer", help="train the occlusion explainer network of a policy (for the 'occlusion_net' methods)",
        description=(
            "Rolls the policy out in the task's simulation, computes the dense occlusion map of every kept "
            "state (the teacher: the torque change when each small window is painted out) and trains a small "
            "network to predict it from the image. Writes <weights>.explainer.safetensors next to the weights "
            "(load_policy then attaches it). About 20-25 minutes per task with the defaults on 2 cores."))
    p.add_argument("--task", required=True, help=f"simulation task the policy runs ({', '.join(task_names())})")
    p.add_argument("--policy", required=True,
                   help="policy weights: a .safetensors file, or a task name for its shipped weights")
    p.add_argument("--out", default=None, help="explainer file (default: <weights stem>.explainer.safetensors)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="rollout seeds (not 0: held out)")
    p.add_argument("--episodes", type=positive_int, default=3, help="episodes per task condition and seed")
    p.add_argument("--every", type=positive_int, default=3, help="keep every n-th control step")
    p.add_argument("--states", type=positive_int, default=400, help="at most this many training states")
    p.add_argument("--epochs", type=positive_int, default=60)
    p.add_argument("--sizes", type=float, nargs="+", default=None,
                   help="teacher window sides in pixels at 64x64 (default 3 4 8)")
    p.add_argument("--seed", type=int, default=0, help="student initialisation seed")
    p.add_argument("--threads", type=positive_int, default=1)
    add_device_option(p, "torch device of the policy (rollouts, teacher maps) and of the student's training: cpu "
                         "(default), cuda, cuda:N or mps; checked before any work starts")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..attribution.amortised import explainer_path_for
    from ..resolve import PolicySourceError
    from .checks import policy_arg, writable_dir

    if args.task not in task_names():
        raise UsageError(f"--task {args.task!r}: choose from {', '.join(task_names())}")
    if 0 in args.seeds:
        raise UsageError("--seeds: 0 is the held-out seed `policy-xai faithfulness` measures on; choose others")
    if args.sizes is not None and any(s < 1 for s in args.sizes):
        raise UsageError("--sizes: window sides are >= 1 pixel")
    device = str(device_arg(args.device))
    source = policy_arg(args.policy, "--policy", accept=("weights", "task"))
    weights = source.weights
    out = Path(args.out) if args.out else explainer_path_for(weights)
    if out.exists():
        raise UsageError(f"{out} exists: remove it or choose another --out (an explainer is never overwritten)")
    writable_dir(out.parent, "--out folder")
    try:
        source.load()
    except PolicySourceError as e:
        raise UsageError(str(e)) from e
    import torch

    from ..faithfulness.explainers import TrainOptions, train_task_explainer

    torch.set_num_threads(args.threads)
    opt = TrainOptions(task=args.task, policy=str(weights), out=str(out), seeds=tuple(args.seeds),
                       episodes=args.episodes, every=args.every, max_states=args.states, epochs=args.epochs,
                       sizes=args.sizes, seed=args.seed, device=device)
    res = train_task_explainer(opt, log=lambda s: print(s, flush=True))
    print(f"explainer for {weights.name}: {res['file']} ({res['states']} states, teacher "
          f"{res['teacher_s_per_state']:.2f} s/state, training {res['train_s']:.0f} s)")
    return 0
