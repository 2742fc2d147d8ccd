/* test_ops_docs — the operations files cannot drift from the binaries.
 *
 * Every `--flag` that `waggle-broker --help` / `waggle-worker --help` prints
 * must be documented in ops/config/{broker,worker}.env.example (a `# --flag`
 * comment and a `WG_X=--flag...` line), and that WG_X must be passed by the
 * systemd unit's ExecStart; the other way round, every WG_X=--flag line of
 * an example must name a flag the binary still has. The Grafana dashboard
 * and the Prometheus config must only use metric names the broker exports
 * (looked up in broker/wg_broker.c; test_ops_cluster checks them against a
 * live /metrics too). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wg_test.h"

#define OPS_BROKER WG_BINARY_DIR "/broker/waggle-broker"
#define OPS_WORKER WG_BINARY_DIR "/worker/waggle-worker"

/* Whole file as a malloc'd string (fails the test if unreadable). */
static char *s_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    cr_assert(b);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* stdout of a command as a malloc'd string. */
static char *s_run(const char *cmd) {
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t cap = 1 << 16, len = 0, n;
    char *b = malloc(cap);
    while ((n = fread(b + len, 1, cap - len - 1, p)) > 0) len += n;
    b[len] = '\0';
    int rc = pclose(p);
    cr_assert_eq(rc, 0, "%s exited %d", cmd, rc);
    return b;
}

/* Distinct `--flag` tokens of a help text (without "--help"). */
static int s_flags(const char *help, char flags[][64], int max) {
    int n = 0;
    for (const char *p = help; (p = strstr(p, "--"));) {
        if (p > help && (isalnum((unsigned char)p[-1]) || p[-1] == '-')) {
            p += 2;
            continue;
        }
        size_t l = 2;
        while (isalnum((unsigned char)p[l]) || p[l] == '-') l++;
        if (l > 2 && l < 64 && !(l == 6 && strncmp(p, "--help", 6) == 0)) {
            char f[64];
            memcpy(f, p, l);
            f[l] = '\0';
            int dup = 0;
            for (int i = 0; i < n; i++) dup |= strcmp(flags[i], f) == 0;
            if (!dup && n < max) strcpy(flags[n++], f);
        }
        p += l;
    }
    return n;
}

/* Does `text` hold `needle` followed by a character not allowed in a flag name? */
static int s_has_word(const char *text, const char *needle) {
    size_t l = strlen(needle);
    for (const char *p = text; (p = strstr(p, needle)); p++) {
        char c = p[l];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_')) return 1;
    }
    return 0;
}

/* Name of the variable assigned `flag` in an env example: a line
 * `[#]WG_X=flag[=...]`. Returns 0 when none. */
static int s_var_of(const char *env, const char *flag, char *var, size_t cap) {
    size_t fl = strlen(flag);
    for (const char *line = env; line && *line;) {
        const char *e = strchr(line, '\n');
        const char *p = line;
        if (*p == '#') p++;
        if (strncmp(p, "WG_", 3) == 0) {
            const char *eq = strchr(p, '=');
            if (eq && (!e || eq < e) && strncmp(eq + 1, flag, fl) == 0 &&
                (eq[1 + fl] == '=' || eq[1 + fl] == '\n' || eq[1 + fl] == ' ' || eq[1 + fl] == '\0')) {
                size_t vl = (size_t)(eq - p);
                cr_assert_lt(vl, cap);
                memcpy(var, p, vl);
                var[vl] = '\0';
                return 1;
            }
        }
        line = e ? e + 1 : NULL;
    }
    return 0;
}

static void s_check(const char *bin, const char *env_rel, const char *unit_rel) {
    char cmd[512], path[512];
    snprintf(cmd, sizeof cmd, "%s --help", bin);
    char *help = s_run(cmd);
    snprintf(path, sizeof path, "%s/%s", WG_SOURCE_DIR, env_rel);
    char *env = s_slurp(path);
    snprintf(path, sizeof path, "%s/%s", WG_SOURCE_DIR, unit_rel);
    char *unit = s_slurp(path);
    const char *exec = strstr(unit, "\nExecStart=");
    cr_assert(exec, "%s has no ExecStart", unit_rel);

    static char flags[128][64];
    int n = s_flags(help, flags, 128);
    /* Guard against a --help that printed nothing useful: both binaries have >10 flags. */
    cr_assert_gt(n, 10, "%s --help printed only %d flags:\n%s", bin, n, help);
    for (int i = 0; i < n; i++) {
        char doc[80], var[64], ref[72];
        snprintf(doc, sizeof doc, "# %s", flags[i]);
        cr_expect(s_has_word(env, doc), "%s: flag %s of `%s --help` is not documented (no '%s' line)", env_rel,
                  flags[i], bin, doc);
        if (!s_var_of(env, flags[i], var, sizeof var)) {
            cr_expect_fail("%s: no WG_X=%s line for flag %s", env_rel, flags[i], flags[i]);
            continue;
        }
        snprintf(ref, sizeof ref, "$%s", var);
        cr_expect(s_has_word(exec, ref), "%s: ExecStart does not pass %s (flag %s)", unit_rel, ref, flags[i]);
    }
    /* The other way: no documented flag the binary no longer has. */
    for (const char *line = env; line && *line;) {
        const char *e = strchr(line, '\n');
        const char *p = line + (*line == '#');
        const char *eq = strncmp(p, "WG_", 3) == 0 ? strchr(p, '=') : NULL;
        if (eq && (!e || eq < e) && strncmp(eq + 1, "--", 2) == 0) {
            char f[64];
            size_t l = strcspn(eq + 1, "= \n");
            cr_assert_lt(l, sizeof f);
            memcpy(f, eq + 1, l);
            f[l] = '\0';
            cr_expect(s_has_word(help, f), "%s documents %s, which `%s --help` does not list", env_rel, f, bin);
        }
        line = e ? e + 1 : NULL;
    }
    free(help);
    free(env);
    free(unit);
}

Test(ops_docs, broker_flags_all_in_env_example_and_unit) {
    s_check(OPS_BROKER, "ops/config/broker.env.example", "ops/systemd/waggle-broker.service");
}

Test(ops_docs, worker_flags_all_in_env_example_and_unit) {
    s_check(OPS_WORKER, "ops/config/worker.env.example", "ops/systemd/waggle-worker@.service");
}

/* Value of `key=` in a unit file (first occurrence) or NULL. */
static const char *s_unit_val(const char *unit, const char *key, char *out, size_t cap) {
    char k[64];
    snprintf(k, sizeof k, "\n%s=", key);
    const char *p = strstr(unit, k);
    if (!p) return NULL;
    p += strlen(k);
    size_t l = strcspn(p, "\n");
    if (l >= cap) l = cap - 1;
    memcpy(out, p, l);
    out[l] = '\0';
    return out;
}

Test(ops_docs, units_restart_drain_and_limits) {
    char path[512], v[256];
    static const char *units[] = {"ops/systemd/waggle-broker.service", "ops/systemd/waggle-worker@.service"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", WG_SOURCE_DIR, units[i]);
        char *u = s_slurp(path);
        cr_expect_str_eq(s_unit_val(u, "Restart", v, sizeof v) ? v : "", "on-failure", "%s Restart", units[i]);
        cr_expect_str_eq(s_unit_val(u, "KillSignal", v, sizeof v) ? v : "", "SIGTERM", "%s KillSignal", units[i]);
        cr_expect(s_unit_val(u, "LimitNOFILE", v, sizeof v) && atol(v) >= 65536, "%s LimitNOFILE", units[i]);
        cr_expect(s_unit_val(u, "NoNewPrivileges", v, sizeof v) && strcmp(v, "yes") == 0, "%s hardening", units[i]);
        cr_expect(s_unit_val(u, "User", v, sizeof v) || strstr(u, "\nDynamicUser=yes"), "%s runs as root", units[i]);
        if (i == 0) {
            cr_expect(strstr(u, "\nEnvironmentFile=/etc/waggle/broker.env\n"), "broker env file");
        } else {
            cr_expect(strstr(u, "\nEnvironmentFile=/etc/waggle/worker-%i.env\n"), "worker per-instance env file");
            /* The drain must fit in the stop timeout: default --drain-timeout-ms from --help. */
            char *help = s_run(OPS_WORKER " --help");
            const char *d = strstr(help, "--drain-timeout-ms");
            cr_assert(d, "worker --help has no --drain-timeout-ms");
            const char *def = strstr(d, "default ");
            cr_assert(def);
            long drain_ms = atol(def + 8);
            cr_assert_gt(drain_ms, 0);
            cr_assert(s_unit_val(u, "TimeoutStopSec", v, sizeof v), "worker unit has no TimeoutStopSec");
            cr_expect_gt(atol(v) * 1000, drain_ms + 5000, "TimeoutStopSec=%s s does not cover a %ld ms drain", v,
                         drain_ms);
            free(help);
        }
        free(u);
    }
}

/* Every waggle_* metric name in `text` must be exported by the broker: the
 * broker source prints each family as a literal "waggle_..." string. */
static void s_metric_names_exported(const char *what, const char *text, const char *broker_src, int *n_checked) {
    for (const char *p = text; (p = strstr(p, "waggle_"));) {
        if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '/' || p[-1] == '-')) {
            p += 7;
            continue;
        }
        size_t l = 7;
        while (isalnum((unsigned char)p[l]) || p[l] == '_') l++;
        char name[96], quoted[100], spaced[100];
        if (l >= sizeof name) l = sizeof name - 1;
        memcpy(name, p, l);
        name[l] = '\0';
        p += l;
        /* Job/instance label values and file names are not metrics. */
        if (strncmp(name, "waggle_broker_", 14) != 0 && strncmp(name, "waggle_worker_", 14) != 0) continue;
        snprintf(quoted, sizeof quoted, "%s{", name);
        snprintf(spaced, sizeof spaced, "%s ", name);
        cr_expect(strstr(broker_src, quoted) || strstr(broker_src, spaced),
                  "%s uses metric %s, which broker/wg_broker.c does not export", what, name);
        (*n_checked)++;
    }
}

Test(ops_docs, dashboard_and_prometheus_use_exported_metrics) {
    char path[512];
    snprintf(path, sizeof path, "%s/broker/wg_broker.c", WG_SOURCE_DIR);
    char *src = s_slurp(path);
    snprintf(path, sizeof path, "%s/ops/grafana/waggle-dashboard.json", WG_SOURCE_DIR);
    json_error_t jerr;
    json_t *dash = json_load_file(path, 0, &jerr);
    cr_assert(dash, "dashboard JSON does not parse: %s line %d", jerr.text, jerr.line);
    json_t *panels = json_object_get(dash, "panels");
    cr_assert(json_is_array(panels) && json_array_size(panels) >= 5, "dashboard needs >= 5 panels");
    json_decref(dash);
    char *text = s_slurp(path);
    int n = 0;
    s_metric_names_exported("waggle-dashboard.json", text, src, &n);
    cr_expect_gt(n, 5, "dashboard references only %d waggle metrics", n);
    /* The panels the operations issue asks for. */
    static const char *need[] = {"waggle_broker_queue_jobs", "waggle_broker_jobs_done_total",
                                 "waggle_worker_tokens_per_second", "waggle_worker_kv_usage",
                                 "waggle_worker_model_resident"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        cr_expect(strstr(text, need[i]), "dashboard has no panel on %s", need[i]);
    free(text);
    snprintf(path, sizeof path, "%s/ops/prometheus/prometheus.yml", WG_SOURCE_DIR);
    text = s_slurp(path);
    cr_expect(strstr(text, "metrics_path: /metrics"), "prometheus.yml must scrape /metrics");
    n = 0;
    s_metric_names_exported("prometheus.yml", text, src, &n);
    free(text);
    free(src);
}
