"""Put the tables of a `policy-xai faithfulness` run into docs/faithfulness.md and the README.

    policy-xai faithfulness --out out/faithfulness
    python scripts/faithfulness_docs.py out/faithfulness

Replaces the blocks between `<!-- faithfulness:NAME -->` and `<!-- /faithfulness:NAME -->` (NAME:
summary, objects, parts, goals, readme) with the run's summary.md, objects.md, parts.md, goals.md
and a condensed README table, and copies the figures the docs show into docs/img; the markers
stay, so the script can run again.
"""
import csv
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_METHODS = ("dtd", "rap", "gbp", "gradient", "gradcam", "ig", "ig_occlusion", "occlusion_net",
                  "occlusion_net_refined", "random")
README_COLS = (("deletion_median", "deletion AUC"), ("deletion_road", "deletion AUC (ROAD)"),
               ("pointing", "pointing"), ("topk", "top-k"), ("config_rank", "cfg rank"))


def readme_table(run: Path) -> str:
    rows = list(csv.DictReader(open(run / "summary.csv")))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    by = {(r["task"], r["method"]): r for r in rows}
    out = []  # one small table per measure: method x task
    for key, title in README_COLS:
        out.append(f"| {title} | " + " | ".join(tasks) + " |")
        out.append("|---|" + "---:|" * len(tasks))
        for m in README_METHODS:
            cells = []
            for t in tasks:
                v = by.get((t, m), {}).get(key, "")
                try:
                    f = float(v)
                    cells.append(f"{f:.2f}" if math.isfinite(f) else "")
                except ValueError:
                    cells.append("")
            if any(cells):
                out.append(f"| `{m}` | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def replace(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- faithfulness:{name} -->\n).*?(<!-- /faithfulness:{name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"marker <!-- faithfulness:{name} --> not found")
    return pat.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


def main(run: str) -> int:
    run = Path(run)
    doc = ROOT / "docs" / "faithfulness.md"
    text = doc.read_text()
    for name in ("summary", "objects", "parts", "goals"):
        f = run / f"{name}.md"
        text = replace(text, name, f.read_text() if f.is_file() else "(not in this run)\n")
    doc.write_text(text)
    readme = ROOT / "README.md"
    readme.write_text(replace(readme.read_text(), "readme", readme_table(run)))
    import shutil

    for fig in ("curves_reach.png", "objects_door.png"):  # the figures the docs show
        if (run / fig).is_file():
            shutil.copy(run / fig, ROOT / "docs" / "img" / f"faithfulness_{fig}")
    print(f"updated {doc}, {readme} and docs/img from {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/faithfulness"))
