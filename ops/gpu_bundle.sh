#!/usr/bin/env bash
# Bundle a CUDA build for a GPU machine that has the CUDA runtime and cuBLAS
# but none of our other libraries: copies the named executables (stripped)
# and every shared library they need, except glibc and CUDA's own, into
# DEST/bin and DEST/lib. Corpus files named with --corpus go to DEST/corpus.
#
#   ops/gpu_bundle.sh BUILD DEST [--corpus FILE...] EXE...
#
# On the GPU machine: LD_LIBRARY_PATH=DEST/lib:/usr/local/cuda/lib64 DEST/bin/EXE
# Libraries every current distribution ships (C++ runtime, zlib, OpenSSL 3)
# are left out too, to keep the bundle small; GPU_BUNDLE_ALL=1 keeps them.
set -euo pipefail
build=${1:?usage: gpu_bundle.sh BUILD DEST [--corpus FILE...] EXE...}
dest=${2:?usage: gpu_bundle.sh BUILD DEST [--corpus FILE...] EXE...}
shift 2
mkdir -p "$dest/bin" "$dest/lib" "$dest/corpus"
exes=()
while [ $# -gt 0 ]; do
    if [ "$1" = --corpus ]; then
        shift
        while [ $# -gt 0 ] && [ "$1" != --exe ]; do
            rel=${1#../shared/conformance/}
            mkdir -p "$dest/corpus/$(dirname "$rel")"
            cp -r "$1" "$dest/corpus/$rel"
            shift
        done
        [ $# -gt 0 ] && shift
    else
        exes+=("$1")
        shift
    fi
done
for e in "${exes[@]}"; do
    src=$(find "$build" -type f -name "$(basename "$e")" -perm -u+x | head -1)
    [ -n "$src" ] || { echo "gpu_bundle: $e not found under $build" >&2; exit 1; }
    strip -o "$dest/bin/$(basename "$e")" "$src"
    ldd "$src" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
        case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*|ld-linux*|libcuda*|libcublas*|libcudart*) ;;
        libstdc++.so*|libgcc_s.so*|libz.so*|libcrypto.so.3|libssl.so.3) [ -n "${GPU_BUNDLE_ALL:-}" ] && cp -L -n "$lib" "$dest/lib/" ;;
        *) cp -L -n "$lib" "$dest/lib/" ;;
        esac
    done
done
du -sh "$dest"
