/* Tokenizer conformance: every .inp/.out case and every .cases.json case of
 * the corpus vocabularies, against llama.cpp's ids; plus decode round trips. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/formats/wg_gguf.h"
#include "engine/tokenizer/wg_tok.h"
#include "wg_test.h"

static char *s_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) p[n] = 0;
    if (len) *len = (size_t)n;
    return p;
}

static void s_print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s [", label);
    for (size_t i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? ", " : "", ids[i]);
    fprintf(stderr, "]\n");
}

/* Compare one case; prints the text, expected and got ids on a mismatch. */
static int s_check(const char *vocab, const wg_tok_t *t, const char *text, size_t len, bool add_special,
                   const int32_t *want, size_t n_want) {
    int32_t *got = NULL;
    size_t n_got = 0;
    wg_status st = wg_tok_encode(t, text, len, add_special, false, &got, &n_got);
    if (st != WG_OK) {
        fprintf(stderr, "%s: encode failed: %s\n", vocab, wg_errmsg());
        return 1;
    }
    int bad = n_got != n_want || (n_want && memcmp(got, want, n_want * sizeof *want) != 0);
    if (bad) {
        fprintf(stderr, "%s: MISMATCH add_special=%d text=\"%.*s\"\n", vocab, add_special, (int)len, text);
        s_print_ids("expected", want, n_want);
        s_print_ids("got     ", got, n_got);
    }
    free(got);
    return bad;
}

/* decode(encode(text)) == text. Vocabularies that clean up spaces on decode
 * (HF clean_up_tokenization_spaces) are checked on the concatenated pieces. */
static int s_roundtrip(const char *vocab, const wg_tok_t *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (wg_tok_encode(t, text, len, false, false, &ids, &n) != WG_OK) return 1;
    char *dec = NULL;
    wg_status st = wg_tok_decode(t, ids, n, false, &dec);
    int bad = st != WG_OK;
    if (!bad) {
        /* rebuild from pieces (no space clean-up) */
        size_t cap = len * 4 + 64, used = 0;
        char *cat = malloc(cap);
        for (size_t i = 0; i < n; i++) {
            char buf[512];
            size_t pl = wg_tok_piece(t, ids[i], false, buf, sizeof buf);
            const char *p = buf;
            if (i == 0 && wg_tok_kind(t) == WG_TOK_SPM && pl && buf[0] == ' ') { /* the SPM prefix space */
                p++;
                pl--;
            }
            if (used + pl < cap) memcpy(cat + used, p, pl);
            used += pl;
        }
        bool via_decode = used == strlen(dec) && memcmp(cat, dec, used) == 0;
        bad = !(used == len && memcmp(cat, text, len) == 0);
        if (via_decode && !bad) bad = strlen(dec) != len || memcmp(dec, text, len) != 0;
        if (bad) fprintf(stderr, "%s: ROUNDTRIP text=\"%.*s\" decoded=\"%s\"\n", vocab, (int)len, text, dec);
        free(cat);
    }
    free(dec);
    free(ids);
    return bad;
}

static void s_run_vocab(const char *name) {
    WG_REQUIRE_CORPUS();
    char rel[512];
    snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.gguf", name);
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK, "open %s: %s", rel, wg_errmsg());
    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_from_gguf(g, &t), WG_OK, "tokenizer %s: %s", name, wg_errmsg());
    int fails = 0, total = 0, rt_fails = 0;
    bool roundtrip = wg_tok_kind(t) == WG_TOK_SPM || wg_tok_kind(t) == WG_TOK_BPE;

    /* .inp / .out */
    char inp_rel[600], out_rel[600];
    snprintf(inp_rel, sizeof inp_rel, "%s.inp", rel);
    snprintf(out_rel, sizeof out_rel, "%s.out", rel);
    size_t inp_len = 0;
    char *inp = s_slurp(wg_test_corpus(inp_rel), &inp_len);
    char *outp = inp ? s_slurp(wg_test_corpus(out_rel), NULL) : NULL;
    if (inp) {
        cr_assert_not_null(outp, "%s exists but %s does not", inp_rel, out_rel);
        const char *sep = "\n__ggml_vocab_test__\n";
        size_t sl = strlen(sep);
        char *p = inp, *line = outp;
        int n_inputs = 0;
        for (;;) {
            char *e = memmem(p, inp_len - (size_t)(p - inp), sep, sl);
            if (!e) break;
            char *nl = strchr(line, '\n');
            cr_assert_not_null(nl, "%s: fewer lines than inputs", out_rel);
            *nl = 0;
            int32_t want[4096];
            size_t nw = 0;
            char *q = line;
            while (*q) {
                char *end;
                long v = strtol(q, &end, 10);
                if (end == q) {
                    q++;
                    continue;
                }
                want[nw++] = (int32_t)v;
                q = end;
            }
            fails += s_check(name, t, p, (size_t)(e - p), false, want, nw);
            if (roundtrip) rt_fails += s_roundtrip(name, t, p, (size_t)(e - p));
            total++;
            n_inputs++;
            line = nl + 1;
            p = e + sl;
        }
        cr_assert_gt(n_inputs, 10, "%s: only %d inputs parsed", inp_rel, n_inputs);
    }
    free(inp);
    free(outp);

    /* .cases.json */
    snprintf(rel, sizeof rel, "tokenizer/ggml-vocab-%s.cases.json", name);
    json_error_t je;
    json_t *root = json_load_file(wg_test_corpus(rel), 0, &je);
    cr_assert_not_null(root, "%s: %s", rel, je.text);
    json_t *cases = json_object_get(root, "cases");
    cr_assert(json_is_array(cases) && json_array_size(cases) >= 60, "%s: cases", rel);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        json_t *jt = json_object_get(c, "text");
        const char *text = json_string_value(jt);
        size_t len = json_string_length(jt);
        bool add = json_is_true(json_object_get(c, "add_special"));
        json_t *jids = json_object_get(c, "ids");
        size_t nw = json_array_size(jids);
        int32_t *want = malloc((nw + 1) * sizeof *want);
        for (size_t k = 0; k < nw; k++) want[k] = (int32_t)json_integer_value(json_array_get(jids, k));
        fails += s_check(name, t, text, len, add, want, nw);
        if (roundtrip && !add) rt_fails += s_roundtrip(name, t, text, len);
        total++;
        free(want);
    }
    json_decref(root);
    wg_tok_free(&t);
    wg_gguf_close(&g);
    cr_expect_eq(fails, 0, "%s: %d of %d cases differ from llama.cpp", name, fails, total);
    cr_expect_eq(rt_fails, 0, "%s: %d decode round trips failed", name, rt_fails);
}

Test(vectors, llama_spm) { s_run_vocab("llama-spm"); }
Test(vectors, phi_3) { s_run_vocab("phi-3"); }
Test(vectors, baichuan) { s_run_vocab("baichuan"); }
Test(vectors, stories260k) { s_run_vocab("stories260k"); }
Test(vectors, gpt_2) { s_run_vocab("gpt-2"); }
Test(vectors, gpt_neox) { s_run_vocab("gpt-neox"); }
Test(vectors, mpt) { s_run_vocab("mpt"); }
Test(vectors, stablelm) { s_run_vocab("stablelm"); }
Test(vectors, starcoder) { s_run_vocab("starcoder"); }
Test(vectors, refact) { s_run_vocab("refact"); }
Test(vectors, falcon) { s_run_vocab("falcon"); }
Test(vectors, deepseek_llm) { s_run_vocab("deepseek-llm"); }
Test(vectors, deepseek_coder) { s_run_vocab("deepseek-coder"); }
Test(vectors, bert_bge) { s_run_vocab("bert-bge"); }
