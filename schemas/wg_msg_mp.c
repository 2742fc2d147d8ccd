/* wg_msg_mp — bounds-checked msgpack pull reader and packer helpers, plus the
 * command table shared by every codec family. Reader errors: ERR_TRUNCATED when
 * the bytes end early, ERR_FORMAT for a wrong type, ERR_RANGE for a limit. */
#include "wg_msg_mp.h"

#include <stdlib.h>
#include <string.h>

static const char *s_cmd_names[WG_CMD_COUNT] = {
    "UNKNOWN", "SUBMIT", "SUBMITTED", "CANCEL", "STATUS", "FETCH", "JOBSTATE",
    "RESULT", "ERROR", "PING", "PONG", "READY", "HEARTBEAT", "JOB", "DONE",
    "FAILED", "DISCONNECT", "TOKEN", "METRICS"};

const char *wg_msg_cmd_name(wg_msg_cmd cmd) {
    if ((int)cmd <= 0 || cmd >= WG_CMD_COUNT) return "UNKNOWN";
    return s_cmd_names[cmd];
}

wg_status wg_msg_cmd_parse(const void *data, size_t len, wg_msg_cmd *out) {
    *out = WG_CMD_UNKNOWN;
    if (len == 0 || len > WG_MSG_MAX_CMD)
        return wg_error(WG_ERR_PROTOCOL, "command frame of %zu bytes (1..%d allowed)", len,
                        WG_MSG_MAX_CMD);
    for (int i = 1; i < WG_CMD_COUNT; i++) {
        if (strlen(s_cmd_names[i]) == len && memcmp(s_cmd_names[i], data, len) == 0) {
            *out = (wg_msg_cmd)i;
            return WG_OK;
        }
    }
    char shown[WG_MSG_MAX_CMD * 4 + 1];
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = ((const unsigned char *)data)[i];
        if (c >= 0x20 && c < 0x7f) shown[o++] = (char)c;
        else o += (size_t)snprintf(shown + o, sizeof shown - o, "\\x%02x", c);
    }
    shown[o] = 0;
    return wg_error(WG_ERR_PROTOCOL, "unknown command '%s'", shown);
}

wg_status wg_msg_check_signature(const void *data, size_t len) {
    if (len == WG_MSG_SIGNATURE_LEN && memcmp(data, WG_MSG_SIGNATURE, len) == 0) return WG_OK;
    char shown[17] = {0};
    size_t n = len < 16 ? len : 16;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = ((const unsigned char *)data)[i];
        shown[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    return wg_error(WG_ERR_VERSION, "signature '%s' (%zu bytes), expected '%s'", shown, len,
                    WG_MSG_SIGNATURE);
}

wg_status wg_msg_status_from_name(const char *name) {
    static const wg_status all[] = {
#define WG_XX_ALL(n, v, s) WG_##n,
        WG_ERRORS(WG_XX_ALL)
#undef WG_XX_ALL
    };
    if (!name) return WG_ERR;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(wg_status_name(all[i]), name) == 0) return all[i];
    return WG_ERR;
}

void wg_msg_buf_free(wg_msg_buf *b) {
    if (!b) return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

/* ---- reader ---- */

static wg_status s_trunc(const wg_mp_rd *r, const char *field) {
    return wg_error(WG_ERR_TRUNCATED, "%s: body ends inside field '%s'", r->msg, field);
}

static wg_status s_need(const wg_mp_rd *r, size_t n, const char *field) {
    if ((size_t)(r->end - r->p) < n) return s_trunc(r, field);
    return WG_OK;
}

static uint64_t s_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static const char *s_type_name(uint8_t b) {
    if (b <= 0x7f || (b >= 0xcc && b <= 0xcf)) return "uint";
    if (b >= 0xe0 || (b >= 0xd0 && b <= 0xd3)) return "int";
    if ((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf) return "map";
    if ((b >= 0x90 && b <= 0x9f) || b == 0xdc || b == 0xdd) return "array";
    if ((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb)) return "str";
    if (b == 0xc0) return "nil";
    if (b == 0xc2 || b == 0xc3) return "bool";
    if (b >= 0xc4 && b <= 0xc6) return "bin";
    if (b == 0xca || b == 0xcb) return "float";
    if (b == 0xc1) return "invalid(0xc1)";
    return "ext";
}

static wg_status s_type(const wg_mp_rd *r, const char *field, const char *want) {
    return wg_error(WG_ERR_FORMAT, "%s: field '%s' is %s, expected %s", r->msg, field,
                    s_type_name(*r->p), want);
}

static wg_status s_count(wg_mp_rd *r, const char *field, int map, uint32_t *n) {
    wg_status st = s_need(r, 1, field);
    if (st) return st;
    uint8_t b = *r->p;
    uint8_t fix_lo = map ? 0x80 : 0x90, b16 = map ? 0xde : 0xdc, b32 = map ? 0xdf : 0xdd;
    uint64_t v;
    if (b >= fix_lo && b <= fix_lo + 0x0f) {
        v = b & 0x0f;
        r->p += 1;
    } else if (b == b16 || b == b32) {
        int w = b == b16 ? 2 : 4;
        if ((st = s_need(r, 1 + (size_t)w, field))) return st;
        v = s_be(r->p + 1, w);
        r->p += 1 + w;
    } else {
        return s_type(r, field, map ? "map" : "array");
    }
    /* each element takes at least one byte (two for a key/value pair) */
    uint64_t min_bytes = map ? v * 2 : v;
    if (min_bytes > (uint64_t)(r->end - r->p))
        return wg_error(WG_ERR_TRUNCATED, "%s: field '%s' declares %llu entries but %zu bytes remain",
                        r->msg, field, (unsigned long long)v, (size_t)(r->end - r->p));
    *n = (uint32_t)v;
    return WG_OK;
}

wg_status wg_mp_map(wg_mp_rd *r, const char *field, uint32_t *n) { return s_count(r, field, 1, n); }

wg_status wg_mp_array(wg_mp_rd *r, const char *field, uint32_t max, uint32_t *n) {
    wg_status st = s_count(r, field, 0, n);
    if (st) return st;
    if (*n > max)
        return wg_error(WG_ERR_RANGE, "%s: field '%s' has %u entries (max %u)", r->msg, field, *n,
                        max);
    return WG_OK;
}

wg_status wg_mp_begin(wg_mp_rd *r, const uint8_t *data, size_t len, const char *msg,
                      uint32_t *n_keys) {
    r->p = data;
    r->end = data + len;
    r->msg = msg;
    if (len > WG_MSG_MAX_BODY)
        return wg_error(WG_ERR_RANGE, "%s: body of %zu bytes exceeds %u", msg, len,
                        WG_MSG_MAX_BODY);
    if (len == 0 || !data) return wg_error(WG_ERR_TRUNCATED, "%s: empty body", msg);
    return wg_mp_map(r, "<body>", n_keys);
}

wg_status wg_mp_end(const wg_mp_rd *r) {
    if (r->p != r->end)
        return wg_error(WG_ERR_FORMAT, "%s: %zu trailing bytes after the body map", r->msg,
                        (size_t)(r->end - r->p));
    return WG_OK;
}

wg_status wg_mp_str(wg_mp_rd *r, const char *field, size_t min, size_t max, const char **s,
                    uint32_t *len) {
    wg_status st = s_need(r, 1, field);
    if (st) return st;
    uint8_t b = *r->p;
    uint64_t n;
    int hdr;
    if (b >= 0xa0 && b <= 0xbf) {
        n = b & 0x1f;
        hdr = 1;
    } else if (b >= 0xd9 && b <= 0xdb) {
        int w = 1 << (b - 0xd9);
        if ((st = s_need(r, 1 + (size_t)w, field))) return st;
        n = s_be(r->p + 1, w);
        hdr = 1 + w;
    } else {
        return s_type(r, field, "str");
    }
    if (n > (uint64_t)(r->end - r->p - hdr)) return s_trunc(r, field);
    if (n < min || n > max)
        return wg_error(WG_ERR_RANGE, "%s: field '%s' is %llu bytes (allowed %zu..%zu)", r->msg,
                        field, (unsigned long long)n, min, max);
    *s = (const char *)r->p + hdr;
    *len = (uint32_t)n;
    r->p += hdr + n;
    return WG_OK;
}

wg_status wg_mp_strdup(wg_mp_rd *r, const char *field, size_t min, size_t max, char **out) {
    const char *s;
    uint32_t n;
    wg_status st = wg_mp_str(r, field, min, max, &s, &n);
    if (st) return st;
    /* The decoded structs hold C strings: a NUL inside would silently cut
     * the value (an id forwarded shorter than it came, a prompt losing its
     * end), so it is refused here. */
    const char *nul = memchr(s, 0, n);
    if (nul)
        return wg_error(WG_ERR_FORMAT, "%s: field '%s' contains a NUL byte (at byte %zu of %u)", r->msg, field,
                        (size_t)(nul - s), n);
    char *c = malloc((size_t)n + 1);
    if (!c) return wg_error(WG_ERR_NOMEM, "%s: field '%s' (%u bytes)", r->msg, field, n);
    memcpy(c, s, n);
    c[n] = 0;
    free(*out);
    *out = c;
    return WG_OK;
}

/* Reads any int encoding into (neg, magnitude-or-value). */
static wg_status s_anyint(wg_mp_rd *r, const char *field, int *neg, uint64_t *u, int64_t *i) {
    wg_status st = s_need(r, 1, field);
    if (st) return st;
    uint8_t b = *r->p;
    if (b <= 0x7f) {
        *neg = 0;
        *u = b;
        r->p++;
        return WG_OK;
    }
    if (b >= 0xe0) {
        *neg = 1;
        *i = (int8_t)b;
        r->p++;
        return WG_OK;
    }
    if (b >= 0xcc && b <= 0xcf) {
        int w = 1 << (b - 0xcc);
        if ((st = s_need(r, 1 + (size_t)w, field))) return st;
        *neg = 0;
        *u = s_be(r->p + 1, w);
        r->p += 1 + w;
        return WG_OK;
    }
    if (b >= 0xd0 && b <= 0xd3) {
        int w = 1 << (b - 0xd0);
        if ((st = s_need(r, 1 + (size_t)w, field))) return st;
        uint64_t raw = s_be(r->p + 1, w);
        int64_t v;
        if (w == 1) v = (int8_t)raw;
        else if (w == 2) v = (int16_t)raw;
        else if (w == 4) v = (int32_t)raw;
        else v = (int64_t)raw;
        r->p += 1 + w;
        if (v >= 0) {
            *neg = 0;
            *u = (uint64_t)v;
        } else {
            *neg = 1;
            *i = v;
        }
        return WG_OK;
    }
    return s_type(r, field, "int");
}

wg_status wg_mp_uint(wg_mp_rd *r, const char *field, uint64_t max, uint64_t *v) {
    int neg = 0;
    uint64_t u = 0;
    int64_t i = 0;
    wg_status st = s_anyint(r, field, &neg, &u, &i);
    if (st) return st;
    if (neg)
        return wg_error(WG_ERR_FORMAT, "%s: field '%s' is negative (%lld), expected uint", r->msg,
                        field, (long long)i);
    if (u > max)
        return wg_error(WG_ERR_RANGE, "%s: field '%s' = %llu exceeds %llu", r->msg, field,
                        (unsigned long long)u, (unsigned long long)max);
    *v = u;
    return WG_OK;
}

wg_status wg_mp_u32(wg_mp_rd *r, const char *field, uint32_t min, uint32_t max, uint32_t *v) {
    uint64_t u;
    wg_status st = wg_mp_uint(r, field, max, &u);
    if (st) return st;
    if (u < min)
        return wg_error(WG_ERR_RANGE, "%s: field '%s' = %llu below %u", r->msg, field,
                        (unsigned long long)u, min);
    *v = (uint32_t)u;
    return WG_OK;
}

wg_status wg_mp_int(wg_mp_rd *r, const char *field, int64_t min, int64_t max, int64_t *v) {
    int neg = 0;
    uint64_t u = 0;
    int64_t i = 0;
    wg_status st = s_anyint(r, field, &neg, &u, &i);
    if (st) return st;
    if (!neg) {
        if (u > (uint64_t)INT64_MAX)
            return wg_error(WG_ERR_RANGE, "%s: field '%s' = %llu too large", r->msg, field,
                            (unsigned long long)u);
        i = (int64_t)u;
    }
    if (i < min || i > max)
        return wg_error(WG_ERR_RANGE, "%s: field '%s' = %lld outside %lld..%lld", r->msg, field,
                        (long long)i, (long long)min, (long long)max);
    *v = i;
    return WG_OK;
}

wg_status wg_mp_float(wg_mp_rd *r, const char *field, double *v) {
    wg_status st = s_need(r, 1, field);
    if (st) return st;
    uint8_t b = *r->p;
    if (b == 0xca) {
        if ((st = s_need(r, 5, field))) return st;
        uint32_t raw = (uint32_t)s_be(r->p + 1, 4);
        float f;
        memcpy(&f, &raw, 4);
        *v = f;
        r->p += 5;
        return WG_OK;
    }
    if (b == 0xcb) {
        if ((st = s_need(r, 9, field))) return st;
        uint64_t raw = s_be(r->p + 1, 8);
        memcpy(v, &raw, 8);
        r->p += 9;
        return WG_OK;
    }
    int neg = 0;
    uint64_t u = 0;
    int64_t i = 0;
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) {
        if ((st = s_anyint(r, field, &neg, &u, &i))) return st;
        *v = neg ? (double)i : (double)u;
        return WG_OK;
    }
    return s_type(r, field, "float");
}

wg_status wg_mp_bool(wg_mp_rd *r, const char *field, bool *v) {
    wg_status st = s_need(r, 1, field);
    if (st) return st;
    if (*r->p != 0xc2 && *r->p != 0xc3) return s_type(r, field, "bool");
    *v = *r->p == 0xc3;
    r->p++;
    return WG_OK;
}

static wg_status s_skip(wg_mp_rd *r, int depth) {
    if (depth > WG_MSG_MAX_DEPTH)
        return wg_error(WG_ERR_RANGE, "%s: nesting deeper than %d", r->msg, WG_MSG_MAX_DEPTH);
    wg_status st = s_need(r, 1, "<value>");
    if (st) return st;
    uint8_t b = *r->p;
    uint64_t n = 0;
    int hdr = 1;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        r->p++;
        return WG_OK;
    }
    if (b == 0xc1) return wg_error(WG_ERR_FORMAT, "%s: invalid msgpack byte 0xc1", r->msg);
    if ((b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf || (b >= 0x90 && b <= 0x9f) ||
        b == 0xdc || b == 0xdd) {
        int map = (b >= 0x80 && b <= 0x8f) || b == 0xde || b == 0xdf;
        uint32_t cnt;
        if ((st = s_count(r, "<value>", map, &cnt))) return st;
        uint64_t items = map ? (uint64_t)cnt * 2 : cnt;
        for (uint64_t k = 0; k < items; k++)
            if ((st = s_skip(r, depth + 1))) return st;
        return WG_OK;
    }
    if (b >= 0xa0 && b <= 0xbf) n = b & 0x1f;
    else if (b >= 0xd9 && b <= 0xdb) { int w = 1 << (b - 0xd9); hdr = 1 + w; }
    else if (b >= 0xc4 && b <= 0xc6) { int w = 1 << (b - 0xc4); hdr = 1 + w; }
    else if (b >= 0xc7 && b <= 0xc9) { int w = 1 << (b - 0xc7); hdr = 2 + w; }
    else if (b == 0xca) n = 4;
    else if (b == 0xcb) n = 8;
    else if (b >= 0xcc && b <= 0xcf) n = 1u << (b - 0xcc);
    else if (b >= 0xd0 && b <= 0xd3) n = 1u << (b - 0xd0);
    else if (b >= 0xd4 && b <= 0xd8) { n = 1u << (b - 0xd4); hdr = 2; }
    if (hdr > 1 && !(b >= 0xd4 && b <= 0xd8)) {
        if ((st = s_need(r, (size_t)hdr, "<value>"))) return st;
        int w = (b >= 0xc7 && b <= 0xc9) ? hdr - 2 : hdr - 1;
        n = s_be(r->p + 1, w);
    }
    if ((uint64_t)(r->end - r->p) < (uint64_t)hdr + n) return s_trunc(r, "<value>");
    r->p += hdr + n;
    return WG_OK;
}

wg_status wg_mp_skip(wg_mp_rd *r) { return s_skip(r, 1); }

wg_status wg_mp_key(wg_mp_rd *r, const char **k, uint32_t *klen) {
    return wg_mp_str(r, "<key>", 0, 64, k, klen);
}

bool wg_mp_key_is(const char *k, uint32_t klen, const char *name) {
    return strlen(name) == klen && memcmp(k, name, klen) == 0;
}

wg_status wg_mp_missing(const wg_mp_rd *r, const char *field) {
    return wg_error(WG_ERR_FORMAT, "%s: required field '%s' is missing", r->msg, field);
}

void wg_mp_str_array_free(char ***a, uint32_t *n) {
    if (!*a) return;
    for (uint32_t i = 0; i < *n; i++) free((*a)[i]);
    free(*a);
    *a = NULL;
    *n = 0;
}

wg_status wg_mp_str_array(wg_mp_rd *r, const char *field, uint32_t max_n, size_t min,
                          size_t max, char ***out, uint32_t *n) {
    uint32_t cnt;
    wg_status st = wg_mp_array(r, field, max_n, &cnt);
    if (st) return st;
    wg_mp_str_array_free(out, n);
    char **a = calloc(cnt ? cnt : 1, sizeof *a);
    if (!a) return wg_error(WG_ERR_NOMEM, "%s: field '%s'", r->msg, field);
    for (uint32_t i = 0; i < cnt; i++) {
        if ((st = wg_mp_strdup(r, field, min, max, &a[i]))) {
            uint32_t got = i;
            wg_mp_str_array_free(&a, &got);
            return st;
        }
    }
    *out = a;
    *n = cnt;
    return WG_OK;
}

wg_status wg_mp_u32_array(wg_mp_rd *r, const char *field, uint32_t max_n, uint32_t **out,
                          uint32_t *n) {
    uint32_t cnt;
    wg_status st = wg_mp_array(r, field, max_n, &cnt);
    if (st) return st;
    uint32_t *a = malloc((cnt ? cnt : 1) * sizeof *a);
    if (!a) return wg_error(WG_ERR_NOMEM, "%s: field '%s'", r->msg, field);
    for (uint32_t i = 0; i < cnt; i++) {
        if ((st = wg_mp_u32(r, field, 0, UINT32_MAX, &a[i]))) {
            free(a);
            return st;
        }
    }
    free(*out);
    *out = a;
    *n = cnt;
    return WG_OK;
}

/* ---- writer ---- */

void wg_mp_wr_init(wg_mp_wr *w) {
    msgpack_sbuffer_init(&w->sb);
    msgpack_packer_init(&w->pk, &w->sb, msgpack_sbuffer_write);
}

wg_status wg_mp_finish(wg_mp_wr *w, wg_msg_buf *out) {
    if (!w->sb.data) return wg_error(WG_ERR_NOMEM, "msgpack buffer allocation failed");
    out->data = (uint8_t *)w->sb.data;
    out->len = w->sb.size;
    w->sb.data = NULL;
    w->sb.size = w->sb.alloc = 0;
    if (out->len > WG_MSG_MAX_BODY) {
        size_t n = out->len;
        wg_msg_buf_free(out);
        return wg_error(WG_ERR_RANGE, "encoded body of %zu bytes exceeds %u", n, WG_MSG_MAX_BODY);
    }
    return WG_OK;
}

void wg_mp_wr_abort(wg_mp_wr *w) { msgpack_sbuffer_destroy(&w->sb); }

void wg_mp_put_str(wg_mp_wr *w, const char *s) {
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(&w->pk, n);
    msgpack_pack_str_body(&w->pk, s ? s : "", n);
}

void wg_mp_put_key(wg_mp_wr *w, const char *k) { wg_mp_put_str(w, k); }

void wg_mp_put_kstr(wg_mp_wr *w, const char *k, const char *v) {
    wg_mp_put_key(w, k);
    wg_mp_put_str(w, v);
}

void wg_mp_put_kuint(wg_mp_wr *w, const char *k, uint64_t v) {
    wg_mp_put_key(w, k);
    msgpack_pack_uint64(&w->pk, v);
}

void wg_mp_put_kint(wg_mp_wr *w, const char *k, int64_t v) {
    wg_mp_put_key(w, k);
    msgpack_pack_int64(&w->pk, v);
}

void wg_mp_put_kfloat(wg_mp_wr *w, const char *k, double v) {
    wg_mp_put_key(w, k);
    msgpack_pack_double(&w->pk, v);
}

void wg_mp_put_kbool(wg_mp_wr *w, const char *k, bool v) {
    wg_mp_put_key(w, k);
    if (v) msgpack_pack_true(&w->pk);
    else msgpack_pack_false(&w->pk);
}

void wg_mp_put_kstrs(wg_mp_wr *w, const char *k, char *const *v, uint32_t n) {
    wg_mp_put_key(w, k);
    msgpack_pack_array(&w->pk, n);
    for (uint32_t i = 0; i < n; i++) wg_mp_put_str(w, v[i]);
}

void wg_mp_put_ku32s(wg_mp_wr *w, const char *k, const uint32_t *v, uint32_t n) {
    wg_mp_put_key(w, k);
    msgpack_pack_array(&w->pk, n);
    for (uint32_t i = 0; i < n; i++) msgpack_pack_uint32(&w->pk, v[i]);
}

wg_status wg_msg_empty_encode(wg_msg_buf *out) {
    wg_mp_wr w;
    wg_mp_wr_init(&w);
    msgpack_pack_map(&w.pk, 0);
    return wg_mp_finish(&w, out);
}

wg_status wg_msg_empty_decode(const uint8_t *data, size_t len) {
    wg_mp_rd r;
    uint32_t n;
    wg_status st = wg_mp_begin(&r, data, len, "body", &n);
    if (st) return st;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if ((st = wg_mp_key(&r, &k, &kl)) || (st = wg_mp_skip(&r))) return st;
    }
    return wg_mp_end(&r);
}
