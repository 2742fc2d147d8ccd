/* waggle status — is the broker up, what is queued and running, which
 * workers serve what.
 *
 *   waggle status --broker EP [JOB_ID] [--metrics-http HOST:PORT] [--redis URL]
 *
 * Design: WGL/1 answers PING and per-job STATUS on the frontend; the fleet
 * figures (queues per model, workers with credits / in-flight / tokens/s)
 * come from the broker's Prometheus text (--metrics-http), and worker stream
 * endpoints from the Redis worker registry (--redis). Each source is
 * optional; what is given is shown. */
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_zmq.h"
#include "waggle.h"
#include "worker/registry/wg_registry.h"

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Send a request and wait for its reply (PONG / JOBSTATE / ERROR). */
static int s_ask(void *d, wg_msg_cmd cmd, const char *job_id, wg_msg_in *in) {
    wg_msg_req q = {.req = 7, .job_id = (char *)job_id};
    wg_msg_buf b = {0};
    if (wg_msg_req_encode(cmd, &q, &b) || wg_msg_send(d, NULL, 0, cmd, &b, 0)) {
        wg_msg_buf_free(&b);
        return -1;
    }
    wg_msg_buf_free(&b);
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    double end = s_now() + 3;
    while (s_now() < end) {
        if (zmq_poll(&it, 1, 200) <= 0) continue;
        if (wg_msg_recv(d, false, in, 0) == WG_OK && in->cmd != WG_CMD_RESULT) return 0;
        wg_msg_in_clear(in);
    }
    return -1;
}

/* GET /metrics from HOST:PORT into a malloc'd string. */
static char *s_http_get(const char *hostport) {
    char host[256];
    snprintf(host, sizeof host, "%s", hostport);
    char *colon = strrchr(host, ':');
    if (!colon) return NULL;
    *colon = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) return NULL;
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return NULL;
    }
    freeaddrinfo(ai);
    char req[512];
    int rl = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", hostport);
    if (write(fd, req, (size_t)rl) != rl) {
        close(fd);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (len + 1 == cap) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    if (!buf) return NULL;
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (!body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* Print the metric lines of one family, "name{labels} value" -> "  labels  value". */
static void s_family(const char *text, const char *name, const char *title) {
    size_t nl = strlen(name);
    bool header = false;
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ')) {
            if (!header) printf("%s\n", title), header = true;
            printf("  %.*s\n", (int)(len - nl), p + nl);
        }
        p = e ? e + 1 : NULL;
    }
}

int wg_cmd_status(int argc, char **argv) {
    static const struct option opts[] = {{"broker", required_argument, 0, 'b'},
                                         {"metrics-http", required_argument, 0, 'm'},
                                         {"redis", required_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *broker = NULL, *metrics = NULL, *redis = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:m:r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': broker = optarg; break;
        case 'm': metrics = optarg; break;
        case 'r': redis = optarg; break;
        case 'h':
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: waggle status --broker EP [JOB_ID] [--metrics-http HOST:PORT] [--redis URL]\n"
                    "  --broker EP               broker frontend: liveness (PING) and, with JOB_ID, the job's state\n"
                    "  --metrics-http HOST:PORT  the broker's /metrics: queues, workers, in-flight jobs\n"
                    "  --redis URL               worker registry: stream endpoints, models, credits\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (!broker) {
        fprintf(stderr, "waggle status: --broker EP is required\n");
        return 2;
    }
    const char *job_id = optind < argc ? argv[optind] : NULL;
    int rc = 0;
    void *ctx = zmq_ctx_new();
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(d, broker);
    wg_msg_in in;
    double t0 = s_now();
    if (s_ask(d, WG_CMD_PING, NULL, &in) == 0 && in.cmd == WG_CMD_PONG) {
        printf("broker %s: up (%.1f ms)\n", broker, (s_now() - t0) * 1000);
        wg_msg_in_clear(&in);
    } else {
        printf("broker %s: no answer within 3 s\n", broker);
        rc = 1;
    }
    if (job_id && rc == 0) {
        if (s_ask(d, WG_CMD_STATUS, job_id, &in) == 0 && in.cmd == WG_CMD_JOBSTATE) {
            wg_msg_jobstate js;
            if (wg_msg_jobstate_decode(in.body, in.body_len, &js) == WG_OK) {
                printf("job %s%s%s: %s, attempts %u%s%s%s%s\n", js.job_id, js.custom_id ? " " : "",
                       js.custom_id ? js.custom_id : "", js.state, js.attempts, js.worker_id ? ", worker " : "",
                       js.worker_id ? js.worker_id : "", js.error ? ", error: " : "", js.error ? js.error : "");
                wg_msg_jobstate_clear(&js);
            }
        } else {
            printf("job %s: unknown to the broker\n", job_id);
            rc = 1;
        }
        wg_msg_in_clear(&in);
    }
    zmq_close(d);
    zmq_ctx_term(ctx);
    if (metrics) {
        char *text = s_http_get(metrics);
        if (!text) {
            printf("metrics %s: unreachable\n", metrics);
            rc = 1;
        } else {
            s_family(text, "waggle_broker_store_up", "store up:");
            s_family(text, "waggle_broker_queue_jobs", "queued jobs:");
            s_family(text, "waggle_broker_running_jobs", "running jobs:");
            s_family(text, "waggle_broker_workers", "workers:");
            s_family(text, "waggle_worker_credits", "worker credits:");
            s_family(text, "waggle_worker_inflight", "worker in-flight jobs:");
            s_family(text, "waggle_worker_tokens_per_second", "worker tokens/s:");
            s_family(text, "waggle_broker_jobs_done_total", "jobs done:");
            s_family(text, "waggle_broker_jobs_failed_total", "jobs failed:");
            free(text);
        }
    }
    if (redis) {
        wg_registry_t *reg = NULL;
        wg_reg_worker *ws = NULL;
        uint32_t n = 0;
        if (wg_registry_connect(redis, &reg) != WG_OK || wg_registry_worker_list(reg, &ws, &n) != WG_OK) {
            printf("registry %s: %s\n", redis, wg_errmsg());
            rc = 1;
        } else {
            printf("registered workers: %u\n", n);
            for (uint32_t i = 0; i < n; i++) {
                printf("  %s  stream=%s credits=%u free=%u models=", ws[i].id,
                       ws[i].stream_endpoint && *ws[i].stream_endpoint ? ws[i].stream_endpoint : "-", ws[i].credits,
                       ws[i].free_slots);
                for (uint32_t m = 0; m < ws[i].n_models; m++) printf("%s%s", m ? "," : "", ws[i].models[m]);
                printf("\n");
            }
            wg_reg_workers_free(&ws, &n);
        }
        wg_registry_destroy(&reg);
    }
    return rc;
}
