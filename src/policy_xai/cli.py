"""`policy-xai` command line: one subcommand per module in policy_xai.commands.

Each module in COMMANDS defines `register(subparsers)` which adds its parser and sets
`func=<callable(args) -> int>`; imports of heavy libraries happen inside the callables.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = [
    "policy_xai.commands.demo",
    "policy_xai.commands.explain",
    "policy_xai.commands.bench",
    "policy_xai.commands.sanity",
    "policy_xai.commands.analyze",
    "policy_xai.commands.train",
    "policy_xai.commands.rollout",
    "policy_xai.commands.ros",
    "policy_xai.commands.robot",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policy-xai",
        description=(
            "Explain why a deep visuomotor robot policy commands the torques it does: per-pixel and "
            "per-configuration relevance (Deep Taylor z+ with sign handling, RAP, Guided Backprop x input, "
            "gradient and Grad-CAM variants), amortised over joints by dynamics-based importance factors, "
            "with relevance ratios per input group. Run `policy-xai COMMAND --help` for each command."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            importlib.import_module(name).register(sub)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        # user-facing errors (bad files, bad inputs): one clear line, no traceback
        print(f"policy-xai {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
