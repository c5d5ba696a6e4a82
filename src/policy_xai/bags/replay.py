"""Planning the replay of a bag through the live nodes."""
from __future__ import annotations

from typing import Optional, Sequence

from ..topics import DECISION, OBSERVATION, OBSERVATION_EXTRA, keys_with, names_with
from .common import BagError, default_topics


def replay_plan(topic_names: Sequence[str], topics: Optional[dict] = None, graph: str = "auto") -> dict:
    """Which node graph explains a bag when it is played back live, and which topics to play.

    Bags with the policy's observation topics and torques go to the "replay" graph (attribution +
    visualisation: the recorded decisions are explained again); bags with only camera images and
    joint states go to the "explain" graph (policy + attribution + visualisation). Recorded
    explanation, command and visualisation topics are never played (the live nodes publish them).
    Which topics are which: their roles (policy_xai.topics: DECISION; OBSERVATION, and
    OBSERVATION_EXTRA where the bag has them)."""
    T = topics or default_topics()
    have = set(topic_names)
    obs = [T[k] for k in keys_with(DECISION)]
    raw = [T[k] for k in keys_with(OBSERVATION)]
    if graph in ("auto", "replay") and all(n in have for n in obs):
        return {"graph": "replay", "topics": obs, "reason": "the bag holds the policy's decisions"}
    if graph in ("auto", "explain") and all(n in have for n in raw):
        extra = [n for n in names_with(OBSERVATION_EXTRA) if n in have]
        return {"graph": "explain", "topics": raw + extra,
                "reason": "the bag holds camera images and joint states: the policy node acts on them again"}
    need = {"auto": f"{obs} or {raw}", "replay": str(obs), "explain": str(raw)}.get(graph)
    if need is None:
        raise BagError(f"graph must be auto, replay or explain, got {graph!r}")
    raise BagError(f"nothing to replay{'' if graph == 'auto' else ' into graph ' + graph}: the bag needs {need}; "
                   f"it has {sorted(have)}")
