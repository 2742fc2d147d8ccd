/* wg_cuda_ctx — contexts, memory, pinned staging, the per-model weight
 * registry and CUDA graph capture/replay.
 *
 * Design: the context owns everything whose lifetime is "as long as the
 * device is in use" (stream, cuBLAS handle and workspace, scratch, staging);
 * the weight registry owns what lives as long as one model, so unloading a
 * model is destroying its registry. Pageable uploads go through two pinned
 * halves alternately, so the host memcpy of chunk i+1 overlaps the DMA of
 * chunk i. */
#include <stdlib.h>
#include <string.h>

#include "wg_cuda_internal.h"

#define WG_CUDA_BLAS_WS (32u << 20)     /* cuBLAS workspace: fixed, so capture never allocates */
#define WG_CUDA_STAGING (32u << 20)     /* pinned staging, two halves */

extern "C" int wg_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        wg_error(WG_ERR_DEVICE, "no CUDA device: cudaGetDeviceCount: %s", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) wg_error(WG_ERR_DEVICE, "no CUDA device: cudaGetDeviceCount found 0");
    return n;
}

static wg_status s_ctx_init(wg_cuda_t *c) {
    cudaDeviceProp prop;
    WG_CU(cudaSetDevice(c->device));
    WG_CU(cudaGetDeviceProperties(&prop, c->device));
    snprintf(c->name, sizeof c->name, "%s", prop.name);
    c->sm_count = prop.multiProcessorCount;
    const char *split = getenv("WAGGLE_CUDA_ATTN_SPLIT");
    c->attn_split_off = split && strcmp(split, "0") == 0;
    c->smem_optin = prop.sharedMemPerBlockOptin;
    if (prop.major * 10 + prop.minor < 61)
        return wg_error(WG_ERR_UNSUPPORTED, "cuda device %d (%s): compute capability %d.%d < 6.1 (dp4a)",
                        c->device, c->name, prop.major, prop.minor);
    WG_CU(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    WG_CUBLAS(cublasCreate(&c->blas));
    WG_CUBLAS(cublasSetStream(c->blas, c->stream));
    c->blas_ws_bytes = WG_CUDA_BLAS_WS;
    WG_CU(cudaMalloc(&c->blas_ws, c->blas_ws_bytes));
    WG_CUBLAS(cublasSetWorkspace(c->blas, c->blas_ws, c->blas_ws_bytes));
    /* Plain FP32 GEMMs stay FP32 (no TF32): the F32 path is held to NMSE 1e-7. */
    WG_CUBLAS(cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH));
    c->staging_bytes = WG_CUDA_STAGING;
    WG_CU(cudaHostAlloc(&c->staging, c->staging_bytes, cudaHostAllocDefault));
    for (int i = 0; i < 2; i++) WG_CU(cudaEventCreateWithFlags(&c->staged[i], cudaEventDisableTiming));
    return WG_OK;
}

extern "C" wg_cuda_t *wg_cuda_new(int device) {
    int n = wg_cuda_device_count();
    if (device < 0 || device >= n) {
        if (n > 0) wg_error(WG_ERR_INVAL, "cuda: device=%d out of range (%d devices)", device, n);
        return NULL;
    }
    wg_cuda_t *c = (wg_cuda_t *)calloc(1, sizeof *c);
    if (!c) {
        wg_error(WG_ERR_NOMEM, "cuda: no memory for a context");
        return NULL;
    }
    c->device = device;
    if (s_ctx_init(c) != WG_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", wg_errmsg());
        wg_cuda_destroy(&c);
        wg_error(WG_ERR_DEVICE, "cuda: context on device %d: %s", device, why);
        return NULL;
    }
    return c;
}

extern "C" void wg_cuda_destroy(wg_cuda_t **pc) {
    if (!pc || !*pc) return;
    wg_cuda_t *c = *pc;
    cudaSetDevice(c->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->blas) cublasDestroy(c->blas);
    cudaFree(c->blas_ws);
    cudaFree(c->scratch);
    cudaFree(c->attn_part);
    if (c->staging) cudaFreeHost(c->staging);
    for (int i = 0; i < 2; i++)
        if (c->staged[i]) cudaEventDestroy(c->staged[i]);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
    *pc = NULL;
}

extern "C" int wg_cuda_device(const wg_cuda_t *ctx) { return ctx->device; }
extern "C" void *wg_cuda_stream(wg_cuda_t *ctx) { return (void *)ctx->stream; }
extern "C" const char *wg_cuda_device_name(const wg_cuda_t *ctx) { return ctx->name; }

extern "C" wg_status wg_cuda_sync(wg_cuda_t *ctx) {
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    WG_CU(cudaStreamSynchronize(ctx->stream));
    WG_CU(cudaGetLastError());
    return WG_OK;
}

extern "C" wg_status wg_cuda_mem_info(wg_cuda_t *ctx, size_t *free_bytes, size_t *total_bytes) {
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    size_t f = 0, t = 0;
    WG_CU(cudaMemGetInfo(&f, &t));
    if (free_bytes) *free_bytes = f;
    if (total_bytes) *total_bytes = t;
    return WG_OK;
}

/* ---- memory ---- */

extern "C" wg_status wg_cuda_malloc(wg_cuda_t *ctx, size_t bytes, void **dptr) {
    WG_ASSERT(dptr);
    *dptr = NULL;
    WG_CU_CHECK(bytes > 0, "cuda malloc: bytes=0");
    WG_CU_CHECK(!ctx->capturing, "cuda malloc: %zu bytes requested during graph capture", bytes);
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    cudaError_t e = cudaMalloc(dptr, bytes);
    if (e != cudaSuccess) {
        *dptr = NULL;
        cudaGetLastError(); /* clear the sticky-free error so later calls work */
        return wg_error(e == cudaErrorMemoryAllocation ? WG_ERR_NOMEM : WG_ERR_DEVICE,
                        "cuda malloc: %zu bytes on device %d: %s", bytes, ctx->device, cudaGetErrorString(e));
    }
    return WG_OK;
}

extern "C" void wg_cuda_free(wg_cuda_t *ctx, void *dptr) {
    if (!dptr) return;
    cudaSetDevice(ctx->device);
    cudaFree(dptr);
}

static bool s_is_pinned(const void *p) {
    cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return a.type == cudaMemoryTypeHost;
}

extern "C" wg_status wg_cuda_upload(wg_cuda_t *ctx, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return WG_OK;
    WG_ASSERT(dst && src);
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    if (ctx->capturing || s_is_pinned(src)) {
        WG_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx->stream));
        return WG_OK;
    }
    const size_t half = ctx->staging_bytes / 2;
    for (size_t off = 0, i = 0; off < bytes; off += half, i ^= 1) {
        const size_t n = bytes - off < half ? bytes - off : half;
        char *buf = (char *)ctx->staging + i * half;
        WG_CU(cudaEventSynchronize(ctx->staged[i])); /* previous DMA out of this half is done */
        memcpy(buf, (const char *)src + off, n);
        WG_CU(cudaMemcpyAsync((char *)dst + off, buf, n, cudaMemcpyHostToDevice, ctx->stream));
        WG_CU(cudaEventRecord(ctx->staged[i], ctx->stream));
    }
    /* The source may be reused on return; the staging halves are guarded by
     * their events, so only wait for those. */
    WG_CU(cudaEventSynchronize(ctx->staged[0]));
    WG_CU(cudaEventSynchronize(ctx->staged[1]));
    return WG_OK;
}

extern "C" wg_status wg_cuda_download(wg_cuda_t *ctx, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return WG_OK;
    WG_ASSERT(dst && src);
    WG_CU_CHECK(!ctx->capturing, "cuda download: not allowed during graph capture");
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    WG_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    WG_CU(cudaStreamSynchronize(ctx->stream));
    return WG_OK;
}

extern "C" wg_status wg_cuda_memset(wg_cuda_t *ctx, void *dst, int value, size_t bytes) {
    if (bytes == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    WG_CU(cudaMemsetAsync(dst, value, bytes, ctx->stream));
    return WG_OK;
}

extern "C" wg_status wg_cuda_copy(wg_cuda_t *ctx, void *dst, const void *src, size_t bytes) {
    if (bytes == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    WG_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx->stream));
    return WG_OK;
}

extern "C" wg_status wg_cuda_host_alloc(size_t bytes, void **hptr) {
    WG_ASSERT(hptr);
    *hptr = NULL;
    WG_CU_CHECK(bytes > 0, "cuda host alloc: bytes=0");
    cudaError_t e = cudaHostAlloc(hptr, bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        *hptr = NULL;
        return wg_error(WG_ERR_NOMEM, "cuda host alloc: %zu pinned bytes: %s", bytes, cudaGetErrorString(e));
    }
    return WG_OK;
}

extern "C" void wg_cuda_host_free(void *hptr) {
    if (hptr) cudaFreeHost(hptr);
}

wg_status wg_cuda_scratch(wg_cuda_t *ctx, size_t bytes, void **p) {
    if (bytes > ctx->scratch_bytes) {
        WG_CU_CHECK(!ctx->capturing,
                    "cuda scratch: %zu bytes needed during graph capture (reserved %zu); call "
                    "wg_cuda_reserve_scratch first", bytes, ctx->scratch_bytes);
        wg_status st = wg_cuda_reserve_scratch(ctx, bytes);
        if (st) return st;
    }
    *p = ctx->scratch;
    ctx->xq_src = NULL; /* the caller is about to overwrite it */
    return WG_OK;
}

extern "C" wg_status wg_cuda_reserve_scratch(wg_cuda_t *ctx, size_t bytes) {
    if (bytes <= ctx->scratch_bytes) return WG_OK;
    WG_CU_CHECK(!ctx->capturing, "cuda reserve scratch: %zu bytes during graph capture", bytes);
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    /* Work queued on the old buffer must finish before it is freed. */
    WG_CU(cudaStreamSynchronize(ctx->stream));
    cudaFree(ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    const size_t want = (bytes + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1); /* whole MiB */
    st = wg_cuda_malloc(ctx, want, &ctx->scratch);
    if (st) return st;
    ctx->scratch_bytes = want;
    return WG_OK;
}

/* ---- weight registry: open addressing on the host pointer ---- */

typedef struct {
    const void *host;   /* key; NULL = empty slot */
    void *dev;          /* device copy */
    size_t bytes;       /* size of both */
} s_wentry_t;

struct wg_cuda_weights {
    wg_cuda_t *ctx;        /* context the copies live on (borrowed) */
    s_wentry_t *slots;     /* [cap] hash table */
    int64_t cap;           /* power of two */
    int64_t count;         /* used slots */
    size_t bytes;          /* device bytes held */
};

static uint64_t s_hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

extern "C" wg_cuda_weights_t *wg_cuda_weights_new(wg_cuda_t *ctx) {
    WG_ASSERT(ctx);
    wg_cuda_weights_t *r = (wg_cuda_weights_t *)calloc(1, sizeof *r);
    if (r) {
        r->cap = 256;
        r->slots = (s_wentry_t *)calloc((size_t)r->cap, sizeof *r->slots);
    }
    if (!r || !r->slots) {
        if (r) free(r);
        wg_error(WG_ERR_NOMEM, "cuda weights: no memory for the registry");
        return NULL;
    }
    r->ctx = ctx;
    return r;
}

extern "C" void wg_cuda_weights_destroy(wg_cuda_weights_t **pr) {
    if (!pr || !*pr) return;
    wg_cuda_weights_t *r = *pr;
    cudaSetDevice(r->ctx->device);
    cudaStreamSynchronize(r->ctx->stream); /* no kernel may still read a weight */
    for (int64_t i = 0; i < r->cap; i++)
        if (r->slots[i].host) cudaFree(r->slots[i].dev);
    free(r->slots);
    free(r);
    *pr = NULL;
}

static s_wentry_t *s_wfind(s_wentry_t *slots, int64_t cap, const void *host) {
    int64_t i = (int64_t)(s_hash_ptr(host) & (uint64_t)(cap - 1));
    while (slots[i].host && slots[i].host != host) i = (i + 1) & (cap - 1);
    return &slots[i];
}

static wg_status s_wgrow(wg_cuda_weights_t *r) {
    const int64_t ncap = r->cap * 2;
    s_wentry_t *ns = (s_wentry_t *)calloc((size_t)ncap, sizeof *ns);
    if (!ns) return wg_error(WG_ERR_NOMEM, "cuda weights: cannot grow the registry to %lld", (long long)ncap);
    for (int64_t i = 0; i < r->cap; i++)
        if (r->slots[i].host) *s_wfind(ns, ncap, r->slots[i].host) = r->slots[i];
    free(r->slots);
    r->slots = ns;
    r->cap = ncap;
    return WG_OK;
}

extern "C" wg_status wg_cuda_weights_get(wg_cuda_weights_t *r, const void *host, size_t bytes, const void **dev) {
    WG_ASSERT(r && host && dev);
    *dev = NULL;
    s_wentry_t *e = s_wfind(r->slots, r->cap, host);
    if (e->host) {
        if (e->bytes != bytes)
            return wg_error(WG_ERR_INVAL, "cuda weights: tensor at %p registered with %zu bytes, asked for %zu",
                            host, e->bytes, bytes);
        *dev = e->dev;
        return WG_OK;
    }
    if ((r->count + 1) * 2 > r->cap) {
        wg_status st = s_wgrow(r);
        if (st) return st;
        e = s_wfind(r->slots, r->cap, host);
    }
    void *d = NULL;
    wg_status st = wg_cuda_malloc(r->ctx, bytes, &d);
    if (st) return st;
    st = wg_cuda_upload(r->ctx, d, host, bytes);
    if (st) {
        wg_cuda_free(r->ctx, d);
        return st;
    }
    e->host = host;
    e->dev = d;
    e->bytes = bytes;
    r->count++;
    r->bytes += bytes;
    *dev = d;
    return WG_OK;
}

extern "C" const void *wg_cuda_weights_find(const wg_cuda_weights_t *r, const void *host) {
    WG_ASSERT(r && host);
    const s_wentry_t *e = s_wfind(r->slots, r->cap, host);
    return e->host ? e->dev : NULL;
}

extern "C" wg_status wg_cuda_weights_adopt(wg_cuda_weights_t *r, const void *host, void *dev, size_t bytes) {
    WG_ASSERT(r && host && dev);
    s_wentry_t *e = s_wfind(r->slots, r->cap, host);
    if (e->host) return wg_error(WG_ERR_INVAL, "cuda weights: key %p already registered", host);
    if ((r->count + 1) * 2 > r->cap) {
        wg_status st = s_wgrow(r);
        if (st) return st;
        e = s_wfind(r->slots, r->cap, host);
    }
    e->host = host;
    e->dev = dev;
    e->bytes = bytes;
    r->count++;
    r->bytes += bytes;
    return WG_OK;
}

extern "C" size_t wg_cuda_weights_bytes(const wg_cuda_weights_t *r) { return r->bytes; }
extern "C" int64_t wg_cuda_weights_count(const wg_cuda_weights_t *r) { return r->count; }

/* ---- graphs ---- */

struct wg_cuda_graph {
    cudaGraphExec_t exec;   /* instantiated graph */
    int device;             /* device it was captured on */
};

extern "C" wg_status wg_cuda_graph_begin(wg_cuda_t *ctx) {
    WG_CU_CHECK(!ctx->capturing, "cuda graph: capture already in progress");
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    WG_CU(cudaStreamBeginCapture(ctx->stream, cudaStreamCaptureModeThreadLocal));
    ctx->capturing = true;
    return WG_OK;
}

extern "C" wg_status wg_cuda_graph_end(wg_cuda_t *ctx, wg_cuda_graph_t **pg) {
    WG_ASSERT(pg);
    WG_CU_CHECK(ctx->capturing, "cuda graph: end without begin");
    ctx->capturing = false;
    wg_status st = WG_OK;
    cudaGraph_t g = NULL;
    cudaGraphExec_t exec = NULL;
    wg_cuda_graph_t *ng = NULL;
    WG_CU_GOTO(cudaSetDevice(ctx->device), st, out);
    WG_CU_GOTO(cudaStreamEndCapture(ctx->stream, &g), st, out);
    if (*pg) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate((*pg)->exec, g, &info) == cudaSuccess) goto out; /* updated in place */
        cudaGetLastError();
        WG_CU_GOTO(cudaGraphInstantiate(&exec, g, 0), st, out);
        cudaGraphExecDestroy((*pg)->exec);
        (*pg)->exec = exec;
        goto out;
    }
    WG_CU_GOTO(cudaGraphInstantiate(&exec, g, 0), st, out);
    ng = (wg_cuda_graph_t *)calloc(1, sizeof *ng);
    if (!ng) {
        cudaGraphExecDestroy(exec);
        st = wg_error(WG_ERR_NOMEM, "cuda graph: no memory");
        goto out;
    }
    ng->exec = exec;
    ng->device = ctx->device;
    *pg = ng;
out:
    if (g) cudaGraphDestroy(g);
    return st;
}

extern "C" wg_status wg_cuda_graph_launch(wg_cuda_t *ctx, wg_cuda_graph_t *g) {
    WG_ASSERT(g);
    WG_CU_CHECK(g->device == ctx->device, "cuda graph: captured on device %d, launched on %d", g->device,
                ctx->device);
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    WG_CU(cudaGraphLaunch(g->exec, ctx->stream));
    return WG_OK;
}

extern "C" void wg_cuda_graph_destroy(wg_cuda_graph_t **pg) {
    if (!pg || !*pg) return;
    cudaGraphExecDestroy((*pg)->exec);
    free(*pg);
    *pg = NULL;
}
