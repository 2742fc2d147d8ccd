/* Batched forward pass: a sequence's logits are bitwise identical alone or
 * batched with others, with its prompt in one chunk or many, and an HF copy
 * gives the same logits as its GGUF twin. Bad batches are errors. */
#include <stdlib.h>
#include <string.h>

#include "engine/model/wg_model.h"
#include "wg_test.h"

static wg_model_t *s_load(const char *rel) {
    wg_model_t *m = NULL;
    char p[4096];
    snprintf(p, sizeof p, "%s", wg_test_corpus(rel));
    cr_assert_eq(wg_model_load(p, &m), WG_OK, "%s: %s", rel, wg_errmsg());
    return m;
}

/* Deterministic pseudo-random prompt of n ids in [3, V). */
static void s_prompt(int32_t *ids, int n, int seed, int32_t V) {
    uint32_t x = 2654435761u * (uint32_t)(seed + 1);
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = 3 + (int32_t)((x >> 8) % (uint32_t)(V - 3));
    }
}

/* Logits of every position of `ids` evaluated in chunks of `chunk` tokens. */
static float *s_run_chunked(const wg_model_t *m, const int32_t *ids, int n, int chunk, int threads) {
    const int64_t V = wg_model_hparams(m)->n_vocab;
    wg_session_t *s = wg_session_new(m, threads, 64);
    cr_assert(s);
    float *out = malloc((size_t)(n * V) * sizeof(float));
    for (int i = 0; i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        cr_assert_eq(wg_session_eval(s, ids + i, k, true, out + i * V), WG_OK, "%s", wg_errmsg());
    }
    wg_session_free(&s);
    return out;
}

static void s_batched_equals_alone(const char *rel) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load(rel);
    const int32_t V = wg_model_hparams(m)->n_vocab;
    const int lens[3] = {5, 11, 17};
    int32_t ids[3][17];
    float *alone[3];
    for (int s = 0; s < 3; s++) {
        s_prompt(ids[s], lens[s], s, V);
        alone[s] = s_run_chunked(m, ids[s], lens[s], lens[s], 1);
    }
    /* All three prompts interleaved in one batch, 2 threads. */
    wg_kv_t *kv = wg_model_kv_new(m, 1 << 22, 4);
    cr_assert(kv);
    int32_t seq[3];
    for (int s = 0; s < 3; s++) cr_assert_eq(wg_kv_seq_new(kv, &seq[s]), WG_OK);
    wg_pool_t *pool = wg_pool_new(2);
    wg_batch_tok_t b[33];
    int n = 0, row_of[3][17];
    for (int i = 0; i < 17; i++)
        for (int s = 2; s >= 0; s--)
            if (i < lens[s]) {
                row_of[s][i] = n;
                b[n++] = (wg_batch_tok_t){.token = ids[s][i], .pos = i, .seq = seq[s], .want_logits = true};
            }
    cr_assert_eq(n, 33);
    float *lg = malloc((size_t)(n * V) * sizeof(float));
    cr_assert_eq(wg_model_forward(m, kv, pool, b, n, lg), WG_OK, "%s", wg_errmsg());
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(wg_kv_seq_len(kv, seq[s]), lens[s]);
        for (int i = 0; i < lens[s]; i++)
            cr_assert(memcmp(lg + (size_t)row_of[s][i] * V, alone[s] + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                      "%s: seq %d pos %d differs batched vs alone", rel, s, i);
    }
    /* One decode step for all three in one batch, only the logits rows wanted. */
    int32_t nxt[3];
    for (int s = 0; s < 3; s++) {
        nxt[s] = (ids[s][0] + 7) % V;
        b[s] = (wg_batch_tok_t){.token = nxt[s], .pos = lens[s], .seq = seq[s], .want_logits = true};
    }
    cr_assert_eq(wg_model_forward(m, kv, pool, b, 3, lg), WG_OK, "%s", wg_errmsg());
    for (int s = 0; s < 3; s++) {
        int32_t full[18];
        memcpy(full, ids[s], (size_t)lens[s] * sizeof(int32_t));
        full[lens[s]] = nxt[s];
        float *ref = s_run_chunked(m, full, lens[s] + 1, lens[s] + 1, 1);
        cr_assert(memcmp(lg + (size_t)s * V, ref + (size_t)lens[s] * V, (size_t)V * sizeof(float)) == 0,
                  "%s: decode step of seq %d differs", rel, s);
        free(ref);
        free(alone[s]);
    }
    /* Freeing the sequences returns every block. */
    for (int s = 0; s < 3; s++) wg_kv_seq_free(kv, seq[s]);
    cr_assert_eq(wg_kv_n_free_blocks(kv), wg_kv_n_blocks(kv));
    free(lg);
    wg_pool_destroy(&pool);
    wg_kv_free(&kv);
    wg_model_free(&m);
}

Test(forward, batched_equals_alone_f32) { s_batched_equals_alone("models/llama/llama-f32.gguf"); }
Test(forward, batched_equals_alone_q4_k_m) { s_batched_equals_alone("models/llama/llama-Q4_K_M.gguf"); }
Test(forward, batched_equals_alone_moe) { s_batched_equals_alone("models/llama-moe/llama-moe-Q8_0.gguf"); }
Test(forward, batched_equals_alone_qwen3) { s_batched_equals_alone("models/qwen3/qwen3-f32.gguf"); }
Test(forward, batched_equals_alone_gemma2_swa) { s_batched_equals_alone("models/gemma2/gemma2-Q8_0.gguf"); }

static void s_chunked_equals_one_chunk(const char *rel) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load(rel);
    const int32_t V = wg_model_hparams(m)->n_vocab;
    int32_t ids[20];
    s_prompt(ids, 20, 42, V);
    float *one = s_run_chunked(m, ids, 20, 20, 2);
    const int chunks[3] = {1, 3, 7};
    for (int c = 0; c < 3; c++) {
        float *ch = s_run_chunked(m, ids, 20, chunks[c], 2);
        for (int i = 0; i < 20; i++)
            cr_assert(memcmp(ch + (size_t)i * V, one + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                      "%s: chunks of %d differ at position %d", rel, chunks[c], i);
        free(ch);
    }
    free(one);
    wg_model_free(&m);
}

Test(forward, chunked_prefill_equals_one_chunk_f32) { s_chunked_equals_one_chunk("models/llama/llama-f32.gguf"); }
Test(forward, chunked_prefill_equals_one_chunk_q4_0) { s_chunked_equals_one_chunk("models/llama/llama-Q4_0.gguf"); }
Test(forward, chunked_prefill_equals_one_chunk_qwen2_bf16) { s_chunked_equals_one_chunk("models/qwen2/qwen2-BF16.gguf"); }

static void s_twins(const char *gguf, const char *hf) {
    WG_REQUIRE_CORPUS();
    wg_model_t *a = s_load(gguf), *b = s_load(hf);
    const int32_t V = wg_model_hparams(a)->n_vocab;
    cr_assert_eq(wg_model_hparams(b)->n_vocab, V);
    int32_t ids[12];
    s_prompt(ids, 12, 7, V);
    float *la = s_run_chunked(a, ids, 12, 12, 2), *lb = s_run_chunked(b, ids, 12, 12, 2);
    cr_assert(memcmp(la, lb, (size_t)(12 * V) * sizeof(float)) == 0, "%s vs %s: logits differ", gguf, hf);
    free(la);
    free(lb);
    wg_model_free(&a);
    wg_model_free(&b);
}

Test(forward, hf_llama_equals_gguf_twin) { s_twins("models/llama/llama-f32.gguf", "hf/llama"); }
Test(forward, hf_mixtral_equals_gguf_twin) { s_twins("models/llama-moe/llama-moe-f32.gguf", "hf/llama-moe"); }
Test(forward, hf_qwen2_f16_equals_gguf_twin) { s_twins("models/qwen2/qwen2-F16.gguf", "hf/qwen2-f16"); }
Test(forward, hf_stories_equals_gguf_twin) { s_twins("trained/stories260K-f32.gguf", "trained/stories260K-hf"); }

Test(forward, bad_batches_are_errors_and_leave_the_cache_unchanged) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load("models/qwen2/qwen2-f32.gguf");
    const int32_t V = wg_model_hparams(m)->n_vocab;
    wg_kv_t *kv = wg_model_kv_new(m, 1, 4); /* one block of 4 tokens */
    int32_t s;
    wg_kv_seq_new(kv, &s);
    float lg[320 * 8];
    wg_batch_tok_t b[5];
    for (int i = 0; i < 5; i++) b[i] = (wg_batch_tok_t){.token = 5 + i, .pos = i, .seq = s, .want_logits = true};
    b[2].token = V;
    cr_assert_eq(wg_model_forward(m, kv, NULL, b, 3, lg), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "out of range"));
    b[2].token = 7;
    b[1].pos = 5;
    cr_assert_eq(wg_model_forward(m, kv, NULL, b, 3, lg), WG_ERR_INVAL, "position gap");
    b[1].pos = 1;
    b[0].seq = 99;
    cr_assert_eq(wg_model_forward(m, kv, NULL, b, 3, lg), WG_ERR_INVAL, "unknown sequence");
    b[0].seq = s;
    cr_assert_eq(wg_model_forward(m, kv, NULL, b, 5, lg), WG_ERR_FULL, "5 tokens in a 4-token cache");
    cr_assert_eq(wg_kv_seq_len(kv, s), 0);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 1);
    cr_assert_eq(wg_model_forward(m, kv, NULL, b, 4, lg), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_kv_seq_len(kv, s), 4);
    wg_kv_free(&kv);
    wg_model_free(&m);
}

Test(forward, load_errors_name_the_problem) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load("/nonexistent/model.gguf", &m), WG_ERR_IO);
    cr_assert_null(m);
    char p[4096];
    snprintf(p, sizeof p, "%s", wg_test_corpus("models/mamba/mamba-f32.gguf"));
    cr_assert_eq(wg_model_load(p, &m), WG_ERR_UNSUPPORTED);
    cr_assert(strstr(wg_errmsg(), "mamba"), "message: %s", wg_errmsg());
    snprintf(p, sizeof p, "%s", wg_test_corpus("tokenizer/ggml-vocab-gpt-2.gguf"));
    cr_assert_neq(wg_model_load(p, &m), WG_OK);
    cr_assert_null(m);
}
