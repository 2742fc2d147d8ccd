#!/bin/sh
# Train the demo model end to end (see docs/DEMO_MODEL.md). Resumable: re-running
# continues from out/kjv-train/ckpt.pt. Debian's python3-torch links the reference BLAS
# (~1 GFLOP/s); the OpenBLAS from libopenblas0-pthread is put in front of it when present
# (installed, or unpacked from the apt cache into $OPENBLAS_DIR).
set -e
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
W=${WORK:-out/kjv-train}
for d in "$OPENBLAS_DIR" /usr/lib/x86_64-linux-gnu/openblas-pthread; do
    if [ -n "$d" ] && [ -e "$d/libblas.so.3" ]; then
        export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        break
    fi
done
export OMP_NUM_THREADS=${THREADS:-1} OPENBLAS_NUM_THREADS=${THREADS:-1}
[ -f "$W/train.json" ] || $PY tools/train/train_kjv.py --work "$W" data
[ -f "$W/tokenizer.json" ] || $PY tools/train/train_kjv.py --work "$W" tokenizer --vocab 4096
$PY tools/train/train_kjv.py --work "$W" train --dim 192 --layers 6 --heads 6 --kv-heads 2 \
    --ffn 512 --ctx 256 --batch 6 --lr 1.5e-3 --warmup 30 --time-budget ${BUDGET:-1380} \
    --log-every 10 --eval-every 50 --ckpt-every 25 --threads ${THREADS:-1}
