/* wg_model — transformer models (GGUF file or HF directory) and the batched
 * forward pass over a paged KV cache.
 *
 * Design: a model is loaded once and is immutable afterwards (weights used in
 * place from the mapping where possible; HF tensors that need a layout change
 * are copied into owned buffers). A forward call takes a BATCH of tokens that
 * may belong to several sequences: every weight product runs once over all of
 * them (M = n tokens), attention runs per token over its own sequence's cached
 * keys/values. Every reduction is per row, so a sequence's logits are bitwise
 * identical whether it runs alone, batched with others, or its prompt is split
 * into chunks.
 *
 * Threads: a wg_model_t may be shared by many threads; a wg_kv_t and a
 * wg_session_t belong to one thread at a time. */
#ifndef WG_MODEL_H
#define WG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../common/wg_status.h"
#include "../../kernels/cpu/wg_cpu.h"
#include "../formats/wg_gguf.h"
#include "wg_kv.h"

typedef struct wg_model wg_model_t;

/* Hyper-parameters after loading (GGUF keys or config.json), read-only. */
typedef struct {
    const char *arch;        /* GGUF architecture name of the table row ("llama") */
    int32_t n_vocab;         /* rows of the token embedding / logits width */
    int32_t n_embd;          /* model width */
    int32_t n_layer;         /* transformer blocks */
    int32_t n_head;          /* query heads */
    int32_t n_head_kv;       /* key/value heads (GQA when < n_head) */
    int32_t head_dim;        /* key/query head size */
    int32_t head_dim_v;      /* value head size */
    int32_t n_ff;            /* dense FFN width */
    int32_t n_ff_exp;        /* expert FFN width (MoE) */
    int32_t n_expert;        /* experts per MoE layer (0 = dense) */
    int32_t n_expert_used;   /* top-k experts per token */
    int32_t n_rot;           /* rotary dims per head (partial rotary when < head_dim) */
    float rope_base;         /* rope frequency base */
    float rope_freq_scale;   /* linear rope scaling (1 = none) */
    float yarn_ext_factor;   /* YaRN extrapolation mix (0 = no YaRN) */
    int32_t yarn_n_ctx_orig; /* YaRN original context */
    float yarn_beta_fast;    /* YaRN ramp bounds (in rotations) */
    float yarn_beta_slow;
    float norm_eps;          /* RMS / layer norm epsilon */
    int32_t n_ctx_train;     /* context length the model was trained with */
    int32_t bos;             /* BOS id from the model metadata, -1 if none */
    int32_t eos;             /* EOS id from the model metadata, -1 if none */
    bool tied_output;        /* output matrix is the token embedding */
    int32_t n_swa;           /* sliding window in tokens (0 = none) */
    int32_t swa_pattern;     /* layer il is local when il % p < p - 1 (p = 0: all layers) */
    float rope_base_swa;     /* rope base on sliding-window layers */
    float attn_scale;        /* query/key logit scale (1/sqrt(head_dim) by default) */
    float attn_softcap;      /* attention logit soft-cap (0 = off) */
    float final_softcap;     /* output logit soft-cap (0 = off) */
    int32_t q_lora;          /* MLA: query low-rank width (0 = plain wq) */
    int32_t kv_lora;         /* MLA: latent width (cached) */
    int32_t head_dim_mla;    /* MLA: per-head key dims before absorption (nope + rope) */
    int32_t head_dim_v_mla;  /* MLA: per-head value dims */
    int32_t moe_gating;      /* router function: 0 softmax, 1 sigmoid, 2 softmax over the selected */
    bool moe_renorm;         /* renormalize the selected experts' weights */
    float moe_w_scale;       /* selected weights multiplied by this (1 = none) */
    float clamp_kqv;         /* clamp q/k/v projections to [-c, c] (0 = off; olmo) */
    bool recurrent;          /* fixed-size per-sequence state instead of a K/V cache (mamba, rwkv) */
    int32_t ssm_d_conv;      /* mamba: conv kernel width */
    int32_t ssm_d_inner;     /* mamba: inner width */
    int32_t ssm_d_state;     /* mamba: state size per channel */
    int32_t ssm_dt_rank;     /* mamba: rank of the dt projection */
    int32_t wkv_head_size;   /* rwkv: head size (n_embd / head_size heads) */
    int32_t rwkv_mix_lora;   /* rwkv6: time_mix_extra_dim */
    int32_t rwkv_decay_lora; /* rwkv6: time_decay_extra_dim; rwkv7: decay_lora_rank */
    int32_t rwkv_iclr_lora;  /* rwkv7: iclr_lora_rank */
    int32_t rwkv_value_lora; /* rwkv7: value_residual_mix_lora_rank */
    int32_t rwkv_gate_lora;  /* rwkv7: gate_lora_rank */
    int32_t rwkv_rescale;    /* rwkv6: halve the residual every n layers (0 = never) */
} wg_hparams_t;

/* Load a GGUF file or an HF model directory (config.json + safetensors).
 * On error *out is NULL and wg_errmsg() names the file/field and bad value. */
wg_status wg_model_load(const char *path, wg_model_t **out);
void wg_model_free(wg_model_t **m);

const wg_hparams_t *wg_model_hparams(const wg_model_t *m);
/* The GGUF the model came from (for its tokenizer), NULL for an HF directory.
 * Borrowed, valid until wg_model_free(). */
const wg_gguf_t *wg_model_gguf(const wg_model_t *m);
/* Path given to wg_model_load (file or directory). */
const char *wg_model_path(const wg_model_t *m);
/* Bytes of weights (mapped + owned). */
size_t wg_model_weight_bytes(const wg_model_t *m);

/* A paged KV cache shaped for this model: `budget_bytes` of F32 K/V in blocks
 * of `block_tokens` tokens (0 = default 16). For a recurrent model (hparams
 * `recurrent`) it is a state cache instead (wg_kv_new_recurrent): one block
 * per sequence of wg_model_state_bytes, block_tokens ignored. NULL on failure
 * (wg_errmsg). */
wg_kv_t *wg_model_kv_new(const wg_model_t *m, size_t budget_bytes, int32_t block_tokens);

/* Compute devices, as the command-line tools and the worker name them:
 * "cpu", or "cuda" / "cuda:N" (N a 0-based CUDA device ordinal). *cuda gets
 * N, or -1 for the CPU. WG_ERR_INVAL names a malformed string. */
wg_status wg_device_parse(const char *device, int *cuda);
/* Backends compiled in: "cpu" or "cpu cuda". */
const char *wg_engine_backends(void);
/* Name of a device and its measured device-to-device copy bandwidth in GB/s
 * (bytes read + written per second; best of 5 copies of 512 MiB): the
 * memory roofline of GPU benchmarks. "cpu" gives name "cpu" and 0. */
wg_status wg_device_probe(const char *device, char *name, size_t name_len, double *copy_gbs);

/* wg_model_kv_new on a device (NULL or "cpu": the host cache above). On
 * "cuda:N" the K/V pool, the weights (uploaded on first use) and the
 * activations live on GPU N, and wg_model_forward on this cache runs there;
 * freeing the cache frees them. NULL with the reason in wg_errmsg() when the
 * device is absent, too small, or the model has features without device
 * kernels. */
wg_kv_t *wg_model_kv_new_on(const wg_model_t *m, size_t budget_bytes, int32_t block_tokens,
                            const char *device);
/* wg_model_kv_new_on with K/V elements of `type` (budget_bytes counts them at
 * their size). A recurrent model's state is F32 whatever `type`. The CUDA
 * cache is F32 only: another type there is WG_ERR_UNSUPPORTED (NULL). */
wg_kv_t *wg_model_kv_new_typed(const wg_model_t *m, size_t budget_bytes, int32_t block_tokens,
                               const char *device, wg_kv_type_t type);
/* Bytes of one token's K/V (every layer) in a cache of `type`; 0 for a
 * recurrent model, or for Q8_0 when a head size is not a multiple of 32
 * (wg_model_kv_new_typed then fails with the reason). */
size_t wg_model_kv_token_bytes(const wg_model_t *m, wg_kv_type_t type);
/* Tokens one sequence of m may hold, prompt + generated, for a max_context
 * setting (wg_sched_cfg_t.max_context, --max-context): > 0 that many; 0 the
 * model's trained context (context_length / max_position_embeddings) for an
 * attention model, no limit for a recurrent one; < 0 no limit. INT64_MAX
 * means no limit. */
int64_t wg_model_context_limit(const wg_model_t *m, int64_t max_context);

/* Bytes of one sequence's recurrent state (0 for attention-only models): what
 * a running sequence costs a recurrent cache, whatever its length. */
size_t wg_model_state_bytes(const wg_model_t *m);

/* One token of a batch. */
typedef struct {
    int32_t token;      /* token id (checked against n_vocab) */
    int32_t pos;        /* position in its sequence == its KV slot */
    int32_t seq;        /* KV sequence id (from wg_kv_seq_new) */
    bool want_logits;   /* write this token's logits row */
} wg_batch_tok_t;

/* Forward pass over n tokens. For each sequence the batch's tokens must come
 * in increasing position order and positions must be contiguous from the
 * sequence's current length (pos == wg_kv_seq_len before the call, then +1
 * ...); KV blocks are reserved here (WG_ERR_FULL when the cache is out of
 * blocks; nothing is written then). On success the sequences' lengths grow
 * and `logits` receives one row of n_vocab floats per token with want_logits,
 * in batch order. `pool` may be NULL (single thread). */
wg_status wg_model_forward(const wg_model_t *m, wg_kv_t *kv, wg_pool_t *pool,
                           const wg_batch_tok_t *batch, int64_t n, float *logits);

/* ---- single-sequence convenience (logits / generate) ---- */
typedef struct wg_session wg_session_t;

/* A session with its own pool of n_threads and a cache of n_ctx tokens. */
wg_session_t *wg_session_new(const wg_model_t *m, int n_threads, int32_t n_ctx);
/* The same on a device ("cpu", "cuda:N"; NULL = cpu). */
wg_session_t *wg_session_new_on(const wg_model_t *m, int n_threads, int32_t n_ctx, const char *device);
/* wg_session_new_on with a K/V cache of `kv_type` (wg_model_kv_new_typed). */
wg_session_t *wg_session_new_typed(const wg_model_t *m, int n_threads, int32_t n_ctx, const char *device,
                                   wg_kv_type_t kv_type);
void wg_session_free(wg_session_t **s);
/* Append n tokens (prefill or one decode step). With all_logits, `logits`
 * gets n rows; otherwise only the last token's row (may be NULL: then read
 * wg_session_logits). */
wg_status wg_session_eval(wg_session_t *s, const int32_t *ids, int64_t n, bool all_logits,
                          float *logits);
/* Logits of the last evaluated token (n_vocab floats), valid until the next eval. */
const float *wg_session_logits(const wg_session_t *s);
int32_t wg_session_n_past(const wg_session_t *s);
/* Forget tokens from position n_keep on. */
wg_status wg_session_truncate(wg_session_t *s, int32_t n_keep);

#endif
