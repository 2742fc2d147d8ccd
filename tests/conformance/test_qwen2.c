/* Conformance: qwen2 (q/k/v biases, NeoX rope, tied output), its F16/BF16/
 * quantized variants and the HF f32/f16/bf16 copies. */
#include "wg_conf.h"

#define WG_CONF_CASE(name, rel) \
    Test(qwen2, name) { (void)wg_conf_check(rel); }

WG_CONF_CASE(f32, "models/qwen2/qwen2-f32.gguf")
WG_CONF_CASE(F16, "models/qwen2/qwen2-F16.gguf")
WG_CONF_CASE(BF16, "models/qwen2/qwen2-BF16.gguf")
WG_CONF_CASE(Q8_0, "models/qwen2/qwen2-Q8_0.gguf")
WG_CONF_CASE(Q4_0, "models/qwen2/qwen2-Q4_0.gguf")
WG_CONF_CASE(hf_f32, "hf/qwen2")
WG_CONF_CASE(hf_f16, "hf/qwen2-f16")
WG_CONF_CASE(hf_bf16, "hf/qwen2-bf16")
