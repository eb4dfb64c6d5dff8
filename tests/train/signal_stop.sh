#!/usr/bin/env bash
# SIGINT mid-run: comba-train finishes the step, writes a checkpoint, exits 0; a second
# invocation resumes from that checkpoint and finishes the run.
# usage: signal_stop.sh COMBA_TRAIN CONFIG
set -euo pipefail
BIN="$1"
CONFIG="$2"
RUN_DIR="$(mktemp -d /tmp/comba_signal_XXXXXX)"
trap 'rm -rf "$RUN_DIR"' EXIT
common=(--set "logging.run_dir=$RUN_DIR" --set train.max_steps=100000 --set logging.interval=1
        --set eval.interval=0 --set eval.batches=1 --set checkpoint.interval=0
        --set batch.micro_batch_size=4 --set train.threads=1)

"$BIN" "$CONFIG" "${common[@]}" >"$RUN_DIR/out1.txt" 2>&1 &
pid=$!
for _ in $(seq 1 600); do  # wait (up to 60 s) for a few steps
  if [ -f "$RUN_DIR/metrics.jsonl" ] && [ "$(wc -l <"$RUN_DIR/metrics.jsonl")" -ge 3 ]; then break; fi
  sleep 0.1
done
kill -INT "$pid"
status=0
wait "$pid" || status=$?
cat "$RUN_DIR/out1.txt"
[ "$status" -eq 0 ] || { echo "FAIL: exit status $status after SIGINT"; exit 1; }
grep -q "stopping on signal 2 after step" "$RUN_DIR/out1.txt" || { echo "FAIL: no stop message"; exit 1; }
ckpt="$(ls "$RUN_DIR/checkpoints"/step_*.ckpt | tail -n 1)"
step=$((10#$(basename "$ckpt" .ckpt | sed 's/step_//')))
echo "checkpoint at step $step"

# Resume and run 2 more steps.
"$BIN" "$CONFIG" "${common[@]}" --set "train.max_steps=$((step + 2))" >"$RUN_DIR/out2.txt" 2>&1
cat "$RUN_DIR/out2.txt"
grep -q "resumed from .*step_.* at step $step" "$RUN_DIR/out2.txt" || { echo "FAIL: did not resume"; exit 1; }
grep -q "\"final_step\": $((step + 2))" "$RUN_DIR/out2.txt" || { echo "FAIL: wrong final step"; exit 1; }
echo "PASS"
