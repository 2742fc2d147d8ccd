/* wg_ref_kquants — reference kernels of the 256-value super-block types:
 * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K and IQ4_XS (plus the IQ4_NL quantizer,
 * which shares the IQ4 scale search).
 *
 * Quantizers follow ggml's quantize_row_*_ref without importance matrix,
 * operation for operation (the scale searches make_qx_quants,
 * make_q3_quants, make_qkx2_quants and the IQ4 search are reimplemented from
 * their description below), so the bytes match ggml's. Float expressions
 * keep ggml's association order on purpose: reordering them changes ties.
 *
 * Dots against Q8_K: per super-block one int32 sum of
 * (integer sub-block scale) * (integer dot of the sub-block), the min terms
 * from Q8_K.bsums, then sumf += d_x*d_w*isum (- d_x*dmin_w*summs) in float, in
 * super-block order. */
/* No fused multiply-add contraction: the quantizers must round exactly as
 * ggml's do (GCC already keeps ISO C's contract-off under -std=c11). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdbool.h>

#include "../../common/wg_status.h"
#include "wg_ref_kernels.h"

/* Blocks in a row of k values; k not a multiple of the block is a caller bug. */
static inline int64_t s_nblocks(int64_t k, int64_t qk) {
    WG_ASSERT(k >= 0 && k % qk == 0);
    return k / qk;
}
#define S_NB(k, qk) s_nblocks((k), (qk))
#define S_MIN(a, b) ((a) < (b) ? (a) : (b))
#define S_MAX(a, b) ((a) > (b) ? (a) : (b))

/* A group whose largest |x| is below this is treated as all zero. */
#define S_GROUP_MAX_EPS 1e-15f

static const int8_t s_kvalues_iq4nl[16] = WG_KVALUES_IQ4NL_INIT;

/* ============================ scale searches ============================ */

/* Symmetric quantization to nmax+(-nmax..nmax-1) levels, L[i] in 0..2*nmax-1.
 * Start from iscale = -nmax/max (max = the signed value of largest |x|); with
 * rmse_type 1 the weights are x^2 and the scale is the weighted least-squares
 * fit sum(w*x*l)/sum(w*l*l); then try iscale = -(nmax + 0.1*is)/max for
 * is = -9..9 and keep the one with the largest sumlx^2/suml2 (the smallest
 * weighted error). Returns the scale (x ~ scale * (L - nmax)). */
static float s_make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < S_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    if (rmse_type == 0) {
        for (int i = 0; i < n; i++) {
            const int l = wg_ref_nearest_int(iscale * x[i]);
            L[i] = (int8_t)(nmax + S_MAX(-nmax, S_MIN(nmax - 1, l)));
        }
        return 1 / iscale;
    }
    /* Only rmse_type 1 (weights x^2) is used by the K-quants. */
    WG_ASSERT(rmse_type == 1);
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = wg_ref_nearest_int(iscale * x[i]);
        l = S_MAX(-nmax, S_MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = wg_ref_nearest_int(iscale * x[i]);
            l = S_MAX(-nmax, S_MIN(nmax - 1, l));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = wg_ref_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + S_MAX(-nmax, S_MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block search: start as make_qx_quants' first guess, then up to
 * five passes of coordinate descent, moving one L[i] at a time to
 * round(x[i] * suml2 / sumlx) (the other terms fixed) when that raises
 * sumlx^2/suml2 (weights x^2). L[i] ends in 0..2*nmax-1. */
static float s_make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < S_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = wg_ref_nearest_int(iscale * x[i]);
        l = S_MAX(-nmax, S_MIN(nmax - 1, l));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = wg_ref_nearest_int(x[i] * sl2 / slx);
                new_l = S_MAX(-nmax, S_MIN(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* Asymmetric search x ~ scale*L + min with L in 0..nmax and min <= 0.
 * First guess from the range [min(x,0), max(x)]; then for is = 0..nstep try
 * iscale = (rmin + rdelta*is + nmax)/(max - min), fit scale and min by
 * weighted least squares on the rounded L, and keep the fit with the smallest
 * weighted error (|diff| when use_mad, diff^2 otherwise). Returns scale;
 * *the_min = -min (>= 0). */
static float s_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                                float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                                bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_err = 0;
    for (int i = 0; i < n; i++) {
        const int l = wg_ref_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)S_MAX(0, S_MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_err += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = wg_ref_nearest_int(iscale * (x[i] - min));
            l = S_MAX(0, S_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += weights[i] * diff;
            }
            if (err < best_err) {
                for (int i = 0; i < n; i++) L[i] = Laux[i];
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Index of the entry of the sorted table val[0..n-1] nearest to x (binary
 * search; on an exact midpoint the upper entry wins). */
static int s_best_index_int8(int n, const int8_t *val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid;
        else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

/* The IQ4 search over one group of `sb` values split into blocks of 32
 * (sb = 32 for IQ4_NL, 256 for IQ4_XS), weights x^2, ntry = 7:
 * per block, fit d from the codes chosen at d = max/127 (sign-matched), then
 * try id = (itry - 127)/max for itry = -7..7 keeping the best
 * sumqx^2/sumq2. IQ4_NL stores that d as fp16 and requantizes with it;
 * IQ4_XS stores d_super = -max_scale/32 and per-block 6-bit scales
 * round(d_b/d_super) in -32..31, then requantizes each block with
 * d_super*scale. Output: *dh, q4 (sb/2 bytes), and for sb > 32 the packed
 * scales. */
static void s_quant_iq4_group(int sb, const float *x, wg_half *dh, uint8_t *q4, uint16_t *scales_h,
                              uint8_t *scales_l) {
    const int ntry = 7;
    const int8_t *values = s_kvalues_iq4nl;
    float scales[WG_QK_K / 32];
    float weight[32];
    uint8_t L[WG_QK_K];
    const int nblk = sb / 32;

    memset(q4, 0, (size_t)sb / 2);
    *dh = wg_fp32_to_fp16(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < nblk; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < S_GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const int l = s_best_index_int8(16, values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumqx / sumq2;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                const int l = s_best_index_int8(16, values, id * xb[j]);
                const float q = values[l];
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = fabsf(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (nblk > 1) {
        *scales_h = 0;
        const float d = -max_scale / 32;
        *dh = wg_fp32_to_fp16(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < nblk; ib++) {
            int l = wg_ref_nearest_int(id * scales[ib]);
            l = S_MAX(-32, S_MIN(31, l));
            const float dl = d * l;
            const float idl = dl ? 1 / dl : 0.f;
            uint8_t *Lb = L + ib * 32;
            const float *xb = x + ib * 32;
            for (int j = 0; j < 32; j++) Lb[j] = (uint8_t)s_best_index_int8(16, values, idl * xb[j]);
            l += 32;
            const uint8_t l_l = (uint8_t)(l & 0xf);
            const uint8_t l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0) scales_l[ib / 2] = l_l;
            else scales_l[ib / 2] |= (uint8_t)(l_l << 4);
            *scales_h |= (uint16_t)(l_h << 2 * (ib % 8));
        }
    } else {
        *dh = wg_fp32_to_fp16(scales[0]);
        const float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sb; j++) L[j] = (uint8_t)s_best_index_int8(16, values, id * x[j]);
    }

    for (int i = 0; i < sb / 32; i++) {
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}

/* ================= Q2_K: x = d*sc*q - dmin*m, q in 0..3 ================= */

/* y = d*(sc&15)*q - dmin*(sc>>4) per 16 values; 2-bit fields of qs in
 * 128-value halves: byte l of a 32-byte row holds values l, l+32, l+64, l+96 */
void wg_k_dequant_q2_k_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q2_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        const float min = wg_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < WG_QK_K; n += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int h = 0; h < 2; h++) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[l + 16 * h] >> shift) & 3)) - ml;
                }
                shift += 2;
            }
            q += 32;
        }
    }
}

/* make_qkx2_quants (3 levels, |x| weights, MAD) per 16 values; 4-bit scales
 * and mins against d = max_scale/15, dmin = max_min/15; then requantize */
void wg_k_quant_q2_k_ref(const float *x, void *vy, int64_t k) {
    wg_block_q2_K *y = vy;
    const int64_t nb = S_NB(k, WG_QK_K);
    uint8_t L[WG_QK_K], Laux[16];
    float weights[16], mins[WG_QK_K / 16], scales[WG_QK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < WG_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = s_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                           0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < WG_QK_K / 16; j++) y[i].scales[j] = (uint8_t)wg_ref_nearest_int(iscale * scales[j]);
            y[i].d = wg_fp32_to_fp16(max_scale / q4scale);
        } else {
            for (int j = 0; j < WG_QK_K / 16; j++) y[i].scales[j] = 0;
            y[i].d = wg_fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < WG_QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)((unsigned)wg_ref_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = wg_fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = wg_fp32_to_fp16(0.f);
        }
        for (int j = 0; j < WG_QK_K / 16; j++) {
            const float d = wg_fp16_to_fp32(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = wg_fp16_to_fp32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                const int l = wg_ref_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)S_MAX(0, S_MIN(3, l));
            }
        }
        for (int j = 0; j < WG_QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                y[i].qs[j / 4 + l] =
                    (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
            }
        }
        x += WG_QK_K;
    }
}

/* sum_sb [ d_x*d_w * sum_j (sc_j&15) * sum(q_w*q_x) - d_x*dmin_w * sum_j (sc_j>>4) * bsum_j ] */
float wg_k_vec_dot_q2_k_q8_k_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q2_K *w = vw;
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t summs = 0, isum = 0;
        for (int j = 0; j < 16; j++) summs += (w[i].scales[j] >> 4) * x[i].bsums[j];
        for (int v = 0; v < WG_QK_K; v++) {
            /* value v: 128-half n, 32-row l, 2-bit field f */
            const int n = v / 128, f = (v % 128) / 32, l = v % 32;
            const int q = (w[i].qs[n * 32 + l] >> (2 * f)) & 3;
            isum += (w[i].scales[v / 16] & 0xF) * q * x[i].qs[v];
        }
        const float dall = x[i].d * wg_fp16_to_fp32(w[i].d);
        const float dmin = x[i].d * wg_fp16_to_fp32(w[i].dmin);
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

/* ================= Q3_K: x = d*(sc-32)*(q-4), q in 0..7 ================= */

/* Signed 3-bit value v (-4..3) of a Q3_K block: 2 low bits from qs (same
 * layout as Q2_K), high bit from hmask bit (v/32) of byte v%32 (set = +0,
 * clear = -4). */
static int s_q3_k_value(const wg_block_q3_K *b, int v) {
    const int n = v / 128, f = (v % 128) / 32, l = v % 32;
    const int lo = (b->qs[n * 32 + l] >> (2 * f)) & 3;
    const int hbit = (b->hmask[l] >> (v / 32)) & 1;
    return lo - (hbit ? 0 : 4);
}

/* y = d * (scale_j - 32) * q, 16 sub-blocks of 16 values */
void wg_k_dequant_q3_k_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q3_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = wg_fp16_to_fp32(x[i].d);
        for (int j = 0; j < 16; j++) {
            const float dl = d_all * (wg_ref_q3_k_scale(x[i].scales, j) - 32);
            for (int l = 0; l < 16; l++) *y++ = dl * s_q3_k_value(&x[i], 16 * j + l);
        }
    }
}

/* make_q3_quants per 16 values; 6-bit signed scales against d = -max_scale/32 */
void wg_k_quant_q3_k_ref(const float *x, void *vy, int64_t k) {
    wg_block_q3_K *y = vy;
    const int64_t nb = S_NB(k, WG_QK_K);
    int8_t L[WG_QK_K];
    float scales[WG_QK_K / 16];
    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < WG_QK_K / 16; j++) {
            scales[j] = s_make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < WG_QK_K / 16; j++) {
                int8_t l = (int8_t)wg_ref_nearest_int(iscale * scales[j]);
                l = (int8_t)(S_MAX(-32, S_MIN(31, l)) + 32);
                if (j < 8) y[i].scales[j] = l & 0xF;
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = wg_fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = wg_fp32_to_fp16(0.f);
        }
        for (int j = 0; j < WG_QK_K / 16; j++) {
            const int8_t sc = (int8_t)(wg_ref_q3_k_scale(y[i].scales, j) - 32);
            const float d = wg_fp16_to_fp32(y[i].d) * sc;
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = wg_ref_nearest_int(x[16 * j + ii] / d);
                l = S_MAX(-4, S_MIN(3, l));
                L[16 * j + ii] = (int8_t)(l + 4);
            }
        }
        memset(y[i].hmask, 0, WG_QK_K / 8);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < WG_QK_K; j++) {
            if (L[j] > 3) {
                y[i].hmask[m] |= hm;
                L[j] -= 4;
            }
            if (++m == WG_QK_K / 8) {
                m = 0;
                hm = (uint8_t)(hm << 1);
            }
        }
        for (int j = 0; j < WG_QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                y[i].qs[j / 4 + l] =
                    (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
            }
        }
        x += WG_QK_K;
    }
}

/* sum_sb d_x*d_w * sum_j (scale_j - 32) * sum(q_w*q_x), q_w in -4..3 */
float wg_k_vec_dot_q3_k_q8_k_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q3_K *w = vw;
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += s_q3_k_value(&w[i], 16 * j + l) * x[i].qs[16 * j + l];
            isum += (wg_ref_q3_k_scale(w[i].scales, j) - 32) * s;
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * x[i].d) * (float)isum;
    }
    return sumf;
}

/* ============ Q4_K / Q5_K: x = d*sc*q - dmin*m per 32 values ============ */

/* Shared by Q4_K and Q5_K: per 32 values, make_qkx2_quants with weights
 * rms + |x|, then 6-bit scales/mins against d = max_scale/63,
 * dmin = max_min/63, then requantize with the stored fp16 values into
 * L[256] in 0..nmax. */
static void s_quant_qk_common(const float *x, int nmax, float rmin, int nstep, uint8_t scales_out[12],
                              wg_half *d_out, wg_half *dmin_out, uint8_t L[WG_QK_K]) {
    uint8_t Laux[32];
    float weights[32], mins[WG_QK_K / 32], scales[WG_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < WG_QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = s_make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                                       nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < WG_QK_K / 32; j++) {
        /* ggml truncates to uint8 before clamping */
        uint8_t ls = (uint8_t)wg_ref_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)wg_ref_nearest_int(inv_min * mins[j]);
        ls = S_MIN(63, ls);
        lm = S_MIN(63, lm);
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = wg_fp32_to_fp16(max_scale / 63.f);
    *dmin_out = wg_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < WG_QK_K / 32; j++) {
        uint8_t sc, m;
        wg_ref_get_scale_min_k4(j, scales_out, &sc, &m);
        const float d = wg_fp16_to_fp32(*d_out) * sc;
        if (!d) continue;
        const float dm = wg_fp16_to_fp32(*dmin_out) * m;
        for (int ii = 0; ii < 32; ii++) {
            const int l = wg_ref_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)S_MAX(0, S_MIN(nmax, l));
        }
    }
}

/* y = d*sc_j*q - dmin*m_j; qs in 64-value chunks: low nibbles = first 32, high = next 32 */
void wg_k_dequant_q4_k_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q4_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        const float min = wg_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < WG_QK_K / 64; j++) {
            uint8_t sc, m;
            wg_ref_get_scale_min_k4(2 * j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            wg_ref_get_scale_min_k4(2 * j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
        }
    }
}

/* make_qkx2_quants (15 levels, rmin -1, 20 steps) per 32 values, 6-bit scales */
void wg_k_quant_q4_k_ref(const float *x, void *vy, int64_t k) {
    wg_block_q4_K *y = vy;
    const int64_t nb = S_NB(k, WG_QK_K);
    uint8_t L[WG_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        s_quant_qk_common(x, 15, -1.f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < WG_QK_K; j += 64) {
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
            q += 32;
        }
        x += WG_QK_K;
    }
}

/* Integer part shared by the Q4_K/Q5_K dots, given the 256 unsigned quants. */
static float s_dot_qk_q8_k(const uint8_t *scales, wg_half dw, wg_half dminw, const uint8_t q[WG_QK_K],
                           const wg_block_q8_K *x) {
    int32_t isum = 0, summs = 0;
    for (int j = 0; j < WG_QK_K / 32; j++) {
        uint8_t sc, m;
        wg_ref_get_scale_min_k4(j, scales, &sc, &m);
        int32_t s = 0;
        for (int l = 0; l < 32; l++) s += q[32 * j + l] * x->qs[32 * j + l];
        isum += sc * s;
        summs += m * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    }
    const float dall = x->d * wg_fp16_to_fp32(dw);
    const float dmin = x->d * wg_fp16_to_fp32(dminw);
    return dall * (float)isum - dmin * (float)summs;
}

/* sum_sb [ d_x*d_w * sum_j sc_j * sum(q_w*q_x) - d_x*dmin_w * sum_j m_j * bsum_j ] */
float wg_k_vec_dot_q4_k_q8_k_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q4_K *w = vw;
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    float sumf = 0.0f;
    uint8_t q[WG_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        for (int j = 0; j < WG_QK_K / 64; j++) {
            for (int l = 0; l < 32; l++) {
                q[64 * j + l] = w[i].qs[32 * j + l] & 0xF;
                q[64 * j + 32 + l] = w[i].qs[32 * j + l] >> 4;
            }
        }
        sumf += s_dot_qk_q8_k(w[i].scales, w[i].d, w[i].dmin, q, &x[i]);
    }
    return sumf;
}

/* Unsigned 5-bit quants of a Q5_K block: low nibbles as Q4_K, 5th bit of
 * value 64*c + 32*h + l is bit 2c+h of qh[l]. */
static void s_q5_k_unpack(const wg_block_q5_K *b, uint8_t q[WG_QK_K]) {
    for (int c = 0; c < WG_QK_K / 64; c++) {
        for (int l = 0; l < 32; l++) {
            q[64 * c + l] = (uint8_t)((b->qs[32 * c + l] & 0xF) + (b->qh[l] & (1u << (2 * c)) ? 16 : 0));
            q[64 * c + 32 + l] = (uint8_t)((b->qs[32 * c + l] >> 4) + (b->qh[l] & (2u << (2 * c)) ? 16 : 0));
        }
    }
}

/* y = d*sc_j*q - dmin*m_j, q in 0..31 */
void wg_k_dequant_q5_k_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q5_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    uint8_t q[WG_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        const float min = wg_fp16_to_fp32(x[i].dmin);
        s_q5_k_unpack(&x[i], q);
        for (int j = 0; j < WG_QK_K / 32; j++) {
            uint8_t sc, m;
            wg_ref_get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * q[32 * j + l] - m1;
        }
    }
}

/* make_qkx2_quants (31 levels, rmin -0.5, 15 steps) per 32 values, 6-bit scales */
void wg_k_quant_q5_k_ref(const float *x, void *vy, int64_t k) {
    wg_block_q5_K *y = vy;
    const int64_t nb = S_NB(k, WG_QK_K);
    uint8_t L[WG_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        s_quant_qk_common(x, 31, -0.5f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, WG_QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < WG_QK_K; n += 64) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                int l2 = L[n + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
            ql += 32;
        }
        x += WG_QK_K;
    }
}

/* sum_sb [ d_x*d_w * sum_j sc_j * sum(q_w*q_x) - d_x*dmin_w * sum_j m_j * bsum_j ] */
float wg_k_vec_dot_q5_k_q8_k_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q5_K *w = vw;
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    float sumf = 0.0f;
    uint8_t q[WG_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        s_q5_k_unpack(&w[i], q);
        sumf += s_dot_qk_q8_k(w[i].scales, w[i].d, w[i].dmin, q, &x[i]);
    }
    return sumf;
}

/* ================= Q6_K: x = d*sc*(q-32), q in 0..63 ================= */

/* Signed 6-bit quants (-32..31) of a Q6_K block: value 128*n + 32*f + l has
 * low nibble from ql[64n + l + 32*(f&1)] (low nibble for f<2, high for f>=2)
 * and two high bits from qh[32n + l] bits 2f..2f+1. */
static void s_q6_k_unpack(const wg_block_q6_K *b, int8_t q[WG_QK_K]) {
    for (int n = 0; n < WG_QK_K / 128; n++) {
        const uint8_t *ql = b->ql + 64 * n, *qh = b->qh + 32 * n;
        for (int l = 0; l < 32; l++) {
            q[128 * n + l] = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            q[128 * n + l + 32] = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            q[128 * n + l + 64] = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            q[128 * n + l + 96] = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        }
    }
}

/* y = (d * sc_j) * q per 16 values */
void wg_k_dequant_q6_k_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q6_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    int8_t q[WG_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        s_q6_k_unpack(&x[i], q);
        for (int v = 0; v < WG_QK_K; v++) *y++ = d * x[i].scales[v / 16] * q[v];
    }
}

/* make_qx_quants (nmax 32, weights x^2) per 16 values; int8 scales against d = -max_scale/128 */
void wg_k_quant_q6_k_ref(const float *x, void *vy, int64_t k) {
    wg_block_q6_K *y = vy;
    const int64_t nb = S_NB(k, WG_QK_K);
    int8_t L[WG_QK_K];
    float scales[WG_QK_K / 16];
    for (int64_t i = 0; i < nb; i++) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < WG_QK_K / 16; ib++) {
            const float scale = s_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, 1);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < S_GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = wg_fp32_to_fp16(0.f);
            x += WG_QK_K;
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = wg_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < WG_QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)S_MIN(127, wg_ref_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < WG_QK_K / 16; j++) {
            const float d = wg_fp16_to_fp32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = wg_ref_nearest_int(x[16 * j + ii] / d);
                l = S_MAX(-32, S_MIN(31, l));
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < WG_QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
        x += WG_QK_K;
    }
}

/* sum_sb d_x*d_w * sum_j sc_j * sum(q_w*q_x), q_w in -32..31 */
float wg_k_vec_dot_q6_k_q8_k_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q6_K *w = vw;
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    float sumf = 0.0f;
    int8_t q[WG_QK_K];
    for (int64_t i = 0; i < nb; i++) {
        s_q6_k_unpack(&w[i], q);
        int32_t isum = 0;
        for (int j = 0; j < 16; j++) {
            int32_t s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * j + l] * x[i].qs[16 * j + l];
            isum += w[i].scales[j] * s;
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * x[i].d) * (float)isum;
    }
    return sumf;
}

/* ================= Q8_K: x = d * q (activation format) ================= */

/* y = d * q */
void wg_k_dequant_q8_k_ref(const void *vx, float *y, int64_t k) {
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < WG_QK_K; j++) *y++ = x[i].d * x[i].qs[j];
}

/* iscale = -127/max (max = signed value of largest |x|); q = min(127, round(iscale*x));
 * d = 1/iscale (float); bsums = sums of 16 quants */
void wg_k_quant_q8_k_ref(const float *x, void *vy, int64_t k) {
    wg_block_q8_K *y = vy;
    const int64_t nb = S_NB(k, WG_QK_K);
    for (int64_t i = 0; i < nb; i++) {
        float max = 0, amax = 0;
        for (int j = 0; j < WG_QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            y[i].d = 0;
            memset(y[i].qs, 0, WG_QK_K);
            memset(y[i].bsums, 0, sizeof y[i].bsums);
            x += WG_QK_K;
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < WG_QK_K; j++) y[i].qs[j] = (int8_t)S_MIN(127, wg_ref_nearest_int(iscale * x[j]));
        for (int j = 0; j < WG_QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
        x += WG_QK_K;
    }
}

/* sum_sb d_w*d_x * sum(q_w*q_x) */
float wg_k_vec_dot_q8_k_q8_k_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_q8_K *w = vw;
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t isum = 0;
        for (int j = 0; j < WG_QK_K; j++) isum += w[i].qs[j] * x[i].qs[j];
        sumf += (w[i].d * x[i].d) * (float)isum;
    }
    return sumf;
}

/* ================= IQ4_XS: x = d*(ls-32)*kvalues[q] per 32 ================= */

/* 6-bit scale of sub-block ib (0..63, subtract 32). */
static int s_iq4_xs_scale(const wg_block_iq4_xs *b, int ib) {
    return ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4);
}

/* y = (d * (ls - 32)) * kvalues_iq4nl[q] */
void wg_k_dequant_iq4_xs_ref(const void *vx, float *y, int64_t k) {
    const wg_block_iq4_xs *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    for (int64_t i = 0; i < nb; i++) {
        const float d = wg_fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < WG_QK_K / 32; ib++) {
            const float dl = d * (s_iq4_xs_scale(&x[i], ib) - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * s_kvalues_iq4nl[qs[j] & 0xf];
                y[j + 16] = dl * s_kvalues_iq4nl[qs[j] >> 4];
            }
            y += 32;
            qs += 16;
        }
    }
}

/* IQ4 scale search per 32 values, 6-bit scales against d = -max_scale/32 */
void wg_k_quant_iq4_xs_ref(const float *x, void *vy, int64_t k) {
    wg_block_iq4_xs *y = vy;
    const int64_t nb = S_NB(k, WG_QK_K);
    for (int64_t i = 0; i < nb; i++)
        s_quant_iq4_group(WG_QK_K, x + WG_QK_K * i, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l);
}

/* sum_sb d_w*d_x * sum_ib (ls_ib - 32) * sum(kvalues[q_w]*q_x) */
float wg_k_vec_dot_iq4_xs_q8_k_ref(int64_t k, const void *vw, const void *vx) {
    const wg_block_iq4_xs *w = vw;
    const wg_block_q8_K *x = vx;
    const int64_t nb = S_NB(k, WG_QK_K);
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        int32_t isum = 0;
        for (int ib = 0; ib < WG_QK_K / 32; ib++) {
            const uint8_t *qs = w[i].qs + 16 * ib;
            const int8_t *q8 = x[i].qs + 32 * ib;
            int32_t s = 0;
            for (int j = 0; j < 16; j++) {
                s += s_kvalues_iq4nl[qs[j] & 0xf] * q8[j];
                s += s_kvalues_iq4nl[qs[j] >> 4] * q8[j + 16];
            }
            isum += (s_iq4_xs_scale(&w[i], ib) - 32) * s;
        }
        sumf += (wg_fp16_to_fp32(w[i].d) * x[i].d) * (float)isum;
    }
    return sumf;
}

/* ================= IQ4_NL quantizer (the search above, one 32-block) ================= */

/* IQ4 scale search per 32 values, d stored as fp16 */
void wg_k_quant_iq4_nl_ref(const float *x, void *vy, int64_t k) {
    wg_block_iq4_nl *y = vy;
    const int64_t nb = S_NB(k, WG_QK4_NL);
    for (int64_t i = 0; i < nb; i++) {
        uint16_t unused_h;
        uint8_t unused_l[1];
        s_quant_iq4_group(WG_QK4_NL, x + WG_QK4_NL * i, &y[i].d, y[i].qs, &unused_h, unused_l);
    }
}
