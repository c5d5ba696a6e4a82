#!/usr/bin/env bash
# The project's test command: sets up .venv on a fresh clone, then runs the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec python -m pytest test --ignore=test/launch_testing "$@"
