/* wg_backend_cpu — the CPU op table: matmuls through wg_k_matmul_cpu (which
 * quantizes activations like llama.cpp), attention over the paged cache split
 * over (token, head) pairs on the pool, and norm/rope/activations that follow
 * ggml's CPU arithmetic (double-accumulated norms, incremental rope angles,
 * float softmax with a double sum) so results sit at the F32 floor.
 *
 * SIMD: AVX2+FMA and AVX-512 paths are `target`-attributed functions picked
 * at run time from the kernel library's level (wg_cpu_simd_name, so
 * WAGGLE_SIMD=scalar forces the scalar code here too), with a scalar fallback
 * for other CPUs and for head sizes that are not a multiple of 8.
 *
 * Batch invariance: the path and the operation order of one (token, head)
 * attention item depend only on the level, the head size and that token's own
 * key range, never on which other tokens share the call or which thread runs
 * the item. Every key's dot product goes through the same 8-key kernel (a
 * short last group repeats its last key and drops the extra lanes), and each
 * output element accumulates its values in key order. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define S_X86 1
#else
#define S_X86 0
#endif

#include "../../common/wg_mem.h"
#include "../../kernels/cpu/wg_cpu.h"
#include "../../kernels/cpu/wg_cpu_impl.h" /* wg_pool_run_any */
#include "../../kernels/ref/wg_ref.h" /* wg_type_traits */
#include "wg_backend.h"

typedef enum { S_SCALAR, S_AVX2, S_AVX512 } s_level_t;

/* The SIMD level the kernel library runs at (it checked the CPU). */
static s_level_t s_level(void) {
    if (!S_X86) return S_SCALAR;
    const char *n = wg_cpu_simd_name();
    if (strcmp(n, "avx512") == 0) return S_AVX512;
    if (strcmp(n, "avx2") == 0) return S_AVX2;
    return S_SCALAR;
}

static wg_status s_matmul(void *ctx, const wg_weight_t *w, int64_t expert, const float *X, int64_t M,
                          float *Y) {
    if (M == 0) return WG_OK;
    return wg_k_matmul_cpu((wg_pool_t *)ctx, w->type, wg_weight_rows(w, expert), w->n, w->k, X, M, Y);
}

static wg_status s_matmul_n(void *ctx, int n, const wg_weight_t *const *w, const int64_t *expert,
                            const float *X, int64_t M, float *const *Y) {
    WG_ASSERT(n >= 0 && n <= WG_K_MM_MAX);
    if (M == 0 || n == 0) return WG_OK;
    wg_k_mm_t mm[WG_K_MM_MAX];
    for (int i = 0; i < n; i++) {
        WG_ASSERT(w[i]->k == w[0]->k);
        mm[i] = (wg_k_mm_t){.type = w[i]->type, .W = wg_weight_rows(w[i], expert[i]), .N = w[i]->n, .Y = Y[i]};
    }
    return wg_k_matmul_cpu_n((wg_pool_t *)ctx, n, mm, w[0]->k, X, M);
}

/* ------------------------------------------------------------------------ */
/* AVX2 / AVX-512 building blocks                                            */
/* ------------------------------------------------------------------------ */
#if S_X86
#define S_AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define S_AVX512_FN __attribute__((target("avx512f,avx2,fma,f16c")))

/* The constants of s_exp8 and s_exp16 (one set, so the two stay the same
 * function): zero below, clamp, log2(e), ln 2 in two parts, polynomial. */
#define S_EXP_ZERO_BELOW -87.33654f
#define S_EXP_CLAMP 88.3762626647949f
#define S_EXP_LOG2E 1.44269504088896341f
#define S_EXP_LN2_HI 0.693359375f
#define S_EXP_LN2_LO -2.12194440e-4f
#define S_EXP_P0 1.9875691500e-4f
#define S_EXP_P1 1.3981999507e-3f
#define S_EXP_P2 8.3334519073e-3f
#define S_EXP_P3 4.1665795894e-2f
#define S_EXP_P4 1.6666665459e-1f
#define S_EXP_P5 5.0000001201e-1f

/* e^x for 8 floats, Cephes-style: x = n ln2 + r, |r| <= ln2/2, degree-6
 * polynomial, scaled by 2^n through the exponent bits. About 1 ulp; inputs
 * below -87.3 (denormal results) give 0, above 88.37 give +inf; NaN stays NaN. */
S_AVX2_FN static inline __m256 s_exp8(__m256 x) {
    const __m256 zero = _mm256_cmp_ps(x, _mm256_set1_ps(S_EXP_ZERO_BELOW), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(S_EXP_CLAMP), _mm256_max_ps(_mm256_set1_ps(-S_EXP_CLAMP), x));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(S_EXP_LOG2E)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(S_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(S_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(S_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(S_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(S_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(S_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(S_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(S_EXP_P5));
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(zero, y);
}

/* [sum(a0), ..., sum(a7)]: the eight horizontal sums in one vector. */
S_AVX2_FN static inline __m256 s_hsum8x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                                         __m256 a6, __m256 a7) {
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* Row loaders: elements i..i+7 / i..i+15 of a K/V row p as floats (F32; F16
 * widened exactly by F16C / AVX-512; Q8_0 as d * q, exact in float: an
 * 11-bit scale times an 8-bit integer, so the same values as the reference
 * dequantization). i is a multiple of 8 / 16. */
#define S_LD8_F32(p, i) _mm256_loadu_ps((p) + (i))
#define S_LD8_F16(p, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)((p) + (i))))
#define S_LD16_F32(p, i) _mm512_loadu_ps((p) + (i))
#define S_LD16_F16(p, i) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)((p) + (i))))
S_AVX2_FN static inline __m256 s_ld8_q8(const wg_block_q8_0 *b, int32_t i) {
    const wg_block_q8_0 *bl = b + i / WG_QK8_0;
    const __m256 q = _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(bl->qs + i % WG_QK8_0))));
    return _mm256_mul_ps(q, _mm256_set1_ps(_cvtsh_ss(bl->d)));
}
#define S_LD8_Q8(p, i) s_ld8_q8((p), (i))

/* out[j] = scale * dot(q, k + j*ks) for j < nk; d % 8 == 0. Keys go 8 at a
 * time; out must have room for nk rounded up to 8 (the extra lanes repeat the
 * last key and are written, to be overwritten or ignored by the caller). The
 * F16 and Q8_0 variants do the same float operations on the widened keys (ks
 * counts elements of T: Q8_0 blocks). */
#define S_SCORES_AVX2(NAME, T, LD)                                                                              \
    S_AVX2_FN static void NAME(const float *q, const T *k, int64_t ks, int32_t nk, int32_t d, float scale,      \
                               float *out) {                                                                    \
        for (int32_t j0 = 0; j0 < nk; j0 += 8) {                                                                \
            const T *kp[8];                                                                                     \
            _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) kp[r] = k + (int64_t)(j0 + r < nk ? j0 + r : nk - 1) * ks;              \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;     \
            for (int32_t i = 0; i < d; i += 8) {                                                                \
                const __m256 qv = _mm256_loadu_ps(q + i);                                                       \
                a0 = _mm256_fmadd_ps(qv, LD(kp[0], i), a0);                                                     \
                a1 = _mm256_fmadd_ps(qv, LD(kp[1], i), a1);                                                     \
                a2 = _mm256_fmadd_ps(qv, LD(kp[2], i), a2);                                                     \
                a3 = _mm256_fmadd_ps(qv, LD(kp[3], i), a3);                                                     \
                a4 = _mm256_fmadd_ps(qv, LD(kp[4], i), a4);                                                     \
                a5 = _mm256_fmadd_ps(qv, LD(kp[5], i), a5);                                                     \
                a6 = _mm256_fmadd_ps(qv, LD(kp[6], i), a6);                                                     \
                a7 = _mm256_fmadd_ps(qv, LD(kp[7], i), a7);                                                     \
            }                                                                                                   \
            const __m256 s = s_hsum8x8(a0, a1, a2, a3, a4, a5, a6, a7);                                         \
            _mm256_storeu_ps(out + j0, _mm256_mul_ps(s, _mm256_set1_ps(scale)));                                \
        }                                                                                                       \
    }
S_SCORES_AVX2(s_scores_avx2, float, S_LD8_F32)
S_SCORES_AVX2(s_scores_avx2_f16, wg_half, S_LD8_F16)
S_SCORES_AVX2(s_scores_avx2_q8, wg_block_q8_0, S_LD8_Q8)

/* Same contract with d % 16 == 0: 16-lane products, folded to 8 lanes. */
S_AVX512_FN static inline __m256 s_fold512(__m512 a) {
    return _mm256_add_ps(_mm512_castps512_ps256(a),
                         _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

#define S_SCORES_AVX512(NAME, T, LD)                                                                            \
    S_AVX512_FN static void NAME(const float *q, const T *k, int64_t ks, int32_t nk, int32_t d, float scale,    \
                                 float *out) {                                                                  \
        for (int32_t j0 = 0; j0 < nk; j0 += 8) {                                                                \
            const T *kp[8];                                                                                     \
            _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) kp[r] = k + (int64_t)(j0 + r < nk ? j0 + r : nk - 1) * ks;              \
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;     \
            for (int32_t i = 0; i < d; i += 16) {                                                               \
                const __m512 qv = _mm512_loadu_ps(q + i);                                                       \
                a0 = _mm512_fmadd_ps(qv, LD(kp[0], i), a0);                                                     \
                a1 = _mm512_fmadd_ps(qv, LD(kp[1], i), a1);                                                     \
                a2 = _mm512_fmadd_ps(qv, LD(kp[2], i), a2);                                                     \
                a3 = _mm512_fmadd_ps(qv, LD(kp[3], i), a3);                                                     \
                a4 = _mm512_fmadd_ps(qv, LD(kp[4], i), a4);                                                     \
                a5 = _mm512_fmadd_ps(qv, LD(kp[5], i), a5);                                                     \
                a6 = _mm512_fmadd_ps(qv, LD(kp[6], i), a6);                                                     \
                a7 = _mm512_fmadd_ps(qv, LD(kp[7], i), a7);                                                     \
            }                                                                                                   \
            const __m256 s = s_hsum8x8(s_fold512(a0), s_fold512(a1), s_fold512(a2), s_fold512(a3),              \
                                       s_fold512(a4), s_fold512(a5), s_fold512(a6), s_fold512(a7));             \
            _mm256_storeu_ps(out + j0, _mm256_mul_ps(s, _mm256_set1_ps(scale)));                                \
        }                                                                                                       \
    }
S_SCORES_AVX512(s_scores_avx512, float, S_LD16_F32)
S_SCORES_AVX512(s_scores_avx512_f16, wg_half, S_LD16_F16)

/* Q8_0 keys: the same float operations as s_scores_avx512 on the widened
 * keys, with each key block's scale widened once per block rather than per
 * 16 elements. d % 32 == 0. */
S_AVX512_FN static inline __m512 s_q8_widen16(const int8_t *q, __m512 d) {
    const __m512i i = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)q));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(i), d);
}

S_AVX512_FN static void s_scores_avx512_q8(const float *q, const wg_block_q8_0 *k, int64_t ks, int32_t nk, int32_t d,
                                           float scale, float *out) {
    for (int32_t j0 = 0; j0 < nk; j0 += 8) {
        const wg_block_q8_0 *kp[8];
        _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) kp[r] = k + (int64_t)(j0 + r < nk ? j0 + r : nk - 1) * ks;
        __m512 a[8];
        for (int r = 0; r < 8; r++) a[r] = _mm512_setzero_ps();
        for (int32_t b = 0; b < d / WG_QK8_0; b++) {
            const __m512 q0 = _mm512_loadu_ps(q + WG_QK8_0 * b), q1 = _mm512_loadu_ps(q + WG_QK8_0 * b + 16);
            for (int r = 0; r < 8; r++) {
                const wg_block_q8_0 *bl = kp[r] + b;
                const __m512 dr = _mm512_set1_ps(_cvtsh_ss(bl->d));
                a[r] = _mm512_fmadd_ps(q0, s_q8_widen16(bl->qs, dr), a[r]);
                a[r] = _mm512_fmadd_ps(q1, s_q8_widen16(bl->qs + 16, dr), a[r]);
            }
        }
        const __m256 sum = s_hsum8x8(s_fold512(a[0]), s_fold512(a[1]), s_fold512(a[2]), s_fold512(a[3]),
                                     s_fold512(a[4]), s_fold512(a[5]), s_fold512(a[6]), s_fold512(a[7]));
        _mm256_storeu_ps(out + j0, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
    }
}

/* Max of x[0..n) (n % 8 == 0). */
S_AVX2_FN static float s_max_avx2(const float *x, int32_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int32_t j = 0; j < n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    float t[8];
    _mm256_storeu_ps(t, m);
    float r = t[0];
    for (int i = 1; i < 8; i++) r = t[i] > r ? t[i] : r;
    return r;
}

/* One group of 8 exps into the softmax sum's two double chains: lanes 0-3
 * into s[0], 4-7 into s[1]. Every SIMD path adds its groups in order through
 * this, so the sum has one order whatever the lane width. */
S_AVX2_FN static inline void s_dsum8(__m256d s[2], __m256 e) {
    s[0] = _mm256_add_pd(s[0], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
    s[1] = _mm256_add_pd(s[1], _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
}

/* The sum of the two chains. */
S_AVX2_FN static inline double s_dsum_end(const __m256d s[2]) {
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s[0], s[1]));
    return (t[0] + t[1]) + (t[2] + t[3]);
}

/* x[j] = exp(x[j] - mx) for j < n (n % 8 == 0); returns the sum in double. */
S_AVX2_FN static double s_expsum_avx2(float *x, int32_t n, float mx) {
    __m256d s[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    const __m256 m = _mm256_set1_ps(mx);
    for (int32_t j = 0; j < n; j += 8) {
        const __m256 e = s_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), m));
        _mm256_storeu_ps(x + j, e);
        s_dsum8(s, e);
    }
    return s_dsum_end(s);
}

/* Rope of interleaved pairs (WG_ROPE_NORM) over v[0..nr), nr % 8 == 0, with
 * cs[2i] / cs[2i+1] the cosine / sine of pair i: per pair the scalar loop's
 * operations, x0*c - x1*s (as x0*c + x1*(-s), the same number) and
 * x0*s + x1*c (its two products added the other way round, the same sum),
 * four pairs at a time without fused multiply-adds, so bitwise the scalar
 * result. GCC did not vectorize the interleaved loop. */
S_AVX2_FN static void s_rope_norm_avx2(float *v, const float *cs, int32_t nr) {
    const __m256 neg_even = _mm256_setr_ps(-0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f, -0.0f, 0.0f);
    for (int32_t i = 0; i < nr; i += 8) {
        const __m256 x = _mm256_loadu_ps(v + i);
        const __m256 t = _mm256_loadu_ps(cs + i);
        const __m256 c = _mm256_moveldup_ps(t);                          /* c0 c0 c1 c1 ... */
        const __m256 sn = _mm256_xor_ps(_mm256_movehdup_ps(t), neg_even); /* -s0 s0 -s1 s1 ... */
        const __m256 xs = _mm256_permute_ps(x, 0xB1);                    /* x1 x0 ... */
        _mm256_storeu_ps(v + i, _mm256_add_ps(_mm256_mul_ps(x, c), _mm256_mul_ps(xs, sn)));
    }
}

S_AVX2_FN static void s_scale_avx2(float *x, int32_t n, float s) {
    const __m256 v = _mm256_set1_ps(s);
    for (int32_t j = 0; j < n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), v));
}

/* s_exp8 sixteen lanes at a time: the same operations in the same order per
 * lane (round to nearest even, FMAs, the exponent bits), so each element is
 * bitwise what s_exp8 gives it. */
S_AVX512_FN static inline __m512 s_exp16(__m512 x) {
    const __mmask16 zero = _mm512_cmp_ps_mask(x, _mm512_set1_ps(S_EXP_ZERO_BELOW), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_set1_ps(S_EXP_CLAMP), _mm512_max_ps(_mm512_set1_ps(-S_EXP_CLAMP), x));
    const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(S_EXP_LOG2E)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(S_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(S_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(S_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(S_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(S_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(S_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(S_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(S_EXP_P5));
    const __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps((__mmask16)~zero, y);
}

/* One head's softmax pass at sixteen lanes: the maximum (order-free), then
 * x = exp(x - mx) with the sum in double taken exactly as s_expsum_avx2 does
 * (lanes 0-3 of each group of 8 into one chain, 4-7 into the other, groups in
 * order), so the scores are bitwise those of the AVX2 path. n % 8 == 0. */
S_AVX512_FN static float s_max_avx512(const float *x, int32_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int32_t j = 0;
    for (; j + 16 <= n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + j));
    float r = _mm512_reduce_max_ps(m);
    for (; j < n; j++) r = x[j] > r ? x[j] : r;
    return r;
}

S_AVX512_FN static double s_expsum_avx512(float *x, int32_t n, float mx) {
    __m256d s[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    const __m512 m = _mm512_set1_ps(mx);
    int32_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 e = s_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), m));
        _mm512_storeu_ps(x + j, e);
        s_dsum8(s, _mm512_castps512_ps256(e));
        s_dsum8(s, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1)));
    }
    if (j < n) {
        const __m256 e = s_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), _mm256_set1_ps(mx)));
        _mm256_storeu_ps(x + j, e);
        s_dsum8(s, e);
    }
    return s_dsum_end(s);
}

S_AVX512_FN static void s_scale_avx512(float *x, int32_t n, float s) {
    const __m512 v = _mm512_set1_ps(s);
    int32_t j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), v));
    if (j < n) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), _mm512_castps512_ps256(v)));
}

/* o[i] += sum_j w[j] * v[j*vs + i] for i < d (d % 8 == 0), keys in order:
 * one FMA per key and element, so each element's sum has one order whatever
 * the lane width (the AVX2 and AVX-512 variants give the same bits). */
#define S_VACC_AVX2(NAME, T, LD)                                                                                \
    S_AVX2_FN static void NAME(float *o, const float *w, const T *v, int64_t vs, int32_t nk, int32_t d) {       \
        int32_t i = 0;                                                                                          \
        for (; i + 32 <= d; i += 32) {                                                                          \
            __m256 o0 = _mm256_loadu_ps(o + i), o1 = _mm256_loadu_ps(o + i + 8);                                \
            __m256 o2 = _mm256_loadu_ps(o + i + 16), o3 = _mm256_loadu_ps(o + i + 24);                          \
            for (int32_t j = 0; j < nk; j++) {                                                                  \
                const __m256 wj = _mm256_set1_ps(w[j]);                                                         \
                const T *vp = v + j * vs;                                                                       \
                o0 = _mm256_fmadd_ps(wj, LD(vp, i), o0);                                                        \
                o1 = _mm256_fmadd_ps(wj, LD(vp, i + 8), o1);                                                    \
                o2 = _mm256_fmadd_ps(wj, LD(vp, i + 16), o2);                                                   \
                o3 = _mm256_fmadd_ps(wj, LD(vp, i + 24), o3);                                                   \
            }                                                                                                   \
            _mm256_storeu_ps(o + i, o0);                                                                        \
            _mm256_storeu_ps(o + i + 8, o1);                                                                    \
            _mm256_storeu_ps(o + i + 16, o2);                                                                   \
            _mm256_storeu_ps(o + i + 24, o3);                                                                   \
        }                                                                                                       \
        for (; i < d; i += 8) {                                                                                 \
            __m256 o0 = _mm256_loadu_ps(o + i);                                                                 \
            for (int32_t j = 0; j < nk; j++) o0 = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), LD(v + j * vs, i), o0); \
            _mm256_storeu_ps(o + i, o0);                                                                        \
        }                                                                                                       \
    }
S_VACC_AVX2(s_vacc_avx2, float, S_LD8_F32)
S_VACC_AVX2(s_vacc_avx2_f16, wg_half, S_LD8_F16)
S_VACC_AVX2(s_vacc_avx2_q8, wg_block_q8_0, S_LD8_Q8)

/* Same with d % 16 == 0. */
#define S_VACC_AVX512(NAME, T, LD)                                                                              \
    S_AVX512_FN static void NAME(float *o, const float *w, const T *v, int64_t vs, int32_t nk, int32_t d) {     \
        int32_t i = 0;                                                                                          \
        for (; i + 64 <= d; i += 64) {                                                                          \
            __m512 o0 = _mm512_loadu_ps(o + i), o1 = _mm512_loadu_ps(o + i + 16);                               \
            __m512 o2 = _mm512_loadu_ps(o + i + 32), o3 = _mm512_loadu_ps(o + i + 48);                          \
            for (int32_t j = 0; j < nk; j++) {                                                                  \
                const __m512 wj = _mm512_set1_ps(w[j]);                                                         \
                const T *vp = v + j * vs;                                                                       \
                o0 = _mm512_fmadd_ps(wj, LD(vp, i), o0);                                                        \
                o1 = _mm512_fmadd_ps(wj, LD(vp, i + 16), o1);                                                   \
                o2 = _mm512_fmadd_ps(wj, LD(vp, i + 32), o2);                                                   \
                o3 = _mm512_fmadd_ps(wj, LD(vp, i + 48), o3);                                                   \
            }                                                                                                   \
            _mm512_storeu_ps(o + i, o0);                                                                        \
            _mm512_storeu_ps(o + i + 16, o1);                                                                   \
            _mm512_storeu_ps(o + i + 32, o2);                                                                   \
            _mm512_storeu_ps(o + i + 48, o3);                                                                   \
        }                                                                                                       \
        for (; i < d; i += 16) {                                                                                \
            __m512 o0 = _mm512_loadu_ps(o + i);                                                                 \
            for (int32_t j = 0; j < nk; j++)                                                                    \
                o0 = _mm512_fmadd_ps(_mm512_set1_ps(w[j]), LD(v + j * vs, i), o0);                              \
            _mm512_storeu_ps(o + i, o0);                                                                        \
        }                                                                                                       \
    }
S_VACC_AVX512(s_vacc_avx512, float, S_LD16_F32)
S_VACC_AVX512(s_vacc_avx512_f16, wg_half, S_LD16_F16)

/* Q8_0 values: s_vacc_avx512's float operations on the widened values (one
 * FMA per key and element, keys in order), each block's scale widened once.
 * d % 32 == 0. */
S_AVX512_FN static void s_vacc_avx512_q8(float *o, const float *w, const wg_block_q8_0 *v, int64_t vs, int32_t nk,
                                         int32_t d) {
    int32_t b = 0;
    for (; b + 2 <= d / WG_QK8_0; b += 2) {
        float *ob = o + WG_QK8_0 * b;
        __m512 o0 = _mm512_loadu_ps(ob), o1 = _mm512_loadu_ps(ob + 16);
        __m512 o2 = _mm512_loadu_ps(ob + 32), o3 = _mm512_loadu_ps(ob + 48);
        for (int32_t j = 0; j < nk; j++) {
            const __m512 wj = _mm512_set1_ps(w[j]);
            const wg_block_q8_0 *bl = v + j * vs + b;
            const __m512 d0 = _mm512_set1_ps(_cvtsh_ss(bl[0].d)), d1 = _mm512_set1_ps(_cvtsh_ss(bl[1].d));
            o0 = _mm512_fmadd_ps(wj, s_q8_widen16(bl[0].qs, d0), o0);
            o1 = _mm512_fmadd_ps(wj, s_q8_widen16(bl[0].qs + 16, d0), o1);
            o2 = _mm512_fmadd_ps(wj, s_q8_widen16(bl[1].qs, d1), o2);
            o3 = _mm512_fmadd_ps(wj, s_q8_widen16(bl[1].qs + 16, d1), o3);
        }
        _mm512_storeu_ps(ob, o0);
        _mm512_storeu_ps(ob + 16, o1);
        _mm512_storeu_ps(ob + 32, o2);
        _mm512_storeu_ps(ob + 48, o3);
    }
    for (; b < d / WG_QK8_0; b++) {
        float *ob = o + WG_QK8_0 * b;
        __m512 o0 = _mm512_loadu_ps(ob), o1 = _mm512_loadu_ps(ob + 16);
        for (int32_t j = 0; j < nk; j++) {
            const __m512 wj = _mm512_set1_ps(w[j]);
            const wg_block_q8_0 *bl = v + j * vs + b;
            const __m512 d0 = _mm512_set1_ps(_cvtsh_ss(bl->d));
            o0 = _mm512_fmadd_ps(wj, s_q8_widen16(bl->qs, d0), o0);
            o1 = _mm512_fmadd_ps(wj, s_q8_widen16(bl->qs + 16, d0), o1);
        }
        _mm512_storeu_ps(ob, o0);
        _mm512_storeu_ps(ob + 16, o1);
    }
}

/* Q8_0 elements i..i+15 (i % 16 == 0) widened as d * q: the floats of
 * s_q8_widen16 with the block's scale. */
S_AVX512_FN static inline __m512 s_ld16_q8(const wg_block_q8_0 *b, int32_t i) {
    const wg_block_q8_0 *bl = b + i / WG_QK8_0;
    return s_q8_widen16(bl->qs + i % WG_QK8_0, _mm512_set1_ps(_cvtsh_ss(bl->d)));
}
#define S_LD16_Q8(p, i) s_ld16_q8((p), (i))

/* Grouped-query attention: HN query heads (HN <= 4) that share one kv head.
 * Scores: out_h[j] = scale * dot(q_h, k + j*ks) for j < nk, head h's query
 * at q + h*q_hs and scores at out + h*o_hs (room for nk rounded up to 8, as
 * s_scores_avx512). Each key's slice is widened once for all HN heads, four
 * keys at a time. Per head and key it is s_scores_avx512's arithmetic: the
 * same 16-lane FMA chain over the elements, the same fold to 8 lanes and the
 * same pairwise tree of the horizontal sum (hadd of hadds, then the two
 * 128-bit halves), so the scores are bitwise those of the one-head kernel. */
#define S_SCORES_GQA_AVX512(NAME, T, LD)                                                                        \
    S_AVX512_FN __attribute__((always_inline)) static inline void NAME##_hn(                                     \
        const float *q, int64_t q_hs, const T *k, int64_t ks, int32_t nk, int32_t d, float scale, float *out,   \
        int64_t o_hs, const int HN) {                                                                           \
        for (int32_t j0 = 0; j0 < nk; j0 += 4) {                                                                \
            const T *kp[4];                                                                                     \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) kp[r] = k + (int64_t)(j0 + r < nk ? j0 + r : nk - 1) * ks;              \
            __m512 acc[4][4];                                                                                   \
            _Pragma("GCC unroll 4") for (int h = 0; h < HN; h++)                                                \
                _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) acc[h][r] = _mm512_setzero_ps();            \
            for (int32_t i = 0; i < d; i += 16) {                                                               \
                __m512 kv[4];                                                                                   \
                _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) kv[r] = LD(kp[r], i);                       \
                _Pragma("GCC unroll 4") for (int h = 0; h < HN; h++) {                                          \
                    const __m512 qv = _mm512_loadu_ps(q + h * q_hs + i);                                        \
                    _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                                         \
                        acc[h][r] = _mm512_fmadd_ps(qv, kv[r], acc[h][r]);                                      \
                }                                                                                               \
            }                                                                                                   \
            _Pragma("GCC unroll 4") for (int h = 0; h < HN; h++) {                                              \
                const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(s_fold512(acc[h][0]), s_fold512(acc[h][1])),     \
                                                _mm256_hadd_ps(s_fold512(acc[h][2]), s_fold512(acc[h][3])));    \
                const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));           \
                _mm_storeu_ps(out + h * o_hs + j0, _mm_mul_ps(s4, _mm_set1_ps(scale)));                         \
            }                                                                                                   \
        }                                                                                                       \
    }                                                                                                           \
    S_AVX512_FN static void NAME(const float *q, int64_t q_hs, const T *k, int64_t ks, int32_t nk, int32_t d,   \
                                 float scale, float *out, int64_t o_hs, int32_t nh) {                           \
        for (int32_t h0 = 0; h0 < nh; h0 += 4) {                                                                \
            const float *qh = q + h0 * q_hs;                                                                    \
            float *oh = out + h0 * o_hs;                                                                        \
            switch (nh - h0 < 4 ? nh - h0 : 4) {                                                                \
            case 4: NAME##_hn(qh, q_hs, k, ks, nk, d, scale, oh, o_hs, 4); break;                               \
            case 3: NAME##_hn(qh, q_hs, k, ks, nk, d, scale, oh, o_hs, 3); break;                               \
            case 2: NAME##_hn(qh, q_hs, k, ks, nk, d, scale, oh, o_hs, 2); break;                               \
            default: NAME##_hn(qh, q_hs, k, ks, nk, d, scale, oh, o_hs, 1); break;                              \
            }                                                                                                   \
        }                                                                                                       \
    }
S_SCORES_GQA_AVX512(s_scores_gqa_avx512, float, S_LD16_F32)
S_SCORES_GQA_AVX512(s_scores_gqa_avx512_f16, wg_half, S_LD16_F16)
S_SCORES_GQA_AVX512(s_scores_gqa_avx512_q8, wg_block_q8_0, S_LD16_Q8)

/* Values for HN query heads (HN <= 4) sharing one kv head's slice:
 * o_h[i] += sum_j w_h[j] * v[j*vs + i], head h's weights at w + h*w_hs and
 * output at o + h*o_hs; d % 64 == 0. Each value row is widened once for the
 * HN heads; per head and element it is s_vacc_avx512's FMA chain (one FMA
 * per key, keys in order), so the bits are the same. */
#define S_VACC_GQA_AVX512(NAME, T, LD)                                                                          \
    S_AVX512_FN __attribute__((always_inline)) static inline void NAME##_hn(                                     \
        float *o, int64_t o_hs, const float *w, int64_t w_hs, const T *v, int64_t vs, int32_t nk, int32_t c,    \
        const int HN) {                                                                                         \
        __m512 acc[4][4];                                                                                       \
        _Pragma("GCC unroll 4") for (int h = 0; h < HN; h++)                                                    \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                                                 \
                acc[h][r] = _mm512_loadu_ps(o + h * o_hs + c + 16 * r);                                         \
        for (int32_t j = 0; j < nk; j++) {                                                                      \
            const T *vp = v + j * vs;                                                                           \
            __m512 vv[4];                                                                                       \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) vv[r] = LD(vp, c + 16 * r);                     \
            _Pragma("GCC unroll 4") for (int h = 0; h < HN; h++) {                                              \
                const __m512 wj = _mm512_set1_ps(w[h * w_hs + j]);                                              \
                _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                                             \
                    acc[h][r] = _mm512_fmadd_ps(wj, vv[r], acc[h][r]);                                          \
            }                                                                                                   \
        }                                                                                                       \
        _Pragma("GCC unroll 4") for (int h = 0; h < HN; h++)                                                    \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                                                 \
                _mm512_storeu_ps(o + h * o_hs + c + 16 * r, acc[h][r]);                                         \
    }                                                                                                           \
    S_AVX512_FN static void NAME(float *o, int64_t o_hs, const float *w, int64_t w_hs, const T *v, int64_t vs,  \
                                 int32_t nk, int32_t d, int32_t nh) {                                           \
        for (int32_t c = 0; c < d; c += 64)                                                                     \
            for (int32_t h0 = 0; h0 < nh; h0 += 4) {                                                            \
                float *oh = o + h0 * o_hs;                                                                      \
                const float *wh = w + h0 * w_hs;                                                                \
                switch (nh - h0 < 4 ? nh - h0 : 4) {                                                            \
                case 4: NAME##_hn(oh, o_hs, wh, w_hs, v, vs, nk, c, 4); break;                                  \
                case 3: NAME##_hn(oh, o_hs, wh, w_hs, v, vs, nk, c, 3); break;                                  \
                case 2: NAME##_hn(oh, o_hs, wh, w_hs, v, vs, nk, c, 2); break;                                  \
                default: NAME##_hn(oh, o_hs, wh, w_hs, v, vs, nk, c, 1); break;                                 \
                }                                                                                               \
            }                                                                                                   \
    }
S_VACC_GQA_AVX512(s_vacc_gqa_avx512, float, S_LD16_F32)
S_VACC_GQA_AVX512(s_vacc_gqa_avx512_f16, wg_half, S_LD16_F16)
S_VACC_GQA_AVX512(s_vacc_gqa_avx512_q8, wg_block_q8_0, S_LD16_Q8)

/* Sum of x[i]^2 (squares rounded to float, as the scalar loop) and sum of x[i],
 * both in double; i < n8 (n8 % 8 == 0). */
S_AVX2_FN static void s_sums_avx2(const float *x, int64_t n8, double *sq, double *sm) {
    __m256d q0 = _mm256_setzero_pd(), q1 = q0, s0 = q0, s1 = q0;
    for (int64_t i = 0; i < n8; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 v2 = _mm256_mul_ps(v, v);
        q0 = _mm256_add_pd(q0, _mm256_cvtps_pd(_mm256_castps256_ps128(v2)));
        q1 = _mm256_add_pd(q1, _mm256_cvtps_pd(_mm256_extractf128_ps(v2, 1)));
        if (sm) {
            s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
        }
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(q0, q1));
    *sq = (t[0] + t[1]) + (t[2] + t[3]);
    if (sm) {
        _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
        *sm = (t[0] + t[1]) + (t[2] + t[3]);
    }
}

/* x[i] = (x[i] - sub) * s (* w[i]) (+ b[i]) for i < n8. */
S_AVX2_FN static void s_affine_avx2(float *x, int64_t n8, float sub, float s, const float *w, const float *b) {
    const __m256 vs = _mm256_set1_ps(s), vsub = _mm256_set1_ps(sub);
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vsub), vs);
        if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        if (b) v = _mm256_add_ps(v, _mm256_loadu_ps(b + i));
        _mm256_storeu_ps(x + i, v);
    }
}

/* s_silu_avx2 sixteen lanes at a time, bitwise the same per element; does
 * the whole groups of 16 of i < n8 and returns how many elements it did. */
S_AVX512_FN static int64_t s_silu_avx512(float *g, const float *up, int64_t n8) {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n8; i += 16) {
        const __m512 x = _mm512_loadu_ps(g + i);
        __m512 y = _mm512_div_ps(x, _mm512_add_ps(one, s_exp16(_mm512_sub_ps(zero, x))));
        if (up) y = _mm512_mul_ps(y, _mm512_loadu_ps(up + i));
        _mm512_storeu_ps(g + i, y);
    }
    return i;
}

/* gate[i] = silu(gate[i]) (* up[i]) for i < n8. */
S_AVX2_FN static void s_silu_avx2(float *g, const float *up, int64_t n8) {
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (int64_t i = 0; i < n8; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        __m256 y = _mm256_div_ps(x, _mm256_add_ps(one, s_exp8(_mm256_sub_ps(zero, x))));
        if (up) y = _mm256_mul_ps(y, _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(g + i, y);
    }
}
#endif /* S_X86 */

/* ------------------------------------------------------------------------ */
/* Norms                                                                     */
/* ------------------------------------------------------------------------ */
/* ---- row-wise ops over a batch, split across the pool ----
 * Tokens (rows, elements) are independent and each gets the same operations
 * wherever it falls, so a call split into parts gives the same bits as one.
 * A part is a range of units; threads take parts from lanes (wg_lanes_t):
 * thread i starts at unit ~i*n/nth, so the rows a pass writes are, as a
 * rule, the rows the same core quantizes for the next product (its
 * quantization phase claims rows the same way) and reads in the next pass:
 * ~3% faster c=32 decode than parts from one shared counter, which sent
 * most rows to the other core between passes. */
typedef struct {
    void (*fn)(void *arg, int64_t u0, int64_t u1); /* units [u0, u1) */
    void *arg;
    int64_t n, part;        /* units, units per part */
    wg_lanes_t lanes;       /* parts */
} s_par_t;

static void s_par_worker(void *vctx, int ith, int nth) {
    (void)nth;
    s_par_t *p = vctx;
    int64_t k0, k;
    while ((k = wg_lanes_claim(&p->lanes, ith, 1, NULL, NULL, &k0)) > 0) {
        const int64_t u0 = k0 * p->part, u1 = (k0 + k) * p->part;
        p->fn(p->arg, u0, u1 < p->n ? u1 : p->n);
    }
}

/* fn over units [0, n): on the pool when there are at least 2 parts of
 * `min_part` units per thread (a wake-up and join cost a few microseconds),
 * else on the caller; parts are multiples of `align` units. */
static void s_par(void *ctx, int64_t n, int64_t min_part, int64_t align, void (*fn)(void *, int64_t, int64_t),
                  void *arg) {
    wg_pool_t *pool = ctx;
    const int nth = pool ? wg_pool_size(pool) : 1;
    if (nth < 2 || n < 2 * (int64_t)nth * min_part) {
        fn(arg, 0, n);
        return;
    }
    s_par_t p = {.fn = fn, .arg = arg, .n = n};
    p.part = (n + 4 * (int64_t)nth - 1) / (4 * (int64_t)nth); /* ~4 parts per thread */
    if (p.part < min_part) p.part = min_part;
    p.part = (p.part + align - 1) / align * align;
    wg_lanes_init(&p.lanes, (n + p.part - 1) / p.part, nth);
    wg_pool_run_any(pool, s_par_worker, &p);
}

static void s_norm_rows(wg_norm_kind_t kind, float *x, int64_t n_rows, int64_t n, int64_t stride, const float *w,
                        const float *b, float eps) {
    const s_level_t lv = s_level();
    const int64_t n8 = lv == S_SCALAR ? 0 : n / 8 * 8;
    if (kind == WG_NORM_LAYER_NOPARAM) w = b = NULL;
    for (int64_t r = 0; r < n_rows; r++) {
        float *v = x + r * stride;
        double sq = 0.0, sm = 0.0;
        float mean = 0.0f;
        if (kind == WG_NORM_RMS) {
#if S_X86
            if (n8) s_sums_avx2(v, n8, &sq, NULL);
#endif
            for (int64_t i = n8; i < n; i++) sq += (double)(v[i] * v[i]);
        } else {
            /* Two passes as ggml: mean, then the variance of the centred row. */
#if S_X86
            if (n8) s_sums_avx2(v, n8, &sq, &sm);
#endif
            for (int64_t i = n8; i < n; i++) sm += (double)v[i];
            mean = (float)(sm / (double)n);
            sq = 0.0;
            for (int64_t i = 0; i < n; i++) {
                const float c = v[i] - mean;
                sq += (double)(c * c);
            }
        }
        const float scale = 1.0f / sqrtf((float)(sq / (double)n) + eps);
#if S_X86
        if (n8) s_affine_avx2(v, n8, mean, scale, w, b);
#endif
        for (int64_t i = n8; i < n; i++) {
            float y = (v[i] - mean) * scale;
            if (w) y *= w[i];
            if (b) y += b[i];
            v[i] = y;
        }
    }
}

typedef struct {
    wg_norm_kind_t kind;
    float *x;
    int64_t n, stride;
    const float *w, *b;
    float eps;
} s_norm_args_t;

static void s_norm_part(void *arg, int64_t r0, int64_t r1) {
    const s_norm_args_t *a = arg;
    s_norm_rows(a->kind, a->x + r0 * a->stride, r1 - r0, a->n, a->stride, a->w, a->b, a->eps);
}

static void s_norm(void *ctx, wg_norm_kind_t kind, float *x, int64_t n_rows, int64_t n, int64_t stride,
                   const float *w, const float *b, float eps) {
    s_norm_args_t a = {.kind = kind, .x = x, .n = n, .stride = stride, .w = w, .b = b, .eps = eps};
    /* ~2 us of rows per part at least */
    s_par(ctx, n_rows, n > 0 ? (4096 + n - 1) / n : 1, 1, s_norm_part, &a);
}

/* ------------------------------------------------------------------------ */
/* Rope                                                                      */
/* ------------------------------------------------------------------------ */
/* The cos/sin pairs of position `pos` (n_rot/2 of them, interleaved) into cs. */
static void s_rope_angles(const wg_rope_t *r, int32_t pos, float *cs) {
    const int32_t nr = r->n_rot;
    const float theta_scale = powf(r->base, -2.0f / (float)nr);
    const float mscale = r->ext_factor != 0.0f ? 1.0f + 0.1f * logf(1.0f / r->freq_scale) : 1.0f;
    /* Same incremental angle as ggml: theta_i = p * theta_scale^i, in float. */
    float theta = (float)pos;
    for (int32_t i = 0; i < nr / 2; i++) {
        const float ff = r->freq_factors ? r->freq_factors[i] : 1.0f;
        const float extrap = theta / ff;
        float th = r->freq_scale * extrap;
        float ms = r->attn_factor;
        if (r->ext_factor != 0.0f) {
            /* YaRN as ggml: ramp from interpolated to extrapolated angles. */
            const float y = ((float)i - r->corr_dims[0]) / fmaxf(0.001f, r->corr_dims[1] - r->corr_dims[0]);
            const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * r->ext_factor;
            th = th * (1.0f - ramp) + extrap * ramp;
            ms *= mscale;
        }
        cs[2 * i] = cosf(th) * ms;
        cs[2 * i + 1] = sinf(th) * ms;
        theta *= theta_scale;
    }
}

/* ---- per-thread cache of rope angles ----
 * The angles are the bulk of rope's cost (n_rot/2 cosf + sinf per token,
 * against a few multiplies per element for the rotation), and
 * a step asks for the same ones 2 * n_layer times: q and k of every layer at
 * the token's position, with one set of parameters in all layers (two where
 * local and global layers differ). So each thread keeps the angles of the
 * last positions it roped, direct-mapped by position, for two parameter
 * sets; a hit copies nothing and computes nothing, and a miss computes what
 * s_rope_angles always did, so the bits never depend on the cache. The
 * parameters are compared by value, the frequency factors too (a model
 * freed and another loaded at the same address must not find stale angles). */
#define S_ROPE_SLOTS 64   /* positions per parameter set */
#define S_ROPE_MAX_ROT 256 /* n_rot up to this is cached */
typedef struct {
    bool used;
    int32_t n_rot;
    float base, freq_scale, ext_factor, attn_factor, corr_dims[2];
    bool has_ff;
    float ff[S_ROPE_MAX_ROT / 2];
    int32_t pos[S_ROPE_SLOTS]; /* -1: empty */
    float cs[S_ROPE_SLOTS][S_ROPE_MAX_ROT];
} s_rope_set_t;

typedef struct {
    s_rope_set_t set[2];
    int next; /* set replaced on the next miss of both */
} s_rope_cache_t;

/* The buffer this thread's cache was set up in (wg_tls_scratch's contents
 * are undefined until then). */
static _Thread_local void *s_rope_cache_buf;

static bool s_rope_set_is(const s_rope_set_t *c, const wg_rope_t *r) {
    if (!c->used || c->n_rot != r->n_rot || c->base != r->base || c->freq_scale != r->freq_scale ||
        c->ext_factor != r->ext_factor || c->attn_factor != r->attn_factor || c->corr_dims[0] != r->corr_dims[0] ||
        c->corr_dims[1] != r->corr_dims[1] || c->has_ff != (r->freq_factors != NULL))
        return false;
    return !r->freq_factors || memcmp(c->ff, r->freq_factors, (size_t)(r->n_rot / 2) * sizeof(float)) == 0;
}

/* This thread's angle set for r, found or (re)started; NULL when r is not
 * cached (n_rot too large, no memory): the caller computes into its own. */
static s_rope_set_t *s_rope_set(const wg_rope_t *r) {
    if (r->n_rot > S_ROPE_MAX_ROT || r->n_rot < 2) return NULL;
    s_rope_cache_t *c = wg_tls_scratch(WG_TLS_ROPE, sizeof *c);
    if (!c) return NULL;
    if (c != s_rope_cache_buf) {
        c->set[0].used = c->set[1].used = false;
        c->next = 0;
        s_rope_cache_buf = c;
    }
    for (int i = 0; i < 2; i++)
        if (s_rope_set_is(&c->set[i], r)) return &c->set[i];
    s_rope_set_t *s = &c->set[c->next];
    c->next ^= 1;
    *s = (s_rope_set_t){.used = true, .n_rot = r->n_rot, .base = r->base, .freq_scale = r->freq_scale,
                        .ext_factor = r->ext_factor, .attn_factor = r->attn_factor,
                        .corr_dims = {r->corr_dims[0], r->corr_dims[1]}, .has_ff = r->freq_factors != NULL};
    if (r->freq_factors) memcpy(s->ff, r->freq_factors, (size_t)(r->n_rot / 2) * sizeof(float));
    for (int i = 0; i < S_ROPE_SLOTS; i++) s->pos[i] = -1;
    return s;
}

/* The angles of position p: from the set (computed there on a miss), or
 * computed into own when set is NULL. */
static const float *s_rope_cs(const wg_rope_t *r, s_rope_set_t *set, int32_t p, float *own) {
    if (!set || p < 0) {
        s_rope_angles(r, p, own);
        return own;
    }
    const int k = p % S_ROPE_SLOTS;
    if (set->pos[k] != p) {
        s_rope_angles(r, p, set->cs[k]);
        set->pos[k] = p;
    }
    return set->cs[k];
}

static void s_rope_toks(const wg_rope_t *r, float *x, int64_t n_tok, int32_t n_heads, int32_t head_dim,
                        int64_t stride, const int32_t *pos) {
    const int32_t nr = r->n_rot;
    float own[2 * 512]; /* cos/sin per pair; head dims beyond 1024 are refused at load */
    WG_ASSERT(nr <= 1024 && nr <= head_dim);
    s_rope_set_t *set = s_rope_set(r);
#if S_X86
    const bool vec = s_level() != S_SCALAR;
#endif
    for (int64_t t = 0; t < n_tok; t++) {
        const float *cs = s_rope_cs(r, set, pos[t], own);
        /* The rotation itself is a few multiplies per pair (the angles
         * dominate, hence their cache); the compiler vectorizes the NEOX
         * halves loop, and s_rope_norm_avx2 does the interleaved pairs. */
        for (int32_t h = 0; h < n_heads; h++) {
            float *v = x + t * stride + (int64_t)h * head_dim;
#if S_X86
            if (r->style == WG_ROPE_NORM && vec && nr % 8 == 0) {
                s_rope_norm_avx2(v, cs, nr);
                continue;
            }
#endif
            if (r->style == WG_ROPE_NORM) {
                for (int32_t i = 0; i < nr / 2; i++) {
                    const float c = cs[2 * i], s = cs[2 * i + 1];
                    const float x0 = v[2 * i], x1 = v[2 * i + 1];
                    v[2 * i] = x0 * c - x1 * s;
                    v[2 * i + 1] = x0 * s + x1 * c;
                }
            } else {
                float *v1 = v + nr / 2;
                for (int32_t i = 0; i < nr / 2; i++) {
                    const float c = cs[2 * i], s = cs[2 * i + 1];
                    const float x0 = v[i], x1 = v1[i];
                    v[i] = x0 * c - x1 * s;
                    v1[i] = x0 * s + x1 * c;
                }
            }
        }
    }
}

typedef struct {
    const wg_rope_t *r;
    float *x;
    int32_t n_heads, head_dim;
    int64_t stride;
    const int32_t *pos;
} s_rope_args_t;

static void s_rope_part(void *arg, int64_t t0, int64_t t1) {
    const s_rope_args_t *a = arg;
    s_rope_toks(a->r, a->x + t0 * a->stride, t1 - t0, a->n_heads, a->head_dim, a->stride, a->pos + t0);
}

static void s_rope(void *ctx, const wg_rope_t *r, float *x, int64_t n_tok, int32_t n_heads,
                   int32_t head_dim, int64_t stride, const int32_t *pos) {
    if (r->style == WG_ROPE_NONE || r->n_rot <= 0) return;
    s_rope_args_t a = {.r = r, .x = x, .n_heads = n_heads, .head_dim = head_dim, .stride = stride, .pos = pos};
    /* a token's angles alone are n_rot/2 sincos: ~1 us per 32 */
    s_par(ctx, n_tok, 4, 1, s_rope_part, &a);
}

/* ------------------------------------------------------------------------ */
/* Attention                                                                 */
/* ------------------------------------------------------------------------ */

/* Score rows kept on the stack up to this many floats per worker (32 KiB);
 * beyond, in the thread's grow-only scratch (wg_tls_scratch). */
#define S_STACK_SCORES 8192
/* Score rows of one item, at most this many floats (256 KiB, a quarter of
 * this machine's L2): the bound on kv heads per item. Items that cover
 * every kv head walk each block's rows once, front to back, for all of
 * them; with the stack's 32 KiB as the bound, contexts past ~650 keys fell
 * to items of one kv head, each reading a quarter of every row (a 128-byte
 * slice every 512 bytes), and attention at 2048 keys ran at 14 GB/s of K/V
 * instead of 24 (56.7 -> 32.6 ms a c=32 step of the 100M model's shape). */
#define S_ITEM_SCORES 65536
/* Below this many multiply-adds a call runs on the caller alone: waking the
 * pool costs more than it saves for short decode steps. */
#define S_ATTN_PAR_MIN 32768
/* Query heads claimed per grab from the shared counter, at least. */
#define S_ATTN_GRAB_HEADS 4

typedef struct {
    const wg_attn_args_t *a;  /* the call */
    s_level_t lv;             /* SIMD path (fixed for the call) */
    wg_kv_type_t kt;          /* the cache's element type */
    size_t k_sl, v_sl;        /* bytes of one kv head's K / V slice of a row */
    size_t k_rb, v_rb;        /* bytes between consecutive positions' K / V rows inside a block */
    int32_t bt;               /* cache block tokens */
    int64_t ks, vs;           /* the same in units of the element type (Q8_0: blocks) */
    int32_t grp;              /* query heads per kv head */
    int32_t hk_item;          /* kv heads per item (an item is one token x hk_item kv heads x grp) */
    int32_t items_tok;        /* items per token: ceil(n_head_kv / hk_item) */
    int32_t grab;             /* items per grab */
    int64_t sc_n;             /* floats of one query head's score row: keys rounded up to 8, + 16 */
    int32_t pf_dist;          /* slices prefetched ahead of use (0 = none) */
    int32_t max_len;          /* longest key range of any token */
    int32_t max_blocks;       /* most blocks any token's key range touches */
    wg_lanes_t lanes;         /* items of s_attention's run (the fused decode step claims its own way) */
    _Atomic int failed;       /* a worker could not get its score buffer */
} s_attn_job_t;

/* Element i of a Q8_0 row as the SIMD loaders widen it: d * q. */
static inline float s_q8_at(const wg_block_q8_0 *row, int32_t i) {
    return (float)row[i / WG_QK8_0].qs[i % WG_QK8_0] * wg_fp16_to_fp32(row[i / WG_QK8_0].d);
}

/* Scores of one query head over keys [j, j+nk) of one block (row j at k). */
static void s_attn_scores(const s_attn_job_t *job, const float *q, const void *k, int32_t nk, float *out) {
    const wg_attn_args_t *a = job->a;
    const int32_t d = a->head_dim;
#if S_X86
    if (job->lv == S_AVX512 && d % 16 == 0) {
        if (job->kt == WG_KV_F16) s_scores_avx512_f16(q, k, job->ks, nk, d, a->scale, out);
        else if (job->kt == WG_KV_Q8_0) s_scores_avx512_q8(q, k, job->ks, nk, d, a->scale, out);
        else s_scores_avx512(q, k, job->ks, nk, d, a->scale, out);
        return;
    }
    if (job->lv != S_SCALAR && d % 8 == 0) {
        if (job->kt == WG_KV_F16) s_scores_avx2_f16(q, k, job->ks, nk, d, a->scale, out);
        else if (job->kt == WG_KV_Q8_0) s_scores_avx2_q8(q, k, job->ks, nk, d, a->scale, out);
        else s_scores_avx2(q, k, job->ks, nk, d, a->scale, out);
        return;
    }
#endif
    for (int32_t jj = 0; jj < nk; jj++) {
        float s = 0.0f;
        if (job->kt == WG_KV_F16) {
            const wg_half *kk = (const wg_half *)k + jj * job->ks;
            for (int32_t i = 0; i < d; i++) s += q[i] * wg_fp16_to_fp32(kk[i]);
        } else if (job->kt == WG_KV_Q8_0) {
            const wg_block_q8_0 *kk = (const wg_block_q8_0 *)k + jj * job->ks;
            for (int32_t i = 0; i < d; i++) s += q[i] * s_q8_at(kk, i);
        } else {
            const float *kk = (const float *)k + jj * job->ks;
            for (int32_t i = 0; i < d; i++) s += q[i] * kk[i];
        }
        out[jj] = s * a->scale;
    }
}

/* o += sum_jj w[jj] * V[j + jj] over one block's keys (row j at v). */
static void s_attn_values(const s_attn_job_t *job, const float *w, const void *v, int32_t nk, float *o) {
    const int32_t d = job->a->head_dim_v;
#if S_X86
    if (job->lv == S_AVX512 && d % 16 == 0) {
        if (job->kt == WG_KV_F16) s_vacc_avx512_f16(o, w, v, job->vs, nk, d);
        else if (job->kt == WG_KV_Q8_0) s_vacc_avx512_q8(o, w, v, job->vs, nk, d);
        else s_vacc_avx512(o, w, v, job->vs, nk, d);
        return;
    }
    if (job->lv != S_SCALAR && d % 8 == 0) {
        if (job->kt == WG_KV_F16) s_vacc_avx2_f16(o, w, v, job->vs, nk, d);
        else if (job->kt == WG_KV_Q8_0) s_vacc_avx2_q8(o, w, v, job->vs, nk, d);
        else s_vacc_avx2(o, w, v, job->vs, nk, d);
        return;
    }
#endif
    for (int32_t jj = 0; jj < nk; jj++) {
        if (job->kt == WG_KV_F16) {
            const wg_half *vv = (const wg_half *)v + jj * job->vs;
            for (int32_t i = 0; i < d; i++) o[i] += w[jj] * wg_fp16_to_fp32(vv[i]);
        } else if (job->kt == WG_KV_Q8_0) {
            const wg_block_q8_0 *vv = (const wg_block_q8_0 *)v + jj * job->vs;
            for (int32_t i = 0; i < d; i++) o[i] += w[jj] * s_q8_at(vv, i);
        } else {
            const float *vv = (const float *)v + jj * job->vs;
            for (int32_t i = 0; i < d; i++) o[i] += w[jj] * vv[i];
        }
    }
}

/* The grp query heads of one kv head at once (scores of head g at
 * out + g*sc_n): true when a shared-slice kernel ran, false when the caller
 * goes head by head (one head per kv head, or no AVX-512 path for the head
 * size). Bitwise the same numbers either way. */
static bool s_attn_scores_gqa(const s_attn_job_t *job, const float *q, const void *k, int32_t nk, float *out) {
#if S_X86
    const wg_attn_args_t *a = job->a;
    const int32_t d = a->head_dim;
    if (job->grp < 2 || job->lv != S_AVX512 || d % 16) return false;
    if (job->kt == WG_KV_F16)
        s_scores_gqa_avx512_f16(q, d, k, job->ks, nk, d, a->scale, out, job->sc_n, job->grp);
    else if (job->kt == WG_KV_Q8_0)
        s_scores_gqa_avx512_q8(q, d, k, job->ks, nk, d, a->scale, out, job->sc_n, job->grp);
    else
        s_scores_gqa_avx512(q, d, k, job->ks, nk, d, a->scale, out, job->sc_n, job->grp);
    return true;
#else
    (void)job, (void)q, (void)k, (void)nk, (void)out;
    return false;
#endif
}

/* Values of the grp query heads of one kv head (weights of head g at
 * w + g*sc_n, output at o + g*head_dim_v); as s_attn_scores_gqa. */
static bool s_attn_values_gqa(const s_attn_job_t *job, const float *w, const void *v, int32_t nk, float *o) {
#if S_X86
    const int32_t d = job->a->head_dim_v;
    if (job->grp < 2 || job->lv != S_AVX512 || d % 64) return false;
    if (job->kt == WG_KV_F16)
        s_vacc_gqa_avx512_f16(o, d, w, job->sc_n, v, job->vs, nk, d, job->grp);
    else if (job->kt == WG_KV_Q8_0)
        s_vacc_gqa_avx512_q8(o, d, w, job->sc_n, v, job->vs, nk, d, job->grp);
    else
        s_vacc_gqa_avx512(o, d, w, job->sc_n, v, job->vs, nk, d, job->grp);
    return true;
#else
    (void)job, (void)w, (void)v, (void)nk, (void)o;
    return false;
#endif
}

/* Prefetch n rows (stride bytes apart) of `bytes` bytes each, from p. */
static inline void s_prefetch_rows(const char *p, int32_t n, size_t stride, size_t bytes) {
    for (int32_t r = 0; r < n; r++)
        for (size_t b = 0; b < bytes; b += 64) {
#if S_X86
            /* volatile: GCC deems a function whose only effect is
             * __builtin_prefetch side-effect free and drops its calls. */
            __asm__ volatile("prefetcht0 %0" : : "m"(*(p + (size_t)r * stride + b)));
#else
            __builtin_prefetch(p + (size_t)r * stride + b, 0, 3);
#endif
        }
}

/* Softmax of one head's scores sc[0..n) in place (sc has room for n rounded
 * up to 8; the padding is set to -inf and ends up 0). */
static void s_attn_softmax(const s_attn_job_t *job, int32_t h, float *sc, int32_t n) {
    const wg_attn_args_t *a = job->a;
    if (a->softcap > 0.0f)
        for (int32_t j = 0; j < n; j++) sc[j] = a->softcap * tanhf(sc[j] / a->softcap);
    const int32_t n8 = (n + 7) / 8 * 8;
    for (int32_t j = n; j < n8; j++) sc[j] = -INFINITY; /* padding: exp gives 0 */
    float mx = -INFINITY;
    double sum = 0.0;
#if S_X86
    const bool vec = job->lv != S_SCALAR;
    const bool v512 = job->lv == S_AVX512;
    if (vec) {
        mx = v512 ? s_max_avx512(sc, n8) : s_max_avx2(sc, n8);
        if (a->sinks && a->sinks[h] > mx) mx = a->sinks[h];
        sum = v512 ? s_expsum_avx512(sc, n8, mx) : s_expsum_avx2(sc, n8, mx);
    } else
#endif
    {
        for (int32_t j = 0; j < n; j++) mx = sc[j] > mx ? sc[j] : mx;
        if (a->sinks && a->sinks[h] > mx) mx = a->sinks[h];
        for (int32_t j = 0; j < n; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += (double)sc[j];
        }
    }
    if (a->sinks) sum += (double)expf(a->sinks[h] - mx);
    const float inv = (float)(1.0 / sum);
#if S_X86
    if (v512)
        s_scale_avx512(sc, n8, inv);
    else if (vec)
        s_scale_avx2(sc, n8, inv);
    else
#endif
        for (int32_t j = 0; j < n; j++) sc[j] *= inv;
}

/* An item walks its cache "slices" in a fixed order: for each block of the
 * token's key range (bi = 0..nb-1) and each kv head of the item, the rows of
 * that head in that block — all K slices, then all V slices. Blocks sit
 * anywhere in the pool, so the hardware prefetchers cannot run ahead across
 * them; s_attn_prefetch asks for slice `s` (no-op past the end) a few slices
 * before it is used. The rows of every block are looked up once per item. */
typedef struct {
    int32_t p0, p;        /* key range [p0, p] */
    int32_t hk0, nh;      /* first kv head and kv heads of the item */
    int32_t nb;           /* blocks the range touches */
    const char **kb, **vb; /* [nb] first K / V row of the range in each block (row p0 in block 0) */
} s_walk_t;

/* Keys of block bi of the walk. */
static inline int32_t s_walk_keys(const s_attn_job_t *job, const s_walk_t *w, int32_t bi) {
    const int32_t b0 = w->p0 - w->p0 % job->bt;
    const int32_t j = bi == 0 ? w->p0 : b0 + bi * job->bt;
    const int32_t end = b0 + bi * job->bt + job->bt - 1;
    return (end < w->p ? end : w->p) - j + 1;
}

static void s_attn_prefetch(const s_attn_job_t *job, const s_walk_t *w, int64_t s) {
    const int64_t per = (int64_t)w->nb * w->nh;
    if (s >= 2 * per) return;
    const bool v = s >= per;
    if (v) s -= per;
    const int32_t bi = (int32_t)(s / w->nh), hk = w->hk0 + (int32_t)(s % w->nh);
    const size_t slice = v ? job->v_sl : job->k_sl, rb = v ? job->v_rb : job->k_rb;
    const char *row0 = (v ? w->vb : w->kb)[bi];
    const int32_t nk = s_walk_keys(job, w, bi);
    if (slice < 64 && (size_t)w->nh * slice + 64 >= rb) {
        /* The item's slices cover the rows (but for less than a line), so
         * the block's rows of its heads are one run of memory: each of the
         * block's nh slices asks for the next nh-th of it, line by line
         * (per-slice requests went back to the same lines once per head
         * when slices are narrower than a line, and spent a loop per row;
         * asking for the whole block at once stalled on the misses in
         * flight, 2.2 -> 3.2 ms a c=32 step). */
        const uintptr_t b = ((uintptr_t)row0 + (size_t)w->hk0 * slice) & ~(uintptr_t)63;
        const uintptr_t e = (uintptr_t)row0 + (size_t)(nk - 1) * rb + (size_t)(w->hk0 + w->nh) * slice;
        const uintptr_t lines = (e - b + 63) / 64, r = (uintptr_t)(hk - w->hk0);
        const uintptr_t l0 = lines * r / (uintptr_t)w->nh, l1 = lines * (r + 1) / (uintptr_t)w->nh;
        s_prefetch_rows((const char *)(b + 64 * l0), 1, 0, 64 * (l1 - l0));
        return;
    }
    s_prefetch_rows(row0 + (size_t)hk * slice, nk, rb, slice);
}

/* One item: token t, kv heads [hk0, hk1) and their grp query heads each:
 * softmax(q K^T * scale) V into the heads' output slots. Blocks go in the
 * outer loop and heads in the inner one, so each block's K (then V) rows are
 * read once, front to back, for every head of the item (GQA: a kv head's
 * slice serves all its query heads from L1). Each head's numbers are those of
 * the head alone: the same 8-key groups (from the token's own range), the
 * same softmax, the same key order in V — so how heads are grouped into
 * items, which depends on the batch, never changes them. `sc` holds
 * (hk1 - hk0) * grp rows of job->sc_n floats, `rows` 2 * job->max_blocks. */
static void s_attn_item(const s_attn_job_t *job, int64_t t, int32_t hk0, int32_t hk1, float *sc, const char **rows) {
    const wg_attn_args_t *a = job->a;
    const int32_t grp = job->grp, d = a->head_dim, dv = a->head_dim_v;
    const int32_t p = a->pos[t], seq = a->seq[t];
    const int32_t p0 = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
    const int32_t n = p - p0 + 1;
    const float *qt = a->q + t * a->q_stride;
    float *ot = a->out + t * (int64_t)a->n_head * dv;
    const int32_t b0 = p0 - p0 % job->bt;
    s_walk_t w = {.p0 = p0, .p = p, .hk0 = hk0, .nh = hk1 - hk0, .nb = (p - b0) / job->bt + 1,
                  .kb = rows, .vb = rows + job->max_blocks};
    WG_ASSERT(w.nb <= job->max_blocks);
    for (int32_t bi = 0; bi < w.nb; bi++) {
        const int32_t j = bi == 0 ? p0 : b0 + bi * job->bt;
        w.kb[bi] = wg_kv_k_row(a->kv, a->layer, seq, j);
        w.vb[bi] = wg_kv_v_row(a->kv, a->layer, seq, j);
    }
    const int64_t pf = job->pf_dist, per = (int64_t)w.nb * w.nh;
    for (int64_t s = 0; s < pf; s++) s_attn_prefetch(job, &w, s);
    int64_t sl = 0; /* slice index of the walk */
    for (int32_t bi = 0, j = p0; bi < w.nb; bi++) {
        const int32_t nk = s_walk_keys(job, &w, bi);
        for (int32_t hk = hk0; hk < hk1; hk++, sl++) {
            if (pf) s_attn_prefetch(job, &w, sl + pf);
            const void *k = w.kb[bi] + (size_t)hk * job->k_sl;
            const int32_t h = hk * grp;
            float *sh = sc + (h - hk0 * grp) * job->sc_n + (j - p0);
            if (!s_attn_scores_gqa(job, qt + (int64_t)h * d, k, nk, sh))
                for (int32_t g = 0; g < grp; g++)
                    s_attn_scores(job, qt + (int64_t)(h + g) * d, k, nk, sh + g * job->sc_n);
        }
        j += nk;
    }
    for (int32_t h = hk0 * grp; h < hk1 * grp; h++) {
        s_attn_softmax(job, h, sc + (h - hk0 * grp) * job->sc_n, n);
        memset(ot + (int64_t)h * dv, 0, (size_t)dv * sizeof(float));
    }
    sl = per;
    for (int32_t bi = 0, j = p0; bi < w.nb; bi++) {
        const int32_t nk = s_walk_keys(job, &w, bi);
        for (int32_t hk = hk0; hk < hk1; hk++, sl++) {
            if (pf) s_attn_prefetch(job, &w, sl + pf);
            const void *v = w.vb[bi] + (size_t)hk * job->v_sl;
            const int32_t h = hk * grp;
            const float *wh = sc + (h - hk0 * grp) * job->sc_n + (j - p0);
            if (!s_attn_values_gqa(job, wh, v, nk, ot + (int64_t)h * dv))
                for (int32_t g = 0; g < grp; g++)
                    s_attn_values(job, wh + g * job->sc_n, v, nk, ot + (int64_t)(h + g) * dv);
        }
        j += nk;
    }
}

/* Block row pointers kept on the stack up to this many blocks per item. */
#define S_STACK_BLOCKS 512

/* Claim items of `job` (grab at a time) until none is left, from lanes
 * (thread ith first takes the tokens ~ith*n/nth on, whose q rows its core
 * roped and whose outputs its core quantizes next) or, lanes NULL, from
 * *next; returns the items this thread computed, or -1 when it could not
 * get its score buffer (then it computed none). */
static int64_t s_attn_items(const s_attn_job_t *job, _Atomic int64_t *next, wg_lanes_t *lanes, int ith) {
    const wg_attn_args_t *a = job->a;
    float stack_sc[S_STACK_SCORES];
    const char *stack_rows[2 * S_STACK_BLOCKS];
    float *sc = stack_sc;
    const char **rows = stack_rows;
    int64_t done = 0;
    const int64_t need = (int64_t)job->hk_item * job->grp * job->sc_n;
    if (need > S_STACK_SCORES) sc = wg_tls_scratch(WG_TLS_ATTN, (size_t)need * sizeof(float));
    if (job->max_blocks > S_STACK_BLOCKS) rows = malloc(2 * (size_t)job->max_blocks * sizeof *rows);
    if (!sc || !rows) {
        done = -1;
        goto out;
    }
    const int64_t n_items = a->n_tok * job->items_tok;
    for (;;) {
        int64_t it0, it1;
        if (lanes) {
            const int64_t k = wg_lanes_claim(lanes, ith, job->grab, NULL, NULL, &it0);
            if (k == 0) break;
            it1 = it0 + k;
        } else {
            it0 = atomic_fetch_add_explicit(next, job->grab, memory_order_relaxed);
            if (it0 >= n_items) break;
            it1 = it0 + job->grab < n_items ? it0 + job->grab : n_items;
        }
        for (int64_t it = it0; it < it1; it++) {
            const int32_t hk0 = (int32_t)(it % job->items_tok) * job->hk_item;
            const int32_t hk1 = hk0 + job->hk_item < a->n_head_kv ? hk0 + job->hk_item : a->n_head_kv;
            s_attn_item(job, it / job->items_tok, hk0, hk1, sc, rows);
        }
        done += it1 - it0;
    }
out:
    if (rows != stack_rows) free(rows);
    return done;
}

static void s_attn_worker(void *vctx, int ith, int nth) {
    (void)nth;
    s_attn_job_t *job = vctx;
    if (s_attn_items(job, NULL, &job->lanes, ith) < 0) atomic_store(&job->failed, 1);
}

/* The set-up of one attention call for nth threads: key ranges, items and
 * grabs (the failure flag cleared; s_attention sets up the lanes). Returns
 * the work in multiply-adds. */
static int64_t s_attn_setup(s_attn_job_t *job, const wg_attn_args_t *a, int nth) {
    const wg_kv_type_t kt = wg_kv_type(a->kv);
    *job = (s_attn_job_t){.a = a, .lv = s_level(), .kt = kt, .k_sl = wg_kv_row_bytes(kt, a->head_dim),
                          .v_sl = wg_kv_row_bytes(kt, a->head_dim_v), .k_rb = wg_kv_row_bytes(kt, wg_kv_k_dim(a->kv)),
                          .v_rb = wg_kv_row_bytes(kt, wg_kv_v_dim(a->kv)), .bt = wg_kv_block_tokens(a->kv),
                          .grp = a->n_head / a->n_head_kv, .max_len = 0};
    atomic_init(&job->failed, 0);
    int64_t work = 0;
    for (int64_t t = 0; t < a->n_tok; t++) {
        const int32_t p = a->pos[t];
        const int32_t len = a->window > 0 && a->window < p + 1 ? a->window : p + 1;
        if (len > job->max_len) job->max_len = len;
        const int32_t p0 = p - len + 1, nb = (p - (p0 - p0 % job->bt)) / job->bt + 1;
        if (nb > job->max_blocks) job->max_blocks = nb;
        work += (int64_t)len;
    }
    work *= (int64_t)a->n_head * (a->head_dim + a->head_dim_v);
    /* Rows of neighbouring positions inside a block follow each other (wg_kv.h). */
    job->ks = kt == WG_KV_Q8_0 ? wg_kv_k_dim(a->kv) / WG_QK8_0 : wg_kv_k_dim(a->kv);
    job->vs = kt == WG_KV_Q8_0 ? wg_kv_v_dim(a->kv) / WG_QK8_0 : wg_kv_v_dim(a->kv);
    job->sc_n = ((int64_t)job->max_len + 7) / 8 * 8 + 16;
    /* Asking 4 slices ahead measured 1.5x faster decode attention for F16.
     * F32 went without for a while (on the 12/12-head shape the hardware
     * prefetchers nearly keep up: 11.4 vs 10.6 ms a step with), but on the
     * grouped-query shape it is 1.6x faster with them (32 seqs x 192 keys,
     * 12/4 heads: 6.9 -> 4.2 ms a step; c=32 decode of the 100M model with
     * an F32 cache 1447-1509 -> 1686-1701 tok/s; c=1 unchanged). */
    job->pf_dist = 4;
    /* As many kv heads per item as the score rows allow on the stack, while
     * leaving at least 2 items per thread when the call has that many heads
     * (a decode token: 12 heads in 4 items of 3 for 2 threads, each item one
     * run of slices the prefetch keeps ahead of; items of one head started
     * cold 12 times a layer, and measured ~5% slower decode with the
     * next-step prefetch). */
    int64_t hk = S_ITEM_SCORES / ((int64_t)job->grp * job->sc_n);
    const int64_t par = a->n_tok * a->n_head_kv / (2 * nth);
    if (hk > par) hk = par;
    if (hk > a->n_head_kv) hk = a->n_head_kv;
    if (hk < 1) hk = 1;
    job->hk_item = (int32_t)hk;
    job->items_tok = (a->n_head_kv + job->hk_item - 1) / job->hk_item;
    const int32_t heads_item = job->hk_item * job->grp;
    job->grab = heads_item >= S_ATTN_GRAB_HEADS ? 1 : S_ATTN_GRAB_HEADS / heads_item;
    /* Still at least 4 grabs per thread: one decode token has only n_head_kv
     * items, and 12 heads in grabs of 4 split 8:4 between two threads. */
    const int64_t n_items = a->n_tok * job->items_tok;
    if (job->grab > 1 && n_items / job->grab < 4 * (int64_t)nth)
        job->grab = n_items / (4 * nth) > 1 ? (int32_t)(n_items / (4 * nth)) : 1;
    return work;
}

static wg_status s_attention(void *ctx, const wg_attn_args_t *a) {
    WG_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0);
    if (a->n_tok == 0) return WG_OK;
    wg_pool_t *pool = ctx;
    s_attn_job_t job;
    int nth = pool ? wg_pool_size(pool) : 1;
    /* The work does not depend on the thread count; the item split does. */
    if (s_attn_setup(&job, a, nth) < S_ATTN_PAR_MIN && nth > 1) {
        nth = 1;
        s_attn_setup(&job, a, nth);
    }
    const bool par = nth > 1 && a->n_tok * job.items_tok > 1;
    wg_lanes_init(&job.lanes, a->n_tok * job.items_tok, par ? nth : 1);
    if (par)
        wg_pool_run_any(pool, s_attn_worker, &job);
    else
        s_attn_worker(&job, 0, 1);
    if (atomic_load(&job.failed))
        return wg_error(WG_ERR_NOMEM, "attention: no memory for %lld scores",
                        (long long)job.hk_item * job.grp * job.sc_n);
    return WG_OK;
}

/* ------------------------------------------------------------------------ */
/* Activations                                                               */
/* ------------------------------------------------------------------------ */

/* ggml evaluates GELU through a table indexed by the fp16 bits of x, so the
 * result is a function of f16(x): the same table gives the same numbers. */
static wg_half s_gelu_tab[1 << 16];
static pthread_once_t s_gelu_once = PTHREAD_ONCE_INIT;

static void s_gelu_init(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) {
        const float xh = wg_fp16_to_fp32((wg_half)h);
        const float y = 0.5f * xh * (1.0f + tanhf(0.79788456080286535587989211986876f * xh *
                                                  (1.0f + 0.044715f * xh * xh)));
        s_gelu_tab[h] = wg_fp32_to_fp16(y);
    }
}

float wg_gelu_ggml(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    pthread_once(&s_gelu_once, s_gelu_init);
    return wg_fp16_to_fp32(s_gelu_tab[wg_fp32_to_fp16(x)]);
}

static inline float s_act1(wg_act_t act, float x) {
    switch (act) {
    case WG_ACT_SILU: return x / (1.0f + expf(-x));
    case WG_ACT_GELU: return wg_gelu_ggml(x);
    case WG_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case WG_ACT_RELU2: return x > 0.0f ? x * x : 0.0f;
    case WG_ACT_SWIGLU_OAI: return x / (1.0f + expf(-1.702f * x));
    }
    return x;
}

static void s_act_elems(wg_act_t act, float *gate, const float *up, int64_t n) {
    if (act == WG_ACT_SWIGLU_OAI && up) {
        for (int64_t i = 0; i < n; i++) {
            const float x = fminf(gate[i], 7.0f);
            const float y = fminf(fmaxf(up[i], -7.0f), 7.0f);
            gate[i] = x / (1.0f + expf(1.702f * (-x))) * (y + 1.0f);
        }
        return;
    }
    int64_t i0 = 0;
#if S_X86
    const s_level_t lv = s_level();
    if (act == WG_ACT_SILU && lv != S_SCALAR) {
        /* `gate` is [n_tokens][width] flattened, so which elements would fall in
         * a scalar tail depends on n_tokens. Batch invariance needs one formula
         * per element: the tail goes through the same 8-lane kernel, padded
         * (the 16-lane kernel gives each element the same bits). */
        i0 = n / 8 * 8;
        const int64_t i16 = lv == S_AVX512 ? s_silu_avx512(gate, up, i0) : 0;
        s_silu_avx2(gate + i16, up ? up + i16 : NULL, i0 - i16);
        if (i0 < n) {
            float g8[8] = {0}, u8[8] = {0};
            memcpy(g8, gate + i0, (size_t)(n - i0) * sizeof(float));
            if (up) memcpy(u8, up + i0, (size_t)(n - i0) * sizeof(float));
            s_silu_avx2(g8, up ? u8 : NULL, 8);
            memcpy(gate + i0, g8, (size_t)(n - i0) * sizeof(float));
            i0 = n;
        }
    }
#endif
    if (act == WG_ACT_GELU) {
        pthread_once(&s_gelu_once, s_gelu_init);
        for (int64_t i = 0; i < n; i++) {
            const float x = gate[i];
            const float y = x <= -10.0f ? 0.0f : x >= 10.0f ? x : wg_fp16_to_fp32(s_gelu_tab[wg_fp32_to_fp16(x)]);
            gate[i] = up ? y * up[i] : y;
        }
        return;
    }
    if (up)
        for (int64_t i = i0; i < n; i++) gate[i] = s_act1(act, gate[i]) * up[i];
    else
        for (int64_t i = i0; i < n; i++) gate[i] = s_act1(act, gate[i]);
}

typedef struct {
    wg_act_t act;
    float *gate;
    const float *up;
} s_act_args_t;

static void s_act_part(void *arg, int64_t i0, int64_t i1) {
    const s_act_args_t *a = arg;
    s_act_elems(a->act, a->gate + i0, a->up ? a->up + i0 : NULL, i1 - i0);
}

/* Parts are multiples of 64 elements, so every element but the padded tail
 * of the whole call goes through the same full-width kernel as in one part. */
static void s_act(void *ctx, wg_act_t act, float *gate, const float *up, int64_t n) {
    s_act_args_t a = {.act = act, .gate = gate, .up = up};
    s_par(ctx, n, 8192, 64, s_act_part, &a);
}

/* ------------------------------------------------------------------------ */
/* Fused runs: a list of steps as one pool job                               */
/* ------------------------------------------------------------------------ */

/* Spins on a step counter (~20 ns of pause each here) before a waiting
 * thread starts yielding. A step's inputs are normally ready within a few
 * microseconds; a longer wait means the thread finishing them was
 * descheduled, maybe for this very CPU (another process on the other one),
 * and spinning on would only keep it off. */
#define S_RUN_SPIN 512

#if S_X86
#define S_PAUSE() _mm_pause()
#else
#define S_PAUSE() ((void)0)
#endif

/* Lanes (threads that own a contiguous share of a product's rows) at most;
 * more threads only steal. */
#define S_RUN_LANES 8
/* Rows an owner claims at a time from the front of its lane, and the fewest
 * a thief takes from the back of another's. */
#define S_RUN_CHUNK 32
#define S_RUN_STEAL 16

/* One lane of rows [front, back), packed as back << 32 | front so that owner
 * and thief claims are one compare-and-swap; on a line of its own. */
typedef struct {
    _Alignas(64) _Atomic uint64_t fb;
} s_lane_t;

/* Shared state of one step: its work counters, on a line of its own. */
typedef struct {
    _Alignas(64) _Atomic int64_t next; /* next unclaimed attention item; rows: unused */
    _Atomic int64_t done;              /* units finished; total + 1 once `after` has run */
    int64_t total;                     /* units of the step */
    int64_t first[4];                  /* WG_STEP_MATMUL, one range: first unit of product i, first[n] = total */
    bool paired;                       /* units are rows of every product (gated act) */
    bool rows;                         /* units are rows claimed through the lanes */
    s_attn_job_t attn;                 /* WG_STEP_ATTN: the call's set-up (its own counters unused) */
    s_lane_t lane[S_RUN_LANES];        /* WG_STEP_MATMUL: the rows, one lane per thread */
} s_step_state_t;

typedef struct {
    const wg_step_t *steps;  /* [n] */
    s_step_state_t *st;      /* [n] */
    int n;                   /* steps */
    int nth;                 /* threads the claims are sized for */
    int nl;                  /* lanes: min(nth, S_RUN_LANES) */
    char *tbuf;              /* [nth][tb] per-thread activation copies */
    size_t tb;               /* bytes per thread (multiple of 64) */
    size_t xoff;             /* offset of the prepared copies in a thread's part */
    _Atomic int failed;      /* a step failed: wg_status of the first failure */
} s_run_t;

static void s_run_wait(const s_step_state_t *st) {
    int spins = 0;
    while (atomic_load_explicit(&st->done, memory_order_acquire) != st->total + 1) {
        if (++spins < S_RUN_SPIN) {
            S_PAUSE();
        } else {
            sched_yield();
        }
    }
}

/* Row claims of a product step. Thread i owns lane i, a contiguous 1/nl of
 * the rows, and takes S_RUN_CHUNK rows at a time from its front, so its
 * claims follow each other in memory and the row kernel's prefetches (and
 * the hardware's) run on into its own next rows; with one shared counter the
 * two threads' claims interleave and every claim starts a cold stream. A
 * thread whose lane is empty steals half of what is left of the fullest
 * other lane, from the back, so a lane whose owner is late, descheduled or
 * absent (wg_pool_run_any) is still done. Which thread computes a row never
 * changes its numbers. Returns the rows claimed (first at *nb), 0 when
 * every lane is empty. */
static int64_t s_lane_claim(s_step_state_t *st, int nl, int me, int64_t *nb) {
    if (me < nl) {
        _Atomic uint64_t *w = &st->lane[me].fb;
        uint64_t v = atomic_load_explicit(w, memory_order_relaxed);
        for (;;) {
            const uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
            if (f >= b) break;
            /* a quarter of the rest (half with no other lane to share) */
            const uint32_t part = (b - f) / (nl > 1 ? 4 : 2);
            uint32_t take = part > S_RUN_CHUNK ? part : S_RUN_CHUNK;
            if (b - f < take + S_RUN_STEAL) take = b - f;
            if (atomic_compare_exchange_weak_explicit(w, &v, ((uint64_t)b << 32) | (f + take),
                                                      memory_order_relaxed, memory_order_relaxed)) {
                *nb = f;
                return take;
            }
        }
    }
    for (;;) {
        int best = -1;
        uint32_t most = 0;
        uint64_t bv = 0;
        for (int l = 0; l < nl; l++) {
            const uint64_t v = atomic_load_explicit(&st->lane[l].fb, memory_order_relaxed);
            const uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
            if (l != me && b > f && b - f > most) {
                most = b - f;
                best = l;
                bv = v;
            }
        }
        if (best < 0) return 0;
        const uint32_t f = (uint32_t)bv, b = (uint32_t)(bv >> 32);
        const uint32_t take = b - f < 2 * S_RUN_STEAL ? b - f : (b - f) / 2;
        if (atomic_compare_exchange_weak_explicit(&st->lane[best].fb, &bv, ((uint64_t)(b - take) << 32) | f,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            *nb = b - take;
            return take;
        }
    }
}

/* Whether every unit of the step has been claimed. */
static bool s_step_claimed(const s_run_t *r, s_step_state_t *st) {
    if (!st->rows) return atomic_load_explicit(&st->next, memory_order_relaxed) >= st->total;
    for (int l = 0; l < r->nl; l++) {
        const uint64_t v = atomic_load_explicit(&st->lane[l].fb, memory_order_relaxed);
        if ((uint32_t)v < (uint32_t)(v >> 32)) return false;
    }
    return true;
}

/* This thread's share of a WG_STEP_MATMUL; returns the units it did. */
static int64_t s_run_mm(const s_run_t *r, const wg_step_t *s, s_step_state_t *st, int me, char *mine) {
    const int64_t K = s->w[0]->k;
    const float *x = s->in;
    if (s->norm) {
        /* Each thread normalizes (and below, quantizes) its own copy: the
         * same operations give the same bits, and no thread waits for
         * another to do it. */
        float *c = (float *)(void *)mine;
        memcpy(c, s->in, (size_t)K * sizeof(float));
        s_norm(NULL, s->norm_kind, c, 1, K, K, s->norm_w, s->norm_b, s->eps);
        x = c;
    }
    /* One prepared copy per distinct activation type. */
    const void *xb[3];
    char *p = mine + r->xoff;
    for (int i = 0; i < s->n_w; i++) {
        const wg_type_t vt = wg_type_traits(s->w[i]->type)->vec_dot_type;
        int j = 0;
        while (j < i && wg_type_traits(s->w[j]->type)->vec_dot_type != vt) j++;
        if (j < i) {
            xb[i] = xb[j];
            continue;
        }
        wg_k_gemv_prep(s->w[i]->type, x, K, p);
        xb[i] = p;
        p += (wg_k_gemv_xsize(s->w[i]->type, K) + 63) / 64 * 64;
    }
    int64_t units = 0, nb, nw;
    if (st->paired) {
        /* Rows [nb, nb + nw) of every product, then the activation on them:
         * gate and up of a row are both at hand without waiting. */
        while ((nw = s_lane_claim(st, r->nl, me, &nb)) > 0) {
            for (int i = 0; i < s->n_w; i++) {
                float *y = s->y[i] + nb;
                wg_k_gemv_rows(s->w[i]->type, wg_weight_rows(s->w[i], 0), K, nb, nw, xb[i], y);
                if (s->b[i])
                    for (int64_t j = 0; j < nw; j++) y[j] += s->b[i][nb + j];
            }
            s_act(NULL, s->act_kind, s->y[0] + nb, s->y[1] + nb, nw);
            units += nw;
        }
        return units;
    }
    /* Rows of all products as one range (Q, K and V lie one after another
     * in the file too); a claim that straddles two is cut in two. */
    while ((nw = s_lane_claim(st, r->nl, me, &nb)) > 0) {
        units += nw;
        for (int i = 0; i < s->n_w && nw > 0; i++) {
            if (nb >= st->first[i + 1]) continue;
            /* rows [r0, r0 + cnt) of product i */
            const int64_t r0 = nb - st->first[i];
            const int64_t cnt = nb + nw <= st->first[i + 1] ? nw : st->first[i + 1] - nb;
            nb += cnt;
            nw -= cnt;
            float *y = s->y[i] + r0;
            wg_k_gemv_rows(s->w[i]->type, wg_weight_rows(s->w[i], 0), K, r0, cnt, xb[i], y);
            if (s->b[i])
                for (int64_t j = 0; j < cnt; j++) y[j] += s->b[i][r0 + j];
            if (s->act) s_act(NULL, s->act_kind, y, NULL, cnt);
            if (s->resid)
                for (int64_t j = 0; j < cnt; j++) s->resid[r0 + j] += y[j];
        }
    }
    return units;
}

/* Bytes of a thread's lane in the next product step that it asks for when
 * its part of the current step is done: the row kernels prefetch 8 KiB ahead
 * within a run of rows, so without this each step's first rows wait a full
 * memory latency while the other thread finishes or the step's `after`
 * runs. */
#ifndef S_RUN_PF_NEXT
#define S_RUN_PF_NEXT 8192
#endif

/* Prefetch the first S_RUN_PF_NEXT bytes of this thread's lane in the first
 * product step after step i (its rows are not claimed yet: that step only
 * starts when step i is released). */
static void s_run_pf_next(const s_run_t *r, int i, int me) {
    if (me >= r->nl) return;
    int j = i + 1;
    while (j < r->n && r->steps[j].kind != WG_STEP_MATMUL) j++;
    if (j >= r->n) return;
    const wg_step_t *s = &r->steps[j];
    const s_step_state_t *st = &r->st[j];
    const uint64_t v = atomic_load_explicit(&st->lane[me].fb, memory_order_relaxed);
    const int64_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
    if (f >= b) return;
    size_t left = S_RUN_PF_NEXT;
    const size_t share = st->paired ? left / (size_t)s->n_w : left; /* bytes per product at most */
    /* rows f.. of the one range (paired steps: of every product) */
    for (int p = 0; p < s->n_w && left > 0; p++) {
        int64_t r0, r1;
        if (st->paired) {
            r0 = f, r1 = b;
        } else {
            if (f >= st->first[p + 1] || b <= st->first[p]) continue;
            r0 = (f > st->first[p] ? f : st->first[p]) - st->first[p];
            r1 = (b < st->first[p + 1] ? b : st->first[p + 1]) - st->first[p];
        }
        const size_t rb = s->w[p]->row_bytes;
        size_t bytes = (size_t)(r1 - r0) * rb;
        if (bytes > share) bytes = share;
        if (bytes > left) bytes = left;
        s_prefetch_rows((const char *)wg_weight_rows(s->w[p], 0) + (size_t)r0 * rb, 1, 0, bytes);
        if (!st->paired) left -= bytes;
    }
}

/* Every thread walks all steps in order. A step whose units are all claimed
 * is skipped without waiting, so a thread that joins late (or comes back
 * from being descheduled) catches up at once, and work only waits for the
 * steps it reads. The thread whose units complete a step runs its `after`
 * and then releases the step. */
static void s_run_worker(void *vctx, int ith, int nth) {
    (void)nth;
    s_run_t *r = vctx;
    char *mine = r->tbuf + (size_t)ith * r->tb;
    for (int i = 0; i < r->n; i++) {
        s_step_state_t *st = &r->st[i];
        if (s_step_claimed(r, st)) continue;
        if (i > 0) s_run_wait(&r->st[i - 1]);
        const wg_step_t *s = &r->steps[i];
        int64_t units;
        if (s->kind == WG_STEP_MATMUL) {
            units = s_run_mm(r, s, st, ith, mine);
        } else if ((units = s_attn_items(&st->attn, &st->next, NULL, ith)) < 0) {
            /* No score buffer: claim the rest so the step completes, and
             * fail the run (its outputs are not used). */
            int expected = WG_OK;
            atomic_compare_exchange_strong(&r->failed, &expected, WG_ERR_NOMEM);
            units = 0;
            for (;;) {
                const int64_t it = atomic_fetch_add_explicit(&st->next, 1, memory_order_relaxed);
                if (it >= st->total) break;
                units++;
            }
        }
        s_run_pf_next(r, i, ith);
        if (units == 0) continue;
        const int64_t was = atomic_fetch_add_explicit(&st->done, units, memory_order_acq_rel);
        if (was + units != st->total) continue;
        if (s->after && atomic_load_explicit(&r->failed, memory_order_relaxed) == WG_OK) {
            const wg_status e = s->after(s->after_arg, s);
            int expected = WG_OK;
            if (e != WG_OK) atomic_compare_exchange_strong(&r->failed, &expected, (int)e);
        }
        atomic_store_explicit(&st->done, st->total + 1, memory_order_release);
    }
    /* The caller returns only when the last step is released. */
    if (ith == 0 && r->n > 0) s_run_wait(&r->st[r->n - 1]);
}

static wg_status s_run(void *ctx, const wg_step_t *steps, int n) {
    wg_pool_t *pool = ctx;
    const int nth = pool ? wg_pool_size(pool) : 1;
    /* Check every step before touching anything. */
    size_t xb_max = 0, in_max = 0;
    for (int i = 0; i < n; i++) {
        const wg_step_t *s = &steps[i];
        if (s->kind == WG_STEP_ATTN) {
            if (s->attn.n_tok != 1 || s->attn.n_head_kv <= 0 || s->attn.n_head % s->attn.n_head_kv != 0)
                return WG_ERR_UNSUPPORTED;
            continue;
        }
        if (s->kind != WG_STEP_MATMUL || s->n_w < 1 || s->n_w > 3) return WG_ERR_UNSUPPORTED;
        if ((s->resid && s->n_w != 1) || (s->act && s->n_w == 3) || (s->act && s->resid))
            return WG_ERR_UNSUPPORTED;
        const int64_t K = s->w[0]->k;
        size_t xb = 0;
        int64_t rows = 0; /* lanes hold 32-bit row indices */
        for (int j = 0; j < s->n_w; j++) {
            const wg_weight_t *w = s->w[j];
            if (w->k != K || w->n_exp != 1 || !w->data || w->n <= 0) return WG_ERR_UNSUPPORTED;
            if ((rows += w->n) > (int64_t)UINT32_MAX) return WG_ERR_UNSUPPORTED;
            if (s->act && w->n != s->w[0]->n) return WG_ERR_UNSUPPORTED;
            const size_t sz = wg_k_gemv_xsize(w->type, K);
            if (sz == 0) return WG_ERR_UNSUPPORTED;
            xb += (sz + 63) / 64 * 64;
        }
        if (xb > xb_max) xb_max = xb;
        if (s->norm && (size_t)K * sizeof(float) > in_max) in_max = (size_t)K * sizeof(float);
    }
    if (n == 0) return WG_OK;
    s_run_t r = {.steps = steps, .n = n, .nth = nth, .nl = nth < S_RUN_LANES ? nth : S_RUN_LANES};
    atomic_init(&r.failed, WG_OK);
    r.xoff = (in_max + 63) / 64 * 64;
    r.tb = r.xoff + xb_max;
    const size_t st_bytes = (size_t)n * sizeof(s_step_state_t);
    char *buf = aligned_alloc(64, st_bytes + (size_t)nth * r.tb);
    if (!buf) return wg_error(WG_ERR_NOMEM, "fused run: %d steps", n);
    r.st = (s_step_state_t *)(void *)buf;
    r.tbuf = buf + st_bytes;
    for (int i = 0; i < n; i++) {
        const wg_step_t *s = &steps[i];
        s_step_state_t *st = &r.st[i];
        memset(st, 0, sizeof *st);
        if (s->kind == WG_STEP_ATTN) {
            s_attn_setup(&st->attn, &s->attn, nth);
            st->total = st->attn.items_tok;
        } else {
            st->paired = s->act && s->n_w == 2;
            for (int j = 0; j < s->n_w; j++) st->first[j + 1] = st->first[j] + s->w[j]->n;
            st->total = st->paired ? s->w[0]->n : st->first[s->n_w];
            st->rows = true;
            for (int l = 0; l < r.nl; l++) {
                const uint64_t f = (uint64_t)(st->total * l / r.nl), b = (uint64_t)(st->total * (l + 1) / r.nl);
                atomic_init(&st->lane[l].fb, b << 32 | f);
            }
        }
        atomic_init(&st->next, 0);
        atomic_init(&st->done, 0);
    }
    if (nth > 1)
        wg_pool_run_any(pool, s_run_worker, &r);
    else
        s_run_worker(&r, 0, 1);
    free(buf);
    const int e = atomic_load(&r.failed);
    if (e == WG_ERR_NOMEM) return wg_error(WG_ERR_NOMEM, "fused run: no memory for attention scores");
    return (wg_status)e;
}

static void s_par_op(void *ctx, int64_t n, int64_t min_part, void (*fn)(void *, int64_t, int64_t), void *arg) {
    s_par(ctx, n, min_part > 0 ? min_part : 1, 1, fn, arg);
}

const wg_backend_ops_t wg_backend_cpu = {
    .name = "cpu",
    .matmul = s_matmul,
    .matmul_n = s_matmul_n,
    .norm = s_norm,
    .rope = s_rope,
    .attention = s_attention,
    .act = s_act,
    .run = s_run,
    .par = s_par_op,
};
