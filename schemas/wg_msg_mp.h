/* wg_msg_mp — internal msgpack helpers for the codec families (not public API).
 *
 * The reader is a cursor over untrusted bytes: every read checks the bytes
 * left, every count is checked against the bytes left (an element is at least
 * one byte), nesting is bounded, and errors name the field being read. */
#ifndef WG_MSG_MP_H
#define WG_MSG_MP_H

#include <msgpack.h>

#include "wg_msg.h"

typedef struct wg_mp_rd {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
    const char *msg;    /* message name for error reasons ("SUBMIT") */
} wg_mp_rd;

/* Start decoding a body: size limit, then the top-level map header. */
wg_status wg_mp_begin(wg_mp_rd *r, const uint8_t *data, size_t len, const char *msg,
                      uint32_t *n_keys);
/* Fail with ERR_FORMAT if bytes are left after the body map. */
wg_status wg_mp_end(const wg_mp_rd *r);

wg_status wg_mp_map(wg_mp_rd *r, const char *field, uint32_t *n);
wg_status wg_mp_array(wg_mp_rd *r, const char *field, uint32_t max, uint32_t *n);
/* A borrowed str of min..max bytes (pointer into the body). */
wg_status wg_mp_str(wg_mp_rd *r, const char *field, size_t min, size_t max, const char **s,
                    uint32_t *len);
/* Same, copied into a malloc'd NUL-terminated string (*out freed first). */
wg_status wg_mp_strdup(wg_mp_rd *r, const char *field, size_t min, size_t max, char **out);
wg_status wg_mp_uint(wg_mp_rd *r, const char *field, uint64_t max, uint64_t *v);
wg_status wg_mp_u32(wg_mp_rd *r, const char *field, uint32_t min, uint32_t max, uint32_t *v);
wg_status wg_mp_int(wg_mp_rd *r, const char *field, int64_t min, int64_t max, int64_t *v);
wg_status wg_mp_float(wg_mp_rd *r, const char *field, double *v);
wg_status wg_mp_bool(wg_mp_rd *r, const char *field, bool *v);
/* Skip one value of any type (unknown keys), depth-bounded. */
wg_status wg_mp_skip(wg_mp_rd *r);
/* Read a map key into a borrowed string. */
wg_status wg_mp_key(wg_mp_rd *r, const char **k, uint32_t *klen);
bool wg_mp_key_is(const char *k, uint32_t klen, const char *name);
wg_status wg_mp_missing(const wg_mp_rd *r, const char *field);
/* Array of strings, each min..max bytes, into a malloc'd array of malloc'd strings. */
wg_status wg_mp_str_array(wg_mp_rd *r, const char *field, uint32_t max_n, size_t min,
                          size_t max, char ***out, uint32_t *n);
void wg_mp_str_array_free(char ***a, uint32_t *n);
wg_status wg_mp_u32_array(wg_mp_rd *r, const char *field, uint32_t max_n, uint32_t **out,
                          uint32_t *n);

/* Writer: an sbuffer + packer; wg_mp_finish moves the bytes into a wg_msg_buf. */
typedef struct wg_mp_wr {
    msgpack_sbuffer sb; /* growing output */
    msgpack_packer pk;  /* packs into sb */
} wg_mp_wr;

void wg_mp_wr_init(wg_mp_wr *w);
wg_status wg_mp_finish(wg_mp_wr *w, wg_msg_buf *out);
void wg_mp_wr_abort(wg_mp_wr *w);
void wg_mp_put_key(wg_mp_wr *w, const char *k);
void wg_mp_put_str(wg_mp_wr *w, const char *s); /* NULL packs as "" */
void wg_mp_put_kstr(wg_mp_wr *w, const char *k, const char *v);
void wg_mp_put_kuint(wg_mp_wr *w, const char *k, uint64_t v);
void wg_mp_put_kint(wg_mp_wr *w, const char *k, int64_t v);
void wg_mp_put_kfloat(wg_mp_wr *w, const char *k, double v);
void wg_mp_put_kbool(wg_mp_wr *w, const char *k, bool v);
void wg_mp_put_kstrs(wg_mp_wr *w, const char *k, char *const *v, uint32_t n);
void wg_mp_put_ku32s(wg_mp_wr *w, const char *k, const uint32_t *v, uint32_t n);

/* Metrics map inside METRICS and HEARTBEAT (wg_msg_stream.c). */
struct wg_msg_metrics;
/* Errors: ERR_RANGE (more than WG_MSG_MAX_MODELS model_stats), ERR_INVAL (one without a model). */
wg_status wg_mp_metrics_check(const struct wg_msg_metrics *m, const char *msg);
void wg_mp_put_metrics(wg_mp_wr *w, const struct wg_msg_metrics *m);
wg_status wg_mp_read_metrics(wg_mp_rd *r, struct wg_msg_metrics *m);

#endif
