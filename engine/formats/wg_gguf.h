/* wg_gguf — GGUF v2/v3 reader (mmap, untrusted input) and writer.
 *
 * Reader design: the file is mapped read-only and parsed once into a table of
 * key/values and tensor infos; every count, length, offset, dimension and type
 * id is checked against the file size and sane limits before it is used. A bad
 * file yields an error whose wg_errmsg() names the field and the bad value.
 * Strings are copied out NUL-terminated; tensor data stays in the mapping.
 *
 * Lifetimes: every pointer returned by a getter is borrowed and valid until
 * wg_gguf_close(). A wg_gguf_t is immutable after open and may be read from
 * several threads at once. */
#ifndef WG_GGUF_H
#define WG_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "../../kernels/quant.h"

#define WG_GGUF_MAX_DIMS 4
#define WG_GGUF_DEFAULT_ALIGNMENT 32

typedef enum {
    WG_GGUF_UINT8 = 0,
    WG_GGUF_INT8 = 1,
    WG_GGUF_UINT16 = 2,
    WG_GGUF_INT16 = 3,
    WG_GGUF_UINT32 = 4,
    WG_GGUF_INT32 = 5,
    WG_GGUF_FLOAT32 = 6,
    WG_GGUF_BOOL = 7,
    WG_GGUF_STRING = 8,
    WG_GGUF_ARRAY = 9,
    WG_GGUF_UINT64 = 10,
    WG_GGUF_INT64 = 11,
    WG_GGUF_FLOAT64 = 12,
    WG_GGUF_VTYPE_COUNT = 13
} wg_gguf_vtype_t;

/* One metadata value. Arrays hold `n` items of `arr_type`; numeric and bool
 * items are decoded into `items` too, so nested arrays and every element type
 * are walked the same way. */
typedef struct wg_gguf_value {
    wg_gguf_vtype_t type;           /* value type */
    union {
        uint64_t u64;               /* UINT8/16/32/64, BOOL (0/1) */
        int64_t i64;                /* INT8/16/32/64 */
        double f64;                 /* FLOAT32/64 */
        struct {
            const char *ptr;        /* NUL-terminated copy (may contain NULs; use len) */
            uint64_t len;           /* bytes, without the terminator */
        } str;                      /* STRING */
        struct {
            wg_gguf_vtype_t type;   /* element type */
            uint64_t n;             /* element count */
            struct wg_gguf_value *items; /* n decoded elements */
        } arr;                      /* ARRAY */
    } v;
} wg_gguf_value_t;

typedef struct {
    const char *name;               /* tensor name */
    wg_type_t type;                 /* tensor type (validated: known id) */
    uint32_t n_dims;                /* 1..WG_GGUF_MAX_DIMS */
    int64_t ne[WG_GGUF_MAX_DIMS];   /* dims, ne[0] fastest (row length); unused = 1 */
    uint64_t offset;                /* offset of the data from the start of the data section */
    size_t nbytes;                  /* bytes of data */
    const void *data;               /* pointer into the mapping (aligned to general.alignment) */
} wg_gguf_tensor_t;

typedef struct wg_gguf wg_gguf_t;

/* Map and parse a file. On error *out is NULL and wg_errmsg() names the field. */
wg_status wg_gguf_open(const char *path, wg_gguf_t **out);

/* Parse an in-memory image (not copied: `buf` must outlive the result). For
 * fuzzing and tests. */
wg_status wg_gguf_open_mem(const void *buf, size_t len, wg_gguf_t **out);

/* Unmap and free; accepts NULL and sets *g to NULL. */
void wg_gguf_close(wg_gguf_t **g);

uint32_t wg_gguf_version(const wg_gguf_t *g);
size_t wg_gguf_alignment(const wg_gguf_t *g);
uint64_t wg_gguf_data_offset(const wg_gguf_t *g);   /* file offset of the data section */
size_t wg_gguf_file_size(const wg_gguf_t *g);

/* ---- metadata ---- */
int64_t wg_gguf_n_kv(const wg_gguf_t *g);
const char *wg_gguf_kv_key(const wg_gguf_t *g, int64_t i);
const wg_gguf_value_t *wg_gguf_kv_value(const wg_gguf_t *g, int64_t i);
/* Value of `key`, or NULL when absent. */
const wg_gguf_value_t *wg_gguf_get(const wg_gguf_t *g, const char *key);

/* Typed getters. Integers convert between widths when the value fits; floats
 * accept FLOAT32/FLOAT64 (and integers). Return WG_ERR_NOTFOUND when absent,
 * WG_ERR_FORMAT (with a message naming the key) on a type mismatch. */
wg_status wg_gguf_get_i64(const wg_gguf_t *g, const char *key, int64_t *out);
wg_status wg_gguf_get_u32(const wg_gguf_t *g, const char *key, uint32_t *out);
wg_status wg_gguf_get_f32(const wg_gguf_t *g, const char *key, float *out);
wg_status wg_gguf_get_bool(const wg_gguf_t *g, const char *key, bool *out);
wg_status wg_gguf_get_str(const wg_gguf_t *g, const char *key, const char **out);
/* Array of `key`: element type and count; items via the returned value. */
wg_status wg_gguf_get_arr(const wg_gguf_t *g, const char *key, wg_gguf_vtype_t *elem_type,
                          uint64_t *n, const wg_gguf_value_t **items);

const char *wg_gguf_vtype_name(wg_gguf_vtype_t t);

/* ---- tensors ---- */
int64_t wg_gguf_n_tensors(const wg_gguf_t *g);
const wg_gguf_tensor_t *wg_gguf_tensor(const wg_gguf_t *g, int64_t i);
/* Tensor by name, or NULL. */
const wg_gguf_tensor_t *wg_gguf_find_tensor(const wg_gguf_t *g, const char *name);

/* ---- writer ----
 * Builds a GGUF v3 file in memory order: set keys, add tensors (data copied),
 * then write. Keys keep insertion order; setting a key twice replaces it. */
typedef struct wg_gguf_writer wg_gguf_writer_t;

wg_gguf_writer_t *wg_gguf_writer_new(void);
void wg_gguf_writer_destroy(wg_gguf_writer_t **w);
void wg_gguf_writer_set_alignment(wg_gguf_writer_t *w, size_t alignment);
wg_status wg_gguf_writer_set_u32(wg_gguf_writer_t *w, const char *key, uint32_t v);
wg_status wg_gguf_writer_set_i32(wg_gguf_writer_t *w, const char *key, int32_t v);
wg_status wg_gguf_writer_set_u64(wg_gguf_writer_t *w, const char *key, uint64_t v);
wg_status wg_gguf_writer_set_f32(wg_gguf_writer_t *w, const char *key, float v);
wg_status wg_gguf_writer_set_bool(wg_gguf_writer_t *w, const char *key, bool v);
wg_status wg_gguf_writer_set_str(wg_gguf_writer_t *w, const char *key, const char *v);
/* Any value, including nested arrays (deep-copied). */
wg_status wg_gguf_writer_set_value(wg_gguf_writer_t *w, const char *key, const wg_gguf_value_t *v);
/* Arrays of plain elements: `data` holds n packed elements of elem_type (not STRING/ARRAY). */
wg_status wg_gguf_writer_set_arr(wg_gguf_writer_t *w, const char *key, wg_gguf_vtype_t elem_type,
                                 const void *data, uint64_t n);
wg_status wg_gguf_writer_set_arr_str(wg_gguf_writer_t *w, const char *key, const char *const *strs,
                                     uint64_t n);
/* Add a tensor; `data` (wg_row_size(type, ne[0]) * ne[1] * ... bytes) is copied. */
wg_status wg_gguf_writer_add_tensor(wg_gguf_writer_t *w, const char *name, wg_type_t type,
                                    uint32_t n_dims, const int64_t *ne, const void *data);
/* Write the file (to `path`.tmp then rename). */
wg_status wg_gguf_writer_write(wg_gguf_writer_t *w, const char *path);

#endif
