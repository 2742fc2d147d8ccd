/* Worker residency and hot-swap end to end (issue 6): a real redis-server,
 * waggle-broker --require-registered and waggle-worker --mem-budget processes
 * on loopback, models registered with `waggle models add`. Three corpus
 * models with a budget that holds one at a time; results are compared with
 * `waggle run --model` on the same jobs (greedy). Also: per-model residency
 * counters on the broker's /metrics, and the token stream of a serving model
 * flowing while another model loads beside it. Every wait has a timeout;
 * every process dies with the test (fleet_harness.h). */
#include "fleet_harness.h"

#include "schemas/wg_msg_producer.h"
#include "schemas/wg_msg_stream.h"

#define S_ST "trained/stories260K-f32.gguf"
#define S_LL "models/llama/llama-Q8_0.gguf"
#define S_QW "models/qwen2/qwen2-f32.gguf"
/* Resident bytes with --kv-budget 1M: stories ~2.2 MB, llama ~2.5 MB, qwen2 ~1.4 MB:
 * each fits alone, no two fit together. */
#define S_BUDGET "2600K"

static char s_url[64];
static char s_mh[32]; /* the broker's --metrics-http HOST:PORT */

static void s_run(const char *const *argv, const char *what) {
    pid_t p = fl_spawn(argv, fl_path("cmd.log"));
    int rc = fl_wait(&p, 30000);
    cr_assert_eq(rc, 0, "%s exited %d (log %s)", what, rc, fl_path("cmd.log"));
}

static void s_models_add(const char *name, const char *path) {
    const char *argv[] = {FL_WAGGLE, "models", "add", name, path, "--redis", s_url, "--quiet", NULL};
    s_run(argv, "waggle models add");
}

static void s_start(fl_redis *r, fl_broker *b) {
    fl_redis_start(r);
    snprintf(s_url, sizeof s_url, "redis://127.0.0.1:%d", r->port);
    snprintf(s_mh, sizeof s_mh, "127.0.0.1:%d", wg_test_free_port());
    const char *bx[] = {"--require-registered", "--metrics-http", s_mh, NULL};
    fl_broker_start(b, r, bx);
}

/* A worker with residency only (no --model preload). */
static void s_worker(fl_worker *w, const fl_broker *b, const char *id, const char *delay_ms, const char *max_seqs) {
    snprintf(w->stream, sizeof w->stream, "tcp://127.0.0.1:%d", wg_test_free_port());
    snprintf(w->log, sizeof w->log, "%s/worker-%s.log", fl_tmp(), id);
    const char *argv[] = {FL_WORKER, "--broker", b->be, "--stream", w->stream, "--id", id, "--heartbeat-ms", "250",
                          "--redis", s_url, "--mem-budget", S_BUDGET, "--kv-budget", "1M", "--load-delay-ms",
                          delay_ms, "--max-seqs", max_seqs, NULL};
    w->pid = fl_spawn(argv, w->log);
}

/* Jobs for models[i % n], greedy, prompts varied by i. */
static void s_write_jobs(const char *path, int n, const char *const *models, int n_models, int max_tokens) {
    static const char *starts[] = {"Once upon a time", "The cat", "Tom and Sam", "Lily wanted", "One day, a big dog"};
    FILE *f = fopen(path, "w");
    cr_assert(f);
    for (int i = 0; i < n; i++)
        fprintf(f,
                "{\"custom_id\":\"job-%d\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"model\":"
                "\"%s\",\"prompt\":\"%s %d\",\"max_tokens\":%d,\"temperature\":0}}\n",
                i, models[i % n_models], starts[i % 5], i, max_tokens);
    fclose(f);
}

/* Submit and wait for the submitter to finish; its exit status (0 all
 * succeeded, 3 some jobs failed). */
static int s_submit(const fl_broker *b, const char *in, const char *out, const char *const *extra, int timeout_ms) {
    pid_t p = fl_submit_start(b, in, out, extra);
    int rc = fl_wait(&p, timeout_ms);
    cr_assert(rc == 0 || rc == 3, "waggle submit exited %d (log %s)", rc, fl_path("submit.log"));
    return rc;
}

/* Last "KEY=<n>" in a log file, -1 when absent. */
static long long s_log_last(const char *path, const char *key) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[4096];
    long long v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, key);
        if (p) v = atoll(p + strlen(key));
    }
    fclose(f);
    return v;
}

/* Flip 64 bytes in the middle of a model file's tensor data; size unchanged. */
static void s_corrupt(const char *path) {
    FILE *f = fopen(path, "r+b");
    cr_assert(f, "%s", path);
    fseek(f, 600000, SEEK_SET);
    unsigned char buf[64];
    cr_assert_eq(fread(buf, 1, sizeof buf, f), sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] ^= 0x5a;
    fseek(f, 600000, SEEK_SET);
    fwrite(buf, 1, sizeof buf, f);
    fclose(f);
}

static long s_rss_kb(pid_t pid) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    cr_assert(f);
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    fclose(f);
    return kb;
}

Test(swap, three_models_budget_for_one_300_interleaved_jobs_equal_single_model_runs, .timeout = 90) {
    WG_REQUIRE_CORPUS();
    fl_redis r = {0};
    fl_broker b = {0};
    s_start(&r, &b);
    s_models_add("st", wg_test_corpus(S_ST));
    s_models_add("ll", wg_test_corpus(S_LL));
    s_models_add("qw", wg_test_corpus(S_QW));
    fl_worker w = {0};
    s_worker(&w, &b, "w1", "0", "16");
    const char *names[] = {"st", "ll", "qw"};
    char in[256], out[256];
    snprintf(in, sizeof in, "%s", fl_path("jobs.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("out.jsonl"));
    s_write_jobs(in, 300, names, 3, 8);
    /* window 24: jobs of all three models are queued together the whole time */
    const char *sx[] = {"--window", "24", "--batch", "8", NULL};
    cr_assert_eq(s_submit(&b, in, out, sx, 60000), 0, "some jobs failed");
    cr_assert(fl_alive(w.pid), "worker died (log %s)", w.log);
    json_t *rows = fl_rows(out);
    cr_assert_eq(json_object_size(rows), 300, "%zu rows", json_object_size(rows));
    /* single-model reference runs: one `waggle run --model` per model on its jobs */
    const char *rels[] = {S_ST, S_LL, S_QW};
    for (int m = 0; m < 3; m++) {
        char rin[256], rout[256];
        snprintf(rin, sizeof rin, "%s/ref-%d.jsonl", fl_tmp(), m);
        snprintf(rout, sizeof rout, "%s/ref-%d.out.jsonl", fl_tmp(), m);
        FILE *src = fopen(in, "r"), *dst = fopen(rin, "w");
        cr_assert(src && dst);
        char line[1024];
        for (int i = 0; fgets(line, sizeof line, src); i++)
            if (i % 3 == m) fputs(line, dst);
        fclose(src);
        fclose(dst);
        char mp[4200];
        snprintf(mp, sizeof mp, "%s", wg_test_corpus(rels[m])); /* static buffer: copy */
        const char *argv[] = {FL_WAGGLE, "run", "--model", mp, "--input", rin, "--output", rout, "--threads", "1", NULL};
        s_run(argv, "waggle run");
        json_t *ref = fl_rows(rout);
        cr_assert_eq(json_object_size(ref), 100);
        const char *cid;
        json_t *rr;
        json_object_foreach(ref, cid, rr) {
            json_t *got = json_object_get(rows, cid);
            cr_assert(got, "%s missing", cid);
            cr_assert_eq(fl_row_status(got), 200, "%s failed", cid);
            cr_assert(fl_row_text(rr) && fl_row_text(got));
            cr_assert_str_eq(fl_row_text(got), fl_row_text(rr), "%s (%s): fleet '%s' vs run '%s'", cid, names[m],
                             fl_row_text(got), fl_row_text(rr));
        }
        json_decref(ref);
    }
    json_decref(rows);
    long long loads = s_log_last(w.log, "loads="), ev = s_log_last(w.log, "evictions=");
    cr_log_info("swap test: 300 jobs over 3 models, worker loads=%lld evictions=%lld", loads, ev);
    fprintf(stderr, "swap test: 300 interleaved jobs, 3 models, budget for one: loads=%lld evictions=%lld\n", loads, ev);
    cr_assert_geq(loads, 3, "every model was loaded at least once (log %s)", w.log);
    cr_assert_geq(ev, 2, "a budget for one model must evict");
    /* unknown model: rejected at submit, never reaches a worker */
    char uin[256], uout[256];
    snprintf(uin, sizeof uin, "%s", fl_path("unknown.jsonl"));
    snprintf(uout, sizeof uout, "%s", fl_path("unknown.out.jsonl"));
    const char *nope[] = {"nope"};
    s_write_jobs(uin, 2, nope, 1, 4);
    s_submit(&b, uin, uout, NULL, 20000);
    cr_assert(fl_file_has(uout, "not registered"), "unknown model not rejected with a reason (%s)", uout);
    cr_assert_eq(s_log_last(w.log, "loads="), loads, "an unknown model must not reach the worker");
}

Test(swap, corrupted_registered_file_fails_its_jobs_naming_the_checksum_others_succeed, .timeout = 60) {
    WG_REQUIRE_CORPUS();
    fl_redis r = {0};
    fl_broker b = {0};
    s_start(&r, &b);
    char copy[256];
    snprintf(copy, sizeof copy, "%s/copy.gguf", fl_tmp());
    char cmd[5200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod u+w '%s'", wg_test_corpus(S_ST), copy, copy);
    cr_assert_eq(system(cmd), 0);
    s_models_add("bad", copy);
    s_models_add("qw", wg_test_corpus(S_QW));
    s_corrupt(copy);
    fl_worker w = {0};
    s_worker(&w, &b, "w1", "0", "16");
    const char *names[] = {"bad", "qw"};
    char in[256], out[256];
    snprintf(in, sizeof in, "%s", fl_path("jobs.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("out.jsonl"));
    s_write_jobs(in, 20, names, 2, 6);
    cr_assert_eq(s_submit(&b, in, out, NULL, 40000), 3, "the corrupted model's jobs must fail");
    json_t *rows = fl_rows(out);
    cr_assert_eq(json_object_size(rows), 20);
    for (int i = 0; i < 20; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "job-%d", i);
        json_t *row = json_object_get(rows, cid);
        cr_assert(row);
        if (i % 2 == 0) {
            char *s = json_dumps(row, 0);
            cr_assert_neq(fl_row_status(row), 200, "corrupted model served %s", cid);
            cr_assert(strstr(s, "sha256") && strstr(s, "copy.gguf"), "reason names neither checksum nor file: %s", s);
            free(s);
        } else {
            cr_assert_eq(fl_row_status(row), 200, "%s of the intact model failed", cid);
        }
    }
    json_decref(rows);
    cr_assert(fl_alive(w.pid), "worker died");
}

/* A re-load of a model the worker loaded before overlaps its registry round
 * trip with the load (the in-process verification record vouches for the
 * unchanged file): it must still follow a re-registration to another file
 * and still catch a file corrupted since its last load. */
Test(swap, re_loads_follow_a_re_registration_and_catch_a_file_corrupted_since, .timeout = 90) {
    WG_REQUIRE_CORPUS();
    fl_redis r = {0};
    fl_broker b = {0};
    s_start(&r, &b);
    char copy[256], cmd[5200];
    snprintf(copy, sizeof copy, "%s/copy.gguf", fl_tmp());
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod u+w '%s'", wg_test_corpus(S_ST), copy, copy);
    cr_assert_eq(system(cmd), 0);
    s_models_add("a", wg_test_corpus(S_ST));
    s_models_add("b", wg_test_corpus(S_LL));
    s_models_add("c", copy);
    fl_worker w = {0};
    s_worker(&w, &b, "w1", "0", "1");
    const char *seq[] = {"--window", "1", "--batch", "1", NULL}; /* one job at a time: each one swaps */
    char in[256], out[256];
    snprintf(in, sizeof in, "%s", fl_path("j1.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("j1.out.jsonl"));
    const char *abc[] = {"a", "b", "c"};
    s_write_jobs(in, 6, abc, 3, 2); /* a b c a b c: the second of each is a re-load */
    cr_assert_eq(s_submit(&b, in, out, seq, 40000), 0, "every job of the first round must succeed");
    const long long a_bytes = s_log_last(w.log, "model=a loaded bytes=");
    cr_assert_gt(a_bytes, 0);
    /* "a" now names another model; "c"'s file is corrupted in place (same size) */
    s_models_add("a", wg_test_corpus(S_QW));
    s_corrupt(copy);
    snprintf(in, sizeof in, "%s", fl_path("j2.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("j2.out.jsonl"));
    const char *ac[] = {"a", "c"};
    s_write_jobs(in, 2, ac, 2, 2);
    cr_assert_eq(s_submit(&b, in, out, seq, 40000), 3, "the corrupted model's job must fail");
    json_t *rows = fl_rows(out);
    json_t *ra = json_object_get(rows, "job-0"), *rc = json_object_get(rows, "job-1");
    cr_assert(ra && rc);
    cr_assert_eq(fl_row_status(ra), 200, "the re-registered model failed");
    char *sc = json_dumps(rc, 0);
    cr_assert_neq(fl_row_status(rc), 200, "corrupted model served: %s", sc);
    cr_assert(strstr(sc, "sha256") && strstr(sc, "copy.gguf"), "reason names neither checksum nor file: %s", sc);
    free(sc);
    json_decref(rows);
    const long long a2_bytes = s_log_last(w.log, "model=a loaded bytes=");
    cr_assert(a2_bytes > 0 && a2_bytes != a_bytes, "'a' was re-loaded from its old file (%lld bytes, before %lld)",
              a2_bytes, a_bytes);
    cr_assert(fl_alive(w.pid), "worker died");
}

Test(swap, worker_killed_during_a_load_jobs_complete_on_the_other, .timeout = 60) {
    WG_REQUIRE_CORPUS();
    fl_redis r = {0};
    fl_broker b = {0};
    s_start(&r, &b);
    s_models_add("ll", wg_test_corpus(S_LL));
    fl_worker w1 = {0}, w2 = {0};
    s_worker(&w1, &b, "slow", "4000", "16"); /* every load takes 4 s */
    wg_test_sleep_ms(400);
    const char *names[] = {"ll"};
    char in[256], out[256];
    snprintf(in, sizeof in, "%s", fl_path("jobs.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("out.jsonl"));
    s_write_jobs(in, 20, names, 1, 6);
    pid_t sub = fl_submit_start(&b, in, out, NULL);
    /* wait until the slow worker got the jobs and is inside the load (not a
     * fixed sleep: its start alone can take over a second on a loaded machine) */
    int64_t end = wg_test_now_ms() + 20000;
    while (!fl_file_has(w1.log, "model=ll loading") && wg_test_now_ms() < end) wg_test_sleep_ms(20);
    cr_assert(fl_file_has(w1.log, "model=ll loading") && !fl_file_has(w1.log, "model=ll loaded"),
              "the slow worker should be loading now (log %s)", w1.log);
    fl_kill(&w1.pid, SIGKILL);
    s_worker(&w2, &b, "fast", "0", "16");
    int rc = fl_wait(&sub, 40000);
    cr_assert_eq(rc, 0, "waggle submit exited %d", rc);
    json_t *rows = fl_rows(out);
    cr_assert_eq(json_object_size(rows), 20);
    const char *cid;
    json_t *row;
    json_object_foreach(rows, cid, row) cr_assert_eq(fl_row_status(row), 200, "%s failed", cid);
    json_decref(rows);
    cr_assert(fl_file_has(w2.log, "model=ll loaded"), "the jobs were not served by the second worker");
}

Test(swap, hundred_load_unload_cycles_leave_rss_flat, .timeout = 90) {
    WG_REQUIRE_CORPUS();
    fl_redis r = {0};
    fl_broker b = {0};
    s_start(&r, &b);
    s_models_add("st", wg_test_corpus(S_ST));
    s_models_add("ll", wg_test_corpus(S_LL));
    fl_worker w = {0};
    s_worker(&w, &b, "w1", "0", "1");
    const char *names[] = {"st", "ll"};
    const char *seq[] = {"--window", "1", "--batch", "1", NULL}; /* one job at a time: each one swaps */
    char in[256], out[256];
    snprintf(in, sizeof in, "%s", fl_path("warm.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("warm.out.jsonl"));
    s_write_jobs(in, 10, names, 2, 2);
    s_submit(&b, in, out, seq, 30000);
    long before = s_rss_kb(w.pid);
    long long loads0 = s_log_last(w.log, "loads=");
    snprintf(in, sizeof in, "%s", fl_path("cycles.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("cycles.out.jsonl"));
    s_write_jobs(in, 100, names, 2, 2);
    s_submit(&b, in, out, seq, 70000);
    long after = s_rss_kb(w.pid);
    long long loads1 = s_log_last(w.log, "loads=");
    cr_assert_eq(fl_count_lines(out), 100);
    fprintf(stderr, "swap rss: %lld loads, VmRSS %ld kB -> %ld kB\n", loads1 - loads0, before, after);
    cr_assert_geq(loads1 - loads0, 90, "only %lld loads in 100 alternating jobs", loads1 - loads0);
    /* a leaked model per cycle would add >= 100 x 1.2 MB; allow 8 MB of allocator noise.
     * Under AddressSanitizer freed memory sits in its quarantine (RSS grows by
     * design, and LeakSanitizer checks leaks instead): the bound is not asked. */
#if defined(__SANITIZE_ADDRESS__)
    (void)before, (void)after;
#else
    cr_assert_leq(after - before, 8192, "RSS grew %ld kB over %lld loads", after - before, loads1 - loads0);
#endif
}

/* ---- per-model residency metrics on the broker's /metrics ---- */

/* `name{worker="w",model="m"}` for fl_metric. */
static const char *s_series(const char *name, const char *worker, const char *model) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ & 3];
    if (model) snprintf(b, 256, "%s{worker=\"%s\",model=\"%s\"}", name, worker, model);
    else snprintf(b, 256, "%s{worker=\"%s\"}", name, worker);
    return b;
}

/* Poll /metrics until `series` equals `want` (the broker re-renders every
 * second from the latest heartbeat); returns the last body (caller frees). */
static char *s_metrics_until(const char *series, double want, int timeout_ms) {
    int64_t end = wg_test_now_ms() + timeout_ms;
    char *body = NULL;
    for (;;) {
        free(body);
        body = fl_metrics(s_mh);
        if (body && fl_metric(body, series) == want) return body;
        if (wg_test_now_ms() > end) break;
        wg_test_sleep_ms(100);
    }
    cr_assert_fail("/metrics: %s never became %g; last body:\n%s", series, want, body ? body : "(none)");
    return NULL;
}

Test(swap, broker_metrics_count_loads_evictions_and_resident_bytes_per_model, .timeout = 60) {
    WG_REQUIRE_CORPUS();
    fl_redis r = {0};
    fl_broker b = {0};
    s_start(&r, &b);
    s_models_add("st", wg_test_corpus(S_ST));
    s_models_add("ll", wg_test_corpus(S_LL));
    s_models_add("qw", wg_test_corpus(S_QW));
    fl_worker w = {0};
    s_worker(&w, &b, "w1", "0", "1");
    /* one job at a time, st ll qw st, with a budget for one model: every job
     * loads its model and evicts the previous one */
    const char *order[] = {"st", "ll", "qw", "st"};
    char in[256], out[256];
    snprintf(in, sizeof in, "%s", fl_path("jobs.jsonl"));
    snprintf(out, sizeof out, "%s", fl_path("out.jsonl"));
    s_write_jobs(in, 4, order, 4, 4);
    const char *seq[] = {"--window", "1", "--batch", "1", NULL};
    cr_assert_eq(s_submit(&b, in, out, seq, 40000), 0, "some jobs failed");
    char *m = s_metrics_until(s_series("waggle_worker_model_loads_total", "w1", "st"), 2, 10000);
    static const struct {
        const char *model;
        double loads, evictions;
        bool resident;
    } want[] = {{"st", 2, 1, true}, {"ll", 1, 1, false}, {"qw", 1, 1, false}};
    double loads = 0, evictions = 0;
    for (size_t i = 0; i < 3; i++) {
        const char *mo = want[i].model;
        double l = fl_metric(m, s_series("waggle_worker_model_loads_total", "w1", mo));
        double e = fl_metric(m, s_series("waggle_worker_model_evictions_total", "w1", mo));
        double f = fl_metric(m, s_series("waggle_worker_model_load_failures_total", "w1", mo));
        double sec = fl_metric(m, s_series("waggle_worker_model_load_seconds_total", "w1", mo));
        double by = fl_metric(m, s_series("waggle_worker_model_resident_bytes", "w1", mo));
        cr_assert_eq(l, want[i].loads, "%s: loads %g, expected %g\n%s", mo, l, want[i].loads, m);
        cr_assert_eq(e, want[i].evictions, "%s: evictions %g, expected %g\n%s", mo, e, want[i].evictions, m);
        cr_assert_eq(f, 0, "%s: load failures %g", mo, f);
        cr_assert(sec > 0 && sec < 30, "%s: load seconds %g", mo, sec);
        if (want[i].resident) {
            cr_assert_gt(by, 0, "%s is resident but reports %g bytes\n%s", mo, by, m);
            /* the only resident model holds all the resident memory */
            double used = fl_metric(m, s_series("waggle_worker_memory_used_bytes", "w1", NULL));
            cr_assert_eq(by, used, "%s: %g resident bytes vs memory_used_bytes %g", mo, by, used);
            cr_assert_eq(fl_metric(m, s_series("waggle_worker_model_resident", "w1", mo)), 1);
        } else {
            cr_assert_eq(by, 0, "%s was evicted but reports %g resident bytes\n%s", mo, by, m);
            cr_assert(isnan(fl_metric(m, s_series("waggle_worker_model_resident", "w1", mo))));
        }
        loads += l;
        evictions += e;
    }
    /* per-model figures add up to the worker's own totals (its residency log) */
    cr_assert_eq(loads, (double)s_log_last(w.log, "loads="), "log %s", w.log);
    cr_assert_eq(evictions, (double)s_log_last(w.log, "evictions="), "log %s", w.log);
    /* Prompt tokens: computed by four schedulers, three of them freed by the
     * evictions (their totals are kept); none found cached, since every job
     * met a freshly loaded model's empty cache. */
    m = s_metrics_until(s_series("waggle_worker_prompt_tokens_cached_total", "w1", NULL), 0, 10000);
    const double computed = fl_metric(m, s_series("waggle_worker_prompt_tokens_computed_total", "w1", NULL));
    /* at least 3 computed (all but the sampled last) for each of the three
     * evicted models' prompts ("Once upon a time 0", "The cat 1", "Tom and
     * Sam 2", each 4+ tokens with BOS): the live scheduler alone has fewer */
    cr_assert(computed >= 9, "prompt tokens computed: %g\n%s", computed, m);
    free(m);
}

/* ---- token streams of one model keep flowing while another model loads ---- */

typedef struct {
    char job_id[33];
    int n;                    /* events received */
    uint64_t next_seq;        /* seq expected next */
    bool gap;                 /* a seq was skipped */
    bool final;               /* final event seen */
    int64_t t_first, t_final; /* ms (monotonic) */
    int64_t *t;               /* (n,) arrival times */
    int cap;                  /* allocated */
} s_tokens;

static void s_tokens_take(s_tokens *s, const wg_msg_token *t, int64_t now) {
    if (s->n == 0) {
        s->t_first = now;
        s->next_seq = t->seq; /* joined late: count from here */
    }
    if (t->seq != s->next_seq) s->gap = true;
    s->next_seq = t->seq + 1;
    if (s->n == s->cap) s->t = realloc(s->t, (size_t)(s->cap = s->cap ? 2 * s->cap : 1024) * sizeof *s->t);
    s->t[s->n++] = now;
    if (t->final) {
        s->final = true;
        s->t_final = now;
    }
}


/* Block until a METRICS message arrives on `s` (its connection is up). */
static void s_wait_metrics(void *s) {
    int64_t end = wg_test_now_ms() + 10000;
    while (wg_test_now_ms() < end) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 200) <= 0) continue;
        wg_msg_in in;
        bool got = fl_sub_recv(s, &in, 0) == WG_OK && in.cmd == WG_CMD_METRICS;
        wg_msg_in_clear(&in);
        if (got) return;
    }
    cr_assert_fail("no METRICS on the worker stream within 10 s");
}

/* RESULT pushes seen by the producer: job id -> state. */
typedef struct {
    char job_id[33];
    char state[16];
} s_end;
static s_end s_ends[8];
static int s_n_ends;

static void s_prod_take(const wg_msg_in *in) {
    if (in->cmd != WG_CMD_RESULT || !in->body) return;
    wg_msg_result res;
    if (wg_msg_result_decode(WG_CMD_RESULT, in->body, in->body_len, &res) != WG_OK) return;
    if (s_n_ends < 8) {
        snprintf(s_ends[s_n_ends].job_id, sizeof s_ends[0].job_id, "%s", res.job_id);
        snprintf(s_ends[s_n_ends].state, sizeof s_ends[0].state, "%s", res.state ? res.state : "?");
        s_n_ends++;
    }
    wg_msg_result_clear(&res);
}

static const char *s_end_state(const char *job_id) {
    for (int i = 0; i < s_n_ends; i++)
        if (!strcmp(s_ends[i].job_id, job_id)) return s_ends[i].state;
    return NULL;
}

/* SUBMIT one greedy job; its id into job_id (33 bytes). */
static void s_submit_one(void *prod, const char *model, int max_tokens, uint64_t req, char *job_id) {
    wg_msg_submit sm = {.req = req, .n_jobs = 1};
    sm.jobs = calloc(1, sizeof *sm.jobs);
    wg_msg_job_init(&sm.jobs[0]);
    sm.jobs[0].model = strdup(model);
    sm.jobs[0].prompt = strdup("Once upon a time");
    sm.jobs[0].max_tokens = (uint32_t)max_tokens;
    sm.jobs[0].stream = true;
    sm.jobs[0].sampling.temperature = 0;
    wg_msg_buf b = {0};
    cr_assert_eq(wg_msg_submit_encode(&sm, &b), WG_OK);
    cr_assert_eq(wg_msg_send(prod, NULL, 0, WG_CMD_SUBMIT, &b, 0), WG_OK);
    wg_msg_buf_free(&b);
    wg_msg_submit_clear(&sm);
    int64_t end = wg_test_now_ms() + 5000;
    while (wg_test_now_ms() < end) {
        zmq_pollitem_t it = {prod, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        wg_msg_in in;
        if (wg_msg_recv(prod, false, &in, 0) != WG_OK) {
            wg_msg_in_clear(&in);
            continue;
        }
        if (in.cmd != WG_CMD_SUBMITTED) {
            s_prod_take(&in);
            wg_msg_in_clear(&in);
            continue;
        }
        wg_msg_submitted rep;
        cr_assert_eq(wg_msg_submitted_decode(in.body, in.body_len, &rep), WG_OK);
        wg_msg_in_clear(&in);
        cr_assert(rep.n_items == 1 && rep.items[0].accepted, "%s job rejected: %s", model,
                  rep.n_items ? (rep.items[0].reason ? rep.items[0].reason : "?") : "no items");
        snprintf(job_id, 33, "%s", rep.items[0].job_id);
        wg_msg_submitted_clear(&rep);
        return;
    }
    cr_assert_fail("no SUBMITTED for the %s job", model);
}

/* Model A (qw) is preloaded and streams a long greedy generation to a
 * consumer that reads one event every S_READ_MS. The stream goes over ipc://
 * with small high-water marks and socket buffers, so its backpressure paces
 * the job (it pauses whenever the pipe is full) and it lasts seconds whatever
 * the machine's speed. (Over loopback TCP, buffers that small stall on delayed
 * ACKs: one event per ~40 ms.) Once A streams, a job for B (st) makes the
 * worker load B beside A, each load held S_DELAY_MS on the loader thread. The
 * load window, as the consumer sees it, runs from B's SUBMIT to B's first
 * token. Were the load to block the worker's loop, A's events would stop once
 * the ones buffered in the pipes were drained (about 300, some 0.6 s of
 * reading: a simulated blocking load, S_DELAY_MS slept on the loop, gave a
 * 1.9 s gap). So A's events must cover the window with no gap over
 * S_MAX_GAP_MS (the count of events in it is only a sanity floor), METRICS
 * (same loop and same kind of timer as the heartbeats) must keep coming, and
 * the broker must never lose the worker (liveness 3 x 250 ms, far below the
 * load). The worker's stream is ipc:// (still one machine, no network). */
#define S_READ_MS 2
#define S_DELAY_MS 2500
#define S_MAX_GAP_MS 600
#define S_STR_(x) #x
#define S_STR(x) S_STR_(x)

Test(swap, token_streams_of_the_serving_model_keep_flowing_while_another_loads, .timeout = 90) {
    WG_REQUIRE_CORPUS();
    fl_redis r = {0};
    fl_broker b = {0};
    s_start(&r, &b);
    s_models_add("qw", wg_test_corpus(S_QW));
    s_models_add("st", wg_test_corpus(S_ST));
    fl_worker w = {0};
    snprintf(w.stream, sizeof w.stream, "ipc://%s/stream.sock", fl_tmp());
    snprintf(w.log, sizeof w.log, "%s/worker-streamer.log", fl_tmp());
    char pre[4200];
    snprintf(pre, sizeof pre, "qw=%s", wg_test_corpus(S_QW));
    /* with 8M of KV each (A's 3000 tokens need ~3.6 MB), 32M holds qw (~8.4 MB) and st (~9.2 MB)
     * together: B loads beside A */
    const char *wargv[] = {FL_WORKER, "--broker", b.be, "--stream", w.stream, "--id", "streamer", "--heartbeat-ms",
                           "250", "--redis", s_url, "--mem-budget", "32M", "--kv-budget", "8M", "--load-delay-ms",
                           S_STR(S_DELAY_MS), "--max-seqs", "4", "--stream-hwm", "4", "--stream-sndbuf", "2048", "--model",
                           pre, NULL};
    w.pid = fl_spawn(wargv, w.log);
    void *ctx = zmq_ctx_new();
    void *met = fl_sub_socket(ctx, w.stream, 1000, 0, "m/");
    /* the paced consumer: first wait on METRICS (connected), then only tokens */
    void *tok = fl_sub_socket(ctx, w.stream, 4, 1024, "m/");
    s_wait_metrics(met);
    s_wait_metrics(tok);
    zmq_setsockopt(tok, ZMQ_UNSUBSCRIBE, "m/", 2);
    zmq_setsockopt(tok, ZMQ_SUBSCRIBE, "t/", 2);
    wg_test_sleep_ms(200); /* the subscription reaches the worker before A's first token */
    void *prod = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(prod, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(prod, b.fe), 0);

    s_tokens a = {0}, bt = {0};
    s_submit_one(prod, "qw", 3000, 1, a.job_id);
    int64_t t_bsub = -1, deadline = wg_test_now_ms() + 45000, next_read = 0;
    int64_t t_metrics[256];
    int n_metrics = 0;
    while (wg_test_now_ms() < deadline) {
        int64_t now = wg_test_now_ms();
        if (a.final && bt.final && s_end_state(bt.job_id)) break;
        if (t_bsub < 0 && a.n >= 100) { /* A streams: now B's job, which must load */
            s_submit_one(prod, "st", 16, 2, bt.job_id);
            t_bsub = wg_test_now_ms();
        }
        bool due = now >= next_read;
        zmq_pollitem_t it[3] = {{met, 0, ZMQ_POLLIN, 0}, {prod, 0, ZMQ_POLLIN, 0}, {tok, 0, ZMQ_POLLIN, 0}};
        zmq_poll(it, due ? 3 : 2, due ? 50 : (long)(next_read - now));
        wg_msg_in in;
        while (fl_sub_recv(met, &in, ZMQ_DONTWAIT) != WG_ERR_AGAIN) {
            if (in.cmd == WG_CMD_METRICS && n_metrics < 256) t_metrics[n_metrics++] = wg_test_now_ms();
            wg_msg_in_clear(&in);
        }
        wg_msg_in_clear(&in);
        while (wg_msg_recv(prod, false, &in, ZMQ_DONTWAIT) == WG_OK) {
            s_prod_take(&in);
            wg_msg_in_clear(&in);
        }
        wg_msg_in_clear(&in);
        if (due && fl_sub_recv(tok, &in, ZMQ_DONTWAIT) == WG_OK) { /* one event per S_READ_MS */
            now = wg_test_now_ms();
            next_read = now + S_READ_MS;
            if (in.cmd == WG_CMD_TOKEN) {
                wg_msg_token t;
                cr_assert_eq(wg_msg_token_decode(in.body, in.body_len, &t), WG_OK, "%s", wg_errmsg());
                if (!strcmp(t.job_id, a.job_id)) s_tokens_take(&a, &t, now);
                else if (!strcmp(t.job_id, bt.job_id)) s_tokens_take(&bt, &t, now);
                wg_msg_token_clear(&t);
            }
        }
        wg_msg_in_clear(&in);
    }
    cr_assert(t_bsub >= 0, "A never streamed 100 events (got %d, log %s)", a.n, w.log);
    cr_assert(bt.n > 0 && bt.final, "B's stream never ended (%d events, log %s)", bt.n, w.log);
    cr_assert(a.final, "A's stream never ended (%d events)", a.n);
    cr_assert(!a.gap && !bt.gap, "a stream lost events: A gap=%d B gap=%d", a.gap, bt.gap);
    /* the load window as the consumer sees it */
    int64_t w0 = t_bsub, w1 = bt.t_first;
    int n_in = 0;
    int64_t prev = w0, max_gap = 0;
    for (int i = 0; i < a.n; i++) {
        if (a.t[i] < w0 || a.t[i] > w1) continue;
        n_in++;
        if (a.t[i] - prev > max_gap) max_gap = a.t[i] - prev;
        prev = a.t[i];
    }
    if (w1 - prev > max_gap) max_gap = w1 - prev;
    int m_in = 0;
    for (int i = 0; i < n_metrics; i++) m_in += t_metrics[i] >= w0 && t_metrics[i] <= w1;
    fprintf(stderr,
            "stream during load: window %lld ms (B submit -> B first token), A events in it %d (of %d), longest A gap "
            "%lld ms, METRICS in it %d\n",
            (long long)(w1 - w0), n_in, a.n, (long long)max_gap, m_in);
    cr_assert_geq(w1 - w0, S_DELAY_MS - 100, "B's first token came %lld ms after its SUBMIT: the %d ms load did not "
                  "happen there", (long long)(w1 - w0), S_DELAY_MS);
    cr_assert_gt(a.t_final, w1, "A ended before B's load did: the window is not covered (A: %d events)", a.n);
    cr_assert_geq(n_in, 200, "only %d A events during the %lld ms load", n_in, (long long)(w1 - w0));
    cr_assert_leq(max_gap, S_MAX_GAP_MS, "A's stream stalled %lld ms during the load", (long long)max_gap);
    /* one METRICS a second: a window of L ms holds at least floor(L / 1000) - 1 of them */
    cr_assert_geq(m_in, (w1 - w0) / 1000 - 1, "%d METRICS during the %lld ms load: the worker's timers stopped", m_in,
                  (long long)(w1 - w0));
    cr_assert_str_eq(s_end_state(a.job_id) ? s_end_state(a.job_id) : "(none)", "done");
    cr_assert_str_eq(s_end_state(bt.job_id), "done", "B's job must complete after its load");
    cr_assert(fl_file_has(w.log, "model=st loaded"), "B was not loaded on demand (log %s)", w.log);
    /* the broker never lost the worker, and sees both models resident */
    char *m = s_metrics_until(s_series("waggle_worker_model_loads_total", "streamer", "st"), 1, 10000);
    cr_assert_eq(fl_metric(m, "waggle_broker_workers_lost_total"), 0, "the broker lost the worker during the load");
    cr_assert_eq(fl_metric(m, "waggle_broker_workers"), 1);
    cr_assert_eq(fl_metric(m, s_series("waggle_worker_model_loads_total", "streamer", "qw")), 0, "qw was preloaded");
    cr_assert_gt(fl_metric(m, s_series("waggle_worker_model_load_seconds_total", "streamer", "st")),
                 (S_DELAY_MS - 100) / 1000.0);
    cr_assert_gt(fl_metric(m, s_series("waggle_worker_model_resident_bytes", "streamer", "qw")), 0);
    cr_assert_gt(fl_metric(m, s_series("waggle_worker_model_resident_bytes", "streamer", "st")), 0);
    cr_assert_eq(fl_metric(m, s_series("waggle_worker_model_evictions_total", "streamer", "qw")), 0);
    free(m);
    free(a.t);
    free(bt.t);
    zmq_close(met);
    zmq_close(tok);
    zmq_close(prod);
    zmq_ctx_term(ctx);
}
