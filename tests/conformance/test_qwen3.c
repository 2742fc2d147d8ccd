/* Conformance: qwen3 (per-head q/k RMS norm, n_head*head_dim != n_embd) and
 * its HF copy. */
#include "wg_conf.h"

#define WG_CONF_CASE(name, rel) \
    Test(qwen3, name) { (void)wg_conf_check(rel); }

WG_CONF_CASE(f32, "models/qwen3/qwen3-f32.gguf")
WG_CONF_CASE(hf_f32, "hf/qwen3")
