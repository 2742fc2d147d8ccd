/* Fused decode (wg_backend_ops_t.run): a one-token step run as one pool job
 * gives bitwise the numbers of the separate ops, whatever the thread count,
 * and a model decoded token by token through it gives bitwise the logits of
 * the same tokens prefilled in one call (which takes the per-op path), for
 * every architecture the fused steps cover and those that fall back. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "engine/model/wg_backend.h"
#include "engine/model/wg_model.h"
#include "kernels/cpu/wg_cpu.h"
#include "kernels/ref/wg_ref.h"
#include "wg_test.h"

static float s_rand(uint32_t *st) {
    *st = *st * 1664525u + 1013904223u;
    return (float)(*st >> 8) / 16777216.0f - 0.5f;
}

/* A Q8_0 matrix of n rows of k random values. */
static wg_weight_t s_weight(int64_t n, int64_t k, uint32_t seed) {
    const size_t rb = wg_row_size(WG_TYPE_Q8_0, k);
    uint8_t *d = malloc(rb * (size_t)n);
    float *row = malloc((size_t)k * sizeof(float));
    for (int64_t r = 0; r < n; r++) {
        for (int64_t i = 0; i < k; i++) row[i] = s_rand(&seed);
        wg_type_traits(WG_TYPE_Q8_0)->from_float(row, d + rb * (size_t)r, k);
    }
    free(row);
    return (wg_weight_t){.type = WG_TYPE_Q8_0, .k = k, .n = n, .n_exp = 1, .row_bytes = rb, .data = d};
}

static float *s_vec(int64_t n, uint32_t seed) {
    float *v = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = s_rand(&seed) * 4.0f;
    return v;
}

static void s_same(const float *a, const float *b, int64_t n, const char *what, int threads) {
    for (int64_t i = 0; i < n; i++)
        cr_assert(memcmp(&a[i], &b[i], sizeof(float)) == 0, "%s, %d threads: element %lld %.9g fused vs %.9g", what,
                  threads, (long long)i, (double)a[i], (double)b[i]);
}

/* Three steps of a dense layer's shapes (normed input into three products
 * with biases; gate/up with SiLU; down added into a residual) against norm,
 * matmul, act and add called one by one. */
Test(fused, steps_equal_separate_ops_for_any_thread_count) {
    if (wg_k_gemv_xsize(WG_TYPE_Q8_0, 256) == 0) cr_skip_test("no Q8_0 row kernel at SIMD level %s", wg_cpu_simd_name());
    const int64_t E = 256, F = 160, N3[3] = {96, 64, 64};
    wg_weight_t w3[3], wg = s_weight(F, E, 11), wu = s_weight(F, E, 12), wd = s_weight(E, F, 13);
    float *b3[3], *y3[3], *r3[3];
    for (int i = 0; i < 3; i++) {
        w3[i] = s_weight(N3[i], E, 1 + (uint32_t)i);
        b3[i] = s_vec(N3[i], 21 + (uint32_t)i);
        y3[i] = malloc((size_t)N3[i] * sizeof(float));
        r3[i] = malloc((size_t)N3[i] * sizeof(float));
    }
    float *x0 = s_vec(E, 5), *nw = s_vec(E, 6), *ub = s_vec(F, 7);
    /* Reference: the ops one at a time, no pool. */
    float *xr = malloc((size_t)E * sizeof(float)), *cur = malloc((size_t)E * sizeof(float));
    float *gr = malloc((size_t)F * sizeof(float)), *ur = malloc((size_t)F * sizeof(float));
    float *dr = malloc((size_t)E * sizeof(float));
    memcpy(xr, x0, (size_t)E * sizeof(float));
    memcpy(cur, xr, (size_t)E * sizeof(float));
    wg_backend_cpu.norm(NULL, WG_NORM_RMS, cur, 1, E, E, nw, NULL, 1e-5f);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(wg_k_matmul_cpu(NULL, w3[i].type, w3[i].data, N3[i], E, cur, 1, r3[i]), WG_OK);
        for (int64_t j = 0; j < N3[i]; j++) r3[i][j] += b3[i][j];
    }
    cr_assert_eq(wg_k_matmul_cpu(NULL, wg.type, wg.data, F, E, cur, 1, gr), WG_OK);
    cr_assert_eq(wg_k_matmul_cpu(NULL, wu.type, wu.data, F, E, cur, 1, ur), WG_OK);
    for (int64_t j = 0; j < F; j++) ur[j] += ub[j];
    wg_backend_cpu.act(NULL, WG_ACT_SILU, gr, ur, F);
    cr_assert_eq(wg_k_matmul_cpu(NULL, wd.type, wd.data, E, F, gr, 1, dr), WG_OK);
    for (int64_t j = 0; j < E; j++) xr[j] += dr[j];

    float *x = malloc((size_t)E * sizeof(float)), *g = malloc((size_t)F * sizeof(float));
    float *u = malloc((size_t)F * sizeof(float)), *d = malloc((size_t)E * sizeof(float));
    for (int threads = 1; threads <= 4; threads++) {
        wg_pool_t *pool = threads > 1 ? wg_pool_new(threads) : NULL;
        memcpy(x, x0, (size_t)E * sizeof(float));
        wg_step_t s[3] = {
            {.kind = WG_STEP_MATMUL, .in = x, .norm = true, .norm_kind = WG_NORM_RMS, .norm_w = nw, .eps = 1e-5f,
             .n_w = 3, .w = {&w3[0], &w3[1], &w3[2]}, .y = {y3[0], y3[1], y3[2]}, .b = {b3[0], b3[1], b3[2]}},
            {.kind = WG_STEP_MATMUL, .in = x, .norm = true, .norm_kind = WG_NORM_RMS, .norm_w = nw, .eps = 1e-5f,
             .n_w = 2, .w = {&wg, &wu}, .y = {g, u}, .b = {NULL, ub}, .act = true, .act_kind = WG_ACT_SILU},
            {.kind = WG_STEP_MATMUL, .in = g, .n_w = 1, .w = {&wd}, .y = {d}, .resid = x},
        };
        for (int rep = 0; rep < 20; rep++) {
            memcpy(x, x0, (size_t)E * sizeof(float));
            cr_assert_eq(wg_backend_cpu.run(pool, s, 3), WG_OK, "%s", wg_errmsg());
            for (int i = 0; i < 3; i++) s_same(y3[i], r3[i], N3[i], "q/k/v products", threads);
            s_same(g, gr, F, "gated activation", threads);
            s_same(d, dr, E, "down product", threads);
            s_same(x, xr, E, "residual", threads);
        }
        wg_pool_destroy(&pool);
    }
    /* A step the fused run cannot do (an F32 matrix has no row kernel) is
     * refused before anything is written. */
    float wf[4 * 256] = {0};
    const wg_weight_t w32 = {.type = WG_TYPE_F32, .k = E, .n = 4, .n_exp = 1, .row_bytes = (size_t)E * 4, .data = wf};
    float out[4] = {7, 7, 7, 7};
    memcpy(x, x0, (size_t)E * sizeof(float));
    const wg_step_t bad[2] = {
        {.kind = WG_STEP_MATMUL, .in = g, .n_w = 1, .w = {&wd}, .y = {d}, .resid = x},
        {.kind = WG_STEP_MATMUL, .in = x, .n_w = 1, .w = {&w32}, .y = {out}},
    };
    cr_assert_eq(wg_backend_cpu.run(NULL, bad, 2), WG_ERR_UNSUPPORTED);
    cr_assert(memcmp(x, x0, (size_t)E * sizeof(float)) == 0 && out[0] == 7.0f, "refused run wrote its outputs");
    for (int i = 0; i < 3; i++) {
        free((void *)w3[i].data);
        free(b3[i]);
        free(y3[i]);
        free(r3[i]);
    }
    free((void *)wg.data);
    free((void *)wu.data);
    free((void *)wd.data);
    free(x0);
    free(nw);
    free(ub);
    free(xr);
    free(cur);
    free(gr);
    free(ur);
    free(dr);
    free(x);
    free(g);
    free(u);
    free(d);
}

/* ---- whole models ---- */

static bool s_is_projection(const char *name) {
    static const char *const kinds[] = {".attn_q.weight", ".attn_k.weight", ".attn_v.weight", ".attn_qkv.weight",
                                        ".attn_output.weight", ".ffn_gate.weight", ".ffn_up.weight",
                                        ".ffn_down.weight"};
    if (strcmp(name, "output.weight") == 0 || strcmp(name, "token_embd.weight") == 0) return true;
    if (strncmp(name, "blk.", 4) != 0) return false;
    const size_t n = strlen(name);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const size_t k = strlen(kinds[i]);
        if (n > k && strcmp(name + n - k, kinds[i]) == 0) return true;
    }
    return false;
}

/* Copy of a conformance F32 model with its projections in Q8_0 (which has a
 * row kernel), so the fused path covers that architecture; path in `out`. */
static void s_q8_copy(const char *rel, char *out, size_t out_len) {
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    for (int64_t i = 0; i < wg_gguf_n_kv(g); i++)
        cr_assert_eq(wg_gguf_writer_set_value(w, wg_gguf_kv_key(g, i), wg_gguf_kv_value(g, i)), WG_OK);
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        if (t->type == WG_TYPE_F32 && t->n_dims == 2 && t->ne[0] % 32 == 0 && s_is_projection(t->name)) {
            const size_t rb = wg_row_size(WG_TYPE_Q8_0, t->ne[0]);
            uint8_t *q = malloc(rb * (size_t)t->ne[1]);
            for (int64_t r = 0; r < t->ne[1]; r++)
                wg_type_traits(WG_TYPE_Q8_0)->from_float((const float *)t->data + r * t->ne[0], q + rb * (size_t)r,
                                                         t->ne[0]);
            cr_assert_eq(wg_gguf_writer_add_tensor(w, t->name, WG_TYPE_Q8_0, t->n_dims, t->ne, q), WG_OK);
            free(q);
        } else {
            cr_assert_eq(wg_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), WG_OK);
        }
    }
    const char *base = strrchr(rel, '/');
    snprintf(out, out_len, "/tmp/wg_fused_%d_%s", (int)getpid(), base ? base + 1 : rel);
    cr_assert_eq(wg_gguf_writer_write(w, out), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
    wg_gguf_close(&g);
}

/* Logits of 7 tokens decoded one at a time with 1, 2 and 3 threads equal
 * those of one 7-token prefill. */
static void s_decode_equals_prefill_path(const char *path, const char *name) {
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(path, &m), WG_OK, "%s: %s", name, wg_errmsg());
    const int32_t V = wg_model_hparams(m)->n_vocab;
    enum { N = 7 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = 3 + (int32_t)((2654435761u * (uint32_t)(i + 1)) % (uint32_t)(V - 3));
    float *ref = malloc((size_t)N * (size_t)V * sizeof(float)), *lg = malloc((size_t)V * sizeof(float));
    wg_session_t *s = wg_session_new_typed(m, 1, 32, NULL, WG_KV_F16);
    cr_assert(s, "%s", wg_errmsg());
    cr_assert_eq(wg_session_eval(s, ids, N, true, ref), WG_OK, "%s: %s", name, wg_errmsg());
    wg_session_free(&s);
    for (int threads = 1; threads <= 3; threads++) {
        s = wg_session_new_typed(m, threads, 32, NULL, WG_KV_F16);
        cr_assert(s, "%s", wg_errmsg());
        for (int i = 0; i < N; i++) {
            cr_assert_eq(wg_session_eval(s, ids + i, 1, true, lg), WG_OK, "%s: %s", name, wg_errmsg());
            cr_assert(memcmp(lg, ref + (size_t)i * (size_t)V, (size_t)V * sizeof(float)) == 0,
                      "%s, %d threads: logits of token %d decoded alone differ from the prefill's", name, threads, i);
        }
        wg_session_free(&s);
    }
    free(ref);
    free(lg);
    wg_model_free(&m);
}

static void s_corpus(const char *rel) {
    WG_REQUIRE_CORPUS();
    s_decode_equals_prefill_path(wg_test_corpus(rel), rel);
}

static void s_corpus_q8(const char *rel) {
    WG_REQUIRE_CORPUS();
    char p[512];
    s_q8_copy(rel, p, sizeof p);
    s_decode_equals_prefill_path(p, rel);
    unlink(p);
}

Test(fused, llama_q4_k_m) { s_corpus("models/llama/llama-Q4_K_M.gguf"); }
Test(fused, llama_q5_k_m) { s_corpus("models/llama/llama-Q5_K_M.gguf"); }
Test(fused, llama_q4_0) { s_corpus("models/llama/llama-Q4_0.gguf"); }
Test(fused, llama_q8_0) { s_corpus("models/llama/llama-Q8_0.gguf"); }
Test(fused, qwen2_q8_0_qkv_biases) { s_corpus("models/qwen2/qwen2-Q8_0.gguf"); }
Test(fused, gemma2_q8_0_post_norms_softcaps_swa) { s_corpus("models/gemma2/gemma2-Q8_0.gguf"); }
Test(fused, phi3_q8_0_fused_gate_up_falls_back) { s_corpus("models/phi3/phi3-Q8_0.gguf"); }
Test(fused, moe_q8_0_falls_back) { s_corpus("models/llama-moe/llama-moe-Q8_0.gguf"); }
Test(fused, deepseek2_mla_falls_back) { s_corpus("models/deepseek2/deepseek2-Q8_0.gguf"); }
Test(fused, falcon_parallel_block) { s_corpus_q8("models/falcon/falcon-f32.gguf"); }
Test(fused, phi2_parallel_block_fused_qkv) { s_corpus_q8("models/phi2/phi2-f32.gguf"); }
Test(fused, gemma_embedding_scale) { s_corpus_q8("models/gemma/gemma-f32.gguf"); }
Test(fused, gemma3) { s_corpus_q8("models/gemma3/gemma3-f32.gguf"); }
Test(fused, qwen3_qk_norm) { s_corpus_q8("models/qwen3/qwen3-f32.gguf"); }
Test(fused, olmo_layer_norm_no_params) { s_corpus_q8("models/olmo/olmo-f32.gguf"); }
Test(fused, olmo2_post_norms_only) { s_corpus_q8("models/olmo2/olmo2-f32.gguf"); }
Test(fused, stablelm) { s_corpus_q8("models/stablelm/stablelm-f32.gguf"); }
Test(fused, starcoder2) { s_corpus_q8("models/starcoder2/starcoder2-f32.gguf"); }
Test(fused, mistral3) { s_corpus_q8("models/mistral3/mistral3-f32.gguf"); }
Test(fused, gpt_oss_moe_sinks_falls_back) { s_corpus_q8("models/gpt-oss/gpt-oss-f32.gguf"); }
