/* waggle-worker — command-line front of wg_worker: parses flags, loads the
 * models and CURVE keys, serves until SIGTERM/SIGINT (first signal drains,
 * a second one stops at once). Only main() decides exit codes. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wg_log.h"
#include "common/wg_mem.h"
#include "engine/model/wg_model.h"
#include "worker/wg_worker.h"

static wg_worker_t *s_worker;
static volatile sig_atomic_t s_signals;

/* Installed before the models load: a signal that arrives meanwhile is
 * counted and honoured once the worker exists (it used to kill the process
 * with the default action while the model loaded). */
static void s_on_signal(int sig) {
    (void)sig;
    if (s_signals++ == 0) {
        if (s_worker) wg_worker_drain(s_worker);
    } else if (s_worker) {
        wg_worker_stop(s_worker);
    }
}

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle-worker --broker EP --model NAME=PATH [--model NAME=PATH ...] [options]\n"
            "       waggle-worker --broker EP --redis URL --mem-budget BYTES [--model NAME=PATH ...] [options]\n"
            "  --broker EP                  broker backend endpoint to connect (e.g. tcp://10.0.0.1:7701)\n"
            "  --model NAME=PATH            serve the GGUF file / HF directory PATH as NAME (repeatable, 1..64)\n"
            "  --stream EP                  bind the token/metrics XPUB here (e.g. tcp://*:7710, tcp://*:* = any port)\n"
            "  --stream-advertise EP        endpoint announced to the broker and registry (default: the bound one)\n"
            "  --redis URL                  redis://[user:pass@]HOST:PORT[/db]: publish this worker in the registry\n"
            "  --mem-budget BYTES           keep models resident within BYTES of weights + KV (suffix K, M, G):\n"
            "                               serve any model registered in --redis (loaded on demand, sha256\n"
            "                               verified, least recently used evicted); --model preloads\n"
            "  --load-delay-ms N            test hook: sleep N ms inside every on-demand load (default 0)\n"
            "  --id ID                      worker id, 1..128 bytes (default HOST-PID-RAND)\n"
            "  --threads N                  forward-pass threads per model (default 1)\n"
            "  --device D                   cpu (default) or cuda:N: where models run\n"
            "  --max-seqs N                 sequence slots = credits, 1..4096 (default 64)\n"
            "  --kv-budget BYTES            KV cache bytes per model (suffix K, M, G; default: scheduler's)\n"
            "  --kv-type T                  K/V cache elements: f32 (default, the reference numbers), f16\n"
            "                               (half the bytes per token, faster attention) or q8_0 (0.53 of f16)\n"
            "  --max-context N              tokens one job may hold, prompt + generated (default: the model's\n"
            "                               trained context; -1: only the KV cache's size); a longer prompt\n"
            "                               fails its job, generation stops there with finish_reason length\n"
            "  --no-prefix-cache            compute every prompt in full: do not share the K/V blocks of\n"
            "                               prompt starts that earlier jobs already computed (default: shared;\n"
            "                               outputs are the same either way)\n"
            "  --heartbeat-ms N             heartbeat interval (default 1000)\n"
            "  --liveness N                 silent heartbeats before the broker counts as dead, 3..5 (default 3)\n"
            "  --drain-timeout-ms N         on SIGTERM, hand back jobs still running after N ms (default 30000)\n"
            "  --stream-hwm N               XPUB high-water mark per subscriber in messages (default 1000)\n"
            "  --stream-stall-ms N          give up a stream whose subscriber does not move for N ms (default 10000)\n"
            "  --stream-sndbuf BYTES        kernel send buffer of the stream socket (default: OS)\n"
            "  --curve-server-key-file F    broker public key (Z85); enables CURVE\n"
            "  --curve-secret-key-file F    this worker's secret key (Z85); its public key must be on the\n"
            "                               broker's allow-list (default: a fresh key pair, which will be refused)\n"
            "  --log-level L                debug|info|warn|error (default info; env WAGGLE_LOG)\n"
            "  --help                       this text\n"
            "SIGTERM/SIGINT drain (finish in-flight jobs, then exit 0); a second signal stops at once.\n");
}

static int s_num(const char *flag, const char *v, unsigned long long *out) {
    char *e;
    if (!*v || v[0] == '-') goto bad;
    *out = strtoull(v, &e, 10);
    if (*e == 'K' || *e == 'k') *out <<= 10, e++;
    else if (*e == 'M' || *e == 'm') *out <<= 20, e++;
    else if (*e == 'G' || *e == 'g') *out <<= 30, e++;
    if (*e) goto bad;
    return 0;
bad:
    fprintf(stderr, "waggle-worker: %s needs a non-negative integer, got '%s'\n", flag, v);
    return -1;
}

/* A Z85 key from a file: the value of a `prefer = "..."` line (zcert style),
 * else the first 40-char token of a non-comment line. */
static int s_read_key(const char *path, const char *prefer, char out[41]) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "waggle-worker: cannot open key file %s\n", path);
        return -1;
    }
    char line[512], first[41] = "";
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        /* A bare 40-char line is a key even if it starts with '#' or holds '=' (both are Z85). */
        size_t bare = strcspn(p, "\r\n");
        while (bare && (p[bare - 1] == ' ' || p[bare - 1] == '\t')) bare--;
        if (bare == 40) {
            if (!first[0]) memcpy(first, p, 40), first[40] = '\0';
            continue;
        }
        if (*p == '#' || *p == '\n' || !*p) continue;
        int pref = strstr(p, prefer) != NULL;
        char *eq = strchr(p, '=');
        if (eq) {
            p = eq + 1;
            while (*p == ' ' || *p == '"') p++;
        }
        size_t len = strcspn(p, " \t\r\n\"");
        if (len != 40) continue;
        if (pref) {
            memcpy(out, p, 40);
            out[40] = '\0';
            found = 1;
            break;
        }
        if (!first[0]) memcpy(first, p, 40), first[40] = '\0';
    }
    fclose(f);
    if (!found && first[0]) memcpy(out, first, 41), found = 1;
    if (!found) fprintf(stderr, "waggle-worker: %s: no 40-character Z85 key found\n", path);
    return found ? 0 : -1;
}

int main(int argc, char **argv) {
    wg_mem_tune(); /* models are loaded and freed for the life of the process */
    enum { O_BROKER = 1, O_MODEL, O_STREAM, O_ADV, O_REDIS, O_ID, O_THREADS, O_MAXSEQS, O_KV, O_HB, O_LIVE,
           O_DRAIN, O_HWM, O_STALL, O_SNDBUF, O_CSRV, O_CSEC, O_LOG, O_HELP, O_MEM, O_DELAY, O_DEVICE, O_KVTYPE, O_NOPC, O_MAXCTX };
    static const struct option opts[] = {
        {"broker", required_argument, 0, O_BROKER},   {"model", required_argument, 0, O_MODEL},
        {"stream", required_argument, 0, O_STREAM},   {"stream-advertise", required_argument, 0, O_ADV},
        {"redis", required_argument, 0, O_REDIS},     {"id", required_argument, 0, O_ID},
        {"threads", required_argument, 0, O_THREADS}, {"max-seqs", required_argument, 0, O_MAXSEQS},
        {"device", required_argument, 0, O_DEVICE},
        {"kv-type", required_argument, 0, O_KVTYPE},  {"no-prefix-cache", no_argument, 0, O_NOPC},
        {"max-context", required_argument, 0, O_MAXCTX},
        {"kv-budget", required_argument, 0, O_KV},    {"heartbeat-ms", required_argument, 0, O_HB},
        {"liveness", required_argument, 0, O_LIVE},   {"drain-timeout-ms", required_argument, 0, O_DRAIN},
        {"stream-hwm", required_argument, 0, O_HWM},  {"stream-stall-ms", required_argument, 0, O_STALL},
        {"stream-sndbuf", required_argument, 0, O_SNDBUF},
        {"curve-server-key-file", required_argument, 0, O_CSRV},
        {"curve-secret-key-file", required_argument, 0, O_CSEC},
        {"log-level", required_argument, 0, O_LOG},   {"help", no_argument, 0, O_HELP},
        {"mem-budget", required_argument, 0, O_MEM},  {"load-delay-ms", required_argument, 0, O_DELAY},
        {0, 0, 0, 0}};
    wg_worker_cfg cfg = {0};
    wg_worker_model models[64];
    uint32_t n_models = 0;
    char server_key[41], secret_key[41];
    unsigned long long v;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_BROKER: cfg.broker = optarg; break;
        case O_MODEL: {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                fprintf(stderr, "waggle-worker: --model needs NAME=PATH, got '%s'\n", optarg);
                return 2;
            }
            if (n_models == 64) {
                fprintf(stderr, "waggle-worker: at most 64 --model flags\n");
                return 2;
            }
            *eq = '\0';
            models[n_models++] = (wg_worker_model){.name = optarg, .path = eq + 1};
            break;
        }
        case O_STREAM: cfg.stream = optarg; break;
        case O_ADV: cfg.stream_advertise = optarg; break;
        case O_REDIS: cfg.redis_url = optarg; break;
        case O_MEM:
            if (s_num("--mem-budget", optarg, &v)) return 2;
            if (!v) {
                fprintf(stderr, "waggle-worker: --mem-budget must be > 0, got '%s'\n", optarg);
                return 2;
            }
            cfg.mem_budget = v;
            break;
        case O_DELAY: if (s_num("--load-delay-ms", optarg, &v)) return 2; cfg.load_delay_ms = (uint32_t)v; break;
        case O_ID: cfg.worker_id = optarg; break;
        case O_THREADS: if (s_num("--threads", optarg, &v)) return 2; cfg.n_threads = (int)v; break;
        case O_DEVICE: {
            int cu;
            if (wg_device_parse(optarg, &cu)) {
                fprintf(stderr, "waggle-worker: %s\n", wg_errmsg());
                return 2;
            }
            cfg.device = optarg;
            break;
        }
        case O_MAXSEQS:
            if (s_num("--max-seqs", optarg, &v)) return 2;
            if (v < 1 || v > 4096) {
                fprintf(stderr, "waggle-worker: --max-seqs must be 1..4096, got %llu\n", v);
                return 2;
            }
            cfg.max_seqs = (int32_t)v;
            break;
        case O_KV: if (s_num("--kv-budget", optarg, &v)) return 2; cfg.kv_budget_bytes = (size_t)v; break;
        case O_KVTYPE:
            if (wg_kv_type_parse(optarg, &cfg.kv_type) != WG_OK) {
                fprintf(stderr, "waggle-worker: --kv-type must be f32, f16 or q8_0, got '%s'\n", optarg);
                return 2;
            }
            break;
        case O_NOPC: cfg.no_prefix_cache = true; break;
        case O_MAXCTX: {
            char *end = NULL;
            errno = 0;
            const long mc = strtol(optarg, &end, 10);
            if (errno || !end || *end || end == optarg || mc < -1 || mc > (1L << 30)) {
                fprintf(stderr, "waggle-worker: --max-context must be -1, 0 or a token count, got '%s'\n", optarg);
                return 2;
            }
            cfg.max_context = (int32_t)mc;
            break;
        }
        case O_HB: if (s_num("--heartbeat-ms", optarg, &v)) return 2; cfg.heartbeat_ms = (uint32_t)v; break;
        case O_LIVE: if (s_num("--liveness", optarg, &v)) return 2; cfg.liveness = (uint32_t)v; break;
        case O_DRAIN: if (s_num("--drain-timeout-ms", optarg, &v)) return 2; cfg.drain_timeout_ms = (uint32_t)v; break;
        case O_HWM: if (s_num("--stream-hwm", optarg, &v)) return 2; cfg.stream_hwm = (uint32_t)v; break;
        case O_STALL: if (s_num("--stream-stall-ms", optarg, &v)) return 2; cfg.stream_stall_ms = (uint32_t)v; break;
        case O_SNDBUF: if (s_num("--stream-sndbuf", optarg, &v)) return 2; cfg.stream_sndbuf = (int)v; break;
        case O_CSRV:
            if (s_read_key(optarg, "public-key", server_key)) return 2;
            cfg.curve_server_key = server_key;
            break;
        case O_CSEC:
            if (s_read_key(optarg, "secret-key", secret_key)) return 2;
            cfg.curve_secret_key = secret_key;
            break;
        case O_LOG: {
            static const char *names[] = {"debug", "info", "warn", "error", "off"};
            int lv = -1;
            for (int i = 0; i < 5; i++)
                if (strcmp(optarg, names[i]) == 0) lv = i;
            if (lv < 0) {
                fprintf(stderr, "waggle-worker: --log-level must be debug|info|warn|error|off, got '%s'\n", optarg);
                return 2;
            }
            wg_log_set_level((wg_log_level)lv);
            break;
        }
        case O_HELP: s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "waggle-worker: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!cfg.broker || (!n_models && !cfg.mem_budget)) {
        fprintf(stderr, "waggle-worker: --broker and at least one --model (or --mem-budget) are required\n");
        s_usage(stderr);
        return 2;
    }
    cfg.models = models;
    cfg.n_models = n_models;
    struct sigaction sa = {0};
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    s_worker = wg_worker_new(&cfg);
    if (!s_worker) {
        fprintf(stderr, "waggle-worker: %s\n", wg_errmsg());
        return 1;
    }
    if (s_signals > 1) wg_worker_stop(s_worker); /* signalled while starting */
    else if (s_signals) wg_worker_drain(s_worker);
    wg_status st = wg_worker_run(s_worker);
    if (st) fprintf(stderr, "waggle-worker: %s\n", wg_errmsg());
    wg_worker_stats ws;
    wg_worker_get_stats(s_worker, &ws);
    if (cfg.mem_budget)
        wg_info("worker", "residency totals: loads=%llu load_seconds=%.3f load_failures=%llu evictions=%llu "
                "jobs_waited=%llu", (unsigned long long)ws.loads, ws.load_seconds,
                (unsigned long long)ws.load_failures, (unsigned long long)ws.evictions,
                (unsigned long long)ws.jobs_waited);
    wg_worker_t *w = s_worker;
    s_worker = NULL;
    wg_worker_destroy(&w);
    return st ? 1 : 0;
}
