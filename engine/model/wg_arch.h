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
    wg_layer_t *layers;        /* [n_layer] */
    void **owned;              /* buffers owned by the model (converted/permuted) */
    size_t n_owned;            /* entries in owned */
    size_t cap_owned;          /* capacity of owned */
    size_t weight_bytes;       /* bytes of all weights */
};

#endif
