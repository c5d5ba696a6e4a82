"""visualization_node: pictures for rviz from the attribution node's topics.

- /policy_xai/heatmap: the observation image with the colour-mapped image relevance and the feature
  points (paired by stamp with /policy_xai/relevance/image and /policy_xai/relevance/points);
- /policy_xai/markers: one sphere per joint at its position in the base frame, sized and coloured by
  that joint's share of the configuration relevance, plus a text marker with the ratios;
- /policy_xai/ratio_plot: the ratios over the last `plot_window` s, at `plot_rate` Hz.
"""
from __future__ import annotations

import time

import numpy as np

from .. import live, viz
from . import convert as cv
from .common import XaiNode, main as run_node


class VisualizationNode(XaiNode):
    def __init__(self):
        super().__init__("visualization_node")
        import cv2

        cv2.setNumThreads(1)  # small images: threads only add contention
        self.check_parameters(self._values)
        self.normalize = self.normalization(self._values)
        self.robot = None  # built on the first markers, from the joint names the policy uses
        self.robot_name = str(self.p("robot"))
        self.robot_model = None
        if self.robot_name:  # load it now: ~0.1-0.2 s that would otherwise stall the first heatmaps
            from ..robot.model import RobotModel

            try:
                self.robot_model = RobotModel.from_name(self.robot_name)
            except Exception as e:  # noqa: BLE001 - markers fall back to a row of spheres
                self.report_error("robot_model", f"{e}; joint markers placed in a row")
                self.robot_name = ""
        self.joint_names: list[str] = []
        jump = int(self.p("time_jump") * 1e9)
        self.heat_sync = live.StampSync(["image", "relevance", "points"], 0, keep=10, jump_ns=jump)
        self.marker_sync = live.StampSync(["config", "relevance", "ratios"], 0, keep=10, jump_ns=jump)
        self.history = viz.RatioHistory(float(self.p("plot_window")))
        self.rate = live.RateMeter()
        self.render = live.LatencyStats()
        self.latency = live.LatencyStats()
        self.paired = live.LatencyStats()  # stamp -> image, relevance and points all here (before drawing)
        self.pub_heat = self.pub("heatmap")
        self.pub_markers = self.pub("markers")
        self.pub_plot = self.pub("ratio_plot")
        self.sub("obs_image", self.guarded("observation_image", self.on_image), depth=5)
        self.sub("relevance_image", self.guarded("relevance_image", self.on_relevance), depth=5)
        self.sub("relevance_points", self.guarded("relevance_points", self.on_points), depth=10)
        self.sub("obs_config", self.guarded("observation_config", self.on_config), depth=10)
        self.sub("relevance_config", self.guarded("relevance_config", self.on_relevance_config), depth=10)
        self.sub("ratios", self.guarded("ratios", self.on_ratios), depth=10)
        self.create_timer(1.0 / max(float(self.p("plot_rate")), 0.01), self.guarded("plot", self.on_plot))
        self.warm_up()

    # ---- parameters ---------------------------------------------------------------------------
    @staticmethod
    def normalization(values):
        return values["fixed_scale"] if values["normalize"] == "fixed" else "frame"

    def check_parameters(self, new) -> None:
        if new["normalize"] == "fixed" and not new["fixed_scale"] > 0:
            raise ValueError("normalize:=fixed needs fixed_scale > 0")

    def apply_parameters(self, changed) -> None:
        if "normalize" in changed or "fixed_scale" in changed:
            self.normalize = self.normalization(self._values)
        if "time_jump" in changed:
            self.heat_sync.jump_ns = self.marker_sync.jump_ns = int(changed["time_jump"] * 1e9)

    def warm_up(self) -> None:
        """Run every drawing path once before the first message: first calls (overlay, plot text,
        marker messages) are many times slower and would otherwise stall the first live heatmaps."""
        from geometry_msgs.msg import Point
        from visualization_msgs.msg import Marker, MarkerArray

        rgb = np.zeros((64, 64, 3), np.uint8)
        cv.image_msg(viz.overlay_heatmap(rgb, np.zeros((64, 64), np.float32), np.zeros((1, 2)),
                                         normalize=self.normalize, scale=4, point_relevance=np.zeros(1)), 0, "")
        cv.image_msg(viz.ratio_plot(np.array([0.0, 1.0]), np.full((2, 2), 0.5), ("image", "joint_position")), 0, "")
        m = Marker()
        m.header.stamp = cv.ns_to_stamp(0)
        m.pose.position = Point(x=0.0, y=0.0, z=0.0)
        m.color.r, m.color.g, m.color.b = viz.relevance_colour(0.5)
        MarkerArray(markers=[m])
        if self.robot_model is not None:
            self.robot_model.joint_positions(np.zeros(len(self.robot_model.joint_names)))

    # ---- heatmap ------------------------------------------------------------------------------
    def on_image(self, msg) -> None:
        self._heat("image", msg.header.stamp, (cv.rgb_from_msg(msg), msg.header.frame_id))

    def on_relevance(self, msg) -> None:
        self._heat("relevance", msg.header.stamp, cv.float_image_from_msg(msg))

    def on_points(self, msg) -> None:
        _, rel = cv.named_vector_from_msg(msg, "position")
        _, x = cv.named_vector_from_msg(msg, "velocity")
        _, y = cv.named_vector_from_msg(msg, "effort")
        self._heat("points", msg.header.stamp, (np.stack([x, y], axis=1), rel))

    def _heat(self, stream, stamp, item) -> None:
        ns = cv.stamp_to_ns(stamp)
        got = self.heat_sync.add(stream, ns, item)
        if got is None:
            return
        self.paired.add((self.now_ns() - ns) * 1e-9)
        t0 = time.perf_counter()
        (rgb, frame_id), rel, (pts, prel) = got["image"], got["relevance"], got["points"]
        scale = viz.heatmap_scale(rgb.shape[1], self.p("heatmap_scale"))
        out = viz.overlay_heatmap(rgb, rel, pts, normalize=self.normalize, opacity=float(self.p("opacity")),
                                  scale=scale, point_relevance=prel)
        self.pub_heat.publish(cv.image_msg(out, ns, frame_id))
        self.render.add(time.perf_counter() - t0)
        self.latency.add((self.now_ns() - ns) * 1e-9)
        self.rate.tick()

    # ---- markers and ratios ---------------------------------------------------------------------
    def on_config(self, msg) -> None:
        self._marker("config", msg.header.stamp, cv.named_vector_from_msg(msg))

    def on_relevance_config(self, msg) -> None:
        self._marker("relevance", msg.header.stamp, cv.named_vector_from_msg(msg))

    def on_ratios(self, msg) -> None:
        names, values = cv.named_vector_from_msg(msg)
        ns = cv.stamp_to_ns(msg.header.stamp)
        if names:  # checked (they sum to 1); a time jump starts the plot over
            self.history.add_stamped(ns, names, values, self.heat_sync.jump_ns)
        self._marker("ratios", msg.header.stamp, (names, values))

    def _marker(self, stream, stamp, item) -> None:
        ns = cv.stamp_to_ns(stamp)
        got = self.marker_sync.add(stream, ns, item)
        if got is not None:
            self.publish_markers(ns, got)

    def joint_positions(self, q: np.ndarray) -> np.ndarray:
        if self.robot is None and self.robot_name:
            try:
                self.robot = live.RobotAdapter(self.joint_names, self.robot_model)
            except Exception as e:  # noqa: BLE001 - markers fall back to a row of spheres
                self.report_error("robot_model", f"{e}; joint markers placed in a row")
                self.robot_name = ""
        if self.robot is not None:
            return self.robot.joint_positions(q)
        return viz.row_positions(len(q))

    def publish_markers(self, ns: int, got: dict) -> None:
        from geometry_msgs.msg import Point
        from visualization_msgs.msg import Marker, MarkerArray

        cfg_names, cfg = got["config"]
        rel_names, rel = got["relevance"]
        ratio_names, ratios = got["ratios"]
        joints, q, share = viz.joint_shares(cfg_names, cfg, rel_names, rel)
        if not joints:
            return
        self.joint_names = joints
        specs = viz.joint_relevance_markers(joints, share, self.joint_positions(q), float(self.p("marker_scale")),
                                            ratio_names, ratios)
        stamp, frame = cv.ns_to_stamp(ns), str(self.p("frame_id"))
        kinds = {"sphere": Marker.SPHERE, "text": Marker.TEXT_VIEW_FACING}
        arr = MarkerArray()
        for sp in specs:
            m = Marker()
            m.header.stamp, m.header.frame_id = stamp, frame
            m.ns, m.id, m.type, m.action = sp.ns, sp.id, kinds[sp.kind], Marker.ADD
            m.pose.position = Point(x=sp.position[0], y=sp.position[1], z=sp.position[2])
            m.pose.orientation.w = 1.0
            m.scale.x, m.scale.y, m.scale.z = sp.scale
            m.color.r, m.color.g, m.color.b, m.color.a = sp.rgba
            m.text = sp.text
            arr.markers.append(m)
        self.pub_markers.publish(arr)

    def on_plot(self) -> None:
        if len(self.history) >= 2:
            self.pub_plot.publish(cv.image_msg(self.history.render(), self.now_ns(), ""))

    def diagnostics(self):
        values = {"heatmap_rate_hz": self.rate.rate(), "heatmaps": self.rate.total,
                  "render_p50_ms": 1e3 * self.render.percentile(50),
                  "render_p99_ms": 1e3 * self.render.percentile(99),
                  "stamp_to_paired_p50_ms": 1e3 * self.paired.percentile(50),
                  "stamp_to_paired_p99_ms": 1e3 * self.paired.percentile(99),
                  **self.latency.summary("stamp_to_heatmap"),
                  "unpaired_dropped": self.heat_sync.dropped + self.marker_sync.dropped,
                  "time_jumps_backward": self.heat_sync.jumps_backward,
                  "time_jumps_forward": self.heat_sync.jumps_forward}
        jump = self.heat_sync.jump_status()
        if self.recent_error(10.0):
            return 1, self.last_error, values
        if jump:
            return 1, jump, values
        return 0, f"heatmaps at {values['heatmap_rate_hz']:.1f} Hz", values


def main(args=None) -> int:
    return run_node(VisualizationNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
