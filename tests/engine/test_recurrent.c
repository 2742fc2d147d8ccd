/* Recurrent models (mamba, rwkv6, rwkv7) and their state cache: one zeroed
 * state block per sequence whatever its length, freed and reused exactly like
 * K/V blocks; a sequence freed mid-way (what the scheduler's preemption does)
 * and recomputed from scratch in a reused block gives bitwise the same logits;
 * wrong cache kinds, rewinds and bad files are errors naming the problem. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "engine/model/wg_model.h"
#include "wg_test.h"
#include "wg_test_gguf.h"

static wg_model_t *s_load(const char *rel) {
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus(rel), &m), WG_OK, "%s: %s", rel, wg_errmsg());
    return m;
}

Test(recurrent_kv, one_zeroed_block_per_sequence_any_length) {
    wg_kv_t *kv = wg_kv_new_recurrent(100, 3 * 100 * sizeof(float));
    cr_assert(kv, "%s", wg_errmsg());
    cr_assert(wg_kv_is_recurrent(kv));
    cr_assert_eq(wg_kv_state_floats(kv), 100);
    cr_assert_eq(wg_kv_n_blocks(kv), 3);
    cr_assert_eq(wg_kv_block_bytes(kv), 100 * sizeof(float));
    int32_t a, b, c, d;
    cr_assert_eq(wg_kv_seq_new(kv, &a), WG_OK);
    cr_assert_eq(wg_kv_blocks_needed(kv, a, 0), 0);
    cr_assert_eq(wg_kv_blocks_needed(kv, a, 1), 1);
    cr_assert_eq(wg_kv_blocks_needed(kv, a, 100000), 1, "the state does not grow with the length");
    cr_assert_eq(wg_kv_reserve(kv, a, 5), WG_OK);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 2);
    cr_assert_eq(wg_kv_blocks_needed(kv, a, 500000), 0);
    cr_assert_eq(wg_kv_reserve(kv, a, 500000), WG_OK);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 2);
    cr_assert_eq(wg_kv_seq_set_len(kv, a, 500000), WG_OK);
    float *sa = wg_kv_state(kv, a);
    for (int i = 0; i < 100; i++) cr_assert_eq(sa[i], 0.0f);
    for (int i = 0; i < 100; i++) sa[i] = 1.0f + (float)i;
    /* A state cannot be rewound, only dropped. */
    cr_assert_eq(wg_kv_truncate(kv, a, 3), WG_ERR_UNSUPPORTED);
    cr_assert(strstr(wg_errmsg(), "rewound"), "%s", wg_errmsg());
    cr_assert_eq(wg_kv_seq_len(kv, a), 500000);
    cr_assert_eq(wg_kv_truncate(kv, a, 0), WG_OK);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 3);
    /* The dirty block comes back zeroed to the next sequence. */
    cr_assert_eq(wg_kv_reserve(kv, a, 1), WG_OK);
    sa = wg_kv_state(kv, a);
    for (int i = 0; i < 100; i++) cr_assert_eq(sa[i], 0.0f, "state[%d] = %g after reuse", i, (double)sa[i]);
    cr_assert_eq(wg_kv_seq_new(kv, &b), WG_OK);
    cr_assert_eq(wg_kv_seq_new(kv, &c), WG_OK);
    cr_assert_eq(wg_kv_seq_new(kv, &d), WG_OK);
    cr_assert_eq(wg_kv_reserve(kv, b, 1), WG_OK);
    cr_assert_eq(wg_kv_reserve(kv, c, 7), WG_OK);
    cr_assert_neq(wg_kv_state(kv, b), wg_kv_state(kv, c));
    cr_assert_eq(wg_kv_n_free_blocks(kv), 0);
    cr_assert_eq(wg_kv_reserve(kv, d, 1), WG_ERR_FULL, "no fourth state");
    cr_assert_eq(wg_kv_seq_len(kv, d), 0);
    wg_kv_seq_free(kv, c);
    wg_kv_seq_free(kv, b);
    wg_kv_seq_free(kv, a);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 3);
    cr_assert_eq(wg_kv_reserve(kv, d, 2), WG_OK);
    wg_kv_free(&kv);
    cr_assert_null(kv);
    cr_assert_null(wg_kv_new_recurrent(0, 1024));
}

Test(recurrent_kv, model_cache_is_sized_by_state_bytes) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load("models/mamba/mamba-f32.gguf");
    const wg_hparams_t *hp = wg_model_hparams(m);
    cr_assert(hp->recurrent);
    cr_assert_eq(hp->ssm_d_inner, 128);
    cr_assert_eq(hp->ssm_d_state, 16);
    cr_assert_eq(hp->ssm_d_conv, 4);
    cr_assert_eq(hp->ssm_dt_rank, 4);
    /* 2 layers x 128 channels x (3 conv taps + 16 scan states). */
    cr_assert_eq(wg_model_state_bytes(m), 2 * 128 * (3 + 16) * sizeof(float));
    wg_kv_t *kv = wg_model_kv_new(m, 5 * wg_model_state_bytes(m), 16);
    cr_assert(kv);
    cr_assert(wg_kv_is_recurrent(kv));
    cr_assert_eq(wg_kv_n_blocks(kv), 5);
    wg_kv_free(&kv);
    wg_model_free(&m);
    m = s_load("models/rwkv7/rwkv7-f32.gguf");
    /* 2 layers x (2 shifts of 128 + 2 heads x 64 x 64). */
    cr_assert_eq(wg_model_state_bytes(m), 2 * (2 * 128 + 2 * 64 * 64) * sizeof(float));
    wg_model_free(&m);
    m = s_load("models/llama/llama-f32.gguf");
    cr_assert_eq(wg_model_state_bytes(m), 0);
    wg_model_free(&m);
}

/* Deterministic prompt of n ids in [1, V). */
static void s_prompt(int32_t *ids, int n, int seed, int32_t V) {
    uint32_t x = 2246822519u * (uint32_t)(seed + 3);
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        ids[i] = 1 + (int32_t)((x >> 8) % (uint32_t)(V - 1));
    }
}

/* What a preemption does to a recurrent sequence: its state is freed while
 * another sequence keeps running, the block is reused (dirty) by someone
 * else, then the sequence is recomputed from position 0 in a fresh block. Its
 * logits must equal the uninterrupted run bitwise. */
static void s_free_and_recompute(const char *rel) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load(rel);
    const int32_t V = wg_model_hparams(m)->n_vocab;
    enum { N = 13 };
    int32_t a[N], b[N];
    s_prompt(a, N, 1, V);
    s_prompt(b, N, 2, V);
    wg_kv_t *kv = wg_model_kv_new(m, 2 * wg_model_state_bytes(m), 0);
    cr_assert(kv);
    cr_assert_eq(wg_kv_n_blocks(kv), 2);
    wg_pool_t *pool = wg_pool_new(2);
    float *ref = malloc((size_t)N * V * sizeof(float)), *got = malloc((size_t)N * V * sizeof(float));
    wg_batch_tok_t bt[N];
    int32_t sa, sb;
    /* Reference: a alone, uninterrupted. */
    cr_assert_eq(wg_kv_seq_new(kv, &sa), WG_OK);
    for (int i = 0; i < N; i++) bt[i] = (wg_batch_tok_t){.token = a[i], .pos = i, .seq = sa, .want_logits = true};
    cr_assert_eq(wg_model_forward(m, kv, pool, bt, N, ref), WG_OK, "%s", wg_errmsg());
    wg_kv_seq_free(kv, sa);
    /* a runs 6 tokens beside b, is "preempted" (freed), b takes both states in turn. */
    cr_assert_eq(wg_kv_seq_new(kv, &sa), WG_OK);
    cr_assert_eq(wg_kv_seq_new(kv, &sb), WG_OK);
    for (int i = 0; i < 6; i++) {
        bt[2 * i] = (wg_batch_tok_t){.token = a[i], .pos = i, .seq = sa, .want_logits = false};
        bt[2 * i + 1] = (wg_batch_tok_t){.token = b[i], .pos = i, .seq = sb, .want_logits = false};
    }
    cr_assert_eq(wg_model_forward(m, kv, pool, bt, 12, NULL), WG_OK, "%s", wg_errmsg());
    wg_kv_seq_free(kv, sa);
    int32_t sc;
    cr_assert_eq(wg_kv_seq_new(kv, &sc), WG_OK);
    for (int i = 0; i < 4; i++) bt[i] = (wg_batch_tok_t){.token = b[i], .pos = i, .seq = sc, .want_logits = false};
    cr_assert_eq(wg_model_forward(m, kv, pool, bt, 4, NULL), WG_OK); /* dirties a's old block */
    wg_kv_seq_free(kv, sc);
    /* Re-admitted: recompute a from scratch in chunks of 5, beside b's decode steps. */
    cr_assert_eq(wg_kv_seq_new(kv, &sa), WG_OK);
    for (int i = 0, bpos = 6; i < N; bpos++) {
        int c = N - i < 5 ? N - i : 5, nb = 0;
        for (int j = 0; j < c; j++)
            bt[nb++] = (wg_batch_tok_t){.token = a[i + j], .pos = i + j, .seq = sa, .want_logits = true};
        if (bpos < N) bt[nb++] = (wg_batch_tok_t){.token = b[bpos], .pos = bpos, .seq = sb, .want_logits = false};
        cr_assert_eq(wg_model_forward(m, kv, pool, bt, nb, got + (size_t)i * V), WG_OK, "%s", wg_errmsg());
        i += c;
    }
    for (int i = 0; i < N; i++)
        cr_assert(memcmp(got + (size_t)i * V, ref + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                  "%s: position %d differs after free + recompute", rel, i);
    wg_kv_seq_free(kv, sa);
    wg_kv_seq_free(kv, sb);
    cr_assert_eq(wg_kv_n_free_blocks(kv), 2);
    free(ref);
    free(got);
    wg_pool_destroy(&pool);
    wg_kv_free(&kv);
    wg_model_free(&m);
}

Test(recurrent, free_and_recompute_equals_uninterrupted_mamba) { s_free_and_recompute("models/mamba/mamba-f32.gguf"); }
Test(recurrent, free_and_recompute_equals_uninterrupted_rwkv6) { s_free_and_recompute("models/rwkv6/rwkv6-f32.gguf"); }
Test(recurrent, free_and_recompute_equals_uninterrupted_rwkv7) { s_free_and_recompute("models/rwkv7/rwkv7-f32.gguf"); }

/* The state really carries the past: the same last token after different
 * histories gives different logits (a model that ignored its state would pass
 * every invariance test). */
Test(recurrent, state_carries_history) {
    WG_REQUIRE_CORPUS();
    const char *rels[3] = {"models/mamba/mamba-f32.gguf", "models/rwkv6/rwkv6-f32.gguf", "models/rwkv7/rwkv7-f32.gguf"};
    for (int r = 0; r < 3; r++) {
        wg_model_t *m = s_load(rels[r]);
        const int32_t V = wg_model_hparams(m)->n_vocab;
        int32_t h1[4] = {5, 6, 7, 9}, h2[4] = {50, 60, 70, 9};
        float *l1 = malloc((size_t)V * sizeof(float)), *l2 = malloc((size_t)V * sizeof(float));
        wg_session_t *s = wg_session_new(m, 1, 16);
        cr_assert(s);
        cr_assert_eq(wg_session_eval(s, h1, 4, false, l1), WG_OK);
        cr_assert_eq(wg_session_truncate(s, 0), WG_OK);
        cr_assert_eq(wg_session_eval(s, h2, 4, false, l2), WG_OK);
        cr_assert(memcmp(l1, l2, (size_t)V * sizeof(float)) != 0, "%s: history had no effect", rels[r]);
        /* Rewinding a recurrent session to the middle is refused, not silently wrong. */
        cr_assert_eq(wg_session_truncate(s, 2), WG_ERR_UNSUPPORTED);
        wg_session_free(&s);
        free(l1);
        free(l2);
        wg_model_free(&m);
    }
}

Test(recurrent, wrong_cache_kind_is_an_error) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = s_load("models/rwkv6/rwkv6-f32.gguf"), *l = s_load("models/llama/llama-f32.gguf");
    wg_kv_t *kv_l = wg_model_kv_new(l, 1 << 20, 16), *kv_m = wg_model_kv_new(m, 1 << 20, 16);
    int32_t s1, s2;
    cr_assert_eq(wg_kv_seq_new(kv_l, &s1), WG_OK);
    cr_assert_eq(wg_kv_seq_new(kv_m, &s2), WG_OK);
    wg_batch_tok_t b = {.token = 3, .pos = 0, .seq = s1, .want_logits = false};
    cr_assert_eq(wg_model_forward(m, kv_l, NULL, &b, 1, NULL), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "rwkv6"), "%s", wg_errmsg());
    b.seq = s2;
    cr_assert_eq(wg_model_forward(l, kv_m, NULL, &b, 1, NULL), WG_ERR_INVAL);
    cr_assert_eq(wg_kv_seq_len(kv_l, s1), 0);
    cr_assert_eq(wg_kv_seq_len(kv_m, s2), 0);
    wg_kv_free(&kv_l);
    wg_kv_free(&kv_m);
    wg_model_free(&m);
    wg_model_free(&l);
}

/* Copy of a corpus model without one metadata key. */
static void s_write_without(const char *rel, const char *drop, const char *out) {
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK);
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    wg_test_gguf_copy(w, g, drop);
    cr_assert_eq(wg_gguf_writer_write(w, out), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
    wg_gguf_close(&g);
}

Test(recurrent, missing_state_keys_name_the_key) {
    WG_REQUIRE_CORPUS();
    const struct {
        const char *rel, *key;
    } cases[] = {
        {"models/mamba/mamba-f32.gguf", "mamba.ssm.state_size"},
        {"models/rwkv6/rwkv6-f32.gguf", "rwkv6.wkv.head_size"},
        {"models/rwkv7/rwkv7-f32.gguf", "rwkv7.attention.iclr_lora_rank"},
    };
    char p[256];
    snprintf(p, sizeof p, "/tmp/wg_rnn_missing_%d.gguf", (int)getpid());
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s_write_without(cases[i].rel, cases[i].key, p);
        wg_model_t *m = NULL;
        cr_assert_eq(wg_model_load(p, &m), WG_ERR_NOTFOUND, "%s without %s", cases[i].rel, cases[i].key);
        cr_assert_null(m);
        cr_assert(strstr(wg_errmsg(), cases[i].key), "message: %s", wg_errmsg());
    }
    unlink(p);
}
