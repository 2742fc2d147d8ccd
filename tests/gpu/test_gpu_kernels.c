/* test_gpu_kernels — every CUDA kernel against its specification: kernels/ref
 * for conversions and matmuls, the CPU backend (engine/model/wg_backend_cpu.c)
 * for norms, RoPE, activations and attention, plain host loops for the rest.
 *
 * Bounds: dequantization and Q8_1 quantization are bit-exact; F32 paths
 * (float weights, norms, rope, activations, attention) NMSE <= 1e-7 as the
 * issue asks; quantized dp4a mat-vec within 1e-5 * sum|w x| of the exact dot
 * of the dequantized weight and Q8_1 rows (only float accumulation differs),
 * and NMSE <= 2e-3 against wg_ref_dot_f32, whose K-quant activations are Q8_K
 * (different activation rounding, same maths); cuBLAS with F16 weight tiles
 * NMSE <= 1e-5 against the F32 dot of the dequantized weights.
 * Every test skips without a GPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../engine/model/wg_backend.h"
#include "../../engine/model/wg_kv.h"
#include "../../kernels/ref/wg_ref.h"
#include "../../kernels/ref/wg_ref_kernels.h"
#include "wg_gpu_test.h"

static const wg_type_t s_qtypes[] = {WG_TYPE_Q4_0, WG_TYPE_Q4_1, WG_TYPE_Q5_0,   WG_TYPE_Q5_1,   WG_TYPE_Q8_0,
                                     WG_TYPE_Q2_K, WG_TYPE_Q3_K, WG_TYPE_Q4_K,   WG_TYPE_Q5_K,   WG_TYPE_Q6_K,
                                     WG_TYPE_IQ4_NL, WG_TYPE_IQ4_XS, WG_TYPE_MXFP4};
#define N_QTYPES ((int)(sizeof s_qtypes / sizeof s_qtypes[0]))
static const wg_type_t s_ftypes[] = {WG_TYPE_F32, WG_TYPE_F16, WG_TYPE_BF16};

/* Host weight matrix of N rows of K values of type t, quantized from noise. */
static void *s_make_w(wg_type_t t, int64_t N, int64_t K, uint32_t seed, float *wf /* [N*K] dequantized */) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    const size_t rb = wg_row_size(t, K);
    uint8_t *w = malloc(rb * (size_t)N);
    float *x = malloc((size_t)K * sizeof(float));
    for (int64_t r = 0; r < N; r++) {
        wg_fill(x, K, seed + (uint32_t)r * 31u, 1.0f);
        tr->from_float(x, w + (size_t)r * rb, K);
        tr->to_float(w + (size_t)r * rb, wf + r * K, K);
    }
    free(x);
    return w;
}

Test(gpu_kernels, dequant_f32_and_f16_bit_exact_with_ref) {
    WG_GPU_CTX(ctx);
    const int64_t N = 7, K = 512;
    float *ref = malloc(N * K * sizeof(float)), *got = malloc(N * K * sizeof(float));
    uint16_t *got16 = malloc(N * K * 2);
    for (int ti = 0; ti < N_QTYPES + 3; ti++) {
        const wg_type_t t = ti < N_QTYPES ? s_qtypes[ti] : s_ftypes[ti - N_QTYPES];
        void *w = s_make_w(t, N, K, 100 + (uint32_t)ti, ref);
        const size_t wb = wg_row_size(t, K) * N;
        void *dw = wg_gpu_put(ctx, w, wb);
        float *dy = wg_gpu_alloc(ctx, N * K * sizeof(float));
        uint16_t *dy16 = wg_gpu_alloc(ctx, N * K * 2);
        WG_GPU_OK(wg_cuda_dequant_f32(ctx, t, dw, dy, N, K));
        WG_GPU_OK(wg_cuda_dequant_f16(ctx, t, dw, dy16, N, K));
        wg_gpu_get(ctx, got, dy, N * K * sizeof(float));
        wg_gpu_get(ctx, got16, dy16, N * K * 2);
        for (int64_t i = 0; i < N * K; i++) {
            cr_assert(memcmp(&got[i], &ref[i], 4) == 0, "%s [%lld]: gpu %.9g ref %.9g", wg_type_name(t),
                      (long long)i, got[i], ref[i]);
            cr_assert_eq(got16[i], wg_fp32_to_fp16(ref[i]), "%s f16 [%lld]", wg_type_name(t), (long long)i);
        }
        wg_cuda_free(ctx, dw);
        wg_cuda_free(ctx, dy);
        wg_cuda_free(ctx, dy16);
        free(w);
    }
    free(ref);
    free(got);
    free(got16);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, quantize_q8_1_byte_exact_with_ref) {
    WG_GPU_CTX(ctx);
    const int64_t M = 5, K = 1024, stride = K + 64;
    float *x = malloc(M * stride * sizeof(float));
    wg_fill(x, M * stride, 7, 3.0f);
    for (int64_t i = 0; i < 32; i++) x[i] = 0.0f; /* an all-zero block: d = 0 */
    const size_t qb = wg_row_size(WG_TYPE_Q8_1, K);
    uint8_t *ref = malloc(qb * M), *got = malloc(qb * M);
    for (int64_t m = 0; m < M; m++) wg_k_quant_q8_1_ref(x + m * stride, ref + m * qb, K);
    float *dx = wg_gpu_put(ctx, x, M * stride * sizeof(float));
    void *dq = wg_gpu_alloc(ctx, qb * M);
    WG_GPU_OK(wg_cuda_quantize_q8_1(ctx, dx, stride, dq, M, K));
    wg_gpu_get(ctx, got, dq, qb * M);
    cr_assert(memcmp(got, ref, qb * M) == 0, "Q8_1 bytes differ from wg_k_quant_q8_1_ref");
    cr_assert_eq(wg_cuda_quantize_q8_1(ctx, dx, stride, dq, M, 48), WG_ERR_INVAL);
    wg_cuda_free(ctx, dx);
    wg_cuda_free(ctx, dq);
    free(x);
    free(ref);
    free(got);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, mmvq_all_block_types_small_batches) {
    WG_GPU_CTX(ctx);
    const int64_t N = 37, K = 768; /* N not a multiple of the 4 rows per CTA */
    const int64_t Ms[] = {1, 3, 8, 13, 16};
    float *wf = malloc(N * K * sizeof(float)), *x = malloc(16 * K * sizeof(float));
    float *xd = malloc(16 * K * sizeof(float)), *y = malloc(16 * N * sizeof(float));
    float *yr = malloc(16 * N * sizeof(float));
    const size_t qb = wg_row_size(WG_TYPE_Q8_1, K);
    uint8_t *xq = malloc(qb * 16);
    wg_fill(x, 16 * K, 3, 1.0f);
    for (int64_t i = 0; i < K; i++) x[K + i] += 0.5f; /* biased row: min terms matter */
    for (int64_t m = 0; m < 16; m++) {
        wg_k_quant_q8_1_ref(x + m * K, xq + m * qb, K);
        wg_k_dequant_q8_1_ref(xq + m * qb, xd + m * K, K);
    }
    float *dx = wg_gpu_put(ctx, x, 16 * K * sizeof(float));
    void *dxq = wg_gpu_put(ctx, xq, qb * 16);
    float *dy = wg_gpu_alloc(ctx, 16 * N * sizeof(float));
    for (int ti = 0; ti < N_QTYPES; ti++) {
        const wg_type_t t = s_qtypes[ti];
        void *w = s_make_w(t, N, K, 500 + (uint32_t)ti, wf);
        void *dw = wg_gpu_put(ctx, w, wg_row_size(t, K) * N);
        for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
            const int64_t M = Ms[mi];
            WG_GPU_OK(wg_cuda_mmvq(ctx, t, dw, N, K, dxq, M, dy));
            wg_gpu_get(ctx, y, dy, M * N * sizeof(float));
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    double exact = 0, mag = 0;
                    for (int64_t k = 0; k < K; k++) {
                        exact += (double)wf[n * K + k] * xd[m * K + k];
                        mag += fabs((double)wf[n * K + k] * xd[m * K + k]);
                    }
                    cr_assert(fabs(y[m * N + n] - exact) <= 1e-5 * mag + 1e-6,
                              "%s M=%lld y[%lld][%lld] = %.7g, exact %.7g", wg_type_name(t), (long long)M,
                              (long long)m, (long long)n, y[m * N + n], exact);
                    yr[m * N + n] = wg_ref_dot_f32(t, (const uint8_t *)w + n * wg_row_size(t, K), x + m * K, K);
                }
            const double e = wg_nmse(y, yr, M * N);
            cr_assert(e <= 2e-3, "%s M=%lld: NMSE vs wg_ref_dot_f32 %.3g", wg_type_name(t), (long long)M, e);
            /* The dispatcher (which quantizes X itself) gives the same numbers. */
            float *dy2 = wg_gpu_alloc(ctx, M * N * sizeof(float));
            float *y2 = malloc(M * N * sizeof(float));
            WG_GPU_OK(wg_cuda_matmul(ctx, t, dw, N, K, dx, M, dy2));
            wg_gpu_get(ctx, y2, dy2, M * N * sizeof(float));
            cr_assert(memcmp(y2, y, M * N * sizeof(float)) == 0, "%s M=%lld: matmul != mmvq", wg_type_name(t),
                      (long long)M);
            wg_cuda_free(ctx, dy2);
            free(y2);
        }
        wg_cuda_free(ctx, dw);
        free(w);
    }
    wg_cuda_free(ctx, dx);
    wg_cuda_free(ctx, dxq);
    wg_cuda_free(ctx, dy);
    free(wf);
    free(x);
    free(xd);
    free(y);
    free(yr);
    free(xq);
    wg_cuda_destroy(&ctx);
}

/* Reference products of float weights: wg_ref_dot_f32 rounds X to the
 * weight's type, like both device paths. */
static void s_ref_mm(wg_type_t t, const void *w, int64_t N, int64_t K, const float *x, int64_t M, float *y) {
    const size_t rb = wg_row_size(t, K);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) y[m * N + n] = wg_ref_dot_f32(t, (const uint8_t *)w + n * rb, x + m * K, K);
}

Test(gpu_kernels, float_weights_mmv_and_cublas_nmse_1e7) {
    WG_GPU_CTX(ctx);
    const int64_t N = 45, Ks[] = {500, 1024}, Ms[] = {1, 5, 16, 17, 64};
    for (size_t ki = 0; ki < 2; ki++) {
        const int64_t K = Ks[ki];
        float *wf = malloc(N * K * sizeof(float)), *x = malloc(64 * K * sizeof(float));
        float *y = malloc(64 * N * sizeof(float)), *yr = malloc(64 * N * sizeof(float));
        wg_fill(x, 64 * K, 11, 1.0f);
        float *dx = wg_gpu_put(ctx, x, 64 * K * sizeof(float));
        float *dy = wg_gpu_alloc(ctx, 64 * N * sizeof(float));
        for (int fi = 0; fi < 3; fi++) {
            const wg_type_t t = s_ftypes[fi];
            void *w = s_make_w(t, N, K, 900 + (uint32_t)fi, wf);
            void *dw = wg_gpu_put(ctx, w, wg_row_size(t, K) * N);
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                const int64_t M = Ms[mi];
                s_ref_mm(t, w, N, K, x, M, yr);
                WG_GPU_OK(wg_cuda_matmul(ctx, t, dw, N, K, dx, M, dy));
                wg_gpu_get(ctx, y, dy, M * N * sizeof(float));
                double e = wg_nmse(y, yr, M * N);
                cr_assert(e <= 1e-7, "%s K=%lld M=%lld matmul NMSE %.3g", wg_type_name(t), (long long)K, (long long)M,
                          e);
                cr_assert_eq(wg_cuda_gemm(ctx, t, dw, N, K, dx, M, dy), WG_OK, "%s K=%lld M=%lld gemm: %s",
                             wg_type_name(t), (long long)K, (long long)M, wg_errmsg()); /* cuBLAS at any M */
                wg_gpu_get(ctx, y, dy, M * N * sizeof(float));
                e = wg_nmse(y, yr, M * N);
                cr_assert(e <= 1e-7, "%s K=%lld M=%lld gemm NMSE %.3g", wg_type_name(t), (long long)K, (long long)M, e);
            }
            wg_cuda_free(ctx, dw);
            free(w);
        }
        wg_cuda_free(ctx, dx);
        wg_cuda_free(ctx, dy);
        free(wf);
        free(x);
        free(y);
        free(yr);
    }
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, quantized_cublas_path_large_m) {
    WG_GPU_CTX(ctx);
    const int64_t N = 70, K = 512, M = 40;
    float *wf = malloc(N * K * sizeof(float)), *x = malloc(M * K * sizeof(float));
    float *y = malloc(M * N * sizeof(float)), *yx = malloc(M * N * sizeof(float));
    wg_fill(x, M * K, 21, 1.0f);
    float *dx = wg_gpu_put(ctx, x, M * K * sizeof(float));
    float *dy = wg_gpu_alloc(ctx, M * N * sizeof(float));
    for (int ti = 0; ti < N_QTYPES; ti++) {
        const wg_type_t t = s_qtypes[ti];
        void *w = s_make_w(t, N, K, 700 + (uint32_t)ti, wf);
        void *dw = wg_gpu_put(ctx, w, wg_row_size(t, K) * N);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += (double)wf[n * K + k] * x[m * K + k];
                yx[m * N + n] = (float)s;
            }
        WG_GPU_OK(wg_cuda_matmul(ctx, t, dw, N, K, dx, M, dy));
        wg_gpu_get(ctx, y, dy, M * N * sizeof(float));
        const double e = wg_nmse(y, yx, M * N);
        cr_assert(e <= 1e-5, "%s: F16-tile cuBLAS NMSE %.3g vs F32 dot of dequantized weights", wg_type_name(t), e);
        wg_cuda_free(ctx, dw);
        free(w);
    }
    wg_cuda_free(ctx, dx);
    wg_cuda_free(ctx, dy);
    free(wf);
    free(x);
    free(y);
    free(yx);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, norms_match_cpu_backend) {
    WG_GPU_CTX(ctx);
    const int64_t R = 6, n = 1000, stride = 1024;
    float *x = malloc(R * stride * sizeof(float)), *ref = malloc(R * stride * sizeof(float));
    float *got = malloc(R * stride * sizeof(float)), w[1000], b[1000];
    wg_fill(w, n, 5, 1.0f);
    wg_fill(b, n, 6, 0.2f);
    float *dw = wg_gpu_put(ctx, w, sizeof w), *db = wg_gpu_put(ctx, b, sizeof b);
    const wg_norm_kind_t kinds[] = {WG_NORM_RMS, WG_NORM_LAYER, WG_NORM_LAYER_NOPARAM};
    const wg_cuda_norm_t ckinds[] = {WG_CUDA_NORM_RMS, WG_CUDA_NORM_LAYER, WG_CUDA_NORM_LAYER_NOPARAM};
    for (int ki = 0; ki < 3; ki++) {
        wg_fill(x, R * stride, 40 + (uint32_t)ki, 2.0f);
        for (int64_t i = 0; i < R * stride; i++) x[i] += 0.3f; /* non-zero mean for layer norm */
        memcpy(ref, x, R * stride * sizeof(float));
        wg_backend_cpu.norm(NULL, kinds[ki], ref, R, n, stride, w, ki == 0 ? NULL : b, 1e-5f);
        float *dx = wg_gpu_put(ctx, x, R * stride * sizeof(float));
        WG_GPU_OK(wg_cuda_norm(ctx, ckinds[ki], dx, R, n, stride, dw, ki == 0 ? NULL : db, 1e-5f));
        wg_gpu_get(ctx, got, dx, R * stride * sizeof(float));
        const double e = wg_nmse(got, ref, R * stride);
        cr_assert(e <= 1e-7, "norm kind %d NMSE %.3g", ki, e);
        for (int64_t i = n; i < stride; i++) cr_assert_eq(got[i], x[i], "padding between rows untouched");
        wg_cuda_free(ctx, dx);
    }
    wg_cuda_free(ctx, dw);
    wg_cuda_free(ctx, db);
    free(x);
    free(ref);
    free(got);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, rope_styles_partial_freq_factors_and_yarn_match_cpu) {
    WG_GPU_CTX(ctx);
    const int64_t T = 9;
    const int32_t H = 4, D = 128;
    const int64_t stride = H * D + 32;
    int32_t pos[9] = {0, 1, 2, 17, 100, 511, 1000, 4095, 30000};
    float ff[64];
    for (int i = 0; i < 64; i++) ff[i] = 1.0f + (float)i / 16.0f;
    float *x = malloc(T * stride * sizeof(float)), *ref = malloc(T * stride * sizeof(float));
    float *got = malloc(T * stride * sizeof(float));
    int32_t *dpos = wg_gpu_put(ctx, pos, sizeof pos);
    float *dff = wg_gpu_put(ctx, ff, sizeof ff);
    for (int c = 0; c < 5; c++) {
        const wg_rope_style_t style = c % 2 ? WG_ROPE_NEOX : WG_ROPE_NORM;
        const bool yarn = c == 4; /* YaRN ramp over dims 10..40, scaled positions */
        const int32_t n_rot = c < 2 ? D : 64;
        const bool use_ff = c == 3;
        wg_rope_t r = {.style = style, .n_rot = n_rot, .base = 10000.0f,
                       .freq_scale = c == 2 ? 0.25f : (yarn ? 0.125f : 1.0f), .freq_factors = use_ff ? ff : NULL,
                       .ext_factor = yarn ? 1.0f : 0.0f, .attn_factor = 1.0f, .corr_dims = {10.0f, 40.0f}};
        wg_cuda_rope_t cr = {style == WG_ROPE_NEOX ? WG_CUDA_ROPE_NEOX : WG_CUDA_ROPE_NORM, n_rot, 10000.0f,
                             r.freq_scale, use_ff ? dff : NULL, r.ext_factor, r.attn_factor, {10.0f, 40.0f}};
        wg_fill(x, T * stride, 77 + (uint32_t)c, 1.0f);
        memcpy(ref, x, T * stride * sizeof(float));
        wg_backend_cpu.rope(NULL, &r, ref, T, H, D, stride, pos);
        float *dx = wg_gpu_put(ctx, x, T * stride * sizeof(float));
        WG_GPU_OK(wg_cuda_rope(ctx, &cr, dx, T, H, D, stride, dpos));
        wg_gpu_get(ctx, got, dx, T * stride * sizeof(float));
        const double e = wg_nmse(got, ref, T * stride);
        cr_assert(e <= 1e-7, "rope case %d NMSE %.3g", c, e);
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = H * D; i < stride; i++) cr_assert_eq(got[t * stride + i], x[t * stride + i]);
        wg_cuda_free(ctx, dx);
    }
    wg_cuda_free(ctx, dpos);
    wg_cuda_free(ctx, dff);
    free(x);
    free(ref);
    free(got);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, activations_and_softmax) {
    WG_GPU_CTX(ctx);
    const int64_t n = 4099;
    float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float));
    float *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    wg_fill(u, n, 2, 1.0f);
    const wg_act_t acts[] = {WG_ACT_SILU, WG_ACT_GELU, WG_ACT_GELU_ERF, WG_ACT_RELU2};
    float *du = wg_gpu_put(ctx, u, n * sizeof(float));
    for (int a = 0; a < 4; a++)
        for (int gated = 0; gated < 2; gated++) {
            wg_fill(g, n, 30 + (uint32_t)a, 6.0f); /* reaches past GELU's |x| >= 10 cut */
            memcpy(ref, g, n * sizeof(float));
            wg_backend_cpu.act(NULL, acts[a], ref, gated ? u : NULL, n);
            float *dg = wg_gpu_put(ctx, g, n * sizeof(float));
            WG_GPU_OK(wg_cuda_act(ctx, (wg_cuda_act_t)a, dg, gated ? du : NULL, n));
            wg_gpu_get(ctx, got, dg, n * sizeof(float));
            const double e = wg_nmse(got, ref, n);
            cr_assert(e <= 1e-7, "act %d gated %d NMSE %.3g", a, gated, e);
            wg_cuda_free(ctx, dg);
        }
    /* softmax of 3 rows with scale, against a double host computation */
    const int64_t R = 3, m = 1000;
    wg_fill(g, R * m, 9, 4.0f);
    for (int64_t r = 0; r < R; r++) {
        double mx = -INFINITY, s = 0;
        for (int64_t i = 0; i < m; i++) mx = fmax(mx, 0.5 * g[r * m + i]);
        for (int64_t i = 0; i < m; i++) s += exp(0.5 * g[r * m + i] - mx);
        for (int64_t i = 0; i < m; i++) ref[r * m + i] = (float)(exp(0.5 * g[r * m + i] - mx) / s);
    }
    float *dg = wg_gpu_put(ctx, g, R * m * sizeof(float));
    WG_GPU_OK(wg_cuda_softmax(ctx, dg, R, m, m, 0.5f));
    wg_gpu_get(ctx, got, dg, R * m * sizeof(float));
    cr_assert(wg_nmse(got, ref, R * m) <= 1e-7, "softmax NMSE %.3g", wg_nmse(got, ref, R * m));
    wg_cuda_free(ctx, dg);
    wg_cuda_free(ctx, du);
    free(g);
    free(u);
    free(ref);
    free(got);
    wg_cuda_destroy(&ctx);
}

/* ---- attention: a host wg_kv as the CPU reference and a device mirror whose
 * blocks sit in a scrambled order, so the block table is really exercised. ---- */

typedef struct {
    wg_kv_t *kv;          /* host cache (CPU reference) */
    int32_t n_layer, k_dim, v_dim, bt;
    int32_t n_seq, max_blocks, n_blocks;
    int32_t *table;       /* [n_seq][max_blocks] device block ids */
    float *pool;          /* host mirror of the device pool */
    wg_cuda_kv_t dkv;     /* device view */
} s_kvpair_t;

static void s_kvpair_init(wg_cuda_t *ctx, s_kvpair_t *p, int32_t n_layer, int32_t n_kv, int32_t hd, int32_t hdv,
                          int32_t bt, const int32_t *lens, int32_t n_seq, uint32_t seed) {
    memset(p, 0, sizeof *p);
    p->n_layer = n_layer;
    p->k_dim = n_kv * hd;
    p->v_dim = n_kv * hdv;
    p->bt = bt;
    p->n_seq = n_seq;
    int32_t maxlen = 0;
    for (int s = 0; s < n_seq; s++) maxlen = lens[s] > maxlen ? lens[s] : maxlen;
    p->max_blocks = (maxlen + bt - 1) / bt;
    p->n_blocks = p->max_blocks * n_seq;
    const size_t block_floats = (size_t)n_layer * bt * (p->k_dim + p->v_dim);
    p->kv = wg_kv_new(n_layer, p->k_dim, p->v_dim, bt, block_floats * sizeof(float) * (size_t)(p->n_blocks + 1));
    cr_assert(p->kv, "wg_kv_new: %s", wg_errmsg());
    p->table = calloc((size_t)p->n_blocks, sizeof(int32_t));
    p->pool = calloc((size_t)p->n_blocks * block_floats, sizeof(float));
    float *vec = malloc((size_t)(p->k_dim + p->v_dim) * sizeof(float));
    for (int32_t s = 0; s < n_seq; s++) {
        int32_t id;
        cr_assert_eq(wg_kv_seq_new(p->kv, &id), WG_OK);
        cr_assert_eq(id, s);
        cr_assert_eq(wg_kv_reserve(p->kv, s, lens[s]), WG_OK);
        cr_assert_eq(wg_kv_seq_set_len(p->kv, s, lens[s]), WG_OK);
        for (int32_t b = 0; b < p->max_blocks; b++) /* scrambled: reverse order, interleaved sequences */
            p->table[s * p->max_blocks + b] = p->n_blocks - 1 - (b * n_seq + s);
        for (int32_t l = 0; l < n_layer; l++)
            for (int32_t j = 0; j < lens[s]; j++) {
                wg_fill(vec, p->k_dim + p->v_dim, seed + (uint32_t)(((s * 131 + l) * 4099) + j), 1.0f);
                memcpy(wg_kv_k(p->kv, l, s, j), vec, (size_t)p->k_dim * sizeof(float));
                memcpy(wg_kv_v(p->kv, l, s, j), vec + p->k_dim, (size_t)p->v_dim * sizeof(float));
                const int32_t blk = p->table[s * p->max_blocks + j / bt];
                float *base = p->pool + (size_t)blk * block_floats + (size_t)l * bt * (p->k_dim + p->v_dim);
                memcpy(base + (size_t)(j % bt) * p->k_dim, vec, (size_t)p->k_dim * sizeof(float));
                memcpy(base + (size_t)bt * p->k_dim + (size_t)(j % bt) * p->v_dim, vec + p->k_dim,
                       (size_t)p->v_dim * sizeof(float));
            }
    }
    free(vec);
    p->dkv.pool = wg_gpu_put(ctx, p->pool, (size_t)p->n_blocks * block_floats * sizeof(float));
    p->dkv.n_layer = n_layer;
    p->dkv.k_dim = p->k_dim;
    p->dkv.v_dim = p->v_dim;
    p->dkv.block_tokens = bt;
    p->dkv.block_table = wg_gpu_put(ctx, p->table, (size_t)p->n_blocks * sizeof(int32_t));
    p->dkv.max_blocks = p->max_blocks;
}

static void s_kvpair_free(wg_cuda_t *ctx, s_kvpair_t *p) {
    wg_kv_free(&p->kv);
    wg_cuda_free(ctx, (void *)p->dkv.pool);
    wg_cuda_free(ctx, (void *)p->dkv.block_table);
    free(p->table);
    free(p->pool);
}

typedef struct {
    int32_t n_head, n_kv, hd, hdv, window;
    float softcap;
    bool sinks;
} s_attn_case_t;

static const s_attn_case_t s_attn_cases[] = {
    {8, 2, 64, 64, 0, 0.0f, false},   /* GQA */
    {4, 4, 128, 128, 0, 0.0f, true},  /* MHA with sinks */
    {6, 3, 96, 64, 16, 30.0f, false}, /* window + soft-cap, head_dim != head_dim_v */
    {4, 1, 256, 256, 0, 0.0f, false}, /* big heads: opt-in shared memory in prefill */
};

/* Decode attention against the CPU backend. Five tokens x at most 8 heads is
 * few enough (token, head) pairs that the keys are split into segments
 * merged by a second kernel; WAGGLE_CUDA_ATTN_SPLIT=0 at context creation
 * runs the one-CTA-per-pair kernel instead. Lengths cover an empty tail
 * segment (1), partial chunks (37) and several chunks per segment (300). */
static void s_decode_attention_case(bool split) {
    if (split) unsetenv("WAGGLE_CUDA_ATTN_SPLIT");
    else setenv("WAGGLE_CUDA_ATTN_SPLIT", "0", 1);
    WG_GPU_CTX(ctx);
    unsetenv("WAGGLE_CUDA_ATTN_SPLIT");
    const int32_t lens[3] = {1, 37, 300};
    for (size_t ci = 0; ci < sizeof s_attn_cases / sizeof s_attn_cases[0]; ci++) {
        const s_attn_case_t *c = &s_attn_cases[ci];
        s_kvpair_t p;
        s_kvpair_init(ctx, &p, 2, c->n_kv, c->hd, c->hdv, 16, lens, 3, 1000 + (uint32_t)ci);
        /* tokens: the last position of each sequence plus two mid positions */
        const int32_t seq[5] = {0, 1, 2, 2, 1}, pos[5] = {0, 36, 299, 150, 3};
        const int64_t T = 5, qs = (int64_t)c->n_head * c->hd + 8, os = (int64_t)c->n_head * c->hdv;
        float *q = malloc(T * qs * sizeof(float)), *ref = malloc(T * os * sizeof(float));
        float *got = malloc(T * os * sizeof(float)), sinks[8];
        wg_fill(q, T * qs, 55 + (uint32_t)ci, 1.0f);
        wg_fill(sinks, 8, 66, 2.0f);
        const float scale = 1.0f / sqrtf((float)c->hd);
        wg_attn_args_t a = {p.kv, 1, T, seq, pos, q, qs, ref, c->n_head, c->n_kv, c->hd, c->hdv, scale, c->window,
                            c->softcap, c->sinks ? sinks : NULL};
        cr_assert_eq(wg_backend_cpu.attention(NULL, &a), WG_OK);
        float *dq = wg_gpu_put(ctx, q, T * qs * sizeof(float)), *dout = wg_gpu_alloc(ctx, T * os * sizeof(float));
        int32_t *dseq = wg_gpu_put(ctx, seq, sizeof seq), *dpos = wg_gpu_put(ctx, pos, sizeof pos);
        float *dsinks = wg_gpu_put(ctx, sinks, sizeof sinks);
        wg_cuda_attn_t ca = {1, T, dseq, dpos, dq, qs, dout, c->n_head, c->n_kv, c->hd, c->hdv, scale, c->window,
                             c->softcap, c->sinks ? dsinks : NULL};
        WG_GPU_OK(wg_cuda_attention_decode(ctx, &p.dkv, &ca));
        wg_gpu_get(ctx, got, dout, T * os * sizeof(float));
        const double e = wg_nmse(got, ref, T * os);
        cr_assert(e <= 1e-7, "decode case %zu (split %d) NMSE %.3g", ci, (int)split, e);
        wg_cuda_free(ctx, dq);
        wg_cuda_free(ctx, dout);
        wg_cuda_free(ctx, dseq);
        wg_cuda_free(ctx, dpos);
        wg_cuda_free(ctx, dsinks);
        free(q);
        free(ref);
        free(got);
        s_kvpair_free(ctx, &p);
    }
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, paged_decode_attention_matches_cpu) { s_decode_attention_case(true); }
Test(gpu_kernels, paged_decode_attention_unsplit_matches_cpu) { s_decode_attention_case(false); }

Test(gpu_kernels, flash_prefill_attention_matches_cpu) {
    WG_GPU_CTX(ctx);
    const int32_t lens[2] = {20, 83};
    for (size_t ci = 0; ci < sizeof s_attn_cases / sizeof s_attn_cases[0]; ci++) {
        const s_attn_case_t *c = &s_attn_cases[ci];
        s_kvpair_t p;
        s_kvpair_init(ctx, &p, 1, c->n_kv, c->hd, c->hdv, 16, lens, 2, 2000 + (uint32_t)ci);
        /* sequence 1, a chunk of 50 positions after a 33-token history */
        const int32_t pos0 = 33;
        const int64_t T = 50, qs = (int64_t)c->n_head * c->hd, os = (int64_t)c->n_head * c->hdv;
        int32_t seq[50], pos[50];
        for (int i = 0; i < T; i++) {
            seq[i] = 1;
            pos[i] = pos0 + i;
        }
        float *q = malloc(T * qs * sizeof(float)), *ref = malloc(T * os * sizeof(float));
        float *got = malloc(T * os * sizeof(float)), sinks[8];
        wg_fill(q, T * qs, 88 + (uint32_t)ci, 1.0f);
        wg_fill(sinks, 8, 99, 2.0f);
        const float scale = 1.0f / sqrtf((float)c->hd);
        wg_attn_args_t a = {p.kv, 0, T, seq, pos, q, qs, ref, c->n_head, c->n_kv, c->hd, c->hdv, scale, c->window,
                            c->softcap, c->sinks ? sinks : NULL};
        cr_assert_eq(wg_backend_cpu.attention(NULL, &a), WG_OK);
        float *dq = wg_gpu_put(ctx, q, T * qs * sizeof(float)), *dout = wg_gpu_alloc(ctx, T * os * sizeof(float));
        float *dsinks = wg_gpu_put(ctx, sinks, sizeof sinks);
        wg_cuda_attn_t ca = {0, T, NULL, NULL, dq, qs, dout, c->n_head, c->n_kv, c->hd, c->hdv, scale, c->window,
                             c->softcap, c->sinks ? dsinks : NULL};
        WG_GPU_OK(wg_cuda_attention_prefill(ctx, &p.dkv, &ca, 1, pos0));
        wg_gpu_get(ctx, got, dout, T * os * sizeof(float));
        const double e = wg_nmse(got, ref, T * os);
        cr_assert(e <= 1e-7, "prefill case %zu NMSE %.3g", ci, e);
        wg_cuda_free(ctx, dq);
        wg_cuda_free(ctx, dout);
        wg_cuda_free(ctx, dsinks);
        free(q);
        free(ref);
        free(got);
        s_kvpair_free(ctx, &p);
    }
    wg_cuda_destroy(&ctx);
}

/* The CPU engine's routing (engine/model/wg_forward.c s_build_moe). */
static void s_route_ref(const float *logits, int64_t T, int32_t X, int32_t K, bool sigmoid, bool renorm, int32_t *ids,
                        float *w) {
    float *p = malloc((size_t)X * sizeof(float));
    for (int64_t t = 0; t < T; t++) {
        memcpy(p, logits + t * X, (size_t)X * sizeof(float));
        if (sigmoid) {
            for (int32_t i = 0; i < X; i++) p[i] = 1.0f / (1.0f + expf(-p[i]));
        } else {
            float mx = -INFINITY;
            for (int32_t i = 0; i < X; i++) mx = p[i] > mx ? p[i] : mx;
            double s = 0;
            for (int32_t i = 0; i < X; i++) s += (p[i] = expf(p[i] - mx));
            for (int32_t i = 0; i < X; i++) p[i] *= (float)(1.0 / s);
        }
        for (int32_t s = 0; s < K; s++) {
            int32_t best = -1;
            for (int32_t i = 0; i < X; i++) {
                bool taken = false;
                for (int32_t j = 0; j < s; j++) taken |= ids[t * K + j] == i;
                if (!taken && (best < 0 || p[i] > p[best])) best = i;
            }
            ids[t * K + s] = best;
            w[t * K + s] = p[best];
        }
        if (renorm) {
            float sum = 0;
            for (int32_t s = 0; s < K; s++) sum += w[t * K + s];
            for (int32_t s = 0; s < K; s++) w[t * K + s] /= sum;
        }
    }
    free(p);
}

Test(gpu_kernels, moe_route_plan_gather_combine) {
    WG_GPU_CTX(ctx);
    const int64_t T = 23, E = 40;
    const int32_t X = 60, K = 6;
    float *lg = malloc(T * X * sizeof(float));
    wg_fill(lg, T * X, 123, 3.0f);
    int32_t ids[23 * 6], rids[23 * 6];
    float w[23 * 6], rw[23 * 6];
    float *dlg = wg_gpu_put(ctx, lg, T * X * sizeof(float));
    int32_t *dids = wg_gpu_alloc(ctx, sizeof ids);
    float *dw = wg_gpu_alloc(ctx, sizeof w);
    for (int mode = 0; mode < 2; mode++) {
        s_route_ref(lg, T, X, K, mode == 1, mode == 0, rids, rw);
        WG_GPU_OK(wg_cuda_moe_route(ctx, dlg, T, X, K, mode ? WG_CUDA_GATE_SIGMOID : WG_CUDA_GATE_SOFTMAX, mode == 0,
                                    dids, dw));
        wg_gpu_get(ctx, ids, dids, sizeof ids);
        wg_gpu_get(ctx, w, dw, sizeof w);
        for (int i = 0; i < T * K; i++) {
            cr_assert_eq(ids[i], rids[i], "mode %d slot %d: expert %d, cpu %d", mode, i, ids[i], rids[i]);
            cr_assert(fabsf(w[i] - rw[i]) <= 1e-6f * fabsf(rw[i]) + 1e-7f, "mode %d weight %d: %g vs %g", mode, i, w[i],
                      rw[i]);
        }
    }
    /* plan: rows grouped by expert, ascending */
    int32_t counts[60], offsets[61], rows[23 * 6];
    int32_t *dc = wg_gpu_alloc(ctx, sizeof counts), *doff = wg_gpu_alloc(ctx, sizeof offsets);
    int32_t *drows = wg_gpu_alloc(ctx, sizeof rows);
    WG_GPU_OK(wg_cuda_moe_plan(ctx, dids, T, K, X, dc, doff, drows));
    wg_gpu_get(ctx, counts, dc, sizeof counts);
    wg_gpu_get(ctx, offsets, doff, sizeof offsets);
    wg_gpu_get(ctx, rows, drows, sizeof rows);
    cr_assert_eq(offsets[X], T * K);
    for (int32_t e = 0, r = 0; e < X; e++) {
        cr_assert_eq(offsets[e], r);
        for (int64_t i = 0; i < T * K; i++)
            if (ids[i] == e) {
                cr_assert_eq(rows[r], (int32_t)i, "expert %d entry %d", e, r);
                r++;
            }
        cr_assert_eq(counts[e], r - offsets[e]);
    }
    /* gather token rows by plan, scatter them back to slots, combine */
    float *xs = malloc(T * E * sizeof(float)), *g = malloc(T * K * E * sizeof(float));
    float *slots = malloc(T * K * E * sizeof(float)), *out = malloc(T * E * sizeof(float));
    wg_fill(xs, T * E, 5, 1.0f);
    float *dxs = wg_gpu_put(ctx, xs, T * E * sizeof(float));
    float *dg = wg_gpu_alloc(ctx, T * K * E * sizeof(float)), *dslots = wg_gpu_alloc(ctx, T * K * E * sizeof(float));
    float *dout = wg_gpu_alloc(ctx, T * E * sizeof(float));
    WG_GPU_OK(wg_cuda_gather_rows(ctx, dxs, E, drows, K, T * K, dg, E, E));
    WG_GPU_OK(wg_cuda_scatter_rows(ctx, dg, E, drows, T * K, dslots, E, E));
    WG_GPU_OK(wg_cuda_moe_combine(ctx, dslots, dw, T, K, E, dout));
    wg_gpu_get(ctx, g, dg, T * K * E * sizeof(float));
    wg_gpu_get(ctx, slots, dslots, T * K * E * sizeof(float));
    wg_gpu_get(ctx, out, dout, T * E * sizeof(float));
    for (int64_t r = 0; r < T * K; r++)
        for (int64_t c = 0; c < E; c++) {
            cr_assert_eq(g[r * E + c], xs[(rows[r] / K) * E + c], "gather row %lld", (long long)r);
            cr_assert_eq(slots[r * E + c], xs[(r / K) * E + c], "slot %lld holds its token", (long long)r);
        }
    for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < E; c++) {
            float ref = 0;
            for (int32_t s = 0; s < K; s++) ref += w[t * K + s] * xs[t * E + c];
            cr_assert(fabsf(out[t * E + c] - ref) <= 1e-5f * (fabsf(ref) + 1e-3f), "combine t=%lld c=%lld",
                      (long long)t, (long long)c);
        }
    void *bufs[] = {dlg, dids, dw, dc, doff, drows, dxs, dg, dslots, dout};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) wg_cuda_free(ctx, bufs[i]);
    free(lg);
    free(xs);
    free(g);
    free(slots);
    free(out);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, topk_descending_ties_to_lower_index_nan_last) {
    WG_GPU_CTX(ctx);
    const int64_t R = 3, n = 50000;
    const int32_t k = 40;
    float *x = malloc(R * n * sizeof(float));
    wg_fill(x, R * n, 8, 5.0f);
    for (int64_t i = 0; i < n; i += 1000) x[i] = 99.5f; /* 50 exact ties above everything in row 0 (|fill| < 18) */
    x[n + 7] = NAN;
    x[n + 8] = INFINITY;
    float vals[3 * 40];
    int32_t idx[3 * 40];
    float *dx = wg_gpu_put(ctx, x, R * n * sizeof(float)), *dv = wg_gpu_alloc(ctx, sizeof vals);
    int32_t *di = wg_gpu_alloc(ctx, sizeof idx);
    WG_GPU_OK(wg_cuda_topk(ctx, dx, R, n, n, k, dv, di));
    wg_gpu_get(ctx, vals, dv, sizeof vals);
    wg_gpu_get(ctx, idx, di, sizeof idx);
    for (int64_t r = 0; r < R; r++) {
        /* host oracle: k rounds of argmax in (value desc, index asc) order */
        char *taken = calloc((size_t)n, 1);
        for (int32_t s = 0; s < k; s++) {
            int64_t best = -1;
            float bv = -INFINITY;
            for (int64_t i = 0; i < n; i++) {
                float v = x[r * n + i];
                if (v != v) v = -INFINITY;
                if (!taken[i] && (best < 0 || v > bv)) {
                    best = i;
                    bv = v;
                }
            }
            taken[best] = 1;
            cr_assert_eq(idx[r * k + s], (int32_t)best, "row %lld rank %d: idx %d, want %lld", (long long)r, s,
                         idx[r * k + s], (long long)best);
            cr_assert_eq(vals[r * k + s], bv);
        }
        free(taken);
    }
    cr_assert_eq(idx[0], 0);
    cr_assert_eq(idx[1], 1000);
    cr_assert_eq(idx[k], 8, "+inf first in row 1");
    wg_cuda_free(ctx, dx);
    wg_cuda_free(ctx, dv);
    wg_cuda_free(ctx, di);
    free(x);
    wg_cuda_destroy(&ctx);
}

/* wg_cuda_matmul_same_x reuses the previous call's Q8_1 copy of X only when
 * it is the same X (pointer and shape); anything else is quantized afresh. */
Test(gpu_kernels, matmul_same_x_reuses_only_the_same_activations) {
    WG_GPU_CTX(ctx);
    const int64_t N = 64, K = 256, M = 2;
    float *wf = malloc(N * K * sizeof(float)), xa[2 * 256], xb[2 * 256], ya[128], yb[128], y[128];
    void *w = s_make_w(WG_TYPE_Q4_K, N, K, 5, wf);
    void *w2 = s_make_w(WG_TYPE_Q6_K, N, K, 6, wf);
    void *dw = wg_gpu_put(ctx, w, wg_row_size(WG_TYPE_Q4_K, K) * N);
    void *dw2 = wg_gpu_put(ctx, w2, wg_row_size(WG_TYPE_Q6_K, K) * N);
    wg_fill(xa, M * K, 81, 1.0f);
    wg_fill(xb, M * K, 82, 1.0f);
    float *dxa = wg_gpu_put(ctx, xa, sizeof xa), *dxb = wg_gpu_put(ctx, xb, sizeof xb);
    float *dy = wg_gpu_alloc(ctx, sizeof y);
    /* plain products as the reference */
    WG_GPU_OK(wg_cuda_matmul(ctx, WG_TYPE_Q6_K, dw2, N, K, dxa, M, dy));
    wg_gpu_get(ctx, ya, dy, sizeof ya);
    WG_GPU_OK(wg_cuda_matmul(ctx, WG_TYPE_Q6_K, dw2, N, K, dxb, M, dy));
    wg_gpu_get(ctx, yb, dy, sizeof yb);
    cr_assert(memcmp(ya, yb, sizeof ya) != 0);
    /* same X after a product of another weight: reused, same numbers */
    WG_GPU_OK(wg_cuda_matmul(ctx, WG_TYPE_Q4_K, dw, N, K, dxa, M, dy));
    WG_GPU_OK(wg_cuda_matmul_same_x(ctx, WG_TYPE_Q6_K, dw2, N, K, dxa, M, dy));
    wg_gpu_get(ctx, y, dy, sizeof y);
    cr_assert(memcmp(y, ya, sizeof y) == 0, "reused Q8_1 copy gave other numbers");
    /* another X: must not reuse xa's copy */
    WG_GPU_OK(wg_cuda_matmul_same_x(ctx, WG_TYPE_Q6_K, dw2, N, K, dxb, M, dy));
    wg_gpu_get(ctx, y, dy, sizeof y);
    cr_assert(memcmp(y, yb, sizeof y) == 0, "same_x with a different X used the stale copy");
    /* another M over the same pointer: quantized afresh (row 0 equals a lone row's product) */
    WG_GPU_OK(wg_cuda_matmul_same_x(ctx, WG_TYPE_Q6_K, dw2, N, K, dxb, 1, dy));
    wg_gpu_get(ctx, y, dy, N * sizeof(float));
    cr_assert(wg_nmse(y, yb, N) <= 1e-10, "M=1 row differs: NMSE %.3g", wg_nmse(y, yb, N));
    wg_cuda_free(ctx, dw);
    wg_cuda_free(ctx, dw2);
    wg_cuda_free(ctx, dxa);
    wg_cuda_free(ctx, dxb);
    wg_cuda_free(ctx, dy);
    free(w);
    free(w2);
    free(wf);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, graph_capture_replays_with_new_inputs) {
    WG_GPU_CTX(ctx);
    const int64_t N = 64, K = 256, M = 2;
    float *wf = malloc(N * K * sizeof(float)), x[2 * 256], y1[128], y2[128], yd[128];
    void *w = s_make_w(WG_TYPE_Q4_K, N, K, 4, wf);
    void *dw = wg_gpu_put(ctx, w, wg_row_size(WG_TYPE_Q4_K, K) * N);
    float *dx = wg_gpu_alloc(ctx, sizeof x), *dy = wg_gpu_alloc(ctx, sizeof y1);
    WG_GPU_OK(wg_cuda_reserve_scratch(ctx, wg_cuda_matmul_scratch_bytes(WG_TYPE_Q4_K, N, K, M)));
    wg_cuda_graph_t *g = NULL;
    WG_GPU_OK(wg_cuda_graph_begin(ctx));
    WG_GPU_OK(wg_cuda_norm(ctx, WG_CUDA_NORM_RMS, dx, M, K, K, NULL, NULL, 1e-6f));
    WG_GPU_OK(wg_cuda_matmul(ctx, WG_TYPE_Q4_K, dw, N, K, dx, M, dy));
    WG_GPU_OK(wg_cuda_graph_end(ctx, &g));
    cr_assert(g);
    for (int round = 0; round < 2; round++) {
        wg_fill(x, M * K, 70 + (uint32_t)round, 1.0f);
        WG_GPU_OK(wg_cuda_upload(ctx, dx, x, sizeof x));
        WG_GPU_OK(wg_cuda_graph_launch(ctx, g));
        wg_gpu_get(ctx, round ? y2 : y1, dy, sizeof y1);
        /* the same ops run directly */
        WG_GPU_OK(wg_cuda_upload(ctx, dx, x, sizeof x));
        WG_GPU_OK(wg_cuda_norm(ctx, WG_CUDA_NORM_RMS, dx, M, K, K, NULL, NULL, 1e-6f));
        WG_GPU_OK(wg_cuda_matmul(ctx, WG_TYPE_Q4_K, dw, N, K, dx, M, dy));
        wg_gpu_get(ctx, yd, dy, sizeof yd);
        cr_assert(memcmp(yd, round ? y2 : y1, sizeof yd) == 0, "graph replay %d differs from direct run", round);
    }
    cr_assert(memcmp(y1, y2, sizeof y1) != 0, "replay saw the new input");
    /* scratch growth during capture is refused, and capture ends cleanly */
    WG_GPU_OK(wg_cuda_graph_begin(ctx));
    cr_assert_neq(wg_cuda_matmul(ctx, WG_TYPE_Q4_K, dw, N, K, dx, 4096, dy), WG_OK); /* needs 2 MiB of F16 X */
    wg_cuda_graph_t *g2 = NULL;
    (void)wg_cuda_graph_end(ctx, &g2);
    wg_cuda_graph_destroy(&g2);
    wg_cuda_graph_destroy(&g);
    cr_assert_null(g);
    wg_cuda_free(ctx, dw);
    wg_cuda_free(ctx, dx);
    wg_cuda_free(ctx, dy);
    free(w);
    free(wf);
    wg_cuda_destroy(&ctx);
}

Test(gpu_kernels, weight_registry_uploads_once) {
    WG_GPU_CTX(ctx);
    wg_cuda_weights_t *reg = wg_cuda_weights_new(ctx);
    cr_assert(reg);
    static uint8_t a[100000], b[3000];
    for (size_t i = 0; i < sizeof a; i++) a[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)(i * 13);
    const void *da = NULL, *da2 = NULL, *db = NULL;
    WG_GPU_OK(wg_cuda_weights_get(reg, a, sizeof a, &da));
    WG_GPU_OK(wg_cuda_weights_get(reg, b, sizeof b, &db));
    WG_GPU_OK(wg_cuda_weights_get(reg, a, sizeof a, &da2));
    cr_assert_eq(da, da2, "second request returns the same copy");
    cr_assert_eq(wg_cuda_weights_count(reg), 2);
    cr_assert_eq(wg_cuda_weights_bytes(reg), sizeof a + sizeof b);
    cr_assert_eq(wg_cuda_weights_get(reg, a, 10, &da2), WG_ERR_INVAL);
    static uint8_t back[100000];
    wg_gpu_get(ctx, back, da, sizeof a);
    cr_assert(memcmp(back, a, sizeof a) == 0);
    wg_cuda_weights_destroy(&reg);
    cr_assert_null(reg);
    wg_cuda_destroy(&ctx);
}
