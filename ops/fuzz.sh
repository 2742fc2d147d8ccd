#!/usr/bin/env bash
# ops/fuzz.sh TARGET SECONDS — build a libFuzzer target (clang, ASan+UBSan),
# seed it from the conformance corpus, run it for SECONDS and report the
# executions per second and any crash.
#
#   TARGET   fuzz_gguf | fuzz_safetensors | fuzz_msg | fuzz_tok (any tests/fuzz/fuzz_*.c)
#   SECONDS  -max_total_time (default 60)
# Environment: WAGGLE_FUZZ_BUILD (build dir, default build-fuzz),
#   WAGGLE_CONFORMANCE (corpus, default ../shared/conformance),
#   WAGGLE_FUZZ_MAX_LEN (largest input; seeds above it are cut to 64 KiB),
#   WAGGLE_JOBS (build parallelism, default 2).
# Exit status: 0 when no crash was found, 1 when libFuzzer reported one.
set -euo pipefail
target=${1:?usage: ops/fuzz.sh TARGET SECONDS}
secs=${2:-60}
top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${WAGGLE_FUZZ_BUILD:-$top/build-fuzz}
conf=${WAGGLE_CONFORMANCE:-$top/../shared/conformance}

case $target in
  fuzz_gguf)        seed_glob='models/*/*.gguf refs/*.gguf tokenizer/*.gguf quants/*.gguf trained/*.gguf'
                    max_len=${WAGGLE_FUZZ_MAX_LEN:-65536} ;;
  fuzz_safetensors) seed_glob='hf/*/*.safetensors trained/*/*.safetensors'
                    max_len=${WAGGLE_FUZZ_MAX_LEN:-524288} ;;
  fuzz_msg)         seed_glob='' # valid bodies of every kind, written by the target below
                    max_len=${WAGGLE_FUZZ_MAX_LEN:-4096} ;;
  fuzz_tok)         seed_glob='' # small vocabularies of every family, written by the target below
                    max_len=${WAGGLE_FUZZ_MAX_LEN:-8192} ;;
  *)                seed_glob=''; max_len=${WAGGLE_FUZZ_MAX_LEN:-65536} ;;
esac

# The fuzz targets live under tests/, so the test tree is configured (only
# the fuzz target is built; Criterion suites are not compiled).
CC=clang CXX=clang++ cmake -S "$top" -B "$bdir" -DWAGGLE_FUZZ=ON -DWAGGLE_SANITIZE=ON \
  -DWAGGLE_TESTS=ON -DWAGGLE_CUDA=OFF >/dev/null
cmake --build "$bdir" --target "$target" -j "${WAGGLE_JOBS:-2}" >/dev/null
bin=$bdir/tests/fuzz/$target
[ -x "$bin" ] || { echo "fuzz.sh: $bin was not built" >&2; exit 2; }

# Seeds: whole corpus files up to max_len, the first 64 KiB of bigger ones
# (their headers and metadata are what the parser reads first).
seeds=$bdir/fuzz-seeds/$target
work=$bdir/fuzz-corpus/$target
art=$bdir/fuzz-artifacts/$target
rm -rf "$seeds"
mkdir -p "$seeds" "$work" "$art"
n_seeds=0
if [ -d "$conf" ]; then
  for pat in $seed_glob; do
    for f in "$conf"/$pat; do
      [ -f "$f" ] || continue
      out=$seeds/$(echo "${f#"$conf"/}" | tr '/' '_')
      if [ "$(stat -c %s "$f")" -le "$max_len" ]; then cp "$f" "$out"; else head -c 65536 "$f" >"$out"; fi
      n_seeds=$((n_seeds + 1))
    done
  done
else
  echo "fuzz.sh: no conformance corpus at $conf; starting from an empty corpus" >&2
fi
if [ "$target" = fuzz_msg ] || [ "$target" = fuzz_tok ]; then
  WG_FUZZ_WRITE_SEEDS=$seeds "$bin" -runs=0 "$seeds" >/dev/null 2>&1
  n_seeds=$(ls "$seeds" | wc -l)
fi
echo "fuzz.sh: $target for ${secs}s, $n_seeds seeds, max_len $max_len"

log=$bdir/fuzz-$target.log
set +e
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
  "$bin" -max_total_time="$secs" -max_len="$max_len" -print_final_stats=1 -timeout=10 \
  -artifact_prefix="$art/" "$work" "$seeds" >"$log" 2>&1
rc=$?
set -e

# (a crash ends the run without the final stats: every grep may find nothing)
runs=$( (grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" || true) | grep -oE '[0-9]+$' | tail -1 || true)
took=$( (grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" || true) | grep -oE 'in [0-9]+' | grep -oE '[0-9]+' | tail -1 || true)
cov=$( (grep -oE 'cov: [0-9]+' "$log" || true) | tail -1 | grep -oE '[0-9]+' || true)
if [ -z "$runs" ]; then # no final stats: take the last status line's execution count
  runs=$( (grep -oE '^#[0-9]+' "$log" || true) | tail -1 | tr -d '#')
fi
runs=${runs:-0}
took=${took:-$secs}
[ "$took" -gt 0 ] || took=1
echo "fuzz.sh: $target: $runs executions in ${took}s = $((runs / took)) exec/s, coverage ${cov:-?} edges, corpus $(ls "$work" | wc -l) inputs"
crashes=$(ls "$art" 2>/dev/null | grep -E '^(crash|leak|timeout|oom)-' || true)
if [ "$rc" -ne 0 ] || [ -n "$crashes" ]; then
  echo "fuzz.sh: $target FOUND A PROBLEM (libFuzzer exit $rc); artifacts in $art:" >&2
  echo "$crashes" >&2
  grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -20 >&2
  echo "full log: $log" >&2
  exit 1
fi
echo "fuzz.sh: $target: no crash (log: $log)"
