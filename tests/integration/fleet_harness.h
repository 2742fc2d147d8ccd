/* Fleet test harness: real redis-server, waggle-broker, waggle-worker and
 * `waggle submit`/`waggle run` processes on free loopback ports. Every
 * process started here gets PR_SET_PDEATHSIG(SIGKILL) and is also killed by
 * an atexit hook, so a failing assertion never leaves processes behind. */
#ifndef FLEET_HARNESS_H
#define FLEET_HARNESS_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "schemas/wg_msg_zmq.h"
#include "wg_test.h"
#include "wg_test_sys.h"

#define FL_BROKER WG_BINARY_DIR "/broker/waggle-broker"
#define FL_WORKER WG_BINARY_DIR "/worker/waggle-worker"
#define FL_WAGGLE WG_BINARY_DIR "/tools/waggle"
#define FL_MODEL_REL "trained/stories260K-f32.gguf"

static pid_t fl_pids[64];
static int fl_npids;
static char fl_dir[64];

static void fl_cleanup(void) {
    for (int i = 0; i < fl_npids; i++)
        if (fl_pids[i] > 0) {
            kill(fl_pids[i], SIGKILL);
            waitpid(fl_pids[i], NULL, 0);
            fl_pids[i] = 0;
        }
    if (fl_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", fl_dir);
        if (system(cmd)) {}
        fl_dir[0] = '\0';
    }
}

/* A temp dir for this test (removed at exit). */
static inline const char *fl_tmp(void) {
    if (!fl_dir[0]) {
        strcpy(fl_dir, "/tmp/wgfleet-XXXXXX");
        cr_assert(mkdtemp(fl_dir));
        atexit(fl_cleanup);
    }
    return fl_dir;
}

static inline const char *fl_path(const char *name) {
    static char buf[8][256];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 256, "%s/%s", fl_tmp(), name);
    return b;
}

/* Spawn argv (NULL-terminated) with stdout+stderr to `log` (NULL = /dev/null). */
static inline pid_t fl_spawn(const char *const *argv, const char *log) {
    fl_tmp();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (fl_npids < 64) fl_pids[fl_npids++] = pid;
    return pid;
}

static inline void fl_kill(pid_t *pid, int sig) {
    if (*pid <= 0) return;
    kill(*pid, sig);
    waitpid(*pid, NULL, 0);
    for (int i = 0; i < fl_npids; i++)
        if (fl_pids[i] == *pid) fl_pids[i] = 0;
    *pid = 0;
}

static inline bool fl_alive(pid_t pid) { return pid > 0 && waitpid(pid, NULL, WNOHANG) == 0; }

/* Wait for pid to exit within timeout_ms; returns its exit code, -1 on timeout (then killed). */
static inline int fl_wait(pid_t *pid, int timeout_ms) {
    int64_t end = wg_test_now_ms() + timeout_ms;
    int status = 0;
    while (wg_test_now_ms() < end) {
        pid_t r = waitpid(*pid, &status, WNOHANG);
        if (r == *pid) {
            for (int i = 0; i < fl_npids; i++)
                if (fl_pids[i] == *pid) fl_pids[i] = 0;
            *pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        wg_test_sleep_ms(20);
    }
    fl_kill(pid, SIGKILL);
    return -1;
}

typedef struct fl_redis {
    pid_t pid;
    int port;
    char dir[200];
} fl_redis;

static inline void fl_redis_start(fl_redis *r) {
    if (!r->port) {
        r->port = wg_test_free_port();
        snprintf(r->dir, sizeof r->dir, "%s/redis", fl_tmp());
        mkdir(r->dir, 0755);
    }
    char port[16], exe[] = "/usr/bin/redis-server";
    snprintf(port, sizeof port, "%d", r->port);
    const char *argv[] = {exe, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                          "--dir", r->dir, NULL};
    if (access(exe, X_OK) != 0) argv[0] = "/usr/local/bin/redis-server";
    r->pid = fl_spawn(argv, NULL);
    for (int i = 0; i < 200; i++) {
        redisContext *c = redisConnect("127.0.0.1", r->port);
        if (c && !c->err) {
            redisReply *rep = redisCommand(c, "PING");
            bool ok = rep && rep->type == REDIS_REPLY_STATUS;
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

static inline long long fl_redis_count(const fl_redis *r, const char *pattern) {
    redisContext *c = redisConnect("127.0.0.1", r->port);
    cr_assert(c && !c->err);
    redisReply *rep = redisCommand(c, "KEYS %s", pattern);
    long long n = rep && rep->type == REDIS_REPLY_ARRAY ? (long long)rep->elements : -1;
    if (rep) freeReplyObject(rep);
    redisFree(c);
    return n;
}

typedef struct fl_broker {
    pid_t pid;
    char fe[64], be[64];
    char log[256];
} fl_broker;

/* Start the broker (fixed ports across restarts); redis may be NULL (memory store). */
static inline void fl_broker_start(fl_broker *b, const fl_redis *r, const char *const *extra) {
    if (!b->fe[0]) {
        snprintf(b->fe, sizeof b->fe, "tcp://127.0.0.1:%d", wg_test_free_port());
        snprintf(b->be, sizeof b->be, "tcp://127.0.0.1:%d", wg_test_free_port());
        snprintf(b->log, sizeof b->log, "%s/broker.log", fl_tmp());
    }
    const char *argv[40];
    int n = 0;
    char url[64];
    argv[n++] = FL_BROKER;
    argv[n++] = "--frontend";
    argv[n++] = b->fe;
    argv[n++] = "--backend";
    argv[n++] = b->be;
    argv[n++] = "--heartbeat-ms";
    argv[n++] = "250";
    if (r) {
        snprintf(url, sizeof url, "redis://127.0.0.1:%d", r->port);
        argv[n++] = "--redis";
        argv[n++] = url;
    }
    for (int i = 0; extra && extra[i] && n < 38; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    b->pid = fl_spawn(argv, b->log);
    wg_test_sleep_ms(200);
    cr_assert(fl_alive(b->pid), "waggle-broker exited at start (log %s)", b->log);
}

typedef struct fl_worker {
    pid_t pid;
    char stream[64];
    char log[256];
} fl_worker;

/* Start a worker serving the corpus model as "stories". */
static inline void fl_worker_start(fl_worker *w, const fl_broker *b, const char *id, const char *const *extra) {
    snprintf(w->stream, sizeof w->stream, "tcp://127.0.0.1:%d", wg_test_free_port());
    snprintf(w->log, sizeof w->log, "%s/worker-%s.log", fl_tmp(), id);
    char model[4200];
    snprintf(model, sizeof model, "stories=%s", wg_test_corpus(FL_MODEL_REL));
    const char *argv[48];
    int n = 0;
    argv[n++] = FL_WORKER;
    argv[n++] = "--broker";
    argv[n++] = b->be;
    argv[n++] = "--stream";
    argv[n++] = w->stream;
    argv[n++] = "--model";
    argv[n++] = model;
    argv[n++] = "--id";
    argv[n++] = id;
    argv[n++] = "--heartbeat-ms";
    argv[n++] = "250";
    for (int i = 0; extra && extra[i] && n < 46; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    w->pid = fl_spawn(argv, w->log);
}

static inline bool fl_file_has(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Wait until a line of `path` contains `needle`; false on timeout. */
static inline bool fl_wait_file_has(const char *path, const char *needle, int timeout_ms) {
    int64_t end = wg_test_now_ms() + timeout_ms;
    while (!fl_file_has(path, needle)) {
        if (wg_test_now_ms() >= end) return false;
        wg_test_sleep_ms(20);
    }
    return true;
}

/* Wait until a worker has started serving (its start-up line is logged, so
 * its signal handlers are in place): a SIGTERM sent before that meets the
 * default action while the process is still being loaded. */
static inline void fl_worker_wait_ready(const fl_worker *w, int timeout_ms) {
    cr_assert(fl_wait_file_has(w->log, " credits=", timeout_ms), "worker log %s has no start-up line after %d ms",
              w->log, timeout_ms);
}

static inline int fl_count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* Write n completion jobs (greedy unless temp > 0, then seeded). */
static inline void fl_write_jobs(const char *path, int n, int max_tokens, double temp) {
    static const char *starts[] = {"Once upon a time", "The cat", "Tom and Sam", "Lily wanted", "One day, a big dog",
                                   "The sun was", "There was a little bird", "Mom said"};
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < n; i++)
        fprintf(f,
                "{\"custom_id\":\"job-%d\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":"
                "\"stories\",\"prompt\":\"%s %d\",\"max_tokens\":%d,\"temperature\":%g,\"seed\":%d}}\n",
                i, starts[i % 8], i, max_tokens, temp, i);
    fclose(f);
}

static inline pid_t fl_submit_start(const fl_broker *b, const char *in, const char *out, const char *const *extra) {
    const char *argv[24];
    int n = 0;
    argv[n++] = FL_WAGGLE;
    argv[n++] = "submit";
    argv[n++] = "--broker";
    argv[n++] = b->fe;
    argv[n++] = "--input";
    argv[n++] = in;
    argv[n++] = "--output";
    argv[n++] = out;
    for (int i = 0; extra && extra[i] && n < 22; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    return fl_spawn(argv, fl_path("submit.log"));
}

/* Rows of a results file: custom_id -> row (object). Fails on a duplicate custom_id. */
static inline json_t *fl_rows(const char *path) {
    json_t *rows = json_object();
    FILE *f = fopen(path, "r");
    cr_assert(f, "no output %s", path);
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        cr_assert(r, "bad output row: %s", line);
        const char *cid = json_string_value(json_object_get(r, "custom_id"));
        cr_assert(cid, "row without custom_id: %s", line);
        cr_assert_null(json_object_get(rows, cid), "custom_id %s has two rows", cid);
        json_object_set_new(rows, cid, r);
    }
    free(line);
    fclose(f);
    return rows;
}

/* Text / finish_reason / usage of a success row, or NULL for an error row. */
static inline const char *fl_row_text(json_t *row) {
    json_t *ch = json_array_get(json_object_get(json_object_get(json_object_get(row, "response"), "body"), "choices"), 0);
    json_t *t = json_object_get(ch, "text");
    if (!t) t = json_object_get(json_object_get(ch, "message"), "content");
    return json_string_value(t);
}

static inline int fl_row_status(json_t *row) {
    return (int)json_integer_value(json_object_get(json_object_get(row, "response"), "status_code"));
}

/* GET /metrics from HOST:PORT (a broker's --metrics-http): the whole HTTP
 * response (malloc'd), or NULL when nothing listens there. */
static inline char *fl_metrics(const char *hostport) {
    cr_assert(strrchr(hostport, ':'), "metrics address '%s' is not HOST:PORT", hostport);
    return wg_test_metrics_get(hostport);
}

/* The value of the sample `series` (a metric name with its labels exactly as
 * exported, e.g. `waggle_broker_workers` or `x{worker="w1",model="a"}`) in a
 * /metrics body, NAN when absent. */
static inline double fl_metric(const char *body, const char *series) {
    size_t n = strlen(series);
    for (const char *p = body; p && (p = strstr(p, series)) != NULL; p += n)
        if ((p == body || p[-1] == '\n') && p[n] == ' ') return strtod(p + n + 1, NULL);
    return NAN;
}

/* Receive one published message (topic, WGL1, command, body) from a SUB:
 * command and body into *in (clear with wg_msg_in_clear). flags: 0 or
 * ZMQ_DONTWAIT. ERR_AGAIN when nothing is waiting. */
static inline wg_status fl_sub_recv(void *sock, wg_msg_in *in, int flags) {
    memset(in, 0, sizeof *in);
    int idx = 0;
    wg_status st = WG_OK;
    for (;;) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, idx == 0 ? flags : 0) < 0) {
            zmq_msg_close(&part);
            return idx == 0 ? WG_ERR_AGAIN : WG_ERR_ZMQ;
        }
        const uint8_t *d = zmq_msg_data(&part);
        size_t n = zmq_msg_size(&part);
        if (idx == 1 && wg_msg_check_signature(d, n)) st = WG_ERR_VERSION;
        if (idx == 2 && wg_msg_cmd_parse(d, n, &in->cmd)) st = WG_ERR_PROTOCOL;
        if (idx == 3) {
            in->body = malloc(n ? n : 1);
            memcpy(in->body, d, n);
            in->body_len = n;
        }
        int more = zmq_msg_more(&part);
        zmq_msg_close(&part);
        idx++;
        if (!more) break;
    }
    in->n_frames = idx;
    return idx == 4 ? st : WG_ERR_PROTOCOL;
}

/* A SUB on `ep` for `topic`: no linger, the given receive HWM and (when
 * non-zero) kernel receive buffer, 10 ms reconnects. */
static inline void *fl_sub_socket(void *ctx, const char *ep, int hwm, int rcvbuf, const char *topic) {
    void *s = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0, ivl = 10;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    if (rcvbuf) zmq_setsockopt(s, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, topic, strlen(topic));
    cr_assert_eq(zmq_connect(s, ep), 0);
    return s;
}

#endif
