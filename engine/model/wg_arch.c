/* wg_arch — the architecture table and the logical tensor name map.
 * GGUF names are the ones llama.cpp's loader uses; HF names default to the
 * Llama layout (model.layers.N.self_attn.q_proj ...) with per-row overrides. */
#include "wg_arch.h"

#include <string.h>

static const struct {
    const char *gguf; /* GGUF pattern */
    const char *hf;   /* default HF pattern (NULL: no HF equivalent by default) */
} s_names[WG_T_COUNT] = {
    [WG_T_TOK_EMBD] = {"token_embd.weight", "model.embed_tokens.weight"},
    [WG_T_OUTPUT_NORM] = {"output_norm.weight", "model.norm.weight"},
    [WG_T_OUTPUT_NORM_B] = {"output_norm.bias", "model.norm.bias"},
    [WG_T_OUTPUT] = {"output.weight", "lm_head.weight"},
    [WG_T_OUTPUT_B] = {"output.bias", "lm_head.bias"},
    [WG_T_ROPE_FREQS] = {"rope_freqs.weight", NULL},
    [WG_T_ATTN_NORM] = {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight"},
    [WG_T_ATTN_NORM_B] = {"blk.%d.attn_norm.bias", "model.layers.%d.input_layernorm.bias"},
    [WG_T_ATTN_Q] = {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight"},
    [WG_T_ATTN_Q_B] = {"blk.%d.attn_q.bias", "model.layers.%d.self_attn.q_proj.bias"},
    [WG_T_ATTN_K] = {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight"},
    [WG_T_ATTN_K_B] = {"blk.%d.attn_k.bias", "model.layers.%d.self_attn.k_proj.bias"},
    [WG_T_ATTN_V] = {"blk.%d.attn_v.weight", "model.layers.%d.self_attn.v_proj.weight"},
    [WG_T_ATTN_V_B] = {"blk.%d.attn_v.bias", "model.layers.%d.self_attn.v_proj.bias"},
    [WG_T_ATTN_QKV] = {"blk.%d.attn_qkv.weight", "model.layers.%d.self_attn.qkv_proj.weight"},
    [WG_T_ATTN_QKV_B] = {"blk.%d.attn_qkv.bias", "model.layers.%d.self_attn.qkv_proj.bias"},
    [WG_T_ATTN_OUT] = {"blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight"},
    [WG_T_ATTN_OUT_B] = {"blk.%d.attn_output.bias", "model.layers.%d.self_attn.o_proj.bias"},
    [WG_T_ATTN_Q_NORM] = {"blk.%d.attn_q_norm.weight", "model.layers.%d.self_attn.q_norm.weight"},
    [WG_T_ATTN_K_NORM] = {"blk.%d.attn_k_norm.weight", "model.layers.%d.self_attn.k_norm.weight"},
    [WG_T_ATTN_POST_NORM] = {"blk.%d.post_attention_norm.weight", NULL},
    [WG_T_FFN_NORM] = {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight"},
    [WG_T_FFN_NORM_B] = {"blk.%d.ffn_norm.bias", "model.layers.%d.post_attention_layernorm.bias"},
    [WG_T_FFN_POST_NORM] = {"blk.%d.post_ffw_norm.weight", NULL},
    [WG_T_FFN_GATE] = {"blk.%d.ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight"},
    [WG_T_FFN_UP] = {"blk.%d.ffn_up.weight", "model.layers.%d.mlp.up_proj.weight"},
    [WG_T_FFN_UP_B] = {"blk.%d.ffn_up.bias", "model.layers.%d.mlp.up_proj.bias"},
    [WG_T_FFN_DOWN] = {"blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight"},
    [WG_T_FFN_DOWN_B] = {"blk.%d.ffn_down.bias", "model.layers.%d.mlp.down_proj.bias"},
    [WG_T_FFN_GATE_INP] = {"blk.%d.ffn_gate_inp.weight", "model.layers.%d.mlp.gate.weight"},
    [WG_T_FFN_GATE_EXPS] = {"blk.%d.ffn_gate_exps.weight", "model.layers.%d.mlp.experts.%d.gate_proj.weight"},
    [WG_T_FFN_UP_EXPS] = {"blk.%d.ffn_up_exps.weight", "model.layers.%d.mlp.experts.%d.up_proj.weight"},
    [WG_T_FFN_DOWN_EXPS] = {"blk.%d.ffn_down_exps.weight", "model.layers.%d.mlp.experts.%d.down_proj.weight"},
    [WG_T_FFN_EXP_PROBS_B] = {"blk.%d.exp_probs_b.bias", "model.layers.%d.block_sparse_moe.e_score_correction_bias"},
    [WG_T_FFN_GATE_INP_B] = {"blk.%d.ffn_gate_inp.bias", "model.layers.%d.mlp.router.bias"},
    [WG_T_FFN_GATE_EXPS_B] = {"blk.%d.ffn_gate_exps.bias", NULL},
    [WG_T_FFN_UP_EXPS_B] = {"blk.%d.ffn_up_exps.bias", NULL},
    [WG_T_FFN_DOWN_EXPS_B] = {"blk.%d.ffn_down_exps.bias", NULL},
    [WG_T_ATTN_SINKS] = {"blk.%d.attn_sinks.weight", "model.layers.%d.self_attn.sinks"},
    [WG_T_MLA_Q_A] = {"blk.%d.attn_q_a.weight", NULL},
    [WG_T_MLA_Q_A_NORM] = {"blk.%d.attn_q_a_norm.weight", NULL},
    [WG_T_MLA_Q_B] = {"blk.%d.attn_q_b.weight", NULL},
    [WG_T_MLA_KV_A] = {"blk.%d.attn_kv_a_mqa.weight", NULL},
    [WG_T_MLA_KV_A_NORM] = {"blk.%d.attn_kv_a_norm.weight", NULL},
    [WG_T_MLA_K_B] = {"blk.%d.attn_k_b.weight", NULL},
    [WG_T_MLA_V_B] = {"blk.%d.attn_v_b.weight", NULL},
    [WG_T_FFN_GATE_SHEXP] = {"blk.%d.ffn_gate_shexp.weight", "model.layers.%d.mlp.shared_expert.gate_proj.weight"},
    [WG_T_FFN_UP_SHEXP] = {"blk.%d.ffn_up_shexp.weight", "model.layers.%d.mlp.shared_expert.up_proj.weight"},
    [WG_T_FFN_DOWN_SHEXP] = {"blk.%d.ffn_down_shexp.weight", "model.layers.%d.mlp.shared_expert.down_proj.weight"},
    [WG_T_TOK_EMBD_NORM] = {"token_embd_norm.weight", NULL},
    [WG_T_TOK_EMBD_NORM_B] = {"token_embd_norm.bias", NULL},
    [WG_T_SSM_IN] = {"blk.%d.ssm_in.weight", NULL},
    [WG_T_SSM_CONV1D] = {"blk.%d.ssm_conv1d.weight", NULL},
    [WG_T_SSM_CONV1D_B] = {"blk.%d.ssm_conv1d.bias", NULL},
    [WG_T_SSM_X] = {"blk.%d.ssm_x.weight", NULL},
    [WG_T_SSM_DT] = {"blk.%d.ssm_dt.weight", NULL},
    [WG_T_SSM_DT_B] = {"blk.%d.ssm_dt.bias", NULL},
    [WG_T_SSM_A] = {"blk.%d.ssm_a", NULL},
    [WG_T_SSM_D] = {"blk.%d.ssm_d", NULL},
    [WG_T_SSM_OUT] = {"blk.%d.ssm_out.weight", NULL},
    [WG_T_TM_W0] = {"blk.%d.time_mix_w0.weight", NULL},
    [WG_T_TM_W1] = {"blk.%d.time_mix_w1.weight", NULL},
    [WG_T_TM_W2] = {"blk.%d.time_mix_w2.weight", NULL},
    [WG_T_TM_A0] = {"blk.%d.time_mix_a0.weight", NULL},
    [WG_T_TM_A1] = {"blk.%d.time_mix_a1.weight", NULL},
    [WG_T_TM_A2] = {"blk.%d.time_mix_a2.weight", NULL},
    [WG_T_TM_V0] = {"blk.%d.time_mix_v0.weight", NULL},
    [WG_T_TM_V1] = {"blk.%d.time_mix_v1.weight", NULL},
    [WG_T_TM_V2] = {"blk.%d.time_mix_v2.weight", NULL},
    [WG_T_TM_G1] = {"blk.%d.time_mix_g1.weight", NULL},
    [WG_T_TM_G2] = {"blk.%d.time_mix_g2.weight", NULL},
    [WG_T_TM_LERP_X] = {"blk.%d.time_mix_lerp_x.weight", NULL},
    [WG_T_TM_LERP_FUSED] = {"blk.%d.time_mix_lerp_fused.weight", NULL},
    [WG_T_TM_FIRST] = {"blk.%d.time_mix_first.weight", NULL},
    [WG_T_TM_DECAY] = {"blk.%d.time_mix_decay.weight", NULL},
    [WG_T_TM_DECAY_W1] = {"blk.%d.time_mix_decay_w1.weight", NULL},
    [WG_T_TM_DECAY_W2] = {"blk.%d.time_mix_decay_w2.weight", NULL},
    [WG_T_TM_K_K] = {"blk.%d.time_mix_k_k.weight", NULL},
    [WG_T_TM_K_A] = {"blk.%d.time_mix_k_a.weight", NULL},
    [WG_T_TM_R_K] = {"blk.%d.time_mix_r_k.weight", NULL},
    [WG_T_TM_KEY] = {"blk.%d.time_mix_key.weight", NULL},
    [WG_T_TM_VALUE] = {"blk.%d.time_mix_value.weight", NULL},
    [WG_T_TM_RECEPTANCE] = {"blk.%d.time_mix_receptance.weight", NULL},
    [WG_T_TM_GATE] = {"blk.%d.time_mix_gate.weight", NULL},
    [WG_T_TM_LN] = {"blk.%d.time_mix_ln.weight", NULL},
    [WG_T_TM_LN_B] = {"blk.%d.time_mix_ln.bias", NULL},
    [WG_T_TM_OUTPUT] = {"blk.%d.time_mix_output.weight", NULL},
    [WG_T_CM_LERP_K] = {"blk.%d.channel_mix_lerp_k.weight", NULL},
    [WG_T_CM_LERP_R] = {"blk.%d.channel_mix_lerp_r.weight", NULL},
    [WG_T_CM_KEY] = {"blk.%d.channel_mix_key.weight", NULL},
    [WG_T_CM_VALUE] = {"blk.%d.channel_mix_value.weight", NULL},
    [WG_T_CM_RECEPTANCE] = {"blk.%d.channel_mix_receptance.weight", NULL},
};

static const wg_hf_name_t s_hf_mixtral[] = {
    {WG_T_FFN_GATE_INP, "model.layers.%d.block_sparse_moe.gate.weight"},
    {WG_T_FFN_GATE_EXPS, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight"},
    {WG_T_FFN_DOWN_EXPS, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight"},
    {WG_T_FFN_UP_EXPS, "model.layers.%d.block_sparse_moe.experts.%d.w3.weight"},
    {WG_T_COUNT, NULL},
};

static const wg_hf_name_t s_hf_phi3[] = {
    {WG_T_FFN_UP, "model.layers.%d.mlp.gate_up_proj.weight"},
    {WG_T_COUNT, NULL},
};

static const wg_hf_name_t s_hf_olmo2[] = {
    {WG_T_ATTN_POST_NORM, "model.layers.%d.post_attention_layernorm.weight"},
    {WG_T_FFN_POST_NORM, "model.layers.%d.post_feedforward_layernorm.weight"},
    {WG_T_FFN_NORM, "model.layers.%d.no_pre_ffn_norm"},
    {WG_T_COUNT, NULL},
};

static const wg_hf_name_t s_hf_gemma2[] = {
    {WG_T_ATTN_POST_NORM, "model.layers.%d.post_attention_layernorm.weight"},
    {WG_T_FFN_NORM, "model.layers.%d.pre_feedforward_layernorm.weight"},
    {WG_T_FFN_POST_NORM, "model.layers.%d.post_feedforward_layernorm.weight"},
    {WG_T_COUNT, NULL},
};

/* Starcoder2: plain (non-gated) MLP named c_fc / c_proj, with biases. */
static const wg_hf_name_t s_hf_starcoder2[] = {
    {WG_T_FFN_UP, "model.layers.%d.mlp.c_fc.weight"},
    {WG_T_FFN_UP_B, "model.layers.%d.mlp.c_fc.bias"},
    {WG_T_FFN_DOWN, "model.layers.%d.mlp.c_proj.weight"},
    {WG_T_FFN_DOWN_B, "model.layers.%d.mlp.c_proj.bias"},
    {WG_T_COUNT, NULL},
};

/* Phi-2 (PhiForCausalLM): dense, fc1/fc2, final_layernorm, lm_head bias. */
static const wg_hf_name_t s_hf_phi2[] = {
    {WG_T_ATTN_OUT, "model.layers.%d.self_attn.dense.weight"},
    {WG_T_ATTN_OUT_B, "model.layers.%d.self_attn.dense.bias"},
    {WG_T_FFN_UP, "model.layers.%d.mlp.fc1.weight"},
    {WG_T_FFN_UP_B, "model.layers.%d.mlp.fc1.bias"},
    {WG_T_FFN_DOWN, "model.layers.%d.mlp.fc2.weight"},
    {WG_T_FFN_DOWN_B, "model.layers.%d.mlp.fc2.bias"},
    {WG_T_OUTPUT_NORM, "model.final_layernorm.weight"},
    {WG_T_OUTPUT_NORM_B, "model.final_layernorm.bias"},
    {WG_T_COUNT, NULL},
};

/* Falcon (FalconForCausalLM / RWForCausalLM): transformer.h.N.*; the fused
 * query_key_value rows are regrouped per K/V head by the loader. */
static const wg_hf_name_t s_hf_falcon[] = {
    {WG_T_TOK_EMBD, "transformer.word_embeddings.weight"},
    {WG_T_OUTPUT_NORM, "transformer.ln_f.weight"},
    {WG_T_OUTPUT_NORM_B, "transformer.ln_f.bias"},
    {WG_T_ATTN_NORM, "transformer.h.%d.input_layernorm.weight"},
    {WG_T_ATTN_NORM_B, "transformer.h.%d.input_layernorm.bias"},
    {WG_T_ATTN_QKV, "transformer.h.%d.self_attention.query_key_value.weight"},
    {WG_T_ATTN_QKV_B, "transformer.h.%d.self_attention.query_key_value.bias"},
    {WG_T_ATTN_OUT, "transformer.h.%d.self_attention.dense.weight"},
    {WG_T_ATTN_OUT_B, "transformer.h.%d.self_attention.dense.bias"},
    {WG_T_FFN_UP, "transformer.h.%d.mlp.dense_h_to_4h.weight"},
    {WG_T_FFN_UP_B, "transformer.h.%d.mlp.dense_h_to_4h.bias"},
    {WG_T_FFN_DOWN, "transformer.h.%d.mlp.dense_4h_to_h.weight"},
    {WG_T_FFN_DOWN_B, "transformer.h.%d.mlp.dense_4h_to_h.bias"},
    {WG_T_COUNT, NULL},
};

/* gpt-oss stores its FFN pre-norm as post_attention_norm. */
static const wg_gguf_name_t s_gguf_gpt_oss[] = {
    {WG_T_FFN_NORM, "blk.%d.post_attention_norm.weight"},
    {WG_T_ATTN_POST_NORM, NULL},
    {WG_T_COUNT, NULL},
};

/* RWKV's second per-layer norm (before the channel mix) is attn_norm_2. */
static const wg_gguf_name_t s_gguf_rwkv[] = {
    {WG_T_FFN_NORM, "blk.%d.attn_norm_2.weight"},
    {WG_T_FFN_NORM_B, "blk.%d.attn_norm_2.bias"},
    {WG_T_COUNT, NULL},
};

/* GGUF lookups take the first row with a matching gguf_arch; HF lookups scan
 * every row, so HF-only variants (Mixtral) sit after their GGUF row. */
static const wg_arch_t s_archs[] = {
    {.gguf_arch = "llama",
     .hf_archs = {"LlamaForCausalLM", "MistralForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NORM, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_HF_PERMUTE_QK | WG_F_MOE_RENORM},
    {.gguf_arch = "llama",
     .hf_archs = {"MixtralForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NORM, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_HF_PERMUTE_QK | WG_F_MOE_RENORM, .hf_names = s_hf_mixtral},
    {.gguf_arch = "mistral3",
     .hf_archs = {NULL},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NORM, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_HF_PERMUTE_QK | WG_F_MOE_RENORM},
    {.gguf_arch = "qwen2",
     .hf_archs = {"Qwen2ForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_QKV_BIAS},
    {.gguf_arch = "qwen3",
     .hf_archs = {"Qwen3ForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_QK_NORM_HEAD},
    {.gguf_arch = "qwen3moe",
     .hf_archs = {"Qwen3MoeForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_QK_NORM_HEAD | WG_F_MOE_RENORM},
    {.gguf_arch = "phi3",
     .hf_archs = {"Phi3ForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_FUSED_QKV | WG_F_FUSED_GATE_UP, .hf_names = s_hf_phi3},
    {.gguf_arch = "gemma",
     .hf_archs = {"GemmaForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_GELU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_EMBD_SCALE | WG_F_HF_NORM_PLUS1},
    {.gguf_arch = "gemma2",
     .hf_archs = {"Gemma2ForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_GELU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_EMBD_SCALE | WG_F_HF_NORM_PLUS1 | WG_F_POST_NORMS,
     .swa_pattern = 2, .hf_names = s_hf_gemma2},
    {.gguf_arch = "gemma3",
     .hf_archs = {"Gemma3ForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_GELU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_EMBD_SCALE | WG_F_HF_NORM_PLUS1 | WG_F_POST_NORMS | WG_F_QK_NORM_HEAD,
     .swa_pattern = 6, .rope_base_swa = 10000.0f, .hf_names = s_hf_gemma2},
    {.gguf_arch = "stablelm",
     .hf_archs = {"StableLmForCausalLM"},
     .norm = WG_NORM_LAYER, .rope = WG_ROPE_NEOX, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_QKV_BIAS},
    {.gguf_arch = "phi2",
     .hf_archs = {"PhiForCausalLM"},
     .norm = WG_NORM_LAYER, .rope = WG_ROPE_NEOX, .act = WG_ACT_GELU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_PARALLEL, .hf_names = s_hf_phi2},
    {.gguf_arch = "starcoder2",
     .hf_archs = {"Starcoder2ForCausalLM"},
     .norm = WG_NORM_LAYER, .rope = WG_ROPE_NEOX, .act = WG_ACT_GELU, .gating = WG_GATE_SOFTMAX,
     .flags = 0, .hf_names = s_hf_starcoder2},
    {.gguf_arch = "falcon",
     .hf_archs = {"FalconForCausalLM", "RWForCausalLM"},
     .norm = WG_NORM_LAYER, .rope = WG_ROPE_NEOX, .act = WG_ACT_GELU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_PARALLEL | WG_F_FUSED_QKV, .hf_names = s_hf_falcon},
    {.gguf_arch = "olmo",
     .hf_archs = {"OlmoForCausalLM"},
     .norm = WG_NORM_LAYER_NOPARAM, .rope = WG_ROPE_NORM, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_HF_PERMUTE_QK},
    {.gguf_arch = "minimax-m2",
     .hf_archs = {NULL},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_SILU, .gating = WG_GATE_SIGMOID,
     .flags = WG_F_GATED_FFN | WG_F_QK_NORM_FULL | WG_F_MOE_RENORM},
    {.gguf_arch = "gpt-oss",
     .hf_archs = {NULL},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_SWIGLU_OAI, .gating = WG_GATE_SOFTMAX_SELECTED,
     .flags = WG_F_GATED_FFN, .swa_pattern = 2, .gguf_names = s_gguf_gpt_oss},
    {.gguf_arch = "deepseek2",
     .hf_archs = {NULL},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NORM, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_MLA},
    {.gguf_arch = "olmo2",
     .hf_archs = {"Olmo2ForCausalLM"},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NEOX, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .flags = WG_F_GATED_FFN | WG_F_NO_PRE_NORM | WG_F_QK_NORM_FULL, .hf_names = s_hf_olmo2},
    /* Recurrent families: one state block per sequence, no K/V, no rope. */
    {.gguf_arch = "mamba",
     .hf_archs = {NULL},
     .norm = WG_NORM_RMS, .rope = WG_ROPE_NONE, .act = WG_ACT_SILU, .gating = WG_GATE_SOFTMAX,
     .block = WG_BLOCK_MAMBA},
    {.gguf_arch = "rwkv6",
     .hf_archs = {NULL},
     .norm = WG_NORM_LAYER, .rope = WG_ROPE_NONE, .act = WG_ACT_RELU2, .gating = WG_GATE_SOFTMAX,
     .block = WG_BLOCK_RWKV6, .gguf_names = s_gguf_rwkv},
    {.gguf_arch = "rwkv7",
     .hf_archs = {NULL},
     .norm = WG_NORM_LAYER, .rope = WG_ROPE_NONE, .act = WG_ACT_RELU2, .gating = WG_GATE_SOFTMAX,
     .block = WG_BLOCK_RWKV7, .gguf_names = s_gguf_rwkv},
};

#define S_N_ARCHS (sizeof s_archs / sizeof s_archs[0])

const wg_arch_t *wg_arch_by_gguf(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < S_N_ARCHS; i++)
        if (strcmp(s_archs[i].gguf_arch, name) == 0) return &s_archs[i];
    return NULL;
}

const wg_arch_t *wg_arch_by_hf(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < S_N_ARCHS; i++)
        for (int j = 0; j < 4 && s_archs[i].hf_archs[j]; j++)
            if (strcmp(s_archs[i].hf_archs[j], name) == 0) return &s_archs[i];
    return NULL;
}

const char *wg_tensor_gguf_name(const wg_arch_t *a, wg_tensor_id_t id) {
    if ((unsigned)id >= WG_T_COUNT) return NULL;
    if (a && a->gguf_names)
        for (const wg_gguf_name_t *o = a->gguf_names; o->id != WG_T_COUNT; o++)
            if (o->id == id) return o->gguf;
    return s_names[id].gguf;
}

const char *wg_tensor_hf_name(const wg_arch_t *a, wg_tensor_id_t id) {
    if ((unsigned)id >= WG_T_COUNT) return NULL;
    if (a && a->hf_names)
        for (const wg_hf_name_t *o = a->hf_names; o->hf; o++)
            if (o->id == id) return o->hf;
    return s_names[id].hf;
}

const char *wg_arch_list(void) { return "llama, mistral3, qwen2, qwen3, qwen3moe, phi3, gemma, gemma2, gemma3, olmo, olmo2, stablelm, phi2, starcoder2, falcon, minimax-m2, gpt-oss, deepseek2, mamba, rwkv6, rwkv7"; }
