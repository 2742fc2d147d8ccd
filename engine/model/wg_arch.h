/* wg_arch — architectures as data: one table row per architecture (names,
 * flags, HF tensor-name overrides) plus the logical tensor ids the loader maps
 * to GGUF and HF names. Internal to engine/model.
 *
 * A new family should be a new row (and, when it needs a new computation, a
 * flag and one shared block in wg_forward.c), never a copied forward pass. */
#ifndef WG_ARCH_H
#define WG_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "wg_backend.h"
#include "wg_model.h"

/* Logical tensors. GGUF/HF name patterns take the layer (and expert) index. */
typedef enum {
    WG_T_TOK_EMBD,
    WG_T_OUTPUT_NORM,
    WG_T_OUTPUT_NORM_B,
    WG_T_OUTPUT,
    WG_T_OUTPUT_B,
    WG_T_ROPE_FREQS,
    WG_T_ATTN_NORM,
    WG_T_ATTN_NORM_B,
    WG_T_ATTN_Q,
    WG_T_ATTN_Q_B,
    WG_T_ATTN_K,
    WG_T_ATTN_K_B,
    WG_T_ATTN_V,
    WG_T_ATTN_V_B,
    WG_T_ATTN_QKV,
    WG_T_ATTN_QKV_B,
    WG_T_ATTN_OUT,
    WG_T_ATTN_OUT_B,
    WG_T_ATTN_Q_NORM,
    WG_T_ATTN_K_NORM,
    WG_T_ATTN_POST_NORM,
    WG_T_FFN_NORM,
    WG_T_FFN_NORM_B,
    WG_T_FFN_POST_NORM,
    WG_T_FFN_GATE,
    WG_T_FFN_UP,
    WG_T_FFN_UP_B,
    WG_T_FFN_DOWN,
    WG_T_FFN_DOWN_B,
    WG_T_FFN_GATE_INP,
    WG_T_FFN_GATE_EXPS,
    WG_T_FFN_UP_EXPS,
    WG_T_FFN_DOWN_EXPS,
    WG_T_FFN_EXP_PROBS_B,
    WG_T_FFN_GATE_INP_B,
    WG_T_FFN_GATE_EXPS_B,
    WG_T_FFN_UP_EXPS_B,
    WG_T_FFN_DOWN_EXPS_B,
    WG_T_ATTN_SINKS,
    WG_T_MLA_Q_A,
    WG_T_MLA_Q_A_NORM,
    WG_T_MLA_Q_B,
    WG_T_MLA_KV_A,
    WG_T_MLA_KV_A_NORM,
    WG_T_MLA_K_B,
    WG_T_MLA_V_B,
    WG_T_FFN_GATE_SHEXP,
    WG_T_FFN_UP_SHEXP,
    WG_T_FFN_DOWN_SHEXP,
    /* recurrent families: embedding norm (rwkv ln0), Mamba-1 SSM, RWKV 6/7 time/channel mix */
    WG_T_TOK_EMBD_NORM,
    WG_T_TOK_EMBD_NORM_B,
    WG_T_SSM_IN,
    WG_T_SSM_CONV1D,
    WG_T_SSM_CONV1D_B,
    WG_T_SSM_X,
    WG_T_SSM_DT,
    WG_T_SSM_DT_B,
    WG_T_SSM_A,
    WG_T_SSM_D,
    WG_T_SSM_OUT,
    WG_T_TM_W0,
    WG_T_TM_W1,
    WG_T_TM_W2,
    WG_T_TM_A0,
    WG_T_TM_A1,
    WG_T_TM_A2,
    WG_T_TM_V0,
    WG_T_TM_V1,
    WG_T_TM_V2,
    WG_T_TM_G1,
    WG_T_TM_G2,
    WG_T_TM_LERP_X,
    WG_T_TM_LERP_FUSED,
    WG_T_TM_FIRST,
    WG_T_TM_DECAY,
    WG_T_TM_DECAY_W1,
    WG_T_TM_DECAY_W2,
    WG_T_TM_K_K,
    WG_T_TM_K_A,
    WG_T_TM_R_K,
    WG_T_TM_KEY,
    WG_T_TM_VALUE,
    WG_T_TM_RECEPTANCE,
    WG_T_TM_GATE,
    WG_T_TM_LN,
    WG_T_TM_LN_B,
    WG_T_TM_OUTPUT,
    WG_T_CM_LERP_K,
    WG_T_CM_LERP_R,
    WG_T_CM_KEY,
    WG_T_CM_VALUE,
    WG_T_CM_RECEPTANCE,
    WG_T_COUNT
} wg_tensor_id_t;

/* Per-architecture flags. */
enum {
    WG_F_QKV_BIAS = 1u << 0,       /* q/k/v projections have biases */
    WG_F_QK_NORM_HEAD = 1u << 1,   /* RMS norm per head on q and k before rope (qwen3) */
    WG_F_QK_NORM_FULL = 1u << 2,   /* RMS norm over the whole q / k projection (olmo2) */
    WG_F_FUSED_QKV = 1u << 3,      /* one attn_qkv matrix [q; k; v] rows */
    WG_F_FUSED_GATE_UP = 1u << 4,  /* ffn_up holds [gate; up] rows (2*n_ff) */
    WG_F_PARALLEL = 1u << 5,       /* attn and FFN read the same norm output */
    WG_F_POST_NORMS = 1u << 6,     /* norms after attention and FFN outputs (gemma2/3) */
    WG_F_NO_PRE_NORM = 1u << 7,    /* no pre-norms, only post norms (olmo2) */
    WG_F_GATED_FFN = 1u << 8,      /* act(gate) * up; otherwise act(up) */
    WG_F_OUT_BIAS = 1u << 9,       /* attention output / ffn down / output biases */
    WG_F_EMBD_SCALE = 1u << 10,    /* embeddings multiplied by sqrt(n_embd) (gemma) */
    WG_F_HF_PERMUTE_QK = 1u << 11, /* HF q/k rows are rotate-half: permute to interleaved */
    WG_F_MOE_RENORM = 1u << 12,    /* renormalize the selected experts' weights */
    WG_F_HF_NORM_PLUS1 = 1u << 14, /* HF norm weights are stored minus 1 (gemma) */
    WG_F_MLA = 1u << 15,           /* multi-head latent attention, absorbed k_b/v_b (deepseek2) */
};

/* Router: softmax over all experts, sigmoid, or top-k of the raw logits then
 * softmax over the selected ones (gpt-oss). */
typedef enum { WG_GATE_SOFTMAX, WG_GATE_SIGMOID, WG_GATE_SOFTMAX_SELECTED } wg_gating_t;

/* The sequence mixer of every block: attention over the paged K/V cache, or
 * a recurrence over a fixed-size per-sequence state (wg_kv_new_recurrent). */
typedef enum {
    WG_BLOCK_ATTN = 0,  /* transformer: attention + FFN (all flags above apply) */
    WG_BLOCK_MAMBA,     /* Mamba-1: RMS norm, conv1d + selective scan, gated by silu(z) */
    WG_BLOCK_RWKV6,     /* RWKV-6 Finch: ln0, time mix (data-dependent decay, wkv6), channel mix */
    WG_BLOCK_RWKV7,     /* RWKV-7 Goose: ln0, time mix (wkv7 delta rule, value residual), channel mix */
} wg_block_t;

/* One GGUF tensor-name override for a row (name NULL: the tensor is absent). */
typedef struct {
    wg_tensor_id_t id;    /* logical tensor (WG_T_COUNT ends the list) */
    const char *gguf;     /* printf pattern, or NULL */
} wg_gguf_name_t;

/* One HF tensor-name override for a row. */
typedef struct {
    wg_tensor_id_t id;    /* logical tensor */
    const char *hf;       /* printf pattern: layer then (for experts) expert index */
} wg_hf_name_t;

typedef struct {
    const char *gguf_arch;        /* general.architecture value */
    const char *hf_archs[4];      /* config.json "architectures" names (NULL-terminated) */
    wg_norm_kind_t norm;          /* norm kind of every norm in the model */
    wg_rope_style_t rope;         /* rope pair layout */
    wg_act_t act;                 /* FFN activation */
    wg_gating_t gating;           /* MoE router function */
    uint32_t flags;               /* WG_F_* */
    wg_block_t block;             /* sequence mixer (attention or a recurrence) */
    int32_t swa_pattern;          /* default sliding-window layer pattern (see wg_hparams_t) */
    float rope_base_swa;          /* default rope base of local layers (0 = the global base) */
    const wg_gguf_name_t *gguf_names; /* overrides of the default GGUF names, or NULL */
    const wg_hf_name_t *hf_names; /* overrides of the default (Llama-style) HF names, or NULL */
} wg_arch_t;

/* Row for a GGUF architecture name / HF architectures entry; NULL if unknown. */
const wg_arch_t *wg_arch_by_gguf(const char *name);
const wg_arch_t *wg_arch_by_hf(const char *name);
/* Default GGUF and HF name patterns of a logical tensor. */
const char *wg_tensor_gguf_name(const wg_arch_t *a, wg_tensor_id_t id);
const char *wg_tensor_hf_name(const wg_arch_t *a, wg_tensor_id_t id);
/* Comma-separated list of supported GGUF architectures (for error messages). */
const char *wg_arch_list(void);

struct wg_model;
/* The recurrent forward pass (wg_forward_rnn.c): same contract as
 * wg_model_forward after validation and state reservation, lengths not yet
 * updated. Tokens of one sequence are scanned in batch order; products run
 * over the whole batch. */
wg_status wg_forward_recurrent(const struct wg_model *m, wg_kv_t *kv, wg_pool_t *pool,
                               const wg_batch_tok_t *batch, int64_t n, float *logits);
/* The CUDA forward pass (wg_forward_cuda.c): same contract as the recurrent
 * one, for a cache with device state (wg_kv_device). */
wg_status wg_forward_cuda(const struct wg_model *m, wg_kv_t *kv, const wg_batch_tok_t *batch, int64_t n,
                          float *logits);
/* Whether the model can run on CUDA device `device`: every feature it uses
 * has device kernels and the device exists (the reason in wg_errmsg()). */
wg_status wg_forward_cuda_check(const struct wg_model *m, int device);
/* Put a fresh K/V cache (wg_kv_new_tables) of a checked model on CUDA device
 * `device`: makes the context, weight registry and pool, attaches them to kv. */
wg_status wg_forward_cuda_attach(const struct wg_model *m, wg_kv_t *kv, int device);
/* Name and device-to-device copy bandwidth of CUDA device `device` (for
 * wg_device_probe). */
wg_status wg_forward_cuda_probe(int device, char *name, size_t name_len, double *copy_gbs);
/* Shared by the CPU and CUDA forward passes (wg_forward.c): whether layer il
 * uses the sliding window, its rotary parameters (base, YaRN ramp dims), and
 * the widest FFN hidden size of any layer (scratch sizing). */
bool wg_layer_is_swa(const wg_hparams_t *hp, int il);
void wg_layer_rope(const struct wg_model *m, int il, wg_rope_t *rope);
int64_t wg_model_ff_max(const struct wg_model *m);
/* Floats of one sequence's recurrent state (all layers), 0 for attention models. */
size_t wg_model_state_floats(const struct wg_model *m);

/* One transformer block's weights. Shapes are [rows][row length]; absent
 * matrices have data == NULL, absent vectors are NULL. */
typedef struct {
    const float *attn_norm;    /* [n_embd] */
    const float *attn_norm_b;  /* [n_embd] */
    wg_weight_t wq;            /* [n_head*head_dim][n_embd] */
    wg_weight_t wk;            /* [n_head_kv*head_dim][n_embd] */
    wg_weight_t wv;            /* [n_head_kv*head_dim_v][n_embd] */
    wg_weight_t wqkv;          /* [(n_head+2*n_head_kv)*head_dim][n_embd] fused */
    wg_weight_t wo;            /* [n_embd][n_head*head_dim_v] */
    const float *bq;           /* [n_head*head_dim] */
    const float *bk;           /* [n_head_kv*head_dim] */
    const float *bv;           /* [n_head_kv*head_dim_v] */
    const float *bqkv;         /* [q+k+v dims] */
    const float *bo;           /* [n_embd] */
    const float *q_norm;       /* [head_dim] per head, or [n_head*head_dim] full */
    const float *k_norm;       /* [head_dim] per head, or [n_head_kv*head_dim] full */
    const float *attn_post_norm; /* [n_embd] */
    const float *ffn_norm;     /* [n_embd] */
    const float *ffn_norm_b;   /* [n_embd] */
    const float *ffn_post_norm; /* [n_embd] */
    wg_weight_t ffn_gate;      /* [n_ff][n_embd] */
    wg_weight_t ffn_up;        /* [n_ff (or 2*n_ff fused)][n_embd] */
    wg_weight_t ffn_down;      /* [n_embd][n_ff] */
    const float *ffn_up_b;     /* [n_ff] */
    const float *ffn_down_b;   /* [n_embd] */
    wg_weight_t gate_inp;      /* [n_expert][n_embd] router */
    wg_weight_t gate_exps;     /* n_expert x [n_ff_exp][n_embd] */
    wg_weight_t up_exps;       /* n_expert x [n_ff_exp][n_embd] */
    wg_weight_t down_exps;     /* n_expert x [n_embd][n_ff_exp] */
    const float *exp_probs_b;  /* [n_expert] router bias used for selection only, or NULL */
    const float *gate_inp_b;   /* [n_expert] router bias */
    const float *gate_exps_b;  /* [n_expert][n_ff_exp] */
    const float *up_exps_b;    /* [n_expert][n_ff_exp] */
    const float *down_exps_b;  /* [n_expert][n_embd] */
    const float *attn_sinks;   /* [n_head] attention sink logits */
    wg_weight_t wq_a;          /* MLA: [q_lora][n_embd] */
    const float *q_a_norm;     /* MLA: [q_lora] */
    wg_weight_t wq_b;          /* MLA: [n_head*(nope+rope)][q_lora] */
    wg_weight_t wkv_a;         /* MLA: [kv_lora+rope][n_embd] latent + shared rope key */
    const float *kv_a_norm;    /* MLA: [kv_lora] */
    wg_weight_t wk_b;          /* MLA: n_head x [kv_lora][nope] (absorbed into the query) */
    wg_weight_t wv_b;          /* MLA: n_head x [v_mla][kv_lora] (applied to the attended latent) */
    wg_weight_t gate_shexp;    /* [n_ff_shexp][n_embd] shared expert */
    wg_weight_t up_shexp;      /* [n_ff_shexp][n_embd] */
    wg_weight_t down_shexp;    /* [n_embd][n_ff_shexp] */
    /* Mamba-1 (DI = ssm_d_inner, DS = ssm_d_state, DC = ssm_d_conv, R = ssm_dt_rank) */
    wg_weight_t ssm_in;        /* [2*DI][n_embd] -> x | z */
    const float *ssm_conv1d;   /* [DI][DC] depthwise causal conv taps, oldest first */
    const float *ssm_conv1d_b; /* [DI] */
    wg_weight_t ssm_x;         /* [R+2*DS][DI] -> dt | B | C */
    wg_weight_t ssm_dt;        /* [DI][R] */
    const float *ssm_dt_b;     /* [DI] */
    const float *ssm_a;        /* [DI][DS] A = -exp(A_log) */
    const float *ssm_d;        /* [DI] skip */
    wg_weight_t ssm_out;       /* [n_embd][DI] */
    /* RWKV 6/7 time mix (E = n_embd, H = E / head size, Dm/Dd/Dw/Da/Dv/Dg = lora widths) */
    const float *tm_lerp_x;    /* rwkv6: [E] */
    const float *tm_lerp_fused; /* rwkv6: [5][E] (w,k,v,r,g); rwkv7: [6][E] (r,w,k,v,a,g) */
    wg_weight_t tm_w1;         /* rwkv6: [5*Dm][E]; rwkv7: [Dw][E] decay lora down */
    wg_weight_t tm_w2;         /* rwkv6: 5 x [E][Dm]; rwkv7: [E][Dw] decay lora up */
    const float *tm_first;     /* rwkv6: [H][head] bonus u */
    const float *tm_decay;     /* rwkv6: [E] */
    wg_weight_t tm_decay_w1;   /* rwkv6: [Dd][E] */
    wg_weight_t tm_decay_w2;   /* rwkv6: [E][Dd] */
    const float *tm_w0;        /* rwkv7: [E] decay bias */
    const float *tm_a0;        /* rwkv7: [E] in-context learning rate bias */
    wg_weight_t tm_a1;         /* rwkv7: [Da][E] */
    wg_weight_t tm_a2;         /* rwkv7: [E][Da] */
    const float *tm_v0;        /* rwkv7: [E] value residual bias (unused in layer 0) */
    wg_weight_t tm_v1;         /* rwkv7: [Dv][E] */
    wg_weight_t tm_v2;         /* rwkv7: [E][Dv] */
    wg_weight_t tm_g1;         /* rwkv7: [Dg][E] output gate lora (optional) */
    wg_weight_t tm_g2;         /* rwkv7: [E][Dg] */
    const float *tm_k_k;       /* rwkv7: [E] key normalisation scale */
    const float *tm_k_a;       /* rwkv7: [E] */
    const float *tm_r_k;       /* rwkv7: [H][head] bonus */
    wg_weight_t tm_key;        /* [E][E] */
    wg_weight_t tm_value;      /* [E][E] */
    wg_weight_t tm_receptance; /* [E][E] */
    wg_weight_t tm_gate;       /* rwkv6: [E][E] */
    const float *tm_ln;        /* [E] group norm weight (per head groups) */
    const float *tm_ln_b;      /* [E] */
    wg_weight_t tm_output;     /* [E][E] */
    /* RWKV channel mix (ffn_norm / ffn_norm_b hold attn_norm_2) */
    const float *cm_lerp_k;    /* [E] */
    const float *cm_lerp_r;    /* rwkv6: [E] */
    wg_weight_t cm_key;        /* [n_ff][E] */
    wg_weight_t cm_value;      /* [E][n_ff] */
    wg_weight_t cm_receptance; /* rwkv6: [E][E] */
} wg_layer_t;

struct wg_gguf;
struct wg_st;

struct wg_model {
    char *path;                /* as given to wg_model_load */
    const wg_arch_t *arch;     /* table row */
    wg_hparams_t hp;           /* hyper-parameters */
    wg_gguf_t *gguf;           /* GGUF source (owned), or NULL */
    struct wg_st *st;          /* safetensors source (owned), or NULL */
    wg_weight_t tok_embd;      /* [n_vocab][n_embd] */
    wg_weight_t output;        /* [n_vocab][n_embd] (== tok_embd when tied) */
    const float *out_norm;     /* [n_embd] */
    const float *out_norm_b;   /* [n_embd] */
    const float *out_b;        /* [n_vocab] */
    const float *rope_freqs;   /* [n_rot/2] rope frequency divisors (llama3 scaling), or NULL */
    const float *tok_norm;     /* [n_embd] norm of the embeddings (rwkv ln0), or NULL */
    const float *tok_norm_b;   /* [n_embd] */
    wg_layer_t *layers;        /* [n_layer] */
    void **owned;              /* buffers owned by the model (converted/permuted) */
    size_t n_owned;            /* entries in owned */
    size_t cap_owned;          /* capacity of owned */
    size_t weight_bytes;       /* bytes of all weights */
};

#endif
