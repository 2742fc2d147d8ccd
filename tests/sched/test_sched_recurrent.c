/* The scheduler over recurrent models (mamba, rwkv6, rwkv7): their cache is
 * one fixed-size state per running sequence, so a tiny budget bounds how many
 * run at once (the rest wait for a free state) instead of how long they get.
 * Every request's tokens must equal its tokens run alone, with small prefill
 * chunks, crowded into two states, and no state may leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/wg_model.h"
#include "engine/sched/wg_sched.h"
#include "wg_test.h"

enum { N_JOBS = 5, MAX_TOK = 12 };

typedef struct {
    int32_t prompt[32];       /* prompt ids */
    size_t n_prompt;          /* its length */
    wg_sampling_params_t sp;  /* sampling */
} s_job_t;

typedef struct {
    int32_t toks[64];         /* generated ids */
    int32_t n;                /* count */
    wg_finish_t finish;       /* finish reason */
    int64_t first_step;       /* step of the first token */
} s_res_t;

static void s_jobs(const wg_model_t *m, s_job_t *jobs) {
    const int32_t V = wg_model_hparams(m)->n_vocab;
    uint32_t x = 12345u;
    for (int j = 0; j < N_JOBS; j++) {
        s_job_t *jb = &jobs[j];
        memset(jb, 0, sizeof *jb);
        jb->n_prompt = (size_t)(3 + 4 * j); /* 3 .. 19 tokens */
        for (size_t i = 0; i < jb->n_prompt; i++) {
            x = x * 1664525u + 1013904223u;
            jb->prompt[i] = 1 + (int32_t)((x >> 8) % (uint32_t)(V - 1));
        }
        jb->sp = wg_sampling_defaults();
        if (j % 2 == 0) {
            jb->sp.temperature = 0.0f;
        } else {
            jb->sp.temperature = 0.9f;
            jb->sp.top_k = 40;
            jb->sp.seed = 100 + (uint64_t)j;
            jb->sp.has_seed = true;
        }
    }
}

/* Run jobs[first..first+n) in one scheduler with `cfg`; results by job index. */
static void s_run(const wg_model_t *m, const s_job_t *jobs, int first, int n, const wg_sched_cfg_t *cfg,
                  s_res_t *res, wg_sched_stats_t *stats) {
    wg_sched_t *s = wg_sched_new(m, NULL, cfg);
    cr_assert(s, "sched: %s", wg_errmsg());
    for (int j = first; j < first + n; j++) {
        wg_sched_req_t r = {.prompt = jobs[j].prompt, .n_prompt = jobs[j].n_prompt, .sampling = jobs[j].sp,
                            .max_tokens = MAX_TOK, .ignore_eos = true, .user = (void *)(intptr_t)j};
        wg_seq_handle_t h;
        cr_assert_eq(wg_sched_submit(s, &r, &h), WG_OK, "submit: %s", wg_errmsg());
        memset(&res[j], 0, sizeof res[j]);
        res[j].first_step = -1;
    }
    const int32_t free0 = wg_kv_n_free_blocks(wg_sched_kv(s));
    for (int64_t step = 0; wg_sched_busy(s); step++) {
        cr_assert_lt(step, 10000, "scheduler does not finish");
        const wg_sched_event_t *ev;
        size_t ne;
        cr_assert_eq(wg_sched_step(s, &ev, &ne), WG_OK, "step: %s", wg_errmsg());
        for (size_t i = 0; i < ne; i++) {
            s_res_t *r = &res[(intptr_t)ev[i].user];
            if (ev[i].token >= 0) {
                if (r->first_step < 0) r->first_step = step;
                r->toks[r->n++] = ev[i].token;
            }
            if (ev[i].finish) r->finish = ev[i].finish;
        }
    }
    cr_assert_eq(wg_kv_n_free_blocks(wg_sched_kv(s)), free0, "recurrent states leaked");
    if (stats) wg_sched_stats(s, stats);
    wg_sched_free(&s);
}

static void s_crowded_equals_alone(const char *rel) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus(rel), &m), WG_OK, "%s: %s", rel, wg_errmsg());
    s_job_t jobs[N_JOBS];
    s_jobs(m, jobs);
    s_res_t alone[N_JOBS], crowded[N_JOBS], roomy[N_JOBS];
    for (int j = 0; j < N_JOBS; j++) s_run(m, jobs, j, 1, NULL, alone, NULL);
    /* Two states for five requests, prompts prefilled 3 tokens per step. */
    wg_sched_cfg_t tiny = {.kv_budget_bytes = 2 * wg_model_state_bytes(m), .max_seqs = 4, .prefill_chunk = 3,
                           .max_batch_tokens = 8, .n_threads = 2};
    wg_sched_stats_t st;
    s_run(m, jobs, 0, N_JOBS, &tiny, crowded, &st);
    cr_assert_eq(st.kv_blocks, 2, "budget of two states gives two blocks");
    cr_assert_eq(st.kv_peak_blocks, 2, "both states were used at once");
    cr_assert_eq(st.n_preemptions, 0, "a fixed-size state never has to be preempted to grow");
    /* Default budget: every request runs at once (max_seqs states). */
    s_run(m, jobs, 0, N_JOBS, NULL, roomy, NULL);
    int waited = 0;
    for (int j = 0; j < N_JOBS; j++) {
        cr_assert_eq(alone[j].n, MAX_TOK, "%s job %d: %d tokens", rel, j, alone[j].n);
        cr_assert_eq(crowded[j].finish, WG_FINISH_LENGTH);
        cr_assert_eq(crowded[j].n, alone[j].n, "%s job %d", rel, j);
        cr_assert_eq(roomy[j].n, alone[j].n, "%s job %d", rel, j);
        for (int i = 0; i < alone[j].n; i++) {
            cr_assert_eq(crowded[j].toks[i], alone[j].toks[i], "%s job %d token %d: crowded %d vs alone %d", rel, j,
                         i, crowded[j].toks[i], alone[j].toks[i]);
            cr_assert_eq(roomy[j].toks[i], alone[j].toks[i], "%s job %d token %d: batched %d vs alone %d", rel, j, i,
                         roomy[j].toks[i], alone[j].toks[i]);
        }
        waited += crowded[j].first_step > roomy[j].first_step + 5;
    }
    cr_assert_geq(waited, 1, "with two states some requests must have waited for one");
    wg_model_free(&m);
}

Test(sched_recurrent, crowded_into_two_states_equals_alone_mamba) { s_crowded_equals_alone("models/mamba/mamba-f32.gguf"); }
Test(sched_recurrent, crowded_into_two_states_equals_alone_rwkv6) { s_crowded_equals_alone("models/rwkv6/rwkv6-f32.gguf"); }
Test(sched_recurrent, crowded_into_two_states_equals_alone_rwkv7) { s_crowded_equals_alone("models/rwkv7/rwkv7-f32.gguf"); }

/* The default cache holds max_seqs states (not the K/V formula, which is 0
 * for a model without attention). */
Test(sched_recurrent, default_budget_is_max_seqs_states) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus("models/rwkv7/rwkv7-f32.gguf"), &m), WG_OK);
    wg_sched_cfg_t c = {.max_seqs = 7};
    wg_sched_t *s = wg_sched_new(m, NULL, &c);
    cr_assert(s, "%s", wg_errmsg());
    cr_assert_eq(wg_kv_n_blocks(wg_sched_kv(s)), 7);
    cr_assert_eq(wg_kv_block_bytes(wg_sched_kv(s)), wg_model_state_bytes(m));
    wg_sched_free(&s);
    wg_model_free(&m);
}
