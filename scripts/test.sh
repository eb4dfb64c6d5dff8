#!/usr/bin/env bash
# Set up, build, and run the whole test suite (ctest). Extra arguments go to ctest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/build.sh"
BUILD_DIR="${COMBA_BUILD_DIR:-$ROOT/build}"
cd "$BUILD_DIR"
ctest --output-on-failure --parallel "${COMBA_JOBS:-$(nproc)}" "$@"
