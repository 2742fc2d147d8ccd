/* wg_backend_cpu — the CPU op table: matmuls through wg_k_matmul_cpu (which
 * quantizes activations like llama.cpp), attention over the paged cache split
 * over (token, head) pairs on the pool, and scalar norm/rope/activations that
 * follow ggml's CPU arithmetic (double-accumulated norms, incremental rope
 * angles, float softmax with a double sum) so results sit at the F32 floor. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cpu/wg_cpu.h"
#include "wg_backend.h"

static wg_status s_matmul(void *ctx, const wg_weight_t *w, int64_t expert, const float *X, int64_t M,
                          float *Y) {
    if (M == 0) return WG_OK;
    return wg_k_matmul_cpu((wg_pool_t *)ctx, w->type, wg_weight_rows(w, expert), w->n, w->k, X, M, Y);
}

static void s_norm(void *ctx, wg_norm_kind_t kind, float *x, int64_t n_rows, int64_t n, int64_t stride,
                   const float *w, const float *b, float eps) {
    (void)ctx;
    for (int64_t r = 0; r < n_rows; r++) {
        float *v = x + r * stride;
        if (kind == WG_NORM_RMS) {
            double sum = 0.0;
            for (int64_t i = 0; i < n; i++) sum += (double)(v[i] * v[i]);
            const float mean = (float)(sum / (double)n);
            const float scale = 1.0f / sqrtf(mean + eps);
            for (int64_t i = 0; i < n; i++) v[i] *= scale;
        } else {
            double sum = 0.0;
            for (int64_t i = 0; i < n; i++) sum += (double)v[i];
            const float mean = (float)(sum / (double)n);
            double sum2 = 0.0;
            for (int64_t i = 0; i < n; i++) {
                v[i] -= mean;
                sum2 += (double)(v[i] * v[i]);
            }
            const float variance = (float)(sum2 / (double)n);
            const float scale = 1.0f / sqrtf(variance + eps);
            for (int64_t i = 0; i < n; i++) v[i] *= scale;
        }
        if (w && kind != WG_NORM_LAYER_NOPARAM)
            for (int64_t i = 0; i < n; i++) v[i] *= w[i];
        if (b && kind != WG_NORM_LAYER_NOPARAM)
            for (int64_t i = 0; i < n; i++) v[i] += b[i];
    }
}

static void s_rope(void *ctx, const wg_rope_t *r, float *x, int64_t n_tok, int32_t n_heads,
                   int32_t head_dim, int64_t stride, const int32_t *pos) {
    (void)ctx;
    if (r->style == WG_ROPE_NONE || r->n_rot <= 0) return;
    const int32_t nr = r->n_rot;
    const float theta_scale = powf(r->base, -2.0f / (float)nr);
    float cs[2 * 512]; /* cos/sin per pair; head dims beyond 1024 are not supported */
    WG_ASSERT(nr <= 1024 && nr <= head_dim);
    for (int64_t t = 0; t < n_tok; t++) {
        /* Same incremental angle as ggml: theta_i = p * theta_scale^i, in float. */
        float theta = (float)pos[t];
        for (int32_t i = 0; i < nr / 2; i++) {
            const float ff = r->freq_factors ? r->freq_factors[i] : 1.0f;
            const float extrap = theta / ff;
            float th = r->freq_scale * extrap;
            float ms = r->attn_factor;
            if (r->ext_factor != 0.0f) {
                /* YaRN as ggml: ramp from interpolated to extrapolated angles. */
                const float y = ((float)i - r->corr_dims[0]) / fmaxf(0.001f, r->corr_dims[1] - r->corr_dims[0]);
                const float ramp = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * r->ext_factor;
                th = th * (1.0f - ramp) + extrap * ramp;
                ms *= 1.0f + 0.1f * logf(1.0f / r->freq_scale);
            }
            cs[2 * i] = cosf(th) * ms;
            cs[2 * i + 1] = sinf(th) * ms;
            theta *= theta_scale;
        }
        for (int32_t h = 0; h < n_heads; h++) {
            float *v = x + t * stride + (int64_t)h * head_dim;
            for (int32_t i = 0; i < nr / 2; i++) {
                const float c = cs[2 * i], s = cs[2 * i + 1];
                const int32_t i0 = r->style == WG_ROPE_NORM ? 2 * i : i;
                const int32_t i1 = r->style == WG_ROPE_NORM ? 2 * i + 1 : i + nr / 2;
                const float x0 = v[i0], x1 = v[i1];
                v[i0] = x0 * c - x1 * s;
                v[i1] = x0 * s + x1 * c;
            }
        }
    }
}

typedef struct {
    const wg_attn_args_t *a;  /* the call */
    int32_t max_len;          /* longest key range of any token (score buffer size) */
    wg_status st;             /* first failure (only allocation) */
} s_attn_job_t;

static void s_attn_worker(void *vctx, int ith, int nth) {
    s_attn_job_t *job = vctx;
    const wg_attn_args_t *a = job->a;
    float *sc = malloc((size_t)(job->max_len + 1) * sizeof(float));
    if (!sc) {
        job->st = WG_ERR_NOMEM;
        return;
    }
    const int64_t n_items = a->n_tok * a->n_head;
    const int32_t group = a->n_head / a->n_head_kv;
    for (int64_t it = ith; it < n_items; it += nth) {
        const int64_t t = it / a->n_head;
        const int32_t h = (int32_t)(it % a->n_head);
        const int32_t hk = h / group;
        const int32_t p = a->pos[t];
        int32_t p0 = 0;
        if (a->window > 0 && p - a->window + 1 > 0) p0 = p - a->window + 1;
        const float *q = a->q + t * a->q_stride + (int64_t)h * a->head_dim;
        float mx = -INFINITY;
        for (int32_t j = p0; j <= p; j++) {
            const float *k = wg_kv_k(a->kv, a->layer, a->seq[t], j) + (int64_t)hk * a->head_dim;
            float d = 0.0f;
            for (int32_t i = 0; i < a->head_dim; i++) d += q[i] * k[i];
            d *= a->scale;
            if (a->softcap > 0.0f) d = a->softcap * tanhf(d / a->softcap);
            sc[j - p0] = d;
            if (d > mx) mx = d;
        }
        const int32_t n = p - p0 + 1;
        float sink = 0.0f;
        if (a->sinks) {
            sink = a->sinks[h];
            if (sink > mx) mx = sink;
        }
        double sum = 0.0;
        for (int32_t j = 0; j < n; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += (double)sc[j];
        }
        if (a->sinks) sum += (double)expf(sink - mx);
        const float inv = (float)(1.0 / sum);
        for (int32_t j = 0; j < n; j++) sc[j] *= inv;
        float *o = a->out + t * (int64_t)a->n_head * a->head_dim_v + (int64_t)h * a->head_dim_v;
        for (int32_t i = 0; i < a->head_dim_v; i++) o[i] = 0.0f;
        for (int32_t j = 0; j < n; j++) {
            const float *v = wg_kv_v(a->kv, a->layer, a->seq[t], p0 + j) + (int64_t)hk * a->head_dim_v;
            const float w = sc[j];
            for (int32_t i = 0; i < a->head_dim_v; i++) o[i] += w * v[i];
        }
    }
    free(sc);
}

static void s_attn_single(void *ctx, int ith, int nth) { s_attn_worker(ctx, ith, nth); }

static wg_status s_attention(void *ctx, const wg_attn_args_t *a) {
    WG_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0);
    s_attn_job_t job = {.a = a, .max_len = 0, .st = WG_OK};
    for (int64_t t = 0; t < a->n_tok; t++)
        if (a->pos[t] + 1 > job.max_len) job.max_len = a->pos[t] + 1;
    wg_pool_t *pool = ctx;
    if (pool && wg_pool_size(pool) > 1 && a->n_tok * a->n_head > 1)
        wg_pool_run(pool, s_attn_worker, &job);
    else
        s_attn_single(&job, 0, 1);
    if (job.st != WG_OK) return wg_error(job.st, "attention: no memory for %d scores", job.max_len);
    return WG_OK;
}

float wg_gelu_ggml(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    const float xh = wg_fp16_to_fp32(wg_fp32_to_fp16(x));
    const float y = 0.5f * xh * (1.0f + tanhf(0.79788456080286535587989211986876f * xh *
                                              (1.0f + 0.044715f * xh * xh)));
    return wg_fp16_to_fp32(wg_fp32_to_fp16(y));
}

static inline float s_act1(wg_act_t act, float x) {
    switch (act) {
    case WG_ACT_SILU: return x / (1.0f + expf(-x));
    case WG_ACT_GELU: return wg_gelu_ggml(x);
    case WG_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case WG_ACT_RELU2: return x > 0.0f ? x * x : 0.0f;
    case WG_ACT_SWIGLU_OAI: return x / (1.0f + expf(-1.702f * x));
    }
    return x;
}

static void s_act(void *ctx, wg_act_t act, float *gate, const float *up, int64_t n) {
    (void)ctx;
    if (act == WG_ACT_SWIGLU_OAI && up) {
        for (int64_t i = 0; i < n; i++) {
            const float x = fminf(gate[i], 7.0f);
            const float y = fminf(fmaxf(up[i], -7.0f), 7.0f);
            gate[i] = x / (1.0f + expf(1.702f * (-x))) * (y + 1.0f);
        }
        return;
    }
    if (up)
        for (int64_t i = 0; i < n; i++) gate[i] = s_act1(act, gate[i]) * up[i];
    else
        for (int64_t i = 0; i < n; i++) gate[i] = s_act1(act, gate[i]);
}

const wg_backend_ops_t wg_backend_cpu = {
    .name = "cpu",
    .matmul = s_matmul,
    .norm = s_norm,
    .rope = s_rope,
    .attention = s_attention,
    .act = s_act,
};
