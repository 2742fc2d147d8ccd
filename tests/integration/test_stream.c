/* The worker's stream publisher thread (worker/wg_stream.h) against real ZMQ
 * SUB sockets over inproc: order and completeness of each stream, per-stream
 * flow control (a full pipe pauses only its own stream, RESUME after the
 * drain, CLOSED only once the final event is out), abandonment on overflow
 * and stall, stale notes after close, and METRICS passing through. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_zmq.h"
#include "wg_test_sys.h"
#include "worker/wg_stream.h"

#define EP "inproc://stream-test"

typedef struct {
    void *ctx;       /* zmq context */
    wg_stream_t *s;  /* publisher under test */
} t_env;

static t_env t_start(int sndhwm, uint32_t stall_ms, size_t max_held) {
    t_env e = {.ctx = zmq_ctx_new()};
    void *x = zmq_socket(e.ctx, ZMQ_XPUB);
    int one = 1, zero = 0;
    zmq_setsockopt(x, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(x, ZMQ_SNDHWM, &sndhwm, sizeof sndhwm);
    zmq_setsockopt(x, ZMQ_XPUB_NODROP, &one, sizeof one);
    cr_assert_eq(zmq_bind(x, EP), 0);
    wg_stream_cfg c = {.xpub = x, .worker_id = "w-test", .stall_ms = stall_ms, .max_held = max_held};
    e.s = wg_stream_new(&c);
    cr_assert(e.s, "%s", wg_errmsg());
    return e;
}

static void t_stop(t_env *e, void **subs, int n) {
    for (int i = 0; i < n; i++) zmq_close(subs[i]);
    wg_stream_destroy(&e->s);
    cr_assert_null(e->s);
    zmq_ctx_term(e->ctx);
}

/* A SUB on EP with receive HWM `hwm`, subscribed to `topic` and to "m/" (sync). */
static void *t_sub(t_env *e, int hwm, const char *topic) {
    void *s = zmq_socket(e->ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    if (topic) zmq_setsockopt(s, ZMQ_SUBSCRIBE, topic, strlen(topic));
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "m/", 2);
    cr_assert_eq(zmq_connect(s, EP), 0);
    return s;
}

/* One publication: topic, command and body (malloc'd). WG_ERR_AGAIN when none within wait_ms. */
typedef struct {
    char topic[160];
    wg_msg_cmd cmd;
    uint8_t *body;
    size_t len;
} t_msg;

static wg_status t_recv(void *sub, t_msg *m, int wait_ms) {
    memset(m, 0, sizeof *m);
    zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, wait_ms) <= 0) return WG_ERR_AGAIN;
    for (int idx = 0;; idx++) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        cr_assert_geq(zmq_msg_recv(&part, sub, 0), 0);
        const uint8_t *d = zmq_msg_data(&part);
        size_t n = zmq_msg_size(&part);
        if (idx == 0) snprintf(m->topic, sizeof m->topic, "%.*s", (int)n, (const char *)d);
        if (idx == 1) cr_assert_eq(wg_msg_check_signature(d, n), WG_OK);
        if (idx == 2) cr_assert_eq(wg_msg_cmd_parse(d, n, &m->cmd), WG_OK);
        if (idx == 3) {
            m->body = malloc(n ? n : 1);
            memcpy(m->body, d, n);
            m->len = n;
        }
        int more = zmq_msg_more(&part);
        zmq_msg_close(&part);
        if (!more) {
            cr_assert_eq(idx, 3, "a publication has 4 frames");
            return WG_OK;
        }
    }
}

/* Publish METRICS until every SUB in subs has one: their subscriptions are in. */
static void t_sync(t_env *e, void **subs, int n) {
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_empty_encode(&b), WG_OK);
    for (int i = 0; i < n; i++) {
        bool got = false;
        int64_t end = wg_test_now_ms() + 5000;
        while (!got && wg_test_now_ms() < end) {
            wg_stream_metrics(e->s, "m/w-test", &b);
            wg_stream_flush(e->s);
            t_msg m;
            while (t_recv(subs[i], &m, 20) == WG_OK) {
                got = got || m.cmd == WG_CMD_METRICS;
                free(m.body);
            }
        }
        cr_assert(got, "SUB %d never saw METRICS", i);
    }
    wg_msg_buf_free(&b);
}

/* Notes seen so far, per tag (tags are small integers cast to pointers). */
typedef struct {
    wg_stream_note_kind kinds[16][8]; /* per tag, in order */
    int n[16];                        /* per tag */
} t_notes;

static void t_take(t_env *e, t_notes *tn, int wait_ms) {
    zmq_pollitem_t it = {NULL, wg_stream_fd(e->s), ZMQ_POLLIN, 0};
    zmq_poll(&it, 1, wait_ms);
    wg_stream_notes_take(e->s);
    wg_stream_note n;
    while (wg_stream_note_next(e->s, &n)) {
        int tag = (int)(intptr_t)n.user;
        cr_assert(tag > 0 && tag < 16);
        cr_assert_lt(tn->n[tag], 8, "too many notes for stream %d", tag);
        tn->kinds[tag][tn->n[tag]++] = n.kind;
    }
}

static bool t_has(const t_notes *tn, int tag, wg_stream_note_kind k) {
    for (int i = 0; i < tn->n[tag]; i++)
        if (tn->kinds[tag][i] == k) return true;
    return false;
}

/* Wait (taking notes) until stream `tag` has note k. */
static void t_wait_note(t_env *e, t_notes *tn, int tag, wg_stream_note_kind k, int timeout_ms) {
    int64_t end = wg_test_now_ms() + timeout_ms;
    while (!t_has(tn, tag, k) && wg_test_now_ms() < end) t_take(e, tn, 20);
    cr_assert(t_has(tn, tag, k), "stream %d: no note %d within %d ms", tag, (int)k, timeout_ms);
}

static void t_event(t_env *e, uint64_t sid, uint64_t seq, bool final) {
    char text[32];
    int tl = snprintf(text, sizeof text, "<%llu>", (unsigned long long)seq);
    int32_t tops[2] = {7, 9};
    float tlp[2] = {-0.5f, -1.5f};
    wg_stream_ev ev = {.seq = seq, .token_id = (uint32_t)(100 + seq), .attempt = 2, .text = text,
                       .text_len = (size_t)tl, .final = final, .finish_reason = final ? "length" : NULL,
                       .has_logprob = true, .logprob = -0.25f, .top_tokens = tops, .top_logprobs = tlp, .n_top = 2};
    wg_stream_event(e->s, sid, &ev);
}

/* Receive one stream's events from sub until its final one; checks seq order,
 * exactly one final (the last), every field. Returns the count. */
static int t_read_stream_from(void *sub, const char *job_id, int first, int expect, int wait_ms) {
    char topic[160];
    snprintf(topic, sizeof topic, "t/%s", job_id);
    int got = first;
    bool final = false;
    while (!final) {
        t_msg m;
        cr_assert_eq(t_recv(sub, &m, wait_ms), WG_OK, "%s: only %d of %d events", job_id, got, expect);
        if (m.cmd == WG_CMD_METRICS) {
            free(m.body);
            continue;
        }
        cr_assert_eq(m.cmd, WG_CMD_TOKEN);
        cr_assert_str_eq(m.topic, topic);
        wg_msg_token t;
        cr_assert_eq(wg_msg_token_decode(m.body, m.len, &t), WG_OK);
        free(m.body);
        cr_assert_str_eq(t.job_id, job_id);
        cr_assert_eq(t.seq, (uint64_t)got, "%s: seq %llu where %d was due", job_id, (unsigned long long)t.seq, got);
        cr_assert_eq(t.token_id, 100u + (uint32_t)got);
        char text[32];
        snprintf(text, sizeof text, "<%d>", got);
        cr_assert_str_eq(t.text_delta, text);
        cr_assert_eq(t.attempt, 2u);
        cr_assert(t.has_logprob && t.logprob == -0.25f);
        cr_assert_eq(t.n_top, 2u);
        cr_assert(t.top[0].token_id == 7 && t.top[1].token_id == 9 && t.top[1].logprob == -1.5f);
        final = t.final;
        if (final) cr_assert_str_eq(t.finish_reason, "length");
        else cr_assert_null(t.finish_reason);
        wg_msg_token_clear(&t);
        got++;
    }
    cr_assert_eq(got, expect, "%s: final event at seq %d, %d events were due", job_id, got - 1, expect);
    t_msg m;
    while (t_recv(sub, &m, 50) == WG_OK) { /* nothing of this stream after its final event */
        cr_assert_neq(m.cmd, WG_CMD_TOKEN, "%s: an event after the final one", job_id);
        free(m.body);
    }
    return got - first;
}

static int t_read_stream(void *sub, const char *job_id, int expect, int wait_ms) {
    return t_read_stream_from(sub, job_id, 0, expect, wait_ms);
}

Test(stream, events_arrive_in_seq_order_with_one_final_then_closed) {
    t_env e = t_start(1000, 0, 0);
    void *sub = t_sub(&e, 100000, "t/");
    t_sync(&e, &sub, 1);
    const char *ids[3] = {"job-a", "job-b", "job-c"};
    uint64_t sid[3];
    for (int k = 0; k < 3; k++) sid[k] = wg_stream_open(e.s, ids[k], (void *)(intptr_t)(k + 1));
    cr_assert(sid[0] && sid[1] && sid[2] && sid[0] != sid[1] && sid[1] != sid[2]);
    const int n = 150;
    for (int i = 0; i < n; i++) { /* interleaved, handed over every 8 events as steps would */
        for (int k = 0; k < 3; k++) t_event(&e, sid[k], (uint64_t)i, i == n - 1);
        if (i % 8 == 7) wg_stream_flush(e.s);
    }
    wg_stream_flush(e.s);
    /* Per stream: in order, complete, exactly one final and it is the last. */
    int got[3] = {0, 0, 0}, finals = 0;
    while (finals < 3) {
        t_msg m;
        cr_assert_eq(t_recv(sub, &m, 3000), WG_OK, "events missing: %d %d %d of %d", got[0], got[1], got[2], n);
        if (m.cmd != WG_CMD_TOKEN) {
            free(m.body);
            continue;
        }
        wg_msg_token t;
        cr_assert_eq(wg_msg_token_decode(m.body, m.len, &t), WG_OK);
        free(m.body);
        int k = t.job_id[4] - 'a';
        cr_assert(k >= 0 && k < 3);
        cr_assert_eq(t.seq, (uint64_t)got[k], "%s: seq %llu where %d was due", t.job_id, (unsigned long long)t.seq,
                     got[k]);
        cr_assert_eq(t.final, got[k] == n - 1, "%s: final=%d at seq %d", t.job_id, t.final, got[k]);
        finals += t.final;
        got[k]++;
        wg_msg_token_clear(&t);
    }
    for (int k = 0; k < 3; k++) cr_assert_eq(got[k], n);
    t_notes tn = {0};
    for (int k = 0; k < 3; k++) t_wait_note(&e, &tn, k + 1, WG_STREAM_CLOSED, 3000);
    t_take(&e, &tn, 50);
    for (int k = 0; k < 3; k++) /* nothing was held: no flow control, one CLOSED */
        cr_assert(tn.n[k + 1] == 1 && tn.kinds[k + 1][0] == WG_STREAM_CLOSED, "stream %d: %d notes", k + 1, tn.n[k + 1]);
    wg_stream_stats st;
    wg_stream_get_stats(e.s, &st);
    cr_assert_eq(st.events_published, 3u * n);
    cr_assert_eq(st.events_held, 0u);
    cr_assert_eq(st.streams_abandoned, 0u);
    cr_assert_gt(st.busy_seconds, 0.0);
    for (int k = 0; k < 3; k++) wg_stream_close(e.s, sid[k]);
    t_stop(&e, &sub, 1);
}

Test(stream, full_pipe_pauses_only_its_stream_and_it_resumes_and_closes_after_the_drain) {
    t_env e = t_start(2, 0, 0);
    void *fast = t_sub(&e, 100000, "t/fast");
    void *slow = t_sub(&e, 1, "t/slow");
    void *subs[2] = {fast, slow};
    t_sync(&e, subs, 2);
    int slow_seen = 0;
    uint64_t sf = wg_stream_open(e.s, "fast", (void *)(intptr_t)1);
    uint64_t ss = wg_stream_open(e.s, "slow", (void *)(intptr_t)2);
    const int n = 200, half = 100;
    for (int i = 0; i < n; i++) { /* the slow stream gets its first half now, the rest while it drains */
        if (i < half) t_event(&e, ss, (uint64_t)i, false);
        t_event(&e, sf, (uint64_t)i, i == n - 1);
        if (i % 10 == 9) wg_stream_flush(e.s);
    }
    wg_stream_flush(e.s);
    /* The fast stream completes while nobody reads the slow one. */
    cr_assert_eq(t_read_stream(fast, "fast", n, 3000), n);
    t_notes tn = {0};
    t_wait_note(&e, &tn, 1, WG_STREAM_CLOSED, 3000);
    t_wait_note(&e, &tn, 2, WG_STREAM_PAUSE, 3000);
    cr_assert_eq(tn.n[1], 1, "the fast stream got flow-control notes");
    cr_assert(!t_has(&tn, 2, WG_STREAM_CLOSED), "slow stream closed with its events still held");
    cr_assert(!t_has(&tn, 2, WG_STREAM_RESUME), "slow stream resumed while its pipe is full");
    wg_stream_stats st;
    wg_stream_get_stats(e.s, &st);
    cr_assert_gt(st.events_held, 0u);
    cr_assert_lt(st.events_published, (uint64_t)(n + half));
    /* Drain the slow subscriber one message at a time while its second half
     * arrives (as the steps produced before PAUSE took effect would): new
     * events must queue behind the held ones, never overtake them. */
    for (int i = half; i < n; i++) {
        t_msg m;
        cr_assert_eq(t_recv(slow, &m, 3000), WG_OK);
        cr_assert(m.cmd == WG_CMD_METRICS || m.cmd == WG_CMD_TOKEN);
        if (m.cmd == WG_CMD_TOKEN) {
            wg_msg_token t;
            cr_assert_eq(wg_msg_token_decode(m.body, m.len, &t), WG_OK);
            cr_assert_eq(t.seq, (uint64_t)slow_seen, "slow: seq %llu where %d was due", (unsigned long long)t.seq,
                         slow_seen);
            slow_seen++;
            wg_msg_token_clear(&t);
        }
        free(m.body);
        t_event(&e, ss, (uint64_t)i, i == n - 1);
        wg_stream_flush(e.s);
        wg_test_sleep_ms(1);
    }
    cr_assert_eq(slow_seen + t_read_stream_from(slow, "slow", slow_seen, n, 3000), n);
    t_wait_note(&e, &tn, 2, WG_STREAM_CLOSED, 3000);
    cr_assert_eq(tn.n[2], 3, "slow stream: %d notes", tn.n[2]);
    cr_assert(tn.kinds[2][0] == WG_STREAM_PAUSE && tn.kinds[2][1] == WG_STREAM_RESUME &&
              tn.kinds[2][2] == WG_STREAM_CLOSED);
    wg_stream_get_stats(e.s, &st);
    cr_assert_eq(st.events_published, 2u * n);
    cr_assert_eq(st.streams_abandoned, 0u);
    wg_stream_close(e.s, sf);
    wg_stream_close(e.s, ss);
    t_stop(&e, subs, 2);
}

Test(stream, overflow_and_stall_abandon_only_the_stuck_stream) {
    t_env e = t_start(2, 300, 5);
    void *fast = t_sub(&e, 100000, "t/fast");
    void *stuck = t_sub(&e, 1, "t/stuck");
    void *subs[2] = {fast, stuck};
    t_sync(&e, subs, 2);
    /* Overflow: 5 held events at most. */
    uint64_t so = wg_stream_open(e.s, "stuck-overflow", (void *)(intptr_t)3);
    uint64_t sf = wg_stream_open(e.s, "fast", (void *)(intptr_t)1);
    for (int i = 0; i < 40; i++) {
        t_event(&e, so, (uint64_t)i, i == 39);
        t_event(&e, sf, (uint64_t)i, i == 39);
    }
    wg_stream_flush(e.s);
    t_notes tn = {0};
    t_wait_note(&e, &tn, 3, WG_STREAM_ABANDONED, 3000);
    cr_assert_eq(t_read_stream(fast, "fast", 40, 3000), 40);
    t_wait_note(&e, &tn, 1, WG_STREAM_CLOSED, 3000);
    /* Stall: 3 events (under the limit) that never move for 300 ms. */
    uint64_t sst = wg_stream_open(e.s, "stuck-stall", (void *)(intptr_t)4);
    for (int i = 0; i < 3; i++) t_event(&e, sst, (uint64_t)i, false);
    wg_stream_flush(e.s);
    int64_t t0 = wg_test_now_ms();
    t_wait_note(&e, &tn, 4, WG_STREAM_ABANDONED, 5000);
    cr_assert_geq(wg_test_now_ms() - t0, 250, "abandoned before the stall limit");
    t_take(&e, &tn, 100);
    cr_assert(!t_has(&tn, 3, WG_STREAM_CLOSED) && !t_has(&tn, 4, WG_STREAM_CLOSED), "an abandoned stream closed");
    wg_stream_stats st;
    wg_stream_get_stats(e.s, &st);
    cr_assert_eq(st.streams_abandoned, 2u);
    wg_stream_close(e.s, so);
    wg_stream_close(e.s, sf);
    wg_stream_close(e.s, sst);
    t_stop(&e, subs, 2);
}

Test(stream, close_drops_held_events_and_later_notes_and_the_slot_is_reused) {
    t_env e = t_start(2, 0, 0);
    void *stuck = t_sub(&e, 1, "t/");
    t_sync(&e, &stuck, 1);
    uint64_t a = wg_stream_open(e.s, "a", (void *)(intptr_t)5);
    for (int i = 0; i < 30; i++) t_event(&e, a, (uint64_t)i, i == 29);
    wg_stream_flush(e.s);
    t_notes tn = {0};
    t_wait_note(&e, &tn, 5, WG_STREAM_PAUSE, 3000);
    wg_stream_close(e.s, a);
    uint64_t b = wg_stream_open(e.s, "b", (void *)(intptr_t)6);
    cr_assert_eq((uint32_t)b, (uint32_t)a, "the closed slot is reused");
    cr_assert_neq(b, a, "with a new id");
    wg_stream_flush(e.s);
    /* Drain the subscriber: a's held events are gone, so RESUME/CLOSED never come for it. */
    t_msg m;
    int a_events = 0;
    while (t_recv(stuck, &m, 200) == WG_OK) {
        a_events += m.cmd == WG_CMD_TOKEN;
        free(m.body);
    }
    cr_assert_lt(a_events, 30, "held events were published after close");
    t_take(&e, &tn, 200);
    cr_assert_eq(tn.n[5], 1, "notes for a closed stream: %d", tn.n[5]);
    t_event(&e, b, 0, true);
    wg_stream_flush(e.s);
    t_wait_note(&e, &tn, 6, WG_STREAM_CLOSED, 3000);
    cr_assert_eq(tn.n[5], 1);
    wg_stream_close(e.s, b);
    /* Destroy with events held (a third stream left open on a full pipe): no leaks under ASan. */
    uint64_t c = wg_stream_open(e.s, "c", (void *)(intptr_t)7);
    for (int i = 0; i < 30; i++) t_event(&e, c, (uint64_t)i, false);
    wg_stream_flush(e.s);
    t_wait_note(&e, &tn, 7, WG_STREAM_PAUSE, 3000);
    t_stop(&e, &stuck, 1);
}

Test(stream, metrics_are_published_verbatim) {
    t_env e = t_start(1000, 0, 0);
    void *sub = t_sub(&e, 1000, NULL);
    t_sync(&e, &sub, 1);
    wg_msg_metrics mm = {.worker_id = "w-test", .ts_ms = 42, .running = 3, .credits = 8};
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_metrics_encode(&mm, &b), WG_OK);
    wg_stream_metrics(e.s, "m/w-test", &b);
    wg_stream_flush(e.s);
    bool seen = false;
    t_msg m;
    while (!seen && t_recv(sub, &m, 2000) == WG_OK) {
        cr_assert_str_eq(m.topic, "m/w-test");
        cr_assert_eq(m.cmd, WG_CMD_METRICS);
        if (m.len == b.len && memcmp(m.body, b.data, b.len) == 0) seen = true;
        free(m.body);
    }
    cr_assert(seen, "the METRICS body did not arrive verbatim");
    wg_msg_buf_free(&b);
    /* The publisher thread counts a message after handing it to ZeroMQ, so the
       subscriber may see it a moment before the counter moves: wait for it. */
    wg_stream_stats st;
    int64_t end = wg_test_now_ms() + 2000;
    do {
        wg_stream_get_stats(e.s, &st);
        if (st.metrics_published >= 2u) break;
        wg_test_sleep_ms(1);
    } while (wg_test_now_ms() < end);
    cr_assert_geq(st.metrics_published, 2u);
    t_stop(&e, &sub, 1);
}
