/* wg_safetensors — HuggingFace safetensors reader (mmap, untrusted input).
 *
 * Layout of one file: u64 little-endian header length N, N bytes of JSON (an
 * object: tensor name -> {dtype, shape, data_offsets}, plus an optional
 * "__metadata__" object of strings), then the data buffer that the offsets
 * are relative to.
 *
 * Design: each file is mapped read-only and its header parsed once with
 * jansson (JSON_REJECT_DUPLICATES, since jansson otherwise keeps the last of
 * two equal keys silently). Tensor infos and metadata are copied out into
 * plain arrays; tensor data stays in the mapping. A name-sorted index serves
 * wg_st_find() by binary search and detects names repeated across shards.
 *
 * Errors (wg_errmsg() names the tensor/field and the bad value):
 *   WG_ERR_TRUNCATED   file shorter than 8 bytes, header longer than the file,
 *                      data_offsets end beyond the data buffer
 *   WG_ERR_RANGE       header length > WG_ST_MAX_HEADER, too many dims,
 *                      shape product overflow
 *   WG_ERR_UNSUPPORTED unknown dtype (e.g. F8_E4M3)
 *   WG_ERR_FORMAT      header length 0, invalid JSON, bad shape/offsets types,
 *                      begin > end, size mismatch, overlap, duplicate names,
 *                      bad __metadata__, bad index.json, bad shard file name
 *   WG_ERR_NOTFOUND    directory without index.json or model.safetensors,
 *                      tensor listed in weight_map missing from its shard
 *   WG_ERR_IO / WG_ERR_NOMEM  as usual. */
#include "wg_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest JSON header accepted (the reference implementation uses 100 MB). */
#define WG_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Longest tensor name quoted in an error message. */
#define WG_ST_QN 200

typedef struct {
    const uint8_t *base;  /* start of the file image */
    size_t len;           /* bytes of the file image */
    bool mapped;          /* true: munmap(base, len) on close */
} wg_st_shard_t;

struct wg_st {
    wg_st_shard_t *shards;      /* (n_shards) file images */
    int n_shards;               /* files held */
    wg_st_tensor_t *tensors;    /* (n_tensors) tensor infos, names owned */
    int64_t n_tensors;          /* tensors over all shards */
    int64_t cap_tensors;        /* allocated entries of tensors */
    int64_t *by_name;           /* (n_tensors) tensor indices sorted by name */
    char **meta_keys;           /* (n_meta) owned __metadata__ keys, first shard */
    char **meta_vals;           /* (n_meta) owned __metadata__ values */
    int64_t n_meta;             /* metadata entries */
};

static const struct {
    const char *name; /* dtype string in the header */
    size_t size;      /* bytes per element */
} s_dtypes[WG_ST_DTYPE_COUNT] = {
    [WG_ST_F32] = {"F32", 4}, [WG_ST_F16] = {"F16", 2}, [WG_ST_BF16] = {"BF16", 2},
    [WG_ST_F64] = {"F64", 8}, [WG_ST_I8] = {"I8", 1},   [WG_ST_U8] = {"U8", 1},
    [WG_ST_I16] = {"I16", 2}, [WG_ST_I32] = {"I32", 4}, [WG_ST_I64] = {"I64", 8},
    [WG_ST_BOOL] = {"BOOL", 1},
};

const char *wg_st_dtype_name(wg_st_dtype_t t) {
    if ((unsigned)t >= WG_ST_DTYPE_COUNT) return "?";
    return s_dtypes[t].name;
}

size_t wg_st_dtype_size(wg_st_dtype_t t) {
    if ((unsigned)t >= WG_ST_DTYPE_COUNT) return 0;
    return s_dtypes[t].size;
}

/* ---------------------------------------------------------------- helpers */

static wg_st_t *s_new(void) { return calloc(1, sizeof(wg_st_t)); }

static wg_status s_add_shard(wg_st_t *st, const uint8_t *base, size_t len, bool mapped,
                             int *idx) {
    wg_st_shard_t *s = realloc(st->shards, (size_t)(st->n_shards + 1) * sizeof *s);
    if (!s) {
        if (mapped) munmap((void *)base, len);
        return wg_error(WG_ERR_NOMEM, "safetensors: shard table");
    }
    st->shards = s;
    s[st->n_shards] = (wg_st_shard_t){base, len, mapped};
    *idx = st->n_shards++;
    return WG_OK;
}

static wg_st_tensor_t *s_push_tensor(wg_st_t *st) {
    if (st->n_tensors == st->cap_tensors) {
        int64_t cap = st->cap_tensors ? st->cap_tensors * 2 : 64;
        wg_st_tensor_t *t = realloc(st->tensors, (size_t)cap * sizeof *t);
        if (!t) return NULL;
        st->tensors = t;
        st->cap_tensors = cap;
    }
    wg_st_tensor_t *t = &st->tensors[st->n_tensors];
    memset(t, 0, sizeof *t);
    return t;
}

void wg_st_close(wg_st_t **pst) {
    if (!pst || !*pst) return;
    wg_st_t *st = *pst;
    for (int i = 0; i < st->n_shards; i++)
        if (st->shards[i].mapped) munmap((void *)st->shards[i].base, st->shards[i].len);
    for (int64_t i = 0; i < st->n_tensors; i++) free((char *)st->tensors[i].name);
    for (int64_t i = 0; i < st->n_meta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->shards);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_keys);
    free(st->meta_vals);
    free(st);
    *pst = NULL;
}

/* Map `path` read-only. Files shorter than 8 bytes cannot hold a header. */
static wg_status s_map(const char *path, const uint8_t **base, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return wg_error(WG_ERR_IO, "safetensors: open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return wg_error(WG_ERR_IO, "safetensors: stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return wg_error(WG_ERR_IO, "safetensors: %s is not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return wg_error(WG_ERR_TRUNCATED, "safetensors: %s: file size %lld < 8 (no header length)",
                        path, (long long)sb.st_size);
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return wg_error(WG_ERR_IO, "safetensors: mmap %s: %s", path, strerror(e));
    *base = p;
    *len = (size_t)sb.st_size;
    return WG_OK;
}

/* A JSON integer >= 0, else false. */
static bool s_nonneg_int(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

/* ----------------------------------------------------------- one header */

typedef struct {
    uint64_t begin; /* data_offsets[0] */
    uint64_t end;   /* data_offsets[1] */
    int64_t idx;    /* tensor index */
} wg_st_range_t;

static int s_cmp_range(const void *a, const void *b) {
    const wg_st_range_t *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Parse one tensor entry `v` named `name` against a data buffer of
 * `data_len` bytes starting at `data`. Fills *t (name not set). */
static wg_status s_parse_tensor(const char *name, json_t *v, const uint8_t *data,
                                uint64_t data_len, wg_st_tensor_t *t, wg_st_range_t *r) {
    if (!json_is_object(v))
        return wg_error(WG_ERR_FORMAT, "safetensors: tensor '%.*s': entry is not an object",
                        WG_ST_QN, name);
    json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return wg_error(WG_ERR_FORMAT, "safetensors: tensor '%.*s': dtype missing or not a string",
                        WG_ST_QN, name);
    const char *ds = json_string_value(jd);
    int dt = -1;
    for (int i = 0; i < WG_ST_DTYPE_COUNT; i++)
        if (strcmp(ds, s_dtypes[i].name) == 0) dt = i;
    if (dt < 0)
        return wg_error(WG_ERR_UNSUPPORTED, "safetensors: tensor '%.*s': unknown dtype '%.32s'",
                        WG_ST_QN, name, ds);
    t->dtype = (wg_st_dtype_t)dt;

    json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return wg_error(WG_ERR_FORMAT, "safetensors: tensor '%.*s': shape missing or not an array",
                        WG_ST_QN, name);
    size_t nd = json_array_size(js);
    if (nd > WG_ST_MAX_DIMS)
        return wg_error(WG_ERR_RANGE, "safetensors: tensor '%.*s': shape has %zu dims (max %d)",
                        WG_ST_QN, name, nd, WG_ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    uint64_t nbytes = s_dtypes[dt].size;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        json_t *e = json_array_get(js, i);
        if (!s_nonneg_int(e, &d)) {
            char *txt = json_dumps(e, JSON_ENCODE_ANY | JSON_COMPACT);
            wg_status s = wg_error(WG_ERR_FORMAT,
                                   "safetensors: tensor '%.*s': shape[%zu] = %.40s is not a "
                                   "non-negative integer",
                                   WG_ST_QN, name, i, txt ? txt : "?");
            free(txt);
            return s;
        }
        t->shape[i] = (int64_t)d;
        if (d != 0 && nbytes > UINT64_MAX / d)
            return wg_error(WG_ERR_RANGE,
                            "safetensors: tensor '%.*s': shape product overflows at shape[%zu] = "
                            "%llu",
                            WG_ST_QN, name, i, (unsigned long long)d);
        nbytes *= d;
    }

    json_t *jo = json_object_get(v, "data_offsets");
    uint64_t b, e;
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !s_nonneg_int(json_array_get(jo, 0), &b) ||
        !s_nonneg_int(json_array_get(jo, 1), &e)) {
        char *txt = jo ? json_dumps(jo, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        wg_status s = wg_error(WG_ERR_FORMAT,
                               "safetensors: tensor '%.*s': data_offsets %.60s is not two "
                               "non-negative integers",
                               WG_ST_QN, name, txt ? txt : "(missing)");
        free(txt);
        return s;
    }
    if (b > e)
        return wg_error(WG_ERR_FORMAT,
                        "safetensors: tensor '%.*s': data_offsets begin %llu > end %llu", WG_ST_QN,
                        name, (unsigned long long)b, (unsigned long long)e);
    if (e > data_len)
        return wg_error(WG_ERR_TRUNCATED,
                        "safetensors: tensor '%.*s': data_offsets end %llu beyond data buffer of "
                        "%llu bytes",
                        WG_ST_QN, name, (unsigned long long)e, (unsigned long long)data_len);
    if (e - b != nbytes)
        return wg_error(WG_ERR_FORMAT,
                        "safetensors: tensor '%.*s': data_offsets span %llu bytes but shape x %s "
                        "needs %llu",
                        WG_ST_QN, name, (unsigned long long)(e - b), s_dtypes[dt].name,
                        (unsigned long long)nbytes);
    t->nbytes = (size_t)nbytes;
    t->data = data + b;
    r->begin = b;
    r->end = e;
    return WG_OK;
}

/* Check the "__metadata__" object `md` (string values only) and, when
 * `keep`, copy it into st (shard 0 only). */
static wg_status s_parse_metadata(wg_st_t *st, json_t *md, bool keep) {
    if (!json_is_object(md))
        return wg_error(WG_ERR_FORMAT, "safetensors: __metadata__ is not an object");
    const char *k;
    json_t *v;
    json_object_foreach(md, k, v) {
        if (!json_is_string(v))
            return wg_error(WG_ERR_FORMAT, "safetensors: __metadata__ key '%.*s' is not a string",
                            WG_ST_QN, k);
    }
    if (!keep) return WG_OK;
    size_t n = json_object_size(md);
    st->meta_keys = calloc(n ? n : 1, sizeof(char *));
    st->meta_vals = calloc(n ? n : 1, sizeof(char *));
    if (!st->meta_keys || !st->meta_vals) return wg_error(WG_ERR_NOMEM, "safetensors: metadata");
    json_object_foreach(md, k, v) {
        char *ks = strdup(k), *vs = strdup(json_string_value(v));
        if (!ks || !vs) {
            free(ks);
            free(vs);
            return wg_error(WG_ERR_NOMEM, "safetensors: metadata");
        }
        st->meta_keys[st->n_meta] = ks;
        st->meta_vals[st->n_meta] = vs;
        st->n_meta++;
    }
    return WG_OK;
}

/* Parse the image of shard `shard` and append its tensors to st. */
static wg_status s_parse_image(wg_st_t *st, int shard) {
    const uint8_t *buf = st->shards[shard].base;
    size_t len = st->shards[shard].len;
    if (len < 8)
        return wg_error(WG_ERR_TRUNCATED, "safetensors: file size %zu < 8 (no header length)", len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | buf[i];
    if (n == 0) return wg_error(WG_ERR_FORMAT, "safetensors: header length 0");
    if (n > WG_ST_MAX_HEADER)
        return wg_error(WG_ERR_RANGE, "safetensors: header length %llu exceeds %llu",
                        (unsigned long long)n, (unsigned long long)WG_ST_MAX_HEADER);
    if (n > len - 8)
        return wg_error(WG_ERR_TRUNCATED,
                        "safetensors: header length %llu larger than the %zu bytes after it",
                        (unsigned long long)n, len - 8);
    const uint8_t *data = buf + 8 + n;
    uint64_t data_len = (uint64_t)(len - 8 - n);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return wg_error(WG_ERR_FORMAT, "safetensors: duplicate tensor name: %s (line %d col %d)",
                            jerr.text, jerr.line, jerr.column);
        return wg_error(WG_ERR_FORMAT, "safetensors: invalid JSON header: %s (line %d col %d)",
                        jerr.text, jerr.line, jerr.column);
    }
    wg_status s = WG_OK;
    wg_st_range_t *ranges = NULL;
    if (!json_is_object(root)) {
        s = wg_error(WG_ERR_FORMAT, "safetensors: JSON header is not an object");
        goto done;
    }
    size_t cnt = json_object_size(root);
    ranges = malloc((cnt ? cnt : 1) * sizeof *ranges);
    if (!ranges) {
        s = wg_error(WG_ERR_NOMEM, "safetensors: %zu tensors", cnt);
        goto done;
    }
    size_t nr = 0;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((s = s_parse_metadata(st, v, shard == 0)) != WG_OK) goto done;
            continue;
        }
        wg_st_tensor_t *t = s_push_tensor(st);
        if (!t) {
            s = wg_error(WG_ERR_NOMEM, "safetensors: tensor table");
            goto done;
        }
        if ((s = s_parse_tensor(key, v, data, data_len, t, &ranges[nr])) != WG_OK) goto done;
        t->name = strdup(key);
        if (!t->name) {
            s = wg_error(WG_ERR_NOMEM, "safetensors: tensor name");
            goto done;
        }
        t->shard = shard;
        ranges[nr].idx = st->n_tensors++;
        nr++;
    }
    /* Overlaps: sorted by begin, each non-empty range must start at or after
     * the end of every earlier one. Empty ranges hold no bytes. */
    qsort(ranges, nr, sizeof *ranges, s_cmp_range);
    uint64_t reach = 0;
    int64_t reach_idx = -1;
    for (size_t i = 0; i < nr; i++) {
        if (ranges[i].begin == ranges[i].end) continue;
        if (reach_idx >= 0 && ranges[i].begin < reach) {
            s = wg_error(WG_ERR_FORMAT,
                         "safetensors: tensor '%.*s' [%llu, %llu) overlaps tensor '%.*s' "
                         "(ends at %llu)",
                         WG_ST_QN, st->tensors[ranges[i].idx].name,
                         (unsigned long long)ranges[i].begin, (unsigned long long)ranges[i].end,
                         WG_ST_QN, st->tensors[reach_idx].name, (unsigned long long)reach);
            goto done;
        }
        reach = ranges[i].end;
        reach_idx = ranges[i].idx;
    }
done:
    free(ranges);
    json_decref(root);
    return s;
}

static int s_cmp_by_name(const void *a, const void *b, void *arg) {
    const wg_st_tensor_t *t = arg;
    return strcmp(t[*(const int64_t *)a].name, t[*(const int64_t *)b].name);
}

/* Build the name index; a name seen twice (two shards) is an error. */
static wg_status s_index(wg_st_t *st) {
    st->by_name = malloc((size_t)(st->n_tensors ? st->n_tensors : 1) * sizeof(int64_t));
    if (!st->by_name) return wg_error(WG_ERR_NOMEM, "safetensors: name index");
    for (int64_t i = 0; i < st->n_tensors; i++) st->by_name[i] = i;
    qsort_r(st->by_name, (size_t)st->n_tensors, sizeof(int64_t), s_cmp_by_name, st->tensors);
    for (int64_t i = 1; i < st->n_tensors; i++) {
        const wg_st_tensor_t *a = &st->tensors[st->by_name[i - 1]];
        const wg_st_tensor_t *b = &st->tensors[st->by_name[i]];
        if (strcmp(a->name, b->name) == 0)
            return wg_error(WG_ERR_FORMAT,
                            "safetensors: tensor '%.*s' appears in two shards (%d and %d)",
                            WG_ST_QN, a->name, a->shard, b->shard);
    }
    return WG_OK;
}

/* ------------------------------------------------------------ public API */

wg_status wg_st_open_mem(const void *buf, size_t len, wg_st_t **out) {
    WG_ASSERT(out);
    *out = NULL;
    if (!buf && len) return wg_error(WG_ERR_INVAL, "safetensors: NULL buffer of %zu bytes", len);
    wg_st_t *st = s_new();
    if (!st) return wg_error(WG_ERR_NOMEM, "safetensors: handle");
    int idx = -1;
    wg_status s = s_add_shard(st, buf, len, false, &idx);
    if (s == WG_OK) s = s_parse_image(st, idx);
    if (s == WG_OK) s = s_index(st);
    if (s != WG_OK) {
        wg_st_close(&st);
        return s;
    }
    *out = st;
    return WG_OK;
}

/* Map and parse one file as the next shard. The error message gets the path
 * prepended so a bad shard is identifiable. */
static wg_status s_open_file(wg_st_t *st, const char *path) {
    const uint8_t *base = NULL;
    size_t len = 0;
    wg_status s = s_map(path, &base, &len);
    if (s != WG_OK) return s;
    int idx = -1;
    if ((s = s_add_shard(st, base, len, true, &idx)) != WG_OK) return s;
    if ((s = s_parse_image(st, idx)) != WG_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", wg_errmsg());
        return wg_error(s, "%s (in %s)", msg, path);
    }
    return WG_OK;
}

static bool s_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int s_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sharded checkpoint: `dir`/model.safetensors.index.json lists every tensor's
 * shard file in "weight_map". Shards are opened once each, in name order (so
 * shard 0 is model-00001-of-...). Tensors present in a shard but absent from
 * the map are kept (the map is the loader's view, the files are the truth). */
static wg_status s_open_index(wg_st_t *st, const char *dir, const char *index_path) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return wg_error(WG_ERR_FORMAT, "safetensors: %s: invalid JSON: %s (line %d col %d)",
                        index_path, jerr.text, jerr.line, jerr.column);
    wg_status s = WG_OK;
    const char **files = NULL;
    size_t n_files = 0;
    char *path = NULL;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        s = wg_error(WG_ERR_FORMAT, "safetensors: %s: weight_map missing or not an object",
                     index_path);
        goto done;
    }
    size_t n = json_object_size(wm);
    if (n == 0) {
        s = wg_error(WG_ERR_FORMAT, "safetensors: %s: weight_map is empty", index_path);
        goto done;
    }
    files = malloc(n * sizeof *files);
    if (!files) {
        s = wg_error(WG_ERR_NOMEM, "safetensors: shard list");
        goto done;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            s = wg_error(WG_ERR_FORMAT, "safetensors: %s: weight_map['%.*s'] is not a string",
                         index_path, WG_ST_QN, name);
            goto done;
        }
        const char *f = json_string_value(v);
        if (!*f || strchr(f, '/') || strchr(f, '\\') || strstr(f, "..")) {
            s = wg_error(WG_ERR_FORMAT,
                         "safetensors: %s: weight_map['%.*s'] shard file name '%.*s' is empty or "
                         "leaves the directory",
                         index_path, WG_ST_QN, name, WG_ST_QN, f);
            goto done;
        }
        files[n_files++] = f;
    }
    qsort(files, n_files, sizeof *files, s_cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < n_files; i++)
        if (u == 0 || strcmp(files[u - 1], files[i]) != 0) files[u++] = files[i];
    n_files = u;

    size_t plen = strlen(dir) + 2;
    for (size_t i = 0; i < n_files; i++) {
        free(path);
        path = malloc(plen + strlen(files[i]));
        if (!path) {
            s = wg_error(WG_ERR_NOMEM, "safetensors: path");
            goto done;
        }
        sprintf(path, "%s/%s", dir, files[i]);
        if ((s = s_open_file(st, path)) != WG_OK) goto done;
    }
    if ((s = s_index(st)) != WG_OK) goto done;

    /* Every mapped tensor must live in the shard the map names. */
    json_object_foreach(wm, name, v) {
        const char *f = json_string_value(v);
        const char **hit = bsearch(&f, files, n_files, sizeof *files, s_cmp_str);
        int want = (int)(hit - files);
        const wg_st_tensor_t *t = wg_st_find(st, name);
        if (!t || t->shard != want) {
            s = wg_error(WG_ERR_NOTFOUND, "safetensors: tensor '%.*s' listed in %s not found in %s",
                         WG_ST_QN, name, index_path, f);
            goto done;
        }
    }
done:
    free(path);
    free(files);
    json_decref(root);
    return s;
}

wg_status wg_st_open(const char *path, wg_st_t **out) {
    WG_ASSERT(path && out);
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return wg_error(WG_ERR_IO, "safetensors: %s: %s", path, strerror(errno));
    wg_st_t *st = s_new();
    if (!st) return wg_error(WG_ERR_NOMEM, "safetensors: handle");
    wg_status s;
    if (S_ISDIR(sb.st_mode)) {
        size_t plen = strlen(path) + 64;
        char *idx = malloc(plen), *single = malloc(plen);
        if (!idx || !single) {
            s = wg_error(WG_ERR_NOMEM, "safetensors: path");
        } else {
            snprintf(idx, plen, "%s/model.safetensors.index.json", path);
            snprintf(single, plen, "%s/model.safetensors", path);
            if (s_is_file(idx)) {
                s = s_open_index(st, path, idx);
            } else if (s_is_file(single)) {
                s = s_open_file(st, single);
                if (s == WG_OK) s = s_index(st);
            } else {
                s = wg_error(WG_ERR_NOTFOUND,
                             "safetensors: %s has neither model.safetensors.index.json nor "
                             "model.safetensors",
                             path);
            }
        }
        free(idx);
        free(single);
    } else {
        s = s_open_file(st, path);
        if (s == WG_OK) s = s_index(st);
    }
    if (s != WG_OK) {
        wg_st_close(&st);
        return s;
    }
    *out = st;
    return WG_OK;
}

int64_t wg_st_n_tensors(const wg_st_t *st) {
    WG_ASSERT(st);
    return st->n_tensors;
}

const wg_st_tensor_t *wg_st_tensor(const wg_st_t *st, int64_t i) {
    WG_ASSERT(st);
    if (i < 0 || i >= st->n_tensors) return NULL;
    return &st->tensors[i];
}

const wg_st_tensor_t *wg_st_find(const wg_st_t *st, const char *name) {
    WG_ASSERT(st && name);
    int64_t lo = 0, hi = st->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const wg_st_tensor_t *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int64_t wg_st_n_metadata(const wg_st_t *st) {
    WG_ASSERT(st);
    return st->n_meta;
}

const char *wg_st_metadata_key(const wg_st_t *st, int64_t i) {
    WG_ASSERT(st);
    if (i < 0 || i >= st->n_meta) return NULL;
    return st->meta_keys[i];
}

const char *wg_st_metadata_get(const wg_st_t *st, const char *key) {
    WG_ASSERT(st && key);
    for (int64_t i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta_keys[i], key) == 0) return st->meta_vals[i];
    return NULL;
}
