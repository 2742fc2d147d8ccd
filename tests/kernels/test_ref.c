/* Reference kernels on synthetic data: the traits table, quantize ->
 * dequantize error bounds per type, vec_dot against the float dot of the
 * dequantized operands, row-wise determinism and edge rows (zeros, huge
 * values, one outlier). The byte/bit exactness against ggml lives in
 * test_quant_vectors.c; these tests hold without the corpus. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ref/wg_ref.h"
#include "kernels/ref/wg_ref_kernels.h"
#include "wg_test.h"

/* ---- deterministic gaussian source (PCG-style LCG + Box-Muller) ---- */
static uint64_t s_rng = 0x9E3779B97F4A7C15ull;
static double s_unif(void) {
    s_rng = s_rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(s_rng >> 11) + 0.5) / 9007199254740992.0;
}
static float s_gauss(void) { return (float)(sqrt(-2 * log(s_unif())) * cos(6.283185307179586 * s_unif())); }
static void s_fill(float *x, int64_t k, float scale) {
    for (int64_t i = 0; i < k; i++) x[i] = scale * s_gauss();
}

/* Every type with kernels, and the relative RMSE bound of its round trip on
 * gaussian rows (about 1.25x what the reference reaches over 20 rows of 4096;
 * the bound is a property of the format, e.g. Q8_0 ~ 1/(127*sqrt(12))*amax). */
typedef struct {
    wg_type_t t;      /* type */
    double max_rmse;  /* bound on ||x - deq(quant(x))|| / ||x|| */
} s_bound_t;

static const s_bound_t s_bounds[] = {
    {WG_TYPE_F32, 0.0},      {WG_TYPE_F16, 3e-4},     {WG_TYPE_BF16, 2.2e-3},  {WG_TYPE_Q4_0, 0.11},
    {WG_TYPE_Q4_1, 0.10},    {WG_TYPE_Q5_0, 0.055},   {WG_TYPE_Q5_1, 0.05},    {WG_TYPE_Q8_0, 0.007},
    {WG_TYPE_Q8_1, 0.007},   {WG_TYPE_Q2_K, 0.36},    {WG_TYPE_Q3_K, 0.19},    {WG_TYPE_Q4_K, 0.09},
    {WG_TYPE_Q5_K, 0.047},   {WG_TYPE_Q6_K, 0.023},   {WG_TYPE_Q8_K, 0.0095},  {WG_TYPE_IQ4_NL, 0.095},
    {WG_TYPE_IQ4_XS, 0.095}, {WG_TYPE_MXFP4, 0.14},
};
#define S_NTYPES (sizeof s_bounds / sizeof s_bounds[0])

static double s_rel_rmse(const float *x, const float *y, int64_t k) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < k; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

/* ============================ traits table ============================ */

Test(ref_traits, every_id_in_the_enum_has_a_row_with_ggml_sizes) {
    static const struct {
        wg_type_t t;
        const char *name;
        int64_t bs;
        size_t ts;
    } facts[] = {
        {WG_TYPE_F32, "F32", 1, 4},          {WG_TYPE_F16, "F16", 1, 2},
        {WG_TYPE_Q4_0, "Q4_0", 32, 18},      {WG_TYPE_Q4_1, "Q4_1", 32, 20},
        {WG_TYPE_Q5_0, "Q5_0", 32, 22},      {WG_TYPE_Q5_1, "Q5_1", 32, 24},
        {WG_TYPE_Q8_0, "Q8_0", 32, 34},      {WG_TYPE_Q8_1, "Q8_1", 32, 36},
        {WG_TYPE_Q2_K, "Q2_K", 256, 84},     {WG_TYPE_Q3_K, "Q3_K", 256, 110},
        {WG_TYPE_Q4_K, "Q4_K", 256, 144},    {WG_TYPE_Q5_K, "Q5_K", 256, 176},
        {WG_TYPE_Q6_K, "Q6_K", 256, 210},    {WG_TYPE_Q8_K, "Q8_K", 256, 292},
        {WG_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66}, {WG_TYPE_IQ2_XS, "IQ2_XS", 256, 74},
        {WG_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98}, {WG_TYPE_IQ1_S, "IQ1_S", 256, 50},
        {WG_TYPE_IQ4_NL, "IQ4_NL", 32, 18},  {WG_TYPE_IQ3_S, "IQ3_S", 256, 110},
        {WG_TYPE_IQ2_S, "IQ2_S", 256, 82},   {WG_TYPE_IQ4_XS, "IQ4_XS", 256, 136},
        {WG_TYPE_I8, "I8", 1, 1},            {WG_TYPE_I16, "I16", 1, 2},
        {WG_TYPE_I32, "I32", 1, 4},          {WG_TYPE_I64, "I64", 1, 8},
        {WG_TYPE_F64, "F64", 1, 8},          {WG_TYPE_IQ1_M, "IQ1_M", 256, 56},
        {WG_TYPE_BF16, "BF16", 1, 2},        {WG_TYPE_TQ1_0, "TQ1_0", 256, 54},
        {WG_TYPE_TQ2_0, "TQ2_0", 256, 66},   {WG_TYPE_MXFP4, "MXFP4", 32, 17},
    };
    int n_rows = 0;
    for (int t = 0; t < WG_TYPE_COUNT; t++) n_rows += wg_type_traits((wg_type_t)t) != NULL;
    cr_assert_eq(n_rows, (int)(sizeof facts / sizeof facts[0]), "table rows %d", n_rows);
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        const wg_type_traits_t *tr = wg_type_traits(facts[i].t);
        cr_assert_not_null(tr, "%s", facts[i].name);
        cr_assert_str_eq(tr->name, facts[i].name);
        cr_assert_str_eq(wg_type_name(facts[i].t), facts[i].name);
        cr_assert_eq(tr->blck_size, facts[i].bs, "%s blck_size", facts[i].name);
        cr_assert_eq(tr->type_size, facts[i].ts, "%s type_size", facts[i].name);
        cr_assert_eq(wg_row_size(facts[i].t, 4 * 256), (size_t)(4 * 256 / facts[i].bs) * facts[i].ts);
        cr_assert_eq(wg_type_from_name(facts[i].name), facts[i].t, "%s by name", facts[i].name);
        cr_assert_eq(tr->is_quantized, facts[i].bs > 1, "%s is_quantized", facts[i].name);
    }
}

Test(ref_traits, retired_and_out_of_range_ids_are_unknown) {
    static const int retired[] = {4, 5, 31, 32, 33, 36, 37, 38, WG_TYPE_COUNT, -1, 1000};
    for (size_t i = 0; i < sizeof retired / sizeof retired[0]; i++) {
        cr_assert_null(wg_type_traits((wg_type_t)retired[i]), "id %d", retired[i]);
        cr_assert_null(wg_type_name((wg_type_t)retired[i]), "id %d", retired[i]);
        float y[32];
        uint8_t q[64] = {0};
        cr_assert_not(wg_dequantize_row((wg_type_t)retired[i], q, y, 32));
    }
}

Test(ref_traits, names_parse_case_insensitively_and_reject_junk) {
    cr_assert_eq(wg_type_from_name("q4_k"), WG_TYPE_Q4_K);
    cr_assert_eq(wg_type_from_name("Iq4_Xs"), WG_TYPE_IQ4_XS);
    cr_assert_eq(wg_type_from_name("bf16"), WG_TYPE_BF16);
    cr_assert_eq(wg_type_from_name("Q4_K_M"), WG_TYPE_COUNT);
    cr_assert_eq(wg_type_from_name(""), WG_TYPE_COUNT);
    cr_assert_eq(wg_type_from_name(NULL), WG_TYPE_COUNT);
}

Test(ref_traits, supported_types_have_complete_kernels_and_unsupported_none) {
    for (int t = 0; t < WG_TYPE_COUNT; t++) {
        const wg_type_traits_t *tr = wg_type_traits((wg_type_t)t);
        if (!tr) continue;
        if (tr->supported) {
            cr_assert(tr->to_float && tr->from_float && tr->vec_dot, "%s incomplete", tr->name);
            const wg_type_traits_t *vt = wg_type_traits(tr->vec_dot_type);
            cr_assert(vt && vt->from_float, "%s: vec_dot_type has no quantizer", tr->name);
            cr_assert_eq(tr->blck_size % vt->blck_size, 0, "%s: activation blocks must tile a weight block",
                         tr->name);
        } else {
            cr_assert(!tr->to_float && !tr->vec_dot, "%s has kernels but supported=false", tr->name);
            float y[256];
            uint8_t q[512] = {0};
            cr_assert_not(wg_dequantize_row((wg_type_t)t, q, y, 256), "%s", tr->name);
            cr_assert(isnan(wg_ref_dot_f32((wg_type_t)t, q, y, 256)), "%s", tr->name);
        }
    }
    /* the types production engines pair (ggml's vec_dot_type) */
    cr_assert_eq(wg_type_traits(WG_TYPE_Q4_0)->vec_dot_type, WG_TYPE_Q8_0);
    cr_assert_eq(wg_type_traits(WG_TYPE_Q4_1)->vec_dot_type, WG_TYPE_Q8_1);
    cr_assert_eq(wg_type_traits(WG_TYPE_Q5_1)->vec_dot_type, WG_TYPE_Q8_1);
    cr_assert_eq(wg_type_traits(WG_TYPE_IQ4_NL)->vec_dot_type, WG_TYPE_Q8_0);
    cr_assert_eq(wg_type_traits(WG_TYPE_MXFP4)->vec_dot_type, WG_TYPE_Q8_0);
    cr_assert_eq(wg_type_traits(WG_TYPE_Q4_K)->vec_dot_type, WG_TYPE_Q8_K);
    cr_assert_eq(wg_type_traits(WG_TYPE_IQ4_XS)->vec_dot_type, WG_TYPE_Q8_K);
    cr_assert_eq(wg_type_traits(WG_TYPE_F16)->vec_dot_type, WG_TYPE_F16);
    cr_assert_eq(wg_type_traits(WG_TYPE_BF16)->vec_dot_type, WG_TYPE_BF16);
}

/* ============================ round trips ============================ */

#define S_K 4096

Test(ref_roundtrip, gaussian_rows_stay_within_the_type_bound) {
    float *x = malloc(S_K * sizeof *x), *y = malloc(S_K * sizeof *y);
    uint8_t *q = malloc(S_K * 8);
    for (size_t b = 0; b < S_NTYPES; b++) {
        const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
        double worst = 0;
        for (int rep = 0; rep < 8; rep++) {
            s_fill(x, S_K, 1.0f);
            tr->from_float(x, q, S_K);
            cr_assert(wg_dequantize_row(s_bounds[b].t, q, y, S_K));
            worst = fmax(worst, s_rel_rmse(x, y, S_K));
        }
        cr_log_info("%-7s rel RMSE %.5f (bound %.5f)", tr->name, worst, s_bounds[b].max_rmse);
        cr_assert_leq(worst, s_bounds[b].max_rmse, "%s: rel RMSE %.5f > %.5f", tr->name, worst,
                      s_bounds[b].max_rmse);
    }
    free(x), free(y), free(q);
}

/* More bits per weight must mean less error, on the very same rows. */
Test(ref_roundtrip, error_falls_with_bits_per_weight) {
    static const wg_type_t ladder[] = {WG_TYPE_Q2_K, WG_TYPE_Q3_K, WG_TYPE_Q4_K, WG_TYPE_Q5_K,
                                       WG_TYPE_Q6_K, WG_TYPE_Q8_0, WG_TYPE_F16};
    float *x = malloc(S_K * sizeof *x), *y = malloc(S_K * sizeof *y);
    uint8_t *q = malloc(S_K * 8);
    s_fill(x, S_K, 0.02f);
    double prev = INFINITY;
    for (size_t i = 0; i < sizeof ladder / sizeof ladder[0]; i++) {
        wg_type_traits(ladder[i])->from_float(x, q, S_K);
        wg_dequantize_row(ladder[i], q, y, S_K);
        const double e = s_rel_rmse(x, y, S_K);
        cr_assert_lt(e, prev, "%s (%.5f) not better than the type before (%.5f)", wg_type_name(ladder[i]), e,
                     prev);
        prev = e;
    }
    free(x), free(y), free(q);
}

/* A hand-computed Q4_0 block: x[j] = j - 16, so max = -16, d = 2, and
 * q[j] = min(15, trunc((j-16)/2 + 8.5)) = min(15, (j+1)/2). */
Test(ref_roundtrip, q4_0_block_by_hand) {
    float x[32], y[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    wg_block_q4_0 b;
    wg_k_quant_q4_0_ref(x, &b, 32);
    cr_assert_eq(wg_fp16_to_fp32(b.d), 2.0f);
    for (int j = 0; j < 16; j++) {
        const int q0 = (j + 1) / 2, q1 = (j + 16 + 1) / 2 > 15 ? 15 : (j + 16 + 1) / 2;
        cr_assert_eq(b.qs[j], q0 | (q1 << 4), "byte %d", j);
    }
    wg_k_dequant_q4_0_ref(&b, y, 32);
    for (int j = 0; j < 32; j++) {
        const int q = (j + 1) / 2 > 15 ? 15 : (j + 1) / 2;
        cr_assert_eq(y[j], 2.0f * (q - 8), "value %d", j);
    }
}

/* Q8_K carries exact block sums, and Q8_1 carries s = d * sum(q). */
Test(ref_roundtrip, activation_formats_carry_consistent_sums) {
    float x[512];
    s_fill(x, 512, 3.0f);
    wg_block_q8_K k8[2];
    wg_k_quant_q8_k_ref(x, k8, 512);
    for (int b = 0; b < 2; b++) {
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += k8[b].qs[16 * g + j];
            cr_assert_eq(k8[b].bsums[g], s, "block %d group %d", b, g);
        }
        int amax = 0;
        for (int j = 0; j < 256; j++) amax = abs(k8[b].qs[j]) > amax ? abs(k8[b].qs[j]) : amax;
        cr_assert_eq(amax, 127, "largest |x| maps to 127");
    }
    wg_block_q8_1 q1[16];
    wg_k_quant_q8_1_ref(x, q1, 512);
    for (int b = 0; b < 16; b++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += q1[b].qs[j];
        const float want = wg_fp16_to_fp32(wg_fp32_to_fp16((float)s * wg_fp16_to_fp32(q1[b].d)));
        cr_assert_float_eq(wg_fp16_to_fp32(q1[b].s), want, fabsf(want) * 2e-3f + 1e-6f, "block %d", b);
    }
}

/* ============================ dots ============================ */

/* vec_dot(w, xq) must equal sum deq(w)*deq(xq) up to float rounding: the
 * integer/scale bookkeeping (bsums, mins, sub-block scales) is exact. */
Test(ref_dot, vec_dot_equals_the_dot_of_the_dequantized_operands) {
    const int64_t k = 1024;
    float *w = malloc(k * sizeof *w), *x = malloc(k * sizeof *x);
    float *dw = malloc(k * sizeof *dw), *dx = malloc(k * sizeof *dx);
    uint8_t *qw = malloc(k * 8), *qx = malloc(k * 8);
    for (size_t b = 0; b < S_NTYPES; b++) {
        const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
        const wg_type_traits_t *vt = wg_type_traits(tr->vec_dot_type);
        for (int rep = 0; rep < 4; rep++) {
            s_fill(w, k, 0.05f);
            s_fill(x, k, 2.0f);
            if (rep == 1)
                for (int64_t i = 0; i < k; i++) w[i] = fabsf(w[i]) + 0.01f; /* one-signed: min terms matter */
            tr->from_float(w, qw, k);
            vt->from_float(x, qx, k);
            tr->to_float(qw, dw, k);
            vt->to_float(qx, dx, k);
            double want = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                want += (double)dw[i] * dx[i];
                mag += fabs((double)dw[i] * dx[i]);
            }
            /* Q4_1/Q5_1 take the min term from Q8_1.s = fp16(d*sum q) with the
             * unrounded d, not from the dequantized activations: account for
             * the difference exactly, block by block. */
            if (tr->vec_dot_type == WG_TYPE_Q8_1 && s_bounds[b].t != WG_TYPE_Q8_1) {
                const wg_block_q8_1 *bx = (const wg_block_q8_1 *)qx;
                for (int64_t ib = 0; ib < k / 32; ib++) {
                    const wg_half m = s_bounds[b].t == WG_TYPE_Q4_1 ? ((const wg_block_q4_1 *)qw)[ib].m
                                                                    : ((const wg_block_q5_1 *)qw)[ib].m;
                    double sum_dx = 0;
                    for (int j = 0; j < 32; j++) sum_dx += dx[32 * ib + j];
                    want += (double)wg_fp16_to_fp32(m) * (wg_fp16_to_fp32(bx[ib].s) - sum_dx);
                }
            }
            const float got = tr->vec_dot(k, qw, qx);
            cr_assert(fabs(got - want) <= 1e-5 * mag, "%s rep %d: vec_dot %.9g vs %.9g (mag %.3g)", tr->name, rep,
                      got, want, mag);
            /* and wg_ref_dot_f32 is exactly quantize-then-vec_dot */
            const float via = wg_ref_dot_f32(s_bounds[b].t, qw, x, k);
            cr_assert_eq(wg_f32_bits(via), wg_f32_bits(got), "%s: wg_ref_dot_f32 differs", tr->name);
        }
    }
    free(w), free(x), free(dw), free(dx), free(qw), free(qx);
}

/* Activation quantization error stays about 1% of sum|w*x| for every type. */
Test(ref_dot, ref_dot_f32_is_close_to_the_float_dot) {
    const int64_t k = 2048;
    float *w = malloc(k * sizeof *w), *x = malloc(k * sizeof *x), *dw = malloc(k * sizeof *dw);
    uint8_t *qw = malloc(k * 8);
    for (size_t b = 0; b < S_NTYPES; b++) {
        const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
        s_fill(w, k, 1.0f);
        s_fill(x, k, 1.0f);
        tr->from_float(w, qw, k);
        tr->to_float(qw, dw, k);
        double want = 0, mag = 0;
        for (int64_t i = 0; i < k; i++) {
            want += (double)dw[i] * x[i];
            mag += fabs((double)dw[i] * x[i]);
        }
        const float got = wg_ref_dot_f32(s_bounds[b].t, qw, x, k);
        cr_assert(fabs(got - want) <= 2e-3 * mag, "%s: %.9g vs %.9g (mag %.3g)", tr->name, got, want, mag);
    }
    free(w), free(x), free(dw), free(qw);
}

/* A long row takes the heap path of wg_ref_dot_f32 and must agree with the
 * explicit quantize + vec_dot. */
Test(ref_dot, long_rows_use_the_same_arithmetic) {
    const int64_t k = 65536;
    float *w = malloc(k * sizeof *w), *x = malloc(k * sizeof *x);
    uint8_t *qw = malloc(wg_row_size(WG_TYPE_Q4_K, k)), *qx = malloc(wg_row_size(WG_TYPE_Q8_K, k));
    s_fill(w, k, 0.1f);
    s_fill(x, k, 1.0f);
    wg_k_quant_q4_k_ref(w, qw, k);
    wg_k_quant_q8_k_ref(x, qx, k);
    const float want = wg_k_vec_dot_q4_k_q8_k_ref(k, qw, qx);
    cr_assert_eq(wg_f32_bits(wg_ref_dot_f32(WG_TYPE_Q4_K, qw, x, k)), wg_f32_bits(want));
    free(w), free(x), free(qw), free(qx);
}

/* ============================ determinism ============================ */

/* Row-wise: quantizing a 3-row matrix at once, or each row alone next to
 * different neighbours, gives the same bytes; dots repeat bit for bit. */
Test(ref_determinism, rows_are_independent_and_repeatable) {
    const int64_t k = 512;
    float m[3 * 512], other[512];
    s_fill(m, 3 * k, 1.0f);
    s_fill(other, k, 50.0f);
    for (size_t b = 0; b < S_NTYPES; b++) {
        const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
        const size_t rs = wg_row_size(s_bounds[b].t, k);
        uint8_t all[3 * 2048], one[2048];
        tr->from_float(m, all, 3 * k);
        for (int r = 0; r < 3; r++) {
            tr->from_float(other, one, k); /* dirty the scratch first */
            tr->from_float(m + r * k, one, k);
            cr_assert_eq(memcmp(one, all + r * rs, rs), 0, "%s row %d", tr->name, r);
            const float d1 = wg_ref_dot_f32(s_bounds[b].t, one, other, k);
            const float d2 = wg_ref_dot_f32(s_bounds[b].t, all + r * rs, other, k);
            cr_assert_eq(wg_f32_bits(d1), wg_f32_bits(d2), "%s row %d dot", tr->name, r);
        }
    }
}

/* ============================ edge rows ============================ */

Test(ref_edges, all_zero_rows_give_zeros) {
    float x[512] = {0}, y[512], probe[512];
    s_fill(probe, 512, 1.0f);
    uint8_t q[2048];
    for (size_t b = 0; b < S_NTYPES; b++) {
        const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
        tr->from_float(x, q, 512);
        memset(y, 0x7F, sizeof y);
        tr->to_float(q, y, 512);
        for (int i = 0; i < 512; i++) cr_assert_eq(y[i], 0.0f, "%s value %d = %g", tr->name, i, y[i]);
        cr_assert_eq(wg_ref_dot_f32(s_bounds[b].t, q, probe, 512), 0.0f, "%s dot", tr->name);
    }
}

/* Scale invariance: rows at 1e-3 and 1e3 (inside fp16 range for the scales)
 * keep the same relative error bound as unit rows, and nothing overflows. */
Test(ref_edges, tiny_and_huge_rows_keep_relative_accuracy) {
    const float scales[] = {1e-3f, 1e3f};
    float x[512], y[512];
    uint8_t q[2048];
    for (size_t s = 0; s < 2; s++) {
        for (size_t b = 0; b < S_NTYPES; b++) {
            const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
            s_fill(x, 512, scales[s]);
            tr->from_float(x, q, 512);
            tr->to_float(q, y, 512);
            for (int i = 0; i < 512; i++) cr_assert(isfinite(y[i]), "%s scale %g value %d", tr->name, scales[s], i);
            const double e = s_rel_rmse(x, y, 512);
            /* 1.5x: a 512-value row is a smaller sample than the bound's */
            cr_assert_leq(e, 1.5 * s_bounds[b].max_rmse + 1e-7, "%s at scale %g: %.5f", tr->name, scales[s], e);
        }
    }
}

/* One value 100x the rest: the outlier itself is reproduced well (it sets
 * the block scale) and the row stays finite; the other values lose accuracy
 * but stay bounded by the outlier's quantization step. */
Test(ref_edges, single_outlier_is_kept) {
    float x[512], y[512];
    uint8_t q[2048];
    for (size_t b = 0; b < S_NTYPES; b++) {
        const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
        s_fill(x, 512, 0.1f);
        x[300] = -10.0f;
        tr->from_float(x, q, 512);
        tr->to_float(q, y, 512);
        double max_err = 0;
        for (int i = 0; i < 512; i++) {
            cr_assert(isfinite(y[i]), "%s value %d", tr->name, i);
            max_err = fmax(max_err, fabs((double)y[i] - x[i]));
        }
        cr_assert_leq(fabs(y[300] - x[300]), 10.0 * 0.21, "%s outlier %g", tr->name, y[300]);
        cr_assert_leq(max_err, 10.0 * 0.35, "%s max error %g", tr->name, max_err);
    }
}

/* Non-finite input (a diverged activation row) must not be undefined
 * behaviour (the sanitizer preset runs this) and must not leak into the
 * next row of the same call. */
Test(ref_edges, non_finite_rows_stay_contained) {
    const int64_t k = 256;
    float m[2 * 256], y[2 * 256];
    uint8_t both[2 * 1024], alone[1024];
    for (size_t b = 0; b < S_NTYPES; b++) {
        const wg_type_traits_t *tr = wg_type_traits(s_bounds[b].t);
        const size_t rs = wg_row_size(s_bounds[b].t, k);
        for (int variant = 0; variant < 3; variant++) {
            s_fill(m, 2 * k, 1.0f);
            m[5] = variant == 0 ? NAN : variant == 1 ? INFINITY : -INFINITY;
            m[200] = NAN;
            tr->from_float(m, both, 2 * k);
            tr->to_float(both, y, 2 * k);
            tr->from_float(m + k, alone, k);
            cr_assert_eq(memcmp(both + rs, alone, rs), 0, "%s variant %d: row 2 changed", tr->name, variant);
            (void)wg_ref_dot_f32(s_bounds[b].t, both + rs, m, k); /* NaN probe: must not trap */
        }
    }
}
