"""The README's main job, behind `policy-xai demo` (policy_xai.commands.demo is its argparse adapter):

    from policy_xai.jobs import DemoOptions, demo
    from policy_xai.ros.pipeline import run_and_report
    rc = demo(DemoOptions(duration=10, out="runs/d"), run_live=run_and_report)

Live (default): the simulated arm, the task's shipped policy, attribution and visualisation run as
separate ROS 2 processes over real DDS for `duration` seconds while every topic is recorded (by
`run_live`, policy_xai.ros.pipeline.run_and_report: the core never imports the ROS layer, the caller
passes it); the recording is then analysed offline
by bags.analyze_bag (the live method, then dtd, rap, gbp) into out/analysis. `offline`: no ROS at
all, the policy explains generated observations (jobs.explain_recording) into `out`.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from ..live_run import LIVE_METHOD, RunOptions


@dataclass
class DemoOptions:
    """Every option of the demo; the defaults are `policy-xai demo`'s."""

    task: str = "reach"  # simulation task, with its shipped policy
    weights: str = ""  # a .safetensors file or a task name ('': the task's shipped weights)
    duration: float = 30.0  # seconds of live running after start-up
    method: str = LIVE_METHOD  # live attribution method
    offline: bool = False  # no ROS: explain generated observations instead
    analyze: bool = True  # the offline analysis of the recording
    out: Optional[Union[str, Path]] = None  # None: runs/demo-<date-time>
    compression: str = RunOptions.compression  # MCAP chunk compression of the recorded and the annotated bag
    device: str = "cpu"  # the nodes' and the offline analysis' device

    def out_dir(self) -> Path:
        return Path(self.out or time.strftime("runs/demo-%Y%m%d_%H%M%S"))


#: what the offline demo explains
OFFLINE_METHODS = "dtd,rap,gbp,gradcam"
OFFLINE_STEPS = 60


def demo(o: DemoOptions, run_live: Optional[Callable[..., int]] = None, on_up: Optional[Callable] = None,
         log: Callable[[str], None] = print) -> int:
    """Run the demo (see the module's doc); the exit code (0, or the live run's: 1 a node exited
    early, 130 interrupted). Checks before any work (UsageError): the weights, --out (nothing the demo
    writes may be an input, an existing analysis/bag must be one analyze wrote). `run_live(RunOptions,
    on_up=on_up) -> exit code` runs the live part (policy_xai.ros.pipeline.run_and_report; not needed
    offline); `on_up(runner)`: see ros.pipeline.live_run."""
    from .. import bags, checks
    from ..live_run import check_live_args
    from ..resolve import PolicySourceError, policy_source
    from ..robot.tasks import get_task

    if not o.offline and run_live is None:
        raise ValueError("the live demo needs run_live (policy_xai.ros.pipeline.run_and_report)")
    out = o.out_dir()
    device = str(checks.device_arg(o.device))
    task = get_task(o.task)
    if o.weights:
        source = checks.policy_arg(o.weights, "--weights", accept=("weights", "task"))
    else:
        try:
            source = policy_source(f"task:{task.name}")
        except PolicySourceError:
            source = None  # no shipped policy: an untrained network of the task's spec (warned below)
    weights = source.weights if source is not None else None
    checks.guard_outputs({"--weights file": weights}, out, {n: out / n for n in ("spec.yaml", "live", "analysis")})
    checks.writable_dir(out)
    if not o.offline:
        check_live_args(out / "live", task.spec, str(weights or ""))
        if o.analyze and (out / "analysis" / "bag").exists() and not bags.is_annotated_bag(out / "analysis" / "bag"):
            raise checks.UsageError(f"--out {out} already holds analysis/bag, which analyze did not write; "
                                    "choose another --out")
    if weights is None:
        print(f"warning: no shipped policy for task {o.task!r}; using an untrained network", file=sys.stderr)
    if o.offline:
        from .explain import ExplainOptions, explain_recording

        job = explain_recording(ExplainOptions(policy=str(weights or f"spec:{task.spec}"), out=out,
                                               methods=OFFLINE_METHODS, robot=task.robot, steps=OFFLINE_STEPS,
                                               device=device))
        for line in job.lines:
            log(line)
        return 0
    return _live(o, out, task, source, weights, device, run_live, on_up, log)


def _live(o: DemoOptions, out: Path, task, source, weights, device: str, run_live, on_up, log) -> int:
    import yaml

    from ..bags.analyze import AnalyzeOptions, analyze_bag

    spec = task.spec
    if source is not None:  # the spec stored with the weights, for every node
        spec_file = out / "spec.yaml"
        spec_file.write_text(yaml.safe_dump(source.load().spec.to_dict(), sort_keys=False))
        spec = str(spec_file)
    live = RunOptions(out=out / "live", duration=o.duration, spec=spec, weights=str(weights or ""), method=o.method,
                      task=o.task, compression=o.compression, device=device)
    rc = run_live(live, on_up=on_up)
    if rc or not o.analyze:
        return rc
    methods = list(dict.fromkeys([o.method, "dtd", "rap", "gbp"]))
    log(f"\nanalysing the recording offline ({', '.join(methods)}) ...")
    analyze_bag(AnalyzeOptions(out / "live" / "bag", out=out / "analysis", policy=str(weights) if weights else spec,
                               methods=",".join(methods), compression=o.compression, device=device))
    log(f"\ndemo outputs in {out}/: live/ (bag, heatmap.mp4, ratios.png, summary.json) and analysis/ "
        "(fig4_ratios.png, fig5_curves.png, heatmap_*.mp4, ratios.csv/parquet, annotated bag)")
    return 0
