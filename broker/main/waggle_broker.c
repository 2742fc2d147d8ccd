/* waggle-broker — command-line front of wg_broker: parses flags, loads CURVE
 * keys, runs the broker until SIGINT/SIGTERM. Only main() decides exit codes. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/wg_broker.h"
#include "common/wg_log.h"
#include "schemas/wg_msg_keys.h"

static wg_broker_t *s_broker;

static void s_on_signal(int sig) {
    (void)sig;
    if (s_broker) wg_broker_stop(s_broker);
}

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle-broker --frontend EP --backend EP [--redis redis://[user:pass@]HOST:PORT[/db]]\n"
            "                     [--metrics-http HOST:PORT] [options]\n"
            "  --frontend EP              producer endpoint to bind (e.g. tcp://127.0.0.1:7700)\n"
            "  --backend EP               worker endpoint to bind (e.g. tcp://127.0.0.1:7701)\n"
            "  --redis URL                durable Redis Streams store (default: in-memory, not durable)\n"
            "  --redis-user USER          Redis ACL user (overrides the URL)\n"
            "  --require-registered       reject SUBMIT for a model neither in the Redis model registry\n"
            "                             (waggle models add) nor served by a live worker\n"
            "  --starve-ms MS             age after which a queued job may make a busy worker switch models (10000)\n"
            "  --redis-password PASS      Redis password (overrides the URL; or env WAGGLE_REDIS_PASSWORD)\n"
            "  --name NAME                consumer name in the Redis group (default broker)\n"
            "  --metrics-http HOST:PORT   serve Prometheus text on GET /metrics\n"
            "  --max-attempts N           failed attempts before a job fails (default 3)\n"
            "  --queue-max-jobs N         waiting jobs per model (default 10000)\n"
            "  --queue-max-tokens N       waiting estimated prompt tokens per model (default 8000000)\n"
            "  --heartbeat-ms N           heartbeat interval (default 1000)\n"
            "  --liveness N               missed heartbeats before a worker is dead, 3..5 (default 3)\n"
            "  --result-ttl S             seconds results are kept (default 86400)\n"
            "  --curve-secret-key-file F  broker CURVE secret key (Z85, 40 chars) enables CURVE\n"
            "  --curve-allow-file F       allowed client public keys, one Z85 key per line (40 chars;\n"
            "                             '#' lines of another length are comments)\n"
            "  --help                     this text\n");
}

static int s_num(const char *flag, const char *v, unsigned long long *out) {
    char *e;
    *out = strtoull(v, &e, 10);
    if (!*v || *e || v[0] == '-') {
        fprintf(stderr, "waggle-broker: %s needs a non-negative integer, got '%s'\n", flag, v);
        return -1;
    }
    return 0;
}

/* Key files (PROTOCOL.md §10.1): a line of exactly 40 Z85 chars is a key even
 * when it starts with '#' or holds '='; other '#' lines are comments; zcert
 * `name = "KEY"` lines are accepted. */
static int s_read_keys(const char *path, char ***out, unsigned *n) {
    uint32_t got = 0;
    if (wg_msg_keys_read(path, out, &got) != WG_OK) {
        fprintf(stderr, "waggle-broker: %s\n", wg_errmsg());
        return -1;
    }
    *n = got;
    return 0;
}

int main(int argc, char **argv) {
    wg_broker_cfg cfg = {0};
    char **allow = NULL, **secret = NULL;
    unsigned n_allow = 0, n_secret = 0;
    static struct option opts[] = {
        {"frontend", required_argument, 0, 'f'}, {"backend", required_argument, 0, 'b'},
        {"redis", required_argument, 0, 'r'},    {"redis-user", required_argument, 0, 'u'},
        {"redis-password", required_argument, 0, 'p'}, {"name", required_argument, 0, 'n'},
        {"metrics-http", required_argument, 0, 'm'}, {"max-attempts", required_argument, 0, 'a'},
        {"queue-max-jobs", required_argument, 0, 'j'}, {"queue-max-tokens", required_argument, 0, 't'},
        {"heartbeat-ms", required_argument, 0, 'H'}, {"liveness", required_argument, 0, 'L'},
        {"result-ttl", required_argument, 0, 'T'}, {"curve-secret-key-file", required_argument, 0, 'S'},
        {"curve-allow-file", required_argument, 0, 'A'}, {"require-registered", no_argument, 0, 'R'},
        {"starve-ms", required_argument, 0, 'W'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    unsigned long long v;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': cfg.frontend = optarg; break;
        case 'b': cfg.backend = optarg; break;
        case 'r': cfg.redis_url = optarg; break;
        case 'u': cfg.redis_user = optarg; break;
        case 'p': cfg.redis_password = optarg; break;
        case 'n': cfg.name = optarg; break;
        case 'm': cfg.metrics_http = optarg; break;
        case 'a': if (s_num("--max-attempts", optarg, &v)) return 2; cfg.max_attempts = (uint32_t)v; break;
        case 'j': if (s_num("--queue-max-jobs", optarg, &v)) return 2; cfg.queue_max_jobs = v; break;
        case 't': if (s_num("--queue-max-tokens", optarg, &v)) return 2; cfg.queue_max_tokens = v; break;
        case 'H': if (s_num("--heartbeat-ms", optarg, &v)) return 2; cfg.heartbeat_ms = (uint32_t)v; break;
        case 'L': if (s_num("--liveness", optarg, &v)) return 2; cfg.liveness = (uint32_t)v; break;
        case 'T': if (s_num("--result-ttl", optarg, &v)) return 2; cfg.result_ttl_s = (uint32_t)v; break;
        case 'S':
            if (s_read_keys(optarg, &secret, &n_secret) || n_secret != 1) {
                fprintf(stderr, "waggle-broker: %s must hold exactly one secret key\n", optarg);
                return 2;
            }
            cfg.curve_secret_key = secret[0];
            break;
        case 'A':
            if (s_read_keys(optarg, &allow, &n_allow)) return 2;
            break;
        case 'R': cfg.require_registered = true; break;
        case 'W': if (s_num("--starve-ms", optarg, &v)) return 2; cfg.starve_ms = (uint32_t)v; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!cfg.frontend || !cfg.backend || optind != argc) {
        s_usage(stderr);
        return 2;
    }
    if (!cfg.redis_password && getenv("WAGGLE_REDIS_PASSWORD")) cfg.redis_password = getenv("WAGGLE_REDIS_PASSWORD");
    cfg.curve_allow = (const char *const *)allow;
    cfg.n_curve_allow = n_allow;
    if (cfg.curve_secret_key && !n_allow)
        wg_warn("broker", "CURVE enabled with an empty allow-list: every client will be refused");
    s_broker = wg_broker_new(&cfg);
    if (!s_broker) {
        fprintf(stderr, "waggle-broker: %s\n", wg_errmsg());
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    wg_status st = wg_broker_run(s_broker);
    if (st) fprintf(stderr, "waggle-broker: %s\n", wg_errmsg());
    wg_broker_destroy(&s_broker);
    for (unsigned i = 0; i < n_allow; i++) free(allow[i]);
    free(allow);
    for (unsigned i = 0; i < n_secret; i++) free(secret[i]);
    free(secret);
    return st ? 1 : 0;
}
