/* wg_cuda_ops — row and elementwise ops with the semantics of the CPU backend
 * (engine/model/wg_backend_cpu.c): norms, RoPE, gated activations, softmax,
 * MoE routing / grouping / gather / combine, and top-k for sampling.
 *
 * Reductions are per row inside one CTA (warp shuffles, then one warp over the
 * per-warp partials); results differ from the CPU's double accumulation only
 * by float rounding. RoPE forms angles exactly as the CPU does (the same
 * repeated float multiplication by theta_scale), so only sin/cos ulps differ. */
#include <math.h>

#include "wg_cuda_decode.cuh"
#include "wg_cuda_internal.h"

#define WG_ROW_THREADS 256

__device__ __forceinline__ float s_wsum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float s_wmax(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum / max over the CTA (blockDim.x a multiple of 32, <= 1024); every
 * thread gets the result. `sh` holds 33 floats. */
__device__ float s_block_sum(float v, float *sh) {
    const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
    v = s_wsum(v);
    __syncthreads(); /* sh may still be read by a previous reduction */
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    v = s_wsum(v);
    return v;
}
__device__ float s_block_max(float v, float *sh) {
    const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
    v = s_wmax(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    v = s_wmax(v);
    return v;
}

/* ---- norms ---- */

__global__ void k_norm(int kind, float *x, int64_t n, int64_t stride, const float *w, const float *b, float eps) {
    __shared__ float sh[33];
    float *v = x + blockIdx.x * stride;
    float scale;
    if (kind == WG_CUDA_NORM_RMS) {
        float s = 0.0f;
#pragma unroll 8 /* loads in flight: one row per CTA leaves little else to hide latency */
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i] * v[i];
        s = s_block_sum(s, sh);
        scale = 1.0f / sqrtf(s / (float)n + eps);
    } else {
        float s = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
        const float mean = s_block_sum(s, sh) / (float)n;
        float s2 = 0.0f;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float c = v[i] - mean;
            v[i] = c; /* each thread rewrites only its own elements */
            s2 += c * c;
        }
        scale = 1.0f / sqrtf(s_block_sum(s2, sh) / (float)n + eps);
    }
    const bool param = kind != WG_CUDA_NORM_LAYER_NOPARAM;
#pragma unroll 8
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float y = v[i] * scale;
        if (param && w) y *= w[i];
        if (param && b) y += b[i];
        v[i] = y;
    }
}

extern "C" wg_status wg_cuda_norm(wg_cuda_t *ctx, wg_cuda_norm_t kind, float *x, int64_t n_rows, int64_t n,
                                  int64_t stride, const float *w, const float *b, float eps) {
    WG_CU_CHECK(n_rows >= 0 && n > 0 && stride >= n && n_rows <= 0x7fffffff,
                "cuda norm: bad shape n_rows=%lld n=%lld stride=%lld", (long long)n_rows, (long long)n,
                (long long)stride);
    WG_CU_CHECK(kind == WG_CUDA_NORM_RMS || kind == WG_CUDA_NORM_LAYER || kind == WG_CUDA_NORM_LAYER_NOPARAM,
                "cuda norm: kind=%d", (int)kind);
    if (n_rows == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_norm<<<(unsigned)n_rows, WG_ROW_THREADS, 0, ctx->stream>>>((int)kind, x, n, stride, w, b, eps);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- RoPE: one thread per (token, head, pair) ---- */

typedef struct {
    float ext_factor, attn_factor, mscale; /* YaRN mix, magnitude, YaRN magnitude */
    float corr0, corr1;                    /* YaRN ramp dims */
} s_yarn_t;

__global__ void k_rope(int neox, int32_t nr, float theta_scale, float freq_scale, const float *ff, s_yarn_t y,
                       float *x, int64_t n_tok, int32_t n_heads, int32_t head_dim, int64_t stride,
                       const int32_t *pos) {
    const int64_t half = nr / 2;
    const int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (id >= n_tok * n_heads * half) return;
    const int32_t i = (int32_t)(id % half);
    const int64_t th = id / half;
    const int32_t h = (int32_t)(th % n_heads);
    const int64_t t = th / n_heads;
    float theta = (float)pos[t];
    for (int32_t j = 0; j < i; j++) theta *= theta_scale; /* the CPU's incremental angle, bit for bit */
    const float extrap = theta / (ff ? ff[i] : 1.0f);
    float ang = freq_scale * extrap, ms = y.attn_factor;
    if (y.ext_factor != 0.0f) { /* YaRN ramp, as the CPU backend */
        const float r = ((float)i - y.corr0) / fmaxf(0.001f, y.corr1 - y.corr0);
        const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, r))) * y.ext_factor;
        ang = ang * (1.0f - ramp) + extrap * ramp;
        ms *= y.mscale;
    }
    const float c = cosf(ang) * ms, s = sinf(ang) * ms;
    float *v = x + t * stride + (int64_t)h * head_dim;
    const int32_t i0 = neox ? i : 2 * i, i1 = neox ? i + nr / 2 : 2 * i + 1;
    const float x0 = v[i0], x1 = v[i1];
    v[i0] = x0 * c - x1 * s;
    v[i1] = x0 * s + x1 * c;
}

extern "C" wg_status wg_cuda_rope(wg_cuda_t *ctx, const wg_cuda_rope_t *r, float *x, int64_t n_tok,
                                  int32_t n_heads, int32_t head_dim, int64_t stride, const int32_t *pos) {
    WG_ASSERT(r);
    WG_CU_CHECK(r->n_rot >= 0 && r->n_rot % 2 == 0 && r->n_rot <= head_dim && n_tok >= 0 && n_heads > 0 &&
                    stride >= (int64_t)n_heads * head_dim,
                "cuda rope: n_rot=%d head_dim=%d n_heads=%d stride=%lld", r->n_rot, head_dim, n_heads,
                (long long)stride);
    WG_CU_CHECK(r->style == WG_CUDA_ROPE_NORM || r->style == WG_CUDA_ROPE_NEOX, "cuda rope: style=%d",
                (int)r->style);
    if (n_tok == 0 || r->n_rot == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    const float theta_scale = powf(r->base, -2.0f / (float)r->n_rot); /* same host powf as the CPU backend */
    const int64_t n = n_tok * n_heads * (r->n_rot / 2);
    s_yarn_t y;
    y.ext_factor = r->ext_factor;
    y.attn_factor = r->attn_factor != 0.0f ? r->attn_factor : 1.0f;
    y.mscale = r->ext_factor != 0.0f ? 1.0f + 0.1f * logf(1.0f / r->freq_scale) : 1.0f;
    y.corr0 = r->corr_dims[0];
    y.corr1 = r->corr_dims[1];
    k_rope<<<wg_cuda_blocks(n, 256), 256, 0, ctx->stream>>>(r->style == WG_CUDA_ROPE_NEOX, r->n_rot, theta_scale,
                                                             r->freq_scale, r->freq_factors, y, x, n_tok, n_heads,
                                                             head_dim, stride, pos);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- activations ---- */

__device__ __forceinline__ float s_gelu_ggml(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    const float xh = wg_fp16_to_fp32(wg_fp32_to_fp16(x));
    const float y = 0.5f * xh * (1.0f + tanhf(0.79788456080286535587989211986876f * xh * (1.0f + 0.044715f * xh * xh)));
    return wg_fp16_to_fp32(wg_fp32_to_fp16(y));
}

__device__ __forceinline__ float s_act1(int act, float x) {
    switch (act) {
    case WG_CUDA_ACT_SILU: return x / (1.0f + expf(-x));
    case WG_CUDA_ACT_GELU: return s_gelu_ggml(x);
    case WG_CUDA_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case WG_CUDA_ACT_RELU2: return x > 0.0f ? x * x : 0.0f;
    }
    return x;
}

__global__ void k_act(int act, float *g, const float *u, int64_t n) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float a = s_act1(act, g[i]);
    g[i] = u ? a * u[i] : a;
}

extern "C" wg_status wg_cuda_act(wg_cuda_t *ctx, wg_cuda_act_t act, float *gate, const float *up, int64_t n) {
    WG_CU_CHECK(n >= 0 && (int)act >= WG_CUDA_ACT_SILU && (int)act <= WG_CUDA_ACT_RELU2, "cuda act: act=%d n=%lld",
                (int)act, (long long)n);
    if (n == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_act<<<wg_cuda_blocks(n, 256), 256, 0, ctx->stream>>>((int)act, gate, up, n);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- softmax ---- */

__global__ void k_softmax(float *x, int64_t n, int64_t stride, float scale) {
    __shared__ float sh[33];
    float *v = x + blockIdx.x * stride;
    float mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, v[i] * scale);
    mx = s_block_max(mx, sh);
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float e = expf(v[i] * scale - mx);
        v[i] = e;
        s += e;
    }
    const float inv = 1.0f / s_block_sum(s, sh);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v[i] *= inv;
}

extern "C" wg_status wg_cuda_softmax(wg_cuda_t *ctx, float *x, int64_t n_rows, int64_t n, int64_t stride,
                                     float scale) {
    WG_CU_CHECK(n_rows >= 0 && n > 0 && stride >= n && n_rows <= 0x7fffffff,
                "cuda softmax: bad shape n_rows=%lld n=%lld stride=%lld", (long long)n_rows, (long long)n,
                (long long)stride);
    if (n_rows == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_softmax<<<(unsigned)n_rows, WG_ROW_THREADS, 0, ctx->stream>>>(x, n, stride, scale);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- MoE ---- */

/* Warp argmax with ties to the lower index. */
__device__ __forceinline__ void s_wargmax(float &v, int &i) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) {
            v = ov;
            i = oi;
        }
    }
}

/* One warp per token; probabilities and taken flags in shared memory. */
__global__ void k_moe_route(const float *logits, int64_t n_tok, int32_t n_exp, int32_t k, int sigmoid, int renorm,
                            int32_t *ids, float *weights) {
    extern __shared__ float sp[]; /* [n_exp] probs, then [n_exp] taken flags */
    float *taken = sp + n_exp;
    const int lane = threadIdx.x;
    const int64_t t = blockIdx.x;
    const float *l = logits + t * n_exp;
    for (int i = lane; i < n_exp; i += 32) {
        sp[i] = sigmoid ? 1.0f / (1.0f + expf(-l[i])) : l[i];
        taken[i] = 0.0f;
    }
    __syncwarp();
    if (!sigmoid) {
        float mx = -INFINITY;
        for (int i = lane; i < n_exp; i += 32) mx = fmaxf(mx, sp[i]);
        mx = s_wmax(mx);
        float s = 0.0f;
        for (int i = lane; i < n_exp; i += 32) {
            sp[i] = expf(sp[i] - mx);
            s += sp[i];
        }
        const float inv = 1.0f / s_wsum(s);
        for (int i = lane; i < n_exp; i += 32) sp[i] *= inv;
    }
    __syncwarp();
    float wsum = 0.0f;
    for (int s = 0; s < k; s++) {
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int i = lane; i < n_exp; i += 32)
            if (taken[i] == 0.0f && (sp[i] > bv || bi == 0x7fffffff)) {
                bv = sp[i];
                bi = i;
            }
        s_wargmax(bv, bi);
        if (lane == 0) {
            taken[bi] = 1.0f;
            ids[t * k + s] = bi;
            weights[t * k + s] = bv;
            wsum += bv; /* slot order, as the CPU sums */
        }
        __syncwarp();
    }
    if (renorm && lane == 0)
        for (int s = 0; s < k; s++) weights[t * k + s] /= wsum;
}

extern "C" wg_status wg_cuda_moe_route(wg_cuda_t *ctx, const float *logits, int64_t n_tok, int32_t n_exp,
                                       int32_t k, wg_cuda_gate_t gate, bool renorm, int32_t *ids, float *weights) {
    WG_CU_CHECK(n_tok >= 0 && n_tok <= 0x7fffffff && n_exp > 0 && n_exp <= 1024 && k > 0 && k <= n_exp && k <= 64,
                "cuda moe_route: n_tok=%lld n_exp=%d k=%d", (long long)n_tok, n_exp, k);
    if (n_tok == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_moe_route<<<(unsigned)n_tok, 32, 2 * (size_t)n_exp * sizeof(float), ctx->stream>>>(
        logits, n_tok, n_exp, k, gate == WG_CUDA_GATE_SIGMOID, renorm, ids, weights);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* One CTA: thread e counts expert e, thread 0 scans, then thread e lists its
 * (token, slot) pairs in order. O(n_exp * n) total work spread over n_exp
 * threads: fine for routing tables of a few thousand entries. */
__global__ void k_moe_plan(const int32_t *ids, int64_t n, int32_t n_exp, int32_t *counts, int32_t *offsets,
                           int32_t *rows) {
    for (int e = threadIdx.x; e < n_exp; e += blockDim.x) {
        int32_t c = 0;
        for (int64_t r = 0; r < n; r++) c += ids[r] == e;
        counts[e] = c;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int32_t acc = 0;
        for (int e = 0; e < n_exp; e++) {
            offsets[e] = acc;
            acc += counts[e];
        }
        offsets[n_exp] = acc;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < n_exp; e += blockDim.x) {
        int32_t o = offsets[e];
        for (int64_t r = 0; r < n; r++)
            if (ids[r] == e) rows[o++] = (int32_t)r;
    }
}

extern "C" wg_status wg_cuda_moe_plan(wg_cuda_t *ctx, const int32_t *ids, int64_t n_tok, int32_t k, int32_t n_exp,
                                      int32_t *counts, int32_t *offsets, int32_t *rows) {
    WG_CU_CHECK(n_tok >= 0 && k > 0 && n_exp > 0 && n_tok * k <= 0x7fffffff, "cuda moe_plan: n_tok=%lld k=%d n_exp=%d",
                (long long)n_tok, k, n_exp);
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_moe_plan<<<1, 256, 0, ctx->stream>>>(ids, n_tok * k, n_exp, counts, offsets, rows);
    WG_CU_LAUNCHED();
    return WG_OK;
}

__global__ void k_gather(const float *src, int64_t ss, const int32_t *idx, int32_t div, float *dst, int64_t ds,
                         int64_t cols) {
    const int64_t r = blockIdx.y;
    const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c < cols) dst[r * ds + c] = src[(int64_t)(idx[r] / div) * ss + c];
}

__global__ void k_scatter(const float *src, int64_t ss, const int32_t *idx, float *dst, int64_t ds, int64_t cols) {
    const int64_t r = blockIdx.y;
    const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c < cols) dst[(int64_t)idx[r] * ds + c] = src[r * ss + c];
}

extern "C" wg_status wg_cuda_gather_rows(wg_cuda_t *ctx, const float *src, int64_t src_stride, const int32_t *idx,
                                         int32_t div, int64_t n, float *dst, int64_t dst_stride, int64_t cols) {
    WG_CU_CHECK(n >= 0 && n <= 65535 * 1024 && div > 0 && cols > 0, "cuda gather: n=%lld div=%d cols=%lld",
                (long long)n, div, (long long)cols);
    if (n == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    for (int64_t r0 = 0; r0 < n; r0 += 65535) { /* grid.y limit */
        const int64_t nr = n - r0 < 65535 ? n - r0 : 65535;
        k_gather<<<dim3(wg_cuda_blocks(cols, 256), (unsigned)nr), 256, 0, ctx->stream>>>(
            src, src_stride, idx + r0, div, dst + r0 * dst_stride, dst_stride, cols);
        WG_CU_LAUNCHED();
    }
    return WG_OK;
}

extern "C" wg_status wg_cuda_scatter_rows(wg_cuda_t *ctx, const float *src, int64_t src_stride, const int32_t *idx,
                                          int64_t n, float *dst, int64_t dst_stride, int64_t cols) {
    WG_CU_CHECK(n >= 0 && cols > 0, "cuda scatter: n=%lld cols=%lld", (long long)n, (long long)cols);
    if (n == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    for (int64_t r0 = 0; r0 < n; r0 += 65535) {
        const int64_t nr = n - r0 < 65535 ? n - r0 : 65535;
        k_scatter<<<dim3(wg_cuda_blocks(cols, 256), (unsigned)nr), 256, 0, ctx->stream>>>(
            src + r0 * src_stride, src_stride, idx + r0, dst, dst_stride, cols);
        WG_CU_LAUNCHED();
    }
    return WG_OK;
}

__global__ void k_moe_combine(const float *slots, const float *w, int64_t n_tok, int32_t k, int64_t cols, float *out) {
    const int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (id >= n_tok * cols) return;
    const int64_t t = id / cols, c = id % cols;
    float acc = slots[(t * k) * cols + c] * w[t * k];
    for (int32_t s = 1; s < k; s++) acc += slots[(t * k + s) * cols + c] * w[t * k + s];
    out[id] = acc;
}

extern "C" wg_status wg_cuda_moe_combine(wg_cuda_t *ctx, const float *slots, const float *weights, int64_t n_tok,
                                         int32_t k, int64_t cols, float *out) {
    WG_CU_CHECK(n_tok >= 0 && k > 0 && cols > 0, "cuda moe_combine: n_tok=%lld k=%d cols=%lld", (long long)n_tok, k,
                (long long)cols);
    if (n_tok == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_moe_combine<<<wg_cuda_blocks(n_tok * cols, 256), 256, 0, ctx->stream>>>(slots, weights, n_tok, k, cols, out);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- top-k: k passes of a CTA argmax over the elements after the previous
 * pick in (value desc, index asc) order ---- */

__global__ void k_topk(const float *x, int64_t n, int64_t stride, int32_t k, float *vals, int32_t *idx) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *row = x + blockIdx.x * stride;
    const int lane = threadIdx.x % 32, wid = threadIdx.x / 32, nw = blockDim.x / 32;
    float pv = INFINITY;
    int64_t pi = -1;
    for (int32_t s = 0; s < k; s++) {
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float v = row[i];
            if (v != v) v = -INFINITY;
            const bool after = v < pv || (v == pv && i > pi);
            if (after && (v > bv || bi == 0x7fffffff)) {
                bv = v;
                bi = (int)i;
            }
        }
        s_wargmax(bv, bi);
        __syncthreads();
        if (lane == 0) {
            sv[wid] = bv;
            si[wid] = bi;
        }
        __syncthreads();
        bv = lane < nw ? sv[lane] : -INFINITY;
        bi = lane < nw ? si[lane] : 0x7fffffff;
        s_wargmax(bv, bi);
        /* every warp now holds the same (bv, bi) */
        if (threadIdx.x == 0) {
            vals[(int64_t)blockIdx.x * k + s] = bv;
            idx[(int64_t)blockIdx.x * k + s] = bi;
        }
        pv = bv;
        pi = bi;
    }
}

extern "C" wg_status wg_cuda_topk(wg_cuda_t *ctx, const float *x, int64_t n_rows, int64_t n, int64_t stride,
                                  int32_t k, float *vals, int32_t *idx) {
    WG_CU_CHECK(n_rows >= 0 && n_rows <= 0x7fffffff && n > 0 && n < 0x7fffffff && stride >= n && k >= 1 &&
                    k <= 1024 && k <= n,
                "cuda topk: n_rows=%lld n=%lld stride=%lld k=%d", (long long)n_rows, (long long)n, (long long)stride,
                k);
    if (n_rows == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    k_topk<<<(unsigned)n_rows, 512, 0, ctx->stream>>>(x, n, stride, k, vals, idx);
    WG_CU_LAUNCHED();
    return WG_OK;
}
