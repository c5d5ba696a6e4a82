#!/usr/bin/env bash
# Creates/updates the project's virtual environment in .venv (or $POLICY_XAI_VENV) and installs
# policy_xai into it. Sourced by scripts/demo.sh and scripts/test.sh; safe to run repeatedly
# (re-installs only when the requirement files change).
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

if [ ! -x "$VENV/bin/python" ]; then
  echo "[policy_xai] creating virtual environment in $VENV" >&2
  if [ "$HAVE_ROS" = 1 ]; then
    "$PY" -m venv --system-site-packages "$VENV"
  else
    "$PY" -m venv "$VENV"
  fi
fi

stamp="$VENV/.policy_xai-stamp"
want="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/requirements-ros-wheels.txt" "$ROOT/setup.py" | sha256sum | cut -c1-16)-ros$HAVE_ROS"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[policy_xai] installing dependencies (first run takes about a minute)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  reqs=(-r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt")
  if [ "$HAVE_ROS" = 0 ]; then
    reqs+=(-r "$ROOT/requirements-ros-wheels.txt")
  fi
  # torch pinned in the same command so that nothing (e.g. captum) pulls another torch build.
  "$VENV/bin/python" -m pip install -q "${reqs[@]}" torch==2.13.0 >&2
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
  echo "$want" > "$stamp"
fi

export PATH="$VENV/bin:$PATH"
export POLICY_XAI_ROOT="$ROOT"
# Fast DDS: shared memory silently drops messages across mount namespaces; UDP on localhost only.
export FASTDDS_BUILTIN_TRANSPORTS="${FASTDDS_BUILTIN_TRANSPORTS:-UDPv4}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
