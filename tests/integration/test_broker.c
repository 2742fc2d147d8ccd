/* Broker integration: real redis-server, real waggle-broker process, this test
 * process playing producers and workers over real ZeroMQ sockets. */
#include "broker_harness.h"

typedef struct env {
    h_redis r;
    h_broker b;
    void *ctx;
} env;

static void env_up(env *e, const char *const *extra) {
    memset(e, 0, sizeof *e);
    h_redis_start(&e->r);
    h_broker_start(&e->b, &e->r, extra);
    e->ctx = zmq_ctx_new();
}

static void env_down(env *e) {
    zmq_ctx_shutdown(e->ctx);
    zmq_ctx_term(e->ctx);
    h_broker_kill(&e->b, SIGKILL);
    h_redis_stop(&e->r);
}

static long long h_pending(env *e, const char *model) {
    redisReply *rep = h_redis_cmd(&e->r, "XPENDING waggle:q:%s waggle", model);
    cr_assert(rep && rep->type == REDIS_REPLY_ARRAY, "XPENDING failed");
    long long n = rep->element[0]->integer;
    freeReplyObject(rep);
    return n;
}

/* Wait for the RESULT the broker pushes to the producer once it has stored
 * the job's result: a FETCH sent before that (the frontend may be served
 * before the worker's DONE on the backend) gets "job has not ended yet". */
static void s_wait_pushed_result(void *p, const char *job_id) {
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_RESULT, &in, 3000), WG_OK, "no RESULT pushed for %s", job_id);
    wg_msg_result r;
    cr_assert_eq(wg_msg_result_decode(WG_CMD_RESULT, in.body, in.body_len, &r), WG_OK);
    cr_assert_str_eq(r.job_id, job_id);
    wg_msg_result_clear(&r);
    wg_msg_in_clear(&in);
}

/* FETCH, retried while the broker answers ERR_AGAIN (not ended or not
 * stored yet), for up to 3 s. */
static wg_status s_fetch_ended(void *p, const char *job_id, wg_msg_result *r) {
    int64_t end = wg_test_now_ms() + 3000;
    wg_status st;
    while ((st = h_fetch(p, job_id, r)) == WG_ERR_AGAIN && wg_test_now_ms() < end) wg_test_sleep_ms(20);
    return st;
}

Test(broker, jobs_reach_ready_worker_within_its_credits_and_done_is_stored_then_acked) {
    env e;
    env_up(&e, NULL);
    void *p = h_dealer(e.ctx, e.b.fe), *w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w1", 2, "m");
    char ids[5][33];
    cr_assert_eq(h_submit(p, "m", 5, ids, NULL), 5);
    /* durable before the reply: all five are in the stream */
    redisReply *len = h_redis_cmd(&e.r, "XLEN waggle:q:m");
    cr_assert_eq(len->integer, 5);
    freeReplyObject(len);
    wg_msg_job j1, j2, j3;
    cr_assert_eq(h_take_job(w, &j1, 2000), WG_OK);
    cr_assert_eq(h_take_job(w, &j2, 2000), WG_OK);
    cr_assert_eq(j1.attempt, 1);
    cr_assert_str_eq(j1.model, "m");
    cr_assert_str_eq(j1.prompt, "Once upon a time");
    /* credits = 2: no third job while two are in flight */
    cr_assert_eq(h_take_job(w, &j3, 700), WG_ERR_AGAIN);
    h_done(w, j1.job_id, "the end");
    cr_assert_eq(h_take_job(w, &j3, 2000), WG_OK, "a freed credit brings the next job");
    cr_assert_eq(h_take_job(w, &j3, 500), WG_ERR_AGAIN, "still never more than 2 in flight");
    /* the producer gets the result pushed */
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_RESULT, &in, 2000), WG_OK);
    wg_msg_result r;
    cr_assert_eq(wg_msg_result_decode(WG_CMD_RESULT, in.body, in.body_len, &r), WG_OK);
    cr_assert_str_eq(r.job_id, j1.job_id);
    cr_assert_str_eq(r.state, "done");
    cr_assert_str_eq(r.text, "the end");
    cr_assert_eq(r.completion_tokens, 3);
    cr_assert_str_eq(r.custom_id, "c0");
    wg_msg_result_clear(&r);
    wg_msg_in_clear(&in);
    /* stored under waggle:result:<id> with a TTL, and the entry acknowledged */
    redisReply *ttl = h_redis_cmd(&e.r, "TTL waggle:result:%s", j1.job_id);
    cr_assert(ttl->integer > 0, "result key missing or without TTL (%lld)", ttl->integer);
    freeReplyObject(ttl);
    cr_assert_eq(h_pending(&e, "m"), 4, "one of five acknowledged");
    wg_msg_job_clear(&j1);
    wg_msg_job_clear(&j2);
    wg_msg_job_clear(&j3);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

Test(broker, duplicate_done_is_ignored_and_fetch_returns_the_first) {
    env e;
    env_up(&e, NULL);
    void *p = h_dealer(e.ctx, e.b.fe), *w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w1", 1, "m");
    char ids[1][33];
    cr_assert_eq(h_submit(p, "m", 1, ids, NULL), 1);
    wg_msg_job j;
    cr_assert_eq(h_take_job(w, &j, 2000), WG_OK);
    h_done(w, j.job_id, "first");
    h_done(w, j.job_id, "second");
    s_wait_pushed_result(p, ids[0]);
    wg_msg_result r;
    cr_assert_eq(h_fetch(p, ids[0], &r), WG_OK);
    cr_assert_str_eq(r.text, "first");
    cr_assert_eq(r.req, 5);
    wg_msg_result_clear(&r);
    /* STATUS of an ended job comes from the store */
    wg_msg_req q = {.req = 9, .job_id = ids[0]};
    wg_msg_buf b = {0};
    wg_msg_req_encode(WG_CMD_STATUS, &q, &b);
    wg_msg_send(p, NULL, 0, WG_CMD_STATUS, &b, 0);
    wg_msg_buf_free(&b);
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_JOBSTATE, &in, 2000), WG_OK);
    wg_msg_jobstate js;
    cr_assert_eq(wg_msg_jobstate_decode(in.body, in.body_len, &js), WG_OK);
    cr_assert_str_eq(js.state, "done");
    cr_assert_eq(js.req, 9);
    wg_msg_jobstate_clear(&js);
    wg_msg_in_clear(&in);
    wg_msg_job_clear(&j);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

Test(broker, silent_worker_is_declared_dead_and_its_jobs_go_to_another) {
    env e;
    const char *extra[] = {"--heartbeat-ms", "200", NULL};
    env_up(&e, extra);
    void *p = h_dealer(e.ctx, e.b.fe), *wa = h_dealer(e.ctx, e.b.be), *wb = h_dealer(e.ctx, e.b.be);
    int64_t t0 = wg_test_now_ms(); /* wa's death clock starts at its READY */
    h_ready(wa, "wa", 1, "m");
    char ids[1][33];
    cr_assert_eq(h_submit(p, "m", 1, ids, NULL), 1);
    wg_msg_job j;
    cr_assert_eq(h_take_job(wa, &j, 2000), WG_OK);
    wg_msg_job_clear(&j);
    h_ready(wb, "wb", 1, "m");
    /* wa never heartbeats again; wb does */
    int64_t t_wait = wg_test_now_ms();
    wg_status st = WG_ERR_AGAIN;
    while (wg_test_now_ms() - t_wait < 3000) {
        h_heartbeat(wb);
        st = h_take_job(wb, &j, 150);
        if (st == WG_OK) break;
    }
    cr_assert_eq(st, WG_OK, "job was not requeued to the live worker");
    cr_assert_str_eq(j.job_id, ids[0]);
    cr_assert_eq(j.attempt, 2);
    cr_assert(wg_test_now_ms() - t0 >= 400, "requeued before the worker could be dead");
    /* the dead worker's late DONE is ignored; the live one's counts */
    h_done(wa, ids[0], "stale");
    h_done(wb, ids[0], "fresh");
    s_wait_pushed_result(p, ids[0]);
    wg_msg_result r;
    cr_assert_eq(h_fetch(p, ids[0], &r), WG_OK);
    cr_assert_str_eq(r.text, "fresh");
    wg_msg_result_clear(&r);
    wg_msg_job_clear(&j);
    zmq_close(p);
    zmq_close(wa);
    zmq_close(wb);
    env_down(&e);
}

Test(broker, job_failing_max_attempts_times_ends_failed_with_last_error) {
    env e;
    const char *extra[] = {"--max-attempts", "2", NULL};
    env_up(&e, extra);
    void *p = h_dealer(e.ctx, e.b.fe), *w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w1", 1, "m");
    char ids[1][33];
    cr_assert_eq(h_submit(p, "m", 1, ids, NULL), 1);
    wg_msg_job j;
    cr_assert_eq(h_take_job(w, &j, 2000), WG_OK);
    cr_assert_eq(j.attempt, 1);
    h_failed(w, j.job_id, "oom #1");
    wg_msg_job_clear(&j);
    cr_assert_eq(h_take_job(w, &j, 2000), WG_OK);
    cr_assert_eq(j.attempt, 2);
    h_failed(w, j.job_id, "oom #2");
    wg_msg_job_clear(&j);
    cr_assert_eq(h_take_job(w, &j, 600), WG_ERR_AGAIN, "no third attempt (no poison loop)");
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_RESULT, &in, 2000), WG_OK);
    wg_msg_result r;
    cr_assert_eq(wg_msg_result_decode(WG_CMD_RESULT, in.body, in.body_len, &r), WG_OK);
    cr_assert_str_eq(r.state, "failed");
    cr_assert_str_eq(r.error, "oom #2");
    cr_assert_str_eq(r.code, "ERR_DEVICE");
    cr_assert_eq(r.attempts, 2);
    wg_msg_result_clear(&r);
    wg_msg_in_clear(&in);
    cr_assert_eq(h_pending(&e, "m"), 0);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

Test(broker, full_queue_rejects_with_retry_after) {
    env e;
    const char *extra[] = {"--queue-max-jobs", "2", NULL};
    env_up(&e, extra);
    void *p = h_dealer(e.ctx, e.b.fe);
    wg_msg_submitted rep;
    cr_assert_eq(h_submit(p, "m", 3, NULL, &rep), 2);
    cr_assert(rep.items[0].accepted && rep.items[1].accepted);
    cr_assert(!rep.items[2].accepted);
    cr_assert_eq(rep.items[2].code, WG_ERR_FULL);
    cr_assert(rep.items[2].retry_after_ms >= 100);
    cr_assert(strstr(rep.items[2].reason, "full"));
    wg_msg_submitted_clear(&rep);
    /* another model has its own bound */
    cr_assert_eq(h_submit(p, "other", 1, NULL, NULL), 1);
    redisReply *len = h_redis_cmd(&e.r, "XLEN waggle:q:m");
    cr_assert_eq(len->integer, 2, "a rejected job must not be stored");
    freeReplyObject(len);
    zmq_close(p);
    env_down(&e);
}

Test(broker, killed_broker_recovers_pending_jobs_on_restart) {
    env e;
    env_up(&e, NULL);
    void *p = h_dealer(e.ctx, e.b.fe), *w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w1", 1, "m");
    char ids[3][33];
    cr_assert_eq(h_submit(p, "m", 3, ids, NULL), 3);
    wg_msg_job j;
    cr_assert_eq(h_take_job(w, &j, 2000), WG_OK); /* one in flight, two queued */
    wg_msg_job_clear(&j);
    h_broker_kill(&e.b, SIGKILL);
    zmq_close(w);
    h_broker_start(&e.b, &e.r, NULL);
    w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w2", 4, "m");
    int seen = 0;
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(h_take_job(w, &j, 3000), WG_OK, "job %d not recovered", k);
        int known = 0;
        for (int i = 0; i < 3; i++) known |= !strcmp(ids[i], j.job_id);
        cr_assert(known);
        h_done(w, j.job_id, "recovered");
        seen++;
        wg_msg_job_clear(&j);
    }
    cr_assert_eq(seen, 3);
    for (int i = 0; i < 3; i++) {
        wg_msg_result r;
        cr_assert_eq(s_fetch_ended(p, ids[i], &r), WG_OK, "job %d result", i);
        cr_assert_str_eq(r.text, "recovered");
        wg_msg_result_clear(&r);
    }
    cr_assert_eq(h_pending(&e, "m"), 0);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

Test(broker, malformed_frames_get_error_replies_and_broker_stays_up) {
    env e;
    env_up(&e, NULL);
    void *p = h_dealer(e.ctx, e.b.fe);
    struct {
        const char *sig, *cmd;
        const char *body;
        size_t blen;
        wg_status want;
    } cases[] = {
        {"WGL9", "SUBMIT", "\x80", 1, WG_ERR_VERSION},
        {"WGL1", "FROB", "\x80", 1, WG_ERR_PROTOCOL},
        {"WGL1", "SUBMIT", "\x81\xa4jobs\x91", 7, WG_ERR_TRUNCATED},
        {"WGL1", "SUBMIT", "\x81\xa4jobs\x05", 7, WG_ERR_FORMAT},
        {"WGL1", "STATUS", "\x80", 1, WG_ERR_FORMAT},
        {"WGL1", "DONE", "\x80", 1, WG_ERR_PROTOCOL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        zmq_send(p, "", 0, ZMQ_SNDMORE);
        zmq_send(p, cases[i].sig, 4, ZMQ_SNDMORE);
        zmq_send(p, cases[i].cmd, strlen(cases[i].cmd), ZMQ_SNDMORE);
        zmq_send(p, cases[i].body, cases[i].blen, 0);
        wg_msg_in in;
        cr_assert_eq(h_expect(p, WG_CMD_ERROR, &in, 2000), WG_OK, "case %zu: no ERROR", i);
        wg_msg_error er;
        cr_assert_eq(wg_msg_error_decode(in.body, in.body_len, &er), WG_OK);
        cr_assert_eq(er.code, cases[i].want, "case %zu: %s (%s)", i, wg_status_name(er.code), er.reason);
        wg_msg_error_clear(&er);
        wg_msg_in_clear(&in);
    }
    /* two frames only */
    zmq_send(p, "", 0, ZMQ_SNDMORE);
    zmq_send(p, "WGL1", 4, 0);
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_ERROR, &in, 2000), WG_OK);
    wg_msg_in_clear(&in);
    /* garbage on the backend is dropped; unknown worker gets DISCONNECT */
    void *w = h_dealer(e.ctx, e.b.be);
    zmq_send(w, "junk", 4, 0);
    h_heartbeat(w);
    cr_assert_eq(h_expect(w, WG_CMD_DISCONNECT, &in, 2000), WG_OK);
    wg_msg_in_clear(&in);
    /* still alive */
    wg_msg_buf b = {0};
    wg_msg_req ping = {.req = 42};
    wg_msg_req_encode(WG_CMD_PING, &ping, &b);
    wg_msg_send(p, NULL, 0, WG_CMD_PING, &b, 0);
    wg_msg_buf_free(&b);
    cr_assert_eq(h_expect(p, WG_CMD_PONG, &in, 2000), WG_OK);
    wg_msg_in_clear(&in);
    int status;
    cr_assert_eq(waitpid(e.b.pid, &status, WNOHANG), 0);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

Test(broker, cancel_of_queued_job_ends_it_cancelled) {
    env e;
    env_up(&e, NULL);
    void *p = h_dealer(e.ctx, e.b.fe);
    char ids[1][33];
    cr_assert_eq(h_submit(p, "m", 1, ids, NULL), 1);
    wg_msg_req q = {.req = 3, .job_id = ids[0]};
    wg_msg_buf b = {0};
    wg_msg_req_encode(WG_CMD_CANCEL, &q, &b);
    wg_msg_send(p, NULL, 0, WG_CMD_CANCEL, &b, 0);
    wg_msg_buf_free(&b);
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_JOBSTATE, &in, 2000), WG_OK);
    wg_msg_jobstate js;
    cr_assert_eq(wg_msg_jobstate_decode(in.body, in.body_len, &js), WG_OK);
    cr_assert_str_eq(js.state, "cancelled");
    wg_msg_jobstate_clear(&js);
    wg_msg_in_clear(&in);
    void *w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w", 1, "m");
    wg_msg_job j;
    cr_assert_eq(h_take_job(w, &j, 500), WG_ERR_AGAIN, "a cancelled job must not run");
    wg_msg_result r;
    cr_assert_eq(h_fetch(p, ids[0], &r), WG_OK);
    cr_assert_str_eq(r.state, "cancelled");
    wg_msg_result_clear(&r);
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}

/* Garbage in the durable store (a damaged AOF, a stray writer, another
 * version): queue entries without a job, with bytes that are not msgpack
 * or with a body that is not a job, a job_id that is not one, queue keys of
 * the wrong Redis type, an empty and a 300-byte model name in the model set,
 * a non-numeric attempts counter and a stored result that is not a RESULT.
 * The restarted broker stays up, recovers and completes the real jobs, and
 * answers a FETCH of the garbage result with an error. */
Test(broker, garbage_in_redis_is_survived_and_real_jobs_still_complete) {
    env e;
    env_up(&e, NULL);
    void *p = h_dealer(e.ctx, e.b.fe);
    char ids[2][33];
    cr_assert_eq(h_submit(p, "m", 2, ids, NULL), 2);
    h_broker_kill(&e.b, SIGKILL);
    const char *fake = "0123456789abcdef0123456789abcdef";
    const char *cmds[][8] = {
        {"XADD", "waggle:q:m", "*", "job_id", "zzz", "job", "\xc1\xc1not msgpack", "owner"},
        {"XADD", "waggle:q:m", "*", "foo", "bar", NULL},
        {"XADD", "waggle:q:m", "*", "job_id", fake, "job", "\x91\x01", NULL},
        {"XADD", "waggle:q:m", "*", "job_id", fake, "job", "\x81\xa5model\xa1m", NULL},
        {"SET", "waggle:q:wrongtype", "a string, not a stream", NULL},
        {"SADD", "waggle:models", "wrongtype", NULL},
        {"SADD", "waggle:models", "", NULL},
        {"SET", "waggle:result:0123456789abcdef0123456789abcdef", "\x93garbage", NULL},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *argv[9];
        size_t lens[9];
        int argc = 0;
        while (argc < 8 && cmds[i][argc]) {
            argv[argc] = cmds[i][argc];
            lens[argc] = strlen(argv[argc]);
            argc++;
        }
        if (argc == 8) argv[8] = "00", lens[8] = 2, argc = 9; /* the first XADD's owner value */
        redisContext *c = redisConnect("127.0.0.1", e.r.port);
        redisReply *rep = redisCommandArgv(c, argc, argv, lens);
        cr_assert(rep && rep->type != REDIS_REPLY_ERROR, "%s: %s", argv[0], rep ? rep->str : c->errstr);
        freeReplyObject(rep);
        redisFree(c);
    }
    char big[301];
    memset(big, 'b', 300);
    big[300] = 0;
    freeReplyObject(h_redis_cmd(&e.r, "SADD waggle:models %s", big));
    /* more models whose queue key has the wrong type, so that (the set's
     * order being a hash order) "m" is unlikely to come first: recovery used
     * to stop at the first model it could not open */
    for (int i = 0; i < 12; i++) {
        freeReplyObject(h_redis_cmd(&e.r, "SET waggle:q:wrong%d x", i));
        freeReplyObject(h_redis_cmd(&e.r, "SADD waggle:models wrong%d", i));
    }
    freeReplyObject(h_redis_cmd(&e.r, "SET waggle:attempts:%s abc", ids[0]));
    h_broker_start(&e.b, &e.r, NULL);
    zmq_close(p);
    p = h_dealer(e.ctx, e.b.fe);
    void *w = h_dealer(e.ctx, e.b.be);
    h_ready(w, "w1", 8, "m");
    int got = 0;
    for (int k = 0; k < 8 && got < 2; k++) {
        wg_msg_job j;
        if (h_take_job(w, &j, 2000) != WG_OK) break;
        for (int i = 0; i < 2; i++)
            if (!strcmp(j.job_id, ids[i])) got++;
        h_done(w, j.job_id, "ok");
        wg_msg_job_clear(&j);
    }
    cr_assert_eq(got, 2, "only %d of the 2 real jobs were delivered after the restart", got);
    for (int i = 0; i < 2; i++) {
        wg_msg_result r;
        cr_assert_eq(s_fetch_ended(p, ids[i], &r), WG_OK, "job %d result", i);
        cr_assert_str_eq(r.text, "ok");
        wg_msg_result_clear(&r);
    }
    wg_msg_result r;
    const wg_status st = h_fetch(p, fake, &r);
    cr_assert_neq(st, WG_OK, "a stored result that is not a RESULT must not be served");
    cr_assert_neq(st, WG_ERR_TIMEOUT, "the broker did not answer the FETCH of the garbage result");
    int status;
    cr_assert_eq(waitpid(e.b.pid, &status, WNOHANG), 0, "the broker died");
    zmq_close(p);
    zmq_close(w);
    env_down(&e);
}
