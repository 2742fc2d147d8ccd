/* bench_membw — STREAM-style read bandwidth: each pool thread sums its slice
 * of a buffer much larger than the last-level cache with 4 independent
 * 256-bit accumulators (AVX2 when present), so the loop is bound by DRAM,
 * not by the adds. Used as the roofline of `waggle bench engine --single`. */
#include "bench_util.h"
#include "bench_membw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/cpu/wg_cpu.h"

typedef struct {
    const uint8_t *buf;  /* buffer to read */
    size_t bytes;        /* its size */
    uint64_t sums[64];   /* per-thread checksum, so the reads are not elided */
} s_rd_t;

#if defined(__x86_64__)
__attribute__((target("avx2"))) static uint64_t s_read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, a0);
    return t[0] + t[1] + t[2] + t[3];
}
#endif

static uint64_t s_read_scalar(const uint8_t *p, size_t n) {
    const uint64_t *q = (const uint64_t *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= n / 8; i += 4) {
        a += q[i];
        b += q[i + 1];
        c += q[i + 2];
        d += q[i + 3];
    }
    return a + b + c + d;
}

static void s_read_job(void *arg, int ith, int nth) {
    s_rd_t *r = arg;
    const size_t chunk = r->bytes / (size_t)nth / 128 * 128;
    const uint8_t *p = r->buf + chunk * (size_t)ith;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        r->sums[ith & 63] += s_read_avx2(p, chunk);
        return;
    }
#endif
    r->sums[ith & 63] += s_read_scalar(p, chunk);
}

double wg_bench_read_bw_buf(const void *buf, size_t bytes, wg_pool_t *pool, int reps, double *best) {
    *best = 0;
    const int nth = wg_pool_size(pool);
    bytes = bytes / 4096 * 4096;
    if (!buf || bytes == 0) return 0;
    s_rd_t r = {.buf = buf, .bytes = bytes};
    double t[64];
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    wg_pool_run(pool, s_read_job, &r); /* warm-up */
    for (int i = 0; i < reps; i++) {
        const double t0 = wg_bench_now();
        wg_pool_run(pool, s_read_job, &r);
        t[i] = wg_bench_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, wg_bench_cmp_double);
    const double read = (double)(bytes / (size_t)nth / 128 * 128 * (size_t)nth);
    const double med = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    *best = read / t[0] / 1e9;
    return read / med / 1e9;
}

double wg_bench_read_bw(size_t bytes, int nth, int reps, double *best) {
    *best = 0;
    bytes = bytes / 4096 * 4096;
    if (bytes == 0 || nth < 1) return 0;
    uint8_t *buf = aligned_alloc(4096, bytes);
    wg_pool_t *pool = wg_pool_new(nth);
    if (!buf || !pool) {
        free(buf);
        wg_pool_destroy(&pool);
        return 0;
    }
    memset(buf, 1, bytes); /* fault the pages in before timing */
    const double med = wg_bench_read_bw_buf(buf, bytes, pool, reps, best);
    wg_pool_destroy(&pool);
    free(buf);
    return med;
}
