/* wg_sched — continuous batching over the paged KV cache (see wg_sched.h).
 *
 * Every live sequence keeps its whole token list (prompt + generated) and how
 * many of those tokens are in the cache (n_computed). Running means "holds a
 * KV sequence"; a running sequence with one uncomputed token is decoding, with
 * more it is (re)filling. Preemption just frees the KV sequence and sets
 * n_computed to 0: the sampler, detokenizer and stopper keep their state, and
 * the next sample only happens once every token is back in the cache, so the
 * recompute is invisible in the output. */
#include "wg_sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../model/wg_arch.h" /* wg_layer_is_swa */
#include "kernels/cpu/wg_cpu_impl.h" /* wg_pool_run_any */

typedef enum { S_WAITING, S_RUNNING } s_state_t;

typedef struct {
    wg_seq_handle_t handle;   /* public id */
    void *user;               /* request tag */
    s_state_t state;          /* waiting or running */
    int32_t *toks;            /* [n_toks] prompt then generated ids */
    int32_t n_toks;           /* tokens known */
    int32_t cap_toks;         /* capacity of toks */
    int32_t n_prompt;         /* prompt length */
    int32_t n_computed;       /* tokens whose K/V are in the cache */
    int32_t kv_seq;           /* KV sequence id while running, -1 while waiting */
    wg_sampler_t *sampler;    /* per-request sampler (owns RNG + penalty history) */
    wg_logit_bias_t *bias;    /* [n_bias] copy the sampler borrows */
    wg_detok_t *detok;        /* streaming detokenizer, NULL without tokenizer */
    wg_stopper_t *stopper;    /* stop-string matcher */
    int32_t *stop_ids;        /* [n_stop_ids] */
    size_t n_stop_ids;        /* count */
    int32_t max_tokens;       /* <= 0: unlimited */
    bool ignore_eos;          /* do not stop at EOG tokens */
    bool want_lp;             /* report logprobs */
    int32_t priority;         /* higher first */
    int64_t arrival;          /* submit order (FCFS key) */
    int64_t admitted;         /* admission counter of the current run (newest = largest) */
    int64_t wait_since;       /* step at which it (re)entered the waiting queue */
    int64_t preempted_at;     /* step of the last preemption (-1 never): not re-admitted in that step */
    int32_t plan_n;           /* tokens of this sequence in the step being built */
    bool plan_logits;         /* this step's chunk ends at the last token: sample */
    bool paused;              /* wg_sched_pause: left out of batches, keeps its blocks */
} s_seq_t;

typedef struct {
    wg_seq_handle_t handle;   /* cancelled sequence */
    void *user;               /* its tag */
    int32_t n_prompt;         /* prompt tokens */
    int32_t n_generated;      /* tokens it generated */
} s_pending_t;

struct wg_sched {
    const wg_model_t *m;      /* borrowed model */
    const wg_tok_t *tok;      /* borrowed tokenizer or NULL */
    wg_json_vocab_t *json;    /* JSON mode's trie of the vocabulary, built at the first JSON request */
    wg_sched_cfg_t cfg;       /* effective configuration */
    wg_kv_t *kv;              /* paged cache (owned) */
    wg_pool_t *pool;          /* forward threads (owned) */
    int32_t n_vocab;          /* logits width */
    int64_t max_ctx;          /* tokens a sequence may hold (wg_model_context_limit; INT64_MAX = the cache's) */
    int32_t eos;              /* EOS when there is no tokenizer */
    int32_t window;           /* every layer attends to the last `window` positions only: blocks
                               * wholly before them are released after each step (0: none) */
    s_seq_t **seqs;           /* [n_seqs] live sequences (waiting + running) */
    int32_t n_seqs;           /* count */
    int32_t cap_seqs;         /* capacity */
    s_seq_t **order;          /* [cap_seqs] scratch for sorting */
    wg_batch_tok_t *batch;    /* [max_batch_tokens] step batch */
    s_seq_t **out_seq;        /* [max_seqs] sequences whose logits row is i */
    wg_sample_t *smp;         /* [max_seqs] this step's samples, row i for out_seq[i] */
    int32_t n_out;            /* logits rows in this step */
    float *logits;            /* [max_seqs][n_vocab] */
    wg_sched_event_t *ev;     /* [cap_ev] this step's events */
    size_t *ev_text_off;      /* [cap_ev] offsets of event texts in arena */
    size_t n_ev;              /* events */
    size_t cap_ev;            /* capacity */
    char *arena;              /* this step's event texts */
    size_t n_arena;           /* bytes used */
    size_t cap_arena;         /* capacity */
    s_pending_t *pend;        /* [n_pend] cancellations to report */
    size_t n_pend;            /* count */
    size_t cap_pend;          /* capacity */
    int64_t next_handle;      /* next handle */
    int64_t n_arrivals;       /* submit counter */
    int64_t n_admits;         /* admission counter */
    wg_sched_stats_t st;      /* counters */
};

wg_sched_cfg_t wg_sched_defaults(void) {
    wg_sched_cfg_t c = {0};
    c.block_tokens = WG_KV_DEFAULT_BLOCK;
    c.max_seqs = 64;
    c.max_batch_tokens = 512;
    c.n_threads = 1;
    c.max_waiting_steps = 64;
    return c;
}

const char *wg_finish_name(wg_finish_t f) {
    switch (f) {
    case WG_FINISH_STOP: return "stop";
    case WG_FINISH_LENGTH: return "length";
    case WG_FINISH_CANCELLED: return "cancelled";
    default: return NULL;
    }
}

/* Default cache of a recurrent model (mamba, rwkv): one fixed-size state per
 * running sequence, so max_seqs states (a running sequence never needs more;
 * admission waits for a free state, and a preempted one restarts from zero). */
static size_t s_recurrent_budget(const wg_model_t *m, int32_t max_seqs) {
    return (size_t)max_seqs * wg_model_state_bytes(m);
}

wg_sched_t *wg_sched_new(const wg_model_t *model, const wg_tok_t *tok, const wg_sched_cfg_t *cfg) {
    WG_ASSERT(model);
    const wg_hparams_t *hp = wg_model_hparams(model);
    wg_sched_cfg_t c = wg_sched_defaults();
    if (cfg) {
        if (cfg->kv_budget_bytes) c.kv_budget_bytes = cfg->kv_budget_bytes;
        if (cfg->block_tokens) c.block_tokens = cfg->block_tokens;
        if (cfg->max_seqs) c.max_seqs = cfg->max_seqs;
        if (cfg->max_batch_tokens) c.max_batch_tokens = cfg->max_batch_tokens;
        if (cfg->prefill_chunk) c.prefill_chunk = cfg->prefill_chunk;
        if (cfg->n_threads) c.n_threads = cfg->n_threads;
        if (cfg->max_waiting_steps) c.max_waiting_steps = cfg->max_waiting_steps;
        if (cfg->device) c.device = cfg->device;
        if (cfg->kv_type) c.kv_type = cfg->kv_type;
        if (cfg->kv_prefault) c.kv_prefault = true;
        if (cfg->prefix_cache) c.prefix_cache = cfg->prefix_cache < 0 ? -1 : 0;
        if (cfg->max_context) c.max_context = cfg->max_context;
    }
    if (c.block_tokens < 1 || c.max_seqs < 1 || c.max_batch_tokens < 1 || c.prefill_chunk < 0 ||
        c.n_threads < 1 || c.max_waiting_steps < 1) {
        wg_error(WG_ERR_INVAL,
                 "sched: bad config block_tokens=%d max_seqs=%d max_batch_tokens=%d prefill_chunk=%d "
                 "n_threads=%d max_waiting_steps=%d",
                 c.block_tokens, c.max_seqs, c.max_batch_tokens, c.prefill_chunk, c.n_threads,
                 c.max_waiting_steps);
        return NULL;
    }
    /* Every running sequence must be able to decode in the same step. */
    if (c.max_batch_tokens < c.max_seqs) c.max_batch_tokens = c.max_seqs;
    if (c.prefill_chunk == 0 || c.prefill_chunk > c.max_batch_tokens) c.prefill_chunk = c.max_batch_tokens;
    if (!c.kv_budget_bytes) {
        int64_t ctx = hp->n_ctx_train > 0 && hp->n_ctx_train < 1024 ? hp->n_ctx_train : 1024;
        size_t b = (size_t)c.max_seqs * (size_t)ctx * wg_model_kv_token_bytes(model, c.kv_type);
        c.kv_budget_bytes = b < ((size_t)1 << 30) ? b : ((size_t)1 << 30);
        if (hp->recurrent) c.kv_budget_bytes = s_recurrent_budget(model, c.max_seqs);
    }
    wg_sched_t *s = calloc(1, sizeof *s);
    if (!s) {
        wg_error(WG_ERR_NOMEM, "sched");
        return NULL;
    }
    s->m = model;
    s->tok = tok;
    s->cfg = c;
    s->n_vocab = hp->n_vocab;
    s->max_ctx = wg_model_context_limit(model, c.max_context);
    s->eos = tok ? wg_tok_eos(tok) : hp->eos;
    s->next_handle = 1;
    s->kv = wg_model_kv_new_typed(model, c.kv_budget_bytes, c.block_tokens, c.device, c.kv_type);
    if (!s->kv) goto fail;
    if (c.kv_prefault) wg_kv_prefault(s->kv);
    if (c.prefix_cache >= 0 && !hp->recurrent && !wg_kv_device(s->kv) && wg_kv_enable_prefix_cache(s->kv) != WG_OK)
        goto fail;
    s->pool = wg_pool_new(c.n_threads);
    if (!s->pool) goto fail;
    s->batch = malloc((size_t)c.max_batch_tokens * sizeof *s->batch);
    s->out_seq = malloc((size_t)c.max_seqs * sizeof *s->out_seq);
    s->smp = malloc((size_t)c.max_seqs * sizeof *s->smp);
    s->logits = malloc((size_t)c.max_seqs * (size_t)s->n_vocab * sizeof(float));
    if (!s->batch || !s->out_seq || !s->smp || !s->logits) {
        wg_error(WG_ERR_NOMEM, "sched: step buffers for %d tokens, %d sequences", c.max_batch_tokens,
                 c.max_seqs);
        goto fail;
    }
    s->st.kv_blocks = wg_kv_n_blocks(s->kv);
    s->st.kv_block_bytes = wg_kv_block_bytes(s->kv);
    if (hp->n_swa > 0 && !hp->recurrent && !wg_kv_device(s->kv)) {
        s->window = hp->n_swa;
        for (int il = 0; il < hp->n_layer; il++)
            if (!wg_layer_is_swa(hp, il)) s->window = 0; /* a full-attention layer reads every position */
    }
    return s;
fail:
    wg_sched_free(&s);
    return NULL;
}

static void s_seq_destroy(s_seq_t *q) {
    if (!q) return;
    wg_sampler_free(&q->sampler);
    wg_detok_free(&q->detok);
    wg_stopper_free(&q->stopper);
    free(q->bias);
    free(q->stop_ids);
    free(q->toks);
    free(q);
}

/* JSON mode's view of a token: the bytes the detokenizer emits for it. */
static size_t s_json_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    return wg_tok_piece((const wg_tok_t *)ctx, id, false, buf, cap);
}

void wg_sched_free(wg_sched_t **ps) {
    if (!ps || !*ps) return;
    wg_sched_t *s = *ps;
    for (int32_t i = 0; i < s->n_seqs; i++) s_seq_destroy(s->seqs[i]);
    free(s->seqs);
    free(s->order);
    free(s->batch);
    free(s->out_seq);
    free(s->smp);
    free(s->logits);
    free(s->ev);
    free(s->ev_text_off);
    free(s->arena);
    free(s->pend);
    wg_json_vocab_free(&s->json);
    wg_kv_free(&s->kv);
    wg_pool_destroy(&s->pool);
    free(s);
    *ps = NULL;
}

const wg_sched_cfg_t *wg_sched_cfg(const wg_sched_t *s) { return &s->cfg; }
const wg_kv_t *wg_sched_kv(const wg_sched_t *s) { return s->kv; }

bool wg_sched_busy(const wg_sched_t *s) {
    if (s->n_pend > 0) return true;
    for (int32_t i = 0; i < s->n_seqs; i++)
        if (!s->seqs[i]->paused) return true;
    return false;
}


void wg_sched_stats(const wg_sched_t *s, wg_sched_stats_t *out) {
    *out = s->st;
    out->n_running = 0;
    out->n_waiting = 0;
    for (int32_t i = 0; i < s->n_seqs; i++) {
        if (s->seqs[i]->state == S_RUNNING) out->n_running++;
        else out->n_waiting++;
    }
    out->kv_free_blocks = wg_kv_n_free_blocks(s->kv);
    out->prefix_cache = wg_kv_prefix_cache_on(s->kv);
    out->kv_cached_blocks = wg_kv_n_cached_blocks(s->kv);
    out->kv_evicted_blocks = wg_kv_n_evicted_blocks(s->kv);
}

/* ---- submit / cancel ---- */

wg_status wg_sched_submit(wg_sched_t *s, const wg_sched_req_t *req, wg_seq_handle_t *handle) {
    WG_ASSERT(s && req && handle);
    *handle = 0;
    if (!req->prompt || req->n_prompt == 0) return wg_error(WG_ERR_INVAL, "request: prompt is empty");
    if (req->n_prompt > (size_t)INT32_MAX / 2)
        return wg_error(WG_ERR_RANGE, "request: prompt of %zu tokens", req->n_prompt);
    for (size_t i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= s->n_vocab)
            return wg_error(WG_ERR_INVAL, "request: prompt[%zu]=%d outside the vocabulary of %d", i,
                            req->prompt[i], s->n_vocab);
    if (req->n_stop > WG_MAX_STOP)
        return wg_error(WG_ERR_INVAL, "request: %zu stop strings (at most %d)", req->n_stop, WG_MAX_STOP);
    for (size_t i = 0; i < req->n_stop; i++)
        if (!req->stop || !req->stop[i] || !req->stop[i][0])
            return wg_error(WG_ERR_INVAL, "request: stop[%zu] is empty", i);
    for (size_t i = 0; i < req->n_stop_ids; i++)
        if (!req->stop_ids || req->stop_ids[i] < 0 || req->stop_ids[i] >= s->n_vocab)
            return wg_error(WG_ERR_INVAL, "request: stop token id #%zu outside the vocabulary", i);
    if ((int64_t)req->n_prompt >= s->max_ctx)
        return wg_error(WG_ERR_RANGE,
                        "request: prompt of %zu tokens does not fit the model's context of %lld tokens (one token "
                        "must still be generated; --max-context changes the limit)",
                        req->n_prompt, (long long)s->max_ctx);
    const int64_t cap_tokens = (int64_t)wg_kv_n_blocks(s->kv) * wg_kv_block_tokens(s->kv);
    if ((int64_t)req->n_prompt + 1 > cap_tokens)
        return wg_error(WG_ERR_RANGE, "request: prompt of %zu tokens does not fit the KV cache of %lld tokens",
                        req->n_prompt, (long long)cap_tokens);
    if (s->n_seqs == s->cap_seqs) {
        int32_t nc = s->cap_seqs ? s->cap_seqs * 2 : 64;
        s_seq_t **ns = realloc(s->seqs, (size_t)nc * sizeof *ns);
        if (!ns) return wg_error(WG_ERR_NOMEM, "sched: sequence list of %d", nc);
        s->seqs = ns;
        s_seq_t **no = realloc(s->order, (size_t)nc * sizeof *no);
        if (!no) return wg_error(WG_ERR_NOMEM, "sched: sequence list of %d", nc);
        s->order = no;
        s->cap_seqs = nc;
    }
    s_seq_t *q = calloc(1, sizeof *q);
    if (!q) return wg_error(WG_ERR_NOMEM, "sched: sequence");
    q->cap_toks = (int32_t)req->n_prompt + (req->max_tokens > 0 ? req->max_tokens : 16);
    q->toks = malloc((size_t)q->cap_toks * sizeof(int32_t));
    if (!q->toks) goto nomem;
    memcpy(q->toks, req->prompt, req->n_prompt * sizeof(int32_t));
    q->n_toks = q->n_prompt = (int32_t)req->n_prompt;
    q->kv_seq = -1;
    wg_sampling_params_t sp = req->sampling;
    if (sp.n_logit_bias) {
        if (!sp.logit_bias) {
            s_seq_destroy(q);
            return wg_error(WG_ERR_INVAL, "request: n_logit_bias=%zu without entries", sp.n_logit_bias);
        }
        q->bias = malloc(sp.n_logit_bias * sizeof *q->bias);
        if (!q->bias) goto nomem;
        memcpy(q->bias, sp.logit_bias, sp.n_logit_bias * sizeof *q->bias);
        sp.logit_bias = q->bias;
    }
    q->sampler = wg_sampler_new(&sp, s->n_vocab);
    if (!q->sampler) {
        s_seq_destroy(q);
        return WG_ERR_INVAL; /* wg_errmsg names the bad parameter */
    }
    wg_sampler_accept_prompt(q->sampler, q->toks, (size_t)q->n_prompt);
    if (req->json) {
        if (!s->tok) {
            s_seq_destroy(q);
            return wg_error(WG_ERR_INVAL, "request: JSON mode needs the model's tokenizer");
        }
        wg_status jst;
        if (!s->json && (jst = wg_json_vocab_new(s->n_vocab, s_json_piece, (void *)s->tok, &s->json))) {
            s_seq_destroy(q);
            return jst;
        }
        wg_json_guide_t *g = wg_json_guide_new(s->json);
        if (!g) goto nomem;
        wg_sampler_set_json(q->sampler, g);
    }
    q->want_lp = sp.logprobs || sp.n_logprobs > 0;
    if (s->tok) {
        q->detok = wg_detok_new(s->tok, false);
        if (!q->detok) goto nomem;
    }
    q->stopper = wg_stopper_new(req->stop, req->n_stop);
    if (!q->stopper) goto nomem;
    if (req->n_stop_ids) {
        q->stop_ids = malloc(req->n_stop_ids * sizeof(int32_t));
        if (!q->stop_ids) goto nomem;
        memcpy(q->stop_ids, req->stop_ids, req->n_stop_ids * sizeof(int32_t));
        q->n_stop_ids = req->n_stop_ids;
    }
    q->max_tokens = req->max_tokens;
    q->ignore_eos = req->ignore_eos;
    q->priority = req->priority;
    q->user = req->user;
    q->handle = s->next_handle++;
    q->arrival = s->n_arrivals++;
    q->wait_since = s->st.n_steps;
    q->preempted_at = -1;
    q->state = S_WAITING;
    s->seqs[s->n_seqs++] = q;
    *handle = q->handle;
    return WG_OK;
nomem:
    s_seq_destroy(q);
    return wg_error(WG_ERR_NOMEM, "sched: request of %zu tokens", req->n_prompt);
}

static int32_t s_find(const wg_sched_t *s, wg_seq_handle_t h) {
    for (int32_t i = 0; i < s->n_seqs; i++)
        if (s->seqs[i]->handle == h) return i;
    return -1;
}

/* Remove sequence i from the live list (order kept) and free it with its blocks. */
static void s_retire(wg_sched_t *s, int32_t i) {
    s_seq_t *q = s->seqs[i];
    if (q->kv_seq >= 0) wg_kv_seq_free(s->kv, q->kv_seq);
    memmove(s->seqs + i, s->seqs + i + 1, (size_t)(s->n_seqs - i - 1) * sizeof *s->seqs);
    s->n_seqs--;
    s_seq_destroy(q);
}

wg_status wg_sched_cancel(wg_sched_t *s, wg_seq_handle_t handle) {
    WG_ASSERT(s);
    int32_t i = s_find(s, handle);
    if (i < 0) return wg_error(WG_ERR_NOTFOUND, "sched: no live sequence with handle %lld", (long long)handle);
    if (s->n_pend == s->cap_pend) {
        size_t nc = s->cap_pend ? s->cap_pend * 2 : 16;
        s_pending_t *np = realloc(s->pend, nc * sizeof *np);
        if (!np) return wg_error(WG_ERR_NOMEM, "sched: cancel list");
        s->pend = np;
        s->cap_pend = nc;
    }
    s_seq_t *q = s->seqs[i];
    s->pend[s->n_pend++] = (s_pending_t){q->handle, q->user, q->n_prompt, q->n_toks - q->n_prompt};
    s_retire(s, i);
    return WG_OK;
}

/* Pause/resume only flip a flag that s_plan reads: a paused sequence is
 * skipped when the batch is built (no decode, no prefill, no admission) but
 * keeps its KV blocks, sampler and detokenizer, so resuming continues exactly
 * where it stopped. It gets no preemption preference either way: if the cache
 * runs out, the newest running sequence is preempted, paused or not. */
wg_status wg_sched_pause(wg_sched_t *s, wg_seq_handle_t handle) {
    WG_ASSERT(s);
    int32_t i = s_find(s, handle);
    if (i < 0) return wg_error(WG_ERR_NOTFOUND, "sched: no live sequence with handle %lld", (long long)handle);
    s->seqs[i]->paused = true;
    return WG_OK;
}

wg_status wg_sched_resume(wg_sched_t *s, wg_seq_handle_t handle) {
    WG_ASSERT(s);
    int32_t i = s_find(s, handle);
    if (i < 0) return wg_error(WG_ERR_NOTFOUND, "sched: no live sequence with handle %lld", (long long)handle);
    s->seqs[i]->paused = false;
    return WG_OK;
}

/* ---- events ---- */

static wg_status s_ev_push(wg_sched_t *s, const s_seq_t *q, int32_t token, const char *text, size_t len,
                           wg_finish_t fin, const wg_sample_t *smp) {
    if (s->n_ev == s->cap_ev) {
        size_t nc = s->cap_ev ? s->cap_ev * 2 : 64;
        wg_sched_event_t *ne = realloc(s->ev, nc * sizeof *ne);
        if (!ne) return wg_error(WG_ERR_NOMEM, "sched: events");
        s->ev = ne;
        size_t *no = realloc(s->ev_text_off, nc * sizeof *no);
        if (!no) return wg_error(WG_ERR_NOMEM, "sched: events");
        s->ev_text_off = no;
        s->cap_ev = nc;
    }
    if (s->n_arena + len + 1 > s->cap_arena) {
        size_t nc = s->cap_arena ? s->cap_arena : 4096;
        while (nc < s->n_arena + len + 1) nc *= 2;
        char *na = realloc(s->arena, nc);
        if (!na) return wg_error(WG_ERR_NOMEM, "sched: event text");
        s->arena = na;
        s->cap_arena = nc;
    }
    s->ev_text_off[s->n_ev] = s->n_arena;
    if (len) memcpy(s->arena + s->n_arena, text, len);
    s->arena[s->n_arena + len] = '\0';
    s->n_arena += len + 1;
    wg_sched_event_t *e = &s->ev[s->n_ev++];
    memset(e, 0, sizeof *e);
    e->handle = q->handle;
    e->user = q->user;
    e->token = token;
    e->text_len = len;
    e->finish = fin;
    e->n_prompt = q->n_prompt;
    e->n_generated = q->n_toks - q->n_prompt;
    if (smp && q->want_lp) {
        e->has_logprobs = true;
        e->sample = *smp;
    } else if (smp) {
        e->sample.token = smp->token;
        e->sample.logprob = smp->logprob;
    }
    return WG_OK;
}

/* ---- scheduling ---- */

static bool s_is_stop_token(const wg_sched_t *s, const s_seq_t *q, int32_t t) {
    for (size_t i = 0; i < q->n_stop_ids; i++)
        if (q->stop_ids[i] == t) return true;
    if (q->ignore_eos) return false;
    if (s->tok) return wg_tok_is_eog(s->tok, t);
    return t == s->eos;
}

/* Back to the waiting queue: free the blocks, keep every token and the
 * sampling state; its K/V will be recomputed on re-admission. */
static void s_preempt(wg_sched_t *s, s_seq_t *q) {
    wg_kv_seq_free(s->kv, q->kv_seq);
    q->kv_seq = -1;
    q->n_computed = 0;
    q->state = S_WAITING;
    q->wait_since = s->st.n_steps;
    q->preempted_at = s->st.n_steps;
    q->plan_n = 0;
    q->plan_logits = false;
    s->st.n_preemptions++;
}

/* Running sequences, oldest admission first. */
static int s_cmp_admitted(const void *a, const void *b) {
    const s_seq_t *x = *(s_seq_t *const *)a, *y = *(s_seq_t *const *)b;
    return (x->admitted > y->admitted) - (x->admitted < y->admitted);
}

/* Waiting order: starving first (by arrival), then priority desc, arrival asc. */
static int64_t g_now_step; /* comparator context; the scheduler is single-threaded per instance */
static int32_t g_max_wait;
static int s_cmp_waiting(const void *a, const void *b) {
    const s_seq_t *x = *(s_seq_t *const *)a, *y = *(s_seq_t *const *)b;
    bool sx = g_now_step - x->wait_since >= g_max_wait, sy = g_now_step - y->wait_since >= g_max_wait;
    if (sx != sy) return sx ? -1 : 1;
    if (!sx && x->priority != y->priority) return x->priority > y->priority ? -1 : 1;
    return (x->arrival > y->arrival) - (x->arrival < y->arrival);
}

/* Largest c <= want such that seq q can grow to n_computed + c with the free blocks. */
static int32_t s_fit(const wg_sched_t *s, const s_seq_t *q, int32_t want) {
    if (want <= 0) return 0;
    const int32_t len = q->n_computed + want;
    const int32_t extra = wg_kv_blocks_needed(s->kv, q->kv_seq, len);
    const int32_t nfree = wg_kv_n_free_blocks(s->kv);
    if (extra <= nfree) return want;
    const int32_t bt = wg_kv_block_tokens(s->kv);
    const int64_t have = (int64_t)(len + bt - 1) / bt - extra; /* blocks the sequence holds */
    int64_t c = (have + nfree) * bt - q->n_computed;
    return c < 0 ? 0 : (int32_t)(c < want ? c : want);
}

static void s_plan_add(wg_sched_t *s, s_seq_t *q, int32_t c, int32_t *nb) {
    for (int32_t j = 0; j < c; j++) {
        wg_batch_tok_t *b = &s->batch[(*nb)++];
        b->token = q->toks[q->n_computed + j];
        b->pos = q->n_computed + j;
        b->seq = q->kv_seq;
        b->want_logits = false;
    }
    q->plan_n = c;
    q->plan_logits = q->n_computed + c == q->n_toks;
    if (q->plan_logits) {
        s->batch[*nb - 1].want_logits = true;
        s->out_seq[s->n_out++] = q; /* logits rows come in batch order */
    }
}

/* Build this step's batch into s->batch; returns its token count. May
 * preempt, and may finish sequences that can never fit (events pushed). */
static wg_status s_plan(wg_sched_t *s, int32_t *n_batch) {
    const int32_t bt = wg_kv_block_tokens(s->kv);
    int32_t budget = s->cfg.max_batch_tokens;
    int32_t nb = 0;
    wg_status st;
    s->n_out = 0;
    for (int32_t i = 0; i < s->n_seqs; i++) {
        s->seqs[i]->plan_n = 0;
        s->seqs[i]->plan_logits = false;
    }
    for (;;) {
        /* Running sequences, oldest first. */
        int32_t nr = 0;
        for (int32_t i = 0; i < s->n_seqs; i++)
            if (s->seqs[i]->state == S_RUNNING) s->order[nr++] = s->seqs[i];
        qsort(s->order, (size_t)nr, sizeof *s->order, s_cmp_admitted);

        /* 1. Decodes: one token each; out of blocks -> preempt the newest. */
        for (int32_t i = 0; i < nr && budget > 0; i++) {
            s_seq_t *q = s->order[i];
            if (q->state != S_RUNNING || q->paused || q->plan_n || q->n_toks - q->n_computed != 1) continue;
            bool self = false;
            while (wg_kv_blocks_needed(s->kv, q->kv_seq, q->n_toks) > wg_kv_n_free_blocks(s->kv)) {
                s_seq_t *victim = q;
                for (int32_t j = nr - 1; j > i; j--) {
                    s_seq_t *v = s->order[j];
                    if (v && v->state == S_RUNNING && v->plan_n == 0) {
                        victim = v;
                        break;
                    }
                }
                s_preempt(s, victim);
                if (victim == q) {
                    self = true;
                    break;
                }
            }
            if (self) continue;
            if ((st = wg_kv_reserve(s->kv, q->kv_seq, q->n_toks))) return st;
            s_plan_add(s, q, 1, &nb);
            budget--;
        }
        /* 2. Running sequences still (re)filling their context, oldest first. */
        for (int32_t i = 0; i < nr && budget > 0; i++) {
            s_seq_t *q = s->order[i];
            if (!q || q->state != S_RUNNING || q->paused || q->plan_n || q->n_toks - q->n_computed <= 1) continue;
            int32_t want = q->n_toks - q->n_computed;
            if (want > s->cfg.prefill_chunk) want = s->cfg.prefill_chunk;
            if (want > budget) want = budget;
            int32_t c = s_fit(s, q, want);
            if (c <= 0) continue;
            if ((st = wg_kv_reserve(s->kv, q->kv_seq, q->n_computed + c))) return st;
            s_plan_add(s, q, c, &nb);
            budget -= c;
        }
        /* 3. Admit waiting sequences in order; the first that does not fit stops admission. */
        int32_t nw = 0, n_running = 0, n_active = 0;
        for (int32_t i = 0; i < s->n_seqs; i++) {
            if (s->seqs[i]->state == S_WAITING) {
                if (!s->seqs[i]->paused) s->order[nw++] = s->seqs[i];
            } else {
                n_running++;
                n_active += !s->seqs[i]->paused;
            }
        }
        g_now_step = s->st.n_steps;
        g_max_wait = s->cfg.max_waiting_steps;
        qsort(s->order, (size_t)nw, sizeof *s->order, s_cmp_waiting);
        for (int32_t i = 0; i < nw && budget > 0 && n_running < s->cfg.max_seqs; i++) {
            s_seq_t *q = s->order[i];
            /* Re-admitting what was just preempted would only undo it. */
            if (q->preempted_at == s->st.n_steps) break;
            if ((st = wg_kv_seq_new(s->kv, &q->kv_seq))) return st;
            /* Cached full blocks of its tokens (prefix cache): at least the
             * last token is computed here, so its logits come out. */
            const int32_t hit = wg_kv_prefix_match(s->kv, q->kv_seq, q->toks, q->n_toks - 1);
            int32_t want = q->n_toks - hit < s->cfg.prefill_chunk ? q->n_toks - hit : s->cfg.prefill_chunk;
            if (want > budget) want = budget;
            int64_t room = (int64_t)wg_kv_n_free_blocks(s->kv) * bt;
            int32_t c = room < want ? (int32_t)room : want;
            if (c <= 0 || (st = wg_kv_reserve(s->kv, q->kv_seq, hit + c))) {
                wg_kv_seq_free(s->kv, q->kv_seq);
                q->kv_seq = -1;
                if (c <= 0) break;
                return st;
            }
            int64_t waited = s->st.n_steps - q->wait_since;
            if (waited > s->st.max_wait_steps) s->st.max_wait_steps = (int32_t)waited;
            q->state = S_RUNNING;
            q->n_computed = hit;
            s->st.n_prefix_hit_tokens += hit;
            q->admitted = s->n_admits++;
            s_plan_add(s, q, c, &nb);
            budget -= c;
            n_running++;
            n_active++;
        }
        /* Only paused sequences hold blocks: nothing to do until a resume. */
        if (nb > 0 || n_active == 0) break;
        /* Nothing fits although sequences hold blocks (all half-filled): free
         * the newest so the others can progress, then plan again. */
        s_seq_t *newest = NULL;
        for (int32_t i = 0; i < s->n_seqs; i++) {
            s_seq_t *q = s->seqs[i];
            if (q->state == S_RUNNING && (!newest || q->admitted > newest->admitted)) newest = q;
        }
        s_preempt(s, newest);
    }
    *n_batch = nb;
    return WG_OK;
}

/* Feed text through the stopper; push the safe part as an event. */
static wg_status s_emit_token(wg_sched_t *s, s_seq_t *q, int32_t token, const wg_sample_t *smp, bool *done) {
    wg_status st;
    wg_finish_t fin = WG_FINISH_NONE;
    size_t n_gen = (size_t)(q->n_toks - q->n_prompt);
    char *piece = NULL, *emit = NULL, *tail = NULL;
    bool stopped = false;
    /* Accumulated text of this event. */
    char *text = NULL;
    size_t len = 0;
    if (s_is_stop_token(s, q, token)) {
        fin = WG_FINISH_STOP;
    } else if (q->detok) {
        if ((st = wg_detok_push(q->detok, token, &piece))) goto out;
        /* Nothing new (an incomplete UTF-8 character): the stopper has nothing to see. */
        if (*piece) {
            if ((st = wg_stopper_push(q->stopper, piece, strlen(piece), &emit, &stopped))) goto out;
            text = emit;
            emit = NULL;
            len = strlen(text);
            if (stopped) fin = WG_FINISH_STOP;
        }
    }
    /* JSON mode: the object is whole, nothing can follow. */
    if (fin == WG_FINISH_NONE && wg_sampler_json_done(q->sampler)) fin = WG_FINISH_STOP;
    if (fin == WG_FINISH_NONE && q->max_tokens > 0 && n_gen >= (size_t)q->max_tokens) fin = WG_FINISH_LENGTH;
    if (fin == WG_FINISH_NONE && ((int64_t)q->n_toks >= (int64_t)wg_kv_n_blocks(s->kv) * wg_kv_block_tokens(s->kv) ||
                                  (int64_t)q->n_toks >= s->max_ctx))
        fin = WG_FINISH_LENGTH;
    if (fin != WG_FINISH_NONE && !stopped) {
        /* Release what the detokenizer and the stopper still hold. */
        if (q->detok) {
            if ((st = wg_detok_flush(q->detok, &tail))) goto out;
            if (*tail) {
                if ((st = wg_stopper_push(q->stopper, tail, strlen(tail), &emit, &stopped))) goto out;
                if (stopped) fin = WG_FINISH_STOP;
            }
        }
        char *rest = NULL;
        if (!stopped && (st = wg_stopper_flush(q->stopper, &rest))) goto out;
        size_t le = emit ? strlen(emit) : 0, lr = rest ? strlen(rest) : 0;
        char *nt = realloc(text, len + le + lr + 1);
        if (!nt) {
            free(rest);
            st = wg_error(WG_ERR_NOMEM, "sched: text");
            goto out;
        }
        text = nt;
        if (le) memcpy(text + len, emit, le);
        if (lr) memcpy(text + len + le, rest, lr);
        len += le + lr;
        text[len] = '\0';
        free(rest);
    }
    st = s_ev_push(s, q, token, text ? text : "", len, fin, smp);
    *done = fin != WG_FINISH_NONE;
out:
    free(piece);
    free(emit);
    free(tail);
    free(text);
    return st;
}

/* Sampling of one step's logits rows on the forward threads: each row has
 * its own sequence's sampler (state and random stream), so which thread
 * draws a row never changes the token. The first failure (by row) is kept
 * with its message, as the worker's own error text is thread-local. */
typedef struct {
    wg_sched_t *s;
    int32_t n;
    _Atomic int32_t next;
    pthread_mutex_t mu;      /* guards the three below */
    int32_t bad_row;         /* first failing row, or n */
    wg_status bad_st;        /* its status */
    char msg[1024];          /* and message */
} s_sample_job_t;

static void s_sample_part(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    s_sample_job_t *j = arg;
    for (;;) {
        const int32_t r = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (r >= j->n) break;
        wg_sched_t *s = j->s;
        const wg_status st =
            wg_sampler_sample(s->out_seq[r]->sampler, s->logits + (size_t)r * (size_t)s->n_vocab, &s->smp[r]);
        if (st) {
            pthread_mutex_lock(&j->mu);
            if (r < j->bad_row) {
                j->bad_row = r;
                j->bad_st = st;
                snprintf(j->msg, sizeof j->msg, "%s", wg_errmsg());
            }
            pthread_mutex_unlock(&j->mu);
        }
    }
}

/* Below this many rows the caller samples alone (waking the pool costs more). */
#define S_SAMPLE_PAR_MIN 4

static wg_status s_sample_rows(wg_sched_t *s, int32_t n) {
    s_sample_job_t j = {.s = s, .n = n, .bad_row = n};
    atomic_init(&j.next, 0);
    pthread_mutex_init(&j.mu, NULL);
    if (n >= S_SAMPLE_PAR_MIN && wg_pool_size(s->pool) > 1)
        wg_pool_run_any(s->pool, s_sample_part, &j);
    else
        s_sample_part(&j, 0, 1);
    pthread_mutex_destroy(&j.mu);
    if (j.bad_row < n) return wg_error(j.bad_st, "%s", j.msg);
    return WG_OK;
}

wg_status wg_sched_step(wg_sched_t *s, const wg_sched_event_t **events, size_t *n_events) {
    WG_ASSERT(s && events && n_events);
    wg_status st = WG_OK;
    s->n_ev = 0;
    s->n_arena = 0;
    *events = NULL;
    *n_events = 0;
    /* Cancellations since the last step. */
    for (size_t i = 0; i < s->n_pend; i++) {
        s_seq_t tmp = {0};
        tmp.handle = s->pend[i].handle;
        tmp.user = s->pend[i].user;
        tmp.n_prompt = s->pend[i].n_prompt;
        tmp.n_toks = s->pend[i].n_prompt + s->pend[i].n_generated;
        if ((st = s_ev_push(s, &tmp, -1, "", 0, WG_FINISH_CANCELLED, NULL))) return st;
    }
    s->n_pend = 0;

    int32_t nb = 0;
    if ((st = s_plan(s, &nb))) goto fix;
    if (nb > 0) {
        if ((st = wg_model_forward(s->m, s->kv, s->pool, s->batch, nb, s->logits))) goto fix;
        s->st.n_steps++;
        s->st.last_batch_tokens = nb;
        int32_t used = wg_kv_n_blocks(s->kv) - wg_kv_n_free_blocks(s->kv);
        if (used > s->st.kv_peak_blocks) s->st.kv_peak_blocks = used;
        const int32_t n_out = s->n_out;
        for (int32_t i = 0; i < s->n_seqs; i++) {
            s_seq_t *q = s->seqs[i];
            if (q->state != S_RUNNING || !q->plan_n) continue;
            q->n_computed += q->plan_n;
            wg_kv_prefix_commit(s->kv, q->kv_seq, q->toks, q->n_computed);
            /* The next token (position n_computed) reads keys from n_computed - window + 1 on. */
            if (s->window)
                s->st.kv_released_blocks += wg_kv_release_before(s->kv, q->kv_seq, q->n_computed - s->window + 1);
            if (q->plan_logits) s->st.n_decode_tokens++;
            s->st.n_prefill_tokens += q->plan_n - (q->plan_logits ? 1 : 0);
        }
        if ((st = s_sample_rows(s, n_out))) goto fix;
        for (int32_t r = 0; r < n_out; r++) {
            s_seq_t *q = s->out_seq[r];
            const wg_sample_t smp = s->smp[r];
            if (q->n_toks == q->cap_toks) {
                int32_t nc = q->cap_toks * 2;
                int32_t *nt = realloc(q->toks, (size_t)nc * sizeof(int32_t));
                if (!nt) {
                    st = wg_error(WG_ERR_NOMEM, "sched: token list of %d", nc);
                    goto fix;
                }
                q->toks = nt;
                q->cap_toks = nc;
            }
            q->toks[q->n_toks++] = smp.token;
            bool done = false;
            if ((st = s_emit_token(s, q, smp.token, &smp, &done))) goto fix;
            if (done) s_retire(s, s_find(s, q->handle));
        }
    }
fix:
    for (size_t i = 0; i < s->n_ev; i++) s->ev[i].text = s->arena + s->ev_text_off[i];
    *events = s->ev;
    *n_events = s->n_ev;
    return st;
}
