#!/usr/bin/env bash
# Set up, build, and run waggle's main job on the built-in default.
# Until the engine lands this inspects the bundled conformance model.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
./ops/setup.sh
./ops/build.sh
./build/tools/waggle --version
model=${1:-examples/models/stories260K.gguf}
./build/tools/waggle inspect "$model"
