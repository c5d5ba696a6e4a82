"""sim_node: the MuJoCo arm (policy_xai.robot.Simulation) as a ROS 2 robot.

Every control period (1/rate): apply the newest torque command (zero when none came for
`command_timeout` s, or when it is malformed), step the physics, then publish /joint_states and
/camera/image_raw (+ camera_info) with one stamp. Commands are in the joint order of /joint_states.
Episodes last `episode_steps` control steps (0 = the task's horizon, -1 = forever), then the next
condition starts. Services: /sim/reset, /sim/random_target (std_srvs/Trigger); topic /sim/set_target.
"""
from __future__ import annotations

import time

import numpy as np

from .. import decisions, live
from ..observation import camera_info_fields
from . import convert as cv
from . import interfaces as itf
from .common import XaiNode, main as run_node


class SimNode(XaiNode):
    def __init__(self):
        super().__init__("sim_node")
        from ..robot.sim import Simulation

        w, h = int(self.p("image_width")), int(self.p("image_height"))
        self.sim = Simulation(task=str(self.p("task")), image_size=(h, w), control_rate=float(self.p("rate")),
                              seed=int(self.p("seed")))
        self.rng = np.random.default_rng(int(self.p("seed")))
        steps = int(self.p("episode_steps"))
        self.episode_steps = self.sim.task.horizon if steps == 0 else steps
        self.command = np.zeros(self.sim.n_joints)
        self.command_watchdog = live.Watchdog(self.p("command_timeout"))
        self.malformed_commands = 0
        self.last_stamp_ns = 0
        self.frame_id, self.camera_frame = str(self.p("frame_id")), str(self.p("camera_frame_id"))
        self.publish_clock = bool(self.p("publish_clock"))
        self.episodes, self.successes, self.zero_steps = 0, 0, 0
        self.episode_success = False
        self.rate = live.RateMeter()
        self.step_time = live.LatencyStats()
        self.pub_js = self.pub("joint_states")
        self.pub_img = self.pub("image")
        self.pub_info = self.pub("camera_info")
        self.pub_target = self.pub("target")
        self.pub_clock = self.pub("clock") if self.publish_clock else None
        self.sub("commands", self.guarded("command", self.on_command), depth=5)
        self.sub("set_target", self.guarded("set_target", self.on_set_target), depth=5)
        from std_srvs.srv import Trigger

        self.create_service(Trigger, itf.SERVICES["reset"][0], self.on_reset)
        self.create_service(Trigger, itf.SERVICES["random_target"][0], self.on_random_target)
        self.obs = self.start_episode()
        self.create_timer(self.sim.dt, self.guarded("step", self.tick))
        self.get_logger().info(f"task {self.sim.task.name!r}: {self.sim.n_joints} joints at "
                               f"{self.sim.control_rate:.1f} Hz, camera {w}x{h}, "
                               f"episodes of {self.episode_steps} steps")

    # ---- episode ------------------------------------------------------------------------------
    def start_episode(self, condition=None):
        c = int(self.p("condition")) if condition is None else condition
        n = len(self.sim.conditions)
        cond = (self.episodes % n) if c < 0 else c % n
        obs = self.sim.reset(cond)
        # simulated time restarts at 0 with every episode; /clock and the stamps continue from the last
        # published one (a ROS clock does not run backwards)
        self.clock_base_ns = self.last_stamp_ns + int(round(self.sim.dt * 1e9)) if self.last_stamp_ns else 0
        self.episode_success = False
        self.command[:] = 0.0
        self.publish_target()
        return obs

    def publish_target(self) -> None:
        from geometry_msgs.msg import Point, PointStamped

        p = self.sim.target_position
        msg = PointStamped(point=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.frame_id
        self.pub_target.publish(msg)

    def on_reset(self, request, response):
        self.end_episode()
        self.obs = self.start_episode()
        response.success, response.message = True, f"episode {self.episodes} started (condition {self.sim.condition})"
        return response

    def on_random_target(self, request, response):
        t = self.sim.task.targets
        lo, hi = t.min(0), t.max(0)
        p = lo + self.rng.uniform(0, 1, 3) * (hi - lo)
        self.sim.set_target(p)
        self.publish_target()
        response.success, response.message = True, f"target moved to {np.round(p, 3).tolist()}"
        return response

    def on_set_target(self, msg) -> None:
        self.sim.set_target([msg.point.x, msg.point.y, msg.point.z])
        self.publish_target()

    def end_episode(self) -> None:
        self.episodes += 1
        self.successes += int(self.episode_success)

    # ---- control loop ----------------------------------------------------------------------------
    def on_command(self, msg) -> None:
        """A valid command replaces the held one; a malformed one is an error AND zero torque from the
        next step on (until the next valid command): never keep pushing with an older command."""
        try:
            tau = self.valid_command(msg)
        except ValueError:
            self.command = np.zeros(self.sim.n_joints)
            self.malformed_commands += 1
            raise
        self.command = tau
        self.command_watchdog.feed()

    def valid_command(self, msg) -> np.ndarray:
        return decisions.valid_command(msg.data, self.sim.joint_names)

    def tick(self) -> None:
        t0 = time.perf_counter()
        if self.command_watchdog.stale():
            tau = np.zeros(self.sim.n_joints)
            self.zero_steps += 1
        else:
            tau = self.command
        self.obs = self.sim.step(tau)
        self.episode_success = self.episode_success or self.sim.success()
        if self.episode_steps > 0 and self.sim.steps >= self.episode_steps:
            self.end_episode()
            self.obs = self.start_episode()
        self.step_time.add(time.perf_counter() - t0)
        self.publish_observation(self.obs)

    def publish_observation(self, obs) -> None:
        if self.publish_clock:
            from rosgraph_msgs.msg import Clock

            stamp = self.clock_base_ns + int(round(obs.time * 1e9))
            self.pub_clock.publish(Clock(clock=cv.ns_to_stamp(stamp)))
        else:
            stamp = self.now_ns()
        self.last_stamp_ns = stamp
        self.pub_js.publish(cv.joint_state_msg(stamp, obs.joint_names, obs.joint_position, obs.joint_velocity,
                                               obs.torque_applied if len(obs.torque_applied) else (), self.frame_id))
        self.pub_img.publish(cv.image_msg(obs.image, stamp, self.camera_frame))
        self.pub_info.publish(self.camera_info(stamp, obs.image.shape))
        self.rate.tick()

    def camera_info(self, stamp: int, shape):
        h, w = shape[:2]
        fovy = float(getattr(self.sim, "camera_fovy", 45.0))
        return cv.camera_info_msg(camera_info_fields(w, h, fovy), stamp, self.camera_frame)

    def diagnostics(self):
        m = self.sim.measure()
        values = {"task": self.sim.task.name, "rate_hz": self.rate.rate(), "steps": self.rate.total,
                  "episode": self.episodes, "episode_step": self.sim.steps, "condition": self.sim.condition,
                  "distance": m.get("distance", float("nan")), "success": m.get("success", False),
                  "episode_success": self.episode_success, "episodes_done": self.episodes,
                  "successes": self.successes, "zero_torque_steps": self.zero_steps,
                  "malformed_commands": self.malformed_commands,
                  "step_p50_ms": 1e3 * self.step_time.percentile(50)}
        if self.recent_error():
            return 2, self.last_error, values
        if self.command_watchdog.stale():
            return 1, "no torque commands: applying zero torque", values
        return 0, f"stepping at {values['rate_hz']:.1f} Hz", values

    def apply_parameters(self, changed) -> None:
        if "command_timeout" in changed:
            self.command_watchdog.timeout = float(changed["command_timeout"])

    def close(self) -> None:
        self.sim.close()


def main(args=None) -> int:
    return run_node(SimNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
