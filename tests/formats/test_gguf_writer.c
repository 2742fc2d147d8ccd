/* GGUF writer: write -> read gives identical metadata (every value type,
 * nested arrays, key order) and tensor bytes; a corpus file rewritten through
 * the writer is byte-identical to the original. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "engine/formats/wg_gguf.h"
#include "wg_test.h"

static uint8_t *s_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void s_tmp(char *buf, size_t n) {
    snprintf(buf, n, "/tmp/wg_gguf_writer_%d_%ld.gguf", (int)getpid(), (long)random());
}

/* Deep equality of two values. */
static void s_value_eq(const wg_gguf_value_t *a, const wg_gguf_value_t *b, const char *key) {
    cr_assert_eq(a->type, b->type, "%s: type %d vs %d", key, a->type, b->type);
    switch (a->type) {
    case WG_GGUF_STRING:
        cr_assert_eq(a->v.str.len, b->v.str.len, "%s", key);
        cr_assert_eq(memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len), 0, "%s", key);
        cr_assert_eq(b->v.str.ptr[b->v.str.len], 0, "%s: not NUL-terminated", key);
        break;
    case WG_GGUF_ARRAY:
        cr_assert_eq(a->v.arr.type, b->v.arr.type, "%s", key);
        cr_assert_eq(a->v.arr.n, b->v.arr.n, "%s", key);
        for (uint64_t i = 0; i < a->v.arr.n; i++) s_value_eq(&a->v.arr.items[i], &b->v.arr.items[i], key);
        break;
    case WG_GGUF_FLOAT32:
    case WG_GGUF_FLOAT64:
        cr_assert(memcmp(&a->v.f64, &b->v.f64, 8) == 0 || (isnan(a->v.f64) && isnan(b->v.f64)), "%s: %g vs %g",
                  key, a->v.f64, b->v.f64);
        break;
    default:
        cr_assert_eq(a->v.u64, b->v.u64, "%s: %llu vs %llu", key, (unsigned long long)a->v.u64,
                     (unsigned long long)b->v.u64);
    }
}

Test(gguf_writer, round_trip_every_value_type_and_tensor) {
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    cr_assert_not_null(w);
    wg_gguf_writer_set_alignment(w, 64);
    cr_assert_eq(wg_gguf_writer_set_str(w, "general.architecture", "test"), WG_OK);
    /* scalars of every type through set_value */
    wg_gguf_value_t sc[] = {
        {.type = WG_GGUF_UINT8, .v.u64 = 250},
        {.type = WG_GGUF_INT8, .v.i64 = -120},
        {.type = WG_GGUF_UINT16, .v.u64 = 65000},
        {.type = WG_GGUF_INT16, .v.i64 = -32000},
        {.type = WG_GGUF_UINT32, .v.u64 = 4000000000u},
        {.type = WG_GGUF_INT32, .v.i64 = -2000000000},
        {.type = WG_GGUF_FLOAT32, .v.f64 = 0.1f},
        {.type = WG_GGUF_BOOL, .v.u64 = 1},
        {.type = WG_GGUF_STRING, .v.str = {"a\0b", 3}},
        {.type = WG_GGUF_UINT64, .v.u64 = UINT64_MAX - 5},
        {.type = WG_GGUF_INT64, .v.i64 = INT64_MIN + 7},
        {.type = WG_GGUF_FLOAT64, .v.f64 = 1e300},
    };
    char key[64];
    for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
        snprintf(key, sizeof key, "scalar.%s", wg_gguf_vtype_name(sc[i].type));
        cr_assert_eq(wg_gguf_writer_set_value(w, key, &sc[i]), WG_OK, "%s: %s", key, wg_errmsg());
    }
    /* plain arrays of every element type */
    const uint8_t u8s[] = {0, 1, 255};
    const int16_t i16s[] = {-1, 2, -32768};
    const uint32_t u32s[] = {7, 8, 0xffffffffu};
    const int32_t i32s[] = {-5, 0, 5};
    const float f32s[] = {1.5f, -0.0f, 3.25e-7f};
    const double f64s[] = {2.5, -1e-300, 42};
    const int64_t i64s[] = {INT64_MIN, -1, INT64_MAX};
    const uint64_t u64s[] = {0, 1, UINT64_MAX};
    const bool bools[] = {true, false, true};
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.u8", WG_GGUF_UINT8, u8s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.i8", WG_GGUF_INT8, u8s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.i16", WG_GGUF_INT16, i16s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.u16", WG_GGUF_UINT16, i16s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.u32", WG_GGUF_UINT32, u32s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.i32", WG_GGUF_INT32, i32s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.f32", WG_GGUF_FLOAT32, f32s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.f64", WG_GGUF_FLOAT64, f64s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.i64", WG_GGUF_INT64, i64s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.u64", WG_GGUF_UINT64, u64s, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.bool", WG_GGUF_BOOL, bools, 3), WG_OK);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "arr.empty", WG_GGUF_INT32, NULL, 0), WG_OK);
    const char *strs[] = {"hello", "", "w\xc3\xb6rld"};
    cr_assert_eq(wg_gguf_writer_set_arr_str(w, "arr.str", strs, 3), WG_OK);
    /* nested: [[ "x", "yz" ], [], [ "q" ]] and [[[1,2]],[[3]]] */
    wg_gguf_value_t s1[] = {{.type = WG_GGUF_STRING, .v.str = {"x", 1}},
                            {.type = WG_GGUF_STRING, .v.str = {"yz", 2}}};
    wg_gguf_value_t s2[] = {{.type = WG_GGUF_STRING, .v.str = {"q", 1}}};
    wg_gguf_value_t outer[] = {{.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_STRING, 2, s1}},
                               {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_STRING, 0, NULL}},
                               {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_STRING, 1, s2}}};
    wg_gguf_value_t nested = {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_ARRAY, 3, outer}};
    cr_assert_eq(wg_gguf_writer_set_value(w, "arr.nested_str", &nested), WG_OK, "%s", wg_errmsg());
    wg_gguf_value_t i3a[] = {{.type = WG_GGUF_INT32, .v.i64 = 1}, {.type = WG_GGUF_INT32, .v.i64 = 2}};
    wg_gguf_value_t i3b[] = {{.type = WG_GGUF_INT32, .v.i64 = 3}};
    wg_gguf_value_t l2a[] = {{.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_INT32, 2, i3a}}};
    wg_gguf_value_t l2b[] = {{.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_INT32, 1, i3b}}};
    wg_gguf_value_t l1[] = {{.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_ARRAY, 1, l2a}},
                            {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_ARRAY, 1, l2b}}};
    wg_gguf_value_t deep = {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_ARRAY, 2, l1}};
    cr_assert_eq(wg_gguf_writer_set_value(w, "arr.nested3", &deep), WG_OK, "%s", wg_errmsg());
    /* replacing a key keeps its place */
    cr_assert_eq(wg_gguf_writer_set_str(w, "general.architecture", "test2"), WG_OK);

    /* tensors: odd sizes so padding matters, several types and ranks */
    float a[3 * 5];
    for (int i = 0; i < 15; i++) a[i] = (float)i * 0.5f - 3;
    uint8_t q40[2 * 18 * 3];
    for (size_t i = 0; i < sizeof q40; i++) q40[i] = (uint8_t)(i * 7 + 1);
    uint8_t q4k[144];
    for (size_t i = 0; i < sizeof q4k; i++) q4k[i] = (uint8_t)(255 - i);
    int8_t i8[2 * 3 * 1 * 2];
    for (size_t i = 0; i < sizeof i8; i++) i8[i] = (int8_t)(i - 6);
    uint16_t f16[7];
    for (int i = 0; i < 7; i++) f16[i] = (uint16_t)(0x3c00 + i);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "a", WG_TYPE_F32, 2, (int64_t[]){5, 3}, a), WG_OK);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "b.q4_0", WG_TYPE_Q4_0, 3, (int64_t[]){64, 3, 1}, q40), WG_OK,
                 "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "c.q4_k", WG_TYPE_Q4_K, 1, (int64_t[]){256}, q4k), WG_OK);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "d.i8", WG_TYPE_I8, 4, (int64_t[]){2, 3, 1, 2}, i8), WG_OK);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "e.f16", WG_TYPE_F16, 1, (int64_t[]){7}, f16), WG_OK);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "f.empty", WG_TYPE_F32, 2, (int64_t[]){0, 4}, NULL), WG_OK);

    char path[256];
    s_tmp(path, sizeof path);
    cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK, "%s", wg_errmsg());

    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(path, &g), WG_OK, "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_version(g), 3);
    cr_assert_eq(wg_gguf_alignment(g), 64);
    cr_assert_eq(wg_gguf_data_offset(g) % 64, 0);
    /* key order: alignment first (set first), then architecture (replaced in place) */
    cr_assert_str_eq(wg_gguf_kv_key(g, 0), "general.alignment");
    cr_assert_str_eq(wg_gguf_kv_key(g, 1), "general.architecture");
    cr_assert_str_eq(wg_gguf_kv_value(g, 1)->v.str.ptr, "test2");
    size_t n_sc = sizeof sc / sizeof sc[0];
    for (size_t i = 0; i < n_sc; i++) {
        snprintf(key, sizeof key, "scalar.%s", wg_gguf_vtype_name(sc[i].type));
        cr_assert_str_eq(wg_gguf_kv_key(g, 2 + (int64_t)i), key);
        s_value_eq(&sc[i], wg_gguf_kv_value(g, 2 + (int64_t)i), key);
    }
    cr_assert_eq(wg_gguf_n_kv(g), 2 + (int64_t)n_sc + 13 + 2);
    const wg_gguf_value_t *v = wg_gguf_get(g, "arr.i8");
    cr_assert_eq(v->v.arr.items[2].v.i64, -1);
    v = wg_gguf_get(g, "arr.u16");
    cr_assert_eq(v->v.arr.items[2].v.u64, 32768);
    v = wg_gguf_get(g, "arr.f32");
    cr_assert_eq(v->v.arr.items[2].v.f64, (double)3.25e-7f);
    cr_assert(signbit(v->v.arr.items[1].v.f64));
    v = wg_gguf_get(g, "arr.f64");
    cr_assert_eq(v->v.arr.items[1].v.f64, -1e-300);
    v = wg_gguf_get(g, "arr.i64");
    cr_assert_eq(v->v.arr.items[0].v.i64, INT64_MIN);
    v = wg_gguf_get(g, "arr.u64");
    cr_assert_eq(v->v.arr.items[2].v.u64, UINT64_MAX);
    v = wg_gguf_get(g, "arr.bool");
    cr_assert_eq(v->v.arr.type, WG_GGUF_BOOL);
    cr_assert_eq(v->v.arr.items[1].v.u64, 0);
    cr_assert_eq(v->v.arr.items[2].v.u64, 1);
    cr_assert_eq(wg_gguf_get(g, "arr.empty")->v.arr.n, 0);
    v = wg_gguf_get(g, "arr.str");
    cr_assert_str_eq(v->v.arr.items[2].v.str.ptr, "w\xc3\xb6rld");
    cr_assert_eq(v->v.arr.items[1].v.str.len, 0);
    s_value_eq(&nested, wg_gguf_get(g, "arr.nested_str"), "arr.nested_str");
    s_value_eq(&deep, wg_gguf_get(g, "arr.nested3"), "arr.nested3");

    /* tensors */
    cr_assert_eq(wg_gguf_n_tensors(g), 6);
    static const char *const names[] = {"a", "b.q4_0", "c.q4_k", "d.i8", "e.f16", "f.empty"};
    const void *datas[] = {a, q40, q4k, i8, f16, NULL};
    const size_t sizes[] = {sizeof a, sizeof q40, sizeof q4k, sizeof i8, sizeof f16, 0};
    for (int i = 0; i < 6; i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        cr_assert_str_eq(t->name, names[i]);
        cr_assert_eq(t->nbytes, sizes[i], "%s: %zu", names[i], t->nbytes);
        cr_assert_eq(t->offset % 64, 0);
        cr_assert_eq(((uintptr_t)t->data) % 64, 0);
        if (sizes[i]) cr_assert_eq(memcmp(t->data, datas[i], sizes[i]), 0, "%s", names[i]);
    }
    const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, "d.i8");
    cr_assert_eq(t->n_dims, 4);
    cr_assert_eq(t->ne[0], 2);
    cr_assert_eq(t->ne[1], 3);
    cr_assert_eq(t->ne[2], 1);
    cr_assert_eq(t->ne[3], 2);
    cr_assert_eq(wg_gguf_find_tensor(g, "b.q4_0")->ne[3], 1);
    /* the file ends at the padded end of the last tensor */
    const wg_gguf_tensor_t *last = wg_gguf_tensor(g, 5);
    cr_assert_eq(wg_gguf_file_size(g), wg_gguf_data_offset(g) + last->offset);
    wg_gguf_close(&g);
    wg_gguf_writer_destroy(&w);
    cr_assert_null(w);
    wg_gguf_writer_destroy(&w);
    unlink(path);
}

/* A file written by gguf-py, re-written through our reader + writer, must be
 * the same bytes: same header, value encodings, tensor layout and padding. */
static void s_rewrite_identical(const char *rel) {
    const char *src = wg_test_corpus(rel);
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(src, &g), WG_OK, "%s", wg_errmsg());
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    for (int64_t i = 0; i < wg_gguf_n_kv(g); i++)
        cr_assert_eq(wg_gguf_writer_set_value(w, wg_gguf_kv_key(g, i), wg_gguf_kv_value(g, i)), WG_OK);
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        cr_assert_eq(wg_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), WG_OK, "%s",
                     wg_errmsg());
    }
    char path[256];
    s_tmp(path, sizeof path);
    cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK, "%s", wg_errmsg());
    size_t la, lb;
    uint8_t *a = s_slurp(src, &la);
    uint8_t *b = s_slurp(path, &lb);
    cr_assert_eq(la, lb, "%s: %zu vs %zu bytes", rel, la, lb);
    size_t diff = 0;
    while (diff < la && a[diff] == b[diff]) diff++;
    cr_assert_eq(diff, la, "%s: first difference at byte %zu", rel, diff);
    free(a);
    free(b);
    unlink(path);
    wg_gguf_writer_destroy(&w);
    wg_gguf_close(&g);
}

Test(gguf_writer, rewrite_of_corpus_files_is_byte_identical) {
    WG_REQUIRE_CORPUS();
    s_rewrite_identical("models/llama/llama-Q4_K_M.gguf");
    s_rewrite_identical("refs/llama-f32.ref.gguf");
    s_rewrite_identical("quants/quant-vectors.gguf");
    s_rewrite_identical("models/llama-moe/llama-moe-IQ4_XS.gguf");
}

Test(gguf_writer, rejects_bad_input) {
    wg_gguf_writer_t *w = wg_gguf_writer_new();
    float x[64] = {0};
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "t", WG_TYPE_F32, 1, (int64_t[]){64}, x), WG_OK);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "t", WG_TYPE_F32, 1, (int64_t[]){64}, x), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "'t'"), "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "q", WG_TYPE_Q4_0, 1, (int64_t[]){48}, x), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "ne[0]=48"), "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "r", (wg_type_t)4, 1, (int64_t[]){32}, x), WG_ERR_INVAL);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "s", WG_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, x), WG_ERR_INVAL);
    cr_assert_eq(wg_gguf_writer_add_tensor(w, "u", WG_TYPE_F32, 1, (int64_t[]){-1}, x), WG_ERR_INVAL);
    cr_assert_eq(wg_gguf_writer_set_arr(w, "k", WG_GGUF_STRING, x, 1), WG_ERR_INVAL);
    wg_gguf_value_t mixed_items[] = {{.type = WG_GGUF_INT32, .v.i64 = 1}, {.type = WG_GGUF_UINT8, .v.u64 = 1}};
    wg_gguf_value_t mixed = {.type = WG_GGUF_ARRAY, .v.arr = {WG_GGUF_INT32, 2, mixed_items}};
    cr_assert_eq(wg_gguf_writer_set_value(w, "k", &mixed), WG_ERR_INVAL);
    cr_assert(strstr(wg_errmsg(), "item 1"), "%s", wg_errmsg());
    cr_assert_eq(wg_gguf_writer_set_u32(w, "general.alignment", 48), WG_ERR_INVAL);
    cr_assert_eq(wg_gguf_writer_write(w, "/nonexistent-dir/x.gguf"), WG_ERR_IO);
    cr_assert(strstr(wg_errmsg(), "/nonexistent-dir/x.gguf"), "%s", wg_errmsg());
    wg_gguf_writer_destroy(&w);
}

/* The reader/writer's private block-size table must agree with the kernels'
 * type traits: every known type is accepted with the same byte size, every
 * retired id is refused. */
#include "kernels/ref/wg_ref.h"

Test(gguf_writer, type_sizes_agree_with_type_traits) {
    char path[256];
    s_tmp(path, sizeof path);
    static uint8_t data[4 * 256 * 8];
    int n_known = 0;
    for (int t = 0; t < WG_TYPE_COUNT; t++) {
        const wg_type_traits_t *tr = wg_type_traits((wg_type_t)t);
        wg_gguf_writer_t *w = wg_gguf_writer_new();
        int64_t ne[2] = {256, 2};
        wg_status st = wg_gguf_writer_add_tensor(w, "x", (wg_type_t)t, 2, ne, data);
        if (!tr) {
            cr_assert_eq(st, WG_ERR_INVAL, "type %d has no traits but the writer took it", t);
            wg_gguf_writer_destroy(&w);
            continue;
        }
        n_known++;
        cr_assert_eq(st, WG_OK, "type %s: %s", tr->name, wg_errmsg());
        cr_assert_eq(wg_gguf_writer_write(w, path), WG_OK);
        wg_gguf_t *g = NULL;
        cr_assert_eq(wg_gguf_open(path, &g), WG_OK, "type %s: %s", tr->name, wg_errmsg());
        cr_assert_eq(wg_gguf_tensor(g, 0)->nbytes, 2 * wg_row_size((wg_type_t)t, 256), "type %s", tr->name);
        wg_gguf_close(&g);
        wg_gguf_writer_destroy(&w);
    }
    cr_assert_geq(n_known, 30);
    unlink(path);
}
