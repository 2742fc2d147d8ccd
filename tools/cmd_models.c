/* waggle models — manage the Redis model registry (worker/registry).
 *
 *   waggle models add NAME PATH --redis URL [--json] [--quiet]
 *   waggle models list --redis URL [--json]
 *   waggle models show NAME --redis URL [--json]
 *   waggle models rm NAME --redis URL
 *   waggle models verify NAME [PATH] --redis URL
 *   waggle models workers --redis URL [--json]
 *
 * --redis defaults to $WAGGLE_REDIS. Exit codes: 0 ok, 1 the operation failed
 * (the reason names the model, file or Redis endpoint), 2 usage. Hashing
 * progress goes to stderr (a line per 64 MiB) unless --quiet. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "waggle.h"
#include "worker/registry/wg_registry.h"

typedef struct prog {
    const char *name;  /* model being hashed */
    double t0;         /* start time, s */
    bool quiet;        /* no output */
} prog;

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void s_progress(void *arg, const char *file, uint64_t done, uint64_t total) {
    prog *p = arg;
    (void)file;
    if (p->quiet || total < (64ull << 20)) return; /* small files hash in a blink */
    double dt = s_now() - p->t0;
    fprintf(stderr, "waggle models: hashing %s: %5.1f%% (%llu/%llu MiB, %.0f MiB/s)\n", p->name,
            total ? 100.0 * (double)done / (double)total : 100.0, (unsigned long long)(done >> 20),
            (unsigned long long)(total >> 20), dt > 0 ? (double)done / 1048576.0 / dt : 0.0);
}

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle models add NAME PATH --redis URL [--json] [--quiet]\n"
            "       waggle models list --redis URL [--json]\n"
            "       waggle models show NAME --redis URL [--json]\n"
            "       waggle models rm NAME --redis URL\n"
            "       waggle models verify NAME [PATH] --redis URL\n"
            "       waggle models workers --redis URL [--json]\n"
            "  PATH is a GGUF file or a HuggingFace directory (config.json + *.safetensors).\n"
            "  URL is redis://[user:pass@]HOST:PORT[/db]; default $WAGGLE_REDIS.\n");
}

static void s_print_model(const wg_reg_model *m) {
    printf("name:          %s\n", m->name);
    printf("format:        %s\n", m->format);
    printf("path:          %s\n", m->path);
    printf("bytes:         %lld\n", (long long)m->bytes);
    printf("sha256:        %s\n", m->sha256);
    printf("arch:          %s\n", m->arch ? m->arch : "");
    printf("quant:         %s\n", m->quant ? m->quant : "");
    printf("dominant_type: %s\n", m->dominant_type ? m->dominant_type : "");
    printf("file_type:     %lld\n", (long long)m->file_type);
    printf("n_params:      %lld\n", (long long)m->n_params);
    printf("n_tensors:     %lld\n", (long long)m->n_tensors);
    time_t t = (time_t)(m->added_at_ms / 1000);
    struct tm tm;
    char when[64] = "";
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("added_at:      %s (%lld ms)\n", when, (long long)m->added_at_ms);
    printf("files:         %u\n", m->n_files);
    for (uint32_t i = 0; i < m->n_files; i++)
        printf("  %s  %s  size=%lld mtime_ns=%lld\n", m->files[i].sha256,
               m->files[i].name[0] ? m->files[i].name : "(file)", (long long)m->files[i].size,
               (long long)m->files[i].mtime_ns);
}

static int s_fail(const char *what) {
    fprintf(stderr, "waggle models %s: %s\n", what, wg_errmsg());
    return 1;
}

int wg_cmd_models(int argc, char **argv) {
    const char *url = getenv("WAGGLE_REDIS");
    bool json = false, quiet = false;
    static const struct option opts[] = {{"redis", required_argument, 0, 'r'}, {"json", no_argument, 0, 'j'},
                                         {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "+r:jqh", opts, NULL)) != -1) {
        switch (c) {
        case 'r': url = optarg; break;
        case 'j': json = true; break;
        case 'q': quiet = true; break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    /* options may also follow the positional words */
    char *pos[4];
    int npos = 0;
    for (int i = optind; i < argc; i++) {
        if (!strcmp(argv[i], "--redis") && i + 1 < argc) url = argv[++i];
        else if (!strncmp(argv[i], "--redis=", 8)) url = argv[i] + 8;
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--quiet")) quiet = true;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "waggle models: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (npos < 4) pos[npos++] = argv[i];
        else {
            s_usage(stderr);
            return 2;
        }
    }
    if (npos < 1) {
        s_usage(stderr);
        return 2;
    }
    const char *sub = pos[0];
    int need = !strcmp(sub, "add") ? 3 : !strcmp(sub, "show") || !strcmp(sub, "rm") ? 2
             : !strcmp(sub, "verify") ? 2 : !strcmp(sub, "list") || !strcmp(sub, "workers") ? 1 : -1;
    if (need < 0) {
        fprintf(stderr, "waggle models: unknown subcommand '%s'\n", sub);
        s_usage(stderr);
        return 2;
    }
    if (npos < need || (npos > need && !(need == 2 && !strcmp(sub, "verify") && npos == 3))) {
        s_usage(stderr);
        return 2;
    }
    if (!url || !*url) {
        fprintf(stderr, "waggle models %s: --redis URL is required (or set WAGGLE_REDIS)\n", sub);
        return 2;
    }
    wg_registry_t *r = NULL;
    if (wg_registry_connect(url, &r) != WG_OK) return s_fail(sub);
    int rc = 0;
    if (!strcmp(sub, "add")) {
        prog p = {.name = pos[1], .t0 = s_now(), .quiet = quiet};
        wg_reg_model m;
        if (wg_registry_add(r, pos[1], pos[2], s_progress, &p, &m) != WG_OK) {
            rc = s_fail("add");
        } else {
            if (json) {
                char *t = wg_reg_model_to_json(&m);
                printf("%s\n", t ? t : "{}");
                free(t);
            } else {
                printf("added %s: %s %s %s, %lld params, %lld bytes, sha256 %s\n", m.name, m.format,
                       m.arch, m.quant, (long long)m.n_params, (long long)m.bytes, m.sha256);
            }
            wg_reg_model_clear(&m);
        }
    } else if (!strcmp(sub, "show")) {
        wg_reg_model m;
        if (wg_registry_get(r, pos[1], &m) != WG_OK) {
            rc = s_fail("show");
        } else {
            if (json) {
                char *t = wg_reg_model_to_json(&m);
                printf("%s\n", t ? t : "{}");
                free(t);
            } else {
                s_print_model(&m);
            }
            wg_reg_model_clear(&m);
        }
    } else if (!strcmp(sub, "rm")) {
        if (wg_registry_rm(r, pos[1]) != WG_OK) rc = s_fail("rm");
        else if (!quiet) printf("removed %s\n", pos[1]);
    } else if (!strcmp(sub, "verify")) {
        prog p = {.name = pos[1], .t0 = s_now(), .quiet = quiet};
        if (wg_registry_verify(r, pos[1], npos == 3 ? pos[2] : NULL, s_progress, &p) != WG_OK) {
            rc = s_fail("verify");
        } else {
            wg_registry_stats s;
            wg_registry_get_stats(r, &s);
            printf("ok %s (files re-hashed: %llu, reused: %llu)\n", pos[1], (unsigned long long)s.files_hashed,
                   (unsigned long long)s.cache_hits);
        }
    } else if (!strcmp(sub, "list")) {
        char **names = NULL;
        uint32_t n = 0;
        if (wg_registry_list(r, &names, &n) != WG_OK) {
            rc = s_fail("list");
        } else {
            json_t *arr = json ? json_array() : NULL;
            if (!json) printf("%-24s %-5s %-10s %-8s %12s %14s  %s\n", "NAME", "FMT", "ARCH", "QUANT", "PARAMS", "BYTES", "SHA256");
            for (uint32_t i = 0; i < n; i++) {
                wg_reg_model m;
                if (wg_registry_get(r, names[i], &m) != WG_OK) {
                    fprintf(stderr, "waggle models list: %s\n", wg_errmsg());
                    rc = 1;
                    continue;
                }
                if (json) {
                    char *t = wg_reg_model_to_json(&m);
                    json_error_t je;
                    json_t *o = t ? json_loads(t, 0, &je) : NULL;
                    if (o) json_array_append_new(arr, o);
                    free(t);
                } else {
                    printf("%-24s %-5s %-10s %-8s %12lld %14lld  %.12s\n", m.name, m.format, m.arch, m.quant,
                           (long long)m.n_params, (long long)m.bytes, m.sha256);
                }
                wg_reg_model_clear(&m);
            }
            if (json) {
                char *t = json_dumps(arr, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                printf("%s\n", t ? t : "[]");
                free(t);
                json_decref(arr);
            }
            wg_registry_names_free(&names, &n);
        }
    } else { /* workers */
        wg_reg_worker *ws = NULL;
        uint32_t n = 0;
        if (wg_registry_worker_list(r, &ws, &n) != WG_OK) {
            rc = s_fail("workers");
        } else {
            json_t *arr = json ? json_array() : NULL;
            if (!json) printf("%-28s %-8s %14s %14s %6s  %-28s %s\n", "ID", "DEVICE", "MEM_BUDGET", "MEM_FREE", "SLOTS", "STREAM", "MODELS");
            for (uint32_t i = 0; i < n; i++) {
                const wg_reg_worker *w = &ws[i];
                if (json) {
                    json_t *ms = json_array();
                    for (uint32_t k = 0; k < w->n_models; k++) json_array_append_new(ms, json_string(w->models[k]));
                    json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:i,s:i,s:I,s:I,s:o}", "id", w->id,
                        "device", w->device ? w->device : "", "stream_endpoint", w->stream_endpoint ? w->stream_endpoint : "",
                        "mem_budget", (json_int_t)w->mem_budget, "mem_free", (json_int_t)w->mem_free,
                        "credits", (int)w->credits, "free_slots", (int)w->free_slots, "ts_ms", (json_int_t)w->ts_ms,
                        "ttl_s", (json_int_t)w->ttl_s, "models", ms));
                } else {
                    printf("%-28s %-8s %14llu %14llu %3u/%-3u %-28s", w->id, w->device ? w->device : "",
                           (unsigned long long)w->mem_budget, (unsigned long long)w->mem_free, w->free_slots,
                           w->credits, w->stream_endpoint ? w->stream_endpoint : "");
                    for (uint32_t k = 0; k < w->n_models; k++) printf("%s%s", k ? "," : " ", w->models[k]);
                    printf("\n");
                }
            }
            if (json) {
                char *t = json_dumps(arr, JSON_INDENT(2));
                printf("%s\n", t ? t : "[]");
                free(t);
                json_decref(arr);
            }
            wg_reg_workers_free(&ws, &n);
        }
    }
    wg_registry_destroy(&r);
    return rc;
}
