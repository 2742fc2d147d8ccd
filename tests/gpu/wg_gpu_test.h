/* wg_gpu_test — helpers for the GPU suites: probe the device inside a test
 * (never in Criterion's parent, which forks per test), skip with the reason
 * when there is none, and move arrays to and from the device. */
#ifndef WG_GPU_TEST_H
#define WG_GPU_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cuda/wg_cuda.h"
#include "wg_test.h"

/* A context on device 0, or skip the test: no GPU is not a failure (CI has
 * CUDA but no GPU). Must be the first statement that touches CUDA. */
#define WG_GPU_CTX(var)                                                                       \
    wg_cuda_t *var = NULL;                                                                    \
    do {                                                                                      \
        if (wg_cuda_device_count() <= 0) cr_skip_test("no CUDA GPU: %s", wg_errmsg());       \
        var = wg_cuda_new(0);                                                                 \
        cr_assert(var, "wg_cuda_new(0): %s", wg_errmsg());                                    \
    } while (0)

#define WG_GPU_OK(call) cr_assert_eq((call), WG_OK, "%s: %s", #call, wg_errmsg())

/* Device copy of host[0..bytes). */
static inline void *wg_gpu_put(wg_cuda_t *ctx, const void *host, size_t bytes) {
    void *d = NULL;
    WG_GPU_OK(wg_cuda_malloc(ctx, bytes, &d));
    WG_GPU_OK(wg_cuda_upload(ctx, d, host, bytes));
    return d;
}

static inline void *wg_gpu_alloc(wg_cuda_t *ctx, size_t bytes) {
    void *d = NULL;
    WG_GPU_OK(wg_cuda_malloc(ctx, bytes, &d));
    WG_GPU_OK(wg_cuda_memset(ctx, d, 0, bytes));
    return d;
}

/* Synchronise (surfacing kernel faults) and copy back. */
static inline void wg_gpu_get(wg_cuda_t *ctx, void *host, const void *dev, size_t bytes) {
    WG_GPU_OK(wg_cuda_sync(ctx));
    WG_GPU_OK(wg_cuda_download(ctx, host, dev, bytes));
}

/* Normalised mean squared error sum((a-b)^2) / sum(b^2) (b the reference). */
static inline double wg_nmse(const float *a, const float *b, int64_t n) {
    double e = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        e += d * d;
        r += (double)b[i] * b[i];
    }
    return r > 0 ? e / r : e;
}

/* Deterministic pseudo-normal fill (sum of 4 uniforms) with scale. */
static inline void wg_fill(float *x, int64_t n, uint32_t seed, float scale) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; i++) {
        float acc = 0;
        for (int j = 0; j < 4; j++) {
            s = s * 1664525u + 1013904223u;
            acc += (float)(s >> 8) / 16777216.0f - 0.5f;
        }
        x[i] = acc * 1.7f * scale;
    }
}

#endif
