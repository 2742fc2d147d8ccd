/* Conformance: phi2 (parallel attention+MLP, layer norm, partial rope, GELU, biases, output bias). */
#include "wg_conf.h"

Test(phi2, f32) { (void)wg_conf_check("models/phi2/phi2-f32.gguf"); }
