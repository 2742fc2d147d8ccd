/* Codec round trips and rejection of truncated, oversized, wrongly typed,
 * trailing-byte and unknown-version input for every WGL/1 message. */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "schemas/wg_msg.h"
#include "schemas/wg_msg_keys.h"
#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_worker.h"
#include "schemas/wg_msg_zmq.h"

/* ---- samples ---- */

static char *S(const char *s) { return strdup(s); }

static void s_sample_job(wg_msg_job *j, bool with_id) {
    wg_msg_job_init(j);
    if (with_id) j->job_id = S("0123456789abcdef0123456789abcdef");
    j->custom_id = S("row-17");
    j->model = S("stories260K");
    j->messages = calloc(2, sizeof *j->messages);
    j->n_messages = 2;
    j->messages[0].role = S("system");
    j->messages[0].content = S("be brief");
    j->messages[1].role = S("user");
    j->messages[1].content = S("Once upon a time");
    j->max_tokens = 77;
    j->priority = -3;
    j->stream = true;
    j->attempt = with_id ? 2 : 0;
    j->sampling.temperature = 0.5;
    j->sampling.top_k = 40;
    j->sampling.top_p = 0.9;
    j->sampling.min_p = 0.05;
    j->sampling.repetition_penalty = 1.1;
    j->sampling.presence_penalty = 0.25;
    j->sampling.frequency_penalty = -0.5;
    j->sampling.has_seed = true;
    j->sampling.seed = 0xfedcba9876543210ull;
    j->sampling.logprobs = 3;
    j->stop = calloc(2, sizeof *j->stop);
    j->n_stop = 2;
    j->stop[0] = S("\n\n");
    j->stop[1] = S("END");
    j->stop_token_ids = calloc(3, sizeof(uint32_t));
    j->n_stop_token_ids = 3;
    j->stop_token_ids[0] = 2;
    j->stop_token_ids[1] = 70000;
    j->stop_token_ids[2] = 4000000000u;
}

static void s_job_eq(const wg_msg_job *a, const wg_msg_job *b) {
    cr_assert_str_eq(a->model, b->model);
    cr_assert_eq(!a->job_id, !b->job_id);
    if (a->job_id) cr_assert_str_eq(a->job_id, b->job_id);
    cr_assert_str_eq(a->custom_id, b->custom_id);
    cr_assert_eq(a->n_messages, b->n_messages);
    for (uint32_t i = 0; i < a->n_messages; i++) {
        cr_assert_str_eq(a->messages[i].role, b->messages[i].role);
        cr_assert_str_eq(a->messages[i].content, b->messages[i].content);
    }
    cr_assert_eq(!a->prompt, !b->prompt);
    if (a->prompt) cr_assert_str_eq(a->prompt, b->prompt);
    cr_assert_eq(a->max_tokens, b->max_tokens);
    cr_assert_eq(a->priority, b->priority);
    cr_assert_eq(a->stream, b->stream);
    cr_assert_eq(a->json_object, b->json_object);
    cr_assert_eq(a->attempt, b->attempt);
    cr_assert_float_eq(a->sampling.temperature, b->sampling.temperature, 1e-12);
    cr_assert_eq(a->sampling.top_k, b->sampling.top_k);
    cr_assert_float_eq(a->sampling.top_p, b->sampling.top_p, 1e-12);
    cr_assert_float_eq(a->sampling.min_p, b->sampling.min_p, 1e-12);
    cr_assert_float_eq(a->sampling.repetition_penalty, b->sampling.repetition_penalty, 1e-12);
    cr_assert_float_eq(a->sampling.presence_penalty, b->sampling.presence_penalty, 1e-12);
    cr_assert_float_eq(a->sampling.frequency_penalty, b->sampling.frequency_penalty, 1e-12);
    cr_assert_eq(a->sampling.has_seed, b->sampling.has_seed);
    cr_assert_eq(a->sampling.seed, b->sampling.seed);
    cr_assert_eq(a->sampling.logprobs, b->sampling.logprobs);
    cr_assert_eq(a->n_stop, b->n_stop);
    for (uint32_t i = 0; i < a->n_stop; i++) cr_assert_str_eq(a->stop[i], b->stop[i]);
    cr_assert_eq(a->n_stop_token_ids, b->n_stop_token_ids);
    for (uint32_t i = 0; i < a->n_stop_token_ids; i++)
        cr_assert_eq(a->stop_token_ids[i], b->stop_token_ids[i]);
}

/* ---- one encoded sample per message, and a decode-and-free wrapper ---- */

typedef struct {
    const char *name;
    void (*encode)(wg_msg_buf *out);
    wg_status (*decode)(const uint8_t *d, size_t n);
    const char *typed_field; /* a known field we retype to check type errors */
    int typed_as_int;        /* 1: put an int there; 0: put a str there */
} codec_case;

#define DEC(name, T, fn, clear)                                    \
    static wg_status dec_##name(const uint8_t *d, size_t n) {    \
        T m;                                                       \
        wg_status st = fn;                                         \
        if (st == WG_OK) clear(&m);                                \
        return st;                                                 \
    }

DEC(job, wg_msg_job, wg_msg_job_decode(d, n, &m), wg_msg_job_clear)
DEC(submit, wg_msg_submit, wg_msg_submit_decode(d, n, &m), wg_msg_submit_clear)
DEC(submitted, wg_msg_submitted, wg_msg_submitted_decode(d, n, &m), wg_msg_submitted_clear)
DEC(cancel, wg_msg_req, wg_msg_req_decode(WG_CMD_CANCEL, d, n, &m), wg_msg_req_clear)
DEC(jobstate, wg_msg_jobstate, wg_msg_jobstate_decode(d, n, &m), wg_msg_jobstate_clear)
DEC(result, wg_msg_result, wg_msg_result_decode(WG_CMD_RESULT, d, n, &m), wg_msg_result_clear)
DEC(done, wg_msg_result, wg_msg_result_decode(WG_CMD_DONE, d, n, &m), wg_msg_result_clear)
DEC(error, wg_msg_error, wg_msg_error_decode(d, n, &m), wg_msg_error_clear)
DEC(ready, wg_msg_ready, wg_msg_ready_decode(d, n, &m), wg_msg_ready_clear)
DEC(heartbeat, wg_msg_heartbeat, wg_msg_heartbeat_decode(d, n, &m), wg_msg_heartbeat_clear)
DEC(failed, wg_msg_failed, wg_msg_failed_decode(d, n, &m), wg_msg_failed_clear)
DEC(disconnect, wg_msg_disconnect, wg_msg_disconnect_decode(d, n, &m), wg_msg_disconnect_clear)
DEC(token, wg_msg_token, wg_msg_token_decode(d, n, &m), wg_msg_token_clear)
DEC(metrics, wg_msg_metrics, wg_msg_metrics_decode(d, n, &m), wg_msg_metrics_clear)

static void enc_job(wg_msg_buf *o) {
    wg_msg_job j;
    s_sample_job(&j, true);
    cr_assert_eq(wg_msg_job_encode(&j, o), WG_OK);
    wg_msg_job_clear(&j);
}
static void enc_submit(wg_msg_buf *o) {
    wg_msg_submit m = {.req = 9, .n_jobs = 2};
    m.jobs = calloc(2, sizeof *m.jobs);
    s_sample_job(&m.jobs[0], false);
    wg_msg_job_init(&m.jobs[1]);
    m.jobs[1].model = S("m2");
    m.jobs[1].prompt = S("hello");
    cr_assert_eq(wg_msg_submit_encode(&m, o), WG_OK);
    wg_msg_submit_clear(&m);
}
static void s_sample_submitted(wg_msg_submitted *m) {
    memset(m, 0, sizeof *m);
    m->req = 123456789012ull;
    m->n_items = 2;
    m->items = calloc(2, sizeof *m->items);
    m->items[0] = (wg_msg_submitted_item){.index = 0, .accepted = true, .job_id = S("aa"), .custom_id = S("c0")};
    m->items[1] = (wg_msg_submitted_item){.index = 1, .accepted = false, .code = WG_ERR_FULL,
                                           .reason = S("queue full"), .retry_after_ms = 1500};
}
static void enc_submitted(wg_msg_buf *o) {
    wg_msg_submitted m;
    s_sample_submitted(&m);
    cr_assert_eq(wg_msg_submitted_encode(&m, o), WG_OK);
    wg_msg_submitted_clear(&m);
}
static void enc_cancel(wg_msg_buf *o) {
    wg_msg_req m = {.req = 5, .job_id = "abc"};
    cr_assert_eq(wg_msg_req_encode(WG_CMD_CANCEL, &m, o), WG_OK);
}
static void enc_jobstate(wg_msg_buf *o) {
    wg_msg_jobstate m = {.req = 1, .job_id = "abc", .custom_id = "c", .state = "running",
                         .attempts = 2, .worker_id = "w1", .error = "boom"};
    cr_assert_eq(wg_msg_jobstate_encode(&m, o), WG_OK);
}
static uint32_t s_toks[] = {5, 6, 7};
static float s_lps[] = {-0.5f, -1.25f, -3.0f};
static void s_sample_result(wg_msg_result *m, bool res) {
    memset(m, 0, sizeof *m);
    m->req = res ? 44 : 0;
    m->job_id = "abc";
    m->custom_id = "c";
    m->state = res ? "done" : NULL;
    m->text = "héllo wörld";
    m->token_ids = s_toks;
    m->n_tokens = 3;
    m->logprobs = s_lps;
    m->n_logprobs = 3;
    m->finish_reason = "length";
    m->prompt_tokens = 11;
    m->completion_tokens = 3;
    m->attempts = res ? 2 : 0;
}
static void enc_result(wg_msg_buf *o) {
    wg_msg_result m;
    s_sample_result(&m, true);
    cr_assert_eq(wg_msg_result_encode(WG_CMD_RESULT, &m, o), WG_OK);
}
static void enc_done(wg_msg_buf *o) {
    wg_msg_result m;
    s_sample_result(&m, false);
    cr_assert_eq(wg_msg_result_encode(WG_CMD_DONE, &m, o), WG_OK);
}
static void enc_error(wg_msg_buf *o) {
    wg_msg_error m = {.req = 3, .code = WG_ERR_FULL, .reason = "full", .retry_after_ms = 250};
    cr_assert_eq(wg_msg_error_encode(&m, o), WG_OK);
}
static char *s_models[] = {"a", "bb"};
static void enc_ready(wg_msg_buf *o) {
    wg_msg_ready m = {.worker_id = "w1", .credits = 8, .models = s_models, .n_models = 2,
                      .stream_endpoint = "tcp://127.0.0.1:7800"};
    cr_assert_eq(wg_msg_ready_encode(&m, o), WG_OK);
}
static wg_msg_model_stat s_mstats[] = {
    {.model = "a", .loads = 3, .load_failures = 0, .load_seconds = 0.25, .evictions = 2, .resident_bytes = 2200000},
    {.model = "bb", .loads = 1, .load_failures = 4, .load_seconds = 1.5, .evictions = 1, .resident_bytes = 0},
};
static void s_sample_metrics(wg_msg_metrics *m) {
    *m = (wg_msg_metrics){.worker_id = "w1", .ts_ms = 1700000000123ull, .tokens_per_s = 512.5,
                          .running = 3, .waiting = 1, .credits = 8, .kv_used_blocks = 10,
                          .kv_total_blocks = 100, .kv_usage = 0.1, .models = s_models,
                          .n_models = 2, .mem_used_bytes = 1ull << 33, .mem_total_bytes = 1ull << 34,
                          .model_stats = s_mstats, .n_model_stats = 2,
                          .prompt_tokens_cached = 123456789012ull, .prompt_tokens_computed = 42};
}
static void enc_heartbeat(wg_msg_buf *o) {
    wg_msg_heartbeat m = {.has_credits = true, .credits = 4, .has_models = true,
                          .models = s_models, .n_models = 2, .has_metrics = true};
    s_sample_metrics(&m.metrics);
    cr_assert_eq(wg_msg_heartbeat_encode(&m, o), WG_OK);
}
static void enc_failed(wg_msg_buf *o) {
    wg_msg_failed m = {.job_id = "abc", .code = WG_ERR_DEVICE, .reason = "cuda oom", .retryable = false};
    cr_assert_eq(wg_msg_failed_encode(&m, o), WG_OK);
}
static void enc_disconnect(wg_msg_buf *o) {
    wg_msg_disconnect m = {.reason = "bye"};
    cr_assert_eq(wg_msg_disconnect_encode(&m, o), WG_OK);
}
static wg_msg_top_logprob s_top[] = {{1, -0.1f}, {2, -2.5f}};
static void enc_token(wg_msg_buf *o) {
    wg_msg_token m = {.job_id = "abc", .seq = 41, .token_id = 99, .text_delta = "é",
                      .has_logprob = true, .logprob = -0.1f, .top = s_top, .n_top = 2,
                      .attempt = 1, .final = true, .finish_reason = "stop"};
    cr_assert_eq(wg_msg_token_encode(&m, o), WG_OK);
}
static void enc_metrics(wg_msg_buf *o) {
    wg_msg_metrics m;
    s_sample_metrics(&m);
    cr_assert_eq(wg_msg_metrics_encode(&m, o), WG_OK);
}

static codec_case s_cases[] = {
    {"JOB", enc_job, dec_job, "max_tokens", 0},
    {"SUBMIT", enc_submit, dec_submit, "jobs", 1},
    {"SUBMITTED", enc_submitted, dec_submitted, "req", 0},
    {"CANCEL", enc_cancel, dec_cancel, "job_id", 1},
    {"JOBSTATE", enc_jobstate, dec_jobstate, "attempts", 0},
    {"RESULT", enc_result, dec_result, "token_ids", 1},
    {"DONE", enc_done, dec_done, "text", 1},
    {"ERROR", enc_error, dec_error, "code", 1},
    {"READY", enc_ready, dec_ready, "credits", 0},
    {"HEARTBEAT", enc_heartbeat, dec_heartbeat, "metrics", 1},
    {"FAILED", enc_failed, dec_failed, "retryable", 1},
    {"DISCONNECT", enc_disconnect, dec_disconnect, "reason", 1},
    {"TOKEN", enc_token, dec_token, "final", 1},
    {"METRICS", enc_metrics, dec_metrics, "kv_usage", 0},
};
#define N_CASES (sizeof s_cases / sizeof s_cases[0])

Test(codec, every_message_decodes_its_own_encoding) {
    for (size_t i = 0; i < N_CASES; i++) {
        wg_msg_buf b = {0};
        s_cases[i].encode(&b);
        wg_status st = s_cases[i].decode(b.data, b.len);
        cr_assert_eq(st, WG_OK, "%s: %s", s_cases[i].name, wg_errmsg());
        wg_msg_buf_free(&b);
    }
}

Test(codec, every_truncation_is_rejected_as_truncated) {
    for (size_t i = 0; i < N_CASES; i++) {
        wg_msg_buf b = {0};
        s_cases[i].encode(&b);
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *cut = malloc(n ? n : 1);
            memcpy(cut, b.data, n);
            wg_status st = s_cases[i].decode(cut, n);
            cr_assert_eq(st, WG_ERR_TRUNCATED, "%s cut at %zu/%zu: got %s (%s)", s_cases[i].name,
                         n, b.len, wg_status_name(st), wg_errmsg());
            free(cut);
        }
        wg_msg_buf_free(&b);
    }
}

Test(codec, trailing_bytes_and_non_map_bodies_are_rejected) {
    for (size_t i = 0; i < N_CASES; i++) {
        wg_msg_buf b = {0};
        s_cases[i].encode(&b);
        uint8_t *more = malloc(b.len + 1);
        memcpy(more, b.data, b.len);
        more[b.len] = 0xc0;
        cr_assert_eq(s_cases[i].decode(more, b.len + 1), WG_ERR_FORMAT, "%s", s_cases[i].name);
        uint8_t arr[] = {0x91, 0x01};
        cr_assert_eq(s_cases[i].decode(arr, sizeof arr), WG_ERR_FORMAT, "%s", s_cases[i].name);
        free(more);
        wg_msg_buf_free(&b);
    }
}

Test(codec, oversized_bodies_are_rejected_before_parsing) {
    size_t n = WG_MSG_MAX_BODY + 1;
    uint8_t *big = calloc(1, n);
    big[0] = 0x80; /* a valid empty map followed by padding */
    for (size_t i = 0; i < N_CASES; i++) {
        cr_assert_eq(s_cases[i].decode(big, n), WG_ERR_RANGE, "%s", s_cases[i].name);
        cr_assert(strstr(wg_errmsg(), "exceeds"), "%s: %s", s_cases[i].name, wg_errmsg());
    }
    free(big);
}

/* Re-encode the sample with one known field's value replaced by the wrong type. */
static void s_retype(const uint8_t *d, size_t n, const char *field, int as_int, wg_msg_buf *out) {
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    cr_assert_eq(msgpack_unpack_next(&u, (const char *)d, n, &off), MSGPACK_UNPACK_SUCCESS);
    msgpack_object_map *m = &u.data.via.map;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, m->size);
    int found = 0;
    for (uint32_t i = 0; i < m->size; i++) {
        msgpack_pack_object(&pk, m->ptr[i].key);
        const msgpack_object_str *k = &m->ptr[i].key.via.str;
        if (k->size == strlen(field) && !memcmp(k->ptr, field, k->size)) {
            found = 1;
            if (as_int) msgpack_pack_int(&pk, -7);
            else {
                msgpack_pack_str(&pk, 3);
                msgpack_pack_str_body(&pk, "bad", 3);
            }
        } else {
            msgpack_pack_object(&pk, m->ptr[i].val);
        }
    }
    cr_assert(found, "sample lacks field %s", field);
    out->data = (uint8_t *)sb.data;
    out->len = sb.size;
    msgpack_unpacked_destroy(&u);
}

Test(codec, wrongly_typed_fields_are_rejected_naming_the_field) {
    for (size_t i = 0; i < N_CASES; i++) {
        wg_msg_buf b = {0}, bad = {0};
        s_cases[i].encode(&b);
        s_retype(b.data, b.len, s_cases[i].typed_field, s_cases[i].typed_as_int, &bad);
        wg_status st = s_cases[i].decode(bad.data, bad.len);
        cr_assert_eq(st, WG_ERR_FORMAT, "%s: got %s (%s)", s_cases[i].name, wg_status_name(st),
                     wg_errmsg());
        cr_assert(strstr(wg_errmsg(), s_cases[i].typed_field), "%s: %s", s_cases[i].name, wg_errmsg());
        wg_msg_buf_free(&b);
        wg_msg_buf_free(&bad);
    }
}

Test(codec, job_round_trip_keeps_every_field) {
    wg_msg_job a, b;
    wg_msg_buf buf = {0};
    s_sample_job(&a, true);
    cr_assert_eq(wg_msg_job_encode(&a, &buf), WG_OK);
    cr_assert_eq(wg_msg_job_decode(buf.data, buf.len, &b), WG_OK, "%s", wg_errmsg());
    s_job_eq(&a, &b);
    wg_msg_job c;
    cr_assert_eq(wg_msg_job_copy(&c, &b), WG_OK);
    s_job_eq(&a, &c);
    cr_assert_eq(wg_msg_job_prompt_tokens_est(&a), (8 + 16 + 3) / 4);
    wg_msg_job_clear(&a);
    wg_msg_job_clear(&b);
    wg_msg_job_clear(&c);
    wg_msg_buf_free(&buf);
}

Test(codec, submit_round_trip_and_job_rules) {
    wg_msg_buf buf = {0};
    enc_submit(&buf);
    wg_msg_submit m;
    cr_assert_eq(wg_msg_submit_decode(buf.data, buf.len, &m), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(m.req, 9);
    cr_assert_eq(m.n_jobs, 2);
    wg_msg_job ref;
    s_sample_job(&ref, false);
    s_job_eq(&ref, &m.jobs[0]);
    cr_assert_str_eq(m.jobs[1].prompt, "hello");
    cr_assert_eq(m.jobs[1].max_tokens, 256);
    cr_assert_float_eq(m.jobs[1].sampling.temperature, 1.0, 1e-12);
    wg_msg_job_clear(&ref);
    wg_msg_submit_clear(&m);
    wg_msg_buf_free(&buf);

    /* both prompt and messages -> ERR_INVAL; no model -> ERR_FORMAT; max_tokens 0 -> ERR_RANGE */
    wg_msg_submit s = {.n_jobs = 1};
    s.jobs = calloc(1, sizeof *s.jobs);
    s_sample_job(&s.jobs[0], false);
    {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "jobs", 4);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "model", 5);
        msgpack_pack_str_with_body(&pk, "m", 1);
        msgpack_pack_str_with_body(&pk, "prompt", 6);
        msgpack_pack_str_with_body(&pk, "x", 1);
        msgpack_pack_str_with_body(&pk, "messages", 8);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "role", 4);
        msgpack_pack_str_with_body(&pk, "user", 4);
        msgpack_pack_str_with_body(&pk, "content", 7);
        msgpack_pack_str_with_body(&pk, "y", 1);
        cr_assert_eq(wg_msg_submit_decode((uint8_t *)sb.data, sb.size, &m), WG_ERR_INVAL);
        cr_assert(strstr(wg_errmsg(), "exactly one"));
        msgpack_sbuffer_destroy(&sb);
    }
    s.jobs[0].max_tokens = 0;
    cr_assert_eq(wg_msg_submit_encode(&s, &buf), WG_OK);
    cr_assert_eq(wg_msg_submit_decode(buf.data, buf.len, &m), WG_ERR_RANGE, "%s", wg_errmsg());
    cr_assert(strstr(wg_errmsg(), "max_tokens"));
    wg_msg_buf_free(&buf);
    wg_msg_submit_clear(&s);
}

Test(codec, submit_batch_over_limit_is_rejected) {
    wg_msg_submit s = {.n_jobs = WG_MSG_MAX_BATCH + 1};
    s.jobs = calloc(s.n_jobs, sizeof *s.jobs);
    for (uint32_t i = 0; i < s.n_jobs; i++) {
        wg_msg_job_init(&s.jobs[i]);
        s.jobs[i].model = S("m");
        s.jobs[i].prompt = S("p");
    }
    wg_msg_buf buf = {0};
    cr_assert_eq(wg_msg_submit_encode(&s, &buf), WG_OK);
    wg_msg_submit m;
    cr_assert_eq(wg_msg_submit_decode(buf.data, buf.len, &m), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "jobs"));
    wg_msg_buf_free(&buf);
    wg_msg_submit_clear(&s);
}

Test(codec, huge_declared_counts_fail_without_allocating) {
    /* {"jobs": array32 of 2^32-1 entries} with nothing after it */
    uint8_t d[] = {0x81, 0xa4, 'j', 'o', 'b', 's', 0xdd, 0xff, 0xff, 0xff, 0xff};
    wg_msg_submit m;
    cr_assert_eq(wg_msg_submit_decode(d, sizeof d, &m), WG_ERR_TRUNCATED);
    uint8_t s32[] = {0x81, 0xa6, 'j', 'o', 'b', '_', 'i', 'd', 0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'};
    wg_msg_req r;
    cr_assert_eq(wg_msg_req_decode(WG_CMD_STATUS, s32, sizeof s32, &r), WG_ERR_TRUNCATED);
}

Test(codec, deep_nesting_in_unknown_keys_is_bounded) {
    uint8_t d[64];
    size_t n = 0;
    d[n++] = 0x82;
    d[n++] = 0xa1;
    d[n++] = 'x';
    for (int i = 0; i < 20; i++) d[n++] = 0x91;
    d[n++] = 0x01;
    d[n++] = 0xa4;
    memcpy(d + n, "code", 4);
    n += 4;
    d[n++] = 0xa3;
    memcpy(d + n, "ERR", 3);
    n += 3;
    wg_msg_error e;
    cr_assert_eq(wg_msg_error_decode(d, n, &e), WG_ERR_RANGE, "%s", wg_errmsg());
}

Test(codec, unknown_keys_are_ignored) {
    /* {"zz": {"a": [1, 2.5, nil]}, "code": "ERR_FULL", "reason": "r"} */
    uint8_t d[] = {0x83, 0xa2, 'z', 'z', 0x81, 0xa1, 'a', 0x93, 0x01, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0,
                   0xc0, 0xa4, 'c', 'o', 'd', 'e', 0xa8, 'E', 'R', 'R', '_', 'F', 'U', 'L', 'L',
                   0xa6, 'r', 'e', 'a', 's', 'o', 'n', 0xa1, 'r'};
    wg_msg_error e;
    cr_assert_eq(wg_msg_error_decode(d, sizeof d, &e), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(e.code, WG_ERR_FULL);
    cr_assert_str_eq(e.reason, "r");
    wg_msg_error_clear(&e);
}

Test(codec, result_round_trip) {
    wg_msg_buf b = {0};
    enc_result(&b);
    wg_msg_result r, ref;
    s_sample_result(&ref, true);
    cr_assert_eq(wg_msg_result_decode(WG_CMD_RESULT, b.data, b.len, &r), WG_OK);
    cr_assert_eq(r.req, 44);
    cr_assert_str_eq(r.state, "done");
    cr_assert_str_eq(r.text, ref.text);
    cr_assert_eq(r.n_tokens, 3);
    cr_assert_eq(r.token_ids[2], 7);
    cr_assert_float_eq(r.logprobs[1], -1.25f, 1e-6);
    cr_assert_str_eq(r.finish_reason, "length");
    cr_assert_eq(r.prompt_tokens, 11);
    cr_assert_eq(r.completion_tokens, 3);
    cr_assert_eq(r.attempts, 2);
    wg_msg_result_clear(&r);
    wg_msg_buf_free(&b);
}

Test(codec, submitted_and_error_round_trip) {
    wg_msg_buf b = {0};
    enc_submitted(&b);
    wg_msg_submitted m;
    cr_assert_eq(wg_msg_submitted_decode(b.data, b.len, &m), WG_OK);
    cr_assert_eq(m.req, 123456789012ull);
    cr_assert_eq(m.n_items, 2);
    cr_assert(m.items[0].accepted);
    cr_assert_str_eq(m.items[0].job_id, "aa");
    cr_assert(!m.items[1].accepted);
    cr_assert_eq(m.items[1].code, WG_ERR_FULL);
    cr_assert_eq(m.items[1].retry_after_ms, 1500);
    wg_msg_submitted_clear(&m);
    wg_msg_buf_free(&b);
    enc_error(&b);
    wg_msg_error e;
    cr_assert_eq(wg_msg_error_decode(b.data, b.len, &e), WG_OK);
    cr_assert_eq(e.code, WG_ERR_FULL);
    cr_assert_eq(e.retry_after_ms, 250);
    cr_assert_str_eq(e.reason, "full");
    wg_msg_error_clear(&e);
    wg_msg_buf_free(&b);
}

Test(codec, worker_messages_round_trip) {
    wg_msg_buf b = {0};
    enc_ready(&b);
    wg_msg_ready r;
    cr_assert_eq(wg_msg_ready_decode(b.data, b.len, &r), WG_OK);
    cr_assert_str_eq(r.worker_id, "w1");
    cr_assert_eq(r.credits, 8);
    cr_assert_eq(r.n_models, 2);
    cr_assert_str_eq(r.models[1], "bb");
    cr_assert_str_eq(r.stream_endpoint, "tcp://127.0.0.1:7800");
    wg_msg_ready_clear(&r);
    wg_msg_buf_free(&b);

    enc_heartbeat(&b);
    wg_msg_heartbeat h;
    cr_assert_eq(wg_msg_heartbeat_decode(b.data, b.len, &h), WG_OK);
    cr_assert(h.has_credits && h.credits == 4 && h.has_models && h.n_models == 2 && h.has_metrics);
    cr_assert_eq(h.metrics.mem_total_bytes, 1ull << 34);
    cr_assert_float_eq(h.metrics.tokens_per_s, 512.5, 1e-9);
    cr_assert_eq(h.metrics.n_model_stats, 2, "HEARTBEAT metrics carry model_stats");
    cr_assert_eq(h.metrics.prompt_tokens_cached, 123456789012ull);
    cr_assert_eq(h.metrics.prompt_tokens_computed, 42);
    cr_assert_str_eq(h.metrics.model_stats[1].model, "bb");
    cr_assert_eq(h.metrics.model_stats[1].load_failures, 4);
    wg_msg_heartbeat_clear(&h);
    wg_msg_buf_free(&b);
    cr_assert_eq(wg_msg_empty_encode(&b), WG_OK);
    cr_assert_eq(wg_msg_heartbeat_decode(b.data, b.len, &h), WG_OK);
    cr_assert(!h.has_credits && !h.has_metrics);
    wg_msg_buf_free(&b);

    enc_failed(&b);
    wg_msg_failed f;
    cr_assert_eq(wg_msg_failed_decode(b.data, b.len, &f), WG_OK);
    cr_assert_eq(f.code, WG_ERR_DEVICE);
    cr_assert(!f.retryable);
    cr_assert_str_eq(f.reason, "cuda oom");
    wg_msg_failed_clear(&f);
    wg_msg_buf_free(&b);

    /* READY / HEARTBEAT with 0 credits mean "take no new jobs" (draining) */
    wg_msg_ready z = {.worker_id = "w", .credits = 0};
    cr_assert_eq(wg_msg_ready_encode(&z, &b), WG_OK);
    cr_assert_eq(wg_msg_ready_decode(b.data, b.len, &r), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(r.credits, 0);
    wg_msg_ready_clear(&r);
    wg_msg_buf_free(&b);
    wg_msg_heartbeat hz = {.has_credits = true, .credits = 0}, hd;
    cr_assert_eq(wg_msg_heartbeat_encode(&hz, &b), WG_OK);
    cr_assert_eq(wg_msg_heartbeat_decode(b.data, b.len, &hd), WG_OK, "%s", wg_errmsg());
    cr_assert(hd.has_credits && hd.credits == 0);
    wg_msg_heartbeat_clear(&hd);
    wg_msg_buf_free(&b);
    /* over the limit is still rejected */
    z.credits = WG_MSG_MAX_CREDITS + 1;
    cr_assert_eq(wg_msg_ready_encode(&z, &b), WG_OK);
    cr_assert_eq(wg_msg_ready_decode(b.data, b.len, &r), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "credits"));
    wg_msg_buf_free(&b);
}

/* ---- v1 additions: token-id prompts, logit_bias, return_logprob, top_logprobs in results ---- */

Test(codec, token_prompt_and_logit_bias_round_trip) {
    wg_msg_job a, b, c;
    wg_msg_buf buf = {0};
    s_sample_job(&a, true);
    for (uint32_t i = 0; i < a.n_messages; i++) {
        free(a.messages[i].role);
        free(a.messages[i].content);
    }
    free(a.messages);
    a.messages = NULL;
    a.n_messages = 0;
    uint32_t ids[] = {1, 0, 511, 70000, 4000000000u};
    a.prompt_ids = malloc(sizeof ids);
    memcpy(a.prompt_ids, ids, sizeof ids);
    a.n_prompt_ids = 5;
    a.logit_bias = calloc(3, sizeof *a.logit_bias);
    a.n_logit_bias = 3;
    a.logit_bias[0] = (wg_msg_logit_bias){7, 2.5f};
    a.logit_bias[1] = (wg_msg_logit_bias){9, -INFINITY};
    a.logit_bias[2] = (wg_msg_logit_bias){300, -0.125f};
    a.sampling.logprobs = 0;
    a.sampling.chosen_logprob = true;
    cr_assert_eq(wg_msg_job_encode(&a, &buf), WG_OK);
    cr_assert_eq(wg_msg_job_decode(buf.data, buf.len, &b), WG_OK, "%s", wg_errmsg());
    s_job_eq(&a, &b);
    cr_assert_null(b.prompt);
    cr_assert_eq(b.n_prompt_ids, 5);
    for (int i = 0; i < 5; i++) cr_assert_eq(b.prompt_ids[i], ids[i]);
    cr_assert_eq(b.n_logit_bias, 3);
    cr_assert_eq(b.logit_bias[0].token_id, 7);
    cr_assert_eq(b.logit_bias[0].bias, 2.5f);
    cr_assert(isinf(b.logit_bias[1].bias) && b.logit_bias[1].bias < 0);
    cr_assert_eq(b.logit_bias[2].token_id, 300);
    cr_assert_eq(b.logit_bias[2].bias, -0.125f);
    cr_assert(b.sampling.chosen_logprob);
    cr_assert_eq(b.sampling.logprobs, 0);
    cr_assert_eq(wg_msg_job_copy(&c, &b), WG_OK);
    cr_assert_eq(c.n_prompt_ids, 5);
    cr_assert_neq(c.prompt_ids, b.prompt_ids);
    cr_assert_eq(c.prompt_ids[3], 70000);
    cr_assert_eq(c.n_logit_bias, 3);
    cr_assert_eq(c.logit_bias[2].token_id, 300);
    cr_assert_eq(wg_msg_job_prompt_tokens_est(&a), 5);
    /* without return_logprob the flag stays false */
    wg_msg_buf_free(&buf);
    a.sampling.chosen_logprob = false;
    cr_assert_eq(wg_msg_job_encode(&a, &buf), WG_OK);
    wg_msg_job d;
    cr_assert_eq(wg_msg_job_decode(buf.data, buf.len, &d), WG_OK);
    cr_assert(!d.sampling.chosen_logprob);
    wg_msg_job_clear(&d);
    wg_msg_job_clear(&a);
    wg_msg_job_clear(&b);
    wg_msg_job_clear(&c);
    wg_msg_buf_free(&buf);
}

/* {"jobs":[{"model":"m", <key>: <raw bytes>}]} as a SUBMIT body. */
static wg_status s_submit_with(const char *key, const uint8_t *raw, size_t n_raw, bool with_prompt) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "jobs", 4);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, with_prompt ? 3 : 2);
    msgpack_pack_str_with_body(&pk, "model", 5);
    msgpack_pack_str_with_body(&pk, "m", 1);
    if (with_prompt) {
        msgpack_pack_str_with_body(&pk, "prompt", 6);
        msgpack_pack_str_with_body(&pk, "p", 1);
    }
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    msgpack_sbuffer_write(&sb, (const char *)raw, n_raw);
    wg_msg_submit m;
    wg_status st = wg_msg_submit_decode((uint8_t *)sb.data, sb.size, &m);
    if (st == WG_OK) wg_msg_submit_clear(&m);
    msgpack_sbuffer_destroy(&sb);
    return st;
}

Test(codec, bad_token_prompts_and_logit_bias_are_rejected) {
    /* prompt = [] */
    uint8_t empty[] = {0x90};
    cr_assert_eq(s_submit_with("prompt", empty, sizeof empty, false), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "prompt"), "%s", wg_errmsg());
    /* prompt = [1, -1] (negative id) */
    uint8_t neg[] = {0x92, 0x01, 0xff};
    cr_assert_neq(s_submit_with("prompt", neg, sizeof neg, false), WG_OK);
    cr_assert(strstr(wg_errmsg(), "prompt"), "%s", wg_errmsg());
    /* prompt = [1, "x"] */
    uint8_t mixed[] = {0x92, 0x01, 0xa1, 'x'};
    cr_assert_eq(s_submit_with("prompt", mixed, sizeof mixed, false), WG_ERR_FORMAT);
    /* a token prompt is fine alone */
    uint8_t ok[] = {0x93, 0x01, 0x02, 0xcd, 0x01, 0x00};
    cr_assert_eq(s_submit_with("prompt", ok, sizeof ok, false), WG_OK, "%s", wg_errmsg());
    /* logit_bias entry with 3 items */
    uint8_t three[] = {0x91, 0x93, 0x01, 0x02, 0x03};
    cr_assert_neq(s_submit_with("logit_bias", three, sizeof three, true), WG_OK);
    cr_assert(strstr(wg_errmsg(), "logit_bias"), "%s", wg_errmsg());
    /* logit_bias as a map (not the wire shape) */
    uint8_t map[] = {0x81, 0xa1, '5', 0x01};
    cr_assert_eq(s_submit_with("logit_bias", map, sizeof map, true), WG_ERR_FORMAT);
    /* bias = +inf, NaN */
    uint8_t pinf[] = {0x91, 0x92, 0x05, 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(s_submit_with("logit_bias", pinf, sizeof pinf, true), WG_ERR_RANGE);
    uint8_t nan[] = {0x91, 0x92, 0x05, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(s_submit_with("logit_bias", nan, sizeof nan, true), WG_ERR_RANGE);
    /* -inf is allowed (ban) */
    uint8_t ninf[] = {0x91, 0x92, 0x05, 0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(s_submit_with("logit_bias", ninf, sizeof ninf, true), WG_OK, "%s", wg_errmsg());
    /* return_logprob must be a bool */
    uint8_t rl[] = {0x81, 0xae, 'r', 'e', 't', 'u', 'r', 'n', '_', 'l', 'o', 'g', 'p', 'r', 'o', 'b', 0x01};
    cr_assert_eq(s_submit_with("sampling", rl, sizeof rl, true), WG_ERR_FORMAT);
    /* too many logit_bias entries */
    size_t nb = 3 + (size_t)(WG_MSG_MAX_LOGIT_BIAS + 1) * 3;
    uint8_t *big = malloc(nb);
    big[0] = 0xdc;
    big[1] = (uint8_t)((WG_MSG_MAX_LOGIT_BIAS + 1) >> 8);
    big[2] = (uint8_t)((WG_MSG_MAX_LOGIT_BIAS + 1) & 0xff);
    for (size_t i = 3; i < nb; i += 3) {
        big[i] = 0x92;
        big[i + 1] = 0x01;
        big[i + 2] = 0x00;
    }
    cr_assert_eq(s_submit_with("logit_bias", big, nb, true), WG_ERR_RANGE);
    free(big);
}

Test(codec, more_than_eight_stop_strings_are_rejected_at_submit_with_a_reason) {
    cr_assert_eq(WG_MSG_MAX_STOP, 8);
    wg_msg_submit s = {.n_jobs = 2};
    s.jobs = calloc(2, sizeof *s.jobs);
    for (int q = 0; q < 2; q++) {
        wg_msg_job_init(&s.jobs[q]);
        s.jobs[q].model = S("m");
        s.jobs[q].prompt = S("p");
    }
    s.jobs[1].n_stop = 9;
    s.jobs[1].stop = calloc(9, sizeof(char *));
    for (int i = 0; i < 9; i++) s.jobs[1].stop[i] = S("x");
    wg_msg_buf buf = {0};
    cr_assert_eq(wg_msg_submit_encode(&s, &buf), WG_OK);
    wg_msg_submit m;
    cr_assert_eq(wg_msg_submit_decode(buf.data, buf.len, &m), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "job 1") && strstr(wg_errmsg(), "9") && strstr(wg_errmsg(), "at most 8"),
              "%s", wg_errmsg());
    wg_msg_buf_free(&buf);
    /* exactly 8 is fine */
    free(s.jobs[1].stop[8]);
    s.jobs[1].n_stop = 8;
    cr_assert_eq(wg_msg_submit_encode(&s, &buf), WG_OK);
    cr_assert_eq(wg_msg_submit_decode(buf.data, buf.len, &m), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(m.jobs[1].n_stop, 8);
    wg_msg_submit_clear(&m);
    wg_msg_buf_free(&buf);
    wg_msg_submit_clear(&s);
}

Test(codec, result_top_logprobs_round_trip_and_rejections) {
    wg_msg_result a;
    memset(&a, 0, sizeof a);
    uint32_t toks[] = {5, 6, 7};
    float lps[] = {-0.5f, -1.25f, -3.0f};
    uint8_t nt[] = {2, 0, 3};
    wg_msg_top_logprob top[] = {{5, -0.5f}, {8, -1.0f}, {7, -3.0f}, {1, -3.5f}, {2, -4.0f}};
    a.job_id = "j";
    a.text = "abc";
    a.token_ids = toks;
    a.n_tokens = 3;
    a.logprobs = lps;
    a.n_logprobs = 3;
    a.n_top = nt;
    a.top = top;
    a.finish_reason = "stop";
    a.has_end = true;
    a.end_token = 2;
    a.end_logprob = -0.75f;
    a.end_n_top = 2;
    a.end_top[0] = (wg_msg_top_logprob){2, -0.75f};
    a.end_top[1] = (wg_msg_top_logprob){9, -2.0f};
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_result_encode(WG_CMD_DONE, &a, &b), WG_OK);
    wg_msg_result r;
    cr_assert_eq(wg_msg_result_decode(WG_CMD_DONE, b.data, b.len, &r), WG_OK, "%s", wg_errmsg());
    cr_assert(r.has_end && r.end_token == 2 && r.end_logprob == -0.75f && r.end_n_top == 2);
    cr_assert(r.end_top[1].token_id == 9 && r.end_top[1].logprob == -2.0f);
    cr_assert_not_null(r.n_top);
    cr_assert(r.n_top[0] == 2 && r.n_top[1] == 0 && r.n_top[2] == 3);
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(r.top[i].token_id, top[i].token_id);
        cr_assert_eq(r.top[i].logprob, top[i].logprob);
    }
    wg_msg_result_clear(&r);
    wg_msg_buf_free(&b);
    /* rows must match token_ids */
    a.has_end = false;
    a.n_tokens = 2;
    a.n_logprobs = 2;
    cr_assert_eq(wg_msg_result_encode(WG_CMD_DONE, &a, &b), WG_OK);
    uint8_t *d = malloc(b.len + 8);
    memcpy(d, b.data, b.len);
    cr_assert_eq(wg_msg_result_decode(WG_CMD_DONE, d, b.len, &r), WG_OK);
    wg_msg_result_clear(&r);
    free(d);
    wg_msg_buf_free(&b);
    /* a row over 20 entries: encoder refuses; hand-made body: decoder refuses */
    uint8_t many[] = {21};
    a.n_tokens = 1;
    a.n_logprobs = 1;
    a.n_top = many;
    cr_assert_eq(wg_msg_result_encode(WG_CMD_DONE, &a, &b), WG_ERR_RANGE);
    /* {"job_id":"j","token_ids":[1],"top_logprobs":[[1,2]]} -> inner pair is not an array */
    uint8_t bad[] = {0x83, 0xa6, 'j', 'o', 'b', '_', 'i', 'd', 0xa1, 'j', 0xa9, 't', 'o', 'k', 'e', 'n', '_', 'i', 'd',
                     's', 0x91, 0x01, 0xac, 't', 'o', 'p', '_', 'l', 'o', 'g', 'p', 'r', 'o', 'b', 's', 0x91, 0x92,
                     0x01, 0x02};
    cr_assert_neq(wg_msg_result_decode(WG_CMD_DONE, bad, sizeof bad, &r), WG_OK);
    /* {"job_id":"j","token_ids":[1,2],"top_logprobs":[[]]} -> 1 row for 2 tokens */
    uint8_t rows[] = {0x83, 0xa6, 'j', 'o', 'b', '_', 'i', 'd', 0xa1, 'j', 0xa9, 't', 'o', 'k', 'e', 'n', '_', 'i', 'd',
                      's', 0x92, 0x01, 0x02, 0xac, 't', 'o', 'p', '_', 'l', 'o', 'g', 'p', 'r', 'o', 'b', 's', 0x91,
                      0x90};
    cr_assert_eq(wg_msg_result_decode(WG_CMD_DONE, rows, sizeof rows, &r), WG_ERR_FORMAT);
    cr_assert(strstr(wg_errmsg(), "top_logprobs"), "%s", wg_errmsg());
}

Test(codec, stream_messages_round_trip) {
    wg_msg_buf b = {0};
    enc_token(&b);
    wg_msg_token t;
    cr_assert_eq(wg_msg_token_decode(b.data, b.len, &t), WG_OK);
    cr_assert_eq(t.seq, 41);
    cr_assert_eq(t.token_id, 99);
    cr_assert_str_eq(t.text_delta, "é");
    cr_assert(t.final && t.has_logprob);
    cr_assert_eq(t.n_top, 2);
    cr_assert_eq(t.top[1].token_id, 2);
    cr_assert_float_eq(t.top[1].logprob, -2.5f, 1e-6);
    cr_assert_str_eq(t.finish_reason, "stop");
    wg_msg_token_clear(&t);
    wg_msg_buf_free(&b);
    /* final without finish_reason is invalid */
    wg_msg_token bad = {.job_id = "j", .text_delta = "", .final = true};
    cr_assert_eq(wg_msg_token_encode(&bad, &b), WG_OK);
    cr_assert_eq(wg_msg_token_decode(b.data, b.len, &t), WG_ERR_FORMAT);
    cr_assert(strstr(wg_errmsg(), "finish_reason"));
    wg_msg_buf_free(&b);
    char topic[160];
    cr_assert_eq(wg_msg_token_topic("abc", topic, sizeof topic), 5);
    cr_assert_str_eq(topic, "t/abc");
    wg_msg_metrics_topic("w9", topic, sizeof topic);
    cr_assert_str_eq(topic, "m/w9");
}

Test(codec, commands_and_signature) {
    wg_msg_cmd c;
    for (int i = 1; i < WG_CMD_COUNT; i++) {
        const char *n = wg_msg_cmd_name((wg_msg_cmd)i);
        cr_assert_eq(wg_msg_cmd_parse(n, strlen(n), &c), WG_OK);
        cr_assert_eq(c, i);
    }
    cr_assert_eq(wg_msg_cmd_parse("SUBMITX", 7, &c), WG_ERR_PROTOCOL);
    cr_assert_eq(wg_msg_cmd_parse("", 0, &c), WG_ERR_PROTOCOL);
    cr_assert_eq(wg_msg_check_signature("WGL1", 4), WG_OK);
    cr_assert_eq(wg_msg_check_signature("WGL2", 4), WG_ERR_VERSION);
    cr_assert(strstr(wg_errmsg(), "WGL2"));
    cr_assert_eq(wg_msg_check_signature("WGL", 3), WG_ERR_VERSION);
    cr_assert_eq(wg_msg_status_from_name("ERR_FULL"), WG_ERR_FULL);
    cr_assert_eq(wg_msg_status_from_name("NOPE"), WG_ERR);
}

Test(codec, zmq_framing_detects_version_frames_and_commands) {
    void *ctx = zmq_ctx_new();
    void *rt = zmq_socket(ctx, ZMQ_ROUTER), *dl = zmq_socket(ctx, ZMQ_DEALER);
    cr_assert_eq(zmq_bind(rt, "inproc://codec"), 0);
    cr_assert_eq(zmq_connect(dl, "inproc://codec"), 0);
    wg_msg_buf b = {0};
    enc_cancel(&b);
    wg_msg_in in;
    /* good message */
    cr_assert_eq(wg_msg_send(dl, NULL, 0, WG_CMD_CANCEL, &b, 0), WG_OK);
    cr_assert_eq(wg_msg_recv(rt, true, &in, 0), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(in.cmd, WG_CMD_CANCEL);
    cr_assert_eq(in.body_len, b.len);
    cr_assert(in.id_len > 0);
    wg_msg_in_clear(&in);
    /* wrong version */
    zmq_send(dl, "", 0, ZMQ_SNDMORE);
    zmq_send(dl, "WGL9", 4, ZMQ_SNDMORE);
    zmq_send(dl, "CANCEL", 6, ZMQ_SNDMORE);
    zmq_send(dl, b.data, b.len, 0);
    cr_assert_eq(wg_msg_recv(rt, true, &in, 0), WG_ERR_VERSION);
    cr_assert(!in.version_ok && in.id_len > 0);
    wg_msg_in_clear(&in);
    /* too few frames */
    zmq_send(dl, "", 0, ZMQ_SNDMORE);
    zmq_send(dl, "WGL1", 4, 0);
    cr_assert_eq(wg_msg_recv(rt, true, &in, 0), WG_ERR_PROTOCOL);
    wg_msg_in_clear(&in);
    /* unknown command, then the socket still works */
    zmq_send(dl, "", 0, ZMQ_SNDMORE);
    zmq_send(dl, "WGL1", 4, ZMQ_SNDMORE);
    zmq_send(dl, "FROB", 4, ZMQ_SNDMORE);
    zmq_send(dl, "\x80", 1, 0);
    cr_assert_eq(wg_msg_recv(rt, true, &in, 0), WG_ERR_PROTOCOL);
    wg_msg_in_clear(&in);
    cr_assert_eq(wg_msg_send(dl, NULL, 0, WG_CMD_PING, NULL, 0), WG_OK);
    cr_assert_eq(wg_msg_recv(rt, true, &in, 0), WG_OK);
    cr_assert_eq(in.cmd, WG_CMD_PING);
    wg_msg_in_clear(&in);
    wg_msg_buf_free(&b);
    zmq_close(rt);
    zmq_close(dl);
    zmq_ctx_term(ctx);
}

/* ---- CURVE key files: '#' and '=' are Z85 digits ---- */

Test(codec, key_files_accept_keys_with_hash_and_equals) {
    /* Real Z85 keys may start with '#' or contain '='. */
    const char *k1 = "#bcdefghij0123456789ABCDEFGHIJ=+-.:^!/*?";
    const char *k2 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    const char *k3 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";
    char text[1024];
    snprintf(text, sizeof text,
             "# allowed producers\n"
             "%s\n"
             "\n"
             "   %s  \r\n"
             "#  a comment that is not 40 chars\n"
             "public-key = \"%s\"\n",
             k1, k2, k3);
    char **keys = NULL;
    uint32_t n = 0;
    cr_assert_eq(wg_msg_keys_parse(text, strlen(text), &keys, &n), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(n, 3);
    cr_assert_str_eq(keys[0], k1);
    cr_assert_str_eq(keys[1], k2);
    cr_assert_str_eq(keys[2], k3);
    wg_msg_keys_free(&keys, &n);
    cr_assert_null(keys);
    /* a key ending in '=' on a zcert line */
    const char *k4 = "abcdefghij0123456789ABCDEFGHIJabcdefghi=";
    snprintf(text, sizeof text, "secret-key = \"%s\"\n", k4);
    cr_assert_eq(wg_msg_keys_parse(text, strlen(text), &keys, &n), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(n, 1);
    cr_assert_str_eq(keys[0], k4);
    wg_msg_keys_free(&keys, &n);
    /* and alone on a line */
    snprintf(text, sizeof text, "%s", k4);
    cr_assert_eq(wg_msg_keys_parse(text, strlen(text), &keys, &n), WG_OK);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(keys[0], k4);
    wg_msg_keys_free(&keys, &n);
}

Test(codec, key_files_reject_malformed_lines_naming_the_line) {
    char **keys = NULL;
    uint32_t n = 0;
    const char *bad[] = {
        "abcdefghij0123456789ABCDEFGHIJabcdefghi\n",           /* 39 chars */
        "abcdefghij0123456789ABCDEFGHIJabcdefghijk\n",         /* 41 chars */
        "abcdefghij0123456789ABCDEFGHIJabcdefgh\"j\n",          /* '\"' is not Z85 */
        "public-key = \"short\"\n",
        "x = abcdefghij0123456789ABCDEFGHIJabcdefghij\n",      /* unquoted */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[256];
        snprintf(text, sizeof text, "# header\n%s", bad[i]);
        cr_assert_eq(wg_msg_keys_parse(text, strlen(text), &keys, &n), WG_ERR_FORMAT, "case %zu", i);
        cr_assert(strstr(wg_errmsg(), "line 2"), "case %zu: %s", i, wg_errmsg());
        cr_assert_null(keys);
        cr_assert_eq(n, 0);
    }
    cr_assert(wg_msg_z85_key_ok("#bcdefghij0123456789ABCDEFGHIJ=+-.:^!/*?", 40));
    cr_assert(!wg_msg_z85_key_ok("#bcdefghij0123456789ABCDEFGHIJ=+-.:^!/*,", 40));
    char path[] = "/tmp/wg_keys_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *body = "#bcdefghij0123456789ABCDEFGHIJ=+-.:^!/*?\n";
    cr_assert_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    close(fd);
    cr_assert_eq(wg_msg_keys_read(path, &keys, &n), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(n, 1);
    cr_assert_str_eq(keys[0], "#bcdefghij0123456789ABCDEFGHIJ=+-.:^!/*?");
    wg_msg_keys_free(&keys, &n);
    unlink(path);
    cr_assert_eq(wg_msg_keys_read(path, &keys, &n), WG_ERR_IO);
}

/* ---- METRICS model_stats (per-model residency counters, since 0.2) ---- */

/* A METRICS body {worker_id: "w", model_stats: <packed by fn>}. */
static void s_metrics_body(void (*fn)(msgpack_packer *), msgpack_sbuffer *sb) {
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str(&pk, 9);
    msgpack_pack_str_body(&pk, "worker_id", 9);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "w", 1);
    msgpack_pack_str(&pk, 11);
    msgpack_pack_str_body(&pk, "model_stats", 11);
    fn(&pk);
}

static void s_pk_str(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* One entry {model: name, load_seconds: secs}. */
static void s_pk_entry(msgpack_packer *pk, const char *name, double secs) {
    msgpack_pack_map(pk, 2);
    s_pk_str(pk, "model");
    s_pk_str(pk, name);
    s_pk_str(pk, "load_seconds");
    msgpack_pack_double(pk, secs);
}

static void ms_too_many(msgpack_packer *pk) {
    msgpack_pack_array(pk, WG_MSG_MAX_MODELS + 1);
    for (int i = 0; i <= WG_MSG_MAX_MODELS; i++) {
        char n[16];
        snprintf(n, sizeof n, "m%d", i);
        s_pk_entry(pk, n, 0);
    }
}
static void ms_no_model(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    s_pk_str(pk, "loads");
    msgpack_pack_uint64(pk, 3);
}
static void ms_duplicate(msgpack_packer *pk) {
    msgpack_pack_array(pk, 2);
    s_pk_entry(pk, "st", 0.5);
    s_pk_entry(pk, "st", 0.25);
}
static void ms_negative_seconds(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    s_pk_entry(pk, "st", -1.0);
}
static void ms_nan_seconds(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    s_pk_entry(pk, "st", NAN);
}
static void ms_negative_loads(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    s_pk_str(pk, "model");
    s_pk_str(pk, "st");
    s_pk_str(pk, "loads");
    msgpack_pack_int64(pk, -2);
}
static void ms_long_name(msgpack_packer *pk) {
    char n[WG_MSG_MAX_MODEL + 2];
    memset(n, 'x', sizeof n - 1);
    n[sizeof n - 1] = '\0';
    msgpack_pack_array(pk, 1);
    s_pk_entry(pk, n, 0);
}
static void ms_not_a_map(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    s_pk_str(pk, "st");
}
static void ms_not_an_array(msgpack_packer *pk) { msgpack_pack_uint64(pk, 7); }
static void ms_huge_count(msgpack_packer *pk) { msgpack_pack_array(pk, 60); } /* no entries follow */
static void ms_unknown_inner_key(msgpack_packer *pk) {
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 3);
    s_pk_str(pk, "model");
    s_pk_str(pk, "st");
    s_pk_str(pk, "future");
    msgpack_pack_array(pk, 2);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    s_pk_str(pk, "evictions");
    msgpack_pack_uint64(pk, 9);
}

Test(codec, metrics_model_stats_round_trip_and_old_maps_still_decode) {
    wg_msg_buf b = {0};
    enc_metrics(&b);
    wg_msg_metrics m;
    cr_assert_eq(wg_msg_metrics_decode(b.data, b.len, &m), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(m.n_model_stats, 2);
    for (uint32_t i = 0; i < 2; i++) {
        cr_assert_str_eq(m.model_stats[i].model, s_mstats[i].model);
        cr_assert_eq(m.model_stats[i].loads, s_mstats[i].loads);
        cr_assert_eq(m.model_stats[i].load_failures, s_mstats[i].load_failures);
        cr_assert_float_eq(m.model_stats[i].load_seconds, s_mstats[i].load_seconds, 1e-12);
        cr_assert_eq(m.model_stats[i].evictions, s_mstats[i].evictions);
        cr_assert_eq(m.model_stats[i].resident_bytes, s_mstats[i].resident_bytes);
    }
    /* a deep copy owns its own strings */
    wg_msg_metrics c = {0};
    cr_assert_eq(wg_msg_metrics_copy(&c, &m), WG_OK);
    cr_assert_neq(c.model_stats, m.model_stats);
    cr_assert_neq(c.model_stats[0].model, m.model_stats[0].model);
    cr_assert_str_eq(c.model_stats[0].model, "a");
    cr_assert_eq(c.model_stats[0].resident_bytes, 2200000);
    wg_msg_metrics_clear(&c);
    wg_msg_metrics_clear(&m);
    wg_msg_buf_free(&b);
    /* without per-model figures the key is not sent (what an older worker sends) */
    wg_msg_metrics old;
    s_sample_metrics(&old);
    old.model_stats = NULL;
    old.n_model_stats = 0;
    cr_assert_eq(wg_msg_metrics_encode(&old, &b), WG_OK);
    cr_assert_null(memmem(b.data, b.len, "model_stats", 11), "an empty model_stats must not be sent");
    cr_assert_eq(wg_msg_metrics_decode(b.data, b.len, &m), WG_OK);
    cr_assert_eq(m.n_model_stats, 0);
    cr_assert_null(m.model_stats);
    wg_msg_metrics_clear(&m);
    wg_msg_buf_free(&b);
    /* a newer sender's extra keys inside an entry are skipped */
    msgpack_sbuffer sb;
    s_metrics_body(ms_unknown_inner_key, &sb);
    cr_assert_eq(wg_msg_metrics_decode((const uint8_t *)sb.data, sb.size, &m), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(m.n_model_stats, 1);
    cr_assert_eq(m.model_stats[0].evictions, 9);
    wg_msg_metrics_clear(&m);
    msgpack_sbuffer_destroy(&sb);
}

Test(codec, hostile_model_stats_are_rejected_naming_the_entry) {
    static const struct {
        void (*fn)(msgpack_packer *);
        wg_status want;
        const char *says; /* expected in wg_errmsg() */
    } bad[] = {
        {ms_too_many, WG_ERR_RANGE, "model_stats"},
        {ms_no_model, WG_ERR_FORMAT, "model_stats[0] has no 'model'"},
        {ms_duplicate, WG_ERR_INVAL, "model_stats[1] repeats model 'st'"},
        {ms_negative_seconds, WG_ERR_RANGE, "model_stats[0].load_seconds"},
        {ms_nan_seconds, WG_ERR_RANGE, "model_stats[0].load_seconds"},
        {ms_negative_loads, WG_ERR_FORMAT, "model_stats[].loads"},
        {ms_long_name, WG_ERR_RANGE, "model_stats[].model"},
        {ms_not_a_map, WG_ERR_FORMAT, "model_stats[]"},
        {ms_not_an_array, WG_ERR_FORMAT, "model_stats"},
        {ms_huge_count, WG_ERR_TRUNCATED, "model_stats"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        msgpack_sbuffer sb;
        s_metrics_body(bad[i].fn, &sb);
        wg_msg_metrics m;
        wg_status st = wg_msg_metrics_decode((const uint8_t *)sb.data, sb.size, &m);
        cr_assert_eq(st, bad[i].want, "case %zu: got %s (%s)", i, wg_status_name(st), wg_errmsg());
        cr_assert(strstr(wg_errmsg(), bad[i].says), "case %zu: reason '%s' does not name '%s'", i, wg_errmsg(),
                  bad[i].says);
        cr_assert_null(m.model_stats, "case %zu: a rejected body leaves nothing allocated", i);
        /* the same map inside a HEARTBEAT is rejected the same way */
        msgpack_sbuffer hb;
        msgpack_sbuffer_init(&hb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &hb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        s_pk_str(&pk, "metrics");
        msgpack_sbuffer_write(&hb, sb.data, sb.size);
        wg_msg_heartbeat h;
        cr_assert_eq(wg_msg_heartbeat_decode((const uint8_t *)hb.data, hb.size, &h), bad[i].want, "case %zu in HEARTBEAT", i);
        msgpack_sbuffer_destroy(&hb);
        msgpack_sbuffer_destroy(&sb);
    }
    /* the encoders refuse what the decoders would reject */
    wg_msg_metrics m;
    s_sample_metrics(&m);
    wg_msg_model_stat many[WG_MSG_MAX_MODELS + 1];
    for (int i = 0; i <= WG_MSG_MAX_MODELS; i++) many[i] = (wg_msg_model_stat){.model = "x"};
    m.model_stats = many;
    m.n_model_stats = WG_MSG_MAX_MODELS + 1;
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_metrics_encode(&m, &b), WG_ERR_RANGE);
    wg_msg_heartbeat h = {.has_metrics = true, .metrics = m};
    cr_assert_eq(wg_msg_heartbeat_encode(&h, &b), WG_ERR_RANGE);
    m.n_model_stats = 1;
    many[0].model = NULL;
    cr_assert_eq(wg_msg_metrics_encode(&m, &b), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "model_stats[0]"), "%s", wg_errmsg());
    cr_assert_null(b.data);
}

/* response_format (JSON mode): "json_object" round-trips through JOB and
 * copies, "text" or no key is plain text, anything else is refused by name. */
Test(codec, response_format_round_trip_and_rejection) {
    wg_msg_job a, b, c;
    wg_msg_buf buf = {0};
    s_sample_job(&a, true);
    cr_assert_not(a.json_object);
    cr_assert_eq(wg_msg_job_encode(&a, &buf), WG_OK);
    cr_assert_null(memmem(buf.data, buf.len, "response_format", 15), "plain jobs do not carry the key");
    cr_assert_eq(wg_msg_job_decode(buf.data, buf.len, &b), WG_OK);
    cr_assert_not(b.json_object);
    wg_msg_job_clear(&b);
    wg_msg_buf_free(&buf);
    a.json_object = true;
    cr_assert_eq(wg_msg_job_encode(&a, &buf), WG_OK);
    cr_assert_eq(wg_msg_job_decode(buf.data, buf.len, &b), WG_OK, "%s", wg_errmsg());
    s_job_eq(&a, &b);
    cr_assert(b.json_object);
    cr_assert_eq(wg_msg_job_copy(&c, &b), WG_OK);
    cr_assert(c.json_object);
    uint8_t text[] = {0xa4, 't', 'e', 'x', 't'};
    cr_assert_eq(s_submit_with("response_format", text, sizeof text, true), WG_OK, "%s", wg_errmsg());
    uint8_t schema[] = {0xab, 'j', 's', 'o', 'n', '_', 's', 'c', 'h', 'e', 'm', 'a'};
    cr_assert_eq(s_submit_with("response_format", schema, sizeof schema, true), WG_ERR_RANGE);
    cr_assert(strstr(wg_errmsg(), "json_schema"), "%s", wg_errmsg());
    uint8_t num[] = {0x01};
    cr_assert_neq(s_submit_with("response_format", num, sizeof num, true), WG_OK);
    wg_msg_job_clear(&a);
    wg_msg_job_clear(&b);
    wg_msg_job_clear(&c);
    wg_msg_buf_free(&buf);
}
