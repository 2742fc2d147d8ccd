/* wg_ref — scalar reference kernels: the specification every other kernel is
 * checked against. One type-traits table describes every tensor type; code
 * outside kernels/ asks the table instead of switching on types.
 *
 * All functions are deterministic and row-wise: the result for one row never
 * depends on other rows. Lengths `k` are multiples of the type's blck_size. */
#ifndef WG_REF_H
#define WG_REF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../quant.h"

typedef struct {
    const char *name;      /* "Q4_K", as GGUF tools print it */
    int64_t blck_size;     /* values per block (1 for plain types) */
    size_t type_size;      /* bytes per block */
    bool is_quantized;     /* block-quantized (not F32/F16/BF16/ints) */
    bool supported;        /* dequantize/dot implemented here */
    /* Dequantize k values of one row: x (k/blck_size blocks) -> y[k]. */
    void (*to_float)(const void *x, float *y, int64_t k);
    /* Reference quantization of k values (bit-exact with ggml's *_ref
     * quantizers, no importance matrix); NULL where the type has none. */
    void (*from_float)(const float *x, void *y, int64_t k);
    /* Type an activation row is quantized to before vec_dot (as production
     * engines do: Q8_0 / Q8_1 for legacy types, Q8_K for K- and IQ-quants,
     * F16 / BF16 for 16-bit weights, F32 for F32). */
    wg_type_t vec_dot_type;
    /* Dot product of one weight row (k values of this type) with one
     * activation row already in vec_dot_type. */
    float (*vec_dot)(int64_t k, const void *w, const void *xq);
} wg_type_traits_t;

/* Traits of `t`; NULL for an id outside the table (untrusted ids: check!). */
const wg_type_traits_t *wg_type_traits(wg_type_t t);

/* Type name, or NULL for an unknown id. */
const char *wg_type_name(wg_type_t t);

/* Parse a type name ("q4_k", "Q4_K", "F16"); returns WG_TYPE_COUNT if unknown. */
wg_type_t wg_type_from_name(const char *name);

/* Bytes of a row of `k` values of type t (k must be a multiple of blck_size). */
size_t wg_row_size(wg_type_t t, int64_t k);

/* Dequantize a whole row via the table; returns false for an unsupported type. */
bool wg_dequantize_row(wg_type_t t, const void *x, float *y, int64_t k);

/* Reference dot of a weight row with an F32 activation row: the activation row
 * is quantized to vec_dot_type with the reference quantizer, then vec_dot. */
float wg_ref_dot_f32(wg_type_t t, const void *w, const float *x, int64_t k);

#endif
