/* test_gpu_emu — the CUDA decoders and dp4a dot, compiled for the host, against
 * kernels/ref. Needs no GPU: it proves the block index arithmetic (offsets,
 * shifts, sub-block scales) that every device kernel shares, on every machine
 * that builds the CUDA backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cuda/wg_cuda.h"
#include "../../kernels/ref/wg_ref.h"
#include "../../kernels/ref/wg_ref_kernels.h"
#include "wg_test.h"

static const wg_type_t s_qtypes[] = {WG_TYPE_Q4_0, WG_TYPE_Q4_1, WG_TYPE_Q5_0,   WG_TYPE_Q5_1,   WG_TYPE_Q8_0,
                                     WG_TYPE_Q2_K, WG_TYPE_Q3_K, WG_TYPE_Q4_K,   WG_TYPE_Q5_K,   WG_TYPE_Q6_K,
                                     WG_TYPE_IQ4_NL, WG_TYPE_IQ4_XS, WG_TYPE_MXFP4};
#define N_QTYPES (sizeof s_qtypes / sizeof s_qtypes[0])

/* Deterministic pseudo-normal values with a few outliers per row. */
static void s_fill(float *x, int64_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        float acc = 0;
        for (int j = 0; j < 4; j++) {
            s = s * 1664525u + 1013904223u;
            acc += (float)(s >> 8) / 16777216.0f - 0.5f;
        }
        x[i] = acc * 1.7f;
        if (i % 97 == 13) x[i] *= 6.0f;
    }
}

Test(gpu_emu, dequant_bit_exact_with_ref_for_every_type) {
    const int64_t k = 1024;
    float *x = malloc(k * sizeof(float)), *ref = malloc(k * sizeof(float)), *emu = malloc(k * sizeof(float));
    for (size_t ti = 0; ti < N_QTYPES; ti++) {
        const wg_type_t t = s_qtypes[ti];
        const wg_type_traits_t *tr = wg_type_traits(t);
        cr_assert(tr && tr->from_float, "type %d has a reference quantizer", t);
        void *q = malloc(wg_row_size(t, k));
        for (uint32_t seed = 1; seed <= 3; seed++) {
            s_fill(x, k, seed + 10 * (uint32_t)ti);
            tr->from_float(x, q, k);
            tr->to_float(q, ref, k);
            cr_assert_eq(wg_cuda_emu_dequant_row(t, q, emu, k), WG_OK, "%s: %s", tr->name, wg_errmsg());
            for (int64_t i = 0; i < k; i++)
                cr_assert(memcmp(&ref[i], &emu[i], sizeof(float)) == 0, "%s seed %u value %lld: ref %.9g device %.9g",
                          tr->name, seed, (long long)i, ref[i], emu[i]);
        }
        free(q);
    }
    free(x);
    free(ref);
    free(emu);
}

/* The dp4a dot of a weight row with a Q8_1 row equals the exact dot of the two
 * dequantized rows up to float accumulation: bound 1e-5 * sum|w_i x_i|. */
Test(gpu_emu, dp4a_dot_matches_dequantized_dot) {
    const int64_t k = 2048;
    float *w = malloc(k * sizeof(float)), *x = malloc(k * sizeof(float));
    float *wd = malloc(k * sizeof(float)), *xd = malloc(k * sizeof(float));
    void *xq = malloc(wg_row_size(WG_TYPE_Q8_1, k));
    for (size_t ti = 0; ti < N_QTYPES; ti++) {
        const wg_type_t t = s_qtypes[ti];
        const wg_type_traits_t *tr = wg_type_traits(t);
        void *q = malloc(wg_row_size(t, k));
        for (uint32_t seed = 1; seed <= 4; seed++) {
            s_fill(w, k, seed * 7 + (uint32_t)ti);
            s_fill(x, k, seed * 13 + 100 + (uint32_t)ti);
            if (seed == 4)
                for (int64_t i = 0; i < k; i++) x[i] += 0.75f; /* biased activations exercise min terms */
            tr->from_float(w, q, k);
            tr->to_float(q, wd, k);
            wg_k_quant_q8_1_ref(x, xq, k);
            wg_k_dequant_q8_1_ref(xq, xd, k);
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < k; i++) {
                exact += (double)wd[i] * xd[i];
                mag += fabs((double)wd[i] * xd[i]);
            }
            float got = NAN;
            cr_assert_eq(wg_cuda_emu_dot_q8_1(t, q, xq, k, &got), WG_OK);
            cr_assert(fabs(got - exact) <= 1e-5 * mag + 1e-6, "%s seed %u: dp4a %.9g exact %.9g (mag %.3g)",
                      tr->name, seed, got, exact, mag);
            /* And against the reference engine path (its own activation type):
             * both approximate the F32 dot; a wrong layout would be off by O(mag). */
            const float rd = wg_ref_dot_f32(t, q, x, k);
            cr_assert(fabs(got - rd) <= 2e-2 * mag, "%s seed %u: dp4a %.6g ref %.6g", tr->name, seed, got, rd);
        }
        free(q);
    }
    free(w);
    free(x);
    free(wd);
    free(xd);
    free(xq);
}

Test(gpu_emu, unsupported_type_is_an_error_not_a_crash) {
    float y[32];
    uint8_t blk[64] = {0};
    cr_assert_eq(wg_cuda_emu_dequant_row(WG_TYPE_IQ2_XXS, blk, y, 256), WG_ERR_UNSUPPORTED);
    cr_assert_eq(wg_cuda_emu_dequant_row(WG_TYPE_Q4_0, blk, y, 31), WG_ERR_INVAL);
    cr_assert(!wg_cuda_type_supported(WG_TYPE_Q8_K));
    cr_assert(wg_cuda_type_supported(WG_TYPE_MXFP4));
}
