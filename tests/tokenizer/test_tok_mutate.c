/* Hostile vocabularies: every one-byte change (and deletion) of a small
 * valid vocabulary GGUF of each tokenizer family either fails to build with
 * a message or builds a tokenizer that encodes, decodes and detokenizes a
 * fixed set of texts with every id inside the vocabulary (wg_test_tok.h).
 * The same property runs under libFuzzer in tests/fuzz/fuzz_tok.c. */
#include <criterion/criterion.h>

#include "wg_test_tok.h"

static const uint8_t s_bytes[] = {0x00, 0x01, 0x02, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0c, 0x20,
                                  0x7f, 0x80, 0xc3, 0xff};

static void s_sweep(int kind) {
    size_t n = 0;
    uint8_t *img = wg_tt_image(kind, &n);
    cr_assert_not_null(img, "vocabulary %s not written", wg_tt_names[kind]);
    /* the valid vocabulary builds */
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open_mem(img, n, &g), WG_OK, "%s", wg_errmsg());
    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_from_gguf(g, &t), WG_OK, "%s: %s", wg_tt_names[kind], wg_errmsg());
    wg_tok_free(&t);
    wg_gguf_close(&g);
    const char *why = wg_tt_check(img, n);
    cr_assert_null(why, "valid %s vocabulary: %s", wg_tt_names[kind], why);
    uint8_t *m = malloc(n);
    cr_assert_not_null(m);
    long built = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t x = 0; x < sizeof s_bytes + 1; x++) {
            memcpy(m, img, n);
            m[i] = x < sizeof s_bytes ? s_bytes[x] : (uint8_t)(img[i] + 1);
            if (m[i] == img[i]) continue;
            why = wg_tt_check(m, n);
            cr_assert_null(why, "%s vocabulary, byte %zu of %zu set to 0x%02x: %s", wg_tt_names[kind], i, n, m[i],
                           why);
            built++;
        }
        memcpy(m, img, i);
        memcpy(m + i, img + i + 1, n - i - 1);
        why = wg_tt_check(m, n - 1);
        cr_assert_null(why, "%s vocabulary without byte %zu: %s", wg_tt_names[kind], i, why);
    }
    cr_assert_gt(built, 1000);
    free(m);
    free(img);
}

Test(tok_mutate, spm, .timeout = 600) { s_sweep(0); }
Test(tok_mutate, bpe_gpt2, .timeout = 600) { s_sweep(1); }
Test(tok_mutate, bpe_llama3, .timeout = 600) { s_sweep(2); }
Test(tok_mutate, bpe_qwen2, .timeout = 600) { s_sweep(3); }
Test(tok_mutate, wpm, .timeout = 600) { s_sweep(4); }
Test(tok_mutate, rwkv, .timeout = 600) { s_sweep(5); }

/* ---- tokenizer.json: hostile values at every node ----
 * Three small tokenizer.json files (byte-level BPE with a Sequence of Split
 * and ByteLevel; SentencePiece-style byte-fallback BPE with Prepend/Replace
 * normalizers; the same with a Metaspace pre-tokenizer): every value of the
 * document, at any depth, is replaced by each of wg_test_json_hostile's
 * values (0, -1, 1e9, 2.5, "", 300 bytes, null, true, [], {}) and removed. Each variant builds a tokenizer that
 * passes wg_tt_check_tok or fails with a message. */
#include "wg_test_json.h"

static const char *const s_json_samples[] = {
    "{\"added_tokens\": [{\"id\": 9, \"content\": \"<|endoftext|>\", \"special\": true},"
    " {\"id\": 10, \"content\": \"<tool>\", \"special\": false}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "  {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\", \"invert\": false},"
    "  {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}]},"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"abc\": 5,"
    "  \"\\u0120a\": 6, \"1\": 7, \"12\": 8, \"<|endoftext|>\": 9, \"<tool>\": 10, \"\\u010a\": 11},"
    "  \"merges\": [\"a b\", \"ab c\", \"\\u0120 a\", \"1 2\"]}}",

    "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    " {\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
    " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
    "  {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]},"
    " \"pre_tokenizer\": null,"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0,"
    "  \"<s>\": 1, \"</s>\": 2, \"<0x0A>\": 3, \"<0xC3>\": 4, \"<0xA9>\": 5, \"\\u2581\": 6, \"a\": 7, \"b\": 8,"
    "  \"\\u2581a\": 9, \"ab\": 10, \"\\u2581ab\": 11},"
    "  \"merges\": [[\"a\", \"b\"], [\"\\u2581\", \"a\"], [\"\\u2581a\", \"b\"]]}}",

    "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
    " {\"id\": 1, \"content\": \"<s>\", \"special\": true}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\", \"prepend_scheme\": \"first\"},"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0,"
    "  \"<s>\": 1, \"<0x0A>\": 2, \"\\u2581\": 3, \"a\": 4, \"b\": 5, \"\\u2581a\": 6, \"ab\": 7},"
    "  \"merges\": [\"a b\", \"\\u2581 a\"]}}",
};

static char s_tj_path[256];
static long s_tj_tried;

static void s_tj_try(json_t *root, const char *what) {
    cr_assert_eq(json_dump_file(root, s_tj_path, 0), 0);
    wg_tok_t *t = NULL;
    wg_error_clear();
    const wg_status st = wg_tok_from_json(s_tj_path, &t);
    const char *why = wg_tt_built(st, t);
    cr_assert_null(why, "tokenizer.json with %s: %s", what, why);
    s_tj_tried++;
}

static void s_tj_visit(json_t *root, const char *path, int k, void *arg) {
    (void)arg;
    char what[1100];
    if (snprintf(what, sizeof what, k < WG_TJ_HOSTILE_N ? "%s = variant %d" : "%s removed", path, k) < 0) what[0] = 0;
    s_tj_try(root, what);
}

static void s_tj_sweep(int which) {
    snprintf(s_tj_path, sizeof s_tj_path, "/tmp/wg_tj_%d.json", (int)getpid());
    json_error_t je;
    json_t *root = json_loads(s_json_samples[which], 0, &je);
    cr_assert_not_null(root, "sample %d: %s at %d", which, je.text, je.position);
    /* the sample itself builds and passes */
    cr_assert_eq(json_dump_file(root, s_tj_path, 0), 0);
    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_from_json(s_tj_path, &t), WG_OK, "sample %d: %s", which, wg_errmsg());
    const char *why = wg_tt_check_tok(t);
    cr_assert_null(why, "sample %d: %s", which, why);
    s_tj_tried = 0;
    wg_test_json_mutate(root, root, "", NULL, wg_test_json_hostile, WG_TJ_HOSTILE_N, s_tj_visit, NULL);
    json_decref(root);
    unlink(s_tj_path);
    cr_assert_gt(s_tj_tried, 300, "sample %d: %ld variants", which, s_tj_tried);
}

Test(tok_json_mutate, byte_level_bpe, .timeout = 600) { s_tj_sweep(0); }
Test(tok_json_mutate, byte_fallback_bpe, .timeout = 600) { s_tj_sweep(1); }
Test(tok_json_mutate, metaspace_bpe, .timeout = 600) { s_tj_sweep(2); }
