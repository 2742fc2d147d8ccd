/* wg_safetensors — HuggingFace safetensors reader (mmap, untrusted input).
 *
 * Opens one .safetensors file, or a model directory: model.safetensors, or a
 * sharded checkpoint listed by model.safetensors.index.json. The JSON header is
 * parsed with jansson; every range is checked (inside the file, no overlaps,
 * shape x dtype size == byte length, no duplicate names across shards) and a
 * bad file yields an error naming the tensor/field and the bad value.
 *
 * Lifetimes: returned pointers are borrowed, valid until wg_st_close(). */
#ifndef WG_SAFETENSORS_H
#define WG_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"

#define WG_ST_MAX_DIMS 8

typedef enum {
    WG_ST_F32,
    WG_ST_F16,
    WG_ST_BF16,
    WG_ST_F64,
    WG_ST_I8,
    WG_ST_U8,
    WG_ST_I16,
    WG_ST_I32,
    WG_ST_I64,
    WG_ST_BOOL,
    WG_ST_DTYPE_COUNT
} wg_st_dtype_t;

typedef struct {
    const char *name;               /* tensor name */
    wg_st_dtype_t dtype;            /* element type */
    uint32_t n_dims;                /* 0..WG_ST_MAX_DIMS */
    int64_t shape[WG_ST_MAX_DIMS];  /* HF/numpy order: shape[n_dims-1] fastest */
    size_t nbytes;                  /* bytes of data */
    const void *data;               /* pointer into the mapping (not necessarily aligned) */
    int shard;                      /* index of the file it lives in */
} wg_st_tensor_t;

typedef struct wg_st wg_st_t;

/* A .safetensors file or an HF model directory (single or sharded). */
wg_status wg_st_open(const char *path, wg_st_t **out);
/* One in-memory file image (not copied). For fuzzing and tests. */
wg_status wg_st_open_mem(const void *buf, size_t len, wg_st_t **out);
void wg_st_close(wg_st_t **st);

int64_t wg_st_n_tensors(const wg_st_t *st);
const wg_st_tensor_t *wg_st_tensor(const wg_st_t *st, int64_t i);
const wg_st_tensor_t *wg_st_find(const wg_st_t *st, const char *name);

/* `__metadata__` entries (string values) of the first shard. */
int64_t wg_st_n_metadata(const wg_st_t *st);
const char *wg_st_metadata_key(const wg_st_t *st, int64_t i);
const char *wg_st_metadata_get(const wg_st_t *st, const char *key); /* NULL if absent */

const char *wg_st_dtype_name(wg_st_dtype_t t);
size_t wg_st_dtype_size(wg_st_dtype_t t);

#endif
