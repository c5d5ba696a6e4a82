"""policy_node: the newest camera image + the joint state with its stamp -> the policy's torques.

Publishes the commands, and exactly what it decided on (the image and configuration it used and the
torques, all stamped with the observation stamp) for the attribution node. Safety: torques clipped to
the limits, never NaN, zero (or hold) when no fresh observation came for `stale_timeout` s.
"""
from __future__ import annotations

import time

import numpy as np

from .. import decisions, groups, live
from ..observation import fit_image
from . import convert as cv
from .common import XaiNode, main as run_node


class UntrainedPolicyRefused(ValueError):
    """The policy node was started without trained weights and without the opt-in."""


def load_node_policy(node: XaiNode, require_weights: bool = False):
    """The policy a node's spec / weights / init_seed parameters name (shared with attribution_node),
    on the node's `device` (checked when the parameter was declared). require_weights: refuse
    untrained weights unless the node's allow_untrained parameter is true (the policy node drives an
    arm: a random network commands arbitrary torques up to the limits)."""
    import torch

    from ..resolve import resolve_policy

    torch.set_num_threads(max(1, int(node.p("threads"))))
    weights = str(node.p("weights") or "")
    spec = str(node.p("spec") or "")
    device = node.p("device")
    if weights:
        return resolve_policy(weights, spec or None, device=device, accept=("weights",), label="weights")
    if require_weights and not node.p("allow_untrained"):
        raise UntrainedPolicyRefused(
            "no trained policy: set the parameter 'weights' to a .safetensors file (e.g. weights:="
            "models/reach.safetensors); untrained weights would drive the arm with a random network "
            "(allow_untrained:=true permits that, for simulation and tests only)")
    return resolve_policy(spec or "small", seed=int(node.p("init_seed")), device=device, accept=("spec",),
                          label="spec")


class PolicyNode(XaiNode):
    def __init__(self):
        super().__init__("policy_node")
        self.policy = load_node_policy(self, require_weights=True)
        self.untrained = not str(self.p("weights") or "")
        if self.untrained:
            self.get_logger().warning("running UNTRAINED weights (allow_untrained:=true): the torques are a "
                                      "random network's")
        self.spec = s = self.policy.spec
        self.spec_limits = np.asarray(s.torque_limits, dtype=np.float64)
        self.limits = self.torque_limits(self.p("torque_limits"))
        needs_ee = groups.needs_kinematics(s.group_names)
        self.robot = live.RobotAdapter(s, str(self.p("robot"))) if needs_ee else None
        self.config = live.ConfigBuilder(s, self.robot.ee if self.robot else None)
        self.sync = live.StampSync(["image", "joints"], int(self.p("sync_tolerance") * 1e9), keep=10,
                                   jump_ns=int(self.p("time_jump") * 1e9))
        self.watchdog = live.Watchdog(self.p("stale_timeout"))
        self.stale_action = self.p("stale_action")
        self.last_command = np.zeros(s.n_joints)
        self.rate = live.RateMeter()
        self.compute = live.LatencyStats()
        self.age = live.LatencyStats()
        self.publish_time = live.LatencyStats()  # command + observation + torques messages
        self.stale_commands = 0
        self.pub_cmd = self.pub("commands")
        self.pub_obs_image = self.pub("obs_image")
        self.pub_obs_config = self.pub("obs_config")
        self.pub_torques = self.pub("torques")
        self.warm_up()
        self.sub("image", self.guarded("image", self.on_image), depth=2)
        self.sub("joint_states", self.guarded("joint_state", self.on_joints), depth=5)
        self.create_timer(0.05, self.on_watchdog)
        self.get_logger().info(
            f"policy {s.name!r} ({s.image_height}x{s.image_width}, joints {list(s.joint_names)}) ready")

    def warm_up(self) -> None:
        """One forward pass (and the configuration builder) on a blank observation before subscribing:
        the first call is several times slower and would delay the first live decisions."""
        s = self.spec
        try:
            q = np.zeros(s.n_joints)
            self.policy.act(np.zeros((s.image_height, s.image_width, s.image_channels), np.uint8),
                            self.config.build(q, q))
        except Exception as e:  # noqa: BLE001 - only a warm-up: the live path reports its own errors
            self.get_logger().warning(f"warm-up decision failed: {e}")

    def torque_limits(self, extra) -> np.ndarray:
        """The spec's limits, tightened by the torque_limits parameter ('' or one value per joint)."""
        return decisions.torque_limits(self.spec_limits, extra, self.spec.joint_names)

    # ---- parameters ---------------------------------------------------------------------------
    def check_parameters(self, new) -> None:
        self.torque_limits(new["torque_limits"])

    def apply_parameters(self, changed) -> None:
        if "torque_limits" in changed:
            self.limits = self.torque_limits(changed["torque_limits"])
        self.apply_pairing_parameters(changed)
        if "stale_action" in changed:
            self.stale_action = changed["stale_action"]

    # ---- inputs --------------------------------------------------------------------------------
    def on_image(self, msg) -> None:
        stamp = cv.stamp_to_ns(msg.header.stamp)
        s = self.spec
        rgb = fit_image(cv.rgb_from_msg(msg), s.image_height, s.image_width, self.p("resize"),
                        wants=f"policy {s.name!r} takes")
        self._offer("image", stamp, (rgb, msg.header.frame_id))

    def on_joints(self, msg) -> None:
        stamp = cv.stamp_to_ns(msg.header.stamp)
        q, v = cv.joint_arrays(msg, self.spec.joint_names)
        config = self.config.build(q, v)
        self._offer("joints", stamp, config)

    def _offer(self, stream, stamp, item) -> None:
        pair = self.sync.add(stream, stamp, item)
        if pair is not None:
            self.act(stamp, pair["image"][0], pair["joints"], pair["image"][1])

    # ---- decision --------------------------------------------------------------------------------
    def act(self, stamp: int, rgb: np.ndarray, config: np.ndarray, frame_id: str) -> None:
        t0 = time.perf_counter()
        raw = self.policy.act(rgb, config)
        self.compute.add(time.perf_counter() - t0)
        tau = decisions.clip_command(raw, self.limits)
        if tau is None:
            self.send(np.zeros_like(self.limits))
            raise ValueError(f"policy produced non-finite torques {raw}; sent zero torque")
        t1 = time.perf_counter()
        self.send(tau)
        self.watchdog.feed()
        self.rate.tick()
        self.age.add((self.now_ns() - stamp) * 1e-9)
        self.pub_obs_image.publish(cv.image_msg(rgb, stamp, frame_id))
        self.pub_obs_config.publish(cv.named_vector_msg(stamp, self.config.names, config))
        self.pub_torques.publish(cv.joint_state_msg(stamp, self.spec.joint_names, effort=tau))
        self.publish_time.add(time.perf_counter() - t1)

    def send(self, tau: np.ndarray) -> None:
        self.last_command = np.asarray(tau, dtype=np.float64)
        self.pub_cmd.publish(cv.float_array_msg(self.last_command))

    def on_watchdog(self) -> None:
        if self.watchdog.stale():
            if self.stale_action == "zero" or self.watchdog.last is None:
                self.send(np.zeros_like(self.limits))
            else:
                self.send(self.last_command)
            self.stale_commands += 1

    def diagnostics(self):
        stale = self.watchdog.stale()
        values = {
            "spec": self.spec.name, "rate_hz": self.rate.rate(), "decisions": self.rate.total,
            "compute_p50_ms": 1e3 * self.compute.percentile(50), "compute_p99_ms": 1e3 * self.compute.percentile(99),
            "observation_age_p50_ms": 1e3 * self.age.percentile(50),
            "observation_age_p99_ms": 1e3 * self.age.percentile(99),
            "publish_p50_ms": 1e3 * self.publish_time.percentile(50),
            "publish_p99_ms": 1e3 * self.publish_time.percentile(99),
            "unpaired_dropped": self.sync.dropped, "stale": stale, "stale_trips": self.watchdog.trips,
            "stale_commands": self.stale_commands, "stale_action": self.stale_action,
            "time_jumps_backward": self.sync.jumps_backward, "time_jumps_forward": self.sync.jumps_forward,
            "last_time_jump_s": self.sync.last_jump_ns * 1e-9, "untrained": self.untrained,
            "torque_limits": ",".join(f"{x:g}" for x in self.limits), "device": str(self.policy.device),
        }
        jump = self.sync.jump_status()
        if self.recent_error():
            return 2, f"input errors: {self.last_error}", values
        if jump:
            return 1, jump, values
        if stale:
            return 1, f"no fresh observation for > {self.watchdog.timeout} s: commanding {self.stale_action}", values
        return 0, f"acting at {values['rate_hz']:.1f} Hz", values


def main(args=None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
