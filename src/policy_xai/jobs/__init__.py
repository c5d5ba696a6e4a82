"""The library jobs under the offline commands: typed options and one function each (no argparse, no
rclpy at import). Their reports are written by policy_xai.report.

* explain: ExplainOptions, explain_recording (`policy-xai explain`);
* rollout: RolloutOptions, analyze_rollout (`policy-xai analyze-rollout`);
* demo: DemoOptions, demo (`policy-xai demo`: the live run, then explain / analyze_bag called directly).

The single-bag analysis is policy_xai.bags.analyze_bag(AnalyzeOptions).
"""
from __future__ import annotations

from .demo import DemoOptions, demo
from .explain import ExplainOptions, explain_recording, load_robot_arg
from .rollout import RolloutOptions, analyze_rollout

__all__ = ["DemoOptions", "ExplainOptions", "RolloutOptions", "analyze_rollout", "demo", "explain_recording",
           "load_robot_arg"]
