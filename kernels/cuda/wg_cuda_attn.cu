/* wg_cuda_attn — attention over the device paged KV cache.
 *
 * Semantics are the CPU backend's (wg_backend_cpu.c s_attn_worker): scores
 * q.k * scale, optional tanh soft-cap, causal with an optional sliding window
 * (keys with pos - kpos < window), optional per-head sink logit in the
 * softmax denominator, GQA by kv head h / (n_head / n_head_kv).
 *
 * Decode: one CTA per (token, head); its warps take interleaved chunks of 32
 * keys (lane = key for the scores, lane = value dimension for the V sum),
 * each keeping an online softmax (running max m, sum l, weighted V sum),
 * merged through shared memory at the end. Prefill: flash-attention style — a CTA
 * owns BQ consecutive queries of one head, walks key tiles of BK positions
 * staged in shared memory, and every warp keeps online-softmax state for its
 * BQ/4 queries (lane = key for scores, lane = value dim for the V sum). */
#include <math.h>

#include "wg_cuda_internal.h"

#define WG_ATTN_MAX_D 256  /* head_dim and head_dim_v limit */
#define WG_ATTN_WARPS 4
#define WG_FA_BQ 16
#define WG_FA_BK 32

typedef struct {
    const float *pool;      /* device pool */
    int64_t block_floats;   /* floats per block (all layers) */
    int64_t layer_off;      /* floats to this layer inside a block */
    int64_t v_off;          /* floats from a layer's K part to its V part: bt*k_dim */
    int32_t k_dim, v_dim;   /* floats per key / value vector */
    int32_t bt;             /* tokens per block */
    const int32_t *table;   /* block table */
    int32_t max_blocks;     /* its row stride */
} s_kv_t;

__device__ __forceinline__ const float *s_key(const s_kv_t &kv, int32_t seq, int32_t p, int32_t hk, int32_t hd) {
    const int64_t blk = kv.table[(int64_t)seq * kv.max_blocks + p / kv.bt];
    return kv.pool + blk * kv.block_floats + kv.layer_off + (int64_t)(p % kv.bt) * kv.k_dim + (int64_t)hk * hd;
}
__device__ __forceinline__ const float *s_val(const s_kv_t &kv, int32_t seq, int32_t p, int32_t hk, int32_t hdv) {
    const int64_t blk = kv.table[(int64_t)seq * kv.max_blocks + p / kv.bt];
    return kv.pool + blk * kv.block_floats + kv.layer_off + kv.v_off + (int64_t)(p % kv.bt) * kv.v_dim +
           (int64_t)hk * hdv;
}

/* The layout of one layer of the device pool (see wg_cuda_kv_t). */
static s_kv_t s_kv_view(const wg_cuda_kv_t *kv, int32_t layer) {
    const int64_t lf = (int64_t)kv->block_tokens * (kv->k_dim + kv->v_dim);
    return (s_kv_t){kv->pool, lf * kv->n_layer, lf * layer, (int64_t)kv->block_tokens * kv->k_dim, kv->k_dim,
                    kv->v_dim, kv->block_tokens, kv->block_table, kv->max_blocks};
}

/* ---- K/V store: one thread per float of a token's K or V ---- */

__global__ void k_kv_store(s_kv_t kv, int64_t n_tok, const int32_t *seq, const int32_t *pos, const float *k,
                           int64_t k_stride, const float *v, int64_t v_stride) {
    const int64_t w = kv.k_dim + kv.v_dim;
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n_tok * w) return;
    const int64_t t = i / w, j = i % w;
    if (j < kv.k_dim)
        ((float *)s_key(kv, seq[t], pos[t], 0, 0))[j] = k[t * k_stride + j];
    else
        ((float *)s_val(kv, seq[t], pos[t], 0, 0))[j - kv.k_dim] = v[t * v_stride + (j - kv.k_dim)];
}

extern "C" wg_status wg_cuda_kv_store(wg_cuda_t *ctx, const wg_cuda_kv_t *kv, int32_t layer, int64_t n_tok,
                                      const int32_t *seq, const int32_t *pos, const float *k, int64_t k_stride,
                                      const float *v, int64_t v_stride) {
    WG_ASSERT(kv);
    WG_CU_CHECK(layer >= 0 && layer < kv->n_layer && n_tok >= 0 && kv->k_dim > 0 && kv->v_dim >= 0 &&
                    kv->block_tokens > 0 && k_stride >= kv->k_dim && v_stride >= kv->v_dim,
                "cuda kv_store: layer=%d/%d n_tok=%lld k_dim=%d v_dim=%d", layer, kv->n_layer, (long long)n_tok,
                kv->k_dim, kv->v_dim);
    if (n_tok == 0) return WG_OK;
    wg_status st = wg_cuda_enter(ctx);
    if (st) return st;
    const int64_t n = n_tok * (kv->k_dim + kv->v_dim);
    k_kv_store<<<wg_cuda_blocks(n, 256), 256, 0, ctx->stream>>>(s_kv_view(kv, layer), n_tok, seq, pos, k, k_stride,
                                                                v, v_stride);
    WG_CU_LAUNCHED();
    return WG_OK;
}

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

typedef struct {
    int32_t n_head, n_head_kv, hd, hdv;  /* head shapes */
    float scale, softcap;                /* logit scale, soft-cap (0 = off) */
    int32_t window;                      /* sliding window (0 = full) */
    const float *sinks;                  /* [n_head] or NULL */
    const float *q;                      /* queries */
    int64_t q_stride;                    /* floats between tokens */
    float *out;                          /* [n_tok][n_head*hdv] */
    int vec4;                            /* key rows are 16-byte aligned: float4 loads */
} s_args_t;

__device__ __forceinline__ float s_logit(const s_args_t &a, float d) {
    d *= a.scale;
    if (a.softcap > 0.0f) d = a.softcap * tanhf(d / a.softcap);
    return d;
}

/* ---- decode ---- */

/* Partial result of one key segment (split decode): running max, sum and
 * the un-normalized weighted V sum, hdv floats. */
#define S_PART_FLOATS(hdv) (2 + (int64_t)(hdv))

__global__ void __launch_bounds__(32 * WG_ATTN_WARPS)
    k_attn_decode(s_kv_t kv, s_args_t a, const int32_t *seqs, const int32_t *poss, float *part) {
    __shared__ float qs[WG_ATTN_MAX_D];
    __shared__ float wm[WG_ATTN_WARPS], wl[WG_ATTN_WARPS];
    __shared__ float wacc[WG_ATTN_WARPS][WG_ATTN_MAX_D];
    const int32_t h = blockIdx.x;
    const int64_t t = blockIdx.y;
    const int32_t n_split = gridDim.z, sp = blockIdx.z;
    const int lane = threadIdx.x % 32, wid = threadIdx.x / 32;
    const int32_t hk = h / (a.n_head / a.n_head_kv);
    const int32_t seq = seqs[t], p = poss[t];
    int32_t p0 = (a.window > 0 && p - a.window + 1 > 0) ? p - a.window + 1 : 0;
    int32_t p1 = p;
    if (n_split > 1) { /* this CTA's segment of the visible keys, in whole chunks of 32 */
        const int32_t chunks = (p - p0 + 1 + 31) / 32, per = (chunks + n_split - 1) / n_split;
        const int32_t lo = p0 + sp * per * 32;
        p1 = min(p, lo + per * 32 - 1);
        p0 = lo;
    }
    const float *q = a.q + t * a.q_stride + (int64_t)h * a.hd;
    for (int i = threadIdx.x; i < a.hd; i += blockDim.x) qs[i] = q[i];
    __syncthreads();
    float m = -INFINITY, l = 0.0f, acc[WG_ATTN_MAX_D / 32];
#pragma unroll
    for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) acc[c] = 0.0f;
    /* Each warp takes chunks of 32 consecutive keys: lane = key for the
     * score (32 independent dot products in flight, not one warp-reduced dot
     * per key), then lane = value dimension for the weighted V sum. */
    for (int32_t j0 = p0 + 32 * wid; j0 <= p1; j0 += 32 * WG_ATTN_WARPS) {
        const int32_t j = j0 + lane;
        const bool in = j <= p1;
        float sc = -INFINITY;
        /* every lane looks up its own key's V row; the V loop below takes the
         * addresses by shuffle instead of a dependent block-table load each */
        const float *vrow = in ? s_val(kv, seq, j, hk, a.hdv) : NULL;
        if (in) {
            const float *k = s_key(kv, seq, j, hk, a.hd);
            float d = 0.0f;
            /* Unrolled so several loads of the row are in flight at once:
             * at batch 1 there are too few warps to hide their latency. */
            if (a.vec4) {
                const float4 *k4 = (const float4 *)k;
#pragma unroll 8
                for (int i = 0; i < a.hd / 4; i++) {
                    const float4 kk = k4[i];
                    d += qs[4 * i] * kk.x + qs[4 * i + 1] * kk.y + qs[4 * i + 2] * kk.z + qs[4 * i + 3] * kk.w;
                }
            } else {
#pragma unroll 8
                for (int i = 0; i < a.hd; i++) d += qs[i] * k[i];
            }
            sc = s_logit(a, d);
        }
        const float mt = s_wmax(sc); /* finite: key j0 <= p1 is visible */
        const float mn = fmaxf(m, mt);
        const float corr = expf(m - mn); /* 0 on the first chunk (m = -inf) */
        const float pw = in ? expf(sc - mn) : 0.0f;
        l = l * corr + s_wsum(pw);
#pragma unroll
        for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) acc[c] *= corr;
        const int32_t nk = min(32, p1 - j0 + 1);
#pragma unroll 8
        for (int jj = 0; jj < nk; jj++) {
            const float pj = __shfl_sync(0xffffffffu, pw, jj);
            const float *v = (const float *)__shfl_sync(0xffffffffu, (unsigned long long)vrow, jj);
#pragma unroll
            for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) {
                const int i = lane + 32 * c;
                if (i < a.hdv) acc[c] += pj * v[i];
            }
        }
        m = mn;
    }
    if (lane == 0) {
        wm[wid] = m;
        wl[wid] = l;
    }
#pragma unroll
    for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) {
        const int i = lane + 32 * c;
        if (i < a.hdv) wacc[wid][i] = acc[c];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < WG_ATTN_WARPS; w++) M = fmaxf(M, wm[w]);
    if (n_split > 1) {
        /* partial of this segment, merged over the warps; sinks and the
         * normalization are applied once, in k_attn_combine */
        float L = 0.0f, f[WG_ATTN_WARPS];
        for (int w = 0; w < WG_ATTN_WARPS; w++) {
            f[w] = wm[w] == -INFINITY ? 0.0f : expf(wm[w] - M);
            L += wl[w] * f[w];
        }
        float *o = part + ((t * a.n_head + h) * n_split + sp) * S_PART_FLOATS(a.hdv);
        if (threadIdx.x == 0) {
            o[0] = M;
            o[1] = L;
        }
        for (int i = threadIdx.x; i < a.hdv; i += blockDim.x) {
            float sum = 0.0f;
            for (int w = 0; w < WG_ATTN_WARPS; w++) sum += wacc[w][i] * f[w];
            o[2 + i] = sum;
        }
        return;
    }
    const float sink = a.sinks ? a.sinks[h] : -INFINITY;
    M = fmaxf(M, sink);
    float L = a.sinks ? expf(sink - M) : 0.0f;
    float f[WG_ATTN_WARPS];
    for (int w = 0; w < WG_ATTN_WARPS; w++) {
        f[w] = wm[w] == -INFINITY ? 0.0f : expf(wm[w] - M); /* a warp with no keys contributes nothing */
        L += wl[w] * f[w];
    }
    const float inv = 1.0f / L;
    float *o = a.out + t * (int64_t)a.n_head * a.hdv + (int64_t)h * a.hdv;
    for (int i = threadIdx.x; i < a.hdv; i += blockDim.x) {
        float s = 0.0f;
        for (int w = 0; w < WG_ATTN_WARPS; w++) s += wacc[w][i] * f[w];
        o[i] = s * inv;
    }
}

/* Merge the n_split segment partials of each (token, head): one CTA each. */
__global__ void k_attn_combine(s_args_t a, const float *part, int32_t n_split) {
    const int32_t h = blockIdx.x;
    const int64_t t = blockIdx.y;
    const float *pp = part + (t * a.n_head + h) * n_split * S_PART_FLOATS(a.hdv);
    float M = a.sinks ? a.sinks[h] : -INFINITY;
    for (int32_t s = 0; s < n_split; s++) M = fmaxf(M, pp[s * S_PART_FLOATS(a.hdv)]);
    float L = a.sinks ? expf(a.sinks[h] - M) : 0.0f;
    for (int32_t s = 0; s < n_split; s++) {
        const float ms = pp[s * S_PART_FLOATS(a.hdv)];
        if (ms != -INFINITY) L += pp[s * S_PART_FLOATS(a.hdv) + 1] * expf(ms - M);
    }
    const float inv = 1.0f / L;
    float *o = a.out + t * (int64_t)a.n_head * a.hdv + (int64_t)h * a.hdv;
    for (int i = threadIdx.x; i < a.hdv; i += blockDim.x) {
        float sum = 0.0f;
        for (int32_t s = 0; s < n_split; s++) {
            const float ms = pp[s * S_PART_FLOATS(a.hdv)];
            if (ms != -INFINITY) sum += pp[s * S_PART_FLOATS(a.hdv) + 2 + i] * expf(ms - M);
        }
        o[i] = sum * inv;
    }
}

static wg_status s_prepare(const wg_cuda_kv_t *kv, const wg_cuda_attn_t *a, s_kv_t *k, s_args_t *g) {
    WG_ASSERT(kv && a);
    WG_CU_CHECK(a->n_head > 0 && a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0,
                "cuda attention: n_head=%d n_head_kv=%d", a->n_head, a->n_head_kv);
    WG_CU_CHECK(a->head_dim > 0 && a->head_dim <= WG_ATTN_MAX_D && a->head_dim_v > 0 && a->head_dim_v <= WG_ATTN_MAX_D,
                "cuda attention: head_dim=%d head_dim_v=%d (limit %d)", a->head_dim, a->head_dim_v, WG_ATTN_MAX_D);
    WG_CU_CHECK(kv->k_dim >= a->n_head_kv * a->head_dim && kv->v_dim >= a->n_head_kv * a->head_dim_v,
                "cuda attention: k_dim=%d v_dim=%d too small for %d kv heads", kv->k_dim, kv->v_dim, a->n_head_kv);
    WG_CU_CHECK(a->layer >= 0 && a->layer < kv->n_layer && kv->block_tokens > 0 && kv->max_blocks > 0,
                "cuda attention: layer=%d n_layer=%d block_tokens=%d max_blocks=%d", a->layer, kv->n_layer,
                kv->block_tokens, kv->max_blocks);
    WG_CU_CHECK(a->n_tok >= 0 && a->n_tok <= 65535 && a->window >= 0, "cuda attention: n_tok=%lld window=%d",
                (long long)a->n_tok, a->window);
    *k = s_kv_view(kv, a->layer);
    *g = (s_args_t){a->n_head, a->n_head_kv, a->head_dim, a->head_dim_v, a->scale, a->softcap, a->window,
                    a->sinks, a->q, a->q_stride, a->out, 0};
    /* every key row starts at a multiple of 4 floats from a 16-byte aligned pool */
    g->vec4 = ((uintptr_t)kv->pool % 16 == 0 && a->head_dim % 4 == 0 && k->k_dim % 4 == 0 && k->block_floats % 4 == 0 &&
               k->layer_off % 4 == 0);
    return WG_OK;
}

extern "C" wg_status wg_cuda_attention_decode(wg_cuda_t *ctx, const wg_cuda_kv_t *kv, const wg_cuda_attn_t *a) {
    s_kv_t k;
    s_args_t g;
    wg_status st = s_prepare(kv, a, &k, &g);
    if (st) return st;
    if (a->n_tok == 0) return WG_OK;
    if ((st = wg_cuda_enter(ctx))) return st;
    /* Few (token, head) pairs (small batches) leave most SMs idle: split the
     * keys into segments, one CTA each, and merge them in a second kernel
     * (flash-decoding). The split depends on the shape only, never on the
     * positions, so a captured graph stays valid as sequences grow. */
    const int64_t pairs = a->n_tok * (int64_t)a->n_head;
    int32_t n_split = 1;
    if (!ctx->attn_split_off)
        while (n_split < 16 && pairs * n_split < 2 * (int64_t)ctx->sm_count) n_split *= 2;
    if (n_split == 1) {
        k_attn_decode<<<dim3((unsigned)a->n_head, (unsigned)a->n_tok, 1), 32 * WG_ATTN_WARPS, 0, ctx->stream>>>(
            k, g, a->seq, a->pos, NULL);
        WG_CU_LAUNCHED();
        return WG_OK;
    }
    /* pairs * n_split < 4 * sm_count whenever n_split > 1, so one buffer of
     * that bound serves every shape; it is never reallocated, as captured
     * graphs of other shapes keep pointing at it. */
    const size_t bytes = (size_t)pairs * (size_t)n_split * (size_t)S_PART_FLOATS(a->head_dim_v) * sizeof(float);
    if (!ctx->attn_part) {
        WG_CU_CHECK(!ctx->capturing, "cuda attention: first split decode inside a graph capture");
        const size_t cap = (size_t)4 * (size_t)ctx->sm_count * (size_t)S_PART_FLOATS(WG_ATTN_MAX_D) * sizeof(float);
        WG_CU(cudaMalloc(&ctx->attn_part, cap));
        ctx->attn_part_bytes = cap;
    }
    WG_CU_CHECK(bytes <= ctx->attn_part_bytes, "cuda attention: %zu bytes of split partials > %zu", bytes,
                ctx->attn_part_bytes);
    float *part = (float *)ctx->attn_part;
    k_attn_decode<<<dim3((unsigned)a->n_head, (unsigned)a->n_tok, (unsigned)n_split), 32 * WG_ATTN_WARPS, 0,
                    ctx->stream>>>(k, g, a->seq, a->pos, part);
    WG_CU_LAUNCHED();
    k_attn_combine<<<dim3((unsigned)a->n_head, (unsigned)a->n_tok), 128, 0, ctx->stream>>>(g, part, n_split);
    WG_CU_LAUNCHED();
    return WG_OK;
}

/* ---- prefill (flash attention) ---- */

__global__ void __launch_bounds__(32 * WG_ATTN_WARPS)
    k_attn_prefill(s_kv_t kv, s_args_t a, int64_t n_tok, int32_t seq, int32_t pos0) {
    extern __shared__ float sm[];
    const int hd = a.hd, hdv = a.hdv, kst = hd + 1; /* padded K rows: lanes read different rows conflict-free */
    float *Qs = sm;                        /* [BQ][hd] */
    float *Ks = Qs + WG_FA_BQ * hd;        /* [BK][hd+1] */
    float *Vs = Ks + WG_FA_BK * kst;       /* [BK][hdv] */
    const int32_t h = blockIdx.y;
    const int64_t t0 = (int64_t)blockIdx.x * WG_FA_BQ;
    const int lane = threadIdx.x % 32, wid = threadIdx.x / 32;
    const int32_t hk = h / (a.n_head / a.n_head_kv);
    const int64_t nq = n_tok - t0 < WG_FA_BQ ? n_tok - t0 : WG_FA_BQ;
    for (int i = threadIdx.x; i < WG_FA_BQ * hd; i += blockDim.x) {
        const int qi = i / hd, c = i % hd;
        Qs[i] = qi < nq ? a.q[(t0 + qi) * a.q_stride + (int64_t)h * hd + c] : 0.0f;
    }
    const int32_t qlo = pos0 + (int32_t)t0, qhi = pos0 + (int32_t)(t0 + nq - 1);
    const int32_t kmin = (a.window > 0 && qlo - a.window + 1 > 0) ? qlo - a.window + 1 : 0;
    constexpr int QW = WG_FA_BQ / WG_ATTN_WARPS; /* queries per warp */
    float m[QW], l[QW], acc[QW][WG_ATTN_MAX_D / 32];
#pragma unroll
    for (int r = 0; r < QW; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) acc[r][c] = 0.0f;
    }
    for (int32_t kb = kmin; kb <= qhi; kb += WG_FA_BK) {
        __syncthreads(); /* previous tile fully consumed (and Qs written on the first pass) */
        for (int i = threadIdx.x; i < WG_FA_BK * hd; i += blockDim.x) {
            const int r = i / hd, c = i % hd;
            const int32_t kp = kb + r;
            Ks[r * kst + c] = kp <= qhi ? s_key(kv, seq, kp, hk, hd)[c] : 0.0f;
        }
        for (int i = threadIdx.x; i < WG_FA_BK * hdv; i += blockDim.x) {
            const int r = i / hdv, c = i % hdv;
            const int32_t kp = kb + r;
            Vs[i] = kp <= qhi ? s_val(kv, seq, kp, hk, hdv)[c] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int r = 0; r < QW; r++) {
            const int qi = wid * QW + r;
            if (qi >= nq) continue; /* uniform per warp */
            const int32_t qp = pos0 + (int32_t)(t0 + qi);
            const int32_t kp = kb + lane;
            const bool ok = kp <= qp && (a.window == 0 || qp - kp < a.window);
            float s = -INFINITY;
            if (ok) {
                float d = 0.0f;
                const float *qrow = Qs + qi * hd, *krow = Ks + lane * kst;
                for (int c = 0; c < hd; c++) d += qrow[c] * krow[c];
                s = s_logit(a, d);
            }
            const float mt = s_wmax(s);
            if (mt == -INFINITY) continue; /* no visible key in this tile for this query */
            const float mn = fmaxf(m[r], mt);
            const float corr = expf(m[r] - mn);
            const float pw = ok ? expf(s - mn) : 0.0f;
            l[r] = l[r] * corr + s_wsum(pw);
#pragma unroll
            for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) acc[r][c] *= corr;
            for (int j = 0; j < WG_FA_BK; j++) {
                const float pj = __shfl_sync(0xffffffffu, pw, j);
                if (pj == 0.0f) continue; /* uniform: pj is the same in every lane */
#pragma unroll
                for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) {
                    const int i = lane + 32 * c;
                    if (i < hdv) acc[r][c] += pj * Vs[j * hdv + i];
                }
            }
            m[r] = mn;
        }
    }
#pragma unroll
    for (int r = 0; r < QW; r++) {
        const int qi = wid * QW + r;
        if (qi >= nq) continue;
        float f = 1.0f, L = l[r];
        if (a.sinks) {
            const float sink = a.sinks[h];
            const float M = fmaxf(m[r], sink);
            f = m[r] == -INFINITY ? 0.0f : expf(m[r] - M);
            L = l[r] * f + expf(sink - M);
        }
        const float inv = f / L;
        float *o = a.out + (t0 + qi) * (int64_t)a.n_head * hdv + (int64_t)h * hdv;
#pragma unroll
        for (int c = 0; c < WG_ATTN_MAX_D / 32; c++) {
            const int i = lane + 32 * c;
            if (i < hdv) o[i] = acc[r][c] * inv;
        }
    }
}

extern "C" wg_status wg_cuda_attention_prefill(wg_cuda_t *ctx, const wg_cuda_kv_t *kv, const wg_cuda_attn_t *a,
                                               int32_t seq, int32_t pos0) {
    s_kv_t k;
    s_args_t g;
    wg_status st = s_prepare(kv, a, &k, &g);
    if (st) return st;
    WG_CU_CHECK(seq >= 0 && pos0 >= 0 && pos0 + a->n_tok <= 0x7fffffff, "cuda attention prefill: seq=%d pos0=%d",
                seq, pos0);
    if (a->n_tok == 0) return WG_OK;
    if ((st = wg_cuda_enter(ctx))) return st;
    const size_t smem =
        sizeof(float) * ((size_t)WG_FA_BQ * a->head_dim + (size_t)WG_FA_BK * (a->head_dim + 1) +
                         (size_t)WG_FA_BK * a->head_dim_v);
    WG_CU_CHECK(smem <= ctx->smem_optin, "cuda attention prefill: %zu bytes of shared memory > device limit %zu",
                smem, ctx->smem_optin);
    if (smem > 48 * 1024)
        WG_CU(cudaFuncSetAttribute(k_attn_prefill, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    const dim3 grid(wg_cuda_blocks(a->n_tok, WG_FA_BQ), (unsigned)a->n_head);
    k_attn_prefill<<<grid, 32 * WG_ATTN_WARPS, smem, ctx->stream>>>(k, g, a->n_tok, seq, pos0);
    WG_CU_LAUNCHED();
    return WG_OK;
}
