/* wg_backend — the small op interface the forward pass is written against.
 *
 * The model code (wg_forward.c) only composes these ops; a backend supplies
 * them for its memory (CPU: host floats and the thread pool; CUDA later:
 * device buffers, cuBLAS and fused kernels). Every op is row-wise: the result
 * for one token never depends on which other tokens share the call, which is
 * what makes batched and chunked runs bitwise equal to single runs. */
#ifndef WG_BACKEND_H
#define WG_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "../../kernels/quant.h"
#include "wg_kv.h"

/* A weight matrix (or a stack of expert matrices): N rows of K values of
 * `type`, rows contiguous. Borrowed from the mapping or owned by the model. */
typedef struct {
    wg_type_t type;          /* element/block type of the rows */
    int64_t k;               /* row length = input features */
    int64_t n;               /* rows = output features */
    int64_t n_exp;           /* experts (1 for a plain matrix) */
    size_t row_bytes;        /* wg_row_size(type, k) */
    const void *data;        /* expert 0: [n][row_bytes]; NULL when absent */
    size_t exp_stride;       /* bytes between experts when stacked in one buffer */
    const void **exp;        /* [n_exp] per-expert data (HF: one tensor each), or NULL */
} wg_weight_t;

/* Rows of expert e (e = 0 for a plain matrix). */
static inline const void *wg_weight_rows(const wg_weight_t *w, int64_t e) {
    if (w->exp) return w->exp[e];
    return (const char *)w->data + (size_t)e * w->exp_stride;
}

typedef enum {
    WG_NORM_RMS,            /* x / sqrt(mean(x^2) + eps) * w */
    WG_NORM_LAYER,          /* (x - mean) / sqrt(var + eps) * w + b */
    WG_NORM_LAYER_NOPARAM,  /* layer norm without weight or bias (olmo) */
} wg_norm_kind_t;

typedef enum {
    WG_ROPE_NONE,   /* no rotary embedding */
    WG_ROPE_NORM,   /* rotate interleaved pairs (x[2i], x[2i+1]) — GGUF llama layout */
    WG_ROPE_NEOX,   /* rotate halves (x[i], x[i + n_rot/2]) */
} wg_rope_style_t;

typedef enum {
    WG_ACT_SILU,       /* x * sigmoid(x) */
    WG_ACT_GELU,       /* tanh-form GELU through ggml's fp16 table */
    WG_ACT_GELU_ERF,   /* exact erf GELU */
    WG_ACT_RELU2,      /* relu(x)^2 */
    WG_ACT_SWIGLU_OAI, /* gpt-oss: g = min(g, 7); u = clamp(u, -7, 7); g * sigmoid(1.702 g) * (u + 1) */
} wg_act_t;

/* Rotary embedding parameters of one layer. */
typedef struct {
    wg_rope_style_t style;   /* pair layout */
    int32_t n_rot;           /* rotated dims per head (<= head_dim; rest unchanged) */
    float base;              /* frequency base */
    float freq_scale;        /* linear position scaling (1 = none) */
    const float *freq_factors; /* [n_rot/2] per-frequency divisors (llama3/longrope), or NULL */
    float ext_factor;        /* YaRN extrapolation mix (0 = off) */
    float attn_factor;       /* cos/sin magnitude (1 = none; YaRN multiplies its own mscale in) */
    float corr_dims[2];      /* YaRN ramp between these rotary dims */
} wg_rope_t;

/* One attention call: every token's queries against its own sequence's cache. */
typedef struct {
    wg_kv_t *kv;             /* cache holding K/V of all positions <= each token's pos */
    int32_t layer;           /* layer index in the cache */
    int64_t n_tok;           /* tokens */
    const int32_t *seq;      /* [n_tok] sequence ids */
    const int32_t *pos;      /* [n_tok] positions */
    const float *q;          /* [n_tok][q_stride] queries, head h at h*head_dim */
    int64_t q_stride;        /* floats between tokens in q */
    float *out;              /* [n_tok][n_head*head_dim_v] */
    int32_t n_head;          /* query heads */
    int32_t n_head_kv;       /* kv heads (query head h uses kv head h / (n_head/n_head_kv)) */
    int32_t head_dim;        /* key/query dims */
    int32_t head_dim_v;      /* value dims */
    float scale;             /* logit scale (1/sqrt(head_dim) usually) */
    int32_t window;          /* sliding window (0 = full): keys with pos - kpos < window */
    float softcap;           /* attention logit soft-cap (0 = off) */
    const float *sinks;      /* [n_head] attention sink logits, or NULL */
} wg_attn_args_t;

/* One step of a fused run (wg_backend_ops_t.run) for ONE token. A run does
 * its steps in order; step i starts once step i-1 and its `after` are done. */
typedef enum {
    WG_STEP_MATMUL, /* y[i] = in' @ w[i]^T (+ b[i]), then the epilogue */
    WG_STEP_ATTN,   /* attention (n_tok = 1) */
} wg_step_kind_t;

typedef struct wg_step wg_step_t;
struct wg_step {
    wg_step_kind_t kind;
    /* WG_STEP_MATMUL. in' = in, or in normalized (norm set: each thread
     * normalizes its own copy, `in` is left alone). */
    const float *in;           /* [w[0]->k] input row */
    bool norm;                 /* normalize in first */
    wg_norm_kind_t norm_kind;  /* with this norm */
    const float *norm_w;       /* its weight, or NULL */
    const float *norm_b;       /* its bias, or NULL */
    float eps;                 /* its epsilon */
    int n_w;                   /* products, 1..3, all with the same k */
    const wg_weight_t *w[3];   /* plain matrices (one expert) */
    float *y[3];               /* [w[i]->n] outputs */
    const float *b[3];         /* [w[i]->n] biases, or NULL */
    /* Epilogue, per output element: with `act`, y[0] = act(y[0]) * y[1]
     * (n_w = 2, equal n) or act(y[0]) (n_w = 1); with `resid` (n_w = 1),
     * resid += y[0]. Each is what the separate act op / add would give. */
    bool act;                  /* apply act_kind */
    wg_act_t act_kind;         /* the activation */
    float *resid;              /* [w[0]->n] residual to add y[0] to, or NULL */
    /* WG_STEP_ATTN */
    wg_attn_args_t attn;       /* the call (n_tok = 1) */
    /* Any kind: serial glue run by one thread once the step's outputs are
     * all written and before the next step starts; NULL for none. */
    wg_status (*after)(void *arg, const wg_step_t *s);
    void *after_arg;           /* its argument */
    int32_t layer;             /* for `after`: the layer the step belongs to */
};

/* The op table. `ctx` is the backend's own state (the CPU pool for CPU). */
typedef struct {
    const char *name;
    /* Y[M][w.n] = X[M][w.k] @ rows(w, expert)^T. */
    wg_status (*matmul)(void *ctx, const wg_weight_t *w, int64_t expert, const float *X, int64_t M,
                        float *Y);
    /* Optional: Y[i] = X @ rows(w[i], expert[i])^T for i < n (n <= 4, all
     * w[i].k equal), bitwise what n matmul calls give; NULL means the
     * forward pass makes the n calls. */
    wg_status (*matmul_n)(void *ctx, int n, const wg_weight_t *const *w, const int64_t *expert,
                          const float *X, int64_t M, float *const *Y);
    /* In-place norm of n_rows rows of n values (row stride `stride`); w/b may be NULL. */
    void (*norm)(void *ctx, wg_norm_kind_t kind, float *x, int64_t n_rows, int64_t n, int64_t stride,
                 const float *w, const float *b, float eps);
    /* In-place rope of n_tok tokens x n_heads heads of head_dim floats; token t
     * starts at x + t*stride and has position pos[t]. */
    void (*rope)(void *ctx, const wg_rope_t *r, float *x, int64_t n_tok, int32_t n_heads,
                 int32_t head_dim, int64_t stride, const int32_t *pos);
    /* Causal attention over the paged cache (K/V of this step already written). */
    wg_status (*attention)(void *ctx, const wg_attn_args_t *a);
    /* gate[i] = act(gate[i]) * up[i] (gated FFN), or x = act(x) when up == NULL. */
    void (*act)(void *ctx, wg_act_t act, float *gate, const float *up, int64_t n);
    /* Optional: run steps[0..n) as one job on the backend's threads (no
     * per-product wake-up and join; the serial parts between products run
     * inside the products or on one thread while the others wait a moment),
     * bitwise what the separate ops give. Returns WG_ERR_UNSUPPORTED, having
     * done nothing and set no error message, when some step cannot run this
     * way (a weight type without a row kernel): the caller then uses the ops. */
    wg_status (*run)(void *ctx, const wg_step_t *steps, int n);
    /* Optional: fn(arg, u0, u1) over parts [u0, u1) covering [0, n), on the
     * backend's threads when there are at least 2 parts of min_part units per
     * thread, else on the caller; NULL means the caller runs fn(arg, 0, n).
     * fn must give the same result however the range is split; an op called
     * inside it with ctx NULL runs on the calling thread alone. */
    void (*par)(void *ctx, int64_t n, int64_t min_part, void (*fn)(void *arg, int64_t u0, int64_t u1), void *arg);
} wg_backend_ops_t;

/* The CPU implementation (ctx = wg_pool_t *, may be NULL). */
extern const wg_backend_ops_t wg_backend_cpu;

/* ggml's GELU (tanh form): y = f16(gelu(f16(x))) for |x| < 10, else 0 / x. */
float wg_gelu_ggml(float x);

#endif
