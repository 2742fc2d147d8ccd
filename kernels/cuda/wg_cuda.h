/* wg_cuda — CUDA backend: a C API over the .cu kernels, shaped so that a CUDA
 * implementation of engine/model/wg_backend.h is a thin adapter.
 *
 * Design:
 *   - One context (wg_cuda_t) per device: a stream, a cuBLAS handle with its
 *     own workspace (so cuBLAS calls can be captured in CUDA graphs), a
 *     growable device scratch and a pinned host staging buffer.
 *   - Every kernel entry point takes DEVICE pointers, is enqueued on the
 *     context's stream and returns without synchronising (except the
 *     download/sync calls, which say so). Launch and argument errors come
 *     back as a wg_status with the CUDA call site and cudaGetErrorString in
 *     wg_errmsg(); asynchronous kernel faults surface at the next sync.
 *   - Matmuls pick a path by M (see wg_cuda_matmul): M <= WG_CUDA_MMV_MAX_M
 *     uses custom mat-vec kernels (quantized weights: dp4a integer dots on
 *     Q8_1-quantized activations); larger M dequantizes weight tiles to F16
 *     and calls cublasGemmEx with F32 accumulation.
 *   - Nothing here touches the GPU until called: Criterion's parent process
 *     and CPU-only runs never initialise CUDA.
 *
 * Threads: a context is used by one thread at a time. Functions without a
 * context (device count, host emulation) are thread-safe. */
#ifndef WG_CUDA_H
#define WG_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "../quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wg_cuda wg_cuda_t;
typedef struct wg_cuda_graph wg_cuda_graph_t;
typedef struct wg_cuda_weights wg_cuda_weights_t;

/* Largest M served by the mat-vec kernels; larger M goes to cuBLAS. */
#define WG_CUDA_MMV_MAX_M 16

/* ---- devices and contexts ---- */

/* Number of usable CUDA devices; 0 (and a reason in wg_errmsg()) when there is
 * no driver or no GPU. Safe to call in a Criterion test child. */
int wg_cuda_device_count(void);

/* A context on device `device` (0-based). NULL on failure with the reason in
 * wg_errmsg(). Owns its stream, cuBLAS handle, scratch and staging buffers. */
wg_cuda_t *wg_cuda_new(int device);
/* Synchronises, frees everything the context owns; accepts NULL / *ctx NULL. */
void wg_cuda_destroy(wg_cuda_t **ctx);

int wg_cuda_device(const wg_cuda_t *ctx);
/* The context's cudaStream_t, as void * so C callers need no CUDA headers. */
void *wg_cuda_stream(wg_cuda_t *ctx);
/* Wait for all work on the stream; reports asynchronous kernel faults. */
wg_status wg_cuda_sync(wg_cuda_t *ctx);
/* Device name and memory (free/total bytes as cudaMemGetInfo reports them). */
wg_status wg_cuda_mem_info(wg_cuda_t *ctx, size_t *free_bytes, size_t *total_bytes);
const char *wg_cuda_device_name(const wg_cuda_t *ctx);

/* ---- memory ---- */

/* Device allocation of `bytes` (> 0) on the context's device. */
wg_status wg_cuda_malloc(wg_cuda_t *ctx, size_t bytes, void **dptr);
/* Frees a wg_cuda_malloc pointer; NULL is a no-op. Synchronous (cudaFree). */
void wg_cuda_free(wg_cuda_t *ctx, void *dptr);
/* Host -> device copy on the stream. The host buffer may be pageable (then
 * the copy goes through the pinned staging buffer in chunks and returns once
 * the host memory may be reused) or pinned (then it is truly asynchronous and
 * the caller keeps it alive until the stream reaches the copy). */
wg_status wg_cuda_upload(wg_cuda_t *ctx, void *dst, const void *src, size_t bytes);
/* Device -> host copy; synchronises the stream before returning. */
wg_status wg_cuda_download(wg_cuda_t *ctx, void *dst, const void *src, size_t bytes);
wg_status wg_cuda_memset(wg_cuda_t *ctx, void *dst, int value, size_t bytes);
/* Device -> device copy on the stream. */
wg_status wg_cuda_copy(wg_cuda_t *ctx, void *dst, const void *src, size_t bytes);
/* Pinned (page-locked) host memory for fast and async transfers. */
wg_status wg_cuda_host_alloc(size_t bytes, void **hptr);
void wg_cuda_host_free(void *hptr);
/* Make the device scratch at least `bytes` large now (matmul needs
 * wg_cuda_matmul_scratch_bytes); required before graph capture, where
 * allocation is not allowed. */
wg_status wg_cuda_reserve_scratch(wg_cuda_t *ctx, size_t bytes);
/* Scratch bytes wg_cuda_matmul needs for these shapes. */
size_t wg_cuda_matmul_scratch_bytes(wg_type_t wtype, int64_t N, int64_t K, int64_t M);

/* ---- weights: uploaded once per model, freed on unload ---- */

/* A registry of device copies keyed by host pointer (the mmapped or owned
 * weight data). One per loaded model; destroying it frees every copy. */
wg_cuda_weights_t *wg_cuda_weights_new(wg_cuda_t *ctx);
void wg_cuda_weights_destroy(wg_cuda_weights_t **reg);
/* Device copy of host[0..bytes): uploaded on first request, then returned
 * from the registry. A second request for the same pointer with a different
 * size is WG_ERR_INVAL. *dev stays valid until the registry is destroyed. */
wg_status wg_cuda_weights_get(wg_cuda_weights_t *reg, const void *host, size_t bytes, const void **dev);
/* The device copy registered for `host`, or NULL (never uploads). */
const void *wg_cuda_weights_find(const wg_cuda_weights_t *reg, const void *host);
/* Register a device buffer the caller made (from wg_cuda_malloc, `bytes`
 * long) under the key `host`; the registry owns and frees it from then on.
 * WG_ERR_INVAL when the key is already taken (the buffer is not adopted). */
wg_status wg_cuda_weights_adopt(wg_cuda_weights_t *reg, const void *host, void *dev, size_t bytes);
size_t wg_cuda_weights_bytes(const wg_cuda_weights_t *reg);   /* device bytes held */
int64_t wg_cuda_weights_count(const wg_cuda_weights_t *reg);  /* tensors held */

/* ---- CUDA graphs (decode steps with fixed shapes) ---- */

/* Start capturing the context's stream: kernels enqueued until
 * wg_cuda_graph_end are recorded, not run. Reserve scratch first. */
wg_status wg_cuda_graph_begin(wg_cuda_t *ctx);
/* End the capture. If *graph is NULL a new executable graph is created;
 * otherwise the existing one is updated in place when the topology is
 * unchanged (cudaGraphExecUpdate) and re-instantiated when it is not. On
 * failure *graph is left as it was. */
wg_status wg_cuda_graph_end(wg_cuda_t *ctx, wg_cuda_graph_t **graph);
/* Replay a captured graph on the context's stream (asynchronous). */
wg_status wg_cuda_graph_launch(wg_cuda_t *ctx, wg_cuda_graph_t *graph);
void wg_cuda_graph_destroy(wg_cuda_graph_t **graph);

/* ---- conversions ---- */

/* Dequantize n_rows rows of k values of type t (rows contiguous, row size
 * wg_row_size(t, k)) to F32 / F16 (y has row stride k). Supported: F32, F16,
 * BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
 * IQ4_XS, MXFP4. F32 results are bit-exact with kernels/ref; F16 results are
 * those values rounded to nearest even. */
wg_status wg_cuda_dequant_f32(wg_cuda_t *ctx, wg_type_t t, const void *x, float *y, int64_t n_rows,
                              int64_t k);
wg_status wg_cuda_dequant_f16(wg_cuda_t *ctx, wg_type_t t, const void *x, uint16_t *y, int64_t n_rows,
                              int64_t k);
/* F32 -> F16 / BF16 (round to nearest even), n values. */
wg_status wg_cuda_f32_to_f16(wg_cuda_t *ctx, const float *x, uint16_t *y, int64_t n);
wg_status wg_cuda_f32_to_bf16(wg_cuda_t *ctx, const float *x, uint16_t *y, int64_t n);
/* Quantize n_rows rows of k floats (row stride `stride` floats, k % 32 == 0)
 * to Q8_1: y is [n_rows][k/32] wg_block_q8_1, byte-exact with
 * wg_k_quant_q8_1_ref. */
wg_status wg_cuda_quantize_q8_1(wg_cuda_t *ctx, const float *x, int64_t stride, void *y, int64_t n_rows,
                                int64_t k);

/* ---- matrix products: Y[M][N] = X[M][K] @ W[N][K]^T ---- */

/* True when wtype has device kernels (the types listed at wg_cuda_dequant_f32). */
bool wg_cuda_type_supported(wg_type_t wtype);
/* Quantized weights, M <= WG_CUDA_MMV_MAX_M: Xq is [M][K/32] Q8_1 blocks
 * (from wg_cuda_quantize_q8_1); integer dp4a dots, F32 accumulation. */
wg_status wg_cuda_mmvq(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K, const void *Xq,
                       int64_t M, float *Y);
/* F32 / F16 / BF16 weights, M <= WG_CUDA_MMV_MAX_M, F32 X (rounded to the
 * weight type first, as kernels/ref does). */
wg_status wg_cuda_mmv_float(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                            const float *X, int64_t M, float *Y);
/* cuBLAS path for any M: F32 weights -> SGEMM-equivalent GemmEx (no TF32);
 * F16 / BF16 weights with X rounded to the same type; quantized weights
 * dequantized to F16 in tiles of rows. F32 accumulation throughout. */
wg_status wg_cuda_gemm(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K, const float *X,
                       int64_t M, float *Y);
/* The dispatcher: M <= WG_CUDA_MMV_MAX_M -> mat-vec (quantizing X to Q8_1 in
 * scratch for block types), else wg_cuda_gemm. Uses the context's scratch. */
wg_status wg_cuda_matmul(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                         const float *X, int64_t M, float *Y);
/* wg_cuda_matmul for a caller that vouches X has not changed since the
 * previous wg_cuda_matmul on this context (e.g. the K and V projections after
 * Q, or up after gate): when that call quantized the same X (pointer, K, M)
 * to Q8_1, its copy in the scratch is used again instead of re-quantizing. */
wg_status wg_cuda_matmul_same_x(wg_cuda_t *ctx, wg_type_t wtype, const void *W, int64_t N, int64_t K,
                                const float *X, int64_t M, float *Y);

/* ---- fused elementwise / row ops (same semantics as wg_backend.h) ---- */

typedef enum {
    WG_CUDA_NORM_RMS,            /* x / sqrt(mean(x^2) + eps) * w */
    WG_CUDA_NORM_LAYER,          /* (x - mean) / sqrt(var + eps) * w + b */
    WG_CUDA_NORM_LAYER_NOPARAM,  /* layer norm, w and b ignored */
} wg_cuda_norm_t;

typedef enum {
    WG_CUDA_ROPE_NORM,  /* rotate interleaved pairs (x[2i], x[2i+1]) */
    WG_CUDA_ROPE_NEOX,  /* rotate halves (x[i], x[i + n_rot/2]) */
} wg_cuda_rope_style_t;

typedef enum {
    WG_CUDA_ACT_SILU,      /* x * sigmoid(x) */
    WG_CUDA_ACT_GELU,      /* tanh GELU with ggml's fp16 rounding (wg_gelu_ggml) */
    WG_CUDA_ACT_GELU_ERF,  /* exact erf GELU */
    WG_CUDA_ACT_RELU2,     /* relu(x)^2 */
} wg_cuda_act_t;

typedef enum {
    WG_CUDA_GATE_SOFTMAX,  /* router probabilities by softmax */
    WG_CUDA_GATE_SIGMOID,  /* independent sigmoids */
} wg_cuda_gate_t;

/* In-place norm of n_rows rows of n floats, row stride `stride`; w / b are
 * device vectors of n floats or NULL. */
wg_status wg_cuda_norm(wg_cuda_t *ctx, wg_cuda_norm_t kind, float *x, int64_t n_rows, int64_t n, int64_t stride,
                       const float *w, const float *b, float eps);

typedef struct {
    wg_cuda_rope_style_t style;  /* pair layout */
    int32_t n_rot;               /* rotated dims per head (even, <= head_dim) */
    float base;                  /* frequency base */
    float freq_scale;            /* linear position scaling (1 = none) */
    const float *freq_factors;   /* device [n_rot/2] divisors, or NULL */
    float ext_factor;            /* YaRN extrapolation mix (0 = off) */
    float attn_factor;           /* cos/sin magnitude (0 is taken as 1) */
    float corr_dims[2];          /* YaRN ramp between these rotary dims */
} wg_cuda_rope_t;

/* In-place RoPE of n_tok tokens x n_heads heads of head_dim floats; token t
 * starts at x + t*stride; pos is a device array [n_tok]. Angles are formed
 * as the CPU backend does (theta_i = pos * base^(-2i/n_rot) in float). */
wg_status wg_cuda_rope(wg_cuda_t *ctx, const wg_cuda_rope_t *r, float *x, int64_t n_tok, int32_t n_heads,
                       int32_t head_dim, int64_t stride, const int32_t *pos);

/* gate[i] = act(gate[i]) * up[i], or gate[i] = act(gate[i]) when up is NULL. */
wg_status wg_cuda_act(wg_cuda_t *ctx, wg_cuda_act_t act, float *gate, const float *up, int64_t n);

/* In-place softmax of n_rows rows of n floats (row stride `stride`), after
 * multiplying by `scale`. */
wg_status wg_cuda_softmax(wg_cuda_t *ctx, float *x, int64_t n_rows, int64_t n, int64_t stride, float scale);

/* ---- small ops the device forward pass composes (wg_cuda_ew.cu) ---- */

/* out[r][0..k) = dequantized row ids[r] of `table` (rows of row_bytes bytes,
 * type t, k values), times `scale` (1 = none); ids is a device [n] array. */
wg_status wg_cuda_get_rows(wg_cuda_t *ctx, wg_type_t t, const void *table, size_t row_bytes, int64_t k,
                           const int32_t *ids, int64_t n, float *out, float scale);
/* y[i] += a[i] for i < n. */
wg_status wg_cuda_add(wg_cuda_t *ctx, float *y, const float *a, int64_t n);
/* x[i] = (a[i] + b[i]) + x[i] (parallel attention + FFN residual). */
wg_status wg_cuda_add2(wg_cuda_t *ctx, float *x, const float *a, const float *b, int64_t n);
/* y[r][j] += b[j] for r < M, j < N (bias broadcast over rows). */
wg_status wg_cuda_add_bias(wg_cuda_t *ctx, float *y, const float *b, int64_t M, int64_t N);
/* x[i] = clamp(x[i], -c, c). */
wg_status wg_cuda_clamp(wg_cuda_t *ctx, float *x, int64_t n, float c);
/* x[i] = tanh(x[i] / c) * c (logit soft-cap). */
wg_status wg_cuda_softcap(wg_cuda_t *ctx, float *x, int64_t n, float c);
/* Strided copy of `rows` rows of `cols` floats: dst + r*dst_stride <- src + r*src_stride. */
wg_status wg_cuda_copy_rows(wg_cuda_t *ctx, float *dst, int64_t dst_stride, const float *src, int64_t src_stride,
                            int64_t rows, int64_t cols);

/* ---- attention over a device-side paged KV cache ---- */

/* Device mirror of wg_kv.h's pool: block b holds, for every layer, K of
 * block_tokens positions then V: [n_blocks][n_layer][K: bt*k_dim | V: bt*v_dim]
 * floats. Position p of sequence s lives in block
 * block_table[s*max_blocks + p/bt], slot p % bt. */
typedef struct {
    const float *pool;           /* device pool, layout above */
    int32_t n_layer;             /* layers per block */
    int32_t k_dim;               /* floats per key (n_head_kv * head_dim) */
    int32_t v_dim;               /* floats per value (n_head_kv * head_dim_v) */
    int32_t block_tokens;        /* positions per block */
    const int32_t *block_table;  /* device [n_seq][max_blocks] block ids */
    int32_t max_blocks;          /* row stride of block_table */
} wg_cuda_kv_t;

typedef struct {
    int32_t layer;          /* layer index */
    int64_t n_tok;          /* query tokens */
    const int32_t *seq;     /* device [n_tok] sequence ids (decode); unused by prefill */
    const int32_t *pos;     /* device [n_tok] positions (decode); unused by prefill */
    const float *q;         /* device [n_tok][q_stride], head h at h*head_dim */
    int64_t q_stride;       /* floats between tokens in q */
    float *out;             /* device [n_tok][n_head*head_dim_v] */
    int32_t n_head;         /* query heads */
    int32_t n_head_kv;      /* kv heads (n_head % n_head_kv == 0) */
    int32_t head_dim;       /* key/query dims (<= 256) */
    int32_t head_dim_v;     /* value dims (<= 256) */
    float scale;            /* logit scale */
    int32_t window;         /* sliding window (0 = full): keys with pos - kpos < window */
    float softcap;          /* logit soft-cap (0 = off) */
    const float *sinks;     /* device [n_head] sink logits, or NULL */
} wg_cuda_attn_t;

/* Write this step's keys and values into the cache: token t (device seq[t],
 * pos[t]) gets k + t*k_stride (kv->k_dim floats) and v + t*v_stride
 * (kv->v_dim floats) in `layer`. The pool is written through kv->pool. */
wg_status wg_cuda_kv_store(wg_cuda_t *ctx, const wg_cuda_kv_t *kv, int32_t layer, int64_t n_tok,
                           const int32_t *seq, const int32_t *pos, const float *k, int64_t k_stride,
                           const float *v, int64_t v_stride);

/* Decode-style attention: each token t attends to positions 0..pos[t] of
 * sequence seq[t] (K/V of this step already written). Any mix of sequences
 * and positions; one thread block per (token, head) with an online softmax
 * split across warps. */
wg_status wg_cuda_attention_decode(wg_cuda_t *ctx, const wg_cuda_kv_t *kv, const wg_cuda_attn_t *a);
/* Prefill: a->n_tok consecutive positions pos0 .. pos0+n_tok-1 of ONE
 * sequence `seq` (causal, sliding window, soft-cap, sinks as decode).
 * Flash-attention style: query tiles x key tiles in shared memory with an
 * online softmax; a->seq / a->pos are ignored. */
wg_status wg_cuda_attention_prefill(wg_cuda_t *ctx, const wg_cuda_kv_t *kv, const wg_cuda_attn_t *a,
                                    int32_t seq, int32_t pos0);

/* ---- mixture of experts ---- */

/* Route n_tok tokens over n_exp experts (logits device [n_tok][n_exp]):
 * probabilities by gate, top-k (ties to the lower expert id, the order of
 * engine/model) into ids [n_tok][k] and weights [n_tok][k], renormalised to
 * sum 1 when `renorm`. k <= n_exp <= 1024, k <= 64. */
wg_status wg_cuda_moe_route(wg_cuda_t *ctx, const float *logits, int64_t n_tok, int32_t n_exp, int32_t k,
                            wg_cuda_gate_t gate, bool renorm, int32_t *ids, float *weights);
/* Group (token, slot) pairs by expert: counts [n_exp], offsets [n_exp+1]
 * (exclusive prefix of counts) and rows [n_tok*k] = t*k + s listed expert by
 * expert, ascending within one expert. */
wg_status wg_cuda_moe_plan(wg_cuda_t *ctx, const int32_t *ids, int64_t n_tok, int32_t k, int32_t n_exp,
                           int32_t *counts, int32_t *offsets, int32_t *rows);
/* dst[r][0..cols) = src[idx[r] / div][0..cols) for r < n (row strides in floats).
 * With div = k and idx = plan rows this gathers each expert's input tokens. */
wg_status wg_cuda_gather_rows(wg_cuda_t *ctx, const float *src, int64_t src_stride, const int32_t *idx,
                              int32_t div, int64_t n, float *dst, int64_t dst_stride, int64_t cols);
/* dst[idx[r]][..] = src[r][..] for r < n (row strides in floats). */
wg_status wg_cuda_scatter_rows(wg_cuda_t *ctx, const float *src, int64_t src_stride, const int32_t *idx,
                               int64_t n, float *dst, int64_t dst_stride, int64_t cols);
/* out[t] = sum_s weights[t][s] * slots[t*k + s] in slot order (slots
 * [n_tok*k][cols], out [n_tok][cols]). */
wg_status wg_cuda_moe_combine(wg_cuda_t *ctx, const float *slots, const float *weights, int64_t n_tok,
                              int32_t k, int64_t cols, float *out);

/* ---- sampling support ---- */

/* Top-k of each of n_rows rows of n floats (row stride `stride`): vals / idx
 * [n_rows][k] in descending order, ties to the lower index; NaN counts as
 * -inf. 1 <= k <= min(n, 1024). Top-p / temperature then run on the host
 * over these k candidates. */
wg_status wg_cuda_topk(wg_cuda_t *ctx, const float *x, int64_t n_rows, int64_t n, int64_t stride, int32_t k,
                       float *vals, int32_t *idx);

/* ---- host emulation (no GPU needed) ---- */

/* The device decode and dot code compiled for the host, for testing the index
 * arithmetic on machines without a GPU: dequantize one row of k values, and
 * the mmvq dot of one weight row with one Q8_1 row (xq: k/32 blocks). Return
 * WG_ERR_UNSUPPORTED for a type without device kernels. */
wg_status wg_cuda_emu_dequant_row(wg_type_t t, const void *x, float *y, int64_t k);
wg_status wg_cuda_emu_dot_q8_1(wg_type_t t, const void *w, const void *xq, int64_t k, float *out);

#ifdef __cplusplus
}
#endif

#endif
