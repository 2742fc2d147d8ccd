/* GGUF reader on hostile input: a small valid file (built with the writer) is
 * truncated at every byte and corrupted field by field; each case must give
 * the expected status and a message naming the field, never a crash (run
 * these under WAGGLE_SANITIZE=ON to catch over-reads). */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "wg_test.h"

typedef struct {
    uint8_t *p;  /* file image */
    size_t len;  /* bytes */
} s_img_t;

/* The valid file: 5 kvs (alignment 64, a string, a nested array, two
 * same-length keys), two tensors with same-length names. */
static s_img_t s_make(void) {
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    wg_gguf_writer_set_alignment(w, 64);
    cr_assert_eq(wg_gguf_writer_set_str(w, "general.architecture", "llama"), WG_OK);
    wg_gguf_value_t in[] = {{.type = WG_GGUF_STRING, .v.str = {"ab", 2}}};
    wg_gguf_value_t outer[] = {{.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_STRING, 1, in}}};
    wg_gguf_value_t nested = {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_ARRAY, 1, outer}};
    cr_assert_eq(wg_gguf_writer_set_value(w, "x.nested", &nested), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_bool(w, "k.a", true), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_u32(w, "k.b", 7), WG_OK);
    float a[32 * 2];
    for (int i = 0; i < 64; i++) a[i] = (float)i;
    uint8_t q[18 * 2];
    memset(q, 0x11, sizeof q);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "ta", WG_TYPE_F32, 2, (int64_t[]){32, 2}, a), WG_OK);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "tb", WG_TYPE_Q4_0, 1, (int64_t[]){64}, q), WG_OK);
    char path[256];
    snprintf(path, sizeof path, "/tmp/wg_gguf_hostile_%d.gguf", (int)getpid());
    cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    s_img_t img = {.len = (size_t)ftell(f)};
    fseek(f, 0, SEEK_SET);
    img.p = malloc(img.len);
    cr_assert_eq(fread(img.p, 1, img.len, f), img.len);
    fclose(f);
    unlink(path);
    return img;
}

/* Offset of the first occurrence of `s` (as bytes, no NUL) in the image. */
static size_t s_find(const s_img_t *img, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= img->len; i++)
        if (memcmp(img->p + i, s, n) == 0) return i;
    cr_assert_fail("'%s' not in the image", s);
    return 0;
}

static void s_put(s_img_t *img, size_t off, uint64_t v, int n) {
    for (int i = 0; i < n; i++) img->p[off + (size_t)i] = (uint8_t)(v >> (8 * i));
}

/* Open a copy of exactly `len` bytes (so ASan sees any over-read). */
static wg_status s_open_copy(const uint8_t *p, size_t len, wg_gguf_t **g) {
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, p, len);
    wg_status st = wg_gguf_open_mem(copy, len, g);
    if (st == WG_OK) wg_gguf_close(g); /* the caller only wants the status */
    free(copy);
    return st;
}

/* Expect status `want` and every needle in the message. */
static void s_expect(const s_img_t *img, wg_status want, const char *n1, const char *n2) {
    wg_gguf_t *g = NULL;
    wg_error_clear();
    wg_status st = s_open_copy(img->p, img->len, &g);
    cr_assert_eq(st, want, "status %s (want %s): %s", wg_status_name(st), wg_status_name(want), wg_errmsg());
    cr_assert_null(g);
    cr_assert(strstr(wg_errmsg(), n1), "message '%s' lacks '%s'", wg_errmsg(), n1);
    if (n2) cr_assert(strstr(wg_errmsg(), n2), "message '%s' lacks '%s'", wg_errmsg(), n2);
}

Test(gguf_hostile, valid_base_file_opens) {
    s_img_t img = s_make();
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open_mem(img.p, img.len, &g), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_n_kv(g), 5);
    cr_assert_eq(wg_gguf_n_tensors(g), 2);
    wg_gguf_close(&g);
    free(img.p);
}

Test(gguf_hostile, truncation_at_every_byte) {
    s_img_t img = s_make();
    /* every cut before the end of the last tensor's data is an error; the
     * padding after it is optional */
    wg_gguf_t *full = NULL;
    cr_assert_eq(wg_gguf_open_mem(img.p, img.len, &full), WG_OK);
    const wg_gguf_tensor_t *last = wg_gguf_tensor(full, 1);
    size_t end = (size_t)(wg_gguf_data_offset(full) + last->offset) + last->nbytes;
    wg_gguf_close(&full);
    cr_assert_lt(end, img.len);
    for (size_t cut = 0; cut <= img.len; cut++) {
        wg_gguf_t *g = NULL;
        wg_error_clear();
        wg_status st = s_open_copy(img.p, cut, &g);
        if (cut >= end) {
            cr_assert_eq(st, WG_OK, "cut at %zu (data ends at %zu): %s", cut, end, wg_errmsg());
            continue;
        }
        cr_assert(st == WG_ERR_TRUNCATED, "cut at %zu of %zu: %s: %s", cut, img.len, wg_status_name(st),
                  wg_errmsg());
        cr_assert_str_not_empty(wg_errmsg(), "cut at %zu: no message", cut);
        cr_assert_null(g);
    }
    free(img.p);
}

Test(gguf_hostile, magic_and_version) {
    s_img_t img = s_make();
    img.p[0] = 'X';
    s_expect(&img, WG_ERR_FORMAT, "magic", NULL);
    img.p[0] = 'G';
    s_put(&img, 4, 1, 4);
    s_expect(&img, WG_ERR_VERSION, "version 1", NULL);
    s_put(&img, 4, 4, 4);
    s_expect(&img, WG_ERR_VERSION, "version 4", NULL);
    s_put(&img, 4, 0x03000000u, 4);
    s_expect(&img, WG_ERR_VERSION, "big-endian", NULL);
    s_put(&img, 4, 2, 4); /* v2 has the same layout: accepted */
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open_mem(img.p, img.len, &g), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_version(g), 2);
    wg_gguf_close(&g);
    free(img.p);
}

Test(gguf_hostile, huge_counts) {
    s_img_t img = s_make();
    s_put(&img, 16, UINT64_MAX, 8);
    s_expect(&img, WG_ERR_TRUNCATED, "n_kv=18446744073709551615", NULL);
    s_put(&img, 16, 5, 8);
    s_put(&img, 8, (uint64_t)1 << 40, 8);
    s_expect(&img, WG_ERR_TRUNCATED, "n_tensors=1099511627776", NULL);
    s_put(&img, 8, 2, 8);
    /* one more tensor than the table holds: its name reads garbage/padding */
    s_put(&img, 8, 3, 8);
    wg_gguf_t *g = NULL;
    cr_assert_neq(s_open_copy(img.p, img.len, &g), WG_OK);
    s_put(&img, 8, 2, 8);
    /* the key string of kv[1]: length 2^62 */
    size_t k = s_find(&img, "x.nested") - 8;
    s_put(&img, k, (uint64_t)1 << 62, 8);
    s_expect(&img, WG_ERR_FORMAT, "kv[2].key", "4611686018427387904");
    s_put(&img, k, 8, 8);
    /* the nested array's length */
    size_t arr = s_find(&img, "x.nested") + 8 + 4 + 4; /* key, value type, element type */
    s_put(&img, arr, UINT64_MAX / 2, 8);
    s_expect(&img, WG_ERR_TRUNCATED, "'x.nested'", "array of 9223372036854775807");
    free(img.p);
}

Test(gguf_hostile, bad_value_types) {
    s_img_t img = s_make();
    size_t t = s_find(&img, "k.a") + 3; /* value type of k.a */
    s_put(&img, t, 13, 4);
    s_expect(&img, WG_ERR_FORMAT, "'k.a'", "unknown value type 13");
    s_put(&img, t, WG_GGUF_BOOL, 4);
    img.p[t + 4] = 2;
    s_expect(&img, WG_ERR_FORMAT, "'k.a'", "bool value 2");
    img.p[t + 4] = 1;
    size_t et = s_find(&img, "x.nested") + 8 + 4; /* element type of the outer array */
    s_put(&img, et, 99, 4);
    s_expect(&img, WG_ERR_FORMAT, "'x.nested'", "element type 99");
    free(img.p);
}

Test(gguf_hostile, duplicates) {
    s_img_t img = s_make();
    size_t kb = s_find(&img, "k.b");
    img.p[kb + 2] = 'a';
    s_expect(&img, WG_ERR_FORMAT, "'k.a'", "duplicate key");
    img.p[kb + 2] = 'b';
    size_t tb = s_find(&img, "tb");
    img.p[tb + 1] = 'a';
    s_expect(&img, WG_ERR_FORMAT, "'ta'", "duplicate tensor name");
    free(img.p);
}

Test(gguf_hostile, alignment) {
    s_img_t img = s_make();
    size_t v = s_find(&img, "general.alignment") + 17 + 4; /* key, u32 type, value */
    cr_assert_eq(img.p[v - 4], WG_GGUF_UINT32);
    s_put(&img, v, 48, 4);
    s_expect(&img, WG_ERR_FORMAT, "kv[0] 'general.alignment'", "alignment 48 is not a power of two");
    s_put(&img, v, 0, 4);
    s_expect(&img, WG_ERR_FORMAT, "'general.alignment'", "alignment 0 is not a power of two");
    s_put(&img, v, 64, 4);
    s_put(&img, v - 4, WG_GGUF_INT32, 4);
    s_expect(&img, WG_ERR_FORMAT, "'general.alignment'", "must be u32");
    free(img.p);
}

/* Offsets of tensor tb's fields: name, n_dims, ne[0], type, offset. */
typedef struct {
    size_t n_dims, ne0, type, offset;
} s_tb_t;

static s_tb_t s_tb(const s_img_t *img) {
    size_t name = s_find(img, "tb");
    s_tb_t f = {.n_dims = name + 2};
    f.ne0 = f.n_dims + 4;
    f.type = f.ne0 + 8; /* tb has one dim */
    f.offset = f.type + 4;
    return f;
}

Test(gguf_hostile, tensor_dims_and_type) {
    s_img_t img = s_make();
    s_tb_t f = s_tb(&img);
    s_put(&img, f.n_dims, 7, 4);
    s_expect(&img, WG_ERR_FORMAT, "tensor 'tb': n_dims=7", NULL);
    s_put(&img, f.n_dims, 0, 4);
    s_expect(&img, WG_ERR_FORMAT, "tensor 'tb': n_dims=0", NULL);
    s_put(&img, f.n_dims, 1, 4);
    s_put(&img, f.ne0, (uint64_t)1 << 63, 8);
    s_expect(&img, WG_ERR_FORMAT, "tensor 'tb'", "ne[0]=9223372036854775808");
    s_put(&img, f.ne0, 48, 8);
    s_expect(&img, WG_ERR_FORMAT, "tensor 'tb'", "ne[0]=48 is not a multiple of the block size 32");
    s_put(&img, f.ne0, 64, 8);
    s_put(&img, f.type, 4, 4); /* a retired ggml id */
    s_expect(&img, WG_ERR_FORMAT, "tensor 'tb'", "unknown type id 4");
    s_put(&img, f.type, 1000, 4);
    s_expect(&img, WG_ERR_FORMAT, "tensor 'tb'", "unknown type id 1000");
    s_put(&img, f.type, WG_TYPE_Q4_0, 4);
    /* ta is [32, 2]: make ne[1] so large the element count overflows */
    size_t ta_ne1 = s_find(&img, "ta") + 2 + 4 + 8;
    s_put(&img, ta_ne1, (uint64_t)1 << 62, 8);
    s_expect(&img, WG_ERR_FORMAT, "tensor 'ta'", "overflows");
    /* large but not overflowing: the data cannot be in the file */
    s_put(&img, ta_ne1, (uint64_t)1 << 40, 8);
    s_expect(&img, WG_ERR_TRUNCATED, "tensor 'ta'", "outside");
    free(img.p);
}

Test(gguf_hostile, tensor_offsets) {
    s_img_t img = s_make();
    s_tb_t f = s_tb(&img);
    uint64_t off = 0;
    for (int i = 0; i < 8; i++) off |= (uint64_t)img.p[f.offset + (size_t)i] << (8 * i);
    cr_assert_eq(off, 256); /* ta is 256 bytes, padded to 64 */
    s_put(&img, f.offset, off + 1, 8);
    s_expect(&img, WG_ERR_FORMAT, "tensor 'tb'", "offset 257 is not a multiple of the alignment 64");
    s_put(&img, f.offset, off + 64, 8);
    s_expect(&img, WG_ERR_TRUNCATED, "tensor 'tb'", "outside");
    s_put(&img, f.offset, UINT64_MAX - 63, 8);
    s_expect(&img, WG_ERR_TRUNCATED, "tensor 'tb'", "outside");
    free(img.p);
}

Test(gguf_hostile, nesting_depth_limit) {
    /* hand-built: one kv whose value is 9 arrays nested inside each other */
    uint8_t buf[512];
    size_t n = 0;
    memcpy(buf, "GGUF", 4);
    n = 4;
#define PUT(v, w)                                                  \
    do {                                                           \
        for (int i_ = 0; i_ < (w); i_++) buf[n++] = (uint8_t)((uint64_t)(v) >> (8 * i_)); \
    } while (0)
    PUT(3, 4);
    PUT(0, 8);
    PUT(1, 8);
    PUT(1, 8);
    buf[n++] = 'd';
    PUT(WG_GGUF_ARRAY, 4);
    for (int level = 0; level < 9; level++) {
        PUT(level < 8 ? WG_GGUF_ARRAY : WG_GGUF_INT32, 4);
        PUT(level < 8 ? 1 : 0, 8);
    }
    size_t depth9 = n;
    s_img_t img = {buf, n};
    s_expect(&img, WG_ERR_FORMAT, "'d'", "nested deeper than 8");
    /* 8 levels are fine */
    n = 4 + 4 + 8 + 8 + 8 + 1 + 4;
    for (int level = 0; level < 8; level++) {
        PUT(level < 7 ? WG_GGUF_ARRAY : WG_GGUF_INT32, 4);
        PUT(level < 7 ? 1 : 0, 8);
    }
#undef PUT
    cr_assert_lt(n, depth9);
    wg_gguf_t *g = NULL;
    cr_assert_eq(s_open_copy(buf, n, &g), WG_OK, "%s", wg_errmsg());
}

Test(gguf_hostile, empty_and_tiny_inputs) {
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open_mem(NULL, 0, &g), WG_ERR_TRUNCATED);
    cr_assert(strstr(wg_errmsg(), "magic"), "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_open_mem("GGUF\3\0\0\0", 8, &g), WG_ERR_TRUNCATED);
    cr_assert(strstr(wg_errmsg(), "n_tensors"), "%s", wg_errmsg());
    /* a header with no kvs and no tensors is a valid (empty) file */
    static const uint8_t empty[24] = {'G', 'G', 'U', 'F', 3};
    cr_assert_eq(wg_gguf_open_mem(empty, sizeof empty, &g), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_n_kv(g), 0);
    cr_assert_eq(wg_gguf_n_tensors(g), 0);
    cr_assert_null(wg_gguf_find_tensor(g, "x"));
    cr_assert_null(wg_gguf_get(g, "x"));
    wg_gguf_close(&g);
}
