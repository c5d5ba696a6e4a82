"""Does explaining in the acting process slow the control path? The sim driven by a user's model,
one configuration after the other: "split" (graph user_sim_split: user_policy_node acts,
user_explainer_node explains), "one" (user_sim: one user_policy_node acts and explains in its worker
thread) and "none" (user_sim with explain:=false); a probe in this process measures observation stamp ->
arrival of /policy_xai/torques, relevance/ratios and the heatmap (p50 / p99 / max ms) and the rates.

    python scripts/user_policy_latency.py [--duration 25] [--domain-id 228] [--method dtd] [--modes split one none]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test"))

FACTORY = "policy_xai.attribution.graph.models:robomimic_bc"
KWARGS = '{"width": 8, "image_size": 64, "low_dim": {"joint_state": 14}, "tanh": false}'


def measure(mode: str, duration: float, domain: int, method: str) -> dict:
    from policy_xai.ros.graph import graph, user_sim_overrides
    from policy_xai.ros.runner import GraphRunner
    from ros_harness import Probe

    overrides = user_sim_overrides(FACTORY, "user_policy_sim", KWARGS, method=method, allow_untrained=True,
                                   split=mode == "split")
    explain = mode != "none"
    overrides["user_policy_node"]["explain"] = mode == "one"
    probe = Probe(domain)
    keys = ("torques", "ratios", "heatmap")
    probe.listen(*keys)
    with GraphRunner(graph("user_sim_split" if mode == "split" else "user_sim", overrides=overrides),
                     domain_id=domain) as g:
        probe.wait_for("torques", 20, timeout=90)
        if explain:
            probe.wait_for("heatmap", 3, timeout=60)
        time.sleep(2.0)  # past the first decisions
        probe.clear()
        t0 = time.monotonic()
        time.sleep(duration)
        ran = time.monotonic() - t0
        with probe.lock:
            got = {k: list(probe.msgs[k]) for k in keys}
        dead = g.dead()
    probe.close()
    out = {"mode": mode, "method": method, "duration_s": round(ran, 1), "dead": dead,
           "load_average": os.getloadavg()}
    for k, rows in got.items():
        if not rows:
            continue
        d = np.array([(t - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) * 1e-6 for t, m in rows])
        out[k] = {"hz": round(len(rows) / ran, 2), "p50_ms": round(float(np.percentile(d, 50)), 1),
                  "p99_ms": round(float(np.percentile(d, 99)), 1), "max_ms": round(float(d.max()), 1), "n": len(d)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=25.0)
    ap.add_argument("--domain-id", type=int, default=228)
    ap.add_argument("--method", default="dtd")
    ap.add_argument("--modes", nargs="*", default=["split", "one", "none"], choices=["split", "one", "none"])
    a = ap.parse_args()
    rows = [measure(m, a.duration, a.domain_id, a.method) for m in a.modes]
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
