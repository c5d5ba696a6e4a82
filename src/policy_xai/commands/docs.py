"""`policy-xai docs render [--check]`: the argparse adapter over policy_xai.docs_numbers (the numbers and
tables of README.md and docs/*.md, generated from the stored command outputs they come from)."""
from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Rewrites every generated block of README.md and docs/*.md (a Markdown comment naming the kind and
its source, e.g. the JSON `policy-xai bench attribution --json` wrote, up to the matching end
comment) from its source files, in place. --check writes nothing: it names every stale block and
exits 1 when a file differs from what would be rendered. A missing source, an unknown kind or a path
that selects nothing is a one-line error naming the file and line of the block (exit 1).
"""


def register(sub) -> None:
    p = sub.add_parser("docs", help="the README's and docs' numbers, generated from the stored command outputs",
                       description="Documentation generated from stored command outputs.")
    s = p.add_subparsers(dest="docs_command", metavar="SUB")
    r = s.add_parser("render", help="rewrite the generated blocks of README.md and docs/*.md (--check: compare)",
                     description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--check", action="store_true", help="write nothing; exit 1 and name the stale blocks")
    r.add_argument("--root", default=None,
                   help="repository root holding README.md and docs/ (default: this checkout, else the current folder)")
    r.add_argument("files", nargs="*", help="Markdown files to render (default: README.md and docs/*.md)")
    r.set_defaults(func=run)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def default_root() -> Path:
    checkout = Path(__file__).resolve().parents[3]  # src/policy_xai/commands/ -> repository root
    return checkout if (checkout / "README.md").is_file() and (checkout / "docs").is_dir() else Path.cwd()


def run(args: argparse.Namespace) -> int:
    from .. import docs_numbers
    from .checks import UsageError

    root = Path(args.root) if args.root else default_root()
    if not (root / "README.md").is_file():
        raise UsageError(f"--root {root}: no README.md there")
    files = [Path(f) for f in args.files] or None
    for f in files or ():
        if not (f if f.is_absolute() else root / f).is_file():
            raise UsageError(f"{f}: no such file under {root}")
    stale = docs_numbers.render_docs(root, files, check=args.check)
    if args.check:
        for b in stale:
            print(f"stale: {b.label}")
        if stale:
            print(f"{len(stale)} generated block(s) differ from their sources: run `policy-xai docs render`")
            return 1
        print("generated blocks: in sync")
        return 0
    print(f"rendered: {len(stale)} block(s) changed" if stale else "generated blocks: already in sync")
    return 0
