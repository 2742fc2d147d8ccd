/* The reference kernels against ggml's own quantization vectors
 * (conformance corpus quants/quant-vectors.gguf, README §7): for every type
 * T, dequantizing q.T must give deq.T bit for bit, the reference quantizer
 * applied to src.T must give the bytes of q.T, and the reference dot (with
 * the activation quantized to T's vec_dot_type) must match the float64 dot
 * dot.T within the activation-quantization tolerance. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "engine/formats/wg_gguf.h"
#include "kernels/ref/wg_ref.h"
#include "kernels/ref/wg_ref_kernels.h"
#include "wg_test.h"

#define S_ROWS 8
#define S_COLS 512

typedef struct {
    wg_gguf_t *g;               /* the corpus file */
    wg_type_t type;             /* T */
    const float *src;           /* [8][512] input rows */
    const uint8_t *q;           /* [8][row_size] ggml's quantization */
    const float *deq;           /* [8][512] ggml's dequantization */
    const float *dot;           /* [8] float64 dots of deq rows with x */
    const float *x;             /* [512] probe vector */
    size_t row_size;            /* bytes per row of q */
} s_vectors_t;

static const wg_gguf_tensor_t *s_tensor(wg_gguf_t *g, const char *name, wg_type_t type, int64_t ne0,
                                        int64_t ne1) {
    const wg_gguf_tensor_t *t = wg_gguf_find_tensor(g, name);
    cr_assert_not_null(t, "tensor %s missing", name);
    cr_assert_eq(t->type, type, "%s: type %d, want %d", name, (int)t->type, (int)type);
    cr_assert_eq(t->ne[0], ne0, "%s: ne0=%lld", name, (long long)t->ne[0]);
    cr_assert_eq(t->ne[1], ne1, "%s: ne1=%lld", name, (long long)t->ne[1]);
    return t;
}

static s_vectors_t s_load(wg_type_t type) {
    WG_REQUIRE_CORPUS();
    s_vectors_t v = {.type = type};
    cr_assert_eq(wg_gguf_open(wg_test_corpus("quants/quant-vectors.gguf"), &v.g), WG_OK, "%s", wg_errmsg());
    const char *tn = wg_type_name(type);
    char name[64];
    snprintf(name, sizeof name, "src.%s", tn);
    v.src = s_tensor(v.g, name, WG_TYPE_F32, S_COLS, S_ROWS)->data;
    snprintf(name, sizeof name, "q.%s", tn);
    const wg_gguf_tensor_t *q = s_tensor(v.g, name, type, S_COLS, S_ROWS);
    v.q = q->data;
    v.row_size = wg_row_size(type, S_COLS);
    cr_assert_eq(q->nbytes, v.row_size * S_ROWS, "%s: %zu bytes", name, q->nbytes);
    snprintf(name, sizeof name, "deq.%s", tn);
    v.deq = s_tensor(v.g, name, WG_TYPE_F32, S_COLS, S_ROWS)->data;
    snprintf(name, sizeof name, "dot.%s", tn);
    v.dot = s_tensor(v.g, name, WG_TYPE_F32, S_ROWS, 1)->data;
    v.x = s_tensor(v.g, "x", WG_TYPE_F32, S_COLS, 1)->data;
    return v;
}

/* dequantize q.T -> deq.T, every value bit-identical (NaN never occurs here). */
static void s_check_dequant(wg_type_t type) {
    s_vectors_t v = s_load(type);
    float y[S_COLS];
    int bad = 0;
    for (int r = 0; r < S_ROWS; r++) {
        memset(y, 0xAB, sizeof y);
        cr_assert(wg_dequantize_row(type, v.q + r * v.row_size, y, S_COLS));
        for (int i = 0; i < S_COLS; i++) {
            const float want = v.deq[r * S_COLS + i];
            if (wg_f32_bits(y[i]) != wg_f32_bits(want)) {
                if (bad++ < 5)
                    cr_log_error("%s row %d col %d: got %.9g (0x%08x) want %.9g (0x%08x)", wg_type_name(type), r,
                                 i, y[i], wg_f32_bits(y[i]), want, wg_f32_bits(want));
            }
        }
    }
    wg_gguf_close(&v.g);
    cr_assert_eq(bad, 0, "%s: %d dequantized values differ from ggml", wg_type_name(type), bad);
}

/* quantize src.T -> bytes equal to q.T */
static void s_check_quant(wg_type_t type) {
    s_vectors_t v = s_load(type);
    const wg_type_traits_t *tr = wg_type_traits(type);
    cr_assert_not_null(tr->from_float, "%s has no reference quantizer", tr->name);
    uint8_t buf[4096];
    cr_assert_leq(v.row_size, sizeof buf);
    int bad_rows = 0;
    for (int r = 0; r < S_ROWS; r++) {
        memset(buf, 0xCD, sizeof buf);
        tr->from_float(v.src + r * S_COLS, buf, S_COLS);
        const uint8_t *want = v.q + r * v.row_size;
        if (memcmp(buf, want, v.row_size) != 0) {
            size_t first = 0, n = 0;
            for (size_t b = 0; b < v.row_size; b++)
                if (buf[b] != want[b]) {
                    if (!n) first = b;
                    n++;
                }
            cr_log_error("%s row %d: %zu of %zu bytes differ, first at byte %zu (got 0x%02x want 0x%02x)",
                         tr->name, r, n, v.row_size, first, buf[first], want[first]);
            bad_rows++;
        }
    }
    wg_gguf_close(&v.g);
    cr_assert_eq(bad_rows, 0, "%s: %d of %d rows quantize differently from ggml", tr->name, bad_rows, S_ROWS);
}

/* reference dot vs the float64 dot of ggml's dequantized rows with x */
static void s_check_dot(wg_type_t type) {
    s_vectors_t v = s_load(type);
    /* Activation quantization: the Q8 types lose up to ~0.4% per element
     * (1/254 relative to the block max), 16-bit types up to 2^-9 (BF16). */
    const double rel_quant = 1e-2;
    for (int r = 0; r < S_ROWS; r++) {
        const float *deq = v.deq + r * S_COLS;
        double mag = 0.0;
        for (int i = 0; i < S_COLS; i++) mag += fabs((double)deq[i] * v.x[i]);
        const double want = v.dot[r];

        const float got_q = wg_ref_dot_f32(type, v.q + r * v.row_size, v.x, S_COLS);
        cr_assert(fabs(got_q - want) <= rel_quant * mag, "%s row %d: ref dot %.9g vs %.9g (tol %.3g)",
                  wg_type_name(type), r, got_q, want, rel_quant * mag);

        const float got_f = wg_k_vec_dot_f32_f32_ref(S_COLS, deq, v.x);
        cr_assert(fabs(got_f - want) <= 1e-5 * mag, "%s row %d: float dot %.9g vs %.9g (tol %.3g)",
                  wg_type_name(type), r, got_f, want, 1e-5 * mag);
    }
    wg_gguf_close(&v.g);
}

#define S_TYPE_TESTS(T)                                                        \
    Test(quant_vectors, dequant_bitexact_##T) { s_check_dequant(WG_TYPE_##T); } \
    Test(quant_vectors, quant_bytes_##T) { s_check_quant(WG_TYPE_##T); }        \
    Test(quant_vectors, dot_##T) { s_check_dot(WG_TYPE_##T); }

S_TYPE_TESTS(Q4_0)
S_TYPE_TESTS(Q4_1)
S_TYPE_TESTS(Q5_0)
S_TYPE_TESTS(Q5_1)
S_TYPE_TESTS(Q8_0)
S_TYPE_TESTS(Q2_K)
S_TYPE_TESTS(Q3_K)
S_TYPE_TESTS(Q4_K)
S_TYPE_TESTS(Q5_K)
S_TYPE_TESTS(Q6_K)
S_TYPE_TESTS(IQ4_NL)
S_TYPE_TESTS(IQ4_XS)
S_TYPE_TESTS(MXFP4)
S_TYPE_TESTS(F16)
S_TYPE_TESTS(BF16)

/* The corpus lists exactly these 15 types; a new one would need tests here. */
Test(quant_vectors, corpus_types_are_all_covered) {
    WG_REQUIRE_CORPUS();
    wg_gguf_t *g = NULL;
    cr_assert_eq(wg_gguf_open(wg_test_corpus("quants/quant-vectors.gguf"), &g), WG_OK, "%s", wg_errmsg());
    int n_q = 0;
    for (int64_t i = 0; i < wg_gguf_n_tensors(g); i++) {
        const wg_gguf_tensor_t *t = wg_gguf_tensor(g, i);
        if (strncmp(t->name, "q.", 2) != 0) continue;
        n_q++;
        const wg_type_traits_t *tr = wg_type_traits(t->type);
        cr_assert_not_null(tr, "%s: unknown type %d", t->name, (int)t->type);
        cr_assert(tr->supported, "%s: type %s unsupported", t->name, tr->name);
        cr_assert_str_eq(t->name + 2, tr->name, "tensor name vs type name");
    }
    cr_assert_eq(n_q, 15);
    wg_gguf_close(&g);
}
