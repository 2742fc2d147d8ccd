/* JSON helpers shared by the subcommands. */
#include <jansson.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "waggle.h"

/* Valid sequences pass through; each byte that does not start one becomes
 * U+FFFD; an embedded NUL stays (jansson writes it as \u0000) when nul_ok,
 * else becomes U+FFFD too. */
json_t *wg_cli_json_text(const char *s, size_t len, bool nul_ok) {
    json_t *j = nul_ok || !memchr(s, 0, len) ? json_stringn(s, len) : NULL;
    if (j) return j;
    char *buf = malloc(len * 3 + 1);
    if (!buf) return json_null();
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = n > 0 && i + n <= len && c != 0;
        for (size_t k = 1; ok && k < n; k++) ok = ((unsigned char)s[i + k] >> 6) == 2;
        if (ok && n > 1) {
            /* let jansson judge overlongs/surrogates on the single sequence */
            json_t *t = json_stringn(s + i, n);
            ok = t != NULL;
            json_decref(t);
        }
        if (ok) {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        } else {
            if (c == 0 && nul_ok) {
                buf[o++] = 0; /* json_stringn accepts embedded NUL as \u0000 */
            } else {
                memcpy(buf + o, "\xef\xbf\xbd", 3);
                o += 3;
            }
            i += 1;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j ? j : json_null();
}

bool wg_cli_response_format(const json_t *body, bool *json, char *err, size_t cap) {
    *json = false;
    json_t *v = json_object_get(body, "response_format");
    if (!v || json_is_null(v)) return true;
    json_t *ty = json_is_object(v) ? json_object_get(v, "type") : NULL;
    if (!json_is_string(ty)) {
        snprintf(err, cap, "body.response_format must be an object with a string \"type\"");
        return false;
    }
    const char *t = json_string_value(ty);
    if (!strcmp(t, "json_object")) *json = true;
    else if (strcmp(t, "text") != 0) {
        snprintf(err, cap, "body.response_format.type '%.40s' is not supported (\"text\" and \"json_object\" are)", t);
        return false;
    }
    return true;
}
