/* Tests of the safetensors reader: the corpus HF directories, synthetic
 * single and sharded files, every hostile header case, truncation at every
 * byte, and metadata access. Synthetic files are written by s_image(). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "engine/formats/wg_safetensors.h"
#include "kernels/quant.h"
#include "wg_test.h"

/* ------------------------------------------------------------- helpers */

/* A file image: u64 LE header length, the JSON text, then `data_len` bytes of
 * data (byte i = (uint8_t)(i * 7 + 1), so every range has known content). */
static uint8_t *s_image(const char *json, size_t data_len, size_t *len) {
    size_t n = strlen(json);
    *len = 8 + n + data_len;
    uint8_t *b = malloc(*len);
    cr_assert_not_null(b);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, json, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (uint8_t)(i * 7 + 1);
    return b;
}

static void s_write(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static void s_write_image(const char *path, const char *json, size_t data_len) {
    size_t len;
    uint8_t *b = s_image(json, data_len, &len);
    s_write(path, b, len);
    free(b);
}

static char *s_tmpdir(void) {
    static char d[64];
    snprintf(d, sizeof d, "/tmp/wg_st_test_XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static const char *s_join(const char *dir, const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Open `json` + data in memory and expect status `want` with `needle` in the message. */
static void s_expect_mem(const char *json, size_t data_len, wg_status want, const char *needle) {
    size_t len;
    uint8_t *b = s_image(json, data_len, &len);
    wg_st_t *st = (wg_st_t *)0x1;
    wg_error_clear();
    wg_status s = wg_st_open_mem(b, len, &st);
    cr_expect_eq(s, want, "header %s: got %s (%s), want %s", json, wg_status_name(s), wg_errmsg(),
                 wg_status_name(want));
    if (want != WG_OK) cr_expect_null(st, "out must be NULL on error");
    if (needle)
        cr_expect(strstr(wg_errmsg(), needle) != NULL, "message '%s' lacks '%s'", wg_errmsg(),
                  needle);
    wg_st_close(&st);
    free(b);
}

static const char *s_valid_json =
    "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"hello\"},"
    "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b.bias\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[24,28]},"
    "\"c.scalar\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[28,30]}}   ";

/* ------------------------------------------------------- synthetic files */

Test(safetensors, valid_image_gives_every_field) {
    size_t len;
    uint8_t *b = s_image(s_valid_json, 30, &len);
    wg_st_t *st = NULL;
    cr_assert_eq(wg_st_open_mem(b, len, &st), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_st_n_tensors(st), 3);
    const uint8_t *data = b + 8 + strlen(s_valid_json);

    const wg_st_tensor_t *a = wg_st_find(st, "a.weight");
    cr_assert_not_null(a);
    cr_expect_eq(a->dtype, WG_ST_F32);
    cr_expect_eq(a->n_dims, 2);
    cr_expect_eq(a->shape[0], 2);
    cr_expect_eq(a->shape[1], 3);
    cr_expect_eq(a->nbytes, 24);
    cr_expect_eq(a->data, data);
    cr_expect_eq(a->shard, 0);

    const wg_st_tensor_t *bb = wg_st_find(st, "b.bias");
    cr_assert_not_null(bb);
    cr_expect_eq(bb->dtype, WG_ST_I8);
    cr_expect_eq(bb->n_dims, 1);
    cr_expect_eq(bb->shape[0], 4);
    cr_expect_eq(bb->nbytes, 4);
    cr_expect_eq(bb->data, data + 24);
    cr_expect_eq(((const uint8_t *)bb->data)[0], (uint8_t)(24 * 7 + 1));

    const wg_st_tensor_t *c = wg_st_find(st, "c.scalar");
    cr_assert_not_null(c);
    cr_expect_eq(c->dtype, WG_ST_BF16);
    cr_expect_eq(c->n_dims, 0);
    cr_expect_eq(c->nbytes, 2);
    cr_expect_eq(c->data, data + 28);

    /* Index order is file order; find() agrees with the index. */
    cr_expect_str_eq(wg_st_tensor(st, 0)->name, "a.weight");
    cr_expect_str_eq(wg_st_tensor(st, 2)->name, "c.scalar");
    cr_expect_null(wg_st_tensor(st, 3));
    cr_expect_null(wg_st_tensor(st, -1));
    cr_expect_null(wg_st_find(st, "missing"));
    cr_expect_null(wg_st_find(st, "__metadata__"));
    wg_st_close(&st);
    cr_expect_null(st);
    wg_st_close(&st); /* NULL is accepted */
    free(b);
}

Test(safetensors, metadata_access) {
    size_t len;
    uint8_t *b = s_image(s_valid_json, 30, &len);
    wg_st_t *st = NULL;
    cr_assert_eq(wg_st_open_mem(b, len, &st), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_st_n_metadata(st), 2);
    cr_expect_str_eq(wg_st_metadata_key(st, 0), "format");
    cr_expect_str_eq(wg_st_metadata_key(st, 1), "note");
    cr_expect_null(wg_st_metadata_key(st, 2));
    cr_expect_str_eq(wg_st_metadata_get(st, "format"), "pt");
    cr_expect_str_eq(wg_st_metadata_get(st, "note"), "hello");
    cr_expect_null(wg_st_metadata_get(st, "absent"));
    wg_st_close(&st);
    free(b);

    /* No __metadata__ at all: zero entries. */
    b = s_image("{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, &len);
    cr_assert_eq(wg_st_open_mem(b, len, &st), WG_OK, "%s", wg_errmsg());
    cr_expect_eq(wg_st_n_metadata(st), 0);
    cr_expect_null(wg_st_metadata_get(st, "format"));
    wg_st_close(&st);
    free(b);
}

Test(safetensors, dtype_table) {
    static const struct {
        wg_st_dtype_t t;
        const char *name;
        size_t size;
    } want[] = {{WG_ST_F32, "F32", 4}, {WG_ST_F16, "F16", 2}, {WG_ST_BF16, "BF16", 2},
                {WG_ST_F64, "F64", 8}, {WG_ST_I8, "I8", 1},   {WG_ST_U8, "U8", 1},
                {WG_ST_I16, "I16", 2}, {WG_ST_I32, "I32", 4}, {WG_ST_I64, "I64", 8},
                {WG_ST_BOOL, "BOOL", 1}};
    cr_assert_eq(sizeof want / sizeof want[0], WG_ST_DTYPE_COUNT);
    for (size_t i = 0; i < WG_ST_DTYPE_COUNT; i++) {
        cr_expect_str_eq(wg_st_dtype_name(want[i].t), want[i].name);
        cr_expect_eq(wg_st_dtype_size(want[i].t), want[i].size, "%s", want[i].name);
        /* Every dtype parses, with its size checked against the range. */
        char json[256];
        snprintf(json, sizeof json, "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}",
                 want[i].name, 3 * want[i].size);
        size_t len;
        uint8_t *b = s_image(json, 3 * want[i].size, &len);
        wg_st_t *st = NULL;
        cr_expect_eq(wg_st_open_mem(b, len, &st), WG_OK, "%s: %s", want[i].name, wg_errmsg());
        if (st) cr_expect_eq(wg_st_find(st, "t")->dtype, want[i].t);
        wg_st_close(&st);
        free(b);
    }
    cr_expect_eq(wg_st_dtype_size(WG_ST_DTYPE_COUNT), 0);
}

Test(safetensors, empty_header_object_has_no_tensors) {
    size_t len;
    uint8_t *b = s_image("{}", 0, &len);
    wg_st_t *st = NULL;
    cr_assert_eq(wg_st_open_mem(b, len, &st), WG_OK, "%s", wg_errmsg());
    cr_expect_eq(wg_st_n_tensors(st), 0);
    cr_expect_null(wg_st_find(st, "x"));
    wg_st_close(&st);
    free(b);
}

Test(safetensors, zero_sized_tensors_do_not_overlap) {
    /* Two empty tensors at the same offset as a real one are fine. */
    s_expect_mem("{\"e1\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[4,4]},"
                 "\"e2\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                 "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                 8, WG_OK, NULL);
}

/* ----------------------------------------------------------- hostile */

Test(safetensors, header_length_checks) {
    wg_st_t *st = NULL;
    uint8_t b[64] = {0};
    /* Shorter than the 8-byte length field. */
    cr_expect_eq(wg_st_open_mem(b, 5, &st), WG_ERR_TRUNCATED);
    /* Length 0. */
    cr_expect_eq(wg_st_open_mem(b, 16, &st), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "header length 0") != NULL, "%s", wg_errmsg());
    /* Larger than the file. */
    b[0] = 100;
    memcpy(b + 8, "{}", 2);
    cr_expect_eq(wg_st_open_mem(b, 20, &st), WG_ERR_TRUNCATED);
    cr_expect(strstr(wg_errmsg(), "100") != NULL, "%s", wg_errmsg());
    /* Over 100 MB (whatever the file size). */
    uint64_t big = 100000001ull;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(big >> (8 * i));
    cr_expect_eq(wg_st_open_mem(b, sizeof b, &st), WG_ERR_RANGE);
    cr_expect(strstr(wg_errmsg(), "100000001") != NULL, "%s", wg_errmsg());
    /* u64 max must not wrap any size arithmetic. */
    memset(b, 0xff, 8);
    cr_expect_eq(wg_st_open_mem(b, sizeof b, &st), WG_ERR_RANGE);
    cr_expect_null(st);
}

#define T1(body) "{\"w.q\":{" body "}}"

Test(safetensors, hostile_headers_name_the_tensor) {
    static const struct {
        const char *json;
        size_t data;
        wg_status want;
        const char *needle;
    } cases[] = {
        /* invalid JSON */
        {"{\"w.q\":{\"dtype\":\"F32\",", 0, WG_ERR_FORMAT, "invalid JSON"},
        {"[1,2]", 0, WG_ERR_FORMAT, "not an object"},
        {T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}, trailing"), 4, WG_ERR_FORMAT,
         "invalid JSON"},
        /* entry and dtype */
        {"{\"w.q\":7}", 0, WG_ERR_FORMAT, "w.q"},
        {T1("\"shape\":[1],\"data_offsets\":[0,4]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]"), 1, WG_ERR_UNSUPPORTED,
         "F8_E4M3"},
        {T1("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, WG_ERR_UNSUPPORTED,
         "w.q"},
        {T1("\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,4]"), 4, WG_ERR_FORMAT, "w.q"},
        /* shape */
        {T1("\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]"), 4, WG_ERR_FORMAT, "-1"},
        {T1("\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]"), 4, WG_ERR_FORMAT, "1.5"},
        {T1("\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), 4,
         WG_ERR_RANGE, "9 dims"},
        {T1("\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]"), 4,
         WG_ERR_RANGE, "w.q"},
        {T1("\"dtype\":\"F64\",\"shape\":[2305843009213693952,2],\"data_offsets\":[0,4]"), 4,
         WG_ERR_RANGE, "overflow"},
        /* data_offsets */
        {T1("\"dtype\":\"F32\",\"shape\":[1]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), 8, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4]"), 4, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]"), 8, WG_ERR_FORMAT, "8 > end 4"},
        {T1("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]"), 7, WG_ERR_TRUNCATED, "w.q"},
        {T1("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9223372036854775800,"
            "9223372036854775804]"),
         4, WG_ERR_TRUNCATED, "w.q"},
        /* size mismatch */
        {T1("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), 8, WG_ERR_FORMAT, "w.q"},
        {T1("\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,24]"), 24, WG_ERR_FORMAT, "12"},
        /* overlap */
        {"{\"x.a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"w.q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, WG_ERR_FORMAT, "w.q"},
        {"{\"w.q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
         "\"x.a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
         16, WG_ERR_FORMAT, "w.q"},
        {"{\"w.q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"x.a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}",
         8, WG_ERR_FORMAT, "overlaps"},
        /* duplicates (jansson would otherwise keep the last silently) */
        {"{\"w.q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w.q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, WG_ERR_FORMAT, "w.q"},
        /* metadata */
        {"{\"__metadata__\":[\"pt\"]}", 0, WG_ERR_FORMAT, "__metadata__"},
        {"{\"__metadata__\":{\"format\":1}}", 0, WG_ERR_FORMAT, "format"},
        {"{\"__metadata__\":{\"w.q\":{\"a\":\"b\"}}}", 0, WG_ERR_FORMAT, "w.q"},
        {"{\"__metadata__\":{\"a\":\"b\",\"a\":\"c\"}}", 0, WG_ERR_FORMAT, "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_expect_mem(cases[i].json, cases[i].data, cases[i].want, cases[i].needle);
}

/* A name longer than the message buffer must not break the message. */
Test(safetensors, huge_tensor_name_is_quoted_truncated) {
    size_t n = 5000;
    char *json = malloc(n + 200);
    strcpy(json, "{\"");
    memset(json + 2, 'n', n);
    strcpy(json + 2 + n, "\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}");
    s_expect_mem(json, 1, WG_ERR_UNSUPPORTED, "nnnnnnnnnn");
    cr_expect_lt(strlen(wg_errmsg()), 1023);
    free(json);
}

Test(safetensors, truncation_at_every_byte_is_an_error) {
    size_t len;
    uint8_t *full = s_image(s_valid_json, 30, &len);
    for (size_t cut = 0; cut < len; cut++) {
        /* A fresh copy of exactly `cut` bytes, so ASan sees reads past it. */
        uint8_t *b = malloc(cut ? cut : 1);
        memcpy(b, full, cut);
        wg_st_t *st = NULL;
        wg_status s = wg_st_open_mem(b, cut, &st);
        cr_expect_neq(s, WG_OK, "cut at %zu of %zu opened", cut, len);
        cr_expect_null(st);
        cr_expect_neq(wg_errmsg()[0], '\0', "cut at %zu: no message", cut);
        wg_st_close(&st);
        free(b);
    }
    wg_st_t *st = NULL;
    cr_expect_eq(wg_st_open_mem(full, len, &st), WG_OK, "%s", wg_errmsg());
    wg_st_close(&st);
    free(full);
}

/* ------------------------------------------------------------ files */

Test(safetensors, file_and_directory_open) {
    char *d = s_tmpdir();
    s_write_image(s_join(d, "model.safetensors"), s_valid_json, 30);
    wg_st_t *st = NULL;
    cr_assert_eq(wg_st_open(s_join(d, "model.safetensors"), &st), WG_OK, "%s", wg_errmsg());
    cr_expect_eq(wg_st_n_tensors(st), 3);
    const wg_st_tensor_t *b = wg_st_find(st, "b.bias");
    cr_assert_not_null(b);
    cr_expect_eq(((const uint8_t *)b->data)[1], (uint8_t)(25 * 7 + 1));
    wg_st_close(&st);
    cr_assert_eq(wg_st_open(d, &st), WG_OK, "%s", wg_errmsg());
    cr_expect_eq(wg_st_n_tensors(st), 3);
    cr_expect_str_eq(wg_st_metadata_get(st, "note"), "hello");
    wg_st_close(&st);
    unlink(s_join(d, "model.safetensors"));

    /* Empty directory: the message names what was looked for. */
    cr_expect_eq(wg_st_open(d, &st), WG_ERR_NOTFOUND);
    cr_expect(strstr(wg_errmsg(), "model.safetensors.index.json") != NULL, "%s", wg_errmsg());
    cr_expect(strstr(wg_errmsg(), "model.safetensors") != NULL);
    cr_expect_null(st);
    cr_expect_eq(wg_st_open(s_join(d, "nope.safetensors"), &st), WG_ERR_IO);
    cr_expect(strstr(wg_errmsg(), "nope.safetensors") != NULL, "%s", wg_errmsg());

    /* A short file on disk. */
    s_write(s_join(d, "short.safetensors"), "abc", 3);
    cr_expect_eq(wg_st_open(s_join(d, "short.safetensors"), &st), WG_ERR_TRUNCATED);
    unlink(s_join(d, "short.safetensors"));
    /* A bad file's message names the path. */
    s_write_image(s_join(d, "bad.safetensors"),
                  T1("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), 4);
    cr_expect_eq(wg_st_open(s_join(d, "bad.safetensors"), &st), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "bad.safetensors") != NULL, "%s", wg_errmsg());
    cr_expect(strstr(wg_errmsg(), "w.q") != NULL, "%s", wg_errmsg());
    unlink(s_join(d, "bad.safetensors"));
    rmdir(d);
}

static const char *s_shard1 =
    "{\"__metadata__\":{\"format\":\"pt\",\"shard\":\"1\"},"
    "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[0,32]},"
    "\"model.layers.0.w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[32,40]}}";
static const char *s_shard2 =
    "{\"__metadata__\":{\"format\":\"pt\",\"shard\":\"2\"},"
    "\"model.layers.1.w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
    "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
#define S1 "model-00001-of-00002.safetensors"
#define S2 "model-00002-of-00002.safetensors"

static const char *s_make_sharded(const char *index_json) {
    char *d = s_tmpdir();
    s_write_image(s_join(d, S1), s_shard1, 40);
    s_write_image(s_join(d, S2), s_shard2, 16);
    s_write(s_join(d, "model.safetensors.index.json"), index_json, strlen(index_json));
    return d;
}

static void s_rm_sharded(const char *d) {
    unlink(s_join(d, S1));
    unlink(s_join(d, S2));
    unlink(s_join(d, "model.safetensors.index.json"));
    unlink(s_join(d, "model.safetensors"));
    rmdir(d);
}

Test(safetensors, sharded_checkpoint_opens_every_shard_once) {
    /* Map order deliberately not sorted: shard numbering follows file names. */
    const char *d = s_make_sharded(
        "{\"metadata\":{\"total_size\":56},\"weight_map\":{"
        "\"model.norm.weight\":\"" S2 "\",\"model.embed_tokens.weight\":\"" S1 "\","
        "\"model.layers.0.w\":\"" S1 "\",\"model.layers.1.w\":\"" S2 "\"}}");
    /* A stray model.safetensors must be ignored when an index exists. */
    s_write_image(s_join(d, "model.safetensors"), "{}", 0);
    wg_st_t *st = NULL;
    cr_assert_eq(wg_st_open(d, &st), WG_OK, "%s", wg_errmsg());
    cr_expect_eq(wg_st_n_tensors(st), 4);
    const wg_st_tensor_t *e = wg_st_find(st, "model.embed_tokens.weight");
    const wg_st_tensor_t *n = wg_st_find(st, "model.norm.weight");
    const wg_st_tensor_t *l1 = wg_st_find(st, "model.layers.1.w");
    cr_assert(e && n && l1);
    cr_expect_eq(e->shard, 0);
    cr_expect_eq(n->shard, 1);
    cr_expect_eq(l1->shard, 1);
    cr_expect_eq(e->shape[0], 4);
    cr_expect_eq(e->shape[1], 2);
    cr_expect_eq(n->nbytes, 8);
    cr_expect_eq(l1->dtype, WG_ST_F16);
    /* Data comes from the right file: byte i of shard 2's buffer is i*7+1. */
    cr_expect_eq(((const uint8_t *)n->data)[0], (uint8_t)(8 * 7 + 1));
    cr_expect_eq(((const uint8_t *)l1->data)[3], (uint8_t)(3 * 7 + 1));
    cr_expect_eq(((const uint8_t *)e->data)[5], (uint8_t)(5 * 7 + 1));
    /* Metadata of the first shard. */
    cr_expect_str_eq(wg_st_metadata_get(st, "shard"), "1");
    wg_st_close(&st);
    s_rm_sharded(d);
}

Test(safetensors, sharded_hostile_indexes) {
    static const struct {
        const char *index;
        wg_status want;
        const char *needle;
    } cases[] = {
        /* listed tensor missing from its shard */
        {"{\"weight_map\":{\"model.embed_tokens.weight\":\"" S1 "\",\"ghost.weight\":\"" S2 "\"}}",
         WG_ERR_NOTFOUND, "ghost.weight"},
        /* listed in the wrong shard */
        {"{\"weight_map\":{\"model.norm.weight\":\"" S1 "\",\"model.layers.0.w\":\"" S2 "\"}}",
         WG_ERR_NOTFOUND, "model.norm.weight"},
        /* escaping names */
        {"{\"weight_map\":{\"w\":\"../" S1 "\"}}", WG_ERR_FORMAT, "../"},
        {"{\"weight_map\":{\"w\":\"/etc/passwd\"}}", WG_ERR_FORMAT, "/etc/passwd"},
        {"{\"weight_map\":{\"w\":\"sub/x.safetensors\"}}", WG_ERR_FORMAT, "sub/x"},
        {"{\"weight_map\":{\"w\":\"..\"}}", WG_ERR_FORMAT, ".."},
        {"{\"weight_map\":{\"w\":\"\"}}", WG_ERR_FORMAT, "'w'"},
        /* missing shard file */
        {"{\"weight_map\":{\"w\":\"model-00003-of-00003.safetensors\"}}", WG_ERR_IO,
         "model-00003-of-00003"},
        /* malformed index */
        {"{\"weight_map\":", WG_ERR_FORMAT, "invalid JSON"},
        {"{\"weight_map\":[]}", WG_ERR_FORMAT, "weight_map"},
        {"{\"metadata\":{}}", WG_ERR_FORMAT, "weight_map"},
        {"{\"weight_map\":{}}", WG_ERR_FORMAT, "empty"},
        {"{\"weight_map\":{\"w\":3}}", WG_ERR_FORMAT, "'w'"},
        {"{\"weight_map\":{\"w\":\"" S1 "\",\"w\":\"" S2 "\"}}", WG_ERR_FORMAT, "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *d = s_make_sharded(cases[i].index);
        wg_st_t *st = (wg_st_t *)0x1;
        wg_status s = wg_st_open(d, &st);
        cr_expect_eq(s, cases[i].want, "index %s: got %s (%s)", cases[i].index, wg_status_name(s),
                     wg_errmsg());
        cr_expect_null(st);
        cr_expect(strstr(wg_errmsg(), cases[i].needle) != NULL, "index %s: message '%s' lacks '%s'",
                  cases[i].index, wg_errmsg(), cases[i].needle);
        s_rm_sharded(d);
    }
}

Test(safetensors, tensor_in_two_shards_is_an_error) {
    char *d = s_tmpdir();
    s_write_image(s_join(d, S1), s_shard1, 40);
    /* Shard 2 also holds model.layers.0.w. */
    s_write_image(s_join(d, S2),
                  "{\"model.layers.0.w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}",
                  8);
    const char *idx = "{\"weight_map\":{\"model.embed_tokens.weight\":\"" S1
                      "\",\"model.layers.0.w\":\"" S2 "\"}}";
    s_write(s_join(d, "model.safetensors.index.json"), idx, strlen(idx));
    wg_st_t *st = NULL;
    cr_expect_eq(wg_st_open(d, &st), WG_ERR_FORMAT);
    cr_expect(strstr(wg_errmsg(), "model.layers.0.w") != NULL, "%s", wg_errmsg());
    cr_expect(strstr(wg_errmsg(), "two shards") != NULL, "%s", wg_errmsg());
    cr_expect_null(st);
    s_rm_sharded(d);
}

Test(safetensors, bad_shard_message_names_the_shard) {
    char *d = s_tmpdir();
    s_write_image(s_join(d, S1), s_shard1, 40);
    s_write_image(s_join(d, S2),
                  "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  7);
    const char *idx = "{\"weight_map\":{\"model.embed_tokens.weight\":\"" S1
                      "\",\"model.norm.weight\":\"" S2 "\"}}";
    s_write(s_join(d, "model.safetensors.index.json"), idx, strlen(idx));
    wg_st_t *st = NULL;
    cr_expect_eq(wg_st_open(d, &st), WG_ERR_TRUNCATED);
    cr_expect(strstr(wg_errmsg(), "model.norm.weight") != NULL, "%s", wg_errmsg());
    cr_expect(strstr(wg_errmsg(), S2) != NULL, "%s", wg_errmsg());
    s_rm_sharded(d);
}

/* ------------------------------------------------------------ corpus */

static const struct {
    const char *dir;  /* corpus-relative HF directory */
    int64_t n;        /* tensors */
    int64_t n_f16;    /* F16 tensors (2-D) */
    int64_t n_bf16;   /* BF16 tensors (2-D) */
    int64_t vocab;    /* embed_tokens rows */
    int64_t embd;     /* embed_tokens cols */
    int tied;         /* no lm_head.weight */
} s_corpus[] = {
    {"hf/llama", 21, 0, 0, 320, 256, 0},    {"hf/llama-moe", 22, 0, 0, 320, 256, 0},
    {"hf/gemma", 20, 0, 0, 320, 64, 1},     {"hf/phi3", 15, 0, 0, 320, 64, 0},
    {"hf/phi3-f16", 15, 10, 0, 320, 64, 0}, {"hf/qwen2", 26, 0, 0, 320, 64, 1},
    {"hf/qwen2-f16", 26, 15, 0, 320, 64, 1}, {"hf/qwen2-bf16", 26, 0, 15, 320, 64, 1},
    {"hf/qwen3", 24, 0, 0, 320, 64, 1},     {"trained/stories260K-hf", 47, 0, 0, 512, 64, 1},
};

Test(safetensors, corpus_directories_open) {
    WG_REQUIRE_CORPUS();
    for (size_t c = 0; c < sizeof s_corpus / sizeof s_corpus[0]; c++) {
        wg_st_t *st = NULL;
        wg_status s = wg_st_open(wg_test_corpus(s_corpus[c].dir), &st);
        cr_assert_eq(s, WG_OK, "%s: %s", s_corpus[c].dir, wg_errmsg());
        cr_expect_eq(wg_st_n_tensors(st), s_corpus[c].n, "%s", s_corpus[c].dir);
        int64_t n16 = 0, nb16 = 0;
        for (int64_t i = 0; i < wg_st_n_tensors(st); i++) {
            const wg_st_tensor_t *t = wg_st_tensor(st, i);
            cr_assert_not_null(t);
            cr_expect_eq(wg_st_find(st, t->name), t, "%s", t->name);
            int64_t prod = 1;
            for (uint32_t k = 0; k < t->n_dims; k++) prod *= t->shape[k];
            cr_expect_eq(t->nbytes, (size_t)prod * wg_st_dtype_size(t->dtype), "%s", t->name);
            cr_expect(t->n_dims == 1 || t->n_dims == 2, "%s has %u dims", t->name, t->n_dims);
            /* 16-bit copies: 2-D tensors rounded, 1-D stay F32. */
            if (t->n_dims == 1) cr_expect_eq(t->dtype, WG_ST_F32, "%s", t->name);
            if (t->dtype == WG_ST_F16) n16++;
            if (t->dtype == WG_ST_BF16) nb16++;
        }
        cr_expect_eq(n16, s_corpus[c].n_f16, "%s", s_corpus[c].dir);
        cr_expect_eq(nb16, s_corpus[c].n_bf16, "%s", s_corpus[c].dir);
        const wg_st_tensor_t *e = wg_st_find(st, "model.embed_tokens.weight");
        cr_assert_not_null(e, "%s", s_corpus[c].dir);
        cr_expect_eq(e->n_dims, 2);
        cr_expect_eq(e->shape[0], s_corpus[c].vocab, "%s", s_corpus[c].dir);
        cr_expect_eq(e->shape[1], s_corpus[c].embd, "%s", s_corpus[c].dir);
        cr_expect_eq(wg_st_find(st, "lm_head.weight") == NULL, s_corpus[c].tied, "%s",
                     s_corpus[c].dir);
        cr_expect_not_null(wg_st_find(st, "model.norm.weight"), "%s", s_corpus[c].dir);
        cr_expect_str_eq(wg_st_metadata_get(st, "format"), "pt", "%s", s_corpus[c].dir);
        wg_st_close(&st);
    }
}

Test(safetensors, corpus_llama_names_and_shapes) {
    WG_REQUIRE_CORPUS();
    wg_st_t *st = NULL;
    cr_assert_eq(wg_st_open(wg_test_corpus("hf/llama"), &st), WG_OK, "%s", wg_errmsg());
    /* n_embd 256, n_ff 512, 4 heads x 64, 2 kv heads, vocab 320, 2 layers. */
    static const struct {
        const char *suffix;
        int64_t d0, d1; /* d1 < 0: 1-D */
    } layer[] = {
        {"input_layernorm.weight", 256, -1},     {"post_attention_layernorm.weight", 256, -1},
        {"self_attn.q_proj.weight", 256, 256},   {"self_attn.k_proj.weight", 128, 256},
        {"self_attn.v_proj.weight", 128, 256},   {"self_attn.o_proj.weight", 256, 256},
        {"mlp.gate_proj.weight", 512, 256},      {"mlp.up_proj.weight", 512, 256},
        {"mlp.down_proj.weight", 256, 512},
    };
    int found = 0;
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < sizeof layer / sizeof layer[0]; i++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, layer[i].suffix);
            const wg_st_tensor_t *t = wg_st_find(st, name);
            cr_assert_not_null(t, "%s missing", name);
            cr_expect_eq(t->dtype, WG_ST_F32, "%s", name);
            cr_expect_eq(t->n_dims, layer[i].d1 < 0 ? 1u : 2u, "%s", name);
            cr_expect_eq(t->shape[0], layer[i].d0, "%s", name);
            if (layer[i].d1 >= 0) cr_expect_eq(t->shape[1], layer[i].d1, "%s", name);
            found++;
        }
    }
    const wg_st_tensor_t *e = wg_st_find(st, "model.embed_tokens.weight");
    cr_assert_not_null(e);
    cr_expect_eq(e->dtype, WG_ST_F32);
    cr_expect_eq(e->shape[0], 320);
    cr_expect_eq(e->shape[1], 256);
    cr_expect_eq(e->nbytes, 320 * 256 * 4);
    const wg_st_tensor_t *h = wg_st_find(st, "lm_head.weight");
    cr_assert_not_null(h);
    cr_expect_eq(h->shape[0], 320);
    cr_expect_eq(found + 3, wg_st_n_tensors(st)); /* + embed, norm, lm_head = every tensor */
    wg_st_close(&st);
}

/* The 16-bit copies hold the F32 directory's numbers rounded to nearest
 * even (2-D) or unchanged (1-D): checks data pointers across two files. */
static void s_check_rounded(const char *dir32, const char *dir16, wg_st_dtype_t want) {
    wg_st_t *a = NULL, *b = NULL;
    cr_assert_eq(wg_st_open(wg_test_corpus(dir32), &a), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_st_open(wg_test_corpus(dir16), &b), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_st_n_tensors(a), wg_st_n_tensors(b));
    int64_t checked = 0;
    for (int64_t i = 0; i < wg_st_n_tensors(a); i++) {
        const wg_st_tensor_t *x = wg_st_tensor(a, i);
        const wg_st_tensor_t *y = wg_st_find(b, x->name);
        cr_assert_not_null(y, "%s missing in %s", x->name, dir16);
        cr_assert_eq(x->n_dims, y->n_dims, "%s", x->name);
        for (uint32_t k = 0; k < x->n_dims; k++) cr_assert_eq(x->shape[k], y->shape[k]);
        if (x->n_dims == 1) {
            cr_expect_eq(y->dtype, WG_ST_F32);
            cr_expect_eq(memcmp(x->data, y->data, x->nbytes), 0, "%s", x->name);
            continue;
        }
        cr_assert_eq(y->dtype, want, "%s", x->name);
        size_t n = x->nbytes / 4;
        for (size_t j = 0; j < n; j++) {
            float f;
            uint16_t h;
            memcpy(&f, (const uint8_t *)x->data + 4 * j, 4);
            memcpy(&h, (const uint8_t *)y->data + 2 * j, 2);
            uint16_t r = want == WG_ST_F16 ? wg_fp32_to_fp16(f) : wg_fp32_to_bf16(f);
            if (r != h) {
                cr_assert_fail("%s[%zu]: %g rounds to 0x%04x, file has 0x%04x", x->name, j, f, r, h);
            }
        }
        checked++;
    }
    cr_expect_gt(checked, 0);
    wg_st_close(&a);
    wg_st_close(&b);
}

Test(safetensors, corpus_f16_bf16_copies_match_f32) {
    WG_REQUIRE_CORPUS();
    s_check_rounded("hf/qwen2", "hf/qwen2-f16", WG_ST_F16);
    s_check_rounded("hf/qwen2", "hf/qwen2-bf16", WG_ST_BF16);
    s_check_rounded("hf/phi3", "hf/phi3-f16", WG_ST_F16);
}

Test(safetensors, corpus_file_path_opens_directly) {
    WG_REQUIRE_CORPUS();
    wg_st_t *st = NULL;
    cr_assert_eq(wg_st_open(wg_test_corpus("hf/qwen2-f16/model.safetensors"), &st), WG_OK, "%s",
                 wg_errmsg());
    const wg_st_tensor_t *t = wg_st_find(st, "model.layers.0.mlp.down_proj.weight");
    cr_assert_not_null(t);
    cr_expect_eq(t->dtype, WG_ST_F16);
    cr_expect_eq(t->shape[0], 64);
    cr_expect_eq(t->shape[1], 128);
    const wg_st_tensor_t *bq = wg_st_find(st, "model.layers.0.self_attn.q_proj.bias");
    cr_assert_not_null(bq);
    cr_expect_eq(bq->dtype, WG_ST_F32);
    cr_expect_eq(bq->n_dims, 1);
    wg_st_close(&st);
}

/* ------------------------------------------------------- GGUF twins */

/* HF name -> GGUF name for tensors whose layout the converter keeps as is
 * (llama-family q/k rows are permuted, gemma norms shifted: not listed). */
static const struct {
    const char *hf;   /* HF name; "%d" = layer */
    const char *gguf; /* GGUF name */
    int same_qk;      /* 1: only where q/k are not permuted (neox-rope archs) */
} s_twin_map[] = {
    {"model.embed_tokens.weight", "token_embd.weight", 0},
    {"lm_head.weight", "output.weight", 0},
    {"model.norm.weight", "output_norm.weight", 0},
    {"model.layers.%d.input_layernorm.weight", "blk.%d.attn_norm.weight", 0},
    {"model.layers.%d.post_attention_layernorm.weight", "blk.%d.ffn_norm.weight", 0},
    {"model.layers.%d.self_attn.v_proj.weight", "blk.%d.attn_v.weight", 0},
    {"model.layers.%d.self_attn.o_proj.weight", "blk.%d.attn_output.weight", 0},
    {"model.layers.%d.mlp.gate_proj.weight", "blk.%d.ffn_gate.weight", 0},
    {"model.layers.%d.mlp.up_proj.weight", "blk.%d.ffn_up.weight", 0},
    {"model.layers.%d.mlp.down_proj.weight", "blk.%d.ffn_down.weight", 0},
    {"model.layers.%d.self_attn.v_proj.bias", "blk.%d.attn_v.bias", 0},
    {"model.layers.%d.self_attn.q_proj.weight", "blk.%d.attn_q.weight", 1},
    {"model.layers.%d.self_attn.k_proj.weight", "blk.%d.attn_k.weight", 1},
    {"model.layers.%d.self_attn.q_proj.bias", "blk.%d.attn_q.bias", 1},
    {"model.layers.%d.self_attn.k_proj.bias", "blk.%d.attn_k.bias", 1},
};

/* Every mapped tensor present in the HF dir must equal its GGUF twin: same
 * dims (reversed order), same type, same bytes. Returns tensors compared. */
static int s_check_twin(const char *hf_dir, const char *gguf_path, int n_layer, int neox) {
    wg_st_t *st = NULL;
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_st_open(wg_test_corpus(hf_dir), &st), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_open(wg_test_corpus(gguf_path), &g), WG_OK, "%s", wg_errmsg());
    int compared = 0;
    for (size_t m = 0; m < sizeof s_twin_map / sizeof s_twin_map[0]; m++) {
        if (s_twin_map[m].same_qk && !neox) continue;
        int per_layer = strstr(s_twin_map[m].hf, "%d") != NULL;
        for (int l = 0; l < (per_layer ? n_layer : 1); l++) {
            char hn[128], gn[128];
            snprintf(hn, sizeof hn, s_twin_map[m].hf, l);
            snprintf(gn, sizeof gn, s_twin_map[m].gguf, l);
            const wg_st_tensor_t *h = wg_st_find(st, hn);
            const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, gn);
            if (!h) continue; /* e.g. lm_head of tied models; counts are checked by the caller */
            cr_assert_not_null(t, "%s: %s has no GGUF twin %s", hf_dir, hn, gn);
            cr_expect_eq(h->n_dims, t->n_dims, "%s", hn);
            for (uint32_t k = 0; k < h->n_dims && k < t->n_dims; k++)
                cr_expect_eq(h->shape[h->n_dims - 1 - k], t->ne[k], "%s dim %u", hn, k);
            wg_type_t want = h->dtype == WG_ST_F32   ? WG_TYPE_F32
                             : h->dtype == WG_ST_F16 ? WG_TYPE_F16
                                                     : WG_TYPE_BF16;
            cr_expect_eq(t->type, want, "%s", hn);
            cr_assert_eq(h->nbytes, t->nbytes, "%s", hn);
            cr_expect_eq(memcmp(h->data, t->data, h->nbytes), 0, "%s bytes differ from %s", hn, gn);
            compared++;
        }
    }
    wg_gguf_close(&g);
    wg_st_close(&st);
    return compared;
}

Test(safetensors, corpus_bytes_equal_gguf_twin) {
    WG_REQUIRE_CORPUS();
    /* llama: 3 global + 2 layers x 7 unpermuted = 17. */
    cr_expect_eq(s_check_twin("hf/llama", "models/llama/llama-f32.gguf", 2, 0), 17);
    /* qwen2 (neox rope, tied): embed + norm + 2 x (7 + 4 q/k + v bias) = 26, all of them. */
    cr_expect_eq(s_check_twin("hf/qwen2", "models/qwen2/qwen2-f32.gguf", 2, 1), 26);
    cr_expect_eq(s_check_twin("hf/qwen2-f16", "models/qwen2/qwen2-F16.gguf", 2, 1), 26);
    cr_expect_eq(s_check_twin("hf/qwen2-bf16", "models/qwen2/qwen2-BF16.gguf", 2, 1), 26);
    /* stories260K (llama, tied): embed + norm + 5 x 7 = 37. */
    cr_expect_eq(s_check_twin("trained/stories260K-hf", "trained/stories260K-f32.gguf", 5, 0), 37);
}
