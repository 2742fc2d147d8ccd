/* bench_json — `waggle bench json -m MODEL`: the cost of JSON mode's token
 * masks over a model's vocabulary.
 *
 * A mask is a depth-first walk of the vocabulary trie from the recognizer's
 * state, skipping the subtrees it refuses (inside a plain string, a stored
 * set of always-allowed tokens plus a walk of the others), then -inf on
 * every refused logit. The reference (roofline) is one pass writing every
 * logit, the least any mask's application costs. Reported per state: the
 * time to build and apply a mask (no cache), to apply a cached one, and the
 * tokens allowed. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "common/wg_status.h"
#include "engine/formats/wg_gguf.h"
#include "engine/sampler/wg_json.h"
#include "engine/tokenizer/wg_tok.h"

static size_t s_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    return wg_tok_piece((const wg_tok_t *)ctx, id, false, buf, cap);
}

static void s_usage(FILE *f) {
    fprintf(f, "usage: waggle bench json -m MODEL.gguf [--reps 20] [--json]   (a vocabulary-only GGUF will do)\n"
               "  JSON mode's token masks over the model's vocabulary: trie build time, and per\n"
               "  recognizer state the time to build a mask, to apply a cached one, and the\n"
               "  tokens allowed; the reference is one pass over the logits.\n");
}

/* Text before each measured state. */
static const char *const s_states[] = {
    "",                       /* start: whitespace or '{' */
    "{",                      /* a key or '}' */
    "{\"",                    /* inside a key */
    "{\"name",                /* inside a key, after letters */
    "{\"name\"",              /* ':' */
    "{\"name\":",             /* a value */
    "{\"name\": \"Al",        /* inside a string value */
    "{\"name\": \"Al\"",      /* ',' or '}' */
    "{\"n\": 12",             /* inside a number */
    "{\"n\": [1, ",           /* an array item */
    "{\"n\": tr",             /* inside a literal */
    "{\"a\": {\"b\": [\n    ", /* after a line break and indentation */
};

int wg_bench_json(int argc, char **argv) {
    const char *model = NULL;
    int reps = 20, json_out = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json_out = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            s_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "waggle bench json: unknown argument '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        }
    }
    if (!model || reps < 1 || reps > 100000) {
        s_usage(stderr);
        return 2;
    }
    wg_gguf_t *gg = NULL;
    wg_tok_t *tok = NULL;
    wg_json_vocab_t *v = NULL;
    float *logits = NULL;
    double *t = NULL;
    json_t *rows = NULL;
    int rc = 1;
    /* Only the tokenizer is needed: a vocabulary-only GGUF works too. */
    if (wg_gguf_open(model, &gg) || wg_tok_from_gguf(gg, &tok)) {
        fprintf(stderr, "waggle bench json: %s: %s\n", model, wg_errmsg());
        goto out;
    }
    const int32_t n_vocab = wg_tok_n_vocab(tok);
    double t0 = wg_bench_now();
    if (wg_json_vocab_new(n_vocab, s_piece, tok, &v)) {
        fprintf(stderr, "waggle bench json: %s\n", wg_errmsg());
        goto out;
    }
    const double build_ms = (wg_bench_now() - t0) * 1e3;
    /* one-byte tokens spell the text before each state */
    int32_t byte_tok[256];
    for (int c = 0; c < 256; c++) byte_tok[c] = -1;
    char b[4];
    for (int32_t id = 0; id < n_vocab; id++)
        if (wg_tok_piece(tok, id, false, b, sizeof b) == 1 && byte_tok[(unsigned char)b[0]] < 0)
            byte_tok[(unsigned char)b[0]] = id;
    logits = malloc((size_t)n_vocab * sizeof *logits);
    t = malloc((size_t)reps * sizeof *t);
    rows = json_array();
    if (!logits || !t || !rows) goto out;
    /* Reference: one pass writing every logit, the floor of applying any mask. */
    for (int r = 0; r < reps; r++) {
        const double a = wg_bench_now();
        for (int32_t i = 0; i < n_vocab; i++) ((volatile float *)logits)[i] = 0.0f;
        t[r] = (wg_bench_now() - a) * 1e6;
    }
    qsort(t, (size_t)reps, sizeof *t, wg_bench_cmp_double);
    const double pass_us = t[reps / 2];
    const size_t n_states = sizeof s_states / sizeof s_states[0];
    for (size_t k = 0; k < n_states; k++) {
        int32_t allowed = 0;
        double hit_us = 0.0;
        for (int r = 0; r < reps; r++) {
            wg_json_guide_t *g = wg_json_guide_new(v);
            if (!g) goto out;
            for (const char *p = s_states[k]; *p; p++) wg_json_guide_accept(g, byte_tok[(unsigned char)*p]);
            for (int32_t i = 0; i < n_vocab; i++) logits[i] = 0.0f;
            const double a = wg_bench_now();
            allowed = wg_json_guide_mask(g, logits);
            const double mid = wg_bench_now();
            wg_json_guide_mask(g, logits);
            hit_us += (wg_bench_now() - mid) * 1e6;
            t[r] = (mid - a) * 1e6;
            wg_json_guide_free(&g);
        }
        qsort(t, (size_t)reps, sizeof *t, wg_bench_cmp_double);
        const double build_us = t[reps / 2];
        hit_us /= reps;
        json_array_append_new(rows, json_pack("{s:s, s:i, s:f, s:f}", "text_before", s_states[k], "allowed_tokens",
                                              allowed, "mask_build_us", build_us, "cached_mask_us", hit_us));
        if (!json_out)
            printf("  %-24s allowed %6d of %d  build %8.1f us  cached %6.1f us\n", s_states[k], allowed, n_vocab,
                   build_us, hit_us);
    }
    if (json_out) {
        json_t *doc = json_pack("{s:s, s:s, s:i, s:I, s:f, s:f, s:o}", "benchmark", "json_mode_masks", "model", model,
                                "n_vocab", n_vocab, "trie_nodes", (json_int_t)wg_json_vocab_nodes(v), "trie_build_ms",
                                build_ms, "roofline_logit_pass_us", pass_us, "states", rows);
        rows = NULL;
        char *s = json_dumps(doc, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        json_decref(doc);
    } else {
        printf("waggle bench json: %s: %d tokens, %zu trie nodes, trie built in %.1f ms; reference: one pass over "
               "the logits %.1f us\n",
               model, n_vocab, wg_json_vocab_nodes(v), build_ms, pass_us);
    }
    rc = 0;
out:
    json_decref(rows);
    free(logits);
    free(t);
    wg_json_vocab_free(&v);
    wg_tok_free(&tok);
    wg_gguf_close(&gg);
    return rc;
}
