/* waggle dequant — write one tensor as little-endian float32, row-major with
 * ne0 (the row length) fastest.
 *
 * GGUF tensors go row by row through the reference dequantizers
 * (wg_dequantize_row), so the output is the specification's answer for every
 * supported type; integer tensors (I8..I64, F64) are converted value by value.
 * Safetensors files and HF directories are accepted for F32/F16/BF16 (and the
 * integer dtypes): numpy order with the last axis fastest is the same memory
 * order as GGUF's ne order. Output goes to OUT.tmp and is renamed into place,
 * so a failed run never leaves a half-written file under OUT. */
#include "waggle.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/wg_status.h"
#include "engine/formats/wg_gguf.h"
#include "engine/formats/wg_safetensors.h"
#include "kernels/quant.h"
#include "kernels/ref/wg_ref.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "waggle dequant writes host floats as little-endian: big-endian hosts need a byte swap here"
#endif

static void s_usage(FILE *f) {
    fprintf(f, "usage: waggle dequant FILE|DIR TENSOR -o OUT\n"
               "  writes TENSOR as little-endian float32, row-major with ne0 fastest\n");
}

/* Convert n plain (non-block) values of a GGUF/safetensors scalar kind. */
typedef enum { S_I8, S_U8, S_I16, S_I32, S_I64, S_F64, S_BOOL, S_F32, S_F16, S_BF16 } s_kind_t;

static void s_convert(s_kind_t k, const uint8_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (k) {
        case S_I8: { int8_t v; memcpy(&v, src + i, 1); dst[i] = (float)v; break; }
        case S_U8: dst[i] = (float)src[i]; break;
        case S_BOOL: dst[i] = src[i] ? 1.0f : 0.0f; break;
        case S_I16: { int16_t v; memcpy(&v, src + 2 * i, 2); dst[i] = (float)v; break; }
        case S_I32: { int32_t v; memcpy(&v, src + 4 * i, 4); dst[i] = (float)v; break; }
        case S_I64: { int64_t v; memcpy(&v, src + 8 * i, 8); dst[i] = (float)v; break; }
        case S_F64: { double v; memcpy(&v, src + 8 * i, 8); dst[i] = (float)v; break; }
        case S_F32: memcpy(dst + i, src + 4 * i, 4); break;
        case S_F16: { wg_half h; memcpy(&h, src + 2 * i, 2); dst[i] = wg_fp16_to_fp32(h); break; }
        case S_BF16: { wg_bf16 h; memcpy(&h, src + 2 * i, 2); dst[i] = wg_bf16_to_fp32(h); break; }
        }
    }
}

static size_t s_kind_size(s_kind_t k) {
    switch (k) {
    case S_I8: case S_U8: case S_BOOL: return 1;
    case S_I16: case S_F16: case S_BF16: return 2;
    case S_I32: case S_F32: return 4;
    default: return 8;
    }
}

/* Output file, written through a temporary name. */
typedef struct {
    FILE *f;          /* open temporary file */
    char *tmp;        /* OUT.tmp */
    const char *out;  /* final name */
} s_out_t;

static bool s_out_open(s_out_t *o, const char *out) {
    o->out = out;
    o->tmp = malloc(strlen(out) + 5);
    if (!o->tmp) return false;
    sprintf(o->tmp, "%s.tmp", out);
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        fprintf(stderr, "waggle dequant: cannot create '%s': %s\n", o->tmp, strerror(errno));
        free(o->tmp);
        return false;
    }
    return true;
}

static int s_out_close(s_out_t *o, bool ok) {
    if (fclose(o->f) != 0 && ok) {
        fprintf(stderr, "waggle dequant: cannot write '%s': %s\n", o->tmp, strerror(errno));
        ok = false;
    }
    if (ok && rename(o->tmp, o->out) != 0) {
        fprintf(stderr, "waggle dequant: cannot rename '%s' to '%s': %s\n", o->tmp, o->out, strerror(errno));
        ok = false;
    }
    if (!ok) unlink(o->tmp);
    free(o->tmp);
    return ok ? 0 : 1;
}

static bool s_write(s_out_t *o, const float *y, size_t n) {
    if (fwrite(y, sizeof *y, n, o->f) != n) {
        fprintf(stderr, "waggle dequant: cannot write '%s': %s\n", o->tmp, strerror(errno));
        return false;
    }
    return true;
}

static bool s_gguf_kind(wg_type_t t, s_kind_t *k) {
    switch (t) {
    case WG_TYPE_I8: *k = S_I8; return true;
    case WG_TYPE_I16: *k = S_I16; return true;
    case WG_TYPE_I32: *k = S_I32; return true;
    case WG_TYPE_I64: *k = S_I64; return true;
    case WG_TYPE_F64: *k = S_F64; return true;
    default: return false;
    }
}

static int s_dequant_gguf(const char *path, const char *name, const char *out) {
    wg_gguf_t *g = NULL;
    if (wg_gguf_open(path, &g) != WG_OK) {
        fprintf(stderr, "waggle dequant: %s\n", wg_errmsg());
        return 1;
    }
    int rc = 1;
    float *row = NULL;
    const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, name);
    if (!t) {
        fprintf(stderr, "waggle dequant: %s: no tensor named '%s' (%lld tensors; see 'waggle inspect')\n", path,
                name, (long long)wg_gguf_n_tensors(g));
        goto done;
    }
    const wg_type_traits_t *tr = wg_type_traits(t->type);
    s_kind_t kind;
    bool plain = s_gguf_kind(t->type, &kind);
    if (!plain && (!tr || !tr->supported || !tr->to_float)) {
        fprintf(stderr, "waggle dequant: tensor '%s': type %s cannot be dequantized yet\n", name,
                tr ? tr->name : "?");
        goto done;
    }
    int64_t k = t->ne[0];
    size_t row_bytes = plain ? (size_t)k * s_kind_size(kind) : wg_row_size(t->type, k);
    size_t n_rows = row_bytes ? t->nbytes / row_bytes : 0;
    row = malloc((size_t)(k > 0 ? k : 1) * sizeof *row);
    if (!row) {
        fprintf(stderr, "waggle dequant: out of memory for a row of %lld values\n", (long long)k);
        goto done;
    }
    s_out_t o;
    if (!s_out_open(&o, out)) goto done;
    bool ok = true;
    const uint8_t *src = t->data;
    for (size_t r = 0; ok && r < n_rows; r++) {
        if (plain) s_convert(kind, src + r * row_bytes, row, (size_t)k);
        else wg_dequantize_row(t->type, src + r * row_bytes, row, k);
        ok = s_write(&o, row, (size_t)k);
    }
    rc = s_out_close(&o, ok);
done:
    free(row);
    wg_gguf_close(&g);
    return rc;
}

static int s_dequant_st(const char *path, const char *name, const char *out) {
    wg_st_t *st = NULL;
    if (wg_st_open(path, &st) != WG_OK) {
        fprintf(stderr, "waggle dequant: %s: %s\n", path, wg_errmsg());
        return 1;
    }
    int rc = 1;
    const wg_st_tensor_t *t = wg_st_find(st, name);
    if (!t) {
        fprintf(stderr, "waggle dequant: %s: no tensor named '%s' (%lld tensors; see 'waggle inspect')\n", path,
                name, (long long)wg_st_n_tensors(st));
        goto done;
    }
    s_kind_t kind;
    switch (t->dtype) {
    case WG_ST_F32: kind = S_F32; break;
    case WG_ST_F16: kind = S_F16; break;
    case WG_ST_BF16: kind = S_BF16; break;
    case WG_ST_F64: kind = S_F64; break;
    case WG_ST_I8: kind = S_I8; break;
    case WG_ST_U8: kind = S_U8; break;
    case WG_ST_I16: kind = S_I16; break;
    case WG_ST_I32: kind = S_I32; break;
    case WG_ST_I64: kind = S_I64; break;
    case WG_ST_BOOL: kind = S_BOOL; break;
    default:
        fprintf(stderr, "waggle dequant: tensor '%s': dtype %s is not supported\n", name, wg_st_dtype_name(t->dtype));
        goto done;
    }
    s_out_t o;
    if (!s_out_open(&o, out)) goto done;
    size_t es = s_kind_size(kind), n = t->nbytes / es;
    enum { CHUNK = 1 << 14 };
    static float buf[CHUNK];
    bool ok = true;
    for (size_t i = 0; ok && i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        s_convert(kind, (const uint8_t *)t->data + i * es, buf, m);
        ok = s_write(&o, buf, m);
    }
    rc = s_out_close(&o, ok);
done:
    wg_st_close(&st);
    return rc;
}

int wg_cmd_dequant(int argc, char **argv) {
    const char *pos[2] = {NULL, NULL};
    int n_pos = 0;
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "waggle dequant: %s needs a file name\n", argv[i]);
                return 2;
            }
            out = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            s_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "waggle dequant: unknown option '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        } else if (n_pos < 2) {
            pos[n_pos++] = argv[i];
        } else {
            fprintf(stderr, "waggle dequant: unexpected argument '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        }
    }
    if (n_pos != 2 || !out) {
        s_usage(stderr);
        return 2;
    }
    struct stat sb;
    if (stat(pos[0], &sb) != 0) {
        fprintf(stderr, "waggle dequant: cannot open '%s': %s\n", pos[0], strerror(errno));
        return 1;
    }
    bool gguf = false;
    if (!S_ISDIR(sb.st_mode)) {
        FILE *f = fopen(pos[0], "rb");
        char magic[4] = {0};
        if (f) {
            gguf = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
            fclose(f);
        }
        size_t len = strlen(pos[0]);
        if (!gguf && len >= 5 && strcmp(pos[0] + len - 5, ".gguf") == 0) gguf = true; /* reader explains */
    }
    return gguf ? s_dequant_gguf(pos[0], pos[1], out) : s_dequant_st(pos[0], pos[1], out);
}
