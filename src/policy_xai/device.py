"""Where the networks run: the one parser of the `device` the nodes and the commands take.

    from policy_xai.device import parse_device, model_device, to_numpy
    dev = parse_device("cuda:0")      # torch.device, or DeviceError (one line) saying why not
    policy.to(dev)                    # policy_xai.policy.place_policy also moves its explainer

Accepted: "cpu", "cuda", "cuda:N", "mps" (surrounding spaces ignored, "" and None mean "cpu"). A
device is checked before anything uses it: a name torch does not take here, CUDA or MPS that this
torch build or this machine does not have, or a CUDA index past the device count is a DeviceError
naming the device and the reason, e.g.

    device 'cuda' is not available here (torch.cuda.is_available() is False)

The attribution engine follows its inputs: every tensor it makes is made on the device of the
model's parameters / the inputs, and results stay there (an Explanation's tensors are on the
model's device); only what is published or written comes back to the CPU (`to_numpy`).
No rclpy here (the nodes' parameter check calls `check_device_text`).
"""
from __future__ import annotations

import re

import torch

#: the device names the `device` parameter / `--device` option take
DEVICE_NAMES = ("cpu", "cuda", "cuda:N", "mps")
_PATTERN = re.compile(r"^(cpu|cuda|cuda:(\d+)|mps)$")


class DeviceError(ValueError):
    """A device string that does not name a torch device usable here (one line saying why)."""


def parse_device(text=None) -> torch.device:
    """The torch.device `text` names, checked to be usable on this machine (DeviceError otherwise)."""
    if isinstance(text, torch.device):
        text = str(text)
    name = "cpu" if text is None else str(text).strip()
    name = name or "cpu"
    m = _PATTERN.match(name)
    if m is None:
        raise DeviceError(f"device {name!r} is not a device name: expected cpu, cuda, cuda:N or mps")
    kind = m.group(1).split(":")[0]
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "on this machine" if torch.version.cuda else f"to torch {torch.__version__}, a build without CUDA"
            raise DeviceError(f"device {name!r} is not available here (torch.cuda.is_available() is False: CUDA "
                              f"is not available {why})")
        if m.group(2) is not None:
            n = torch.cuda.device_count()
            if int(m.group(2)) >= n:
                raise DeviceError(f"device {name!r} is not available here (torch.cuda.device_count() is {n})")
    elif kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(f"device {name!r} is not available here (torch.backends.mps.is_available() is False)")
    return torch.device(name)


def check_device_text(text) -> str:
    """The device string, normalised ("" -> "cpu"), after parse_device has accepted it: the check of
    the nodes' `device` parameter (interfaces.Param.check)."""
    return str(parse_device(text))


def model_device(model) -> torch.device:
    """The device of a module's first parameter (or buffer); CPU for a module without tensors."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def to_numpy(t):
    """A tensor (any device) as a numpy array on the CPU: where results leave torch."""
    return t.detach().cpu().numpy()
