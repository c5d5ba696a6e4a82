"""Interleaved timing of the attribution benchmark's rows (time_rows)."""
from __future__ import annotations


def time_rows(entries, repeat: int, budget: float, progress=None) -> dict:
    """Time rows interleaved: entries [(name, fn)] -> name -> (median ms, n timed runs, warm-up used as
    the measurement?, last result). Every row runs once as a warm-up, whose time sets its number of timed
    runs (min(repeat, budget / warm-up), at least 1; the warm-up itself when it exceeded the budget); then
    rounds in which each row still due runs once, so that a change of the machine's load between
    rows hits all of them alike and their ratios stay comparable."""
    import time

    warm, res, due = {}, {}, {}
    for name, fn in entries:
        t0 = time.perf_counter()
        res[name] = fn()
        warm[name] = time.perf_counter() - t0
        w = max(warm[name], 1e-9)
        due[name] = 0 if warm[name] > budget or repeat < 1 else int(max(1, min(repeat, budget // w)))
        if progress:
            progress(name)
    times = {name: [] for name, _ in entries}
    for k in range(max(due.values(), default=0)):
        for name, fn in entries:
            if k < due[name]:
                t0 = time.perf_counter()
                res[name] = fn()
                times[name].append(time.perf_counter() - t0)
    out = {}
    for name, _ in entries:
        ts = sorted(times[name])
        if not ts:
            out[name] = (warm[name] * 1e3, 1, True, res[name])
            continue
        mid = len(ts) // 2
        med = ts[mid] if len(ts) % 2 else 0.5 * (ts[mid - 1] + ts[mid])
        out[name] = (med * 1e3, len(ts), False, res[name])
    return out
