/* waggle tail — print the token stream of one job (or of every job) as it is
 * generated, from the workers' XPUB stream sockets (PROTOCOL.md §8).
 *
 *   waggle tail --broker EP JOB_ID | --all  [--stream EP ...] [--redis URL]
 *
 * Design: WGL/1 has no frontend message listing workers, so stream endpoints
 * come from --stream flags or from the Redis worker registry that workers
 * refresh (waggle:workers, waggle:worker:<id>.stream_endpoint). With a JOB_ID
 * the broker's STATUS names the worker running it, whose endpoint is tried
 * first; the SUB connects to every known endpoint anyway (a requeued job may
 * move). A missed start is not an error: FETCH returns the whole text. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_zmq.h"
#include "waggle.h"
#include "worker/registry/wg_registry.h"

static volatile sig_atomic_t s_stop;
static void s_on_sig(int sig) {
    (void)sig;
    s_stop = 1;
}

static int64_t s_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Stream endpoints of the live workers in the Redis worker directory. */
static int s_registry(const char *url, char eps[][256], int max) {
    wg_registry_t *r = NULL;
    if (wg_registry_connect(url, &r) != WG_OK) {
        fprintf(stderr, "waggle tail: %s\n", wg_errmsg());
        return -1;
    }
    wg_reg_worker *ws = NULL;
    uint32_t n = 0;
    int k = 0;
    if (wg_registry_worker_list(r, &ws, &n) == WG_OK) {
        for (uint32_t i = 0; i < n && k < max; i++)
            if (ws[i].stream_endpoint && *ws[i].stream_endpoint) snprintf(eps[k++], 256, "%s", ws[i].stream_endpoint);
        wg_reg_workers_free(&ws, &n);
    }
    wg_registry_destroy(&r);
    return k;
}

/* Print what the broker knows about job_id (state, worker) to stderr. */
static void s_status(void *ctx, const char *broker, const char *job_id) {
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(d, broker) != 0) goto out;
    wg_msg_req q = {.req = 1, .job_id = (char *)job_id};
    wg_msg_buf b = {0};
    if (wg_msg_req_encode(WG_CMD_STATUS, &q, &b) || wg_msg_send(d, NULL, 0, WG_CMD_STATUS, &b, 0)) {
        wg_msg_buf_free(&b);
        goto out;
    }
    wg_msg_buf_free(&b);
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 2000) > 0) {
        wg_msg_in in;
        if (wg_msg_recv(d, false, &in, 0) == WG_OK && in.cmd == WG_CMD_JOBSTATE) {
            wg_msg_jobstate js;
            if (wg_msg_jobstate_decode(in.body, in.body_len, &js) == WG_OK) {
                fprintf(stderr, "job %s: %s (attempts %u%s%s)\n", js.job_id, js.state, js.attempts,
                        js.worker_id ? ", worker " : "", js.worker_id ? js.worker_id : "");
                wg_msg_jobstate_clear(&js);
            }
        } else if (in.cmd == WG_CMD_ERROR) {
            fprintf(stderr, "job %s: unknown to the broker\n", job_id);
        }
        wg_msg_in_clear(&in);
    } else {
        fprintf(stderr, "waggle tail: no answer from the broker at %s\n", broker);
    }
out:
    zmq_close(d);
}

int wg_cmd_tail(int argc, char **argv) {
    static const struct option opts[] = {{"broker", required_argument, 0, 'b'}, {"all", no_argument, 0, 'a'},
                                         {"stream", required_argument, 0, 's'}, {"redis", required_argument, 0, 'r'},
                                         {"json", no_argument, 0, 'j'},         {"timeout", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *broker = NULL, *redis = NULL;
    char eps[64][256];
    int n_eps = 0, c;
    bool all = false, json = false;
    long timeout_s = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:s:r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': broker = optarg; break;
        case 'a': all = true; break;
        case 's': if (n_eps < 64) snprintf(eps[n_eps++], 256, "%s", optarg); break;
        case 'r': redis = optarg; break;
        case 'j': json = true; break;
        case 't': timeout_s = atol(optarg); break;
        case 'h':
        default:
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: waggle tail --broker EP (JOB_ID | --all) [--stream EP ...] [--redis URL] [--json]\n"
                    "  --broker EP    broker frontend (job state; with JOB_ID)\n"
                    "  --stream EP    a worker stream endpoint to read (repeatable)\n"
                    "  --redis URL    find stream endpoints in the worker registry\n"
                    "  --all          every job's tokens, each line prefixed by its job id\n"
                    "  --json         one JSON object per event instead of text\n"
                    "  --timeout S    stop after S seconds\n");
            return c == 'h' ? 0 : 2;
        }
    }
    const char *job_id = optind < argc ? argv[optind] : NULL;
    if (!broker || (!job_id && !all) || (job_id && all)) {
        fprintf(stderr, "waggle tail: needs --broker EP and either JOB_ID or --all\n");
        return 2;
    }
    if (redis) {
        int n = s_registry(redis, eps + n_eps, 64 - n_eps);
        if (n > 0) n_eps += n;
    }
    if (!n_eps) {
        fprintf(stderr, "waggle tail: no worker stream endpoint known: pass --stream EP or --redis URL "
                        "(WGL/1 has no frontend request that lists workers)\n");
        return 2;
    }
    void *ctx = zmq_ctx_new();
    if (job_id) s_status(ctx, broker, job_id);
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    char topic[3 + WG_MSG_MAX_ID + 1] = "t/";
    size_t tl = job_id ? wg_msg_token_topic(job_id, topic, sizeof topic) : 2;
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, topic, tl);
    for (int i = 0; i < n_eps; i++)
        if (zmq_connect(sub, eps[i]) != 0)
            fprintf(stderr, "waggle tail: cannot connect to %s: %s\n", eps[i], zmq_strerror(errno));
    signal(SIGINT, s_on_sig);
    signal(SIGTERM, s_on_sig);
    int64_t end = timeout_s ? s_ms() + timeout_s * 1000 : 0;
    char last[WG_MSG_MAX_ID + 1] = "";
    int rc = 0;
    while (!s_stop) {
        if (end && s_ms() > end) {
            rc = job_id ? 1 : 0;
            break;
        }
        zmq_pollitem_t it = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 200) <= 0) continue;
        /* Frames: topic, WGL1, command, body. */
        zmq_msg_t parts[4];
        int np = 0, more = 1;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sub, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            if (np < 4) parts[np++] = m;
            else zmq_msg_close(&m);
        }
        wg_msg_cmd cmd = WG_CMD_UNKNOWN;
        if (np == 4 && wg_msg_check_signature(zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1])) == WG_OK &&
            wg_msg_cmd_parse(zmq_msg_data(&parts[2]), zmq_msg_size(&parts[2]), &cmd) == WG_OK && cmd == WG_CMD_TOKEN) {
            wg_msg_token t;
            if (wg_msg_token_decode(zmq_msg_data(&parts[3]), zmq_msg_size(&parts[3]), &t) == WG_OK) {
                const char *d = t.text_delta ? t.text_delta : "";
                if (json) {
                    printf("{\"job_id\":\"%s\",\"seq\":%llu,\"token_id\":%u,\"final\":%s,\"text_delta\":\"", t.job_id,
                           (unsigned long long)t.seq, t.token_id, t.final ? "true" : "false");
                    for (const unsigned char *p = (const unsigned char *)d; *p; p++)
                        if (*p == '"' || *p == '\\') printf("\\%c", *p);
                        else if (*p < 0x20) printf("\\u%04x", *p);
                        else putchar(*p);
                    printf("\"%s%s%s}\n", t.finish_reason ? ",\"finish_reason\":\"" : "",
                           t.finish_reason ? t.finish_reason : "", t.finish_reason ? "\"" : "");
                } else if (all) {
                    if (strcmp(last, t.job_id) != 0) {
                        printf("%s[%s] ", last[0] ? "\n" : "", t.job_id);
                        snprintf(last, sizeof last, "%s", t.job_id);
                    }
                    fputs(d, stdout);
                    if (t.final) {
                        printf(" <%s>\n", t.finish_reason ? t.finish_reason : "end");
                        last[0] = '\0';
                    }
                } else {
                    fputs(d, stdout);
                    if (t.final) putchar('\n');
                }
                fflush(stdout);
                bool done = job_id && t.final;
                wg_msg_token_clear(&t);
                if (done) s_stop = 1;
            }
        }
        for (int i = 0; i < np; i++) zmq_msg_close(&parts[i]);
    }
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
