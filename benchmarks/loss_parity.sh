#!/usr/bin/env bash
# Loss parity with fla (benchmarks/loss_parity.py) on a GPU machine without network, in
# device calls of at most 10 minutes: `ours` builds comba-train and trains our two runs
# (~2 min build + ~1 min), `fla` trains fla's run (several minutes of Triton compiling and
# autotuning on a fresh machine, then ~1 min), `all` does both in one call (a warm machine).
# fla and its dependencies are installed from ./.whl (pip install --no-deps .whl/*.whl).
# Each step leaves $OUT/<step>.jsonl (and its stderr log); merge them anywhere, e.g. here:
#   python3 benchmarks/loss_parity.py --merge ours.jsonl fla.jsonl --out benchmarks/parity
# Extra options for loss_parity.py: PARITY_ARGS (e.g. "--steps 200 --grad-check"); each step
# is stopped after PARITY_TIMEOUT seconds (default: 540 for fla, 420 after a build), its
# lines so far kept.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu-logs}"
BUILD="${COMBA_BUILD_DIR:-$ROOT/build-gpu}"
WORK="${PARITY_WORK:-/tmp/comba-parity}"
mkdir -p "$OUT"
python3 -m pip install -q --no-deps "$ROOT"/.whl/*.whl >"$OUT/pip.log" 2>&1 || { tail -5 "$OUT/pip.log"; exit 1; }
status=0
for step in "${@:-all}"; do
  case "$step" in
    ours) COMBA_TARGETS=comba-train bash "$ROOT/benchmarks/gpu_suite.sh" build || exit 1
          args=(--skip-fla); limit=420 ;;
    fla)  args=(--skip-ours); limit=540 ;;
    all)  COMBA_TARGETS=comba-train bash "$ROOT/benchmarks/gpu_suite.sh" build || exit 1
          args=(); limit=420 ;;
    *) echo "unknown step $step (ours, fla, all)"; exit 2 ;;
  esac
  rm -rf "$WORK/$step"
  # shellcheck disable=SC2086
  # Stopped before the device call's 10 minutes run out, so that what it has comes back.
  PYTHONUNBUFFERED=1 timeout "${PARITY_TIMEOUT:-$limit}" python3 "$ROOT/benchmarks/loss_parity.py" "$BUILD" \
      --out "$WORK/$step" "${args[@]}" ${PARITY_ARGS:-} 2>"$OUT/$step.stderr.log" || status=1
  cp "$WORK/$step/parity.jsonl" "$OUT/$step.jsonl" 2>/dev/null || status=1
  if [ "$step" = all ]; then cp "$WORK/$step/parity.svg" "$WORK/$step/parity.csv" "$OUT/" 2>/dev/null; fi
  tail -3 "$OUT/$step.stderr.log"
done
exit $status
