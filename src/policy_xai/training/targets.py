"""Training and evaluation targets: the task's conditions (the paper's training conditions) and, with
probability `region_fraction`, random targets in the region the conditions span (bilinear patch of the
four targets, slightly enlarged, `region_target`); `heldout_targets` are the ones between them that
`evaluate` reports.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .teachers import FeedbackExpert


def region_target(task, rng: np.random.Generator, margin: float = 0.1) -> np.ndarray:
    """A random target in the region spanned by the task's (four) condition targets: a bilinear patch
    over conditions (0, 1, 2, 3) = (near-left, near-right, far-left, far-right), enlarged by `margin`."""
    T = task.targets
    if len(T) != 4:
        w = rng.dirichlet(np.ones(len(T)))
        return w @ T
    u, v = rng.uniform(-margin, 1 + margin, size=2)
    return (1 - u) * (1 - v) * T[0] + u * (1 - v) * T[1] + (1 - u) * v * T[2] + u * v * T[3]


def reachable_region_target(task, rng: np.random.Generator, reachable, tries: int = 20) -> Optional[np.ndarray]:
    """The first of up to `tries` region targets (region_target) that `reachable(t)` accepts, else None."""
    for _ in range(int(tries)):
        t = region_target(task, rng)
        if reachable(t):
            return t
    return None


def heldout_targets(task, expert: Optional[FeedbackExpert] = None) -> list:
    """[(name, xyz)] targets between the training targets: midpoints of every pair of conditions and
    the centroid (duplicates and, given an expert, unreachable ones removed)."""
    from ..robot.tasks import between_targets

    out, seen = [], []
    n = len(task.conditions)
    cands = [(f"mid{i}{j}", between_targets(task, i, j, 0.5)) for i in range(n) for j in range(i + 1, n)]
    cands.append(("centroid", between_targets(task)))
    for name, p in cands:
        if any(np.linalg.norm(p - s) < 1e-6 for s in seen):
            continue
        if expert is not None and not expert.reachable(p):
            continue
        seen.append(p)
        out.append((name, p))
    return out
