#!/usr/bin/env bash
# The project's test command: sets up .venv on a fresh clone, lints the Python sources with ruff
# (rules and line length in ruff.toml; a finding fails the command), then runs the whole test suite.
# test/test_launch.py builds the package with colcon into a temporary workspace and runs every
# launch_testing test of test/launch_testing/ with the `launch_test` command against that install;
# pytest itself never collects test/launch_testing/ (--ignore), and launch_testing's pytest plugin
# (it does not load under pytest 9) stays off (-p no:launch_testing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
LINT_PATHS=(src test launch scripts setup.py)
echo "[policy_xai] lint: ruff check ${LINT_PATHS[*]}"
if ! python -m ruff check "${LINT_PATHS[@]}"; then
  echo "[policy_xai] ruff found lint errors (above); see them with: cd $ROOT && $VENV/bin/python -m ruff check ${LINT_PATHS[*]}" >&2
  exit 1
fi
case "$POLICY_XAI_LAUNCH_FROM" in
  distro) echo "[policy_xai] launch tests: ROS 2 launch, launch_testing and colcon from the sourced distro" ;;
  wheels) echo "[policy_xai] launch tests: ROS 2 launch wheels from ${ROS2_WHEELS}, colcon from PyPI" ;;
  *) echo "[policy_xai] launch tests: NOT RUN (no ROS 2 launch_ros importable and no ../shared/ros2-wheels)" ;;
esac
exec python -m pytest test --ignore=test/launch_testing -p no:launch_testing -p no:launch_ros "$@"
