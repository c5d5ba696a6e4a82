"""Many bags at once: `policy-xai analyze` over a fleet's recordings in parallel on Ray (issue 14).

One Ray task per bag runs the single-bag analysis (policy_xai.bags.analyze.analyze_bag) into
OUT/bags/<name>/; a content hash of the bag's files, the policy file and the options is stored in
OUT/bags/<name>/done.json, so a rerun with the same inputs skips that bag (an interrupted run
resumes). A bag that cannot be read is reported in OUT/summary.json and the others go on; a
truncated bag is analysed as far as it reads. The per-step tables of all bags are merged into
OUT/steps.parquet (one row per bag, step and method: ratios per group, importance factors, torques).

    from policy_xai.bags.analyze import AnalyzeOptions
    from policy_xai.fleet import FleetOptions, analyze_bags
    summary = analyze_bags(["runs/"], AnalyzeOptions("", methods="dtd,rap", write_bag=False, video=False),
                           FleetOptions(out="out/fleet", workers=2))

Modules, by concern (the public names are re-exported here: `fleet.analyze_bags`, ...):

* inputs: bag paths, folders, globs and list files -> bags (expand_bags, wants_fleet), their names;
* options: the per-bag AnalyzeOptions (analysis_options), the content key, the kept folder names;
* run: FleetOptions, the Ray task per bag (analyze_one), analyze_bags;
* report: steps.parquet with episodes, where the task time went, the bags that stand out;
* bench: BenchFleetOptions, bench_fleet (`policy-xai bench-fleet`).

No rclpy here; Ray is imported only when analyze_bags runs.
"""
from __future__ import annotations

from .bench import BenchFleetOptions, bench_fleet
from .inputs import STORAGE_SUFFIXES, bag_names, expand_bags, is_bag, is_folder_of_bags, wants_fleet
from .options import analysis_options, content_key, done_record, keyed_options, reuse_names
from .report import EPISODE_GAP_S, STAND_OUT_Z, dataset_report, episodes_of, merge_steps, stage_seconds
from .run import FleetOptions, analyze_bags, analyze_one, code_runtime_env, gpus_per_task

__all__ = [
    "BenchFleetOptions", "EPISODE_GAP_S", "FleetOptions", "STAND_OUT_Z", "STORAGE_SUFFIXES", "analysis_options",
    "analyze_bags", "analyze_one", "bag_names", "bench_fleet", "code_runtime_env", "content_key", "dataset_report",
    "done_record", "episodes_of", "expand_bags", "gpus_per_task", "is_bag", "is_folder_of_bags", "keyed_options",
    "merge_steps", "reuse_names", "stage_seconds", "wants_fleet",
]
