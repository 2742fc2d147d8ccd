/* Scheduler tests: batch invariance (alone vs crowded vs chunked prefill) on
 * several architectures and quant types, agreement with the single-sequence
 * session path, preemption under a tiny KV budget, cancellation, stop
 * strings across token boundaries, 200 mixed sequences, fairness, the prefix
 * cache, JSON mode. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/model/wg_model.h"
#include "engine/sampler/wg_json.h"
#include "engine/sched/wg_sched.h"
#include "engine/tokenizer/wg_tok.h"
#include "wg_test.h"
#include "wg_test_gguf.h"

typedef struct {
    int32_t prompt[256];    /* prompt ids */
    size_t n_prompt;        /* prompt length */
    wg_sampling_params_t sp;/* sampling */
    int32_t max_tokens;     /* limit */
    bool ignore_eos;        /* keep going past EOS */
    const char *stop[2];    /* stop strings */
    size_t n_stop;          /* count */
    int32_t priority;       /* admission priority */
    bool json;              /* JSON mode */
    wg_logit_bias_t bias[8];/* logit bias entries (sp.logit_bias points here when set) */
} job_t;

typedef struct {
    int32_t toks[512];      /* generated ids */
    int32_t n;              /* count */
    char text[8192];        /* concatenated text deltas */
    size_t n_text;          /* bytes */
    wg_finish_t finish;     /* finish reason */
    int64_t first_step;     /* step of the first token */
    float lp[512];          /* logprob of each token */
} res_t;

static wg_model_t *g_m;
static wg_tok_t *g_tok;

static void load(const char *rel) {
    WG_REQUIRE_CORPUS();
    cr_assert_eq(wg_model_load(wg_test_corpus(rel), &g_m), WG_OK, "load %s: %s", rel, wg_errmsg());
    wg_status st = wg_tok_from_gguf(wg_model_gguf(g_m), &g_tok);
    cr_assert_eq(st, WG_OK, "tokenizer of %s: %s", rel, wg_errmsg());
}

static void unload(void) {
    wg_tok_free(&g_tok);
    wg_model_free(&g_m);
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static void job_random(job_t *j, size_t n_prompt, int32_t max_tokens, int kind) {
    memset(j, 0, sizeof *j);
    const int32_t V = wg_model_hparams(g_m)->n_vocab;
    j->n_prompt = n_prompt;
    j->prompt[0] = wg_tok_bos(g_tok) >= 0 ? wg_tok_bos(g_tok) : 1;
    for (size_t i = 1; i < n_prompt; i++) j->prompt[i] = (int32_t)(3 + rnd() % (uint32_t)(V - 3));
    j->sp = wg_sampling_defaults();
    j->max_tokens = max_tokens;
    j->ignore_eos = true;
    switch (kind % 4) {
    case 0: j->sp.temperature = 0; break;
    case 1: j->sp.temperature = 0.8f; j->sp.top_p = 0.9f; j->sp.seed = 42 + (uint64_t)kind; j->sp.has_seed = true; break;
    case 2: j->sp.temperature = 1.1f; j->sp.top_k = 20; j->sp.min_p = 0.02f; j->sp.seed = 7 * (uint64_t)kind + 1;
        j->sp.has_seed = true; j->sp.presence_penalty = 0.5f; break;
    default: j->sp.temperature = 0.7f; j->sp.frequency_penalty = 0.3f; j->sp.repeat_penalty = 1.1f;
        j->sp.repeat_last_n = 16; j->sp.seed = 1000 + (uint64_t)kind; j->sp.has_seed = true; j->sp.logprobs = true; break;
    }
}

static wg_sched_req_t to_req(const job_t *j, void *user) {
    wg_sched_req_t r = {0};
    r.prompt = j->prompt;
    r.n_prompt = j->n_prompt;
    r.sampling = j->sp;
    r.stop = j->stop;
    r.n_stop = j->n_stop;
    r.max_tokens = j->max_tokens;
    r.ignore_eos = j->ignore_eos;
    r.priority = j->priority;
    r.json = j->json;
    if (r.sampling.n_logit_bias) r.sampling.logit_bias = j->bias;
    r.user = user;
    return r;
}

static void collect(const wg_sched_event_t *ev, size_t n, res_t *res, int64_t step) {
    for (size_t i = 0; i < n; i++) {
        res_t *r = &res[(intptr_t)ev[i].user];
        if (ev[i].token >= 0) {
            cr_assert_lt(r->n, 512);
            if (r->n == 0) r->first_step = step;
            r->lp[r->n] = ev[i].sample.logprob;
            r->toks[r->n++] = ev[i].token;
        }
        cr_assert_lt(r->n_text + ev[i].text_len, sizeof r->text);
        memcpy(r->text + r->n_text, ev[i].text, ev[i].text_len);
        r->n_text += ev[i].text_len;
        r->text[r->n_text] = '\0';
        if (ev[i].finish) {
            cr_assert_eq(r->finish, WG_FINISH_NONE, "two finish events for one sequence");
            r->finish = ev[i].finish;
        }
    }
}

/* Run jobs[0..n) together (all submitted up front) until every one finished. */
static void run_jobs(const job_t *jobs, size_t n, const wg_sched_cfg_t *cfg, res_t *res, wg_sched_stats_t *stats) {
    wg_sched_t *s = wg_sched_new(g_m, g_tok, cfg);
    cr_assert_not_null(s, "sched: %s", wg_errmsg());
    memset(res, 0, n * sizeof *res);
    for (size_t i = 0; i < n; i++) {
        wg_sched_req_t r = to_req(&jobs[i], (void *)(intptr_t)i);
        wg_seq_handle_t h;
        cr_assert_eq(wg_sched_submit(s, &r, &h), WG_OK, "submit %zu: %s", i, wg_errmsg());
    }
    const int32_t free0 = wg_kv_n_free_blocks(wg_sched_kv(s));
    int64_t step = 0;
    while (wg_sched_busy(s)) {
        const wg_sched_event_t *ev;
        size_t ne;
        cr_assert_eq(wg_sched_step(s, &ev, &ne), WG_OK, "step: %s", wg_errmsg());
        collect(ev, ne, res, step++);
        cr_assert_lt(step, 100000, "scheduler does not finish");
    }
    for (size_t i = 0; i < n; i++) cr_assert_neq(res[i].finish, WG_FINISH_NONE, "job %zu never finished", i);
    cr_assert_eq(wg_kv_n_free_blocks(wg_sched_kv(s)), free0, "blocks leaked");
    if (stats) wg_sched_stats(s, stats);
    wg_sched_free(&s);
}

static void assert_same(const res_t *a, const res_t *b, const char *what) {
    cr_assert_eq(a->n, b->n, "%s: %d vs %d tokens", what, a->n, b->n);
    for (int32_t i = 0; i < a->n; i++)
        cr_assert_eq(a->toks[i], b->toks[i], "%s: token %d differs (%d vs %d)", what, i, a->toks[i], b->toks[i]);
    cr_assert_str_eq(a->text, b->text, "%s: text differs", what);
    cr_assert_eq(a->finish, b->finish, "%s: finish differs", what);
}

/* Target alone vs among 63 others of varied lengths vs chunked prefill 1/5/64,
 * with a K/V cache of `kt`. */
static void check_invariance_kv(const char *rel, wg_kv_type_t kt) {
    load(rel);
    static job_t jobs[64];
    static res_t res[64];
    static res_t alone[2];
    g_rng = 0x1234567ull;
    for (int kind = 0; kind < 2; kind++) {
        job_t target;
        job_random(&target, 37, 24, kind);
        wg_sched_cfg_t cfg = wg_sched_defaults();
        cfg.kv_type = kt;
        run_jobs(&target, 1, &cfg, &alone[kind], NULL);
        cr_assert_eq(alone[kind].n, 24);
        /* Crowded: 63 others with prompts 1..120 and 1..40 new tokens, target in the middle. */
        for (int i = 0; i < 64; i++) {
            if (i == 21) jobs[i] = target;
            else job_random(&jobs[i], 1 + rnd() % 120, (int32_t)(1 + rnd() % 40), (int)(rnd() % 8));
        }
        cfg.max_batch_tokens = 256;
        cfg.prefill_chunk = 48;
        run_jobs(jobs, 64, &cfg, res, NULL);
        assert_same(&alone[kind], &res[21], "crowded");
        /* Chunked prefill of any size. */
        const int32_t chunks[] = {1, 5, 64};
        for (int c = 0; c < 3; c++) {
            cfg = wg_sched_defaults();
            cfg.kv_type = kt;
            cfg.prefill_chunk = chunks[c];
            res_t one;
            run_jobs(&target, 1, &cfg, &one, NULL);
            assert_same(&alone[kind], &one, "chunked");
        }
    }
    unload();
}

static void check_invariance(const char *rel) { check_invariance_kv(rel, WG_KV_F32); }

Test(sched, invariance_llama_f32) { check_invariance("models/llama/llama-f32.gguf"); }
Test(sched, invariance_llama_f32_f16_kv) { check_invariance_kv("models/llama/llama-f32.gguf", WG_KV_F16); }
Test(sched, invariance_llama_q4_k_q8_0_kv) { check_invariance_kv("models/llama/llama-Q4_K_M.gguf", WG_KV_Q8_0); }
Test(sched, invariance_qwen2_q8_0_f16_kv) { check_invariance_kv("models/qwen2/qwen2-Q8_0.gguf", WG_KV_F16); }
Test(sched, invariance_llama_q4_k_m) { check_invariance("models/llama/llama-Q4_K_M.gguf"); }
Test(sched, invariance_qwen2_q8_0) { check_invariance("models/qwen2/qwen2-Q8_0.gguf"); }
Test(sched, invariance_qwen3_f32) { check_invariance("models/qwen3/qwen3-f32.gguf"); }
Test(sched, invariance_llama_moe_q4_k_m) { check_invariance("models/llama-moe/llama-moe-Q4_K_M.gguf"); }
Test(sched, invariance_stories260k) { check_invariance("trained/stories260K-f32.gguf"); }

/* The scheduler's greedy tokens equal a plain single-sequence session's
 * argmax, both with a K/V cache of `kt`. */
static void check_greedy_matches_session(wg_kv_type_t kt) {
    load("trained/stories260K-f32.gguf");
    int32_t *ids = NULL;
    size_t n = 0;
    const char *p = "Once upon a time";
    cr_assert_eq(wg_tok_encode(g_tok, p, strlen(p), true, false, &ids, &n), WG_OK);
    job_t j;
    job_random(&j, 1, 40, 0);
    memcpy(j.prompt, ids, n * sizeof *ids);
    j.n_prompt = n;
    res_t r;
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.kv_type = kt;
    run_jobs(&j, 1, &cfg, &r, NULL);
    wg_session_t *se = wg_session_new_typed(g_m, 1, 256, NULL, kt);
    cr_assert_not_null(se);
    const int32_t V = wg_model_hparams(g_m)->n_vocab;
    float *lg = malloc((size_t)V * sizeof *lg);
    cr_assert_eq(wg_session_eval(se, ids, (int64_t)n, false, lg), WG_OK);
    for (int32_t i = 0; i < r.n; i++) {
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        cr_assert_eq(r.toks[i], best, "token %d: sched %d, session argmax %d", i, r.toks[i], best);
        cr_assert_eq(wg_session_eval(se, &best, 1, false, lg), WG_OK);
    }
    char *text = NULL;
    cr_assert_eq(wg_tok_decode(g_tok, r.toks, (size_t)r.n, false, &text), WG_OK);
    /* The streamed deltas concatenate to the decoded text (modulo SPM's leading-space rule). */
    const char *t = text, *u = r.text;
    if (*u == ' ' && *t != ' ') u++;
    cr_assert_str_eq(u, t);
    cr_assert_gt(strlen(text), 20);
    free(text);
    free(lg);
    free(ids);
    wg_session_free(&se);
    unload();
}

Test(sched, greedy_matches_session) { check_greedy_matches_session(WG_KV_F32); }
Test(sched, greedy_matches_session_f16_kv) { check_greedy_matches_session(WG_KV_F16); }
/* A cache of a few blocks forces preemption; every output stays identical. */
/* A cache of n_blocks blocks of 8 tokens (F32), steps of 64 tokens, prefill
 * chunks of 16: small enough to force preemption with a dozen sequences. */
static wg_sched_cfg_t tiny_cache_cfg(int32_t n_blocks) {
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.block_tokens = 8;
    cfg.kv_budget_bytes = (size_t)n_blocks * 8 * wg_model_kv_token_bytes(g_m, WG_KV_F32);
    cfg.max_batch_tokens = 64;
    cfg.prefill_chunk = 16;
    return cfg;
}

Test(sched, preemption_tiny_kv_outputs_identical) {
    load("models/llama/llama-f32.gguf");
    enum { N = 16 };
    static job_t jobs[N];
    static res_t ref[N], got[N];
    g_rng = 99;
    for (int i = 0; i < N; i++) job_random(&jobs[i], 8 + rnd() % 40, (int32_t)(20 + rnd() % 30), i);
    for (int i = 0; i < N; i++) run_jobs(&jobs[i], 1, NULL, &ref[i], NULL);
    wg_sched_cfg_t cfg = tiny_cache_cfg(16); /* 128 tokens for ~16 x 60 tokens */
    wg_sched_stats_t stats;
    run_jobs(jobs, N, &cfg, got, &stats);
    cr_assert_eq(stats.kv_blocks, 16);
    cr_assert_gt(stats.n_preemptions, 0, "the tiny cache should force preemption");
    for (int i = 0; i < N; i++) assert_same(&ref[i], &got[i], "preempted");
    cr_assert_eq(stats.kv_free_blocks, stats.kv_blocks);
    unload();
}

/* A sequence too long for the whole cache ends with "length", the others are unaffected. */
Test(sched, sequence_longer_than_cache_finishes_length) {
    load("models/llama/llama-f32.gguf");
    job_t j[2];
    g_rng = 5;
    job_random(&j[0], 10, 500, 0);
    job_random(&j[1], 10, 5, 0);
    wg_sched_cfg_t cfg = wg_sched_defaults();
    const wg_hparams_t *hp = wg_model_hparams(g_m);
    cfg.block_tokens = 8;
    cfg.kv_budget_bytes = 8 * 8 * (size_t)hp->n_layer * (size_t)hp->n_head_kv * (size_t)(hp->head_dim + hp->head_dim_v) * 4;
    res_t r[2], ref1;
    run_jobs(j, 2, &cfg, r, NULL);
    cr_assert_eq(r[0].finish, WG_FINISH_LENGTH);
    cr_assert_eq(r[0].n, 64 - 10, "generated %d", r[0].n);
    run_jobs(&j[1], 1, NULL, &ref1, NULL);
    assert_same(&ref1, &r[1], "neighbour");
    /* A prompt that can never fit is refused at submit. */
    wg_sched_t *s = wg_sched_new(g_m, g_tok, &cfg);
    job_t big;
    job_random(&big, 64, 1, 0);
    wg_sched_req_t rq = to_req(&big, NULL);
    wg_seq_handle_t h;
    cr_assert_eq(wg_sched_submit(s, &rq, &h), WG_ERR_RANGE);
    wg_sched_free(&s);
    unload();
}

Test(sched, cancel_mid_decode_frees_every_block) {
    load("trained/stories260K-f32.gguf");
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_seqs = 8;
    wg_sched_t *s = wg_sched_new(g_m, g_tok, &cfg);
    cr_assert_not_null(s);
    const int32_t free0 = wg_kv_n_free_blocks(wg_sched_kv(s));
    cr_assert_eq(free0, wg_kv_n_blocks(wg_sched_kv(s)));
    job_t j[12];
    wg_seq_handle_t h[12];
    static res_t r[12];
    memset(r, 0, sizeof r);
    g_rng = 77;
    for (int i = 0; i < 12; i++) {
        job_random(&j[i], 5 + rnd() % 50, 200, i);
        wg_sched_req_t rq = to_req(&j[i], (void *)(intptr_t)i);
        cr_assert_eq(wg_sched_submit(s, &rq, &h[i]), WG_OK);
    }
    for (int st = 0; st < 6; st++) {
        const wg_sched_event_t *ev;
        size_t ne;
        cr_assert_eq(wg_sched_step(s, &ev, &ne), WG_OK);
        collect(ev, ne, r, st);
    }
    wg_sched_stats_t stats;
    wg_sched_stats(s, &stats);
    cr_assert_eq(stats.n_running, 8);
    cr_assert_eq(stats.n_waiting, 4);
    cr_assert_gt(r[0].n, 2, "job 0 is decoding");
    cr_assert_lt(stats.kv_free_blocks, free0);
    /* Cancel everything: running (mid-decode) and waiting alike. */
    for (int i = 0; i < 12; i++) cr_assert_eq(wg_sched_cancel(s, h[i]), WG_OK);
    cr_assert_eq(wg_kv_n_free_blocks(wg_sched_kv(s)), free0, "free count back to its start");
    cr_assert_eq(wg_sched_cancel(s, h[0]), WG_ERR_NOTFOUND);
    const wg_sched_event_t *ev;
    size_t ne;
    cr_assert_eq(wg_sched_step(s, &ev, &ne), WG_OK);
    cr_assert_eq(ne, 12);
    for (size_t i = 0; i < ne; i++) {
        cr_assert_eq(ev[i].finish, WG_FINISH_CANCELLED);
        cr_assert_eq(ev[i].token, -1);
    }
    cr_assert(!wg_sched_busy(s));
    wg_sched_free(&s);
    unload();
}

Test(sched, cancel_one_leaves_others_identical) {
    load("trained/stories260K-f32.gguf");
    job_t j[6];
    static res_t ref[6];
    g_rng = 4242;
    for (int i = 0; i < 6; i++) job_random(&j[i], 4 + rnd() % 20, 30, i);
    for (int i = 0; i < 6; i++) run_jobs(&j[i], 1, NULL, &ref[i], NULL);
    wg_sched_t *s = wg_sched_new(g_m, g_tok, NULL);
    wg_seq_handle_t h[6];
    static res_t r[6];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 6; i++) {
        wg_sched_req_t rq = to_req(&j[i], (void *)(intptr_t)i);
        cr_assert_eq(wg_sched_submit(s, &rq, &h[i]), WG_OK);
    }
    int64_t step = 0;
    while (wg_sched_busy(s)) {
        if (step == 10) cr_assert_eq(wg_sched_cancel(s, h[2]), WG_OK);
        const wg_sched_event_t *ev;
        size_t ne;
        cr_assert_eq(wg_sched_step(s, &ev, &ne), WG_OK);
        collect(ev, ne, r, step++);
    }
    cr_assert_eq(r[2].finish, WG_FINISH_CANCELLED);
    cr_assert_lt(r[2].n, 30);
    for (int i = 0; i < 6; i++)
        if (i != 2) assert_same(&ref[i], &r[i], "neighbour of a cancelled sequence");
    cr_assert_eq(wg_kv_n_free_blocks(wg_sched_kv(s)), wg_kv_n_blocks(wg_sched_kv(s)));
    wg_sched_free(&s);
    unload();
}

/* A stop string made of the end of one token's text and the start of the
 * next one's stops the sequence there, and is not emitted. */
Test(sched, stop_string_across_token_boundary) {
    load("trained/stories260K-f32.gguf");
    int32_t *ids = NULL;
    size_t n = 0;
    const char *p = "Once upon a time";
    cr_assert_eq(wg_tok_encode(g_tok, p, strlen(p), true, false, &ids, &n), WG_OK);
    job_t j;
    job_random(&j, 1, 60, 0);
    memcpy(j.prompt, ids, n * sizeof *ids);
    j.n_prompt = n;
    free(ids);
    res_t full;
    run_jobs(&j, 1, NULL, &full, NULL);
    /* Find a boundary whose both sides have >= 2 bytes. */
    char stop[16] = {0};
    size_t off = 0;
    for (int32_t i = 0; i + 1 < full.n && !stop[0]; i++) {
        char a[64], b[64];
        size_t la = wg_tok_piece(g_tok, full.toks[i], false, a, sizeof a);
        size_t lb = wg_tok_piece(g_tok, full.toks[i + 1], false, b, sizeof b);
        off += la;
        if (i >= 3 && la >= 3 && lb >= 3) {
            memcpy(stop, a + la - 2, 2);
            memcpy(stop + 2, b, 2);
        }
    }
    cr_assert(stop[0], "no suitable boundary in %s", full.text);
    const char *at = strstr(full.text, stop);
    cr_assert_not_null(at);
    j.stop[0] = stop;
    j.n_stop = 1;
    res_t cut;
    run_jobs(&j, 1, NULL, &cut, NULL);
    cr_assert_eq(cut.finish, WG_FINISH_STOP);
    cr_assert_eq(cut.n_text, (size_t)(at - full.text), "text '%s' stop '%s'", cut.text, stop);
    cr_assert_eq(strncmp(cut.text, full.text, cut.n_text), 0);
    cr_assert_lt(cut.n, full.n);
    unload();
}

/* 200 sequences with mixed sampling params, priorities and lengths in one
 * run, with fewer slots than sequences: each equals its solo run. */
Test(sched, two_hundred_mixed_sequences) {
    load("trained/stories260K-f32.gguf");
    enum { N = 200 };
    static job_t jobs[N];
    static res_t ref[N], got[N];
    g_rng = 2024;
    for (int i = 0; i < N; i++) {
        job_random(&jobs[i], 1 + rnd() % 60, (int32_t)(1 + rnd() % 48), (int)(rnd() % 16));
        jobs[i].priority = (int32_t)(rnd() % 3);
        jobs[i].ignore_eos = (i % 3) != 0;
        if (i % 5 == 0) {
            jobs[i].stop[0] = "the";
            jobs[i].n_stop = 1;
        }
    }
    for (int i = 0; i < N; i++) run_jobs(&jobs[i], 1, NULL, &ref[i], NULL);
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_seqs = 48;
    cfg.max_batch_tokens = 128;
    cfg.prefill_chunk = 32;
    wg_sched_stats_t stats;
    run_jobs(jobs, N, &cfg, got, &stats);
    int n_stop = 0, n_len = 0;
    for (int i = 0; i < N; i++) {
        assert_same(&ref[i], &got[i], "200 mixed");
        n_stop += got[i].finish == WG_FINISH_STOP;
        n_len += got[i].finish == WG_FINISH_LENGTH;
        if (jobs[i].sp.logprobs)
            for (int32_t k = 0; k < got[i].n; k++) cr_assert(got[i].lp[k] <= 0 && isfinite(got[i].lp[k]));
    }
    cr_assert_gt(n_stop, 0);
    cr_assert_gt(n_len, 0);
    cr_assert_leq(stats.max_wait_steps, 200);
    unload();
}

/* A low-priority sequence is admitted within a bounded number of steps even
 * while higher-priority work keeps arriving. */
Test(sched, bounded_waiting_under_priority_pressure) {
    load("trained/stories260K-f32.gguf");
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_seqs = 4;
    cfg.max_waiting_steps = 10;
    wg_sched_t *s = wg_sched_new(g_m, g_tok, &cfg);
    static res_t r[400];
    memset(r, 0, sizeof r);
    job_t j;
    g_rng = 3;
    int next = 1;
    /* Fill the four slots first. */
    for (int k = 0; k < 4; k++, next++) {
        job_t hi;
        job_random(&hi, 5, 6, 0);
        hi.priority = 10;
        wg_sched_req_t hr = to_req(&hi, (void *)(intptr_t)next);
        wg_seq_handle_t hh;
        cr_assert_eq(wg_sched_submit(s, &hr, &hh), WG_OK);
    }
    job_random(&j, 5, 4, 0);
    j.priority = -5;
    wg_sched_req_t rq = to_req(&j, (void *)(intptr_t)0);
    wg_seq_handle_t h;
    cr_assert_eq(wg_sched_submit(s, &rq, &h), WG_OK);
    int64_t step;
    for (step = 0; step < 300 && r[0].n == 0; step++) {
        for (int k = 0; k < 2 && next < 400; k++) {
            job_t hi;
            job_random(&hi, 5, 6, 0);
            hi.priority = 10;
            wg_sched_req_t hr = to_req(&hi, (void *)(intptr_t)next++);
            cr_assert_eq(wg_sched_submit(s, &hr, &h), WG_OK);
        }
        const wg_sched_event_t *ev;
        size_t ne;
        cr_assert_eq(wg_sched_step(s, &ev, &ne), WG_OK);
        collect(ev, ne, r, step);
    }
    cr_assert_gt(r[0].n, 0, "low-priority sequence starved");
    /* starving after 10 steps, then admitted as soon as a slot frees (<= 6 more steps). */
    cr_assert_leq(r[0].first_step, 10 + 8, "admitted at step %lld", (long long)r[0].first_step);
    cr_assert_gt(r[0].first_step, 2, "priority ignored: admitted at step %lld", (long long)r[0].first_step);
    wg_sched_free(&s);
    unload();
}

Test(sched, submit_rejects_bad_requests) {
    load("trained/stories260K-f32.gguf");
    wg_sched_t *s = wg_sched_new(g_m, g_tok, NULL);
    job_t j;
    job_random(&j, 4, 4, 0);
    wg_sched_req_t r = to_req(&j, NULL);
    wg_seq_handle_t h;
    r.n_prompt = 0;
    cr_assert_eq(wg_sched_submit(s, &r, &h), WG_ERR_INVAL);
    r = to_req(&j, NULL);
    j.prompt[2] = 1 << 20;
    cr_assert_eq(wg_sched_submit(s, &r, &h), WG_ERR_INVAL);
    cr_assert_not_null(strstr(wg_errmsg(), "prompt[2]"), "%s", wg_errmsg());
    j.prompt[2] = 5;
    r.sampling.top_p = 7;
    cr_assert_neq(wg_sched_submit(s, &r, &h), WG_OK);
    r = to_req(&j, NULL);
    cr_assert_eq(wg_sched_submit(s, &r, &h), WG_OK);
    cr_assert_gt(h, 0);
    wg_sched_free(&s);
    unload();
}

/* The device in the config is where the cache goes: a malformed one is
 * refused by name (it was once dropped on the floor, so "cuda:0" silently
 * ran on the CPU), and "cpu" gives a host cache. */
Test(sched, config_device_is_honoured) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus("models/llama/llama-f32.gguf"), &m), WG_OK, "%s", wg_errmsg());
    wg_sched_cfg_t c = wg_sched_defaults();
    c.device = "gpu7";
    wg_sched_t *s = wg_sched_new(m, NULL, &c);
    cr_assert_null(s, "a scheduler on device 'gpu7' was made");
    cr_assert(strstr(wg_errmsg(), "gpu7"), "error does not name the device: %s", wg_errmsg());
    c.device = "cpu";
    s = wg_sched_new(m, NULL, &c);
    cr_assert(s, "%s", wg_errmsg());
    cr_assert_null(wg_kv_device(wg_sched_kv(s)), "cpu scheduler has a device cache");
    wg_sched_free(&s);
    wg_model_free(&m);
}

/* kv_type reaches the cache: F16 blocks are half the F32 ones, the default
 * budget holds the same tokens, a prefaulted cache works, an unknown type is
 * refused. */
Test(sched, config_kv_type_is_honoured) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus("models/llama/llama-f32.gguf"), &m), WG_OK, "%s", wg_errmsg());
    wg_sched_cfg_t c = wg_sched_defaults();
    cr_assert_eq(c.kv_type, WG_KV_F32, "the library default is the reference F32 cache");
    wg_sched_t *s32 = wg_sched_new(m, NULL, &c);
    cr_assert(s32, "%s", wg_errmsg());
    c.kv_type = WG_KV_F16;
    c.kv_prefault = true;
    wg_sched_t *s16 = wg_sched_new(m, NULL, &c);
    cr_assert(s16, "%s", wg_errmsg());
    const wg_kv_t *k32 = wg_sched_kv(s32), *k16 = wg_sched_kv(s16);
    cr_assert_eq(wg_kv_type(k32), WG_KV_F32);
    cr_assert_eq(wg_kv_type(k16), WG_KV_F16);
    cr_assert_eq(wg_kv_block_bytes(k16) * 2, wg_kv_block_bytes(k32));
    cr_assert_eq(wg_kv_n_blocks(k16), wg_kv_n_blocks(k32), "default budget: same tokens whatever the type");
    wg_sched_free(&s32);
    wg_sched_free(&s16);
    c.kv_type = (wg_kv_type_t)9;
    cr_assert_null(wg_sched_new(m, NULL, &c), "unknown kv type accepted");
    c.kv_type = WG_KV_F16;
    c.device = "cuda:0";
    wg_sched_t *sc = wg_sched_new(m, NULL, &c);
    cr_assert_null(sc, "an F16 cache on CUDA was made");
    cr_assert(strstr(wg_errmsg(), "f16") || strstr(wg_errmsg(), "cuda"), "%s", wg_errmsg());
    wg_model_free(&m);
}

/* ---- sliding-window release ---- */

/* The llama corpus model with every layer attending to the last 8 positions
 * (llama.attention.sliding_window = 8 written into a copy), loaded as g_m. */
static void load_swa(char *path, size_t len) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus("models/llama/llama-f32.gguf"), &g), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    wg_test_gguf_copy(w, g, NULL);
    cr_assert_eq(wg_gguf_writer_set_u32(w, "llama.attention.sliding_window", 8), WG_OK);
    snprintf(path, len, "/tmp/wg_swa_%d.gguf", (int)getpid());
    cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
    wg_gguf_close(&g);
    cr_assert_eq(wg_model_load(path, &g_m), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_tok_from_gguf(wg_model_gguf(g_m), &g_tok), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_model_hparams(g_m)->n_swa, 8);
}

/* With every layer windowed, blocks that fall wholly out of the window go
 * back to the free list after each step: three 60-token sequences finish
 * without preemption in 24 blocks of 4 tokens (each alone would end on 15,
 * 45 together), their tokens equal those of a cache large enough never to
 * need a release (released blocks are never read), and a plain session (which
 * keeps every block) gives the same greedy tokens. */
Test(sched, sliding_window_blocks_released_outputs_unchanged) {
    char path[256];
    load_swa(path, sizeof path);
    job_t jobs[3];
    for (int i = 0; i < 3; i++) {
        job_random(&jobs[i], 30 + 5 * (size_t)i, 25, i);
    }
    wg_sched_cfg_t small = wg_sched_defaults();
    small.block_tokens = 4;
    small.prefill_chunk = 8;
    small.max_batch_tokens = 16;
    small.kv_budget_bytes = 24 * 4 * wg_model_kv_token_bytes(g_m, WG_KV_F32);
    wg_sched_cfg_t big = small;
    big.kv_budget_bytes = 100 * 4 * wg_model_kv_token_bytes(g_m, WG_KV_F32);
    res_t rs[3], rb[3];
    wg_sched_stats_t ss, sb;
    run_jobs(jobs, 3, &small, rs, &ss);
    run_jobs(jobs, 3, &big, rb, &sb);
    cr_assert_eq(ss.kv_blocks, 24);
    cr_assert_eq(ss.n_preemptions, 0, "preempted %lld times: blocks were not released", (long long)ss.n_preemptions);
    cr_assert_gt(ss.kv_released_blocks, 0);
    cr_assert_leq(ss.kv_peak_blocks, 24);
    for (int i = 0; i < 3; i++) assert_same(&rs[i], &rb[i], "small vs big cache");
    /* greedy job 0 against a session over the whole sequence */
    wg_session_t *se = wg_session_new(g_m, 1, 128);
    cr_assert_not_null(se);
    const int32_t V = wg_model_hparams(g_m)->n_vocab;
    float *lg = malloc((size_t)V * sizeof *lg);
    cr_assert_eq(wg_session_eval(se, jobs[0].prompt, (int64_t)jobs[0].n_prompt, false, lg), WG_OK);
    for (int32_t i = 0; i < rs[0].n; i++) {
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = v;
        cr_assert_eq(rs[0].toks[i], best, "token %d: sched %d, session %d", i, rs[0].toks[i], best);
        cr_assert_eq(wg_session_eval(se, &best, 1, false, lg), WG_OK);
    }
    free(lg);
    wg_session_free(&se);
    unload();
    unlink(path);
}

/* A hybrid model (gemma2: every other layer global) keeps every block. */
Test(sched, sliding_window_hybrid_model_keeps_blocks) {
    load("models/gemma2/gemma2-f32.gguf");
    job_t j;
    job_random(&j, 40, 10, 0);
    wg_sched_cfg_t c = wg_sched_defaults();
    c.block_tokens = 4;
    res_t r;
    wg_sched_stats_t st;
    run_jobs(&j, 1, &c, &r, &st);
    cr_assert_eq(st.kv_released_blocks, 0);
    unload();
}

/* ---- prefix cache ---- */

/* Jobs in four groups; the jobs of a group share their first `shared` prompt
 * tokens (a system prompt) and differ after it, and two jobs are the same
 * prompt twice. Mixed sampling kinds, so seeded draws are compared too. */
static void prefix_jobs(job_t *jobs, int n) {
    const size_t shared[4] = {37, 50, 3, 64};
    job_t base[4];
    for (int g = 0; g < 4; g++) job_random(&base[g], shared[g], 1, 0);
    for (int i = 0; i < n; i++) {
        const int g = i % 4;
        job_random(&jobs[i], shared[g] + 1 + rnd() % 30, (int32_t)(8 + rnd() % 16), i);
        memcpy(jobs[i].prompt, base[g].prompt, shared[g] * sizeof(int32_t));
    }
    memcpy(jobs[n - 1].prompt, jobs[n - 5].prompt, sizeof jobs[n - 1].prompt);
    jobs[n - 1].n_prompt = jobs[n - 5].n_prompt;
}

static void assert_same_lp(const res_t *a, const res_t *b, const char *what, int i) {
    assert_same(a, b, what);
    for (int32_t k = 0; k < a->n; k++)
        cr_assert(memcmp(&a->lp[k], &b->lp[k], sizeof(float)) == 0, "%s: job %d logprob %d differs (%.9g vs %.9g)",
                  what, i, k, (double)a->lp[k], (double)b->lp[k]);
}

/* With the prefix cache (the default) every job gets bitwise the tokens and
 * logprobs it gets without it, the shared blocks are really reused (hits,
 * fewer tokens computed), and every block comes back (cached ones count as
 * free). Jobs arrive over several steps so later ones find earlier ones'
 * blocks; then the same set runs again on the warm cache. */
static void check_prefix_cache(const char *rel, wg_kv_type_t kt) {
    load(rel);
    enum { N = 20 };
    static job_t jobs[N];
    static res_t on[N], off[N];
    g_rng = 0xfeedull;
    prefix_jobs(jobs, N);
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.kv_type = kt;
    cfg.max_batch_tokens = 96;
    cfg.prefill_chunk = 40;
    cfg.max_seqs = 6;
    wg_sched_cfg_t nocache = cfg;
    nocache.prefix_cache = -1;
    wg_sched_stats_t s_on, s_off;
    run_jobs(jobs, N, &nocache, off, &s_off);
    run_jobs(jobs, N, &cfg, on, &s_on);
    cr_assert(!s_off.prefix_cache && s_off.n_prefix_hit_tokens == 0);
    cr_assert(s_on.prefix_cache, "prefix cache off by default");
    for (int i = 0; i < N; i++) assert_same_lp(&off[i], &on[i], "prefix cache", i);
    cr_assert_gt(s_on.n_prefix_hit_tokens, 0, "no prefix was reused");
    cr_assert_eq(s_on.n_prefill_tokens + s_on.n_prefix_hit_tokens, s_off.n_prefill_tokens,
                 "computed %lld + reused %lld != %lld prompt tokens without the cache",
                 (long long)s_on.n_prefill_tokens, (long long)s_on.n_prefix_hit_tokens, (long long)s_off.n_prefill_tokens);
    cr_assert_gt(s_on.kv_cached_blocks, 0, "finished sequences' full blocks stay cached");
    cr_assert_eq(s_on.kv_free_blocks, s_on.kv_blocks);
    unload();
}

Test(sched, prefix_cache_llama_f32) { check_prefix_cache("models/llama/llama-f32.gguf", WG_KV_F32); }
Test(sched, prefix_cache_llama_q4_k_m_q8_0_kv) { check_prefix_cache("models/llama/llama-Q4_K_M.gguf", WG_KV_Q8_0); }
Test(sched, prefix_cache_qwen2_q8_0_f16_kv) { check_prefix_cache("models/qwen2/qwen2-Q8_0.gguf", WG_KV_F16); }
Test(sched, prefix_cache_gemma2_f32) { check_prefix_cache("models/gemma2/gemma2-f32.gguf", WG_KV_F32); }
Test(sched, prefix_cache_stories260k) { check_prefix_cache("trained/stories260K-f32.gguf", WG_KV_F32); }

/* A cache too small for the jobs: sequences are preempted and re-admitted
 * (finding their own blocks again when they are still cached) and cached
 * blocks are taken back for new contents; outputs stay those of each job
 * alone. */
Test(sched, prefix_cache_under_preemption_and_eviction) {
    load("models/llama/llama-f32.gguf");
    enum { N = 16 };
    static job_t jobs[N];
    static res_t ref[N], got[N];
    g_rng = 4242;
    prefix_jobs(jobs, N);
    for (int i = 0; i < N; i++) run_jobs(&jobs[i], 1, NULL, &ref[i], NULL);
    wg_sched_cfg_t cfg = tiny_cache_cfg(24);
    wg_sched_stats_t st;
    run_jobs(jobs, N, &cfg, got, &st);
    cr_assert_eq(st.kv_blocks, 24);
    cr_assert_gt(st.n_preemptions, 0, "the tiny cache should force preemption");
    cr_assert_gt(st.kv_evicted_blocks, 0, "the tiny cache should take cached blocks back");
    cr_assert_gt(st.n_prefix_hit_tokens, 0);
    for (int i = 0; i < N; i++) assert_same_lp(&ref[i], &got[i], "preempted with prefix cache", i);
    unload();
}

/* The same prompt admitted twice in one step is computed twice, but once
 * its blocks are full the second copy is swapped for the first: after the
 * prefill step the pair holds 2 shared + 2 own partial blocks, not 6. */
Test(sched, same_prompt_in_one_step_shares_its_full_blocks) {
    load("models/llama/llama-f32.gguf");
    job_t j;
    job_random(&j, 40, 4, 0);
    for (int pc = 0; pc < 2; pc++) {
        wg_sched_cfg_t cfg = wg_sched_defaults();
        cfg.block_tokens = 16;
        cfg.prefix_cache = pc ? 0 : -1;
        wg_sched_t *s = wg_sched_new(g_m, g_tok, &cfg);
        cr_assert_not_null(s);
        for (int k = 0; k < 2; k++) {
            wg_sched_req_t r = to_req(&j, NULL);
            wg_seq_handle_t h;
            cr_assert_eq(wg_sched_submit(s, &r, &h), WG_OK);
        }
        const wg_sched_event_t *ev;
        size_t ne;
        cr_assert_eq(wg_sched_step(s, &ev, &ne), WG_OK);
        cr_assert_eq(ne, 2);
        cr_assert_eq(ev[0].token, ev[1].token);
        wg_sched_stats_t st;
        wg_sched_stats(s, &st);
        cr_assert_eq(st.kv_blocks - st.kv_free_blocks, pc ? 4 : 6, "prefix cache %d: %d blocks held", pc,
                     st.kv_blocks - st.kv_free_blocks);
        wg_sched_free(&s);
    }
    unload();
}

/* ---- JSON mode ---- */

/* Ids whose piece is exactly `text`. */
static int32_t piece_ids(const char *text, int32_t *out, int32_t cap) {
    int32_t n = 0;
    char buf[64];
    for (int32_t id = 0; id < wg_tok_n_vocab(g_tok) && n < cap; id++) {
        size_t l = wg_tok_piece(g_tok, id, false, buf, sizeof buf);
        if (l == strlen(text) && !memcmp(buf, text, l)) out[n++] = id;
    }
    return n;
}

/* 32 requests, three in four in JSON mode (greedy and seeded draws, logprobs
 * on some, a bias towards "}" on others so objects close within the token
 * limit): each JSON text is what its tokens' pieces spell, the recognizer
 * accepts it, those that finished "stop" are whole objects jansson parses
 * and those that finished "length" used every token. Three of them give the
 * same tokens alone as in the crowd (chunked prefill there). */
static void check_json_mode(const char *rel, int32_t max_tokens, float bias) {
    load(rel);
    static job_t jobs[32];
    static res_t res[32];
    int32_t close_ids[8], quote_ids[8];
    const int32_t n_close = piece_ids("}", close_ids, 4), n_quote = piece_ids("\"", quote_ids, 4);
    cr_assert_gt(n_close, 0, "%s: no token spells '}'", rel);
    cr_assert_gt(n_quote, 0, "%s: no token spells '\"'", rel);
    g_rng = 0xC0FFEEull;
    for (int i = 0; i < 32; i++) {
        job_random(&jobs[i], 3 + rnd() % 40, max_tokens, i);
        jobs[i].json = i % 4 != 3;
        if (i % 4 == 1) {
            int32_t nb = 0;
            for (int32_t k = 0; k < n_close; k++) jobs[i].bias[nb++] = (wg_logit_bias_t){close_ids[k], bias};
            for (int32_t k = 0; k < n_quote; k++) jobs[i].bias[nb++] = (wg_logit_bias_t){quote_ids[k], bias / 2};
            jobs[i].sp.n_logit_bias = (size_t)nb;
        }
    }
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_batch_tokens = 128;
    cfg.prefill_chunk = 16;
    run_jobs(jobs, 32, &cfg, res, NULL);
    int whole = 0, cut = 0;
    for (int i = 0; i < 32; i++) {
        if (!jobs[i].json) continue;
        const res_t *r = &res[i];
        char spelled[8192];
        size_t n = 0;
        for (int32_t t = 0; t < r->n; t++) n += wg_tok_piece(g_tok, r->toks[t], false, spelled + n, sizeof spelled - n);
        /* The text is what the pieces spell; a text cut inside a character
         * ends in one U+FFFD per byte of it (the detokenizer's flush). */
        size_t keep = n, lead = n;
        while (lead > 0 && n - lead < 3 && ((unsigned char)spelled[lead - 1] & 0xC0) == 0x80) lead--;
        if (r->finish == WG_FINISH_LENGTH && lead > 0 && (unsigned char)spelled[lead - 1] >= 0xC0) {
            const unsigned char c = (unsigned char)spelled[lead - 1];
            const size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (n - (lead - 1) < want) keep = lead - 1;
        }
        cr_assert_eq(r->n_text, keep + 3 * (n - keep), "%s job %d: pieces spell %zu bytes, the text has %zu", rel, i,
                     n, r->n_text);
        cr_assert(!memcmp(spelled, r->text, keep), "%s job %d: text is not its pieces", rel, i);
        for (size_t b = keep; b < n; b++) cr_assert(!memcmp(r->text + keep + 3 * (b - keep), "\xef\xbf\xbd", 3));
        wg_json_state_t st;
        wg_json_init(&st);
        cr_assert(wg_json_feed(&st, spelled, n), "%s job %d: not a JSON start: %s", rel, i, r->text);
        if (r->finish == WG_FINISH_STOP) {
            cr_assert(wg_json_done(&st), "%s job %d stopped before the object closed: %s", rel, i, r->text);
            json_error_t e;
            json_t *j = json_loadb(r->text, r->n_text, 0, &e);
            cr_assert(j && json_is_object(j), "%s job %d: jansson: %s on %s", rel, i, e.text, r->text);
            json_decref(j);
            whole++;
        } else {
            cr_assert_eq(r->finish, WG_FINISH_LENGTH);
            cr_assert_eq(r->n, jobs[i].max_tokens);
            cr_assert_not(wg_json_done(&st));
            cut++;
        }
    }
    cr_assert_geq(whole, 4, "%s: only %d of 24 JSON texts closed (%d cut)", rel, whole, cut);
    cr_assert_geq(cut, 1, "%s: every JSON text closed (none cut by max_tokens)", rel);
    const int targets[3] = {0, 1, 6};
    for (int k = 0; k < 3; k++) {
        res_t one;
        run_jobs(&jobs[targets[k]], 1, NULL, &one, NULL);
        assert_same(&one, &res[targets[k]], "JSON mode alone vs crowded");
    }
    unload();
}

Test(sched, json_mode_llama_q8_0) { check_json_mode("models/llama/llama-Q8_0.gguf", 40, 6.0f); }
Test(sched, json_mode_qwen2_f32) { check_json_mode("models/qwen2/qwen2-f32.gguf", 40, 6.0f); }
/* The trained model writes long strings: more tokens, a stronger pull. */
Test(sched, json_mode_stories260k) { check_json_mode("trained/stories260K-f32.gguf", 120, 20.0f); }

Test(sched, json_mode_needs_the_tokenizer) {
    load("trained/stories260K-f32.gguf");
    wg_sched_t *s = wg_sched_new(g_m, NULL, NULL);
    job_t j;
    job_random(&j, 4, 4, 0);
    j.json = true;
    wg_sched_req_t r = to_req(&j, NULL);
    wg_seq_handle_t h;
    cr_assert_eq(wg_sched_submit(s, &r, &h), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "JSON mode"), "%s", wg_errmsg());
    cr_assert_not(wg_sched_busy(s));
    wg_sched_free(&s);
    unload();
}

/* A sequence holds at most max_context tokens, prompt + generated: by default
 * the model's trained context (stories260K: 512), a set limit otherwise, or
 * only the cache's size with -1. A prompt that leaves no room is refused at
 * submit naming both lengths; generation stops there with finish "length";
 * the sequences beside it are unaffected. */
Test(sched, max_context_refuses_long_prompts_and_ends_generation_there) {
    load("trained/stories260K-f32.gguf");
    const int32_t ctx = wg_model_hparams(g_m)->n_ctx_train;
    cr_assert_eq(ctx, 512, "stories260K's context_length is %d", ctx);
    g_rng = 11;
    /* default: the model's 512 */
    {
        wg_sched_t *s = wg_sched_new(g_m, g_tok, NULL);
        cr_assert_not_null(s, "%s", wg_errmsg());
        static int32_t long_prompt[600];
        for (int i = 0; i < 600; i++) long_prompt[i] = 3 + i % 200;
        wg_sched_req_t rq = {.prompt = long_prompt, .n_prompt = 512, .sampling = wg_sampling_defaults(), .max_tokens = 4};
        wg_seq_handle_t h;
        cr_assert_eq(wg_sched_submit(s, &rq, &h), WG_ERR_RANGE);
        cr_assert(strstr(wg_errmsg(), "512 tokens") && strstr(wg_errmsg(), "context"), "message: %s", wg_errmsg());
        rq.n_prompt = 511;
        cr_assert_eq(wg_sched_submit(s, &rq, &h), WG_OK, "%s", wg_errmsg());
        wg_sched_free(&s);
    }
    job_t j[2];
    res_t r[2];
    job_random(&j[0], 200, 500, 0); /* wants 500, room for 312 */
    job_random(&j[1], 20, 30, 1);
    run_jobs(j, 2, NULL, r, NULL);
    cr_assert_eq(r[0].finish, WG_FINISH_LENGTH);
    cr_assert_eq(r[0].n, ctx - 200, "generated %d, the context leaves %d", r[0].n, ctx - 200);
    res_t alone;
    run_jobs(&j[1], 1, NULL, &alone, NULL);
    assert_same(&alone, &r[1], "neighbour of a sequence stopped by the context");
    /* a set limit: the tokens of an unlimited run, cut there */
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_context = 64;
    job_random(&j[0], 50, 100, 0);
    run_jobs(j, 1, &cfg, r, NULL);
    cr_assert_eq(r[0].finish, WG_FINISH_LENGTH);
    cr_assert_eq(r[0].n, 14, "generated %d with max_context 64 and a 50-token prompt", r[0].n);
    res_t free_run;
    cfg.max_context = -1;
    run_jobs(j, 1, &cfg, &free_run, NULL);
    cr_assert_eq(free_run.n, 100);
    cr_assert_arr_eq(free_run.toks, r[0].toks, 14 * sizeof(int32_t), "the limit changed the tokens before it");
    /* -1: only the cache limits; the sequence runs past 512 (cache: 64 x 512 tokens by default) */
    job_random(&j[0], 250, 400, 0);
    run_jobs(j, 1, &cfg, r, NULL);
    cr_assert_eq(r[0].finish, WG_FINISH_LENGTH);
    cr_assert_eq(r[0].n, 400, "max_context -1 generated %d of 400", r[0].n);
    unload();
}
