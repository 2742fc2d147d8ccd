/* wg_forward — the batched forward pass, composed from shared blocks
 * (build_norm / build_attn / build_ffn / build_moe in llama.cpp's sense) and
 * the architecture row's flags. Every weight product runs once over the whole
 * batch; attention runs per token over its own sequence in the paged cache.
 * Nothing here reduces across tokens, so results are batch-invariant. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/wg_mem.h"
#include "../../kernels/ref/wg_ref.h"
#include "wg_arch.h"

/* Per-call state: the model, the backend and scratch rows for n tokens. */
typedef struct {
    const wg_model_t *m;           /* model */
    const wg_backend_ops_t *be;    /* op table */
    void *bctx;                    /* backend context (CPU: pool) */
    wg_kv_t *kv;                   /* cache */
    int64_t n;                     /* tokens in the batch */
    int32_t *seq;                  /* [n] sequence ids */
    int32_t *pos;                  /* [n] positions */
    float *q;                      /* [n][q_dim] */
    float *k;                      /* [n][k_dim] */
    float *v;                      /* [n][v_dim] */
    float *qkv;                    /* [n][q_dim+k_dim+v_dim] fused projection output */
    float *att;                    /* [n][n_head*head_dim_v] */
    float *g;                      /* [n][ff_max] gate / hidden */
    float *u;                      /* [n][ff_max] up */
    float *moe_x;                  /* [n][n_embd] gathered rows for one expert */
    float *moe_y;                  /* [n][n_embd] that expert's outputs */
    float *moe_slots;              /* [n][n_expert_used][n_embd] per-slot expert outputs */
    float *router;                 /* [n][n_expert] */
    int32_t *sel;                  /* [n][n_expert_used] selected experts */
    float *selw;                   /* [n][n_expert_used] their weights */
    int32_t *rows;                 /* [n] scratch row list */
} s_fwd_t;

/* Scratch reuse: each thread that runs forward passes keeps one grow-only
 * buffer (wg_tls_scratch, freed when the thread exits), so steady-state
 * decode and prefill allocate nothing and touch no fresh pages. Per thread
 * rather than per cache because a forward call is single-owner and a thread
 * runs one at a time; its size is the largest batch the thread has run.
 * Returns the calling thread's scratch of at least `bytes` (contents
 * undefined), or NULL. */
static char *s_scratch(size_t bytes) { return wg_tls_scratch(WG_TLS_FORWARD, bytes); }

static void s_add_bias(float *y, const float *b, int64_t M, int64_t N) {
    if (!b) return;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) y[i * N + j] += b[j];
}

/* Y[i] = X @ W[i]^T (+ b[i]) for i < n, one backend call where it has matmul_n. */
static wg_status s_mm_n(s_fwd_t *f, int n, const wg_weight_t *const *w, int64_t e, const float *X, int64_t M,
                        float *const *Y, const float *const *b) {
    wg_status st;
    if (f->be->matmul_n) {
        const int64_t es[4] = {e, e, e, e};
        if ((st = f->be->matmul_n(f->bctx, n, w, es, X, M, Y))) return st;
    } else {
        for (int i = 0; i < n; i++)
            if ((st = f->be->matmul(f->bctx, w[i], e, X, M, Y[i]))) return st;
    }
    for (int i = 0; i < n; i++) s_add_bias(Y[i], b[i], M, w[i]->n);
    return WG_OK;
}

/* Y = X @ W^T (+ b). */
static wg_status s_mm(s_fwd_t *f, const wg_weight_t *w, int64_t e, const float *X, int64_t M, float *Y,
                      const float *b) {
    wg_status st = f->be->matmul(f->bctx, w, e, X, M, Y);
    if (st) return st;
    s_add_bias(Y, b, M, w->n);
    return WG_OK;
}

static void s_build_norm(s_fwd_t *f, float *x, int64_t rows, int64_t n, const float *w, const float *b) {
    const wg_model_t *m = f->m;
    f->be->norm(f->bctx, m->arch->norm, x, rows, n, n, w, b, m->hp.norm_eps);
}

/* RMS norm regardless of the model's norm kind (q/k norms are RMS everywhere). */
static void s_rms(s_fwd_t *f, float *x, int64_t rows, int64_t n, const float *w) {
    f->be->norm(f->bctx, WG_NORM_RMS, x, rows, n, n, w, NULL, f->m->hp.norm_eps);
}

/* fn over units [0, n) on the backend's threads (wg_backend_ops_t.par); the
 * row passes below run each unit's ops with ctx NULL, on the thread that
 * took it, so a split never changes a bit. */
static void s_par(s_fwd_t *f, int64_t n, int64_t min_part, void (*fn)(void *, int64_t, int64_t), void *arg) {
    if (f->be->par)
        f->be->par(f->bctx, n, min_part, fn, arg);
    else
        fn(arg, 0, n);
}

static void s_clamp(float *x, int64_t n, float c) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] < -c ? -c : (x[i] > c ? c : x[i]);
}

bool wg_layer_is_swa(const wg_hparams_t *hp, int il) {
    return hp->n_swa > 0 && (hp->swa_pattern == 0 || il % hp->swa_pattern < hp->swa_pattern - 1);
}

void wg_layer_rope(const wg_model_t *m, int il, wg_rope_t *rope) {
    const wg_hparams_t *hp = &m->hp;
    *rope = (wg_rope_t){.style = m->arch->rope, .n_rot = hp->n_rot,
                        .base = wg_layer_is_swa(hp, il) ? hp->rope_base_swa : hp->rope_base,
                        .freq_scale = hp->rope_freq_scale, .freq_factors = m->rope_freqs,
                        .ext_factor = hp->yarn_ext_factor, .attn_factor = 1.0f};
    if (hp->yarn_ext_factor != 0.0f) {
        /* ggml_rope_yarn_corr_dims: rotary dims where the ramp starts and ends. */
        const float nd = (float)hp->n_rot, base = rope->base, octx = (float)hp->yarn_n_ctx_orig;
        const float lo = floorf(nd * logf(octx / (hp->yarn_beta_fast * 2.0f * (float)M_PI)) / (2.0f * logf(base)));
        const float hi = ceilf(nd * logf(octx / (hp->yarn_beta_slow * 2.0f * (float)M_PI)) / (2.0f * logf(base)));
        rope->corr_dims[0] = fmaxf(0.0f, lo);
        rope->corr_dims[1] = fminf(nd - 1.0f, hi);
    }
}

int64_t wg_model_ff_max(const wg_model_t *m) {
    const wg_hparams_t *hp = &m->hp;
    int64_t ff = hp->n_ff > hp->n_ff_exp ? hp->n_ff : hp->n_ff_exp;
    for (int il = 0; il < hp->n_layer; il++) {
        if (m->layers[il].ffn_up.n > ff) ff = m->layers[il].ffn_up.n;
        if (m->layers[il].up_shexp.n > ff) ff = m->layers[il].up_shexp.n;
    }
    return ff;
}

/* Multi-head latent attention (deepseek2), absorbed form as llama.cpp runs it:
 * the cache holds one "kv head" per token = [normed latent c; roped shared
 * rope key], values = c. Each head's query is [k_b_h q_nope_h; q_pe_h], the
 * attended latent goes through v_b_h, then the output projection. */
static wg_status s_build_attn_mla(s_fwd_t *f, int il, const float *cur, float *out) {
    const wg_model_t *m = f->m;
    const wg_hparams_t *hp = &m->hp;
    const wg_layer_t *L = &m->layers[il];
    const int64_t n = f->n, H = hp->n_head, R = hp->n_rot, C = hp->kv_lora, Dq = hp->head_dim_mla;
    const int64_t Nope = Dq - R, KD = hp->head_dim, Dv = hp->head_dim_v_mla;
    float *qraw = f->qkv; /* [n][H*Dq] */
    wg_status st;
    if (L->wq_a.data) {
        if ((st = s_mm(f, &L->wq_a, 0, cur, n, f->g, NULL))) return st;
        s_rms(f, f->g, n, hp->q_lora, L->q_a_norm);
        if ((st = s_mm(f, &L->wq_b, 0, f->g, n, qraw, NULL))) return st;
    } else if ((st = s_mm(f, &L->wq, 0, cur, n, qraw, NULL))) {
        return st;
    }
    /* kv_a: [c (C); k_pe (R)] per token, straight into the cache layout. */
    if ((st = s_mm(f, &L->wkv_a, 0, cur, n, f->k, NULL))) return st;
    f->be->norm(f->bctx, WG_NORM_RMS, f->k, n, C, KD, L->kv_a_norm, NULL, hp->norm_eps);
    wg_rope_t rope = {.style = m->arch->rope, .n_rot = (int32_t)R, .base = hp->rope_base,
                      .freq_scale = hp->rope_freq_scale, .attn_factor = 1.0f};
    f->be->rope(f->bctx, &rope, f->k + C, n, 1, (int32_t)R, KD, f->pos);
    f->be->rope(f->bctx, &rope, qraw + Nope, n, (int32_t)H, (int32_t)Dq, H * Dq, f->pos);
    for (int64_t h = 0; h < H; h++) {
        for (int64_t t = 0; t < n; t++)
            memcpy(f->g + t * Nope, qraw + t * H * Dq + h * Dq, (size_t)Nope * sizeof(float));
        if ((st = s_mm(f, &L->wk_b, h, f->g, n, f->u, NULL))) return st;
        for (int64_t t = 0; t < n; t++) {
            float *q = f->q + t * H * KD + h * KD;
            memcpy(q, f->u + t * C, (size_t)C * sizeof(float));
            memcpy(q + C, qraw + t * H * Dq + h * Dq + Nope, (size_t)R * sizeof(float));
        }
    }
    for (int64_t t = 0; t < n; t++) {
        wg_kv_put_k(f->kv, il, f->seq[t], f->pos[t], f->k + t * KD, (int32_t)KD);
        wg_kv_put_v(f->kv, il, f->seq[t], f->pos[t], f->k + t * KD, (int32_t)C);
    }
    wg_attn_args_t a = {
        .kv = f->kv, .layer = il, .n_tok = n, .seq = f->seq, .pos = f->pos, .q = f->q, .q_stride = H * KD,
        .out = f->att, .n_head = (int32_t)H, .n_head_kv = 1, .head_dim = (int32_t)KD, .head_dim_v = (int32_t)C,
        .scale = hp->attn_scale, .window = 0, .softcap = 0.0f, .sinks = NULL,
    };
    if ((st = f->be->attention(f->bctx, &a))) return st;
    float *o = f->qkv; /* [n][H*Dv], qraw is no longer needed */
    for (int64_t h = 0; h < H; h++) {
        for (int64_t t = 0; t < n; t++)
            memcpy(f->g + t * C, f->att + t * H * C + h * C, (size_t)C * sizeof(float));
        if ((st = s_mm(f, &L->wv_b, h, f->g, n, f->u, NULL))) return st;
        for (int64_t t = 0; t < n; t++) memcpy(o + t * H * Dv + h * Dv, f->u + t * Dv, (size_t)Dv * sizeof(float));
    }
    return s_mm(f, &L->wo, 0, o, n, out, L->bo);
}

/* Rope of the queries and keys of tokens [t0, t1), then their K/V rows into
 * the cache: a token's rows are its own, so any split gives the same bytes. */
typedef struct {
    s_fwd_t *f;
    int il;
    wg_rope_t rope;
    int64_t qd, kd, vd;
} s_rope_put_t;

static void s_rope_put_part(void *arg, int64_t t0, int64_t t1) {
    const s_rope_put_t *a = arg;
    s_fwd_t *f = a->f;
    const wg_hparams_t *hp = &f->m->hp;
    const int32_t hd = (int32_t)hp->head_dim;
    f->be->rope(NULL, &a->rope, f->q + t0 * a->qd, t1 - t0, hp->n_head, hd, a->qd, f->pos + t0);
    f->be->rope(NULL, &a->rope, f->k + t0 * a->kd, t1 - t0, hp->n_head_kv, hd, a->kd, f->pos + t0);
    for (int64_t t = t0; t < t1; t++) {
        wg_kv_put_k(f->kv, a->il, f->seq[t], f->pos[t], f->k + t * a->kd, (int32_t)a->kd);
        wg_kv_put_v(f->kv, a->il, f->seq[t], f->pos[t], f->v + t * a->vd, (int32_t)a->vd);
    }
}

/* After the Q/K/V products of layer il: split a fused QKV output, clamp,
 * q/k norms, rope, and the new K/V rows into the cache. */
static void s_attn_post_qkv(s_fwd_t *f, int il) {
    const wg_model_t *m = f->m;
    const wg_hparams_t *hp = &m->hp;
    const wg_layer_t *L = &m->layers[il];
    const uint32_t fl = m->arch->flags;
    const int64_t n = f->n, hd = hp->head_dim;
    const int64_t qd = hp->n_head * hd, kd = hp->n_head_kv * hd, vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    if (L->wqkv.data) {
        const int64_t W = qd + kd + vd;
        for (int64_t t = 0; t < n; t++) {
            memcpy(f->q + t * qd, f->qkv + t * W, (size_t)qd * sizeof(float));
            memcpy(f->k + t * kd, f->qkv + t * W + qd, (size_t)kd * sizeof(float));
            memcpy(f->v + t * vd, f->qkv + t * W + qd + kd, (size_t)vd * sizeof(float));
        }
    }
    if (hp->clamp_kqv > 0.0f) {
        s_clamp(f->q, n * qd, hp->clamp_kqv);
        s_clamp(f->k, n * kd, hp->clamp_kqv);
        s_clamp(f->v, n * vd, hp->clamp_kqv);
    }
    if (fl & WG_F_QK_NORM_HEAD) {
        s_rms(f, f->q, n * hp->n_head, hd, L->q_norm);
        s_rms(f, f->k, n * hp->n_head_kv, hd, L->k_norm);
    } else if (fl & WG_F_QK_NORM_FULL) {
        s_rms(f, f->q, n, qd, L->q_norm);
        s_rms(f, f->k, n, kd, L->k_norm);
    }
    s_rope_put_t a = {.f = f, .il = il, .qd = qd, .kd = kd, .vd = vd};
    wg_layer_rope(m, il, &a.rope);
    /* a token's angles are n_rot/2 sincos, its K/V rows a few lines: ~1 us per 4 */
    s_par(f, n, 4, s_rope_put_part, &a);
}

/* The attention call of layer il over the batch (queries in f->q, output in f->att). */
static wg_attn_args_t s_attn_args(const s_fwd_t *f, int il) {
    const wg_hparams_t *hp = &f->m->hp;
    const int64_t qd = hp->n_head * hp->head_dim;
    return (wg_attn_args_t){
        .kv = f->kv, .layer = il, .n_tok = f->n, .seq = f->seq, .pos = f->pos, .q = f->q, .q_stride = qd,
        .out = f->att, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
        .head_dim_v = hp->head_dim_v, .scale = hp->attn_scale,
        .window = wg_layer_is_swa(hp, il) ? hp->n_swa : 0, .softcap = hp->attn_softcap,
        .sinks = f->m->layers[il].attn_sinks,
    };
}

/* Self-attention of one layer: cur [n][n_embd] -> out [n][n_embd]. */
static wg_status s_build_attn(s_fwd_t *f, int il, const float *cur, float *out) {
    const wg_model_t *m = f->m;
    if (m->arch->flags & WG_F_MLA) return s_build_attn_mla(f, il, cur, out);
    const wg_layer_t *L = &m->layers[il];
    wg_status st;
    if (L->wqkv.data) {
        if ((st = s_mm(f, &L->wqkv, 0, cur, f->n, f->qkv, L->bqkv))) return st;
    } else {
        const wg_weight_t *w3[3] = {&L->wq, &L->wk, &L->wv};
        float *y3[3] = {f->q, f->k, f->v};
        const float *b3[3] = {L->bq, L->bk, L->bv};
        if ((st = s_mm_n(f, 3, w3, 0, cur, f->n, y3, b3))) return st;
    }
    s_attn_post_qkv(f, il);
    const wg_attn_args_t a = s_attn_args(f, il);
    if ((st = f->be->attention(f->bctx, &a))) return st;
    return s_mm(f, &L->wo, 0, f->att, f->n, out, L->bo);
}

/* Dense FFN on M rows: x [M][n_embd] -> out [M][n_embd]. `e` selects an expert. */
static wg_status s_build_ffn(s_fwd_t *f, const wg_weight_t *gate, const wg_weight_t *up,
                             const wg_weight_t *down, int64_t e, const float *gate_b, const float *up_b,
                             const float *down_b, const float *x, int64_t M, float *out) {
    const wg_model_t *m = f->m;
    const uint32_t fl = m->arch->flags;
    wg_status st;
    if (fl & WG_F_FUSED_GATE_UP && !gate->data) {
        /* ffn_up rows are [gate; up]: one product, then split. */
        const int64_t F2 = up->n, F = F2 / 2;
        if ((st = s_mm(f, up, e, x, M, f->u, up_b))) return st;
        for (int64_t t = M - 1; t >= 0; t--) {
            memcpy(f->g + t * F, f->u + t * F2, (size_t)F * sizeof(float));
        }
        for (int64_t t = 0; t < M; t++) memmove(f->u + t * F, f->u + t * F2 + F, (size_t)F * sizeof(float));
        f->be->act(f->bctx, m->arch->act, f->g, f->u, M * F);
    } else if (gate->data) {
        const wg_weight_t *w2[2] = {gate, up};
        float *y2[2] = {f->g, f->u};
        const float *b2[2] = {gate_b, up_b};
        if ((st = s_mm_n(f, 2, w2, e, x, M, y2, b2))) return st;
        f->be->act(f->bctx, m->arch->act, f->g, f->u, M * gate->n);
    } else {
        if ((st = s_mm(f, up, e, x, M, f->g, up_b))) return st;
        f->be->act(f->bctx, m->arch->act, f->g, NULL, M * up->n);
    }
    return s_mm(f, down, e, f->g, M, out, down_b);
}

static void s_softmax(float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += (double)x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* Mixture of experts: route each token to top-k experts, run each expert once
 * over the tokens routed to it, combine in slot order (as ggml sums them). */
static wg_status s_build_moe(s_fwd_t *f, int il, const float *cur, float *out) {
    const wg_model_t *m = f->m;
    const wg_hparams_t *hp = &m->hp;
    const wg_layer_t *L = &m->layers[il];
    const int64_t n = f->n, E = hp->n_embd, X = hp->n_expert, K = hp->n_expert_used;
    wg_status st;
    if ((st = s_mm(f, &L->gate_inp, 0, cur, n, f->router, L->gate_inp_b))) return st;
    for (int64_t t = 0; t < n; t++) {
        float *p = f->router + t * X;
        if (hp->moe_gating == WG_GATE_SOFTMAX)
            s_softmax(p, X);
        else if (hp->moe_gating == WG_GATE_SIGMOID)
            for (int64_t i = 0; i < X; i++) p[i] = 1.0f / (1.0f + expf(-p[i]));
        /* Selection may use a bias (exp_probs_b); the weights never do. */
        const float *bias = L->exp_probs_b;
        int32_t *sel = f->sel + t * K;
        float *w = f->selw + t * K;
        for (int64_t s = 0; s < K; s++) {
            int32_t best = -1;
            float best_v = 0.0f;
            for (int32_t i = 0; i < X; i++) {
                bool taken = false;
                for (int64_t j = 0; j < s; j++) taken |= sel[j] == i;
                const float v = bias ? p[i] + bias[i] : p[i];
                if (!taken && (best < 0 || v > best_v)) {
                    best = i;
                    best_v = v;
                }
            }
            sel[s] = best;
            w[s] = p[best];
        }
        if (hp->moe_gating == WG_GATE_SOFTMAX_SELECTED) s_softmax(w, K);
        if (hp->moe_renorm) {
            float sum = 0.0f;
            for (int64_t s = 0; s < K; s++) sum += w[s];
            for (int64_t s = 0; s < K; s++) w[s] /= sum;
        }
        if (hp->moe_w_scale != 1.0f)
            for (int64_t s = 0; s < K; s++) w[s] *= hp->moe_w_scale;
    }
    for (int32_t e = 0; e < X; e++) {
        int64_t M = 0;
        for (int64_t t = 0; t < n; t++)
            for (int64_t s = 0; s < K; s++)
                if (f->sel[t * K + s] == e) {
                    f->rows[M] = (int32_t)(t * K + s);
                    memcpy(f->moe_x + M * E, cur + t * E, (size_t)E * sizeof(float));
                    M++;
                }
        if (M == 0) continue;
        const int64_t F = L->up_exps.n;
        if ((st = s_build_ffn(f, &L->gate_exps, &L->up_exps, &L->down_exps, e,
                              L->gate_exps_b ? L->gate_exps_b + e * F : NULL, L->up_exps_b ? L->up_exps_b + e * F : NULL,
                              L->down_exps_b ? L->down_exps_b + e * E : NULL, f->moe_x, M, f->moe_y)))
            return st;
        for (int64_t r = 0; r < M; r++)
            memcpy(f->moe_slots + (int64_t)f->rows[r] * E, f->moe_y + r * E, (size_t)E * sizeof(float));
    }
    for (int64_t t = 0; t < n; t++) {
        float *o = out + t * E;
        for (int64_t s = 0; s < K; s++) {
            const float *y = f->moe_slots + (t * K + s) * E;
            const float w = f->selw[t * K + s];
            if (s == 0)
                for (int64_t i = 0; i < E; i++) o[i] = y[i] * w;
            else
                for (int64_t i = 0; i < E; i++) o[i] += y[i] * w;
        }
    }
    if (L->up_shexp.data) {
        if ((st = s_build_ffn(f, &L->gate_shexp, &L->up_shexp, &L->down_shexp, 0, NULL, NULL, NULL, cur, n,
                              f->moe_y)))
            return st;
        for (int64_t i = 0; i < n * E; i++) out[i] += f->moe_y[i];
    }
    return WG_OK;
}

/* The residual adds of layer il over n rows, shared by the layer-by-layer
 * path and the fused decode's `after` hooks. The attention output gets its
 * post norm, then goes into x, unless the layer is a parallel block, which
 * adds it with the FFN output: x = (a + f) + x. */
static void s_attn_out_into_x(s_fwd_t *f, int il, float *a_out, float *x, int64_t n) {
    const wg_model_t *m = f->m;
    const int64_t E = m->hp.n_embd;
    const wg_layer_t *L = &m->layers[il];
    if (L->attn_post_norm) s_build_norm(f, a_out, n, E, L->attn_post_norm, NULL);
    if (!(m->arch->flags & WG_F_PARALLEL))
        for (int64_t i = 0; i < n * E; i++) x[i] += a_out[i];
}

static void s_ffn_out_into_x(s_fwd_t *f, int il, const float *a_out, float *f_out, float *x, int64_t n) {
    const wg_model_t *m = f->m;
    const int64_t E = m->hp.n_embd;
    const wg_layer_t *L = &m->layers[il];
    if (m->arch->flags & WG_F_PARALLEL) {
        for (int64_t i = 0; i < n * E; i++) x[i] = (a_out[i] + f_out[i]) + x[i];
        return;
    }
    if (L->ffn_post_norm) s_build_norm(f, f_out, n, E, L->ffn_post_norm, NULL);
    for (int64_t i = 0; i < n * E; i++) x[i] += f_out[i];
}

/* The glue after a sublayer of a sequential (not parallel) block, as one
 * row pass: the sublayer's output row into x (s_attn_out_into_x or
 * s_ffn_out_into_x on that row: post norm, add), then cur = x normalized
 * with norm_w/norm_b (a copy when there is no pre-norm). Row by row these
 * are the ops of the whole-batch calls, so the bits are theirs; an op on one
 * row never uses the pool. */
typedef struct {
    s_fwd_t *f;
    int il;
    bool ffn;                 /* the FFN's output (else the attention's) */
    float *x, *add, *cur;
    const float *norm_w, *norm_b;
} s_resid_t;

static void s_resid_part(void *arg, int64_t r0, int64_t r1) {
    const s_resid_t *a = arg;
    s_fwd_t *f = a->f;
    const int64_t E = f->m->hp.n_embd;
    for (int64_t r = r0; r < r1; r++) {
        float *x = a->x + r * E, *add = a->add + r * E, *cur = a->cur + r * E;
        if (a->ffn)
            s_ffn_out_into_x(f, a->il, NULL, add, x, 1); /* a parallel block's a_out is not read here */
        else
            s_attn_out_into_x(f, a->il, add, x, 1);
        memcpy(cur, x, (size_t)E * sizeof(float));
        if (!(f->m->arch->flags & WG_F_NO_PRE_NORM)) s_build_norm(f, cur, 1, E, a->norm_w, a->norm_b);
    }
}

static void s_resid_norm(s_fwd_t *f, int il, bool ffn, float *x, float *add, float *cur, const float *norm_w,
                         const float *norm_b) {
    WG_ASSERT(!(f->m->arch->flags & WG_F_PARALLEL));
    s_resid_t a = {.f = f, .il = il, .ffn = ffn, .x = x, .add = add, .cur = cur, .norm_w = norm_w, .norm_b = norm_b};
    s_par(f, f->n, 4, s_resid_part, &a);
}

/* Token embeddings of rows [t0, t1) into x (scaled where the arch says). */
typedef struct {
    s_fwd_t *f;
    const wg_batch_tok_t *batch;
    float *x;
} s_embd_t;

static void s_embd_part(void *arg, int64_t t0, int64_t t1) {
    const s_embd_t *a = arg;
    const wg_model_t *m = a->f->m;
    const int64_t E = m->hp.n_embd;
    const wg_type_traits_t *etr = wg_type_traits(m->tok_embd.type);
    for (int64_t t = t0; t < t1; t++) {
        const char *row = (const char *)m->tok_embd.data + (size_t)a->batch[t].token * m->tok_embd.row_bytes;
        etr->to_float(row, a->x + t * E, E);
        if (m->arch->flags & WG_F_EMBD_SCALE) {
            const float sc = sqrtf((float)E);
            for (int64_t i = 0; i < E; i++) a->x[t * E + i] *= sc;
        }
    }
}

/* ---- one decode token as one fused run (wg_backend_ops_t.run) ----
 * A batch of one token runs every layer and the output head as a list of
 * steps the backend executes in one job on all its threads: per layer the
 * Q/K/V products (each thread normalizes its own copy of x first), the
 * attention, the output projection (adding into x), the gate/up products
 * (activation applied per row) and the down projection (adding into x). The
 * glue between them (rope and the cache writes, post norms, parallel-block
 * sums, soft-cap) runs in `after` hooks on one thread. Every number is
 * computed by the same operations as in the layer-by-layer path below. */

typedef struct {
    s_fwd_t *f;       /* the forward call */
    float *x;         /* [n_embd] residual stream */
    float *a_out;     /* [n_embd] attention output */
    float *f_out;     /* [n_embd] FFN output */
    float *logits;    /* [n_vocab] */
} s_fused_t;

static wg_status s_after_qkv(void *arg, const wg_step_t *s) {
    s_fused_t *u = arg;
    s_attn_post_qkv(u->f, s->layer);
    return WG_OK;
}

static wg_status s_after_attn_out(void *arg, const wg_step_t *s) {
    s_fused_t *u = arg;
    s_attn_out_into_x(u->f, s->layer, u->a_out, u->x, 1);
    return WG_OK;
}

static wg_status s_after_ffn_out(void *arg, const wg_step_t *s) {
    s_fused_t *u = arg;
    s_ffn_out_into_x(u->f, s->layer, u->a_out, u->f_out, u->x, 1);
    return WG_OK;
}

static wg_status s_after_logits(void *arg, const wg_step_t *s) {
    (void)s;
    s_fused_t *u = arg;
    const wg_hparams_t *hp = &u->f->m->hp;
    const float c = hp->final_softcap;
    for (int64_t i = 0; i < hp->n_vocab; i++) u->logits[i] = tanhf(u->logits[i] / c) * c;
    return WG_OK;
}

/* Steps a fused decode needs (room for `steps`). */
static int64_t s_fused_n_steps(const wg_model_t *m) { return 5 * (int64_t)m->hp.n_layer + 1; }

/* Run the layers and the output head of one token (x holds its embedding)
 * as one fused run. WG_ERR_UNSUPPORTED, with nothing done, when a layer has
 * a part the steps do not cover (MLA, MoE, a fused gate/up matrix) or the
 * backend cannot run some step: the caller then takes the per-op path. */
static wg_status s_fused_decode(s_fwd_t *f, wg_step_t *steps, float *x, float *a_out, float *f_out,
                                float *logits) {
    const wg_model_t *m = f->m;
    const wg_hparams_t *hp = &m->hp;
    const uint32_t fl = m->arch->flags;
    if (!f->be->run || f->n != 1 || (fl & WG_F_MLA)) return WG_ERR_UNSUPPORTED;
    s_fused_t u = {.f = f, .x = x, .a_out = a_out, .f_out = f_out, .logits = logits};
    const bool par = fl & WG_F_PARALLEL, pre = !(fl & WG_F_NO_PRE_NORM);
    const wg_step_t norm_x = {.kind = WG_STEP_MATMUL, .in = x, .norm = pre, .norm_kind = m->arch->norm,
                              .eps = hp->norm_eps, .after_arg = &u};
    int n = 0;
    for (int il = 0; il < hp->n_layer; il++) {
        const wg_layer_t *L = &m->layers[il];
        if (L->gate_inp.data || (!L->ffn_gate.data && (fl & WG_F_FUSED_GATE_UP))) return WG_ERR_UNSUPPORTED;
        wg_step_t *s = &steps[n++];
        *s = norm_x;
        s->layer = il;
        s->norm_w = L->attn_norm;
        s->norm_b = L->attn_norm_b;
        if (L->wqkv.data) {
            s->n_w = 1;
            s->w[0] = &L->wqkv;
            s->y[0] = f->qkv;
            s->b[0] = L->bqkv;
        } else {
            s->n_w = 3;
            s->w[0] = &L->wq, s->w[1] = &L->wk, s->w[2] = &L->wv;
            s->y[0] = f->q, s->y[1] = f->k, s->y[2] = f->v;
            s->b[0] = L->bq, s->b[1] = L->bk, s->b[2] = L->bv;
        }
        s->after = s_after_qkv;

        s = &steps[n++];
        *s = (wg_step_t){.kind = WG_STEP_ATTN, .attn = s_attn_args(f, il), .layer = il};

        s = &steps[n++];
        *s = (wg_step_t){.kind = WG_STEP_MATMUL, .in = f->att, .n_w = 1, .w = {&L->wo}, .y = {a_out},
                         .b = {L->bo}, .layer = il, .after_arg = &u};
        if (L->attn_post_norm)
            s->after = s_after_attn_out;
        else if (!par)
            s->resid = x;

        /* A parallel block's FFN reads the attention's input norm of the
         * same x, which is still unchanged. */
        s = &steps[n++];
        *s = norm_x;
        s->layer = il;
        s->norm_w = par ? L->attn_norm : L->ffn_norm;
        s->norm_b = par ? L->attn_norm_b : L->ffn_norm_b;
        s->act = true;
        s->act_kind = m->arch->act;
        if (L->ffn_gate.data) {
            s->n_w = 2;
            s->w[0] = &L->ffn_gate, s->w[1] = &L->ffn_up;
            s->y[0] = f->g, s->y[1] = f->u;
            s->b[1] = L->ffn_up_b;
        } else {
            s->n_w = 1;
            s->w[0] = &L->ffn_up;
            s->y[0] = f->g;
            s->b[0] = L->ffn_up_b;
        }

        s = &steps[n++];
        *s = (wg_step_t){.kind = WG_STEP_MATMUL, .in = f->g, .n_w = 1, .w = {&L->ffn_down}, .y = {f_out},
                         .b = {L->ffn_down_b}, .layer = il, .after_arg = &u};
        if (L->ffn_post_norm || par)
            s->after = s_after_ffn_out;
        else
            s->resid = x;
    }
    if (logits) {
        wg_step_t *s = &steps[n++];
        *s = norm_x;
        s->norm_w = m->out_norm;
        s->norm_b = m->out_norm_b;
        s->norm = true;
        s->n_w = 1;
        s->w[0] = &m->output;
        s->y[0] = logits;
        s->b[0] = m->out_b;
        if (hp->final_softcap > 0.0f) s->after = s_after_logits;
    }
    return f->be->run(f->bctx, steps, n);
}

/* Validate the batch against the cache and reserve blocks (all or nothing). */
static wg_status s_prepare(const wg_model_t *m, wg_kv_t *kv, const wg_batch_tok_t *b, int64_t n,
                           int32_t **next_out, int32_t *n_seq_slots) {
    int32_t max_seq = -1;
    for (int64_t t = 0; t < n; t++) {
        if (b[t].token < 0 || b[t].token >= m->hp.n_vocab)
            return wg_error(WG_ERR_RANGE, "batch[%lld]: token id %d out of range [0, %d)", (long long)t,
                            b[t].token, m->hp.n_vocab);
        if (wg_kv_seq_len(kv, b[t].seq) < 0)
            return wg_error(WG_ERR_INVAL, "batch[%lld]: unknown sequence %d", (long long)t, b[t].seq);
        if (b[t].seq > max_seq) max_seq = b[t].seq;
    }
    int32_t *next = malloc((size_t)(max_seq + 1) * sizeof *next);
    if (!next) return wg_error(WG_ERR_NOMEM, "batch");
    for (int32_t s = 0; s <= max_seq; s++) next[s] = -1;
    for (int64_t t = 0; t < n; t++) {
        int32_t s = b[t].seq;
        if (next[s] < 0) next[s] = wg_kv_seq_len(kv, s);
        if (b[t].pos != next[s]) {
            const int32_t want = next[s];
            free(next);
            return wg_error(WG_ERR_INVAL, "batch[%lld]: sequence %d position %d, expected %d", (long long)t, s,
                            b[t].pos, want);
        }
        if (next[s] == INT32_MAX) {
            free(next);
            return wg_error(WG_ERR_RANGE, "batch[%lld]: position overflow", (long long)t);
        }
        next[s]++;
    }
    int64_t need = 0;
    for (int32_t s = 0; s <= max_seq; s++)
        if (next[s] >= 0) need += wg_kv_blocks_needed(kv, s, next[s]);
    if (need > wg_kv_n_free_blocks(kv)) {
        free(next);
        return wg_error(WG_ERR_FULL, "kv cache: batch needs %lld blocks, %d free", (long long)need,
                        wg_kv_n_free_blocks(kv));
    }
    for (int32_t s = 0; s <= max_seq; s++) {
        if (next[s] < 0) continue;
        wg_status st = wg_kv_reserve(kv, s, next[s]);
        if (st) {
            free(next);
            return st;
        }
    }
    *next_out = next;
    *n_seq_slots = max_seq + 1;
    return WG_OK;
}

wg_status wg_model_forward(const wg_model_t *m, wg_kv_t *kv, wg_pool_t *pool, const wg_batch_tok_t *batch,
                           int64_t n, float *logits) {
    WG_ASSERT(m && kv && (batch || n == 0));
    if (n == 0) return WG_OK;
    if (n < 0 || n > (1 << 24)) return wg_error(WG_ERR_INVAL, "batch: n=%lld", (long long)n);
    const wg_hparams_t *hp = &m->hp;
    int32_t *next = NULL, n_slots = 0;
    if (wg_kv_is_recurrent(kv) != hp->recurrent)
        return wg_error(WG_ERR_INVAL, "forward: %s model given a %s cache (use wg_model_kv_new)", hp->arch,
                        wg_kv_is_recurrent(kv) ? "recurrent-state" : "K/V");
    wg_status st = s_prepare(m, kv, batch, n, &next, &n_slots);
    if (st) return st;
    if (hp->recurrent || wg_kv_device(kv)) {
        /* States were reserved (zeroed for new sequences) by s_prepare. */
        st = wg_kv_device(kv) ? wg_forward_cuda(m, kv, batch, n, logits)
                              : wg_forward_recurrent(m, kv, pool, batch, n, logits);
        if (!st)
            for (int32_t s = 0; s < n_slots; s++)
                if (next[s] >= 0) wg_kv_seq_set_len(kv, s, next[s]);
        free(next);
        return st;
    }

    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const int64_t qd = (int64_t)hp->n_head * hp->head_dim, kd = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t vd = (int64_t)hp->n_head_kv * hp->head_dim_v, od = (int64_t)hp->n_head * hp->head_dim_v;
    int64_t ff = wg_model_ff_max(m);
    if (hp->q_lora > ff) ff = hp->q_lora;
    if (hp->kv_lora > ff) ff = hp->kv_lora;
    int64_t qkv_w = qd + kd + vd;
    if ((int64_t)hp->n_head * hp->head_dim_mla > qkv_w) qkv_w = (int64_t)hp->n_head * hp->head_dim_mla;
    if ((int64_t)hp->n_head * hp->head_dim_v_mla > qkv_w) qkv_w = (int64_t)hp->n_head * hp->head_dim_v_mla;
    const int64_t K = hp->n_expert_used > 0 ? hp->n_expert_used : 1;
    const int64_t X = hp->n_expert > 0 ? hp->n_expert : 1;

    s_fwd_t f = {.m = m, .be = &wg_backend_cpu, .bctx = pool, .kv = kv, .n = n};
    float *x = NULL, *cur = NULL, *a_out = NULL, *f_out = NULL;
    wg_step_t *steps = NULL;
    /* Scratch rows carved from the thread's grow-only arena: pass 0 sizes,
     * pass 1 points (64-byte aligned pieces). */
    char *base = NULL;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
#define S_TAKE(dst, bytes)                                     \
    do {                                                       \
        if (base) (dst) = (void *)(base + off);                \
        off += ((size_t)(bytes) + 63) & ~(size_t)63;           \
    } while (0)
        S_TAKE(x, (size_t)(n * E) * sizeof(float));
        S_TAKE(cur, (size_t)(n * E) * sizeof(float));
        S_TAKE(a_out, (size_t)(n * E) * sizeof(float));
        S_TAKE(f_out, (size_t)(n * E) * sizeof(float));
        S_TAKE(f.seq, (size_t)n * sizeof(int32_t));
        S_TAKE(f.pos, (size_t)n * sizeof(int32_t));
        S_TAKE(f.q, (size_t)(n * qd) * sizeof(float));
        S_TAKE(f.k, (size_t)(n * kd) * sizeof(float));
        S_TAKE(f.v, (size_t)(n * vd) * sizeof(float));
        S_TAKE(f.qkv, (size_t)(n * qkv_w) * sizeof(float));
        S_TAKE(f.att, (size_t)(n * od) * sizeof(float));
        S_TAKE(f.g, (size_t)(n * K * ff) * sizeof(float));
        S_TAKE(f.u, (size_t)(n * K * ff) * sizeof(float));
        S_TAKE(f.moe_x, (size_t)(n * K * E) * sizeof(float));
        S_TAKE(f.moe_y, (size_t)(n * K * E) * sizeof(float));
        S_TAKE(f.moe_slots, (size_t)(n * K * E) * sizeof(float));
        S_TAKE(f.router, (size_t)(n * X) * sizeof(float));
        S_TAKE(f.sel, (size_t)(n * K) * sizeof(int32_t));
        S_TAKE(f.selw, (size_t)(n * K) * sizeof(float));
        S_TAKE(f.rows, (size_t)(n * K) * sizeof(int32_t));
        S_TAKE(steps, n == 1 ? (size_t)s_fused_n_steps(m) * sizeof(wg_step_t) : 0);
#undef S_TAKE
        if (pass == 0 && !(base = s_scratch(off))) {
            st = wg_error(WG_ERR_NOMEM, "forward scratch of %zu bytes for %lld tokens", off, (long long)n);
            goto done;
        }
    }
    const uint32_t fl = m->arch->flags;
    for (int64_t t = 0; t < n; t++) {
        f.seq[t] = batch[t].seq;
        f.pos[t] = batch[t].pos;
    }
    s_embd_t ea = {.f = &f, .batch = batch, .x = x};
    s_par(&f, n, 8, s_embd_part, &ea);
    if (n == 1) {
        WG_ASSERT(logits || !batch[0].want_logits);
        st = s_fused_decode(&f, steps, x, a_out, f_out, batch[0].want_logits ? logits : NULL);
        if (st == WG_OK) goto out_done;
        if (st != WG_ERR_UNSUPPORTED) goto done;
        st = WG_OK;
    }
    /* A sequential block's residual adds, copies and norms between the
     * sublayers run as row passes (s_resid_norm); a parallel block's FFN
     * reads the attention's input norm (cur), and its adds stay as they are. */
    const bool seq_block = !(fl & WG_F_PARALLEL);
    bool cur_ready = false; /* cur already holds this layer's normalized input */
    for (int il = 0; il < hp->n_layer; il++) {
        const wg_layer_t *L = &m->layers[il];
        if (!cur_ready) {
            memcpy(cur, x, (size_t)(n * E) * sizeof(float));
            if (!(fl & WG_F_NO_PRE_NORM)) s_build_norm(&f, cur, n, E, L->attn_norm, L->attn_norm_b);
        }
        if ((st = s_build_attn(&f, il, cur, a_out))) goto done;
        if (seq_block)
            s_resid_norm(&f, il, false, x, a_out, cur, L->ffn_norm, L->ffn_norm_b);
        else
            s_attn_out_into_x(&f, il, a_out, x, n);
        if (L->gate_inp.data)
            st = s_build_moe(&f, il, cur, f_out);
        else
            st = s_build_ffn(&f, &L->ffn_gate, &L->ffn_up, &L->ffn_down, 0, NULL, L->ffn_up_b, L->ffn_down_b, cur, n,
                             f_out);
        if (st) goto done;
        cur_ready = seq_block && il + 1 < hp->n_layer;
        if (cur_ready)
            s_resid_norm(&f, il, true, x, f_out, cur, m->layers[il + 1].attn_norm, m->layers[il + 1].attn_norm_b);
        else
            s_ffn_out_into_x(&f, il, a_out, f_out, x, n);
    }
    /* Output head only for the rows that want logits. */
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; t++)
        if (batch[t].want_logits) memcpy(cur + (n_out++) * E, x + t * E, (size_t)E * sizeof(float));
    if (n_out > 0) {
        WG_ASSERT(logits);
        s_build_norm(&f, cur, n_out, E, m->out_norm, m->out_norm_b);
        if ((st = s_mm(&f, &m->output, 0, cur, n_out, logits, m->out_b))) goto done;
        if (hp->final_softcap > 0.0f) {
            const float c = hp->final_softcap;
            for (int64_t i = 0; i < n_out * V; i++) logits[i] = tanhf(logits[i] / c) * c;
        }
    }
out_done:
    for (int32_t s = 0; s < n_slots; s++)
        if (next[s] >= 0) wg_kv_seq_set_len(kv, s, next[s]);
done:
    free(next);
    return st;
}
