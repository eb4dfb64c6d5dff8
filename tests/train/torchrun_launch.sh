#!/usr/bin/env bash
# comba-train under torchrun: `torchrun --standalone --nproc-per-node=2 --no-python
# comba-train ...` trains on the CPU over the agent's store; rank 0 alone logs, writes the
# run directory and prints the JSON summary (world_size 2). Then a resume with one plain
# process continues from rank 0's checkpoint.
# usage: torchrun_launch.sh PYTHON COMBA_TRAIN CONFIG   (exit 77: no torch.distributed here)
set -euo pipefail
PYTHON="$1"
BIN="$2"
CONFIG="$3"
"$PYTHON" -c 'import torch.distributed.run' >/dev/null 2>&1 || { echo "SKIP: no torch.distributed.run"; exit 77; }
RUN_DIR="$(mktemp -d /tmp/comba_torchrun_XXXXXX)"
trap 'rm -rf "$RUN_DIR"' EXIT
common=(--set device=cpu --set "logging.run_dir=$RUN_DIR/run" --set train.threads=1
        --set logging.interval=2 --set eval.batches=2 --set batch.micro_batch_size=8
        --set batch.grad_accum_steps=2 --set distributed.timeout_s=60 --set logging.progress_bar=false)

timeout 240 "$PYTHON" -m torch.distributed.run --standalone --nproc-per-node=2 --no-python \
  "$BIN" "$CONFIG" --no-resume "${common[@]}" --set train.max_steps=6 >"$RUN_DIR/out1.txt" 2>&1 ||
  { cat "$RUN_DIR/out1.txt"; echo "FAIL: torchrun exited with an error"; exit 1; }
cat "$RUN_DIR/out1.txt"
[ "$(grep -c '"type": "summary"' "$RUN_DIR/out1.txt")" -eq 1 ] || { echo "FAIL: expected one summary line"; exit 1; }
grep -q '"final_step": 6,.*"world_size": 2' "$RUN_DIR/out1.txt" || { echo "FAIL: no world_size 2 summary"; exit 1; }
grep -q "data parallel: rank 0 of 2" "$RUN_DIR/out1.txt" || { echo "FAIL: rank 0 did not report the group"; exit 1; }
[ -f "$RUN_DIR/run/checkpoints/step_0000000006.ckpt" ] || { echo "FAIL: no checkpoint from rank 0"; exit 1; }

timeout 120 "$BIN" "$CONFIG" "${common[@]}" --set train.max_steps=8 >"$RUN_DIR/out2.txt" 2>&1 ||
  { cat "$RUN_DIR/out2.txt"; echo "FAIL: the one-process resume failed"; exit 1; }
cat "$RUN_DIR/out2.txt"
grep -q "resumed from .*step_0000000006.ckpt at step 6" "$RUN_DIR/out2.txt" || { echo "FAIL: did not resume"; exit 1; }
grep -q '"final_step": 8,.*"world_size": 1' "$RUN_DIR/out2.txt" || { echo "FAIL: wrong final step"; exit 1; }
echo "PASS"
