"""Reading what a live run recorded (rosbags only, no rclpy): topic rates, stamp-to-arrival latency,
simulation success, the heatmap video and the ratio plot."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np

from ..bags import stamp_ns as _stamp
from . import interfaces as itf


def _rgb(msg) -> np.ndarray:
    from .convert import decode_image, to_rgb

    return to_rgb(decode_image(msg.height, msg.width, msg.encoding, msg.step, bytes(msg.data),
                               bool(msg.is_bigendian)), msg.encoding)


def read_run(bag: "str | Path", decode: tuple = ("heatmap", "ratios", "diagnostics", "relevance_image", "torques")):
    """Counts and receive times per topic, plus decoded messages of the `decode` topic keys:
    {"counts": {topic: n}, "times": {topic: [ns]}, "stamps": {topic: [ns]}, "msgs": {key: [(t, msg)]}}.
    Read with policy_xai.bags.BagSource: a bag whose recorder was killed (no metadata.yaml, no MCAP
    footer) gives what it holds; undecodable messages are counted in "undecodable"."""
    from .. import bags

    names = {itf.TOPIC[k].name: k for k in decode}
    out = {"counts": defaultdict(int), "times": defaultdict(list), "stamps": defaultdict(list),
           "msgs": defaultdict(list), "types": {}, "undecodable": defaultdict(int)}
    ts = bags.typestore()
    with bags.BagSource(bag) as src:
        bags.register_bag_types(ts, list(src.topics.values()))
        for t in src.topics.values():
            out["types"][t.name] = t.msgtype
        rows = sorted(src.messages(), key=lambda m: m[1]) if src.reader != "rosbags" else src.messages()
        for topic, t, raw in rows:
            typ = out["types"][topic]
            out["counts"][topic] += 1
            out["times"][topic].append(t)
            key = names.get(topic)
            if key is not None or typ.startswith("sensor_msgs/"):
                try:
                    msg = ts.deserialize_cdr(raw, typ)
                except Exception:  # noqa: BLE001 - an unknown type or damaged bytes: counted, not fatal
                    out["undecodable"][topic] += 1
                    continue
                if hasattr(msg, "header"):
                    out["stamps"][topic].append(_stamp(msg))
                if key is not None:
                    out["msgs"][key].append((t, msg))
    return out


def summarize(run: dict) -> dict:
    """Rates (Hz) per topic, latencies (ms) from observation stamp to arrival of the explanation
    topics, and the simulation's success counters from its last /diagnostics."""
    rates = {}
    for topic, times in run["times"].items():
        if len(times) >= 2:
            span = (times[-1] - times[0]) * 1e-9
            rates[topic] = (len(times) - 1) / span if span > 0 else 0.0
    lat = {}
    for key in ("relevance_image", "heatmap", "torques"):
        topic = itf.TOPIC[key].name
        t, s = np.asarray(run["times"].get(topic, [])), np.asarray(run["stamps"].get(topic, []))
        if len(t) and len(t) == len(s):
            d = (t - s) * 1e-6
            lat[key] = {"p50_ms": float(np.percentile(d, 50)), "p99_ms": float(np.percentile(d, 99)),
                        "max_ms": float(d.max()), "n": int(len(d))}
    diag = {}
    for _, m in run["msgs"].get("diagnostics", []):
        for st in m.status:
            diag[st.name.split("/")[-1]] = {kv.key: kv.value for kv in st.values}
    sim = diag.get("sim_node", {})
    attr = diag.get("attribution_node", {})
    return {
        "rates_hz": {k: round(v, 2) for k, v in sorted(rates.items())},
        "counts": dict(sorted(run["counts"].items())),
        "latency": lat,
        "success": {k: sim.get(k) for k in ("episodes_done", "successes", "episode_success", "distance", "task")
                    if k in sim},
        "attribution": {k: attr.get(k) for k in ("method", "explained", "skipped_behind", "torque_mismatches",
                                                 "compute_p50_ms", "compute_p99_ms") if k in attr},
        "user_policy": {f"{node}/{k}": diag[node].get(k) for node in ("user_policy_node", "user_explainer_node")
                        for k in ("method", "decisions", "explained", "skipped_behind", "action_mismatches",
                                  "compute_p50_ms", "compute_p99_ms", "explain_p50_ms", "explain_p99_ms")
                        if k in diag.get(node, {}) and diag[node].get(k) not in ("0", "nan")},
        "nodes": diag,
    }


def write_video(run: dict, path: "str | Path", fps: float = 20.0) -> Optional[Path]:
    """The /policy_xai/heatmap frames as an MP4 (mp4v). None if there were no frames."""
    import cv2

    frames = run["msgs"].get("heatmap", [])
    if not frames:
        return None
    first = _rgb(frames[0][1])
    h, w = first.shape[:2]
    path = Path(path)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not vw.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for _, m in frames:
            img = _rgb(m)
            if img.shape[:2] == (h, w):
                vw.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    finally:
        vw.release()
    return path


def ratio_series(run: dict) -> tuple[np.ndarray, np.ndarray, tuple]:
    """(times s from the first, (N, G) ratios, group names) of the non-empty ratio messages."""
    rows = [(_stamp(m), tuple(m.name), np.asarray(m.position)) for _, m in run["msgs"].get("ratios", []) if len(m.name)]
    if not rows:
        return np.zeros(0), np.zeros((0, 0)), ()
    names = rows[-1][1]
    rows = [r for r in rows if r[1] == names]
    t = np.array([r[0] for r in rows], dtype=np.float64)
    return (t - t[0]) * 1e-9, np.stack([r[2] for r in rows]), names


def write_ratio_plot(run: dict, path: "str | Path") -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, r, names = ratio_series(run)
    if not len(t):
        return None
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.stackplot(t, r.T, labels=names, alpha=0.85)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("relevance ratio")
    ax.set_ylim(0, 1)
    ax.set_xlim(t[0], t[-1] if t[-1] > t[0] else t[0] + 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_summary(summary: dict, path: "str | Path") -> Path:
    Path(path).write_text(json.dumps(summary, indent=2, default=str))
    return Path(path)
