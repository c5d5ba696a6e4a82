"""user_policy_node: a user's PyTorch policy on the topics a YAML mapping names, and its explanations.

The model (`package.module:factory` + weights, or a torch.export `.pt2`) and the mapping are loaded
and checked before anything is subscribed (policy_xai.user_live.load_live): a model or mapping that
cannot work stops the node with one line, exit code 1. Then every topic of the mapping is
subscribed (images: sensor_msgs/Image; vectors: sensor_msgs/JointState fields by joint name), the
messages are paired by stamp, the model acts on each complete observation and publishes:

- /policy_xai/actions (named, position[]) always; for `actions.kind: torques` also the effort
  commands /effort_controller/commands (zero when no fresh observation came for `stale_timeout` s,
  or when the model's actions are not finite) and /policy_xai/torques, as policy_node does;
- what it decided on: /policy_xai/observation/image (the first camera) and
  /policy_xai/observation/config (the vector observations, element by element).

A worker thread (fed through a single slot: it takes the newest decision and counts the skipped
ones) explains each decision with `method` on its own copy of the model and publishes the first
camera's relevance on /policy_xai/relevance/image (so visualization_node draws the heatmap), every
camera's on /policy_xai/relevance/cameras/<name>, the ratios per input and per named group on
/policy_xai/relevance/ratios (sum to 1), the vector relevance and the alpha used.

One node, run once or twice. By default (explain:=true; the launch file, `policy-xai run --model`)
one process acts and explains: its worker thread explains exactly the tensors the model acted on,
and checks that the explanation's outputs are the actions. With split:=true / --split it runs
twice, as the existing policy_node / attribution_node pair does: a user_policy_node with
explain:=false that acts, and a user_explainer_node (this node with act:=false, which never
commands) on the same topics. Both get the same messages, pair them by the same stamps and load
the same model (an untrained one from the same seed); the explainer checks its recomputed actions
against the acting node's /policy_xai/actions of the same stamp. No observation is forwarded: a
user's observation is any set of named tensors, which would need a topic each. docs/ros.md has the
measured cost of each on this machine.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .. import decisions, live as lv
from . import convert as cv
from . import interfaces as itf
from .common import XaiNode, main as run_node, qos


class UserPolicyNode(XaiNode):
    def __init__(self, name: str = "user_policy_node"):
        super().__init__(name)
        import torch

        from ..user_live import load_live

        torch.set_num_threads(max(1, int(self.p("threads"))))
        self.importance = str(self.p("importance"))
        self.acting = bool(self.p("act"))  # false: explain only (user_explainer_node), never command
        self.live = L = load_live(
            self.p("model"), self.p("mapping"), weights=self.p("weights"), model_kwargs=self.p("model_kwargs"),
            device=self.p("device"), allow_untrained=bool(self.p("allow_untrained")) or not self.acting,
            method=self.p("method"),
            robot=str(self.p("robot")) if self.importance == "dynamics" else "", dt=float(self.p("dt")),
            init_seed=int(self.p("init_seed")))
        self.method = L.method
        if L.untrained and self.acting:
            self.get_logger().warning(f"running an UNTRAINED {L.source} (allow_untrained:=true): its actions are a "
                                      "random network's")
        self.action_names = list(L.mapping.action_names)
        self.torques = L.mapping.action_kind == "torques" and self.acting
        self.limits = self.torque_limits(self.p("torque_limits"))
        self.plan = L.topic_plan()
        self.cameras = L.image_names()
        self.element_names = L.element_names()
        self.sync = lv.StampSync(list(self.plan), int(self.p("sync_tolerance") * 1e9), keep=10,
                                 jump_ns=int(self.p("time_jump") * 1e9))
        self.watchdog = lv.Watchdog(self.p("stale_timeout"))
        self.rate, self.explain_rate = lv.RateMeter(), lv.RateMeter()
        self.compute, self.explain_time, self.age, self.latency = (lv.LatencyStats() for _ in range(4))
        self.stale_commands = 0
        self.reproduction = decisions.ReproductionCheck()  # explained outputs vs the actions
        self.lock = threading.Lock()  # the explainer copy of the model: one explanation (or check) at a time
        self.slot = lv.LatestSlot()
        self.pub_actions = self.pub("actions") if self.acting else None
        if self.torques:
            self.pub_cmd, self.pub_torques = self.pub("commands"), self.pub("torques")
        # what it decided on (the heatmap pairs the first camera's image with its relevance by stamp)
        self.pub_obs_image = self.pub("obs_image") if self.cameras and self.acting else None
        self.pub_obs_config = self.pub("obs_config") if self.element_names and self.acting else None
        self.pubs = {k: self.pub(k) for k in ("relevance_points", "relevance_config", "ratios", "importance")}
        if self.cameras:
            self.pubs["relevance_image"] = self.pub("relevance_image")
        t = itf.TOPIC["camera_relevance"]
        self.camera_pubs = {}
        for c in self.cameras:
            pub = self.create_publisher(itf.message_class(t.type), t.name.replace("<camera>", c), qos(t.qos))
            self._published[pub.topic_name] = self.camera_pubs[c] = pub
        self.warm_up()
        from sensor_msgs.msg import Image, JointState

        for topic, (kind, names) in self.plan.items():
            if kind == "image":
                cb = self.guarded("image", lambda m, topic=topic, names=names: self.on_image(topic, names, m))
                self.create_subscription(Image, topic, cb, qos(itf.SENSOR_DATA, 2))
            else:
                cb = self.guarded("joint_state", lambda m, topic=topic, names=names: self.on_vector(topic, names, m))
                self.create_subscription(JointState, topic, cb, qos(itf.SENSOR_DATA, 5))
        if self.torques:
            self.create_timer(0.05, self.on_watchdog)
        # explain only: stamp -> the acting node's actions, to check against (its own lock, not self.lock:
        # an explanation must not hold these up)
        self.published = decisions.StampedOutputs(keep=50)
        if not self.acting:
            self.sub("actions", self.guarded("actions", self.on_actions), depth=20)
        self.worker = threading.Thread(target=self.work, name="explain", daemon=True)
        self.worker.start()
        self.get_logger().info(f"{L.source}: {len(self.action_names)} {L.mapping.action_kind} actions from "
                               f"{', '.join(f'{n} <- {t}' for t, (_, ns) in self.plan.items() for n in ns)}; "
                               + ("acting" if self.acting else "explain only")
                               + (f", explaining with {self.method!r}" if self.p("explain") else ", not explaining"))

    def warm_up(self) -> None:
        """One decision and one explanation on a random observation: the first calls are slow."""
        L = self.live
        try:
            obs = L.mapping.example()
            inputs, _ = L.decide(obs)
            with self.lock:
                L.explain(inputs, {n: obs[n] for n in L.vector_names()}, self.method, self.importance)
        except Exception as e:  # noqa: BLE001 - only a warm-up: the live path reports its own errors
            self.get_logger().warning(f"warm-up failed: {e}")

    def torque_limits(self, extra) -> np.ndarray:
        """None (inf) or the torque_limits parameter: one value per action."""
        return decisions.torque_limits(np.full(len(self.action_names), np.inf), extra, self.action_names, "actions")

    # ---- parameters ---------------------------------------------------------------------------
    def check_parameters(self, new) -> None:
        self.torque_limits(new["torque_limits"])
        if new["method"] != self.method:
            with self.lock:
                self.live.check_method(new["method"])

    def apply_parameters(self, changed) -> None:
        if "torque_limits" in changed:
            self.limits = self.torque_limits(changed["torque_limits"])
        if "method" in changed:
            self.method = changed["method"]
        self.apply_pairing_parameters(changed)
        if "dt" in changed:
            self.live.dt = float(changed["dt"])

    # ---- inputs --------------------------------------------------------------------------------
    def on_image(self, topic: str, names, msg) -> None:
        rgb = cv.rgb_from_msg(msg)
        resize = bool(self.p("resize"))
        got = {n: self.live.image(n, rgb, resize) for n in names}
        self._offer(topic, cv.stamp_to_ns(msg.header.stamp), (got, msg.header.frame_id))

    def on_vector(self, topic: str, names, msg) -> None:
        fields = {"position": msg.position, "velocity": msg.velocity, "effort": msg.effort}
        got = {n: self.live.vector_from_joint_state(n, msg.name, fields) for n in names}
        self._offer(topic, cv.stamp_to_ns(msg.header.stamp), (got, ""))

    def _offer(self, topic, stamp, item) -> None:
        pair = self.sync.add(topic, stamp, item)
        if pair is None:
            return
        obs, frame_id = {}, ""
        for t in self.plan:
            part, fid = pair[t]
            obs.update(part)
            if self.plan[t][0] == "image" and not frame_id:
                frame_id = fid
        self.act(stamp, obs, frame_id)

    # ---- decision ------------------------------------------------------------------------------
    def act(self, stamp: int, obs: dict, frame_id: str) -> None:
        vec = {n: obs[n] for n in self.live.vector_names()}
        if not self.acting:  # explain only: the acting node decided on these same messages
            if self.p("explain"):
                L = self.live
                self.slot.put((stamp, L.mapping.to_inputs(obs, device=L.device, dtype=L.dtype), vec, None, frame_id))
            self.rate.tick()
            return
        t0 = time.perf_counter()
        try:
            inputs, raw = self.live.decide(obs)
        except ValueError:
            if self.torques:
                self.send(np.zeros(len(self.action_names)))  # never keep pushing after a bad decision
            raise
        self.compute.add(time.perf_counter() - t0)
        a = decisions.clip_command(raw, self.limits) if self.torques else raw  # finite: decide() checked
        if self.torques:
            self.send(a)
            self.pub_torques.publish(cv.joint_state_msg(stamp, self.action_names, effort=a))
        self.pub_actions.publish(cv.named_vector_msg(stamp, self.action_names, a))  # acting: always there
        self.watchdog.feed()
        self.rate.tick()
        self.age.add((self.now_ns() - stamp) * 1e-9)
        if self.pub_obs_image is not None:
            self.pub_obs_image.publish(cv.image_msg(obs[self.cameras[0]], stamp, frame_id))
        if self.pub_obs_config is not None:
            self.pub_obs_config.publish(cv.named_vector_msg(stamp, self.element_names,
                                                            np.concatenate(list(vec.values()))))
        if self.p("explain"):
            self.slot.put((stamp, inputs, vec, raw, frame_id))

    def on_actions(self, msg) -> None:
        """explain only: the acting node's actions by stamp (its decision on the messages explained)."""
        self.published.put(cv.stamp_to_ns(msg.header.stamp),
                           cv.select_joints(msg.name, msg.position, self.action_names, "position"))

    def send(self, tau) -> None:
        self.pub_cmd.publish(cv.float_array_msg(tau))

    def on_watchdog(self) -> None:
        if self.watchdog.stale():
            self.send(np.zeros(len(self.action_names)))
            self.stale_commands += 1

    # ---- explanation -----------------------------------------------------------------------------
    def work(self) -> None:
        self.serve(self.slot, self.explain)

    def explain(self, stamp, inputs, vec, actions, frame_id) -> None:
        t0 = time.perf_counter()
        with self.lock:
            e = self.live.explain(inputs, vec, self.method, self.importance)
        self.explain_time.add(time.perf_counter() - t0)
        limits = None
        if actions is None:  # explain only: compare with what the acting node published (clipped) for this stamp
            actions, limits = self.published.get(stamp), self.limits
        diff = None if actions is None else self.reproduction.compare(
            e.outputs, actions, decisions.relative_tolerance(actions), limits=limits)
        if diff is not None:
            self.report_error("action_mismatch", f"the explained outputs differ from the actions by {diff:.4g} "
                              "(another model, weights or torque_limits than the acting node's?)", throttle=5.0)
        P = self.pubs
        for i, c in enumerate(self.cameras):
            if c not in e.maps:
                continue
            msg = cv.image_msg(e.maps[c], stamp, frame_id)
            if i == 0:
                P["relevance_image"].publish(msg)
            self.camera_pubs[c].publish(msg)
        P["relevance_points"].publish(cv.named_vector_msg(stamp, [], []))  # no feature points: the heatmap pairs
        P["relevance_config"].publish(cv.named_vector_msg(stamp, e.element_names, e.element_relevance))
        P["ratios"].publish(cv.named_vector_msg(stamp, e.ratio_names, e.ratio_values))
        P["importance"].publish(cv.named_vector_msg(stamp, self.action_names, e.alpha))
        self.explain_rate.tick()
        self.latency.add((self.now_ns() - stamp) * 1e-9)

    # ---- health ---------------------------------------------------------------------------------
    def diagnostics(self):
        L = self.live
        values = {
            "model": L.source, "mapping": L.mapping.path, "action_kind": L.mapping.action_kind,
            "untrained": L.untrained, "device": str(L.device), "method": self.method, "act": self.acting,
            "rate_hz": self.rate.rate(), "decisions": self.rate.total, "explained": self.explain_rate.total,
            "explain_rate_hz": self.explain_rate.rate(), "skipped_behind": self.slot.skipped,
            "compute_p50_ms": 1e3 * self.compute.percentile(50), "compute_p99_ms": 1e3 * self.compute.percentile(99),
            "explain_p50_ms": 1e3 * self.explain_time.percentile(50),
            "explain_p99_ms": 1e3 * self.explain_time.percentile(99),
            "observation_age_p50_ms": 1e3 * self.age.percentile(50),
            **self.latency.summary("stamp_to_explained"),
            "unpaired_dropped": self.sync.dropped, "stale": self.watchdog.stale(),
            "stale_commands": self.stale_commands, "actions_checked": self.reproduction.checked,
            "action_mismatches": self.reproduction.mismatches, "max_action_diff": self.reproduction.max_diff,
        }
        if self.recent_error():
            return 2, f"input errors: {self.last_error}", values
        jump = self.sync.jump_status()
        if jump:
            return 1, jump, values
        if not self.acting:
            return 0, f"explaining at {values['explain_rate_hz']:.1f} Hz (explain only)", values
        if self.watchdog.stale():
            return 1, f"no fresh observation for > {self.watchdog.timeout} s" + \
                (": commanding zero torque" if self.torques else ""), values
        return 0, f"acting at {values['rate_hz']:.1f} Hz, explaining at {values['explain_rate_hz']:.1f} Hz", values

    def close(self) -> None:
        self.slot.close()
        self.worker.join(timeout=2.0)


def main(args=None) -> int:
    return run_node(UserPolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
