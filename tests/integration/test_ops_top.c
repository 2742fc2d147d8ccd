/* test_ops_top — `waggle top` reads the broker's Prometheus text right.
 *
 * A tiny HTTP server thread on a free loopback port serves a fixed /metrics
 * body (the shape broker/wg_broker.c writes); `waggle top --once` must turn
 * it into the expected rows: worker count, per-model queue depth, per-worker
 * credits / in-flight / tokens/s / KV% / models, fleet tokens/s, counters.
 * No broker needed, so the parser is checked on exact numbers. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wg_test.h"

#define OPS_WAGGLE WG_BINARY_DIR "/tools/waggle"

static const char s_body[] =
    "# TYPE waggle_broker_jobs_accepted_total counter\nwaggle_broker_jobs_accepted_total 120\n"
    "# TYPE waggle_broker_jobs_done_total counter\nwaggle_broker_jobs_done_total 97\n"
    "waggle_broker_jobs_failed_total 3\nwaggle_broker_jobs_rejected_total 5\nwaggle_broker_jobs_requeued_total 4\n"
    "waggle_broker_bad_messages_total{socket=\"frontend\"} 0\n"
    "waggle_broker_store_up 1\nwaggle_broker_workers 2\n"
    "waggle_broker_queue_jobs{model=\"zeta\"} 7\nwaggle_broker_queue_jobs{model=\"alpha\"} 11\n"
    "waggle_broker_queue_prompt_tokens{model=\"zeta\"} 700\nwaggle_broker_queue_prompt_tokens{model=\"alpha\"} 1100\n"
    "waggle_broker_running_jobs{model=\"zeta\"} 2\nwaggle_broker_running_jobs{model=\"alpha\"} 6\n"
    "waggle_worker_credits{worker=\"w-b\"} 64\nwaggle_worker_inflight{worker=\"w-b\"} 6\n"
    "waggle_worker_tokens_per_second{worker=\"w-b\"} 100.25\nwaggle_worker_running_sequences{worker=\"w-b\"} 5\n"
    "waggle_worker_waiting_sequences{worker=\"w-b\"} 1\nwaggle_worker_kv_usage{worker=\"w-b\"} 0.25\n"
    "waggle_worker_memory_used_bytes{worker=\"w-b\"} 1073741824\n"
    "waggle_worker_memory_total_bytes{worker=\"w-b\"} 17179869184\n"
    "waggle_worker_model_resident{worker=\"w-b\",model=\"alpha\"} 1\n"
    "waggle_worker_model_resident{worker=\"w-b\",model=\"zeta\"} 1\n"
    "waggle_worker_credits{worker=\"w-a\"} 16\nwaggle_worker_inflight{worker=\"w-a\"} 2\n"
    "waggle_worker_tokens_per_second{worker=\"w-a\"} 50.25\n"
    "waggle_worker_kv_usage{worker=\"w-a\"} 0.5\n"
    "waggle_worker_model_resident{worker=\"w-a\",model=\"zeta\"} 1\n"
    "waggle_some_future_family{x=\"y\"} 9\n";

static int s_listen_fd;

static void *s_serve(void *arg) {
    (void)arg;
    for (;;) {
        int c = accept(s_listen_fd, NULL, NULL);
        if (c < 0) return NULL;
        char req[1024];
        if (read(c, req, sizeof req) <= 0) {
            close(c);
            continue;
        }
        char hdr[256];
        int hl = snprintf(hdr, sizeof hdr,
                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n",
                          sizeof s_body - 1);
        if (write(c, hdr, (size_t)hl) != hl || write(c, s_body, sizeof s_body - 1) < 0) {}
        close(c);
    }
}

static int s_start_server(void) {
    s_listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s_listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s_listen_fd, 8), 0);
    socklen_t l = sizeof a;
    getsockname(s_listen_fd, (struct sockaddr *)&a, &l);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, s_serve, NULL), 0);
    pthread_detach(t);
    return ntohs(a.sin_port);
}

static int s_sh(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t cap = 1 << 16, len = 0, n;
    char *b = malloc(cap);
    while ((n = fread(b + len, 1, cap - len - 1, p)) > 0) len += n;
    b[len] = '\0';
    *out = b;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The output line starting with `prefix` (after a newline), copied into out. */
static const char *s_line(const char *text, const char *prefix, char *out, size_t cap) {
    char k[128];
    snprintf(k, sizeof k, "\n%s", prefix);
    const char *p = strstr(text, k);
    if (!p) return NULL;
    p++;
    size_t l = strcspn(p, "\n");
    snprintf(out, cap, "%.*s", (int)l, p);
    return out;
}

Test(ops_top, once_renders_fleet_from_metrics) {
    int port = s_start_server();
    char cmd[512], *out, ln[512];
    snprintf(cmd, sizeof cmd, "%s top --once --metrics-http 127.0.0.1:%d 2>&1", OPS_WAGGLE, port);
    int rc = s_sh(cmd, &out);
    cr_assert_eq(rc, 0, "top exited %d:\n%s", rc, out);
    /* Totals: 18 queued, 8 running, 150.5 tokens/s over both workers. */
    cr_assert(strstr(out, "workers: 2  queued: 18  running: 8  tokens/s: 150.5  store: up"), "%s", out);
    cr_assert(strstr(out, "accepted 120  done 97  failed 3  rejected 5  requeued 4"), "%s", out);
    /* Models sorted by name, with their own numbers. */
    cr_assert(s_line(out, "alpha ", ln, sizeof ln), "%s", out);
    int q, qt, r;
    cr_assert_eq(sscanf(ln, "alpha %d %d %d", &q, &qt, &r), 3, "%s", ln);
    cr_assert(q == 11 && qt == 1100 && r == 6, "%s", ln);
    cr_assert(s_line(out, "zeta ", ln, sizeof ln));
    cr_assert_eq(sscanf(ln, "zeta %d %d %d", &q, &qt, &r), 3, "%s", ln);
    cr_assert(q == 7 && qt == 700 && r == 2, "%s", ln);
    cr_assert_lt(strstr(out, "\nalpha "), strstr(out, "\nzeta "), "models not sorted");
    /* Workers sorted by id; w-a has no memory figures and no sequence counts. */
    cr_assert(s_line(out, "w-b ", ln, sizeof ln), "%s", out);
    int cr, inf, run, wait;
    double tok, kv;
    char mem[32], models[64];
    cr_assert_eq(sscanf(ln, "w-b %d %d %d %d %lf %lf %31s %63s", &cr, &inf, &run, &wait, &tok, &kv, mem, models), 8,
                 "%s", ln);
    cr_assert(cr == 64 && inf == 6 && run == 5 && wait == 1, "%s", ln);
    cr_assert_float_eq(tok, 100.2, 0.051, "%s", ln);
    cr_assert_float_eq(kv, 25.0, 1e-9, "%s", ln);
    cr_assert_str_eq(mem, "1.0G/16G");
    cr_assert_str_eq(models, "alpha,zeta");
    cr_assert(s_line(out, "w-a ", ln, sizeof ln), "%s", out);
    cr_assert_eq(sscanf(ln, "w-a %d %d %d %d %lf %lf %31s %63s", &cr, &inf, &run, &wait, &tok, &kv, mem, models), 8,
                 "%s", ln);
    cr_assert(cr == 16 && inf == 2 && tok > 50.15 && tok < 50.35 && kv == 50.0, "%s", ln);
    cr_assert_str_eq(mem, "-");
    cr_assert_str_eq(models, "zeta");
    cr_assert_lt(strstr(out, "\nw-a "), strstr(out, "\nw-b "), "workers not sorted");
    free(out);
}

Test(ops_top, unreachable_metrics_exit_1_and_usage_errors_exit_2) {
    /* A port with nothing listening: bind, read the number, close. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof a);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    char cmd[512], *out;
    snprintf(cmd, sizeof cmd, "%s top --once --metrics-http 127.0.0.1:%d 2>&1", OPS_WAGGLE, ntohs(a.sin_port));
    cr_assert_eq(s_sh(cmd, &out), 1, "%s", out);
    cr_assert(strstr(out, "unreachable"), "%s", out);
    free(out);
    cr_assert_eq(s_sh(OPS_WAGGLE " top --once 2>&1", &out), 2, "top without --metrics-http must fail: %s", out);
    free(out);
    cr_assert_eq(s_sh(OPS_WAGGLE " top --once --metrics-http 127.0.0.1:1 --interval 0 2>&1", &out), 2, "%s", out);
    free(out);
}

/* Not on a terminal and without --once: plain frames, one after another, with rates. */
Test(ops_top, plain_frames_when_not_a_tty) {
    int port = s_start_server();
    char cmd[512], *out;
    /* --count ends it after three frames; the timeout only guards against a hang
     * (a loaded machine must not turn a slow start into a missing frame). */
    snprintf(cmd, sizeof cmd, "timeout -s INT 60 %s top --interval 0.2 --count 3 --metrics-http 127.0.0.1:%d 2>&1",
             OPS_WAGGLE, port);
    cr_assert_eq(s_sh(cmd, &out), 0, "%s", out);
    cr_assert_null(strchr(out, '\033'), "escape codes on a pipe:\n%s", out);
    int frames = 0;
    for (const char *p = out; (p = strstr(p, "waggle top ")); p++) frames++;
    cr_assert_eq(frames, 3, "want exactly 3 frames with --count 3:\n%s", out);
    /* Second frame has a rate (counters unchanged: 0.0 done/s). */
    cr_assert(strstr(out, "0.0 done/s"), "%s", out);
    free(out);
}
