/* wg_ref_float — reference kernels of the plain float types F32, F16, BF16.
 *
 * Dots form each product in float and accumulate in double (ggml's scalar
 * path); for 16-bit inputs the float product is exact, so the only rounding
 * is the double accumulation and the final cast to float. */
/* No fused multiply-add contraction: the quantizers must round exactly as
 * ggml's do (GCC already keeps ISO C's contract-off under -std=c11). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include "wg_ref_kernels.h"

/* y[i] = x[i] */
void wg_k_dequant_f32_ref(const void *x, float *y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

/* y[i] = x[i] */
void wg_k_quant_f32_ref(const float *x, void *y, int64_t k) {
    memcpy(y, x, (size_t)k * sizeof(float));
}

/* sum_i w[i]*x[i]: float products, double accumulation in index order */
float wg_k_vec_dot_f32_f32_ref(int64_t k, const void *w, const void *x) {
    const float *a = w, *b = x;
    double s = 0.0;
    for (int64_t i = 0; i < k; i++) s += (double)(a[i] * b[i]);
    return (float)s;
}

/* y[i] = fp32(h[i]) */
void wg_k_dequant_f16_ref(const void *x, float *y, int64_t k) {
    const wg_half *h = x;
    for (int64_t i = 0; i < k; i++) y[i] = wg_fp16_to_fp32(h[i]);
}

/* h[i] = fp16(x[i]), round to nearest even */
void wg_k_quant_f16_ref(const float *x, void *y, int64_t k) {
    wg_half *h = y;
    for (int64_t i = 0; i < k; i++) h[i] = wg_fp32_to_fp16(x[i]);
}

/* sum_i fp32(w[i])*fp32(x[i]): exact float products, double accumulation */
float wg_k_vec_dot_f16_f16_ref(int64_t k, const void *w, const void *x) {
    const wg_half *a = w, *b = x;
    double s = 0.0;
    for (int64_t i = 0; i < k; i++) s += (double)(wg_fp16_to_fp32(a[i]) * wg_fp16_to_fp32(b[i]));
    return (float)s;
}

/* y[i] = fp32(b[i]) */
void wg_k_dequant_bf16_ref(const void *x, float *y, int64_t k) {
    const wg_bf16 *h = x;
    for (int64_t i = 0; i < k; i++) y[i] = wg_bf16_to_fp32(h[i]);
}

/* b[i] = bf16(x[i]), round to nearest even */
void wg_k_quant_bf16_ref(const float *x, void *y, int64_t k) {
    wg_bf16 *h = y;
    for (int64_t i = 0; i < k; i++) h[i] = wg_fp32_to_bf16(x[i]);
}

/* sum_i fp32(w[i])*fp32(x[i]): exact float products, double accumulation */
float wg_k_vec_dot_bf16_bf16_ref(int64_t k, const void *w, const void *x) {
    const wg_bf16 *a = w, *b = x;
    double s = 0.0;
    for (int64_t i = 0; i < k; i++) s += (double)(wg_bf16_to_fp32(a[i]) * wg_bf16_to_fp32(b[i]));
    return (float)s;
}
