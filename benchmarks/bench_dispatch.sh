#!/usr/bin/env bash
# Fleet benchmark: broker dispatch rate (protocol-minimal workers and real
# waggle-worker processes, 1-token jobs), TOKEN publish rate of one XPUB, and
# the share of the worker's engine loop spent publishing. One JSON object per
# line on stdout. Usage: benchmarks/bench_dispatch.sh [BUILD_DIR] [MODEL]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
model="${2:-$here/../shared/conformance/trained/stories260K-f32.gguf}"
bin="$build/worker/bench-dispatch"
[ -x "$bin" ] || { echo "build the bench-dispatch target first (cmake --build $build --target bench-dispatch waggle-broker waggle-worker)" >&2; exit 2; }
echo "{\"machine\": {\"cpus\": $(nproc), \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//;s/"//g')\"}}"
"$bin" dispatch --jobs "${JOBS:-100000}" --workers "${WORKERS:-2}" --producers "${PRODUCERS:-2}" --credits 256
if command -v redis-server >/dev/null; then
  port=$((30000 + RANDOM % 20000)); dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes --dir "$dir" >/dev/null 2>&1 &
  rpid=$!; sleep 0.5
  "$bin" dispatch --jobs "${JOBS_REDIS:-20000}" --workers 2 --producers 2 --credits 256 --redis "redis://127.0.0.1:$port" || true
  kill "$rpid"; wait "$rpid" 2>/dev/null || true; rm -rf "$dir"
fi
"$bin" dispatch --jobs "${JOBS_REAL:-20000}" --workers 2 --producers 1 --credits 256 --real "$model"
"$bin" publish --events "${EVENTS:-300000}" --topics 64
"$bin" share "$model" --jobs 32 --tokens 200
# Publish share on a model with a realistic step time: an ~86M-parameter Q8_0
# random-weight llama (set BIG=0 to skip; needs ~100 MB in $TMPDIR).
if [ "${BIG:-1}" != 0 ]; then
  big="${TMPDIR:-/tmp}/wg-bench-86m-$$.gguf"
  "$build/tools/waggle" mkmodel --params 100M --type Q8_0 --vocab "$model" -o "$big" >/dev/null 2>&1
  "$bin" share "$big" --jobs 32 --tokens 30
  rm -f "$big"
fi
