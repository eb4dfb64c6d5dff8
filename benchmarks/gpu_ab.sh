#!/usr/bin/env bash
# A/B of another revision in one GPU call. OTHER is a second checkout inside this tree's
# ignored paths, carried to the machine (e.g. `git worktree add .gl/prefetch BRANCH`, then
# run with carry [".gl/prefetch"]). Builds this tree (build-gpu) and OTHER (OTHER/build-gpu)
# side by side, runs OTHER's CUDA operator tests, then times both with bench_ops on the same
# warm GPU, alternating, so that the two columns compare. Logs go to $OUT (or ./gpu-logs).
# Usage: bash benchmarks/gpu_ab.sh OTHER [BENCH_FILTER]   (filter default: _K, every case)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OTHER="$(cd "${1:?usage: gpu_ab.sh OTHER [BENCH_FILTER]}" && pwd)"
FILTER="${2:-_K}"
LOGS="${OUT:-$ROOT/gpu-logs}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}"
mkdir -p "$LOGS"

COMBA_BUILD_DIR="$ROOT/build-gpu" COMBA_JOBS="${COMBA_JOBS:-8}" bash "$ROOT/scripts/build.sh" >"$LOGS/build_a.log" 2>&1 &
build_a=$!
COMBA_BUILD_DIR="$OTHER/build-gpu" COMBA_JOBS="${COMBA_JOBS:-8}" bash "$OTHER/scripts/build.sh" >"$LOGS/build_b.log" 2>&1 &
build_b=$!
wait "$build_a" || { tail -30 "$LOGS/build_a.log"; exit 1; }
wait "$build_b" || { tail -30 "$LOGS/build_b.log"; exit 1; }

status=0
(cd "$OTHER/build-gpu" && ctest -R "oracle.cuda|edge_cases.cuda|chunk_cuda_large|validation.cuda" -j 4 \
   --output-on-failure >"$LOGS/ctest_b.log" 2>&1) || status=1
grep -E "tests passed|tests failed|\(Failed\)" "$LOGS/ctest_b.log" | tail -8

for round in 1 2; do
  for side in a b; do
    dir="$ROOT"; [ "$side" = b ] && dir="$OTHER"
    "$dir/build-gpu/benchmarks/bench_ops" --iters 50 --filter "$FILTER" >"$LOGS/bench_${side}_$round.jsonl"
  done
done
python3 - "$LOGS" <<'PY'
import json, sys, collections
logs = sys.argv[1]
runs = collections.defaultdict(list)
for side in "ab":
    for rnd in (1, 2):
        for line in open(f"{logs}/bench_{side}_{rnd}.jsonl"):
            r = json.loads(line)
            if "case" not in r:  # e.g. {"skipped": "no CUDA device"}
                print(line.strip())
                continue
            runs[(r["case"], r["pass"], r["dtype"], r["path"], side)].append(r["median_ms"])
print(f"{'case':34} {'pass':8} {'dtype':5} {'path':9} {'A ms (this tree)':>18} {'B ms (other)':>14}")
for key in sorted({k[:4] for k in runs}):
    a, b = runs.get(key + ("a",), []), runs.get(key + ("b",), [])
    fmt = lambda xs: " / ".join(f"{x:.4f}" for x in xs)
    print(f"{key[0]:34} {key[1]:8} {key[2]:5} {key[3]:9} {fmt(a):>18} {fmt(b):>14}")
PY
exit $status
