/* wg_ref_legacy — reference kernels of the 32-value block types: Q4_0, Q4_1,
 * Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL and MXFP4.
 *
 * Quantizers reproduce ggml's quantize_row_*_ref byte for byte (same float
 * operations in the same order, same truncating casts); dequantizers
 * reproduce ggml's to_float bit for bit. Dots against Q8_0 / Q8_1: one exact
 * int32 sum per block, times (d_w*d_x) in float, accumulated in block order.
 *
 * Within a 32-block the nibble layout is split, not interleaved: byte j holds
 * value j in its low nibble and value j+16 in its high nibble. */
/* No fused multiply-add contraction: the quantizers must round exactly as
 * ggml's do (GCC already keeps ISO C's contract-off under -std=c11). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <float.h>
#include <math.h>

#include "../../common/wg_status.h"
#include "wg_ref_kernels.h"

static const int8_t s_kvalues_iq4nl[16] = WG_KVALUES_IQ4NL_INIT;
static const int8_t s_kvalues_mxfp4[16] = WG_KVALUES_MXFP4_INIT;

/* Blocks in a row of k values; k not a multiple of the block is a caller bug. */
static inline int64_t s_nblocks(int64_t k, int64_t qk) {
    WG_ASSERT(k >= 0 && k % qk == 0);
    return k / qk;
}
#define S_NB(k, qk) s_nblocks((k), (qk))

/* C's float -> int8 truncation, made total: identical to the plain cast for
 * every value the quantizers produce from finite input, and 0 / saturated
 * instead of undefined behaviour for NaN, inf or out-of-range values, so a
 * diverged activation row cannot trigger UB. */
static inline int s_trunc_i8(float v) {
    if (!(v == v)) return 0;
    if (v <= -128.f) return -128;
    if (v >= 127.f) return 127;
    return (int8_t)v;
}

/* The same for float -> uint8 (Q5_1 casts to uint8_t). */
static inline int s_trunc_u8(float v) {
    if (!(v > 0.f)) return 0;
    if (v >= 255.f) return 255;
    return (uint8_t)v;
}

/* ================= Q4_0: x = d * (q - 8), q in 0..15 ================= */

/* y = d * (q - 8) */
void wg_k_dequant_q4_0_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q4_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK4_0);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        for (int j = 0; j < WG_QK4_0 / 2; j++) {
            const int x0 = (x[i].qs[j] & 0x0F) - 8;
            const int x1 = (x[i].qs[j] >> 4) - 8;
            y[i * WG_QK4_0 + j] = x0 * d;
            y[i * WG_QK4_0 + j + WG_QK4_0 / 2] = x1 * d;
        }
    }
}

/* d = (signed value of largest |x|) / -8; q = min(15, trunc(x/d + 8.5)) */
void wg_k_quant_q4_0_ref(const float *x, void *vy, int64_t k) {
    wg_block_q4_0 *y = vy;
    const int64_t nb = S_NB(k, WG_QK4_0);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * WG_QK4_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < WG_QK4_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = wg_fp32_to_fp16(d);
        for (int j = 0; j < WG_QK4_0 / 2; j++) {
            const float x0 = xb[j] * id;
            const float x1 = xb[WG_QK4_0 / 2 + j] * id;
            int q0 = s_trunc_i8(x0 + 8.5f);
            int q1 = s_trunc_i8(x1 + 8.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[i].qs[j] = (uint8_t)((unsigned)q0 | ((unsigned)q1 << 4));
        }
    }
}

/* sum_b d_w*d_x * sum_j (q_w - 8) * q_x */
float wg_k_vec_dot_q4_0_q8_0_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q4_0 *w = vw;
    const wg_block_q8_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK4_0);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK4_0 / 2; j++) {
            sumi += ((w[i].qs[j] & 0x0F) - 8) * x[i].qs[j];
            sumi += ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + WG_QK4_0 / 2];
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * wg_fp16_to_fp32(x[i].d)) * (float)sumi;
    }
    return sumf;
}

/* ================= Q4_1: x = d * q + m, q in 0..15 ================= */

/* y = d * q + m */
void wg_k_dequant_q4_1_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q4_1 *x = vx;
    const int64_t nb = S_NB(k, WG_QK4_1);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        const float m = wg_fp16_to_fp32(x[i].m);
        for (int j = 0; j < WG_QK4_1 / 2; j++) {
            const int x0 = x[i].qs[j] & 0x0F;
            const int x1 = x[i].qs[j] >> 4;
            y[i * WG_QK4_1 + j] = x0 * d + m;
            y[i * WG_QK4_1 + j + WG_QK4_1 / 2] = x1 * d + m;
        }
    }
}

/* d = (max - min) / 15, m = min; q = min(15, trunc((x - min)/d + 0.5)) */
void wg_k_quant_q4_1_ref(const float *x, void *vy, int64_t k) {
    wg_block_q4_1 *y = vy;
    const int64_t nb = S_NB(k, WG_QK4_1);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * WG_QK4_1;
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < WG_QK4_1; j++) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = wg_fp32_to_fp16(d);
        y[i].m = wg_fp32_to_fp16(min);
        for (int j = 0; j < WG_QK4_1 / 2; j++) {
            const float x0 = (xb[j] - min) * id;
            const float x1 = (xb[WG_QK4_1 / 2 + j] - min) * id;
            int q0 = s_trunc_i8(x0 + 0.5f);
            int q1 = s_trunc_i8(x1 + 0.5f);
            if (q0 > 15) q0 = 15;
            if (q1 > 15) q1 = 15;
            y[i].qs[j] = (uint8_t)((unsigned)q0 | ((unsigned)q1 << 4));
        }
    }
}

/* sum_b [ d_w*d_x * sum_j q_w*q_x + m_w * s_x ]  (s_x = d_x * sum_j q_x) */
float wg_k_vec_dot_q4_1_q8_1_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q4_1 *w = vw;
    const wg_block_q8_1 *x = vx;
    const int64_t nb = S_NB(k, WG_QK4_1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK4_1 / 2; j++) {
            sumi += (w[i].qs[j] & 0x0F) * x[i].qs[j];
            sumi += (w[i].qs[j] >> 4) * x[i].qs[j + WG_QK4_1 / 2];
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * wg_fp16_to_fp32(x[i].d)) * (float)sumi +
                wg_fp16_to_fp32(w[i].m) * wg_fp16_to_fp32(x[i].s);
    }
    return sumf;
}

/* ================= Q5_0: x = d * (q - 16), q in 0..31 ================= */

/* The 32 fifth bits are one little-endian uint32: bit j belongs to value j. */
static uint32_t s_load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | ((uint32_t)qh[1] << 8) | ((uint32_t)qh[2] << 16) | ((uint32_t)qh[3] << 24);
}

static void s_store_qh(uint8_t qh[4], uint32_t v) {
    for (int b = 0; b < 4; b++) qh[b] = (uint8_t)(v >> (8 * b));
}

/* y = d * (q - 16) */
void wg_k_dequant_q5_0_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q5_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK5_0);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        const uint32_t qh = s_load_qh(x[i].qh);
        for (int j = 0; j < WG_QK5_0 / 2; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            const int x0 = ((x[i].qs[j] & 0x0F) | h0) - 16;
            const int x1 = ((x[i].qs[j] >> 4) | h1) - 16;
            y[i * WG_QK5_0 + j] = x0 * d;
            y[i * WG_QK5_0 + j + WG_QK5_0 / 2] = x1 * d;
        }
    }
}

/* d = (signed value of largest |x|) / -16; q = min(31, trunc(x/d + 16.5)) */
void wg_k_quant_q5_0_ref(const float *x, void *vy, int64_t k) {
    wg_block_q5_0 *y = vy;
    const int64_t nb = S_NB(k, WG_QK5_0);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * WG_QK5_0;
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < WG_QK5_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = wg_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < WG_QK5_0 / 2; j++) {
            const float x0 = xb[j] * id;
            const float x1 = xb[WG_QK5_0 / 2 + j] * id;
            int q0 = s_trunc_i8(x0 + 16.5f);
            int q1 = s_trunc_i8(x1 + 16.5f);
            if (q0 > 31) q0 = 31;
            if (q1 > 31) q1 = 31;
            y[i].qs[j] = (uint8_t)(((unsigned)q0 & 0x0F) | (((unsigned)q1 & 0x0F) << 4));
            qh |= (((uint32_t)q0 & 0x10) >> 4) << j;
            qh |= (((uint32_t)q1 & 0x10) >> 4) << (j + WG_QK5_0 / 2);
        }
        s_store_qh(y[i].qh, qh);
    }
}

/* sum_b d_w*d_x * sum_j (q_w - 16) * q_x */
float wg_k_vec_dot_q5_0_q8_0_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q5_0 *w = vw;
    const wg_block_q8_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK5_0);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint32_t qh = s_load_qh(w[i].qh);
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK5_0 / 2; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            sumi += (((w[i].qs[j] & 0x0F) | h0) - 16) * x[i].qs[j];
            sumi += (((w[i].qs[j] >> 4) | h1) - 16) * x[i].qs[j + WG_QK5_0 / 2];
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * wg_fp16_to_fp32(x[i].d)) * (float)sumi;
    }
    return sumf;
}

/* ================= Q5_1: x = d * q + m, q in 0..31 ================= */

/* y = d * q + m */
void wg_k_dequant_q5_1_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q5_1 *x = vx;
    const int64_t nb = S_NB(k, WG_QK5_1);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        const float m = wg_fp16_to_fp32(x[i].m);
        const uint32_t qh = s_load_qh(x[i].qh);
        for (int j = 0; j < WG_QK5_1 / 2; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            const int x0 = (x[i].qs[j] & 0x0F) | h0;
            const int x1 = (x[i].qs[j] >> 4) | h1;
            y[i * WG_QK5_1 + j] = x0 * d + m;
            y[i * WG_QK5_1 + j + WG_QK5_1 / 2] = x1 * d + m;
        }
    }
}

/* d = (max - min) / 31, m = min; q = (uint8)((x - min)/d + 0.5) (no clamp, as ggml) */
void wg_k_quant_q5_1_ref(const float *x, void *vy, int64_t k) {
    wg_block_q5_1 *y = vy;
    const int64_t nb = S_NB(k, WG_QK5_1);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * WG_QK5_1;
        float min = xb[0], max = xb[0];
        for (int j = 1; j < WG_QK5_1; j++) {
            if (xb[j] < min) min = xb[j];
            if (xb[j] > max) max = xb[j];
        }
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = wg_fp32_to_fp16(d);
        y[i].m = wg_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < WG_QK5_1 / 2; j++) {
            const float x0 = (xb[j] - min) * id;
            const float x1 = (xb[WG_QK5_1 / 2 + j] - min) * id;
            const int q0 = s_trunc_u8(x0 + 0.5f);
            const int q1 = s_trunc_u8(x1 + 0.5f);
            y[i].qs[j] = (uint8_t)(((unsigned)q0 & 0x0F) | (((unsigned)q1 & 0x0F) << 4));
            qh |= (((uint32_t)q0 & 0x10) >> 4) << j;
            qh |= (((uint32_t)q1 & 0x10) >> 4) << (j + WG_QK5_1 / 2);
        }
        s_store_qh(y[i].qh, qh);
    }
}

/* sum_b [ d_w*d_x * sum_j q_w*q_x + m_w * s_x ] */
float wg_k_vec_dot_q5_1_q8_1_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q5_1 *w = vw;
    const wg_block_q8_1 *x = vx;
    const int64_t nb = S_NB(k, WG_QK5_1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        const uint32_t qh = s_load_qh(w[i].qh);
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK5_1 / 2; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            sumi += ((w[i].qs[j] & 0x0F) | h0) * x[i].qs[j];
            sumi += ((w[i].qs[j] >> 4) | h1) * x[i].qs[j + WG_QK5_1 / 2];
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * wg_fp16_to_fp32(x[i].d)) * (float)sumi +
                wg_fp16_to_fp32(w[i].m) * wg_fp16_to_fp32(x[i].s);
    }
    return sumf;
}

/* ================= Q8_0: x = d * q, q in -127..127 ================= */

/* y = d * q */
void wg_k_dequant_q8_0_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q8_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK8_0);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        for (int j = 0; j < WG_QK8_0; j++) y[i * WG_QK8_0 + j] = x[i].qs[j] * d;
    }
}

/* d = max|x| / 127; q = roundf(x / d) (ties away from zero) */
void wg_k_quant_q8_0_ref(const float *x, void *vy, int64_t k) {
    wg_block_q8_0 *y = vy;
    const int64_t nb = S_NB(k, WG_QK8_0);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * WG_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < WG_QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = wg_fp32_to_fp16(d);
        for (int j = 0; j < WG_QK8_0; j++) y[i].qs[j] = (int8_t)s_trunc_i8(roundf(xb[j] * id));
    }
}

/* sum_b d_w*d_x * sum_j q_w*q_x */
float wg_k_vec_dot_q8_0_q8_0_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q8_0 *w = vw;
    const wg_block_q8_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK8_0);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK8_0; j++) sumi += w[i].qs[j] * x[i].qs[j];
        sumf += (wg_fp16_to_fp32(w[i].d) * wg_fp16_to_fp32(x[i].d)) * (float)sumi;
    }
    return sumf;
}

/* ================= Q8_1: Q8_0 plus s = d * sum(q) ================= */

/* y = d * q */
void wg_k_dequant_q8_1_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q8_1 *x = vx;
    const int64_t nb = S_NB(k, WG_QK8_1);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        for (int j = 0; j < WG_QK8_1; j++) y[i * WG_QK8_1 + j] = x[i].qs[j] * d;
    }
}

/* as Q8_0, plus s = fp16(sum(q) * d) with d the unrounded float scale */
void wg_k_quant_q8_1_ref(const float *x, void *vy, int64_t k) {
    wg_block_q8_1 *y = vy;
    const int64_t nb = S_NB(k, WG_QK8_1);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * WG_QK8_1;
        float amax = 0.0f;
        for (int j = 0; j < WG_QK8_1; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = wg_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < WG_QK8_1 / 2; j++) {
            y[i].qs[j] = (int8_t)s_trunc_i8(roundf(xb[j] * id));
            y[i].qs[WG_QK8_1 / 2 + j] = (int8_t)s_trunc_i8(roundf(xb[WG_QK8_1 / 2 + j] * id));
            sum += y[i].qs[j];
            sum += y[i].qs[WG_QK8_1 / 2 + j];
        }
        y[i].s = wg_fp32_to_fp16((float)sum * d);
    }
}

/* sum_b d_w*d_x * sum_j q_w*q_x */
float wg_k_vec_dot_q8_1_q8_1_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q8_1 *w = vw;
    const wg_block_q8_1 *x = vx;
    const int64_t nb = S_NB(k, WG_QK8_1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK8_1; j++) sumi += w[i].qs[j] * x[i].qs[j];
        sumf += (wg_fp16_to_fp32(w[i].d) * wg_fp16_to_fp32(x[i].d)) * (float)sumi;
    }
    return sumf;
}

/* ================= MXFP4: x = 2^(e-128) * E2M1(q) ================= */

/* y = (e8m0(e)/2) * (2*E2M1[q]) */
void wg_k_dequant_mxfp4_ref(const void *vx, float *y, int64_t k) {
    const wg_block_mxfp4 *x = vx;
    const int64_t nb = S_NB(k, WG_QK_MXFP4);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_e8m0_to_fp32_half(x[i].e);
        for (int j = 0; j < WG_QK_MXFP4 / 2; j++) {
            y[i * WG_QK_MXFP4 + j] = s_kvalues_mxfp4[x[i].qs[j] & 0x0F] * d;
            y[i * WG_QK_MXFP4 + j + WG_QK_MXFP4 / 2] = s_kvalues_mxfp4[x[i].qs[j] >> 4] * d;
        }
    }
}

/* Index of the code nearest to x/d: linear scan, first minimum wins. */
static uint8_t s_best_index_mxfp4(float x, float d) {
    uint8_t best = 0;
    float best_err = fabsf(s_kvalues_mxfp4[0] * d - x);
    for (int i = 1; i < 16; i++) {
        const float err = fabsf(s_kvalues_mxfp4[i] * d - x);
        if (err < best_err) {
            best = (uint8_t)i;
            best_err = err;
        }
    }
    return best;
}

/* e = floor(log2(max|x|)) - 2 + 127 (0 for an all-zero block); q = nearest code */
void wg_k_quant_mxfp4_ref(const float *x, void *vy, int64_t k) {
    wg_block_mxfp4 *y = vy;
    const int64_t nb = S_NB(k, WG_QK_MXFP4);
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * WG_QK_MXFP4;
        float amax = 0.0f;
        for (int j = 0; j < WG_QK_MXFP4; j++) amax = fmaxf(amax, fabsf(xb[j]));
        /* ggml casts the float straight to uint8; clamp so that subnormal or
         * huge blocks stay defined (identical for 2^-125 <= amax < 2^129). */
        float ef = amax > 0.0f ? floorf(log2f(amax)) - 2 + 127 : 0.0f;
        if (ef < 0.0f) ef = 0.0f;
        if (ef > 255.0f) ef = 255.0f;
        const uint8_t e = (uint8_t)ef;
        const float d = wg_e8m0_to_fp32_half(e);
        y[i].e = e;
        for (int j = 0; j < WG_QK_MXFP4 / 2; j++) {
            const uint8_t q0 = s_best_index_mxfp4(xb[j], d);
            const uint8_t q1 = s_best_index_mxfp4(xb[WG_QK_MXFP4 / 2 + j], d);
            y[i].qs[j] = (uint8_t)((unsigned)q0 | ((unsigned)q1 << 4));
        }
    }
}

/* sum_b (d_x * e8m0(e)/2) * sum_j (2*E2M1[q_w]) * q_x */
float wg_k_vec_dot_mxfp4_q8_0_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_mxfp4 *w = vw;
    const wg_block_q8_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK_MXFP4);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK_MXFP4 / 2; j++) {
            sumi += s_kvalues_mxfp4[w[i].qs[j] & 0x0F] * x[i].qs[j];
            sumi += s_kvalues_mxfp4[w[i].qs[j] >> 4] * x[i].qs[j + WG_QK_MXFP4 / 2];
        }
        sumf += (wg_e8m0_to_fp32_half(w[i].e) * wg_fp16_to_fp32(x[i].d)) * (float)sumi;
    }
    return sumf;
}

/* ================= IQ4_NL: x = d * kvalues[q] ================= */

/* y = d * kvalues_iq4nl[q] */
void wg_k_dequant_iq4_nl_ref(const void *vx, float *y, int64_t k) {
    const wg_block_iq4_nl *x = vx;
    const int64_t nb = S_NB(k, WG_QK4_NL);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        for (int j = 0; j < WG_QK4_NL / 2; j++) {
            y[i * WG_QK4_NL + j] = d * s_kvalues_iq4nl[x[i].qs[j] & 0x0F];
            y[i * WG_QK4_NL + j + WG_QK4_NL / 2] = d * s_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* sum_b d_w*d_x * sum_j kvalues[q_w] * q_x */
float wg_k_vec_dot_iq4_nl_q8_0_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_iq4_nl *w = vw;
    const wg_block_q8_0 *x = vx;
    const int64_t nb = S_NB(k, WG_QK4_NL);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < WG_QK4_NL / 2; j++) {
            sumi += s_kvalues_iq4nl[w[i].qs[j] & 0x0F] * x[i].qs[j];
            sumi += s_kvalues_iq4nl[w[i].qs[j] >> 4] * x[i].qs[j + WG_QK4_NL / 2];
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * wg_fp16_to_fp32(x[i].d)) * (float)sumi;
    }
    return sumf;
}
