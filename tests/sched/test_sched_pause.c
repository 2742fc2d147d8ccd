/* wg_sched_pause / wg_sched_resume: a paused sequence produces nothing and
 * keeps its KV blocks while the others run; resumed, it yields exactly the
 * tokens it would have produced without the pause. */
#include <stdlib.h>
#include <string.h>

#include "engine/model/wg_model.h"
#include "engine/sched/wg_sched.h"
#include "engine/tokenizer/wg_tok.h"
#include "wg_test.h"

#define N_TOK 24

typedef struct {
    int32_t toks[2][N_TOK]; /* generated ids per request */
    int n[2];               /* counts */
} s_out;

/* Run two greedy requests; pause request 0 at step pause_at for hold steps. */
static void s_run(const wg_model_t *m, const wg_tok_t *tok, int pause_at, int hold, s_out *out, int *events_while_paused,
                  int *other_while_paused, int32_t *blocks_before, int32_t *blocks_during) {
    wg_sched_cfg_t cfg = wg_sched_defaults();
    cfg.max_seqs = 4;
    wg_sched_t *s = wg_sched_new(m, tok, &cfg);
    cr_assert(s);
    const char *prompts[2] = {"Once upon a time", "The cat sat"};
    wg_seq_handle_t h[2];
    int32_t *ids[2];
    for (int r = 0; r < 2; r++) {
        size_t n = 0;
        cr_assert_eq(wg_tok_encode(tok, prompts[r], strlen(prompts[r]), true, false, &ids[r], &n), WG_OK);
        wg_sched_req_t req = {0};
        req.prompt = ids[r];
        req.n_prompt = n;
        req.sampling = wg_sampling_defaults();
        req.sampling.temperature = 0;
        req.max_tokens = N_TOK;
        req.ignore_eos = true;
        req.user = (void *)(intptr_t)r;
        cr_assert_eq(wg_sched_submit(s, &req, &h[r]), WG_OK);
    }
    memset(out, 0, sizeof *out);
    *events_while_paused = *other_while_paused = 0;
    for (int step = 0; step < 200 && wg_sched_busy(s); step++) {
        bool paused = pause_at >= 0 && step >= pause_at && step < pause_at + hold;
        if (pause_at >= 0 && step == pause_at) {
            wg_sched_stats_t st;
            wg_sched_stats(s, &st);
            *blocks_before = st.kv_blocks - st.kv_free_blocks;
            cr_assert_eq(wg_sched_pause(s, h[0]), WG_OK);
        }
        if (pause_at >= 0 && step == pause_at + hold) cr_assert_eq(wg_sched_resume(s, h[0]), WG_OK);
        const wg_sched_event_t *ev;
        size_t n_ev;
        cr_assert_eq(wg_sched_step(s, &ev, &n_ev), WG_OK);
        for (size_t e = 0; e < n_ev; e++) {
            int r = (int)(intptr_t)ev[e].user;
            if (paused && r == 0) (*events_while_paused)++;
            if (paused && r == 1) (*other_while_paused)++;
            if (ev[e].token >= 0 && out->n[r] < N_TOK) out->toks[r][out->n[r]++] = ev[e].token;
        }
        if (paused && step == pause_at + 1) {
            wg_sched_stats_t st;
            wg_sched_stats(s, &st);
            *blocks_during = st.kv_blocks - st.kv_free_blocks;
        }
    }
    free(ids[0]);
    free(ids[1]);
    wg_sched_free(&s);
}

Test(sched_pause, paused_sequence_keeps_kv_others_run_and_tokens_are_unchanged) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    wg_tok_t *tok = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus("trained/stories260K-f32.gguf"), &m), WG_OK);
    cr_assert_eq(wg_tok_from_gguf(wg_model_gguf(m), &tok), WG_OK);
    s_out ref, got;
    int ev_p, other_p;
    int32_t b0 = 0, b1 = 0;
    s_run(m, tok, -1, 0, &ref, &ev_p, &other_p, &b0, &b1);
    cr_assert_eq(ref.n[0], N_TOK);
    s_run(m, tok, 4, 8, &got, &ev_p, &other_p, &b0, &b1);
    cr_assert_eq(ev_p, 0, "a paused sequence produced %d events", ev_p);
    cr_assert_geq(other_p, 6, "the other sequence must keep going while one is paused (%d events)", other_p);
    cr_assert_geq(b1, b0, "the paused sequence's blocks were freed (%d -> %d)", b0, b1);
    for (int r = 0; r < 2; r++) {
        cr_assert_eq(got.n[r], N_TOK);
        cr_assert_arr_eq(got.toks[r], ref.toks[r], sizeof ref.toks[r], "request %d tokens changed by the pause", r);
    }
    wg_tok_free(&tok);
    wg_model_free(&m);
}

Test(sched_pause, only_paused_sequences_left_means_not_busy_and_unknown_handle_is_notfound) {
    WG_REQUIRE_CORPUS();
    wg_model_t *m = NULL;
    wg_tok_t *tok = NULL;
    cr_assert_eq(wg_model_load(wg_test_corpus("trained/stories260K-f32.gguf"), &m), WG_OK);
    cr_assert_eq(wg_tok_from_gguf(wg_model_gguf(m), &tok), WG_OK);
    wg_sched_t *s = wg_sched_new(m, tok, NULL);
    int32_t ids[3] = {1, 300, 301};
    wg_sched_req_t req = {.prompt = ids, .n_prompt = 3, .sampling = wg_sampling_defaults(), .max_tokens = 4};
    req.sampling.temperature = 0;
    wg_seq_handle_t h;
    cr_assert_eq(wg_sched_submit(s, &req, &h), WG_OK);
    cr_assert_eq(wg_sched_pause(s, h), WG_OK);
    cr_assert_not(wg_sched_busy(s));
    const wg_sched_event_t *ev;
    size_t n_ev = 9;
    cr_assert_eq(wg_sched_step(s, &ev, &n_ev), WG_OK);
    cr_assert_eq(n_ev, 0);
    cr_assert_eq(wg_sched_resume(s, h), WG_OK);
    cr_assert(wg_sched_busy(s));
    cr_assert_eq(wg_sched_pause(s, h + 1000), WG_ERR_NOTFOUND);
    wg_sched_free(&s);
    wg_tok_free(&tok);
    wg_model_free(&m);
}
