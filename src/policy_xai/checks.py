"""Argument checks shared by the subcommands and the library jobs (policy_xai.bags.analyze), run before any
work starts (a core module: no argparse parser here, only its types; policy_xai.commands.checks re-exports it).

* argparse types for counts, sizes, durations and rates (`positive_int`, `nonnegative_float`, ...):
  a bad value ends in argparse's usage line and one error line, exit code 2.
* inputs: `input_file` / `input_path` (exists, right kind, not empty).
* outputs: `guard_outputs` refuses any output that is an input, lies inside an input or would
  replace a folder that holds one (`policy-xai analyze RUN/bag --out RUN` would write its annotated
  bag at RUN/bag); `writable_dir` / `writable_file` create the output folder and prove it takes a
  file (a read-only file system, a path under a file, /proc) - a `UsageError` naming the reason.

No command deletes, overwrites or writes into its input: these checks are the single place that
says so, and every command that takes an input and an output calls `guard_outputs`.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Mapping, Optional


class UsageError(ValueError):
    """Arguments that cannot work (bad output folder, input = output, ...): one line, exit code 2."""


# ==== numbers =====================================================================================
def _number(cast, low: float, strict: bool, what: str):
    def parse(text: str):
        try:
            v = cast(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if isinstance(v, float) and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be {what} (finite), got {text!r}")
        if v < low or (strict and v == low):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    parse.__name__ = what.replace(" ", "_")
    return parse


positive_int = _number(int, 0, True, "a positive integer")
nonnegative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a positive number")
nonnegative_float = _number(float, 0.0, False, "a number >= 0")


def fraction(text: str) -> float:
    """A share in [0, 1]."""
    v = nonnegative_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text!r}")
    return v


def domain_id(text: str) -> int:
    """A ROS_DOMAIN_ID (0-232, the range DDS maps to UDP ports)."""
    v = nonnegative_int(text)
    if v > 232:
        raise argparse.ArgumentTypeError(f"must be a ROS domain id in 0-232, got {text!r}")
    return v


def int_list(text: str, what: str = "positive integers", allow: Iterable[str] = (), label: str = "") -> list:
    """'1,64' -> [1, 64]: comma-separated positive integers (or words from `allow`, kept as text)."""
    head = f"{label}: " if label else ""
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if part in allow:
            out.append(part)
            continue
        try:
            v = int(part)
        except ValueError:
            v = 0
        if v < 1:
            extra = f" or {'/'.join(allow)}" if allow else ""
            raise UsageError(f"{head}must be comma-separated {what}{extra}, got {text!r}")
        out.append(v)
    if not out:
        raise UsageError(f"{head}must be comma-separated {what}, got an empty list")
    return out


def positive_int_list(text: str) -> str:
    """argparse type: comma-separated positive integers (kept as text, checked here)."""
    try:
        int_list(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


# ==== inputs ======================================================================================
def input_path(path, label: str) -> Path:
    """An input that must exist (file or folder)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{label} not found: {path}")
    return p


def input_file(path, label: str, allow_empty: bool = False) -> Path:
    """An input file that must exist and hold something."""
    p = input_path(path, label)
    if p.is_dir():
        raise UsageError(f"{label} {path} is a folder, not a file")
    if not allow_empty and p.stat().st_size == 0:
        raise UsageError(f"{label} {path} is empty")
    return p


def policy_arg(arg, label: str = "--policy", accept=("weights", "spec", "task")):
    """What a policy argument names (policy_xai.resolve.policy_source: a weights file, a spec, a task's
    shipped weights), checked before any work: UsageError (exit 2) saying what is wrong and what is
    accepted. Returns the PolicySource (its .load(seed=, device=) gives the policy)."""
    from .resolve import PolicySourceError, policy_source

    try:
        return policy_source(arg, accept=accept, label=label)
    except PolicySourceError as e:
        raise UsageError(str(e)) from None


def policy_input(arg: str, label: str = "--policy") -> None:
    """A weights file (must exist), a spec name / YAML file (must load) or a task with shipped weights."""
    policy_arg(arg, label)


# ==== outputs =====================================================================================
def real(path) -> Path:
    """Absolute, user-expanded, symlinks resolved (as far as the path exists)."""
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def bag_root(path) -> Path:
    """The bag a path stands for: a storage file inside a bag folder (metadata.yaml) is that folder."""
    p = real(path)
    if p.is_file() and (p.parent / "metadata.yaml").is_file():
        return p.parent
    return p


def _within(a: Path, b: Path) -> bool:
    """a is b or lies inside b."""
    return a == b or b in a.parents


def policy_and_recording(inputs_arg: str, policy, policy_label: str = "--policy file") -> dict:
    """The input files of a command with `--inputs RECORDING|synthetic` and `--policy SPEC|FILE|TASK`
    (label -> path) for guard_outputs; each must exist and hold something (the policy: its text, checked
    by `policy_arg`, or the PolicySource it gave)."""
    from .resolve import PolicySource

    inputs = {}
    if inputs_arg != "synthetic":
        inputs["--inputs recording"] = input_file(inputs_arg, "--inputs recording")
    src = policy if isinstance(policy, PolicySource) else policy_arg(policy, policy_label.split()[0])
    if src.weights is not None:
        inputs[policy_label] = src.weights
    return inputs


def guard_outputs(inputs: Mapping[str, "str | Path | None"], out_dir: "str | Path | None" = None,
                  writes: Mapping[str, "str | Path"] = None, out_label: str = "--out") -> None:
    """Refuse outputs that would delete, overwrite or write into an input.

    inputs: description -> path (None entries are skipped); out_dir: a folder the command writes
    files into (must not be an input or inside one); writes: description -> a path the command
    creates or replaces whole (must not be an input, inside one, or hold one)."""
    ins = {label: real(p) for label, p in inputs.items() if p not in (None, "")}
    if out_dir is not None:
        o = real(out_dir)
        for label, i in ins.items():
            if o == i:
                raise UsageError(f"{out_label} {out_dir} is the {label}: a command never writes into its input; "
                                 f"choose another {out_label}")
            if i in o.parents:
                raise UsageError(f"{out_label} {out_dir} is inside the {label} {i}: a command never writes into "
                                 f"its input; choose another {out_label}")
    for what, w in (writes or {}).items():
        w = real(w)
        for label, i in ins.items():
            if _within(i, w) or _within(w, i):
                rel = "is" if w == i else ("holds" if _within(i, w) else "is inside")
                where = f"{out_label} {out_dir} would write {what} at {w}" if out_dir is not None else \
                    f"{out_label} {w}"
                hint = f" (e.g. {real(out_dir) / 'analysis'})" if out_dir is not None and rel == "is" else ""
                raise UsageError(f"{where}, which {rel} the {label} {i}: a command never deletes, overwrites or "
                                 f"writes into its input; choose another {out_label}{hint}")


def _make_dir(p: Path, say) -> None:
    """Create folder p (with parents) and write a test file into it; `say(reason)` -> the error text."""
    a = p.absolute()
    for parent in [a, *a.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(say(f"{parent} is a file, not a folder"))
            break
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(say(f"cannot create the folder {p} ({e.strerror or e})")) from None
    try:
        with tempfile.TemporaryFile(dir=p, prefix=".policy_xai_write_test_"):
            pass
    except OSError as e:
        raise UsageError(say(f"cannot write into the folder {p} ({e.strerror or e})")) from None


def writable_dir(path, label: str = "--out") -> Path:
    """Create the output folder (and its parents) and prove a file can be written into it."""
    p = Path(path)
    _make_dir(p, lambda why: f"{label} {path}: {why}")
    return p


def _new_output(path, label: str, inputs, what: str) -> Path:
    """An output path that is not an input nor inside one, its parent folder created and writable."""
    p = Path(path)
    if inputs:
        guard_outputs(inputs, writes={what: p}, out_label=label)
    _make_dir(p.absolute().parent, lambda why: f"{label} {path}: {why}")
    return p


def writable_file(path, label: str, inputs: Optional[Mapping[str, "str | Path | None"]] = None) -> Path:
    """An output file: not an input, not a folder, its folder created and writable."""
    if Path(path).is_dir():
        raise UsageError(f"{label} {path} is a folder, not a file")
    return _new_output(path, label, inputs, "its output")


def new_file(path, label: str, inputs: Optional[Mapping[str, "str | Path | None"]] = None) -> Path:
    """A data file a command will write (e.g. its `--json`): as `writable_file`, and it must not exist
    yet (stored measurements are never overwritten)."""
    if Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f"{label} {path} exists; a measurement is never overwritten (choose another name)")
    return writable_file(path, label, inputs)


def new_bag_dir(path, label: str, inputs: Optional[Mapping[str, "str | Path | None"]] = None) -> Path:
    """A bag folder a writer will create: must not exist, not be an input or inside one; its parent
    folder is created and writable."""
    if inputs:
        guard_outputs(inputs, writes={"the bag": Path(path)}, out_label=label)
    if Path(path).exists():
        raise UsageError(f"{label} {path} exists; a bag is written into a new folder (choose another name)")
    return _new_output(path, label, None, "the bag")


# ==== devices =====================================================================================
DEVICE_HELP = ("torch device the network runs on: cpu (default), cuda, cuda:N or mps; checked before any work "
               "starts (a device torch cannot use here is a one-line error, exit code 2)")


def add_device_option(p, help: str = DEVICE_HELP) -> None:
    """--device (a string: parsed by `device_arg` when the command runs, so --help needs no torch)."""
    p.add_argument("--device", default="cpu", metavar="DEVICE", help=help)


def device_arg(text, label: str = "--device"):
    """The torch.device of a --device value (policy_xai.device.parse_device); UsageError naming why not."""
    from .device import DeviceError, parse_device

    try:
        return parse_device(text)
    except DeviceError as e:
        raise UsageError(f"{label}: {e}") from None
