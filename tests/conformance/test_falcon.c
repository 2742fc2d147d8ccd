/* Conformance: falcon (multi-query fused qkv, parallel block from one norm, GELU). */
#include "wg_conf.h"

Test(falcon, f32) { (void)wg_conf_check("models/falcon/falcon-f32.gguf"); }
