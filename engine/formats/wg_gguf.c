/* wg_gguf — GGUF v2/v3 reader and v3 writer.
 *
 * The reader maps the file (or takes a caller's buffer) and parses it in one
 * pass with a bounds-checked cursor: every count is compared with the bytes
 * that remain before anything is allocated from it, so a hostile file can make
 * us allocate at most a small multiple of its own size. Decoded keys, strings
 * and array items live in one arena freed at close; tensor data is never
 * copied. Keys and tensor names are indexed by an open-addressing hash table,
 * which also finds duplicates while parsing.
 *
 * The writer keeps keys in insertion order (replacing in place) and lays
 * tensors out back to back, each padded to the alignment, as ggml does. */
#include "wg_gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- limits for untrusted files ---- */
#define S_MAX_KEY_LEN 65535u       /* GGUF spec: keys are at most 65535 bytes */
#define S_MAX_NAME_LEN 4096u       /* tensor names (ggml uses 64; be lenient) */
#define S_MAX_DEPTH 8              /* nested array depth */
#define S_MAX_ALIGNMENT (1u << 20) /* larger alignments are surely corrupt */

/* Bytes every element of a type occupies at least (an ARRAY needs its own
 * element type + count, a STRING its length). Used to bound counts. */
static const size_t s_min_elem_size[WG_GGUF_VTYPE_COUNT] = {
    [WG_GGUF_UINT8] = 1,  [WG_GGUF_INT8] = 1,    [WG_GGUF_UINT16] = 2, [WG_GGUF_INT16] = 2,
    [WG_GGUF_UINT32] = 4, [WG_GGUF_INT32] = 4,   [WG_GGUF_FLOAT32] = 4, [WG_GGUF_BOOL] = 1,
    [WG_GGUF_STRING] = 8, [WG_GGUF_ARRAY] = 12,  [WG_GGUF_UINT64] = 8, [WG_GGUF_INT64] = 8,
    [WG_GGUF_FLOAT64] = 8,
};

static const char *const s_vtype_names[WG_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

const char *wg_gguf_vtype_name(wg_gguf_vtype_t t) {
    if ((unsigned)t >= WG_GGUF_VTYPE_COUNT) return "?";
    return s_vtype_names[t];
}

/* Block size and bytes per block of every tensor type, as in ggml (and
 * kernels/quant.h). A private copy so validation never depends on which
 * kernels are built; blck 0 marks ids ggml retired. */
typedef struct {
    int64_t blck;  /* values per block */
    size_t size;   /* bytes per block */
} s_type_size_t;

static const s_type_size_t s_type_sizes[WG_TYPE_COUNT] = {
    [WG_TYPE_F32] = {1, 4},       [WG_TYPE_F16] = {1, 2},       [WG_TYPE_Q4_0] = {32, 18},
    [WG_TYPE_Q4_1] = {32, 20},    [WG_TYPE_Q5_0] = {32, 22},    [WG_TYPE_Q5_1] = {32, 24},
    [WG_TYPE_Q8_0] = {32, 34},    [WG_TYPE_Q8_1] = {32, 36},    [WG_TYPE_Q2_K] = {256, 84},
    [WG_TYPE_Q3_K] = {256, 110},  [WG_TYPE_Q4_K] = {256, 144},  [WG_TYPE_Q5_K] = {256, 176},
    [WG_TYPE_Q6_K] = {256, 210},  [WG_TYPE_Q8_K] = {256, 292},  [WG_TYPE_IQ2_XXS] = {256, 66},
    [WG_TYPE_IQ2_XS] = {256, 74}, [WG_TYPE_IQ3_XXS] = {256, 98}, [WG_TYPE_IQ1_S] = {256, 50},
    [WG_TYPE_IQ4_NL] = {32, 18},  [WG_TYPE_IQ3_S] = {256, 110}, [WG_TYPE_IQ2_S] = {256, 82},
    [WG_TYPE_IQ4_XS] = {256, 136}, [WG_TYPE_I8] = {1, 1},       [WG_TYPE_I16] = {1, 2},
    [WG_TYPE_I32] = {1, 4},       [WG_TYPE_I64] = {1, 8},       [WG_TYPE_F64] = {1, 8},
    [WG_TYPE_IQ1_M] = {256, 56},  [WG_TYPE_BF16] = {1, 2},      [WG_TYPE_TQ1_0] = {256, 54},
    [WG_TYPE_TQ2_0] = {256, 66},  [WG_TYPE_MXFP4] = {32, 17},
};

_Static_assert(sizeof(wg_block_q4_K) == 144, "table agrees with quant.h");
_Static_assert(sizeof(wg_block_q6_K) == 210, "table agrees with quant.h");
_Static_assert(sizeof(wg_block_q8_K) == 292, "table agrees with quant.h");
_Static_assert(sizeof(wg_block_iq4_xs) == 136, "table agrees with quant.h");
_Static_assert(sizeof(wg_block_mxfp4) == 17, "table agrees with quant.h");

static const s_type_size_t *s_type_size(uint32_t t) {
    if (t >= WG_TYPE_COUNT || s_type_sizes[t].blck == 0) return NULL;
    return &s_type_sizes[t];
}

/* ---- arena: every decoded string/array of one file or writer ---- */
typedef struct s_chunk {
    struct s_chunk *next;  /* older chunk */
    size_t cap;            /* bytes in data */
    size_t used;           /* bytes handed out */
    max_align_t data[];    /* storage */
} s_chunk_t;

typedef struct {
    s_chunk_t *head;  /* newest chunk */
    size_t chunk;     /* size of a regular chunk (0: S_CHUNK_SIZE) */
} s_arena_t;

#define S_CHUNK_SIZE ((size_t)1 << 20)
#define S_CHUNK_MIN ((size_t)4 << 10)

static void *s_arena_alloc(s_arena_t *a, size_t n) {
    const size_t al = alignof(max_align_t);
    if (n > SIZE_MAX - al) return NULL;
    n = (n + al - 1) & ~(al - 1);
    if (n == 0) n = al;
    s_chunk_t *c = a->head;
    const size_t chunk = a->chunk ? a->chunk : S_CHUNK_SIZE;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > chunk / 4 ? n : chunk;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        if (n > chunk / 4 && a->head) {
            /* a big block gets its own chunk behind the current one */
            c->next = a->head->next;
            a->head->next = c;
            c->used = n;
            return (char *)c->data;
        }
        c->next = a->head;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void s_arena_free(s_arena_t *a) {
    s_chunk_t *c = a->head;
    while (c) {
        s_chunk_t *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

static char *s_arena_strndup(s_arena_t *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = s_arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ---- name index: open addressing over entry indices ---- */
typedef struct {
    int64_t *slots;  /* [cap] entry index + 1, 0 = empty */
    size_t cap;      /* power of two, >= 2 * entries */
} s_index_t;

static uint64_t s_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static wg_status s_index_init(s_index_t *ix, int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots) return wg_error(WG_ERR_NOMEM, "gguf: out of memory for a %zu-slot index", cap);
    ix->cap = cap;
    return WG_OK;
}

/* Find `name` among names[] through the index; -1 if absent. When `insert`
 * is set and the name is absent, it is added as entry `self`. */
static int64_t s_index_find(s_index_t *ix, const char *name, const char *const *names, size_t stride,
                            int64_t self, bool insert) {
    if (!ix->slots) return -1;
    size_t mask = ix->cap - 1;
    for (size_t i = (size_t)s_hash(name) & mask;; i = (i + 1) & mask) {
        int64_t e = ix->slots[i];
        if (e == 0) {
            if (insert) ix->slots[i] = self + 1;
            return -1;
        }
        const char *other = *(const char *const *)((const char *)names + (size_t)(e - 1) * stride);
        if (strcmp(other, name) == 0) return e - 1;
    }
}

/* ---- the parsed file ---- */
struct wg_gguf {
    const uint8_t *base;          /* file image */
    size_t size;                  /* bytes in the image */
    void *map;                    /* mmap region to unmap, or NULL (open_mem) */
    uint32_t version;             /* 2 or 3 */
    size_t alignment;             /* general.alignment or 32 */
    uint64_t data_offset;         /* file offset of the data section */
    int64_t n_kv;                 /* metadata entries */
    const char **keys;            /* [n_kv] keys (arena) */
    wg_gguf_value_t *values;      /* [n_kv] values (arena) */
    int64_t n_tensors;            /* tensor infos */
    wg_gguf_tensor_t *tensors;    /* [n_tensors] */
    s_index_t kv_index;           /* key -> kv index */
    s_index_t tensor_index;       /* name -> tensor index */
    s_arena_t arena;              /* strings and array items */
};

/* ---- bounds-checked cursor ---- */
typedef struct {
    const uint8_t *p;  /* image */
    size_t size;       /* bytes in the image */
    size_t pos;        /* next byte to read */
} s_rd_t;

static size_t s_left(const s_rd_t *r) { return r->size - r->pos; }

static bool s_has(const s_rd_t *r, size_t n) { return n <= r->size - r->pos; }

/* What a read is for, in error messages: "kv[3].key", "kv[3] 'general.name'"
 * or "tensor_info[7].ne". Kept as its parts and formatted only when an error
 * is reported: a snprintf for every key and tensor field made every open pay
 * for messages it almost never writes. */
typedef struct {
    enum { S_W_KV_KEY, S_W_KV, S_W_TENSOR } kind; /* which form */
    uint64_t i;        /* kv or tensor index */
    const char *key;   /* S_W_KV: the key (arena) */
    const char *text;  /* S_W_TENSOR: the field ("name", "n_dims", "ne", "type") */
} s_where_t;

#define S_WHERE_MAX 160 /* "kv[" + 20 digits + "] '" + 100 bytes + "'" fits */

/* The text of *w, written to buf (S_WHERE_MAX bytes). */
static const char *s_where_fmt(const s_where_t *w, char *buf) {
    switch (w->kind) {
    case S_W_KV_KEY: snprintf(buf, S_WHERE_MAX, "kv[%" PRIu64 "].key", w->i); break;
    case S_W_KV: snprintf(buf, S_WHERE_MAX, "kv[%" PRIu64 "] '%.100s'", w->i, w->key); break;
    case S_W_TENSOR: snprintf(buf, S_WHERE_MAX, "tensor_info[%" PRIu64 "].%s", w->i, w->text); break;
    }
    return buf;
}

/* A where's text for one error message (the buffer lives to the end of the
 * enclosing block, i.e. through the wg_error call it is an argument of). */
#define S_WHERE(w) s_where_fmt((w), (char[S_WHERE_MAX]){0})

/* Format "truncated while reading WHAT (need N bytes at offset P, file has S)". */
static wg_status s_trunc(const s_rd_t *r, size_t need, const char *what) {
    return wg_error(WG_ERR_TRUNCATED,
                    "gguf: truncated while reading %s (need %zu bytes at offset %zu, file has %zu)", what,
                    need, r->pos, r->size);
}

static uint64_t s_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* Read an n-byte little-endian unsigned integer; caller checked s_has. */
static uint64_t s_take(s_rd_t *r, int n) {
    uint64_t v = s_le(r->p + r->pos, n);
    r->pos += (size_t)n;
    return v;
}

/* Read a GGUF string (u64 length + bytes) into the arena. `what` names the
 * field for errors. */
static wg_status s_read_str(s_rd_t *r, s_arena_t *a, uint64_t max_len, const s_where_t *what, const char **out,
                            uint64_t *out_len) {
    if (!s_has(r, 8)) return s_trunc(r, 8, S_WHERE(what));
    uint64_t len = s_take(r, 8);
    if (len > max_len)
        return wg_error(WG_ERR_FORMAT, "gguf: %s: string length %" PRIu64 " exceeds the limit %" PRIu64,
                        S_WHERE(what), len, max_len);
    if (!s_has(r, len)) {
        r->pos -= 8;
        wg_status st = wg_error(WG_ERR_TRUNCATED,
                                "gguf: truncated while reading %s (need %" PRIu64
                                " bytes at offset %zu, file has %zu)",
                                S_WHERE(what), len, r->pos + 8, r->size);
        return st;
    }
    char *s = s_arena_strndup(a, (const char *)r->p + r->pos, (size_t)len);
    if (!s) return wg_error(WG_ERR_NOMEM, "gguf: out of memory for %s (%" PRIu64 " bytes)", S_WHERE(what), len);
    r->pos += (size_t)len;
    *out = s;
    if (out_len) *out_len = len;
    return WG_OK;
}

/* The numeric types: fixed size, every bit pattern valid (bool is not one). */
static bool s_is_number(uint32_t t) {
    return t < WG_GGUF_VTYPE_COUNT && t != WG_GGUF_BOOL && t != WG_GGUF_STRING && t != WG_GGUF_ARRAY;
}

static int64_t s_sext(uint64_t u, int bits) {
    if (bits < 64 && (u >> (bits - 1)) & 1) u |= ~(uint64_t)0 << bits;
    int64_t i;
    memcpy(&i, &u, 8);
    return i;
}

/* Decode the number of type t (s_is_number) stored little-endian at p. */
static inline void s_decode_number(const uint8_t *p, uint32_t t, wg_gguf_value_t *v) {
    *v = (wg_gguf_value_t){.type = (wg_gguf_vtype_t)t};
    switch ((wg_gguf_vtype_t)t) {
    case WG_GGUF_UINT8: v->v.u64 = p[0]; break;
    case WG_GGUF_UINT16: v->v.u64 = s_le(p, 2); break;
    case WG_GGUF_UINT32: v->v.u64 = s_le(p, 4); break;
    case WG_GGUF_UINT64: v->v.u64 = s_le(p, 8); break;
    case WG_GGUF_INT8: v->v.i64 = s_sext(p[0], 8); break;
    case WG_GGUF_INT16: v->v.i64 = s_sext(s_le(p, 2), 16); break;
    case WG_GGUF_INT32: v->v.i64 = s_sext(s_le(p, 4), 32); break;
    case WG_GGUF_INT64: v->v.i64 = s_sext(s_le(p, 8), 64); break;
    case WG_GGUF_FLOAT32: {
        uint32_t u = (uint32_t)s_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        v->v.f64 = f;
        break;
    }
    case WG_GGUF_FLOAT64: {
        uint64_t u = s_le(p, 8);
        memcpy(&v->v.f64, &u, 8);
        break;
    }
    default: break;
    }
}

/* Decode one value of type `t` (already read) into *v. `where` names the kv. */
static wg_status s_read_value(s_rd_t *r, s_arena_t *a, uint32_t t, int depth, const s_where_t *where,
                              wg_gguf_value_t *v) {
    memset(v, 0, sizeof *v);
    if (t >= WG_GGUF_VTYPE_COUNT)
        return wg_error(WG_ERR_FORMAT, "gguf: %s: unknown value type %" PRIu32, S_WHERE(where), t);
    v->type = (wg_gguf_vtype_t)t;
    size_t sz = s_min_elem_size[t];
    if (s_is_number(t)) {
        if (!s_has(r, sz)) return s_trunc(r, sz, S_WHERE(where));
        s_decode_number(r->p + r->pos, t, v);
        r->pos += sz;
        return WG_OK;
    }
    switch ((wg_gguf_vtype_t)t) {
    case WG_GGUF_BOOL: {
        if (!s_has(r, 1)) return s_trunc(r, 1, S_WHERE(where));
        uint64_t b = s_take(r, 1);
        if (b > 1) return wg_error(WG_ERR_FORMAT, "gguf: %s: bool value %" PRIu64 " (must be 0 or 1)", S_WHERE(where), b);
        v->v.u64 = b;
        return WG_OK;
    }
    case WG_GGUF_STRING:
        return s_read_str(r, a, UINT64_MAX, where, &v->v.str.ptr, &v->v.str.len);
    case WG_GGUF_ARRAY: {
        if (depth >= S_MAX_DEPTH)
            return wg_error(WG_ERR_FORMAT, "gguf: %s: arrays nested deeper than %d", S_WHERE(where), S_MAX_DEPTH);
        if (!s_has(r, 12)) return s_trunc(r, 12, S_WHERE(where));
        uint32_t et = (uint32_t)s_take(r, 4);
        uint64_t n = s_take(r, 8);
        if (et >= WG_GGUF_VTYPE_COUNT)
            return wg_error(WG_ERR_FORMAT, "gguf: %s: unknown array element type %" PRIu32, S_WHERE(where), et);
        if (n > s_left(r) / s_min_elem_size[et])
            return wg_error(WG_ERR_TRUNCATED,
                            "gguf: %s: array of %" PRIu64 " %s needs at least %" PRIu64
                            " bytes at offset %zu, file has %zu",
                            S_WHERE(where), n, s_vtype_names[et], n, r->pos, r->size);
        v->v.arr.type = (wg_gguf_vtype_t)et;
        v->v.arr.n = n;
        if (n == 0) return WG_OK;
        wg_gguf_value_t *items = s_arena_alloc(a, (size_t)n * sizeof *items);
        if (!items)
            return wg_error(WG_ERR_NOMEM, "gguf: %s: out of memory for %" PRIu64 " array items", S_WHERE(where), n);
        v->v.arr.items = items;
        if (s_is_number(et)) {
            /* the count check above covers all n: no per-item checks (scores, token types) */
            const size_t es = s_min_elem_size[et];
            for (uint64_t i = 0; i < n; i++, r->pos += es) s_decode_number(r->p + r->pos, et, &items[i]);
            return WG_OK;
        }
        for (uint64_t i = 0; i < n; i++) {
            wg_status st = s_read_value(r, a, et, depth + 1, where, &items[i]);
            if (st != WG_OK) {
                if (depth == 0) {
                    char msg[512];
                    snprintf(msg, sizeof msg, "%s", wg_errmsg());
                    return wg_error(st, "%s (array item %" PRIu64 ")", msg, i);
                }
                return st;
            }
        }
        return WG_OK;
    }
    default:
        return wg_error(WG_ERR_FORMAT, "gguf: %s: unknown value type %" PRIu32, S_WHERE(where), t);
    }
}

/* Parse the image in g->base/size. */
static wg_status s_parse(wg_gguf_t *g) {
    s_rd_t r = {g->base, g->size, 0};
    /* decoded data is a small multiple of the file's metadata: small files get
     * small chunks (cheap opens when fuzzing), big ones 1 MiB chunks */
    g->arena.chunk = g->size / 2 < S_CHUNK_MIN ? S_CHUNK_MIN : g->size / 2 > S_CHUNK_SIZE ? S_CHUNK_SIZE : g->size / 2;
    wg_status st;
    if (!s_has(&r, 4)) return s_trunc(&r, 4, "magic");
    if (memcmp(g->base, "GGUF", 4) != 0) {
        const uint8_t *m = g->base;
        return wg_error(WG_ERR_FORMAT, "gguf: bad magic %02x %02x %02x %02x (expected \"GGUF\")", m[0], m[1], m[2],
                        m[3]);
    }
    r.pos = 4;
    if (!s_has(&r, 4)) return s_trunc(&r, 4, "version");
    uint32_t version = (uint32_t)s_take(&r, 4);
    if (version == 1)
        return wg_error(WG_ERR_VERSION, "gguf: version 1 is not supported (only v2 and v3; convert the file to v3)");
    if (version != 2 && version != 3) {
        if ((version & 0xffff) == 0 && (version >> 16) != 0)
            return wg_error(WG_ERR_VERSION, "gguf: version 0x%08" PRIx32 " looks big-endian (only little-endian is supported)",
                            version);
        return wg_error(WG_ERR_VERSION, "gguf: version %" PRIu32 " is not supported (only v2 and v3)", version);
    }
    g->version = version;
    if (!s_has(&r, 16)) return s_trunc(&r, 16, "n_tensors and n_kv");
    uint64_t n_tensors = s_take(&r, 8);
    uint64_t n_kv = s_take(&r, 8);
    /* a kv needs >= 13 bytes (key length, type, 1-byte value); a tensor info >= 32 */
    if (n_kv > s_left(&r) / 13)
        return wg_error(WG_ERR_TRUNCATED, "gguf: n_kv=%" PRIu64 " cannot fit in the %zu bytes after the header",
                        n_kv, s_left(&r));
    if (n_tensors > (s_left(&r) - n_kv * 13) / 32)
        return wg_error(WG_ERR_TRUNCATED,
                        "gguf: n_tensors=%" PRIu64 " cannot fit in the %zu bytes after the header", n_tensors,
                        s_left(&r));

    /* ---- key/values ---- */
    g->n_kv = (int64_t)n_kv;
    g->keys = s_arena_alloc(&g->arena, (size_t)(n_kv ? n_kv : 1) * sizeof *g->keys);
    g->values = s_arena_alloc(&g->arena, (size_t)(n_kv ? n_kv : 1) * sizeof *g->values);
    if (!g->keys || !g->values) return wg_error(WG_ERR_NOMEM, "gguf: out of memory for %" PRIu64 " kvs", n_kv);
    if ((st = s_index_init(&g->kv_index, (int64_t)n_kv)) != WG_OK) return st;
    g->alignment = WG_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < n_kv; i++) {
        s_where_t where = {.kind = S_W_KV_KEY, .i = i};
        const char *key;
        if ((st = s_read_str(&r, &g->arena, S_MAX_KEY_LEN, &where, &key, NULL)) != WG_OK) return st;
        g->keys[i] = key;
        if (s_index_find(&g->kv_index, key, g->keys, sizeof *g->keys, (int64_t)i, true) >= 0)
            return wg_error(WG_ERR_FORMAT, "gguf: kv[%" PRIu64 "] '%.100s': duplicate key", i, key);
        where = (s_where_t){.kind = S_W_KV, .i = i, .key = key};
        if (!s_has(&r, 4)) return s_trunc(&r, 4, S_WHERE(&where));
        uint32_t t = (uint32_t)s_take(&r, 4);
        if ((st = s_read_value(&r, &g->arena, t, 0, &where, &g->values[i])) != WG_OK) return st;
        if (strcmp(key, "general.alignment") == 0) {
            const wg_gguf_value_t *v = &g->values[i];
            if (v->type != WG_GGUF_UINT32)
                return wg_error(WG_ERR_FORMAT, "gguf: %s: alignment has type %s (must be u32)", S_WHERE(&where),
                                wg_gguf_vtype_name(v->type));
            uint64_t al = v->v.u64;
            if (al == 0 || (al & (al - 1)) != 0)
                return wg_error(WG_ERR_FORMAT, "gguf: %s: alignment %" PRIu64 " is not a power of two", S_WHERE(&where), al);
            if (al > S_MAX_ALIGNMENT)
                return wg_error(WG_ERR_FORMAT, "gguf: %s: alignment %" PRIu64 " exceeds %u", S_WHERE(&where), al,
                                S_MAX_ALIGNMENT);
            g->alignment = (size_t)al;
        }
    }

    /* ---- tensor infos ---- */
    if (n_tensors > s_left(&r) / 32)
        return wg_error(WG_ERR_TRUNCATED, "gguf: n_tensors=%" PRIu64 " cannot fit in the %zu bytes after the metadata",
                        n_tensors, s_left(&r));
    g->n_tensors = (int64_t)n_tensors;
    g->tensors = s_arena_alloc(&g->arena, (size_t)(n_tensors ? n_tensors : 1) * sizeof *g->tensors);
    if (!g->tensors) return wg_error(WG_ERR_NOMEM, "gguf: out of memory for %" PRIu64 " tensors", n_tensors);
    if ((st = s_index_init(&g->tensor_index, (int64_t)n_tensors)) != WG_OK) return st;
    for (uint64_t i = 0; i < n_tensors; i++) {
        wg_gguf_tensor_t *t = &g->tensors[i];
        memset(t, 0, sizeof *t);
        s_where_t where = {.kind = S_W_TENSOR, .i = i, .text = "name"};
        if ((st = s_read_str(&r, &g->arena, S_MAX_NAME_LEN, &where, &t->name, NULL)) != WG_OK) return st;
        if (s_index_find(&g->tensor_index, t->name, &g->tensors[0].name, sizeof *g->tensors, (int64_t)i, true) >= 0)
            return wg_error(WG_ERR_FORMAT, "gguf: tensor_info[%" PRIu64 "] '%.100s': duplicate tensor name", i,
                            t->name);
        where.text = "n_dims";
        if (!s_has(&r, 4)) return s_trunc(&r, 4, S_WHERE(&where));
        uint32_t n_dims = (uint32_t)s_take(&r, 4);
        if (n_dims < 1 || n_dims > WG_GGUF_MAX_DIMS)
            return wg_error(WG_ERR_FORMAT, "gguf: tensor '%.100s': n_dims=%" PRIu32 " (must be 1..%d)", t->name,
                            n_dims, WG_GGUF_MAX_DIMS);
        t->n_dims = n_dims;
        where.text = "ne";
        if (!s_has(&r, 8 * (size_t)n_dims)) return s_trunc(&r, 8 * (size_t)n_dims, S_WHERE(&where));
        uint64_t nel = 1;
        bool overflow = false;
        for (uint32_t d = 0; d < WG_GGUF_MAX_DIMS; d++) {
            uint64_t ne = 1;
            if (d < n_dims) {
                ne = s_take(&r, 8);
                if (ne > (uint64_t)INT64_MAX)
                    return wg_error(WG_ERR_FORMAT, "gguf: tensor '%.100s': ne[%" PRIu32 "]=%" PRIu64 " is negative",
                                    t->name, d, ne);
            }
            t->ne[d] = (int64_t)ne;
            if (ne != 0 && nel > (uint64_t)INT64_MAX / ne) overflow = true;
            nel *= ne;
        }
        if (overflow && nel != 0)
            return wg_error(WG_ERR_FORMAT, "gguf: tensor '%.100s': element count %" PRId64 " x %" PRId64 " x %" PRId64
                            " x %" PRId64 " overflows",
                            t->name, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
        where.text = "type";
        if (!s_has(&r, 12)) return s_trunc(&r, 12, S_WHERE(&where));
        uint32_t type = (uint32_t)s_take(&r, 4);
        const s_type_size_t *ts = s_type_size(type);
        if (!ts)
            return wg_error(WG_ERR_FORMAT, "gguf: tensor '%.100s': unknown type id %" PRIu32, t->name, type);
        t->type = (wg_type_t)type;
        if (t->ne[0] % ts->blck != 0)
            return wg_error(WG_ERR_FORMAT,
                            "gguf: tensor '%.100s': ne[0]=%" PRId64 " is not a multiple of the block size %" PRId64
                            " of type %" PRIu32,
                            t->name, t->ne[0], ts->blck, type);
        /* bytes = ne0/blck * size * ne1 * ne2 * ne3, checked for overflow */
        uint64_t nbytes = (uint64_t)(t->ne[0] / ts->blck) * ts->size; /* ne0 < 2^63, size < 2^9: no overflow */
        if ((uint64_t)(t->ne[0] / ts->blck) > UINT64_MAX / ts->size) overflow = true;
        for (int d = 1; d < WG_GGUF_MAX_DIMS && nbytes; d++) {
            uint64_t ne = (uint64_t)t->ne[d];
            if (ne != 0 && nbytes > UINT64_MAX / ne) {
                overflow = true;
                break;
            }
            nbytes *= ne;
        }
        if (overflow || nbytes > SIZE_MAX)
            return wg_error(WG_ERR_FORMAT, "gguf: tensor '%.100s': byte size overflows", t->name);
        t->nbytes = (size_t)nbytes;
        t->offset = s_take(&r, 8);
    }

    /* ---- data section ---- */
    uint64_t data_off = ((uint64_t)r.pos + g->alignment - 1) & ~((uint64_t)g->alignment - 1);
    g->data_offset = data_off;
    if (n_tensors > 0 && data_off > g->size)
        return wg_error(WG_ERR_TRUNCATED, "gguf: data section starts at offset %" PRIu64 ", file has %zu", data_off,
                        g->size);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        wg_gguf_tensor_t *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return wg_error(WG_ERR_FORMAT, "gguf: tensor '%.100s': offset %" PRIu64 " is not a multiple of the alignment %zu",
                            t->name, t->offset, g->alignment);
        uint64_t room = (uint64_t)g->size - data_off;
        if (t->offset > room || t->nbytes > room - t->offset)
            return wg_error(WG_ERR_TRUNCATED,
                            "gguf: tensor '%.100s': data [%" PRIu64 ", +%zu) lies outside the %" PRIu64
                            "-byte data section",
                            t->name, t->offset, t->nbytes, room);
        t->data = g->base + data_off + t->offset;
    }
    return WG_OK;
}

static void s_free(wg_gguf_t *g) {
    if (!g) return;
    s_arena_free(&g->arena);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    if (g->map) munmap(g->map, g->size);
    free(g);
}

wg_status wg_gguf_open_mem(const void *buf, size_t len, wg_gguf_t **out) {
    WG_ASSERT(out);
    *out = NULL;
    if (!buf && len) return wg_error(WG_ERR_INVAL, "gguf: NULL buffer of %zu bytes", len);
    wg_gguf_t *g = calloc(1, sizeof *g);
    if (!g) return wg_error(WG_ERR_NOMEM, "gguf: out of memory");
    g->base = buf ? buf : (const uint8_t *)"";
    g->size = len;
    wg_status st = s_parse(g);
    if (st != WG_OK) {
        s_free(g);
        return st;
    }
    *out = g;
    return WG_OK;
}

wg_status wg_gguf_open(const char *path, wg_gguf_t **out) {
    WG_ASSERT(path && out);
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wg_error(WG_ERR_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return wg_error(WG_ERR_IO, "gguf: cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return wg_error(WG_ERR_IO, "gguf: '%s' is not a regular file", path);
    }
    if (sb.st_size < 24) {
        close(fd);
        return wg_error(WG_ERR_TRUNCATED, "gguf: '%s': file has %lld bytes, a GGUF header needs 24", path,
                        (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return wg_error(WG_ERR_IO, "gguf: cannot map '%s': %s", path, strerror(e));
    wg_gguf_t *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(map, size);
        return wg_error(WG_ERR_NOMEM, "gguf: out of memory");
    }
    g->map = map;
    g->base = map;
    g->size = size;
    wg_status st = s_parse(g);
    if (st != WG_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", wg_errmsg());
        s_free(g);
        /* "gguf: X" -> "gguf: PATH: X" */
        const char *rest = strncmp(msg, "gguf: ", 6) == 0 ? msg + 6 : msg;
        return wg_error(st, "gguf: %s: %s", path, rest);
    }
    *out = g;
    return WG_OK;
}

void wg_gguf_close(wg_gguf_t **g) {
    if (!g || !*g) return;
    s_free(*g);
    *g = NULL;
}

uint32_t wg_gguf_version(const wg_gguf_t *g) { WG_ASSERT(g); return g->version; }
size_t wg_gguf_alignment(const wg_gguf_t *g) { WG_ASSERT(g); return g->alignment; }
uint64_t wg_gguf_data_offset(const wg_gguf_t *g) { WG_ASSERT(g); return g->data_offset; }
size_t wg_gguf_file_size(const wg_gguf_t *g) { WG_ASSERT(g); return g->size; }

/* ---- metadata ---- */
int64_t wg_gguf_n_kv(const wg_gguf_t *g) { WG_ASSERT(g); return g->n_kv; }

const char *wg_gguf_kv_key(const wg_gguf_t *g, int64_t i) {
    WG_ASSERT(g && i >= 0 && i < g->n_kv);
    return g->keys[i];
}

const wg_gguf_value_t *wg_gguf_kv_value(const wg_gguf_t *g, int64_t i) {
    WG_ASSERT(g && i >= 0 && i < g->n_kv);
    return &g->values[i];
}

const wg_gguf_value_t *wg_gguf_get(const wg_gguf_t *g, const char *key) {
    WG_ASSERT(g && key);
    s_index_t ix = g->kv_index;
    int64_t i = s_index_find(&ix, key, g->keys, sizeof *g->keys, -1, false);
    return i < 0 ? NULL : &g->values[i];
}

static wg_status s_get(const wg_gguf_t *g, const char *key, const wg_gguf_value_t **v) {
    *v = wg_gguf_get(g, key);
    if (!*v) return wg_error(WG_ERR_NOTFOUND, "gguf: key '%s' not found", key);
    return WG_OK;
}

static bool s_is_uint(wg_gguf_vtype_t t) {
    return t == WG_GGUF_UINT8 || t == WG_GGUF_UINT16 || t == WG_GGUF_UINT32 || t == WG_GGUF_UINT64;
}
static bool s_is_int(wg_gguf_vtype_t t) {
    return t == WG_GGUF_INT8 || t == WG_GGUF_INT16 || t == WG_GGUF_INT32 || t == WG_GGUF_INT64;
}

wg_status wg_gguf_get_i64(const wg_gguf_t *g, const char *key, int64_t *out) {
    WG_ASSERT(out);
    const wg_gguf_value_t *v;
    wg_status st = s_get(g, key, &v);
    if (st != WG_OK) return st;
    if (s_is_int(v->type)) {
        *out = v->v.i64;
        return WG_OK;
    }
    if (s_is_uint(v->type)) {
        if (v->v.u64 > (uint64_t)INT64_MAX)
            return wg_error(WG_ERR_RANGE, "gguf: key '%s': %" PRIu64 " does not fit in i64", key, v->v.u64);
        *out = (int64_t)v->v.u64;
        return WG_OK;
    }
    return wg_error(WG_ERR_FORMAT, "gguf: key '%s' has type %s, expected an integer", key,
                    wg_gguf_vtype_name(v->type));
}

wg_status wg_gguf_get_u32(const wg_gguf_t *g, const char *key, uint32_t *out) {
    WG_ASSERT(out);
    const wg_gguf_value_t *v;
    wg_status st = s_get(g, key, &v);
    if (st != WG_OK) return st;
    if (s_is_int(v->type)) {
        if (v->v.i64 < 0 || v->v.i64 > (int64_t)UINT32_MAX)
            return wg_error(WG_ERR_RANGE, "gguf: key '%s': %" PRId64 " does not fit in u32", key, v->v.i64);
        *out = (uint32_t)v->v.i64;
        return WG_OK;
    }
    if (s_is_uint(v->type)) {
        if (v->v.u64 > UINT32_MAX)
            return wg_error(WG_ERR_RANGE, "gguf: key '%s': %" PRIu64 " does not fit in u32", key, v->v.u64);
        *out = (uint32_t)v->v.u64;
        return WG_OK;
    }
    return wg_error(WG_ERR_FORMAT, "gguf: key '%s' has type %s, expected an integer", key,
                    wg_gguf_vtype_name(v->type));
}

wg_status wg_gguf_get_f32(const wg_gguf_t *g, const char *key, float *out) {
    WG_ASSERT(out);
    const wg_gguf_value_t *v;
    wg_status st = s_get(g, key, &v);
    if (st != WG_OK) return st;
    if (v->type == WG_GGUF_FLOAT32 || v->type == WG_GGUF_FLOAT64) *out = (float)v->v.f64;
    else if (s_is_int(v->type)) *out = (float)v->v.i64;
    else if (s_is_uint(v->type)) *out = (float)v->v.u64;
    else
        return wg_error(WG_ERR_FORMAT, "gguf: key '%s' has type %s, expected a number", key,
                        wg_gguf_vtype_name(v->type));
    return WG_OK;
}

wg_status wg_gguf_get_bool(const wg_gguf_t *g, const char *key, bool *out) {
    WG_ASSERT(out);
    const wg_gguf_value_t *v;
    wg_status st = s_get(g, key, &v);
    if (st != WG_OK) return st;
    if (v->type != WG_GGUF_BOOL)
        return wg_error(WG_ERR_FORMAT, "gguf: key '%s' has type %s, expected bool", key, wg_gguf_vtype_name(v->type));
    *out = v->v.u64 != 0;
    return WG_OK;
}

wg_status wg_gguf_get_str(const wg_gguf_t *g, const char *key, const char **out) {
    WG_ASSERT(out);
    const wg_gguf_value_t *v;
    wg_status st = s_get(g, key, &v);
    if (st != WG_OK) return st;
    if (v->type != WG_GGUF_STRING)
        return wg_error(WG_ERR_FORMAT, "gguf: key '%s' has type %s, expected str", key, wg_gguf_vtype_name(v->type));
    *out = v->v.str.ptr;
    return WG_OK;
}

wg_status wg_gguf_get_arr(const wg_gguf_t *g, const char *key, wg_gguf_vtype_t *elem_type, uint64_t *n,
                          const wg_gguf_value_t **items) {
    const wg_gguf_value_t *v;
    wg_status st = s_get(g, key, &v);
    if (st != WG_OK) return st;
    if (v->type != WG_GGUF_ARRAY)
        return wg_error(WG_ERR_FORMAT, "gguf: key '%s' has type %s, expected arr", key, wg_gguf_vtype_name(v->type));
    if (elem_type) *elem_type = v->v.arr.type;
    if (n) *n = v->v.arr.n;
    if (items) *items = v->v.arr.items;
    return WG_OK;
}

/* ---- tensors ---- */
int64_t wg_gguf_n_tensors(const wg_gguf_t *g) { WG_ASSERT(g); return g->n_tensors; }

const wg_gguf_tensor_t *wg_gguf_tensor(const wg_gguf_t *g, int64_t i) {
    WG_ASSERT(g && i >= 0 && i < g->n_tensors);
    return &g->tensors[i];
}

const wg_gguf_tensor_t *wg_gguf_find_tensor(const wg_gguf_t *g, const char *name) {
    WG_ASSERT(g && name);
    if (g->n_tensors == 0) return NULL;
    s_index_t ix = g->tensor_index;
    int64_t i = s_index_find(&ix, name, &g->tensors[0].name, sizeof *g->tensors, -1, false);
    return i < 0 ? NULL : &g->tensors[i];
}

/* ======================================================================
 * Writer
 * ====================================================================== */

typedef struct {
    char *name;                     /* tensor name (arena) */
    wg_type_t type;                 /* tensor type */
    uint32_t n_dims;                /* 1..4 */
    int64_t ne[WG_GGUF_MAX_DIMS];   /* dims, ne[0] fastest; unused = 1 */
    size_t nbytes;                  /* bytes of data */
    void *data;                     /* [nbytes] owned copy (malloc) */
} s_wtensor_t;

struct wg_gguf_writer {
    size_t alignment;               /* data alignment (power of two) */
    int64_t n_kv;                   /* keys set */
    int64_t cap_kv;                 /* capacity of keys/values */
    char **keys;                    /* [cap_kv] keys (arena), insertion order */
    wg_gguf_value_t *values;        /* [cap_kv] deep copies (arena) */
    int64_t n_tensors;              /* tensors added */
    int64_t cap_tensors;            /* capacity of tensors */
    s_wtensor_t *tensors;           /* [cap_tensors] */
    s_arena_t arena;                /* keys, names, strings, array items */
};

wg_gguf_writer_t *wg_gguf_writer_new(void) {
    wg_gguf_writer_t *w = calloc(1, sizeof *w);
    if (!w) {
        wg_error(WG_ERR_NOMEM, "gguf: out of memory for a writer");
        return NULL;
    }
    w->alignment = WG_GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void wg_gguf_writer_destroy(wg_gguf_writer_t **pw) {
    if (!pw || !*pw) return;
    wg_gguf_writer_t *w = *pw;
    for (int64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].data);
    free(w->tensors);
    free(w->keys);
    free(w->values);
    s_arena_free(&w->arena);
    free(w);
    *pw = NULL;
}

/* Deep-copy `src` into the writer's arena, checking types and nesting. */
static wg_status s_value_copy(s_arena_t *a, wg_gguf_value_t *dst, const wg_gguf_value_t *src, int depth,
                              const char *key) {
    if ((unsigned)src->type >= WG_GGUF_VTYPE_COUNT)
        return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': unknown value type %d", key, (int)src->type);
    *dst = *src;
    switch (src->type) {
    case WG_GGUF_BOOL:
        if (src->v.u64 > 1)
            return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': bool value %" PRIu64, key, src->v.u64);
        return WG_OK;
    case WG_GGUF_STRING: {
        if (!src->v.str.ptr && src->v.str.len)
            return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': NULL string of length %" PRIu64, key,
                            src->v.str.len);
        if (src->v.str.len >= SIZE_MAX)
            return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': string too long", key);
        char *s = s_arena_strndup(a, src->v.str.ptr ? src->v.str.ptr : "", (size_t)src->v.str.len);
        if (!s) return wg_error(WG_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
        dst->v.str.ptr = s;
        return WG_OK;
    }
    case WG_GGUF_ARRAY: {
        if (depth >= S_MAX_DEPTH)
            return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': arrays nested deeper than %d", key, S_MAX_DEPTH);
        wg_gguf_vtype_t et = src->v.arr.type;
        uint64_t n = src->v.arr.n;
        if ((unsigned)et >= WG_GGUF_VTYPE_COUNT)
            return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': unknown array element type %d", key, (int)et);
        if (n && !src->v.arr.items)
            return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': array of %" PRIu64 " has no items", key, n);
        dst->v.arr.items = NULL;
        if (n == 0) return WG_OK;
        if (n > SIZE_MAX / sizeof(wg_gguf_value_t))
            return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': array of %" PRIu64 " is too long", key, n);
        wg_gguf_value_t *items = s_arena_alloc(a, (size_t)n * sizeof *items);
        if (!items) return wg_error(WG_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
        for (uint64_t i = 0; i < n; i++) {
            if (src->v.arr.items[i].type != et)
                return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': item %" PRIu64 " has type %s in an array of %s",
                                key, i, wg_gguf_vtype_name(src->v.arr.items[i].type), wg_gguf_vtype_name(et));
            wg_status st = s_value_copy(a, &items[i], &src->v.arr.items[i], depth + 1, key);
            if (st != WG_OK) return st;
        }
        dst->v.arr.items = items;
        return WG_OK;
    }
    default:
        return WG_OK;
    }
}

wg_status wg_gguf_writer_set_value(wg_gguf_writer_t *w, const char *key, const wg_gguf_value_t *v) {
    WG_ASSERT(w && key && v);
    size_t klen = strlen(key);
    if (klen == 0 || klen > S_MAX_KEY_LEN)
        return wg_error(WG_ERR_INVAL, "gguf writer: key length %zu (must be 1..%u)", klen, S_MAX_KEY_LEN);
    wg_gguf_value_t copy;
    wg_status st = s_value_copy(&w->arena, &copy, v, 0, key);
    if (st != WG_OK) return st;
    if (strcmp(key, "general.alignment") == 0) {
        if (copy.type != WG_GGUF_UINT32 || copy.v.u64 == 0 || (copy.v.u64 & (copy.v.u64 - 1)) ||
            copy.v.u64 > S_MAX_ALIGNMENT)
            return wg_error(WG_ERR_INVAL, "gguf writer: general.alignment must be a u32 power of two <= %u",
                            S_MAX_ALIGNMENT);
        w->alignment = (size_t)copy.v.u64;
    }
    for (int64_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->keys[i], key) == 0) {
            w->values[i] = copy; /* replaced in place: order kept; old copy stays in the arena */
            return WG_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        char **keys = realloc(w->keys, (size_t)cap * sizeof *keys);
        if (!keys) return wg_error(WG_ERR_NOMEM, "gguf writer: out of memory");
        w->keys = keys;
        wg_gguf_value_t *values = realloc(w->values, (size_t)cap * sizeof *values);
        if (!values) return wg_error(WG_ERR_NOMEM, "gguf writer: out of memory");
        w->values = values;
        w->cap_kv = cap;
    }
    char *k = s_arena_strndup(&w->arena, key, klen);
    if (!k) return wg_error(WG_ERR_NOMEM, "gguf writer: out of memory");
    w->keys[w->n_kv] = k;
    w->values[w->n_kv] = copy;
    w->n_kv++;
    return WG_OK;
}

void wg_gguf_writer_set_alignment(wg_gguf_writer_t *w, size_t alignment) {
    WG_ASSERT(w && alignment && (alignment & (alignment - 1)) == 0 && alignment <= S_MAX_ALIGNMENT);
    wg_status st = wg_gguf_writer_set_u32(w, "general.alignment", (uint32_t)alignment);
    WG_ASSERT(st == WG_OK || st == WG_ERR_NOMEM);
    w->alignment = alignment;
}

wg_status wg_gguf_writer_set_u32(wg_gguf_writer_t *w, const char *key, uint32_t v) {
    wg_gguf_value_t x = {.type = WG_GGUF_UINT32, .v.u64 = v};
    return wg_gguf_writer_set_value(w, key, &x);
}
wg_status wg_gguf_writer_set_i32(wg_gguf_writer_t *w, const char *key, int32_t v) {
    wg_gguf_value_t x = {.type = WG_GGUF_INT32, .v.i64 = v};
    return wg_gguf_writer_set_value(w, key, &x);
}
wg_status wg_gguf_writer_set_u64(wg_gguf_writer_t *w, const char *key, uint64_t v) {
    wg_gguf_value_t x = {.type = WG_GGUF_UINT64, .v.u64 = v};
    return wg_gguf_writer_set_value(w, key, &x);
}
wg_status wg_gguf_writer_set_f32(wg_gguf_writer_t *w, const char *key, float v) {
    wg_gguf_value_t x = {.type = WG_GGUF_FLOAT32, .v.f64 = v};
    return wg_gguf_writer_set_value(w, key, &x);
}
wg_status wg_gguf_writer_set_bool(wg_gguf_writer_t *w, const char *key, bool v) {
    wg_gguf_value_t x = {.type = WG_GGUF_BOOL, .v.u64 = v ? 1 : 0};
    return wg_gguf_writer_set_value(w, key, &x);
}
wg_status wg_gguf_writer_set_str(wg_gguf_writer_t *w, const char *key, const char *v) {
    WG_ASSERT(v);
    wg_gguf_value_t x = {.type = WG_GGUF_STRING, .v.str = {v, strlen(v)}};
    return wg_gguf_writer_set_value(w, key, &x);
}

/* Decode one packed element of a plain type. */
static void s_unpack(wg_gguf_vtype_t t, const uint8_t *p, wg_gguf_value_t *v) {
    v->type = t;
    switch (t) {
    case WG_GGUF_UINT8: v->v.u64 = p[0]; break;
    case WG_GGUF_INT8: { int8_t x; memcpy(&x, p, 1); v->v.i64 = x; break; }
    case WG_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); v->v.u64 = x; break; }
    case WG_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); v->v.i64 = x; break; }
    case WG_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); v->v.u64 = x; break; }
    case WG_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); v->v.i64 = x; break; }
    case WG_GGUF_UINT64: { uint64_t x; memcpy(&x, p, 8); v->v.u64 = x; break; }
    case WG_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); v->v.i64 = x; break; }
    case WG_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); v->v.f64 = x; break; }
    case WG_GGUF_FLOAT64: { double x; memcpy(&x, p, 8); v->v.f64 = x; break; }
    case WG_GGUF_BOOL: v->v.u64 = p[0] != 0; break;
    default: break;
    }
}

wg_status wg_gguf_writer_set_arr(wg_gguf_writer_t *w, const char *key, wg_gguf_vtype_t elem_type, const void *data,
                                 uint64_t n) {
    WG_ASSERT(w && key && (data || n == 0));
    if ((unsigned)elem_type >= WG_GGUF_VTYPE_COUNT || elem_type == WG_GGUF_STRING || elem_type == WG_GGUF_ARRAY)
        return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': set_arr takes plain element types, not %s", key,
                        wg_gguf_vtype_name(elem_type));
    if (n > SIZE_MAX / sizeof(wg_gguf_value_t))
        return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': array of %" PRIu64 " is too long", key, n);
    wg_gguf_value_t *items = n ? malloc((size_t)n * sizeof *items) : NULL;
    if (n && !items) return wg_error(WG_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
    size_t es = s_min_elem_size[elem_type];
    for (uint64_t i = 0; i < n; i++) s_unpack(elem_type, (const uint8_t *)data + i * es, &items[i]);
    wg_gguf_value_t x = {.type = WG_GGUF_ARRAY, .v.arr = {elem_type, n, items}};
    wg_status st = wg_gguf_writer_set_value(w, key, &x);
    free(items);
    return st;
}

wg_status wg_gguf_writer_set_arr_str(wg_gguf_writer_t *w, const char *key, const char *const *strs, uint64_t n) {
    WG_ASSERT(w && key && (strs || n == 0));
    if (n > SIZE_MAX / sizeof(wg_gguf_value_t))
        return wg_error(WG_ERR_INVAL, "gguf writer: key '%s': array of %" PRIu64 " is too long", key, n);
    wg_gguf_value_t *items = n ? malloc((size_t)n * sizeof *items) : NULL;
    if (n && !items) return wg_error(WG_ERR_NOMEM, "gguf writer: key '%s': out of memory", key);
    for (uint64_t i = 0; i < n; i++) {
        WG_ASSERT(strs[i]);
        items[i].type = WG_GGUF_STRING;
        items[i].v.str.ptr = strs[i];
        items[i].v.str.len = strlen(strs[i]);
    }
    wg_gguf_value_t x = {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_STRING, n, items}};
    wg_status st = wg_gguf_writer_set_value(w, key, &x);
    free(items);
    return st;
}

wg_status wg_gguf_writer_add_tensor(wg_gguf_writer_t *w, const char *name, wg_type_t type, uint32_t n_dims,
                                    const int64_t *ne, const void *data) {
    WG_ASSERT(w && name && ne);
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > S_MAX_NAME_LEN)
        return wg_error(WG_ERR_INVAL, "gguf writer: tensor name length %zu (must be 1..%u)", nlen, S_MAX_NAME_LEN);
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s' added twice", name);
    const s_type_size_t *ts = s_type_size((uint32_t)type);
    if (!ts) return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': unknown type id %d", name, (int)type);
    if (n_dims < 1 || n_dims > WG_GGUF_MAX_DIMS)
        return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': n_dims=%" PRIu32 " (must be 1..%d)", name, n_dims,
                        WG_GGUF_MAX_DIMS);
    s_wtensor_t t = {.type = type, .n_dims = n_dims, .ne = {1, 1, 1, 1}};
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': ne[%" PRIu32 "]=%" PRId64, name, d, ne[d]);
        t.ne[d] = ne[d];
    }
    if (t.ne[0] % ts->blck != 0)
        return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': ne[0]=%" PRId64 " is not a multiple of %" PRId64,
                        name, t.ne[0], ts->blck);
    uint64_t nbytes = (uint64_t)(t.ne[0] / ts->blck);
    if (nbytes > UINT64_MAX / ts->size) return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': too big", name);
    nbytes *= ts->size;
    for (int d = 1; d < WG_GGUF_MAX_DIMS; d++) {
        if (t.ne[d] && nbytes > UINT64_MAX / (uint64_t)t.ne[d])
            return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': too big", name);
        nbytes *= (uint64_t)t.ne[d];
    }
    if (nbytes > SIZE_MAX / 2) return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': too big", name);
    if (nbytes && !data) return wg_error(WG_ERR_INVAL, "gguf writer: tensor '%s': NULL data", name);
    t.nbytes = (size_t)nbytes;
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? w->cap_tensors * 2 : 16;
        s_wtensor_t *ts2 = realloc(w->tensors, (size_t)cap * sizeof *ts2);
        if (!ts2) return wg_error(WG_ERR_NOMEM, "gguf writer: out of memory");
        w->tensors = ts2;
        w->cap_tensors = cap;
    }
    t.name = s_arena_strndup(&w->arena, name, nlen);
    t.data = malloc(t.nbytes ? t.nbytes : 1);
    if (!t.name || !t.data) {
        free(t.data);
        return wg_error(WG_ERR_NOMEM, "gguf writer: tensor '%s': out of memory for %zu bytes", name, t.nbytes);
    }
    if (t.nbytes) memcpy(t.data, data, t.nbytes);
    w->tensors[w->n_tensors++] = t;
    return WG_OK;
}

/* ---- serialization: a growable byte buffer for everything before the data ---- */
typedef struct {
    uint8_t *p;   /* bytes */
    size_t len;   /* used */
    size_t cap;   /* allocated */
    bool oom;     /* an append failed */
} s_buf_t;

static void s_put(s_buf_t *b, const void *src, size_t n) {
    if (b->oom) return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) { b->oom = true; return; }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void s_put_le(s_buf_t *b, uint64_t v, int n) {
    uint8_t tmp[8];
    for (int i = 0; i < n; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    s_put(b, tmp, (size_t)n);
}

static void s_put_str(s_buf_t *b, const char *s, uint64_t len) {
    s_put_le(b, len, 8);
    s_put(b, s, (size_t)len);
}

/* Payload of a value (without its type tag). */
static void s_put_payload(s_buf_t *b, const wg_gguf_value_t *v) {
    switch (v->type) {
    case WG_GGUF_UINT8: case WG_GGUF_INT8: case WG_GGUF_BOOL: s_put_le(b, v->v.u64, 1); break;
    case WG_GGUF_UINT16: case WG_GGUF_INT16: s_put_le(b, v->v.u64, 2); break;
    case WG_GGUF_UINT32: case WG_GGUF_INT32: s_put_le(b, v->v.u64, 4); break;
    case WG_GGUF_UINT64: case WG_GGUF_INT64: s_put_le(b, v->v.u64, 8); break;
    case WG_GGUF_FLOAT32: {
        float f = (float)v->v.f64;
        uint32_t u;
        memcpy(&u, &f, 4);
        s_put_le(b, u, 4);
        break;
    }
    case WG_GGUF_FLOAT64: {
        uint64_t u;
        memcpy(&u, &v->v.f64, 8);
        s_put_le(b, u, 8);
        break;
    }
    case WG_GGUF_STRING: s_put_str(b, v->v.str.ptr, v->v.str.len); break;
    case WG_GGUF_ARRAY:
        s_put_le(b, (uint64_t)v->v.arr.type, 4);
        s_put_le(b, v->v.arr.n, 8);
        for (uint64_t i = 0; i < v->v.arr.n; i++) s_put_payload(b, &v->v.arr.items[i]);
        break;
    default: break;
    }
}

wg_status wg_gguf_writer_write(wg_gguf_writer_t *w, const char *path) {
    WG_ASSERT(w && path);
    const uint64_t al = w->alignment;
    s_buf_t b = {0};
    s_put(&b, "GGUF", 4);
    s_put_le(&b, 3, 4);
    s_put_le(&b, (uint64_t)w->n_tensors, 8);
    s_put_le(&b, (uint64_t)w->n_kv, 8);
    for (int64_t i = 0; i < w->n_kv; i++) {
        s_put_str(&b, w->keys[i], strlen(w->keys[i]));
        s_put_le(&b, (uint64_t)w->values[i].type, 4);
        s_put_payload(&b, &w->values[i]);
    }
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const s_wtensor_t *t = &w->tensors[i];
        s_put_str(&b, t->name, strlen(t->name));
        s_put_le(&b, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) s_put_le(&b, (uint64_t)t->ne[d], 8);
        s_put_le(&b, (uint64_t)t->type, 4);
        s_put_le(&b, off, 8);
        off += (t->nbytes + al - 1) / al * al;
    }
    static const uint8_t zeros[64] = {0};
    while (b.len % al) s_put(&b, zeros, (size_t)((al - b.len % al) < sizeof zeros ? al - b.len % al : sizeof zeros));
    if (b.oom) {
        free(b.p);
        return wg_error(WG_ERR_NOMEM, "gguf writer: out of memory for the header of '%s'", path);
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) {
        free(b.p);
        return wg_error(WG_ERR_NOMEM, "gguf writer: out of memory");
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    wg_status st = WG_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = wg_error(WG_ERR_IO, "gguf writer: cannot create '%s': %s", tmp, strerror(errno));
        goto out;
    }
    bool ok = fwrite(b.p, 1, b.len, f) == b.len;
    for (int64_t i = 0; ok && i < w->n_tensors; i++) {
        const s_wtensor_t *t = &w->tensors[i];
        ok = fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
        size_t pad = (size_t)((al - t->nbytes % al) % al);
        while (ok && pad) {
            size_t n = pad < sizeof zeros ? pad : sizeof zeros;
            ok = fwrite(zeros, 1, n, f) == n;
            pad -= n;
        }
    }
    int e = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        unlink(tmp);
        st = wg_error(WG_ERR_IO, "gguf writer: cannot write '%s': %s", tmp, strerror(e));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        st = wg_error(WG_ERR_IO, "gguf writer: cannot rename '%s' to '%s': %s", tmp, path, strerror(e));
    }
out:
    free(tmp);
    free(b.p);
    return st;
}
