/* Conformance: llama-moe (Mixtral-style top-2 of 4 experts), its quantized
 * variants and the HF MixtralForCausalLM copy. */
#include "wg_conf.h"

#define WG_CONF_CASE(name, rel) \
    Test(llama_moe, name) { (void)wg_conf_check(rel); }

WG_CONF_CASE(f32, "models/llama-moe/llama-moe-f32.gguf")
WG_CONF_CASE(Q8_0, "models/llama-moe/llama-moe-Q8_0.gguf")
WG_CONF_CASE(Q4_K_M, "models/llama-moe/llama-moe-Q4_K_M.gguf")
WG_CONF_CASE(IQ4_XS, "models/llama-moe/llama-moe-IQ4_XS.gguf")
WG_CONF_CASE(hf_f32, "hf/llama-moe")
