/* wg_cuda_internal — shared by the .cu files of the CUDA backend only: the
 * context struct, error-conversion macros (every CUDA / cuBLAS call becomes a
 * wg_status naming the call site and the CUDA reason) and small helpers. */
#ifndef WG_CUDA_INTERNAL_H
#define WG_CUDA_INTERNAL_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "wg_cuda.h"

struct wg_cuda {
    int device;               /* CUDA device ordinal */
    char name[256];           /* device name */
    int sm_count;             /* multiprocessors */
    size_t smem_optin;        /* max dynamic shared memory per block (opt-in) */
    cudaStream_t stream;      /* all work of this context */
    cublasHandle_t blas;      /* bound to `stream`, workspace `blas_ws` */
    void *blas_ws;            /* [blas_ws_bytes] cuBLAS workspace (graph-capture safe) */
    size_t blas_ws_bytes;     /* bytes of blas_ws */
    void *scratch;            /* [scratch_bytes] device scratch for matmul staging */
    size_t scratch_bytes;     /* bytes of scratch */
    const float *xq_src;      /* X whose Q8_1 copy the scratch holds (NULL: none) */
    int64_t xq_k, xq_m;       /* its shape */
    void *attn_part;          /* [attn_part_bytes] split-decode attention partials */
    size_t attn_part_bytes;   /* bytes of attn_part */
    bool attn_split_off;      /* WAGGLE_CUDA_ATTN_SPLIT=0: one CTA per (token, head) */
    void *staging;            /* [2][staging_bytes/2] pinned host buffers for pageable uploads */
    size_t staging_bytes;     /* bytes of staging */
    cudaEvent_t staged[2];    /* signalled when each staging half may be refilled */
    bool capturing;           /* between graph_begin and graph_end */
};

/* Convert a failed CUDA runtime call into `return wg_error(...)`. */
#define WG_CU(call)                                                                          \
    do {                                                                                     \
        cudaError_t wg_e_ = (call);                                                          \
        if (wg_e_ != cudaSuccess)                                                            \
            return wg_error(WG_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,       \
                            cudaGetErrorString(wg_e_));                                      \
    } while (0)

/* Same, but store the status in `st` and jump to `label` (one cleanup path). */
#define WG_CU_GOTO(call, st, label)                                                          \
    do {                                                                                     \
        cudaError_t wg_e_ = (call);                                                          \
        if (wg_e_ != cudaSuccess) {                                                          \
            st = wg_error(WG_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,         \
                          cudaGetErrorString(wg_e_));                                        \
            goto label;                                                                      \
        }                                                                                    \
    } while (0)

#define WG_CUBLAS(call)                                                                      \
    do {                                                                                     \
        cublasStatus_t wg_b_ = (call);                                                       \
        if (wg_b_ != CUBLAS_STATUS_SUCCESS)                                                  \
            return wg_error(WG_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,       \
                            cublasGetStatusString(wg_b_));                                   \
    } while (0)

/* After a <<<>>> launch: configuration errors are reported at once. */
#define WG_CU_LAUNCHED() WG_CU(cudaGetLastError())

/* Argument checks for untrusted / caller-supplied shapes. */
#define WG_CU_CHECK(cond, ...)                                                               \
    do {                                                                                     \
        if (!(cond)) return wg_error(WG_ERR_INVAL, __VA_ARGS__);                             \
    } while (0)

/* Make ctx->device current for this thread. */
static inline wg_status wg_cuda_enter(wg_cuda_t *ctx) {
    WG_ASSERT(ctx);
    WG_CU(cudaSetDevice(ctx->device));
    return WG_OK;
}

/* Device scratch of at least `bytes` (grows outside graph capture). */
wg_status wg_cuda_scratch(wg_cuda_t *ctx, size_t bytes, void **p);

static inline unsigned wg_cuda_blocks(int64_t n, int per) { return (unsigned)((n + per - 1) / per); }

#endif
