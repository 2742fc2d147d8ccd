#!/usr/bin/env bash
# Command 1 of the README: install dependencies, build, and run the main job —
# `waggle run` over examples/jobs.jsonl (completions and chat requests in the
# OpenAI Batch format) with the bundled demo model, streaming the first jobs'
# tokens, then printing the results file and a throughput summary.
#
#   ./ops/quickstart.sh [MODEL]      MODEL: any GGUF file or HF model directory
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
./ops/setup.sh
echo "quickstart: building the waggle command (CPU backend; ops/test.sh builds everything)..." >&2
WAGGLE_CUDA=${WAGGLE_CUDA:-OFF} WAGGLE_TARGET=waggle ./ops/build.sh >/dev/null
waggle=./build/tools/waggle
$waggle --version

model=${1:-}
if [ -z "$model" ]; then
  # the trained demo model, else the small stand-in
  model=$(ls examples/models/waggle-kjv-*.gguf 2>/dev/null | head -n 1 || true)
  [ -n "$model" ] || model=examples/models/stories260K.gguf
fi
out=${WAGGLE_OUT:-out/results.jsonl}
mkdir -p "$(dirname "$out")"
rm -f "$out"
echo "quickstart: model $model, jobs examples/jobs.jsonl -> $out" >&2
$waggle run --model "$model" --input examples/jobs.jsonl --output "$out" --stream 3 --threads "$(nproc)"
echo
echo "quickstart: results in $out ($(wc -l <"$out") rows); first row:"
head -n 1 "$out"
