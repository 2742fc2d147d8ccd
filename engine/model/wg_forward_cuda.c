/* wg_forward_cuda — the forward pass on a CUDA device.
 *
 * Same composition as wg_forward.c (norm / attention / FFN / MoE blocks
 * driven by the architecture row's flags), but every activation, the K/V
 * pool and the weights live on the device, and each op is one launch from
 * kernels/cuda. A K/V cache made by wg_model_kv_new_on(..., "cuda:N") carries
 * this file's state (wg_kv_device): the device context, a registry of weight
 * copies (uploaded on first use, freed with the cache), the pool, and grow-only
 * activation buffers.
 *
 * Per call: token ids, positions, local sequence rows, the rows that want
 * logits and the block tables of the batch's sequences go up in one pinned
 * upload; logits come back in one download. Decode steps (no single-sequence
 * prefill, no MoE) are captured as CUDA graphs keyed by their shape (tokens,
 * logit rows, block-table width) on the second call of a shape and replayed
 * afterwards: inputs live at fixed device addresses, so a replay only needs
 * the new upload. WAGGLE_CUDA_GRAPHS=0 turns graphs off.
 *
 * For products with more than WG_CUDA_MMV_MAX_M rows, quantized weights get
 * an F16 copy made once on the device (while free memory stays above a
 * quarter of the card; WAGGLE_CUDA_F16_CACHE=0 turns it off), so batched
 * decode and prefill call cuBLAS straight away instead of dequantizing every
 * step.
 *
 * Not supported here yet (a clear error at cache creation): recurrent
 * families (Mamba, RWKV), multi-head latent attention (DeepSeek-2), gpt-oss's
 * clamped SwiGLU and selected-softmax router, expert-selection biases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../kernels/ref/wg_ref.h"
#include "wg_arch.h"

#define TRY(x)                      \
    do {                            \
        wg_status st_ = (x);        \
        if (st_) return st_;        \
    } while (0)

#ifndef WG_HAVE_CUDA

wg_status wg_forward_cuda_check(const wg_model_t *m, int device) {
    (void)m;
    return wg_error(WG_ERR_UNSUPPORTED, "device cuda:%d: this build has no CUDA backend (rebuild with nvcc "
                                        "present, WAGGLE_CUDA=ON)", device);
}

wg_status wg_forward_cuda_attach(const wg_model_t *m, wg_kv_t *kv, int device) {
    (void)kv;
    return wg_forward_cuda_check(m, device);
}

wg_status wg_forward_cuda_probe(int device, char *name, size_t name_len, double *copy_gbs) {
    (void)name;
    (void)name_len;
    *copy_gbs = 0;
    return wg_error(WG_ERR_UNSUPPORTED, "device cuda:%d: this build has no CUDA backend", device);
}

wg_status wg_forward_cuda(const wg_model_t *m, wg_kv_t *kv, const wg_batch_tok_t *batch, int64_t n,
                          float *logits) {
    (void)m;
    (void)kv;
    (void)batch;
    (void)n;
    (void)logits;
    return wg_error(WG_ERR_UNSUPPORTED, "forward: no CUDA backend in this build");
}

#else

#include "../../kernels/cuda/wg_cuda.h"

#define S_MAX_GRAPHS 32

typedef struct {
    int64_t n, n_out;      /* tokens, logit rows */
    int32_t mb;            /* block-table width */
    bool seen;             /* ran once eagerly */
    wg_cuda_graph_t *g;    /* captured step, or NULL */
} s_graph_t;

/* WAGGLE_CUDA_PROFILE=1: graphs off, a sync around every matmul and
 * attention call, seconds summed per shape, printed to stderr when the cache
 * is freed (development aid; slows everything down). */
#define S_PROF_MAX 96
typedef struct {
    char label[64];
    double sec;
    int64_t calls;
} s_prof_t;

typedef struct {
    wg_cuda_t *ctx;            /* device context */
    bool prof;                 /* WAGGLE_CUDA_PROFILE */
    s_prof_t profs[S_PROF_MAX];
    int n_prof;
    int device;                /* ordinal */
    wg_cuda_weights_t *w;      /* device copies of host weights */
    wg_cuda_weights_t *w16;    /* F16 copies of quantized matrices (M > MMV_MAX_M) */
    bool f16_cache;            /* make F16 copies while memory allows */
    float *pool;               /* K/V pool, wg_kv layout */
    int32_t n_layer, k_dim, v_dim, bt;
    /* activations: one allocation carved in pieces, sized for `cap` tokens */
    int64_t cap;
    void *abuf;
    float *x, *cur, *a_out, *f_out, *q, *k, *v, *qkv, *att, *g, *u, *gu, *moe_x, *moe_y, *slots, *router, *selw,
        *logits;
    int32_t *sel, *cnt, *off, *rows;
    /* inputs: ids[n] seq[n] pos[n] out[n] table[rows*mb] */
    size_t in_cap;             /* int32 entries */
    int32_t *d_in;             /* device */
    int32_t *h_in;             /* pinned host */
    int32_t *h_cnt;            /* [n_expert] expert counts (MoE) */
    int32_t *seq_row;          /* [seq_cap] local row of each sequence id, -1 */
    int32_t seq_cap;
    bool use_graphs;
    s_graph_t graphs[S_MAX_GRAPHS];
    int n_graphs;
    bool moe;                  /* model has MoE layers (no graphs) */
} s_dev_t;

/* Per-call view. */
typedef struct {
    const wg_model_t *m;
    s_dev_t *d;
    int64_t n, n_out;
    int32_t n_rows, mb;        /* sequences in the batch, table width */
    bool prefill;              /* one sequence, n > 1: flash prefill kernel */
    int32_t pos0;              /* its first position */
    const int32_t *ids, *seq, *pos, *out_rows, *table; /* device views of d_in */
} s_call_t;


static bool s_env_off(const char *name) {
    const char *v = getenv(name);
    return v && (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "no"));
}

static void s_graphs_clear(s_dev_t *d) {
    for (int i = 0; i < d->n_graphs; i++) wg_cuda_graph_destroy(&d->graphs[i].g);
    d->n_graphs = 0;
}

static double s_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void s_prof_add(s_dev_t *d, const char *label, double sec) {
    int i = 0;
    while (i < d->n_prof && strcmp(d->profs[i].label, label)) i++;
    if (i == d->n_prof) {
        if (d->n_prof == S_PROF_MAX) return;
        snprintf(d->profs[d->n_prof++].label, sizeof d->profs[0].label, "%s", label);
    }
    d->profs[i].sec += sec;
    d->profs[i].calls++;
}

static int s_prof_cmp(const void *a, const void *b) {
    const double x = ((const s_prof_t *)a)->sec, y = ((const s_prof_t *)b)->sec;
    return (x < y) - (x > y);
}

/* Run `call` between two syncs when profiling, charging its time to label. */
#define S_PROF(d, label, call)                                \
    do {                                                      \
        if (!(d)->prof) {                                     \
            TRY(call);                                        \
        } else {                                              \
            TRY(wg_cuda_sync((d)->ctx));                      \
            const double t0_ = s_now();                       \
            TRY(call);                                        \
            TRY(wg_cuda_sync((d)->ctx));                      \
            s_prof_add((d), (label), s_now() - t0_);          \
        }                                                     \
    } while (0)

static void s_dev_free(void *p) {
    s_dev_t *d = p;
    if (!d) return;
    if (d->prof && d->n_prof) {
        qsort(d->profs, (size_t)d->n_prof, sizeof d->profs[0], s_prof_cmp);
        fprintf(stderr, "cuda profile (cuda:%d):\n%-48s %10s %10s %10s\n", d->device, "op", "calls", "total ms",
                "us/call");
        for (int i = 0; i < d->n_prof; i++)
            fprintf(stderr, "%-48s %10lld %10.2f %10.1f\n", d->profs[i].label, (long long)d->profs[i].calls,
                    d->profs[i].sec * 1e3, d->profs[i].sec * 1e6 / (double)d->profs[i].calls);
    }
    if (d->ctx) wg_cuda_sync(d->ctx);
    s_graphs_clear(d);
    wg_cuda_weights_destroy(&d->w16);
    wg_cuda_weights_destroy(&d->w);
    if (d->ctx) {
        wg_cuda_free(d->ctx, d->abuf);
        wg_cuda_free(d->ctx, d->d_in);
        wg_cuda_free(d->ctx, d->pool);
    }
    wg_cuda_host_free(d->h_in);
    free(d->h_cnt);
    free(d->seq_row);
    wg_cuda_destroy(&d->ctx);
    free(d);
}

/* ---- weights ---- */

static wg_status s_vec(s_dev_t *d, const float *h, int64_t n, const float **dp) {
    *dp = NULL;
    if (!h) return WG_OK;
    return wg_cuda_weights_get(d->w, h, (size_t)n * sizeof(float), (const void **)dp);
}

static bool s_is_float(wg_type_t t) { return t == WG_TYPE_F32 || t == WG_TYPE_F16 || t == WG_TYPE_BF16; }

/* Y[M][w.n] = X @ rows(w, e)^T (+ b). same_x: X is the previous product's X,
 * untouched since (its Q8_1 copy is reused; see wg_cuda_matmul_same_x). */
static wg_status s_mm_x(s_call_t *c, const wg_weight_t *w, int64_t e, const float *X, int64_t M, float *Y,
                        const float *b, bool same_x) {
    s_dev_t *d = c->d;
    if (!wg_cuda_type_supported(w->type))
        return wg_error(WG_ERR_UNSUPPORTED, "cuda: weight type %s has no device kernel (use --device cpu)",
                        wg_type_name(w->type));
    const void *host = wg_weight_rows(w, e);
    const void *W = NULL;
    TRY(wg_cuda_weights_get(d->w, host, (size_t)w->n * w->row_bytes, &W));
    wg_type_t t = w->type;
    if (M > WG_CUDA_MMV_MAX_M && !s_is_float(t) && d->f16_cache) {
        const void *W16 = wg_cuda_weights_find(d->w16, host);
        if (!W16) {
            const size_t bytes = (size_t)w->n * (size_t)w->k * 2;
            size_t fr = 0, tot = 0;
            TRY(wg_cuda_mem_info(d->ctx, &fr, &tot));
            if (fr > bytes && fr - bytes > tot / 4) {
                void *p = NULL;
                TRY(wg_cuda_malloc(d->ctx, bytes, &p));
                wg_status st = wg_cuda_dequant_f16(d->ctx, t, W, p, w->n, w->k);
                if (!st) st = wg_cuda_weights_adopt(d->w16, host, p, bytes);
                if (st) {
                    wg_cuda_free(d->ctx, p);
                    return st;
                }
                W16 = p;
            } else {
                d->f16_cache = false; /* the card is filling up: dequantize per call from now on */
            }
        }
        if (W16) {
            W = W16;
            t = WG_TYPE_F16;
        }
    }
    char lbl[64] = "";
    if (d->prof)
        snprintf(lbl, sizeof lbl, "mm %s %lldx%lld M=%lld", wg_type_name(t), (long long)w->n, (long long)w->k,
                 (long long)M);
    S_PROF(d, lbl,
           (same_x ? wg_cuda_matmul_same_x : wg_cuda_matmul)(d->ctx, t, W, w->n, w->k, X, M, Y));
    if (b) {
        const float *db = NULL;
        TRY(s_vec(d, b, w->n, &db));
        TRY(wg_cuda_add_bias(d->ctx, Y, db, M, w->n));
    }
    return WG_OK;
}

static wg_status s_mm(s_call_t *c, const wg_weight_t *w, int64_t e, const float *X, int64_t M, float *Y,
                      const float *b) {
    return s_mm_x(c, w, e, X, M, Y, b, false);
}

static wg_cuda_norm_t s_norm_kind(wg_norm_kind_t k) {
    return k == WG_NORM_RMS ? WG_CUDA_NORM_RMS : k == WG_NORM_LAYER ? WG_CUDA_NORM_LAYER : WG_CUDA_NORM_LAYER_NOPARAM;
}

static wg_status s_norm(s_call_t *c, wg_norm_kind_t kind, float *x, int64_t rows, int64_t n, int64_t stride,
                        const float *w, const float *b) {
    const float *dw = NULL, *db = NULL;
    TRY(s_vec(c->d, w, n, &dw));
    TRY(s_vec(c->d, b, n, &db));
    return wg_cuda_norm(c->d->ctx, s_norm_kind(kind), x, rows, n, stride, dw, db, c->m->hp.norm_eps);
}

static wg_cuda_act_t s_act(wg_act_t a) {
    switch (a) {
    case WG_ACT_GELU: return WG_CUDA_ACT_GELU;
    case WG_ACT_GELU_ERF: return WG_CUDA_ACT_GELU_ERF;
    case WG_ACT_RELU2: return WG_CUDA_ACT_RELU2;
    default: return WG_CUDA_ACT_SILU;
    }
}

/* ---- blocks ---- */

static wg_status s_attn(s_call_t *c, int il, const float *cur, float *out) {
    const wg_model_t *m = c->m;
    s_dev_t *d = c->d;
    const wg_hparams_t *hp = &m->hp;
    const wg_layer_t *L = &m->layers[il];
    const uint32_t fl = m->arch->flags;
    const int64_t n = c->n, hd = hp->head_dim;
    const int64_t qd = hp->n_head * hd, kd = hp->n_head_kv * hd, vd = (int64_t)hp->n_head_kv * hp->head_dim_v;
    if (L->wqkv.data) {
        const int64_t W = qd + kd + vd;
        TRY(s_mm(c, &L->wqkv, 0, cur, n, d->qkv, L->bqkv));
        TRY(wg_cuda_copy_rows(d->ctx, d->q, qd, d->qkv, W, n, qd));
        TRY(wg_cuda_copy_rows(d->ctx, d->k, kd, d->qkv + qd, W, n, kd));
        TRY(wg_cuda_copy_rows(d->ctx, d->v, vd, d->qkv + qd + kd, W, n, vd));
    } else {
        TRY(s_mm(c, &L->wq, 0, cur, n, d->q, L->bq));
        TRY(s_mm_x(c, &L->wk, 0, cur, n, d->k, L->bk, true));
        TRY(s_mm_x(c, &L->wv, 0, cur, n, d->v, L->bv, true));
    }
    if (hp->clamp_kqv > 0.0f) {
        TRY(wg_cuda_clamp(d->ctx, d->q, n * qd, hp->clamp_kqv));
        TRY(wg_cuda_clamp(d->ctx, d->k, n * kd, hp->clamp_kqv));
        TRY(wg_cuda_clamp(d->ctx, d->v, n * vd, hp->clamp_kqv));
    }
    if (fl & WG_F_QK_NORM_HEAD) {
        TRY(s_norm(c, WG_NORM_RMS, d->q, n * hp->n_head, hd, hd, L->q_norm, NULL));
        TRY(s_norm(c, WG_NORM_RMS, d->k, n * hp->n_head_kv, hd, hd, L->k_norm, NULL));
    } else if (fl & WG_F_QK_NORM_FULL) {
        TRY(s_norm(c, WG_NORM_RMS, d->q, n, qd, qd, L->q_norm, NULL));
        TRY(s_norm(c, WG_NORM_RMS, d->k, n, kd, kd, L->k_norm, NULL));
    }
    const bool swa = wg_layer_is_swa(hp, il);
    wg_rope_t hr;
    wg_layer_rope(m, il, &hr);
    if (hr.style != WG_ROPE_NONE && hr.n_rot > 0) {
        wg_cuda_rope_t r = {
            .style = hr.style == WG_ROPE_NEOX ? WG_CUDA_ROPE_NEOX : WG_CUDA_ROPE_NORM,
            .n_rot = hr.n_rot,
            .base = hr.base,
            .freq_scale = hr.freq_scale,
            .ext_factor = hr.ext_factor,
            .attn_factor = hr.attn_factor,
            .corr_dims = {hr.corr_dims[0], hr.corr_dims[1]},
        };
        TRY(s_vec(d, hr.freq_factors, hr.n_rot / 2, &r.freq_factors));
        TRY(wg_cuda_rope(d->ctx, &r, d->q, n, hp->n_head, (int32_t)hd, qd, c->pos));
        TRY(wg_cuda_rope(d->ctx, &r, d->k, n, hp->n_head_kv, (int32_t)hd, kd, c->pos));
    }
    const wg_cuda_kv_t kv = {.pool = d->pool, .n_layer = d->n_layer, .k_dim = d->k_dim, .v_dim = d->v_dim,
                             .block_tokens = d->bt, .block_table = c->table, .max_blocks = c->mb};
    TRY(wg_cuda_kv_store(d->ctx, &kv, il, n, c->seq, c->pos, d->k, kd, d->v, vd));
    wg_cuda_attn_t a = {
        .layer = il, .n_tok = n, .seq = c->seq, .pos = c->pos, .q = d->q, .q_stride = qd, .out = d->att,
        .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = (int32_t)hd, .head_dim_v = hp->head_dim_v,
        .scale = hp->attn_scale, .window = swa ? hp->n_swa : 0, .softcap = hp->attn_softcap,
    };
    TRY(s_vec(d, L->attn_sinks, hp->n_head, &a.sinks));
    if (c->prefill)
        S_PROF(d, "attention prefill", wg_cuda_attention_prefill(d->ctx, &kv, &a, 0, c->pos0));
    else
        S_PROF(d, "attention decode", wg_cuda_attention_decode(d->ctx, &kv, &a));
    return s_mm(c, &L->wo, 0, d->att, n, out, L->bo);
}

static wg_status s_ffn(s_call_t *c, const wg_weight_t *gate, const wg_weight_t *up, const wg_weight_t *down,
                       int64_t e, const float *gate_b, const float *up_b, const float *down_b, const float *x,
                       int64_t M, float *out) {
    const wg_model_t *m = c->m;
    s_dev_t *d = c->d;
    const wg_cuda_act_t act = s_act(m->arch->act);
    if ((m->arch->flags & WG_F_FUSED_GATE_UP) && !gate->data) {
        const int64_t F2 = up->n, F = F2 / 2;
        TRY(s_mm(c, up, e, x, M, d->gu, up_b));
        TRY(wg_cuda_copy_rows(d->ctx, d->g, F, d->gu, F2, M, F));
        TRY(wg_cuda_copy_rows(d->ctx, d->u, F, d->gu + F, F2, M, F));
        TRY(wg_cuda_act(d->ctx, act, d->g, d->u, M * F));
    } else if (gate->data) {
        TRY(s_mm(c, gate, e, x, M, d->g, gate_b));
        TRY(s_mm_x(c, up, e, x, M, d->u, up_b, true));
        TRY(wg_cuda_act(d->ctx, act, d->g, d->u, M * gate->n));
    } else {
        TRY(s_mm(c, up, e, x, M, d->g, up_b));
        TRY(wg_cuda_act(d->ctx, act, d->g, NULL, M * up->n));
    }
    return s_mm(c, down, e, d->g, M, out, down_b);
}

/* MoE: route on the device, read the per-expert counts back (one sync per
 * layer), run each used expert over its gathered rows, combine in slot order. */
static wg_status s_moe(s_call_t *c, int il, const float *cur, float *out) {
    const wg_model_t *m = c->m;
    s_dev_t *d = c->d;
    const wg_hparams_t *hp = &m->hp;
    const wg_layer_t *L = &m->layers[il];
    const int64_t n = c->n, E = hp->n_embd;
    const int32_t X = hp->n_expert, K = hp->n_expert_used;
    TRY(s_mm(c, &L->gate_inp, 0, cur, n, d->router, L->gate_inp_b));
    TRY(wg_cuda_moe_route(d->ctx, d->router, n, X, K,
                          hp->moe_gating == WG_GATE_SIGMOID ? WG_CUDA_GATE_SIGMOID : WG_CUDA_GATE_SOFTMAX,
                          hp->moe_renorm, d->sel, d->selw));
    TRY(wg_cuda_moe_plan(d->ctx, d->sel, n, K, X, d->cnt, d->off, d->rows));
    TRY(wg_cuda_download(d->ctx, d->h_cnt, d->cnt, (size_t)X * sizeof(int32_t)));
    int64_t off = 0;
    const int64_t F = L->up_exps.n;
    for (int32_t e = 0; e < X; e++) {
        const int64_t M = d->h_cnt[e];
        if (M == 0) continue;
        TRY(wg_cuda_gather_rows(d->ctx, cur, E, d->rows + off, K, M, d->moe_x, E, E));
        TRY(s_ffn(c, &L->gate_exps, &L->up_exps, &L->down_exps, e, L->gate_exps_b ? L->gate_exps_b + e * F : NULL,
                  L->up_exps_b ? L->up_exps_b + e * F : NULL, L->down_exps_b ? L->down_exps_b + e * E : NULL,
                  d->moe_x, M, d->moe_y));
        TRY(wg_cuda_scatter_rows(d->ctx, d->moe_y, E, d->rows + off, M, d->slots, E, E));
        off += M;
    }
    TRY(wg_cuda_moe_combine(d->ctx, d->slots, d->selw, n, K, E, out));
    if (L->up_shexp.data) {
        TRY(s_ffn(c, &L->gate_shexp, &L->up_shexp, &L->down_shexp, 0, NULL, NULL, NULL, cur, n, d->moe_y));
        TRY(wg_cuda_add(d->ctx, out, d->moe_y, n * E));
    }
    return WG_OK;
}

/* The whole step, enqueued on the context's stream (inputs already uploaded). */
static wg_status s_step(s_call_t *c) {
    const wg_model_t *m = c->m;
    s_dev_t *d = c->d;
    const wg_hparams_t *hp = &m->hp;
    const uint32_t fl = m->arch->flags;
    const int64_t n = c->n, E = hp->n_embd;
    const void *emb = NULL;
    TRY(wg_cuda_weights_get(d->w, m->tok_embd.data, (size_t)m->tok_embd.n * m->tok_embd.row_bytes, &emb));
    TRY(wg_cuda_get_rows(d->ctx, m->tok_embd.type, emb, m->tok_embd.row_bytes, E, c->ids, n, d->x,
                         (fl & WG_F_EMBD_SCALE) ? sqrtf((float)E) : 1.0f));
    const wg_norm_kind_t nk = m->arch->norm;
    for (int il = 0; il < hp->n_layer; il++) {
        const wg_layer_t *L = &m->layers[il];
        TRY(wg_cuda_copy(d->ctx, d->cur, d->x, (size_t)(n * E) * sizeof(float)));
        if (!(fl & WG_F_NO_PRE_NORM)) TRY(s_norm(c, nk, d->cur, n, E, E, L->attn_norm, L->attn_norm_b));
        TRY(s_attn(c, il, d->cur, d->a_out));
        if (L->attn_post_norm) TRY(s_norm(c, nk, d->a_out, n, E, E, L->attn_post_norm, NULL));
        if (fl & WG_F_PARALLEL) {
            if (L->gate_inp.data)
                TRY(s_moe(c, il, d->cur, d->f_out));
            else
                TRY(s_ffn(c, &L->ffn_gate, &L->ffn_up, &L->ffn_down, 0, NULL, L->ffn_up_b, L->ffn_down_b, d->cur, n,
                          d->f_out));
            TRY(wg_cuda_add2(d->ctx, d->x, d->a_out, d->f_out, n * E));
            continue;
        }
        TRY(wg_cuda_add(d->ctx, d->x, d->a_out, n * E));
        TRY(wg_cuda_copy(d->ctx, d->cur, d->x, (size_t)(n * E) * sizeof(float)));
        if (!(fl & WG_F_NO_PRE_NORM)) TRY(s_norm(c, nk, d->cur, n, E, E, L->ffn_norm, L->ffn_norm_b));
        if (L->gate_inp.data)
            TRY(s_moe(c, il, d->cur, d->f_out));
        else
            TRY(s_ffn(c, &L->ffn_gate, &L->ffn_up, &L->ffn_down, 0, NULL, L->ffn_up_b, L->ffn_down_b, d->cur, n,
                      d->f_out));
        if (L->ffn_post_norm) TRY(s_norm(c, nk, d->f_out, n, E, E, L->ffn_post_norm, NULL));
        TRY(wg_cuda_add(d->ctx, d->x, d->f_out, n * E));
    }
    if (c->n_out == 0) return WG_OK;
    TRY(wg_cuda_gather_rows(d->ctx, d->x, E, c->out_rows, 1, c->n_out, d->cur, E, E));
    TRY(s_norm(c, nk, d->cur, c->n_out, E, E, m->out_norm, m->out_norm_b));
    TRY(s_mm(c, &m->output, 0, d->cur, c->n_out, d->logits, m->out_b));
    if (hp->final_softcap > 0.0f) TRY(wg_cuda_softcap(d->ctx, d->logits, c->n_out * hp->n_vocab, hp->final_softcap));
    return WG_OK;
}

/* ---- buffers ---- */

static wg_status s_reserve(s_dev_t *d, const wg_model_t *m, int64_t n) {
    if (n <= d->cap) return WG_OK;
    const wg_hparams_t *hp = &m->hp;
    int64_t cap = d->cap ? d->cap : 16;
    while (cap < n) cap *= 2;
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const int64_t qd = (int64_t)hp->n_head * hp->head_dim, kd = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t vd = (int64_t)hp->n_head_kv * hp->head_dim_v, od = (int64_t)hp->n_head * hp->head_dim_v;
    const int64_t ff = wg_model_ff_max(m);
    const int64_t K = hp->n_expert_used > 0 ? hp->n_expert_used : 1;
    const int64_t X = hp->n_expert > 0 ? hp->n_expert : 1;
    s_graphs_clear(d); /* captured steps point into the old buffers */
    wg_cuda_sync(d->ctx);
    wg_cuda_free(d->ctx, d->abuf);
    d->abuf = NULL;
    d->cap = 0;
    char *base = NULL;
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0;
#define S_TAKE(dst, count)                                      \
    do {                                                        \
        if (base) (dst) = (void *)(base + off);                 \
        off += ((size_t)(count) * 4 + 255) & ~(size_t)255;      \
    } while (0)
        S_TAKE(d->x, cap * E);
        S_TAKE(d->cur, cap * E);
        S_TAKE(d->a_out, cap * E);
        S_TAKE(d->f_out, cap * E);
        S_TAKE(d->q, cap * qd);
        S_TAKE(d->k, cap * kd);
        S_TAKE(d->v, cap * vd);
        S_TAKE(d->qkv, cap * (qd + kd + vd));
        S_TAKE(d->att, cap * od);
        S_TAKE(d->g, cap * K * ff);
        S_TAKE(d->u, cap * K * ff);
        S_TAKE(d->gu, cap * 2 * ff);
        S_TAKE(d->moe_x, cap * K * E);
        S_TAKE(d->moe_y, cap * K * E);
        S_TAKE(d->slots, cap * K * E);
        S_TAKE(d->router, cap * X);
        S_TAKE(d->selw, cap * K);
        S_TAKE(d->logits, cap * V);
        S_TAKE(d->sel, cap * K);
        S_TAKE(d->rows, cap * K);
        S_TAKE(d->cnt, X);
        S_TAKE(d->off, X + 1);
#undef S_TAKE
        if (pass == 0) {
            wg_status st = wg_cuda_malloc(d->ctx, off, &d->abuf);
            if (st) {
                char msg[384];
                snprintf(msg, sizeof msg, "%s", wg_errmsg());
                return wg_error(st, "cuda:%d: activations for %lld tokens (%zu bytes): %s", d->device,
                                (long long)cap, off, msg);
            }
            base = d->abuf;
        }
    }
    d->cap = cap;
    return WG_OK;
}

static wg_status s_reserve_in(s_dev_t *d, size_t need) {
    if (need <= d->in_cap) return WG_OK;
    size_t cap = d->in_cap ? d->in_cap : 1024;
    while (cap < need) cap *= 2;
    s_graphs_clear(d);
    wg_cuda_sync(d->ctx);
    wg_cuda_free(d->ctx, d->d_in);
    wg_cuda_host_free(d->h_in);
    d->d_in = NULL;
    d->h_in = NULL;
    d->in_cap = 0;
    TRY(wg_cuda_malloc(d->ctx, cap * sizeof(int32_t), (void **)&d->d_in));
    TRY(wg_cuda_host_alloc(cap * sizeof(int32_t), (void **)&d->h_in));
    d->in_cap = cap;
    return WG_OK;
}

static s_graph_t *s_graph_find(s_dev_t *d, int64_t n, int64_t n_out, int32_t mb) {
    for (int i = 0; i < d->n_graphs; i++)
        if (d->graphs[i].n == n && d->graphs[i].n_out == n_out && d->graphs[i].mb == mb) return &d->graphs[i];
    return NULL;
}

static wg_status s_forward(const wg_model_t *m, wg_kv_t *kv, s_dev_t *d, const wg_batch_tok_t *batch, int64_t n,
                           float *logits);

wg_status wg_forward_cuda(const wg_model_t *m, wg_kv_t *kv, const wg_batch_tok_t *batch, int64_t n,
                          float *logits) {
    s_dev_t *d = wg_kv_device(kv);
    WG_ASSERT(d);
    if (!d->prof) return s_forward(m, kv, d, batch, n, logits);
    const double t0 = s_now();
    const wg_status st = s_forward(m, kv, d, batch, n, logits);
    char lbl[64];
    snprintf(lbl, sizeof lbl, "forward call n=%s", n == 1 ? "1" : n <= 16 ? "2..16" : n <= 64 ? "17..64" : ">64");
    s_prof_add(d, lbl, s_now() - t0);
    return st;
}

static wg_status s_forward(const wg_model_t *m, wg_kv_t *kv, s_dev_t *d, const wg_batch_tok_t *batch, int64_t n,
                           float *logits) {
    /* local rows for the batch's sequences, and the table width */
    int32_t max_seq = 0;
    for (int64_t t = 0; t < n; t++)
        if (batch[t].seq > max_seq) max_seq = batch[t].seq;
    if (max_seq >= d->seq_cap) {
        int32_t *nr = realloc(d->seq_row, (size_t)(max_seq + 1) * sizeof *nr);
        if (!nr) return wg_error(WG_ERR_NOMEM, "cuda forward: sequence map");
        d->seq_row = nr;
        d->seq_cap = max_seq + 1;
    }
    for (int32_t s = 0; s < d->seq_cap; s++) d->seq_row[s] = -1;
    int32_t n_rows = 0, mb_need = 1;
    int64_t n_out = 0;
    for (int64_t t = 0; t < n; t++) {
        const int32_t s = batch[t].seq;
        if (d->seq_row[s] < 0) {
            d->seq_row[s] = n_rows++;
            int32_t nb = 0;
            wg_kv_seq_blocks(kv, s, &nb);
            if (nb > mb_need) mb_need = nb;
        }
        n_out += batch[t].want_logits;
    }
    int32_t mb = 4;
    while (mb < mb_need) mb *= 2;
    TRY(s_reserve(d, m, n));
    TRY(s_reserve_in(d, (size_t)(4 * n) + (size_t)n_rows * (size_t)mb));
    int32_t *h = d->h_in;
    int64_t o = 0;
    for (int64_t t = 0; t < n; t++) {
        h[t] = batch[t].token;
        h[n + t] = d->seq_row[batch[t].seq];
        h[2 * n + t] = batch[t].pos;
        h[3 * n + t] = 0;
        if (batch[t].want_logits) h[3 * n + o++] = (int32_t)t;
    }
    int32_t *tab = h + 4 * n;
    memset(tab, 0, (size_t)n_rows * (size_t)mb * sizeof(int32_t));
    for (int64_t t = 0; t < n; t++) {
        const int32_t s = batch[t].seq, r = d->seq_row[s];
        if (r < 0) continue;
        int32_t nb = 0;
        const int32_t *bl = wg_kv_seq_blocks(kv, s, &nb);
        memcpy(tab + (size_t)r * (size_t)mb, bl, (size_t)nb * sizeof(int32_t));
        d->seq_row[s] = -1 - r; /* copied once */
    }
    s_call_t c = {.m = m, .d = d, .n = n, .n_out = n_out, .n_rows = n_rows, .mb = mb,
                  .prefill = n_rows == 1 && n > 1, .pos0 = batch[0].pos,
                  .ids = d->d_in, .seq = d->d_in + n, .pos = d->d_in + 2 * n, .out_rows = d->d_in + 3 * n,
                  .table = d->d_in + 4 * n};
    TRY(wg_cuda_upload(d->ctx, d->d_in, h, (size_t)(4 * n + (int64_t)n_rows * mb) * sizeof(int32_t)));
    wg_status st = WG_OK;
    const bool graphable = d->use_graphs && !c.prefill && !d->moe;
    s_graph_t *g = graphable ? s_graph_find(d, n, n_out, mb) : NULL;
    if (g && g->g) {
        st = wg_cuda_graph_launch(d->ctx, g->g);
    } else if (g && g->seen) {
        if (!(st = wg_cuda_graph_begin(d->ctx))) {
            const wg_status st_step = s_step(&c);
            st = wg_cuda_graph_end(d->ctx, &g->g);
            if (st_step) st = st_step;
            if (!st) st = wg_cuda_graph_launch(d->ctx, g->g);
            if (st) wg_cuda_graph_destroy(&g->g);
        }
    } else {
        st = s_step(&c);
        if (!st && graphable && d->n_graphs < S_MAX_GRAPHS)
            d->graphs[d->n_graphs++] = (s_graph_t){.n = n, .n_out = n_out, .mb = mb, .seen = true};
    }
    if (st) {
        wg_cuda_sync(d->ctx);
        return st;
    }
    if (n_out > 0) {
        WG_ASSERT(logits);
        S_PROF(d, "logits download", wg_cuda_download(d->ctx, logits, d->logits,
                                                       (size_t)(n_out * m->hp.n_vocab) * sizeof(float)));
        return WG_OK;
    }
    return wg_cuda_sync(d->ctx);
}

/* WG_OK when CUDA device `device` exists, else why not. */
static wg_status s_device_exists(int device) {
    const int n_dev = wg_cuda_device_count();
    if (device >= 0 && device < n_dev) return WG_OK;
    char why_none[256] = "";
    if (n_dev <= 0) snprintf(why_none, sizeof why_none, ": %s", wg_errmsg()); /* copy: wg_error reuses it */
    return wg_error(WG_ERR_NOTFOUND, "cuda:%d: no such device (%d CUDA devices%s)", device, n_dev, why_none);
}

wg_status wg_forward_cuda_probe(int cuda, char *name, size_t name_len, double *copy_gbs) {
    *copy_gbs = 0;
    TRY(s_device_exists(cuda));
    wg_cuda_t *ctx = wg_cuda_new(cuda);
    if (!ctx) return WG_ERR_DEVICE;
    snprintf(name, name_len, "%s", wg_cuda_device_name(ctx));
    const size_t bytes = (size_t)512 << 20;
    void *a = NULL, *b = NULL;
    wg_status st = wg_cuda_malloc(ctx, bytes, &a);
    if (!st) st = wg_cuda_malloc(ctx, bytes, &b);
    if (!st) st = wg_cuda_memset(ctx, a, 1, bytes);
    if (!st) st = wg_cuda_copy(ctx, b, a, bytes); /* warm-up */
    if (!st) st = wg_cuda_sync(ctx);
    double best = 0;
    for (int r = 0; r < 5 && !st; r++) {
        const double t0 = s_now();
        st = wg_cuda_copy(ctx, r % 2 ? a : b, r % 2 ? b : a, bytes);
        if (!st) st = wg_cuda_sync(ctx);
        const double gbs = 2.0 * (double)bytes / (s_now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    wg_cuda_free(ctx, a);
    wg_cuda_free(ctx, b);
    wg_cuda_destroy(&ctx);
    *copy_gbs = best;
    return st;
}

wg_status wg_forward_cuda_check(const wg_model_t *m, int device) {
    const wg_hparams_t *hp = &m->hp;
    const uint32_t fl = m->arch->flags;
    const char *why = NULL;
    if (hp->recurrent)
        why = "recurrent-state models";
    else if (fl & WG_F_MLA)
        why = "multi-head latent attention";
    else if (m->arch->act == WG_ACT_SWIGLU_OAI)
        why = "the clamped SwiGLU of gpt-oss";
    else if (hp->n_expert > 0 && (hp->moe_gating == WG_GATE_SOFTMAX_SELECTED || hp->moe_w_scale != 1.0f))
        why = "this MoE router (selected softmax / weight scale)";
    else if (hp->head_dim > 256 || hp->head_dim_v > 256)
        why = "head dims above 256";
    else if (!wg_cuda_type_supported(m->tok_embd.type))
        why = "this token-embedding type";
    for (int il = 0; !why && il < hp->n_layer; il++)
        if (m->layers[il].exp_probs_b) why = "expert-selection biases";
    if (why)
        return wg_error(WG_ERR_UNSUPPORTED, "cuda:%d: %s (%s) is not supported on the CUDA backend yet; use "
                                            "--device cpu", device, hp->arch, why);
    return s_device_exists(device);
}

wg_status wg_forward_cuda_attach(const wg_model_t *m, wg_kv_t *kv, int device) {
    const wg_hparams_t *hp = &m->hp;
    s_dev_t *d = calloc(1, sizeof *d);
    if (!d) return wg_error(WG_ERR_NOMEM, "cuda forward state");
    d->device = device;
    d->n_layer = hp->n_layer;
    d->k_dim = hp->n_head_kv * hp->head_dim;
    d->v_dim = hp->n_head_kv * hp->head_dim_v;
    d->bt = wg_kv_block_tokens(kv);
    d->use_graphs = !s_env_off("WAGGLE_CUDA_GRAPHS");
    d->prof = getenv("WAGGLE_CUDA_PROFILE") && !s_env_off("WAGGLE_CUDA_PROFILE");
    if (d->prof) d->use_graphs = false;
    d->f16_cache = !s_env_off("WAGGLE_CUDA_F16_CACHE");
    d->moe = hp->n_expert > 0;
    wg_status st = WG_OK;
    if (!(d->ctx = wg_cuda_new(device)) || !(d->w = wg_cuda_weights_new(d->ctx)) ||
        !(d->w16 = wg_cuda_weights_new(d->ctx))) {
        st = WG_ERR_DEVICE;
        goto fail;
    }
    if (d->moe && !(d->h_cnt = calloc((size_t)hp->n_expert, sizeof(int32_t)))) {
        st = wg_error(WG_ERR_NOMEM, "cuda forward: expert counts");
        goto fail;
    }
    const size_t pool_bytes = (size_t)wg_kv_n_blocks(kv) * wg_kv_block_bytes(kv);
    size_t fr = 0, tot = 0;
    if ((st = wg_cuda_mem_info(d->ctx, &fr, &tot))) goto fail;
    if (pool_bytes + wg_model_weight_bytes(m) > fr) {
        st = wg_error(WG_ERR_NOMEM, "cuda:%d (%s): KV cache %zu MiB + weights %zu MiB exceed the %zu MiB free",
                      device, wg_cuda_device_name(d->ctx), pool_bytes >> 20, wg_model_weight_bytes(m) >> 20,
                      fr >> 20);
        goto fail;
    }
    if ((st = wg_cuda_malloc(d->ctx, pool_bytes, (void **)&d->pool))) goto fail;
    if ((st = wg_cuda_memset(d->ctx, d->pool, 0, pool_bytes))) goto fail;
    wg_kv_set_device(kv, d, s_dev_free);
    return WG_OK;
fail:
    {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", wg_errmsg());
        s_dev_free(d);
        return wg_error(st, "%s", msg);
    }
}

#endif
