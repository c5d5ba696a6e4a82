"""Faithfulness of the explanations: what removing what a map points at does to the torques.

    from policy_xai.faithfulness import Options, faithfulness, write_report
    results = faithfulness(Options(tasks=("reach",), methods=("dtd", "ig")))
    write_report(results, "out/")

metrics.py: removal operators, rankings, deletion / insertion curves, object and configuration
effects (plain functions over tensors); run.py: rollouts of the shipped policies with MuJoCo object
masks, every method on every state; report.py: summary table, CSV/Parquet, figures.
"""
from .metrics import FRACTIONS, REMOVALS  # noqa: F401
from .report import markdown_table, summarise, write_report  # noqa: F401
from .run import Options, TaskResult, collect_states, evaluate_task, faithfulness  # noqa: F401
