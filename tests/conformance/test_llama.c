/* Conformance: llama (dense) GGUF, every quantized variant, and the HF copy,
 * against llama.cpp's reference logits and greedy tokens. */
#include "wg_conf.h"

#define WG_CONF_CASE(name, rel) \
    Test(llama, name) { (void)wg_conf_check(rel); }

WG_CONF_CASE(f32, "models/llama/llama-f32.gguf")
WG_CONF_CASE(F16, "models/llama/llama-F16.gguf")
WG_CONF_CASE(BF16, "models/llama/llama-BF16.gguf")
WG_CONF_CASE(Q8_0, "models/llama/llama-Q8_0.gguf")
WG_CONF_CASE(Q4_0, "models/llama/llama-Q4_0.gguf")
WG_CONF_CASE(Q4_1, "models/llama/llama-Q4_1.gguf")
WG_CONF_CASE(Q5_0, "models/llama/llama-Q5_0.gguf")
WG_CONF_CASE(Q5_1, "models/llama/llama-Q5_1.gguf")
WG_CONF_CASE(Q2_K, "models/llama/llama-Q2_K.gguf")
WG_CONF_CASE(Q3_K_M, "models/llama/llama-Q3_K_M.gguf")
WG_CONF_CASE(Q4_K_M, "models/llama/llama-Q4_K_M.gguf")
WG_CONF_CASE(Q5_K_M, "models/llama/llama-Q5_K_M.gguf")
WG_CONF_CASE(Q6_K, "models/llama/llama-Q6_K.gguf")
WG_CONF_CASE(IQ4_NL, "models/llama/llama-IQ4_NL.gguf")
WG_CONF_CASE(IQ4_XS, "models/llama/llama-IQ4_XS.gguf")
WG_CONF_CASE(hf_f32, "hf/llama")
