#!/usr/bin/env bash
# Set up (scripts/setup.sh) and build everything. Parallelism: $COMBA_JOBS or all cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# ccache keys on paths relative to the checkout, so fresh clones reuse earlier builds.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$ROOT}"
BUILD_DIR="${COMBA_BUILD_DIR:-$ROOT/build}"
cmake --build "$BUILD_DIR" --parallel "${COMBA_JOBS:-$(nproc)}" ${COMBA_TARGETS:+--target $COMBA_TARGETS}
