/* bench_kernels — `waggle bench kernels`: wg_k_matmul_cpu per weight type at
 * M=1 (decode: bound by weight bytes) and M=32 (prefill-like: bound by
 * arithmetic), with 1..n threads, against a roofline measured in the same
 * run: a STREAM-style read loop over a buffer far larger than the caches.
 *
 * The weights are cycled through enough copies to fill --mem-mb so each run
 * reads them from DRAM, not from a warm last-level cache (the figure a real
 * model, gigabytes of weights, sees). Times are medians after warm-up.
 *
 * Each point also reads its own weight copies with the same threads just
 * before and after its timed runs (roofline_frac_local): on a shared
 * machine the bandwidth moves within seconds, and this ratio compares the
 * product with the memory it actually read, at the same time.
 *
 * The compute roofline is measured too: a loop of independent 8-bit dot
 * instructions (vpdpbusd on 256-bit and, where the CPU has it, 512-bit
 * registers; maddubs+madd on AVX2-only CPUs) on every thread, the integer
 * peak the quantized kernels' inner loops run on. Each M=32 result reports
 * its GFLOP/s as a fraction of that peak (compute_frac). */
#include "bench_util.h"
#include "bench_kernels.h"
#include "bench_membw.h"

#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/wg_status.h"
#include "kernels/cpu/wg_cpu.h"
#include "kernels/ref/wg_ref.h"

#define S_MAX_LIST 32

typedef struct {
    int json;                        /* --json */
    int threads[S_MAX_LIST];         /* --threads 1,2 */
    int n_threads;                   /* entries in threads */
    int ms[S_MAX_LIST];              /* --m 1,32 */
    int n_ms;                        /* entries in ms */
    wg_type_t types[S_MAX_LIST];     /* --types Q4_K,Q6_K */
    int n_types;                     /* entries in types */
    int64_t K, N;                    /* --k, --n */
    int reps;                        /* --reps timed runs per point */
    size_t mem_bytes;                /* --mem-mb buffer for bandwidth and weight copies */
    double peak[S_MAX_LIST];         /* measured 256-bit int8 GOPS per thread count (best) */
    double peak512[S_MAX_LIST];      /* same with 512-bit registers (0 if unavailable) */
} s_opts;

typedef struct {
    const char *type;  /* type name */
    int M, threads;    /* shape point */
    double ms;         /* median milliseconds per product */
    double ms_min;     /* fastest run: least disturbed by other processes */
    double wgbs;       /* weight bytes / time, GB/s */
    double gflops;     /* 2*M*N*K / time */
    double frac;       /* wgbs / measured read bandwidth at this thread count */
    double bw_local;   /* read bandwidth over the weight copies themselves, measured just
                        * before and just after this point (mean of the two medians) */
    double frac_local; /* wgbs / bw_local: the roofline at the same time and pages */
    double cfrac;      /* gflops / measured 256-bit int8 peak at this thread count */
    double cfrac512;   /* gflops / measured 512-bit int8 peak (0 without AVX-512 VNNI) */
} s_result;

static double s_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, wg_bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int s_parse_ints(const char *s, int *out, int max) {
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 4096) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return -1;
    }
    return n;
}

/* ---- int8 compute peak ---- */

#define S_PEAK_ACC 12        /* independent accumulators: covers latency x throughput */
#define S_PEAK_ITERS 200000  /* loop trips per thread per run */

typedef struct {
    int width;            /* 256 or 512 */
    uint64_t sums[64];    /* per-thread result, so the loop is not elided */
} s_pk;

/* Twelve named accumulators (an array would be kept in memory at -O2). */
#define S_PEAK_BODY(T, OP, INIT, X)                                                      \
    T a0 = INIT(0), a1 = INIT(1), a2 = INIT(2), a3 = INIT(3), a4 = INIT(4), a5 = INIT(5), \
      a6 = INIT(6), a7 = INIT(7), a8 = INIT(8), a9 = INIT(9), a10 = INIT(10),             \
      a11 = INIT(11);                                                                    \
    for (int it = 0; it < S_PEAK_ITERS; it++) {                                          \
        a0 = OP(a0); a1 = OP(a1); a2 = OP(a2); a3 = OP(a3); a4 = OP(a4); a5 = OP(a5);    \
        a6 = OP(a6); a7 = OP(a7); a8 = OP(a8); a9 = OP(a9); a10 = OP(a10); a11 = OP(a11); \
        __asm__ volatile("" : "+" X(a0), "+" X(a1), "+" X(a2), "+" X(a3));                \
    }

__attribute__((target("avx2,avx512f,avx512vl,avx512vnni"))) static uint64_t s_peak_vnni256(void) {
    const __m256i x = _mm256_set1_epi8(3), y = _mm256_set1_epi8(-5);
#define S_OP(a) _mm256_dpbusd_epi32(a, x, y)
    S_PEAK_BODY(__m256i, S_OP, _mm256_set1_epi32, "x")
#undef S_OP
    const __m256i s = _mm256_add_epi32(
        _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                         _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7))),
        _mm256_add_epi32(_mm256_add_epi32(a8, a9), _mm256_add_epi32(a10, a11)));
    return (uint64_t)(uint32_t)_mm256_extract_epi32(s, 0);
}

__attribute__((target("avx2,avx512f,avx512vl,avx512vnni"))) static uint64_t s_peak_vnni512(void) {
    const __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(-5);
#define S_OP(a) _mm512_dpbusd_epi32(a, x, y)
    S_PEAK_BODY(__m512i, S_OP, _mm512_set1_epi32, "v")
#undef S_OP
    const __m512i s = _mm512_add_epi32(
        _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                         _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7))),
        _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)));
    return (uint64_t)(uint32_t)_mm512_reduce_add_epi32(s);
}

/* AVX2 without VNNI: maddubs + madd + add per 32 byte products. */
__attribute__((target("avx2"))) static uint64_t s_peak_avx2(void) {
    const __m256i x = _mm256_set1_epi8(3), y = _mm256_set1_epi8(-5), one = _mm256_set1_epi16(1);
#define S_OP(a) _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), one))
    S_PEAK_BODY(__m256i, S_OP, _mm256_set1_epi32, "x")
#undef S_OP
    const __m256i s = _mm256_add_epi32(
        _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                         _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7))),
        _mm256_add_epi32(_mm256_add_epi32(a8, a9), _mm256_add_epi32(a10, a11)));
    return (uint64_t)(uint32_t)_mm256_extract_epi32(s, 0);
}

static int s_has_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
}

static void s_peak_job(void *arg, int ith, int nth) {
    (void)nth;
    s_pk *p = arg;
    uint64_t v = 0;
    if (p->width == 512) v = s_peak_vnni512();
    else if (s_has_vnni()) v = s_peak_vnni256();
    else if (__builtin_cpu_supports("avx2")) v = s_peak_avx2();
    p->sums[ith & 63] += v;
}

/* Best-of-reps int8 GOPS (2 ops per byte product) with nth threads, at the
 * given register width; 0 when the CPU cannot run it. *med gets the median. */
static double s_int8_peak(int nth, int width, int reps, double *med) {
    *med = 0.0;
    if (width == 512 && !s_has_vnni()) return 0.0;
    if (width == 256 && !s_has_vnni() && !__builtin_cpu_supports("avx2")) return 0.0;
    wg_pool_t *pool = wg_pool_new(nth);
    if (!pool) return 0.0;
    s_pk p = {.width = width};
    double t[64];
    if (reps > 64) reps = 64;
    wg_pool_run(pool, s_peak_job, &p); /* warm-up (and clock ramp) */
    for (int i = 0; i < reps; i++) {
        const double t0 = wg_bench_now();
        wg_pool_run(pool, s_peak_job, &p);
        t[i] = wg_bench_now() - t0;
    }
    wg_pool_destroy(&pool);
    const double ops = 2.0 * (width / 8) * (double)S_PEAK_ACC * S_PEAK_ITERS * nth;
    *med = ops / s_median(t, reps) / 1e9; /* sorts t */
    return ops / t[0] / 1e9;
}

/* ---- matmul ---- */

static float s_randf(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((double)(*s >> 11) / (double)(1ull << 52) - 1.0);
}

static int s_bench_type(const s_opts *o, wg_type_t t, const double *bw, s_result *res,
                        int *n_res) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    const int64_t K = o->K, N = o->N;
    if (!tr || !tr->supported || !tr->from_float || K % tr->blck_size != 0) {
        fprintf(stderr, "waggle bench kernels: skipping %s (no kernel or K=%ld not a multiple "
                        "of its block)\n", tr ? tr->name : "?", (long)K);
        return 0;
    }
    const size_t rs = wg_row_size(t, K), wbytes = rs * (size_t)N;
    size_t copies = o->mem_bytes / wbytes + 1;
    if (copies < 2) copies = 2;
    uint8_t *W = malloc(wbytes * copies);
    float *src = malloc((size_t)K * sizeof(float));
    int64_t maxM = 1;
    for (int i = 0; i < o->n_ms; i++) maxM = o->ms[i] > maxM ? o->ms[i] : maxM;
    float *X = malloc((size_t)(maxM * K) * sizeof(float));
    float *Y = malloc((size_t)(maxM * N) * sizeof(float));
    if (!W || !src || !X || !Y) {
        fprintf(stderr, "waggle bench kernels: out of memory for %zu copies of %s\n", copies,
                tr->name);
        free(W), free(src), free(X), free(Y);
        return -1;
    }
    /* Quantize 64 distinct rows and tile them: the content does not change
     * the speed, and the reference quantizers are slow on 16M values. */
    uint64_t seed = 0x1234567ull + (uint64_t)t;
    const int64_t distinct = N < 64 ? N : 64;
    for (int64_t n = 0; n < distinct; n++) {
        for (int64_t k = 0; k < K; k++) src[k] = s_randf(&seed);
        tr->from_float(src, W + (size_t)n * rs, K);
    }
    for (int64_t n = distinct; n < N; n++) memcpy(W + (size_t)n * rs, W + (size_t)(n % distinct) * rs, rs);
    for (size_t c = 1; c < copies; c++) memcpy(W + c * wbytes, W, wbytes);
    for (int64_t i = 0; i < maxM * K; i++) X[i] = s_randf(&seed);

    size_t cur = 0;
    for (int mi = 0; mi < o->n_ms; mi++) {
        const int M = o->ms[mi];
        for (int ti = 0; ti < o->n_threads; ti++) {
            wg_pool_t *pool = wg_pool_new(o->threads[ti]);
            if (!pool) {
                fprintf(stderr, "waggle bench kernels: %s\n", wg_errmsg());
                break;
            }
            double times[256];
            int reps = o->reps > 256 ? 256 : o->reps;
            wg_status st = WG_OK;
            /* On a shared machine the bandwidth drifts within seconds: read
             * the copies just before and after the timed runs too. */
            double bb, bw0 = wg_bench_read_bw_buf(W, wbytes * copies, pool, 3, &bb);
            for (int r = -2; r < reps && st == WG_OK; r++) {
                const uint8_t *w = W + (cur++ % copies) * wbytes;
                const double t0 = wg_bench_now();
                st = wg_k_matmul_cpu(pool, t, w, N, K, X, M, Y);
                if (r >= 0) times[r] = wg_bench_now() - t0;
            }
            const double bw1 = wg_bench_read_bw_buf(W, wbytes * copies, pool, 3, &bb);
            wg_pool_destroy(&pool);
            if (st != WG_OK) {
                fprintf(stderr, "waggle bench kernels: %s: %s\n", tr->name, wg_errmsg());
                break;
            }
            const double sec = s_median(times, reps); /* sorts times */
            s_result *x = &res[(*n_res)++];
            x->type = tr->name;
            x->M = M;
            x->threads = o->threads[ti];
            x->ms = sec * 1e3;
            x->ms_min = times[0] * 1e3;
            x->wgbs = (double)wbytes / sec / 1e9;
            x->gflops = 2.0 * M * (double)N * (double)K / sec / 1e9;
            x->frac = bw[ti] > 0 ? x->wgbs / bw[ti] : 0.0;
            x->bw_local = 0.5 * (bw0 + bw1);
            x->frac_local = x->bw_local > 0 ? x->wgbs / x->bw_local : 0.0;
            x->cfrac = o->peak[ti] > 0 ? x->gflops / o->peak[ti] : 0.0;
            x->cfrac512 = o->peak512[ti] > 0 ? x->gflops / o->peak512[ti] : 0.0;
            if (!o->json)
                printf("%-7s M=%-3d threads=%d  %9.3f ms (min %.3f)  %7.2f GB/s  %8.2f GFLOP/s  %5.1f%% of "
                       "start read bw  %5.1f%% of local read bw (%.1f GB/s)  %5.1f%% of int8 peak\n",
                       x->type, x->M, x->threads, x->ms, x->ms_min, x->wgbs, x->gflops, 100.0 * x->frac,
                       100.0 * x->frac_local, x->bw_local, 100.0 * x->cfrac);
            fflush(stdout);
        }
    }
    free(W), free(src), free(X), free(Y);
    return 0;
}

/* Median read bandwidth per thread count; bw[i] keeps the larger of its old
 * value and the new measurement. */
static int s_measure_bw(const s_opts *o, double *bw, double *bw_best) {
    for (int ti = 0; ti < o->n_threads; ti++) {
        double best;
        const double v = wg_bench_read_bw(o->mem_bytes, o->threads[ti], 9, &best);
        if (v <= 0) {
            fprintf(stderr, "waggle bench kernels: cannot allocate %zu MiB\n", o->mem_bytes >> 20);
            return -1;
        }
        if (!o->json)
            printf("memory read bandwidth, %d thread%s: median %.2f GB/s, best %.2f GB/s (%zu "
                   "MiB buffer)\n",
                   o->threads[ti], o->threads[ti] > 1 ? "s" : "", v, best, o->mem_bytes >> 20);
        if (v > bw[ti]) bw[ti] = v;
        if (best > bw_best[ti]) bw_best[ti] = best;
    }
    return 0;
}

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle bench kernels [--json] [--threads 1,2] [--types Q4_K,Q6_K,...]\n"
            "                            [--m 1,32] [--k 4096] [--n 4096] [--reps 15]\n"
            "                            [--mem-mb 1024]\n"
            "Times wg_k_matmul_cpu (Y = X @ W^T, W N x K of each type) and reports weight\n"
            "GB/s, GFLOP/s, the fraction of the measured memory read bandwidth and the\n"
            "fraction of the measured int8 dot-product peak (compute roofline).\n");
}

int wg_bench_kernels(int argc, char **argv) {
    s_opts o = {.threads = {1, 2}, .n_threads = 2, .ms = {1, 32}, .n_ms = 2, .K = 4096,
                .N = 4096, .reps = 15, .mem_bytes = (size_t)1024 << 20};
    static const wg_type_t defaults[] = {
        WG_TYPE_Q4_0, WG_TYPE_Q4_1, WG_TYPE_Q5_0, WG_TYPE_Q5_1, WG_TYPE_Q8_0, WG_TYPE_Q2_K,
        WG_TYPE_Q3_K, WG_TYPE_Q4_K, WG_TYPE_Q5_K, WG_TYPE_Q6_K, WG_TYPE_IQ4_NL,
        WG_TYPE_IQ4_XS, WG_TYPE_MXFP4, WG_TYPE_F16, WG_TYPE_BF16, WG_TYPE_F32};
    o.n_types = (int)(sizeof defaults / sizeof defaults[0]);
    memcpy(o.types, defaults, sizeof defaults);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            s_usage(stdout);
            return 0;
        } else if (v && strcmp(a, "--threads") == 0) {
            if ((o.n_threads = s_parse_ints(v, o.threads, S_MAX_LIST)) < 1) goto bad;
            i++;
        } else if (v && strcmp(a, "--m") == 0) {
            if ((o.n_ms = s_parse_ints(v, o.ms, S_MAX_LIST)) < 1) goto bad;
            i++;
        } else if (v && strcmp(a, "--types") == 0) {
            char buf[512];
            snprintf(buf, sizeof buf, "%s", v);
            o.n_types = 0;
            for (char *sv, *tok = strtok_r(buf, ",", &sv); tok; tok = strtok_r(NULL, ",", &sv)) {
                wg_type_t t = wg_type_from_name(tok);
                if (t == WG_TYPE_COUNT || o.n_types == S_MAX_LIST) {
                    fprintf(stderr, "waggle bench kernels: unknown type '%s'\n", tok);
                    return 2;
                }
                o.types[o.n_types++] = t;
            }
            i++;
        } else if (v && (strcmp(a, "--k") == 0 || strcmp(a, "--n") == 0 ||
                         strcmp(a, "--reps") == 0 || strcmp(a, "--mem-mb") == 0)) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 1 || x > (1L << 20)) goto bad;
            if (a[2] == 'k') o.K = x;
            else if (a[2] == 'n') o.N = x;
            else if (a[2] == 'r') o.reps = (int)x;
            else o.mem_bytes = (size_t)x << 20;
            i++;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "waggle bench kernels: bad argument '%s'%s%s\n", a, v ? " " : "",
                v ? v : "");
        s_usage(stderr);
        return 2;
    }

    /* Roofline first, with the buffer freed before the weights are made;
     * measured again at the end and the larger median kept, since other
     * processes on a shared machine can depress either. */
    double bw[S_MAX_LIST] = {0}, bw_best[S_MAX_LIST] = {0};
    if (s_measure_bw(&o, bw, bw_best) != 0) return 1;
    for (int ti = 0; ti < o.n_threads; ti++) {
        double m256, m512;
        o.peak[ti] = s_int8_peak(o.threads[ti], 256, 7, &m256);
        o.peak512[ti] = s_int8_peak(o.threads[ti], 512, 7, &m512);
        if (!o.json)
            printf("int8 peak, %d thread%s: 256-bit best %.1f GOPS (median %.1f), 512-bit best %.1f "
                   "GOPS (median %.1f)\n",
                   o.threads[ti], o.threads[ti] > 1 ? "s" : "", o.peak[ti], m256, o.peak512[ti], m512);
    }
    if (!o.json) printf("simd=%s K=%ld N=%ld\n", wg_cpu_simd_name(), (long)o.K, (long)o.N);

    s_result *res = calloc((size_t)(o.n_types * o.n_ms * o.n_threads) + 1, sizeof *res);
    if (!res) return 1;
    int n_res = 0;
    for (int i = 0; i < o.n_types; i++)
        if (s_bench_type(&o, o.types[i], bw, res, &n_res) != 0) {
            free(res);
            return 1;
        }

    if (s_measure_bw(&o, bw, bw_best) != 0) {
        free(res);
        return 1;
    }
    for (int i = 0; i < n_res; i++) /* against the final roofline */
        for (int ti = 0; ti < o.n_threads; ti++)
            if (o.threads[ti] == res[i].threads && bw[ti] > 0) res[i].frac = res[i].wgbs / bw[ti];
    if (o.json) {
        printf("{\"machine\":{\"simd\":\"%s\",\"read_bw_gbs\":{", wg_cpu_simd_name());
        for (int ti = 0; ti < o.n_threads; ti++)
            printf("%s\"%d\":%.3f", ti ? "," : "", o.threads[ti], bw[ti]);
        printf("},\"read_bw_best_gbs\":{");
        for (int ti = 0; ti < o.n_threads; ti++)
            printf("%s\"%d\":%.3f", ti ? "," : "", o.threads[ti], bw_best[ti]);
        printf("},\"int8_peak_gops\":{");
        for (int ti = 0; ti < o.n_threads; ti++)
            printf("%s\"%d\":%.1f", ti ? "," : "", o.threads[ti], o.peak[ti]);
        printf("},\"int8_peak_512_gops\":{");
        for (int ti = 0; ti < o.n_threads; ti++)
            printf("%s\"%d\":%.1f", ti ? "," : "", o.threads[ti], o.peak512[ti]);
        printf("},\"mem_mb\":%zu},\"K\":%ld,\"N\":%ld,\"results\":[", o.mem_bytes >> 20,
               (long)o.K, (long)o.N);
        for (int i = 0; i < n_res; i++)
            printf("%s\n{\"type\":\"%s\",\"M\":%d,\"threads\":%d,\"ms\":%.4f,\"ms_min\":%.4f,\"weight_gbs\":%.3f,"
                   "\"gflops\":%.3f,\"roofline_frac\":%.4f,\"read_bw_local_gbs\":%.3f,"
                   "\"roofline_frac_local\":%.4f,\"compute_frac\":%.4f,\"compute_frac_512\":%.4f}",
                   i ? "," : "", res[i].type, res[i].M, res[i].threads, res[i].ms, res[i].ms_min, res[i].wgbs,
                   res[i].gflops, res[i].frac, res[i].bw_local, res[i].frac_local, res[i].cfrac, res[i].cfrac512);
        printf("]}\n");
    }
    free(res);
    return 0;
}
