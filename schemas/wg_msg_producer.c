/* wg_msg_producer — codec for the job map and the frontend messages.
 * Decoders follow one pattern: begin (size + map), loop over keys reading known
 * ones with typed, bounded reads and skipping unknown ones, end (no trailing
 * bytes), then check required fields; any error clears the output. */
#include "wg_msg_producer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "wg_msg_mp.h"

#define TRY(x)                     \
    do {                           \
        if ((st = (x)) != WG_OK) goto err; \
    } while (0)

/* ---- job ---- */

void wg_msg_job_init(wg_msg_job *j) {
    memset(j, 0, sizeof *j);
    j->max_tokens = 256;
    j->sampling.temperature = 1.0;
    j->sampling.top_p = 1.0;
    j->sampling.repetition_penalty = 1.0;
}

void wg_msg_job_clear(wg_msg_job *j) {
    if (!j) return;
    free(j->job_id);
    free(j->custom_id);
    free(j->model);
    free(j->prompt);
    for (uint32_t i = 0; i < j->n_messages; i++) {
        free(j->messages[i].role);
        free(j->messages[i].content);
    }
    free(j->messages);
    wg_mp_str_array_free(&j->stop, &j->n_stop);
    free(j->stop_token_ids);
    free(j->prompt_ids);
    free(j->logit_bias);
    wg_msg_job_init(j);
}

static char *s_dup(const char *s, int *fail) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *fail = 1;
    return d;
}

wg_status wg_msg_job_copy(wg_msg_job *dst, const wg_msg_job *src) {
    int fail = 0;
    wg_msg_job_init(dst);
    *dst = *src;
    dst->job_id = s_dup(src->job_id, &fail);
    dst->custom_id = s_dup(src->custom_id, &fail);
    dst->model = s_dup(src->model, &fail);
    dst->prompt = s_dup(src->prompt, &fail);
    dst->messages = NULL;
    dst->stop = NULL;
    dst->stop_token_ids = NULL;
    dst->prompt_ids = NULL;
    dst->logit_bias = NULL;
    dst->n_prompt_ids = dst->n_logit_bias = 0;
    if (src->n_prompt_ids) {
        dst->prompt_ids = malloc(src->n_prompt_ids * sizeof *dst->prompt_ids);
        if (!dst->prompt_ids) fail = 1;
        else {
            memcpy(dst->prompt_ids, src->prompt_ids, src->n_prompt_ids * sizeof *dst->prompt_ids);
            dst->n_prompt_ids = src->n_prompt_ids;
        }
    }
    if (src->n_logit_bias) {
        dst->logit_bias = malloc(src->n_logit_bias * sizeof *dst->logit_bias);
        if (!dst->logit_bias) fail = 1;
        else {
            memcpy(dst->logit_bias, src->logit_bias, src->n_logit_bias * sizeof *dst->logit_bias);
            dst->n_logit_bias = src->n_logit_bias;
        }
    }
    uint32_t nm = src->n_messages, ns = src->n_stop, nt = src->n_stop_token_ids;
    dst->n_messages = dst->n_stop = dst->n_stop_token_ids = 0;
    if (nm) {
        dst->messages = calloc(nm, sizeof *dst->messages);
        if (!dst->messages) fail = 1;
        else {
            dst->n_messages = nm;
            for (uint32_t i = 0; i < nm; i++) {
                dst->messages[i].role = s_dup(src->messages[i].role, &fail);
                dst->messages[i].content = s_dup(src->messages[i].content, &fail);
            }
        }
    }
    if (ns) {
        dst->stop = calloc(ns, sizeof *dst->stop);
        if (!dst->stop) fail = 1;
        else {
            dst->n_stop = ns;
            for (uint32_t i = 0; i < ns; i++) dst->stop[i] = s_dup(src->stop[i], &fail);
        }
    }
    if (nt) {
        dst->stop_token_ids = malloc(nt * sizeof *dst->stop_token_ids);
        if (!dst->stop_token_ids) fail = 1;
        else {
            memcpy(dst->stop_token_ids, src->stop_token_ids, nt * sizeof *dst->stop_token_ids);
            dst->n_stop_token_ids = nt;
        }
    }
    if (fail) {
        wg_msg_job_clear(dst);
        return wg_error(WG_ERR_NOMEM, "job copy");
    }
    return WG_OK;
}

uint64_t wg_msg_job_prompt_tokens_est(const wg_msg_job *j) {
    uint64_t bytes = j->prompt ? strlen(j->prompt) : 0;
    for (uint32_t i = 0; i < j->n_messages; i++)
        bytes += j->messages[i].content ? strlen(j->messages[i].content) : 0;
    return (bytes + 3) / 4 + j->n_prompt_ids;
}

static void s_pack_sampling(wg_mp_wr *w, const wg_msg_sampling *s) {
    bool rl = s->chosen_logprob && s->logprobs == 0;
    msgpack_pack_map(&w->pk, 8 + (s->has_seed ? 1 : 0) + rl);
    wg_mp_put_kfloat(w, "temperature", s->temperature);
    wg_mp_put_kuint(w, "top_k", s->top_k);
    wg_mp_put_kfloat(w, "top_p", s->top_p);
    wg_mp_put_kfloat(w, "min_p", s->min_p);
    wg_mp_put_kfloat(w, "repetition_penalty", s->repetition_penalty);
    wg_mp_put_kfloat(w, "presence_penalty", s->presence_penalty);
    wg_mp_put_kfloat(w, "frequency_penalty", s->frequency_penalty);
    wg_mp_put_kuint(w, "logprobs", s->logprobs);
    if (s->has_seed) wg_mp_put_kuint(w, "seed", s->seed);
    if (rl) wg_mp_put_kbool(w, "return_logprob", true);
}

static void s_pack_job(wg_mp_wr *w, const wg_msg_job *j) {
    uint32_t n = 6; /* model, prompt|messages, max_tokens, priority, stream, sampling */
    n += j->job_id != NULL;
    n += j->custom_id != NULL;
    n += j->attempt != 0;
    n += j->n_stop != 0;
    n += j->n_stop_token_ids != 0;
    n += j->n_logit_bias != 0;
    n += j->json_object;
    msgpack_pack_map(&w->pk, n);
    if (j->job_id) wg_mp_put_kstr(w, "job_id", j->job_id);
    if (j->custom_id) wg_mp_put_kstr(w, "custom_id", j->custom_id);
    wg_mp_put_kstr(w, "model", j->model);
    if (j->n_messages) {
        wg_mp_put_key(w, "messages");
        msgpack_pack_array(&w->pk, j->n_messages);
        for (uint32_t i = 0; i < j->n_messages; i++) {
            msgpack_pack_map(&w->pk, 2);
            wg_mp_put_kstr(w, "role", j->messages[i].role);
            wg_mp_put_kstr(w, "content", j->messages[i].content);
        }
    } else if (j->n_prompt_ids) {
        wg_mp_put_ku32s(w, "prompt", j->prompt_ids, j->n_prompt_ids);
    } else {
        wg_mp_put_kstr(w, "prompt", j->prompt);
    }
    wg_mp_put_kuint(w, "max_tokens", j->max_tokens);
    wg_mp_put_kint(w, "priority", j->priority);
    wg_mp_put_kbool(w, "stream", j->stream);
    wg_mp_put_key(w, "sampling");
    s_pack_sampling(w, &j->sampling);
    if (j->attempt) wg_mp_put_kuint(w, "attempt", j->attempt);
    if (j->json_object) wg_mp_put_kstr(w, "response_format", "json_object");
    if (j->n_stop) wg_mp_put_kstrs(w, "stop", j->stop, j->n_stop);
    if (j->n_stop_token_ids)
        wg_mp_put_ku32s(w, "stop_token_ids", j->stop_token_ids, j->n_stop_token_ids);
    if (j->n_logit_bias) {
        wg_mp_put_key(w, "logit_bias");
        msgpack_pack_array(&w->pk, j->n_logit_bias);
        for (uint32_t i = 0; i < j->n_logit_bias; i++) {
            msgpack_pack_array(&w->pk, 2);
            msgpack_pack_uint32(&w->pk, j->logit_bias[i].token_id);
            msgpack_pack_float(&w->pk, j->logit_bias[i].bias);
        }
    }
}

/* logit_bias: array of [token_id uint, bias float]; bias finite or -inf. */
static wg_status s_read_logit_bias(wg_mp_rd *r, wg_msg_job *j, uint32_t index) {
    uint32_t c;
    wg_status st = wg_mp_array(r, "logit_bias", WG_MSG_MAX_LOGIT_BIAS, &c);
    if (st) return st;
    if (j->logit_bias) return wg_error(WG_ERR_FORMAT, "%s: job %u: duplicate 'logit_bias'", r->msg, index);
    j->logit_bias = calloc(c ? c : 1, sizeof *j->logit_bias);
    if (!j->logit_bias) return wg_error(WG_ERR_NOMEM, "logit_bias");
    j->n_logit_bias = c;
    for (uint32_t q = 0; q < c; q++) {
        uint32_t two;
        double d;
        if ((st = wg_mp_array(r, "logit_bias[]", 2, &two))) return st;
        if (two != 2)
            return wg_error(WG_ERR_FORMAT, "%s: job %u: logit_bias[%u] has %u items, expected [token_id, bias]",
                            r->msg, index, q, two);
        if ((st = wg_mp_u32(r, "logit_bias[].token_id", 0, UINT32_MAX, &j->logit_bias[q].token_id))) return st;
        if ((st = wg_mp_float(r, "logit_bias[].bias", &d))) return st;
        if (d != d || d == (double)INFINITY)
            return wg_error(WG_ERR_RANGE, "%s: job %u: logit_bias[%u].bias=%g must be finite or -inf", r->msg,
                            index, q, d);
        j->logit_bias[q].bias = (float)d;
    }
    return WG_OK;
}

static wg_status s_read_sampling(wg_mp_rd *r, wg_msg_sampling *s) {
    uint32_t n;
    wg_status st = wg_mp_map(r, "sampling", &n);
    if (st) return st;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if ((st = wg_mp_key(r, &k, &kl))) return st;
        if (wg_mp_key_is(k, kl, "temperature")) {
            if ((st = wg_mp_float(r, "sampling.temperature", &s->temperature))) return st;
            if (!(s->temperature >= 0 && s->temperature <= 100))
                return wg_error(WG_ERR_RANGE, "%s: sampling.temperature=%g outside 0..100", r->msg,
                                s->temperature);
        } else if (wg_mp_key_is(k, kl, "top_k")) {
            if ((st = wg_mp_u32(r, "sampling.top_k", 0, 1u << 20, &s->top_k))) return st;
        } else if (wg_mp_key_is(k, kl, "top_p")) {
            if ((st = wg_mp_float(r, "sampling.top_p", &s->top_p))) return st;
            if (!(s->top_p > 0 && s->top_p <= 1))
                return wg_error(WG_ERR_RANGE, "%s: sampling.top_p=%g outside (0,1]", r->msg, s->top_p);
        } else if (wg_mp_key_is(k, kl, "min_p")) {
            if ((st = wg_mp_float(r, "sampling.min_p", &s->min_p))) return st;
            if (!(s->min_p >= 0 && s->min_p <= 1))
                return wg_error(WG_ERR_RANGE, "%s: sampling.min_p=%g outside [0,1]", r->msg, s->min_p);
        } else if (wg_mp_key_is(k, kl, "repetition_penalty")) {
            if ((st = wg_mp_float(r, "sampling.repetition_penalty", &s->repetition_penalty))) return st;
            if (!(s->repetition_penalty > 0 && s->repetition_penalty <= 100))
                return wg_error(WG_ERR_RANGE, "%s: sampling.repetition_penalty=%g outside (0,100]",
                                r->msg, s->repetition_penalty);
        } else if (wg_mp_key_is(k, kl, "presence_penalty")) {
            if ((st = wg_mp_float(r, "sampling.presence_penalty", &s->presence_penalty))) return st;
        } else if (wg_mp_key_is(k, kl, "frequency_penalty")) {
            if ((st = wg_mp_float(r, "sampling.frequency_penalty", &s->frequency_penalty))) return st;
        } else if (wg_mp_key_is(k, kl, "seed")) {
            if ((st = wg_mp_uint(r, "sampling.seed", UINT64_MAX, &s->seed))) return st;
            s->has_seed = true;
        } else if (wg_mp_key_is(k, kl, "logprobs")) {
            if ((st = wg_mp_u32(r, "sampling.logprobs", 0, WG_MSG_MAX_TOP_LOGPROBS, &s->logprobs)))
                return st;
        } else if (wg_mp_key_is(k, kl, "return_logprob")) {
            if ((st = wg_mp_bool(r, "sampling.return_logprob", &s->chosen_logprob))) return st;
        } else if ((st = wg_mp_skip(r))) {
            return st;
        }
    }
    return WG_OK;
}

/* Reads one job map. need_id: JOB (job_id required) vs SUBMIT (job_id ignored). */
static wg_status s_read_job(wg_mp_rd *r, wg_msg_job *j, bool need_id, uint32_t index) {
    wg_status st;
    uint32_t n;
    if ((st = wg_mp_map(r, "job", &n))) return st;
    uint64_t prompt_bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if ((st = wg_mp_key(r, &k, &kl))) return st;
        if (wg_mp_key_is(k, kl, "job_id") && need_id) {
            st = wg_mp_strdup(r, "job_id", 1, WG_MSG_MAX_ID, &j->job_id);
        } else if (wg_mp_key_is(k, kl, "custom_id")) {
            st = wg_mp_strdup(r, "custom_id", 1, WG_MSG_MAX_ID, &j->custom_id);
        } else if (wg_mp_key_is(k, kl, "model")) {
            st = wg_mp_strdup(r, "model", 1, WG_MSG_MAX_MODEL, &j->model);
        } else if (wg_mp_key_is(k, kl, "prompt")) {
            if (j->prompt || j->prompt_ids)
                return wg_error(WG_ERR_FORMAT, "%s: job %u: duplicate 'prompt'", r->msg, index);
            if (r->p < r->end && ((*r->p >= 0x90 && *r->p <= 0x9f) || *r->p == 0xdc || *r->p == 0xdd)) {
                st = wg_mp_u32_array(r, "prompt", WG_MSG_MAX_TOKENS, &j->prompt_ids, &j->n_prompt_ids);
                if (!st && j->n_prompt_ids == 0) {
                    free(j->prompt_ids);
                    j->prompt_ids = NULL;
                    return wg_error(WG_ERR_RANGE, "%s: job %u: token-id 'prompt' is empty", r->msg, index);
                }
            } else {
                st = wg_mp_strdup(r, "prompt", 0, WG_MSG_MAX_PROMPT, &j->prompt);
                if (!st) prompt_bytes += strlen(j->prompt);
            }
        } else if (wg_mp_key_is(k, kl, "messages")) {
            uint32_t m;
            if ((st = wg_mp_array(r, "messages", WG_MSG_MAX_MESSAGES, &m))) return st;
            if (m == 0) return wg_error(WG_ERR_RANGE, "%s: job %u: 'messages' is empty", r->msg, index);
            if (j->messages) return wg_error(WG_ERR_FORMAT, "%s: job %u: duplicate 'messages'", r->msg, index);
            j->messages = calloc(m, sizeof *j->messages);
            if (!j->messages) return wg_error(WG_ERR_NOMEM, "messages");
            j->n_messages = m;
            for (uint32_t q = 0; q < m && !st; q++) {
                uint32_t mk;
                if ((st = wg_mp_map(r, "messages[]", &mk))) return st;
                for (uint32_t e = 0; e < mk && !st; e++) {
                    const char *kk;
                    uint32_t kkl;
                    if ((st = wg_mp_key(r, &kk, &kkl))) return st;
                    if (wg_mp_key_is(kk, kkl, "role"))
                        st = wg_mp_strdup(r, "messages[].role", 1, WG_MSG_MAX_ROLE, &j->messages[q].role);
                    else if (wg_mp_key_is(kk, kkl, "content")) {
                        st = wg_mp_strdup(r, "messages[].content", 0, WG_MSG_MAX_PROMPT,
                                          &j->messages[q].content);
                        if (!st) prompt_bytes += strlen(j->messages[q].content);
                    } else
                        st = wg_mp_skip(r);
                }
                if (!st && (!j->messages[q].role || !j->messages[q].content))
                    return wg_error(WG_ERR_FORMAT, "%s: job %u: messages[%u] needs 'role' and 'content'",
                                    r->msg, index, q);
            }
        } else if (wg_mp_key_is(k, kl, "max_tokens")) {
            st = wg_mp_u32(r, "max_tokens", 1, WG_MSG_MAX_TOKENS, &j->max_tokens);
        } else if (wg_mp_key_is(k, kl, "priority")) {
            int64_t p;
            st = wg_mp_int(r, "priority", -100, 100, &p);
            j->priority = (int32_t)p;
        } else if (wg_mp_key_is(k, kl, "stream")) {
            st = wg_mp_bool(r, "stream", &j->stream);
        } else if (wg_mp_key_is(k, kl, "attempt") && need_id) {
            st = wg_mp_u32(r, "attempt", 1, UINT32_MAX, &j->attempt);
        } else if (wg_mp_key_is(k, kl, "sampling")) {
            st = s_read_sampling(r, &j->sampling);
        } else if (wg_mp_key_is(k, kl, "logit_bias")) {
            st = s_read_logit_bias(r, j, index);
        } else if (wg_mp_key_is(k, kl, "response_format")) {
            const char *f;
            uint32_t fl;
            if ((st = wg_mp_str(r, "response_format", 1, 32, &f, &fl))) return st;
            if (wg_mp_key_is(f, fl, "json_object")) j->json_object = true;
            else if (wg_mp_key_is(f, fl, "text")) j->json_object = false;
            else
                return wg_error(WG_ERR_RANGE, "%s: job %u: response_format '%.*s': expected \"text\" or \"json_object\"",
                                r->msg, index, (int)fl, f);
        } else if (wg_mp_key_is(k, kl, "stop")) {
            uint32_t ns;
            wg_mp_rd peek = *r;
            if (wg_mp_array(&peek, "stop", UINT32_MAX, &ns) == WG_OK && ns > WG_MSG_MAX_STOP)
                return wg_error(WG_ERR_RANGE, "%s: job %u: 'stop' has %u strings, at most %d are allowed",
                                r->msg, index, ns, WG_MSG_MAX_STOP);
            st = wg_mp_str_array(r, "stop", WG_MSG_MAX_STOP, 1, WG_MSG_MAX_STOP_LEN, &j->stop,
                                 &j->n_stop);
        } else if (wg_mp_key_is(k, kl, "stop_token_ids")) {
            st = wg_mp_u32_array(r, "stop_token_ids", WG_MSG_MAX_STOP_IDS, &j->stop_token_ids,
                                 &j->n_stop_token_ids);
        } else {
            st = wg_mp_skip(r);
        }
        if (st) return st;
    }
    if (need_id && !j->job_id) return wg_mp_missing(r, "job_id");
    if (!j->model)
        return wg_error(WG_ERR_FORMAT, "%s: job %u: required field 'model' is missing", r->msg, index);
    if ((j->prompt != NULL || j->prompt_ids != NULL) == (j->messages != NULL))
        return wg_error(WG_ERR_INVAL, "%s: job %u: exactly one of 'prompt' or 'messages' is required",
                        r->msg, index);
    if (prompt_bytes > WG_MSG_MAX_PROMPT)
        return wg_error(WG_ERR_RANGE, "%s: job %u: prompt of %llu bytes exceeds %u", r->msg, index,
                        (unsigned long long)prompt_bytes, WG_MSG_MAX_PROMPT);
    return WG_OK;
}

wg_status wg_msg_job_encode(const wg_msg_job *j, wg_msg_buf *out) {
    if (!j->job_id || !j->model) return wg_error(WG_ERR_INVAL, "JOB: job_id and model are required");
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    s_pack_job(&w, j);
    return wg_mp_finish(&w, out);
}

wg_status wg_msg_job_decode(const uint8_t *data, size_t len, wg_msg_job *out) {
    wg_mp_rd r;
    wg_status st;
    wg_msg_job_init(out);
    if ((st = wg_mp_begin(&r, data, len, "JOB", &(uint32_t){0}))) goto err;
    r.p = data; /* the job map is the body map itself */
    TRY(s_read_job(&r, out, true, 0));
    TRY(wg_mp_end(&r));
    return WG_OK;
err:
    wg_msg_job_clear(out);
    return st;
}

/* ---- SUBMIT ---- */

wg_status wg_msg_submit_encode(const wg_msg_submit *m, wg_msg_buf *out) {
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, 2);
    wg_mp_put_kuint(&w, "req", m->req);
    wg_mp_put_key(&w, "jobs");
    msgpack_pack_array(&w.pk, m->n_jobs);
    for (uint32_t i = 0; i < m->n_jobs; i++) s_pack_job(&w, &m->jobs[i]);
    return wg_mp_finish(&w, out);
}

void wg_msg_submit_clear(wg_msg_submit *m) {
    if (!m) return;
    for (uint32_t i = 0; i < m->n_jobs; i++) wg_msg_job_clear(&m->jobs[i]);
    free(m->jobs);
    memset(m, 0, sizeof *m);
}

uint64_t wg_msg_peek_req(const uint8_t *data, size_t len) {
    wg_mp_rd r;
    uint32_t n;
    uint64_t req = 0;
    if (wg_mp_begin(&r, data, len, "<peek>", &n) != WG_OK) return 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (wg_mp_key(&r, &k, &kl) != WG_OK) return 0;
        if (wg_mp_key_is(k, kl, "req")) return wg_mp_uint(&r, "req", UINT64_MAX, &req) == WG_OK ? req : 0;
        if (wg_mp_skip(&r) != WG_OK) return 0;
    }
    return 0;
}

wg_status wg_msg_job_fits(const wg_msg_job *j) {
    wg_msg_submit one = {.req = 1, .jobs = (wg_msg_job *)j, .n_jobs = 1}, back;
    wg_msg_buf b = {0};
    wg_status st = wg_msg_submit_encode(&one, &b);
    if (st == WG_OK && (st = wg_msg_submit_decode(b.data, b.len, &back)) == WG_OK) wg_msg_submit_clear(&back);
    wg_msg_buf_free(&b);
    return st;
}

wg_status wg_msg_submit_decode(const uint8_t *data, size_t len, wg_msg_submit *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    memset(out, 0, sizeof *out);
    bool have_jobs = false;
    TRY(wg_mp_begin(&r, data, len, "SUBMIT", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "req")) {
            TRY(wg_mp_uint(&r, "req", UINT64_MAX, &out->req));
        } else if (wg_mp_key_is(k, kl, "jobs")) {
            uint32_t nj;
            if (have_jobs) {
                st = wg_error(WG_ERR_FORMAT, "SUBMIT: duplicate 'jobs'");
                goto err;
            }
            TRY(wg_mp_array(&r, "jobs", WG_MSG_MAX_BATCH, &nj));
            if (nj == 0) {
                st = wg_error(WG_ERR_RANGE, "SUBMIT: 'jobs' is empty (1..%d)", WG_MSG_MAX_BATCH);
                goto err;
            }
            out->jobs = calloc(nj, sizeof *out->jobs);
            if (!out->jobs) {
                st = wg_error(WG_ERR_NOMEM, "SUBMIT: %u jobs", nj);
                goto err;
            }
            have_jobs = true;
            for (uint32_t q = 0; q < nj; q++) {
                wg_msg_job_init(&out->jobs[q]);
                out->n_jobs = q + 1;
                TRY(s_read_job(&r, &out->jobs[q], false, q));
            }
        } else {
            TRY(wg_mp_skip(&r));
        }
    }
    TRY(wg_mp_end(&r));
    if (!have_jobs) {
        st = wg_mp_missing(&r, "jobs");
        goto err;
    }
    return WG_OK;
err:
    wg_msg_submit_clear(out);
    return st;
}

/* ---- SUBMITTED ---- */

wg_status wg_msg_submitted_encode(const wg_msg_submitted *m, wg_msg_buf *out) {
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, 2);
    wg_mp_put_kuint(&w, "req", m->req);
    wg_mp_put_key(&w, "jobs");
    msgpack_pack_array(&w.pk, m->n_items);
    for (uint32_t i = 0; i < m->n_items; i++) {
        const wg_msg_submitted_item *it = &m->items[i];
        uint32_t n = 2 + (it->job_id != NULL) + (it->custom_id != NULL) + (it->accepted ? 0 : 1) +
                     (it->reason != NULL) + (it->retry_after_ms != 0);
        msgpack_pack_map(&w.pk, n);
        wg_mp_put_kuint(&w, "index", it->index);
        wg_mp_put_kstr(&w, "status", it->accepted ? "accepted" : "rejected");
        if (it->job_id) wg_mp_put_kstr(&w, "job_id", it->job_id);
        if (it->custom_id) wg_mp_put_kstr(&w, "custom_id", it->custom_id);
        if (!it->accepted) wg_mp_put_kstr(&w, "code", wg_status_name(it->code));
        if (it->reason) wg_mp_put_kstr(&w, "reason", it->reason);
        if (it->retry_after_ms) wg_mp_put_kuint(&w, "retry_after_ms", it->retry_after_ms);
    }
    return wg_mp_finish(&w, out);
}

void wg_msg_submitted_clear(wg_msg_submitted *m) {
    if (!m) return;
    for (uint32_t i = 0; i < m->n_items; i++) {
        free(m->items[i].job_id);
        free(m->items[i].custom_id);
        free(m->items[i].reason);
    }
    free(m->items);
    memset(m, 0, sizeof *m);
}

static wg_status s_read_code(wg_mp_rd *r, const char *field, wg_status *code) {
    const char *s;
    uint32_t n;
    wg_status st = wg_mp_str(r, field, 1, 32, &s, &n);
    if (st) return st;
    char buf[33];
    memcpy(buf, s, n);
    buf[n] = 0;
    *code = wg_msg_status_from_name(buf);
    return WG_OK;
}

wg_status wg_msg_submitted_decode(const uint8_t *data, size_t len, wg_msg_submitted *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    memset(out, 0, sizeof *out);
    bool have = false;
    TRY(wg_mp_begin(&r, data, len, "SUBMITTED", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "req")) {
            TRY(wg_mp_uint(&r, "req", UINT64_MAX, &out->req));
        } else if (wg_mp_key_is(k, kl, "jobs") && !have) {
            uint32_t nj;
            TRY(wg_mp_array(&r, "jobs", WG_MSG_MAX_BATCH, &nj));
            out->items = calloc(nj ? nj : 1, sizeof *out->items);
            if (!out->items) {
                st = wg_error(WG_ERR_NOMEM, "SUBMITTED");
                goto err;
            }
            have = true;
            for (uint32_t q = 0; q < nj; q++) {
                wg_msg_submitted_item *it = &out->items[q];
                out->n_items = q + 1;
                uint32_t mk;
                bool have_status = false;
                TRY(wg_mp_map(&r, "jobs[]", &mk));
                for (uint32_t e = 0; e < mk; e++) {
                    const char *kk;
                    uint32_t kkl;
                    TRY(wg_mp_key(&r, &kk, &kkl));
                    if (wg_mp_key_is(kk, kkl, "index")) {
                        TRY(wg_mp_u32(&r, "index", 0, WG_MSG_MAX_BATCH - 1, &it->index));
                    } else if (wg_mp_key_is(kk, kkl, "status")) {
                        const char *s;
                        uint32_t sl;
                        TRY(wg_mp_str(&r, "status", 1, 16, &s, &sl));
                        if (wg_mp_key_is(s, sl, "accepted")) it->accepted = true;
                        else if (wg_mp_key_is(s, sl, "rejected")) it->accepted = false;
                        else {
                            st = wg_error(WG_ERR_FORMAT, "SUBMITTED: status '%.*s'", (int)sl, s);
                            goto err;
                        }
                        have_status = true;
                    } else if (wg_mp_key_is(kk, kkl, "job_id")) {
                        TRY(wg_mp_strdup(&r, "job_id", 1, WG_MSG_MAX_ID, &it->job_id));
                    } else if (wg_mp_key_is(kk, kkl, "custom_id")) {
                        TRY(wg_mp_strdup(&r, "custom_id", 1, WG_MSG_MAX_ID, &it->custom_id));
                    } else if (wg_mp_key_is(kk, kkl, "code")) {
                        TRY(s_read_code(&r, "code", &it->code));
                    } else if (wg_mp_key_is(kk, kkl, "reason")) {
                        TRY(wg_mp_strdup(&r, "reason", 0, WG_MSG_MAX_REASON, &it->reason));
                    } else if (wg_mp_key_is(kk, kkl, "retry_after_ms")) {
                        TRY(wg_mp_uint(&r, "retry_after_ms", UINT32_MAX, &it->retry_after_ms));
                    } else {
                        TRY(wg_mp_skip(&r));
                    }
                }
                if (!have_status) {
                    st = wg_mp_missing(&r, "jobs[].status");
                    goto err;
                }
                if (it->accepted && !it->job_id) {
                    st = wg_mp_missing(&r, "jobs[].job_id");
                    goto err;
                }
                if (!it->accepted && it->code == WG_OK) it->code = WG_ERR;
            }
        } else {
            TRY(wg_mp_skip(&r));
        }
    }
    TRY(wg_mp_end(&r));
    if (!have) {
        st = wg_mp_missing(&r, "jobs");
        goto err;
    }
    return WG_OK;
err:
    wg_msg_submitted_clear(out);
    return st;
}

/* ---- CANCEL / STATUS / FETCH / PING / PONG ---- */

static bool s_req_needs_id(wg_msg_cmd cmd) {
    return cmd == WG_CMD_CANCEL || cmd == WG_CMD_STATUS || cmd == WG_CMD_FETCH;
}

wg_status wg_msg_req_encode(wg_msg_cmd cmd, const wg_msg_req *m, wg_msg_buf *out) {
    if (s_req_needs_id(cmd) && !m->job_id)
        return wg_error(WG_ERR_INVAL, "%s: job_id is required", wg_msg_cmd_name(cmd));
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, 1 + (m->job_id != NULL));
    wg_mp_put_kuint(&w, "req", m->req);
    if (m->job_id) wg_mp_put_kstr(&w, "job_id", m->job_id);
    return wg_mp_finish(&w, out);
}

void wg_msg_req_clear(wg_msg_req *m) {
    if (!m) return;
    free(m->job_id);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_req_decode(wg_msg_cmd cmd, const uint8_t *data, size_t len, wg_msg_req *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, wg_msg_cmd_name(cmd), &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "req")) {
            TRY(wg_mp_uint(&r, "req", UINT64_MAX, &out->req));
        } else if (wg_mp_key_is(k, kl, "job_id")) {
            TRY(wg_mp_strdup(&r, "job_id", 1, WG_MSG_MAX_ID, &out->job_id));
        } else {
            TRY(wg_mp_skip(&r));
        }
    }
    TRY(wg_mp_end(&r));
    if (s_req_needs_id(cmd) && !out->job_id) {
        st = wg_mp_missing(&r, "job_id");
        goto err;
    }
    return WG_OK;
err:
    wg_msg_req_clear(out);
    return st;
}

/* ---- JOBSTATE ---- */

wg_status wg_msg_jobstate_encode(const wg_msg_jobstate *m, wg_msg_buf *out) {
    if (!m->job_id || !m->state) return wg_error(WG_ERR_INVAL, "JOBSTATE: job_id and state required");
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, 4 + (m->custom_id != NULL) + (m->worker_id != NULL) + (m->error != NULL));
    wg_mp_put_kuint(&w, "req", m->req);
    wg_mp_put_kstr(&w, "job_id", m->job_id);
    wg_mp_put_kstr(&w, "state", m->state);
    wg_mp_put_kuint(&w, "attempts", m->attempts);
    if (m->custom_id) wg_mp_put_kstr(&w, "custom_id", m->custom_id);
    if (m->worker_id) wg_mp_put_kstr(&w, "worker_id", m->worker_id);
    if (m->error) wg_mp_put_kstr(&w, "error", m->error);
    return wg_mp_finish(&w, out);
}

void wg_msg_jobstate_clear(wg_msg_jobstate *m) {
    if (!m) return;
    free(m->job_id);
    free(m->custom_id);
    free(m->state);
    free(m->worker_id);
    free(m->error);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_jobstate_decode(const uint8_t *data, size_t len, wg_msg_jobstate *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, "JOBSTATE", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "req")) TRY(wg_mp_uint(&r, "req", UINT64_MAX, &out->req));
        else if (wg_mp_key_is(k, kl, "job_id")) TRY(wg_mp_strdup(&r, "job_id", 1, WG_MSG_MAX_ID, &out->job_id));
        else if (wg_mp_key_is(k, kl, "custom_id")) TRY(wg_mp_strdup(&r, "custom_id", 1, WG_MSG_MAX_ID, &out->custom_id));
        else if (wg_mp_key_is(k, kl, "state")) TRY(wg_mp_strdup(&r, "state", 1, 16, &out->state));
        else if (wg_mp_key_is(k, kl, "attempts")) TRY(wg_mp_u32(&r, "attempts", 0, UINT32_MAX, &out->attempts));
        else if (wg_mp_key_is(k, kl, "worker_id")) TRY(wg_mp_strdup(&r, "worker_id", 1, WG_MSG_MAX_ID, &out->worker_id));
        else if (wg_mp_key_is(k, kl, "error")) TRY(wg_mp_strdup(&r, "error", 0, WG_MSG_MAX_REASON, &out->error));
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    if (!out->job_id) { st = wg_mp_missing(&r, "job_id"); goto err; }
    if (!out->state) { st = wg_mp_missing(&r, "state"); goto err; }
    return WG_OK;
err:
    wg_msg_jobstate_clear(out);
    return st;
}

/* ---- DONE / RESULT ---- */

wg_status wg_msg_result_encode(wg_msg_cmd cmd, const wg_msg_result *m, wg_msg_buf *out) {
    bool res = cmd == WG_CMD_RESULT;
    if (!m->job_id || (res && !m->state))
        return wg_error(WG_ERR_INVAL, "%s: job_id%s required", wg_msg_cmd_name(cmd),
                        res ? " and state" : "");
    if (m->n_logprobs && m->n_logprobs != m->n_tokens)
        return wg_error(WG_ERR_INVAL, "%s: %u logprobs for %u tokens", wg_msg_cmd_name(cmd),
                        m->n_logprobs, m->n_tokens);
    if (m->n_top)
        for (uint32_t i = 0; i < m->n_tokens; i++)
            if (m->n_top[i] > WG_MSG_MAX_TOP_LOGPROBS)
                return wg_error(WG_ERR_RANGE, "%s: top_logprobs[%u] has %u entries (max %d)",
                                wg_msg_cmd_name(cmd), i, m->n_top[i], WG_MSG_MAX_TOP_LOGPROBS);
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    uint32_t n = 1 + (res ? 3 : 0) + (m->custom_id != NULL) + (m->text != NULL) + 1 /*token_ids*/ +
                 (m->n_logprobs != 0) + (m->finish_reason != NULL) + 1 /*usage*/ +
                 (m->code != NULL) + (m->error != NULL) + (m->n_top != NULL && m->n_tokens) + m->has_end;
    if (m->has_end && m->end_n_top > WG_MSG_MAX_TOP_LOGPROBS)
        return wg_error(WG_ERR_RANGE, "%s: end_token has %u alternatives (max %d)", wg_msg_cmd_name(cmd),
                        m->end_n_top, WG_MSG_MAX_TOP_LOGPROBS);
    msgpack_pack_map(&w.pk, n);
    wg_mp_put_kstr(&w, "job_id", m->job_id);
    if (res) {
        wg_mp_put_kuint(&w, "req", m->req);
        wg_mp_put_kstr(&w, "state", m->state);
        wg_mp_put_kuint(&w, "attempts", m->attempts);
    }
    if (m->custom_id) wg_mp_put_kstr(&w, "custom_id", m->custom_id);
    if (m->text) wg_mp_put_kstr(&w, "text", m->text);
    wg_mp_put_ku32s(&w, "token_ids", m->token_ids, m->n_tokens);
    if (m->n_logprobs) {
        wg_mp_put_key(&w, "logprobs");
        msgpack_pack_array(&w.pk, m->n_logprobs);
        for (uint32_t i = 0; i < m->n_logprobs; i++) msgpack_pack_float(&w.pk, m->logprobs[i]);
    }
    if (m->n_top && m->n_tokens) {
        wg_mp_put_key(&w, "top_logprobs");
        msgpack_pack_array(&w.pk, m->n_tokens);
        size_t at = 0;
        for (uint32_t i = 0; i < m->n_tokens; i++) {
            msgpack_pack_array(&w.pk, m->n_top[i]);
            for (uint32_t q = 0; q < m->n_top[i]; q++, at++) {
                msgpack_pack_array(&w.pk, 2);
                msgpack_pack_uint32(&w.pk, m->top[at].token_id);
                msgpack_pack_float(&w.pk, m->top[at].logprob);
            }
        }
    }
    if (m->has_end) {
        wg_mp_put_key(&w, "end_token");
        msgpack_pack_array(&w.pk, 3);
        msgpack_pack_uint32(&w.pk, m->end_token);
        msgpack_pack_float(&w.pk, m->end_logprob);
        msgpack_pack_array(&w.pk, m->end_n_top);
        for (uint32_t q = 0; q < m->end_n_top; q++) {
            msgpack_pack_array(&w.pk, 2);
            msgpack_pack_uint32(&w.pk, m->end_top[q].token_id);
            msgpack_pack_float(&w.pk, m->end_top[q].logprob);
        }
    }
    if (m->finish_reason) wg_mp_put_kstr(&w, "finish_reason", m->finish_reason);
    wg_mp_put_key(&w, "usage");
    msgpack_pack_map(&w.pk, 2);
    wg_mp_put_kuint(&w, "prompt_tokens", m->prompt_tokens);
    wg_mp_put_kuint(&w, "completion_tokens", m->completion_tokens);
    if (m->code) wg_mp_put_kstr(&w, "code", m->code);
    if (m->error) wg_mp_put_kstr(&w, "error", m->error);
    return wg_mp_finish(&w, out);
}

void wg_msg_result_clear(wg_msg_result *m) {
    if (!m) return;
    free(m->job_id);
    free(m->custom_id);
    free(m->state);
    free(m->text);
    free(m->token_ids);
    free(m->logprobs);
    free(m->n_top);
    free(m->top);
    free(m->finish_reason);
    free(m->code);
    free(m->error);
    memset(m, 0, sizeof *m);
}

/* top_logprobs in a result: one array per generated token of [token_id, logprob]
 * pairs (<= 20 each); stored flat in out->top with per-token counts in n_top. */
static wg_status s_read_top_rows(wg_mp_rd *r, wg_msg_result *out, uint32_t *rows) {
    uint32_t c;
    wg_status st = wg_mp_array(r, "top_logprobs", WG_MSG_MAX_TOKENS, &c);
    if (st) return st;
    if (out->n_top) return wg_error(WG_ERR_FORMAT, "%s: duplicate 'top_logprobs'", r->msg);
    out->n_top = calloc(c ? c : 1, 1);
    if (!out->n_top) return wg_error(WG_ERR_NOMEM, "top_logprobs");
    size_t total = 0, cap = 0;
    for (uint32_t i = 0; i < c; i++) {
        uint32_t k;
        if ((st = wg_mp_array(r, "top_logprobs[]", WG_MSG_MAX_TOP_LOGPROBS, &k))) return st;
        if (total + k > cap) {
            size_t nc = cap ? cap * 2 : 64;
            while (nc < total + k) nc *= 2;
            wg_msg_top_logprob *nt = realloc(out->top, nc * sizeof *nt);
            if (!nt) return wg_error(WG_ERR_NOMEM, "top_logprobs");
            out->top = nt;
            cap = nc;
        }
        for (uint32_t q = 0; q < k; q++) {
            uint32_t two;
            double d;
            if ((st = wg_mp_array(r, "top_logprobs[][]", 2, &two))) return st;
            if (two != 2)
                return wg_error(WG_ERR_FORMAT, "%s: top_logprobs[%u][%u] has %u items, expected 2", r->msg, i, q,
                                two);
            if ((st = wg_mp_u32(r, "top_logprobs[][].token_id", 0, UINT32_MAX, &out->top[total].token_id)))
                return st;
            if ((st = wg_mp_float(r, "top_logprobs[][].logprob", &d))) return st;
            out->top[total++].logprob = (float)d;
        }
        out->n_top[i] = (uint8_t)k;
    }
    *rows = c;
    return WG_OK;
}

/* end_token: [token_id uint, logprob float, [[token_id, logprob]…] (<= 20)]. */
static wg_status s_read_end_token(wg_mp_rd *r, wg_msg_result *out) {
    uint32_t c, k;
    double d;
    wg_status st = wg_mp_array(r, "end_token", 3, &c);
    if (st) return st;
    if (c != 3) return wg_error(WG_ERR_FORMAT, "%s: end_token has %u items, expected 3", r->msg, c);
    if ((st = wg_mp_u32(r, "end_token[0]", 0, UINT32_MAX, &out->end_token))) return st;
    if ((st = wg_mp_float(r, "end_token[1]", &d))) return st;
    out->end_logprob = (float)d;
    if ((st = wg_mp_array(r, "end_token[2]", WG_MSG_MAX_TOP_LOGPROBS, &k))) return st;
    for (uint32_t q = 0; q < k; q++) {
        uint32_t two;
        if ((st = wg_mp_array(r, "end_token[2][]", 2, &two))) return st;
        if (two != 2) return wg_error(WG_ERR_FORMAT, "%s: end_token[2][%u] has %u items, expected 2", r->msg, q, two);
        if ((st = wg_mp_u32(r, "end_token[2][].token_id", 0, UINT32_MAX, &out->end_top[q].token_id))) return st;
        if ((st = wg_mp_float(r, "end_token[2][].logprob", &d))) return st;
        out->end_top[q].logprob = (float)d;
    }
    out->end_n_top = k;
    out->has_end = true;
    return WG_OK;
}

static bool s_state_ok(const char *s) {
    return !strcmp(s, "done") || !strcmp(s, "failed") || !strcmp(s, "cancelled");
}

wg_status wg_msg_result_decode(wg_msg_cmd cmd, const uint8_t *data, size_t len,
                               wg_msg_result *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    bool res = cmd == WG_CMD_RESULT;
    uint32_t n_top_rows = 0;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, wg_msg_cmd_name(cmd), &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "job_id")) TRY(wg_mp_strdup(&r, "job_id", 1, WG_MSG_MAX_ID, &out->job_id));
        else if (wg_mp_key_is(k, kl, "req") && res) TRY(wg_mp_uint(&r, "req", UINT64_MAX, &out->req));
        else if (wg_mp_key_is(k, kl, "state") && res) TRY(wg_mp_strdup(&r, "state", 1, 16, &out->state));
        else if (wg_mp_key_is(k, kl, "attempts") && res) TRY(wg_mp_u32(&r, "attempts", 0, UINT32_MAX, &out->attempts));
        else if (wg_mp_key_is(k, kl, "custom_id")) TRY(wg_mp_strdup(&r, "custom_id", 1, WG_MSG_MAX_ID, &out->custom_id));
        else if (wg_mp_key_is(k, kl, "text")) TRY(wg_mp_strdup(&r, "text", 0, WG_MSG_MAX_TEXT, &out->text));
        else if (wg_mp_key_is(k, kl, "token_ids")) TRY(wg_mp_u32_array(&r, "token_ids", WG_MSG_MAX_TOKENS, &out->token_ids, &out->n_tokens));
        else if (wg_mp_key_is(k, kl, "logprobs")) {
            uint32_t c;
            TRY(wg_mp_array(&r, "logprobs", WG_MSG_MAX_TOKENS, &c));
            free(out->logprobs);
            out->logprobs = malloc((c ? c : 1) * sizeof(float));
            if (!out->logprobs) { st = wg_error(WG_ERR_NOMEM, "logprobs"); goto err; }
            out->n_logprobs = c;
            for (uint32_t q = 0; q < c; q++) {
                double d;
                TRY(wg_mp_float(&r, "logprobs[]", &d));
                out->logprobs[q] = (float)d;
            }
        } else if (wg_mp_key_is(k, kl, "top_logprobs")) {
            TRY(s_read_top_rows(&r, out, &n_top_rows));
        } else if (wg_mp_key_is(k, kl, "end_token")) {
            TRY(s_read_end_token(&r, out));
        } else if (wg_mp_key_is(k, kl, "finish_reason")) TRY(wg_mp_strdup(&r, "finish_reason", 1, 16, &out->finish_reason));
        else if (wg_mp_key_is(k, kl, "usage")) {
            uint32_t u;
            TRY(wg_mp_map(&r, "usage", &u));
            for (uint32_t q = 0; q < u; q++) {
                const char *kk;
                uint32_t kkl;
                TRY(wg_mp_key(&r, &kk, &kkl));
                if (wg_mp_key_is(kk, kkl, "prompt_tokens")) TRY(wg_mp_u32(&r, "usage.prompt_tokens", 0, UINT32_MAX, &out->prompt_tokens));
                else if (wg_mp_key_is(kk, kkl, "completion_tokens")) TRY(wg_mp_u32(&r, "usage.completion_tokens", 0, UINT32_MAX, &out->completion_tokens));
                else TRY(wg_mp_skip(&r));
            }
        } else if (wg_mp_key_is(k, kl, "code")) TRY(wg_mp_strdup(&r, "code", 1, 32, &out->code));
        else if (wg_mp_key_is(k, kl, "error")) TRY(wg_mp_strdup(&r, "error", 0, WG_MSG_MAX_REASON, &out->error));
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    if (!out->job_id) { st = wg_mp_missing(&r, "job_id"); goto err; }
    if (res && !out->state) { st = wg_mp_missing(&r, "state"); goto err; }
    if (res && !s_state_ok(out->state)) {
        st = wg_error(WG_ERR_FORMAT, "RESULT: state '%s' is not done|failed|cancelled", out->state);
        goto err;
    }
    if (out->n_logprobs && out->n_logprobs != out->n_tokens) {
        st = wg_error(WG_ERR_FORMAT, "%s: %u logprobs for %u token_ids", r.msg, out->n_logprobs,
                      out->n_tokens);
        goto err;
    }
    if (out->n_top && n_top_rows != out->n_tokens) {
        st = wg_error(WG_ERR_FORMAT, "%s: %u top_logprobs rows for %u token_ids", r.msg, n_top_rows,
                      out->n_tokens);
        goto err;
    }
    return WG_OK;
err:
    wg_msg_result_clear(out);
    return st;
}

/* ---- ERROR ---- */

wg_status wg_msg_error_encode(const wg_msg_error *m, wg_msg_buf *out) {
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, 3 + (m->retry_after_ms != 0));
    wg_mp_put_kuint(&w, "req", m->req);
    wg_mp_put_kstr(&w, "code", wg_status_name(m->code));
    wg_mp_put_kstr(&w, "reason", m->reason ? m->reason : "");
    if (m->retry_after_ms) wg_mp_put_kuint(&w, "retry_after_ms", m->retry_after_ms);
    return wg_mp_finish(&w, out);
}

void wg_msg_error_clear(wg_msg_error *m) {
    if (!m) return;
    free(m->reason);
    memset(m, 0, sizeof *m);
}

wg_status wg_msg_error_decode(const uint8_t *data, size_t len, wg_msg_error *out) {
    wg_mp_rd r;
    wg_status st;
    uint32_t n;
    bool have_code = false;
    memset(out, 0, sizeof *out);
    TRY(wg_mp_begin(&r, data, len, "ERROR", &n));
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        TRY(wg_mp_key(&r, &k, &kl));
        if (wg_mp_key_is(k, kl, "req")) TRY(wg_mp_uint(&r, "req", UINT64_MAX, &out->req));
        else if (wg_mp_key_is(k, kl, "code")) { TRY(s_read_code(&r, "code", &out->code)); have_code = true; }
        else if (wg_mp_key_is(k, kl, "reason")) TRY(wg_mp_strdup(&r, "reason", 0, WG_MSG_MAX_REASON, &out->reason));
        else if (wg_mp_key_is(k, kl, "retry_after_ms")) TRY(wg_mp_uint(&r, "retry_after_ms", UINT32_MAX, &out->retry_after_ms));
        else TRY(wg_mp_skip(&r));
    }
    TRY(wg_mp_end(&r));
    if (!have_code) { st = wg_mp_missing(&r, "code"); goto err; }
    if (out->code == WG_OK) out->code = WG_ERR;
    return WG_OK;
err:
    wg_msg_error_clear(out);
    return st;
}
