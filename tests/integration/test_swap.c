/* Worker residency and hot-swap end to end (issue 6): a real redis-server,
 * waggle-broker --require-registered and waggle-worker --mem-budget processes
 * on loopback, models registered with `waggle models add`. Three corpus
 * models with a budget that holds one at a time; results are compared with
 * `waggle run --model` on the same jobs (greedy). Every wait has a timeout;
 * every process dies with the test (fleet_harness.h). */
#include "fleet_harness.h"

#define S_ST "trained/stories260K-f32.gguf"
#define S_LL "models/llama/llama-Q8_0.gguf"
#define S_QW "models/qwen2/qwen2-f32.gguf"
/* Resident bytes with --kv-budget 1M: stories ~2.2 MB, llama ~2.5 MB, qwen2 ~1.4 MB:
 * each fits alone, no two fit together. */
#define S_BUDGET "2600K"

static char s_url[64];

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
    const char *bx[] = {"--require-registered", NULL};
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
    /* flip bytes in the middle of the tensor data; size unchanged */
    FILE *f = fopen(copy, "r+b");
    cr_assert(f);
    fseek(f, 600000, SEEK_SET);
    unsigned char buf[64];
    cr_assert_eq(fread(buf, 1, sizeof buf, f), sizeof buf);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] ^= 0x5a;
    fseek(f, 600000, SEEK_SET);
    fwrite(buf, 1, sizeof buf, f);
    fclose(f);
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
    wg_test_sleep_ms(1200); /* the slow worker got the jobs and is inside the load */
    cr_assert(fl_file_has(w1.log, "worker=slow") && !fl_file_has(w1.log, "model=ll loaded"),
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
    /* a leaked model per cycle would add >= 100 x 1.2 MB; allow 8 MB of allocator noise */
    cr_assert_leq(after - before, 8192, "RSS grew %ld kB over %lld loads", after - before, loads1 - loads0);
}
