"""What the graph engine returns (GraphExplanation), the output weights it starts from
(alpha, checked) and the inputs' shares of the relevance (ratios)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np
import torch


@dataclass
class GraphExplanation:
    """inputs: name -> relevance (B, ...) like the input; ratios: name -> (B,) share of the total
    absolute relevance (sum to 1; NaN where there is none); group_ratios: "input/group" -> (B,) for
    the groups given to explain_module; outputs: the explained outputs (B, A); alpha: (B, A);
    per_output: name -> (B, A, ...) per-output relevance when requested; maps: image inputs
    (B, C, H, W) -> (B, H, W), the channel-summed relevance (the CAM methods: the CAM, and the camera
    is then not in `inputs`; ratios None)."""

    method: str
    inputs: dict
    ratios: Optional[dict]
    outputs: torch.Tensor
    alpha: torch.Tensor
    group_ratios: dict = field(default_factory=dict)
    per_output: Optional[dict] = None
    extras: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)


def _alpha_tensor(alpha, B, A, dtype, device=None):
    if alpha is None:
        return torch.ones(B, A, dtype=dtype, device=device)
    if torch.is_tensor(alpha):
        a = alpha.detach().to(device=device, dtype=dtype)
    else:
        a = torch.as_tensor(np.asarray(alpha, dtype=np.float64), dtype=dtype, device=device)
    if a.dim() == 1:
        a = a.unsqueeze(0).expand(B, -1)
    if tuple(a.shape) != (B, A):
        raise ValueError(f"alpha must have shape ({A},) or ({B}, {A}), got {tuple(a.shape)}")
    if not torch.isfinite(a).all() or (a < 0).any():
        raise ValueError("alpha must be finite and non-negative")
    return a.contiguous()


def _ratios(inputs: dict, groups) -> tuple[dict, dict]:
    mass = {k: v.abs().reshape(v.shape[0], -1).sum(1) for k, v in inputs.items()}
    total = sum(mass.values())
    safe = torch.where(total > 0, total, torch.ones_like(total))
    share = lambda v: torch.where(total > 0, v / safe, torch.full_like(v, float("nan")))  # noqa: E731
    ratios = {k: share(v) for k, v in mass.items()}
    gr = {}
    for name, spec in (groups or {}).items():
        if name not in inputs:
            raise ValueError(f"groups: no input {name!r}; inputs are {list(inputs)}")
        v = inputs[name]
        start = 0
        for g, sl in (spec.items() if isinstance(spec, Mapping) else spec):
            if isinstance(sl, int):
                sl = slice(start, start + sl)
            start = sl.stop
            gr[f"{name}/{g}"] = share(v[:, sl].abs().reshape(v.shape[0], -1).sum(1))
    return ratios, gr
