"""Rosbag2 recordings -> explanations, tables, figures and an annotated bag (plain Python, no rclpy).

Reads bags written by `ros2 bag record`, by policy_xai's recorder or by `rosbags` (sqlite3 and MCAP)
with the `rosbags` library, and - when a bag was cut off mid-write (crash, full disk, kill -9) -
with a tolerant fallback that reads what is readable and says where it stops:

* MCAP: the records are scanned from the start; every complete chunk is used, the scan stops at the
  first incomplete record.
* sqlite3: the database file is copied to a temporary folder, its header's page count is set to what
  the file really holds, and the messages are read in insertion order until SQLite meets a missing
  page.

Observations are paired the way the live pipeline pairs them (policy_xai.live.StampSync):

* "observation" source: the policy node's own /policy_xai/observation/{image,config} (exact stamps,
  the image and configuration vector the network really took), used when the bag holds them;
* "raw" source: camera image + joint states with the policy node's sync tolerance, the configuration
  built by live.ConfigBuilder (end-effector groups from the robot model).

Topic names default to the live pipeline's (policy_xai.topics, the core declarations; this package
never imports policy_xai.ros). Message types: the ROS2_KILTED typestore, extended with the
definitions stored in the bag.

Modules, by concern (every public name is re-exported here: `bags.BagSource`, ...):

* common: BagError, the role message types, default_topics, typestore, stamp_ns, nan_to_none;
* source: BagSource (the one bag reader, with the recovery of damaged bags), register_bag_types;
* observations: reading and pairing the observations, the recorded live explanations;
* explain: importance factors, explaining, gaps, live-vs-recomputed comparison;
* tables: ratio / importance tables (CSV, Parquet) and figures;
* annotated: MCAP writers with chunk compression, the annotated output bag;
* compare: ratio series of two runs or methods compared;
* replay: which node graph replays a bag;
* synthetic: robot-like and truncated bags for tests and benchmarks.

The single-bag analysis (`policy-xai analyze BAG`) is policy_xai.bags.analyze: analyze_bag(AnalyzeOptions)
(kept out of these re-exports: it runs torch, the attribution engine and the figures).
"""
from __future__ import annotations

from .annotated import (
    ANNOTATED_MARK, COMPRESSIONS, bag_writer, explanation_messages, is_annotated_bag, open_bag_writer,
    remove_annotated_bag, set_chunk_compressor, write_annotated_bag,
)
from .common import IMAGE_TYPES, JOINT_TYPE, BagError, default_topics, nan_to_none, stamp_ns, typestore
from .compare import RatioSeries, align, compare_series, load_ratio_series, series_from_result
from .explain import Timing, compare_live, explain_observations, find_gaps, importance_factors
from .observations import (
    LiveExplanations, Observations, ReadOptions, choose_source, image_from_msg, read_observations,
)
from .replay import replay_plan
from .source import MCAP_MAGIC, BagSource, ReadProblem, TopicInfo, register_bag_types
from .synthetic import truncate_bag, write_synthetic_bag
from .tables import break_at_gaps, importance_figure, importance_rows, ratio_rows, read_table, write_table

__all__ = [
    "ANNOTATED_MARK", "COMPRESSIONS", "IMAGE_TYPES", "JOINT_TYPE", "MCAP_MAGIC", "BagError", "BagSource",
    "LiveExplanations", "Observations", "RatioSeries", "ReadOptions", "ReadProblem", "Timing", "TopicInfo", "align",
    "bag_writer", "break_at_gaps", "choose_source", "compare_live", "compare_series", "default_topics",
    "explain_observations", "explanation_messages", "find_gaps", "image_from_msg", "importance_factors",
    "importance_figure", "importance_rows", "is_annotated_bag", "load_ratio_series", "nan_to_none", "open_bag_writer",
    "ratio_rows", "read_observations", "read_table", "register_bag_types", "remove_annotated_bag", "replay_plan",
    "series_from_result", "set_chunk_compressor", "stamp_ns", "truncate_bag", "typestore", "write_annotated_bag",
    "write_synthetic_bag", "write_table",
]
