/* wg_test_gguf — copying a corpus GGUF with edits, for tests that need a
 * variant of a model (a key added, changed or dropped, a tensor added). */
#ifndef WG_TEST_GGUF_H
#define WG_TEST_GGUF_H

#include <string.h>

#include "engine/formats/wg_gguf.h"
#include "wg_test.h"

/* Every key of g but `drop` (NULL: none) and every tensor of g into w.
 * Keys set on w afterwards replace the copied ones. */
static inline void wg_test_gguf_copy(wg_gguf_writer_t *w, const wg_gguf_t *g, const char *drop) {
    for (int64_t i = 0; i < wg_gguf_n_kv(g); i++)
        if (!drop || strcmp(wg_gguf_kv_key(g, i), drop) != 0)
            cr_assert_eq(wg_gguf_writer_set_value(w, wg_gguf_kv_key(g, i), wg_gguf_kv_value(g, i)), WG_OK);
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        cr_assert_eq(wg_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), WG_OK);
    }
}

#endif
