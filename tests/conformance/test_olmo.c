/* Conformance: olmo (non-parametric layer norm, q/k/v clamped to [-8, 8]). */
#include "wg_conf.h"

Test(olmo, f32) { (void)wg_conf_check("models/olmo/olmo-f32.gguf"); }
