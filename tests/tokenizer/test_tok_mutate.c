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
