#!/usr/bin/env bash
# bench_swap.sh — hot-swap latency of waggle-worker --mem-budget against the
# time to read each model file (page cache cold: posix_fadvise(DONTNEED)
# first; and warm). Real redis-server + waggle-broker + one waggle-worker on
# loopback; the budget holds one model, so every job for another model swaps.
# Swap latency = the worker's load time for that model (registry lookup, one
# round trip, overlapped with the load on a re-load; sha256 check from the
# loader's in-process record or the size+mtime cache; GGUF load, tokenizer,
# scheduler and KV allocation), logged as "model=X loaded ... seconds=S";
# median of ROUNDS. The worker log (BENCH_KEEP_LOG=FILE keeps it) has each
# load's phases at debug level ("model=X load ms: registry ... verify ...").
# Target (issue 6): swap <= 1.5 x warm read.
#
# usage: benchmarks/bench_swap.sh BUILD_DIR [ROUNDS]   (prints one JSON object)
# env:   WAGGLE_CONFORMANCE (corpus root), BENCH_M100 (path of the ~100M model;
#        generated with `waggle mkmodel` when missing)
set -euo pipefail
B=${1:?usage: bench_swap.sh BUILD_DIR [ROUNDS]}
ROUNDS=${2:-3}
C=${WAGGLE_CONFORMANCE:-$(cd "$(dirname "$0")/.." && pwd)/../shared/conformance}
M100=${BENCH_M100:-/tmp/m100.gguf}
T=$(mktemp -d /tmp/bench-swap-XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; [ -n "${BENCH_KEEP_LOG:-}" ] && cp "$T/worker.log" "$BENCH_KEEP_LOG"; rm -rf "$T"; }
trap cleanup EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
[ -f "$M100" ] || "$B/tools/waggle" mkmodel --arch llama --params 100M --type Q8_0 -o "$M100" >/dev/null
declare -A PATHS=([stories260K-f32]=$C/trained/stories260K-f32.gguf [llama-Q8_0]=$C/models/llama/llama-Q8_0.gguf
                  [llama-Q4_K_M]=$C/models/llama/llama-Q4_K_M.gguf [qwen2-f32]=$C/models/qwen2/qwen2-f32.gguf
                  [qwen2-Q8_0]=$C/models/qwen2/qwen2-Q8_0.gguf [gen-100M-Q8_0]=$M100)
NAMES=(stories260K-f32 llama-Q8_0 llama-Q4_K_M qwen2-f32 qwen2-Q8_0 gen-100M-Q8_0)
RP=$(port); FE=$(port); BE=$(port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --dir "$T" >/dev/null 2>&1 & PIDS+=($!)
sleep 0.5
export WAGGLE_REDIS=redis://127.0.0.1:$RP
for n in "${NAMES[@]}"; do "$B/tools/waggle" models add "$n" "${PATHS[$n]}" --quiet >/dev/null; done
"$B/broker/waggle-broker" --frontend tcp://127.0.0.1:$FE --backend tcp://127.0.0.1:$BE --redis "$WAGGLE_REDIS" \
    --heartbeat-ms 250 >"$T/broker.log" 2>&1 & PIDS+=($!)
# budget: the biggest model + its KV, so every switch evicts
BIG=$(stat -c %s "$M100")
"$B/worker/waggle-worker" --broker tcp://127.0.0.1:$BE --redis "$WAGGLE_REDIS" --mem-budget $((BIG + 4*1024*1024)) \
    --kv-budget 1M --max-seqs 4 --heartbeat-ms 250 --id bench --log-level debug >"$T/worker.log" 2>&1 & PIDS+=($!)
sleep 0.5
for r in $(seq "$ROUNDS"); do
  for n in "${NAMES[@]}"; do
    echo "{\"custom_id\":\"$n-$r\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":\"$n\",\"prompt\":\"Once upon a time\",\"max_tokens\":1,\"temperature\":0}}" >"$T/j.jsonl"
    "$B/tools/waggle" submit --broker tcp://127.0.0.1:$FE --input "$T/j.jsonl" --output "$T/o.jsonl" --timeout 120 >/dev/null 2>&1
  done
done
python3 - "$T/worker.log" "$ROUNDS" <<PY
import json, os, re, statistics, sys, time
log, rounds = sys.argv[1], int(sys.argv[2])
paths = {$(for n in "${NAMES[@]}"; do printf '"%s": "%s", ' "$n" "${PATHS[$n]}"; done)}
loads = {}
for line in open(log):
    m = re.search(r"model=(\S+) loaded bytes=(\d+) seconds=([0-9.]+)", line)
    if m: loads.setdefault(m.group(1), []).append(float(m.group(3)))
def read_s(p, cold):
    fd = os.open(p, os.O_RDONLY)
    if cold: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    t0 = time.perf_counter()
    while os.read(fd, 8 << 20): pass
    dt = time.perf_counter() - t0
    os.close(fd)
    return dt
out = {"bench": "swap", "rounds": rounds, "models": []}
for n, p in paths.items():
    cold = min(read_s(p, True) for _ in range(3))
    read_s(p, False)
    warm = min(read_s(p, False) for _ in range(5))
    sw = loads.get(n, [])
    med = statistics.median(sw) if sw else None
    out["models"].append({"name": n, "bytes": os.path.getsize(p), "swaps": len(sw),
                          "swap_s_median": med, "swap_s_min": min(sw) if sw else None,
                          "read_cold_s": cold, "read_warm_s": warm,
                          "swap_over_warm_read": (med / warm) if med and warm > 0 else None,
                          "target_met": bool(med is not None and med <= 1.5 * warm)})
print(json.dumps(out, indent=1))
PY
