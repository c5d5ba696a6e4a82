#!/usr/bin/env bash
# Regenerates the README's pictures (docs/img/) from the shipped `reach` policy:
# policy-xai analyze-rollout over the task's 4 conditions + a target change, DTD/RAP/GBP.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
out="$(mktemp -d)/rollout_reach"
policy-xai analyze-rollout --task reach --out "$out"
mkdir -p docs/img
cp "$out/fig3/condition0_step050_dtd.png" docs/img/fig3_reach.png
cp "$out/fig4_ratios.png" docs/img/fig4_reach.png
cp "$out/fig5_curves.png" docs/img/fig5_reach.png
cp "$out/fig6_target_change.png" docs/img/fig6_reach.png
echo "wrote docs/img/fig3_reach.png fig4_reach.png fig5_reach.png fig6_reach.png (from $out)"
