/* wg_forward_rnn — the forward pass of the recurrent families (Mamba-1,
 * RWKV-6, RWKV-7), arithmetic as llama.cpp's graphs and ggml's CPU ops.
 *
 * Design: every weight product runs once over the whole batch (M = n tokens,
 * row-wise kernels, so a row's result does not depend on its neighbours);
 * everything that carries information from one token to the next — token
 * shift, the causal conv window, the selective scan, the wkv recurrences —
 * walks the batch in order, reading and updating the state of the token's own
 * sequence (wg_kv_state). A sequence's tokens come in position order in the
 * batch (wg_model_forward checks it), so its state evolves exactly as if it
 * ran alone, one chunk or one token at a time: batched, chunked and single
 * runs are bitwise equal.
 *
 * State of one sequence, per layer (floats):
 *   mamba: conv window [DI][DC-1] (oldest first) | scan state [DI][DS]
 *   rwkv:  time-mix shift [E] | channel-mix shift [E] | wkv [H][head][head]
 * (rwkv6 wkv rows are key index, columns value index; rwkv7 rows are value
 * index, columns key index — the layouts of ggml's wkv6 / wkv7 ops). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/ref/wg_ref.h"
#include "wg_arch.h"

/* Per-call context: model, backend, cache and the batch. */
typedef struct {
    const wg_model_t *m;          /* model */
    const wg_backend_ops_t *be;   /* op table */
    void *bctx;                   /* backend context (CPU: pool) */
    wg_kv_t *kv;                  /* recurrent-state cache */
    const wg_batch_tok_t *b;      /* [n] batch */
    int64_t n;                    /* tokens */
    size_t per_layer;             /* state floats per layer */
    float *buf[12];               /* [n][W] scratch rows */
    int64_t W;                    /* scratch row width */
    float *mix;                   /* [6][n][E] token-shift interpolations */
    float *vfirst;                /* rwkv7: [n][E] layer 0 values */
} s_rnn_t;

static float s_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static float s_silu(float x) { return x / (1.0f + expf(-x)); }

static wg_status s_mm(s_rnn_t *f, const wg_weight_t *w, int64_t e, const float *X, float *Y) {
    return f->be->matmul(f->bctx, w, e, X, f->n, Y);
}

/* State of token t's sequence in layer il. */
static float *s_state(s_rnn_t *f, int64_t t, int il) {
    return wg_kv_state(f->kv, f->b[t].seq) + (size_t)il * f->per_layer;
}

static void s_norm(s_rnn_t *f, float *x, const float *w, const float *b) {
    const wg_model_t *m = f->m;
    f->be->norm(f->bctx, m->arch->norm, x, f->n, m->hp.n_embd, m->hp.n_embd, w, b, m->hp.norm_eps);
}

/* prev[t] = the normed input of the sequence's previous token (the stored
 * shift for its first token in this batch); the shift then holds cur[t].
 * Returns sx = prev - cur in `sx`. */
static void s_token_shift(s_rnn_t *f, int il, size_t off, const float *cur, float *sx) {
    const int64_t E = f->m->hp.n_embd;
    for (int64_t t = 0; t < f->n; t++) {
        float *sh = s_state(f, t, il) + off;
        const float *c = cur + t * E;
        float *d = sx + t * E;
        for (int64_t i = 0; i < E; i++) {
            d[i] = sh[i] - c[i];
            sh[i] = c[i];
        }
    }
}

/* ---- Mamba-1 ---- */

static wg_status s_mamba_layer(s_rnn_t *f, int il, float *x) {
    const wg_hparams_t *hp = &f->m->hp;
    const wg_layer_t *L = &f->m->layers[il];
    const int64_t n = f->n, E = hp->n_embd, DI = hp->ssm_d_inner, DS = hp->ssm_d_state;
    const int64_t DC = hp->ssm_d_conv, R = hp->ssm_dt_rank, XW = R + 2 * DS;
    float *cur = f->buf[0], *xz = f->buf[1], *xc = f->buf[2], *xdb = f->buf[3], *dtin = f->buf[4];
    float *dt = f->buf[5], *y = f->buf[6], *out = f->buf[7];
    wg_status st;
    memcpy(cur, x, (size_t)(n * E) * sizeof(float));
    s_norm(f, cur, L->attn_norm, L->attn_norm_b);
    if ((st = s_mm(f, &L->ssm_in, 0, cur, xz))) return st;
    /* Causal depthwise conv over [window, x_t], then bias and silu. */
    for (int64_t t = 0; t < n; t++) {
        float *win = s_state(f, t, il);
        const float *xt = xz + t * 2 * DI;
        for (int64_t i = 0; i < DI; i++) {
            const float *w = L->ssm_conv1d + i * DC;
            float *cw = win + i * (DC - 1);
            float sum = 0.0f;
            for (int64_t j = 0; j < DC - 1; j++) sum += cw[j] * w[j];
            sum += xt[i] * w[DC - 1];
            if (DC > 1) {
                memmove(cw, cw + 1, (size_t)(DC - 2) * sizeof(float));
                cw[DC - 2] = xt[i];
            }
            xc[t * DI + i] = s_silu(sum + L->ssm_conv1d_b[i]);
        }
    }
    if ((st = s_mm(f, &L->ssm_x, 0, xc, xdb))) return st;
    for (int64_t t = 0; t < n; t++) memcpy(dtin + t * R, xdb + t * XW, (size_t)R * sizeof(float));
    if ((st = s_mm(f, &L->ssm_dt, 0, dtin, dt))) return st;
    /* Selective scan: h = h * exp(softplus(dt) A) + B x softplus(dt); y = C.h + D x. */
    for (int64_t t = 0; t < n; t++) {
        float *h = s_state(f, t, il) + DI * (DC - 1);
        const float *B = xdb + t * XW + R, *C = B + DS;
        for (int64_t i = 0; i < DI; i++) {
            const float d = dt[t * DI + i] + L->ssm_dt_b[i];
            const float dsp = d <= 20.0f ? log1pf(expf(d)) : d;
            const float xi = xc[t * DI + i];
            const float x_dt = xi * dsp;
            const float *A = L->ssm_a + i * DS;
            float *hi = h + i * DS;
            float sum = 0.0f;
            for (int64_t s = 0; s < DS; s++) {
                const float v = hi[s] * expf(dsp * A[s]) + B[s] * x_dt;
                sum += v * C[s];
                hi[s] = v;
            }
            const float yi = sum + xi * L->ssm_d[i];
            y[t * DI + i] = s_silu(xz[t * 2 * DI + DI + i]) * yi;
        }
    }
    if ((st = s_mm(f, &L->ssm_out, 0, y, out))) return st;
    for (int64_t i = 0; i < n * E; i++) x[i] += out[i];
    return WG_OK;
}

/* ---- RWKV shared pieces ---- */

/* Group norm of the wkv output: layer norm per head (eps 64e-5), then the
 * per-channel weight and bias. */
static void s_group_norm(s_rnn_t *f, const wg_layer_t *L, float *o) {
    const int64_t E = f->m->hp.n_embd, HS = f->m->hp.wkv_head_size;
    f->be->norm(f->bctx, WG_NORM_LAYER, o, f->n * (E / HS), HS, HS, NULL, NULL, 64e-5f);
    for (int64_t t = 0; t < f->n; t++)
        for (int64_t i = 0; i < E; i++) o[t * E + i] = o[t * E + i] * L->tm_ln[i] + L->tm_ln_b[i];
}

/* Channel mix; `ffn` = normed input (overwritten), x += result. */
static wg_status s_channel_mix(s_rnn_t *f, int il, float *ffn, float *x) {
    const wg_hparams_t *hp = &f->m->hp;
    const wg_layer_t *L = &f->m->layers[il];
    const int64_t n = f->n, E = hp->n_embd, F = hp->n_ff;
    float *sx = f->buf[8], *xk = f->buf[9], *k = f->buf[10], *o = f->buf[11];
    wg_status st;
    s_token_shift(f, il, (size_t)E, ffn, sx);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < E; i++) xk[t * E + i] = sx[t * E + i] * L->cm_lerp_k[i] + ffn[t * E + i];
    if ((st = s_mm(f, &L->cm_key, 0, xk, k))) return st;
    for (int64_t i = 0; i < n * F; i++) {
        const float r = k[i] > 0.0f ? k[i] : 0.0f;
        k[i] = r * r;
    }
    if ((st = s_mm(f, &L->cm_value, 0, k, o))) return st;
    if (L->cm_receptance.data) {
        /* rwkv6: sigmoid receptance gate from its own interpolation. */
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < E; i++) xk[t * E + i] = sx[t * E + i] * L->cm_lerp_r[i] + ffn[t * E + i];
        if ((st = s_mm(f, &L->cm_receptance, 0, xk, k))) return st;
        for (int64_t i = 0; i < n * E; i++) o[i] = s_sigmoid(k[i]) * o[i];
    }
    for (int64_t i = 0; i < n * E; i++) x[i] = o[i] + x[i];
    return WG_OK;
}

/* ---- RWKV-6 ---- */

static wg_status s_rwkv6_time_mix(s_rnn_t *f, int il, const float *att, float *out) {
    const wg_hparams_t *hp = &f->m->hp;
    const wg_layer_t *L = &f->m->layers[il];
    const int64_t n = f->n, E = hp->n_embd, HS = hp->wkv_head_size, H = E / HS, Dm = hp->rwkv_mix_lora;
    float *sx = f->buf[0], *t0 = f->buf[1], *lo = f->buf[2], *hc = f->buf[3];
    float *r = f->buf[4], *k = f->buf[5], *v = f->buf[6], *g = f->buf[7], *w = f->buf[8], *o = f->buf[9];
    wg_status st;
    s_token_shift(f, il, 0, att, sx);
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < E; i++) t0[t * E + i] = sx[t * E + i] * L->tm_lerp_x[i] + att[t * E + i];
    if ((st = s_mm(f, &L->tm_w1, 0, t0, lo))) return st;
    for (int64_t i = 0; i < n * 5 * Dm; i++) lo[i] = tanhf(lo[i]);
    /* Five data-dependent interpolations, in the fused order w, k, v, r, g. */
    for (int c = 0; c < 5; c++) {
        for (int64_t t = 0; t < n; t++) memcpy(hc + t * Dm, lo + t * 5 * Dm + c * Dm, (size_t)Dm * sizeof(float));
        float *xm = f->mix + (size_t)c * (size_t)(n * E);
        if ((st = s_mm(f, &L->tm_w2, c, hc, xm))) return st;
        const float *fu = L->tm_lerp_fused + c * E;
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < E; i++)
                xm[t * E + i] = (xm[t * E + i] + fu[i]) * sx[t * E + i] + att[t * E + i];
    }
    const float *xw = f->mix, *xk = f->mix + n * E, *xv = f->mix + 2 * n * E, *xr = f->mix + 3 * n * E;
    const float *xg = f->mix + 4 * n * E;
    if ((st = s_mm(f, &L->tm_receptance, 0, xr, r)) || (st = s_mm(f, &L->tm_key, 0, xk, k)) ||
        (st = s_mm(f, &L->tm_value, 0, xv, v)) || (st = s_mm(f, &L->tm_gate, 0, xg, g)))
        return st;
    for (int64_t i = 0; i < n * E; i++) g[i] = s_silu(g[i]);
    if ((st = s_mm(f, &L->tm_decay_w1, 0, xw, lo))) return st;
    for (int64_t i = 0; i < n * hp->rwkv_decay_lora; i++) lo[i] = tanhf(lo[i]);
    if ((st = s_mm(f, &L->tm_decay_w2, 0, lo, w))) return st;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < E; i++) w[t * E + i] = expf(-expf(w[t * E + i] + L->tm_decay[i]));
    /* wkv6: o_j = sum_i r_i (u_i k_i v_j + S_ij); S_ij = S_ij w_i + k_i v_j. */
    for (int64_t t = 0; t < n; t++) {
        float *S = s_state(f, t, il) + 2 * E;
        for (int64_t h = 0; h < H; h++) {
            const int64_t b0 = t * E + h * HS;
            float *oh = o + b0;
            memset(oh, 0, (size_t)HS * sizeof(float));
            for (int64_t i = 0; i < HS; i++) {
                const float ki = k[b0 + i], ri = r[b0 + i], ui = L->tm_first[h * HS + i], wi = w[b0 + i];
                float *Si = S + (h * HS + i) * HS;
                for (int64_t j = 0; j < HS; j++) {
                    const float kv = v[b0 + j] * ki;
                    const float prev = Si[j];
                    oh[j] += (kv * ui + prev) * ri;
                    Si[j] = prev * wi + kv;
                }
            }
        }
    }
    s_group_norm(f, L, o);
    for (int64_t i = 0; i < n * E; i++) o[i] *= g[i];
    return s_mm(f, &L->tm_output, 0, o, out);
}

/* ---- RWKV-7 ---- */

static wg_status s_rwkv7_time_mix(s_rnn_t *f, int il, const float *att, float *out) {
    const wg_hparams_t *hp = &f->m->hp;
    const wg_layer_t *L = &f->m->layers[il];
    const int64_t n = f->n, E = hp->n_embd, HS = hp->wkv_head_size, H = E / HS;
    float *sx = f->buf[0], *lo = f->buf[1], *r = f->buf[2], *w = f->buf[3], *k = f->buf[4], *v = f->buf[5];
    float *a = f->buf[6], *g = f->buf[7], *kk = f->buf[8], *o = f->buf[9], *tmp = f->buf[10];
    wg_status st;
    s_token_shift(f, il, 0, att, sx);
    /* Six interpolations, fused order r, w, k, v, a, g. */
    for (int c = 0; c < 6; c++) {
        float *xm = f->mix + (size_t)c * (size_t)(n * E);
        const float *fu = L->tm_lerp_fused + c * E;
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < E; i++) xm[t * E + i] = sx[t * E + i] * fu[i] + att[t * E + i];
    }
    const float *xr = f->mix, *xw = f->mix + n * E, *xk = f->mix + 2 * n * E, *xv = f->mix + 3 * n * E;
    const float *xa = f->mix + 4 * n * E, *xg = f->mix + 5 * n * E;
    if ((st = s_mm(f, &L->tm_receptance, 0, xr, r))) return st;
    /* Decay: w = exp(-e^-0.5 sigmoid(w0 + w2 tanh(w1 xw))). */
    if ((st = s_mm(f, &L->tm_w1, 0, xw, lo))) return st;
    for (int64_t i = 0; i < n * hp->rwkv_decay_lora; i++) lo[i] = tanhf(lo[i]);
    if ((st = s_mm(f, &L->tm_w2, 0, lo, w))) return st;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < E; i++)
            w[t * E + i] = expf(-0.606531f * s_sigmoid(w[t * E + i] + L->tm_w0[i]));
    if ((st = s_mm(f, &L->tm_key, 0, xk, k)) || (st = s_mm(f, &L->tm_value, 0, xv, v))) return st;
    if (il == 0) {
        memcpy(f->vfirst, v, (size_t)(n * E) * sizeof(float));
    } else {
        /* Value residual: v += (v_first - v) sigmoid(v0 + v2 v1 xv). */
        if ((st = s_mm(f, &L->tm_v1, 0, xv, lo)) || (st = s_mm(f, &L->tm_v2, 0, lo, tmp))) return st;
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < E; i++) {
                const int64_t j = t * E + i;
                v[j] = v[j] + (f->vfirst[j] - v[j]) * s_sigmoid(tmp[j] + L->tm_v0[i]);
            }
    }
    const bool gated = L->tm_g1.data != NULL;
    if (gated) {
        if ((st = s_mm(f, &L->tm_g1, 0, xg, lo))) return st;
        for (int64_t i = 0; i < n * hp->rwkv_gate_lora; i++) lo[i] = s_sigmoid(lo[i]);
        if ((st = s_mm(f, &L->tm_g2, 0, lo, g))) return st;
    }
    /* In-context learning rate a = sigmoid(a0 + a2 a1 xa). */
    if ((st = s_mm(f, &L->tm_a1, 0, xa, lo)) || (st = s_mm(f, &L->tm_a2, 0, lo, a))) return st;
    for (int64_t t = 0; t < n; t++)
        for (int64_t i = 0; i < E; i++) a[t * E + i] = s_sigmoid(a[t * E + i] + L->tm_a0[i]);
    /* kk = l2norm_per_head(k * k_k); k = k + (a k k_a - k k_a). */
    for (int64_t t = 0; t < n; t++) {
        for (int64_t h = 0; h < H; h++) {
            const int64_t b0 = t * E + h * HS;
            double sum = 0.0;
            for (int64_t i = 0; i < HS; i++) {
                const float q = k[b0 + i] * L->tm_k_k[h * HS + i];
                kk[b0 + i] = q;
                sum += (double)(q * q);
            }
            const float scale = 1.0f / fmaxf(sqrtf((float)sum), 1e-12f);
            for (int64_t i = 0; i < HS; i++) kk[b0 + i] *= scale;
        }
        for (int64_t i = 0; i < E; i++) {
            const int64_t j = t * E + i;
            const float ka = k[j] * L->tm_k_a[i];
            k[j] = k[j] + (a[j] * ka - ka);
        }
    }
    /* wkv7 with a' = -kk, b' = kk a: sa = a'.S_i; S_ij = S_ij w_j + v_i k_j + sa b'_j; o_i = S_i.r. */
    for (int64_t t = 0; t < n; t++) {
        float *S = s_state(f, t, il) + 2 * E;
        for (int64_t h = 0; h < H; h++) {
            const int64_t b0 = t * E + h * HS;
            for (int64_t i = 0; i < HS; i++) {
                float *Si = S + (h * HS + i) * HS;
                const float vi = v[b0 + i];
                float sa = 0.0f, res = 0.0f;
                for (int64_t j = 0; j < HS; j++) sa += -kk[b0 + j] * Si[j];
                for (int64_t j = 0; j < HS; j++) {
                    const float bj = kk[b0 + j] * a[b0 + j];
                    Si[j] = Si[j] * w[b0 + j] + vi * k[b0 + j] + sa * bj;
                    res += Si[j] * r[b0 + j];
                }
                o[b0 + i] = res;
            }
        }
    }
    s_group_norm(f, L, o);
    /* Bonus: o_h += v_h * sum_j(k_j r_j r_k_j) per head. */
    for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t b0 = t * E + h * HS;
            double s = 0.0;
            for (int64_t j = 0; j < HS; j++) s += (double)(k[b0 + j] * r[b0 + j] * L->tm_r_k[h * HS + j]);
            const float rk = (float)s;
            for (int64_t j = 0; j < HS; j++) o[b0 + j] += v[b0 + j] * rk;
        }
    if (gated)
        for (int64_t i = 0; i < n * E; i++) o[i] *= g[i];
    return s_mm(f, &L->tm_output, 0, o, out);
}

static wg_status s_rwkv_layer(s_rnn_t *f, int il, float *x, float *att, float *ffn) {
    const wg_hparams_t *hp = &f->m->hp;
    const wg_layer_t *L = &f->m->layers[il];
    const int64_t n = f->n, E = hp->n_embd;
    wg_status st;
    memcpy(att, x, (size_t)(n * E) * sizeof(float));
    s_norm(f, att, L->attn_norm, L->attn_norm_b);
    float *tm = ffn; /* time-mix output, consumed before ffn is reused */
    st = f->m->arch->block == WG_BLOCK_RWKV6 ? s_rwkv6_time_mix(f, il, att, tm) : s_rwkv7_time_mix(f, il, att, tm);
    if (st) return st;
    for (int64_t i = 0; i < n * E; i++) x[i] = tm[i] + x[i];
    memcpy(ffn, x, (size_t)(n * E) * sizeof(float));
    s_norm(f, ffn, L->ffn_norm, L->ffn_norm_b);
    if ((st = s_channel_mix(f, il, ffn, x))) return st;
    if (hp->rwkv_rescale > 0 && (il + 1) % hp->rwkv_rescale == 0)
        for (int64_t i = 0; i < n * E; i++) x[i] *= 0.5f;
    return WG_OK;
}

wg_status wg_forward_recurrent(const wg_model_t *m, wg_kv_t *kv, wg_pool_t *pool, const wg_batch_tok_t *batch,
                               int64_t n, float *logits) {
    const wg_hparams_t *hp = &m->hp;
    const int64_t E = hp->n_embd;
    if (!wg_kv_is_recurrent(kv) || wg_kv_state_floats(kv) != wg_model_state_floats(m))
        return wg_error(WG_ERR_INVAL, "forward: %s needs a recurrent-state cache of %zu floats per sequence (got %zu)",
                        hp->arch, wg_model_state_floats(m), wg_kv_state_floats(kv));
    s_rnn_t f = {.m = m, .be = &wg_backend_cpu, .bctx = pool, .kv = kv, .b = batch, .n = n,
                 .per_layer = wg_model_state_floats(m) / (size_t)hp->n_layer};
    int64_t W = E;
    const int64_t widths[] = {hp->n_ff, 2 * (int64_t)hp->ssm_d_inner, (int64_t)hp->ssm_dt_rank + 2 * hp->ssm_d_state,
                              5 * (int64_t)hp->rwkv_mix_lora, hp->rwkv_decay_lora, hp->rwkv_iclr_lora,
                              hp->rwkv_value_lora, hp->rwkv_gate_lora};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++)
        if (widths[i] > W) W = widths[i];
    f.W = W;
    wg_status st = WG_OK;
    float *x = malloc((size_t)(n * E) * sizeof(float));
    float *att = malloc((size_t)(n * E) * sizeof(float));
    float *ffn = malloc((size_t)(n * E) * sizeof(float));
    f.mix = malloc((size_t)(6 * n * E) * sizeof(float));
    f.vfirst = malloc((size_t)(n * E) * sizeof(float));
    bool ok = x && att && ffn && f.mix && f.vfirst;
    for (int i = 0; i < 12; i++) ok &= (f.buf[i] = malloc((size_t)(n * W) * sizeof(float))) != NULL;
    if (!ok) {
        st = wg_error(WG_ERR_NOMEM, "forward scratch for %lld tokens", (long long)n);
        goto done;
    }
    const wg_type_traits_t *etr = wg_type_traits(m->tok_embd.type);
    for (int64_t t = 0; t < n; t++) {
        const char *row = (const char *)m->tok_embd.data + (size_t)batch[t].token * m->tok_embd.row_bytes;
        etr->to_float(row, x + t * E, E);
    }
    if (m->tok_norm) s_norm(&f, x, m->tok_norm, m->tok_norm_b);
    for (int il = 0; il < hp->n_layer && !st; il++)
        st = m->arch->block == WG_BLOCK_MAMBA ? s_mamba_layer(&f, il, x) : s_rwkv_layer(&f, il, x, att, ffn);
    if (st) goto done;
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; t++)
        if (batch[t].want_logits) memcpy(att + (n_out++) * E, x + t * E, (size_t)E * sizeof(float));
    if (n_out > 0) {
        WG_ASSERT(logits);
        f.be->norm(f.bctx, m->arch->norm, att, n_out, E, E, m->out_norm, m->out_norm_b, hp->norm_eps);
        if ((st = f.be->matmul(f.bctx, &m->output, 0, att, n_out, logits))) goto done;
        if (m->out_b)
            for (int64_t t = 0; t < n_out; t++)
                for (int64_t i = 0; i < hp->n_vocab; i++) logits[t * hp->n_vocab + i] += m->out_b[i];
    }
done:
    free(x);
    free(att);
    free(ffn);
    free(f.mix);
    free(f.vfirst);
    for (int i = 0; i < 12; i++) free(f.buf[i]);
    return st;
}
