"""Faithfulness of the explanations: what removing what a map points at does to the torques.

    from policy_xai.faithfulness import Options, faithfulness, faithfulness_report, write_report
    results = faithfulness(Options(tasks=("reach",), methods=("dtd", "ig")))
    write_report(results, "out/")
    job = faithfulness_report(Options(tasks="reach", methods="dtd,ig"), "out2/")  # as `policy-xai faithfulness`

options.py: Options (the defaults of `policy-xai faithfulness`, checked by Options.checked), QUICK;
metrics.py: removal operators, rankings, deletion / insertion curves, object and configuration
effects (plain functions over tensors); run.py: rollouts of the shipped policies with MuJoCo object
masks, every method on every state; report.py: summary table, CSV/Parquet, figures; job.py:
faithfulness_report (measure and write the report into a new folder).

Importing the package is light: options.py loads here, the rest (torch, MuJoCo) on first use of its names.
"""
from __future__ import annotations

from .options import FRACTIONS, QUICK, REMOVALS, UNITS, Options

__all__ = ["FRACTIONS", "QUICK", "REMOVALS", "UNITS", "Options", "TaskResult", "collect_states", "evaluate_task",
           "faithfulness", "faithfulness_report", "markdown_table", "summarise", "write_report"]

_LAZY = {"TaskResult": ".run", "collect_states": ".run", "evaluate_task": ".run", "faithfulness": ".run",
         "faithfulness_report": ".job", "markdown_table": ".report", "summarise": ".report", "write_report": ".report"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
