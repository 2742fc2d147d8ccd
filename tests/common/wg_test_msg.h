/* The decode property every WGL/1 body decoder must have, for hostile bytes
 * (tests/schemas/test_msg_mutate.c sweeps mutations of valid bodies through
 * it; tests/fuzz/fuzz_msg.c feeds it libFuzzer's inputs):
 *
 *   - a body the decoder rejects leaves its struct cleared (all zero: nothing
 *     to free) and an error message behind;
 *   - a body it accepts re-encodes, the encoding decodes again, and encoding
 *     that gives the same bytes: what the broker accepted it can forward, and
 *     what it forwards every peer reads the same way.
 *
 * Plus one valid sample body per kind (the seeds of both).
 * Header-only (static functions) so a test and the fuzz target share it. */
#ifndef WG_TEST_MSG_H
#define WG_TEST_MSG_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/wg_status.h"
#include "schemas/wg_msg.h"
#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_worker.h"

typedef enum {
    WG_TM_JOB,        /* JOB (broker -> worker) */
    WG_TM_SUBMIT,     /* SUBMIT */
    WG_TM_SUBMITTED,  /* SUBMITTED */
    WG_TM_CANCEL,     /* CANCEL / STATUS / FETCH request */
    WG_TM_PING,       /* PING */
    WG_TM_JOBSTATE,   /* JOBSTATE */
    WG_TM_DONE,       /* DONE (worker -> broker) */
    WG_TM_RESULT,     /* RESULT */
    WG_TM_ERROR,      /* ERROR */
    WG_TM_TOKEN,      /* TOKEN event */
    WG_TM_METRICS,    /* METRICS */
    WG_TM_READY,      /* READY */
    WG_TM_HEARTBEAT,  /* HEARTBEAT (worker -> broker) */
    WG_TM_FAILED,     /* FAILED */
    WG_TM_DISCONNECT, /* DISCONNECT */
    WG_TM_EMPTY,      /* an empty-map body (PONG, broker HEARTBEAT) */
    WG_TM_COUNT
} wg_tm_kind;

static const char *const wg_tm_names[WG_TM_COUNT] = {
    "JOB",     "SUBMIT", "SUBMITTED", "CANCEL",    "PING",   "JOBSTATE",   "DONE",  "RESULT",
    "ERROR",   "TOKEN",  "METRICS",   "READY",     "HEARTBEAT", "FAILED", "DISCONNECT", "EMPTY",
};

/* ---- adapters: every kind as decode(data, len, out) / encode(in, buf) ---- */

static wg_status wg_tm_cancel_dec(const uint8_t *d, size_t n, wg_msg_req *m) {
    return wg_msg_req_decode(WG_CMD_CANCEL, d, n, m);
}
static wg_status wg_tm_cancel_enc(const wg_msg_req *m, wg_msg_buf *b) { return wg_msg_req_encode(WG_CMD_CANCEL, m, b); }
static wg_status wg_tm_ping_dec(const uint8_t *d, size_t n, wg_msg_req *m) {
    return wg_msg_req_decode(WG_CMD_PING, d, n, m);
}
static wg_status wg_tm_ping_enc(const wg_msg_req *m, wg_msg_buf *b) { return wg_msg_req_encode(WG_CMD_PING, m, b); }
static wg_status wg_tm_done_dec(const uint8_t *d, size_t n, wg_msg_result *m) {
    return wg_msg_result_decode(WG_CMD_DONE, d, n, m);
}
static wg_status wg_tm_done_enc(const wg_msg_result *m, wg_msg_buf *b) {
    return wg_msg_result_encode(WG_CMD_DONE, m, b);
}
static wg_status wg_tm_result_dec(const uint8_t *d, size_t n, wg_msg_result *m) {
    return wg_msg_result_decode(WG_CMD_RESULT, d, n, m);
}
static wg_status wg_tm_result_enc(const wg_msg_result *m, wg_msg_buf *b) {
    return wg_msg_result_encode(WG_CMD_RESULT, m, b);
}

static char wg_tm_why[1536];

/* The property for one struct type. */
#define WG_TM_CHECK(T, DEC, ENC, CLR)                                                                       \
    do {                                                                                                    \
        T a, b, cleared;                                                                                    \
        memset(&a, 0, sizeof a);                                                                            \
        memset(&b, 0, sizeof b);                                                                            \
        memset(&cleared, 0, sizeof cleared);                                                                \
        CLR(&cleared); /* a cleared struct: zero, or (JOB) the defaults */                                  \
        wg_error_clear();                                                                                  \
        if (DEC(d, n, &a) != WG_OK) {                                                                       \
            if (memcmp(&a, &cleared, sizeof a) != 0) {                                                      \
                snprintf(wg_tm_why, sizeof wg_tm_why, "%s: rejected (%s) but the struct is not cleared",   \
                         wg_tm_names[kind], wg_errmsg());                                                   \
                CLR(&a);                                                                                    \
                return wg_tm_why;                                                                           \
            }                                                                                               \
            if (!wg_errmsg()[0]) {                                                                          \
                snprintf(wg_tm_why, sizeof wg_tm_why, "%s: rejected without an error message",             \
                         wg_tm_names[kind]);                                                                \
                return wg_tm_why;                                                                           \
            }                                                                                               \
            return NULL;                                                                                    \
        }                                                                                                   \
        wg_msg_buf e1 = {0}, e2 = {0};                                                                      \
        const char *bad = NULL;                                                                             \
        if (ENC(&a, &e1) != WG_OK)                                                                          \
            bad = "accepted but does not re-encode";                                                        \
        else if (DEC(e1.data, e1.len, &b) != WG_OK)                                                         \
            bad = "its re-encoding does not decode";                                                        \
        else if (ENC(&b, &e2) != WG_OK)                                                                     \
            bad = "its re-encoding decodes to something that does not encode";                              \
        else if (e1.len != e2.len || memcmp(e1.data, e2.data, e1.len) != 0)                                 \
            bad = "encoding the decoded re-encoding changes the bytes";                                     \
        if (bad) snprintf(wg_tm_why, sizeof wg_tm_why, "%s: %s (%s)", wg_tm_names[kind], bad, wg_errmsg()); \
        CLR(&a);                                                                                            \
        CLR(&b);                                                                                            \
        wg_msg_buf_free(&e1);                                                                               \
        wg_msg_buf_free(&e2);                                                                               \
        return bad ? wg_tm_why : NULL;                                                                      \
    } while (0)

/* NULL when body d[0..n) of `kind` behaves as described above, else what
 * went wrong (a static buffer). */
static const char *wg_tm_check(wg_tm_kind kind, const uint8_t *d, size_t n) {
    switch (kind) {
    case WG_TM_JOB: WG_TM_CHECK(wg_msg_job, wg_msg_job_decode, wg_msg_job_encode, wg_msg_job_clear);
    case WG_TM_SUBMIT:
        WG_TM_CHECK(wg_msg_submit, wg_msg_submit_decode, wg_msg_submit_encode, wg_msg_submit_clear);
    case WG_TM_SUBMITTED:
        WG_TM_CHECK(wg_msg_submitted, wg_msg_submitted_decode, wg_msg_submitted_encode, wg_msg_submitted_clear);
    case WG_TM_CANCEL: WG_TM_CHECK(wg_msg_req, wg_tm_cancel_dec, wg_tm_cancel_enc, wg_msg_req_clear);
    case WG_TM_PING: WG_TM_CHECK(wg_msg_req, wg_tm_ping_dec, wg_tm_ping_enc, wg_msg_req_clear);
    case WG_TM_JOBSTATE:
        WG_TM_CHECK(wg_msg_jobstate, wg_msg_jobstate_decode, wg_msg_jobstate_encode, wg_msg_jobstate_clear);
    case WG_TM_DONE: WG_TM_CHECK(wg_msg_result, wg_tm_done_dec, wg_tm_done_enc, wg_msg_result_clear);
    case WG_TM_RESULT: WG_TM_CHECK(wg_msg_result, wg_tm_result_dec, wg_tm_result_enc, wg_msg_result_clear);
    case WG_TM_ERROR: WG_TM_CHECK(wg_msg_error, wg_msg_error_decode, wg_msg_error_encode, wg_msg_error_clear);
    case WG_TM_TOKEN: WG_TM_CHECK(wg_msg_token, wg_msg_token_decode, wg_msg_token_encode, wg_msg_token_clear);
    case WG_TM_METRICS:
        WG_TM_CHECK(wg_msg_metrics, wg_msg_metrics_decode, wg_msg_metrics_encode, wg_msg_metrics_clear);
    case WG_TM_READY: WG_TM_CHECK(wg_msg_ready, wg_msg_ready_decode, wg_msg_ready_encode, wg_msg_ready_clear);
    case WG_TM_HEARTBEAT:
        WG_TM_CHECK(wg_msg_heartbeat, wg_msg_heartbeat_decode, wg_msg_heartbeat_encode, wg_msg_heartbeat_clear);
    case WG_TM_FAILED:
        WG_TM_CHECK(wg_msg_failed, wg_msg_failed_decode, wg_msg_failed_encode, wg_msg_failed_clear);
    case WG_TM_DISCONNECT:
        WG_TM_CHECK(wg_msg_disconnect, wg_msg_disconnect_decode, wg_msg_disconnect_encode,
                    wg_msg_disconnect_clear);
    case WG_TM_EMPTY:
        wg_error_clear();
        if (wg_msg_empty_decode(d, n) != WG_OK && !wg_errmsg()[0]) {
            snprintf(wg_tm_why, sizeof wg_tm_why, "EMPTY: rejected without an error message");
            return wg_tm_why;
        }
        return NULL;
    case WG_TM_COUNT: break;
    }
    return "unknown kind";
}

/* ---- one valid sample body per kind, every optional field set ---- */

static char *wg_tm_s(const char *s) { return strdup(s); }

static void wg_tm_job(wg_msg_job *j, bool with_id, int variant) {
    wg_msg_job_init(j);
    if (with_id) {
        j->job_id = wg_tm_s("0123456789abcdef0123456789abcdef");
        j->attempt = 3;
    }
    j->custom_id = wg_tm_s("row-42");
    j->model = wg_tm_s("stories260K");
    if (variant == 0) {
        j->messages = calloc(2, sizeof *j->messages);
        j->n_messages = 2;
        j->messages[0].role = wg_tm_s("system");
        j->messages[0].content = wg_tm_s("answer in one line");
        j->messages[1].role = wg_tm_s("user");
        j->messages[1].content = wg_tm_s("Once upon a time \xc3\xa9");
    } else if (variant == 1) {
        j->prompt = wg_tm_s("The quick brown fox");
    } else {
        j->prompt_ids = calloc(3, sizeof *j->prompt_ids);
        j->n_prompt_ids = 3;
        j->prompt_ids[0] = 1;
        j->prompt_ids[1] = 500;
        j->prompt_ids[2] = 70000;
    }
    j->max_tokens = 99;
    j->priority = -7;
    j->stream = true;
    j->sampling.temperature = 0.7;
    j->sampling.top_k = 40;
    j->sampling.top_p = 0.95;
    j->sampling.min_p = 0.05;
    j->sampling.repetition_penalty = 1.1;
    j->sampling.presence_penalty = 0.5;
    j->sampling.frequency_penalty = -0.25;
    j->sampling.has_seed = true;
    j->sampling.seed = 0x0123456789abcdefull;
    j->sampling.logprobs = 2;
    j->sampling.chosen_logprob = true;
    j->stop = calloc(2, sizeof *j->stop);
    j->n_stop = 2;
    j->stop[0] = wg_tm_s("\n\n");
    j->stop[1] = wg_tm_s("THE END");
    j->stop_token_ids = calloc(2, sizeof *j->stop_token_ids);
    j->n_stop_token_ids = 2;
    j->stop_token_ids[0] = 2;
    j->stop_token_ids[1] = 40000;
    j->logit_bias = calloc(2, sizeof *j->logit_bias);
    j->n_logit_bias = 2;
    j->logit_bias[0] = (wg_msg_logit_bias){.token_id = 13, .bias = 2.5f};
    j->logit_bias[1] = (wg_msg_logit_bias){.token_id = 29, .bias = -INFINITY};
    j->json_object = variant == 1;
}

static void wg_tm_metrics(wg_msg_metrics *m) {
    memset(m, 0, sizeof *m);
    m->worker_id = wg_tm_s("w-7");
    m->ts_ms = 1763900000123ull;
    m->tokens_per_s = 1234.5;
    m->running = 17;
    m->waiting = 3;
    m->credits = 64;
    m->kv_used_blocks = 100;
    m->kv_total_blocks = 400;
    m->kv_usage = 0.25;
    m->models = calloc(2, sizeof *m->models);
    m->n_models = 2;
    m->models[0] = wg_tm_s("a");
    m->models[1] = wg_tm_s("b");
    m->mem_used_bytes = 1u << 30;
    m->mem_total_bytes = 4ull << 30;
    m->model_stats = calloc(1, sizeof *m->model_stats);
    m->n_model_stats = 1;
    m->model_stats[0] = (wg_msg_model_stat){.model = wg_tm_s("a"), .loads = 3, .load_failures = 1,
                                            .load_seconds = 0.75, .evictions = 2, .resident_bytes = 12345};
    m->prompt_tokens_cached = 4096;
    m->prompt_tokens_computed = 8192;
}

/* The sample body of `kind` (variant 0..2 where a kind has several shapes:
 * the job's prompt as messages, text or token ids) into *out. */
static wg_status wg_tm_sample(wg_tm_kind kind, int variant, wg_msg_buf *out) {
    wg_status st = WG_ERR;
    memset(out, 0, sizeof *out);
    switch (kind) {
    case WG_TM_JOB: {
        wg_msg_job j;
        wg_tm_job(&j, true, variant);
        st = wg_msg_job_encode(&j, out);
        wg_msg_job_clear(&j);
        break;
    }
    case WG_TM_SUBMIT: {
        wg_msg_submit m = {.req = 77, .n_jobs = 2};
        m.jobs = calloc(2, sizeof *m.jobs);
        wg_tm_job(&m.jobs[0], false, variant);
        wg_tm_job(&m.jobs[1], false, (variant + 1) % 3);
        st = wg_msg_submit_encode(&m, out);
        wg_msg_submit_clear(&m);
        break;
    }
    case WG_TM_SUBMITTED: {
        wg_msg_submitted m = {.req = 78, .n_items = 2};
        m.items = calloc(2, sizeof *m.items);
        m.items[0] = (wg_msg_submitted_item){.index = 0, .accepted = true,
                                             .job_id = wg_tm_s("0123456789abcdef0123456789abcdef"),
                                             .custom_id = wg_tm_s("row-1")};
        m.items[1] = (wg_msg_submitted_item){.index = 1, .accepted = false, .code = WG_ERR_FULL,
                                             .reason = wg_tm_s("queue full"), .retry_after_ms = 250};
        st = wg_msg_submitted_encode(&m, out);
        wg_msg_submitted_clear(&m);
        break;
    }
    case WG_TM_CANCEL: {
        wg_msg_req m = {.req = 5, .job_id = wg_tm_s("0123456789abcdef0123456789abcdef")};
        st = wg_msg_req_encode(WG_CMD_CANCEL, &m, out);
        wg_msg_req_clear(&m);
        break;
    }
    case WG_TM_PING: {
        wg_msg_req m = {.req = 6};
        st = wg_msg_req_encode(WG_CMD_PING, &m, out);
        break;
    }
    case WG_TM_JOBSTATE: {
        wg_msg_jobstate m = {.req = 9, .job_id = wg_tm_s("0123456789abcdef0123456789abcdef"),
                             .custom_id = wg_tm_s("row-9"), .state = wg_tm_s("running"), .attempts = 2,
                             .worker_id = wg_tm_s("w-1"), .error = wg_tm_s("worker lost")};
        st = wg_msg_jobstate_encode(&m, out);
        wg_msg_jobstate_clear(&m);
        break;
    }
    case WG_TM_DONE:
    case WG_TM_RESULT: {
        const bool res = kind == WG_TM_RESULT;
        wg_msg_result m = {.req = res ? 11 : 0, .job_id = wg_tm_s("0123456789abcdef0123456789abcdef"),
                           .custom_id = wg_tm_s("row-3"), .text = wg_tm_s("fox jumps"), .n_tokens = 2,
                           .n_logprobs = 2, .has_end = true, .end_token = 2, .end_logprob = -0.5f,
                           .end_n_top = 1, .finish_reason = wg_tm_s("stop"), .prompt_tokens = 5,
                           .completion_tokens = 2, .attempts = res ? 1 : 0};
        if (res) m.state = wg_tm_s(variant == 1 ? "failed" : "done");
        if (variant == 1) {
            m.code = wg_tm_s("ERR_MODEL");
            m.error = wg_tm_s("unknown model 'x'");
        }
        m.token_ids = calloc(2, sizeof *m.token_ids);
        m.token_ids[0] = 100;
        m.token_ids[1] = 200;
        m.logprobs = calloc(2, sizeof *m.logprobs);
        m.logprobs[0] = -0.125f;
        m.logprobs[1] = -2.0f;
        m.n_top = calloc(2, sizeof *m.n_top);
        m.n_top[0] = 2;
        m.n_top[1] = 1;
        m.top = calloc(3, sizeof *m.top);
        m.top[0] = (wg_msg_top_logprob){100, -0.125f};
        m.top[1] = (wg_msg_top_logprob){101, -3.0f};
        m.top[2] = (wg_msg_top_logprob){200, -2.0f};
        m.end_top[0] = (wg_msg_top_logprob){2, -0.5f};
        st = wg_msg_result_encode(res ? WG_CMD_RESULT : WG_CMD_DONE, &m, out);
        wg_msg_result_clear(&m);
        break;
    }
    case WG_TM_ERROR: {
        wg_msg_error m = {.req = 12, .code = WG_ERR_FULL, .reason = wg_tm_s("queue full"), .retry_after_ms = 500};
        st = wg_msg_error_encode(&m, out);
        wg_msg_error_clear(&m);
        break;
    }
    case WG_TM_TOKEN: {
        wg_msg_token m = {.job_id = wg_tm_s("0123456789abcdef0123456789abcdef"), .seq = 4, .token_id = 321,
                          .text_delta = wg_tm_s(" fox"), .has_logprob = true, .logprob = -1.5f, .n_top = 2,
                          .attempt = 1, .final = variant == 1};
        if (variant == 1) m.finish_reason = wg_tm_s("length");
        m.top = calloc(2, sizeof *m.top);
        m.top[0] = (wg_msg_top_logprob){321, -1.5f};
        m.top[1] = (wg_msg_top_logprob){322, -1.75f};
        st = wg_msg_token_encode(&m, out);
        wg_msg_token_clear(&m);
        break;
    }
    case WG_TM_METRICS: {
        wg_msg_metrics m;
        wg_tm_metrics(&m);
        st = wg_msg_metrics_encode(&m, out);
        wg_msg_metrics_clear(&m);
        break;
    }
    case WG_TM_READY: {
        wg_msg_ready m = {.worker_id = wg_tm_s("w-2"), .credits = 32, .n_models = 1,
                          .stream_endpoint = wg_tm_s("tcp://127.0.0.1:5560"), .mem_budget = 1u << 30,
                          .mem_free = 1u << 29};
        m.models = calloc(1, sizeof *m.models);
        m.models[0] = wg_tm_s("stories260K");
        st = wg_msg_ready_encode(&m, out);
        wg_msg_ready_clear(&m);
        break;
    }
    case WG_TM_HEARTBEAT: {
        wg_msg_heartbeat m = {.has_credits = true, .credits = 8, .has_models = true, .n_models = 1,
                              .has_mem = true, .mem_budget = 1u << 30, .mem_free = 1u << 20,
                              .has_metrics = variant != 1};
        m.models = calloc(1, sizeof *m.models);
        m.models[0] = wg_tm_s("a");
        if (m.has_metrics) wg_tm_metrics(&m.metrics);
        st = wg_msg_heartbeat_encode(&m, out);
        wg_msg_heartbeat_clear(&m);
        break;
    }
    case WG_TM_FAILED: {
        wg_msg_failed m = {.job_id = wg_tm_s("0123456789abcdef0123456789abcdef"), .code = WG_ERR_CHECKSUM,
                           .reason = wg_tm_s("sha256 mismatch"), .retryable = variant == 1};
        st = wg_msg_failed_encode(&m, out);
        wg_msg_failed_clear(&m);
        break;
    }
    case WG_TM_DISCONNECT: {
        wg_msg_disconnect m = {.reason = wg_tm_s("draining")};
        st = wg_msg_disconnect_encode(&m, out);
        wg_msg_disconnect_clear(&m);
        break;
    }
    case WG_TM_EMPTY: st = wg_msg_empty_encode(out); break;
    case WG_TM_COUNT: break;
    }
    return st;
}

#endif
