/* wg_cpu_impl — internal interface between the matmul driver and the SIMD
 * kernel files (one source, wg_vec_x86.c, compiled once per SIMD level).
 *
 * A multi-row dot kernel computes, for one weight row w and nr (1..WG_CPU_MR)
 * activation rows already quantized to the weight type's vec_dot_type,
 *   s[r] = dot(w, xq + r * xq_stride)
 * where the floating-point operation sequence of s[r] is the same whatever nr
 * is (each row has its own accumulators; rows are only batched to reuse the
 * weight bytes once they are in registers). That is what makes wg_k_matmul_cpu
 * batch invariant. */
#ifndef WG_CPU_IMPL_H
#define WG_CPU_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "../quant.h"

/* Activation rows handled per weight row pass. */
#define WG_CPU_MR 4

typedef void (*wg_cpu_vdot_fn)(int64_t k, const void *w, const void *xq, size_t xq_stride,
                               int nr, float *s);
typedef void (*wg_cpu_quant_fn)(const float *x, void *y, int64_t k);

/* A tile kernel computes y[m*ldy + i] = dot(weight row i, activation row m)
 * for i < nw (1..tile_n rows, w row i at w + i*wrow) and m < M, from
 * prepared activation rows (xp + m*xps, see wg_cpu_xprep_size); wend is the
 * end of the whole weight matrix (prefetch bound). Each weight
 * chunk is unpacked once and used for all M rows; every output follows the
 * same float operation sequence whatever M, nw or the tile position. */
typedef void (*wg_cpu_tile_fn)(int64_t K, const uint8_t *w, size_t wrow, int nw,
                               const uint8_t *wend, const uint8_t *xp, size_t xps, int64_t M,
                               float *y, int64_t ldy);
/* Prepare one quantized activation row (vec_dot_type blocks) for tile kernels. */
typedef void (*wg_cpu_prep_fn)(const void *xq, uint8_t *xp, int64_t k);
/* Quantize one activation row x[k] to vec_dot_type blocks at xq and prepare
 * it at xp in one pass: the bytes of quant then prep. */
typedef void (*wg_cpu_qprep_fn)(const float *x, void *xq, uint8_t *xp, int64_t k);
/* A row kernel (M = 1): y[i] = dot(weight row i, the one prepared activation
 * row xp) for i < nw, weight row i at w + i*wrow. It walks each weight row
 * once in memory order, with no unpacked copy, and performs per output the
 * float operations of the tile kernel of the same type (wg_vec_x86.inc), so
 * M = 1 through either path gives bitwise the same numbers. */
#define WG_CPU_GEMV_MAXR 32 /* rows a row kernel keeps accumulators for at once */
typedef void (*wg_cpu_gemv_fn)(int64_t K, const uint8_t *w, size_t wrow, int64_t nw,
                               const uint8_t *xp, float *y);

/* Bytes of one prepared activation row of K values of activation type vt:
 * K unsigned bytes (quant + 128), the K signed quants, a float scale per
 * block, then an int32 quant sum per block (Q8_0), a float sum per block
 * (Q8_1) or an int16 sum per 16 values (Q8_K); padded to 64. */
static inline size_t wg_cpu_xprep_size(wg_type_t vt, int64_t K) {
    size_t n = 2 * (size_t)K;
    if (vt == WG_TYPE_Q8_K) n += (size_t)K / 256 * 4 + (size_t)K / 16 * 2;
    else n += (size_t)K / 32 * 8;
    return (n + 63) / 64 * 64;
}

typedef struct {
    const char *name;                      /* "avx512", "avx2", "scalar" */
    wg_cpu_vdot_fn vdot[WG_TYPE_COUNT];    /* by weight type; NULL = generic path */
    wg_type_t vdot_x[WG_TYPE_COUNT];       /* activation type each vdot expects */
    wg_cpu_quant_fn quant[WG_TYPE_COUNT];  /* by activation (vec_dot) type; NULL = ref */
    wg_cpu_tile_fn tile[WG_TYPE_COUNT];    /* by weight type; preferred over vdot */
    wg_cpu_prep_fn prep[WG_TYPE_COUNT];    /* by activation type, for tile kernels */
    wg_cpu_qprep_fn qprep[WG_TYPE_COUNT];  /* quant + prep in one pass, or NULL */
    wg_cpu_gemv_fn gemv[WG_TYPE_COUNT];    /* by weight type: M = 1 row kernels, or NULL */
    int tile_n;                            /* weight rows per tile kernel call (8 or 16) */
} wg_cpu_kernels_t;

/* Fill `k` with the kernels of one SIMD level (defined in wg_vec_x86.c builds). */
void wg_cpu_kernels_avx2(wg_cpu_kernels_t *k);
void wg_cpu_kernels_avx512(wg_cpu_kernels_t *k);

/* Force a SIMD level for tests and benchmarks: "scalar" (reference vec_dot,
 * reference quantizers), "avx2", "avx512"; NULL restores automatic choice.
 * Returns false when the CPU lacks the level. Not thread-safe: call it while
 * no matmul runs. The environment variable WAGGLE_SIMD does the same at the
 * first matmul. */
#include <stdbool.h>
bool wg_cpu_force_simd(const char *level);

/* Like wg_pool_run, but the caller does not wait for workers that have not
 * started: fn runs on the caller and on whichever workers join before the
 * caller's own share returns, and the call returns once those have finished.
 * So fn must claim its work dynamically (a shared counter) and the caller's
 * share must loop until no work is left. On a loaded machine this keeps a
 * descheduled or sleeping worker off the critical path. */
typedef struct wg_pool wg_pool_t;
void wg_pool_run_any(wg_pool_t *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx);

/* Work lanes: units [0, n) of a pool run cut into one lane per thread (at
 * most WG_LANES; more threads share them), each [lo, hi) in one word on a
 * cache line of its own. A thread claims from the front of its own lane,
 * then from the back of the others', so thread i does units near i*n/nth
 * when every thread takes part: a unit's data stays on the same core from
 * one pass to the next when passes share the split (rows a row pass writes
 * are the rows the next product's quantization reads), claims touch a line
 * only their own thread writes, and a thread that joins late or never
 * (wg_pool_run_any) has its units done by the others. */
#include <stdatomic.h>
#define WG_LANES 8
typedef struct wg_lanes {
    struct {
        _Alignas(64) _Atomic uint64_t w; /* lo | hi << 32: units [lo, hi) unclaimed */
    } lane[WG_LANES];
    int n;
} wg_lanes_t;

/* Cut units [0, n) (n < 2^31) into lanes for nth threads. */
void wg_lanes_init(wg_lanes_t *l, int64_t n, int nth);

/* A claim's size: given the claimed side's first unit x (front) or last
 * unit x (back), the units left in the lane and the size proposed, the
 * size to take (1..proposed). NULL takes the proposal. */
typedef int64_t (*wg_lanes_clip_fn)(const void *arg, int64_t x, bool back, int64_t left, int64_t take);

/* Claim for thread ith up to `cap` units (half of what is left in a lane,
 * at least 1, then clip): returns the count and *u0 the first unit (the
 * units [*u0, *u0 + count) are this thread's), 0 when every lane is empty. */
int64_t wg_lanes_claim(wg_lanes_t *l, int ith, int64_t cap, wg_lanes_clip_fn clip, const void *arg, int64_t *u0);

/* The kernel table in use (borrowed, valid until the next wg_cpu_force_simd). */
const wg_cpu_kernels_t *wg_cpu_kernels(void);

#endif
