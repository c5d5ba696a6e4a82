#!/usr/bin/env bash
# The project's main job: sets up .venv on a fresh clone, then runs the demo (see README).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec policy-xai demo "$@"
