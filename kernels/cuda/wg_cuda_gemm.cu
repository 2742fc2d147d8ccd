/* wg_cuda_gemm — the cuBLAS path for large M and the matmul dispatcher.
 *
 * Row-major Y[M][N] = X[M][K] @ W[N][K]^T is, in cuBLAS's column-major
 * terms, Y^T (N x M, ld N) = op_T(W as K x N, ld K) * X^T (K x M, ld K), so
 * no transposes are materialised. Quantized weights are dequantized to F16 in
 * tiles of rows (bounded scratch) and multiplied with X rounded to F16;
 * accumulation is F32 (CUBLAS_COMPUTE_32F) everywhere.
 *
 * Scratch layout (ctx->scratch): [X converted: M*K halves][W tile: tn*K halves]
 * or, for the mat-vec path, [X as Q8_1: M*K/32 blocks]. */
#include <cuda_fp16.h>

extern "C" {
#include "../ref/wg_ref.h" /* a C header without its own extern "C" */
}
#include "wg_cuda_internal.h"

#define WG_GEMM_TILE_BYTES ((size_t)64 << 20) /* F16 weight tile budget */

static bool s_is_float(wg_type_t t) { return t == WG_TYPE_F32 || t == WG_TYPE_F16 || t == WG_TYPE_BF16; }

static int64_t s_tile_rows(int64_t N, int64_t K) {
    int64_t tn = (int64_t)(WG_GEMM_TILE_BYTES / ((size_t)K * 2));
    if (tn < 64) tn = 64;
    tn &= ~(int64_t)63;
    return tn < N ? tn : N;
}

static size_t s_align256(size_t b) { return (b + 255) & ~(size_t)255; }

extern "C" size_t wg_cuda_matmul_scratch_bytes(wg_type_t wtype, int64_t N, int64_t K, int64_t M) {
    if (M <= WG_CUDA_MMV_MAX_M) {
        if (s_is_float(wtype)) return 0;
        return s_align256((size_t)M * (size_t)(K / 32) * sizeof(wg_block_q8_1));
    }
    if (wtype == WG_TYPE_F32) return 0;
    size_t b = s_align256((size_t)M * (size_t)K * 2);
    if (!s_is_float(wtype)) b += s_align256((size_t)s_tile_rows(N, K) * (size_t)K * 2);
    return b;
}

extern "C" wg_status wg_cuda_gemm(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                                  const float *X, int64_t M, float *Y) {
    WG_CU_CHECK(N > 0 && K > 0 && M >= 0 && N <= INT32_MAX && K <= INT32_MAX && M <= INT32_MAX,
                "cuda gemm: bad shape N=%lld K=%lld M=%lld", (long long)N, (long long)K, (long long)M);
    WG_CU_CHECK(wg_cuda_type_supported(wtype), "cuda gemm: weight type id %d unsupported", (int)wtype);
    if (M == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    const float one = 1.0f, zero = 0.0f;
    if ((wtype == WG_TYPE_F16 || wtype == WG_TYPE_BF16) && (K % 8 != 0 || M <= WG_CUDA_MMV_MAX_M)) {
        /* cuBLAS 13 on an H100 refused (CUBLAS_STATUS_INVALID_VALUE) 16-bit
         * operands with an F32 result at K = 500 (rows not 16-byte aligned)
         * and at small M; run the mat-vec kernel over chunks of rows there.
         * The forward pass only calls cuBLAS for M > WG_CUDA_MMV_MAX_M. */
        for (int64_t m0 = 0; m0 < M; m0 += WG_CUDA_MMV_MAX_M) {
            const int64_t mm = M - m0 < WG_CUDA_MMV_MAX_M ? M - m0 : WG_CUDA_MMV_MAX_M;
            if ((st = wg_cuda_mmv_float(ctx, wtype, W, N, K, X + m0 * K, mm, Y + m0 * N))) return st;
        }
        return WG_OK;
    }
    if (wtype == WG_TYPE_F32) {
        WG_CUBLAS(cublasGemmEx(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, W, CUDA_R_32F,
                               (int)K, X, CUDA_R_32F, (int)K, &zero, Y, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
        return WG_OK;
    }
    void *scratch = NULL;
    st = wg_cuda_scratch(ctx, wg_cuda_matmul_scratch_bytes(wtype, N, K, M), &scratch);
    if (st) return st;
    uint16_t *xh = (uint16_t *)scratch;
    const int64_t nx = M * K;
    if (wtype == WG_TYPE_BF16) {
        if ((st = wg_cuda_f32_to_bf16(ctx, X, xh, nx))) return st;
        WG_CUBLAS(cublasGemmEx(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, W, CUDA_R_16BF,
                               (int)K, xh, CUDA_R_16BF, (int)K, &zero, Y, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
        return WG_OK;
    }
    if ((st = wg_cuda_f32_to_f16(ctx, X, xh, nx))) return st;
    if (wtype == WG_TYPE_F16) {
        WG_CUBLAS(cublasGemmEx(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, W, CUDA_R_16F,
                               (int)K, xh, CUDA_R_16F, (int)K, &zero, Y, CUDA_R_32F, (int)N, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
        return WG_OK;
    }
    /* Quantized: dequantize tn rows at a time, multiply into Y's columns n0.. */
    uint16_t *wt = (uint16_t *)((char *)scratch + s_align256((size_t)nx * 2));
    const int64_t tn = s_tile_rows(N, K);
    const size_t row_bytes = wg_row_size(wtype, K);
    for (int64_t n0 = 0; n0 < N; n0 += tn) {
        const int64_t rows = N - n0 < tn ? N - n0 : tn;
        if ((st = wg_cuda_dequant_f16(ctx, wtype, (const char *)W + (size_t)n0 * row_bytes, wt, rows, K)))
            return st;
        WG_CUBLAS(cublasGemmEx(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)M, (int)K, &one, wt,
                               CUDA_R_16F, (int)K, xh, CUDA_R_16F, (int)K, &zero, Y + n0, CUDA_R_32F, (int)N,
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return WG_OK;
}

static wg_status s_matmul(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K, const float *X,
                          int64_t M, float *Y, bool same_x) {
    WG_CU_CHECK(wg_cuda_type_supported(wtype), "cuda matmul: weight type id %d unsupported", (int)wtype);
    WG_CU_CHECK(N > 0 && K > 0 && M >= 0, "cuda matmul: bad shape N=%lld K=%lld M=%lld", (long long)N,
                (long long)K, (long long)M);
    if (M == 0) return WG_OK;
    if (M > WG_CUDA_MMV_MAX_M) return wg_cuda_gemm(ctx, wtype, W, N, K, X, M, Y);
    if (s_is_float(wtype)) return wg_cuda_mmv_float(ctx, wtype, W, N, K, X, M, Y);
    WG_CU_CHECK(K % 32 == 0, "cuda matmul: K=%lld not a multiple of 32", (long long)K);
    if (same_x && ctx->xq_src == X && ctx->xq_k == K && ctx->xq_m == M)
        return wg_cuda_mmvq(ctx, wtype, W, N, K, ctx->scratch, M, Y);
    void *xq = NULL;
    wg_status st = wg_cuda_scratch(ctx, wg_cuda_matmul_scratch_bytes(wtype, N, K, M), &xq);
    if (st) return st;
    if ((st = wg_cuda_quantize_q8_1(ctx, X, K, xq, M, K))) return st;
    ctx->xq_src = X;
    ctx->xq_k = K;
    ctx->xq_m = M;
    return wg_cuda_mmvq(ctx, wtype, W, N, K, xq, M, Y);
}

extern "C" wg_status wg_cuda_matmul(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                                    const float *X, int64_t M, float *Y) {
    return s_matmul(ctx, wtype, W, N, K, X, M, Y, false);
}

extern "C" wg_status wg_cuda_matmul_same_x(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                                           const float *X, int64_t M, float *Y) {
    return s_matmul(ctx, wtype, W, N, K, X, M, Y, true);
}
