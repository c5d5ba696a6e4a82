"""Put the tables of a `policy-xai faithfulness` run into docs/faithfulness.md, then re-render the
generated blocks of the README and docs from it.

    policy-xai faithfulness --out out/faithfulness
    python scripts/faithfulness_docs.py out/faithfulness

Replaces the blocks between `<!-- faithfulness:NAME -->` and `<!-- /faithfulness:NAME -->` (NAME:
summary, objects, parts, goals) with the run's summary.md, objects.md, parts.md and goals.md, and
copies the figures the docs show into docs/img; the markers stay, so the script can run again. The
README's faithfulness tables and numbers are generated from docs/faithfulness.md's summary table
(policy_xai.docs_numbers, `policy-xai docs render`), which this script runs at the end.
"""
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def replace(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- faithfulness:{name} -->\n).*?(<!-- /faithfulness:{name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"marker <!-- faithfulness:{name} --> not found")
    return pat.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main(run: str) -> int:
    from policy_xai.docs_numbers import render_docs

    run = Path(run)
    doc = ROOT / "docs" / "faithfulness.md"
    text = doc.read_text()
    for name in ("summary", "objects", "parts", "goals"):
        f = run / f"{name}.md"
        text = replace(text, name, f.read_text() if f.is_file() else "(not in this run)\n")
    doc.write_text(text)
    for fig in ("curves_reach.png", "objects_door.png"):  # the figures the docs show
        if (run / fig).is_file():
            shutil.copy(run / fig, ROOT / "docs" / "img" / f"faithfulness_{fig}")
    changed = render_docs(ROOT)
    print(f"updated {doc} and docs/img from {run}; {len(changed)} generated block(s) re-rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/faithfulness"))
