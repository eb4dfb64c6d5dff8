#!/usr/bin/env bash
# One call on a GPU machine for the layer work: build the layer workbench and the nn tests,
# run the fused-kernel tests (CPU and CUDA cases) and the nn GPU tests, run the fused
# kernels' CUDA cases under compute-sanitizer (memcheck, racecheck), and time every piece
# of the comba-340m layer (benchmarks/bench_layer.cpp). Logs go to $OUT (or ./gpu-logs);
# a table of the timings is printed at the end.
# Usage: bash benchmarks/gpu_layer.sh [build|test|sanitize|bench]...   (default: all four)
#   BENCH_ARGS="--iters 30 --modes bf16" passes options to bench_layer (default: profile
#   the block's fwd+bwd kernel by kernel: --profile block).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export COMBA_BUILD_DIR="${COMBA_BUILD_DIR:-$ROOT/build-gpu}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}"
LOGS="${OUT:-$ROOT/gpu-logs}"
BIN="$COMBA_BUILD_DIR"
mkdir -p "$LOGS"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build test sanitize bench)
status=0

summary() {  # last lines of a gtest log: totals and failures
  grep -E "^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test|^\[  FAILED  \] [A-Za-z]" "$1" | head -25
}

for step in "${steps[@]}"; do
  case "$step" in
    build)
      COMBA_TARGETS="bench_layer test_nn_fused test_nn_gpu" \
        bash "$ROOT/scripts/build.sh" >"$LOGS/build.log" 2>&1 || { tail -40 "$LOGS/build.log"; exit 1; }
      # Registers / spills of the nn kernels (ptxas -v), for tuning.
      awk "/Compiling entry function/ { fn = \$0; sub(/.*function '/, \"\", fn); sub(/'.*/, \"\", fn) }
           /spill stores/ { spill = \$0 }
           /Used [0-9]+ registers/ && fn ~ /short_conv|rms_norm|column_sum/ { print fn; print \"   \" \$0 \" |\" spill; fn = \"\" }" \
        "$LOGS/build.log" | (c++filt 2>/dev/null || cat) | head -40 ;;
    test)
      for t in test_nn_fused test_nn_gpu; do
        echo "== $t"
        OMP_NUM_THREADS=4 "$BIN/tests/nn/$t" >"$LOGS/$t.log" 2>&1 || status=1
        summary "$LOGS/$t.log"
      done ;;
    sanitize)
      SAN="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)"
      if [ -z "$SAN" ]; then echo "== compute-sanitizer not found: skipped"; continue; fi
      FILTER='*ShortConvCuda.*:*RMSNormCuda.*:*ShortConvCudaModule.*'
      for tool in memcheck racecheck; do
        echo "== compute-sanitizer --tool $tool"
        # Only our kernels are instrumented (their names contain "comba"); ATen's run as usual.
        timeout 200 "$SAN" --tool "$tool" --kernel-name kns=comba --error-exitcode 9 \
          "$BIN/tests/nn/test_nn_fused" --gtest_filter="$FILTER" >"$LOGS/sanitize_$tool.log" 2>&1
        rc=$?
        [ $rc -eq 0 ] || { status=1; echo "exit $rc"; tail -5 "$LOGS/sanitize_$tool.log"; }
        grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED) " "$LOGS/sanitize_$tool.log" | head -5
      done ;;
    bench)
      # shellcheck disable=SC2086
      "$BIN/benchmarks/bench_layer" ${BENCH_ARGS:---profile block} >"$LOGS/bench_layer.jsonl" 2>"$LOGS/bench_layer.err" || status=1
      tail -3 "$LOGS/bench_layer.err"
      python3 - "$LOGS/bench_layer.jsonl" <<'PY' || cat "$LOGS/bench_layer.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"{'case':16} {'impl':11} {'pass':8} {'dtype':14} {'median_ms':>10} {'peak_mib':>9}  shape")
for r in rows:
    if "case" in r:
        peak = "" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        print(f"{r['case']:16} {r['impl']:11} {r['pass']:8} {r['dtype']:14} {r['median_ms']:10.3f} {peak:>9}  {r['shape']}")
    elif "profile" not in r:
        print(r)
for r in rows:
    if "profile" in r and "rank" in r and r["rank"] <= 25:
        print(f"{r['profile']} {r['dtype']:14} {r['ms_per_step']:8.3f} ms {100 * r['share']:5.1f}% x{r['calls_per_step']:<5g} {r['kernel'][:110]}")
    elif "profile" in r and "device_ms_per_step" in r:
        print(f"{r['profile']} {r['dtype']}: {r['kernels']} kernels, {r['device_ms_per_step']:.3f} ms device time per fwd+bwd")
PY
      ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
exit $status
