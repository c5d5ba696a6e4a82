"""Shared tensor helpers of the reference passes: replica broadcasting (_bmul, _brep), the safe
division, the positive / negative parts, and the convolutions in the rules' dtype (_RULE_DTYPE, set
by explain(precision=...)) with their cached weights."""
from __future__ import annotations

from contextvars import ContextVar

import torch
from torch.nn import functional as F
from torch.nn.grad import conv2d_input

EPS = 1e-12
_CL = torch.channels_last


def _bmul(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """r (m*B, ...) times activations x (B, ...), broadcasting over the m replicas."""
    if r.shape[0] == x.shape[0]:
        return r * x
    m = r.shape[0] // x.shape[0]
    return (r.view(m, *x.shape) * x).view(r.shape)


def _brep(x: torch.Tensor, n: int) -> torch.Tensor:
    """Activations x (B, ...) repeated to n = m*B rows (a copy only when m > 1)."""
    if n == x.shape[0]:
        return x
    return x.repeat(n // x.shape[0], *([1] * (x.dim() - 1)))


def _sdiv(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, and 0 where b == 0 (relevance of dead units is dropped, not blown up)."""
    return torch.where(b.abs() > EPS, a / torch.where(b.abs() > EPS, b, torch.ones_like(b)), torch.zeros_like(a))


def _pos(t):
    return t.clamp(min=0)


def _neg(t):
    return t.clamp(max=0)


#: dtype of the relevance rules' convolutions (explain(precision=...)); float32 = exact rules
_RULE_DTYPE: ContextVar[torch.dtype] = ContextVar("policy_xai_rule_dtype", default=torch.float32)


def _conv_weight(conv, kind: str, dtype=None) -> torch.Tensor:
    """conv.weight ("w"), its positive ("pos") or negative ("neg") part, in the rules' dtype and
    channels-last layout; "pos_cols" etc. give the (C_in*k*k, C_out) matrix for the fold path.
    Cached per weight tensor and refreshed when the weights change (version counter, storage)."""
    w = conv.weight
    dt = dtype or _RULE_DTYPE.get()
    stamp = (w._version, w.data_ptr())
    per = conv.__dict__.setdefault("_policy_xai_weights", {})  # lives and dies with the layer
    hit = per.get((kind, dt))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    base, _, cols = kind.partition("_")
    t = w.detach()
    t = t.clamp(min=0) if base == "pos" else t.clamp(max=0) if base == "neg" else t
    t = t.reshape(t.shape[0], -1).T.to(dt).contiguous() if cols else t.to(dt).contiguous(memory_format=_CL)
    per[(kind, dt)] = (stamp, t)
    return t


def _conv_T(conv, s: torch.Tensor, kind: str, in_shape) -> torch.Tensor:
    """Transposed convolution of s (N, C_out, h, w) with the weights `kind` back to the input size."""
    n = s.shape[0]
    c_in, H, W = in_shape[1:]
    dt = _RULE_DTYPE.get()
    if c_in <= 4 and conv.groups == 1 and conv.dilation == (1, 1):
        # few input channels (the image): one GEMM + fold is ~2x faster than conv_transpose2d on CPU
        cols = _conv_weight(conv, kind + "_cols") @ s.reshape(n, s.shape[1], -1).to(dt)  # (N, C_in*k*k, h*w)
        return F.fold(cols.float(), (H, W), conv.kernel_size, stride=conv.stride, padding=conv.padding)
    return conv2d_input((n, c_in, H, W), _conv_weight(conv, kind), s.to(dt).contiguous(memory_format=_CL),
                        stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups).float()


def _conv_fwd(conv, x, kind: str):
    dt = _RULE_DTYPE.get()
    return F.conv2d(x.to(dt), _conv_weight(conv, kind), None, conv.stride, conv.padding, conv.dilation,
                    conv.groups).float()
