#!/usr/bin/env bash
# Quickstart: set up and build (scripts/build.sh), then train the built-in task
# (configs/default.yaml: associative recall, generated here, no download) and print the
# result. Extra arguments go to comba-train, e.g. --set train.max_steps=200.
# Outputs: runs/quickstart/{train.log,metrics.jsonl,loss_curve.svg,config.yaml,checkpoints/}
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${COMBA_BUILD_DIR:-$ROOT/build}"
RUN_DIR="${COMBA_RUN_DIR:-$ROOT/runs/quickstart}"

COMBA_TARGETS="${COMBA_TARGETS:-comba-train}" bash "$ROOT/scripts/build.sh"

# A fresh run every time (this directory belongs to the quickstart).
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
echo "[quickstart] training configs/default.yaml -> $RUN_DIR" >&2
start=$(date +%s)
"$BUILD_DIR/bin/comba-train" "$ROOT/configs/default.yaml" --set "logging.run_dir=$RUN_DIR" "$@" |
  tee "$RUN_DIR/summary.jsonl"
elapsed=$(( $(date +%s) - start ))

summary="$(tail -n 1 "$RUN_DIR/summary.jsonl")"
field() { echo "$summary" | sed -n "s/.*\"$1\": \([-0-9.eE+]*\).*/\1/p"; }
acc="$(field eval_accuracy)"
loss="$(field eval_loss)"
echo
echo "[quickstart] done in ${elapsed}s"
[ -n "$loss" ] && echo "[quickstart] eval loss     $loss"
[ -n "$acc" ] && awk -v a="$acc" 'BEGIN { printf "[quickstart] eval accuracy %.1f%% (chance 12.5%%)\n", 100 * a }'
echo "[quickstart] loss curve    $RUN_DIR/loss_curve.svg"
echo "[quickstart] metrics       $RUN_DIR/metrics.jsonl"
