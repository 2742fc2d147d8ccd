#!/usr/bin/env bash
# Run on a GPU machine from the repository root, over a bundle made by
# ops/gpu_bundle.sh in ${GPU_DIR:-.gpu} (see docs/CUDA.md "Running on a GPU"):
# the GPU suites, the kernel benchmark, and the engine benchmark on generated
# ~1B-parameter models. Logs and JSON go to ${OUT:-.gpu/out}.
#   ops/gpu_check.sh [tests] [kbench] [ebench] [cli]
set -uo pipefail
gd=${GPU_DIR:-.gpu}
out=${OUT:-$gd/out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/$gd/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export WAGGLE_CONFORMANCE=$PWD/$gd/corpus
bin=$gd/bin
what=${*:-tests kbench ebench}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv | tee "$out/gpu.txt"
for w in $what; do
    case $w in
    tests)
        for t in emu kernels leak engine; do
            # one test at a time: the leak checks read device-wide free memory
            timeout 300 $bin/gpu_test_gpu_$t -j1 --verbose=0 2>&1 | tee "$out/test_$t.log" | grep -E "FAIL|Synthesis|Assert|max_abs" | head -60
        done ;;
    kbench)
        timeout 200 $bin/wg_cuda_bench > "$out/kbench.txt" 2>&1; tail -40 "$out/kbench.txt" ;;
    models)
        for ty in Q4_K_M F16; do
            [ -f /tmp/m1b-$ty.gguf ] || $bin/waggle mkmodel --params 1B --type $ty -o /tmp/m1b-$ty.gguf 2>&1 | tail -1 &
        done
        wait ;;
    ebench)
        for ty in Q4_K_M F16; do
            $bin/waggle bench -m /tmp/m1b-$ty.gguf --device cuda:0 --single --prompt-len 128 --gen-len 128 --reps 3 --json \
                > "$out/single-$ty.json" 2> "$out/single-$ty.err"; tail -3 "$out/single-$ty.err"
            python3 -c "import json,sys; d=json.load(open('$out/single-$ty.json')); r=d['results'][0]; print('$ty single', r['decode_tok_s'], 'tok/s', 'MBU', round(r['decode_vs_roofline'],3), 'prefill', r['prefill_tok_s'])" 2>&1
            $bin/waggle bench -m /tmp/m1b-$ty.gguf --device cuda:0 --concurrency 1,8,32,64,128 --prompt-len 128 --gen-len 128 --json \
                > "$out/conc-$ty.json" 2> "$out/conc-$ty.err"; tail -3 "$out/conc-$ty.err"
            python3 -c "
import json; d=json.load(open('$out/conc-$ty.json'))
for r in d['results']: print('$ty c=%d decode %.0f tok/s, decode-only steps %.0f tok/s, MBU %.3f, prefill %.0f tok/s' % (r['concurrency'], r['decode_tok_s'], r['decode_only_steps_tok_s'], r['decode_vs_roofline'], r['prefill_tok_s']))
print('gain c64/c1', d.get('decode_step_gain_c64_over_c1'))" 2>&1
        done ;;
    cli)
        $bin/waggle generate -m /tmp/m1b-Q4_K_M.gguf --tokens 1,2,3 -n 16 --temp 0 --device cuda:0 2>&1 | tail -2
        $bin/waggle generate -m /tmp/m1b-Q4_K_M.gguf --tokens 1,2,3 -n 16 --temp 0 --device cpu --threads 16 2>&1 | tail -2 ;;
    esac
done
