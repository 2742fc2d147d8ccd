/* wg_ref — the type-traits table and the row-level helpers of wg_ref.h.
 *
 * One designated-initializer row per GGML type id; ids ggml retired (4, 5,
 * 31..33, 36..38) have no row and read as unknown (NULL traits). Types we
 * can name and size but do not compute (ints, F64, IQ1/IQ2/IQ3, TQ) have
 * supported=false and NULL kernels. */
#include "../../common/wg_status.h"
#include "wg_ref.h"
#include "wg_ref_kernels.h"

#include <stdlib.h>
#include <math.h>
#include <strings.h>

#define S_PLAIN(nm, sz) {.name = nm, .blck_size = 1, .type_size = sz, .is_quantized = false, .supported = false}
#define S_UNSUP(nm, bs, sz) {.name = nm, .blck_size = bs, .type_size = sz, .is_quantized = true, .supported = false}
#define S_QUANT(nm, bs, blk, t, vdt, vdtname)                                                      \
    {.name = nm, .blck_size = bs, .type_size = sizeof(blk), .is_quantized = true, .supported = true, \
     .to_float = wg_k_dequant_##t##_ref, .from_float = wg_k_quant_##t##_ref,                       \
     .vec_dot_type = vdt, .vec_dot = wg_k_vec_dot_##t##_##vdtname##_ref}

static const wg_type_traits_t s_traits[WG_TYPE_COUNT] = {
    [WG_TYPE_F32] = {.name = "F32", .blck_size = 1, .type_size = 4, .is_quantized = false, .supported = true,
                     .to_float = wg_k_dequant_f32_ref, .from_float = wg_k_quant_f32_ref,
                     .vec_dot_type = WG_TYPE_F32, .vec_dot = wg_k_vec_dot_f32_f32_ref},
    [WG_TYPE_F16] = {.name = "F16", .blck_size = 1, .type_size = 2, .is_quantized = false, .supported = true,
                     .to_float = wg_k_dequant_f16_ref, .from_float = wg_k_quant_f16_ref,
                     .vec_dot_type = WG_TYPE_F16, .vec_dot = wg_k_vec_dot_f16_f16_ref},
    [WG_TYPE_BF16] = {.name = "BF16", .blck_size = 1, .type_size = 2, .is_quantized = false, .supported = true,
                      .to_float = wg_k_dequant_bf16_ref, .from_float = wg_k_quant_bf16_ref,
                      .vec_dot_type = WG_TYPE_BF16, .vec_dot = wg_k_vec_dot_bf16_bf16_ref},
    [WG_TYPE_Q4_0] = S_QUANT("Q4_0", WG_QK4_0, wg_block_q4_0, q4_0, WG_TYPE_Q8_0, q8_0),
    [WG_TYPE_Q4_1] = S_QUANT("Q4_1", WG_QK4_1, wg_block_q4_1, q4_1, WG_TYPE_Q8_1, q8_1),
    [WG_TYPE_Q5_0] = S_QUANT("Q5_0", WG_QK5_0, wg_block_q5_0, q5_0, WG_TYPE_Q8_0, q8_0),
    [WG_TYPE_Q5_1] = S_QUANT("Q5_1", WG_QK5_1, wg_block_q5_1, q5_1, WG_TYPE_Q8_1, q8_1),
    [WG_TYPE_Q8_0] = S_QUANT("Q8_0", WG_QK8_0, wg_block_q8_0, q8_0, WG_TYPE_Q8_0, q8_0),
    [WG_TYPE_Q8_1] = S_QUANT("Q8_1", WG_QK8_1, wg_block_q8_1, q8_1, WG_TYPE_Q8_1, q8_1),
    [WG_TYPE_Q2_K] = S_QUANT("Q2_K", WG_QK_K, wg_block_q2_K, q2_k, WG_TYPE_Q8_K, q8_k),
    [WG_TYPE_Q3_K] = S_QUANT("Q3_K", WG_QK_K, wg_block_q3_K, q3_k, WG_TYPE_Q8_K, q8_k),
    [WG_TYPE_Q4_K] = S_QUANT("Q4_K", WG_QK_K, wg_block_q4_K, q4_k, WG_TYPE_Q8_K, q8_k),
    [WG_TYPE_Q5_K] = S_QUANT("Q5_K", WG_QK_K, wg_block_q5_K, q5_k, WG_TYPE_Q8_K, q8_k),
    [WG_TYPE_Q6_K] = S_QUANT("Q6_K", WG_QK_K, wg_block_q6_K, q6_k, WG_TYPE_Q8_K, q8_k),
    [WG_TYPE_Q8_K] = S_QUANT("Q8_K", WG_QK_K, wg_block_q8_K, q8_k, WG_TYPE_Q8_K, q8_k),
    [WG_TYPE_IQ2_XXS] = S_UNSUP("IQ2_XXS", WG_QK_K, 66),
    [WG_TYPE_IQ2_XS] = S_UNSUP("IQ2_XS", WG_QK_K, 74),
    [WG_TYPE_IQ3_XXS] = S_UNSUP("IQ3_XXS", WG_QK_K, 98),
    [WG_TYPE_IQ1_S] = S_UNSUP("IQ1_S", WG_QK_K, 50),
    [WG_TYPE_IQ4_NL] = S_QUANT("IQ4_NL", WG_QK4_NL, wg_block_iq4_nl, iq4_nl, WG_TYPE_Q8_0, q8_0),
    [WG_TYPE_IQ3_S] = S_UNSUP("IQ3_S", WG_QK_K, 110),
    [WG_TYPE_IQ2_S] = S_UNSUP("IQ2_S", WG_QK_K, 82),
    [WG_TYPE_IQ4_XS] = S_QUANT("IQ4_XS", WG_QK_K, wg_block_iq4_xs, iq4_xs, WG_TYPE_Q8_K, q8_k),
    [WG_TYPE_I8] = S_PLAIN("I8", 1),
    [WG_TYPE_I16] = S_PLAIN("I16", 2),
    [WG_TYPE_I32] = S_PLAIN("I32", 4),
    [WG_TYPE_I64] = S_PLAIN("I64", 8),
    [WG_TYPE_F64] = S_PLAIN("F64", 8),
    [WG_TYPE_IQ1_M] = S_UNSUP("IQ1_M", WG_QK_K, 56),
    [WG_TYPE_TQ1_0] = S_UNSUP("TQ1_0", WG_QK_K, 54),
    [WG_TYPE_TQ2_0] = S_UNSUP("TQ2_0", WG_QK_K, 66),
    [WG_TYPE_MXFP4] = S_QUANT("MXFP4", WG_QK_MXFP4, wg_block_mxfp4, mxfp4, WG_TYPE_Q8_0, q8_0),
};

const wg_type_traits_t *wg_type_traits(wg_type_t t) {
    if ((int)t < 0 || (int)t >= WG_TYPE_COUNT) return NULL;
    const wg_type_traits_t *tr = &s_traits[t];
    return tr->name ? tr : NULL;
}

const char *wg_type_name(wg_type_t t) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    return tr ? tr->name : NULL;
}

wg_type_t wg_type_from_name(const char *name) {
    if (!name) return WG_TYPE_COUNT;
    for (int t = 0; t < WG_TYPE_COUNT; t++) {
        if (s_traits[t].name && strcasecmp(s_traits[t].name, name) == 0) return (wg_type_t)t;
    }
    return WG_TYPE_COUNT;
}

size_t wg_row_size(wg_type_t t, int64_t k) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    WG_ASSERT(tr != NULL);
    WG_ASSERT(k >= 0 && k % tr->blck_size == 0);
    return (size_t)(k / tr->blck_size) * tr->type_size;
}

bool wg_dequantize_row(wg_type_t t, const void *x, float *y, int64_t k) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    if (!tr || !tr->supported || !tr->to_float) return false;
    tr->to_float(x, y, k);
    return true;
}

float wg_ref_dot_f32(wg_type_t t, const void *w, const float *x, int64_t k) {
    const wg_type_traits_t *tr = wg_type_traits(t);
    if (!tr || !tr->supported || !tr->vec_dot) return NAN;
    if (tr->vec_dot_type == WG_TYPE_F32) return tr->vec_dot(k, w, x);
    const wg_type_traits_t *vt = wg_type_traits(tr->vec_dot_type);
    WG_ASSERT(vt != NULL && vt->from_float != NULL);
    /* The quantized activation row is small (about k bytes); it lives on the
     * stack up to 16 KiB and on the heap beyond. */
    _Alignas(16) unsigned char stackbuf[16384];
    const size_t need = wg_row_size(tr->vec_dot_type, k);
    void *buf = need <= sizeof stackbuf ? (void *)stackbuf : malloc(need);
    WG_ASSERT(buf != NULL);
    vt->from_float(x, buf, k);
    const float r = tr->vec_dot(k, w, buf);
    if (buf != stackbuf) free(buf);
    return r;
}
