"""The live pipeline's runs as typed options, and what is checked before any node starts (no ROS here).

    from policy_xai.live_run import RunOptions
    from policy_xai.ros.pipeline import run_pipeline
    summary = run_pipeline(RunOptions(out="runs/r1", duration=30, spec="small", method="dtd"))

`policy-xai run | demo | latency | record` (policy_xai.commands) build these options from their
arguments, whose defaults are the ones declared here (most of them the nodes' parameter defaults,
policy_xai.parameters); the runs themselves (node processes over DDS) are policy_xai.ros.pipeline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from .checks import UsageError
from .parameters import NODES

#: the attribution node's method (a spec's policy), and user_policy_node's (a user's model)
LIVE_METHOD = str(NODES["attribution_node"].parameters["method"])
USER_METHOD = str(NODES["user_policy_node"].parameters["method"])
#: what `policy-xai run` writes into its output folder
RUN_FILES = ("bag", "logs", "heatmap.mp4", "ratios.png", "summary.json")


@dataclass
class UserModel:
    """A user's PyTorch policy, run by user_policy_node instead of the spec's (`run --model`)."""

    model: str  # package.module:factory, or a torch.export program (.pt2)
    mapping: str = "user_policy_sim"  # YAML observation mapping (a path or a shipped config/ name)
    model_kwargs: str = ""  # factory keyword arguments, a JSON object
    split: bool = False  # explain in a user_explainer_node of its own


@dataclass
class RunOptions:
    """One run of the simulated graph (sim, policy, attribution, visualisation + recorder); the
    defaults are `policy-xai run`'s."""

    out: Union[str, Path, None] = None  # None: runs/<date-time> (out_dir)
    duration: float = 20.0  # s to run after the graph is up
    spec: str = str(NODES["attribution_node"].parameters["spec"])  # shipped spec name or YAML file
    weights: str = ""  # trained weights (.safetensors, or the user model's); "": untrained
    method: Optional[str] = None  # None: the node's default (LIVE_METHOD; USER_METHOD for a user's model)
    precision: str = str(NODES["attribution_node"].parameters["precision"])  # float32 | bfloat16
    task: str = str(NODES["sim_node"].parameters["task"])
    image_size: Optional[int] = None  # camera size; None: the spec's input size (the mapping's camera)
    params_file: Optional[str] = None  # parameter file; None: the graph's (config/sim.yaml)
    domain_id: Optional[int] = None  # ROS_DOMAIN_ID; None: a random free-ish one
    device: str = "cpu"  # torch device of every node that runs a network
    compression: str = str(NODES["recorder"].parameters["compression"])  # MCAP chunks of the recorded bag
    video: bool = True  # write heatmap.mp4 (run_pipeline)
    warmup_timeout: float = 90.0  # s to wait for the first heatmap
    user: Optional[UserModel] = None  # a user's model instead of the spec's

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else Path(time.strftime("runs/%Y%m%d_%H%M%S"))

    def live_method(self) -> str:
        return self.method or (USER_METHOD if self.user else LIVE_METHOD)


@dataclass
class RecordOptions:
    """`policy-xai record`: the recorder node alone, into a new bag folder."""

    output: Union[str, Path]
    topics: Sequence[str] = ()  # (): every topic, also ones appearing later
    duration: float = 0.0  # s; 0: until Ctrl-C
    compression: str = str(NODES["recorder"].parameters["compression"])
    domain_id: Optional[int] = None


@dataclass
class LatencyOptions:
    """`policy-xai latency`: a run per configuration (SPEC:SIZE; the spec a name or a weights file)."""

    configs: Sequence[str] = ("small:64", "paper:240")
    duration: float = 20.0  # s measured per configuration
    method: Optional[str] = None  # None: the node's default (LIVE_METHOD; USER_METHOD with a user's model)
    precision: str = RunOptions.precision
    machine_check: float = 8.0  # s of a fixed CPU task at 20 Hz before each configuration (0: skip)
    out: Optional[str] = None  # bags and latency.json; None: a temporary folder
    domain_id: Optional[int] = None  # the first configuration's (the next ones count up); None: random
    device: str = "cpu"
    compression: str = RunOptions.compression
    user: Optional[UserModel] = None  # a user's model in user_policy_node; configs are then camera sizes
    weights: str = ""  # the user model's weights ("": untrained, simulation only)
    repeat: int = 1  # runs per configuration, back to back (each with its machine check): a row each

    def labels(self, config: "LatencyConfig") -> list[str]:
        """The folder of each run of `config` under --out."""
        base = config.label(self.precision)
        return [base] if self.repeat <= 1 else [f"{base}_run{i + 1}" for i in range(self.repeat)]


@dataclass
class LatencyConfig:
    spec: str  # the spec's name
    size: Optional[int]  # camera size; None: the spec's
    weights: str = ""  # a weights file (with its explainer, when there is one)

    def label(self, precision: str) -> str:
        return f"{Path(self.weights).stem if self.weights else self.spec}_{self.size or 'spec'}_{precision}"


def check_live_args(out: Path, spec: str, weights: str = "", params_file=None, image_size=None) -> None:
    """Before anything starts: the spec loads, the weights and parameter files exist, --out is a
    creatable, writable folder that holds no bag/ yet and is none of the inputs."""
    from . import checks
    from .resources import config_path
    from .spec import load_spec

    out = Path(out)
    load_spec(spec)
    inputs = {}
    if Path(spec).is_file():
        inputs["--spec file"] = spec
    if weights:
        inputs["--weights file"] = checks.input_file(weights, "--weights file")
    if params_file:
        inputs["--params-file"] = config_path(params_file)
    checks.guard_outputs(inputs, out, {n: out / n for n in RUN_FILES})
    if (out / "bag").exists():
        raise UsageError(f"--out {out} already holds a bag/ (an earlier run?); choose another --out")
    if image_size is not None and image_size < 8:
        raise UsageError(f"--image-size {image_size} is too small for a camera image")
    checks.writable_dir(out)


def check_user_model(model: str, mapping: str, model_kwargs: str = "", weights: str = "", method: str = USER_METHOD,
                     device: str = "cpu"):
    """--model / --mapping load and fit (and the method explains the model) before any node starts;
    a UsageError with the node's one-line reason otherwise. In simulation a factory model without
    --weights runs untrained (as --spec does). Returns the loaded UserLive."""
    from .user_live import load_live
    from .user_policy import UserPolicyError

    try:
        return load_live(model, mapping, weights=weights, model_kwargs=model_kwargs, allow_untrained=True,
                         method=method, device=device)
    except UserPolicyError as e:
        raise UsageError(str(e)) from None


def prepare_run(opts: RunOptions, log: Callable[[str], None] = print) -> RunOptions:
    """Every check of a run before any node starts (the device, the inputs, the output folder, a
    user's model); the options to run with: out, device and method resolved."""
    from dataclasses import replace

    from .checks import device_arg

    device = str(device_arg(opts.device))  # first: a device torch cannot use is one line, nothing written
    out = opts.out_dir()
    check_live_args(out, opts.spec, opts.weights, opts.params_file, opts.image_size)
    method = opts.live_method()
    if opts.user:
        u = opts.user
        live = check_user_model(u.model, u.mapping, u.model_kwargs, opts.weights, method, device)
        if live.untrained:
            log(f"note: {u.model} runs UNTRAINED (no --weights): random actions, in simulation only")
    return replace(opts, out=out, device=device, method=method)


def user_latency_configs(configs: Sequence[str], user: UserModel, weights: str = "") -> list[LatencyConfig]:
    """With a user's model (`latency --model`): each entry is a camera SIZE (>= 8; "mapping" or the
    shipped default configs: the mapping's camera size), labelled by the model's name."""
    name = Path(str(user.model)).stem if str(user.model).endswith(".pt2") else str(user.model).rsplit(":", 1)[-1]
    out = []
    for cfg in configs:
        text = str(cfg).rpartition(":")[2] if ":" in str(cfg) else str(cfg)
        if cfg in LatencyOptions.configs or text in ("", "mapping"):
            size = None
        else:
            try:
                size = int(text)
            except ValueError:
                size = 0
            if size < 8:
                raise UsageError(f"--configs with --model takes camera sizes >= 8 (or 'mapping'), got {cfg!r}")
        c = LatencyConfig(name, size, str(weights or ""))
        if c not in out:
            out.append(c)
    return out


def latency_configs(configs: Sequence[str]) -> list[LatencyConfig]:
    """SPEC:SIZE entries -> LatencyConfig (SPEC a shipped spec name or YAML, a .safetensors weights
    file or a task name: its shipped weights; SIZE >= 8 or left out: the spec's size); a UsageError
    for one that cannot work."""
    from .spec import load_spec

    out = []
    for cfg in configs:
        spec, _, size = str(cfg).partition(":")
        try:
            n = int(size) if size else None
        except ValueError:
            n = 0
        if n is not None and n < 8:
            raise UsageError(f"--configs takes SPEC:SIZE with a camera size >= 8, got {cfg!r}")
        from .resolve import PolicySourceError, policy_source

        try:  # a spec name or file, a weights file, or a task (its shipped weights)
            src = policy_source(spec, label=f"--configs {cfg!r}")
            if src.weights is not None:  # trained weights (and their explainer, when there is one)
                out.append(LatencyConfig(src.load().spec.name, n, str(src.weights)))
            else:
                out.append(LatencyConfig(load_spec(spec).name if src.spec is None else src.spec.name, n))
        except (PolicySourceError, OSError) as e:
            raise UsageError(str(e)) from None
    if not out:
        raise UsageError("--configs is empty")
    return out


def _number(v):
    """A diagnostics value (a string) as a number where it is one."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def latency_row(summary: dict, cfg: LatencyConfig, opts: LatencyOptions, jitter: dict) -> dict:
    """One row of latency.json from a run's summary: rates, stamp -> relevance / heatmap p50/p99, the
    attribution node's compute time and skips, and the machine check."""
    s = summary
    heat = s["latency"].get("heatmap", {})
    rel = s["latency"].get("relevance_image", {})
    att = s.get("attribution") or {}
    node = "user_explainer_node" if any(k.startswith("user_explainer_node/") for k in s.get("user_policy") or {}) \
        else "user_policy_node"  # a user's model: the node that explains
    user = {k.split("/", 1)[1]: _number(v) for k, v in (s.get("user_policy") or {}).items() if k.startswith(node + "/")}
    if user:
        skipped = user.get("skipped_behind")
        att = {**att, "method": att.get("method") or user.get("method"),
               "skipped_behind": int(skipped) if isinstance(skipped, float) and skipped.is_integer() else skipped}
    return {"spec": s["spec"], "weights": cfg.weights, "size": s["image_size"],
            "method": att.get("method") or s.get("method") or opts.method, "precision": opts.precision,
            "camera_hz": s["rates_hz"].get("/camera/image_raw", 0.0),
            "commands_hz": s["rates_hz"].get("/effort_controller/commands", 0.0),
            "explained_hz": s["rates_hz"].get("/policy_xai/relevance/image", 0.0),
            "heatmap_hz": s["rates_hz"].get("/policy_xai/heatmap", 0.0),
            "relevance_p50_ms": rel.get("p50_ms"), "relevance_p99_ms": rel.get("p99_ms"),
            "heatmap_p50_ms": heat.get("p50_ms"), "heatmap_p99_ms": heat.get("p99_ms"),
            "skipped_behind": att.get("skipped_behind"),
            "attribution_compute_p50_ms": att.get("compute_p50_ms", user.get("explain_p50_ms")),
            "attribution_compute_p99_ms": att.get("compute_p99_ms", user.get("explain_p99_ms")),
            **{f"machine_{k}": v for k, v in jitter.items()}}
