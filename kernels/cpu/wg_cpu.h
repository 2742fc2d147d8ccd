/* wg_cpu — threaded, SIMD CPU kernels (AVX2 / AVX-512 where the CPU has them,
 * scalar fallback chosen at run time).
 *
 * Batch invariance contract: every output element Y[m][n] is computed by the
 * same sequence of floating-point operations whatever M is and however rows
 * are tiled or split across threads, so a sequence's numbers never depend on
 * what else shares the step. */
#ifndef WG_CPU_H
#define WG_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "../quant.h"

typedef struct wg_pool wg_pool_t;

/* A pool of n_threads workers (the caller counts as one: n_threads=1 spawns
 * none). NULL on failure with the reason in wg_errmsg(). */
wg_pool_t *wg_pool_new(int n_threads);
void wg_pool_destroy(wg_pool_t **pool);
int wg_pool_size(const wg_pool_t *pool);

/* Run fn(ctx, ith, nth) on every thread (ith = 0..nth-1) and wait for all.
 * Not reentrant: one wg_pool_run at a time per pool. */
void wg_pool_run(wg_pool_t *pool, void (*fn)(void *ctx, int ith, int nth), void *ctx);

/* Y[M][N] = X[M][K] @ W[N][K]^T.
 * W: N rows of K values of type wt, rows contiguous (row size wg_row_size(wt,K)).
 * X: F32, row stride K. Y: F32, row stride N. K must be a multiple of wt's
 * block size. Activations are quantized to the type's vec_dot_type first.
 * Returns WG_ERR_UNSUPPORTED for a type without a kernel. */
wg_status wg_k_matmul_cpu(wg_pool_t *pool, wg_type_t wt, const void *W, int64_t N, int64_t K,
                          const float *X, int64_t M, float *Y);

/* One product of wg_k_matmul_cpu_n: Y[M][N] = X @ W^T, W of type `type`. */
typedef struct {
    wg_type_t type;
    const void *W;
    int64_t N;
    float *Y;
} wg_k_mm_t;
#define WG_K_MM_MAX 4

/* Several products of the same activations X[M][K] (Q, K and V; gate and
 * up). With one activation row and row kernels for every type, X is
 * quantized once per activation type and all products share one pool run
 * (one wake-up and one join instead of n); otherwise it is n calls of
 * wg_k_matmul_cpu. Outputs are bitwise those of separate calls. */
wg_status wg_k_matmul_cpu_n(wg_pool_t *pool, int n, const wg_k_mm_t *mm, int64_t K, const float *X,
                            int64_t M);

/* Row products of one activation row from inside a running pool job (the
 * M = 1 path of wg_k_matmul_cpu taken apart): each thread prepares its own
 * copy of the activation and computes the runs of rows it claims, in
 * whatever way the job shares them out. Every row is bitwise what
 * wg_k_matmul_cpu gives at M = 1, whoever computes it. */

/* Bytes of x[K] prepared for weight type wt's row kernel, or 0 when wt has
 * no row kernel at the SIMD level in use (use wg_k_matmul_cpu then). Types
 * with the same vec_dot_type (wg_ref.h) share one prepared copy. */
size_t wg_k_gemv_xsize(wg_type_t wt, int64_t K);
/* Quantize and prepare x[K] into xbuf (wg_k_gemv_xsize bytes, 64-byte aligned). */
void wg_k_gemv_prep(wg_type_t wt, const float *x, int64_t K, void *xbuf);
/* y[i] = dot(row nb + i of W, x) for i < nw; W has rows of K values of wt. */
void wg_k_gemv_rows(wg_type_t wt, const void *W, int64_t K, int64_t nb, int64_t nw, const void *xbuf,
                    float *y);

/* Quantize x[k] to y as type vt (a vec_dot type: Q8_0, Q8_1, Q8_K; k a
 * multiple of its block) with the quantizer the products use, which gives
 * the reference quantizer's bytes at every SIMD level. */
void wg_k_quant_row(wg_type_t vt, const float *x, void *y, int64_t k);

/* Names of the SIMD level in use ("avx512", "avx2", "scalar"). */
const char *wg_cpu_simd_name(void);

#endif
