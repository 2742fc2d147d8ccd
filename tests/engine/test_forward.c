/* Batched forward pass: a sequence's logits are bitwise identical alone or
 * batched with others, with its prompt in one chunk or many (F32 and F16 K/V
 * caches), and an HF copy gives the same logits as its GGUF twin. An F16
 * cache stays within the reference bound for F16 caches. Bad batches are
 * errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "engine/model/wg_model.h"
#include "wg_test.h"
#include "wg_test_gguf.h"

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

/* Logits of every position of `ids` evaluated in chunks of `chunk` tokens,
 * with a K/V cache of `kt`. */
static float *s_run_chunked_kv(const wg_model_t *m, const int32_t *ids, int n, int chunk, int threads,
                               wg_kv_type_t kt) {
    const int64_t V = wg_model_hparams(m)->n_vocab;
    wg_session_t *s = wg_session_new_typed(m, threads, 64, NULL, kt);
    cr_assert(s, "%s", wg_errmsg());
    float *out = malloc((size_t)(n * V) * sizeof(float));
    for (int i = 0; i < n; i += chunk) {
        int k = n - i < chunk ? n - i : chunk;
        cr_assert_eq(wg_session_eval(s, ids + i, k, true, out + i * V), WG_OK, "%s", wg_errmsg());
    }
    wg_session_free(&s);
    return out;
}

static float *s_run_chunked(const wg_model_t *m, const int32_t *ids, int n, int chunk, int threads) {
    return s_run_chunked_kv(m, ids, n, chunk, threads, WG_KV_F32);
}

static void s_batched_equals_alone_kv(const char *rel, wg_kv_type_t kt) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load(rel);
    const int32_t V = wg_model_hparams(m)->n_vocab;
    const int lens[3] = {5, 11, 17};
    int32_t ids[3][17];
    float *alone[3];
    for (int s = 0; s < 3; s++) {
        s_prompt(ids[s], lens[s], s, V);
        alone[s] = s_run_chunked_kv(m, ids[s], lens[s], lens[s], 1, kt);
    }
    /* All three prompts interleaved in one batch, 2 threads. */
    wg_kv_t *kv = wg_model_kv_new_typed(m, 1 << 22, 4, NULL, kt);
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
        float *ref = s_run_chunked_kv(m, full, lens[s] + 1, lens[s] + 1, 1, kt);
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

static void s_batched_equals_alone(const char *rel) { s_batched_equals_alone_kv(rel, WG_KV_F32); }

Test(forward, batched_equals_alone_f32) { s_batched_equals_alone("models/llama/llama-f32.gguf"); }
/* The same with an F16 cache: GQA, per-head q/k norms, sliding window, MLA
 * (one kv head, value rows shorter than key rows), a recurrent model (whose
 * state ignores the type). */
Test(forward, batched_equals_alone_f16_kv_llama) { s_batched_equals_alone_kv("models/llama/llama-f32.gguf", WG_KV_F16); }
Test(forward, batched_equals_alone_q8_0_kv_llama_q4_k) {
    s_batched_equals_alone_kv("models/llama/llama-Q4_K_M.gguf", WG_KV_Q8_0);
}
Test(forward, batched_equals_alone_f16_kv_qwen3) { s_batched_equals_alone_kv("models/qwen3/qwen3-f32.gguf", WG_KV_F16); }
Test(forward, batched_equals_alone_f16_kv_gemma2_swa) {
    s_batched_equals_alone_kv("models/gemma2/gemma2-Q8_0.gguf", WG_KV_F16);
}
Test(forward, batched_equals_alone_f16_kv_deepseek2_mla) {
    s_batched_equals_alone_kv("models/deepseek2/deepseek2-Q4_0.gguf", WG_KV_F16);
}
Test(forward, batched_equals_alone_f16_kv_stories) {
    s_batched_equals_alone_kv("trained/stories260K-f32.gguf", WG_KV_F16);
}
Test(forward, batched_equals_alone_f16_kv_mamba) { s_batched_equals_alone_kv("models/mamba/mamba-f32.gguf", WG_KV_F16); }
Test(forward, batched_equals_alone_q4_k_m) { s_batched_equals_alone("models/llama/llama-Q4_K_M.gguf"); }
Test(forward, batched_equals_alone_moe) { s_batched_equals_alone("models/llama-moe/llama-moe-Q8_0.gguf"); }
Test(forward, batched_equals_alone_qwen3) { s_batched_equals_alone("models/qwen3/qwen3-f32.gguf"); }
Test(forward, batched_equals_alone_gemma2_swa) { s_batched_equals_alone("models/gemma2/gemma2-Q8_0.gguf"); }
Test(forward, batched_equals_alone_deepseek2_mla) { s_batched_equals_alone("models/deepseek2/deepseek2-Q4_0.gguf"); }
/* Recurrent families: the scan/shift of each sequence runs in batch order over its own state. */
/* n_ff = 172 is not a multiple of the SIMD width: elementwise ops over a whole
 * batch must not give tail elements other arithmetic than the rest. */
Test(forward, batched_equals_alone_odd_ffn_width) { s_batched_equals_alone("trained/stories260K-f32.gguf"); }
/* every family of the corpus: batch invariance is per architecture */
Test(forward, batched_equals_alone_mistral3) { s_batched_equals_alone("models/mistral3/mistral3-f32.gguf"); }
Test(forward, batched_equals_alone_qwen2_q8_0) { s_batched_equals_alone("models/qwen2/qwen2-Q8_0.gguf"); }
Test(forward, batched_equals_alone_qwen3moe) { s_batched_equals_alone("models/qwen3moe/qwen3moe-f32.gguf"); }
Test(forward, batched_equals_alone_phi2) { s_batched_equals_alone("models/phi2/phi2-f32.gguf"); }
Test(forward, batched_equals_alone_phi3_q5_0) { s_batched_equals_alone("models/phi3/phi3-Q5_0.gguf"); }
Test(forward, batched_equals_alone_gemma) { s_batched_equals_alone("models/gemma/gemma-f32.gguf"); }
Test(forward, batched_equals_alone_gemma3) { s_batched_equals_alone("models/gemma3/gemma3-f32.gguf"); }
Test(forward, batched_equals_alone_olmo) { s_batched_equals_alone("models/olmo/olmo-f32.gguf"); }
Test(forward, batched_equals_alone_olmo2) { s_batched_equals_alone("models/olmo2/olmo2-f32.gguf"); }
Test(forward, batched_equals_alone_stablelm) { s_batched_equals_alone("models/stablelm/stablelm-f32.gguf"); }
Test(forward, batched_equals_alone_starcoder2) { s_batched_equals_alone("models/starcoder2/starcoder2-f32.gguf"); }
Test(forward, batched_equals_alone_falcon) { s_batched_equals_alone("models/falcon/falcon-f32.gguf"); }
Test(forward, batched_equals_alone_gpt_oss) { s_batched_equals_alone("models/gpt-oss/gpt-oss-f32.gguf"); }
Test(forward, batched_equals_alone_minimax_m2) { s_batched_equals_alone("models/minimax-m2/minimax-m2-f32.gguf"); }
Test(forward, batched_equals_alone_llama_iq4_xs) { s_batched_equals_alone("models/llama/llama-IQ4_XS.gguf"); }
Test(forward, batched_equals_alone_llama_bf16) { s_batched_equals_alone("models/llama/llama-BF16.gguf"); }
Test(forward, batched_equals_alone_mamba) { s_batched_equals_alone("models/mamba/mamba-f32.gguf"); }
Test(forward, batched_equals_alone_rwkv6) { s_batched_equals_alone("models/rwkv6/rwkv6-f32.gguf"); }
Test(forward, batched_equals_alone_rwkv7) { s_batched_equals_alone("models/rwkv7/rwkv7-f32.gguf"); }

static void s_chunked_equals_one_chunk_kv(const char *rel, wg_kv_type_t kt) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load(rel);
    const int32_t V = wg_model_hparams(m)->n_vocab;
    int32_t ids[20];
    s_prompt(ids, 20, 42, V);
    float *one = s_run_chunked_kv(m, ids, 20, 20, 2, kt);
    const int chunks[3] = {1, 3, 7};
    for (int c = 0; c < 3; c++) {
        float *ch = s_run_chunked_kv(m, ids, 20, chunks[c], 2, kt);
        for (int i = 0; i < 20; i++)
            cr_assert(memcmp(ch + (size_t)i * V, one + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                      "%s: chunks of %d differ at position %d", rel, chunks[c], i);
        free(ch);
    }
    free(one);
    wg_model_free(&m);
}

static void s_chunked_equals_one_chunk(const char *rel) { s_chunked_equals_one_chunk_kv(rel, WG_KV_F32); }

Test(forward, chunked_prefill_equals_one_chunk_f32) { s_chunked_equals_one_chunk("models/llama/llama-f32.gguf"); }
Test(forward, chunked_prefill_equals_one_chunk_f16_kv) {
    s_chunked_equals_one_chunk_kv("models/llama/llama-f32.gguf", WG_KV_F16);
}
Test(forward, chunked_prefill_equals_one_chunk_q8_0_kv) {
    s_chunked_equals_one_chunk_kv("models/llama/llama-f32.gguf", WG_KV_Q8_0);
}
/* A model whose head size is not a multiple of 32 cannot take a Q8_0 cache:
 * the cache is refused with the reason, not built wrong. */
Test(forward, q8_0_kv_refused_for_head_size_8) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load("trained/stories260K-f32.gguf");
    wg_kv_t *kv = wg_model_kv_new_typed(m, 1 << 20, 16, "cpu", WG_KV_Q8_0);
    cr_assert_null(kv);
    cr_assert(strstr(wg_errmsg(), "q8_0") && strstr(wg_errmsg(), "multiples of 32"), "message: %s", wg_errmsg());
    wg_model_free(&m);
}
Test(forward, chunked_prefill_equals_one_chunk_q4_0) { s_chunked_equals_one_chunk("models/llama/llama-Q4_0.gguf"); }
Test(forward, chunked_prefill_equals_one_chunk_qwen2_bf16) { s_chunked_equals_one_chunk("models/qwen2/qwen2-BF16.gguf"); }
Test(forward, chunked_prefill_equals_one_chunk_mamba) { s_chunked_equals_one_chunk("models/mamba/mamba-f32.gguf"); }
Test(forward, chunked_prefill_equals_one_chunk_rwkv6) { s_chunked_equals_one_chunk("models/rwkv6/rwkv6-f32.gguf"); }
Test(forward, chunked_prefill_equals_one_chunk_rwkv7) { s_chunked_equals_one_chunk("models/rwkv7/rwkv7-f32.gguf"); }

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
    /* An architecture with no table row (the mamba file renamed "mamba2"). */
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus("models/mamba/mamba-f32.gguf"), &g), WG_OK);
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    wg_test_gguf_copy(w, g, NULL);
    cr_assert_eq(wg_gguf_writer_set_str(w, "general.architecture", "mamba2"), WG_OK);
    snprintf(p, sizeof p, "/tmp/wg_unknown_arch_%d.gguf", (int)getpid());
    cr_assert_eq(wg_gguf_writer_write(w, p), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
    wg_gguf_close(&g);
    cr_assert_eq(wg_model_load(p, &m), WG_ERR_UNSUPPORTED);
    cr_assert(strstr(wg_errmsg(), "mamba2"), "message: %s", wg_errmsg());
    cr_assert_null(m);
    unlink(p);
    snprintf(p, sizeof p, "%s", wg_test_corpus("tokenizer/ggml-vocab-gpt-2.gguf"));
    cr_assert_neq(wg_model_load(p, &m), WG_OK);
    cr_assert_null(m);
}

/* llama3 rope scaling: an HF config with rope_scaling {llama3} and a GGUF with
 * the equivalent rope_freqs.weight give the same logits, and those differ from
 * the unscaled model (so the factors are really applied). */
#include <math.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"

Test(forward, llama3_rope_scaling_hf_config_equals_gguf_rope_freqs) {
    WG_REQUIRE_CORPUS();
    char src[4096];
    snprintf(src, sizeof src, "%s", wg_test_corpus("models/llama/llama-f32.gguf"));
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(src, &g), WG_OK);
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    wg_test_gguf_copy(w, g, NULL);
    /* Factors for factor 8, low 1, high 4, original context 8192 (n_rot 64, base 1e4). */
    float ff[32];
    int n_scaled = 0;
    for (int i = 0; i < 32; i++) {
        double wl = 2.0 * M_PI * pow(10000.0, 2.0 * i / 64.0);
        double r = wl < 8192.0 / 4 ? 1.0 : wl > 8192.0 ? 8.0
                 : 1.0 / ((1.0 - (8192.0 / wl - 1.0) / 3.0) / 8.0 + (8192.0 / wl - 1.0) / 3.0);
        ff[i] = (float)r;
        n_scaled += r != 1.0;
    }
    cr_assert(n_scaled > 4 && n_scaled < 32, "the test must mix scaled and unscaled dims");
    int64_t ne[1] = {32};
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "rope_freqs.weight", WG_TYPE_F32, 1, ne, ff), WG_OK);
    char dir[] = "/tmp/wg_llama3_XXXXXX";
    cr_assert(mkdtemp(dir));
    char gpath[4200], cpath[4200], spath[4200], target[4200];
    snprintf(gpath, sizeof gpath, "%s/m.gguf", dir);
    cr_assert_eq(wg_gguf_writer_write(w, gpath), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
    wg_gguf_close(&g);
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    FILE *f = fopen(cpath, "w");
    fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":320,\"hidden_size\":256,"
               "\"intermediate_size\":512,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
               "\"num_key_value_heads\":2,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,\"head_dim\":64,"
               "\"tie_word_embeddings\":false,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
               "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}");
    fclose(f);
    snprintf(spath, sizeof spath, "%s/model.safetensors", dir);
    snprintf(target, sizeof target, "%s", wg_test_corpus("hf/llama/model.safetensors"));
    cr_assert_eq(symlink(target, spath), 0);

    wg_model_t *a = s_load("models/llama/llama-f32.gguf"), *b = NULL, *c = NULL;
    cr_assert_eq(wg_model_load(gpath, &b), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_model_load(dir, &c), WG_OK, "%s", wg_errmsg());
    int32_t ids[12];
    s_prompt(ids, 12, 3, 320);
    float *la = s_run_chunked(a, ids, 12, 12, 1), *lb = s_run_chunked(b, ids, 12, 12, 1);
    float *lc = s_run_chunked(c, ids, 12, 12, 1);
    cr_assert(memcmp(lb, lc, 12 * 320 * sizeof(float)) == 0, "HF llama3 config vs GGUF rope_freqs differ");
    cr_assert(memcmp(la, lb, 12 * 320 * sizeof(float)) != 0, "rope factors had no effect");
    cr_assert(memcmp(la, lb, 320 * sizeof(float)) == 0, "position 0 must not depend on rope");
    free(la);
    free(lb);
    free(lc);
    wg_model_free(&a);
    wg_model_free(&b);
    wg_model_free(&c);
    unlink(spath);
    unlink(cpath);
    unlink(gpath);
    rmdir(dir);
}

/* Yi runs as llama: its HF config differs from the corpus llama only in
 * hyper-parameters (rope_theta 5e6, vocabulary, head counts). An HF directory
 * with Yi's rope_theta over the llama weights must equal the GGUF carrying
 * llama.rope.freq_base = 5e6, and differ from the base-1e4 model (so the value
 * is really read from config.json). */
Test(forward, hf_yi_config_equals_gguf_twin) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus("models/llama/llama-f32.gguf"), &g), WG_OK);
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    wg_test_gguf_copy(w, g, NULL);
    cr_assert_eq(wg_gguf_writer_set_f32(w, "llama.rope.freq_base", 5000000.0f), WG_OK);
    char dir[] = "/tmp/wg_yi_XXXXXX";
    cr_assert(mkdtemp(dir));
    char gpath[4200], cpath[4200], spath[4200], target[4200];
    snprintf(gpath, sizeof gpath, "%s/m.gguf", dir);
    cr_assert_eq(wg_gguf_writer_write(w, gpath), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
    wg_gguf_close(&g);
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    FILE *f = fopen(cpath, "w");
    fprintf(f, "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",\"vocab_size\":320,"
               "\"hidden_size\":256,\"intermediate_size\":512,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
               "\"num_key_value_heads\":2,\"rms_norm_eps\":1e-05,\"rope_theta\":5000000.0,"
               "\"max_position_embeddings\":4096,\"tie_word_embeddings\":false,\"bos_token_id\":1,"
               "\"eos_token_id\":2,\"hidden_act\":\"silu\"}");
    fclose(f);
    snprintf(spath, sizeof spath, "%s/model.safetensors", dir);
    snprintf(target, sizeof target, "%s", wg_test_corpus("hf/llama/model.safetensors"));
    cr_assert_eq(symlink(target, spath), 0);
    wg_model_t *a = s_load("models/llama/llama-f32.gguf"), *b = NULL, *c = NULL;
    cr_assert_eq(wg_model_load(gpath, &b), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_model_load(dir, &c), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_model_hparams(c)->rope_base, 5000000.0f);
    cr_assert_str_eq(wg_model_hparams(c)->arch, "llama");
    int32_t ids[12];
    s_prompt(ids, 12, 5, 320);
    float *la = s_run_chunked(a, ids, 12, 12, 1), *lb = s_run_chunked(b, ids, 12, 12, 1);
    float *lc = s_run_chunked(c, ids, 12, 12, 1);
    cr_assert(memcmp(lb, lc, 12 * 320 * sizeof(float)) == 0, "HF Yi-style config vs GGUF freq_base 5e6 differ");
    cr_assert(memcmp(la, lb, 12 * 320 * sizeof(float)) != 0, "rope base had no effect");
    free(la);
    free(lb);
    free(lc);
    wg_model_free(&a);
    wg_model_free(&b);
    wg_model_free(&c);
    unlink(spath);
    unlink(cpath);
    unlink(gpath);
    rmdir(dir);
}

/* An F16 cache against llama.cpp's F32-cache reference logits: the corpus
 * README (section 6) bounds an engine whose F32 K/V cache is replaced by F16
 * at 2e-2 max abs for the f32 classes (the F32 bound is 5e-4), and llama.cpp's
 * own F16-cache runs sit at 1.8e-3 ... 1e-2. The F16 cache must also move the
 * logits at all (or the test would not be testing it). */
static void s_kv_within_reference_bound(const char *model_rel, const char *ref_rel, wg_kv_type_t type, double bound) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load(model_rel);
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(ref_rel), &g), WG_OK, "%s: %s", ref_rel, wg_errmsg());
    const wg_gguf_tensor_t *tt = wg_gguf_find_tensor(g, "tokens"), *tl = wg_gguf_find_tensor(g, "logits");
    cr_assert(tt && tl);
    const int n = (int)tt->ne[0];
    const int64_t V = wg_model_hparams(m)->n_vocab;
    cr_assert_eq(tl->ne[0], V);
    float *l16 = s_run_chunked_kv(m, (const int32_t *)tt->data, n, n, 2, type);
    float *l32 = s_run_chunked_kv(m, (const int32_t *)tt->data, n, n, 2, WG_KV_F32);
    const float *ref = tl->data;
    double d16 = 0, d32 = 0;
    for (int64_t i = 0; i < (int64_t)n * V; i++) {
        d16 = fmax(d16, fabs((double)l16[i] - (double)ref[i]));
        d32 = fmax(d32, fabs((double)l32[i] - (double)ref[i]));
    }
    const char *tn = wg_kv_type_name(type);
    cr_log_info("%s: max abs vs reference, %s cache %.3g, F32 cache %.3g", model_rel, tn, d16, d32);
    cr_assert_leq(d16, bound, "%s: %s cache %.4g from the reference (bound %.3g)", model_rel, tn, d16, bound);
    cr_assert(memcmp(l16, l32, (size_t)((int64_t)n * V) * sizeof(float)) != 0, "%s: %s cache changed nothing",
              model_rel, tn);
    free(l16);
    free(l32);
    wg_gguf_close(&g);
    wg_model_free(&m);
}

static void s_f16_kv_within_reference_bound(const char *model_rel, const char *ref_rel) {
    s_kv_within_reference_bound(model_rel, ref_rel, WG_KV_F16, 2e-2);
}

Test(forward, f16_kv_within_reference_bound_llama) {
    s_f16_kv_within_reference_bound("models/llama/llama-f32.gguf", "refs/llama-f32.ref.gguf");
}
Test(forward, f16_kv_within_reference_bound_qwen3) {
    s_f16_kv_within_reference_bound("models/qwen3/qwen3-f32.gguf", "refs/qwen3-f32.ref.gguf");
}
Test(forward, f16_kv_within_reference_bound_deepseek2_mla) {
    s_f16_kv_within_reference_bound("models/deepseek2/deepseek2-f32.gguf", "refs/deepseek2-f32.ref.gguf");
}
/* Q8_0 K/V: the corpus README gives no bound for it; its elements carry
 * ~16x the F16 rounding (amax/254 per block of 32 against 2^-11 relative),
 * so the F16 bound times 4 (8e-2), which still separates it from a wrong
 * cache row (logits move by ~1 there). */
Test(forward, q8_0_kv_within_bound_llama) {
    s_kv_within_reference_bound("models/llama/llama-f32.gguf", "refs/llama-f32.ref.gguf", WG_KV_Q8_0, 8e-2);
}
