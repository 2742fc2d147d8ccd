/* Tests for wg_json (JSON mode): the recognizer against jansson on generated
 * and mutated texts, its limits and refusals, the vocabulary trie's masks
 * against a token-by-token check, the mask cache, and the sampler in JSON
 * mode (greedy with and without a mask, seeded draws, logprobs). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/wg_status.h"
#include "engine/sampler/wg_json.h"
#include "engine/sampler/wg_sampler.h"

static uint64_t t_lcg = 0x9E3779B97F4A7C15ull;
static uint32_t t_rnd(uint32_t n) {
    t_lcg = t_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((t_lcg >> 33) % n);
}

/* ---- a generator of JSON object texts within the recognizer's limits ---- */

typedef struct {
    char *p;
    size_t n, cap;
} t_buf_t;

static void t_put(t_buf_t *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void t_puts(t_buf_t *b, const char *s) { t_put(b, s, strlen(s)); }

static void t_ws(t_buf_t *b) {
    static const char *const w[] = {"", "", "", " ", "\n", "\n  ", "\t", "\r\n"};
    t_puts(b, w[t_rnd(8)]);
}

static void t_string(t_buf_t *b) {
    static const char *const parts[] = {"a", "key", " ", "\\\"", "\\\\", "\\n", "\\u00e9", "\\u20AC", "\\/", "\xc3\xa9",
                                        "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "0", "\x7f", "\\t"};
    t_puts(b, "\"");
    for (uint32_t i = 0, n = t_rnd(5); i < n; i++) t_puts(b, parts[t_rnd(16)]);
    t_puts(b, "\"");
}

static void t_number(t_buf_t *b) {
    static const char *const nums[] = {"0", "-0", "7", "-12", "3.25", "0.5", "1e5", "2E-3", "-4.5e+2", "100", "6.0E1"};
    t_puts(b, nums[t_rnd(11)]);
}

static void t_value(t_buf_t *b, int depth);

static void t_object(t_buf_t *b, int depth) {
    t_puts(b, "{");
    uint32_t n = depth > 4 ? 0 : t_rnd(4);
    for (uint32_t i = 0; i < n; i++) {
        if (i) t_puts(b, ",");
        t_ws(b);
        t_string(b);
        t_ws(b);
        t_puts(b, ":");
        t_ws(b);
        t_value(b, depth + 1);
        t_ws(b);
    }
    if (!n) t_ws(b);
    t_puts(b, "}");
}

static void t_value(t_buf_t *b, int depth) {
    switch (t_rnd(depth > 4 ? 4 : 6)) {
    case 0: t_string(b); break;
    case 1: t_number(b); break;
    case 2: t_puts(b, t_rnd(3) == 0 ? "true" : t_rnd(2) ? "false" : "null"); break;
    case 3: t_string(b); break;
    case 4: t_object(b, depth); break;
    default: {
        t_puts(b, "[");
        uint32_t n = t_rnd(4);
        for (uint32_t i = 0; i < n; i++) {
            if (i) t_puts(b, ",");
            t_ws(b);
            t_value(b, depth + 1);
            t_ws(b);
        }
        t_puts(b, "]");
    }
    }
}

/* Our verdict: -1 refused at some byte, 0 accepted but not whole, 1 whole.
 * *done_at: the index at which the object became whole (or n). */
static int t_ours(const char *p, size_t n, size_t *done_at) {
    wg_json_state_t s;
    wg_json_init(&s);
    *done_at = n;
    for (size_t i = 0; i < n; i++) {
        if (wg_json_done(&s) && *done_at == n) *done_at = i;
        if (!wg_json_feed(&s, p + i, 1)) return -1;
    }
    return wg_json_done(&s) ? 1 : 0;
}

static bool t_jansson_object(const char *p, size_t n, bool *limit) {
    json_error_t e;
    json_t *j = json_loadb(p, n, 0, &e);
    *limit = !j && (strstr(e.text, "overflow") || strstr(e.text, "too big"));
    bool ok = j && json_is_object(j);
    json_decref(j);
    return ok;
}

Test(json, generated_objects_are_whole_exactly_at_their_end_and_jansson_agrees) {
    for (int k = 0; k < 3000; k++) {
        t_buf_t b = {0};
        t_ws(&b);
        t_object(&b, 0);
        size_t at;
        bool lim;
        cr_assert(t_jansson_object(b.p, b.n, &lim), "generator made bad JSON: %s", b.p);
        /* every prefix is a possible start, and only the whole text is whole */
        wg_json_state_t s;
        wg_json_init(&s);
        for (size_t i = 0; i < b.n; i++) {
            cr_assert(!wg_json_done(&s), "whole after %zu of %zu bytes: %s", i, b.n, b.p);
            cr_assert(wg_json_feed(&s, b.p + i, 1), "refused byte %zu (0x%02x) of: %s", i, (unsigned char)b.p[i], b.p);
        }
        cr_assert_eq(t_ours(b.p, b.n, &at), 1, "%s", b.p);
        free(b.p);
    }
}

/* Whether every whitespace run outside strings is one JSON mode allows
 * (nothing, one space or tab, "\r", or "\r"? "\n" then spaces / tabs). */
static bool t_ws_ok(const char *p, size_t n) {
    bool in_str = false;
    for (size_t i = 0; i < n;) {
        const char c = p[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            i++;
            continue;
        }
        if (c == '"') {
            in_str = true;
            i++;
            continue;
        }
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\n' || p[j] == '\r')) j++;
        size_t k = i + 1;
        bool indent = p[i] == '\n';
        if (p[i] == '\r' && k < j && p[k] == '\n') k++, indent = true;
        while (indent && k < j && (p[k] == ' ' || p[k] == '\t') && k - i < WG_JSON_MAX_INDENT + 2) k++;
        if (k != j) return false;
        i = j;
    }
    return true;
}

Test(json, mutated_texts_get_jansson_s_verdict) {
    int agree_ok = 0, agree_bad = 0;
    for (int k = 0; k < 20000; k++) {
        t_buf_t b = {0};
        t_object(&b, 0);
        /* one to three random edits: replace, insert or delete a byte */
        static const char pool[] = "{}[]\",:0123456789.eE+- tfnrulas\\\n\t\x01\x7f\xc3\xa9\xed\xa0\x80\xf4\x90\xc0";
        for (uint32_t m = 0, nm = 1 + t_rnd(3); m < nm && b.n > 0; m++) {
            size_t at = t_rnd((uint32_t)b.n);
            char c = pool[t_rnd(sizeof pool - 1)];
            switch (t_rnd(3)) {
            case 0: b.p[at] = c; break;
            case 1:
                t_put(&b, " ", 1);
                memmove(b.p + at + 1, b.p + at, b.n - at - 1);
                b.p[at] = c;
                break;
            default: memmove(b.p + at, b.p + at + 1, b.n - at); b.n--; break;
            }
        }
        size_t done_at;
        bool lim;
        const int ours = t_ours(b.p, b.n, &done_at);
        const bool theirs = t_jansson_object(b.p, b.n, &lim);
        if (lim) continue; /* numbers beyond jansson's range: valid JSON it cannot hold */
        bool trailing_ws = done_at < b.n;
        for (size_t i = done_at; i < b.n && trailing_ws; i++)
            trailing_ws = b.p[i] == ' ' || b.p[i] == '\n' || b.p[i] == '\t' || b.p[i] == '\r';
        if (theirs && ours == -1 && trailing_ws) continue; /* JSON mode ends at the object */
        if (theirs && ours == -1 && !t_ws_ok(b.p, b.n)) continue; /* whitespace JSON mode does not write */
        if ((ours == 1) != theirs) {
            for (size_t i = 0; i < b.n; i++) fprintf(stderr, "%02x ", (unsigned char)b.p[i]);
            fprintf(stderr, "\n");
        }
        cr_assert_eq(ours == 1, theirs, "ours %d, jansson %d on: %s", ours, theirs, b.p);
        if (theirs) agree_ok++;
        else agree_bad++;
        free(b.p);
    }
    cr_assert_gt(agree_ok, 500, "too few mutated texts stayed valid (%d)", agree_ok);
    cr_assert_gt(agree_bad, 5000, "too few became invalid (%d)", agree_bad);
}

static int t_verdict(const char *text) {
    size_t at;
    return t_ours(text, strlen(text), &at);
}

Test(json, refusals_and_limits) {
    /* the top level is an object */
    cr_assert_eq(t_verdict("[1]"), -1);
    cr_assert_eq(t_verdict("\"a\""), -1);
    cr_assert_eq(t_verdict("{} "), -1, "nothing after the object");
    cr_assert_eq(t_verdict("\n  {}"), 1);
    cr_assert_eq(t_verdict("  {}"), -1);
    cr_assert_eq(t_verdict("{\"a\":01}"), -1, "leading zero");
    cr_assert_eq(t_verdict("{\"a\":1.}"), -1);
    cr_assert_eq(t_verdict("{\"a\":-}"), -1);
    cr_assert_eq(t_verdict("{\"a\":1e}"), -1);
    cr_assert_eq(t_verdict("{\"a\":[1,]}"), -1, "trailing comma");
    cr_assert_eq(t_verdict("{\"a\":1,}"), -1);
    cr_assert_eq(t_verdict("{a:1}"), -1, "bare key");
    cr_assert_eq(t_verdict("{\"a\":tru}"), -1);
    cr_assert_eq(t_verdict("{\"a\":\"\x01\"}"), -1, "raw control character");
    cr_assert_eq(t_verdict("{\"a\":\"\\x\"}"), -1, "bad escape");
    cr_assert_eq(t_verdict("{\"a\":\"\\u0000\"}"), -1, "NUL escape");
    cr_assert_eq(t_verdict("{\"a\":\"\\ud83d\\ude00\"}"), -1, "surrogate escapes");
    cr_assert_eq(t_verdict("{\"a\":\"\\uDFFF\"}"), -1);
    cr_assert_eq(t_verdict("{\"a\":\"\\uD7FF\\u0001\"}"), 1);
    cr_assert_eq(t_verdict("{\"a\":\"\xc0\xaf\"}"), -1, "overlong");
    cr_assert_eq(t_verdict("{\"a\":\"\xed\xa0\x80\"}"), -1, "UTF-8 surrogate");
    cr_assert_eq(t_verdict("{\"a\":\"\xf4\x90\x80\x80\"}"), -1, "above U+10FFFF");
    cr_assert_eq(t_verdict("{\"a\":\"\xf4\x8f\xbf\xbf\"}"), 1);
    cr_assert_eq(t_verdict("{\"a\":\"\xe2\x82\"}"), -1, "cut character");
    cr_assert_eq(t_verdict("{\"a\":[true,false,null,{},[],-0.5e-7]}"), 1);
    /* limits */
    char buf[512];
    int n = snprintf(buf, sizeof buf, "{\r\n%*s}", WG_JSON_MAX_INDENT, "");
    cr_assert_eq(t_ours(buf, (size_t)n, &(size_t){0}), 1);
    n = snprintf(buf, sizeof buf, "{\n%*s}", WG_JSON_MAX_INDENT + 1, "");
    cr_assert_eq(t_ours(buf, (size_t)n, &(size_t){0}), -1, "indentation over the limit");
    /* whitespace runs: nothing, one space or tab, or a line break and indentation */
    cr_assert_eq(t_verdict("{ \"a\" :\t1\r}"), 1);
    cr_assert_eq(t_verdict("\n{\n\t\"a\": [1,\n  2]\n}"), 1);
    cr_assert_eq(t_verdict("{  }"), -1, "two spaces");
    cr_assert_eq(t_verdict("{\n\n}"), -1, "a blank line");
    cr_assert_eq(t_verdict("{ \n}"), -1, "a space before the line break");
    cr_assert_eq(t_verdict("\n\n{}"), -1);
    n = snprintf(buf, sizeof buf, "{\"a\":1%0*d}", WG_JSON_MAX_NUM - 1, 0);
    cr_assert_eq(t_ours(buf, (size_t)n, &(size_t){0}), 1);
    n = snprintf(buf, sizeof buf, "{\"a\":1%0*d}", WG_JSON_MAX_NUM, 0);
    cr_assert_eq(t_ours(buf, (size_t)n, &(size_t){0}), -1, "number over the limit");
    t_buf_t b = {0};
    t_puts(&b, "{\"a\":");
    for (int i = 1; i < WG_JSON_MAX_DEPTH; i++) t_puts(&b, "[");
    for (int i = 1; i < WG_JSON_MAX_DEPTH; i++) t_puts(&b, "]");
    t_puts(&b, "}");
    cr_assert_eq(t_verdict(b.p), 1, "depth %d", WG_JSON_MAX_DEPTH);
    b.n = 0;
    t_puts(&b, "{\"a\":");
    for (int i = 0; i < WG_JSON_MAX_DEPTH; i++) t_puts(&b, "[");
    cr_assert_eq(t_verdict(b.p), -1, "depth %d", WG_JSON_MAX_DEPTH + 1);
    free(b.p);
}

/* ---- vocabulary ---- */

typedef struct {
    const char **pieces;
    int32_t n;
} t_vocab_t;

static size_t t_piece(void *ctx, int32_t id, char *buf, size_t cap) {
    const t_vocab_t *v = ctx;
    const char *p = v->pieces[id];
    size_t n = strlen(p);
    if (buf) memcpy(buf, p, n < cap ? n : cap);
    return n;
}

/* Every single byte a JSON text needs, plus multi-byte pieces that share
 * prefixes, duplicates, a control token (empty piece) and pieces that are
 * never valid. */
static t_vocab_t t_make_vocab(void) {
    static const char *extra[] = {"",        "{\"",  "\":",    "\": \"",  "\",",      "\"}",  "}}",    "]}",    "true",
                                  "tr",      "null", "nul",    "false}",  "12",       "1.5",  "e+",    "\\u00",
                                  "\\n",     "  ",   "\n  ",   "\n    ", "\xc3\xa9", "\xc3", "\xa9",  "\xe2\x82",
                                  "\xac",    "{}",   "[]",     "{\"a\"",  "{\"a\":1}", "abc", "abc",   ", \"",
                                  "\":[",    "],",   "\x01",   "\xff",    "ab\"",     "0",    "-0.",   "\"\"",
                                  "{\"key\": \"value\"}"};
    static const char *all[512];
    static char bytes[256][2];
    int32_t n = 0;
    for (int c = 1; c < 256; c++) {
        bytes[c][0] = (char)c;
        bytes[c][1] = '\0';
        if (c >= 0x20 || c == '\t' || c == '\n' || c == '\r') all[n++] = bytes[c];
    }
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) all[n++] = extra[i];
    return (t_vocab_t){all, n};
}

/* The mask of a state, token by token. */
static void t_brute(const t_vocab_t *tv, const wg_json_state_t *st, bool *ok) {
    for (int32_t id = 0; id < tv->n; id++) {
        wg_json_state_t s = *st;
        const char *p = tv->pieces[id];
        ok[id] = *p && wg_json_feed(&s, p, strlen(p));
    }
}

Test(json, trie_masks_equal_the_token_by_token_check) {
    t_vocab_t tv = t_make_vocab();
    wg_json_vocab_t *v;
    cr_assert_eq(wg_json_vocab_new(tv.n, t_piece, &tv, &v), WG_OK, "%s", wg_errmsg());
    cr_assert_gt(wg_json_vocab_nodes(v), (size_t)tv.n, "multi-byte pieces add nodes");
    bool ok[512];
    float logits[512];
    cr_assert_leq(tv.n, 512);
    int32_t ctl = -1;
    for (int32_t t = 0; t < tv.n; t++)
        if (!*tv.pieces[t]) ctl = t;
    cr_assert_geq(ctl, 0);
    int states = 0;
    for (int k = 0; k < 200; k++) {
        t_buf_t b = {0};
        t_object(&b, 0);
        wg_json_guide_t *g = wg_json_guide_new(v);
        wg_json_state_t st;
        wg_json_init(&st);
        /* walk the text one byte at a time through the guide (every byte is a token) */
        for (size_t i = 0; i < b.n; i++) {
            t_brute(&tv, &st, ok);
            cr_assert_not(ok[ctl] || wg_json_guide_allows(g, ctl), "a control token (empty piece) is never allowed");
            for (int32_t t = 0; t < tv.n; t++) logits[t] = 0.0f;
            int32_t n_ok = wg_json_guide_mask(g, logits);
            int32_t n_brute = 0;
            for (int32_t t = 0; t < tv.n; t++) {
                n_brute += ok[t];
                cr_assert_eq(logits[t] == 0.0f, ok[t], "token %d '%s' after \"%.*s\": mask %d, check %d", t,
                             tv.pieces[t], (int)i, b.p, logits[t] == 0.0f, ok[t]);
                cr_assert_eq(wg_json_guide_allows(g, t), ok[t]);
            }
            cr_assert_eq(n_ok, n_brute);
            states++;
            int32_t id = -1; /* the one-byte token of this byte */
            for (int32_t t = 0; t < tv.n && id < 0; t++)
                if (tv.pieces[t][0] == b.p[i] && tv.pieces[t][1] == '\0') id = t;
            cr_assert_geq(id, 0);
            cr_assert_eq(wg_json_guide_accept(g, id), WG_OK, "%s", wg_errmsg());
            wg_json_feed(&st, b.p + i, 1);
        }
        cr_assert(wg_json_guide_done(g));
        /* the control token and anything after the object are refused */
        for (int32_t t = 0; t < tv.n; t++) cr_assert_not(wg_json_guide_allows(g, t), "after the object: '%s'", tv.pieces[t]);
        cr_assert_neq(wg_json_guide_accept(g, 0), WG_OK);
        int64_t built, reused;
        wg_json_guide_counts(g, &built, &reused);
        cr_assert_eq(built + reused, (int64_t)b.n);
        wg_json_guide_free(&g);
        free(b.p);
    }
    cr_assert_gt(states, 1000);
    wg_json_vocab_free(&v);
}

Test(json, the_mask_cache_serves_repeated_states) {
    t_vocab_t tv = t_make_vocab();
    wg_json_vocab_t *v;
    cr_assert_eq(wg_json_vocab_new(tv.n, t_piece, &tv, &v), WG_OK);
    wg_json_guide_t *g = wg_json_guide_new(v);
    float logits[512];
    const char *text = "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}";
    for (const char *p = text; *p; p++) {
        wg_json_guide_mask(g, logits);
        int32_t id = -1;
        for (int32_t t = 0; t < tv.n && id < 0; t++)
            if (tv.pieces[t][0] == *p && tv.pieces[t][1] == '\0') id = t;
        cr_assert_eq(wg_json_guide_accept(g, id), WG_OK);
    }
    int64_t built, reused;
    wg_json_guide_counts(g, &built, &reused);
    /* inside the key every step is the same state */
    cr_assert_lt(built, 10, "built %lld masks for %zu steps", (long long)built, strlen(text));
    cr_assert_gt(reused, 25);
    wg_json_guide_free(&g);
    wg_json_vocab_free(&v);
}

Test(json, a_vocabulary_that_cannot_spell_json_is_refused_by_name) {
    t_vocab_t tv = t_make_vocab();
    const char *copy[512];
    memcpy(copy, tv.pieces, (size_t)tv.n * sizeof *copy);
    for (int32_t i = 0; i < tv.n; i++)
        if (!strcmp(copy[i], "}")) copy[i] = "}}"; /* no token of exactly "}" */
    t_vocab_t bad = {copy, tv.n};
    wg_json_vocab_t *v;
    cr_assert_eq(wg_json_vocab_new(bad.n, t_piece, &bad, &v), WG_ERR_UNSUPPORTED);
    cr_assert_null(v);
    cr_assert(strstr(wg_errmsg(), "0x7d"), "%s", wg_errmsg());
}

/* ---- the sampler in JSON mode ---- */

static wg_sampler_t *t_json_sampler(const wg_json_vocab_t *v, wg_sampling_params_t p, int32_t n) {
    wg_sampler_t *s = wg_sampler_new(&p, n);
    cr_assert_not_null(s);
    wg_sampler_set_json(s, wg_json_guide_new(v));
    return s;
}

/* Random logits that favour tokens the recognizer refuses; run until whole. */
static char *t_run(const t_vocab_t *tv, wg_sampler_t *s, uint64_t seed, bool *whole, float *lp_sum) {
    t_buf_t b = {0};
    t_puts(&b, "");
    uint64_t r = seed;
    *lp_sum = 0.0f;
    *whole = false;
    for (int step = 0; step < 400 && !*whole; step++) {
        float logits[512];
        for (int32_t t = 0; t < tv->n; t++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            logits[t] = (float)((r >> 40) % 1000) / 100.0f;
        }
        wg_sample_t o;
        cr_assert_eq(wg_sampler_sample(s, logits, &o), WG_OK, "%s", wg_errmsg());
        t_puts(&b, tv->pieces[o.token]);
        *lp_sum += o.logprob;
        *whole = wg_sampler_json_done(s);
    }
    return b.p;
}

Test(json, sampled_texts_parse_and_greedy_needs_no_mask_to_pick_the_same) {
    t_vocab_t tv = t_make_vocab();
    wg_json_vocab_t *v;
    cr_assert_eq(wg_json_vocab_new(tv.n, t_piece, &tv, &v), WG_OK);
    int whole_n = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        wg_sampling_params_t p = wg_sampling_defaults();
        p.temperature = 0.0f;
        wg_sampler_t *fast = t_json_sampler(v, p, tv.n);
        p.logprobs = true; /* logprobs need the whole masked distribution: the mask is always built */
        wg_sampler_t *full = t_json_sampler(v, p, tv.n);
        bool w1, w2;
        float l1, l2;
        char *a = t_run(&tv, fast, seed, &w1, &l1);
        char *b = t_run(&tv, full, seed, &w2, &l2);
        cr_assert_str_eq(a, b, "seed %llu", (unsigned long long)seed);
        cr_assert(isfinite(l2) && l2 <= 0.0f);
        p = wg_sampling_defaults();
        p.temperature = 0.8f;
        p.top_p = 0.95f;
        p.seed = seed;
        p.has_seed = true;
        p.logprobs = true;
        wg_sampler_t *drawn = t_json_sampler(v, p, tv.n);
        bool w3;
        float l3;
        char *c = t_run(&tv, drawn, seed * 7, &w3, &l3);
        cr_assert(isfinite(l3));
        const char *texts[2] = {a, c};
        const bool wholes[2] = {w1, w3};
        for (int i = 0; i < 2; i++) {
            size_t at;
            int ours = t_ours(texts[i], strlen(texts[i]), &at);
            cr_assert_geq(ours, 0, "refused its own text: %s", texts[i]);
            if (wholes[i]) {
                bool lim;
                const bool obj = t_jansson_object(texts[i], strlen(texts[i]), &lim);
                cr_assert(obj || lim, "not an object: %s", texts[i]);
                whole_n++;
            }
        }
        free(a);
        free(b);
        free(c);
        wg_sampler_free(&fast);
        wg_sampler_free(&full);
        wg_sampler_free(&drawn);
    }
    cr_assert_gt(whole_n, 20, "only %d of 80 runs closed their object in 400 tokens", whole_n);
    wg_json_vocab_free(&v);
}
