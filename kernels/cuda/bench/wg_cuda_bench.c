/* wg_cuda_bench — GPU kernel benchmark: mat-vec bandwidth by weight type and
 * batch, cuBLAS throughput at prefill sizes, paged decode attention bandwidth.
 *
 * Weights rotate over enough copies (> 2x a 50 MB L2) that every timed call
 * reads them from HBM, as decode does. Usage: wg_cuda_bench [device]. Prints
 * one line per case; exits non-zero without a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../ref/wg_ref.h"
#include "../wg_cuda.h"

#define CHECK(call)                                                                   \
    do {                                                                              \
        if ((call) != WG_OK) {                                                        \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, wg_errmsg()); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void s_fill_bytes(uint8_t *p, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

/* Random blocks are fine for timing, but keep F16/BF16 scales finite and small:
 * quantize a noise row for the first row and repeat it. */
static void *s_make_weights(wg_type_t t, int64_t N, int64_t K) {
    const size_t rb = wg_row_size(t, K);
    uint8_t *w = malloc(rb * (size_t)N);
    float *x = malloc((size_t)K * sizeof(float));
    uint8_t *noise = malloc((size_t)K * 4);
    s_fill_bytes(noise, (size_t)K * 4, 7);
    for (int64_t i = 0; i < K; i++) x[i] = ((float)noise[i] - 127.5f) / 64.0f;
    wg_type_traits(t)->from_float(x, w, K);
    for (int64_t r = 1; r < N; r++) memcpy(w + (size_t)r * rb, w, rb);
    free(x);
    free(noise);
    return w;
}

int main(int argc, char **argv) {
    const int dev = argc > 1 ? atoi(argv[1]) : 0;
    if (wg_cuda_device_count() <= dev) {
        fprintf(stderr, "wg_cuda_bench: no CUDA device %d: %s\n", dev, wg_errmsg());
        return 2;
    }
    wg_cuda_t *ctx = wg_cuda_new(dev);
    if (!ctx) {
        fprintf(stderr, "wg_cuda_bench: %s\n", wg_errmsg());
        return 2;
    }
    printf("device %d: %s\n", dev, wg_cuda_device_name(ctx));
    const int64_t N = 14336, K = 4096; /* an 8B-class FFN matrix */
    const wg_type_t types[] = {WG_TYPE_Q4_0, WG_TYPE_Q8_0, WG_TYPE_Q4_K, WG_TYPE_Q5_K, WG_TYPE_Q6_K,
                               WG_TYPE_IQ4_XS, WG_TYPE_MXFP4, WG_TYPE_F16, WG_TYPE_BF16};
    const int64_t Ms[] = {1, 2, 4, 8, 16, 64, 512};
    float *dx = NULL, *dy = NULL;
    CHECK(wg_cuda_malloc(ctx, (size_t)512 * K * sizeof(float), (void **)&dx));
    CHECK(wg_cuda_malloc(ctx, (size_t)512 * N * sizeof(float), (void **)&dy));
    CHECK(wg_cuda_memset(ctx, dx, 0, (size_t)512 * K * sizeof(float)));
    printf("%-8s %5s %10s %10s %10s\n", "type", "M", "us/call", "GB/s(W)", "TFLOP/s");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const wg_type_t t = types[ti];
        const size_t wb = wg_row_size(t, K) * (size_t)N;
        const int copies = (int)((200u << 20) / wb) + 2;
        void *host = s_make_weights(t, N, K);
        void **dw = calloc((size_t)copies, sizeof *dw);
        for (int c = 0; c < copies; c++) {
            CHECK(wg_cuda_malloc(ctx, wb, &dw[c]));
            CHECK(wg_cuda_upload(ctx, dw[c], host, wb));
        }
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            const int64_t M = Ms[mi];
            CHECK(wg_cuda_reserve_scratch(ctx, wg_cuda_matmul_scratch_bytes(t, N, K, M)));
            for (int c = 0; c < copies; c++) CHECK(wg_cuda_matmul(ctx, t, dw[c], N, K, dx, M, dy)); /* warm-up */
            CHECK(wg_cuda_sync(ctx));
            const int iters = M >= 64 ? 20 : 200;
            const double t0 = s_now();
            for (int i = 0; i < iters; i++) CHECK(wg_cuda_matmul(ctx, t, dw[i % copies], N, K, dx, M, dy));
            CHECK(wg_cuda_sync(ctx));
            const double dt = (s_now() - t0) / iters;
            printf("%-8s %5lld %10.1f %10.1f %10.2f\n", wg_type_name(t), (long long)M, dt * 1e6, wb / dt / 1e9,
                   2.0 * N * K * M / dt / 1e12);
        }
        for (int c = 0; c < copies; c++) wg_cuda_free(ctx, dw[c]);
        free(dw);
        free(host);
    }
    /* Paged decode attention: B sequences of L positions, 32 q heads, 8 kv heads, d 128. */
    {
        const int32_t B = 32, L = 4096, H = 32, HKV = 8, D = 128, bt = 16, nl = 1;
        const int32_t mb = L / bt, kd = HKV * D;
        const size_t pool_bytes = (size_t)B * mb * bt * 2 * kd * sizeof(float);
        float *pool = NULL, *q = NULL, *out = NULL;
        int32_t *table = NULL, *seq = NULL, *pos = NULL;
        CHECK(wg_cuda_malloc(ctx, pool_bytes, (void **)&pool));
        CHECK(wg_cuda_memset(ctx, pool, 0, pool_bytes));
        int32_t *ht = malloc((size_t)B * mb * sizeof(int32_t)), hs[32], hp[32];
        for (int32_t i = 0; i < B * mb; i++) ht[i] = i;
        for (int32_t i = 0; i < B; i++) {
            hs[i] = i;
            hp[i] = L - 1;
        }
        CHECK(wg_cuda_malloc(ctx, (size_t)B * mb * sizeof(int32_t), (void **)&table));
        CHECK(wg_cuda_upload(ctx, table, ht, (size_t)B * mb * sizeof(int32_t)));
        CHECK(wg_cuda_malloc(ctx, sizeof hs, (void **)&seq));
        CHECK(wg_cuda_upload(ctx, seq, hs, sizeof hs));
        CHECK(wg_cuda_malloc(ctx, sizeof hp, (void **)&pos));
        CHECK(wg_cuda_upload(ctx, pos, hp, sizeof hp));
        CHECK(wg_cuda_malloc(ctx, (size_t)B * H * D * sizeof(float), (void **)&q));
        CHECK(wg_cuda_memset(ctx, q, 0, (size_t)B * H * D * sizeof(float)));
        CHECK(wg_cuda_malloc(ctx, (size_t)B * H * D * sizeof(float), (void **)&out));
        wg_cuda_kv_t kv = {pool, nl, kd, kd, bt, table, mb};
        wg_cuda_attn_t a = {0, B, seq, pos, q, (int64_t)H * D, out, H, HKV, D, D, 0.088f, 0, 0.0f, NULL};
        CHECK(wg_cuda_attention_decode(ctx, &kv, &a));
        CHECK(wg_cuda_sync(ctx));
        const int iters = 20;
        const double t0 = s_now();
        for (int i = 0; i < iters; i++) CHECK(wg_cuda_attention_decode(ctx, &kv, &a));
        CHECK(wg_cuda_sync(ctx));
        const double dt = (s_now() - t0) / iters;
        printf("attn decode B=%d L=%d H=%d/%d D=%d: %.1f us, %.1f GB/s of K/V (each kv head read by %d q heads)\n",
               B, L, H, HKV, D, dt * 1e6, pool_bytes / dt / 1e9, H / HKV);
        wg_cuda_free(ctx, pool);
        wg_cuda_free(ctx, table);
        wg_cuda_free(ctx, seq);
        wg_cuda_free(ctx, pos);
        wg_cuda_free(ctx, q);
        wg_cuda_free(ctx, out);
        free(ht);
    }
    wg_cuda_free(ctx, dx);
    wg_cuda_free(ctx, dy);
    wg_cuda_destroy(&ctx);
    return 0;
}
