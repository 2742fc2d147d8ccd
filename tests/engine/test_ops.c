/* CPU op table: elementwise ops over a whole batch must give every element the
 * same arithmetic whatever its place in the flattened [n_tokens][width] buffer,
 * or a sequence's numbers would depend on what else shares the step. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/wg_backend.h"

static float s_rand(uint32_t *st) {
    *st = *st * 1664525u + 1013904223u;
    return ((float)(*st >> 8) / 16777216.0f - 0.5f) * 16.0f; /* [-8, 8): both tails of exp */
}

static void s_act_rows_equal_flat(wg_act_t act, int width, int rows, bool with_up) {
    const size_t n = (size_t)width * rows;
    float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float));
    float *flat = malloc(n * sizeof(float)), *byrow = malloc(n * sizeof(float));
    uint32_t st = 12345u + (uint32_t)width;
    for (size_t i = 0; i < n; i++) {
        g[i] = s_rand(&st);
        u[i] = s_rand(&st);
    }
    memcpy(flat, g, n * sizeof(float));
    wg_backend_cpu.act(NULL, act, flat, with_up ? u : NULL, (int64_t)n);
    memcpy(byrow, g, n * sizeof(float));
    for (int r = 0; r < rows; r++)
        wg_backend_cpu.act(NULL, act, byrow + (size_t)r * width, with_up ? u + (size_t)r * width : NULL, width);
    for (size_t i = 0; i < n; i++)
        cr_assert(memcmp(&flat[i], &byrow[i], sizeof(float)) == 0,
                  "act %d width %d: element %zu (row %zu col %zu) %.9g batched vs %.9g alone", (int)act, width, i,
                  i / (size_t)width, i % (size_t)width, (double)flat[i], (double)byrow[i]);
    free(g);
    free(u);
    free(flat);
    free(byrow);
}

Test(ops, silu_gated_same_for_every_element_place) {
    const int widths[] = {172, 100, 13, 64, 7};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) s_act_rows_equal_flat(WG_ACT_SILU, widths[w], 64, true);
}

Test(ops, silu_plain_same_for_every_element_place) { s_act_rows_equal_flat(WG_ACT_SILU, 172, 64, false); }

Test(ops, gelu_variants_same_for_every_element_place) {
    s_act_rows_equal_flat(WG_ACT_GELU, 172, 64, true);
    s_act_rows_equal_flat(WG_ACT_GELU_ERF, 100, 64, true);
}
