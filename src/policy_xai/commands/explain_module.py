"""`policy-xai explain-model`: explain a user's policy (package.module:factory + weights, or a
torch.export .pt2 program) on recorded observations, through a YAML observation mapping
(library: policy_xai.user_policy, the graph engine policy_xai.attribution.graph)."""
from __future__ import annotations

import argparse

from .checks import (UsageError, add_device_option, nonnegative_float, nonnegative_int, positive_float,
                     positive_int)

#: graph-engine methods that give relevance ratios per input (the Grad-CAM family does not)
RATIO_METHODS = ("dtd", "rap", "gradient", "gbp", "ig", "ig_median", "ig_occlusion")


def register(sub) -> None:
    p = sub.add_parser(
        "explain-model",
        help="explain your own PyTorch policy (module:factory + weights, or .pt2) on an .npz of observations",
        description=(
            "Loads a policy from package.module:factory (plus --weights: .safetensors or a torch state_dict, read "
            "with weights_only=True) or from a torch.export program (.pt2), checks it against the observation "
            "mapping (--mapping YAML: observation names -> topics and kinds, and the actions; "
            "config/user_policy_example.yaml), explains every step of --observations (an .npz with one array "
            "per observation name, leading axis = steps: images T x H x W x 3 uint8, vectors T x n) or of "
            "--bag (the mapping's topics read from a rosbag2 recording, paired by stamp as the live node "
            "pairs them) and "
            "writes into --out (new or empty): ratios.csv (step, stamp_ns, input, group, ratio: each input's share of "
            "the relevance, rows with an empty group sum to 1 per step; then each named group of a vector "
            "input), relevance.npz (per input, the relevance in the model input's layout, T x ...) and "
            "summary.json (outputs, alpha). alpha: the mapping's actions.alpha, else 1; joint torques can "
            "take per-step importance factors from a robot model instead (--robot)."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="package.module:factory, or a .pt2 file (torch.export.save)")
    p.add_argument("--weights", default=None, help="weights for the factory's model: .safetensors or a state_dict file")
    p.add_argument("--factory-kwargs", default=None, metavar="JSON",
                   help='keyword arguments for the factory as a JSON object, e.g. \'{"width": 4}\'')
    p.add_argument("--mapping", required=True, help="observation mapping (YAML)")
    p.add_argument("--observations", default="", help=".npz: observation name -> (steps, ...) array")
    p.add_argument("--bag", default="",
                   help="a rosbag2 folder or file instead of --observations: the mapping's topics, decoded and paired "
                        "by stamp as the user_policy_node does")
    b = p.add_argument_group("--bag reading (the user_policy_node's defaults)")
    b.add_argument("--resize", action="store_true", help="resize images of another size to the mapping's")
    b.add_argument("--sync-tolerance", type=nonnegative_float, default=0.02,
                   help="s between the stamps of the mapped topics")
    b.add_argument("--start", type=nonnegative_float, default=0.0, help="skip the first START s of the bag")
    b.add_argument("--duration", type=nonnegative_float, default=0.0, help="read DURATION s (0: to the end)")
    b.add_argument("--max-steps", type=nonnegative_int, default=0, help="at most this many steps (0: all)")
    p.add_argument("--method", default="dtd", help=f"one of {', '.join(RATIO_METHODS)}")
    p.add_argument("--robot", default="none",
                   help="for joint-torque actions (actions.kind: torques): a robot model (shipped name, e.g. "
                        "baxter_right_arm, or a URDF) whose dynamics give per-step importance factors from the "
                        "state's joint positions; 'none': the mapping's actions.alpha, else 1")
    p.add_argument("--dt", type=positive_float, default=0.05, help="control period for the importance factors [s]")
    p.add_argument("--batch", type=positive_int, default=8, help="steps per batch")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    add_device_option(p)
    p.add_argument("--out", required=True, help="output folder (new or empty; nothing is overwritten)")
    p.set_defaults(func=run)


def _factory_kwargs(text):
    import json

    if text is None:
        return None
    try:
        kw = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--factory-kwargs: not valid JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(kw, dict):
        raise UsageError(f"--factory-kwargs: expected a JSON object {{\"name\": value, ...}}, got {text!r}")
    return kw


def run(args) -> int:
    from pathlib import Path

    from . import checks
    from ..bags.common import BagError
    from ..user_policy import UserPolicyError

    if args.method not in RATIO_METHODS:
        raise UsageError(f"--method {args.method!r}: choose from {', '.join(RATIO_METHODS)} (methods with relevance "
                         "ratios)")
    if bool(args.observations) == bool(args.bag):
        raise UsageError("give the observations as --observations FILE.npz or --bag BAG (one of the two)")
    kwargs = _factory_kwargs(args.factory_kwargs)
    dev = checks.device_arg(args.device)
    mapping_path = checks.input_file(args.mapping, "--mapping")
    inputs = {"--mapping": mapping_path}
    if args.observations:
        inputs["--observations"] = obs_path = checks.input_file(args.observations, "--observations")
    else:
        checks.input_path(args.bag, "--bag")
        inputs["--bag"] = obs_path = checks.bag_root(args.bag)
    if args.weights:
        inputs["--weights"] = checks.input_file(args.weights, "--weights")
    if args.model.endswith(".pt2"):
        inputs["--model"] = checks.input_file(args.model, "--model")
    out = Path(args.out)
    checks.guard_outputs(inputs, out_dir=out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose a new one (nothing is overwritten)")

    import torch

    from ..user_live import UserLive
    from ..user_policy import load_mapping, load_user_policy
    from ..user_policy import recording as rc

    torch.set_num_threads(args.threads)
    try:
        model = load_user_policy(args.model, args.weights, kwargs).to(dev)  # moved once; inputs made there
        mapping = load_mapping(mapping_path, model)
        if args.observations:
            rec = rc.observations_from_npz(obs_path, mapping)
        else:
            opts = rc.BagReadOptions(resize=args.resize, sync_tolerance=args.sync_tolerance, start=args.start,
                                     duration=args.duration, max_steps=args.max_steps)
            rec = rc.observations_from_bag(args.bag, UserLive(model, mapping, dev, explainer=model), opts)
        mapping.to_batch({k: v[:1] for k, v in rec.data.items()})  # shapes checked before any work
    except (UserPolicyError, BagError) as e:
        raise UsageError(str(e)) from None
    for reason, n in rec.skipped.items():
        print(f"warning: skipped {n} message(s): {reason}")
    alpha = None
    if args.robot not in ("", "none"):
        from ..robot.errors import RobotInputError
        from ..jobs.explain import load_robot_arg

        if mapping.action_alpha is not None:
            raise UsageError("--robot and the mapping's actions.alpha both give alpha; drop one")
        try:
            alpha = mapping.torque_alpha(load_robot_arg(args.robot), rec.data, dt=args.dt)
        except (UserPolicyError, RobotInputError) as e:
            raise UsageError(f"--robot {args.robot}: {e}") from None
    checks.writable_dir(out)
    result = rc.explain_recording(model, mapping, rec, args.method, alpha, args.batch, dev, progress=True)
    about = {"model": args.model, "weights": args.weights, "factory_kwargs": kwargs, "mapping": str(mapping_path),
             "observations": str(obs_path), "device": str(dev), "robot": None if alpha is None else args.robot}
    summary = rc.write_report(out, rec, result, mapping, about)
    print(f"explain-model: {rec.steps} steps, {args.method}; mean ratio "
          + ", ".join(f"{n} {v:.3f}" for n, v in summary["mean_ratio"].items()))
    print(f"(ratios.csv, relevance.npz and summary.json in {out})")
    return 0
