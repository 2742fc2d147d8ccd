#!/usr/bin/env bash
# Configure and build waggle into build/ (or $WAGGLE_BUILD_DIR). Extra args go to cmake.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${WAGGLE_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$bdir" -DCMAKE_BUILD_TYPE=${WAGGLE_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$bdir" -j "$(nproc)"
