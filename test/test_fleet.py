"""`policy-xai analyze` over many bags on a local Ray instance of 2 workers (policy_xai.fleet): the same
per-step numbers as sequential single-bag runs, a truncated bag analysed as far as it reads, an
unreadable bag reported while the others go on, and a rerun that resumes (skips what is done)."""
import json
import os

import numpy as np
import pytest

from cli_harness import cli
from policy_xai import bags, fleet
from policy_xai.bags.analyze import AnalyzeOptions, analyze_bag
from policy_xai.spec import load_spec

ray = pytest.importorskip("ray")
SPEC = load_spec("small")


@pytest.fixture(scope="module")
def fleet_run(tmp_path_factory):
    """4 bags (mcap, sqlite3, a truncated mcap, an mcap in a sub-folder) and one cut inside its first
    chunk (nothing readable), analysed by `policy-xai analyze FOLDER` (starts its own local Ray)."""
    d = tmp_path_factory.mktemp("fleet")
    src = d / "in"
    bags.write_synthetic_bag(src / "a", SPEC, 40, "mcap")
    bags.write_synthetic_bag(src / "b", SPEC, 36, "sqlite3", seed=1)
    full = bags.write_synthetic_bag(d / "full", SPEC, 120, "mcap", seed=2)
    bags.truncate_bag(full, src / "c", 0.8)
    bags.truncate_bag(full, src / "dead", 0.3)
    bags.write_synthetic_bag(src / "site2" / "a", SPEC, 24, "mcap", seed=3, gap_after=9, gap_s=2.0)  # 2 episodes
    out = d / "out"

    return d, src, out


def test_many_bags_match_sequential_runs_and_rerun_resumes(fleet_run, capsys):
    d, src, out = fleet_run
    paths = fleet.expand_bags([src])
    names = fleet.bag_names(paths)
    assert sorted(names) == ["b", "c", "dead", "in__a", "site2__a"]
    assert fleet.wants_fleet([str(src)]) and not fleet.wants_fleet([str(src / "a")])

    rc, stdout, err = cli(capsys, "analyze", src, "--out", out, "--no-bag", "--workers", 2)
    assert rc == 1, err  # one bag failed: reported, the others analysed
    assert "5 bags (0 resumed, 1 truncated, 1 failed)" in stdout
    assert not ray.is_initialized()  # the local instance it started is shut down
    s = json.loads((out / "summary.json").read_text())
    by = {b["name"]: b for b in s["bags"]}
    assert {n: b["status"] for n, b in by.items()} == {"in__a": "ok", "b": "ok", "c": "truncated", "dead": "failed",
                                                       "site2__a": "ok"}
    assert "no messages" in by["dead"]["error"] and "stops at" in by["c"]["error"]
    assert by["b"]["storage"] == "sqlite3" and by["c"]["reader"] == "mcap-scan"
    assert [by[n]["steps"] for n in ("in__a", "b", "site2__a")] == [40, 36, 24] and 5 < by["c"]["steps"] < 120
    assert all(b["seconds"] is not None and not b["resumed"] for b in s["bags"])

    # the same bags one by one through the single-bag command: exactly the same numbers per step
    steps = bags.read_table(out / "steps.parquet")
    assert len(steps["bag"]) == s["totals"]["steps"] == s["totals"]["rows_in_steps_parquet"]
    for p, name in zip(paths, names):
        if name == "dead":
            assert name not in set(steps["bag"])
            continue
        seq = d / "seq" / name
        one = analyze_bag(AnalyzeOptions(p, out=seq, write_bag=False, video=False), quiet=True)
        assert one["steps"] == by[name]["steps"]
        rows = steps["bag"] == name
        ratios, imp = bags.read_table(seq / "ratios.parquet"), bags.read_table(seq / "importance.parquet")
        for col, v in ratios.items():
            np.testing.assert_array_equal(steps[col][rows], v, err_msg=f"{name} {col}")
        for col, v in imp.items():
            if col.startswith(("alpha/", "torque/")):
                np.testing.assert_array_equal(steps[col][rows], v[ratios["step"]], err_msg=f"{name} {col}")
        assert (out / "bags" / name / "ratios.parquet").is_file()
        assert not (out / "bags" / name / "heatmap_dtd.mp4").exists()

    # episodes: a pause of >= 1 s starts the next one; the dataset figure and where the time went
    ep = steps["episode"][steps["bag"] == "site2__a"]
    st = steps["step"][steps["bag"] == "site2__a"]
    assert set(ep[st <= 9]) == {0} and set(ep[st > 9]) == {1}
    assert set(steps["episode"][steps["bag"] != "site2__a"]) == {0}
    assert (out / "figures" / "ratios_per_bag.png").stat().st_size > 1000
    assert s["figures"] == ["figures/ratios_per_bag.png"]
    assert set(s["per_bag_medians"]) == {"in__a", "b", "c", "site2__a"} and isinstance(s["stand_out"], list)
    stg = s["stages_s"]
    assert stg["task"] > 0 and stg["explain"] > 0 and stg["read_and_pair"] > 0
    assert abs(stg["read_and_pair"] + stg["importance"] + stg["explain"] + stg["other"] - stg["task"]) < 0.01
    assert "task time: read and pair" in stdout

    # a rerun with the same inputs skips every bag (the unreadable one too) and starts no Ray
    again = fleet.analyze_bags([src], {"no_bag": True}, workers=2, out=out, progress=False)
    assert again["totals"]["resumed"] == 5 and not ray.is_initialized()
    assert again["bags"] == [{**b, "resumed": True} for b in s["bags"]]
    np.testing.assert_array_equal(bags.read_table(out / "steps.parquet")["image"], steps["image"])

    # a bag that changed (here: its mtime) and another method list: only what changed is analysed
    f = next((src / "a").glob("*.mcap"))
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000_000))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    try:
        seen = []
        third = fleet.analyze_bags([str(src / "a"), str(src / "b"), f"{src}/site2/*"], {"no_bag": True}, out=out,
                                   progress=lambda rec, done, total: seen.append((rec["name"], done, total)))
        assert ray.is_initialized()  # a running instance is used and left running
    finally:
        ray.shutdown()
    assert [b["resumed"] for b in third["bags"]] == [False, True, True] and seen == [("in__a", 3, 3)]
    assert third["bags"][0]["steps"] == 40

    # alone, bag in/a would be named "a": it keeps the folder of its earlier results and resumes; a new
    # bag also called "a" never goes into another bag's folder
    assert fleet.reuse_names(out, [src / "a"], ["a"]) == ["in__a"]
    alone = fleet.analyze_bags([src / "a"], {"no_bag": True}, out=out, progress=False)
    assert [(b["name"], b["resumed"]) for b in alone["bags"]] == [("in__a", True)]
    assert fleet.reuse_names(out, [d / "elsewhere" / "b"], ["b"]) == ["b-1"]


def test_inputs_lists_globs_and_names(tmp_path):
    for n in ("r1/bag", "r2/bag"):
        bags.write_synthetic_bag(tmp_path / n, SPEC, 2, "mcap")
    one = bags.write_synthetic_bag(tmp_path / "single", SPEC, 2, "sqlite3")
    db3 = next(one.glob("*.db3"))
    lst = tmp_path / "list.txt"
    lst.write_text(f"# bags\nr1/bag\n{db3}\n\nr2/*\n")
    got = fleet.expand_bags([f"@{lst}"])
    assert got[0] == tmp_path / "r1" / "bag" and got[1] == db3 and got[2] == tmp_path / "r2" / "bag"
    assert fleet.bag_names(got) == ["r1__bag", db3.stem, "r2__bag"]
    assert fleet.wants_fleet([f"@{lst}"]) and fleet.wants_fleet([str(tmp_path / "r*")])
    assert fleet.wants_fleet([str(tmp_path / "r1" / "bag"), str(db3)]) and not fleet.wants_fleet([str(db3)])
    # the output folder inside the input folder is never taken as input
    assert fleet.expand_bags([tmp_path], exclude=[tmp_path / "r2"]) == [tmp_path / "r1" / "bag", one]
    with pytest.raises(FileNotFoundError, match="no bag matches"):
        fleet.expand_bags([str(tmp_path / "nothing*")])
    # the content key follows the options and the bag's files
    o = fleet.analysis_options({"methods": "rap"})
    assert isinstance(o, AnalyzeOptions) and o.methods == "rap" and not o.video and o.bag == o.out == ""
    assert fleet.analysis_options() == AnalyzeOptions("", out="", video=False)  # the command's defaults
    k = fleet.content_key(one, o)
    assert k == fleet.content_key(one, fleet.analysis_options(AnalyzeOptions(one, methods="rap", video=False)))
    assert k != fleet.content_key(one, fleet.analysis_options({"methods": "dtd"}))
    with pytest.raises(ValueError, match="unknown analyze option 'nope'"):
        fleet.analysis_options({"nope": 1})
    assert fleet.content_key(one, o, hash_bytes=True) != k


def _task_pids() -> list[int]:
    """Ray worker processes running a bag's analysis now (Ray titles them ray::analyze_one)."""
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::analyze_one"):
                        pids.append(int(p))
            except OSError:
                pass
    return pids


def test_a_killed_worker_is_retried(tmp_path):
    import signal
    import threading
    import time

    src = tmp_path / "in"
    for n, seed in (("k1", 4), ("k2", 5)):
        bags.write_synthetic_bag(src / n, SPEC, 60, "mcap", seed=seed)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
    result = {}
    try:
        th = threading.Thread(target=lambda: result.update(
            s=fleet.analyze_bags([src], {"no_bag": True}, out=tmp_path / "out", progress=False)))
        th.start()
        killed = None
        end = time.monotonic() + 60
        while killed is None and th.is_alive() and time.monotonic() < end:
            pids = _task_pids()
            if pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)  # a worker of the Ray instance this test started
            time.sleep(0.05)
        th.join(120)
    finally:
        ray.shutdown()
    assert killed is not None, "no analysis task was seen running"
    s = result["s"]
    assert [b["status"] for b in s["bags"]] == ["ok", "ok"] and [b["steps"] for b in s["bags"]] == [60, 60]
    steps = bags.read_table(tmp_path / "out" / "steps.parquet")
    one = tmp_path / "seq"
    analyze_bag(AnalyzeOptions(src / "k1", out=one, write_bag=False, video=False), quiet=True)
    ref = bags.read_table(one / "ratios.parquet")
    np.testing.assert_array_equal(steps["image"][steps["bag"] == "k1"], ref["image"])


def test_episodes_and_bags_that_stand_out(tmp_path):
    """episodes_of cuts at pauses >= the episode gap; dataset_report flags the one bag whose median
    image ratio is far from the others' (robust z), and draws every bag."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gaps = [{"after_step": 3, "length_s": 0.4}, {"after_step": 5, "length_s": 1.5}, {"after_step": 8, "length_s": 9.0}]
    assert fleet.episodes_of(range(11), gaps, 1.0) == [0] * 6 + [1] * 3 + [2] * 2
    assert fleet.episodes_of(range(4), [], 1.0) == [0] * 4

    rng = np.random.default_rng(0)
    rows = {"bag": [], "episode": [], "step": [], "method": [], "image": [], "joint_position": []}
    for b, centre in (("a", 0.30), ("b", 0.32), ("c", 0.29), ("d", 0.31), ("odd", 0.85)):
        for i in range(30):
            for m in ("dtd", "rap"):
                img = float(np.clip(centre + 0.02 * rng.standard_normal(), 0, 1))
                for k, v in (("bag", b), ("episode", 0), ("step", i), ("method", m), ("image", img),
                             ("joint_position", 1 - img)):
                    rows[k].append(v)
    pq.write_table(pa.table(rows), tmp_path / "steps.parquet")
    rep = fleet.dataset_report(tmp_path)
    assert {(o["bag"], o["group"]) for o in rep["stand_out"]} == {("odd", "image"), ("odd", "joint_position")}
    assert all(o["method"] == "dtd" for o in rep["stand_out"])
    assert rep["per_bag"]["odd"]["image"] == pytest.approx(0.85, abs=0.02)
    assert (tmp_path / rep["figures"][0]).stat().st_size > 1000
    assert fleet.gpus_per_task(0) == 0.0 and fleet.gpus_per_task(2) == 2.0
    with pytest.raises(ValueError):
        fleet.gpus_per_task(-1)


def test_an_existing_cluster_with_the_code_shipped(tmp_path):
    """--ray-address: a Ray cluster started outside (here a head node process of ray.cluster_utils) is
    used and left running; --ship-code sends this policy_xai to its workers, which import that copy."""
    from ray.cluster_utils import Cluster

    import policy_xai

    src = tmp_path / "in"
    for n, seed in (("x", 6), ("y", 7)):
        bags.write_synthetic_bag(src / n, SPEC, 12, "mcap", seed=seed)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        s = fleet.analyze_bags([src], {"no_bag": True, "methods": "dtd"}, ray_address=cluster.address,
                               out=tmp_path / "out", progress=False, ship_code=True)
        assert not ray.is_initialized()  # this process disconnected; the cluster goes on
        assert [b["status"] for b in s["bags"]] == ["ok", "ok"] and s["workers"] is None
        local = str(os.path.dirname(os.path.realpath(policy_xai.__file__)))
        assert all(b["code"] != local and b["code"].endswith("policy_xai") for b in s["bags"]), s["bags"]
        ref = tmp_path / "seq"
        analyze_bag(AnalyzeOptions(src / "x", out=ref, write_bag=False, video=False, methods="dtd"), quiet=True)
        steps = bags.read_table(tmp_path / "out" / "steps.parquet")
        np.testing.assert_array_equal(steps["image"][steps["bag"] == "x"],
                                      bags.read_table(ref / "ratios.parquet")["image"])
    finally:
        cluster.shutdown()
    with pytest.raises(ValueError, match="ship_code needs ray_address"):
        fleet.analyze_bags([src], {"no_bag": True}, out=tmp_path / "out2", progress=False, ship_code=True)


def test_bench_fleet_reports_each_mode(capsys, tmp_path):
    out = tmp_path / "bench.json"
    lines = []
    rows = fleet.bench_fleet(fleet.BenchFleetOptions(bags=2, steps=8, workers=(1,), json_out=out), log=lines.append)
    assert json.loads(out.read_text()) == rows
    assert [(r["mode"], r["workers"]) for r in rows] == [("sequential", 1), ("ray", 1)]
    assert all(r["steps"] == 16 and r["steps_per_s"] > 0 for r in rows)
    assert rows[1]["ray_start_s"] > 0 and len(lines) == 2 and all("steps/s" in ln for ln in lines)
    rc, _, err = cli(capsys, "bench-fleet", "--json", out)  # refused before any bag is written
    assert rc == 2 and "exists" in err


def test_bench_fleet_defaults_are_the_librarys():
    from dataclasses import fields

    from policy_xai.cli import build_parser

    args = build_parser().parse_args(["bench-fleet"])
    d = fleet.BenchFleetOptions()
    assert (args.bags, args.steps, args.workers, args.methods, args.storage, args.sequential) == (
        d.bags, d.steps, ",".join(map(str, d.workers)), d.methods, d.storage, d.sequential)
    assert {f.name for f in fields(d)} - set(vars(args)) == {"spec"}  # the one option the command has not
