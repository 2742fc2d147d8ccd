/* Conformance: starcoder2 (layer norm, biases everywhere, GELU MLP without gate, tied). */
#include "wg_conf.h"

Test(starcoder2, f32) { (void)wg_conf_check("models/starcoder2/starcoder2-f32.gguf"); }
