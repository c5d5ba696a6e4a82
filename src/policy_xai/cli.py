"""`policy-xai` command line: one subcommand per module in policy_xai.commands.

Each module in COMMANDS defines `register(subparsers)` which adds its parser and sets
`func=<callable(args) -> int>`; imports of heavy libraries happen inside the callables.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

COMMANDS = [
    "policy_xai.commands.demo",
    "policy_xai.commands.explain",
    "policy_xai.commands.explain_module",
    "policy_xai.commands.bench",
    "policy_xai.commands.sanity",
    "policy_xai.commands.faithfulness",
    "policy_xai.commands.explainer",
    "policy_xai.commands.states",
    "policy_xai.commands.analyze",
    "policy_xai.commands.train",
    "policy_xai.commands.rollout",
    "policy_xai.commands.ros",
    "policy_xai.commands.robot",
    "policy_xai.commands.docs",
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
    from .checks import UsageError

    def on_term(signum, frame):  # `kill PID`: stop like Ctrl-C, so node processes and bags are closed
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, on_term) if main_thread else None
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UsageError as e:  # arguments that cannot work (checked before any work starts)
        print(f"policy-xai {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        # user-facing errors (bad files, bad inputs, a full disk): one clear line, no traceback
        print(f"policy-xai {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        # failures while running (a node exited, a weights file that does not load): the first line
        # says what; node reports that follow it are kept
        print(f"policy-xai {args.command}: error: {e}", file=sys.stderr)
        return 1
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)


def _one_line(e: BaseException) -> str:
    """The error's text on one line (node reports and library messages can span several)."""
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and e.strerror and e.filename and str(e.filename) not in text:
        text = f"{e.filename}: {e.strerror}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] + (f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else "") if lines else text


if __name__ == "__main__":
    sys.exit(main())
