/* wg_stop — stop-string matching over a stream of token texts.
 *
 * The stopper keeps a small hold-back buffer: after each push it holds the
 * longest suffix of the unreleased text that is a proper prefix of some stop
 * string, and releases everything before it. A stop string is therefore found
 * however the text was split into tokens.
 *
 * When several stop strings occur, the one that *completes first* in the
 * byte stream wins (ties: the longer one, i.e. the earlier start). This is what
 * feeding the text one byte at a time would give, so the emitted text does not
 * depend on the tokenisation. Everything from the start of the winning stop
 * string on is dropped; later pushes emit nothing. */
#include "wg_sampler.h"

#include <stdlib.h>
#include <string.h>

struct wg_stopper {
    char *stops[WG_MAX_STOP];  /* owned copies of the stop strings */
    size_t lens[WG_MAX_STOP];  /* their byte lengths (> 0) */
    size_t n_stops;            /* number of stop strings */
    size_t max_len;            /* longest stop string */
    char *held;                /* [n_held] text not yet released */
    size_t n_held;             /* bytes in held */
    size_t cap_held;           /* allocated bytes of held */
    bool stopped;              /* a stop string has completed */
};

wg_stopper_t *wg_stopper_new(const char *const *stops, size_t n_stops) {
    if (n_stops > WG_MAX_STOP) {
        wg_error(WG_ERR_RANGE, "stop: %zu stop strings, at most %d", n_stops, WG_MAX_STOP);
        return NULL;
    }
    if (n_stops > 0 && !stops) {
        wg_error(WG_ERR_INVAL, "stop: stops is NULL with n_stops=%zu", n_stops);
        return NULL;
    }
    for (size_t i = 0; i < n_stops; i++) {
        if (!stops[i] || !stops[i][0]) {
            wg_error(WG_ERR_INVAL, "stop[%zu] is %s: stop strings must be non-empty", i,
                     stops[i] ? "empty" : "NULL");
            return NULL;
        }
    }
    wg_stopper_t *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    for (size_t i = 0; i < n_stops; i++) {
        s->stops[i] = strdup(stops[i]);
        if (!s->stops[i]) goto nomem;
        s->lens[i] = strlen(stops[i]);
        if (s->lens[i] > s->max_len) s->max_len = s->lens[i];
        s->n_stops++;
    }
    return s;
nomem:
    wg_stopper_free(&s);
    wg_error(WG_ERR_NOMEM, "stop: out of memory");
    return NULL;
}

void wg_stopper_free(wg_stopper_t **sp) {
    if (!sp || !*sp) return;
    wg_stopper_t *s = *sp;
    for (size_t i = 0; i < s->n_stops; i++) free(s->stops[i]);
    free(s->held);
    free(s);
    *sp = NULL;
}

static char *s_dup(const char *p, size_t n) {
    char *r = malloc(n + 1);
    if (!r) return NULL;
    if (n) memcpy(r, p, n);
    r[n] = '\0';
    return r;
}

/* Length of the longest suffix of buf[0..n) that is a proper prefix of a stop string. */
static size_t s_hold_len(const wg_stopper_t *s, const char *buf, size_t n) {
    size_t best = 0;
    for (size_t k = 0; k < s->n_stops; k++) {
        size_t lmax = s->lens[k] - 1;
        if (lmax > n) lmax = n;
        for (size_t l = lmax; l > best; l--) {
            if (memcmp(buf + n - l, s->stops[k], l) == 0) {
                best = l;
                break;
            }
        }
    }
    return best;
}

wg_status wg_stopper_push(wg_stopper_t *s, const char *text, size_t len, char **emit, bool *stopped) {
    WG_ASSERT(s && emit && stopped);
    WG_ASSERT(text || len == 0);
    *emit = NULL;
    *stopped = s->stopped;
    if (s->stopped) len = 0;
    if (s->n_held + len > s->cap_held) {
        size_t cap = s->cap_held ? s->cap_held : 64;
        while (cap < s->n_held + len) cap *= 2;
        char *h = realloc(s->held, cap);
        if (!h) return wg_error(WG_ERR_NOMEM, "stop: %zu bytes of held text", cap);
        s->held = h;
        s->cap_held = cap;
    }
    if (len) memcpy(s->held + s->n_held, text, len);
    s->n_held += len;

    /* earliest-completing stop string; the held prefix alone contains none */
    size_t best_end = SIZE_MAX, best_pos = 0;
    for (size_t k = 0; k < s->n_stops; k++) {
        const char *hit = memmem(s->held, s->n_held, s->stops[k], s->lens[k]);
        if (!hit) continue;
        size_t pos = (size_t)(hit - s->held), end = pos + s->lens[k];
        if (end < best_end || (end == best_end && pos < best_pos)) {
            best_end = end;
            best_pos = pos;
        }
    }
    size_t release;
    if (best_end != SIZE_MAX) {
        release = best_pos;
        s->stopped = true;
        *stopped = true;
    } else {
        release = s->n_held - s_hold_len(s, s->held, s->n_held);
    }
    char *e = s_dup(s->held, release);
    if (!e) return wg_error(WG_ERR_NOMEM, "stop: %zu bytes to emit", release);
    if (s->stopped) {
        s->n_held = 0;
    } else if (release > 0) { /* held may still be NULL when nothing was ever held */
        memmove(s->held, s->held + release, s->n_held - release);
        s->n_held -= release;
    }
    *emit = e;
    return WG_OK;
}

wg_status wg_stopper_flush(wg_stopper_t *s, char **emit) {
    WG_ASSERT(s && emit);
    char *e = s_dup(s->held, s->n_held);
    if (!e) return wg_error(WG_ERR_NOMEM, "stop: %zu bytes to flush", s->n_held);
    s->n_held = 0;
    *emit = e;
    return WG_OK;
}
