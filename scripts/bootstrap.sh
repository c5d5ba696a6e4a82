#!/usr/bin/env bash
# Creates/updates the project's virtual environment in .venv (or $POLICY_XAI_VENV) and installs
# policy_xai into it. Sourced by scripts/demo.sh and scripts/test.sh; safe to run repeatedly
# (re-installs only when the requirement files or the launch wheels change).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${POLICY_XAI_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

# On a ROS 2 machine (rclpy importable from the sourced distro) the venv sees the system's
# site-packages and the PyPI ROS wheels are NOT installed.
if "$PY" -c "import rclpy" >/dev/null 2>&1; then
  HAVE_ROS=1
else
  HAVE_ROS=0
fi

# The ROS 2 launch system, ros2 CLI and colcon (for the launch tests): the distro's where
# `import launch_ros` works; else the wheels in shared/ros2-wheels beside the repo (upstream ROS 2
# sources built as wheels; not on PyPI) plus their PyPI dependencies (requirements-launch.txt);
# else none, and the launch tests report that they did not run.
ROS2_WHEELS="${POLICY_XAI_ROS2_WHEELS:-$ROOT/../shared/ros2-wheels}"
wheels=()
if "$PY" -c "import launch_ros" >/dev/null 2>&1; then
  LAUNCH_FROM=distro
elif compgen -G "$ROS2_WHEELS/*.whl" >/dev/null; then
  LAUNCH_FROM=wheels
  ROS2_WHEELS="$(cd "$ROS2_WHEELS" && pwd)"
  wheels=("$ROS2_WHEELS"/*.whl)
else
  LAUNCH_FROM=none
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[policy_xai] creating virtual environment in $VENV" >&2
  if [ "$HAVE_ROS" = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi

stamp="$VENV/.policy_xai-stamp"
wheel_list=""  # name and checksum of each launch wheel: a changed wheel set re-installs
if [ ${#wheels[@]} -gt 0 ]; then
  wheel_list="$(cd "$ROS2_WHEELS" && sha256sum -- *.whl)"
fi
want="$( (cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/requirements-ros-wheels.txt" \
          "$ROOT/requirements-launch.txt" "$ROOT/setup.py"; echo "$wheel_list") \
        | sha256sum | cut -c1-16)-ros$HAVE_ROS-launch$LAUNCH_FROM"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[policy_xai] installing dependencies (first run takes about a minute)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  reqs=(-r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt")
  if [ "$HAVE_ROS" = 0 ]; then
    reqs+=(-r "$ROOT/requirements-ros-wheels.txt")
  fi
  if [ "$LAUNCH_FROM" = wheels ]; then
    reqs+=(-r "$ROOT/requirements-launch.txt")
  fi
  # torch pinned in the same command so that nothing (e.g. captum) pulls another torch build.
  "$VENV/bin/python" -m pip install -q "${reqs[@]}" torch==2.13.0 >&2
  if [ "$LAUNCH_FROM" = wheels ]; then
    echo "[policy_xai] installing the ROS 2 launch wheels from $ROS2_WHEELS" >&2
    "$VENV/bin/python" -m pip install -q --no-deps "${wheels[@]}" >&2
  fi
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
  echo "$want" > "$stamp"
fi

export PATH="$VENV/bin:$PATH"
export POLICY_XAI_ROOT="$ROOT"
# where the launch tooling came from (distro | wheels | none): test/test_launch.py reads it
export POLICY_XAI_LAUNCH_FROM="$LAUNCH_FROM"
# Fast DDS: shared memory silently drops messages across mount namespaces; UDP on localhost only.
export FASTDDS_BUILTIN_TRANSPORTS="${FASTDDS_BUILTIN_TRANSPORTS:-UDPv4}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
