"""The whole `policy-xai faithfulness` job: the measurement (run.faithfulness) with progress bars, its
report written into a new or empty folder (report.write_report), and the lines the command prints."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from ..report import JobReport
from .options import Options


def faithfulness_report(opt: Options, out: Union[str, Path], quiet: bool = False) -> JobReport:
    """Check `opt` and `out` (a new or empty folder: nothing is overwritten), measure, write the report
    into `out`; the JobReport's summary is what summary.json holds, its lines the summary table
    (summary.md), the sanity flags and where the rest is. Errors: UsageError (options or folder that
    cannot work, before any work starts)."""
    from tqdm import tqdm

    from ..checks import UsageError, writable_dir
    from .report import write_report
    from .run import faithfulness

    opt = opt.checked()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder; choose a new one (nothing is overwritten)")
    writable_dir(out)
    bars = {}

    def progress(task, done, total):
        bar = bars.get(task)
        if bar is None:
            bar = bars[task] = tqdm(total=total, desc=f"faithfulness {task}", unit="state", disable=quiet)
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    try:
        results = faithfulness(opt, progress)
    finally:
        for b in bars.values():
            b.close()
    doc = write_report(results, out, opt)
    lines = (out / "summary.md").read_text().splitlines()
    lines += [f"sanity {task}: {f}" for task, flags in doc["sanity_flags"].items() for f in flags]
    lines.append(f"(tables, figures and summary.json in {out})")
    return JobReport(out, doc, lines, sorted(p for p in out.iterdir() if p.is_file()))
