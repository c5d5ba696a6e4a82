"""The one error type of policy_xai.user_policy and its one-line message helpers."""
from __future__ import annotations


class UserPolicyError(ValueError):
    """A user's policy, weights file or mapping that cannot work: one line saying why."""


def _line(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _short(items, n: int = 6) -> str:
    items = list(items)
    head = ", ".join(str(i) for i in items[:n])
    return head + (f", ... ({len(items)} in all)" if len(items) > n else "")
