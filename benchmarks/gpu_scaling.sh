#!/usr/bin/env bash
# Data-parallel scaling on one host: comba-340m on random tokens in benchmark mode (no
# eval, no checkpoints; timed after train.benchmark_warmup steps), first on one GPU as a
# plain process, then on N GPUs under torchrun (NCCL, NVLink multicast off). The global
# batch is the config's at every world size, so tokens/s compare directly. Prints each
# run's summary line, then one JSON line: tokens/s at 1 and N GPUs, per GPU, and the
# scaling efficiency tokens/s(N) / (N x tokens/s(1)). Logs go to $OUT (or ./gpu-logs).
# Run after a build (bash benchmarks/gpu_suite.sh build).
# Usage: bash benchmarks/gpu_scaling.sh [N] [STEPS]   (defaults: every visible GPU, 30)
#   COMBA_SCALING_CONFIG=configs/default.yaml and COMBA_SCALING_ARGS="--set key=value ..."
#   run another config (a CPU dry run of this script: N processes over the CPU).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${COMBA_BUILD_DIR:-$ROOT/build-gpu}/bin/comba-train"
LOGS="${OUT:-$ROOT/gpu-logs}"
N="${1:-$(nvidia-smi -L 2>/dev/null | wc -l)}"
STEPS="${2:-30}"
mkdir -p "$LOGS"
[ -x "$BIN" ] || { echo "no $BIN: build first (bash benchmarks/gpu_suite.sh build)"; exit 1; }
[ "$N" -ge 2 ] || { echo "needs 2 or more GPUs (found $N)"; exit 1; }

# The python whose torch has the torchrun launcher (the same search as scripts/setup.sh).
PYTHON=""
for candidate in "${TORCH_PYTHON:-}" "$ROOT/.venv/bin/python" python3 /opt/torch/.venv/bin/python3; do
  if [ -n "$candidate" ] && "$candidate" -c 'import torch.distributed.run' >/dev/null 2>&1; then
    PYTHON="$candidate"
    break
  fi
done
[ -n "$PYTHON" ] || { echo "no python with torch.distributed.run"; exit 1; }

RUNS="$(mktemp -d /tmp/comba_scaling_XXXXXX)"
trap 'rm -rf "$RUNS"' EXIT
export NCCL_NVLS_ENABLE=0
common=("${COMBA_SCALING_CONFIG:-configs/comba-340m.yaml}" --no-resume --set data.kind=random --set train.benchmark=true
        --set train.benchmark_warmup=5 --set "train.max_steps=$STEPS" --set logging.interval=10
        --set logging.progress_bar=false)
read -r -a extra <<<"${COMBA_SCALING_ARGS:-}"
common+=("${extra[@]}")

cd "$ROOT"
"$BIN" "${common[@]}" --set "logging.run_dir=$RUNS/one" >"$LOGS/scaling_1.log" 2>&1 ||
  { tail -20 "$LOGS/scaling_1.log"; echo "FAIL: the one-GPU run"; exit 1; }
"$PYTHON" -m torch.distributed.run --standalone --nproc-per-node="$N" --no-python \
  "$BIN" "${common[@]}" --set "logging.run_dir=$RUNS/many" >"$LOGS/scaling_$N.log" 2>&1 ||
  { tail -20 "$LOGS/scaling_$N.log"; echo "FAIL: the $N-GPU run"; exit 1; }

"$PYTHON" - "$LOGS/scaling_1.log" "$LOGS/scaling_$N.log" "$N" "${common[0]}" <<'PY'
import json, os, sys
def summary(path):
    lines = [json.loads(l) for l in open(path) if l.startswith("{") and '"summary"' in l]
    if len(lines) != 1:
        sys.exit(f"{path}: expected one summary line, found {len(lines)}")
    print(json.dumps(lines[0]))
    return lines[0]
one, many, n = summary(sys.argv[1]), summary(sys.argv[2]), int(sys.argv[3])
assert many["world_size"] == n, f"world_size {many['world_size']}, expected {n}"
print(json.dumps({
    "case": os.path.splitext(os.path.basename(sys.argv[4]))[0] + " data parallel", "gpus": n,
    "tokens_per_s_1": round(one["tokens_per_s"]), "tokens_per_s_n": round(many["tokens_per_s"]),
    "tokens_per_s_per_gpu": round(many["tokens_per_s"] / n),
    "step_time_ms_1": round(one["step_time_ms"], 1), "step_time_ms_n": round(many["step_time_ms"], 1),
    "peak_memory_gib_n": many["peak_memory_gib"],
    "scaling_efficiency": round(many["tokens_per_s"] / (n * one["tokens_per_s"]), 3)}))
PY
