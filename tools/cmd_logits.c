/* waggle logits — one forward pass over exactly the given token ids (no BOS
 * added), every position's logits written as little-endian float32
 * [n_tokens][n_vocab]. The tool conformance scripts compare against llama.cpp. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/model/wg_model.h"
#include "waggle.h"

static void s_usage(FILE *f) {
    fprintf(f, "usage: waggle logits -m MODEL --tokens ID,ID,... -o OUT [--threads N] [--device cpu|cuda:N]\n"
               "  MODEL is a GGUF file or an HF model directory; OUT gets float32 [n_tokens][n_vocab]\n");
}

/* Parse "1,2,3" into a malloc'd array. */
static int s_parse_ids(const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "waggle logits: bad token list at '%s'\n", p);
            free(v);
            return -1;
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        fprintf(stderr, "waggle logits: empty token list\n");
        free(v);
        return -1;
    }
    *ids = v;
    *n = k;
    return 0;
}

int wg_cmd_logits(int argc, char **argv) {
    const char *model = NULL, *toks = NULL, *outp = NULL;
    int threads = 2;
    const char *device = "cpu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "waggle logits: option %s needs a value\n", a);
            s_usage(stderr);
            return 2;
        }
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) model = argv[++i];
        else if (strcmp(a, "--tokens") == 0) toks = argv[++i];
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) outp = argv[++i];
        else if (strcmp(a, "--device") == 0 || strcmp(a, "-d") == 0) {
            device = argv[++i];
            if (!wg_cli_device_ok("logits", device)) return 2;
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) {
            threads = atoi(argv[++i]);
            if (threads < 1 || threads > 1024) {
                fprintf(stderr, "waggle logits: bad --threads %s\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "waggle logits: unknown option %s\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    if (!model || !toks || !outp) {
        fprintf(stderr, "waggle logits: -m, --tokens and -o are required\n");
        s_usage(stderr);
        return 2;
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    if (s_parse_ids(toks, &ids, &n)) return 2;
    wg_model_t *m = NULL;
    wg_session_t *s = NULL;
    float *logits = NULL;
    FILE *f = NULL;
    int rc = 1;
    wg_status st = wg_model_load(model, &m);
    if (st) {
        fprintf(stderr, "waggle logits: %s: %s\n", wg_strerror(st), wg_errmsg());
        goto out;
    }
    const wg_hparams_t *hp = wg_model_hparams(m);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= hp->n_vocab) {
            fprintf(stderr, "waggle logits: token id %d (position %lld) out of range [0, %d)\n", ids[i],
                    (long long)i, hp->n_vocab);
            goto out;
        }
    s = wg_session_new_on(m, threads, (int32_t)n, device);
    logits = malloc((size_t)n * (size_t)hp->n_vocab * sizeof(float));
    if (!s || !logits) {
        fprintf(stderr, "waggle logits: %s\n", s ? "out of memory" : wg_errmsg());
        goto out;
    }
    st = wg_session_eval(s, ids, n, true, logits);
    if (st) {
        fprintf(stderr, "waggle logits: %s: %s\n", wg_strerror(st), wg_errmsg());
        goto out;
    }
    f = fopen(outp, "wb");
    if (!f) {
        fprintf(stderr, "waggle logits: cannot open %s: %s\n", outp, strerror(errno));
        goto out;
    }
    /* float32 little endian: the host order on every supported target. */
    size_t cnt = (size_t)n * (size_t)hp->n_vocab;
    if (fwrite(logits, sizeof(float), cnt, f) != cnt || fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "waggle logits: write %s failed: %s\n", outp, strerror(errno));
        goto out;
    }
    f = NULL;
    rc = 0;
out:
    if (f) fclose(f);
    free(logits);
    free(ids);
    wg_session_free(&s);
    wg_model_free(&m);
    return rc;
}
