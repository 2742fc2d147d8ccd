/* wg_cuda_ew — the small ops the device forward pass composes between the
 * big kernels: embedding rows, residual and bias adds, clamps, soft-caps,
 * strided row copies (the K/V cache store is in wg_cuda_attn.cu, beside
 * the readers of that layout). Each is one launch with fixed
 * shapes, so a decode step made of them can be captured in a CUDA graph.
 * Arithmetic is the CPU forward pass's, element for element (fp32, same
 * operation order), so only the big kernels' rounding differs. */
#include <math.h>

#include "wg_cuda_decode.cuh"
#include "wg_cuda_internal.h"

#define WG_EW_THREADS 256

/* ---- embedding rows ---- */

template <int T>
__global__ void k_get_rows_q(const uint8_t *table, size_t row_bytes, int64_t nsb_row, const int32_t *ids, int64_t n,
                             float *out, float scale) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n * nsb_row) return;
    const int64_t r = i / nsb_row, sb = i % nsb_row;
    wg_sub32_t s;
    wg_decode<T>(table + (size_t)ids[r] * row_bytes, sb, s);
    float *o = out + i * 32;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        const float v = wg_sub_value<T>(s, j);
        o[j] = scale != 1.0f ? v * scale : v;
    }
}

__global__ void k_get_rows_float(int type, const uint8_t *table, size_t row_bytes, int64_t k, const int32_t *ids,
                                 int64_t n, float *out, float scale) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n * k) return;
    const int64_t r = i / k, j = i % k;
    const uint8_t *row = table + (size_t)ids[r] * row_bytes;
    float v;
    if (type == WG_TYPE_F32)
        v = ((const float *)row)[j];
    else if (type == WG_TYPE_F16)
        v = wg_fp16_to_fp32(((const uint16_t *)row)[j]);
    else
        v = wg_bf16_to_fp32(((const uint16_t *)row)[j]);
    out[i] = scale != 1.0f ? v * scale : v;
}

extern "C" wg_status wg_cuda_get_rows(wg_cuda_t *ctx, wg_type_t t, const void *table, size_t row_bytes, int64_t k,
                                      const int32_t *ids, int64_t n, float *out, float scale) {
    WG_CU_CHECK(wg_cuda_type_supported(t), "cuda get_rows: type id %d has no device kernel", (int)t);
    WG_CU_CHECK(n >= 0 && k > 0 && row_bytes > 0, "cuda get_rows: bad shape n=%lld k=%lld", (long long)n,
                (long long)k);
    if (n == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    if (t == WG_TYPE_F32 || t == WG_TYPE_F16 || t == WG_TYPE_BF16) {
        k_get_rows_float<<<wg_cuda_blocks(n * k, WG_EW_THREADS), WG_EW_THREADS, 0, ctx->stream>>>(
            (int)t, (const uint8_t *)table, row_bytes, k, ids, n, out, scale);
        WG_CU_LAUNCHED();
        return WG_OK;
    }
    WG_CU_CHECK(k % 32 == 0, "cuda get_rows: k=%lld not a multiple of 32", (long long)k);
    const int64_t nsb_row = k / 32;
    switch (t) {
#define X(T_)                                                                                             \
    case T_:                                                                                              \
        k_get_rows_q<T_><<<wg_cuda_blocks(n * nsb_row, 128), 128, 0, ctx->stream>>>(                      \
            (const uint8_t *)table, row_bytes, nsb_row, ids, n, out, scale);                              \
        break;
        WG_CU_FOR_QTYPES(X)
#undef X
    default: break;
    }
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- elementwise ---- */

__global__ void k_add(float *y, const float *a, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] += a[i];
}

__global__ void k_add2(float *x, const float *a, const float *b, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = (a[i] + b[i]) + x[i];
}

__global__ void k_add_bias(float *y, const float *b, int64_t M, int64_t N) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < M * N) y[i] += b[i % N];
}

__global__ void k_clamp(float *x, int64_t n, float c) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] < -c ? -c : (x[i] > c ? c : x[i]);
}

__global__ void k_softcap(float *x, int64_t n, float c) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = tanhf(x[i] / c) * c;
}

#define S_EW_ENTRY(n)                        \
    do {                                     \
        if ((n) == 0) return WG_OK;          \
        wg_status st_ = wg_cuda_enter(ctx);  \
        if (st_) return st_;                 \
    } while (0)

extern "C" wg_status wg_cuda_add(wg_cuda_t *ctx, float *y, const float *a, int64_t n) {
    WG_CU_CHECK(n >= 0, "cuda add: n=%lld", (long long)n);
    S_EW_ENTRY(n);
    k_add<<<wg_cuda_blocks(n, WG_EW_THREADS), WG_EW_THREADS, 0, ctx->stream>>>(y, a, n);
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_add2(wg_cuda_t *ctx, float *x, const float *a, const float *b, int64_t n) {
    WG_CU_CHECK(n >= 0, "cuda add2: n=%lld", (long long)n);
    S_EW_ENTRY(n);
    k_add2<<<wg_cuda_blocks(n, WG_EW_THREADS), WG_EW_THREADS, 0, ctx->stream>>>(x, a, b, n);
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_add_bias(wg_cuda_t *ctx, float *y, const float *b, int64_t M, int64_t N) {
    WG_CU_CHECK(M >= 0 && N > 0, "cuda add_bias: M=%lld N=%lld", (long long)M, (long long)N);
    S_EW_ENTRY(M);
    k_add_bias<<<wg_cuda_blocks(M * N, WG_EW_THREADS), WG_EW_THREADS, 0, ctx->stream>>>(y, b, M, N);
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_clamp(wg_cuda_t *ctx, float *x, int64_t n, float c) {
    WG_CU_CHECK(n >= 0 && c > 0.0f, "cuda clamp: n=%lld c=%g", (long long)n, (double)c);
    S_EW_ENTRY(n);
    k_clamp<<<wg_cuda_blocks(n, WG_EW_THREADS), WG_EW_THREADS, 0, ctx->stream>>>(x, n, c);
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_softcap(wg_cuda_t *ctx, float *x, int64_t n, float c) {
    WG_CU_CHECK(n >= 0 && c > 0.0f, "cuda softcap: n=%lld c=%g", (long long)n, (double)c);
    S_EW_ENTRY(n);
    k_softcap<<<wg_cuda_blocks(n, WG_EW_THREADS), WG_EW_THREADS, 0, ctx->stream>>>(x, n, c);
    WG_CU_LAUNCHED();
    return WG_OK;
}

extern "C" wg_status wg_cuda_copy_rows(wg_cuda_t *ctx, float *dst, int64_t dst_stride, const float *src,
                                       int64_t src_stride, int64_t rows, int64_t cols) {
    WG_CU_CHECK(rows >= 0 && cols > 0 && dst_stride >= cols && src_stride >= cols,
                "cuda copy_rows: rows=%lld cols=%lld strides %lld/%lld", (long long)rows, (long long)cols,
                (long long)dst_stride, (long long)src_stride);
    S_EW_ENTRY(rows);
    WG_CU(cudaMemcpy2DAsync(dst, (size_t)dst_stride * sizeof(float), src, (size_t)src_stride * sizeof(float),
                            (size_t)cols * sizeof(float), (size_t)rows, cudaMemcpyDeviceToDevice, ctx->stream));
    return WG_OK;
}
