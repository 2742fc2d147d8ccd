/* wg_cuda_dequant — device dequantization (to F32 and F16), F32 -> F16/BF16
 * conversion and activation quantization to Q8_1, plus the host emulation
 * entry points that run the same decoders on the CPU.
 *
 * Dequantization: one thread per 32-value sub-block (wg_cuda_decode.cuh),
 * values formed with the reference's exact float operations, so F32 output is
 * bit-exact with kernels/ref. Q8_1: one warp per 32-value block, lane i owns
 * value i; max and sum are warp reductions (order-independent, exact). */
#include <cuda_fp16.h>

#include "wg_cuda_decode.cuh"
#include "wg_cuda_internal.h"

/* ---- dequantize ---- */

__device__ __forceinline__ void s_put(float *y, int64_t i, float v) { y[i] = v; }
__device__ __forceinline__ void s_put(uint16_t *y, int64_t i, float v) { y[i] = wg_fp32_to_fp16(v); }

template <int T, typename O>
__global__ void k_dequant(const uint8_t *x, size_t row_bytes, int64_t nsb_row, int64_t nsb, O *y) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= nsb) return;
    const int64_t r = i / nsb_row, sb = i % nsb_row;
    wg_sub32_t s;
    wg_decode<T>(x + r * row_bytes, sb, s);
    O *out = y + i * 32; /* rows are contiguous in y: row r, sub-block sb is element block i */
#pragma unroll
    for (int j = 0; j < 32; j++) s_put(out, j, wg_sub_value<T>(s, j));
}

template <typename O> __global__ void k_convert_f16(const uint16_t *x, O *y, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) s_put(y, i, wg_fp16_to_fp32(x[i]));
}

template <typename O> __global__ void k_convert_bf16(const uint16_t *x, O *y, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) s_put(y, i, wg_bf16_to_fp32(x[i]));
}

template <typename O> __global__ void k_convert_f32(const float *x, O *y, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) s_put(y, i, x[i]);
}

__global__ void k_f32_to_bf16(const float *x, uint16_t *y, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = wg_fp32_to_bf16(x[i]);
}

extern "C" bool wg_cuda_type_supported(wg_type_t t) {
    switch (t) {
    case WG_TYPE_F32:
    case WG_TYPE_F16:
    case WG_TYPE_BF16:
#define X(T_) case T_:
        WG_CU_FOR_QTYPES(X)
#undef X
        return true;
    default:
        return false;
    }
}

static int64_t s_blck(wg_type_t t) {
    switch (t) {
#define X(T_) \
    case T_: return wg_qt<T_>::blck;
        WG_CU_FOR_QTYPES(X)
#undef X
    default: return 1;
    }
}

static size_t s_bytes(wg_type_t t) {
    switch (t) {
#define X(T_) \
    case T_: return wg_qt<T_>::bytes;
        WG_CU_FOR_QTYPES(X)
#undef X
    case WG_TYPE_F32: return 4;
    default: return 2;
    }
}

template <typename O>
static wg_status s_dequant(wg_cuda_t *ctx, wg_type_t t, const void *x, O *y, int64_t n_rows, int64_t k,
                           const char *what) {
    WG_CU_CHECK(wg_cuda_type_supported(t), "cuda %s: type id %d has no device kernel", what, (int)t);
    WG_CU_CHECK(n_rows >= 0 && k > 0 && k % s_blck(t) == 0,
                "cuda %s: k=%lld not a positive multiple of the block size %lld (n_rows=%lld)", what,
                (long long)k, (long long)s_blck(t), (long long)n_rows);
    if (n_rows == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    const int64_t n = n_rows * k;
    if (t == WG_TYPE_F32 || t == WG_TYPE_F16 || t == WG_TYPE_BF16) {
        const unsigned nb = wg_cuda_blocks(n, 256);
        if (t == WG_TYPE_F32)
            k_convert_f32<O><<<nb, 256, 0, ctx->stream>>>((const float *)x, y, n);
        else if (t == WG_TYPE_F16)
            k_convert_f16<O><<<nb, 256, 0, ctx->stream>>>((const uint16_t *)x, y, n);
        else
            k_convert_bf16<O><<<nb, 256, 0, ctx->stream>>>((const uint16_t *)x, y, n);
        WG_CU_LAUNCHED();
        return WG_OK;
    }
    const int64_t nsb_row = k / 32, nsb = n / 32;
    const size_t row_bytes = (size_t)(k / s_blck(t)) * s_bytes(t);
    switch (t) {
#define X(T_)                                                                                          \
    case T_:                                                                                           \
        k_dequant<T_, O><<<wg_cuda_blocks(nsb, 128), 128, 0, ctx->stream>>>((const uint8_t *)x, row_bytes, \
                                                                            nsb_row, nsb, y);          \
        break;
        WG_CU_FOR_QTYPES(X)
#undef X
    default: break;
    }
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_dequant_f32(wg_cuda_t *ctx, wg_type_t t, const void *x, float *y, int64_t n_rows,
                                         int64_t k) {
    return s_dequant<float>(ctx, t, x, y, n_rows, k, "dequant_f32");
}

extern "C" wg_status wg_cuda_dequant_f16(wg_cuda_t *ctx, wg_type_t t, const void *x, uint16_t *y,
                                         int64_t n_rows, int64_t k) {
    return s_dequant<uint16_t>(ctx, t, x, y, n_rows, k, "dequant_f16");
}

extern "C" wg_status wg_cuda_f32_to_f16(wg_cuda_t *ctx, const float *x, uint16_t *y, int64_t n) {
    WG_CU_CHECK(n >= 0, "cuda f32_to_f16: n=%lld", (long long)n);
    if (n == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_convert_f32<uint16_t><<<wg_cuda_blocks(n, 256), 256, 0, ctx->stream>>>(x, y, n);
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_f32_to_bf16(wg_cuda_t *ctx, const float *x, uint16_t *y, int64_t n) {
    WG_CU_CHECK(n >= 0, "cuda f32_to_bf16: n=%lld", (long long)n);
    if (n == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_f32_to_bf16<<<wg_cuda_blocks(n, 256), 256, 0, ctx->stream>>>(x, y, n);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- Q8_1 quantization ---- */

/* One warp per block of 32 values; 8 blocks per 256-thread CTA. */
__global__ void k_quantize_q8_1(const float *x, int64_t stride, wg_block_q8_1 *y, int64_t nb_row, int64_t nb) {
    const int64_t ib = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (ib >= nb) return; /* whole warp leaves together: ib is uniform per warp */
    const int64_t r = ib / nb_row, b = ib % nb_row;
    const float v = x[r * stride + b * 32 + lane];
    float amax = fabsf(v);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const float rq = roundf(v * id);
    int q = rq != rq ? 0 : (rq <= -128.0f ? -128 : (rq >= 127.0f ? 127 : (int)rq));
    int sum = q;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    wg_block_q8_1 *out = y + ib;
    out->qs[lane] = (int8_t)q;
    if (lane == 0) {
        out->d = wg_fp32_to_fp16(d);
        out->s = wg_fp32_to_fp16((float)sum * d);
    }
}

extern "C" wg_status wg_cuda_quantize_q8_1(wg_cuda_t *ctx, const float *x, int64_t stride, void *y,
                                           int64_t n_rows, int64_t k) {
    WG_CU_CHECK(n_rows >= 0 && k > 0 && k % 32 == 0 && stride >= k,
                "cuda quantize_q8_1: k=%lld must be a positive multiple of 32 and stride=%lld >= k",
                (long long)k, (long long)stride);
    if (n_rows == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    const int64_t nb_row = k / 32, nb = n_rows * nb_row;
    k_quantize_q8_1<<<wg_cuda_blocks(nb, 8), 256, 0, ctx->stream>>>(x, stride, (wg_block_q8_1 *)y, nb_row, nb);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- host emulation of the decoders ---- */

template <int T> static void s_emu_dequant(const uint8_t *x, float *y, int64_t k) {
    for (int64_t sb = 0; sb < k / 32; sb++) {
        wg_sub32_t s;
        wg_decode<T>(x, sb, s);
        for (int j = 0; j < 32; j++) y[sb * 32 + j] = wg_sub_value<T>(s, j);
    }
}

template <int T> static float s_emu_dot(const uint8_t *w, const wg_block_q8_1 *xq, int64_t k) {
    float acc = 0.0f;
    for (int64_t sb = 0; sb < k / 32; sb++) {
        wg_sub32_t s;
        wg_decode<T>(w, sb, s);
        acc += wg_dot_sub_q8_1<T>(s, xq + sb);
    }
    return acc;
}

extern "C" wg_status wg_cuda_emu_dequant_row(wg_type_t t, const void *x, float *y, int64_t k) {
    WG_CU_CHECK(k > 0 && k % s_blck(t) == 0, "cuda emu dequant: k=%lld", (long long)k);
    switch (t) {
#define X(T_)                                                    \
    case T_: s_emu_dequant<T_>((const uint8_t *)x, y, k); return WG_OK;
        WG_CU_FOR_QTYPES(X)
#undef X
    default: return wg_error(WG_ERR_UNSUPPORTED, "cuda emu dequant: type id %d is not a block type", (int)t);
    }
}

extern "C" wg_status wg_cuda_emu_dot_q8_1(wg_type_t t, const void *w, const void *xq, int64_t k, float *out) {
    WG_CU_CHECK(k > 0 && k % s_blck(t) == 0, "cuda emu dot: k=%lld", (long long)k);
    switch (t) {
#define X(T_)                                                                              \
    case T_: *out = s_emu_dot<T_>((const uint8_t *)w, (const wg_block_q8_1 *)xq, k); return WG_OK;
        WG_CU_FOR_QTYPES(X)
#undef X
    default: return wg_error(WG_ERR_UNSUPPORTED, "cuda emu dot: type id %d is not a block type", (int)t);
    }
}
