/* waggle inspect — show the metadata and tensor table of a GGUF file, a
 * .safetensors file or a HuggingFace model directory.
 *
 * Human output abbreviates long values (arrays show type, length and the
 * first items); --json prints one object with every value in full, built
 * with jansson so escaping and numbers are right. Shapes are printed in the
 * file's own order: GGUF ne[] (fastest first), safetensors/HF numpy order
 * (fastest last). */
#include "waggle.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/wg_status.h"
#include "engine/formats/wg_gguf.h"
#include "engine/formats/wg_safetensors.h"
#include "kernels/ref/wg_ref.h"

#define S_PREVIEW_ITEMS 5    /* array items shown in human output */
#define S_PREVIEW_CHARS 72   /* string bytes shown in human output */

static void s_usage(FILE *f) {
    fprintf(f,
            "usage: waggle inspect FILE|DIR [--json]\n"
            "  FILE  a .gguf or .safetensors file; DIR a HuggingFace model directory\n"
            "  --json  print one JSON object (format, version, metadata, tensors)\n");
}

/* ---- format detection ---- */
typedef enum { S_FMT_GGUF, S_FMT_ST, S_FMT_BAD } s_fmt_t;

static s_fmt_t s_detect(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "waggle inspect: cannot open '%s': %s\n", path, strerror(errno));
        return S_FMT_BAD;
    }
    if (S_ISDIR(sb.st_mode)) return S_FMT_ST;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "waggle inspect: cannot open '%s': %s\n", path, strerror(errno));
        return S_FMT_BAD;
    }
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    if (n == 4 && memcmp(magic, "GGUF", 4) == 0) return S_FMT_GGUF;
    size_t len = strlen(path);
    if (len >= 12 && strcmp(path + len - 12, ".safetensors") == 0) return S_FMT_ST;
    if (len >= 5 && strcmp(path + len - 5, ".gguf") == 0) return S_FMT_GGUF; /* let the reader explain */
    /* no GGUF magic: a safetensors file starts with a u64 header length */
    return S_FMT_ST;
}

/* ---- human output helpers ---- */
static void s_print_str(const char *s, uint64_t len, uint64_t max) {
    putchar('"');
    uint64_t n = len < max ? len : max;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (len > max) printf("...(%llu bytes)", (unsigned long long)len);
}

static void s_print_value(const wg_gguf_value_t *v, int depth) {
    switch (v->type) {
    case WG_GGUF_UINT8: case WG_GGUF_UINT16: case WG_GGUF_UINT32: case WG_GGUF_UINT64:
        printf("%llu", (unsigned long long)v->v.u64);
        break;
    case WG_GGUF_INT8: case WG_GGUF_INT16: case WG_GGUF_INT32: case WG_GGUF_INT64:
        printf("%lld", (long long)v->v.i64);
        break;
    case WG_GGUF_FLOAT32: printf("%.9g", v->v.f64); break;
    case WG_GGUF_FLOAT64: printf("%.17g", v->v.f64); break;
    case WG_GGUF_BOOL: printf("%s", v->v.u64 ? "true" : "false"); break;
    case WG_GGUF_STRING: s_print_str(v->v.str.ptr, v->v.str.len, S_PREVIEW_CHARS); break;
    case WG_GGUF_ARRAY: {
        uint64_t n = v->v.arr.n;
        if (depth == 0) printf("n=%llu ", (unsigned long long)n);
        printf("[");
        uint64_t show = n < S_PREVIEW_ITEMS ? n : S_PREVIEW_ITEMS;
        for (uint64_t i = 0; i < show; i++) {
            if (i) printf(", ");
            s_print_value(&v->v.arr.items[i], depth + 1);
        }
        if (n > show) printf(", ...");
        printf("]");
        break;
    }
    default: printf("?"); break;
    }
}

static const char *s_type_name(wg_type_t t) {
    const char *n = wg_type_name(t);
    return n ? n : "?";
}

static int s_gguf_human(const char *path, const wg_gguf_t *g) {
    printf("file:        %s\n", path);
    printf("format:      GGUF v%u\n", wg_gguf_version(g));
    printf("size:        %zu bytes\n", wg_gguf_file_size(g));
    printf("alignment:   %zu\n", wg_gguf_alignment(g));
    printf("data offset: %llu\n", (unsigned long long)wg_gguf_data_offset(g));
    printf("\nmetadata (%lld keys):\n", (long long)wg_gguf_n_kv(g));
    for (int64_t i = 0; i < wg_gguf_n_kv(g); i++) {
        const wg_gguf_value_t *v = wg_gguf_kv_value(g, i);
        char tname[16];
        if (v->type == WG_GGUF_ARRAY) snprintf(tname, sizeof tname, "arr[%s]", wg_gguf_vtype_name(v->v.arr.type));
        else snprintf(tname, sizeof tname, "%s", wg_gguf_vtype_name(v->type));
        printf("  %-44s %-8s ", wg_gguf_kv_key(g, i), tname);
        s_print_value(v, 0);
        putchar('\n');
    }
    int64_t nt = wg_gguf_n_tensors(g);
    printf("\ntensors (%lld):\n", (long long)nt);
    printf("  %-40s %-7s %-24s %12s %12s\n", "name", "type", "shape (ne)", "offset", "bytes");
    size_t total = 0;
    for (int64_t i = 0; i < nt; i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        char shape[96];
        int k = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims && k < (int)sizeof shape; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
        if (k < (int)sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
        printf("  %-40s %-7s %-24s %12llu %12zu\n", t->name, s_type_name(t->type), shape,
               (unsigned long long)t->offset, t->nbytes);
        total += t->nbytes;
    }
    printf("  total %zu bytes in %lld tensors\n", total, (long long)nt);
    return 0;
}

/* ---- JSON ---- */

static json_t *s_json_value(const wg_gguf_value_t *v) {
    switch (v->type) {
    case WG_GGUF_UINT8: case WG_GGUF_UINT16: case WG_GGUF_UINT32: case WG_GGUF_UINT64:
        if (v->v.u64 > (uint64_t)INT64_MAX) return json_real((double)v->v.u64);
        return json_integer((json_int_t)v->v.u64);
    case WG_GGUF_INT8: case WG_GGUF_INT16: case WG_GGUF_INT32: case WG_GGUF_INT64:
        return json_integer((json_int_t)v->v.i64);
    case WG_GGUF_FLOAT32: case WG_GGUF_FLOAT64:
        if (!isfinite(v->v.f64)) return json_null(); /* JSON has no NaN/inf */
        return json_real(v->v.f64);
    case WG_GGUF_BOOL: return json_boolean(v->v.u64);
    case WG_GGUF_STRING: return wg_cli_json_text(v->v.str.ptr, (size_t)v->v.str.len, true);
    case WG_GGUF_ARRAY: {
        json_t *a = json_array();
        for (uint64_t i = 0; a && i < v->v.arr.n; i++) json_array_append_new(a, s_json_value(&v->v.arr.items[i]));
        return a;
    }
    default: return json_null();
    }
}

static int s_emit_json(json_t *root) {
    int rc = json_dumpf(root, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) == 0 ? 0 : 1;
    putchar('\n');
    json_decref(root);
    if (rc) fprintf(stderr, "waggle inspect: cannot write JSON\n");
    return rc;
}

static int s_gguf_json(const wg_gguf_t *g) {
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("gguf"));
    json_object_set_new(root, "version", json_integer(wg_gguf_version(g)));
    json_object_set_new(root, "alignment", json_integer((json_int_t)wg_gguf_alignment(g)));
    json_object_set_new(root, "data_offset", json_integer((json_int_t)wg_gguf_data_offset(g)));
    json_object_set_new(root, "file_size", json_integer((json_int_t)wg_gguf_file_size(g)));
    json_t *md = json_object();
    for (int64_t i = 0; i < wg_gguf_n_kv(g); i++)
        json_object_set_new(md, wg_gguf_kv_key(g, i), s_json_value(wg_gguf_kv_value(g, i)));
    json_object_set_new(root, "metadata", md);
    json_t *ts = json_array();
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
        json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type",
                                            s_type_name(t->type), "shape", shape, "offset", (json_int_t)t->offset,
                                            "bytes", (json_int_t)t->nbytes));
    }
    json_object_set_new(root, "tensors", ts);
    return s_emit_json(root);
}

/* ---- safetensors / HF directory ---- */

/* Offsets are reported relative to the lowest data pointer of each shard,
 * i.e. from the start of that shard's data section when, as in every writer
 * we know, the first tensor starts it. */
static size_t s_st_offset(const wg_st_t *st, const wg_st_tensor_t *t) {
    const char *lo = t->data;
    for (int64_t i = 0; i < wg_st_n_tensors(st); i++) {
        const wg_st_tensor_t *u = wg_st_tensor(st, i);
        if (u->shard == t->shard && (const char *)u->data < lo) lo = u->data;
    }
    return (size_t)((const char *)t->data - lo);
}

static json_t *s_load_config(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_error_t err;
    struct stat sb;
    if (stat(p, &sb) != 0) return NULL;
    json_t *c = json_load_file(p, 0, &err);
    if (!c) fprintf(stderr, "waggle inspect: %s:%d: %s (config ignored)\n", p, err.line, err.text);
    return c;
}

static int s_st_out(const char *path, const wg_st_t *st, bool json) {
    struct stat sb;
    bool is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    json_t *config = is_dir ? s_load_config(path) : NULL;
    int64_t n = wg_st_n_tensors(st);
    if (json) {
        json_t *root = json_object();
        json_object_set_new(root, "format", json_string(is_dir ? "hf" : "safetensors"));
        json_object_set_new(root, "version", json_null());
        json_t *md = json_object();
        for (int64_t i = 0; i < wg_st_n_metadata(st); i++) {
            const char *k = wg_st_metadata_key(st, i);
            const char *v = wg_st_metadata_get(st, k);
            json_object_set_new(md, k, v ? wg_cli_json_text(v, strlen(v), true) : json_null());
        }
        json_object_set_new(root, "metadata", md);
        if (config) json_object_set(root, "config", config);
        json_t *ts = json_array();
        for (int64_t i = 0; i < n; i++) {
            const wg_st_tensor_t *t = wg_st_tensor(st, i);
            json_t *shape = json_array();
            for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
            json_array_append_new(ts, json_pack("{s:s, s:s, s:o, s:I, s:I, s:i}", "name", t->name, "type",
                                                wg_st_dtype_name(t->dtype), "shape", shape, "offset",
                                                (json_int_t)s_st_offset(st, t), "bytes", (json_int_t)t->nbytes,
                                                "shard", t->shard));
        }
        json_object_set_new(root, "tensors", ts);
        json_decref(config);
        return s_emit_json(root);
    }
    printf("file:        %s\n", path);
    printf("format:      %s\n", is_dir ? "HuggingFace directory (safetensors)" : "safetensors");
    if (config) {
        const char *arch = NULL;
        json_t *a = json_object_get(config, "architectures");
        if (json_is_array(a) && json_array_size(a) > 0) arch = json_string_value(json_array_get(a, 0));
        json_t *mt = json_object_get(config, "model_type");
        printf("config:      model_type=%s architectures=%s (%zu keys)\n",
               json_is_string(mt) ? json_string_value(mt) : "?", arch ? arch : "?", json_object_size(config));
    }
    printf("\nmetadata (%lld keys):\n", (long long)wg_st_n_metadata(st));
    for (int64_t i = 0; i < wg_st_n_metadata(st); i++) {
        const char *k = wg_st_metadata_key(st, i);
        const char *v = wg_st_metadata_get(st, k);
        printf("  %-44s %-8s ", k, "str");
        s_print_str(v ? v : "", v ? strlen(v) : 0, S_PREVIEW_CHARS);
        putchar('\n');
    }
    printf("\ntensors (%lld):\n", (long long)n);
    printf("  %-48s %-5s %-24s %12s %12s\n", "name", "type", "shape", "offset", "bytes");
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        const wg_st_tensor_t *t = wg_st_tensor(st, i);
        char shape[160];
        int k = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims && k < (int)sizeof shape; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (k < (int)sizeof shape) snprintf(shape + k, sizeof shape - (size_t)k, "]");
        printf("  %-48s %-5s %-24s %12zu %12zu\n", t->name, wg_st_dtype_name(t->dtype), shape, s_st_offset(st, t),
               t->nbytes);
        total += t->nbytes;
    }
    printf("  total %zu bytes in %lld tensors\n", total, (long long)n);
    json_decref(config);
    return 0;
}

int wg_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            s_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "waggle inspect: unknown option '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "waggle inspect: unexpected argument '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        }
    }
    if (!path) {
        s_usage(stderr);
        return 2;
    }
    switch (s_detect(path)) {
    case S_FMT_GGUF: {
        wg_gguf_t *g = NULL;
        if (wg_gguf_open(path, &g) != WG_OK) {
            fprintf(stderr, "waggle inspect: %s\n", wg_errmsg());
            return 1;
        }
        int rc = json ? s_gguf_json(g) : s_gguf_human(path, g);
        wg_gguf_close(&g);
        return rc;
    }
    case S_FMT_ST: {
        wg_st_t *st = NULL;
        if (wg_st_open(path, &st) != WG_OK) {
            fprintf(stderr, "waggle inspect: %s: %s\n", path, wg_errmsg());
            return 1;
        }
        int rc = s_st_out(path, st, json);
        wg_st_close(&st);
        return rc;
    }
    default:
        return 1;
    }
}
