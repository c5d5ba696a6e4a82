"""attribution_node: explains each decision the policy node published.

Pairs /policy_xai/observation/{image,config} and /policy_xai/torques by their (identical) stamp,
recomputes the forward pass and checks it reproduces the published torques, computes the importance
factors from the robot model and the relevance with the method parameter (changeable at run time:
`ros2 param set /attribution_node method rap`), and publishes image relevance, configuration
relevance, feature-point relevance, ratios and importance factors with the observation stamp.
The explanation runs in a worker thread fed through a single slot: when it falls behind it takes the
newest decision and counts the ones it skipped.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np

from .. import decisions, live
from . import convert as cv
from .common import XaiNode, main as run_node
from ..attribution.engine import usable_method
from ..device import to_numpy
from .policy_node import load_node_policy


class AttributionNode(XaiNode):
    def __init__(self):
        super().__init__("attribution_node")
        self.policy = load_node_policy(self)
        self.spec = s = self.policy.spec
        self.limits = np.asarray(s.torque_limits)
        self.method = self.p("method")  # method, precision, dt, tolerances: validated, changeable at run time
        method, why = usable_method(self.policy, self.method)
        if why:  # the default needs the policy's occlusion_net explainer: a policy without one gets the fallback
            self.get_logger().warning(f"method {self.method!r} is not available ({why}); explaining with "
                                      f"{method!r} instead")
            self.method = method
            from rclpy.parameter import Parameter

            self.set_parameters([Parameter("method", value=method)])  # `ros2 param get` shows what is used
        self.precision = self.p("precision")
        self.importance = self.p("importance")
        self.robot = live.RobotAdapter(s, str(self.p("robot"))) if self.importance == "dynamics" else None
        self.config_names = live.config_feature_names(s)
        self.sync = live.StampSync(["image", "config", "torques"], 0, keep=20, jump_ns=int(self.p("time_jump") * 1e9))
        self.slot = live.LatestSlot()
        self.rate = live.RateMeter()
        self.compute = live.LatencyStats()
        self.latency = live.LatencyStats()
        # the stages of stamp -> publish, for /diagnostics: inputs received and paired, waiting in the
        # slot for the worker, explanation (compute), publishing the five messages
        self.paired = live.LatencyStats()
        self.queue_wait = live.LatencyStats()
        self.publish_time = live.LatencyStats()
        self.reproduction = decisions.ReproductionCheck()  # recomputed vs published torques
        self.done = 0
        self.pubs = {k: self.pub(k) for k in ("relevance_image", "relevance_config", "relevance_points",
                                               "ratios", "importance")}
        self.warm_up()
        self.sub("obs_image", self.guarded("observation_image", self.on_image), depth=2)
        self.sub("obs_config", self.guarded("observation_config", self.on_config), depth=5)
        self.sub("torques", self.guarded("torques", self.on_torques), depth=5)
        self.worker = threading.Thread(target=self.work, name="explain", daemon=True)
        self.worker.start()
        self.get_logger().info(f"explaining policy {s.name!r} with {self.method!r}")

    def warm_up(self) -> None:
        """One explanation of a blank observation before subscribing: the first call is several times
        slower (lazy allocations, kernel selection) and would otherwise delay the first live ones."""
        from ..attribution import explain

        s = self.spec
        try:
            rgb = np.zeros((s.image_height, s.image_width, s.image_channels), np.uint8)
            config = np.zeros(s.config_dim)
            alpha = live.importance_per_step(s, config, self.robot, self.p("dt"))  # the robot model's first call too
            if not np.all(np.isfinite(alpha)) or not np.any(alpha):
                alpha = np.ones(s.n_joints)
            explain(self.policy, self.policy.prepare_image(rgb), self.policy.prepare_config(config),
                    method=self.method, alpha=alpha, precision=self.precision)
        except Exception as e:  # noqa: BLE001 - only a warm-up: the live path reports its own errors
            self.get_logger().warning(f"warm-up explanation failed: {e}")

    # ---- parameters ---------------------------------------------------------------------------
    def check_parameters(self, new) -> None:
        """the occlusion_net methods need an explainer trained for the loaded weights."""
        _, why = usable_method(self.policy, new["method"]) if new["method"] != self.method else ("", "")
        if why:
            raise ValueError(f"method {new['method']!r}: {why}")

    def apply_parameters(self, changed) -> None:
        """method / precision apply from the next explanation on; dt and reproduce_tolerance are read
        per explanation (self.p)."""
        if "method" in changed:
            self.method = changed["method"]
        if "precision" in changed:
            self.precision = changed["precision"]
        if "time_jump" in changed:
            self.sync.jump_ns = int(changed["time_jump"] * 1e9)

    # ---- inputs ---------------------------------------------------------------------------------
    def on_image(self, msg) -> None:
        rgb = cv.rgb_from_msg(msg)
        self._offer("image", cv.stamp_to_ns(msg.header.stamp), (rgb, msg.header.frame_id))

    def on_config(self, msg) -> None:
        names, values = cv.named_vector_from_msg(msg)
        if names != self.config_names:
            raise cv.ConversionError(f"configuration names {names} do not match the policy's {self.config_names}")
        self._offer("config", cv.stamp_to_ns(msg.header.stamp), values)

    def on_torques(self, msg) -> None:
        tau = cv.select_joints(msg.name, msg.effort, self.spec.joint_names, "effort")
        self._offer("torques", cv.stamp_to_ns(msg.header.stamp), tau)

    def _offer(self, stream, stamp, item) -> None:
        got = self.sync.add(stream, stamp, item)
        if got is not None:
            self.paired.add((self.now_ns() - stamp) * 1e-9)
            self.slot.put((stamp, got, time.perf_counter()))

    # ---- work -----------------------------------------------------------------------------------
    def work(self) -> None:
        self.serve(self.slot, self.explain)

    def explain(self, stamp: int, got: dict, queued: Optional[float] = None) -> None:
        """Explain one paired decision and publish; `queued`: perf_counter() when it was put in the slot."""
        from ..attribution import explain

        rgb, frame_id = got["image"]
        config, published = got["config"], got["torques"]
        t0 = time.perf_counter()
        if queued is not None:
            self.queue_wait.add(t0 - queued)
        alpha = live.importance_per_step(self.spec, config, self.robot, self.p("dt"))
        exp = explain(self.policy, self.policy.prepare_image(rgb), self.policy.prepare_config(config),
                      method=self.method, alpha=alpha, precision=self.precision)
        diff = self.reproduction.compare(to_numpy(exp.torques[0]), published, float(self.p("reproduce_tolerance")),
                                         limits=self.limits)
        if diff is not None:
            self.report_error("torque_mismatch", f"recomputed torques differ from the published ones by {diff:.4g} "
                              "N·m (different weights or spec loaded?)", throttle=5.0)
        t1 = time.perf_counter()
        self.compute.add(t1 - t0)
        rel_img = to_numpy(exp.image[0]).astype(np.float32)  # back to the CPU only to publish
        rel_cfg = to_numpy(exp.config[0])
        P = self.pubs
        P["relevance_image"].publish(cv.image_msg(rel_img, stamp, frame_id))
        if exp.points is not None and exp.feature_points is not None:  # with the image: all the heatmap needs
            fp = to_numpy(exp.feature_points[0])
            pr = to_numpy(exp.points[0])
            names = [f"point_{k:02d}" for k in range(len(pr))]
            P["relevance_points"].publish(cv.named_vector_msg(stamp, names, pr, velocity=fp[:, 0], effort=fp[:, 1]))
        P["relevance_config"].publish(cv.named_vector_msg(stamp, self.config_names, rel_cfg))
        if exp.ratios is not None:
            P["ratios"].publish(cv.named_vector_msg(stamp, exp.ratio_names(), exp.ratio_array()[0]))
        else:
            P["ratios"].publish(cv.named_vector_msg(stamp, [], []))
        P["importance"].publish(cv.named_vector_msg(stamp, self.spec.joint_names, alpha))
        self.publish_time.add(time.perf_counter() - t1)
        self.done += 1
        self.rate.tick()
        self.latency.add((self.now_ns() - stamp) * 1e-9)

    # ---- health ---------------------------------------------------------------------------------
    def diagnostics(self):
        values = {
            "method": self.method, "spec": self.spec.name, "rate_hz": self.rate.rate(), "explained": self.done,
            "skipped_behind": self.slot.skipped, "unpaired_dropped": self.sync.dropped,
            "compute_p50_ms": 1e3 * self.compute.percentile(50), "compute_p99_ms": 1e3 * self.compute.percentile(99),
            **self.latency.summary("stamp_to_publish"),
            **_p50_p99(self.paired, "stamp_to_paired"), **_p50_p99(self.queue_wait, "queue_wait"),
            **_p50_p99(self.publish_time, "publish"),
            "torque_mismatches": self.reproduction.mismatches, "max_torque_diff": self.reproduction.max_diff,
            "precision": self.precision, "device": str(self.policy.device),
            "time_jumps_backward": self.sync.jumps_backward, "time_jumps_forward": self.sync.jumps_forward,
        }
        jump = self.sync.jump_status()
        if self.recent_error(10.0):
            return 2, self.last_error, values
        if jump:
            return 1, jump, values
        return 0, f"explaining with {self.method} at {values['rate_hz']:.1f} Hz", values

    def close(self) -> None:
        self.slot.close()
        self.worker.join(timeout=2.0)


def _p50_p99(stats: live.LatencyStats, prefix: str) -> dict:
    return {f"{prefix}_p50_ms": 1e3 * stats.percentile(50), f"{prefix}_p99_ms": 1e3 * stats.percentile(99)}


def main(args=None) -> int:
    return run_node(AttributionNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
