/* Conformance: phi3 (fused qkv and gate/up matrices), its F16/quantized
 * variants and the HF f32/f16 copies. */
#include "wg_conf.h"

#define WG_CONF_CASE(name, rel) \
    Test(phi3, name) { (void)wg_conf_check(rel); }

WG_CONF_CASE(f32, "models/phi3/phi3-f32.gguf")
WG_CONF_CASE(F16, "models/phi3/phi3-F16.gguf")
WG_CONF_CASE(Q8_0, "models/phi3/phi3-Q8_0.gguf")
WG_CONF_CASE(Q5_0, "models/phi3/phi3-Q5_0.gguf")
WG_CONF_CASE(hf_f32, "hf/phi3")
WG_CONF_CASE(hf_f16, "hf/phi3-f16")
