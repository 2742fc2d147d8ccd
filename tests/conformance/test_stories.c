/* Conformance: the trained stories260K model (GGUF and HF copy): logits,
 * teacher-forced greedy, then a free-running greedy generation that must give
 * exactly the 64 reference tokens and, detokenized, ref.greedy_text. */
#include "engine/tokenizer/wg_tok.h"
#include "wg_conf.h"

/* Free-running greedy from the reference prompt; returns the token count that
 * matched before the first difference. */
static void s_free_running(const char *rel, bool check_text) {
    WG_REQUIRE_CORPUS();
    wg_conf_ref_t ref;
    wg_conf_ref_open("trained/stories260K-f32.ref.gguf", &ref);
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s", wg_test_corpus(rel));
    wg_model_t *m = NULL;
    cr_assert_eq(wg_model_load(mpath, &m), WG_OK, "%s", wg_errmsg());
    const int64_t V = wg_model_hparams(m)->n_vocab;
    wg_session_t *s = wg_session_new(m, 2, 128);
    cr_assert(s);
    cr_assert_eq(wg_session_eval(s, ref.tokens, ref.n, false, NULL), WG_OK, "%s", wg_errmsg());
    int32_t gen[64];
    cr_assert_eq(ref.n_greedy, 64);
    int64_t same = 0;
    for (int64_t i = 0; i < ref.n_greedy; i++) {
        gen[i] = wg_conf_argmax(wg_session_logits(s), V);
        if (same == i && gen[i] == ref.greedy[i]) same++;
        cr_assert_eq(wg_session_eval(s, &gen[i], 1, false, NULL), WG_OK, "%s", wg_errmsg());
    }
    cr_log_info("%s: free-running greedy matches %lld/64 tokens", rel, (long long)same);
    cr_assert_eq(same, 64, "%s: greedy diverges at step %lld", rel, (long long)same);
    if (check_text) {
        const char *want = NULL;
        cr_assert_eq(wg_gguf_get_str(ref.g, "ref.greedy_text", &want), WG_OK);
        wg_tok_t *tok = NULL;
        cr_assert_eq(wg_tok_from_gguf(wg_model_gguf(m), &tok), WG_OK, "%s", wg_errmsg());
        char *text = NULL;
        cr_assert_eq(wg_tok_decode(tok, gen, 64, false, &text), WG_OK, "%s", wg_errmsg());
        cr_expect_str_eq(text, want);
        free(text);
        wg_tok_free(&tok);
    }
    wg_session_free(&s);
    wg_model_free(&m);
    wg_gguf_close(&ref.g);
}

Test(stories260K, gguf_logits) { (void)wg_conf_check("trained/stories260K-f32.gguf"); }
Test(stories260K, hf_logits) { (void)wg_conf_check("trained/stories260K-hf"); }
Test(stories260K, gguf_greedy_64_tokens_and_text) { s_free_running("trained/stories260K-f32.gguf", true); }
Test(stories260K, hf_greedy_64_tokens) { s_free_running("trained/stories260K-hf", false); }
