#!/usr/bin/env bash
# One call on a GPU machine: build, run the whole test suite (GPU tests included), the
# CUDA workbench check and the operator benchmark. Logs go to $OUT (or ./gpu-logs).
# Usage: bash benchmarks/gpu_suite.sh [build|test|check|bench|decode|compare]...   (default: the first four)
# decode: the decode-step tests, then both decode benchmarks (the kernel alone; the C++ call
# and generate).
# compare: the training step beside fla and a Transformer (benchmarks/compare_train.py),
# their wheels installed from ./.whl (pip download, see that script); COMPARE_ARGS passes options.
# CTEST_REGEX limits the test step to the tests it matches.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export COMBA_BUILD_DIR="${COMBA_BUILD_DIR:-$ROOT/build-gpu}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}"
LOGS="${OUT:-$ROOT/gpu-logs}"
mkdir -p "$LOGS"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(build test check bench)
status=0
for step in "${steps[@]}"; do
  case "$step" in
    build) bash "$ROOT/scripts/build.sh" >"$LOGS/build.log" 2>&1 || { tail -40 "$LOGS/build.log"; exit 1; } ;;
    # A GPU or Python skip here means a broken machine or build: make it a failure.
    test) (cd "$COMBA_BUILD_DIR" && export COMBA_REQUIRE_GPU=1 COMBA_REQUIRE_PYTHON=1 && ctest --output-on-failure -j 8 ${CTEST_REGEX:+-R "$CTEST_REGEX"} >"$LOGS/ctest.log" 2>&1) || status=1
          grep -E "tests passed|tests failed|\(Failed\)|\(SEGFAULT\)|\(Timeout\)" "$LOGS/ctest.log" | tail -15 ;;
    check) PYTHONUNBUFFERED=1 python3 "$ROOT/benchmarks/check_cuda.py" "$COMBA_BUILD_DIR" >"$LOGS/check.log" 2>&1 || status=1
           tail -1 "$LOGS/check.log" ;;
    bench) "$COMBA_BUILD_DIR/benchmarks/bench_ops" --iters 50 | tee "$LOGS/bench_ops.jsonl" | cut -c1-220
           "$COMBA_BUILD_DIR/benchmarks/bench_decode_kernel" | tee "$LOGS/bench_decode_kernel.jsonl" | cut -c1-220 ;;
    decode) COMBA_REQUIRE_GPU=1 "$COMBA_BUILD_DIR/tests/ops/test_decode_step" >"$LOGS/test_decode_step.log" 2>&1 || status=1
            grep -E "PASSED|FAILED|Failure" "$LOGS/test_decode_step.log" | head -20
            "$COMBA_BUILD_DIR/benchmarks/bench_decode_kernel" | tee "$LOGS/bench_decode_kernel.jsonl" | cut -c1-220
            "$COMBA_BUILD_DIR/benchmarks/bench_decode_step" | tee "$LOGS/bench_decode_step.jsonl" | cut -c1-220 ;;
    compare) python3 -m pip install -q --no-index --find-links "$ROOT/.whl" flash-linear-attention >"$LOGS/pip.log" 2>&1 || { tail -5 "$LOGS/pip.log"; status=1; }
             PYTHONUNBUFFERED=1 python3 "$ROOT/benchmarks/compare_train.py" "$COMBA_BUILD_DIR" ${COMPARE_ARGS:-} | tee "$LOGS/compare_train.jsonl" || status=1 ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
done
exit $status
