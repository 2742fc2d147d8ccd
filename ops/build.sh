#!/usr/bin/env bash
# Configure and build waggle into build/ (or $WAGGLE_BUILD_DIR). Extra args go to cmake.
#   WAGGLE_CUDA=AUTO|ON|OFF   CUDA backend (default AUTO: built when nvcc is found)
#   WAGGLE_TARGET=NAME        build only this target (default: everything)
#   WAGGLE_BUILD_TYPE         CMake build type (default RelWithDebInfo)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${WAGGLE_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$bdir" -DCMAKE_BUILD_TYPE="${WAGGLE_BUILD_TYPE:-RelWithDebInfo}" \
  -DWAGGLE_CUDA="${WAGGLE_CUDA:-AUTO}" "$@" >/dev/null
if [ -n "${WAGGLE_TARGET:-}" ]; then
  cmake --build "$bdir" -j "$(nproc)" --target "$WAGGLE_TARGET"
else
  cmake --build "$bdir" -j "$(nproc)"
fi
