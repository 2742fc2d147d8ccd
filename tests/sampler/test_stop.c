/* Tests for wg_stopper: matches across token boundaries, hold-back of
 * possible prefixes, overlapping candidates, flush, and independence from how
 * the text is split into tokens. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/wg_status.h"
#include "engine/sampler/wg_sampler.h"

typedef struct {
    char text[4096];  /* everything emitted so far */
    bool stopped;     /* last push reported a stop */
} t_out_t;

static void t_push(wg_stopper_t *s, const char *txt, size_t len, t_out_t *o, const char *want_emit) {
    char *e = NULL;
    bool stopped = false;
    cr_assert_eq(wg_stopper_push(s, txt, len, &e, &stopped), WG_OK);
    cr_assert_not_null(e);
    if (want_emit) cr_assert_str_eq(e, want_emit, "push '%.*s'", (int)len, txt);
    strcat(o->text, e);
    o->stopped = stopped;
    free(e);
}

static void t_flush(wg_stopper_t *s, t_out_t *o, const char *want) {
    char *e = NULL;
    cr_assert_eq(wg_stopper_flush(s, &e), WG_OK);
    if (want) cr_assert_str_eq(e, want);
    strcat(o->text, e);
    free(e);
}

Test(stop, match_split_across_one_byte_tokens) {
    const char *stops[] = {"</s>"};
    wg_stopper_t *s = wg_stopper_new(stops, 1);
    cr_assert_not_null(s);
    t_out_t o = {0};
    const char *in = "Hello</s>world";
    for (size_t i = 0; i < strlen(in); i++) {
        t_push(s, in + i, 1, &o, NULL);
        if (i < 5) cr_assert_eq(strlen(o.text), i + 1, "plain text was held back at %zu", i);
        if (i >= 5 && i < 8) cr_assert_str_eq(o.text, "Hello", "partial stop leaked at %zu", i);
        if (i == 8) break;
        cr_assert_not(o.stopped);
    }
    cr_assert(o.stopped);
    cr_assert_str_eq(o.text, "Hello");
    t_push(s, "more", 4, &o, ""); /* after the stop nothing comes out */
    cr_assert(o.stopped);
    t_flush(s, &o, "");
    cr_assert_str_eq(o.text, "Hello");
    wg_stopper_free(&s);
    cr_assert_null(s);
}

Test(stop, held_prefix_is_released_when_it_turns_out_not_to_match) {
    const char *stops[] = {"abc"};
    wg_stopper_t *s = wg_stopper_new(stops, 1);
    t_out_t o = {0};
    t_push(s, "xab", 3, &o, "x");
    t_push(s, "d", 1, &o, "abd");
    t_push(s, "aab", 3, &o, "a"); /* "ab" could still start "abc" */
    t_push(s, "c!", 2, &o, "");
    cr_assert(o.stopped);
    cr_assert_str_eq(o.text, "xabda");
    wg_stopper_free(&s);
}

Test(stop, overlapping_candidates_shorter_completes_first) {
    const char *stops[] = {"abc", "ab"};
    wg_stopper_t *s = wg_stopper_new(stops, 2);
    t_out_t o = {0};
    t_push(s, "xa", 2, &o, "x");
    t_push(s, "b", 1, &o, "");
    cr_assert(o.stopped, "\"ab\" completed and must stop even though \"abc\" could follow");
    cr_assert_str_eq(o.text, "x");
    wg_stopper_free(&s);

    /* the one that completes first in the byte stream wins, whole-chunk or not */
    const char *stops2[] = {"abcd", "bc"};
    s = wg_stopper_new(stops2, 2);
    t_out_t w = {0};
    t_push(s, "xabcdy", 6, &w, "xa");
    cr_assert(w.stopped);
    wg_stopper_free(&s);

    /* same end: the longer (earlier-starting) one wins */
    const char *stops3[] = {"cd", "abcd"};
    s = wg_stopper_new(stops3, 2);
    t_out_t v = {0};
    t_push(s, "xab", 3, &v, "x");
    t_push(s, "cd", 2, &v, "");
    cr_assert(v.stopped);
    cr_assert_str_eq(v.text, "x");
    wg_stopper_free(&s);
}

Test(stop, flush_releases_a_trailing_partial_match) {
    const char *stops[] = {"world!", "\n\nUser:"};
    wg_stopper_t *s = wg_stopper_new(stops, 2);
    t_out_t o = {0};
    t_push(s, "hello wor", 9, &o, "hello ");
    t_push(s, "ld\n", 3, &o, "world");
    t_flush(s, &o, "\n");
    cr_assert_not(o.stopped);
    cr_assert_str_eq(o.text, "hello world\n");
    t_flush(s, &o, ""); /* nothing left */
    wg_stopper_free(&s);
}

Test(stop, no_stops_passes_everything_through) {
    wg_stopper_t *s = wg_stopper_new(NULL, 0);
    cr_assert_not_null(s);
    t_out_t o = {0};
    t_push(s, "abc", 3, &o, "abc");
    t_push(s, "", 0, &o, "");
    t_flush(s, &o, "");
    wg_stopper_free(&s);
}

Test(stop, empty_null_and_too_many_stop_strings_are_rejected) {
    const char *bad[] = {"ok", ""};
    cr_assert_null(wg_stopper_new(bad, 2));
    cr_assert(strstr(wg_errmsg(), "stop[1]"), "%s", wg_errmsg());
    const char *bad2[] = {NULL};
    cr_assert_null(wg_stopper_new(bad2, 1));
    cr_assert(strstr(wg_errmsg(), "stop[0]"), "%s", wg_errmsg());
    const char *many[WG_MAX_STOP + 1];
    for (int i = 0; i <= WG_MAX_STOP; i++) many[i] = "x";
    cr_assert_null(wg_stopper_new(many, WG_MAX_STOP + 1));
    wg_stopper_t *s = wg_stopper_new(many, WG_MAX_STOP);
    cr_assert_not_null(s);
    wg_stopper_free(&s);
}

/* Property: for random text and random token splits, the emitted text equals
 * the text cut at the first completed stop string (or the whole text after a
 * flush), and never contains a stop string. */
Test(stop, result_does_not_depend_on_the_token_split) {
    const char *stops[] = {"abc", "cab", "bb", "aaaa"};
    uint64_t x = 99;
    for (int trial = 0; trial < 2000; trial++) {
        char in[64];
        x = x * 6364136223846793005ull + 1;
        size_t n = (size_t)(x >> 59) + 5; /* 5..36 bytes */
        for (size_t i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1;
            in[i] = "abcx"[(x >> 60) & 3];
        }
        in[n] = 0;
        /* expected: scan prefixes byte by byte for the first completed stop */
        size_t cut = n;
        bool want_stop = false;
        for (size_t end = 1; end <= n && !want_stop; end++)
            for (size_t k = 0; k < 4; k++) {
                size_t L = strlen(stops[k]);
                if (end >= L && memcmp(in + end - L, stops[k], L) == 0) {
                    if (!want_stop || end - L < cut) cut = end - L;
                    want_stop = true;
                }
            }
        wg_stopper_t *s = wg_stopper_new(stops, 4);
        t_out_t o = {0};
        size_t i = 0;
        while (i < n && !o.stopped) {
            x = x * 6364136223846793005ull + 1;
            size_t len = 1 + (size_t)((x >> 61) % 4);
            if (len > n - i) len = n - i;
            t_push(s, in + i, len, &o, NULL);
            for (size_t k = 0; k < 4; k++)
                cr_assert_null(strstr(o.text, stops[k]), "emitted '%s' contains '%s'", o.text, stops[k]);
            i += len;
        }
        t_flush(s, &o, NULL);
        cr_assert_eq(o.stopped, want_stop, "input '%s'", in);
        cr_assert_eq(strlen(o.text), cut, "input '%s': emitted '%s', want %zu bytes", in, o.text, cut);
        cr_assert_eq(memcmp(o.text, in, cut), 0);
        wg_stopper_free(&s);
    }
}

/* An empty push before anything was ever held must not touch the (NULL) buffer. */
Test(stop, empty_first_push_then_text) {
    const char *stops[] = {"END"};
    wg_stopper_t *s = wg_stopper_new(stops, 1);
    cr_assert_not_null(s);
    char *e = NULL;
    bool stopped = true;
    cr_assert_eq(wg_stopper_push(s, "", 0, &e, &stopped), WG_OK);
    cr_assert_str_eq(e, "");
    cr_assert_not(stopped);
    free(e);
    cr_assert_eq(wg_stopper_push(s, "abcEN", 5, &e, &stopped), WG_OK);
    cr_assert_str_eq(e, "abc");
    free(e);
    cr_assert_eq(wg_stopper_push(s, "Dx", 2, &e, &stopped), WG_OK);
    cr_assert(stopped);
    cr_assert_str_eq(e, "");
    free(e);
    wg_stopper_free(&s);
}
