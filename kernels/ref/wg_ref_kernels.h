/* wg_ref_kernels — the individual scalar reference kernels behind the traits
 * table of wg_ref.h, exposed so that SIMD/CUDA code can call one directly as a
 * fallback or as the oracle in a test.
 *
 * Naming: wg_k_dequant_<t>_ref (row of blocks -> float), wg_k_quant_<t>_ref
 * (float -> blocks, byte-exact with ggml's quantize_row_<t>_ref without an
 * importance matrix), wg_k_vec_dot_<w>_<x>_ref (weight row of type w times an
 * activation row already quantized to x).
 *
 * Contract for every kernel: `k` is the number of values in the row and must
 * be a multiple of the type's block size (WG_ASSERT otherwise); rows are
 * processed independently and deterministically.
 *
 * Accumulation order (this is the specification the fast kernels are checked
 * against, with a tolerance):
 *   - F32/F16/BF16 dots: each product is formed in float (exact for 16-bit
 *     inputs: 11x11 or 8x8 mantissa bits fit in 24) and accumulated in double
 *     from index 0 upward, as ggml's scalar path does; the result is rounded
 *     to float once at the end.
 *   - block types: one exact integer sum per block (or per sub-block, then
 *     weighted by the integer sub-block scales into one int32 per super-block),
 *     scaled by d_w*d_x in float and added to a float accumulator in block
 *     order. Min terms use the activation's precomputed sums (Q8_1.s, Q8_K.bsums). */
#ifndef WG_REF_KERNELS_H
#define WG_REF_KERNELS_H

#include <stdint.h>

#include "../quant.h"

/* Round to nearest, ties to even, through the 1.5*2^23 trick ggml uses
 * (nearest_int); valid for |v| <= 4194303. */
static inline int wg_ref_nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- plain types ---- */
void wg_k_dequant_f32_ref(const void *x, float *y, int64_t k);
void wg_k_quant_f32_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_f32_f32_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_f16_ref(const void *x, float *y, int64_t k);
void wg_k_quant_f16_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_f16_f16_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_bf16_ref(const void *x, float *y, int64_t k);
void wg_k_quant_bf16_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_bf16_bf16_ref(int64_t k, const void *w, const void *x);

/* ---- legacy 32-blocks ---- */
void wg_k_dequant_q4_0_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q4_0_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q4_0_q8_0_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q4_1_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q4_1_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q4_1_q8_1_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q5_0_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q5_0_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q5_0_q8_0_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q5_1_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q5_1_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q5_1_q8_1_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q8_0_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q8_0_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q8_0_q8_0_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q8_1_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q8_1_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q8_1_q8_1_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_iq4_nl_ref(const void *x, float *y, int64_t k);
void wg_k_quant_iq4_nl_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_iq4_nl_q8_0_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_mxfp4_ref(const void *x, float *y, int64_t k);
void wg_k_quant_mxfp4_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_mxfp4_q8_0_ref(int64_t k, const void *w, const void *x);

/* ---- K-quants (256-value super-blocks) ---- */
void wg_k_dequant_q2_k_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q2_k_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q2_k_q8_k_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q3_k_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q3_k_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q3_k_q8_k_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q4_k_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q4_k_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q4_k_q8_k_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q5_k_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q5_k_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q5_k_q8_k_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q6_k_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q6_k_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q6_k_q8_k_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_q8_k_ref(const void *x, float *y, int64_t k);
void wg_k_quant_q8_k_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_q8_k_q8_k_ref(int64_t k, const void *w, const void *x);

void wg_k_dequant_iq4_xs_ref(const void *x, float *y, int64_t k);
void wg_k_quant_iq4_xs_ref(const float *x, void *y, int64_t k);
float wg_k_vec_dot_iq4_xs_q8_k_ref(int64_t k, const void *w, const void *x);

/* Sub-block scale/min decoding shared by Q4_K and Q5_K (6-bit packed pairs):
 * scale j (0..7) -> *sc, min j -> *m. */
static inline void wg_ref_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q3_K: 6-bit scale j (0..15) as stored (0..63; subtract 32 for the signed value). */
static inline int wg_ref_q3_k_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | (hi << 4);
}

#endif
