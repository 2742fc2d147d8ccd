/* tokenizer.json loading: a tokenizer.json written from the gpt-2 GGUF
 * vocabulary must give the same ids as the GGUF tokenizer; an SPM-style
 * (byte_fallback) tokenizer.json built by hand must merge by rank and fall
 * back to bytes. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "engine/tokenizer/wg_tok.h"
#include "wg_test.h"

static void s_expect_same(const wg_tok_t *a, const wg_tok_t *b, const char *text, size_t len, int *bad) {
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    cr_assert_eq(wg_tok_encode(a, text, len, false, true, &x, &nx), WG_OK);
    cr_assert_eq(wg_tok_encode(b, text, len, false, true, &y, &ny), WG_OK);
    if (nx != ny || memcmp(x, y, nx * sizeof *x) != 0) {
        fprintf(stderr, "json/gguf differ on \"%.*s\": %zu vs %zu ids\n", (int)len, text, nx, ny);
        (*bad)++;
    }
    free(x);
    free(y);
}

Test(json, gpt2_json_matches_gguf) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus("tokenizer/ggml-vocab-gpt-2.gguf"), &g), WG_OK, "%s", wg_errmsg());
    wg_tok_t *tg = NULL;
    cr_assert_eq(wg_tok_from_gguf(g, &tg), WG_OK, "%s", wg_errmsg());

    wg_gguf_vtype_t et;
    uint64_t n, nm;
    const wg_gguf_value_t *tok, *mer;
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, &tok), WG_OK);
    cr_assert_eq(wg_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm, &mer), WG_OK);
    json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
    for (uint64_t i = 0; i < n; i++) {
        if (strcmp(tok[i].v.str.ptr, "<|endoftext|>") == 0) {
            json_array_append_new(added, json_pack("{s:I,s:s,s:b}", "id", (json_int_t)i, "content",
                                                   tok[i].v.str.ptr, "special", 1));
        } else {
            json_object_set_new(vocab, tok[i].v.str.ptr, json_integer((json_int_t)i));
        }
    }
    for (uint64_t i = 0; i < nm; i++) {
        const char *m = mer[i].v.str.ptr;
        if (i % 2) { /* both spellings: "a b" and ["a", "b"] */
            json_array_append_new(merges, json_string(m));
        } else {
            const char *sp = strchr(m + 1, ' ');
            char *l = strndup(m, (size_t)(sp - m));
            json_array_append_new(merges, json_pack("[s,s]", l, sp + 1));
            free(l);
        }
    }
    json_t *root = json_pack("{s:o,s:{s:s,s:b,s:b},s:{s:s,s:o,s:o,s:b}}", "added_tokens", added, "pre_tokenizer",
                             "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1, "model", "type", "BPE",
                             "vocab", vocab, "merges", merges, "byte_fallback", 0);
    cr_assert_not_null(root);
    char dir[] = "/tmp/wg_tokjson_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);

    wg_tok_t *tj = NULL;
    cr_assert_eq(wg_tok_from_json(path, &tj), WG_OK, "%s", wg_errmsg());
    unlink(path);
    rmdir(dir);
    cr_assert_eq(wg_tok_kind(tj), WG_TOK_BPE);
    cr_assert_eq(wg_tok_n_vocab(tj), wg_tok_n_vocab(tg));
    cr_assert(wg_tok_is_eog(tj, 50256));

    int bad = 0, count = 0;
    json_error_t je;
    json_t *cases = json_load_file(wg_test_corpus("tokenizer/ggml-vocab-gpt-2.cases.json"), 0, &je);
    cr_assert_not_null(cases);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(cases, "cases"), i, c) {
        json_t *t = json_object_get(c, "text");
        s_expect_same(tj, tg, json_string_value(t), json_string_length(t), &bad);
        count++;
    }
    json_decref(cases);
    const char *extra = "Hello <|endoftext|> world 12345 ''' \n\n  x";
    s_expect_same(tj, tg, extra, strlen(extra), &bad);
    cr_assert_gt(count, 50);
    cr_assert_eq(bad, 0, "%d texts differ between tokenizer.json and GGUF", bad);
    wg_tok_free(&tj);
    wg_tok_free(&tg);
    wg_gguf_close(&g);
}

/* byte_fallback BPE: "▁" for spaces (Prepend normaliser), merges by rank,
 * <0xNN> for characters outside the vocabulary. */
Test(json, spm_style_byte_fallback) {
    char dir[] = "/tmp/wg_tokjson_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    json_t *vocab = json_object();
    const char *base[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) json_object_set_new(vocab, base[i], json_integer(i));
    for (int b = 0; b < 256; b++) {
        char k[8];
        snprintf(k, sizeof k, "<0x%02X>", b);
        json_object_set_new(vocab, k, json_integer(3 + b));
    }
    const char *pieces[] = {"\xe2\x96\x81", "a", "b", "c", "ab", "\xe2\x96\x81" "ab", "bc", "abc"};
    for (int i = 0; i < 8; i++) json_object_set_new(vocab, pieces[i], json_integer(259 + i));
    /* ranks: "a b" first, then "▁ ab", then "b c"; "ab c" last */
    json_t *merges = json_pack("[s,s,s,s]", "a b", "\xe2\x96\x81 ab", "b c", "ab c");
    json_t *root = json_pack(
        "{s:[{s:i,s:s,s:b},{s:i,s:s,s:b}],s:{s:s,s:[{s:s,s:s},{s:s,s:{s:s},s:s}]},s:n,s:{s:s,s:o,s:o,s:b,s:s}}",
        "added_tokens", "id", 1, "content", "<s>", "special", 1, "id", 2, "content", "</s>", "special", 1,
        "normalizer", "type", "Sequence", "normalizers", "type", "Prepend", "prepend", "\xe2\x96\x81", "type",
        "Replace", "pattern", "String", " ", "content", "\xe2\x96\x81", "pre_tokenizer", "model", "type", "BPE",
        "vocab", vocab, "merges", merges, "byte_fallback", 1, "unk_token", "<unk>");
    cr_assert_not_null(root);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    FILE *f = fopen(strcat(strcpy((char[300]){0}, dir), "/tokenizer_config.json"), "w");
    fputs("{\"add_bos_token\": true, \"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"</s>\"}}", f);
    fclose(f);

    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_from_json(path, &t), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_tok_kind(t), WG_TOK_SPM);
    cr_assert_eq(wg_tok_bos(t), 1);
    cr_assert_eq(wg_tok_eos(t), 2);
    int32_t *ids = NULL;
    size_t n = 0;
    /* "abc x": ▁abc -> a b merge (rank 0), ▁ ab (rank 1) -> "▁ab", c stays; "▁" then x by bytes */
    cr_assert_eq(wg_tok_encode(t, "abc x", 5, true, false, &ids, &n), WG_OK);
    int32_t want[] = {1, 264, 262, 259, 3 + 'x'};
    cr_assert_eq(n, 5, "got %zu ids", n);
    cr_assert_arr_eq(ids, want, sizeof want);
    char *dec = NULL;
    cr_assert_eq(wg_tok_decode(t, ids, n, false, &dec), WG_OK);
    cr_assert_str_eq(dec, " abc x"); /* BOS first: the prefix space stays, as llama.cpp does */
    free(dec);
    cr_assert_eq(wg_tok_decode(t, ids + 1, n - 1, false, &dec), WG_OK);
    cr_assert_str_eq(dec, "abc x");
    free(dec);
    free(ids);
    wg_tok_free(&t);
    unlink(path);
    char cfg[300];
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    unlink(cfg);
    rmdir(dir);
}

Test(json, rejects_bad_files) {
    char path[] = "/tmp/wg_tokjson_bad_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char *bad = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -4}, \"merges\": []}}";
    cr_assert_eq(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    close(fd);
    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_from_json(path, &t), WG_ERR_FORMAT);
    cr_assert_null(t);
    cr_assert(strstr(wg_errmsg(), "model.vocab['a']"), "msg: %s", wg_errmsg());
    unlink(path);
    cr_assert_neq(wg_tok_from_json("/nonexistent/tokenizer.json", &t), WG_OK);
}

/* A tokenizer.json's own Split regex is compiled at load, so a bad one fails
 * the load (not the first encode); a good one is JIT-compiled lazily and
 * splits at the first encode. */
static wg_status s_split_json(const char *regex, wg_tok_t **t) {
    char path[] = "/tmp/wg_tokjson_re_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    json_t *root = json_pack("{s:{s:s,s:{s:s},s:s},s:{s:s,s:{s:i,s:i,s:i,s:i},s:[s]}}", "pre_tokenizer", "type",
                             "Split", "pattern", "Regex", regex, "behavior", "Isolated", "model", "type", "BPE",
                             "vocab", "a", 0, "b", 1, " ", 2, "ab", 3, "merges", "a b");
    cr_assert_not_null(root);
    cr_assert_eq(json_dump_file(root, path, 0), 0);
    json_decref(root);
    wg_status st = wg_tok_from_json(path, t);
    unlink(path);
    return st;
}

Test(json, split_regex_checked_at_load_compiled_at_first_encode) {
    wg_tok_t *t = NULL;
    cr_assert_eq(s_split_json("(a", &t), WG_ERR_FORMAT);
    cr_assert_null(t);
    cr_assert(strstr(wg_errmsg(), "pre-tokenizer regex 0 at offset"), "msg: %s", wg_errmsg());

    cr_assert_eq(s_split_json("b", &t), WG_OK, "%s", wg_errmsg());
    int32_t *ids = NULL;
    size_t n = 0;
    /* "abab" split around each "b": a|b|a|b, so "ab" never merges */
    cr_assert_eq(wg_tok_encode(t, "abab", 4, false, false, &ids, &n), WG_OK, "%s", wg_errmsg());
    int32_t want[] = {0, 1, 0, 1};
    cr_assert_eq(n, 4, "got %zu ids", n);
    cr_assert_arr_eq(ids, want, sizeof want);
    free(ids);
    wg_tok_free(&t);
}
