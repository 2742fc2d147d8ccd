/* Tests of wg_k_matmul_cpu against the reference kernels, of its batch and
 * thread invariance, and of the fast activation quantizers.
 *
 * Oracle: every activation row quantized with the reference quantizer of the
 * weight type's vec_dot_type, then the reference vec_dot per output element.
 * Integer parts of the SIMD kernels are exact, so the fast results differ
 * from the oracle only by float accumulation order; the tolerance is
 *   |y - y_ref| <= 2e-5 * S + 1e-6,  S = sum_k |w_k| * |x_k|
 * (w dequantized, x the F32 activation): about 300 float ulps of the
 * magnitude that was summed, far below the effect of one wrong quant. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/wg_cpu.h"
#include "kernels/cpu/wg_cpu_impl.h"
#include "kernels/ref/wg_ref.h"
#include "wg_test.h"

#define S_RTOL 2e-5
#define S_ATOL 1e-6

static uint64_t s_rng = 0x9E3779B97F4A7C15ull;
static float s_randf(void) { /* uniform in [-1, 1) */
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float)((double)(s_rng >> 11) / (double)(1ull << 52) - 1.0);
}

static float *s_rand_floats(int64_t n, float scale) {
    float *p = malloc((size_t)n * sizeof *p);
    cr_assert_not_null(p);
    for (int64_t i = 0; i < n; i++) p[i] = scale * s_randf();
    return p;
}

/* N x K weights of type t: random floats through the reference quantizer. */
static void *s_make_weights(wg_type_t t, int64_t N, int64_t K, float **deq) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    cr_assert(tr && tr->from_float, "type %d has no reference quantizer", (int)t);
    const size_t rs = wg_row_size(t, K);
    uint8_t *w = malloc(rs * (size_t)N);
    float *src = s_rand_floats(N * K, 1.0f);
    *deq = malloc((size_t)(N * K) * sizeof(float));
    cr_assert(w && *deq);
    for (int64_t n = 0; n < N; n++) {
        tr->from_float(src + n * K, w + (size_t)n * rs, K);
        tr->to_float(w + (size_t)n * rs, *deq + n * K, K);
    }
    free(src);
    return w;
}

/* The oracle: ref quantizer + ref vec_dot, one element at a time. */
static void s_ref_matmul(wg_type_t t, const void *W, int64_t N, int64_t K, const float *X,
                         int64_t M, float *Y) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    const wg_type_traits_t *vt = wg_type_traits(tr->vec_dot_type);
    const size_t rs = wg_row_size(t, K), xs = wg_row_size(tr->vec_dot_type, K);
    uint8_t *xq = malloc(xs);
    for (int64_t m = 0; m < M; m++) {
        vt->from_float(X + m * K, xq, K);
        for (int64_t n = 0; n < N; n++)
            Y[m * N + n] = tr->vec_dot(K, (const uint8_t *)W + (size_t)n * rs, xq);
    }
    free(xq);
}

static const char *const s_levels[] = {"scalar", "avx2", "avx512"};

/* One type over every shape, both pool sizes and every SIMD level the CPU has. */
static void s_check_type(wg_type_t t, const int64_t *Ks, int nK) {
    static const int64_t Ms[] = {1, 2, 3, 7, 16, 33, 64};
    static const int64_t Ns[] = {1, 3, 17, 100};
    wg_pool_t *pools[2] = {wg_pool_new(1), wg_pool_new(2)};
    cr_assert(pools[0] && pools[1]);
    int n_levels = 0;
    for (int li = 0; li < 3; li++) {
        if (!wg_cpu_force_simd(s_levels[li])) continue;
        n_levels++;
        for (int ki = 0; ki < nK; ki++) {
            const int64_t K = Ks[ki];
            for (int mi = 0; mi < 7; mi++) {
                for (int ni = 0; ni < 4; ni++) {
                    const int64_t M = Ms[mi], N = Ns[ni];
                    if (K >= 4096 && M > 7 && N > 17) continue; /* keep the oracle quick */
                    float *deq;
                    void *W = s_make_weights(t, N, K, &deq);
                    float *X = s_rand_floats(M * K, 2.0f);
                    float *Yr = malloc((size_t)(M * N) * sizeof(float));
                    float *Y = malloc((size_t)(M * N) * sizeof(float));
                    s_ref_matmul(t, W, N, K, X, M, Yr);
                    for (int pi = 0; pi < 2; pi++) {
                        memset(Y, 0xFF, (size_t)(M * N) * sizeof(float));
                        cr_assert_eq(wg_k_matmul_cpu(pools[pi], t, W, N, K, X, M, Y), WG_OK,
                                     "%s", wg_errmsg());
                        for (int64_t m = 0; m < M; m++) {
                            for (int64_t n = 0; n < N; n++) {
                                double S = 0;
                                for (int64_t k = 0; k < K; k++)
                                    S += fabs((double)deq[n * K + k] * X[m * K + k]);
                                const double y = Y[m * N + n], yr = Yr[m * N + n];
                                const double err = fabs(y - yr);
                                if (strcmp(s_levels[li], "scalar") == 0) {
                                    /* Generic path = the oracle itself: bitwise. */
                                    cr_assert(memcmp(&Y[m * N + n], &Yr[m * N + n], 4) == 0,
                                              "%s scalar M=%ld N=%ld K=%ld [%ld,%ld]: %.9g vs %.9g",
                                              wg_type_name(t), (long)M, (long)N, (long)K,
                                              (long)m, (long)n, y, yr);
                                }
                                cr_assert(err <= S_RTOL * S + S_ATOL,
                                          "%s %s threads=%d M=%ld N=%ld K=%ld [%ld,%ld]: %.9g vs "
                                          "ref %.9g (err %.3g, S %.3g)",
                                          wg_type_name(t), s_levels[li], pi + 1, (long)M, (long)N,
                                          (long)K, (long)m, (long)n, y, yr, err, S);
                            }
                        }
                    }
                    free(W);
                    free(deq);
                    free(X);
                    free(Yr);
                    free(Y);
                }
            }
        }
    }
    cr_assert(n_levels >= 1);
    wg_cpu_force_simd(NULL);
    wg_pool_destroy(&pools[0]);
    wg_pool_destroy(&pools[1]);
    cr_assert_null(pools[0]);
}

static const int64_t s_K_legacy[] = {32, 96, 256, 4096};
static const int64_t s_K_kquant[] = {256, 512, 4096};
static const int64_t s_K_float[] = {1, 17, 32, 96, 256, 4096};

#define S_TYPE_TEST(T, KS)                                                   \
    Test(cpu_matmul, T##_matches_reference_all_shapes, .timeout = 300) {    \
        s_check_type(WG_TYPE_##T, KS, (int)(sizeof KS / sizeof KS[0]));     \
    }

S_TYPE_TEST(Q4_0, s_K_legacy)
S_TYPE_TEST(Q4_1, s_K_legacy)
S_TYPE_TEST(Q5_0, s_K_legacy)
S_TYPE_TEST(Q5_1, s_K_legacy)
S_TYPE_TEST(Q8_0, s_K_legacy)
S_TYPE_TEST(IQ4_NL, s_K_legacy)
S_TYPE_TEST(MXFP4, s_K_legacy)
S_TYPE_TEST(Q2_K, s_K_kquant)
S_TYPE_TEST(Q3_K, s_K_kquant)
S_TYPE_TEST(Q4_K, s_K_kquant)
S_TYPE_TEST(Q5_K, s_K_kquant)
S_TYPE_TEST(Q6_K, s_K_kquant)
S_TYPE_TEST(IQ4_XS, s_K_kquant)
S_TYPE_TEST(F32, s_K_float)
S_TYPE_TEST(F16, s_K_float)
S_TYPE_TEST(BF16, s_K_float)

/* Row m of a product computed alone (M=1, one thread) must equal, bit for
 * bit, row m of the same product computed in a batch of 7, 32 or 100 rows,
 * with 1 or 2 threads, at the fastest SIMD level. M = 1 runs the row kernels
 * (gemv) where a type has one and batches the tile kernels, so the K values
 * cover their block loops: 4-block groups and tails, more than one staged
 * span of activations (K = 9472, 37 super-blocks), a Q8_0 row whose
 * block count is not a multiple of 8 (K = 416), and super-block counts of
 * 2, 3 and 5 (K = 512, 768, 1280), where the Q4_K/Q5_K/Q6_K row kernels
 * take their blocks four at a time across row ends. */
static void s_invariance_at_level(void);

/* ... at every SIMD level the CPU has (AVX2 has a Q8_0 row kernel too). */
Test(cpu_matmul, batch_and_thread_invariant_bitwise, .timeout = 600) {
    int n = 0;
    for (int li = 1; li < 3; li++) {
        if (!wg_cpu_force_simd(s_levels[li])) continue;
        s_invariance_at_level();
        n++;
    }
    wg_cpu_force_simd(NULL);
    cr_assert_geq(n, 1);
}

static void s_invariance_at_level(void) {
    static const wg_type_t types[] = {
        WG_TYPE_Q4_0, WG_TYPE_Q4_1, WG_TYPE_Q5_0, WG_TYPE_Q5_1, WG_TYPE_Q8_0,
        WG_TYPE_IQ4_NL, WG_TYPE_MXFP4, WG_TYPE_Q2_K, WG_TYPE_Q3_K, WG_TYPE_Q4_K,
        WG_TYPE_Q5_K, WG_TYPE_Q6_K, WG_TYPE_IQ4_XS, WG_TYPE_F32, WG_TYPE_F16, WG_TYPE_BF16};
    static const int64_t Ms[] = {7, 32, 100};
    static const int64_t Ks[] = {512, 9472, 416, 768, 1280};
    const int64_t N = 37;
    wg_pool_t *p1 = wg_pool_new(1), *p2 = wg_pool_new(2);
    cr_assert(p1 && p2);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const wg_type_t t = types[ti];
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            const int64_t K = Ks[ki];
            if (K % wg_type_traits(t)->blck_size != 0) continue;
            float *deq;
            void *W = s_make_weights(t, N, K, &deq);
            float *X = s_rand_floats(100 * K, 3.0f);
            float *Y1 = malloc(100 * N * sizeof(float)), *Yb = malloc(100 * N * sizeof(float));
            for (int64_t m = 0; m < 100; m++)
                cr_assert_eq(wg_k_matmul_cpu(p1, t, W, N, K, X + m * K, 1, Y1 + m * N), WG_OK);
            for (int mi = 0; mi < 3; mi++) {
                if (K > 4096 && Ms[mi] > 32) continue; /* keep it quick */
                for (int pi = 0; pi < 2; pi++) {
                    memset(Yb, 0, 100 * N * sizeof(float));
                    cr_assert_eq(wg_k_matmul_cpu(pi ? p2 : p1, t, W, N, K, X, Ms[mi], Yb), WG_OK);
                    cr_assert(memcmp(Y1, Yb, (size_t)(Ms[mi] * N) * sizeof(float)) == 0,
                              "%s (%s) K=%ld: batch of %ld rows with %d threads differs from M=1",
                              wg_type_name(t), wg_cpu_simd_name(), (long)K, (long)Ms[mi], pi + 1);
                }
            }
            free(W);
            free(deq);
            free(X);
            free(Y1);
            free(Yb);
        }
    }
    wg_pool_destroy(&p1);
    wg_pool_destroy(&p2);
}

/* Raw random block bytes reach what quantizing random floats rarely does:
 * every 6-bit scale and min at its limits, Q6_K scales of -128, IQ4 code
 * values of -127 in every lane, all-max nibbles. Only the float scale fields
 * are set to small finite values. The integer parts of the tile kernels must
 * stay exact there (no 16-bit saturation on AVX2, no int32 overflow), which
 * the same tolerance as above checks, at every SIMD level. */
static void s_sane_scales(wg_type_t t, uint8_t *blk) {
    const wg_half h1 = wg_fp32_to_fp16(0.01f + 0.02f * (float)(blk[5] % 7));
    const wg_half h2 = wg_fp32_to_fp16(0.005f + 0.01f * (float)(blk[6] % 5));
    size_t d = 0, m = (size_t)-1;
    switch (t) {
    case WG_TYPE_Q4_1: case WG_TYPE_Q5_1: d = 0; m = 2; break;
    case WG_TYPE_Q2_K: d = 80; m = 82; break;
    case WG_TYPE_Q3_K: d = 108; break;
    case WG_TYPE_Q4_K: case WG_TYPE_Q5_K: d = 0; m = 2; break;
    case WG_TYPE_Q6_K: d = 208; break;
    case WG_TYPE_MXFP4: blk[0] = (uint8_t)(120 + blk[1] % 8); return;
    default: d = 0; break; /* Q4_0 Q5_0 Q8_0 IQ4_NL IQ4_XS: d first */
    }
    memcpy(blk + d, &h1, 2);
    if (m != (size_t)-1) memcpy(blk + m, &h2, 2);
}

Test(cpu_matmul, raw_random_blocks_match_reference_at_extremes, .timeout = 300) {
    static const wg_type_t types[] = {
        WG_TYPE_Q4_0, WG_TYPE_Q4_1, WG_TYPE_Q5_0, WG_TYPE_Q5_1, WG_TYPE_Q8_0, WG_TYPE_IQ4_NL,
        WG_TYPE_MXFP4, WG_TYPE_Q2_K, WG_TYPE_Q3_K, WG_TYPE_Q4_K, WG_TYPE_Q5_K, WG_TYPE_Q6_K,
        WG_TYPE_IQ4_XS};
    const int64_t N = 21, K = 512, M = 9;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const wg_type_t t = types[ti];
        const wg_type_traits_t *tr = wg_type_traits(t);
        const size_t rs = wg_row_size(t, K);
        uint8_t *W = malloc(rs * (size_t)N);
        float *deq = malloc((size_t)(N * K) * sizeof(float));
        cr_assert(W && deq);
        for (size_t i = 0; i < rs * (size_t)N; i++) W[i] = (uint8_t)(s_randf() * 1e6f);
        for (int64_t n = 0; n < N; n++) {
            for (int64_t b = 0; b < K / tr->blck_size; b++)
                s_sane_scales(t, W + (size_t)n * rs + (size_t)b * tr->type_size);
            tr->to_float(W + (size_t)n * rs, deq + n * K, K);
        }
        /* Activations at full scale so quants hit +-127. */
        float *X = s_rand_floats(M * K, 1.0f);
        for (int64_t i = 0; i < M * K; i += 3) X[i] = i % 2 ? 1.0f : -1.0f;
        float *Yr = malloc((size_t)(M * N) * sizeof(float)), *Y = malloc((size_t)(M * N) * sizeof(float));
        s_ref_matmul(t, W, N, K, X, M, Yr);
        for (int li = 1; li < 3; li++) {
            if (!wg_cpu_force_simd(s_levels[li])) continue;
            cr_assert_eq(wg_k_matmul_cpu(NULL, t, W, N, K, X, M, Y), WG_OK);
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    double S = 0;
                    for (int64_t k = 0; k < K; k++) S += fabs((double)deq[n * K + k] * X[m * K + k]);
                    const double err = fabs((double)Y[m * N + n] - Yr[m * N + n]);
                    cr_assert(err <= S_RTOL * S + S_ATOL, "%s %s [%ld,%ld]: %.9g vs ref %.9g (S %.3g)",
                              wg_type_name(t), s_levels[li], (long)m, (long)n, Y[m * N + n],
                              Yr[m * N + n], S);
                }
            /* Each row alone (the M = 1 row kernels) gives the batch's bits
             * at these extremes too. */
            for (int64_t m = 0; m < M; m++) {
                float y1[21];
                cr_assert_eq(wg_k_matmul_cpu(NULL, t, W, N, K, X + m * K, 1, y1), WG_OK);
                cr_assert(memcmp(y1, Y + m * N, sizeof y1) == 0, "%s %s row %ld: M = 1 differs from the batch",
                          wg_type_name(t), s_levels[li], (long)m);
            }
        }
        wg_cpu_force_simd(NULL);
        free(W), free(deq), free(X), free(Yr), free(Y);
    }
}

/* AVX2 and AVX-512 builds differ only in the integer dot primitive, whose
 * sums are exact: their outputs must be bitwise equal. */
Test(cpu_matmul, avx2_and_avx512_agree_bitwise) {
    if (!wg_cpu_force_simd("avx512") || !wg_cpu_force_simd("avx2"))
        cr_skip_test("CPU lacks AVX2 or AVX-512 VNNI");
    static const wg_type_t types[] = {WG_TYPE_Q4_0, WG_TYPE_Q5_1, WG_TYPE_Q8_0, WG_TYPE_Q2_K,
                                      WG_TYPE_Q3_K, WG_TYPE_Q4_K, WG_TYPE_Q5_K, WG_TYPE_Q6_K,
                                      WG_TYPE_IQ4_XS, WG_TYPE_MXFP4};
    const int64_t M = 5, N = 9, K = 1024;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        float *deq;
        void *W = s_make_weights(types[ti], N, K, &deq);
        float *X = s_rand_floats(M * K, 1.0f);
        float Ya[45], Yb[45];
        cr_assert(wg_cpu_force_simd("avx2"));
        cr_assert_eq(wg_k_matmul_cpu(NULL, types[ti], W, N, K, X, M, Ya), WG_OK);
        cr_assert(wg_cpu_force_simd("avx512"));
        cr_assert_eq(wg_k_matmul_cpu(NULL, types[ti], W, N, K, X, M, Yb), WG_OK);
        cr_assert(memcmp(Ya, Yb, sizeof Ya) == 0, "%s", wg_type_name(types[ti]));
        free(W);
        free(deq);
        free(X);
    }
    wg_cpu_force_simd(NULL);
}

/* The fast Q8_0 / Q8_1 / Q8_K quantizers are byte-exact with the reference
 * ones (so the only difference left is accumulation order). */
Test(cpu_matmul, fast_quantizers_bitwise_equal_reference) {
    static const wg_type_t qts[] = {WG_TYPE_Q8_0, WG_TYPE_Q8_1, WG_TYPE_Q8_K};
    int checked = 0;
    for (int li = 1; li < 3; li++) {
        if (!wg_cpu_force_simd(s_levels[li])) continue;
        const wg_cpu_kernels_t *kt = wg_cpu_kernels();
        for (int qi = 0; qi < 3; qi++) {
            const wg_type_t qt = qts[qi];
            cr_assert_not_null(kt->quant[qt]);
            const int64_t K = 4096;
            const size_t rs = wg_row_size(qt, K);
            uint8_t *a = malloc(rs), *b = malloc(rs);
            for (int trial = 0; trial < 50; trial++) {
                float *x = s_rand_floats(K, trial % 2 ? 1000.0f : 0.01f);
                /* Exact ties and zero blocks: halves that roundf rounds away. */
                if (trial == 3)
                    for (int64_t i = 0; i < K; i++) x[i] = (float)(i % 255 - 127) * 0.5f;
                if (trial == 4) memset(x, 0, 256 * sizeof(float));
                memset(a, 0, rs);
                memset(b, 0, rs);
                wg_type_traits(qt)->from_float(x, a, K);
                kt->quant[qt](x, b, K);
                if (qt == WG_TYPE_Q8_K && trial == 4) { /* bsums of an all-zero block unspecified */
                    memset(((wg_block_q8_K *)a)->bsums, 0, sizeof(((wg_block_q8_K *)a)->bsums));
                    memset(((wg_block_q8_K *)b)->bsums, 0, sizeof(((wg_block_q8_K *)b)->bsums));
                }
                cr_assert(memcmp(a, b, rs) == 0, "%s %s trial %d", s_levels[li],
                          wg_type_name(qt), trial);
                free(x);
                checked++;
            }
            free(a);
            free(b);
        }
    }
    wg_cpu_force_simd(NULL);
    if (!checked) cr_skip_test("no SIMD level on this CPU");
}

/* Tile claims come from one lane per thread (at most 8 lanes; more threads
 * share them) with stealing from the back: whatever the thread count, a
 * product and a multi-product run give each output the single-threaded
 * bits, including when several threads share a lane (9 and 17 threads) and
 * products end inside a lane. */
Test(cpu_matmul, outputs_do_not_depend_on_thread_count_past_the_lane_count, .timeout = 120) {
    static const wg_type_t types[] = {WG_TYPE_Q8_0, WG_TYPE_Q4_K};
    static const int threads[] = {2, 3, 9, 17};
    const int64_t N = 1000, K = 512, M = 37;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        float *deq;
        void *W = s_make_weights(types[ti], N, K, &deq);
        float *X = s_rand_floats(M * K, 1.0f);
        float *Y1 = malloc(sizeof(float) * (size_t)(M * N)), *Y2 = malloc(sizeof(float) * (size_t)(M * N));
        float *Yb = malloc(sizeof(float) * (size_t)(M * (N / 2))), *Yc = malloc(sizeof(float) * (size_t)(M * 3));
        cr_assert(Y1 && Y2 && Yb && Yc);
        cr_assert_eq(wg_k_matmul_cpu(NULL, types[ti], W, N, K, X, M, Y1), WG_OK);
        for (size_t hi = 0; hi < sizeof threads / sizeof threads[0]; hi++) {
            wg_pool_t *pool = wg_pool_new(threads[hi]);
            cr_assert_not_null(pool);
            for (int rep = 0; rep < 10; rep++) {
                memset(Y2, 0xff, sizeof(float) * (size_t)(M * N));
                cr_assert_eq(wg_k_matmul_cpu(pool, types[ti], W, N, K, X, M, Y2), WG_OK);
                cr_assert(memcmp(Y1, Y2, sizeof(float) * (size_t)(M * N)) == 0, "%s, %d threads: one product",
                          wg_type_name(types[ti]), threads[hi]);
                const wg_k_mm_t mm[3] = {{.type = types[ti], .W = W, .N = N, .Y = Y2},
                                         {.type = types[ti], .W = W, .N = N / 2, .Y = Yb},
                                         {.type = types[ti], .W = W, .N = 3, .Y = Yc}};
                memset(Y2, 0xff, sizeof(float) * (size_t)(M * N));
                cr_assert_eq(wg_k_matmul_cpu_n(pool, 3, mm, K, X, M), WG_OK);
                for (int64_t m = 0; m < M; m++)
                    cr_assert(memcmp(Y2 + m * N, Y1 + m * N, sizeof(float) * (size_t)N) == 0 &&
                                  memcmp(Yb + m * (N / 2), Y1 + m * N, sizeof(float) * (size_t)(N / 2)) == 0 &&
                                  memcmp(Yc + m * 3, Y1 + m * N, sizeof(float) * 3) == 0,
                              "%s, %d threads: row %lld of three products in one run", wg_type_name(types[ti]),
                              threads[hi], (long long)m);
            }
            wg_pool_destroy(&pool);
        }
        free(W), free(deq), free(X), free(Y1), free(Y2), free(Yb), free(Yc);
    }
}

/* The one-pass quantize + prepare of an activation row (qprep, eight Q8_0
 * blocks at a time on AVX-512) writes the bytes of the quantizer followed
 * by the preparation, and the quantizer alone the reference's bytes: row
 * lengths with and without a tail of blocks past the last group of 8, ties,
 * zero blocks, and groups holding a NaN or an infinity (a NaN group goes
 * block by block). */
Test(cpu_matmul, one_pass_quantize_and_prepare_equals_the_two_passes) {
    static const int64_t Ks[] = {32, 224, 256, 288, 768, 2048 + 96};
    int checked = 0;
    for (int li = 1; li < 3; li++) {
        if (!wg_cpu_force_simd(s_levels[li])) continue;
        const wg_cpu_kernels_t *kt = wg_cpu_kernels();
        cr_assert_not_null(kt->qprep[WG_TYPE_Q8_0], "%s has no Q8_0 qprep", s_levels[li]);
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++) {
            const int64_t K = Ks[ki];
            const size_t rs = wg_row_size(WG_TYPE_Q8_0, K), ps = wg_cpu_xprep_size(WG_TYPE_Q8_0, K);
            uint8_t *ra = malloc(rs), *rb = malloc(rs), *rr = malloc(rs), *pa = malloc(ps), *pb = malloc(ps);
            for (int trial = 0; trial < 8; trial++) {
                float *x = s_rand_floats(K, trial % 2 ? 1000.0f : 0.01f);
                if (trial == 2)
                    for (int64_t i = 0; i < K; i++) x[i] = (float)(i % 255 - 127) * 0.5f;
                if (trial == 3) memset(x, 0, (size_t)(K < 96 ? K : 96) * sizeof(float));
                if (trial == 4) x[K - 1] = NAN;
                if (trial == 5) x[K / 2] = INFINITY;
                if (trial == 6) x[0] = -INFINITY, x[K - 1] = NAN;
                memset(ra, 0, rs), memset(rb, 0xA5, rs), memset(pa, 0x5A, ps), memset(pb, 0x5A, ps); /* padding: unwritten */
                kt->quant[WG_TYPE_Q8_0](x, ra, K);
                kt->prep[WG_TYPE_Q8_0](ra, pa, K);
                kt->qprep[WG_TYPE_Q8_0](x, rb, pb, K);
                cr_assert(memcmp(ra, rb, rs) == 0, "%s K=%lld trial %d: quantized rows differ", s_levels[li],
                          (long long)K, trial);
                cr_assert(memcmp(pa, pb, ps) == 0, "%s K=%lld trial %d: prepared rows differ", s_levels[li],
                          (long long)K, trial);
                if (trial < 4) { /* finite: the reference's bytes too */
                    wg_type_traits(WG_TYPE_Q8_0)->from_float(x, rr, K);
                    cr_assert(memcmp(rr, ra, rs) == 0, "%s K=%lld trial %d: not the reference", s_levels[li],
                              (long long)K, trial);
                }
                free(x);
                checked++;
            }
            free(ra), free(rb), free(rr), free(pa), free(pb);
        }
    }
    wg_cpu_force_simd(NULL);
    if (!checked) cr_skip_test("no SIMD level on this CPU");
}

Test(cpu_matmul, unsupported_type_is_an_error) {
    float x[32] = {0}, y[1];
    uint8_t w[64] = {0};
    cr_assert_eq(wg_k_matmul_cpu(NULL, WG_TYPE_I32, w, 1, 32, x, 1, y), WG_ERR_UNSUPPORTED);
    cr_assert(strstr(wg_errmsg(), "I32") != NULL, "%s", wg_errmsg());
    cr_assert_eq(wg_k_matmul_cpu(NULL, (wg_type_t)33, w, 1, 32, x, 1, y), WG_ERR_UNSUPPORTED);
}

/* Several products of one activation row in one call (Q, K, V; gate, up)
 * are bitwise the separate calls: with row kernels for every type (one
 * shared pool run, X quantized once per activation type: Q8_K for Q4_K and
 * Q6_K, Q8_0 for Q8_0), with a type that has none (F16: separate calls),
 * with M > 1 (separate calls) and on 1 and 2 threads. */
Test(cpu_matmul, fused_products_equal_separate_calls) {
    const int64_t K = 1280;
    static const wg_type_t sets[][3] = {{WG_TYPE_Q4_K, WG_TYPE_Q6_K, WG_TYPE_Q8_0},
                                        {WG_TYPE_Q4_K, WG_TYPE_F16, WG_TYPE_Q4_K},
                                        {WG_TYPE_Q8_0, WG_TYPE_Q8_0, WG_TYPE_Q6_K}};
    static const int64_t Ns[3] = {100, 37, 515};
    wg_pool_t *pools[2] = {wg_pool_new(1), wg_pool_new(2)};
    cr_assert(pools[0] && pools[1]);
    for (int si = 0; si < 3; si++) {
        static const int64_t Ms[] = {1, 3, 70}; /* row kernels; tiles (70: two accumulator blocks) */
        for (int mi = 0; mi < 3; mi++) {
            const int64_t M = Ms[mi];
            void *W[3];
            float *deq[3], *Ys[3], *Yn[3];
            wg_k_mm_t mm[3];
            float *X = s_rand_floats(M * K, 2.0f);
            for (int i = 0; i < 3; i++) {
                W[i] = s_make_weights(sets[si][i], Ns[i], K, &deq[i]);
                Ys[i] = malloc((size_t)(M * Ns[i]) * sizeof(float));
                Yn[i] = malloc((size_t)(M * Ns[i]) * sizeof(float));
                cr_assert_eq(wg_k_matmul_cpu(pools[0], sets[si][i], W[i], Ns[i], K, X, M, Ys[i]), WG_OK);
                mm[i] = (wg_k_mm_t){.type = sets[si][i], .W = W[i], .N = Ns[i], .Y = Yn[i]};
            }
            for (int pi = 0; pi < 2; pi++) {
                for (int i = 0; i < 3; i++) memset(Yn[i], 0xFF, (size_t)(M * Ns[i]) * sizeof(float));
                cr_assert_eq(wg_k_matmul_cpu_n(pools[pi], 3, mm, K, X, M), WG_OK, "%s", wg_errmsg());
                for (int i = 0; i < 3; i++)
                    cr_assert(memcmp(Ys[i], Yn[i], (size_t)(M * Ns[i]) * sizeof(float)) == 0,
                              "set %d product %d (%s) M=%ld threads=%d differs from a separate call", si, i,
                              wg_type_name(sets[si][i]), (long)M, pi + 1);
            }
            for (int i = 0; i < 3; i++) free(W[i]), free(deq[i]), free(Ys[i]), free(Yn[i]);
            free(X);
        }
    }
    wg_pool_destroy(&pools[0]);
    wg_pool_destroy(&pools[1]);
}
