/* test_ops_cluster — ops/cluster.sh end to end: start redis + broker + 2
 * workers on loopback, submit 20 jobs with `waggle submit`, check the 20
 * result rows, `waggle top --once` showing both workers, every metric the
 * Grafana dashboard uses present on the live /metrics, then `stop` leaving
 * no process and no pid file. The cluster is stopped in .fini and at exit
 * whatever happens, so a failed assertion leaves nothing running. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wg_test.h"
#include "wg_test_sys.h"

#define OPS_SCRIPT WG_SOURCE_DIR "/ops/cluster.sh"
#define OPS_WAGGLE WG_BINARY_DIR "/tools/waggle"

static char s_dir[64];   /* temp dir of this test ("" when none) */
static char s_cdir[128]; /* the cluster's --dir */

static void s_stop_cluster(void) {
    if (!s_dir[0]) return;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s stop --dir %s --timeout 10 >/dev/null 2>&1", OPS_SCRIPT, s_cdir);
    if (system(cmd)) {}
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd)) {}
    s_dir[0] = '\0';
}

static void s_fini(void) { s_stop_cluster(); }

/* Run a shell command, its stdout+stderr into a malloc'd string; returns the exit code. */
static int s_sh(const char *cmd, char **out) {
    char full[8300];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    cr_assert(p, "popen %s", cmd);
    size_t cap = 1 << 16, len = 0, n;
    char *b = malloc(cap);
    while ((n = fread(b + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap) b = realloc(b, cap *= 2);
    }
    b[len] = '\0';
    int st = pclose(p);
    if (out) *out = b;
    else free(b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* KEY=value from the cluster's cluster.env. */
static void s_env(const char *key, char *out, size_t cap) {
    char path[256], line[512];
    snprintf(path, sizeof path, "%s/cluster.env", s_cdir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "no %s", path);
    out[0] = '\0';
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == '=') {
            snprintf(out, cap, "%s", line + kl + 1);
            out[strcspn(out, "\n")] = '\0';
        }
    fclose(f);
    cr_assert(out[0], "%s not in %s", key, path);
}

/* Alive and not a zombie. */
static int s_alive(pid_t pid) {
    char path[64], st[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(st, 1, sizeof st - 1, f);
    fclose(f);
    st[n] = '\0';
    const char *rp = strrchr(st, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}


Test(ops_cluster, start_submit_top_stop, .fini = s_fini, .timeout = 120) {
    WG_REQUIRE_CORPUS();
    const char *model = wg_test_corpus("trained/stories260K-f32.gguf");
    strcpy(s_dir, "/tmp/wgops-XXXXXX");
    cr_assert(mkdtemp(s_dir));
    atexit(s_stop_cluster);
    snprintf(s_cdir, sizeof s_cdir, "%s/cluster", s_dir);
    setenv("WAGGLE_BIN", WG_BINARY_DIR, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    char cmd[8192], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s start --workers 2 --model stories=%s --dir %s", OPS_SCRIPT, model, s_cdir);
    int rc = s_sh(cmd, &out);
    cr_assert_eq(rc, 0, "cluster.sh start failed (%d):\n%s", rc, out);
    cr_assert(strstr(out, "waggle submit --broker tcp://127.0.0.1:"), "start prints no submit example:\n%s", out);
    cr_assert(strstr(out, "--all"), "start prints no tail example:\n%s", out);
    free(out);

    /* The four processes it started, from its pid files. */
    static const char *names[] = {"redis", "broker", "worker-0", "worker-1"};
    pid_t pids[4];
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/pids/%s.pid", s_cdir, names[i]);
        FILE *f = fopen(path, "r");
        cr_assert(f, "no pid file %s", path);
        int p = 0;
        cr_assert_eq(fscanf(f, "%d", &p), 1);
        fclose(f);
        pids[i] = p;
        cr_assert(s_alive(pids[i]), "%s (pid %d) not running", names[i], p);
    }
    char fe[128], mh[128], redis[128];
    s_env("WAGGLE_FRONTEND", fe, sizeof fe);
    s_env("WAGGLE_METRICS", mh, sizeof mh);
    s_env("WAGGLE_REDIS", redis, sizeof redis);
    cr_assert(strncmp(fe, "tcp://127.0.0.1:", 16) == 0 && strncmp(mh, "127.0.0.1:", 10) == 0 &&
                  strncmp(redis, "redis://127.0.0.1:", 18) == 0,
              "endpoints must be loopback: %s %s %s", fe, mh, redis);

    /* Redis runs with AOF on, in the cluster dir. */
    snprintf(cmd, sizeof cmd, "redis-cli -p %s config get appendonly", strrchr(redis, ':') + 1);
    cr_assert_eq(s_sh(cmd, &out), 0);
    cr_assert(strstr(out, "yes"), "redis appendonly is not on:\n%s", out);
    free(out);

    /* 20 jobs through the fleet. */
    char in[256], res[256];
    snprintf(in, sizeof in, "%s/jobs.jsonl", s_dir);
    snprintf(res, sizeof res, "%s/out.jsonl", s_dir);
    FILE *f = fopen(in, "w");
    cr_assert(f);
    for (int i = 0; i < 20; i++)
        fprintf(f,
                "{\"custom_id\":\"ops-%d\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":"
                "\"stories\",\"prompt\":\"Once upon a time %d\",\"max_tokens\":16,\"temperature\":0}}\n",
                i, i);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s submit --broker %s --input %s --output %s --timeout 40", OPS_WAGGLE, fe, in, res);
    rc = s_sh(cmd, &out);
    cr_assert_eq(rc, 0, "waggle submit exited %d:\n%s", rc, out);
    free(out);
    f = fopen(res, "r");
    cr_assert(f);
    char *line = NULL;
    size_t lcap = 0;
    int rows = 0;
    bool seen[20] = {0};
    while (getline(&line, &lcap, f) > 0) {
        json_t *r = json_loads(line, 0, NULL);
        cr_assert(r, "bad row %s", line);
        const char *cid = json_string_value(json_object_get(r, "custom_id"));
        int k = -1;
        cr_assert(cid && sscanf(cid, "ops-%d", &k) == 1 && k >= 0 && k < 20 && !seen[k], "bad/dup custom_id in %s",
                  line);
        seen[k] = true;
        cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "response"), "status_code")), 200,
                     "row is an error: %s", line);
        json_decref(r);
        rows++;
    }
    free(line);
    fclose(f);
    cr_assert_eq(rows, 20, "want 20 result rows, got %d", rows);

    /* waggle top: both workers, and the broker's counters once /metrics catches up. */
    int done_ok = 0;
    for (int attempt = 0; attempt < 30 && !done_ok; attempt++) {
        snprintf(cmd, sizeof cmd, "%s top --once --broker %s --metrics-http %s", OPS_WAGGLE, fe, mh);
        rc = s_sh(cmd, &out);
        cr_assert_eq(rc, 0, "waggle top --once exited %d:\n%s", rc, out);
        cr_assert(strstr(out, "workers: 2 "), "top does not show 2 workers:\n%s", out);
        cr_assert(strstr(out, "\nworker-0 ") && strstr(out, "\nworker-1 "), "top lacks a worker row:\n%s", out);
        /* /metrics is re-rendered by the broker's loop: poll until it shows the batch. */
        done_ok = strstr(out, " done 20 ") && strstr(out, "\nstories ");
        if (!done_ok) usleep(200 * 1000);
        free(out);
    }
    cr_assert(done_ok, "top never showed 20 jobs done and the model row");

    /* Every metric the dashboard plots exists on the live /metrics. Worker
     * figures arrive with heartbeats, so poll for up to 10 s (a loaded CI
     * machine once read /metrics before the first one). */
    char dpath[512];
    snprintf(dpath, sizeof dpath, "%s/ops/grafana/waggle-dashboard.json", WG_SOURCE_DIR);
    json_error_t jerr;
    json_t *dash = json_load_file(dpath, 0, &jerr);
    cr_assert(dash, "%s: %s", dpath, jerr.text);
    char *dtext = json_dumps(dash, 0);
    json_decref(dash);
    int checked = 0;
    char missing[128] = "";
    for (int attempt = 0; attempt < 50; attempt++) {
        char *metrics = wg_test_metrics_get(mh);
        cr_assert(metrics, "GET http://%s/metrics failed", mh);
        checked = 0;
        missing[0] = '\0';
        for (const char *p = dtext; (p = strstr(p, "waggle_"));) {
            size_t l = 7;
            while (isalnum((unsigned char)p[l]) || p[l] == '_') l++;
            char name[96], a[100], b[100];
            snprintf(name, sizeof name, "%.*s", (int)l, p);
            p += l;
            if (strncmp(name, "waggle_broker_", 14) && strncmp(name, "waggle_worker_", 14)) continue;
            snprintf(a, sizeof a, "\n%s{", name);
            snprintf(b, sizeof b, "\n%s ", name);
            if (!strstr(metrics, a) && !strstr(metrics, b) && !missing[0]) snprintf(missing, sizeof missing, "%s", name);
            checked++;
        }
        free(metrics);
        if (!missing[0]) break;
        usleep(200 * 1000);
    }
    cr_expect(!missing[0], "dashboard metric %s missing from live /metrics after 10 s", missing);
    cr_assert_gt(checked, 10);
    free(dtext);

    /* status agrees, then stop: graceful (no SIGKILL needed), nothing left. */
    snprintf(cmd, sizeof cmd, "%s status --dir %s", OPS_SCRIPT, s_cdir);
    rc = s_sh(cmd, &out);
    cr_assert_eq(rc, 0, "cluster.sh status exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "worker-1: running"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s stop --dir %s", OPS_SCRIPT, s_cdir);
    rc = s_sh(cmd, &out);
    cr_assert_eq(rc, 0, "cluster.sh stop exited %d:\n%s", rc, out);
    cr_expect(!strstr(out, "SIGKILL"), "stop had to SIGKILL:\n%s", out);
    free(out);
    for (int i = 0; i < 4; i++) {
        cr_expect(!s_alive(pids[i]), "%s (pid %d) still running after stop", names[i], (int)pids[i]);
        char path[256];
        snprintf(path, sizeof path, "%s/pids/%s.pid", s_cdir, names[i]);
        cr_expect(access(path, F_OK) != 0, "pid file %s left behind", path);
    }
    snprintf(cmd, sizeof cmd, "%s status --dir %s", OPS_SCRIPT, s_cdir);
    cr_expect_neq(s_sh(cmd, NULL), 0, "status after stop must fail");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    cr_log_info("cluster start + 20 jobs + stop: %.1f s", secs);
    cr_expect_lt(secs, 60.0, "end-to-end took %.1f s (budget 60 s)", secs);
}

/* Bad arguments start nothing and leave no pid file. */
Test(ops_cluster, bad_arguments_start_nothing, .fini = s_fini) {
    strcpy(s_dir, "/tmp/wgops-XXXXXX");
    cr_assert(mkdtemp(s_dir));
    snprintf(s_cdir, sizeof s_cdir, "%s/cluster", s_dir);
    setenv("WAGGLE_BIN", WG_BINARY_DIR, 1);
    char cmd[1024], *out;
    static const char *bad[] = {"--workers 0", "--workers x", "--model nomodel", "--model m=/nonexistent.gguf",
                                "--bogus"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s start %s --dir %s", OPS_SCRIPT, bad[i], s_cdir);
        int rc = s_sh(cmd, &out);
        cr_expect_neq(rc, 0, "start %s succeeded:\n%s", bad[i], out);
        free(out);
        snprintf(cmd, sizeof cmd, "ls %s/pids/*.pid", s_cdir);
        cr_expect_neq(s_sh(cmd, NULL), 0, "start %s left pid files", bad[i]);
    }
}

/* Can something be connected to on 127.0.0.1:port? */
static int s_listening(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* A worker that cannot load its model makes start fail and take down what it
 * had started (redis, broker) instead of leaving a half cluster. */
Test(ops_cluster, failed_start_cleans_up, .fini = s_fini, .timeout = 60) {
    strcpy(s_dir, "/tmp/wgops-XXXXXX");
    cr_assert(mkdtemp(s_dir));
    atexit(s_stop_cluster);
    snprintf(s_cdir, sizeof s_cdir, "%s/cluster", s_dir);
    setenv("WAGGLE_BIN", WG_BINARY_DIR, 1);
    char bogus[128], cmd[1024], *out;
    snprintf(bogus, sizeof bogus, "%s/bogus.gguf", s_dir);
    FILE *f = fopen(bogus, "w");
    cr_assert(f);
    fputs("this is not a GGUF file\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s start --workers 1 --model m=%s --dir %s", OPS_SCRIPT, bogus, s_cdir);
    int rc = s_sh(cmd, &out);
    cr_assert_neq(rc, 0, "start with an unloadable model succeeded:\n%s", out);
    cr_expect(strstr(out, "worker-0"), "the failure should name the worker:\n%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "ls %s/pids/*.pid", s_cdir);
    cr_expect_neq(s_sh(cmd, NULL), 0, "pid files left after a failed start");
    char redis[128], mh[128];
    s_env("WAGGLE_REDIS", redis, sizeof redis);
    s_env("WAGGLE_METRICS", mh, sizeof mh);
    cr_expect(!s_listening(atoi(strrchr(redis, ':') + 1)), "redis still up after a failed start");
    cr_expect(!s_listening(atoi(strrchr(mh, ':') + 1)), "broker still up after a failed start");
}
