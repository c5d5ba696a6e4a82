"""The offline explanation of a policy on recorded (.npz) or generated observations, behind `policy-xai
explain` (policy_xai.commands.explain is its argparse adapter) and `demo --offline`:

    from policy_xai.jobs import ExplainOptions, explain_recording
    job = explain_recording(ExplainOptions(inputs="rec.npz", robot="baxter_right_arm", out="out/x"))
    print("\\n".join(job.lines))

writes into `out` (policy_xai.report): ratios.csv, summary.json, fig4_ratios.png, fig5_curves.png,
heatmaps/ (Fig. 3 style panels) and heatmap_<method>.mp4. An .npz recording holds images
(N,H,W,3 uint8), configs (N,D) and optionally times (N,) and alphas (N,J).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..report import JobReport


@dataclass
class ExplainOptions:
    """Every option of the offline explanation; the defaults are `policy-xai explain`'s."""

    policy: str = "small"  # policy_xai.resolve: weights file, spec (random network) or task name
    inputs: str = "synthetic"  # 'synthetic' or an .npz recording
    steps: int = 40  # generated observations (synthetic inputs)
    methods: str = "dtd,rap,gbp"  # comma-separated
    robot: str = "none"  # importance factors: a shipped robot name, a URDF path or 'none' (alpha = 1)
    dt: float = 0.05  # control period for the importance factors [s]
    batch: int = 16  # observations per batch
    layer: int = 0  # conv layer of the Grad-CAM family
    normalize: str = "frame"  # heatmap colour scale: frame | video
    panels: int = 4  # Fig. 3 style panels to draw
    seed: int = 0
    device: str = "cpu"
    out: Union[str, Path] = "out/explain"


def load_robot_arg(name: Optional[str]):
    """The RobotModel of a robot option: a URDF path or a shipped name; None for '' / 'none'."""
    if name in ("", "none", None):
        return None
    from ..robot.model import RobotModel

    return RobotModel(name) if Path(name).is_file() else RobotModel.from_name(name)


def load_recording(inputs: str, spec, steps: int, seed: int):
    """(images, configs, times or None, alphas or None) of `inputs`: generated for 'synthetic', else
    read from the .npz file."""
    import numpy as np

    if inputs == "synthetic":
        from ..synthetic import synthetic_observations

        images, configs = synthetic_observations(spec, steps, seed=seed)
        return images, configs, None, None
    path = Path(inputs)
    if not path.is_file():
        raise FileNotFoundError(f"no such recording: {path}")
    try:
        data = np.load(path)
        images, configs = data["images"], data["configs"]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: needs arrays 'images' (N,H,W,3 uint8) and 'configs' (N,D): {e}") from e
    return (images, configs, data["times"] if "times" in data else None,
            data["alphas"] if "alphas" in data else None)


def explain_recording(o: ExplainOptions, quiet: bool = False) -> JobReport:
    """The explanation of o.inputs by o.policy (see the module's doc); the report's summary and its
    printed lines. Errors: UsageError (options that cannot work, checked before any work),
    FileNotFoundError / ValueError (a recording that cannot be read, an unknown method)."""
    import numpy as np
    from tqdm import tqdm

    from .. import checks
    from ..analysis import alphas_for, explain_sequence, rank_consistency, summary_stats
    from ..attribution import parse_methods
    from ..report import Curves, Episode, ReportWriter, panel_steps, rank_lines, ratio_lines, ratio_methods

    methods = parse_methods(o.methods)
    device = checks.device_arg(o.device)
    out = Path(o.out)
    inputs = checks.policy_and_recording(o.inputs, o.policy, "--policy weights file")
    source = checks.policy_arg(o.policy)
    if o.robot not in ("", "none") and Path(o.robot).is_file():
        inputs["--robot URDF"] = o.robot
    writes = {n: out / n for n in ("ratios.csv", "summary.json", "fig4_ratios.png", "fig5_curves.png", "heatmaps")}
    writes.update({f"heatmap_{m}.mp4": out / f"heatmap_{m}.mp4" for m in methods})
    checks.guard_outputs(inputs, out, writes)
    policy = source.load(seed=o.seed, device=device)
    checks.writable_dir(out)
    spec = policy.spec
    images, configs, times, alphas = load_recording(o.inputs, spec, o.steps, o.seed)
    if len(images) == 0:
        raise ValueError(f"{o.inputs}: the recording holds no observations")
    robot = load_robot_arg(o.robot)
    if alphas is None and robot is not None:
        alphas = alphas_for(robot, spec, np.asarray(configs, dtype=np.float64), o.dt)
    report = ReportWriter(out)
    (out / "heatmaps").mkdir(parents=True, exist_ok=True)

    with tqdm(total=len(images), desc=f"explaining ({', '.join(methods)})", unit="step", disable=quiet) as bar:
        res = explain_sequence(policy, images, configs, methods, alphas=alphas, batch=o.batch, layer=o.layer,
                               progress=bar.update)
    res.times = np.asarray(times, dtype=float) if times is not None else np.arange(len(res), dtype=float)

    report.ratios([Episode(None, res)])
    stats = summary_stats(res)
    consistency = rank_consistency(res)
    ratio_ms = ratio_methods(methods)
    if ratio_ms:
        report.fig4(stats, ratio_ms, title=f"relevance ratios ({spec.name}, {len(res)} steps)")
        report.fig5(Curves(res.times, {m: res.methods[m].ratios for m in ratio_ms},
                           res.methods[ratio_ms[0]].ratio_names, title="relevance ratio over time"))
    report.panels("heatmaps", "", images, res, methods, panel_steps(len(res), o.panels), spec)
    for m in methods:
        report.video(f"heatmap_{m}.mp4", images, res.methods[m].image, res.feature_points, normalize=o.normalize)
    summary = {"policy": o.policy, "spec": spec.name, "steps": len(res), "methods": methods, "device": str(device),
               "alpha": "robot model " + o.robot if alphas is not None else "1 (no robot model)",
               "ratios_mean_std": stats, "method_rank_consistency": consistency}
    report.summary(summary)
    lines = [f"explained {len(res)} steps of policy {spec.name!r} with {', '.join(methods)} -> {out}/",
             *ratio_lines(stats), *rank_lines(consistency)]
    return JobReport(out, summary, lines, report.files)
