/* libFuzzer target for the GGUF reader: parse one in-memory image, walk every
 * key/value (nested arrays included, every string byte) and every tensor
 * info (every data byte), and check the invariants the reader promises, so
 * ASan/UBSan catch any count, length or offset the validator let through.
 * Run it with ops/fuzz.sh fuzz_gguf SECONDS (seeds from the conformance corpus). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/formats/wg_gguf.h"
#include "kernels/ref/wg_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t s_sink;

static void s_walk(const wg_gguf_value_t *v, int depth) {
    if (depth > 16 || (unsigned)v->type >= WG_GGUF_VTYPE_COUNT) __builtin_trap();
    switch (v->type) {
    case WG_GGUF_STRING: {
        uint8_t x = 0;
        for (uint64_t i = 0; i < v->v.str.len; i++) x ^= (uint8_t)v->v.str.ptr[i];
        if (v->v.str.ptr[v->v.str.len] != 0) __builtin_trap(); /* NUL-terminated copy */
        s_sink ^= x;
        break;
    }
    case WG_GGUF_ARRAY:
        if ((unsigned)v->v.arr.type >= WG_GGUF_VTYPE_COUNT) __builtin_trap();
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            if (v->v.arr.items[i].type != v->v.arr.type) __builtin_trap();
            s_walk(&v->v.arr.items[i], depth + 1);
        }
        break;
    case WG_GGUF_BOOL:
        if (v->v.u64 > 1) __builtin_trap();
        break;
    default:
        s_sink ^= (uint8_t)v->v.u64;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wg_gguf_t *g = NULL;
    if (wg_gguf_open_mem(data, size, &g) != WG_OK) {
        if (g) __builtin_trap(); /* out must be NULL on error */
        return 0;
    }
    size_t al = wg_gguf_alignment(g);
    if (al == 0 || (al & (al - 1)) != 0) __builtin_trap();
    if (wg_gguf_version(g) != 2 && wg_gguf_version(g) != 3) __builtin_trap();
    for (int64_t i = 0; i < wg_gguf_n_kv(g); i++) {
        const char *key = wg_gguf_kv_key(g, i);
        const wg_gguf_value_t *v = wg_gguf_kv_value(g, i);
        if (wg_gguf_get(g, key) != v) __builtin_trap(); /* keys are unique and indexed */
        s_walk(v, 0);
        /* the typed getters never crash whatever the type */
        int64_t i64;
        uint32_t u32;
        float f;
        bool b;
        const char *s;
        uint64_t n;
        (void)wg_gguf_get_i64(g, key, &i64);
        (void)wg_gguf_get_u32(g, key, &u32);
        (void)wg_gguf_get_f32(g, key, &f);
        (void)wg_gguf_get_bool(g, key, &b);
        (void)wg_gguf_get_str(g, key, &s);
        (void)wg_gguf_get_arr(g, key, NULL, &n, NULL);
    }
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        if (wg_gguf_find_tensor(g, t->name) != t) __builtin_trap();
        if (t->n_dims < 1 || t->n_dims > WG_GGUF_MAX_DIMS) __builtin_trap();
        const wg_type_traits_t *tr = wg_type_traits(t->type);
        if (!tr) __builtin_trap(); /* reader accepted a type the kernels do not know */
        size_t want = wg_row_size(t->type, t->ne[0]);
        for (int d = 1; d < WG_GGUF_MAX_DIMS; d++) want *= (size_t)t->ne[d];
        if (want != t->nbytes) __builtin_trap();
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) __builtin_trap();
        if ((size_t)(p - data) % al != 0) __builtin_trap();
        uint8_t x = 0;
        for (size_t j = 0; j < t->nbytes; j++) x ^= p[j];
        s_sink ^= x;
    }
    wg_gguf_close(&g);
    if (g) __builtin_trap();
    return 0;
}
