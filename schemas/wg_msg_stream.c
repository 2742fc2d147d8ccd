/* wg_msg_stream — codec for TOKEN events and METRICS (PROTOCOL.md §8). */
#include "wg_msg_stream.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wg_msg_mp.h"

#define TRY(x)                             \
    do {                                   \
        if ((st = (x)) != WG_OK) goto err; \
    } while (0)

size_t wg_msg_token_topic(const char *job_id, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "t/%s", job_id);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t wg_msg_metrics_topic(const char *worker_id, char *buf, size_t cap) {
    int n = snprintf(buf, cap, "m/%s", worker_id);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

wg_status wg_msg_token_encode(const wg_msg_token *m, wg_msg_buf *out) {
    if (!m->job_id) return wg_error(WG_ERR_INVAL, "TOKEN: job_id is required");
    if (m->n_top > WG_MSG_MAX_TOP_LOGPROBS)
        return wg_error(WG_ERR_RANGE, "TOKEN: %u top_logprobs (max %d)", m->n_top, WG_MSG_MAX_TOP_LOGPROBS);
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    uint32_t n = 5 + m->has_logprob + (m->n_top != 0) + (m->attempt != 0) + (m->finish_reason != NULL);
    msgpack_pack_map(&w.pk, n);
    wg_mp_put_kstr(&w, "job_id", m->job_id);
    wg_mp_put_kuint(&w, "seq", m->seq);
    wg_mp_put_kuint(&w, "token_id", m->token_id);
    wg_mp_put_kstr(&w, "text_delta", m->text_delta);
    wg_mp_put_kbool(&w, "final", m->final);
    if (m->has_logprob) wg_mp_put_kfloat(&w, "logprob", m->logprob);
    if (m->n_top) {
        wg_mp_put_key(&w, "top_logprobs");
        msgpack_pack_array(&w.pk, m->n_top);
        for (uint32_t i = 0; i < m->n_top; i++) {
            msgpack_pack_array(&w.pk, 2);
            msgpack_pack_uint32(&w.pk, m->top[i].token_id);
            msgpack_pack_float(&w.pk, m->top[i].logprob);
        }
    }
    if (m->attempt) wg_mp_put_kuint(&w, "attempt", m->attempt);
    if (m->finish_reason) wg_mp_put_kstr(&w, "finish_reason", m->finish_reason);
    return wg_mp_finish(&w, out);
}

void wg_msg_token_clear(wg_msg_token *m) {
    if (!m) return;
    free(m->job_id);
    free(m->text_delta);
    free(m->top);
    free(m->finish_reason);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_token_decode(const uint8_t *data, size_t len, wg_msg_token *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    bool have_seq = false, have_tok = false, have_text = false, have_final = false;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, "TOKEN", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "job_id")) TRY(wg_mp_strdup(&r, "job_id", 1, WG_MSG_MAX_ID, &out->job_id));
        else if (wg_mp_key_is(k, kl, "seq")) { TRY(wg_mp_uint(&r, "seq", UINT64_MAX, &out->seq)); have_seq = true; }
        else if (wg_mp_key_is(k, kl, "token_id")) { TRY(wg_mp_u32(&r, "token_id", 0, UINT32_MAX, &out->token_id)); have_tok = true; }
        else if (wg_mp_key_is(k, kl, "text_delta")) { TRY(wg_mp_strdup(&r, "text_delta", 0, WG_MSG_MAX_TEXT, &out->text_delta)); have_text = true; }
        else if (wg_mp_key_is(k, kl, "final")) { TRY(wg_mp_bool(&r, "final", &out->final)); have_final = true; }
        else if (wg_mp_key_is(k, kl, "logprob")) {
            double d;
            TRY(wg_mp_float(&r, "logprob", &d));
            out->logprob = (float)d;
            out->has_logprob = true;
        } else if (wg_mp_key_is(k, kl, "top_logprobs")) {
            uint32_t c;
            TRY(wg_mp_array(&r, "top_logprobs", WG_MSG_MAX_TOP_LOGPROBS, &c));
            free(out->top);
            out->top = calloc(c ? c : 1, sizeof *out->top);
            if (!out->top) { st = wg_error(WG_ERR_NOMEM, "top_logprobs"); goto err; }
            out->n_top = c;
            for (uint32_t q = 0; q < c; q++) {
                uint32_t two;
                double d;
                TRY(wg_mp_array(&r, "top_logprobs[]", 2, &two));
                if (two != 2) { st = wg_error(WG_ERR_FORMAT, "TOKEN: top_logprobs[%u] has %u items, expected 2", q, two); goto err; }
                TRY(wg_mp_u32(&r, "top_logprobs[].token_id", 0, UINT32_MAX, &out->top[q].token_id));
                TRY(wg_mp_float(&r, "top_logprobs[].logprob", &d));
                out->top[q].logprob = (float)d;
            }
        } else if (wg_mp_key_is(k, kl, "attempt")) TRY(wg_mp_u32(&r, "attempt", 0, UINT32_MAX, &out->attempt));
        else if (wg_mp_key_is(k, kl, "finish_reason")) TRY(wg_mp_strdup(&r, "finish_reason", 1, 16, &out->finish_reason));
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    if (!out->job_id) { st = wg_mp_missing(&r, "job_id"); goto err; }
    if (!have_seq) { st = wg_mp_missing(&r, "seq"); goto err; }
    if (!have_tok) { st = wg_mp_missing(&r, "token_id"); goto err; }
    if (!have_text) { st = wg_mp_missing(&r, "text_delta"); goto err; }
    if (!have_final) { st = wg_mp_missing(&r, "final"); goto err; }
    if (out->final && !out->finish_reason) { st = wg_mp_missing(&r, "finish_reason"); goto err; }
    return WG_OK;
err:
    wg_msg_token_clear(out);
    return st;
}

/* ---- metrics ---- */

wg_status wg_mp_metrics_check(const struct wg_msg_metrics *m, const char *msg) {
    if (m->n_model_stats > WG_MSG_MAX_MODELS)
        return wg_error(WG_ERR_RANGE, "%s: %u model_stats (max %d)", msg, m->n_model_stats, WG_MSG_MAX_MODELS);
    for (uint32_t i = 0; i < m->n_model_stats; i++)
        if (!m->model_stats[i].model || !m->model_stats[i].model[0])
            return wg_error(WG_ERR_INVAL, "%s: model_stats[%u] has no model", msg, i);
    return WG_OK;
}

void wg_mp_put_metrics(wg_mp_wr *w, const struct wg_msg_metrics *m) {
    msgpack_pack_map(&w->pk, 14 + (m->n_model_stats != 0));
    wg_mp_put_kstr(w, "worker_id", m->worker_id);
    wg_mp_put_kuint(w, "ts_ms", m->ts_ms);
    wg_mp_put_kfloat(w, "tokens_per_s", m->tokens_per_s);
    wg_mp_put_kuint(w, "running", m->running);
    wg_mp_put_kuint(w, "waiting", m->waiting);
    wg_mp_put_kuint(w, "credits", m->credits);
    wg_mp_put_kuint(w, "kv_used_blocks", m->kv_used_blocks);
    wg_mp_put_kuint(w, "kv_total_blocks", m->kv_total_blocks);
    wg_mp_put_kfloat(w, "kv_usage", m->kv_usage);
    wg_mp_put_kstrs(w, "models", m->models, m->n_models);
    wg_mp_put_kuint(w, "mem_used_bytes", m->mem_used_bytes);
    wg_mp_put_kuint(w, "mem_total_bytes", m->mem_total_bytes);
    wg_mp_put_kuint(w, "prompt_tokens_cached", m->prompt_tokens_cached);
    wg_mp_put_kuint(w, "prompt_tokens_computed", m->prompt_tokens_computed);
    if (m->n_model_stats) {
        wg_mp_put_key(w, "model_stats");
        msgpack_pack_array(&w->pk, m->n_model_stats);
        for (uint32_t i = 0; i < m->n_model_stats; i++) {
            const wg_msg_model_stat *s = &m->model_stats[i];
            msgpack_pack_map(&w->pk, 6);
            wg_mp_put_kstr(w, "model", s->model);
            wg_mp_put_kuint(w, "loads", s->loads);
            wg_mp_put_kuint(w, "load_failures", s->load_failures);
            wg_mp_put_kfloat(w, "load_seconds", s->load_seconds);
            wg_mp_put_kuint(w, "evictions", s->evictions);
            wg_mp_put_kuint(w, "resident_bytes", s->resident_bytes);
        }
    }
}

static void s_model_stats_free(wg_msg_model_stat **a, uint32_t *n) {
    for (uint32_t i = 0; *a && i < *n; i++) free((*a)[i].model);
    free(*a);
    *a = NULL;
    *n = 0;
}

/* `model_stats`: array (<= 64) of maps {model: str (required, unique),
 * loads, load_failures, evictions, resident_bytes: uint, load_seconds: float
 * (finite, >= 0)}; unknown keys inside an entry are skipped. */
static wg_status s_read_model_stats(wg_mp_rd *r, struct wg_msg_metrics *m) {
    uint32_t c;
    s_model_stats_free(&m->model_stats, &m->n_model_stats); /* a repeated key replaces */
    wg_status st = wg_mp_array(r, "model_stats", WG_MSG_MAX_MODELS, &c);
    if (st) return st;
    if (!(m->model_stats = calloc(c ? c : 1, sizeof *m->model_stats)))
        return wg_error(WG_ERR_NOMEM, "%s: model_stats", r->msg);
    for (uint32_t q = 0; q < c; q++) {
        wg_msg_model_stat *s = &m->model_stats[q];
        m->n_model_stats = q + 1; /* owned so far: freed by the caller's clear on error */
        uint32_t nk;
        if ((st = wg_mp_map(r, "model_stats[]", &nk))) return st;
        for (uint32_t i = 0; i < nk; i++) {
            const char *k;
            uint32_t kl;
            if ((st = wg_mp_key(r, &k, &kl))) return st;
            if (wg_mp_key_is(k, kl, "model")) st = wg_mp_strdup(r, "model_stats[].model", 1, WG_MSG_MAX_MODEL, &s->model);
            else if (wg_mp_key_is(k, kl, "loads")) st = wg_mp_uint(r, "model_stats[].loads", UINT64_MAX, &s->loads);
            else if (wg_mp_key_is(k, kl, "load_failures")) st = wg_mp_uint(r, "model_stats[].load_failures", UINT64_MAX, &s->load_failures);
            else if (wg_mp_key_is(k, kl, "evictions")) st = wg_mp_uint(r, "model_stats[].evictions", UINT64_MAX, &s->evictions);
            else if (wg_mp_key_is(k, kl, "resident_bytes")) st = wg_mp_uint(r, "model_stats[].resident_bytes", UINT64_MAX, &s->resident_bytes);
            else if (wg_mp_key_is(k, kl, "load_seconds")) {
                st = wg_mp_float(r, "model_stats[].load_seconds", &s->load_seconds);
                if (!st && !(isfinite(s->load_seconds) && s->load_seconds >= 0))
                    st = wg_error(WG_ERR_RANGE, "%s: model_stats[%u].load_seconds=%g must be finite and >= 0", r->msg, q,
                                  s->load_seconds);
            } else st = wg_mp_skip(r);
            if (st) return st;
        }
        if (!s->model) return wg_error(WG_ERR_FORMAT, "%s: model_stats[%u] has no 'model'", r->msg, q);
        for (uint32_t p = 0; p < q; p++)
            if (!strcmp(m->model_stats[p].model, s->model))
                return wg_error(WG_ERR_INVAL, "%s: model_stats[%u] repeats model '%s' of model_stats[%u]", r->msg, q,
                                s->model, p);
    }
    return WG_OK;
}

wg_status wg_mp_read_metrics(wg_mp_rd *r, struct wg_msg_metrics *m) {
    uint32_t n;
    wg_status st = wg_mp_map(r, "metrics", &n);
    if (st) return st;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        uint64_t u;
        if ((st = wg_mp_key(r, &k, &kl))) return st;
        if (wg_mp_key_is(k, kl, "worker_id")) st = wg_mp_strdup(r, "worker_id", 1, WG_MSG_MAX_ID, &m->worker_id);
        else if (wg_mp_key_is(k, kl, "ts_ms")) st = wg_mp_uint(r, "ts_ms", UINT64_MAX, &m->ts_ms);
        else if (wg_mp_key_is(k, kl, "tokens_per_s")) st = wg_mp_float(r, "tokens_per_s", &m->tokens_per_s);
        else if (wg_mp_key_is(k, kl, "running")) st = wg_mp_u32(r, "running", 0, UINT32_MAX, &m->running);
        else if (wg_mp_key_is(k, kl, "waiting")) st = wg_mp_u32(r, "waiting", 0, UINT32_MAX, &m->waiting);
        else if (wg_mp_key_is(k, kl, "credits")) st = wg_mp_u32(r, "credits", 0, UINT32_MAX, &m->credits);
        else if (wg_mp_key_is(k, kl, "kv_used_blocks")) st = wg_mp_uint(r, "kv_used_blocks", UINT64_MAX, &m->kv_used_blocks);
        else if (wg_mp_key_is(k, kl, "kv_total_blocks")) st = wg_mp_uint(r, "kv_total_blocks", UINT64_MAX, &m->kv_total_blocks);
        else if (wg_mp_key_is(k, kl, "kv_usage")) {
            st = wg_mp_float(r, "kv_usage", &m->kv_usage);
            if (!st && !(m->kv_usage >= 0 && m->kv_usage <= 1))
                st = wg_error(WG_ERR_RANGE, "%s: kv_usage=%g outside 0..1", r->msg, m->kv_usage);
        } else if (wg_mp_key_is(k, kl, "models")) st = wg_mp_str_array(r, "models", WG_MSG_MAX_MODELS, 1, WG_MSG_MAX_MODEL, &m->models, &m->n_models);
        else if (wg_mp_key_is(k, kl, "mem_used_bytes")) st = wg_mp_uint(r, "mem_used_bytes", UINT64_MAX, &u), m->mem_used_bytes = st ? 0 : u;
        else if (wg_mp_key_is(k, kl, "mem_total_bytes")) st = wg_mp_uint(r, "mem_total_bytes", UINT64_MAX, &u), m->mem_total_bytes = st ? 0 : u;
        else if (wg_mp_key_is(k, kl, "model_stats")) st = s_read_model_stats(r, m);
        else if (wg_mp_key_is(k, kl, "prompt_tokens_cached")) st = wg_mp_uint(r, "prompt_tokens_cached", UINT64_MAX, &m->prompt_tokens_cached);
        else if (wg_mp_key_is(k, kl, "prompt_tokens_computed")) st = wg_mp_uint(r, "prompt_tokens_computed", UINT64_MAX, &m->prompt_tokens_computed);
        else st = wg_mp_skip(r);
        if (st) return st;
    }
    return WG_OK;
}

wg_status wg_msg_metrics_encode(const wg_msg_metrics *m, wg_msg_buf *out) {
    if (!m->worker_id) return wg_error(WG_ERR_INVAL, "METRICS: worker_id is required");
    wg_status st = wg_mp_metrics_check(m, "METRICS");
    if (st) return st;
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    wg_mp_put_metrics(&w, m);
    return wg_mp_finish(&w, out);
}

void wg_msg_metrics_clear(wg_msg_metrics *m) {
    if (!m) return;
    free(m->worker_id);
    wg_mp_str_array_free(&m->models, &m->n_models);
    s_model_stats_free(&m->model_stats, &m->n_model_stats);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_metrics_decode(const uint8_t *data, size_t len, wg_msg_metrics *out) {
    wg_mp_rd r;
    wg_status st;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, "METRICS", &(uint32_t){0}));
    r.p = data;
    TRY(wg_mp_read_metrics(&r, out));
    TRY(wg_mp_end(&r));
    if (!out->worker_id) { st = wg_mp_missing(&r, "worker_id"); goto err; }
    return WG_OK;
err:
    wg_msg_metrics_clear(out);
    return st;
}

wg_status wg_msg_metrics_copy(wg_msg_metrics *dst, const wg_msg_metrics *src) {
    *dst = *src;
    dst->worker_id = NULL;
    dst->models = NULL;
    dst->n_models = 0;
    dst->model_stats = NULL;
    dst->n_model_stats = 0;
    if (src->worker_id && !(dst->worker_id = strdup(src->worker_id))) goto nomem;
    if (src->n_models) {
        dst->models = calloc(src->n_models, sizeof *dst->models);
        if (!dst->models) goto nomem;
        dst->n_models = src->n_models;
        for (uint32_t i = 0; i < src->n_models; i++)
            if (!(dst->models[i] = strdup(src->models[i]))) goto nomem;
    }
    if (src->n_model_stats) {
        dst->model_stats = calloc(src->n_model_stats, sizeof *dst->model_stats);
        if (!dst->model_stats) goto nomem;
        dst->n_model_stats = src->n_model_stats;
        for (uint32_t i = 0; i < src->n_model_stats; i++) {
            dst->model_stats[i] = src->model_stats[i];
            dst->model_stats[i].model = NULL;
            if (src->model_stats[i].model && !(dst->model_stats[i].model = strdup(src->model_stats[i].model)))
                goto nomem;
        }
    }
    return WG_OK;
nomem:
    wg_msg_metrics_clear(dst);
    return wg_error(WG_ERR_NOMEM, "metrics copy");
}
