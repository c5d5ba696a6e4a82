"""`policy-xai explain-model`: explain a user's policy (package.module:factory + weights, or a
torch.export .pt2 program) on recorded observations, through a YAML observation mapping
(library: policy_xai.user_policy, the graph engine policy_xai.attribution.graph)."""
from __future__ import annotations

import argparse

from .checks import UsageError, add_device_option, positive_float, positive_int

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
            "per observation name, leading axis = steps: images T x H x W x 3 uint8, vectors T x n) and "
            "writes into --out (new or empty): ratios.csv (step, input, group, ratio: each input's share of "
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
    p.add_argument("--observations", required=True, help=".npz: observation name -> (steps, ...) array")
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


def _observations(path, mapping) -> dict:
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else e
        raise UsageError(f"--observations {path}: not a readable .npz file ({reason})") from None
    missing = [n for n in mapping.names() if n not in data]
    if missing:
        raise UsageError(f"--observations {path} has no {', '.join(missing)} (has {', '.join(data) or 'nothing'}); "
                         f"the mapping needs {', '.join(mapping.names())}")
    steps = {n: data[n].shape[0] if data[n].ndim else 0 for n in mapping.names()}
    if len(set(steps.values())) != 1 or 0 in steps.values():
        raise UsageError(f"--observations {path}: every observation needs the same number (>= 1) of steps on its "
                         f"leading axis, got {', '.join(f'{k} {v}' for k, v in steps.items())}")
    return {n: data[n] for n in mapping.names()}


def run(args) -> int:
    import csv
    import json
    from pathlib import Path

    from . import checks
    from ..user_policy import UserPolicyError

    if args.method not in RATIO_METHODS:
        raise UsageError(f"--method {args.method!r}: choose from {', '.join(RATIO_METHODS)} (methods with relevance "
                         "ratios)")
    kwargs = _factory_kwargs(args.factory_kwargs)
    dev = checks.device_arg(args.device)
    mapping_path = checks.input_file(args.mapping, "--mapping")
    obs_path = checks.input_file(args.observations, "--observations")
    inputs = {"--mapping": mapping_path, "--observations": obs_path}
    if args.weights:
        inputs["--weights"] = checks.input_file(args.weights, "--weights")
    if args.model.endswith(".pt2"):
        inputs["--model"] = checks.input_file(args.model, "--model")
    out = Path(args.out)
    checks.guard_outputs(inputs, out_dir=out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose a new one (nothing is overwritten)")

    import numpy as np
    import torch

    from ..user_policy import load_mapping, load_user_policy

    torch.set_num_threads(args.threads)
    try:
        model = load_user_policy(args.model, args.weights, kwargs).to(dev)  # moved once; inputs made there
        mapping = load_mapping(mapping_path, model)
    except UserPolicyError as e:
        raise UsageError(str(e)) from None
    data = _observations(obs_path, mapping)
    T = next(iter(data.values())).shape[0]
    try:
        mapping.to_batch({k: v[:1] for k, v in data.items()})  # shapes checked before any work
    except UserPolicyError as e:
        raise UsageError(str(e)) from None
    alpha = None
    if args.robot not in ("", "none"):
        from ..robot.errors import RobotInputError
        from .explain import load_robot_arg

        if mapping.action_alpha is not None:
            raise UsageError("--robot and the mapping's actions.alpha both give alpha; drop one")
        try:
            alpha = mapping.torque_alpha(load_robot_arg(args.robot), data, dt=args.dt)
        except (UserPolicyError, RobotInputError) as e:
            raise UsageError(f"--robot {args.robot}: {e}") from None
    checks.writable_dir(out)

    from tqdm import tqdm

    rel = {n: [] for n in mapping.names()}
    rows, outputs = [], []
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    device = dev
    with tqdm(total=T, desc=f"explain-model {args.method}", unit="step") as bar:
        for s in range(0, T, args.batch):
            batch = mapping.to_batch({k: v[s:s + args.batch] for k, v in data.items()}, device=device, dtype=dtype)
            kw = {} if alpha is None else {"alpha": alpha[s:s + args.batch]}
            e = mapping.explain(model, batch, method=args.method, **kw)
            B = e.outputs.shape[0]
            for n in mapping.names():
                rel[n].append(e.inputs[n].detach().cpu().numpy())
            outputs.append(e.outputs.detach().cpu().numpy())
            for b in range(B):
                for n in mapping.names():
                    rows.append((s + b, n, "", float(e.ratios[n][b])))
                for key, v in e.group_ratios.items():
                    n, g = key.split("/", 1)
                    rows.append((s + b, n, g, float(v[b])))
            bar.update(B)
    with open(out / "ratios.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "input", "group", "ratio"])
        w.writerows(rows)
    np.savez(out / "relevance.npz", **{n: np.concatenate(v) for n, v in rel.items()})
    y = np.concatenate(outputs)
    n_actions = y.shape[1]
    names = mapping.action_names or [f"action{i}" for i in range(n_actions)]
    summary = {
        "model": args.model, "weights": args.weights, "factory_kwargs": kwargs, "mapping": str(mapping_path),
        "observations": str(obs_path), "method": args.method, "device": str(dev), "steps": int(T), "actions": names,
        "action_kind": mapping.action_kind, "robot": None if alpha is None else args.robot,
        "alpha": mapping.alpha(n_actions).tolist() if alpha is None else alpha.tolist(),
        "inputs": {n: list(mapping.observations[n].shape) for n in mapping.names()},
        "mean_ratio": {n: float(np.nanmean([r[3] for r in rows if r[1] == n and not r[2]])) for n in mapping.names()},
        "outputs": y.tolist(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"explain-model: {T} steps, {args.method}; mean ratio "
          + ", ".join(f"{n} {v:.3f}" for n, v in summary["mean_ratio"].items()))
    print(f"(ratios.csv, relevance.npz and summary.json in {out})")
    return 0
