/* waggle top — a terminal view of the fleet, refreshed in place: broker
 * liveness, queue depth and running jobs per model, and per worker its
 * credits, in-flight jobs, sequences, tokens/s, KV usage, memory and models.
 *
 *   waggle top --metrics-http HOST:PORT [--broker EP] [--interval S] [--count N] [--once]
 *
 * Design: WGL/1's STATUS request is per job and the protocol has no request
 * that lists workers, so the fleet figures come from the broker's Prometheus
 * text (GET /metrics, the same numbers Grafana shows); --broker adds a PING
 * round trip. Rates (jobs/s) are counter deltas between two refreshes, so the
 * first frame and --once show totals only. On a terminal each frame redraws
 * the screen; otherwise (or with --once) frames are plain text, one after the
 * other, so the output can be logged or grepped. */
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_zmq.h"
#include "waggle.h"

#define S_MAX_ROWS 512 /* workers or models shown at most */

typedef struct {
    char id[129];          /* worker id (label `worker`) */
    double credits;        /* waggle_worker_credits */
    double inflight;       /* waggle_worker_inflight */
    double tok_s;          /* waggle_worker_tokens_per_second, NAN until the first METRICS */
    double running;        /* waggle_worker_running_sequences */
    double waiting;        /* waggle_worker_waiting_sequences */
    double kv_usage;       /* waggle_worker_kv_usage, 0..1 */
    double mem_used;       /* waggle_worker_memory_used_bytes */
    double mem_total;      /* waggle_worker_memory_total_bytes */
    char models[256];      /* resident models, comma-separated (waggle_worker_model_resident) */
} s_worker_row;

typedef struct {
    char name[257];        /* model (label `model`) */
    double queued;         /* waggle_broker_queue_jobs */
    double q_tokens;       /* waggle_broker_queue_prompt_tokens */
    double running;        /* waggle_broker_running_jobs */
} s_model_row;

typedef struct {
    s_worker_row *w;       /* (n_w,) workers, sorted by id */
    int n_w;               /* count */
    s_model_row *m;        /* (n_m,) models, sorted by name */
    int n_m;               /* count */
    double n_workers;      /* waggle_broker_workers */
    double store_up;       /* waggle_broker_store_up (NAN if absent) */
    double done;           /* waggle_broker_jobs_done_total */
    double failed;         /* waggle_broker_jobs_failed_total */
    double accepted;       /* waggle_broker_jobs_accepted_total */
    double rejected;       /* waggle_broker_jobs_rejected_total */
    double requeued;       /* waggle_broker_jobs_requeued_total */
    double t;              /* monotonic seconds when sampled */
} s_sample;

static volatile sig_atomic_t s_quit;
static void s_on_sig(int sig) {
    (void)sig;
    s_quit = 1;
}

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* GET /metrics from HOST:PORT (2 s connect/read timeouts); the body as a
 * malloc'd string, or NULL. */
static char *s_http_get(const char *hostport) {
    char host[256];
    snprintf(host, sizeof host, "%s", hostport);
    char *colon = strrchr(host, ':');
    if (!colon) return NULL;
    *colon = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) return NULL;
    int fd = socket(ai->ai_family, ai->ai_socktype, 0);
    struct timeval tv = {2, 0};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return NULL;
    }
    freeaddrinfo(ai);
    char req[512];
    int rl = snprintf(req, sizeof req, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", hostport);
    if (rl < 0 || rl >= (int)sizeof req || write(fd, req, (size_t)rl) != rl) {
        close(fd);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (buf && (n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (len + 1 == cap) {
            char *g = cap < (64u << 20) ? realloc(buf, cap * 2) : NULL;
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
    }
    close(fd);
    if (!buf) return NULL;
    buf[len] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !body || strncmp(buf + 9, "200", 3) != 0) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* Value of label `key` in a `{a="x",b="y"}` block into out (empty if absent). */
static void s_label(const char *labels, size_t len, const char *key, char *out, size_t cap) {
    out[0] = '\0';
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 2 < len; i++) {
        if ((i == 0 || labels[i - 1] == '{' || labels[i - 1] == ',') && strncmp(labels + i, key, kl) == 0 &&
            labels[i + kl] == '=' && labels[i + kl + 1] == '"') {
            const char *v = labels + i + kl + 2;
            size_t o = 0;
            while (v < labels + len && *v != '"' && o + 1 < cap) {
                if (*v == '\\' && v + 1 < labels + len) v++;
                out[o++] = *v++;
            }
            out[o] = '\0';
            return;
        }
    }
}

static s_worker_row *s_worker_of(s_sample *s, const char *id) {
    for (int i = 0; i < s->n_w; i++)
        if (strcmp(s->w[i].id, id) == 0) return &s->w[i];
    if (s->n_w == S_MAX_ROWS) return NULL;
    s_worker_row *w = &s->w[s->n_w++];
    memset(w, 0, sizeof *w);
    snprintf(w->id, sizeof w->id, "%s", id);
    w->tok_s = NAN;
    w->kv_usage = NAN;
    return w;
}

static s_model_row *s_model_of(s_sample *s, const char *name) {
    for (int i = 0; i < s->n_m; i++)
        if (strcmp(s->m[i].name, name) == 0) return &s->m[i];
    if (s->n_m == S_MAX_ROWS) return NULL;
    s_model_row *m = &s->m[s->n_m++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", name);
    return m;
}

static int s_cmp_worker(const void *a, const void *b) {
    return strcmp(((const s_worker_row *)a)->id, ((const s_worker_row *)b)->id);
}
static int s_cmp_model(const void *a, const void *b) {
    return strcmp(((const s_model_row *)a)->name, ((const s_model_row *)b)->name);
}

/* Parse Prometheus text into s (whose w/m arrays hold S_MAX_ROWS rows).
 * Unknown families and malformed lines are skipped: the exporter may grow. */
static void s_parse(const char *text, s_sample *s) {
    s->n_w = s->n_m = 0;
    s->n_workers = s->done = s->failed = s->accepted = s->rejected = s->requeued = 0;
    s->store_up = NAN;
    for (const char *p = text; p && *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *line = p;
        p = e ? e + 1 : NULL;
        if (len == 0 || line[0] == '#') continue;
        size_t nl = strcspn(line, "{ ");
        if (nl >= len || nl > 64) continue;
        char name[65];
        memcpy(name, line, nl);
        name[nl] = '\0';
        const char *lab = line + nl;
        size_t lablen = 0;
        if (*lab == '{') {
            const char *close = memchr(lab, '}', len - nl);
            if (!close) continue;
            lablen = (size_t)(close - lab) + 1;
        }
        char num[64];
        size_t rest = len - nl - lablen;
        if (rest == 0 || rest >= sizeof num) continue;
        memcpy(num, lab + lablen, rest);
        num[rest] = '\0';
        char *end;
        double v = strtod(num, &end);
        if (end == num) continue;
        char worker[129], model[257];
        s_label(lab, lablen, "worker", worker, sizeof worker);
        s_label(lab, lablen, "model", model, sizeof model);
        if (strncmp(name, "waggle_worker_", 14) == 0 && worker[0]) {
            s_worker_row *w = s_worker_of(s, worker);
            if (!w) continue;
            const char *f = name + 14;
            if (strcmp(f, "credits") == 0) w->credits = v;
            else if (strcmp(f, "inflight") == 0) w->inflight = v;
            else if (strcmp(f, "tokens_per_second") == 0) w->tok_s = v;
            else if (strcmp(f, "running_sequences") == 0) w->running = v;
            else if (strcmp(f, "waiting_sequences") == 0) w->waiting = v;
            else if (strcmp(f, "kv_usage") == 0) w->kv_usage = v;
            else if (strcmp(f, "memory_used_bytes") == 0) w->mem_used = v;
            else if (strcmp(f, "memory_total_bytes") == 0) w->mem_total = v;
            else if (strcmp(f, "model_resident") == 0 && model[0] && v > 0) {
                size_t ml = strlen(w->models);
                snprintf(w->models + ml, sizeof w->models - ml, "%s%s", ml ? "," : "", model);
            }
        } else if (strncmp(name, "waggle_broker_", 14) == 0) {
            const char *f = name + 14;
            if (model[0] && (strcmp(f, "queue_jobs") == 0 || strcmp(f, "queue_prompt_tokens") == 0 ||
                             strcmp(f, "running_jobs") == 0)) {
                s_model_row *m = s_model_of(s, model);
                if (!m) continue;
                if (f[0] == 'r') m->running = v;
                else if (strcmp(f, "queue_jobs") == 0) m->queued = v;
                else m->q_tokens = v;
            } else if (strcmp(f, "workers") == 0) s->n_workers = v;
            else if (strcmp(f, "store_up") == 0) s->store_up = v;
            else if (strcmp(f, "jobs_done_total") == 0) s->done = v;
            else if (strcmp(f, "jobs_failed_total") == 0) s->failed = v;
            else if (strcmp(f, "jobs_accepted_total") == 0) s->accepted = v;
            else if (strcmp(f, "jobs_rejected_total") == 0) s->rejected = v;
            else if (strcmp(f, "jobs_requeued_total") == 0) s->requeued = v;
        }
    }
    qsort(s->w, (size_t)s->n_w, sizeof *s->w, s_cmp_worker);
    qsort(s->m, (size_t)s->n_m, sizeof *s->m, s_cmp_model);
}

/* Bytes as a short human figure ("512M", "15.6G"). */
static const char *s_bytes(double b, char *out, size_t cap) {
    static const char u[] = "BKMGTP";
    int i = 0;
    while (b >= 1024 && i < 5) b /= 1024, i++;
    snprintf(out, cap, i == 0 ? "%.0f%c" : (b < 10 ? "%.1f%c" : "%.0f%c"), b, u[i]);
    return out;
}

/* PING the broker; round-trip ms, or -1 after 1 s without a matching PONG. */
static double s_ping(void *d, uint64_t req) {
    wg_msg_req q = {.req = req};
    wg_msg_buf b = {0};
    if (wg_msg_req_encode(WG_CMD_PING, &q, &b) || wg_msg_send(d, NULL, 0, WG_CMD_PING, &b, ZMQ_DONTWAIT)) {
        wg_msg_buf_free(&b);
        return -1;
    }
    wg_msg_buf_free(&b);
    double t0 = s_now(), end = t0 + 1;
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    while (s_now() < end && !s_quit) {
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        wg_msg_in in;
        if (wg_msg_recv(d, false, &in, 0) == WG_OK && in.cmd == WG_CMD_PONG) {
            wg_msg_req r = {0};
            bool match = wg_msg_req_decode(WG_CMD_PONG, in.body, in.body_len, &r) == WG_OK && r.req == req;
            wg_msg_req_clear(&r);
            wg_msg_in_clear(&in);
            if (match) return (s_now() - t0) * 1000;
            continue; /* a late PONG of an earlier frame */
        }
        wg_msg_in_clear(&in);
    }
    return -1;
}

/* One frame. prev: the previous sample for rates, or NULL. */
static void s_render(FILE *o, const char *metrics, const char *broker, double ping_ms, bool have_metrics,
                     const s_sample *s, const s_sample *prev) {
    char ts[32];
    time_t now = time(NULL);
    strftime(ts, sizeof ts, "%H:%M:%S", localtime(&now));
    fprintf(o, "waggle top  %s  metrics %s", ts, metrics);
    if (broker) {
        if (ping_ms >= 0) fprintf(o, "  broker %s up (%.1f ms)", broker, ping_ms);
        else fprintf(o, "  broker %s NOT ANSWERING", broker);
    }
    fputc('\n', o);
    if (!have_metrics) {
        fprintf(o, "metrics %s: unreachable\n", metrics);
        return;
    }
    double queued = 0, running = 0, tok = 0;
    for (int i = 0; i < s->n_m; i++) queued += s->m[i].queued, running += s->m[i].running;
    for (int i = 0; i < s->n_w; i++)
        if (!isnan(s->w[i].tok_s)) tok += s->w[i].tok_s;
    fprintf(o, "workers: %.0f  queued: %.0f  running: %.0f  tokens/s: %.1f  store: %s\n", s->n_workers, queued,
            running, tok, isnan(s->store_up) ? "?" : s->store_up > 0 ? "up" : "DOWN");
    fprintf(o, "jobs: accepted %.0f  done %.0f  failed %.0f  rejected %.0f  requeued %.0f", s->accepted, s->done,
            s->failed, s->rejected, s->requeued);
    if (prev && s->t > prev->t) {
        double dt = s->t - prev->t;
        fprintf(o, "  |  %.1f done/s  %.1f accepted/s", (s->done - prev->done) / dt, (s->accepted - prev->accepted) / dt);
    }
    fprintf(o, "\n\n%-24s %8s %10s %8s\n", "MODEL", "QUEUED", "Q_TOKENS", "RUNNING");
    for (int i = 0; i < s->n_m; i++)
        fprintf(o, "%-24s %8.0f %10.0f %8.0f\n", s->m[i].name, s->m[i].queued, s->m[i].q_tokens, s->m[i].running);
    if (s->n_m == 0) fprintf(o, "(no model has had a job yet)\n");
    fprintf(o, "\n%-24s %7s %8s %4s %4s %8s %5s %13s  %s\n", "WORKER", "CREDITS", "INFLIGHT", "RUN", "WAIT", "TOK/S",
            "KV%", "MEM", "MODELS");
    for (int i = 0; i < s->n_w; i++) {
        const s_worker_row *w = &s->w[i];
        char a[16], b[16], mem[40] = "-", tk[16] = "-", kv[16] = "-";
        if (w->mem_total > 0)
            snprintf(mem, sizeof mem, "%s/%s", s_bytes(w->mem_used, a, sizeof a), s_bytes(w->mem_total, b, sizeof b));
        if (!isnan(w->tok_s)) snprintf(tk, sizeof tk, "%.1f", w->tok_s);
        if (!isnan(w->kv_usage)) snprintf(kv, sizeof kv, "%.1f", w->kv_usage * 100);
        fprintf(o, "%-24s %7.0f %8.0f %4.0f %4.0f %8s %5s %13s  %s\n", w->id, w->credits, w->inflight, w->running,
                w->waiting, tk, kv, mem, w->models[0] ? w->models : "-");
    }
    if (s->n_w == 0) fprintf(o, "(no live worker)\n");
}

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle top --metrics-http HOST:PORT [--broker EP] [--interval S] [--count N] [--once]\n"
            "  --metrics-http HOST:PORT  the broker's /metrics (waggle-broker --metrics-http): the fleet figures\n"
            "  --broker EP               broker frontend: also show whether it answers PING, and its round trip\n"
            "  --interval S              seconds between refreshes (default 2; fractions allowed)\n"
            "  --count N                 stop after N frames (default: until Ctrl-C)\n"
            "  --once                    print one snapshot and exit (exit 1 if the metrics are unreachable)\n"
            "On a terminal the view is redrawn in place (Ctrl-C quits); otherwise frames are printed\n"
            "one after another as plain text.\n");
}

int wg_cmd_top(int argc, char **argv) {
    static const struct option opts[] = {{"broker", required_argument, 0, 'b'},
                                         {"metrics-http", required_argument, 0, 'm'},
                                         {"interval", required_argument, 0, 'i'},
                                         {"once", no_argument, 0, '1'},
                                         {"count", required_argument, 0, 'n'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *broker = NULL, *metrics = NULL;
    double interval = 2;
    bool once = false;
    long count = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:m:i:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': broker = optarg; break;
        case 'm': metrics = optarg; break;
        case 'i': {
            char *e;
            interval = strtod(optarg, &e);
            if (*e || !(interval >= 0.1 && interval <= 3600)) {
                fprintf(stderr, "waggle top: --interval must be 0.1..3600 seconds, got '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case '1': once = true; break;
        case 'n': {
            char *e;
            count = strtol(optarg, &e, 10);
            if (*e || count < 1) {
                fprintf(stderr, "waggle top: --count must be a positive number of frames, got '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!metrics || optind != argc) {
        fprintf(stderr, "waggle top: --metrics-http HOST:PORT is required (WGL/1 has no fleet listing; the "
                        "figures come from the broker's /metrics)\n");
        s_usage(stderr);
        return 2;
    }
    bool tty = !once && isatty(STDOUT_FILENO);
    s_sample cur = {0}, prev = {0};
    cur.w = calloc(S_MAX_ROWS, sizeof *cur.w);
    cur.m = calloc(S_MAX_ROWS, sizeof *cur.m);
    prev.w = calloc(S_MAX_ROWS, sizeof *prev.w);
    prev.m = calloc(S_MAX_ROWS, sizeof *prev.m);
    void *ctx = NULL, *d = NULL;
    int rc = 0;
    if (!cur.w || !cur.m || !prev.w || !prev.m) {
        fprintf(stderr, "waggle top: out of memory\n");
        rc = 1;
        goto out;
    }
    if (broker) {
        ctx = zmq_ctx_new();
        d = zmq_socket(ctx, ZMQ_DEALER);
        int zero = 0;
        zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
        if (zmq_connect(d, broker) != 0) {
            fprintf(stderr, "waggle top: cannot connect to --broker '%s': %s\n", broker, zmq_strerror(zmq_errno()));
            rc = 2;
            goto out;
        }
    }
    struct sigaction sa = {0};
    sa.sa_handler = s_on_sig;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (tty) fputs("\033[?25l", stdout); /* hide the cursor while redrawing */
    bool have_prev = false;
    for (uint64_t frame = 1; !s_quit; frame++) {
        double ping = d ? s_ping(d, frame) : -1;
        char *text = s_http_get(metrics);
        if (text) {
            s_parse(text, &cur);
            cur.t = s_now();
            free(text);
        }
        if (tty) fputs("\033[H\033[2J", stdout);
        else if (frame > 1) fputc('\n', stdout);
        s_render(stdout, metrics, broker, ping, text != NULL, &cur, have_prev ? &prev : NULL);
        fflush(stdout);
        if (once) {
            rc = text && (!broker || ping >= 0) ? 0 : 1;
            break;
        }
        if (text) {
            s_sample t = prev;
            prev = cur;
            cur = t;
            have_prev = true;
        }
        if (count && frame >= (uint64_t)count) break;
        for (double end = s_now() + interval; !s_quit && s_now() < end;) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (tty) fputs("\033[?25h\n", stdout);
out:
    if (d) zmq_close(d);
    if (ctx) zmq_ctx_term(ctx);
    free(cur.w), free(cur.m), free(prev.w), free(prev.m);
    return rc;
}
