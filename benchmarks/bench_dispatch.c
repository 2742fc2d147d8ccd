/* bench-dispatch — fleet throughput figures, printed as JSON.
 *
 *   bench-dispatch dispatch [--jobs N] [--workers W] [--producers P] [--credits C]
 *                           [--real MODEL_PATH] [--redis URL] [--broker-bin PATH] [--worker-bin PATH]
 *       broker dispatch rate: waggle-broker, W worker processes and P producer
 *       processes on loopback; each job is one token. Default workers are
 *       minimal protocol peers that answer every JOB with DONE at once, so the
 *       figure is the broker's (and the wire's); --real runs waggle-worker
 *       processes on MODEL_PATH (max_tokens 1) instead.
 *   bench-dispatch publish [--events N] [--topics T]
 *       TOKEN events per second one XPUB (NODROP) socket publishes to a SUB
 *       in another process subscribed to everything.
 *   bench-dispatch share MODEL_PATH [--jobs N] [--tokens K]
 *       embedded broker + worker (inproc, one process) generating streamed
 *       jobs with a subscriber on every job: share of the engine loop spent
 *       on publishing (publish / (step + publish)); since the stream thread,
 *       that is queuing the events and handing them over, while encoding and
 *       sending run on the stream thread (stream_thread_busy_seconds).
 *
 * Subcommands `fakeworker` and `producer` are the child processes. */
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "broker/wg_broker.h"
#include "common/wg_log.h"
#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_stream.h"
#include "schemas/wg_msg_worker.h"
#include "schemas/wg_msg_zmq.h"
#include "worker/wg_worker.h"

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int s_port(void) {
    static int next;
    if (!next) next = 20000 + (int)(getpid() % 20000);
    return next++;
}

/* Start barrier: children write one byte to WG_BENCH_READY_FD once connected;
 * producers then wait for one byte on WG_BENCH_GO_FD. The clock starts when
 * every child is ready, so process start-up (dynamic loading of the CUDA
 * libraries the binary links takes ~0.35 s each on a 2-vCPU VM) is not
 * counted as broker time. */
static void s_signal_ready(void) {
    const char *e = getenv("WG_BENCH_READY_FD");
    if (e && write(atoi(e), "r", 1) != 1) _exit(3);
}

static void s_wait_go(void) {
    const char *e = getenv("WG_BENCH_GO_FD");
    char c;
    if (e && read(atoi(e), &c, 1) != 1) _exit(3);
}

/* ---- child: a worker that finishes every job at once ---- */
__attribute__((noreturn)) static void s_fakeworker(const char *be, int credits, const char *id) {
    void *ctx = zmq_ctx_new(), *d = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 0;
    zmq_setsockopt(d, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(d, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_connect(d, be);
    char *models[] = {"bench"};
    wg_msg_ready r = {.worker_id = (char *)id, .credits = (uint32_t)credits, .models = models, .n_models = 1};
    wg_msg_buf b = {0};
    wg_msg_ready_encode(&r, &b);
    wg_msg_send(d, NULL, 0, WG_CMD_READY, &b, 0);
    wg_msg_buf_free(&b);
    s_signal_ready();
    double last = s_now();
    uint32_t tok = 1;
    for (;;) {
        zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 200);
        wg_msg_in in;
        while (wg_msg_recv(d, false, &in, ZMQ_DONTWAIT) != WG_ERR_AGAIN) {
            if (in.cmd == WG_CMD_JOB) {
                wg_msg_job j;
                if (wg_msg_job_decode(in.body, in.body_len, &j) == WG_OK) {
                    wg_msg_result res = {.job_id = j.job_id, .custom_id = j.custom_id, .text = "x", .token_ids = &tok,
                                         .n_tokens = 1, .finish_reason = "length", .prompt_tokens = 4,
                                         .completion_tokens = 1};
                    wg_msg_buf ob = {0};
                    wg_msg_result_encode(WG_CMD_DONE, &res, &ob);
                    wg_msg_send(d, NULL, 0, WG_CMD_DONE, &ob, 0);
                    wg_msg_buf_free(&ob);
                    wg_msg_job_clear(&j);
                    last = s_now();
                }
            } else if (in.cmd == WG_CMD_DISCONNECT) {
                wg_msg_ready_encode(&r, &b);
                wg_msg_send(d, NULL, 0, WG_CMD_READY, &b, 0);
                wg_msg_buf_free(&b);
            }
            wg_msg_in_clear(&in);
        }
        wg_msg_in_clear(&in);
        if (s_now() - last > 0.25) {
            wg_msg_empty_encode(&b);
            wg_msg_send(d, NULL, 0, WG_CMD_HEARTBEAT, &b, 0);
            wg_msg_buf_free(&b);
            last = s_now();
        }
    }
}

/* ---- child: submit n one-token jobs, wait for every RESULT push ---- */
static int s_producer(const char *fe, long n, const char *model) {
    void *ctx = zmq_ctx_new(), *d = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 0;
    zmq_setsockopt(d, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(d, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_connect(d, fe);
    const uint32_t batch = 1024;
    long sent = 0, accepted = 0, results = 0, window = 20000;
    uint64_t req = 1;
    s_signal_ready();
    s_wait_go();
    double t0 = s_now(), deadline = t0 + 300;
    while (results < n && s_now() < deadline) {
        while (sent < n && sent - results < window) {
            uint32_t k = (uint32_t)(n - sent < batch ? n - sent : batch);
            wg_msg_submit sm = {.req = req++, .n_jobs = k};
            sm.jobs = calloc(k, sizeof *sm.jobs);
            for (uint32_t i = 0; i < k; i++) {
                wg_msg_job_init(&sm.jobs[i]);
                sm.jobs[i].model = (char *)model;
                sm.jobs[i].prompt = "Once upon a time";
                sm.jobs[i].max_tokens = 1;
                sm.jobs[i].sampling.temperature = 0;
            }
            wg_msg_buf b = {0};
            wg_msg_submit_encode(&sm, &b);
            free(sm.jobs);
            wg_msg_send(d, NULL, 0, WG_CMD_SUBMIT, &b, 0);
            wg_msg_buf_free(&b);
            sent += k;
        }
        zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
        zmq_poll(&it, 1, 100);
        wg_msg_in in;
        while (wg_msg_recv(d, false, &in, ZMQ_DONTWAIT) != WG_ERR_AGAIN) {
            if (in.cmd == WG_CMD_RESULT) results++;
            else if (in.cmd == WG_CMD_SUBMITTED) {
                wg_msg_submitted s;
                if (wg_msg_submitted_decode(in.body, in.body_len, &s) == WG_OK) {
                    for (uint32_t i = 0; i < s.n_items; i++) {
                        if (s.items[i].accepted) accepted++;
                        else sent--; /* rejected (full): submit again */
                    }
                    wg_msg_submitted_clear(&s);
                }
            }
            wg_msg_in_clear(&in);
        }
        wg_msg_in_clear(&in);
    }
    printf("{\"jobs\": %ld, \"accepted\": %ld, \"seconds\": %.4f}\n", results, accepted, s_now() - t0);
    fflush(stdout);
    _exit(results == n ? 0 : 1);
}

static pid_t s_spawn(char *const argv[], int out_fd) {
    pid_t p = fork();
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (out_fd >= 0) dup2(out_fd, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    return p;
}

static int s_ready[2], s_go[2]; /* start barrier pipes (see s_signal_ready) */

static int s_dispatch(int argc, char **argv, const char *self) {
    long jobs = 100000;
    int workers = 4, producers = 2, credits = 256;
    const char *real = NULL, *redis = NULL, *broker_bin = WG_BINARY_DIR "/broker/waggle-broker",
               *worker_bin = WG_BINARY_DIR "/worker/waggle-worker";
    static const struct option o[] = {{"jobs", 1, 0, 'j'},      {"workers", 1, 0, 'w'},   {"producers", 1, 0, 'p'},
                                      {"credits", 1, 0, 'c'},   {"real", 1, 0, 'r'},      {"redis", 1, 0, 'R'},
                                      {"broker-bin", 1, 0, 'B'}, {"worker-bin", 1, 0, 'W'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        switch (c) {
        case 'j': jobs = atol(optarg); break;
        case 'w': workers = atoi(optarg); break;
        case 'p': producers = atoi(optarg); break;
        case 'c': credits = atoi(optarg); break;
        case 'r': real = optarg; break;
        case 'R': redis = optarg; break;
        case 'B': broker_bin = optarg; break;
        case 'W': worker_bin = optarg; break;
        default: return 2;
        }
    }
    if (pipe(s_ready) || pipe(s_go)) return 1;
    char fdbuf[16];
    snprintf(fdbuf, sizeof fdbuf, "%d", s_ready[1]);
    setenv("WG_BENCH_READY_FD", fdbuf, 1);
    snprintf(fdbuf, sizeof fdbuf, "%d", s_go[0]);
    setenv("WG_BENCH_GO_FD", fdbuf, 1);
    char fe[64], be[64];
    snprintf(fe, sizeof fe, "tcp://127.0.0.1:%d", s_port());
    snprintf(be, sizeof be, "tcp://127.0.0.1:%d", s_port());
    char *bargv[16] = {(char *)broker_bin, "--frontend", fe, "--backend", be, "--queue-max-jobs", "10000000",
                       "--queue-max-tokens", "1000000000000"};
    int bn = 9;
    if (redis) bargv[bn++] = "--redis", bargv[bn++] = (char *)redis;
    bargv[bn] = NULL;
    setenv("WAGGLE_LOG", "error", 1);
    pid_t bp = s_spawn(bargv, -1);
    usleep(300000);
    pid_t wp[64];
    char cred[16], ids[64][32], model[4200];
    snprintf(cred, sizeof cred, "%d", credits);
    if (real) snprintf(model, sizeof model, "stories=%s", real);
    for (int i = 0; i < workers && i < 64; i++) {
        snprintf(ids[i], sizeof ids[i], "bench-w%d", i);
        if (real) {
            char *a[] = {(char *)worker_bin, "--broker", be, "--model", model, "--max-seqs", cred, "--id", ids[i],
                         "--log-level", "error", NULL};
            wp[i] = s_spawn(a, -1);
        } else {
            char *a[] = {(char *)self, "fakeworker", be, cred, ids[i], NULL};
            wp[i] = s_spawn(a, -1);
        }
    }
    usleep(real ? 800000 : 300000);
    int pipefd[2];
    if (pipe(pipefd)) return 1;
    pid_t pp[64];
    char per[32];
    snprintf(per, sizeof per, "%ld", jobs / producers);
    for (int i = 0; i < producers && i < 64; i++) {
        char *a[] = {(char *)self, "producer", fe, per, real ? "stories" : "bench", NULL};
        pp[i] = s_spawn(a, pipefd[1]);
    }
    close(pipefd[1]);
    /* every fake worker and producer connected (real workers: the sleep above) */
    int ready_n = producers + (real ? 0 : workers);
    for (int got = 0; got < ready_n;) {
        struct pollfd pf = {s_ready[0], POLLIN, 0};
        if (poll(&pf, 1, 60000) <= 0) {
            fprintf(stderr, "bench-dispatch: %d of %d children ready after 60 s\n", got, ready_n);
            return 1;
        }
        char rb[64];
        ssize_t r = read(s_ready[0], rb, sizeof rb);
        if (r <= 0) return 1;
        got += (int)r;
    }
    double t0 = s_now();
    for (int i = 0; i < producers; i++)
        if (write(s_go[1], "g", 1) != 1) return 1;
    int ok = 1;
    for (int i = 0; i < producers; i++) {
        int st;
        waitpid(pp[i], &st, 0);
        ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    double el = s_now() - t0;
    char buf[4096];
    ssize_t n = read(pipefd[0], buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = '\0';
    for (int i = 0; i < workers; i++) kill(wp[i], SIGKILL), waitpid(wp[i], NULL, 0);
    kill(bp, SIGKILL);
    waitpid(bp, NULL, 0);
    long total = (jobs / producers) * producers;
    printf("{\"bench\": \"dispatch\", \"workers\": \"%s\", \"n_workers\": %d, \"n_producers\": %d, \"credits\": %d, "
           "\"store\": \"%s\", \"jobs\": %ld, \"ok\": %s, \"seconds\": %.3f, \"jobs_per_s\": %.0f, "
           "\"target_jobs_per_s\": 50000}\n",
           real ? "waggle-worker" : "protocol-minimal", workers, producers, credits, redis ? "redis" : "memory", total,
           ok ? "true" : "false", el, (double)total / el);
    return ok ? 0 : 1;
}

/* ---- TOKEN publish rate ---- */
static int s_publish(int argc, char **argv) {
    long events = 1000000;
    int topics = 64;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--events")) events = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--topics")) topics = atoi(argv[i + 1]);
    }
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", s_port());
    pid_t child = fork();
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_SUB);
        zmq_setsockopt(s, ZMQ_SUBSCRIBE, "t/", 2);
        zmq_connect(s, ep);
        zmq_msg_t m;
        zmq_msg_init(&m);
        for (;;) zmq_msg_recv(&m, s, 0);
    }
    void *ctx = zmq_ctx_new(), *x = zmq_socket(ctx, ZMQ_XPUB);
    int one = 1;
    zmq_setsockopt(x, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_bind(x, ep);
    zmq_msg_t sub;
    zmq_msg_init(&sub);
    zmq_msg_recv(&sub, x, 0); /* the subscription: the consumer is there */
    char ids[256][33], tp[256][40];
    for (int t = 0; t < topics && t < 256; t++) {
        snprintf(ids[t], sizeof ids[t], "%032x", t * 2654435761u);
        wg_msg_token_topic(ids[t], tp[t], sizeof tp[t]);
    }
    long eagain = 0;
    double t0 = s_now();
    for (long i = 0; i < events; i++) {
        int t = (int)(i % topics);
        wg_msg_token ev = {.job_id = ids[t], .seq = (uint64_t)(i / topics), .token_id = 1234, .text_delta = " word",
                           .attempt = 1};
        wg_msg_buf b = {0};
        wg_msg_token_encode(&ev, &b);
        while (wg_msg_publish(x, tp[t], WG_CMD_TOKEN, &b, ZMQ_DONTWAIT) == WG_ERR_AGAIN) eagain++;
        wg_msg_buf_free(&b);
    }
    double el = s_now() - t0;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    printf("{\"bench\": \"publish\", \"events\": %ld, \"topics\": %d, \"seconds\": %.3f, \"events_per_s\": %.0f, "
           "\"eagain_retries\": %ld}\n",
           events, topics, el, (double)events / el, eagain);
    return 0;
}

/* ---- publish share of the engine loop (embedded broker + worker) ---- */
typedef struct {
    void *obj;
    int kind;
} s_thr;

static void *s_thr_run(void *a) {
    s_thr *t = a;
    if (t->kind == 0) wg_broker_run(t->obj);
    else wg_worker_run(t->obj);
    return NULL;
}

static int s_share(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *model = argv[1];
    long jobs = 64, tokens = 200;
    for (int i = 2; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--jobs")) jobs = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--tokens")) tokens = atol(argv[i + 1]);
    }
    wg_log_set_level(WG_LOG_ERROR);
    void *ctx = zmq_ctx_new();
    wg_broker_cfg bc = {.frontend = "inproc://fe", .backend = "inproc://be", .zmq_ctx = ctx};
    wg_broker_t *b = wg_broker_new(&bc);
    if (!b) return fprintf(stderr, "broker: %s\n", wg_errmsg()), 1;
    wg_worker_model wm = {.name = "stories", .path = model};
    wg_worker_cfg wc = {.broker = "inproc://be", .stream = "inproc://stream", .zmq_ctx = ctx, .models = &wm,
                        .n_models = 1, .max_seqs = (int32_t)jobs, .stream_hwm = 100000};
    wg_worker_t *w = wg_worker_new(&wc);
    if (!w) return fprintf(stderr, "worker: %s\n", wg_errmsg()), 1;
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int hwm = 0;
    zmq_setsockopt(sub, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "t/", 2);
    zmq_connect(sub, "inproc://stream");
    s_thr tb = {b, 0}, tw = {w, 1};
    pthread_t pb, pw;
    pthread_create(&pb, NULL, s_thr_run, &tb);
    pthread_create(&pw, NULL, s_thr_run, &tw);
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    zmq_connect(d, "inproc://fe");
    wg_msg_submit sm = {.req = 1, .n_jobs = (uint32_t)jobs};
    sm.jobs = calloc((size_t)jobs, sizeof *sm.jobs);
    for (long i = 0; i < jobs; i++) {
        wg_msg_job_init(&sm.jobs[i]);
        sm.jobs[i].model = "stories";
        sm.jobs[i].prompt = "Once upon a time";
        sm.jobs[i].max_tokens = (uint32_t)tokens;
        sm.jobs[i].stream = true;
        sm.jobs[i].sampling.temperature = 0;
    }
    wg_msg_buf mb = {0};
    wg_msg_submit_encode(&sm, &mb);
    free(sm.jobs);
    usleep(200000);
    double t0 = s_now();
    wg_msg_send(d, NULL, 0, WG_CMD_SUBMIT, &mb, 0);
    wg_msg_buf_free(&mb);
    long results = 0, events = 0;
    while (results < jobs && s_now() - t0 < 120) {
        zmq_pollitem_t it[2] = {{d, 0, ZMQ_POLLIN, 0}, {sub, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, 2, 100);
        wg_msg_in in;
        while (wg_msg_recv(d, false, &in, ZMQ_DONTWAIT) != WG_ERR_AGAIN) {
            if (in.cmd == WG_CMD_RESULT) results++;
            wg_msg_in_clear(&in);
        }
        wg_msg_in_clear(&in);
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, sub, ZMQ_DONTWAIT) >= 0)
            if (!zmq_msg_more(&m)) events++;
        zmq_msg_close(&m);
    }
    double el = s_now() - t0;
    wg_worker_stats st;
    wg_worker_get_stats(w, &st);
    wg_worker_stop(w);
    wg_broker_stop(b);
    pthread_join(pw, NULL);
    pthread_join(pb, NULL);
    zmq_close(d);
    zmq_close(sub);
    wg_worker_destroy(&w);
    wg_broker_destroy(&b);
    zmq_ctx_term(ctx);
    printf("{\"bench\": \"publish_share\", \"jobs\": %ld, \"max_tokens\": %ld, \"results\": %ld, \"tokens\": %llu, "
           "\"events_received\": %ld, \"events_published\": %llu, \"events_held\": %llu, \"seconds\": %.3f, "
           "\"step_seconds\": %.4f, \"publish_seconds\": %.4f, \"publish_share\": %.4f, \"target_share\": 0.02, "
           "\"stream_thread_busy_seconds\": %.4f, \"stream_thread_us_per_event\": %.2f}\n",
           jobs, tokens, results, (unsigned long long)st.tokens, events, (unsigned long long)st.events_published,
           (unsigned long long)st.events_held, el, st.step_seconds, st.publish_seconds,
           st.publish_seconds / (st.step_seconds + st.publish_seconds), st.stream_busy_seconds,
           st.events_published ? st.stream_busy_seconds * 1e6 / (double)st.events_published : 0.0);
    return results == jobs ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench-dispatch dispatch|publish|share ... (see the file header)\n");
        return 2;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    if (!strcmp(argv[1], "fakeworker") && argc >= 5) s_fakeworker(argv[2], atoi(argv[3]), argv[4]);
    if (!strcmp(argv[1], "producer") && argc >= 5) return s_producer(argv[2], atol(argv[3]), argv[4]);
    if (!strcmp(argv[1], "dispatch")) return s_dispatch(argc - 1, argv + 1, self);
    if (!strcmp(argv[1], "publish")) return s_publish(argc - 1, argv + 1);
    if (!strcmp(argv[1], "share")) return s_share(argc - 1, argv + 1);
    fprintf(stderr, "bench-dispatch: unknown mode '%s'\n", argv[1]);
    return 2;
}
