#!/usr/bin/env bash
# Sets up everything the build needs and configures it; idempotent and quick when done.
#   - LibTorch: an existing torch (TORCH_PYTHON=/path/to/python, the active python3, or
#     /opt/torch/.venv), else a local .venv with torch==2.11.0 from PyPI.
#   - System libraries (Debian): yaml-cpp, spdlog, Eigen, GoogleTest, nlohmann-json, CLI11;
#     SentencePiece, ninja and ccache when available.
#   - Configures the CMake build in $COMBA_BUILD_DIR (default: build/).
# Prints nothing but progress; the variables it sets are in build/comba-env.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${COMBA_BUILD_DIR:-$ROOT/build}"
TORCH_VERSION="2.11.0"

say() { echo "[setup] $*" >&2; }

install_system_packages() {
  # COMBA_SKIP_APT=1: never call the package manager (machines without a network).
  [ "${COMBA_SKIP_APT:-0}" = 1 ] && return 0
  local missing=()
  [ -f /usr/include/yaml-cpp/yaml.h ] || missing+=(libyaml-cpp-dev)
  [ -f /usr/include/spdlog/spdlog.h ] || missing+=(libspdlog-dev)
  [ -d /usr/include/eigen3 ] || missing+=(libeigen3-dev)
  [ -d /usr/include/gtest ] || missing+=(libgtest-dev)
  [ -f /usr/include/nlohmann/json.hpp ] || missing+=(nlohmann-json3-dev)
  [ -f /usr/include/CLI/CLI.hpp ] || missing+=(libcli11-dev)
  # Optional packages, each checked on its own: SentencePiece (tokenizers), ninja and ccache
  # (faster builds). One that could not be installed is not tried again on every build
  # (the stamp in the build dir remembers the list tried), unless required ones are missing.
  local optional=()
  [ -f /usr/include/sentencepiece_processor.h ] || optional+=(libsentencepiece-dev)
  command -v ninja >/dev/null || optional+=(ninja-build)
  command -v ccache >/dev/null || optional+=(ccache)
  local stamp="$BUILD_DIR/.setup-optional-tried"
  if [ ${#missing[@]} -eq 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${optional[*]}" ]; then
    return 0
  fi
  [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && return 0
  local wanted=("${missing[@]}" "${optional[@]}")
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    say "installing ${wanted[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || say "apt-get update failed; trying the install anyway"
    # One call for all; if an optional package breaks it, the required ones alone.
    apt-get install -y -qq "${wanted[@]}" >/dev/null ||
      { [ ${#missing[@]} -gt 0 ] && [ ${#optional[@]} -gt 0 ] && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
      say "could not install ${wanted[*]}"
    INSTALLED=1  # reconfigure: a build configured before may have gone without them
  else
    [ ${#missing[@]} -eq 0 ] || say "missing ${missing[*]}; install them with your package manager"
    [ ${#optional[@]} -eq 0 ] || say "optional, not installed: ${optional[*]}"
  fi
  mkdir -p "$BUILD_DIR" && echo "${optional[*]}" >"$stamp"
}

has_torch() { "$1" -c 'import torch' >/dev/null 2>&1; }

find_torch_python() {
  local candidates=()
  [ -n "${TORCH_PYTHON:-}" ] && candidates+=("$TORCH_PYTHON")
  candidates+=("$ROOT/.venv/bin/python")
  command -v python3 >/dev/null && candidates+=("$(command -v python3)")
  candidates+=(/opt/torch/.venv/bin/python3)
  for py in "${candidates[@]}"; do
    if [ -x "$py" ] && has_torch "$py"; then echo "$py"; return 0; fi
  done
  if [ -n "${TORCH_PYTHON:-}" ]; then say "TORCH_PYTHON=$TORCH_PYTHON cannot import torch"; exit 1; fi
  say "no torch found: creating $ROOT/.venv with torch==$TORCH_VERSION (about a minute)"
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q --upgrade pip >/dev/null
  "$ROOT/.venv/bin/pip" install -q "torch==$TORCH_VERSION" numpy safetensors
  echo "$ROOT/.venv/bin/python"
}

INSTALLED=0
install_system_packages
PYTHON="$(find_torch_python)"
TORCH_INFO="$("$PYTHON" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.utils.cmake_prefix_path)')"
read -r TORCH_FOUND CUDA_FOUND TORCH_PREFIX <<<"$TORCH_INFO"
[ "${TORCH_FOUND%%+*}" = "$TORCH_VERSION" ] || say "warning: torch $TORCH_FOUND found, the project pins $TORCH_VERSION"
say "torch $TORCH_FOUND (CUDA $CUDA_FOUND) from $PYTHON"

GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
mkdir -p "$BUILD_DIR"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ] || [ "$ROOT/CMakeLists.txt" -nt "$BUILD_DIR/CMakeCache.txt" ] ||
   [ "$INSTALLED" = 1 ]; then
  say "configuring $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}" \
    -DPython3_EXECUTABLE="$PYTHON" ${COMBA_CMAKE_ARGS:-} >"$BUILD_DIR/configure.log" 2>&1 ||
    { cat "$BUILD_DIR/configure.log"; exit 1; }
fi
cat >"$BUILD_DIR/comba-env.sh" <<ENV
export COMBA_PYTHON="$PYTHON"
export COMBA_BUILD_DIR="$BUILD_DIR"
ENV
