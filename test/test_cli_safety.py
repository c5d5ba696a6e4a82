"""Command-line safety (issue 9, items 4 and 8): no command deletes, overwrites or writes into its
input; outputs that cannot be written and bad numbers are refused up front with one line and a
non-zero exit code, never a traceback. Real bags written and read back, the real CLI."""
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policy_xai import bags
from policy_xai.cli import main
from policy_xai.spec import load_spec


def cli(capsys, *argv):
    """policy-xai in this process: (exit code, stderr). argparse errors exit via SystemExit."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def run_dir(tmp_path):
    """The layout `policy-xai run --out RUN` leaves: RUN/bag (a recording) next to the run's files."""
    run = tmp_path / "RUN"
    bags.write_synthetic_bag(run / "bag", load_spec("small"), 12)
    (run / "summary.json").write_text("{}")
    return run


def test_analyze_into_the_folder_of_its_bag_is_refused_and_the_bag_survives(run_dir):
    before = snapshot(run_dir)
    p = subprocess.run([sys.executable, "-m", "policy_xai.cli", "analyze", str(run_dir / "bag"), "--out",
                        str(run_dir)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    bag = (run_dir / "bag").resolve()
    assert p.stderr.strip() == (
        f"policy-xai analyze: error: --out {run_dir} would write the annotated bag at {bag}, which is the input bag "
        f"{bag}: a command never deletes, overwrites or writes into its input; choose another --out "
        f"(e.g. {run_dir.resolve() / 'analysis'})")
    assert snapshot(run_dir) == before
    with bags.BagSource(run_dir / "bag") as b:
        assert b.reader == "rosbags" and b.message_count == 24


@pytest.mark.parametrize("out", ["bag", "bag/sub", "bag/bag.mcap", "link"])
def test_analyze_out_equal_to_or_inside_the_bag_is_refused(run_dir, capsys, out):
    (run_dir / "link").symlink_to(run_dir / "bag")  # a symlink to the bag is the bag
    before = snapshot(run_dir / "bag")
    for bag in (run_dir / "bag", run_dir / "bag" / "bag.mcap"):  # the folder, or its storage file
        rc, err = cli(capsys, "analyze", bag, "--out", run_dir / out, "--no-video")
        assert rc == 2 and "input bag" in error_line(err) and "never" in err
        assert snapshot(run_dir / "bag") == before


def test_analyze_replaces_only_its_own_output_bag(run_dir, capsys):
    out = run_dir / "analysis"
    for _ in range(2):  # the second run replaces the first run's annotated bag
        rc, err = cli(capsys, "analyze", run_dir / "bag", "--out", out, "--no-video")
        assert rc == 0, err
    assert bags.is_annotated_bag(out / "bag") and not bags.is_annotated_bag(run_dir / "bag")
    with bags.BagSource(out / "bag") as b:
        assert b.message_count == 24 + 12 * 5  # originals + 5 explanation topics per step
    # the annotated bag analysed into RUN: RUN/bag is a recording, not analyze's: left alone
    before = snapshot(run_dir / "bag")
    rc, err = cli(capsys, "analyze", out / "bag", "--out", run_dir, "--no-video")
    assert rc == 2 and "which analyze did not write" in error_line(err)
    assert snapshot(run_dir / "bag") == before
    # nor is the run's summary.json replaced when no bag is written
    (run_dir / "summary.json").write_text('{"rates_hz": {}}')
    rc, err = cli(capsys, "analyze", out / "bag", "--out", run_dir, "--no-video", "--no-bag")
    assert rc == 2 and "summary.json of a `policy-xai run`" in error_line(err)
    assert (run_dir / "summary.json").read_text() == '{"rates_hz": {}}'


def test_every_command_refuses_outputs_that_are_inputs(run_dir, tmp_path, capsys):
    from policy_xai.policy import init_policy, save_policy

    weights = save_policy(init_policy("small"), tmp_path / "w.safetensors")
    data = tmp_path / "data.npz"
    np.savez(data, images=np.zeros((2, 64, 64, 3), np.uint8), configs=np.zeros((2, 20)))
    cli(capsys, "analyze", run_dir / "bag", "--out", run_dir / "a", "--no-video")
    keep = {p: p.read_bytes() for p in (weights, data)}
    cases = [
        ("compare", run_dir / "a", run_dir / "a", "--out", run_dir / "a"),  # into an analyze folder it reads
        ("replay", run_dir / "bag", "--record", run_dir / "bag" / "rec"),
        ("replay", run_dir / "bag", "--record", run_dir),  # a new bag folder that would hold the input
        ("replay", run_dir / "bag", "--log-dir", run_dir / "bag" / "logs"),
        ("record", run_dir / "bag"),  # an existing bag
        ("run", "--out", run_dir),  # holds bag/ already
        ("run", "--weights", weights, "--out", weights),
        ("demo", "--weights", weights, "--out", weights),
        ("train", "--data", data, "--out", data),
        ("train", "--out", run_dir / "summary.json"),  # an existing file that is no weights file
        ("collect", "--out", run_dir / "bag" / "metadata.yaml"),
        ("evaluate", "--policy", weights, "--json", weights),
        ("explain", "--inputs", data, "--out", data),
        ("sanity", "--policy", weights, "--out", weights),
        ("analyze-rollout", "--policy", weights, "--out", weights),
        ("bench", "attribution", "--from-json", data, "--markdown", data),
    ]
    for argv in cases:
        assert (run_dir / "bag" / "metadata.yaml").is_file()  # (record would record into a missing folder)
        rc, err = cli(capsys, *argv)
        assert rc == 2, (argv, err)
        error_line(err)
    demo = tmp_path / "DEMO"
    (demo / "live").mkdir(parents=True)
    (demo / "live" / "bag").symlink_to(run_dir / "bag")  # demo's layout: DEMO/live/bag exists
    rc, err = cli(capsys, "demo", "--out", demo)
    assert rc == 2 and "already holds a bag/" in error_line(err)
    assert all(p.read_bytes() == b for p, b in keep.items())
    with bags.BagSource(run_dir / "bag") as b:
        assert b.message_count == 24


def test_outputs_that_cannot_be_written_are_refused_up_front(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    bag = bags.write_synthetic_bag(tmp_path / "bag", load_spec("small"), 4)
    table = bags.write_table([{"step": i, "stamp_ns": i, "time": 0.05 * i, "method": "dtd", "image": 0.5}
                              for i in range(4)], tmp_path / "bag" / "ratios")[0]  # a ratio table to compare
    for bad, why in ((a_file / "x", "is a file, not a folder"), (Path("/proc/policy_xai_test/x"), "cannot create")):
        cases = [
            ("analyze", bag, "--out", bad), ("explain", "--out", bad), ("sanity", "--out", bad),
            ("run", "--out", bad), ("demo", "--out", bad), ("latency", "--out", bad),
            ("analyze-rollout", "--out", bad), ("compare", table, table, "--out", bad),
            ("collect", "--out", bad / "d.npz"), ("train", "--out", bad / "w.safetensors"),
            ("evaluate", "--json", bad / "e.json"), ("bench", "attribution", "--quick", "--json", bad / "b.json"),
            ("record", bad / "bag"), ("replay", bag, "--record", bad / "bag"), ("replay", bag, "--log-dir", bad),
        ]
        for argv in cases:
            rc, err = cli(capsys, *argv)
            assert rc == 2 and why in error_line(err), (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "file"]


BAD_NUMBERS = [
    ("analyze", "B", "--batch", "-1"), ("analyze", "B", "--max-steps", "-1"), ("analyze", "B", "--duration", "-1"),
    ("analyze", "B", "--start", "-1"), ("analyze", "B", "--dt", "0"), ("analyze", "B", "--threads", "-2"),
    ("analyze", "B", "--gap-factor", "0"), ("analyze", "B", "--sync-tolerance", "-0.1"),
    ("analyze", "B", "--layer", "-1"),
    ("compare", "A", "B", "--window", "0"), ("compare", "A", "B", "--tolerance", "-1"),
    ("bench-bag", "--steps", "-1"), ("bench-bag", "--batch", "-1"), ("bench-bag", "--sizes", "64,-1"),
    ("replay", "B", "--rate", "0"), ("replay", "B", "--start-offset", "-1"), ("replay", "B", "--ready-timeout", "0"),
    ("replay", "B", "--domain-id", "-1"),
    ("run", "--duration", "-1"), ("run", "--duration", "0"), ("run", "--duration", "nan"), ("run", "--image-size", "0"),
    ("run", "--domain-id", "300"), ("demo", "--duration", "-1"), ("demo", "--duration", "inf"),
    ("record", "X", "--duration", "-1"), ("play", "B", "--rate", "-1"), ("play", "B", "--start", "-1"),
    ("latency", "--duration", "0"),
    ("explain", "--steps", "0"), ("explain", "--batch", "0"), ("explain", "--dt", "-1"), ("explain", "--panels", "-1"),
    ("sanity", "--samples", "-3"), ("sanity", "--batch", "0"), ("sanity", "--temperature", "0"),
    ("collect", "--episodes", "0"), ("collect", "--region-fraction", "1.5"), ("collect", "--threads", "0"),
    ("train", "--epochs", "0"), ("train", "--lr", "-1"), ("train", "--dagger-iters", "-1"),
    ("train", "--expert-episodes", "0"), ("train", "--change-fraction", "2"),
    ("evaluate", "--episodes", "0"), ("evaluate", "--noise", "-0.1"),
    ("analyze-rollout", "--batch", "0"), ("analyze-rollout", "--steps", "0"), ("analyze-rollout", "--fps", "0"),
    ("bench", "attribution", "--repeat", "0"), ("bench", "attribution", "--budget", "-1"),
    ("bench", "attribution", "--batch", "0,1"),
    ("robot", "bench", "--steps", "0"), ("robot", "bench", "--frames", "-1"), ("robot", "bench", "--sizes", "0"),
    ("robot", "experts", "--episodes", "0"), ("robot", "experts", "--control-rate", "0"),
]


@pytest.mark.parametrize("argv", BAD_NUMBERS, ids=lambda a: " ".join(a))
def test_negative_or_zero_counts_durations_and_rates_are_refused(capsys, argv):
    rc, err = cli(capsys, *argv)
    assert rc == 2 and f"argument {argv[-2]}: must be" in err, err


def test_run_and_demo_with_a_negative_duration_exit_at_once(tmp_path):
    for cmd in ("run", "demo"):
        p = subprocess.run([sys.executable, "-m", "policy_xai.cli", cmd, "--duration", "-1", "--out",
                            str(tmp_path / cmd)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 2 and "argument --duration: must be a positive number, got '-1'" in p.stderr
        assert not (tmp_path / cmd).exists()


def test_analyze_batch_minus_one_names_the_argument(tmp_path):
    bag = bags.write_synthetic_bag(tmp_path / "bag", load_spec("small"), 4)
    p = subprocess.run([sys.executable, "-m", "policy_xai.cli", "analyze", str(bag), "--batch", "-1", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "argument --batch: must be an integer >= 0, got '-1'" in p.stderr
    assert "concatenate" not in p.stderr and "Traceback" not in p.stderr


def test_missing_empty_and_cut_inputs_give_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.mcap"
    empty.write_bytes(b"")
    bag = bags.write_synthetic_bag(tmp_path / "bag", load_spec("small"), 30)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes((bag / "bag.mcap").read_bytes()[:2000])
    (tmp_path / "emptydir").mkdir()
    cases = [
        (("play", empty), "is empty"), (("play", tmp_path / "missing"), "not found"),
        (("play", cut), "not a readable rosbag2 bag"), (("play", tmp_path / "emptydir"), "not a readable rosbag2 bag"),
        (("analyze", tmp_path / "missing", "--out", tmp_path / "o"), "bag not found"),
        (("analyze", empty, "--out", tmp_path / "o"), "not an MCAP file"),
        (("explain", "--inputs", empty, "--out", tmp_path / "o"), "is empty"),
        (("explain", "--policy", tmp_path / "w.safetensors", "--out", tmp_path / "o"), "not found"),
        (("train", "--data", tmp_path / "d.npz"), "not found"),
        (("evaluate", "--policy", tmp_path / "w.safetensors"), "not found"),
        (("replay", tmp_path / "missing"), "not found"),
        (("run", "--weights", tmp_path / "w.safetensors", "--out", tmp_path / "r"), "not found"),
        (("demo", "--weights", tmp_path / "w.safetensors", "--out", tmp_path / "d"), "not found"),
        (("bench", "attribution", "--from-json", tmp_path / "b.json"), "not found"),
        (("sanity", "--inputs", tmp_path / "d.npz", "--out", tmp_path / "s"), "not found"),
    ]
    for argv, what in cases:
        rc, err = cli(capsys, *argv)
        assert rc in (1, 2) and what in error_line(err), (argv, err)


def test_a_read_only_file_system_is_refused_up_front(tmp_path):
    """A real read-only mount (tmpfs, ro) in a private mount namespace of the child process."""
    import shutil

    ro = tmp_path / "ro"
    ro.mkdir()
    bag = bags.write_synthetic_bag(tmp_path / "bag", load_spec("small"), 4)
    py = f"{sys.executable} -m policy_xai.cli"
    script = " ; ".join([f"mount -t tmpfs -o ro none {ro} || exit 99",
                         f"{py} analyze {bag} --out {ro}/x; echo rc=$?",
                         f"{py} record {ro}/bag; echo rc=$?",
                         f"{py} collect --out {ro}/d.npz; echo rc=$?"])
    p = subprocess.run([shutil.which("unshare"), "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr  # (99: no mount namespace for the test here)
    assert p.stdout.split() == ["rc=2"] * 3, p.stdout + p.stderr
    assert p.stderr.count("(Read-only file system)") == 3 and "Traceback" not in p.stderr
