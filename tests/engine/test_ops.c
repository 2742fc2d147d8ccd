/* CPU op table: elementwise ops over a whole batch must give every element the
 * same arithmetic whatever its place in the flattened [n_tokens][width] buffer,
 * or a sequence's numbers would depend on what else shares the step. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/wg_backend.h"
#include "kernels/cpu/wg_cpu.h"

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

/* Norm, rope and act split across a pool (large calls) give bitwise what one
 * call on the caller gives. */
Test(ops, row_ops_split_across_the_pool_equal_one_call) {
    wg_pool_t *pool = wg_pool_new(2);
    const int64_t rows = 96, n = 772; /* n: an 8-lane tail per row */
    const size_t all = (size_t)(rows * n);
    float *x = malloc(all * sizeof(float)), *a = malloc(all * sizeof(float)), *b = malloc(all * sizeof(float));
    float *w = malloc((size_t)n * sizeof(float)), *u = malloc(all * sizeof(float));
    uint32_t st = 4242u;
    for (size_t i = 0; i < all; i++) x[i] = s_rand(&st), u[i] = s_rand(&st);
    for (int64_t i = 0; i < n; i++) w[i] = s_rand(&st) / 8.0f;
    const wg_norm_kind_t kinds[] = {WG_NORM_RMS, WG_NORM_LAYER};
    for (int k = 0; k < 2; k++) {
        memcpy(a, x, all * sizeof(float));
        memcpy(b, x, all * sizeof(float));
        wg_backend_cpu.norm(NULL, kinds[k], a, rows, n, n, w, NULL, 1e-5f);
        wg_backend_cpu.norm(pool, kinds[k], b, rows, n, n, w, NULL, 1e-5f);
        cr_assert(memcmp(a, b, all * sizeof(float)) == 0, "norm %d: split differs", k);
    }
    int32_t pos[96];
    for (int i = 0; i < 96; i++) pos[i] = 7 * i + 3;
    const wg_rope_t ropes[] = {
        {.style = WG_ROPE_NORM, .n_rot = 64, .base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f},
        {.style = WG_ROPE_NEOX, .n_rot = 32, .base = 500000.0f, .freq_scale = 0.5f, .attn_factor = 1.0f},
    };
    for (int k = 0; k < 2; k++) {
        memcpy(a, x, all * sizeof(float));
        memcpy(b, x, all * sizeof(float));
        /* 96 tokens x 12 heads of 64 in rows of 772 */
        wg_backend_cpu.rope(NULL, &ropes[k], a, 96, 12, 64, n, pos);
        wg_backend_cpu.rope(pool, &ropes[k], b, 96, 12, 64, n, pos);
        cr_assert(memcmp(a, b, all * sizeof(float)) == 0, "rope %d: split differs", k);
        cr_assert(memcmp(a, x, all * sizeof(float)) != 0, "rope %d changed nothing", k);
    }
    const wg_act_t acts[] = {WG_ACT_SILU, WG_ACT_GELU, WG_ACT_SWIGLU_OAI};
    for (int k = 0; k < 3; k++) {
        for (int gated = 0; gated < 2; gated++) {
            memcpy(a, x, all * sizeof(float));
            memcpy(b, x, all * sizeof(float));
            wg_backend_cpu.act(NULL, acts[k], a, gated ? u : NULL, (int64_t)all - 5);
            wg_backend_cpu.act(pool, acts[k], b, gated ? u : NULL, (int64_t)all - 5);
            cr_assert(memcmp(a, b, all * sizeof(float)) == 0, "act %d gated %d: split differs", (int)acts[k], gated);
        }
    }
    free(x);
    free(a);
    free(b);
    free(w);
    free(u);
    wg_pool_destroy(&pool);
}

/* ---- attention over F16 and F32 caches ---- */

#include <math.h>
#include <pthread.h>

#include "kernels/cpu/wg_cpu.h"
#include "kernels/cpu/wg_cpu_impl.h"
#include "kernels/ref/wg_ref_kernels.h"

/* Rope at every SIMD level gives the scalar loop's bits: interleaved pairs
 * (NORM, rotated 4 pairs at a time on x86) over whole and partial rotary
 * dims and with YaRN, and halves (NEOX), at positions up to 100k. */
Test(ops, rope_is_bitwise_the_scalar_loop_at_every_simd_level) {
    static const char *const levels[] = {"avx2", "avx512"};
    const int64_t n_tok = 40, n_heads = 6, hd = 64, stride = 6 * 64 + 8;
    const size_t all = (size_t)(n_tok * stride);
    float *x = malloc(all * sizeof(float)), *a = malloc(all * sizeof(float)), *b = malloc(all * sizeof(float));
    cr_assert(x && a && b);
    uint32_t st = 777u;
    for (size_t i = 0; i < all; i++) x[i] = s_rand(&st) * 4.0f;
    int32_t pos[40];
    for (int i = 0; i < 40; i++) pos[i] = i * i * 61 + i;
    const wg_rope_t ropes[] = {
        {.style = WG_ROPE_NORM, .n_rot = 64, .base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f},
        {.style = WG_ROPE_NORM, .n_rot = 24, .base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f},
        {.style = WG_ROPE_NORM, .n_rot = 64, .base = 1e6f, .freq_scale = 0.25f, .attn_factor = 1.0f,
         .ext_factor = 1.0f, .corr_dims = {4.0f, 20.0f}},
        {.style = WG_ROPE_NEOX, .n_rot = 64, .base = 500000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f},
    };
    int checked = 0;
    for (int k = 0; k < 4; k++) {
        cr_assert(wg_cpu_force_simd("scalar"));
        memcpy(a, x, all * sizeof(float));
        wg_backend_cpu.rope(NULL, &ropes[k], a, n_tok, (int32_t)n_heads, (int32_t)hd, stride, pos);
        cr_assert(memcmp(a, x, all * sizeof(float)) != 0, "rope %d changed nothing", k);
        for (int li = 0; li < 2; li++) {
            if (!wg_cpu_force_simd(levels[li])) continue;
            memcpy(b, x, all * sizeof(float));
            wg_backend_cpu.rope(NULL, &ropes[k], b, n_tok, (int32_t)n_heads, (int32_t)hd, stride, pos);
            for (size_t i = 0; i < all; i++)
                cr_assert(memcmp(&a[i], &b[i], sizeof(float)) == 0, "rope %d %s: element %zu: %.9g, scalar %.9g", k,
                          levels[li], i, (double)b[i], (double)a[i]);
            checked++;
        }
    }
    wg_cpu_force_simd(NULL);
    free(x);
    free(a);
    free(b);
    if (!checked) cr_skip_test("no SIMD level on this CPU");
}

/* ---- rope's per-thread angle cache ---- */
typedef struct {
    const wg_rope_t *r;
    float *x;
    int32_t n_tok;
    const int32_t *pos;
} s_rope_job_t;

/* Rope of 3 heads of 64 (stride 192) on a fresh thread: a cache that starts empty. */
static void *s_rope_thread(void *arg) {
    const s_rope_job_t *j = arg;
    wg_backend_cpu.rope(NULL, j->r, j->x, j->n_tok, 3, 64, 192, j->pos);
    return NULL;
}

/* Calls that alternate three parameter sets (the cache holds two), repeat
 * positions 64 apart (one slot), and change frequency factors in place
 * under the same pointer each give the bits of the same call on a thread
 * whose cache is empty. */
Test(ops, rope_angle_cache_never_serves_stale_angles) {
    float ff[32];
    for (int i = 0; i < 32; i++) ff[i] = 1.0f + (float)i / 8.0f;
    const wg_rope_t ropes[] = {
        {.style = WG_ROPE_NORM, .n_rot = 64, .base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f},
        {.style = WG_ROPE_NORM, .n_rot = 64, .base = 1e6f, .freq_scale = 1.0f, .attn_factor = 1.0f},
        {.style = WG_ROPE_NEOX, .n_rot = 64, .base = 10000.0f, .freq_scale = 0.5f, .attn_factor = 1.0f},
        {.style = WG_ROPE_NORM, .n_rot = 64, .base = 10000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f,
         .freq_factors = ff},
    };
    const int32_t n_tok = 6;
    const int32_t pos_sets[3][6] = {{0, 1, 2, 63, 64, 65}, {64, 65, 66, 127, 128, 129}, {128, 1, 66, 191, 0, 193}};
    float x[6 * 192], got[6 * 192], want[6 * 192];
    uint32_t st = 4242u;
    for (int i = 0; i < 6 * 192; i++) x[i] = s_rand(&st);
    int calls = 0, changed = 0;
    for (int round = 0; round < 4; round++)
        for (int k = 0; k < 4; k++)
            for (int ps = 0; ps < 3; ps++) {
                if (k == 3 && ps == 2) ff[(round + ps) % 32] += 0.5f; /* same pointer, new contents */
                memcpy(got, x, sizeof x);
                memcpy(want, x, sizeof x);
                wg_backend_cpu.rope(NULL, &ropes[k], got, n_tok, 3, 64, 192, pos_sets[ps]);
                s_rope_job_t j = {.r = &ropes[k], .x = want, .n_tok = n_tok, .pos = pos_sets[ps]};
                pthread_t t;
                cr_assert_eq(pthread_create(&t, NULL, s_rope_thread, &j), 0);
                pthread_join(t, NULL);
                for (int i = 0; i < 6 * 192; i++)
                    cr_assert(memcmp(&got[i], &want[i], sizeof(float)) == 0,
                              "round %d rope %d positions %d: element %d: %.9g, fresh thread %.9g", round, k, ps, i,
                              (double)got[i], (double)want[i]);
                changed += memcmp(got, x, sizeof x) != 0;
                calls++;
            }
    cr_assert_eq(changed, calls, "a rope changed nothing");
}

typedef struct {
    int32_t n_head, n_kv, hd, hdv, window, bt;
    float softcap;
    bool sinks;
} s_acase_t;

/* GQA, MHA with sinks, window + soft-cap with head_dim != head_dim_v, head
 * sizes for the AVX2 (24) and scalar (12) paths, a long context whose scores
 * leave the stack, 4-token blocks, and a context long enough (17000 keys)
 * that the score rows cap an item at 3 of the 4 kv heads when batched
 * (items of 3 and of 1) while a token alone runs items of 1. */
static const s_acase_t s_acases[] = {
    {8, 2, 64, 64, 0, 16, 0.0f, false}, {4, 4, 128, 128, 0, 16, 0.0f, true}, {6, 3, 96, 64, 37, 16, 30.0f, false},
    {4, 1, 24, 24, 0, 4, 0.0f, false},  {2, 2, 12, 12, 0, 16, 0.0f, false}, {8, 2, 64, 64, 0, 16, 0.0f, false},
    {4, 4, 32, 32, 0, 16, 0.0f, false},
};
static const int32_t s_alens[][5] = {
    {1, 17, 64, 200, 33}, {5, 16, 31, 129, 2}, {40, 90, 3, 64, 38}, {1, 2, 3, 9, 77}, {7, 100, 8, 15, 16},
    {2100, 3, 700, 16, 1}, {17000, 5, 300, 2, 40},
};

/* n_seq sequences of lens[s] positions of random K/V (uniform [-1, 1)) in a
 * cache of `type`; round: store x rounded as a cache of that type would
 * (f16(x), or Q8_0-quantized and dequantized per 32 of the K and the V row,
 * by the reference kernels), as floats, instead of x. */
typedef enum { S_EXACT, S_ROUND16, S_ROUNDQ8 } s_round_t;

static void s_round_q8(float *x, int32_t n) {
    wg_block_q8_0 b[64];
    cr_assert(n % 32 == 0 && n / 32 <= 64);
    wg_k_quant_q8_0_ref(x, b, n);
    wg_k_dequant_q8_0_ref(b, x, n);
}

/* rep > 1: every kv head stored rep times over (kv head h as heads
 * h*rep .. h*rep+rep-1), the cache an MHA model with those heads would hold. */
static wg_kv_t *s_acache_rep(const s_acase_t *c, const int32_t *lens, int n_seq, wg_kv_type_t type, s_round_t round,
                             int32_t rep) {
    const int32_t kd = c->n_kv * c->hd, vd = c->n_kv * c->hdv;
    const int32_t kdr = kd * rep, vdr = vd * rep;
    size_t tok = 0;
    for (int s = 0; s < n_seq; s++) tok += (size_t)lens[s] + (size_t)c->bt;
    wg_kv_t *kv =
        wg_kv_new_typed(1, kdr, vdr, c->bt, tok * (wg_kv_row_bytes(type, kdr) + wg_kv_row_bytes(type, vdr)), type);
    cr_assert(kv, "%s", wg_errmsg());
    float *row = malloc((size_t)(kd + vd) * sizeof(float)), *rrow = malloc((size_t)(kdr + vdr) * sizeof(float));
    uint32_t st = 777u;
    for (int s = 0; s < n_seq; s++) {
        int32_t id;
        cr_assert_eq(wg_kv_seq_new(kv, &id), WG_OK);
        cr_assert_eq(id, s);
        cr_assert_eq(wg_kv_reserve(kv, s, lens[s]), WG_OK);
        for (int32_t p = 0; p < lens[s]; p++) {
            for (int32_t i = 0; i < kd + vd; i++) {
                row[i] = s_rand(&st) / 8.0f;
                if (round == S_ROUND16) row[i] = wg_fp16_to_fp32(wg_fp32_to_fp16(row[i]));
            }
            if (round == S_ROUNDQ8) {
                s_round_q8(row, kd);
                s_round_q8(row + kd, vd);
            }
            for (int32_t h = 0; h < c->n_kv * rep; h++) {
                memcpy(rrow + h * c->hd, row + (h / rep) * c->hd, (size_t)c->hd * sizeof(float));
                memcpy(rrow + kdr + h * c->hdv, row + kd + (h / rep) * c->hdv, (size_t)c->hdv * sizeof(float));
            }
            wg_kv_put_k(kv, 0, s, p, rrow, kdr);
            wg_kv_put_v(kv, 0, s, p, rrow + kdr, vdr);
        }
        cr_assert_eq(wg_kv_seq_set_len(kv, s, lens[s]), WG_OK);
    }
    free(row);
    free(rrow);
    return kv;
}

static wg_kv_t *s_acache(const s_acase_t *c, const int32_t *lens, int n_seq, wg_kv_type_t type, s_round_t round) {
    return s_acache_rep(c, lens, n_seq, type, round, 1);
}

/* The last position of every sequence plus two earlier ones (prefill rows):
 * out gets [n_tok][n_head*hdv]. Returns n_tok. */
static int s_arun(const s_acase_t *c, wg_kv_t *kv, const int32_t *lens, int n_seq, const float *q, wg_pool_t *pool,
                  int only, float *out) {
    int32_t seq[16], pos[16];
    int n = 0;
    for (int s = 0; s < n_seq; s++) {
        const int32_t ps[3] = {lens[s] - 1, lens[s] / 2, 0};
        for (int k = 0; k < (lens[s] > 2 ? 3 : 1); k++) {
            seq[n] = s;
            pos[n] = ps[k];
            n++;
        }
    }
    const int64_t qs = (int64_t)c->n_head * c->hd, os = (int64_t)c->n_head * c->hdv;
    const float sinks[8] = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.25f, 0.75f, 3.0f};
    wg_attn_args_t a = {.kv = kv, .layer = 0, .n_tok = n, .seq = seq, .pos = pos, .q = q, .q_stride = qs,
                        .out = out, .n_head = c->n_head, .n_head_kv = c->n_kv, .head_dim = c->hd,
                        .head_dim_v = c->hdv, .scale = 1.0f / sqrtf((float)c->hd), .window = c->window,
                        .softcap = c->softcap, .sinks = c->sinks ? sinks : NULL};
    if (only >= 0) { /* token `only` alone */
        a.n_tok = 1;
        a.seq = seq + only;
        a.pos = pos + only;
        a.q = q + only * qs;
        a.out = out + only * os;
    }
    cr_assert_eq(wg_backend_cpu.attention(pool, &a), WG_OK, "%s", wg_errmsg());
    return n;
}

/* Whether case c's head sizes fit a cache of `type` (Q8_0: multiples of 32). */
static bool s_type_takes(wg_kv_type_t type, const s_acase_t *c) {
    return type != WG_KV_Q8_0 || (c->hd % 32 == 0 && c->hdv % 32 == 0);
}

/* 16 tokens of random queries for case ci (uniform [-1, 1)); caller frees. */
static float *s_aqueries(const s_acase_t *c, size_t ci) {
    const int64_t qs = (int64_t)c->n_head * c->hd;
    float *q = malloc((size_t)(16 * qs) * sizeof(float));
    uint32_t st = 99u + (uint32_t)ci;
    for (int64_t i = 0; i < 16 * qs; i++) q[i] = s_rand(&st) / 8.0f;
    return q;
}

/* A cache of `type` against an F32 cache holding the values it stores (round:
 * how they are rounded), bitwise, and batched against each token alone, at
 * every SIMD level the CPU has; cases whose head sizes the type takes. */
static void s_attention_equals_rounded_f32(wg_kv_type_t type, s_round_t round) {
    static const char *const levels[] = {"scalar", "avx2", "avx512"};
    const char *tn = wg_kv_type_name(type);
    wg_pool_t *pool = wg_pool_new(2);
    int n_cases = 0;
    for (int li = 0; li < 3; li++) {
        if (!wg_cpu_force_simd(levels[li])) continue;
        for (size_t ci = 0; ci < sizeof s_acases / sizeof s_acases[0]; ci++) {
            const s_acase_t *c = &s_acases[ci];
            if (!s_type_takes(type, c)) continue;
            n_cases++;
            const int n_seq = 5;
            wg_kv_t *kt = s_acache(c, s_alens[ci], n_seq, type, S_EXACT);
            wg_kv_t *k32r = s_acache(c, s_alens[ci], n_seq, WG_KV_F32, round);
            const int64_t os = (int64_t)c->n_head * c->hdv;
            float *q = s_aqueries(c, ci);
            float *ot = calloc((size_t)(16 * os), sizeof(float)), *o32r = calloc((size_t)(16 * os), sizeof(float));
            float *alone = calloc((size_t)(16 * os), sizeof(float));
            const int n = s_arun(c, kt, s_alens[ci], n_seq, q, pool, -1, ot);
            s_arun(c, k32r, s_alens[ci], n_seq, q, pool, -1, o32r);
            for (int64_t i = 0; i < n * os; i++)
                cr_assert(memcmp(&ot[i], &o32r[i], sizeof(float)) == 0,
                          "%s %s case %zu: element %lld: %.9g, F32 cache of the same values %.9g", tn, levels[li], ci,
                          (long long)i, (double)ot[i], (double)o32r[i]);
            for (int t = 0; t < n; t++) s_arun(c, kt, s_alens[ci], n_seq, q, pool, t, alone);
            for (int64_t i = 0; i < n * os; i++)
                cr_assert(memcmp(&ot[i], &alone[i], sizeof(float)) == 0,
                          "%s %s case %zu: token %lld head elem %lld: %.9g batched vs %.9g alone", tn, levels[li], ci,
                          (long long)(i / os), (long long)(i % os), (double)ot[i], (double)alone[i]);
            free(q);
            free(ot);
            free(o32r);
            free(alone);
            wg_kv_free(&kt);
            wg_kv_free(&k32r);
        }
    }
    wg_cpu_force_simd(NULL);
    cr_assert_geq(n_cases, 4);
    wg_pool_destroy(&pool);
}

Test(ops, attention_f16_cache_equals_f32_cache_of_rounded_values_and_is_batch_invariant) {
    s_attention_equals_rounded_f32(WG_KV_F16, S_ROUND16);
}

/* The kernels widen each Q8_0 element to d * q, exact in float. */
Test(ops, attention_q8_0_cache_equals_f32_cache_of_dequantized_values_and_is_batch_invariant) {
    s_attention_equals_rounded_f32(WG_KV_Q8_0, S_ROUNDQ8);
}

/* Grouped-query attention (kv heads shared by n_head / n_kv query heads)
 * equals multi-head attention over a cache holding every kv head once per
 * query head, bitwise, for every cache type at every SIMD level: the kernels
 * that serve a group's heads together give each head the numbers it gets
 * alone. */
Test(ops, attention_gqa_equals_mha_over_replicated_kv_heads) {
    static const char *const levels[] = {"scalar", "avx2", "avx512"};
    static const wg_kv_type_t types[] = {WG_KV_F32, WG_KV_F16, WG_KV_Q8_0};
    wg_pool_t *pool = wg_pool_new(2);
    int n_cases = 0;
    for (int li = 0; li < 3; li++) {
        if (!wg_cpu_force_simd(levels[li])) continue;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (size_t ci = 0; ci < sizeof s_acases / sizeof s_acases[0]; ci++) {
                const s_acase_t *c = &s_acases[ci];
                if (c->n_kv == c->n_head || !s_type_takes(types[ti], c)) continue;
                n_cases++;
                const int n_seq = 5;
                s_acase_t mha = *c;
                mha.n_kv = c->n_head;
                wg_kv_t *kg = s_acache(c, s_alens[ci], n_seq, types[ti], S_EXACT);
                wg_kv_t *km = s_acache_rep(c, s_alens[ci], n_seq, types[ti], S_EXACT, c->n_head / c->n_kv);
                const int64_t os = (int64_t)c->n_head * c->hdv;
                float *q = s_aqueries(c, ci);
                float *og = calloc((size_t)(16 * os), sizeof(float)), *om = calloc((size_t)(16 * os), sizeof(float));
                const int n = s_arun(c, kg, s_alens[ci], n_seq, q, pool, -1, og);
                s_arun(&mha, km, s_alens[ci], n_seq, q, pool, -1, om);
                for (int64_t i = 0; i < n * os; i++)
                    cr_assert(memcmp(&og[i], &om[i], sizeof(float)) == 0,
                              "%s %s case %zu: token %lld head elem %lld: GQA %.9g, MHA over replicated heads %.9g",
                              wg_kv_type_name(types[ti]), levels[li], ci, (long long)(i / os), (long long)(i % os),
                              (double)og[i], (double)om[i]);
                free(q);
                free(og);
                free(om);
                wg_kv_free(&kg);
                wg_kv_free(&km);
            }
    }
    wg_cpu_force_simd(NULL);
    cr_assert_geq(n_cases, 8);
    wg_pool_destroy(&pool);
}

/* Max |attention over a cache of `type` - over an F32 cache of the same
 * values| within `bound` for every case it takes; and not 0. */
static void s_attention_within_bound(wg_kv_type_t type, double bound) {
    const char *tn = wg_kv_type_name(type);
    wg_pool_t *pool = wg_pool_new(2);
    double worst = 0;
    for (size_t ci = 0; ci < sizeof s_acases / sizeof s_acases[0]; ci++) {
        const s_acase_t *c = &s_acases[ci];
        if (!s_type_takes(type, c)) continue;
        const int n_seq = 5;
        wg_kv_t *kt = s_acache(c, s_alens[ci], n_seq, type, S_EXACT);
        wg_kv_t *k32 = s_acache(c, s_alens[ci], n_seq, WG_KV_F32, S_EXACT);
        const int64_t os = (int64_t)c->n_head * c->hdv;
        float *q = s_aqueries(c, ci);
        float *ot = calloc((size_t)(16 * os), sizeof(float)), *o32 = calloc((size_t)(16 * os), sizeof(float));
        const int n = s_arun(c, kt, s_alens[ci], n_seq, q, pool, -1, ot);
        s_arun(c, k32, s_alens[ci], n_seq, q, pool, -1, o32);
        double md = 0;
        for (int64_t i = 0; i < n * os; i++) md = fmax(md, fabs((double)ot[i] - (double)o32[i]));
        cr_log_info("attention case %zu: max |%s - f32| = %.3g", ci, tn, md);
        cr_expect_leq(md, bound, "case %zu: %s cache off by %.3g from F32", ci, tn, md);
        if (md > worst) worst = md;
        free(q);
        free(ot);
        free(o32);
        wg_kv_free(&kt);
        wg_kv_free(&k32);
    }
    cr_assert_gt(worst, 0.0, "%s rounding should change something", tn);
    wg_pool_destroy(&pool);
}

/* F16 keeps 11 significant bits, so each stored element is within u = 2^-11
 * (4.9e-4) relative of the F32 one: an output element, a convex mix of values
 * in [-1, 1), moves by at most u from the values themselves (half an ulp,
 * 2.4e-4, near 1) plus what the scores move (u * scale * sum|q_i k_i|, a few
 * 1e-5 here). The bound, 2u = 9.8e-4, is ~3.5x the worst seen (2.7e-4) and
 * far below what a wrong row, head or position gives (~1e-1). */
Test(ops, attention_f16_cache_within_bound_of_f32_cache) { s_attention_within_bound(WG_KV_F16, 9.8e-4); }

/* Q8_0 keeps each element within d/2 = amax/254 of its block (values in
 * [-1, 1) here: <= 3.9e-3); an output, a convex mix of values, moves by at
 * most that plus what the scores move (up to scale * sum |q_i| * 3.9e-3,
 * mostly cancelling). Seen: 3.4e-3 ... 4.5e-3. The bound, 1e-2, is ~2x that
 * and below what a wrong row, head or position gives (outputs ~5e-2). */
Test(ops, attention_q8_0_cache_within_bound_of_f32_cache) { s_attention_within_bound(WG_KV_Q8_0, 1e-2); }

/* The AVX-512 SiLU (and the 16-lane exp under it, which the attention
 * softmax shares) gives every element the bits of the 8-lane AVX2 kernel,
 * over the whole input range: both tails of exp, the flush to 0 below
 * -87.34, the clamp near 88.38, infinities and NaN. */
Test(ops, silu_avx512_equals_avx2_bitwise) {
    if (!wg_cpu_force_simd("avx512")) {
        wg_cpu_force_simd(NULL);
        cr_skip("this CPU has no AVX-512");
    }
    const size_t n = 4096 + 24;
    float *g = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float));
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    uint32_t st = 31337u;
    for (size_t i = 0; i < n; i++) {
        g[i] = s_rand(&st) * 12.5f; /* [-100, 100) */
        u[i] = s_rand(&st);
    }
    const float edge[] = {-87.33654f, -87.3365f, -87.34f, 87.0f, 88.3762626647949f, 88.38f, 89.0f, -88.5f,
                          0.0f, -0.0f, 1e-30f, -1e-30f, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) g[i * 7] = edge[i];
    for (int gated = 0; gated < 2; gated++) {
        memcpy(a, g, n * sizeof(float));
        memcpy(b, g, n * sizeof(float));
        cr_assert(wg_cpu_force_simd("avx512"));
        wg_backend_cpu.act(NULL, WG_ACT_SILU, a, gated ? u : NULL, (int64_t)n);
        cr_assert(wg_cpu_force_simd("avx2"));
        wg_backend_cpu.act(NULL, WG_ACT_SILU, b, gated ? u : NULL, (int64_t)n);
        for (size_t i = 0; i < n; i++)
            cr_assert(memcmp(&a[i], &b[i], sizeof(float)) == 0, "gated %d: silu(%.9g) = %.9g at avx512, %.9g at avx2",
                      gated, (double)g[i], (double)a[i], (double)b[i]);
    }
    wg_cpu_force_simd(NULL);
    free(g);
    free(u);
    free(a);
    free(b);
}
