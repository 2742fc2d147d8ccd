/* wg_msg_keys — CURVE key-file reader: shape first (40 Z85 chars is a key),
 * then comments and zcert assignments. See wg_msg_keys.h. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wg_msg_keys.h"

/* The Z85 alphabet (ZeroMQ RFC 32). */
static const char s_z85[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

bool wg_msg_z85_key_ok(const char *s, size_t len) {
    if (len != WG_MSG_Z85_KEY_LEN) return false;
    for (size_t i = 0; i < len; i++)
        if (!s[i] || !strchr(s_z85, s[i])) return false;
    return true;
}

void wg_msg_keys_free(char ***keys, uint32_t *n) {
    if (!keys || !*keys) return;
    for (uint32_t i = 0; i < *n; i++) free((*keys)[i]);
    free(*keys);
    *keys = NULL;
    *n = 0;
}

static bool s_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

wg_status wg_msg_keys_parse(const char *text, size_t len, char ***keys, uint32_t *n) {
    *keys = NULL;
    *n = 0;
    size_t at = 0;
    uint32_t lineno = 0;
    while (at < len) {
        size_t eol = at;
        while (eol < len && text[eol] != '\n') eol++;
        lineno++;
        size_t b = at, e = eol;
        at = eol + 1;
        while (b < e && s_space(text[b])) b++;
        while (e > b && s_space(text[e - 1])) e--;
        if (b == e) continue;
        const char *key = NULL;
        size_t klen = 0;
        if (wg_msg_z85_key_ok(text + b, e - b)) {
            key = text + b;
            klen = e - b;
        } else if (text[b] == '#') {
            continue;
        } else {
            /* zcert: name = "KEY" */
            const char *eq = memchr(text + b, '=', e - b);
            const char *q1 = eq ? memchr(eq, '"', (size_t)(text + e - eq)) : NULL;
            if (q1 && text[e - 1] == '"' && (size_t)(text + e - 1 - (q1 + 1)) == WG_MSG_Z85_KEY_LEN) {
                bool name_ok = eq > text + b;
                for (const char *p = eq + 1; p < q1; p++) name_ok = name_ok && s_space(*p);
                if (name_ok && wg_msg_z85_key_ok(q1 + 1, WG_MSG_Z85_KEY_LEN)) {
                    key = q1 + 1;
                    klen = WG_MSG_Z85_KEY_LEN;
                }
            }
            if (!key) {
                wg_msg_keys_free(keys, n);
                return wg_error(WG_ERR_FORMAT,
                                "key file line %u: %zu chars is neither a 40-char Z85 key, a '#' comment nor "
                                "name = \"KEY\"",
                                lineno, e - b);
            }
        }
        char **g = realloc(*keys, (*n + 1) * sizeof *g);
        char *k = g ? strndup(key, klen) : NULL;
        if (g) *keys = g;
        if (!k) {
            wg_msg_keys_free(keys, n);
            return wg_error(WG_ERR_NOMEM, "key file line %u", lineno);
        }
        (*keys)[(*n)++] = k;
    }
    return WG_OK;
}

wg_status wg_msg_keys_read(const char *path, char ***keys, uint32_t *n) {
    *keys = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return wg_error(WG_ERR_IO, "key file '%s' cannot be opened", path);
    char buf[65536];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    bool more = !feof(f) && fgetc(f) != EOF;
    fclose(f);
    if (more) return wg_error(WG_ERR_FORMAT, "key file '%s' is larger than %zu bytes", path, sizeof buf - 1);
    wg_status st = wg_msg_keys_parse(buf, len, keys, n);
    if (st) {
        char why[512];
        snprintf(why, sizeof why, "%s", wg_errmsg());
        return wg_error(st, "%s: %s", path, why);
    }
    return WG_OK;
}
