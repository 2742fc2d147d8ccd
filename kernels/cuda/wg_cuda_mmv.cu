/* wg_cuda_mmv — matrix x small-batch products for M <= WG_CUDA_MMV_MAX_M:
 *     Y[m][n] = sum_k W[n][k] * X[m][k]
 *
 * One warp per weight row, 4 rows per 128-thread CTA. Lanes stride over the
 * row's 32-value sub-blocks, decode each once (wg_cuda_decode.cuh) and reuse
 * it for up to MB activation rows (grid.y walks M in chunks of MB), so weight
 * bytes — the bound resource in decode — are read once per MB activations.
 * Quantized weights meet Q8_1 activations in dp4a integer dots; float
 * weights use F32 FMAs with X rounded to the weight type as kernels/ref does. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "wg_cuda_decode.cuh"
#include "wg_cuda_internal.h"

#define WG_MMV_WARPS 4

__device__ __forceinline__ float s_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <int T, int MB>
__global__ void __launch_bounds__(32 * WG_MMV_WARPS)
    k_mmvq(const uint8_t *W, size_t row_bytes, int64_t N, int64_t nsb, const wg_block_q8_1 *X, int64_t M,
           float *Y) {
    const int lane = threadIdx.x % 32;
    const int64_t row = blockIdx.x * (int64_t)WG_MMV_WARPS + threadIdx.x / 32;
    if (row >= N) return; /* uniform per warp */
    const int64_t m0 = (int64_t)blockIdx.y * MB;
    const int mc = (int)min((int64_t)MB, M - m0);
    const uint8_t *wr = W + row * row_bytes;
    const wg_block_q8_1 *xr = X + m0 * nsb;
    float acc[MB];
#pragma unroll
    for (int m = 0; m < MB; m++) acc[m] = 0.0f;
#pragma unroll 2 /* two sub-blocks' loads in flight per lane (small K leaves few warps to hide latency) */
    for (int64_t sb = lane; sb < nsb; sb += 32) {
        wg_sub32_t s;
        wg_decode<T>(wr, sb, s);
#pragma unroll
        for (int m = 0; m < MB; m++)
            if (m < mc) acc[m] += wg_dot_sub_q8_1<T>(s, xr + m * nsb + sb);
    }
#pragma unroll
    for (int m = 0; m < MB; m++) {
        const float v = s_warp_sum(acc[m]);
        if (lane == 0 && m < mc) Y[(m0 + m) * N + row] = v;
    }
}

template <int T>
static wg_status s_launch_mmvq(wg_cuda_t *ctx, const void *W, size_t row_bytes, int64_t N, int64_t nsb,
                               const void *Xq, int64_t M, float *Y) {
    const dim3 block(32 * WG_MMV_WARPS);
    if (M == 1) {
        const dim3 grid(wg_cuda_blocks(N, WG_MMV_WARPS), 1);
        k_mmvq<T, 1><<<grid, block, 0, ctx->stream>>>((const uint8_t *)W, row_bytes, N, nsb,
                                                       (const wg_block_q8_1 *)Xq, M, Y);
    } else if (M <= 4) {
        const dim3 grid(wg_cuda_blocks(N, WG_MMV_WARPS), 1);
        k_mmvq<T, 4><<<grid, block, 0, ctx->stream>>>((const uint8_t *)W, row_bytes, N, nsb,
                                                       (const wg_block_q8_1 *)Xq, M, Y);
    } else {
        const dim3 grid(wg_cuda_blocks(N, WG_MMV_WARPS), wg_cuda_blocks(M, 8));
        k_mmvq<T, 8><<<grid, block, 0, ctx->stream>>>((const uint8_t *)W, row_bytes, N, nsb,
                                                       (const wg_block_q8_1 *)Xq, M, Y);
    }
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_mmvq(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                                  const void *Xq, int64_t M, float *Y) {
    WG_CU_CHECK(N > 0 && K > 0 && M >= 0 && M <= WG_CUDA_MMV_MAX_M,
                "cuda mmvq: bad shape N=%lld K=%lld M=%lld (M <= %d)", (long long)N, (long long)K, (long long)M,
                WG_CUDA_MMV_MAX_M);
    WG_CU_CHECK(N <= (int64_t)WG_MMV_WARPS * 0x7fffffff, "cuda mmvq: N=%lld too large", (long long)N);
    if (M == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    switch (wtype) {
#define X(T_)                                                                                          \
    case T_:                                                                                           \
        WG_CU_CHECK(K % wg_qt<T_>::blck == 0, "cuda mmvq: K=%lld not a multiple of %d", (long long)K,  \
                    wg_qt<T_>::blck);                                                                  \
        return s_launch_mmvq<T_>(ctx, W, (size_t)(K / wg_qt<T_>::blck) * wg_qt<T_>::bytes, N, K / 32, Xq, M, Y);
        WG_CU_FOR_QTYPES(X)
#undef X
    default:
        return wg_error(WG_ERR_UNSUPPORTED, "cuda mmvq: weight type id %d has no quantized kernel", (int)wtype);
    }
}

/* ---- float weights ---- */

/* Weight element as float and X rounded to the weight type. */
template <int T> __device__ __forceinline__ float s_wval(const void *W, int64_t i);
template <> __device__ __forceinline__ float s_wval<WG_TYPE_F32>(const void *W, int64_t i) {
    return ((const float *)W)[i];
}
template <> __device__ __forceinline__ float s_wval<WG_TYPE_F16>(const void *W, int64_t i) {
    return __half2float(((const __half *)W)[i]);
}
template <> __device__ __forceinline__ float s_wval<WG_TYPE_BF16>(const void *W, int64_t i) {
    return __bfloat162float(((const __nv_bfloat16 *)W)[i]);
}
template <int T> __device__ __forceinline__ float s_xround(float x);
template <> __device__ __forceinline__ float s_xround<WG_TYPE_F32>(float x) { return x; }
template <> __device__ __forceinline__ float s_xround<WG_TYPE_F16>(float x) {
    return __half2float(__float2half_rn(x));
}
template <> __device__ __forceinline__ float s_xround<WG_TYPE_BF16>(float x) {
    return __bfloat162float(__float2bfloat16_rn(x));
}

/* Lanes take 4 consecutive values per step (vector-friendly when K % 4 == 0,
 * which every caller's K is; a scalar tail handles the rest). */
template <int T, int MB>
__global__ void __launch_bounds__(32 * WG_MMV_WARPS)
    k_mmv_float(const void *W, int64_t N, int64_t K, const float *X, int64_t M, float *Y) {
    const int lane = threadIdx.x % 32;
    const int64_t row = blockIdx.x * (int64_t)WG_MMV_WARPS + threadIdx.x / 32;
    if (row >= N) return;
    const int64_t m0 = (int64_t)blockIdx.y * MB;
    const int mc = (int)min((int64_t)MB, M - m0);
    const int64_t base = row * K;
    float acc[MB];
#pragma unroll
    for (int m = 0; m < MB; m++) acc[m] = 0.0f;
    const int64_t K4 = K & ~(int64_t)3;
    for (int64_t i = 4 * lane; i < K4; i += 128) {
        float w[4];
#pragma unroll
        for (int j = 0; j < 4; j++) w[j] = s_wval<T>(W, base + i + j);
#pragma unroll
        for (int m = 0; m < MB; m++)
            if (m < mc) {
                const float *x = X + (m0 + m) * K + i;
#pragma unroll
                for (int j = 0; j < 4; j++) acc[m] += w[j] * s_xround<T>(x[j]);
            }
    }
    for (int64_t i = K4 + lane; i < K; i += 32) {
        const float w = s_wval<T>(W, base + i);
#pragma unroll
        for (int m = 0; m < MB; m++)
            if (m < mc) acc[m] += w * s_xround<T>(X[(m0 + m) * K + i]);
    }
#pragma unroll
    for (int m = 0; m < MB; m++) {
        const float v = s_warp_sum(acc[m]);
        if (lane == 0 && m < mc) Y[(m0 + m) * N + row] = v;
    }
}

template <int T>
static void s_launch_mmv_float(wg_cuda_t *ctx, const void *W, int64_t N, int64_t K, const float *X, int64_t M,
                               float *Y) {
    const dim3 block(32 * WG_MMV_WARPS);
    if (M == 1)
        k_mmv_float<T, 1><<<dim3(wg_cuda_blocks(N, WG_MMV_WARPS), 1), block, 0, ctx->stream>>>(W, N, K, X, M, Y);
    else
        k_mmv_float<T, 8><<<dim3(wg_cuda_blocks(N, WG_MMV_WARPS), wg_cuda_blocks(M, 8)), block, 0, ctx->stream>>>(
            W, N, K, X, M, Y);
}

extern "C" wg_status wg_cuda_mmv_float(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                                       const float *X, int64_t M, float *Y) {
    WG_CU_CHECK(N > 0 && K > 0 && M >= 0 && M <= WG_CUDA_MMV_MAX_M,
                "cuda mmv_float: bad shape N=%lld K=%lld M=%lld (M <= %d)", (long long)N, (long long)K,
                (long long)M, WG_CUDA_MMV_MAX_M);
    if (M == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    if (wtype == WG_TYPE_F32)
        s_launch_mmv_float<WG_TYPE_F32>(ctx, W, N, K, X, M, Y);
    else if (wtype == WG_TYPE_F16)
        s_launch_mmv_float<WG_TYPE_F16>(ctx, W, N, K, X, M, Y);
    else if (wtype == WG_TYPE_BF16)
        s_launch_mmv_float<WG_TYPE_BF16>(ctx, W, N, K, X, M, Y);
    else
        return wg_error(WG_ERR_UNSUPPORTED, "cuda mmv_float: weight type id %d is not F32/F16/BF16", (int)wtype);
    WG_CU_LAUNCHED();
    return WG_OK;
}
