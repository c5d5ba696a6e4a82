"""torch.export programs (.pt2) as plain modules the graph engine can trace: aten ops mapped back
to the torch functions it has rules for."""
from __future__ import annotations

import operator
from pathlib import Path

import torch

from .errors import UserPolicyError, _line


def _aten_table() -> dict:
    """aten op -> (torch function the graph engine has a rule for, argument adapter or None)."""
    from torch.nn import functional as F

    aten = torch.ops.aten
    drop_last = lambda a: a[:-1] if len(a) == 6 else a  # noqa: E731 - group/layer_norm's cudnn_enabled
    table = {
        "conv1d.default": F.conv1d, "conv2d.default": F.conv2d, "linear.default": F.linear,
        "relu.default": torch.relu, "tanh.default": torch.tanh, "gelu.default": F.gelu, "silu.default": F.silu,
        "elu.default": F.elu, "leaky_relu.default": F.leaky_relu, "mish.default": F.mish,
        "max_pool1d.default": F.max_pool1d, "max_pool2d.default": F.max_pool2d, "avg_pool1d.default": F.avg_pool1d,
        "avg_pool2d.default": F.avg_pool2d, "adaptive_avg_pool1d.default": F.adaptive_avg_pool1d,
        "adaptive_avg_pool2d.default": F.adaptive_avg_pool2d,
        "cat.default": torch.cat, "stack.default": torch.stack, "flatten.using_ints": torch.flatten,
        "reshape.default": torch.reshape, "view.default": torch.reshape, "permute.default": torch.permute,
        "transpose.int": torch.transpose, "unsqueeze.default": torch.unsqueeze, "squeeze.dim": torch.squeeze,
        "add.Tensor": torch.add, "sub.Tensor": torch.sub, "mul.Tensor": torch.mul, "div.Tensor": torch.div,
        "neg.default": torch.neg, "mean.dim": torch.mean, "sum.dim_IntList": torch.sum,
        "dropout.default": F.dropout, "clone.default": None, "contiguous.default": None,
        "group_norm.default": (F.group_norm, drop_last), "layer_norm.default": (F.layer_norm, drop_last),
    }
    out = {}
    for name, fn in table.items():
        op = aten
        try:
            for part in name.split("."):
                op = getattr(op, part)
        except (AttributeError, RuntimeError):
            continue
        out[op] = fn if isinstance(fn, tuple) else (fn, None)
    out[operator.getitem] = (operator.getitem, None)
    return out


def load_exported(path):
    """A torch.export program (.pt2) as a plain module the graph engine can trace: inputs named as
    the program's (its dict keys, or its positional parameters), aten ops mapped back to torch
    functions where there is a rule, the exported input guards dropped (the mapping check runs the
    model on the mapping's shapes instead)."""
    import torch.fx as fx
    import torch.utils._pytree as pytree

    p = Path(path)
    if not p.is_file():
        raise UserPolicyError(f"model file not found: {path}" if not p.exists() else f"model {path} is a folder")
    try:
        ep = torch.export.load(str(p))
        gm = ep.module()
    except Exception as e:  # noqa: BLE001 - zip, pickle and version errors
        raise UserPolicyError(f"model {path}: torch.export.load failed ({type(e).__name__}: {_line(e)})") from None
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    try:
        tree = pytree.tree_unflatten(list(range(len(placeholders))), gm._in_spec)
        args, kwargs = tree
    except Exception:  # noqa: BLE001 - an input structure we do not know
        args, kwargs = tuple(range(len(placeholders))), {}
    if (len(args) == 1 and isinstance(args[0], dict) and not kwargs
            and all(isinstance(v, int) for v in args[0].values())):
        style, names = "dict", [None] * len(placeholders)
        for k, i in args[0].items():
            names[i] = str(k)
    else:
        style, names = "positional", [str(n.target) for n in placeholders]
    table = _aten_table()
    graph = fx.Graph()
    env = {}
    out_spec = getattr(gm, "_out_spec", None)
    for n in gm.graph.nodes:
        if n.op == "call_module" and "_guards" in str(n.target):
            continue
        if n.op == "output":
            res = fx.node.map_arg(n.args[0], lambda a: env[a])
            if isinstance(res, (tuple, list)) and len(res) == 1 and out_spec is not None and out_spec.num_leaves == 1:
                res = res[0]
            graph.output(res)
            continue
        new = graph.node_copy(n, lambda a: env[a])
        if n.op == "call_function" and n.target in table:
            fn, adapt = table[n.target]
            if fn is None:  # clone / contiguous: the value itself
                env[n] = env[n.args[0]]
                graph.erase_node(new)
                continue
            new.target = fn
            if adapt is not None:
                new.args = adapt(tuple(new.args))
        env[n] = new
    try:
        inner = fx.GraphModule(gm, graph)
    except Exception as e:  # noqa: BLE001
        raise UserPolicyError(f"model {path}: cannot rebuild the exported program ({_line(e)})") from None
    return ExportedPolicy(inner, style, names).eval()


class ExportedPolicy(torch.nn.Module):
    """A torch.export program as a module: model(obs dict) when the program took a dict, else
    model(*tensors) in the program's parameter order (names in `input_names`)."""

    def __init__(self, program, style: str, names: list):
        super().__init__()
        self.program = program
        self.input_style = style
        self.input_names = list(names)

    def forward(self, *args):
        if self.input_style == "dict":
            (obs,) = args
            return self.program(*[obs[k] for k in self.input_names])
        return self.program(*args)

    def train(self, mode: bool = True):
        """eval() works (an exported program's own .eval() does not); its mode is fixed at export."""
        if mode:
            raise NotImplementedError("a torch.export program cannot be put in training mode")
        for m in self.modules():
            m.training = False
        return self
