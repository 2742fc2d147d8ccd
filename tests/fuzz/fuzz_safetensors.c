/* libFuzzer target for the safetensors reader: parse one in-memory image and
 * touch every tensor byte and metadata entry, so ASan catches any range the
 * validator let through that leaves the buffer. Seed with corpus files:
 *   fuzz_safetensors -max_total_time=60 dir/ ../shared/conformance/hf/<x>/model.safetensors */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/formats/wg_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wg_st_t *st = NULL;
    if (wg_st_open_mem(data, size, &st) != WG_OK) {
        if (st) __builtin_trap(); /* out must be NULL on error */
        return 0;
    }
    volatile uint8_t sink = 0;
    int64_t n = wg_st_n_tensors(st);
    for (int64_t i = 0; i < n; i++) {
        const wg_st_tensor_t *t = wg_st_tensor(st, i);
        if (!t || wg_st_find(st, t->name) != t) __builtin_trap();
        if ((unsigned)t->dtype >= WG_ST_DTYPE_COUNT || t->n_dims > WG_ST_MAX_DIMS) __builtin_trap();
        size_t want = wg_st_dtype_size(t->dtype);
        for (uint32_t k = 0; k < t->n_dims; k++) want *= (size_t)t->shape[k];
        if (want != t->nbytes) __builtin_trap();
        const uint8_t *p = t->data;
        if (t->nbytes && (p < data || p + t->nbytes > data + size)) __builtin_trap();
        for (size_t j = 0; j < t->nbytes; j++) sink ^= p[j];
        sink ^= (uint8_t)strlen(t->name);
    }
    int64_t m = wg_st_n_metadata(st);
    for (int64_t i = 0; i < m; i++) {
        const char *k = wg_st_metadata_key(st, i);
        const char *v = wg_st_metadata_get(st, k);
        if (!k || !v) __builtin_trap();
        sink ^= (uint8_t)(strlen(k) + strlen(v));
    }
    (void)sink;
    wg_st_close(&st);
    return 0;
}
