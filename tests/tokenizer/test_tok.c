/* Tokenizer behaviour beyond the corpus vectors: in-memory vocabularies
 * (merge order, byte fallback, special-token splitting, EOG), streaming
 * detokenization, RWKV, errors and speed on long inputs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "engine/formats/wg_gguf.h"
#include "engine/tokenizer/wg_tok.h"
#include "engine/tokenizer/wg_tok_internal.h"
#include "wg_test.h"

static wg_tok_t *s_open(const char *rel) {
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus(rel), &g), WG_OK, "%s: %s", rel, wg_errmsg());
    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_from_gguf(g, &t), WG_OK, "%s: %s", rel, wg_errmsg());
    wg_gguf_close(&g); /* the tokenizer copies what it needs */
    return t;
}

static bool s_valid_utf8(const char *s) {
    size_t n = strlen(s), i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

/* A tiny SPM vocabulary: <unk> <s> </s>, 256 bytes, then pieces with scores. */
static wg_tok_t *s_tiny_spm(void) {
    static const char *pieces[] = {"\xe2\x96\x81", "a", "b", "c", "ab", "bc", "\xe2\x96\x81" "a", "<|user|>", "<|u"};
    static const float pscore[] = {-1, -2, -2, -2, -5, -1, -3, 0, 0};
    static const int32_t ptype[] = {1, 1, 1, 1, 1, 1, 1, 3, 4};
    enum { NP = 9, N = 3 + 256 + NP };
    static char bytes[256][8];
    const char *texts[N];
    float scores[N];
    int32_t types[N];
    texts[0] = "<unk>", texts[1] = "<s>", texts[2] = "</s>";
    types[0] = 2, types[1] = 3, types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        texts[3 + b] = bytes[b];
        types[3 + b] = 6;
    }
    for (int i = 0; i < NP; i++) {
        texts[259 + i] = pieces[i];
        types[259 + i] = ptype[i];
    }
    for (int i = 0; i < N; i++) scores[i] = i >= 259 ? pscore[i - 259] : 0;
    wg_tok_spec_t sp = {.kind = WG_TOK_SPM, .n_vocab = N, .texts = texts, .scores = scores, .types = types};
    sp.bos = sp.eos = sp.eot = sp.eom = sp.unk = sp.sep = sp.pad = sp.cls = WG_TOK_UNSET;
    sp.add_bos = sp.add_eos = sp.add_space_prefix = sp.clean_spaces = sp.ignore_merges = -1;
    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_build(&sp, &t), WG_OK, "%s", wg_errmsg());
    return t;
}

Test(tok, spm_merges_by_best_score_and_byte_fallback) {
    wg_tok_t *t = s_tiny_spm();
    int32_t *ids = NULL;
    size_t n = 0;
    /* "▁abc": candidate pairs ▁a(-3) ab(-5) bc(-1): bc first, then ▁a -> [▁a, bc] */
    cr_assert_eq(wg_tok_encode(t, "abc", 3, true, false, &ids, &n), WG_OK);
    int32_t want[] = {1, 265, 264};
    cr_assert_eq(n, 3);
    cr_assert_arr_eq(ids, want, sizeof want);
    free(ids);
    /* "é" is not a piece: two byte tokens; a space becomes "▁" */
    cr_assert_eq(wg_tok_encode(t, "\xc3\xa9 c", 4, false, false, &ids, &n), WG_OK);
    int32_t want2[] = {259, 3 + 0xc3, 3 + 0xa9, 259, 262};
    cr_assert_eq(n, 5, "n=%zu", n);
    cr_assert_arr_eq(ids, want2, sizeof want2);
    char *dec = NULL;
    cr_assert_eq(wg_tok_decode(t, ids, n, false, &dec), WG_OK);
    cr_assert_str_eq(dec, "\xc3\xa9 c");
    free(dec);
    free(ids);
    wg_tok_free(&t);
}

Test(tok, special_tokens_split_longest_first) {
    wg_tok_t *t = s_tiny_spm();
    int32_t *ids = NULL;
    size_t n = 0;
    const char *s = "a<|user|>b";
    /* control token only with parse_special; the user-defined "<|u" always */
    cr_assert_eq(wg_tok_encode(t, s, strlen(s), false, true, &ids, &n), WG_OK);
    cr_assert_eq(n, 4, "n=%zu", n);
    cr_assert_eq(ids[0], 265); /* ▁a */
    cr_assert_eq(ids[1], 266); /* <|user|> beats the shorter <|u */
    cr_assert_eq(ids[2], 259); /* text after a special token gets the prefix space again (llama.cpp) */
    cr_assert_eq(ids[3], 261); /* b */
    free(ids);
    cr_assert_eq(wg_tok_encode(t, s, strlen(s), false, false, &ids, &n), WG_OK);
    bool has_user_defined = false, has_control = false;
    for (size_t i = 0; i < n; i++) {
        has_user_defined |= ids[i] == 267;
        has_control |= ids[i] == 266;
    }
    cr_assert(has_user_defined && !has_control);
    free(ids);
    cr_assert(wg_tok_is_control(t, 266));
    cr_assert_eq(wg_tok_piece(t, 266, false, NULL, 0), 0);
    char buf[32];
    cr_assert_eq(wg_tok_piece(t, 266, true, buf, sizeof buf), 8);
    cr_assert_eq(memcmp(buf, "<|user|>", 8), 0);
    wg_tok_free(&t);
}

Test(tok, defaults_and_eog) {
    WG_REQUIRE_CORPUS();
    wg_tok_t *t = s_open("tokenizer/ggml-vocab-phi-3.gguf");
    cr_assert(wg_tok_add_bos(t));
    cr_assert(!wg_tok_add_eos(t));
    cr_assert_eq(wg_tok_bos(t), 1);
    int32_t end = wg_tok_lookup(t, "<|end|>", 7);
    cr_assert_gt(end, 0);
    cr_assert(wg_tok_is_eog(t, end), "<|end|> must end generation");
    cr_assert(wg_tok_is_eog(t, wg_tok_eos(t)));
    cr_assert(!wg_tok_is_eog(t, wg_tok_lookup(t, "<|user|>", 8)));
    cr_assert_not_null(wg_tok_chat_template(t));
    cr_assert_null(wg_tok_text(t, wg_tok_n_vocab(t)));
    wg_tok_free(&t);
    t = s_open("tokenizer/ggml-vocab-deepseek-coder.gguf");
    cr_assert(wg_tok_add_bos(t), "deepseek vocabularies add BOS");
    wg_tok_free(&t);
    t = s_open("tokenizer/ggml-vocab-gpt-2.gguf");
    cr_assert(!wg_tok_add_bos(t));
    cr_assert(wg_tok_is_eog(t, 50256));
    wg_tok_free(&t);
}

static void s_stream_check(const char *rel, const char *text) {
    wg_tok_t *t = s_open(rel);
    int32_t *ids = NULL;
    size_t n = 0;
    cr_assert_eq(wg_tok_encode(t, text, strlen(text), false, false, &ids, &n), WG_OK);
    /* at least one token must be a partial character, or the test proves nothing */
    int partial = 0;
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        size_t pl = wg_tok_piece(t, ids[i], false, buf, sizeof buf);
        buf[pl < sizeof buf ? pl : sizeof buf - 1] = 0;
        if (!s_valid_utf8(buf)) partial++;
    }
    cr_assert_gt(partial, 0, "%s: no token splits a character", rel);
    wg_detok_t *d = wg_detok_new(t, false);
    cr_assert_not_null(d);
    size_t cap = strlen(text) * 2 + 16, used = 0;
    char *all = calloc(1, cap);
    for (size_t i = 0; i < n; i++) {
        char *chunk = NULL;
        cr_assert_eq(wg_detok_push(d, ids[i], &chunk), WG_OK);
        cr_assert(s_valid_utf8(chunk), "chunk %zu is not valid UTF-8", i);
        size_t cl = strlen(chunk);
        cr_assert_lt(used + cl, cap);
        memcpy(all + used, chunk, cl);
        used += cl;
        free(chunk);
    }
    char *tail = NULL;
    cr_assert_eq(wg_detok_flush(d, &tail), WG_OK);
    cr_assert_str_eq(tail, "");
    free(tail);
    char *whole = NULL;
    cr_assert_eq(wg_tok_decode(t, ids, n, false, &whole), WG_OK);
    /* the stream keeps SPM's prefix space; decode drops it */
    const char *cmp = all;
    if (wg_tok_kind(t) == WG_TOK_SPM && all[0] == ' ') cmp++;
    cr_assert_str_eq(cmp, text);
    cr_assert_str_eq(whole, text);
    free(whole);
    free(all);
    free(ids);
    wg_detok_free(&d);
    cr_assert_null(d);
    wg_tok_free(&t);
}

Test(tok, detok_stream_never_breaks_utf8) {
    WG_REQUIRE_CORPUS();
    const char *text = "Hi \xf0\x9f\xa6\x99 llama \xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9 ok";
    s_stream_check("tokenizer/ggml-vocab-llama-spm.gguf", text);
    s_stream_check("tokenizer/ggml-vocab-gpt-2.gguf", text);
}

Test(tok, detok_flush_replaces_incomplete_tail) {
    WG_REQUIRE_CORPUS();
    wg_tok_t *t = s_open("tokenizer/ggml-vocab-llama-spm.gguf");
    wg_detok_t *d = wg_detok_new(t, false);
    char *out = NULL;
    int32_t f0 = wg_tok_lookup(t, "<0xF0>", 6), x9f = wg_tok_lookup(t, "<0x9F>", 6);
    cr_assert_eq(wg_detok_push(d, f0, &out), WG_OK);
    cr_assert_str_eq(out, "");
    free(out);
    cr_assert_eq(wg_detok_push(d, x9f, &out), WG_OK);
    cr_assert_str_eq(out, "");
    free(out);
    cr_assert_eq(wg_detok_flush(d, &out), WG_OK);
    cr_assert(strlen(out) > 0 && s_valid_utf8(out), "flush gave \"%s\"", out);
    cr_assert(strstr(out, "\xef\xbf\xbd"));
    free(out);
    /* an invalid byte in the middle is replaced at once, not held */
    int32_t ff = wg_tok_lookup(t, "<0xFF>", 6);
    cr_assert_eq(wg_detok_push(d, ff, &out), WG_OK);
    cr_assert_str_eq(out, "\xef\xbf\xbd");
    free(out);
    wg_detok_free(&d);
    wg_tok_free(&t);
}

Test(tok, rwkv_greedy_longest_match) {
    WG_REQUIRE_CORPUS();
    wg_tok_t *t = s_open("models/rwkv6/rwkv6-f32.gguf");
    cr_assert_eq(wg_tok_kind(t), WG_TOK_RWKV);
    int32_t *ids = NULL;
    size_t n = 0;
    const char *s = "Hi A\tB\n";
    cr_assert_eq(wg_tok_encode(t, s, strlen(s), true, false, &ids, &n), WG_OK);
    int32_t sp_a = wg_tok_lookup(t, " A", 2);
    cr_assert_gt(sp_a, 0);
    /* H, i, " A" (one token, longest match), \t, B, \n */
    cr_assert_eq(n, 6, "n=%zu", n);
    cr_assert_eq(ids[2], sp_a);
    char *dec = NULL;
    cr_assert_eq(wg_tok_decode(t, ids, n, false, &dec), WG_OK);
    cr_assert_str_eq(dec, s);
    free(dec);
    free(ids);
    wg_tok_free(&t);
}

Test(tok, gguf_without_tokenizer_is_notfound) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus("quants/quant-vectors.gguf"), &g), WG_OK);
    wg_tok_t *t = NULL;
    cr_assert_eq(wg_tok_from_gguf(g, &t), WG_ERR_NOTFOUND);
    cr_assert_null(t);
    wg_gguf_close(&g);
}

Test(tok, decode_rejects_bad_ids) {
    wg_tok_t *t = s_tiny_spm();
    int32_t ids[] = {5, 100000};
    char *s = NULL;
    cr_assert_eq(wg_tok_decode(t, ids, 2, false, &s), WG_ERR_RANGE);
    cr_assert_null(s);
    wg_tok_free(&t);
}

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void s_speed(const char *rel) {
    const char *para = "The quick brown fox jumps over the lazy dog; 1234 times, \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\xa6\x99!\n";
    size_t pl = strlen(para), target = 200 * 1024;
    char *big = malloc(target + pl + 1);
    size_t n = 0;
    while (n < target) {
        memcpy(big + n, para, pl);
        n += pl;
    }
    big[n] = 0;
    wg_tok_t *t = s_open(rel);
    int32_t *ids = NULL;
    size_t nid = 0;
    double t0 = s_now();
    cr_assert_eq(wg_tok_encode(t, big, n, true, true, &ids, &nid), WG_OK);
    double dt = s_now() - t0;
    fprintf(stderr, "%s: %zu bytes -> %zu ids in %.3f s\n", rel, n, nid, dt);
    cr_assert_gt(nid, n / 8);
    cr_assert_lt(dt, 1.0, "%s: %zu bytes took %.3f s", rel, n, dt);
    free(ids);
    free(big);
    wg_tok_free(&t);
}

Test(tok, long_input_is_fast_spm) {
    WG_REQUIRE_CORPUS();
    s_speed("tokenizer/ggml-vocab-llama-spm.gguf");
}

Test(tok, long_input_is_fast_bpe) {
    WG_REQUIRE_CORPUS();
    s_speed("tokenizer/ggml-vocab-deepseek-llm.gguf");
    s_speed("tokenizer/ggml-vocab-gpt-neox.gguf");
}

/* Every built-in pre-tokenizer's patterns compile (they are compiled only at
 * a first encode now, so a load no longer proves it), and each is compiled
 * once per process: a second request gets the same code. */
Test(tok, builtin_pre_tokenizer_patterns_compile_once) {
    int names = 0;
    for (size_t k = 0; wg_tok_pre_name(k); k++, names++) {
        const char *const *re = NULL;
        int32_t n = 0;
        int im, ab, cs;
        cr_assert_eq(wg_tok_pre_regexes(wg_tok_pre_name(k), &re, &n, &im, &ab, &cs), WG_OK);
        cr_assert_gt(n, 0);
        for (int32_t i = 0; i < n; i++) {
            pcre2_code *a = NULL, *b = NULL;
            cr_assert_eq(wg_tok_pre_compiled(re[i], i, &a), WG_OK, "%s[%d]: %s", wg_tok_pre_name(k), i, wg_errmsg());
            cr_assert_eq(wg_tok_pre_compiled(re[i], i, &b), WG_OK);
            cr_assert_not_null(a);
            cr_assert_eq(a, b, "%s[%d] compiled twice", wg_tok_pre_name(k), i);
        }
    }
    cr_assert_gt(names, 40);
}

/* The closed-form GPT-2 byte map equals its definition: printable latin-1
 * bytes map to themselves, the others in byte order to U+0100 upwards. */
Test(tok, gpt2_byte_map_matches_definition) {
    uint32_t next = 256;
    int seen[400];
    for (int i = 0; i < 400; i++) seen[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        bool direct = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        uint32_t cp = direct ? b : next++;
        cr_assert_eq(wg_tok_byte_to_cp((uint8_t)b), cp, "byte %u", b);
        seen[cp] = (int)b;
    }
    for (uint32_t cp = 0; cp < 400; cp++) cr_assert_eq(wg_tok_cp_to_byte(cp), seen[cp], "cp U+%04X", cp);
    cr_assert_eq(wg_tok_cp_to_byte(0x10000), -1);
}

typedef struct {
    const wg_tok_t *t;   /* shared tokenizer */
    const char *text;    /* to encode */
    int32_t *ids;        /* result */
    size_t n;            /* ids */
    wg_status st;        /* encode status */
} s_enc_job_t;

static pthread_barrier_t s_start;

static void *s_enc_thread(void *arg) {
    s_enc_job_t *j = arg;
    pthread_barrier_wait(&s_start);
    j->st = wg_tok_encode(j->t, j->text, strlen(j->text), true, false, &j->ids, &j->n);
    return NULL;
}

/* The pre-tokenizer is made ready at the first encode: threads that all make
 * their first encode of a fresh shared tokenizer at once (the first round
 * also races on compiling the process-wide patterns) get the ids one thread
 * alone gets afterwards. deepseek-llm: six patterns in sequence. */
Test(tok, concurrent_first_encodes_agree) {
    WG_REQUIRE_CORPUS();
    const char *rel = "tokenizer/ggml-vocab-deepseek-llm.gguf";
    const char *text = "Hello world, it's 2024!  Tabs\tand\nnew lines, \xc3\xbc" "n\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 and 12345.";
    enum { NT = 8, ROUNDS = 10 };
    s_enc_job_t jobs[ROUNDS][NT];
    for (int r = 0; r < ROUNDS; r++) {
        wg_tok_t *t = s_open(rel);
        pthread_t th[NT];
        pthread_barrier_init(&s_start, NULL, NT);
        for (int i = 0; i < NT; i++) {
            jobs[r][i] = (s_enc_job_t){.t = t, .text = text};
            cr_assert_eq(pthread_create(&th[i], NULL, s_enc_thread, &jobs[r][i]), 0);
        }
        for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&s_start);
        wg_tok_free(&t);
    }
    wg_tok_t *ref = s_open(rel);
    int32_t *want = NULL;
    size_t nwant = 0;
    cr_assert_eq(wg_tok_encode(ref, text, strlen(text), true, false, &want, &nwant), WG_OK, "%s", wg_errmsg());
    cr_assert_gt(nwant, 10);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < NT; i++) {
            s_enc_job_t *j = &jobs[r][i];
            cr_assert_eq(j->st, WG_OK);
            cr_assert_eq(j->n, nwant, "round %d thread %d: %zu ids, want %zu", r, i, j->n, nwant);
            cr_assert_arr_eq(j->ids, want, nwant * sizeof *want);
            free(j->ids);
        }
    }
    free(want);
    wg_tok_free(&ref);
}
