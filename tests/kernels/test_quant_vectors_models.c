/* The reference quantizers against llama-quantize itself: every quantized
 * model of the conformance corpus (models/<arch>/<arch>-<TYPE>.gguf) was made
 * from its F32 parent (<arch>-f32.gguf) without an importance matrix, so
 * quantizing each parent tensor with wg_type_traits(type)->from_float must
 * reproduce the stored bytes exactly — on real tensor shapes, including 3-D
 * expert tensors and the F16/BF16 conversions. */
#include <glob.h>
#include <string.h>

#include "engine/formats/wg_gguf.h"
#include "kernels/ref/wg_ref.h"
#include "wg_test.h"

Test(quant_vectors_models, llama_quantize_output_is_reproduced_byte_for_byte) {
    WG_REQUIRE_CORPUS();
    char pat[4096];
    snprintf(pat, sizeof pat, "%s/models/*/*.gguf", wg_test_conformance_dir());
    glob_t gl;
    cr_assert_eq(glob(pat, 0, NULL, &gl), 0, "no models under %s", pat);

    int per_type[WG_TYPE_COUNT] = {0};
    int n_files = 0, n_tensors = 0, n_bad = 0;
    for (size_t f = 0; f < gl.gl_pathc; f++) {
        const char *path = gl.gl_pathv[f];
        const size_t len = strlen(path);
        if (len > 9 && strcmp(path + len - 9, "-f32.gguf") == 0) continue;
        /* parent: same directory, "<dirname>-f32.gguf" */
        char parent[4096];
        const char *slash = strrchr(path, '/');
        cr_assert_not_null(slash);
        const char *dslash = slash - 1;
        while (dslash > path && *dslash != '/') dslash--;
        snprintf(parent, sizeof parent, "%.*s/%.*s-f32.gguf", (int)(slash - path), path, (int)(slash - dslash - 1),
                 dslash + 1);
        wg_gguf_t *gq = NULL, *gp = NULL;
        cr_assert_eq(wg_gguf_open(path, &gq), WG_OK, "%s: %s", path, wg_errmsg());
        cr_assert_eq(wg_gguf_open(parent, &gp), WG_OK, "%s: %s", parent, wg_errmsg());
        n_files++;
        for (int64_t i = 0; i < wg_gguf_n_tensors(gq); i++) {
            const wg_gguf_tensor_t *tq = wg_gguf_tensor(gq, i);
            if (tq->type == WG_TYPE_F32) continue;
            const wg_gguf_tensor_t *tp = wg_gguf_find_tensor(gp, tq->name);
            cr_assert_not_null(tp, "%s: %s missing from the parent", path, tq->name);
            cr_assert_eq(tp->type, WG_TYPE_F32, "%s: parent %s not F32", path, tq->name);
            const wg_type_traits_t *tr = wg_type_traits(tq->type);
            cr_assert(tr && tr->from_float, "%s: %s has type %d without a quantizer", path, tq->name, (int)tq->type);
            int64_t nrows = 1;
            for (uint32_t d = 1; d < tq->n_dims; d++) nrows *= tq->ne[d];
            const int64_t k = tq->ne[0];
            const size_t rs = wg_row_size(tq->type, k);
            cr_assert_eq(tq->nbytes, rs * (size_t)nrows, "%s: %s size", path, tq->name);
            uint8_t *buf = malloc(rs);
            int64_t bad_rows = 0, first_bad = -1;
            for (int64_t r = 0; r < nrows; r++) {
                tr->from_float((const float *)tp->data + r * k, buf, k);
                if (memcmp(buf, (const uint8_t *)tq->data + r * rs, rs) != 0) {
                    if (first_bad < 0) first_bad = r;
                    bad_rows++;
                }
            }
            free(buf);
            if (bad_rows) {
                cr_log_error("%s: %s (%s, %lld rows of %lld): %lld rows differ, first %lld", path, tq->name, tr->name,
                             (long long)nrows, (long long)k, (long long)bad_rows, (long long)first_bad);
                n_bad++;
            }
            per_type[tq->type]++;
            n_tensors++;
        }
        wg_gguf_close(&gq);
        wg_gguf_close(&gp);
    }
    globfree(&gl);
    for (int t = 0; t < WG_TYPE_COUNT; t++)
        if (per_type[t]) cr_log_info("%-7s %d tensors", wg_type_name((wg_type_t)t), per_type[t]);
    cr_log_info("%d files, %d tensors compared, %d differ", n_files, n_tensors, n_bad);
    cr_assert_gt(n_files, 20, "expected the corpus' quantized models");
    /* every quantized type of the corpus models was actually exercised */
    static const wg_type_t seen[] = {WG_TYPE_F16, WG_TYPE_BF16, WG_TYPE_Q4_0, WG_TYPE_Q4_1,  WG_TYPE_Q5_0,
                                     WG_TYPE_Q5_1, WG_TYPE_Q8_0, WG_TYPE_Q2_K, WG_TYPE_Q3_K,  WG_TYPE_Q4_K,
                                     WG_TYPE_Q5_K, WG_TYPE_Q6_K, WG_TYPE_IQ4_NL, WG_TYPE_IQ4_XS};
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++)
        cr_assert_gt(per_type[seen[i]], 0, "no %s tensor found", wg_type_name(seen[i]));
    cr_assert_eq(n_bad, 0, "%d tensors quantize differently from llama-quantize", n_bad);
}
