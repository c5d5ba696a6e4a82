"""`policy-xai explain`: offline explanation of a policy on recorded or generated observations."""
from __future__ import annotations

import argparse

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
    p.add_argument("--policy", default="small", help=f"the policy: {SOURCE_HELP} (default: small, untrained)")
    p.add_argument("--inputs", default="synthetic", help="'synthetic' or an .npz recording (see above)")
    p.add_argument("--steps", type=positive_int, default=40, help="number of generated observations (synthetic inputs)")
    p.add_argument("--methods", default="dtd,rap,gbp", help="comma-separated: dtd,rap,gbp,gradient,gradcam,...")
    p.add_argument("--robot", default="none",
                   help="robot model for importance factors: a shipped name (baxter_right_arm, two_link_arm), "
                        "a URDF path, or 'none' (alpha = 1)")
    p.add_argument("--dt", type=positive_float, default=0.05, help="control period for the importance factors [s]")
    p.add_argument("--batch", type=positive_int, default=16, help="observations per batch")
    p.add_argument("--layer", type=nonnegative_int, default=0, help="conv layer of the Grad-CAM family")
    p.add_argument("--normalize", choices=("frame", "video"), default="frame",
                   help="heatmap colour scale: per frame, or one scale for the whole video")
    p.add_argument("--panels", type=nonnegative_int, default=4, help="how many Fig. 3 style panels to draw")
    p.add_argument("--seed", type=int, default=0)
    add_device_option(p)
    p.add_argument("--out", default="out/explain", help="output folder")
    p.set_defaults(func=run)


def load_robot_arg(name: str):
    if name in ("", "none", None):
        return None
    from pathlib import Path

    from ..robot.model import RobotModel

    return RobotModel(name) if Path(name).is_file() else RobotModel.from_name(name)


def run(args: argparse.Namespace) -> int:
    import csv
    import json
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from .. import figures
    from ..analysis import alphas_for, explain_sequence, rank_consistency, ratio_table, summary_stats
    from ..attribution import CAM_METHODS, parse_methods
    from ..live import config_feature_names

    from . import checks

    methods = parse_methods(args.methods)
    device = checks.device_arg(args.device)
    out = Path(args.out)
    inputs = checks.policy_and_recording(args.inputs, args.policy, "--policy weights file")
    source = checks.policy_arg(args.policy)
    if args.robot not in ("", "none") and Path(args.robot).is_file():
        inputs["--robot URDF"] = args.robot
    writes = {n: out / n for n in ("ratios.csv", "summary.json", "fig4_ratios.png", "fig5_curves.png", "heatmaps")}
    writes.update({f"heatmap_{m}.mp4": out / f"heatmap_{m}.mp4" for m in methods})
    checks.guard_outputs(inputs, out, writes)
    policy = source.load(seed=args.seed, device=device)
    checks.writable_dir(out)
    spec = policy.spec
    times = alphas = None
    if args.inputs == "synthetic":
        from ..synthetic import synthetic_observations

        images, configs = synthetic_observations(spec, args.steps, seed=args.seed)
    else:
        path = Path(args.inputs)
        if not path.is_file():
            raise FileNotFoundError(f"no such recording: {path}")
        try:
            data = np.load(path)
            images, configs = data["images"], data["configs"]
        except (KeyError, ValueError, OSError) as e:
            raise ValueError(f"{path}: needs arrays 'images' (N,H,W,3 uint8) and 'configs' (N,D): {e}") from e
        times = data["times"] if "times" in data else None
        alphas = data["alphas"] if "alphas" in data else None
    if len(images) == 0:
        raise ValueError(f"{args.inputs}: the recording holds no observations")
    robot = load_robot_arg(args.robot)
    if alphas is None and robot is not None:
        alphas = alphas_for(robot, spec, np.asarray(configs, dtype=np.float64), args.dt)
    (out / "heatmaps").mkdir(parents=True, exist_ok=True)

    with tqdm(total=len(images), desc=f"explaining ({', '.join(methods)})", unit="step") as bar:
        res = explain_sequence(policy, images, configs, methods, alphas=alphas, batch=args.batch,
                               layer=args.layer, progress=bar.update)
    res.times = np.asarray(times, dtype=float) if times is not None else np.arange(len(res), dtype=float)

    rows = ratio_table(res)
    if rows:
        with open(out / "ratios.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    stats = summary_stats(res)
    consistency = rank_consistency(res)
    names = config_feature_names(spec)
    ratio_methods = [m for m in methods if m not in CAM_METHODS]
    if ratio_methods:
        figures.ratio_bars(out / "fig4_ratios.png", {m: stats[m] for m in ratio_methods},
                           title=f"relevance ratios ({spec.name}, {len(res)} steps)")
        first = res.methods[ratio_methods[0]]
        figures.ratio_curves(out / "fig5_curves.png", res.times, {m: res.methods[m].ratios for m in ratio_methods},
                             first.ratio_names, title="relevance ratio over time")
    idx = np.linspace(0, len(res) - 1, num=min(args.panels, len(res))).round().astype(int)
    for m in methods:
        ser = res.methods[m]
        for i in idx:
            figures.explanation_panel(out / "heatmaps" / f"step{i:04d}_{m}.png", images[i], ser.image[i],
                                      ser.config[i], res.feature_points[i], ser.points[i], spec.group_slices(),
                                      names, title=f"{m}, step {i}")
        figures.heatmap_video(out / f"heatmap_{m}.mp4", np.asarray(images), ser.image, res.feature_points,
                              normalize=args.normalize)
    summary = {"policy": args.policy, "spec": spec.name, "steps": len(res), "methods": methods, "device": str(device),
               "alpha": "robot model " + args.robot if alphas is not None else "1 (no robot model)",
               "ratios_mean_std": stats, "method_rank_consistency": consistency}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"explained {len(res)} steps of policy {spec.name!r} with {', '.join(methods)} -> {out}/")
    for m, st in stats.items():
        img, cfg = st["image:configuration"]
        groups = "  ".join(f"{g} {v[0]:.2f}±{v[1]:.2f}" for g, v in st.items() if ":" not in g)
        print(f"  {m:9s} image:configuration = {100 * img:.0f}:{100 * cfg:.0f}   {groups}")
    for pair, per in consistency.items():
        print(f"  rank consistency {pair}: " + "  ".join(f"{g} {v:+.2f}" for g, v in per.items()))
    return 0
