/* Test harness for broker integration tests: a real redis-server on a free
 * loopback port (temp dir, --save "" --appendonly yes), the real waggle-broker
 * binary, and producer/worker peers on real ZeroMQ sockets. */
#ifndef BROKER_HARNESS_H
#define BROKER_HARNESS_H

#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "schemas/wg_msg_producer.h"
#include "wg_test_sys.h"
#include "schemas/wg_msg_worker.h"
#include "schemas/wg_msg_zmq.h"

#define BROKER_BIN WG_BINARY_DIR "/broker/waggle-broker"

typedef struct h_redis {
    pid_t pid;
    int port;
    char dir[64];
} h_redis;

static inline void h_redis_start(h_redis *r) {
    strcpy(r->dir, "/tmp/wgbrk-XXXXXX");
    cr_assert(mkdtemp(r->dir));
    r->port = wg_test_free_port();
    r->pid = fork();
    if (r->pid == 0) {
        char port[16];
        snprintf(port, sizeof port, "%d", r->port);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
        if (!freopen("/dev/null", "w", stdout)) _exit(126);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "yes", "--dir", r->dir, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnect("127.0.0.1", r->port);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep) freeReplyObject(rep);
            redisFree(c);
            if (ok) return;
        } else if (c) {
            redisFree(c);
        }
        wg_test_sleep_ms(25);
    }
    cr_assert_fail("redis-server did not start");
}

static inline void h_redis_stop(h_redis *r) {
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
    if (system(cmd)) {}
}

static inline redisReply *h_redis_cmd(const h_redis *r, const char *fmt, ...) {
    redisContext *c = redisConnect("127.0.0.1", r->port);
    cr_assert(c && !c->err);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

typedef struct h_broker {
    pid_t pid;
    char fe[64], be[64];
} h_broker;

/* Start waggle-broker with extra args (NULL-terminated list). */
static inline void h_broker_start(h_broker *b, const h_redis *r, const char *const *extra) {
    if (!b->fe[0]) {
        snprintf(b->fe, sizeof b->fe, "tcp://127.0.0.1:%d", wg_test_free_port());
        snprintf(b->be, sizeof b->be, "tcp://127.0.0.1:%d", wg_test_free_port());
    }
    const char *argv[40];
    int n = 0;
    char url[64];
    argv[n++] = BROKER_BIN;
    argv[n++] = "--frontend";
    argv[n++] = b->fe;
    argv[n++] = "--backend";
    argv[n++] = b->be;
    if (r) {
        snprintf(url, sizeof url, "redis://127.0.0.1:%d", r->port);
        argv[n++] = "--redis";
        argv[n++] = url;
    }
    for (int i = 0; extra && extra[i] && n < 38; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    b->pid = fork();
    if (b->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        setenv("WAGGLE_LOG", "error", 1);
        execv(BROKER_BIN, (char *const *)argv);
        _exit(127);
    }
    wg_test_sleep_ms(150);
    int status;
    cr_assert_eq(waitpid(b->pid, &status, WNOHANG), 0, "waggle-broker exited at start");
}

static inline void h_broker_kill(h_broker *b, int sig) {
    if (b->pid > 0) {
        kill(b->pid, sig);
        waitpid(b->pid, NULL, 0);
        b->pid = 0;
    }
}

static inline void *h_dealer(void *ctx, const char *ep) {
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, to = 3000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &to, sizeof to);
    cr_assert_eq(zmq_connect(s, ep), 0);
    return s;
}

/* Receive one message within timeout_ms; returns WG_ERR_AGAIN on timeout. */
static inline wg_status h_recv(void *s, wg_msg_in *in, int timeout_ms) {
    zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
    memset(in, 0, sizeof *in);
    if (zmq_poll(&it, 1, timeout_ms) <= 0) return WG_ERR_AGAIN;
    return wg_msg_recv(s, false, in, 0);
}

/* Receive, skipping broker HEARTBEATs, until a message of `cmd` (or timeout). */
static inline wg_status h_expect(void *s, wg_msg_cmd cmd, wg_msg_in *in, int timeout_ms) {
    int64_t end = wg_test_now_ms() + timeout_ms;
    for (;;) {
        int left = (int)(end - wg_test_now_ms());
        if (left <= 0) return WG_ERR_AGAIN;
        wg_status st = h_recv(s, in, left);
        if (st) return st;
        if (in->cmd == cmd) return WG_OK;
        wg_msg_in_clear(in);
    }
}

static inline void h_ready(void *w, const char *id, uint32_t credits, const char *model) {
    char *models[] = {(char *)model};
    wg_msg_ready r = {.worker_id = (char *)id, .credits = credits, .models = models,
                      .n_models = model ? 1 : 0};
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_ready_encode(&r, &b), WG_OK);
    cr_assert_eq(wg_msg_send(w, NULL, 0, WG_CMD_READY, &b, 0), WG_OK);
    wg_msg_buf_free(&b);
}

static inline void h_heartbeat(void *w) {
    wg_msg_buf b = {0};
    wg_msg_empty_encode(&b);
    wg_msg_send(w, NULL, 0, WG_CMD_HEARTBEAT, &b, 0);
    wg_msg_buf_free(&b);
}

/* Submit n prompt jobs for model; fills job_ids (33 bytes each) of accepted ones.
 * Returns the number accepted; the SUBMITTED reply is returned in *rep if given. */
static inline uint32_t h_submit(void *p, const char *model, uint32_t n, char (*job_ids)[33],
                                wg_msg_submitted *rep_out) {
    wg_msg_submit s = {.req = 77, .n_jobs = n};
    s.jobs = calloc(n, sizeof *s.jobs);
    for (uint32_t i = 0; i < n; i++) {
        wg_msg_job_init(&s.jobs[i]);
        s.jobs[i].model = strdup(model);
        s.jobs[i].prompt = strdup("Once upon a time");
        char cid[16];
        snprintf(cid, sizeof cid, "c%u", i);
        s.jobs[i].custom_id = strdup(cid);
    }
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_submit_encode(&s, &b), WG_OK);
    cr_assert_eq(wg_msg_send(p, NULL, 0, WG_CMD_SUBMIT, &b, 0), WG_OK);
    wg_msg_buf_free(&b);
    wg_msg_submit_clear(&s);
    wg_msg_in in;
    cr_assert_eq(h_expect(p, WG_CMD_SUBMITTED, &in, 3000), WG_OK, "no SUBMITTED reply");
    wg_msg_submitted rep;
    cr_assert_eq(wg_msg_submitted_decode(in.body, in.body_len, &rep), WG_OK);
    cr_assert_eq(rep.req, 77);
    cr_assert_eq(rep.n_items, n);
    uint32_t acc = 0;
    for (uint32_t i = 0; i < rep.n_items; i++)
        if (rep.items[i].accepted && job_ids) snprintf(job_ids[acc++], 33, "%s", rep.items[i].job_id);
        else if (rep.items[i].accepted) acc++;
    wg_msg_in_clear(&in);
    if (rep_out) *rep_out = rep;
    else wg_msg_submitted_clear(&rep);
    return acc;
}

/* Wait for a JOB on a worker socket; returns the decoded job. */
static inline wg_status h_take_job(void *w, wg_msg_job *job, int timeout_ms) {
    wg_msg_in in;
    wg_status st = h_expect(w, WG_CMD_JOB, &in, timeout_ms);
    if (st) return st;
    st = wg_msg_job_decode(in.body, in.body_len, job);
    wg_msg_in_clear(&in);
    return st;
}

static inline void h_done(void *w, const char *job_id, const char *text) {
    uint32_t toks[] = {1, 2, 3};
    wg_msg_result r = {.job_id = (char *)job_id, .text = (char *)text, .token_ids = toks,
                       .n_tokens = 3, .finish_reason = "length", .prompt_tokens = 5,
                       .completion_tokens = 3};
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_result_encode(WG_CMD_DONE, &r, &b), WG_OK);
    cr_assert_eq(wg_msg_send(w, NULL, 0, WG_CMD_DONE, &b, 0), WG_OK);
    wg_msg_buf_free(&b);
}

static inline void h_failed(void *w, const char *job_id, const char *reason) {
    wg_msg_failed f = {.job_id = (char *)job_id, .code = WG_ERR_DEVICE, .reason = (char *)reason,
                       .retryable = true};
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_failed_encode(&f, &b), WG_OK);
    cr_assert_eq(wg_msg_send(w, NULL, 0, WG_CMD_FAILED, &b, 0), WG_OK);
    wg_msg_buf_free(&b);
}

/* FETCH a result; returns the status of the reply (WG_OK with *r filled, or the ERROR code). */
static inline wg_status h_fetch(void *p, const char *job_id, wg_msg_result *r) {
    wg_msg_req q = {.req = 5, .job_id = (char *)job_id};
    wg_msg_buf b = {0};
    wg_msg_req_encode(WG_CMD_FETCH, &q, &b);
    wg_msg_send(p, NULL, 0, WG_CMD_FETCH, &b, 0);
    wg_msg_buf_free(&b);
    int64_t end = wg_test_now_ms() + 3000;
    while (wg_test_now_ms() < end) {
        wg_msg_in in;
        if (h_recv(p, &in, 3000)) return WG_ERR_TIMEOUT;
        if (in.cmd == WG_CMD_ERROR) {
            wg_msg_error e;
            cr_assert_eq(wg_msg_error_decode(in.body, in.body_len, &e), WG_OK);
            wg_status st = e.code;
            wg_msg_error_clear(&e);
            wg_msg_in_clear(&in);
            return st;
        }
        if (in.cmd == WG_CMD_RESULT) {
            cr_assert_eq(wg_msg_result_decode(WG_CMD_RESULT, in.body, in.body_len, r), WG_OK);
            wg_msg_in_clear(&in);
            if (r->req == 5) return WG_OK;
            wg_msg_result_clear(r); /* a push, not our reply */
            continue;
        }
        wg_msg_in_clear(&in);
    }
    return WG_ERR_TIMEOUT;
}

#endif
