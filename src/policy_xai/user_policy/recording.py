"""A user's policy explained over a recording: observations from an .npz or from a rosbag, read
through the YAML observation mapping the live user_policy_node uses (`policy-xai explain-model`).

    rec = observations_from_bag("run_bag", live, BagReadOptions())      # or observations_from_npz
    result = explain_recording(model, mapping, rec, method="dtd")
    write_report("out/explain_model", result, {...})

A bag is read the way the node hears it: each mapped topic (sensor_msgs/Image or CompressedImage for
an image observation, sensor_msgs/JointState for a vector) decoded with the node's conversions
(policy_xai.user_live: size check or resize, joints picked by name, NaN refused), and the topics
paired by header stamp with the node's live.StampSync (sync_tolerance, time_jump). A message that
cannot be used is skipped and counted by reason (one line each in `skipped`); a bag without the
mapped topics, or with none paired, is a BagError naming what it holds.
"""
from __future__ import annotations

import csv
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ..parameters import NODES
from .errors import UserPolicyError

_NODE = NODES["user_policy_node"].params


@dataclass
class BagReadOptions:
    """How a bag's mapped topics are read and paired (the user_policy_node's defaults)."""

    resize: bool = bool(_NODE["resize"].default)
    sync_tolerance: float = float(_NODE["sync_tolerance"].default)  # s between the mapped topics' stamps
    time_jump: float = float(_NODE["time_jump"].default)  # s: a stamp this far back/ahead restarts pairing
    start: float = 0.0  # s after the bag's first message
    duration: float = 0.0  # s (0: to the end)
    max_steps: int = 0  # 0: all


@dataclass
class Recording:
    """Observations name -> (T, ...) array (images (T, H, W, 3) uint8, vectors (T, n)), their stamps
    (T,) ns (0 for an .npz), and the messages skipped by reason."""

    data: dict
    stamps: np.ndarray
    source: str
    skipped: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.stamps.shape[0])


def observations_from_npz(path, mapping) -> Recording:
    """An .npz with one array per observation name (leading axis = steps)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else e
        raise UserPolicyError(f"{path}: not a readable .npz file ({reason})") from None
    missing = [n for n in mapping.names() if n not in data]
    if missing:
        raise UserPolicyError(f"{path} has no {', '.join(missing)} (has {', '.join(data) or 'nothing'}); "
                              f"the mapping needs {', '.join(mapping.names())}")
    steps = {n: data[n].shape[0] if data[n].ndim else 0 for n in mapping.names()}
    if len(set(steps.values())) != 1 or 0 in steps.values():
        raise UserPolicyError(f"{path}: every observation needs the same number (>= 1) of steps on its leading axis, "
                              f"got {', '.join(f'{k} {v}' for k, v in steps.items())}")
    T = next(iter(steps.values()))
    return Recording({n: data[n] for n in mapping.names()}, np.zeros(T, np.int64), str(path))


def observations_from_bag(path, live, opts: Optional[BagReadOptions] = None) -> Recording:
    """The mapped topics of a bag, decoded and paired as the user_policy_node does (`live`: a
    policy_xai.user_live.UserLive with the model's mapping)."""
    from .. import live as lv
    from ..bags.common import IMAGE_TYPES, JOINT_TYPE, BagError, stamp_ns, typestore
    from ..bags.observations import image_from_msg
    from ..bags.source import BagSource, register_bag_types

    opts = opts or BagReadOptions()
    plan = live.topic_plan()  # topic -> (kind, observation names)
    ts = typestore()
    skipped: dict = {}
    steps: list = []
    with BagSource(path) as bag:
        missing = [t for t in plan if t not in bag.topics]
        if missing:
            raise BagError(f"bag {path} has no {', '.join(missing)} (the mapping's topics); it holds: "
                           f"{bag.describe_topics()}")
        for topic, (kind, names) in plan.items():
            typ = bag.topics[topic].msgtype
            ok = IMAGE_TYPES if kind == "image" else (JOINT_TYPE,)
            if typ not in ok:
                raise BagError(f"topic {topic} has type {typ}; {', '.join(names)} needs {' or '.join(ok)}")
        register_bag_types(ts, list(bag.topics.values()))
        sync = lv.StampSync(list(plan), int(opts.sync_tolerance * 1e9), keep=10,
                            jump_ns=int(opts.time_jump * 1e9) if opts.time_jump else None)
        t0 = None if bag.start_ns is None else bag.start_ns + int(opts.start * 1e9)
        t1 = None if not opts.duration or t0 is None else t0 + int(opts.duration * 1e9)
        for topic, t, raw in bag.messages(sorted(plan), start=t0):
            if t1 is not None and t >= t1 or opts.max_steps and len(steps) >= opts.max_steps:
                break
            kind, names = plan[topic]
            try:
                msg = ts.deserialize_cdr(raw, bag.topics[topic].msgtype)
                if kind == "image":
                    rgb, _ = image_from_msg(msg, bag.topics[topic].msgtype)
                    got = {n: live.image(n, rgb, opts.resize) for n in names}
                else:
                    fields = {"position": msg.position, "velocity": msg.velocity, "effort": msg.effort}
                    got = {n: live.vector_from_joint_state(n, msg.name, fields) for n in names}
                stamp = stamp_ns(msg)
            except Exception as e:  # noqa: BLE001 - one bad message is skipped and counted, never fatal
                reason = f"{topic}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            pair = sync.add(topic, stamp, got)
            if pair is not None:
                obs = {}
                for part in pair.values():
                    obs.update(part)
                steps.append((stamp, obs))
        if bag.problem is not None:
            skipped[f"bag damaged: {bag.problem.describe(bag.start_ns)}"] = 1
    if not steps:
        why = "; ".join(f"{k} (x{v})" for k, v in list(skipped.items())[:3])
        raise BagError(f"bag {path}: no step has every mapped topic ({', '.join(plan)}) within "
                       f"{opts.sync_tolerance:g} s" + (f"; skipped: {why}" if why else ""))
    data = {n: np.stack([o[n] for _, o in steps]) for n in live.mapping.names()}
    return Recording(data, np.array([s for s, _ in steps], np.int64), str(path), skipped)


@dataclass
class RecordingExplanation:
    """Per step: the relevance of every input (name -> (T, ...)), the ratio rows (step, input,
    group, ratio) and the model's outputs (T, A)."""

    method: str
    relevance: dict
    rows: list
    outputs: np.ndarray
    alpha: np.ndarray

    def mean_ratio(self, names) -> dict:
        return {n: float(np.nanmean([r[3] for r in self.rows if r[1] == n and not r[2]])) for n in names}


def explain_recording(model, mapping, rec: Recording, method: str = "dtd", alpha: Optional[np.ndarray] = None,
                      batch: int = 8, device=None, progress: bool = False) -> RecordingExplanation:
    """Every step of `rec` explained with the graph engine (batches of `batch` steps); alpha: (T, A)
    per-step output weights (None: the mapping's actions.alpha, else 1)."""
    import torch

    T = rec.steps
    mapping.to_batch({k: v[:1] for k, v in rec.data.items()})  # shapes checked before any work
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    rel = {n: [] for n in mapping.names()}
    rows, outputs = [], []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=T, desc=f"explain-model {method}", unit="step")
    for s in range(0, T, batch):
        inputs = mapping.to_batch({k: v[s:s + batch] for k, v in rec.data.items()}, device=device, dtype=dtype)
        kw = {} if alpha is None else {"alpha": alpha[s:s + batch]}
        e = mapping.explain(model, inputs, method=method, **kw)
        B = e.outputs.shape[0]
        for n in mapping.names():
            rel[n].append(e.inputs[n].detach().cpu().numpy())
        outputs.append(e.outputs.detach().cpu().numpy())
        for b in range(B):
            for n in mapping.names():
                rows.append((s + b, n, "", float(e.ratios[n][b])))
            for key, v in e.group_ratios.items():
                n, g = key.split("/", 1)
                rows.append((s + b, n, g, float(v[b])))
        if bar is not None:
            bar.update(B)
    if bar is not None:
        bar.close()
    y = np.concatenate(outputs)
    a = mapping.alpha(y.shape[1]) if alpha is None else np.asarray(alpha)
    return RecordingExplanation(method, {n: np.concatenate(v) for n, v in rel.items()}, rows, y, a)


def write_report(out, rec: Recording, result: RecordingExplanation, mapping, about: Mapping) -> dict:
    """ratios.csv (step, stamp_ns, input, group, ratio), relevance.npz (per input, T x ...),
    summary.json (`about` + steps, outputs, alpha, mean ratios, skipped messages) into `out` (which the
    caller has checked is new or empty). Returns the summary."""
    out = Path(out)
    with open(out / "ratios.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "stamp_ns", "input", "group", "ratio"])
        w.writerows((s, int(rec.stamps[s]), n, g, r) for s, n, g, r in result.rows)
    np.savez(out / "relevance.npz", **result.relevance)
    n_actions = result.outputs.shape[1]
    summary = {
        **dict(about), "source": rec.source, "method": result.method, "steps": rec.steps,
        "actions": mapping.action_names or [f"action{i}" for i in range(n_actions)],
        "action_kind": mapping.action_kind, "alpha": np.asarray(result.alpha).tolist(),
        "inputs": {n: list(mapping.observations[n].shape) for n in mapping.names()},
        "mean_ratio": result.mean_ratio(mapping.names()), "skipped_messages": dict(rec.skipped),
        "stamps_ns": rec.stamps.tolist(), "outputs": result.outputs.tolist(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
