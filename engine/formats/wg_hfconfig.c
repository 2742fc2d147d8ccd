/* wg_hfconfig — typed access to a HuggingFace config.json.
 *
 * Design: the jansson tree is the storage; getters resolve a dotted path on
 * each call (configs hold a few dozen keys, lookups happen at load time only).
 * At each level the whole remaining path is tried as a literal key first, so
 * a key that itself contains dots still resolves. */
#include "wg_hfconfig.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Longest key quoted in an error message. */
#define WG_HFC_QK 200

struct wg_hfconfig {
    json_t *root; /* parsed config.json (an object), owned */
};

static wg_status s_wrap(json_t *root, const char *what, json_error_t *jerr, wg_hfconfig_t **out) {
    if (!root)
        return wg_error(WG_ERR_FORMAT, "hfconfig: %s: invalid JSON: %s (line %d col %d)", what,
                        jerr->text, jerr->line, jerr->column);
    if (!json_is_object(root)) {
        json_decref(root);
        return wg_error(WG_ERR_FORMAT, "hfconfig: %s: top level is not an object", what);
    }
    wg_hfconfig_t *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(root);
        return wg_error(WG_ERR_NOMEM, "hfconfig: handle");
    }
    c->root = root;
    *out = c;
    return WG_OK;
}

wg_status wg_hfconfig_open(const char *path, wg_hfconfig_t **out) {
    WG_ASSERT(path && out);
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return wg_error(WG_ERR_NOTFOUND, "hfconfig: %s does not exist", path);
    size_t plen = strlen(path) + 16;
    char *file = malloc(plen);
    if (!file) return wg_error(WG_ERR_NOMEM, "hfconfig: path");
    if (S_ISDIR(sb.st_mode))
        snprintf(file, plen, "%s/config.json", path);
    else
        snprintf(file, plen, "%s", path);
    if (stat(file, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        wg_status s = wg_error(WG_ERR_NOTFOUND, "hfconfig: %s not found", file);
        free(file);
        return s;
    }
    json_error_t jerr;
    json_t *root = json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
    wg_status s = s_wrap(root, file, &jerr, out);
    free(file);
    return s;
}

wg_status wg_hfconfig_open_mem(const char *json, size_t len, wg_hfconfig_t **out) {
    WG_ASSERT(out);
    *out = NULL;
    if (!json && len) return wg_error(WG_ERR_INVAL, "hfconfig: NULL buffer of %zu bytes", len);
    json_error_t jerr;
    json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr);
    return s_wrap(root, "buffer", &jerr, out);
}

void wg_hfconfig_close(wg_hfconfig_t **cfg) {
    if (!cfg || !*cfg) return;
    json_decref((*cfg)->root);
    free(*cfg);
    *cfg = NULL;
}

static const char *s_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real";
    case JSON_TRUE:
    case JSON_FALSE: return "a bool";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Child of `node` named by the `len`-byte component `comp`, or NULL. */
static json_t *s_child(json_t *node, const char *comp, size_t len) {
    if (json_is_object(node)) return json_object_getn(node, comp, len);
    if (json_is_array(node) && len > 0 && len <= 9) {
        size_t idx = 0;
        for (size_t i = 0; i < len; i++) {
            if (comp[i] < '0' || comp[i] > '9') return NULL;
            idx = idx * 10 + (size_t)(comp[i] - '0');
        }
        return json_array_get(node, idx);
    }
    return NULL;
}

/* Resolve `key` (a dotted path). WG_ERR_NOTFOUND when a component is missing
 * or null; WG_ERR_FORMAT when the path goes through a scalar. */
static wg_status s_resolve(const wg_hfconfig_t *cfg, const char *key, json_t **out) {
    WG_ASSERT(cfg && key && out);
    json_t *node = cfg->root;
    const char *p = key;
    for (;;) {
        /* The literal remaining path first: keys may contain dots. */
        json_t *v = json_is_object(node) ? json_object_get(node, p) : NULL;
        if (v) {
            node = v;
            break;
        }
        const char *dot = strchr(p, '.');
        if (!dot) {
            node = s_child(node, p, strlen(p));
            break;
        }
        json_t *c = s_child(node, p, (size_t)(dot - p));
        if (!c || json_is_null(c)) {
            node = NULL;
            break;
        }
        if (!json_is_object(c) && !json_is_array(c))
            return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s': '%.*s' is %s, not an object",
                            WG_HFC_QK, key, (int)(dot - key), key, s_kind(c));
        node = c;
        p = dot + 1;
    }
    if (!node || json_is_null(node))
        return wg_error(WG_ERR_NOTFOUND, "hfconfig: key '%.*s' not set", WG_HFC_QK, key);
    *out = node;
    return WG_OK;
}

bool wg_hfconfig_has(const wg_hfconfig_t *cfg, const char *key) {
    json_t *v;
    return s_resolve(cfg, key, &v) == WG_OK;
}

/* An integer, or a real with an integral value representable as int64. */
static bool s_as_i64(const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 ||
            d >= 9223372036854775808.0)
            return false;
        *out = (int64_t)d;
        return true;
    }
    return false;
}

wg_status wg_hfconfig_get_i64(const wg_hfconfig_t *cfg, const char *key, int64_t *out) {
    json_t *v;
    wg_status s = s_resolve(cfg, key, &v);
    if (s != WG_OK) return s;
    if (!s_as_i64(v, out)) {
        if (json_is_real(v))
            return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s' = %g is not an integer", WG_HFC_QK,
                            key, json_real_value(v));
        return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s' is %s, want an integer", WG_HFC_QK,
                        key, s_kind(v));
    }
    return WG_OK;
}

wg_status wg_hfconfig_get_f64(const wg_hfconfig_t *cfg, const char *key, double *out) {
    json_t *v;
    wg_status s = s_resolve(cfg, key, &v);
    if (s != WG_OK) return s;
    if (!json_is_number(v))
        return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s' is %s, want a number", WG_HFC_QK, key,
                        s_kind(v));
    *out = json_number_value(v);
    return WG_OK;
}

wg_status wg_hfconfig_get_str(const wg_hfconfig_t *cfg, const char *key, const char **out) {
    json_t *v;
    wg_status s = s_resolve(cfg, key, &v);
    if (s != WG_OK) return s;
    if (!json_is_string(v))
        return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s' is %s, want a string", WG_HFC_QK, key,
                        s_kind(v));
    *out = json_string_value(v);
    return WG_OK;
}

wg_status wg_hfconfig_get_bool(const wg_hfconfig_t *cfg, const char *key, bool *out) {
    json_t *v;
    wg_status s = s_resolve(cfg, key, &v);
    if (s != WG_OK) return s;
    if (!json_is_boolean(v))
        return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s' is %s, want a bool", WG_HFC_QK, key,
                        s_kind(v));
    *out = json_is_true(v);
    return WG_OK;
}

/* Shared walk of a number array (or a lone number) for the two _arr getters. */
static wg_status s_get_arr(const wg_hfconfig_t *cfg, const char *key, void *out, bool as_int,
                           size_t cap, size_t *n) {
    WG_ASSERT(n && (out || cap == 0));
    json_t *v;
    wg_status s = s_resolve(cfg, key, &v);
    if (s != WG_OK) return s;
    bool lone = json_is_number(v);
    if (!lone && !json_is_array(v))
        return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s' is %s, want an array of numbers",
                        WG_HFC_QK, key, s_kind(v));
    size_t len = lone ? 1 : json_array_size(v);
    *n = len;
    if (len > cap)
        return wg_error(WG_ERR_RANGE, "hfconfig: key '%.*s' has %zu elements, room for %zu",
                        WG_HFC_QK, key, len, cap);
    for (size_t i = 0; i < len; i++) {
        json_t *e = lone ? v : json_array_get(v, i);
        if (as_int) {
            if (!s_as_i64(e, &((int64_t *)out)[i]))
                return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s'[%zu] is %s, want an integer",
                                WG_HFC_QK, key, i, s_kind(e));
        } else {
            if (!json_is_number(e))
                return wg_error(WG_ERR_FORMAT, "hfconfig: key '%.*s'[%zu] is %s, want a number",
                                WG_HFC_QK, key, i, s_kind(e));
            ((double *)out)[i] = json_number_value(e);
        }
    }
    return WG_OK;
}

wg_status wg_hfconfig_get_f64_arr(const wg_hfconfig_t *cfg, const char *key, double *out,
                                  size_t cap, size_t *n) {
    return s_get_arr(cfg, key, out, false, cap, n);
}

wg_status wg_hfconfig_get_i64_arr(const wg_hfconfig_t *cfg, const char *key, int64_t *out,
                                  size_t cap, size_t *n) {
    return s_get_arr(cfg, key, out, true, cap, n);
}
